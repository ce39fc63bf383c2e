#!/usr/bin/env bash
# The docker commit / history / images / rmi / tag / prune walk-through, done with layerkit's
# tools on an OCI layout, without a daemon and without the network.
#
#   make demo                                  # builds the release binaries, then runs this
#   LAYERKIT_BIN_DIR=target/debug bash demo/demo.sh
#   DEMO_DIR=/tmp/demo KEEP=1 bash demo/demo.sh  # keep the layout and trees to look at
#
# It builds nothing itself. The sample root filesystem is made here from a few host binaries
# and their libraries, hand-written /etc files and a pretend httpd.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir=$(cd "${LAYERKIT_BIN_DIR:-$repo/target/release}" 2>/dev/null && pwd) || {
    echo "demo: ${LAYERKIT_BIN_DIR:-$repo/target/release} does not exist: run 'make demo' (it builds first)" >&2
    exit 2
}
export PATH="$bin_dir:$PATH"
# Timestamps are real here: image-history shows how long ago each layer was made.
unset SOURCE_DATE_EPOCH

if [ -n "${DEMO_DIR:-}" ]; then
    work=$DEMO_DIR
    mkdir -p "$work"
    if [ -n "$(ls -A "$work")" ]; then
        echo "demo: $work is not empty" >&2
        exit 2
    fi
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/layerkit-demo.XXXXXX")
fi
# A failed run may leave containers mounted: unmount them before removing anything (rm -rf
# would go into a mount and empty the layout through it).
cleanup() {
    local d
    for d in ctr c1 c2 c3; do
        if mountpoint -q "$work/$d" 2>/dev/null; then
            image-stack --unmount "$work/$d" 2>/dev/null || umount -l "$work/$d"
        fi
    done
    rm -rf "$work"
}
if [ -z "${KEEP:-}" ]; then
    trap cleanup EXIT
fi
cd "$work"

if [ -t 1 ]; then bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'; else bold='' dim='' off=''; fi
step=0
heading() {
    step=$((step + 1))
    printf '\n%s%d. %s%s\n' "$bold" "$step" "$*" "$off"
}
say() { printf '%s\n' "$*"; }
# Shows a command line, then runs it (a pipeline is given as one string).
run() {
    printf '%s$ %s%s\n' "$dim" "$1" "$off"
    eval "$1"
}
need() {
    local t
    for t in "$@"; do
        [ -x "$bin_dir/$t" ] || {
            echo "demo: step $step needs $t, which is not built in $bin_dir" >&2
            exit 2
        }
    done
}

copy_host_file() { # /usr/bin/ls -> base/usr/bin/ls (the base has merged /usr, as Debian)
    local src=$1 real dest
    real=$(readlink -f "$src")
    case $real in
        /usr/*) dest=base$real ;;
        *) dest=base/usr$real ;;
    esac
    mkdir -p "$(dirname "$dest")"
    cp -L --preserve=mode "$src" "$dest"
    case $src in # the dynamic loader is looked up by its exact path
        /lib64/*) mkdir -p base/usr/lib64 && cp -L --preserve=mode "$src" "base/usr$src" ;;
    esac
}

heading "A base root filesystem (as debootstrap would make, much smaller)"
mkdir -p base/usr/bin base/usr/sbin base/usr/lib base/usr/lib64
for d in bin sbin lib lib64; do ln -s "usr/$d" "base/$d"; done
for b in sh ls cat; do
    path=$(command -v "$b")
    copy_host_file "$path"
    for lib in $(ldd "$path" | grep -o '/[^ ]*'); do copy_host_file "$lib"; done
done
# The rest of a shell's tools, from busybox-static: containers run commands in it with chroot.
cp /bin/busybox base/usr/bin/busybox
for t in sh rm mkdir head; do [ -e "base/usr/bin/$t" ] || ln -s busybox "base/usr/bin/$t"; done
mkdir -p base/etc base/tmp base/var/log base/root
chmod 1777 base/tmp
chmod 700 base/root
printf 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n' >base/etc/passwd
printf 'root:x:0:\nwww-data:x:33:\n' >base/etc/group
printf 'PRETTY_NAME="layerkit demo base"\nID=demo\n' >base/etc/os-release
echo base >base/etc/hostname
mkdir -p base/usr/local/apache2/bin base/usr/local/apache2/conf base/usr/local/apache2/htdocs base/usr/local/apache2/logs
cat >base/usr/local/apache2/bin/httpd-foreground <<'EOF'
#!/bin/sh
# A pretend httpd: serves nothing, but an image needs something to run.
exec cat /usr/local/apache2/htdocs/index.html
EOF
chmod 755 base/usr/local/apache2/bin/httpd-foreground
printf 'Listen 80\nDocumentRoot "/usr/local/apache2/htdocs"\nUser www-data\n' >base/usr/local/apache2/conf/httpd.conf
echo '<html><body><h1>It works!</h1></body></html>' >base/usr/local/apache2/htdocs/index.html
run "du -sh base | cut -f1"

heading "Commit it as the base image store:httpd:2.4"
need layer-pack image-stack
run 'layer-pack --layout store base/ | image-stack --layer - --tag store:httpd:2.4 --created-by "debootstrap"'

heading "Unpack the image into a working tree (docker run)"
run "image-stack --from store:httpd:2.4 --rootfs web/"
run "ls web/usr/local/apache2/htdocs"

heading "Change files in the working tree"
run "echo '<html><body><h1>Hello from layerkit</h1></body></html>' > web/usr/local/apache2/htdocs/index.html"
run "mkdir -p web/usr/local/apache2/htdocs/static && echo 'body { color: teal }' > web/usr/local/apache2/htdocs/static/site.css"
run "head -c 3000000 /dev/urandom > web/tmp/site-assets.download"
run "rm web/etc/hostname"
run "echo 'ServerName web' >> web/usr/local/apache2/conf/httpd.conf"

heading "What changed? (docker diff)"
need layer-diff
run "layer-diff --list store:httpd:2.4 web/"

heading "Commit the changes as store:web:v1 (docker commit)"
run 'layer-diff store:httpd:2.4 web/ | layer-pack --layout store \
  | image-stack --from store:httpd:2.4 --layer - --tag store:web:v1 -m "Add site"'

heading "The history of store:web:v1 (docker history)"
need image-history
run "image-history store:web:v1"

heading "Clean up the download and commit store:web:v2 on top of v1"
run "rm web/tmp/site-assets.download"
run "layer-diff --list store:web:v1 web/"
run 'layer-diff store:web:v1 web/ | layer-pack --layout store \
  | image-stack --from store:web:v1 --layer - --tag store:web:v2 -m "Remove the download"'
run "image-history store:web:v2"

heading "The images and their sizes (docker images)"
need image-ls
say "Deleting a file in a later layer only hides it: v2 is no smaller than v1."
run "image-ls store"

heading "Roll back to v1 by the id image-history shows (docker tag <id>)"
run "image-history -q store:web:v2"
id=$(image-history -q store:web:v2 | sed -n 2p)
run "image-stack --from store@$id --tag store:web:rollback"
run "image-ls store"

heading "Make it smaller: squash, or commit the clean tree on the base"
say "Squashing v2 into one layer drops what its top layer hid:"
run 'image-stack --from store:web:v2 --tar | layer-pack --layout store \
  | image-stack --layer - --tag store:web:flat'
say "Or commit the clean tree in one layer on the base, as v2 should have been (the tag moves;"
say "the old v2 stays in the layout untagged, a dangling image like docker's <none>:<none>):"
run 'layer-diff store:httpd:2.4 web/ | layer-pack --layout store \
  | image-stack --from store:httpd:2.4 --layer - --tag store:web:v2 -m "Add site"'
run "image-ls store"
run "image-ls -f dangling=true store"
run "image-history store:web:v2"

heading "Remove an image (docker rmi)"
need image-prune
run "image-prune store:web:flat"

heading "Remove what no image needs (docker image prune)"
need image-prune
run "image-ls --disk-usage store"
run "image-prune --dry-run store"
run "image-prune store"
run "image-ls -a store"
run "image-history store:web:v2 > /dev/null && echo 'store:web:v2 is intact'"

# --- Containers: a mount of the image's cached layers, changed inside, committed -------------
if [ "$(id -u)" != 0 ] && ! command -v fuse-overlayfs >/dev/null; then
    say "(The container steps need root, or fuse-overlayfs: skipped.)"
else
    heading "A container from the base image: its cached layers and an upper of its own (docker run)"
    run "image-stack --from store:httpd:2.4 --mount ctr/"
    say "Each layer was extracted once into the layout's layer cache; the mount stacks them."
    run "chroot ctr/ /bin/sh -c 'echo \"<html><body><h1>Hello from a container</h1></body></html>\" > /usr/local/apache2/htdocs/index.html; mkdir /usr/local/apache2/htdocs/static; echo \"body { color: teal }\" > /usr/local/apache2/htdocs/static/site.css; rm /etc/hostname'"
    run "head -c 3000000 /dev/urandom > ctr/tmp/site-assets.download"

    heading "What changed in the container? (docker diff)"
    run "layer-diff --list store:httpd:2.4 ctr/"

    heading "Commit the container as store:app:v1, in one step (docker commit)"
    run 'image-stack --commit ctr/ --tag store:app:v1 -m "Add site"'

    heading "Clean up in the same container and commit it again as store:app:v2"
    run "chroot ctr/ /bin/sh -c 'rm /tmp/site-assets.download'"
    run 'image-stack --commit ctr/ --tag store:app:v2 -m "Add site, without the download"'
    say "Both commits sit on the container's image, so v2 no longer carries the download:"
    run "image-ls -f reference=app store"

    heading "Three containers from store:app:v2 share its layers"
    for i in 1 2 3; do
        run "image-stack --from store:app:v2 --mount c$i/"
    done
    run "chroot c1/ /bin/sh -c 'echo only in c1 > /tmp/note'; ls c2/tmp c3/tmp"
    say "The same lower directories for all three: three file systems of the image, one copy"
    say "of its layers on disk, the layer cache:"
    run "image-ls --disk-usage store"

    heading "Unmount the containers and prune (docker rm, docker image prune)"
    run "for d in ctr c1 c2 c3; do image-stack --unmount \$d/; done"
    run "image-prune store"
    run "image-history store:app:v2"
fi

printf '\n%sDone.%s' "$bold" "$off"
if [ -n "${KEEP:-}" ]; then printf ' The layout and trees are in %s\n' "$work"; else printf '\n'; fi
