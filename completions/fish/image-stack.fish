complete -c image-stack -l from -d 'The base image (LAYOUT:REF, LAYOUT, LAYOUT@sha256:…, LAYOUT@ID); default: empty (scratch)' -r
complete -c image-stack -l platform -d 'The platform to pick from a multi-platform base, or to record for a scratch image' -r
complete -c image-stack -l layer -d 'A file of LAYER DESCRIPTORs (JSON Lines, `-` for stdin), stacked in order; repeatable' -r -F
complete -c image-stack -l drop -d 'Remove the base image\'s top N layers and their history before stacking' -r
complete -c image-stack -l tag -d 'Write the stack as an image with this tag, and print its manifest\'s descriptor' -r
complete -c image-stack -l rootfs -d 'Apply the stack into this directory (created if absent; must be empty)' -r -F
complete -c image-stack -l mount -d 'Mount the image at DIR (created if absent; must be empty): an overlay of its layers, each extracted once into the layout\'s layer cache, with a fresh upper directory of its own; prints one JSON line (image, manifest, mount, upper, work, lower, driver). As root the kernel\'s overlayfs, else fuse-overlayfs (LAYERKIT_MOUNT_DRIVER=overlay|fuse-overlayfs chooses)' -r -F
complete -c image-stack -l unmount -d 'Unmount an image-stack mount and remove its upper and work directories' -r -F
complete -c image-stack -l commit -d 'With --tag: commit DIR in one step (docker commit): the changes of a mount (its image is the base), or of a directory against --from IMAGE' -r -F
complete -c image-stack -s c -l change -d 'Apply a Dockerfile instruction to the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK, ONBUILD); repeatable' -r
complete -c image-stack -s m -l message -d 'The history comment of the new entries' -r
complete -c image-stack -s a -l author -d 'The author of the image and of the new history entries' -r
complete -c image-stack -l created-by -d 'The `created_by` of the new history entries (what made the layer)' -r
complete -c image-stack -l max-json -d 'The largest JSON document read (manifest, config, index, descriptor line), in bytes; a larger one is refused, so a hostile blob cannot exhaust memory' -r
complete -c image-stack -l rebase -d 'Restack the --from image\'s own layers (those above its base) on NEWBASE, with their history; the config is NEWBASE\'s plus the image\'s own changes. Reads no layer' -r
complete -c image-stack -l old-base -d 'With --rebase: the image\'s old base, when its manifest does not record it (org.opencontainers.image.base.digest)' -r
complete -c image-stack -l squash-above -d 'Keep BASE\'s layers (the same blobs) and squash the --from image\'s layers above them into one' -r
complete -c image-stack -l squash -d 'Squash the --from image\'s top N layers into one' -r
complete -c image-stack -l compress -d 'With --squash or --squash-above: the squashed layer\'s compression [default: gzip]' -r -f -a "gzip\t''
zstd\t''
none\t''"
complete -c image-stack -l level -d 'With --squash or --squash-above: the compression level (gzip 0-9, default 6; zstd 1-22, default 3)' -r
complete -c image-stack -l tar -d 'Write the union of the stack as one flat tar to stdout'
complete -c image-stack -l rootless -d 'Without root: skip chown and mknod, recording owners as umoci does, instead of failing'
complete -c image-stack -s q -l quiet -d 'Silence everything but errors'
complete -c image-stack -l dry-run -d 'With --rebase: print the new image\'s layers (JSON Lines) and the config conflicts, and write nothing'
complete -c image-stack -s h -l help -d 'Print help'
complete -c image-stack -s V -l version -d 'Print version'
# IMAGE words: LAYOUT:PREFIX, where LAYOUT is an OCI image layout, complete to its tags.
function __layerkit_image_word
    set -l word (commandline -ct)
    string match -q -- '*:*' $word
    and test -f (string split -m1 -- : $word)[1]/oci-layout
end
complete -c image-stack -n __layerkit_image_word -f -a '(image-stack --complete-image (commandline -ct) 2>/dev/null)'
