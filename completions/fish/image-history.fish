complete -c image-history -s H -l human -d 'Print sizes and dates in human readable format; -H=false prints RFC 3339 times and sizes in bytes' -r -f -a "true\t''
false\t''"
complete -c image-history -l format -d 'Output format' -r -f -a "table\t'docker\'s table'
json\t'JSON Lines with full values'"
complete -c image-history -l platform -d 'Pick this platform from a multi-platform image (default: the host\'s)' -r
complete -c image-history -l report -d 'Write the summary of --wasted, which it implies (total, wasted, efficiency, the files that waste, and the CI gate\'s verdicts) as one JSON document to FILE; `-` for stdout, which then carries it alone' -r -F
complete -c image-history -l max-json -d 'The largest JSON document read (manifest, config, index, descriptor line), in bytes; a larger one is refused, so a hostile blob cannot exhaust memory' -r
complete -c image-history -l lowest-efficiency -d 'Fail when the efficiency (content still visible / all content) is below RATIO (0.9 or 90%), as dive\'s lowestEfficiency; `disabled` turns a --ci-config rule off' -r
complete -c image-history -l highest-wasted-bytes -d 'Fail when more than SIZE bytes are wasted (20MB = 20,000,000, 20MiB, 1000), as dive\'s highestWastedBytes' -r
complete -c image-history -l highest-user-wasted-percent -d 'Fail when the wasted bytes are more than RATIO of the content the layers above the first add (0.1 or 10%), as dive\'s highestUserWastedPercent' -r
complete -c image-history -l wasted-floor -d 'The ratio rules (efficiency, user wasted percent) pass while no more than SIZE bytes are wasted: a small image is not failed over a few kilobytes' -r
complete -c image-history -l highest-image-size -d 'Fail when the content of all layers is more than SIZE' -r
complete -c image-history -l baseline -d 'An image to compare the size with (the previous release, the base)' -r
complete -c image-history -l highest-growth -d 'With --baseline: fail when the content grew by more than SIZE, or PERCENT% of the baseline\'s' -r
complete -c image-history -l ci-config -d 'Read the rules from dive\'s CI config (rules: lowestEfficiency, highestWastedBytes, highestUserWastedPercent, or their kebab-case names); rules it leaves out take dive\'s defaults (0.9, disabled, 0.1); flags override it' -r -F
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
