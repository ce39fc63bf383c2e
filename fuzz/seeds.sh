#!/usr/bin/env bash
# Writes the seed corpus, fuzz/corpus/<target>/seed-*, from what the tests feed the tools: a
# small tree made into layers (additions, changes, whiteouts, an opaque directory, hard links,
# symlinks, long names, xattrs) by our own binaries, the layout they commit, and the refs,
# descriptors and --change lines of the tests. Needs the debug binaries (cargo build).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PWD/../target/debug:$PATH" SOURCE_DATE_EPOCH=1600000000
out="$PWD/corpus"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir -p lower/etc lower/var/cache lower/usr/lib
echo root > lower/etc/passwd; echo a > lower/var/cache/a; echo b > lower/var/cache/b
echo lib > lower/usr/lib/libx.so.1; ln lower/usr/lib/libx.so.1 lower/usr/lib/libx-hard.so
ln -s /usr/lib lower/lib; ln -s ../etc/passwd lower/etc/passwd-link
cp -a lower upper
echo changed > upper/etc/passwd; rm -r upper/var/cache/*; rm upper/etc/passwd-link
mkdir -p "upper/opt/$(printf 'd%.0s' {1..120})"; echo long > "upper/opt/$(printf 'd%.0s' {1..120})/$(printf 'f%.0s' {1..120})"
echo x > upper/opt/tagged; setfattr -n user.layerkit -v v upper/opt/tagged 2>/dev/null || true
mkfifo upper/fifo; chmod 4755 upper/etc/passwd
empty=$(mktemp -d)
layer-diff "$empty" lower > base.tar
layer-diff lower upper > changes.tar
layer-diff --opaque lower upper > opaque.tar
layer-diff "$empty" "$empty" > empty.tar
mkdir -p "$out"/{tar_changeset,apply,refs,change,layout}
sep=--layerkit-fuzz-layer--
for t in base changes opaque empty; do cp $t.tar "$out/tar_changeset/seed-$t.tar"; done
# PAX sparse files (issue 18): GNU tar's three formats, and hand-made hostile maps.
mkdir sparse
python3 -c "
f = open('sparse/holes', 'wb'); f.write(b'head'); f.seek(100000); f.write(b'mid'); f.seek(1 << 20); f.write(b'end\n')
f = open('sparse/tailhole', 'wb'); f.write(b'x' * 5000); f.truncate(3 << 20)"
for v in 0.0 0.1 1.0; do
  tar -S --sparse-version=$v --format=posix --pax-option=delete=atime,delete=ctime --numeric-owner --mtime=@0 -C sparse -cf "$out/tar_changeset/seed-sparse-$v.tar" holes tailhole
done
python3 - "$out/tar_changeset" <<'EOF'
import io, sys, tarfile
def entry(name, records, data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo('GNUSparseFile.0/f')
        info.size, info.pax_headers = len(data), records
        t.addfile(info, io.BytesIO(data))
    open(f'{sys.argv[1]}/seed-sparse-hostile-{name}.tar', 'wb').write(buf.getvalue())
v01 = lambda size, n, m: {'GNU.sparse.size': size, 'GNU.sparse.numblocks': n, 'GNU.sparse.name': 'f', 'GNU.sparse.map': m}
v10 = {'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 'f', 'GNU.sparse.realsize': '100'}
block = lambda text: text.encode().ljust(512, b'\0')
entry('order', v01('200', '2', '100,10,50,10'), b'x' * 20)
entry('overlap', v01('200', '2', '0,100,50,10'), b'x' * 110)
entry('past-size', v01('100', '2', '0,10,95,10'), b'x' * 20)
entry('overflow', v01('100', '1', '9223372036854775807,1'), b'x')
entry('not-decimal', v01('100', '1', '0x10,1'), b'x')
entry('count', v01('100', '3', '0,1'), b'x')
entry('pairs-order', {'GNU.sparse.size': '10', 'GNU.sparse.numblocks': '1', 'GNU.sparse.numbytes': '1', 'GNU.sparse.offset': '0'}, b'x')
entry('1.0-many', v10, block('1048577\n'))
entry('1.0-cut', v10, block('3\n0\n1\n')[:100])
entry('1.0-size', v10, block('1\n0\n5\n') + b'x' * 700)
entry('version', dict(v10, **{'GNU.sparse.major': '2'}), block('0\n'))
EOF
cp base.tar "$out/apply/seed-base.tar"
{ cat base.tar; printf %s $sep; cat changes.tar; } > "$out/apply/seed-two-layers"
{ cat base.tar; printf %s $sep; cat opaque.tar; printf %s $sep; cat empty.tar; } > "$out/apply/seed-three-layers"
# apply_root: the same, and (as root) a layer of what only root applies: a device node, foreign
# owners and a trusted.* xattr.
mkdir -p "$out/apply_root"
cp "$out"/apply/seed-* "$out/apply_root/"
if [ "$(id -u)" = 0 ]; then
  cp -a upper privileged
  mknod privileged/null c 1 3; chown 1000:1001 privileged/opt/tagged
  setfattr -n trusted.layerkit -v t privileged/opt/tagged
  layer-diff lower privileged > privileged.tar
  { cat base.tar; printf %s $sep; cat privileged.tar; } > "$out/apply_root/seed-privileged"
fi
layer-pack --layout store base.tar > base.json
layer-pack --layout store --compress zstd changes.tar > changes.json
image-stack --layer base.json --tag store:base --created-by debootstrap > /dev/null
image-stack --from store:base --layer changes.json --tag store:web:v1 -m "Add site" \
  -c 'CMD ["httpd-foreground"]' -c 'EXPOSE 80/tcp' -c 'ENV A=1 B="two words"' > web.json
cat base.json changes.json > "$out/refs/seed-descriptors"
cp web.json "$out/refs/seed-manifest-descriptor"
digest=$(jq -r .digest web.json)
printf '%s\n' store store:web:v1 "store@$digest" s:library/httpd:2.4 's:a--b' 's:a@b+c' "$digest" \
  linux/amd64 linux/arm64/v8 > "$out/refs/seed-refs"
printf '%s\n' 'CMD ["httpd-foreground"]' 'ENTRYPOINT /bin/sh -c' 'ENV A=1 B="two words" C=$A' \
  'EXPOSE 80 443/udp 8000-8010' 'LABEL a=b "c d"=e' 'USER www:www' 'VOLUME ["/data"]' \
  'WORKDIR /srv' 'WORKDIR $A/x' 'STOPSIGNAL SIGTERM' \
  'HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD curl -f http://localhost/ || exit 1' \
  'ONBUILD RUN make' > "$out/change/seed-all"
{ echo '{"config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}'
  printf 'ENV PATH=$PATH:/usr/local/bin\0CMD echo \\\n  continued\0# comment\nUSER 0' ; } > "$out/change/seed-config"
# The layout target: index.json, manifest and config with the digests as placeholders.
manifest=$(jq -r .digest web.json)
mjson=$(cat "store/blobs/sha256/${manifest#sha256:}")
config=$(jq -r .config.digest <<<"$mjson")
{ jq -c '.manifests |= map(if .digest == "'"$manifest"'" then .digest = "@MANIFEST@" | .size = "@MANIFEST_SIZE@" else . end)' store/index.json
  printf %s --layerkit-fuzz-blob--
  jq -c '.config.digest = "@CONFIG@" | .config.size = "@CONFIG_SIZE@"' <<<"$mjson" | tr -d '\n'
  printf %s --layerkit-fuzz-blob--
  cat "store/blobs/sha256/${config#sha256:}"; } > "$out/layout/seed-web"
du -sh "$out"
