complete -c image-stack -l from -d 'The base image (LAYOUT:REF, LAYOUT, LAYOUT@sha256:…); default: empty (scratch)' -r
complete -c image-stack -l platform -d 'The platform to pick from a multi-platform base, or to record for a scratch image' -r
complete -c image-stack -l layer -d 'A file of LAYER DESCRIPTORs (JSON Lines, `-` for stdin), stacked in order; repeatable' -r -F
complete -c image-stack -l drop -d 'Remove the base image\'s top N layers and their history before stacking' -r
complete -c image-stack -l tag -d 'Write the stack as an image with this tag, and print its manifest\'s descriptor' -r
complete -c image-stack -l rootfs -d 'Apply the stack into this directory (created if absent; must be empty)' -r -F
complete -c image-stack -s c -l change -d 'Apply a Dockerfile instruction to the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK, ONBUILD); repeatable' -r
complete -c image-stack -s m -l message -d 'The history comment of the new entries' -r
complete -c image-stack -l author -d 'The author of the image and of the new history entries' -r
complete -c image-stack -l created-by -d 'The `created_by` of the new history entries (what made the layer)' -r
complete -c image-stack -l max-json -d 'The largest JSON document read (manifest, config, index, descriptor line), in bytes; a larger one is refused, so a hostile blob cannot exhaust memory' -r
complete -c image-stack -l tar -d 'Write the union of the stack as one flat tar to stdout'
complete -c image-stack -l rootless -d 'Without root: skip chown and mknod, recording owners as umoci does, instead of failing'
complete -c image-stack -s q -l quiet -d 'Silence everything but errors'
complete -c image-stack -s h -l help -d 'Print help'
complete -c image-stack -s V -l version -d 'Print version'
# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
function __layerkit_image_word
    set -l word (commandline -ct)
    string match -q -- '*:*' $word
    and test -f (string split -m1 -- : $word)[1]/oci-layout
end
complete -c image-stack -n __layerkit_image_word -f -a '(image-stack --complete-image (commandline -ct) 2>/dev/null)'
