complete -c image-ls -s f -l filter -d 'Filter the rows: dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE, label=KEY[=VALUE]; repeatable' -r
complete -c image-ls -l format -d 'Output format' -r -f -a "table\t'docker\'s table'
json\t'JSON Lines with full values'"
complete -c image-ls -l max-json -d 'The largest JSON document read (manifest, config, index, descriptor line), in bytes; a larger one is refused, so a hostile blob cannot exhaust memory' -r
complete -c image-ls -s a -l all -d 'Show all images, intermediate ones (untagged parents of other images) included'
complete -c image-ls -s q -l quiet -d 'Only show image ids'
complete -c image-ls -l digests -d 'Show the manifest digests'
complete -c image-ls -l no-trunc -d 'Don\'t truncate output (full image ids)'
complete -c image-ls -l disk-usage -d 'Show the layout\'s disk usage, as docker system df'
complete -c image-ls -s v -l verbose -d 'With --disk-usage: one row per image too, as docker system df -v'
complete -c image-ls -s h -l help -d 'Print help (see more with \'--help\')'
complete -c image-ls -s V -l version -d 'Print version'
# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
function __layerkit_image_word
    set -l word (commandline -ct)
    string match -q -- '*:*' $word
    and test -f (string split -m1 -- : $word)[1]/oci-layout
end
complete -c image-ls -n __layerkit_image_word -f -a '(image-ls --complete-image (commandline -ct) 2>/dev/null)'
