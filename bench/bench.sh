#!/usr/bin/env bash
# make bench: our tools against their peers, timed alternately in one run (hyperfine), with
# peak memory from /usr/bin/time -v. Corpora are made once and cached in bench/cache/.
# Writes bench/results.md. Benchmarks measure; tests never time anything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BENCH_BIN:-$ROOT/target/release}
CACHE=${BENCH_CACHE:-$ROOT/bench/cache}
RUNS=${BENCH_RUNS:-3}
# A partial run (BENCH_ONLY) leaves the full run's results alone.
OUT=${BENCH_OUT:-$ROOT/bench/results.md}
[ -n "${BENCH_OUT:-}" ] || [ -z "${BENCH_ONLY:-}" ] || OUT=$CACHE/results-only.md
export PATH="$BIN:$PATH"
unset SOURCE_DATE_EPOCH

for c in hyperfine umoci debootstrap pigz zstd openssl jq /usr/bin/time; do
  command -v "$c" >/dev/null 2>&1 || { echo "bench: $c is missing (run make peers as root)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (debootstrap, overlay mounts, chown)" >&2; exit 2; }
mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/run.XXXXXX")
cleanup() {
  umount "$WORK/merged" "$WORK/tmpfs" 2>/dev/null || true
  # image-stack mounts (and buildah's) before anything is removed: rm -rf would go into them.
  local m
  for m in $(awk -v w="$WORK/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '\n== %s\n' "$*" >&2; }

# --- corpora -------------------------------------------------------------------------------
# The Debian mirror comes from this machine's apt sources: never a host name written here.
mirror() {
  local m
  m=$(grep -hoE '^URIs:\s*\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1)
  [ -n "$m" ] || m=$(grep -hoE '^deb\s+\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1)
  echo "$m"
}

DEBIAN=$CACHE/debian
if [ ! -f "$DEBIAN/.done" ]; then
  log "making the Debian corpus (debootstrap --variant=minbase bookworm)"
  rm -rf "$DEBIAN"
  debootstrap --variant=minbase bookworm "$DEBIAN" "$(mirror)" >&2
  touch "$DEBIAN/.done"
fi

# A container-style change: thousands of files added, some changed, some deleted, chmod,
# chown, an xattr, a hard link and type changes.
make_change() { # $1 = tree to change in place
  local t=$1
  mkdir -p "$t/opt/app"
  cp -a "$t/usr/share/doc" "$t/opt/app/doc"
  cp -a "$t/usr/share/zoneinfo" "$t/opt/app/zoneinfo" 2>/dev/null || true
  echo "changed" >> "$t/etc/os-release"
  echo "127.0.0.2 bench" >> "$t/etc/hosts"
  rm -rf "$t/usr/share/man" "$t/var/cache/apt"
  rm -f "$t/usr/bin/tic"
  chmod 4755 "$t/usr/bin/env"
  chown 1000:1000 "$t/etc/hostname"
  setfattr -n user.bench -v yes "$t/etc/passwd" 2>/dev/null || true
  ln "$t/usr/bin/dpkg" "$t/opt/app/dpkg-hardlink"
  rm -rf "$t/usr/share/common-licenses" && ln -s /usr/share/doc "$t/usr/share/common-licenses"
  rm -f "$t/etc/motd" && mkdir "$t/etc/motd"
}

UPPER=$CACHE/debian-changed
if [ ! -f "$UPPER/.done" ]; then
  log "making the changed Debian tree"
  rm -rf "$UPPER"; cp -a "$DEBIAN" "$UPPER"; rm -f "$UPPER/.done"
  make_change "$UPPER"
  touch "$UPPER/.done"
fi

# A large container-style change: the usual edits plus copies of /usr/lib and /usr/share under
# /opt (about 5,500 added files, a layer of about 100 MB): where compression, not the diff,
# decides the commit's time.
UPPER_BIG=$CACHE/debian-changed-big
make_big_change() { # $1 = tree to change in place
  mkdir -p "$1/opt/big"
  cp -a "$1/usr/lib" "$1/usr/share" "$1/opt/big/"
  make_change "$1"
}
if [ ! -f "$UPPER_BIG/.done" ]; then
  log "making the largely changed Debian tree"
  rm -rf "$UPPER_BIG"; cp -a "$DEBIAN" "$UPPER_BIG"; rm -f "$UPPER_BIG/.done"
  make_big_change "$UPPER_BIG"
  touch "$UPPER_BIG/.done"
fi

SYNTH=$CACHE/synthetic
if [ ! -f "$SYNTH/.done" ]; then
  log "making the synthetic tree (~100,000 small files + a few large ones, ~1.5 GB)"
  rm -rf "$SYNTH"; mkdir -p "$SYNTH"
  python3 - "$SYNTH" <<'PY'
import os, sys, random
root = sys.argv[1]
rnd = random.Random(42)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz ") for _ in range(rnd.randint(3, 12))) for _ in range(4000)]
for d in range(200):
    dd = os.path.join(root, "d%03d" % d)
    os.makedirs(dd)
    for f in range(500):
        body = b" ".join(rnd.choice(words) for _ in range(rnd.randint(5, 400)))
        with open(os.path.join(dd, "f%04d.txt" % f), "wb") as fh:
            fh.write(body)
# Large files: part text, part random, so they compress about like real binaries.
for i in range(3):
    with open(os.path.join(root, "large%d.bin" % i), "wb") as fh:
        for _ in range(480):
            fh.write(os.urandom(1 << 19))
            fh.write(b" ".join(rnd.choice(words) for _ in range(60000))[: 1 << 19])
PY
  touch "$SYNTH/.done"
fi
SYNTH_UP=$CACHE/synthetic-touched
if [ ! -f "$SYNTH_UP/.done" ]; then
  rm -rf "$SYNTH_UP"; cp -al "$SYNTH" "$SYNTH_UP"; rm -f "$SYNTH_UP/.done"
  for i in $(seq 0 99); do
    f=$SYNTH_UP/d$(printf %03d $((i * 2)))/f0007.txt
    rm -f "$f"; echo "touched $i" > "$f"
  done
  touch "$SYNTH_UP/.done"
fi

# --- helpers ------------------------------------------------------------------------------
# Fields of ROWS and MEM: names and targets contain '|'.
SEP=$'\x1f'
ROWS=()
bench() { # name, target-text, then hyperfine args (ours first); also our command's peak memory
  local name=$1 target=$2; shift 2
  log "$name"
  local json=$WORK/$(echo "$name" | tr -c 'a-zA-Z0-9' _).json
  # Every run starts with the page cache written back (sync, untimed): the corpora and layouts
  # made just before would otherwise still be flushing to disk during the first jobs' runs.
  local args=() a
  local synced=""
  while [ $# -gt 0 ]; do
    a=$1; shift
    if [ "$a" = --prepare ]; then args+=(--prepare "sync; $1"); shift; synced=1; else args+=("$a"); fi
  done
  [ -n "$synced" ] || args=(--prepare sync "${args[@]}")
  set -- "${args[@]}"
  hyperfine --style basic --runs "$RUNS" --export-json "$json" "$@" >&2
  ROWS+=("$name$SEP$target$SEP$json")
  local prepare="" ours=""
  while [ $# -gt 0 ]; do
    case $1 in
      --prepare) prepare=$2; shift 2 ;;
      *) ours=$1; break ;;
    esac
  done
  [ -z "$prepare" ] || bash -c "$prepare" >/dev/null 2>&1
  MEM+=("$name$SEP$(peak_mb "$ours")")
}
peak_mb() { # peak RSS of one run of a shell command, in MB
  /usr/bin/time -v bash -c "$1" 2>&1 >/dev/null | awk -F: '/Maximum resident/ {printf "%.0f", $2/1024}'
}
MEM=()
# Output sizes beside the times: sizes NAME BYTES... (one per command of the row, in order; - for
# a command whose output is no layer).
declare -A SIZES=()
sizes() { local name=$1 i=0; shift; for b in "$@"; do SIZES[$name$SEP$i]=$b; i=$((i + 1)); done; }
# The size of the top layer of the image tagged $2 in layout $1.
top_layer_size() {
  jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t) | .digest' "$1/index.json" \
    | cut -d: -f2 | xargs -I{} jq -r '.layers[-1].size' "$1/blobs/sha256/{}"
}
SIZE_NOTE=""
# BENCH_ONLY=REGEX runs only the rows whose name matches (while working on one of them).
want() { [[ -z ${BENCH_ONLY:-} || $1 =~ ${BENCH_ONLY} || ${BENCH_ONLY} =~ $1 ]]; }

L=$WORK/layout
new_layout() { rm -rf "$L"; layer-pack --layout "$L" "$DEBIAN" | image-stack --layer - --tag "$L:base" >/dev/null; }

# --- rows ---------------------------------------------------------------------------------
if want 'commit a change'; then
new_layout
rm -rf "$WORK/bundle"; umoci unpack --image "$L:base" "$WORK/bundle" >/dev/null 2>&1
make_change "$WORK/bundle/rootfs"
bench "commit a change (diff + gzip pack), Debian" "≥ 4× faster than umoci repack" \
  "layer-diff $DEBIAN $UPPER | layer-pack --layout $L >/dev/null" \
  "umoci repack --image $L:umoci-new $WORK/bundle"
ours=$(layer-diff "$DEBIAN" "$UPPER" | layer-pack --layout "$L" | jq -r .size)
theirs=$(top_layer_size "$L" umoci-new)
sizes "commit a change (diff + gzip pack), Debian" "$ours" "$theirs"
ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.3f", a / b}')
met=$(awk -v r="$ratio" 'BEGIN {print (r <= 1.05) ? "met" : "MISSED"}')
SIZE_NOTE="Debian commit layer size: ours $ours B, umoci repack's $theirs B: ratio $ratio (target ≤ 1.05: $met)."
fi

if want 'large change'; then
new_layout
rm -rf "$WORK/bundle-big"; umoci unpack --image "$L:base" "$WORK/bundle-big" >/dev/null 2>&1
make_big_change "$WORK/bundle-big/rootfs"
name="commit a large change ($(layer-diff --list "$DEBIAN" "$UPPER_BIG" | wc -l) paths, diff + gzip pack), Debian"
bench "$name" "≥ 4× faster than umoci repack, layer no larger" \
  "layer-diff $DEBIAN $UPPER_BIG | layer-pack --layout $L >/dev/null" \
  "umoci repack --image $L:umoci-big $WORK/bundle-big"
ours=$(layer-diff "$DEBIAN" "$UPPER_BIG" | layer-pack --layout "$L" | jq -r .size)
sizes "$name" "$ours" "$(top_layer_size "$L" umoci-big)"
rm -rf "$WORK/bundle-big"
fi

if want 'commit 100|prune'; then
SL=$WORK/synth-layout
rm -rf "$SL"; layer-pack --layout "$SL" "$SYNTH" | image-stack --layer - --tag "$SL:base" >/dev/null
fi
if want 'commit 100'; then
rm -rf "$WORK/sbundle"; umoci unpack --image "$SL:base" "$WORK/sbundle" >/dev/null 2>&1
for i in $(seq 0 99); do f=$WORK/sbundle/rootfs/d$(printf %03d $((i * 2)))/f0007.txt; rm -f "$f"; echo "touched $i" > "$f"; done
bench "commit 100 touched files, 1.5 GB synthetic tree" "≥ 20× faster than umoci repack" \
  "layer-diff $SYNTH $SYNTH_UP | layer-pack --layout $SL >/dev/null" \
  "umoci repack --image $SL:umoci-new $WORK/sbundle"
fi

if want 'overlay'; then
mkdir -p "$WORK/ov-upper" "$WORK/ov-work" "$WORK/merged"
mount -t overlay overlay -o "lowerdir=$DEBIAN,upperdir=$WORK/ov-upper,workdir=$WORK/ov-work" "$WORK/merged"
make_change "$WORK/merged"
bench "commit from an overlay upper dir" "time grows with the change, not the tree" \
  "layer-diff --overlay $WORK/ov-upper >/dev/null" \
  "layer-diff $DEBIAN $WORK/merged >/dev/null"
umount "$WORK/merged"
# The same kind of commit over a tree 8 times the files and 7 times the bytes, with a change
# of 100 files: the overlay commit's time follows the change; the full diff's, the tree.
rm -rf "$WORK/ov-upper" "$WORK/ov-work"; mkdir -p "$WORK/ov-upper" "$WORK/ov-work"
mount -t overlay overlay -o "lowerdir=$SYNTH,upperdir=$WORK/ov-upper,workdir=$WORK/ov-work" "$WORK/merged"
for i in $(seq 0 99); do echo "touched $i" > "$WORK/merged/d$(printf %03d $((i * 2)))/f0007.txt"; done
bench "commit from an overlay upper dir, 1.5 GB synthetic tree, 100 files changed" "time grows with the change, not the tree" \
  "layer-diff --overlay $WORK/ov-upper >/dev/null" \
  "layer-diff $SYNTH $WORK/merged >/dev/null"
umount "$WORK/merged"
fi

if want 'gzip'; then
bench "pack a directory (gzip)" "≥ 2× faster than umoci insert, blob no larger; faster than tar|pigz" \
  --prepare "rm -rf $WORK/pl; umoci init --layout $WORK/pl && umoci new --image $WORK/pl:t" \
  "layer-pack --layout $WORK/pl $DEBIAN >/dev/null" \
  "umoci insert --image $WORK/pl:t $DEBIAN /" \
  "tar -C $DEBIAN -c . | pigz -6 > /dev/null"
# The timed runs' outputs are gone (each run's prepare removes the last one's): once more each.
rm -rf "$WORK/pl"; umoci init --layout "$WORK/pl" && umoci new --image "$WORK/pl:t" && umoci insert --image "$WORK/pl:t" "$DEBIAN" / >/dev/null
sizes "pack a directory (gzip)" "$(layer-pack --layout "$WORK/pl" "$DEBIAN" | jq -r .size)" \
  "$(top_layer_size "$WORK/pl" t)" "$(tar -C "$DEBIAN" -c . | pigz -6 | wc -c)"
fi
if want 'zstd'; then
# The second peer writes its output as a layer must be written, to a file made durable (sync):
# layer-pack fsyncs every blob before it renames it into the layout.
bench "pack a directory (zstd)" "≤ 1.1× tar|zstd -3 -T0" \
  --prepare "rm -rf $WORK/pz $WORK/peer.zst" \
  "layer-pack --compress zstd --layout $WORK/pz $DEBIAN >/dev/null" \
  "tar -C $DEBIAN -c . | zstd -3 -T0 -q > /dev/null" \
  "tar -C $DEBIAN -c . | zstd -3 -T0 -q > $WORK/peer.zst && sync $WORK/peer.zst"
zsize=$(tar -C "$DEBIAN" -c . | zstd -3 -T0 -q | wc -c)
sizes "pack a directory (zstd)" "$(layer-pack --compress zstd --layout "$WORK/pz" "$DEBIAN" | jq -r .size)" "$zsize" "$zsize"
fi
if want 'uncompressed'; then
bench "pack uncompressed (1.5 GB synthetic)" "≥ 80% of openssl's sha256 throughput" \
  --prepare "rm -rf $WORK/pn $WORK/peer.tar" \
  "layer-pack --compress none --layout $WORK/pn $SYNTH >/dev/null" \
  "tar -C $SYNTH -c . | sha256sum >/dev/null" \
  "tar -C $SYNTH -c . | openssl dgst -sha256 >/dev/null" \
  "tar -C $SYNTH -c . | tee $WORK/peer.tar | openssl dgst -sha256 >/dev/null && sync $WORK/peer.tar"
sizes "pack uncompressed (1.5 GB synthetic)" "$(layer-pack --compress none --layout "$WORK/pn" "$SYNTH" | jq -r .size)" \
  - - "$(tar -C "$SYNTH" -c . | wc -c)"
fi

if want 'unpack|flatten'; then
new_layout
layer-diff "$DEBIAN" "$UPPER" | layer-pack --layout "$L" | image-stack --from "$L:base" --layer - --tag "$L:v1" >/dev/null
layers=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="v1") | .digest' "$L/index.json" \
  | cut -d: -f2 | xargs -I{} jq -r '.layers[].digest' "$L/blobs/sha256/{}" | cut -d: -f2 | tr '\n' ' ')
fi
if want 'unpack'; then
# Into a tmpfs, as a container runtime's scratch space often is: the time is the tools', not
# the disk's writeback.
T=$WORK/tmpfs
mkdir -p "$T"; mount -t tmpfs -o size=4g tmpfs "$T"
untar_cmd="mkdir $T/u3; for l in $layers; do gzip -dc $L/blobs/sha256/\$l | tar -x -C $T/u3 --numeric-owner --recursive-unlink; done"
bench "unpack a 2-layer image into tmpfs" "≥ 3× umoci raw unpack; ≤ 1.2× gzip -dc|tar -x" \
  --prepare "rm -rf $T/u1 $T/u2 $T/u3" \
  "image-stack --from $L:v1 --rootfs $T/u1" \
  "umoci raw unpack --image $L:v1 $T/u2" \
  "$untar_cmd"
rm -rf "$T"/u*; umount "$T"
fi
if want 'flatten'; then
bench "flatten to one tar" "≥ 2× unpack + tar -c" \
  --prepare "rm -rf $WORK/u2" \
  "image-stack --from $L:v1 --tar > /dev/null" \
  "image-stack --from $L:v1 --rootfs $WORK/u2 && tar -C $WORK/u2 -c . > /dev/null"
fi

# Prune: a 1.5 GB layout holding one small dangling image; each run gets a hard-linked copy.
if want 'prune'; then
PL=$WORK/prune-big
rm -rf "$PL"; cp -al "$SL" "$PL"
echo small > "$WORK/small.txt"; mkdir -p "$WORK/smalltree"; cp "$WORK/small.txt" "$WORK/smalltree/"
layer-pack --layout "$PL" "$WORK/smalltree" | image-stack --layer - --tag "$PL:tmp" >/dev/null
layer-pack --layout "$PL" "$WORK/smalltree" | image-stack --layer - --tag "$PL:tmp" -m again >/dev/null
bench "prune a 1.5 GB layout holding one small dangling image" "≥ 10× faster than umoci gc" \
  --prepare "rm -rf $WORK/pc && cp -al $PL $WORK/pc" \
  "image-prune -q $WORK/pc" \
  "umoci gc --layout $WORK/pc"
fi
if want '10,000'; then
P10=$WORK/prune-10k
rm -rf "$P10"; cp -al "$PL" "$P10"
python3 - "$P10" <<'PY'
import hashlib, os, sys
root = sys.argv[1]
for i in range(10000):
    data = b"orphan blob %d\n" % i
    h = hashlib.sha256(data).hexdigest()
    p = os.path.join(root, "blobs/sha256", h)
    with open(p, "wb") as f:
        f.write(data)
    os.utime(p, (1, 1))
PY
bench "prune 10,000 blobs" "≥ 2× faster than umoci gc" \
  --prepare "rm -rf $WORK/pc && cp -al $P10 $WORK/pc" \
  "image-prune -q --grace 0 $WORK/pc" \
  "umoci gc --layout $WORK/pc"
fi

# --- containers: image-stack --mount (layer cache + overlay) against buildah ------------------
# buildah keeps its own storage (containers/storage, overlay driver) under a private root in
# WORK; the images come into it from our layout (oci: transport), untimed, once.
MOUNT_NOTE=""
if want 'mount|run, change'; then
for c in buildah skopeo; do
  command -v $c >/dev/null 2>&1 || { echo "bench: $c is missing (run make peers as root)" >&2; exit 2; }
done
BAH="buildah --root $WORK/buildah/root --runroot $WORK/buildah/run --storage-driver overlay"
# Into buildah's storage under a name of ours (buildah pull would name it after the path).
STORE="containers-storage:[overlay@$WORK/buildah/root+$WORK/buildah/run]localhost"
import_image() { skopeo copy -q "oci:$1" "$STORE/$2:latest" >/dev/null; }
cat > "$WORK/change100.sh" <<'SH'
for i in $(seq 0 99); do echo "touched $i" > "$1/d$(printf %03d $((i * 2)))/f0007.txt"; done
SH
fi
if want 'mount'; then
new_layout
bench "first mount of the Debian image (extract the layers, mount)" "≤ 1.1× image-stack --rootfs" \
  --prepare "image-stack --unmount $WORK/m1 2>/dev/null; rm -rf $L/.layerkit $WORK/r1; $BAH rm -a >/dev/null 2>&1; $BAH rmi -af >/dev/null 2>&1; true" \
  "image-stack -q --from $L:base --mount $WORK/m1 >/dev/null" \
  "image-stack -q --from $L:base --rootfs $WORK/r1" \
  "skopeo copy -q oci:$L:base '$STORE/bench-base:latest' && $BAH mount \$($BAH from -q localhost/bench-base) >/dev/null"
# (bench's memory run left m1 mounted: the layers are cached either way.)
mountpoint -q "$WORK/m1" || image-stack -q --from "$L:base" --mount "$WORK/m1" >/dev/null
import_image "$L:base" bench-base
bench "a second mount of the same image" "< 50 ms whatever the image's size" \
  --prepare "image-stack --unmount $WORK/m2 2>/dev/null; $BAH rm c2 >/dev/null 2>&1; true" \
  "image-stack -q --from $L:base --mount $WORK/m2 >/dev/null" \
  "$BAH from -q --name c2 localhost/bench-base >/dev/null && $BAH mount c2 >/dev/null"
image-stack --unmount "$WORK/m2" 2>/dev/null || true
# Ten containers of one image: the cache and ten uppers against one unpacked copy.
rm -rf "$WORK/r1"; image-stack -q --from "$L:base" --rootfs "$WORK/r1"
for i in $(seq 2 10); do image-stack -q --from "$L:base" --mount "$WORK/m$i" >/dev/null; done
ours=$(du -sxB1 "$L/.layerkit" | cut -f1)
one=$(du -sxB1 "$WORK/r1" | cut -f1)
$BAH rm -a >/dev/null
for i in $(seq 1 10); do $BAH mount "$($BAH from -q localhost/bench-base)" >/dev/null; done
theirs=$(du -sxB1 "$WORK/buildah/root" | cut -f1)
ratio=$(awk -v a="$ours" -v b="$one" 'BEGIN {printf "%.3f", a / b}')
met=$(awk -v r="$ratio" 'BEGIN {print (r < 1.1) ? "met" : "MISSED"}')
MOUNT_NOTE="Disk use of ten mounts of the Debian image: ours $ours B (layer cache + ten uppers), one --rootfs copy $one B: ratio $ratio (target < 1.1: $met); buildah's storage with the image and ten mounted containers: $theirs B."
for i in $(seq 1 10); do image-stack --unmount "$WORK/m$i"; done
$BAH rm -a >/dev/null
fi
if want 'run, change'; then
RL=$WORK/rc-layout
rm -rf "$RL"; layer-pack -q --layout "$RL" "$SYNTH" | image-stack --layer - --tag "$RL:base" >/dev/null
image-stack -q --from "$RL:base" --mount "$WORK/warm" >/dev/null && image-stack --unmount "$WORK/warm"
import_image "$RL:base" bench-synth
bench "run, change 100 files, commit: 1.5 GB synthetic tree" "≥ 20× faster than unpack + full diff" \
  --prepare "image-stack --unmount $WORK/rc 2>/dev/null; rm -rf $WORK/rcu; $BAH rm -a >/dev/null 2>&1; true" \
  "image-stack -q --from $RL:base --mount $WORK/rc >/dev/null && bash $WORK/change100.sh $WORK/rc && image-stack -q --commit $WORK/rc --tag $RL:rc >/dev/null && image-stack --unmount $WORK/rc" \
  "image-stack -q --from $RL:base --rootfs $WORK/rcu && bash $WORK/change100.sh $WORK/rcu && layer-diff $RL:base $WORK/rcu | layer-pack -q --layout $RL | image-stack --from $RL:base --layer - --tag $RL:rcu >/dev/null" \
  "c=\$($BAH from -q localhost/bench-synth) && bash $WORK/change100.sh \$($BAH mount \$c) && $BAH commit -q \$c bench-rc >/dev/null"
fi

# --- report -------------------------------------------------------------------------------
{
  echo "# Benchmark results"
  echo
  echo "Measured by \`make bench\` on $(date -u +%Y-%m-%d): $(nproc) cores ($(lscpu | sed -n 's/^Model name:\s*//p' | head -1)),"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB memory, kernel $(uname -r); $RUNS runs per command, medians in seconds."
  echo "Peers: umoci $(umoci --version | awk '{print $3}'), $(pigz --version 2>&1), $(zstd --version | head -1), $(openssl version)."
  echo
  echo "| job | command | median s | ratio to ours | cpu s (user+sys) | layer MB | target |"
  echo "|---|---|---|---|---|---|---|"
  for row in "${ROWS[@]}"; do
    IFS=$SEP read -r name target json <<<"$row"
    ours=$(jq '.results[0].median' "$json")
    bytes=$(for i in $(seq 0 $(($(jq '.results | length' "$json") - 1))); do echo "${SIZES[$name$SEP$i]:--}"; done | jq -R . | jq -s -c .)
    jq -r --arg name "$name" --arg target "$target" --argjson ours "$ours" --argjson bytes "$bytes" \
      '.results | to_entries[] | .key as $i | .value | "| \($name) | `\(.command | gsub("\\|"; "\\\\|") | .[0:90])` | \(.median * 1000 | round / 1000) | \(.median / $ours * 100 | round / 100)× | \((.user + .system) * 100 | round / 100) | \($bytes[$i] | tonumber? // null | if . == null then "—" else . / 1e4 | round / 100 | tostring end) | \($target) |"' "$json"
  done
  echo
  echo "$SIZE_NOTE"
  echo
  [ -z "$MOUNT_NOTE" ] || { echo "$MOUNT_NOTE"; echo; }
  echo "Peak memory of our command in each job (\`/usr/bin/time -v\`, one run after the timed ones); target < 100 MB:"
  echo
  echo "| job | peak MB | < 100 MB |"
  echo "|---|---|---|"
  for m in "${MEM[@]}"; do
    IFS=$SEP read -r what mb <<<"$m"
    echo "| $what | ${mb:-?} | $([ -n "$mb" ] && [ "$mb" -lt 100 ] && echo yes || echo '**no**') |"
  done
} > "$OUT"
cat "$OUT"
