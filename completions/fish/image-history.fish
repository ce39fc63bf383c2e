complete -c image-history -s H -l human -d 'Print sizes and dates in human readable format; -H=false prints RFC 3339 times and sizes in bytes' -r -f -a "true\t''
false\t''"
complete -c image-history -l format -d 'Output format' -r -f -a "table\t'docker\'s table'
json\t'JSON Lines with full values'"
complete -c image-history -l platform -d 'Pick this platform from a multi-platform image (default: the host\'s)' -r
complete -c image-history -l max-json -d 'The largest JSON document read (manifest, config, index, descriptor line), in bytes; a larger one is refused, so a hostile blob cannot exhaust memory' -r
complete -c image-history -l no-trunc -d 'Don\'t truncate output (full ids and CREATED BY)'
complete -c image-history -s q -l quiet -d 'Only show image ids (<missing> for rows no image of the layout ends at)'
complete -c image-history -l wasted -d 'Also show, per layer, the bytes later layers remove or overwrite, with a total and an efficiency percentage'
complete -c image-history -s h -l help -d 'Print help (see more with \'--help\')'
complete -c image-history -s V -l version -d 'Print version'
# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
function __layerkit_image_word
    set -l word (commandline -ct)
    string match -q -- '*:*' $word
    and test -f (string split -m1 -- : $word)[1]/oci-layout
end
complete -c image-history -n __layerkit_image_word -f -a '(image-history --complete-image (commandline -ct) 2>/dev/null)'
