complete -c layer-diff -l exclude -d 'Leave out paths matching this glob on the absolute path (/var/cache/*); repeatable' -r
complete -c layer-diff -l overlay -d 'Convert an overlayfs upper directory into the changeset tar (no LOWER/UPPER)' -r -F
complete -c layer-diff -l lower -d 'With --overlay: the lower directory, to resolve metacopy files and renamed directories, and to tell added from changed for --list and --json' -r -F
complete -c layer-diff -l platform -d 'The platform to pick from multi-platform IMAGE arguments (os/arch[/variant])' -r
complete -c layer-diff -l max-json -d 'The largest JSON document read (manifest, config, index, descriptor line), in bytes; a larger one is refused, so a hostile blob cannot exhaust memory' -r
complete -c layer-diff -l list -d 'Print docker diff\'s lines ("A /path", "C /path", "D /path") instead of a tar'
complete -c layer-diff -l json -d 'Print JSON Lines ({"path":"/etc/passwd","kind":"C"}) instead of a tar'
complete -c layer-diff -l exit-code -d 'Exit with status 1 when there are changes (errors exit 2)'
complete -c layer-diff -l ignore-times -l ignore-file-times -d 'Compare file content instead of mtimes (semantic diffs of two images)'
complete -c layer-diff -l image -d 'Compare two IMAGEs as images: manifest, config and history differences (old and new values), the layers (paired by diffID, then by history step) and the entries a pair differs in, then the file changes; lines, or JSON Lines with --json'
complete -c layer-diff -l ignore-image-times -d 'With --image: leave the image\'s times out (config and history created, the org.opencontainers.image.created annotation and label)'
complete -c layer-diff -l opaque -d 'Use .wh..wh..opq for a directory whose lower children were all removed'
complete -c layer-diff -s q -l quiet -d 'Print nothing but errors (and the data)'
complete -c layer-diff -s h -l help -d 'Print help'
complete -c layer-diff -s V -l version -d 'Print version'
# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
function __layerkit_image_word
    set -l word (commandline -ct)
    string match -q -- '*:*' $word
    and test -f (string split -m1 -- : $word)[1]/oci-layout
end
complete -c layer-diff -n __layerkit_image_word -f -a '(layer-diff --complete-image (commandline -ct) 2>/dev/null)'
