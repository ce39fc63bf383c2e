//! The hand-written parts of the man pages, from the contract (docs/CLI.md): what clap's help text
//! does not say.

pub struct Page {
    pub name: &'static str,
    /// Paragraphs added after the DESCRIPTION clap renders.
    pub description: &'static [&'static str],
    pub exit_status: &'static [(&'static str, &'static str)],
    pub environment: &'static [(&'static str, &'static str)],
    /// (what it does, the command lines).
    pub examples: &'static [(&'static str, &'static str)],
    pub see_also: &'static [&'static str],
}

pub fn page(name: &str) -> Option<&'static Page> {
    PAGES.iter().find(|p| p.name == name)
}

const SUCCESS: (&str, &str) = ("0", "Success.");
const ERROR: (&str, &str) = (
    "2",
    "Any error: bad usage, I/O, corrupt or hostile input, a digest mismatch, a missing image. \
     The error is printed on one line as TOOL: what failed: why. A layout the tool was writing \
     to is left valid and as it was.",
);

const SOURCE_DATE_EPOCH: (&str, &str) = (
    "SOURCE_DATE_EPOCH",
    "When set (seconds since the Unix epoch), clamps every timestamp the tool writes, so that \
     builds are reproducible (see reproducible-builds.org).",
);

const TERMINAL: &str = "Progress is shown on stderr only when stderr is a terminal (not with TERM=dumb, nor \
     from a background job) and the work has lasted about a second: with a total, a percentage, \
     the rate and an ETA where the size is known, and the layer N/M. The stages of a pipeline \
     share the terminal one line at a time: a tool draws only while it holds an exclusive lock \
     (flock) on the terminal and its work advances; a stage waiting for its input lets the line \
     go, and a line without a total yields to one that has it. Every line is cleared when its \
     work ends, on success, error or signal, so none is left on the screen. -q/--quiet silences \
     everything but errors. stdout carries data only.";

/// The statuses of a tool ended by a signal.
const INTERRUPTED: (&str, &str) = (
    "130, 143, 129",
    "Interrupted by SIGINT, SIGTERM or SIGHUP (128 + the signal's number). What the tool was \
     writing is removed first (temporary files, the -o file's, a layout it created), so a layout \
     is left as it was; a tar it was writing on stdout is ended with a block no tar reader \
     accepts. A signal the tool was started with ignored (nohup) stays ignored. Only SIGKILL, or \
     a second signal while the first one's clean-up waits (on a reader that stopped reading), \
     can leave a temporary file, which image-prune removes and names.",
);

pub const PAGES: &[Page] = &[
    Page {
        name: "layer-diff",
        description: &[
            "LOWER and UPPER may each be a directory, an IMAGE (LAYOUT:REF or LAYOUT@sha256:..., \
             its stacked filesystem read from its layers without extracting them), or a tar file \
             (- for stdin; gzip- or zstd-compressed or not, never read from a terminal). A \
             directory holding an oci-layout file is the IMAGE DIR:latest, as for every tool; \
             any other existing directory without a colon is a directory; X:REF where X holds an \
             oci-layout file is an IMAGE; a regular file is a tar.",
            "A change is anything a layer must carry: added, removed, content, file type, mode \
             (setuid and sticky included), owner, mtime, symlink target, device numbers, xattrs, \
             hard-link structure.",
            "The tar follows the OCI image-spec changeset rules: an explicit .wh.NAME whiteout for \
             each removed path (or .wh..wh..opq with --opaque), parents of changed entries \
             present, hard links as link entries, xattrs as SCHILY.xattr PAX records, entries \
             sorted by path with parents first. Sockets are skipped with a warning.",
            "--list prints docker diff's A/C/D lines: a directory is C when its own metadata or \
             anything inside it changed; an added directory lists everything inside as A; a \
             removed one lists only itself as D; / is never listed.",
            "--overlay reads an overlayfs upper directory (0/0 character-device whiteouts, \
             trusted.overlay.opaque or user.overlay.opaque = y) and writes OCI whiteouts \
             without walking the lower. Metacopy files and renamed directories (redirect_dir) \
             keep content in the lower: they need --lower DIR, which rebuilds the merged view \
             and diffs it against the lower (--list and --json need it too).",
            "--image compares two IMAGEs as images, as container-diff and diffoci do, and prints \
             records in a fixed order, one per line (JSON Lines with --json, each with a \
             \"section\"): manifest differences {key, old, new} (annotations by key, the media \
             types); config differences {key, old, new}, top-level fields whole and the container \
             config item by item (an Env variable by name, a label, an exposed port or a volume by \
             key, other keys such as Cmd, Entrypoint or Healthcheck whole); history entries that \
             differ, by position {index, old, new}; a per-layer view {old, new, pairedBy, changes}: \
             layers are paired by diffID, then by the history step that made them, and a pair \
             that differs (or a layer of one side only) lists the entries its two tars differ in \
             (content compared by digest); then the file changes of the two stacked file systems \
             {path, kind}, as --json prints them. An absent value is null (unset in text). \
             --ignore-times (alias --ignore-file-times) leaves file mtimes out; \
             --ignore-image-times leaves the image's times out (config and history created, the \
             org.opencontainers.image.created annotation and label). --exit-code exits 1 when \
             there is any record.",
            TERMINAL,
        ],
        exit_status: &[
            SUCCESS,
            (
                "1",
                "With --exit-code: the two filesystems (with --image: the two images) differ.",
            ),
            ERROR,
            INTERRUPTED,
        ],
        environment: &[SOURCE_DATE_EPOCH],
        examples: &[
            (
                "What changed in a working copy, as docker diff shows it:",
                "layer-diff --list store:httpd:2.4 web/",
            ),
            (
                "Commit the changes as a new image (docker commit):",
                "layer-diff store:httpd:2.4 web/ | layer-pack --layout store \\\n  \
                 | image-stack --from store:httpd:2.4 --layer - --tag store:web:v1 -m \"Add site\"",
            ),
            (
                "The changes between two images as JSON Lines:",
                "layer-diff --json store:web:v1 store:web:v2",
            ),
            (
                "An overlayfs upper directory as an OCI changeset:",
                "layer-diff --overlay /var/lib/overlay/upper > changes.tar",
            ),
            (
                "Two images compared as images (config, history, layers, files), times left out:",
                "layer-diff --image --json --ignore-times --ignore-image-times store:web:v1 store:web:v2",
            ),
        ],
        see_also: &[
            "layer-pack",
            "image-stack",
            "image-history",
            "image-prune",
            "umoci",
            "skopeo",
        ],
    },
    Page {
        name: "layer-pack",
        description: &[
            "One streaming pass: read, check that the tar is well formed, hash the uncompressed \
             bytes (the diffID), compress, hash the compressed bytes (the digest), write. Memory \
             does not grow with the layer's size. A directory is packed with the same entry rules \
             and order as layer-diff writes.",
            "The output is one LAYER DESCRIPTOR on one line: an OCI content descriptor (mediaType, \
             digest, size) that also carries diffID (the sha256 of the uncompressed tar), \
             uncompressedSize, contentSize, reused (true when the blob was already in the layout) \
             and source (the layout holding the blob).",
            "contentSize is the layer's size as docker's overlay2 store reports it, what \
             image-history and image-ls show as SIZE: the apparent size of every non-directory \
             entry, each inode once (a hard link adds nothing), a symlink by the length of its \
             target, a PAX sparse file by its real size (holes included), whiteouts, devices and \
             fifos 0. image-stack keeps it, and uncompressedSize, in the manifest as the layer \
             annotations dev.layerkit.content-size and dev.layerkit.uncompressed-size, so that \
             history and listings of the image read no layer.",
            "Reproducible: the same tar or the same tree gives the same digest (the gzip header \
             carries no name or time). A blob already in the layout is not written again. A \
             malformed or truncated tar leaves nothing in the layout.",
            "The input tar may be gzip- or zstd-compressed (detected by its first bytes, as \
             docker import does): the layer is the tar it holds, its diffID that tar's. A tar is \
             never read from a terminal. A layout created by the run is said on stderr \
             (created OCI layout DIR/); a --layout path holding a colon is refused, as no IMAGE \
             (LAYOUT:REF, split at the first colon) could name it.",
            TERMINAL,
        ],
        exit_status: &[SUCCESS, ERROR, INTERRUPTED],
        environment: &[SOURCE_DATE_EPOCH],
        examples: &[
            (
                "Store a changeset as a layer blob:",
                "layer-diff base web | layer-pack --layout store",
            ),
            (
                "A whole directory as one layer, the base of an image:",
                "layer-pack --layout store base/ \\\n  \
                 | image-stack --layer - --tag store:httpd:2.4 --created-by \"debootstrap\"",
            ),
            (
                "zstd instead of gzip:",
                "layer-pack --compress zstd --layout store < changes.tar",
            ),
            (
                "The blob to a file, its descriptor to stdout:",
                "layer-pack -o layer.tar.gz < changes.tar",
            ),
            (
                "A compressed tarball, as docker import takes it:",
                "layer-pack --layout store rootfs.tar.gz",
            ),
        ],
        see_also: &["layer-diff", "image-stack", "image-history", "image-prune"],
    },
    Page {
        name: "image-stack",
        description: &[
            "The stack is --from IMAGE (default: empty, scratch) plus each --layer FILE (a file of \
             LAYER DESCRIPTORs, - for stdin) in order. The sink is exactly one of --tag, \
             --rootfs, --tar.",
            "--tag writes the config and manifest blobs, points the tag at the new manifest and \
             prints the manifest's descriptor as one JSON line. The config gets one \
             rootfs.diff_ids entry and one history entry per layer, as docker commit does; \
             -c/--change applies Dockerfile config instructions (CMD, ENTRYPOINT, ENV, EXPOSE, \
             LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK, ONBUILD). A tag that moves \
             leaves the old manifest untagged in index.json: a dangling image, which image-prune \
             removes.",
            "--rootfs applies the layers in order into a directory (absent or empty), honouring \
             whiteouts, opaque directories, hard links, symlinks, devices, modes, owners (as \
             root), xattrs and mtimes. Paths resolve inside the directory as if it were /: \
             nothing is ever created, changed or followed outside it; an entry that climbs out \
             with .., a hard link to a directory or a symlink loop is refused, naming the entry.",
            "--tar writes the same union as one flat tar, without extracting to disk. --drop N \
             removes the top N layers and their history.",
            "--tag records the --from image the new one extends in its manifest, as the \
             image-spec annotations org.opencontainers.image.base.digest (the --from manifest's \
             digest) and, when --from named a tag, org.opencontainers.image.base.name (that \
             REF, without the layout's path, so the digest does not depend on where the layout \
             is); nothing is recorded with --drop or from scratch. image-ls and image-prune know \
             it as the new image's parent: if its tag moves, it stays as an intermediate image. \
             A commit of -c changes alone without --created-by records the instructions as the \
             history entry's created_by (CMD [\"node\",\"app.js\"]; several joined with ; ), \
             as BuildKit does, not a blank.",
            "--from takes an image by id too: LAYOUT@ID, a unique prefix (4 hex digits or more, \
             sha256: optional) of an image id (the config digest, as image-history and image-ls \
             show it) or of a manifest digest; an ambiguous prefix is an error listing the \
             candidates. --from LAYOUT@ID --tag IMAGE with nothing else is docker tag: the same \
             manifest, byte for byte, under a new tag.",
            "An interrupted --rootfs (SIGINT, SIGTERM) leaves the directory partly unpacked, \
             and says so in one line with the command that removes it: image-stack: \
             interrupted: web/ holds a partly unpacked image; remove it with: rm -rf web/",
            "--rebase NEWBASE restacks the layers the --from image adds to its base on NEWBASE, \
             with their history entries, and tags the result (--tag); it reads no layer, only \
             manifests and configs. The old base is --old-base IMAGE, else one of the images the \
             image was committed on (every --tag records its --from in the \
             org.opencontainers.image.base.digest annotation, so an image made in several commits \
             records its own previous commit): the nearest one tagged in NEWBASE's repository \
             (debian:12.8 for --rebase store:debian:12.9), else the recorded one when it is the \
             only one; with several and none in NEWBASE's repository the rebase is refused, naming \
             them. It is refused unless its diffIDs are the first of the image's. The \
             config is NEWBASE's plus the image's own changes, the delta from the old base to the \
             image item by item: an Env variable, a label, an exposed port or a volume by key, \
             other keys (Cmd, Entrypoint, User, WorkingDir, StopSignal, Healthcheck, OnBuild, …) \
             whole, and the top-level author and unknown fields. An item the image inherited \
             takes NEWBASE's value; one it set or removed stays so. Every item on which the two \
             bases disagree is printed on stderr, saying what the image now has (the JAVA_HOME of \
             an old base does not survive silently, as in crane rebase). The platforms of the two \
             bases must agree. The new manifest records NEWBASE in the base annotations. \
             --dry-run prints the new image's layers as JSON Lines (the manifest's descriptor, \
             diffID, origin base or image) and the conflicts, and writes nothing.",
            "--squash-above BASE keeps BASE's layers as they are (the same blobs, still shared) \
             and makes the --from image's layers above them one layer; --squash N does so for the \
             top N layers. The layers are stacked as --tar stacks them, and the new layer carries \
             what the top layers change: what they wrote, an explicit whiteout for the top of \
             everything of the base they removed, and whole hard-link groups, so a link whose \
             target a later layer removes or overwrites keeps its content (crane's flatten loses \
             it). The layer is compressed as layer-pack compresses (--compress, --level; gzip 6 by \
             default, the same bytes for any number of threads). One history entry replaces the \
             squashed ones: created_by lists their steps (or --created-by), the comment says how \
             many (or -m). --squash-above records BASE in the base annotations.",
            TERMINAL,
        ],
        exit_status: &[SUCCESS, ERROR, INTERRUPTED],
        environment: &[SOURCE_DATE_EPOCH],
        examples: &[
            (
                "Commit a layer on top of a base image:",
                "image-stack --from store:httpd:2.4 --layer - --tag store:web:v1 -m \"Add site\" < layer.json",
            ),
            (
                "Unpack an image into a directory:",
                "image-stack --from store:web:v1 --rootfs web/",
            ),
            (
                "The image as one flat tar:",
                "image-stack --from store:web:v1 --tar > web.tar",
            ),
            (
                "Roll back: the image without its top layer:",
                "image-stack --from store:web:v2 --drop 1 --tag store:web:rollback",
            ),
            (
                "Roll back to an older image by its id (docker tag 9977b web:rollback):",
                "image-stack --from store@9977b --tag store:web:rollback",
            ),
            (
                "Squash an image into one layer:",
                "image-stack --from store:web:v2 --tar | layer-pack --layout store \\\n  \
                 | image-stack --layer - --tag store:web:flat",
            ),
            (
                "The image's own layers on a patched base, previewed first; no layer is read:",
                "image-stack --from store:web:v1 --rebase store:debian:12.9 --dry-run --tag store:web:v1-rebased\n\
                 image-stack --from store:web:v1 --rebase store:debian:12.9 --tag store:web:v1-rebased",
            ),
            (
                "Squash what an image adds to its base, the base's layers kept and shared:",
                "image-stack --from store:web:v2 --squash-above store:debian:12 --tag store:web:squashed",
            ),
        ],
        see_also: &[
            "layer-diff",
            "layer-pack",
            "image-history",
            "image-ls",
            "image-prune",
            "umoci",
            "skopeo",
        ],
    },
    Page {
        name: "image-history",
        description: &[
            "Newest first, one row per history entry, as docker history shows them. IMAGE is the \
             short id of an image in the layout whose stack ends at that row (the image itself on \
             top, a base image present in the layout on its own top row, an intermediate image \
             image-prune kept), else <missing>; LAYOUT@ID names it for the other tools. SIZE is \
             the row's layer as docker's overlay2 store reports it: the apparent size of every \
             non-directory entry, each inode once, a symlink by its target's length, a sparse \
             file by its real size, whiteouts 0 (a layer adding a 33-byte file is 33B), 0B for \
             an empty layer, in docker's human units (3 significant digits, 1000-based) unless \
             -H=false. layer-pack records it in the manifest (dev.layerkit.content-size), so the \
             history of our own images reads no layer; other layers are measured once from \
             their tar headers, verified against their digests.",
            "--format json prints JSON Lines with the full values: untruncated, created in RFC \
             3339, sizes in bytes: size (the SIZE), tarSize (the uncompressed tar's length) and \
             storedSize (the blob as stored). An image without history entries, or with fewer \
             entries than layers, still lists every layer.",
            "--wasted adds a WASTED column: the file content each layer carries that a later layer \
             removes, hides (opaque directory) or replaces. Each masked copy counts once, in the \
             layer that carries it; the copy still visible does not count (dive counts every copy, \
             dive#684). Efficiency is the visible content over all content.",
            "As a CI gate, rules turn --wasted on and decide the exit status: \
             --lowest-efficiency RATIO, --highest-wasted-bytes SIZE and \
             --highest-user-wasted-percent RATIO are dive's rules (user bytes: the content of the \
             layers above the first), judged as dive judges them (a value at its limit passes); \
             --wasted-floor SIZE lets the two ratio rules pass while no more than SIZE is wasted, \
             so a small image is not failed over a few kilobytes; --highest-image-size SIZE \
             limits the content of all layers; --baseline IMAGE with --highest-growth SIZE or \
             PERCENT% limits the growth over another image. RATIO is 0.9 or 90%; SIZE is read as \
             dive reads it (20MB = 20,000,000 bytes, 20MiB, 1000). --ci-config FILE reads dive's \
             .dive-ci (rules: lowestEfficiency, highestWastedBytes, highestUserWastedPercent, \
             or their kebab-case names; disabled, off, false or an empty value turn a rule off); \
             rules the file leaves out take dive's defaults (0.9, disabled, 0.1), and flags \
             override it. After the table come the wasted files (largest first, with the layer \
             that carries each and the one that masks it) and PASS, FAIL or SKIP per rule, then \
             Result. --report FILE, which implies --wasted, writes (- for stdout, which then carries it alone) \
             the summary as one JSON document: {totalSize, wastedSize, efficiency, wastedFiles \
             [{path, size, layer, maskedBy, how}]}, and with rules {result, rules [{rule, status, \
             value, limit, message}]}. --format json prints the rows alone, one shape per line \
             (with -q, which prints ids alone, it is refused).",
            TERMINAL,
        ],
        exit_status: &[
            SUCCESS,
            ("1", "A rule of the CI gate failed."),
            (
                "2",
                "Any error, a rule that does not parse included: bad usage, I/O, corrupt or \
                 hostile input, a digest mismatch, a missing image. The error is printed on one \
                 line as TOOL: what failed: why.",
            ),
            INTERRUPTED,
        ],
        environment: &[
            (
                "LAYERKIT_NOW",
                "For tests only: fixes \"now\" for the relative CREATED ages (\"2 minutes ago\"), as \
                 an RFC 3339 time (2023-11-14T22:15:20Z) or seconds since the Unix epoch, so that a table can \
                 be compared byte for byte. A value that is neither is an error (exit 2). Unset, \
                 the system clock is used.",
            ),
            (
                "SOURCE_DATE_EPOCH",
                "Not used: image-history writes no timestamps, and the CREATED ages are computed \
                 from the system clock (or LAYERKIT_NOW).",
            ),
        ],
        examples: &[
            ("The layers of an image:", "image-history store:web:v1"),
            ("Full ids and commands:", "image-history --no-trunc store:web:v1"),
            ("Machine-readable:", "image-history --format json store:web:v1"),
            (
                "A CI gate with dive's rules, or with limits of its own:",
                "image-history --ci-config .dive-ci store:web:v2\n\
                 image-history --highest-wasted-bytes 20MB --baseline store:web:v1 --highest-growth 5% store:web:v2",
            ),
            ("An image by a prefix of its id:", "image-history store@9977b"),
        ],
        see_also: &[
            "image-ls",
            "image-stack",
            "image-prune",
            "layer-diff",
            "layer-pack",
        ],
    },
    Page {
        name: "image-prune",
        description: &[
            "With a LAYOUT, as docker image prune: removes the dangling images (index entries \
             without a ref name that are the parent of no kept image), then every blob no \
             remaining image reaches (manifests, indexes, configs, layers; nested indexes and \
             referrers followed). Prints, as docker image prune does for dangling images, \
             Deleted Images: with one deleted: line per removed image (its id, the config \
             digest) and then per other removed blob, then Total reclaimed space. There are no \
             untagged: lines: docker prints those for the tags and repository digests it \
             removes, and a dangling entry of an OCI layout has neither (a plain prune never \
             removes a tag).",
            "An untagged image that is the parent of a kept image is intermediate, not dangling, \
             and stays, as docker keeps it: so that image-history shows its id and \
             image-stack --from LAYOUT@ID can roll back to it. Its parent is the manifest the \
             child's org.opencontainers.image.base.digest annotation names (image-stack --tag \
             records it), or else the image whose history and layers are the longest strict \
             prefix of the child's. A dangling image goes with the untagged parents only it \
             needed. --intermediate removes intermediate images too.",
            "With IMAGEs (LAYOUT:REF, LAYOUT@ID, LAYOUT@sha256:...; all of one layout), as \
             docker rmi: each named tag leaves index.json; an image left with no tag and no \
             child image is removed, then each untagged parent no other image needs, with every \
             blob nothing else reaches (orphans, other dangling images and the layer cache are left \
             to a prune of the layout). \
             Named by id, an image with several tags is refused unless --force, and one with \
             child images is refused always. Everything is decided before anything changes: \
             one refused IMAGE (a tag that does not exist, an unknown or ambiguous id) is exit \
             2 with the layout as it was. Prints Untagged: REF and Deleted: sha256:<image id> \
             lines in order, then Total reclaimed space. LAYOUT alone is a layout to prune: its \
             tag latest is LAYOUT:latest.",
            "Never removes a blob a tagged image reaches, nor one a concurrent writer is about to \
             reference: an orphan blob (one that nothing references and no image removed by this \
             run referenced, such as what layer-pack has just written for an image-stack further \
             down the pipe) is kept while younger than --grace (default 10m). The blobs of the \
             dangling images it removes go at once, unless a writer has claimed one since (see \
             the protocol below). An unreferenced manifest or index older than --grace goes with \
             what it references; a younger one (a writer storing an image) keeps it.",
            "An untagged entry is not dangling when a kept image reaches it, when --filter until \
             keeps it, or when it is a referrer of a kept image (its subject is kept: signatures \
             and SBOMs stay with their image). A subject is a weak reference: a kept referrer does \
             not keep its subject.",
            "Concurrency protocol: image-prune takes the layout lock (.layerkit.lock, the flock \
             every index.json writer takes), reads index.json and computes reachability from \
             that one snapshot, lists the blobs, rewrites index.json atomically without the \
             dangling entries, then deletes blobs (each manifest or index before what it \
             references) and temporary files older than --grace that no writer holds (writers \
             keep a flock on theirs, so even --grace 0 spares a live writer's file), and only \
             then releases the lock. A crash at any point leaves a valid layout, at worst with \
             garbage for the next run. --dry-run takes no lock and changes nothing.",
            "The report lists every temporary file (.layerkit-tmp-*) under Temporary files:, \
             removed or kept, with its size and, when kept, why (a writer holds it, or it is \
             younger than --grace); --json as temporaryFiles and keptTemporaryFiles. Tools \
             interrupted by SIGINT or SIGTERM remove their own: only SIGKILL or a crash leaves \
             one.",
            "Writers claim blobs: a writer that finds its blob already stored (layer-pack's \
             \"reused\": true, image-stack reusing a layer or config) sets the blob's mtime to \
             now. A blob of a removed image whose mtime is newer than that image's manifest and \
             younger than --grace was claimed after the image was made, so it stays. Writers \
             claim under a shared flock on the blob, which image-prune holds exclusively while \
             it reads the mtime and deletes, so no claim is lost: a writer that comes later finds \
             no blob and stores it again. Under the same index lock, a tag is only set on \
             a complete image (manifest, config and layers stored), and image-stack stores the \
             manifest itself there. A claim covers the images made before it: if another writer \
             makes an image with the same blob after the claim and that image is pruned before \
             the first writer tags, that tag is refused (exit 2, nothing changed) and the commit \
             can be run again. Keep --grace longer than your longest pipeline; --grace 0 is for \
             layouts no writer is using.",
            TERMINAL,
        ],
        exit_status: &[SUCCESS, ERROR, INTERRUPTED],
        environment: &[(
            "SOURCE_DATE_EPOCH",
            "Not used: ages for --filter until and --grace are measured with the system clock.",
        )],
        examples: &[
            (
                "Remove dangling images and unreferenced blobs:",
                "image-prune store",
            ),
            (
                "What would go, and how much space:",
                "image-prune --dry-run store",
            ),
            (
                "Keep images younger than a day; orphans of any age go:",
                "image-prune --filter until=24h --grace 0 store",
            ),
            (
                "Remove a tag, and the image if nothing else needs it (docker rmi):",
                "image-prune store:web:v1",
            ),
            (
                "Remove an image by a prefix of its id, every tag of it:",
                "image-prune --force store@9977b",
            ),
        ],
        see_also: &[
            "image-ls",
            "image-stack",
            "image-history",
            "layer-pack",
            "layer-diff",
        ],
    },
    Page {
        name: "image-ls",
        description: &[
            "One row per tag, newest first (by the config's created time), as docker images \
             lists them: REPOSITORY and TAG (a REF split as docker splits a reference, at the \
             last : not followed by /; a REF without one shows TAG <none>), IMAGE ID (the config \
             digest, 12 hex digits unless --no-trunc), CREATED, SIZE. An untagged image is \
             dangling (a <none> <none> row) unless it is the parent of another image (the \
             manifest its org.opencontainers.image.base.digest annotation names, or an image \
             whose history and layers are a strict prefix of its own): then it is intermediate, \
             listed only with -a, and image-prune keeps it.",
            "SIZE is the sum of the image's layer SIZEs as image-history shows them (docker's \
             overlay2 SIZE: the apparent size of what the layers unpack to). Our own layers \
             record it; other layers are read once from their tar headers. -q prints the ids \
             alone, one per row (an image of two tags twice, as docker). --digests adds the \
             manifest digest.",
            "Filters, as docker's (-f, repeatable; any other is an error): dangling=true (untagged \
             leaves only) or false (no untagged rows), reference=PATTERN (a glob on \
             REPOSITORY:TAG or REPOSITORY whose * does not cross /), before=IMAGE and \
             since=IMAGE (created before or after that image: a REF of the layout or an id \
             prefix), label=KEY or label=KEY=VALUE (all must match).",
            "--format json prints one object per row (JSON Lines), full values: repository and \
             tag (null for <none>), id, digest (the manifest's), created (RFC 3339, or null), \
             size (content bytes), tarSize (the layers' tars), storedSize (layers, config and \
             manifest as stored), dangling, intermediate, parent (the parent's id, or null).",
            "--disk-usage is docker system df for the layout: TYPE TOTAL ACTIVE SIZE RECLAIMABLE \
             for Images (ACTIVE: the tagged ones), Unreferenced blobs and Temporary files (ACTIVE: \
             what image-prune keeps, as a writer may be using it), and the Layer cache of \
             image-stack --mount (ACTIVE: the entries an image needs or a live mount uses; SIZE: \
             their disk usage). A layout stores blobs, so \
             sizes are the bytes of the blob files, each shared blob once; RECLAIMABLE is what \
             image-prune LAYOUT would remove now (its dry run, default grace period), with its \
             share in percent. -v adds one row per image: SIZE, SHARED SIZE (blobs other images \
             use too), UNIQUE SIZE. With --format json, one document on one line (the two tables' \
             rows have two shapes): {types: [{type, total, active, size, reclaimable}], images \
             (with -v): [{repository, tag, id, created, size, sharedSize, uniqueSize}]}.",
        ],
        exit_status: &[SUCCESS, ERROR, INTERRUPTED],
        environment: &[
            (
                "LAYERKIT_NOW",
                "For tests only: fixes \"now\" for the relative CREATED ages, as an RFC 3339 time \
                 or seconds since the Unix epoch. Unset, the system clock is used.",
            ),
            ("SOURCE_DATE_EPOCH", "Not used: image-ls writes nothing."),
        ],
        examples: &[
            ("The images of a layout:", "image-ls store"),
            (
                "Intermediate images too, with manifest digests:",
                "image-ls -a --digests store",
            ),
            (
                "What image-prune store would remove:",
                "image-ls -f dangling=true store",
            ),
            (
                "The size of one image, in bytes:",
                "image-ls --format json -f reference=web:v1 store | jq .size",
            ),
            (
                "Disk usage, per image too (docker system df -v):",
                "image-ls --disk-usage -v store",
            ),
        ],
        see_also: &["image-history", "image-prune", "image-stack", "layer-pack"],
    },
];
