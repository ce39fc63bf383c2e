complete -c image-prune -l filter -d 'As docker image prune\'s: `until=DURATION` keeps dangling images created (config `created`) less than DURATION ago (Go syntax: 90s, 10m, 1h30m, 24h); `label=KEY[=VALUE]` removes only dangling images with that label, `label!=KEY[=VALUE]` only those without. Repeatable: an image goes when it passes every one' -r
complete -c image-prune -l grace -d 'Keep orphan blobs and temporary files younger than this (0: remove them all)' -r
complete -c image-prune -l max-json -d 'The largest JSON document read (manifest, config, index, descriptor line), in bytes; a larger one is refused, so a hostile blob cannot exhaust memory' -r
complete -c image-prune -l dry-run -d 'Show what would be removed, remove nothing'
complete -c image-prune -l json -d 'Print the report as one JSON document'
complete -c image-prune -l intermediate -d 'Remove intermediate images too: untagged images that are the parent of a kept image (docker keeps them)'
complete -c image-prune -s q -l quiet -d 'Print nothing but errors (the --json document is still printed)'
complete -c image-prune -s f -l force -d 'With IMAGEs, as docker rmi -f: remove an image named by id even when several tags name it. With a LAYOUT, accepted for docker\'s `image prune -f` (image-prune never asks)'
complete -c image-prune -s h -l help -d 'Print help (see more with \'--help\')'
complete -c image-prune -s V -l version -d 'Print version'
# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
function __layerkit_image_word
    set -l word (commandline -ct)
    string match -q -- '*:*' $word
    and test -f (string split -m1 -- : $word)[1]/oci-layout
end
complete -c image-prune -n __layerkit_image_word -f -a '(image-prune --complete-image (commandline -ct) 2>/dev/null)'
