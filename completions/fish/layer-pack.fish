complete -c layer-pack -l layout -d 'The OCI layout to store the blob in (created when missing, which is said on stderr; its path cannot hold \':\', where an IMAGE splits)' -r -F
complete -c layer-pack -s o -l output -d 'Write the blob to FILE instead of a layout' -r -F
complete -c layer-pack -l compress -d 'Compression of the blob' -r -f -a "gzip\t''
zstd\t''
none\t''"
complete -c layer-pack -l level -d 'Compression level (gzip 0-9, default 6; zstd 1-22, default 3)' -r
complete -c layer-pack -l threads -d 'Compression threads (default: the number of CPUs). Never changes the output' -r
complete -c layer-pack -s q -l quiet -d 'Print nothing but errors (and the descriptor)'
complete -c layer-pack -s h -l help -d 'Print help'
complete -c layer-pack -s V -l version -d 'Print version'
# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
function __layerkit_image_word
    set -l word (commandline -ct)
    string match -q -- '*:*' $word
    and test -f (string split -m1 -- : $word)[1]/oci-layout
end
complete -c layer-pack -n __layerkit_image_word -f -a '(layer-pack --complete-image (commandline -ct) 2>/dev/null)'
