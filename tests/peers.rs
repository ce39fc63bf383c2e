//! Interoperability with the real peers: umoci unpacks every kind of image our tools make to the
//! tree they were made from (and we unpack umoci's to the tree umoci gives); skopeo inspects and
//! copies them through docker-archive, oci-archive and a multi-platform index; a real registry
//! (distribution's reference server) takes a push and gives the same image back; podman loads
//! them into its own storage and sees our layers, sizes and trees.
//!
//! Every comparison is against the source tree the image was committed from, not only between
//! unpackers, so a layer that lost an xattr or a whiteout fails here even if both sides agree.

use crate::support::{
    edit_sample_tree, file, in_ci, ok, peer, run, sample_tree, sh_in, sha256, snapshot, tempdir, text,
    umoci_version, whole_seconds,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The digest of the manifest (or index) `tag` points at in a layout's index.json.
fn tagged(layout: &Path, tag: &str) -> String {
    let index = json_of(&std::fs::read(layout.join("index.json")).expect("index.json"));
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("no tag {tag} in {index}"))
        .to_string()
}

/// Our unpack of IMAGE (run in `dir`) into a fresh directory named `into`; its snapshot.
fn ours(dir: &Path, image: &str, into: &str) -> String {
    sh_in(dir, &format!("image-stack -q --from {image} --rootfs {into}/"));
    snapshot(&dir.join(into))
}

/// Empties /opt/app and puts one new file in it, so `layer-diff --opaque` marks it opaque.
fn make_opaque(web: &Path) {
    std::fs::remove_dir_all(web.join("opt/app")).unwrap();
    file(
        web,
        "opt/app/fresh",
        b"replaces everything\n",
        0o644,
        1_660_000_000,
    );
    crate::support::mtime(web, "opt/app", 1_660_000_000);
    crate::support::mtime(web, "opt", 1_660_000_000);
}

/// Every kind of image our tools make, in `dir/store`, with the trees they must unpack to:
/// (tag, source directory). The directories stay in `dir` for snapshots. Each source tree is a
/// copy of the one below (cp -a), never our own unpack, so a fault in our output cannot leak
/// into what it is compared with.
fn our_images(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    sample_tree(&dir.join("base"));
    sh_in(
        dir,
        r#"set -e
        layer-pack -q --layout store base/ | image-stack -q --layer - --tag store:gzip --created-by debootstrap >/dev/null
        layer-pack -q --compress zstd --layout store base/ | image-stack -q --layer - --tag store:zstd >/dev/null
        layer-pack -q --compress none --layout store base/ | image-stack -q --layer - --tag store:none >/dev/null
        cp -a base web"#,
    );
    edit_sample_tree(&dir.join("web"));
    sh_in(
        dir,
        r#"set -e
        layer-diff store:gzip web/ | layer-pack -q --layout store \
          | image-stack -q --from store:gzip --layer - --tag store:multi -m "Add site" >/dev/null
        cp -a web web2"#,
    );
    make_opaque(&dir.join("web2"));
    let opaque_layer = sh_in(
        dir,
        r#"set -e
        layer-diff --opaque store:multi web2/ | tee opaque.tar | layer-pack -q --layout store \
          | image-stack -q --from store:multi --layer - --tag store:opaque -m "Replace app" >/dev/null
        image-stack -q --from store:opaque --tar | layer-pack -q --layout store \
          | image-stack -q --layer - --tag store:flat >/dev/null
        image-stack -q --from store:opaque --tag store:conf -c 'ENV GREETING=hello' -c 'CMD ["httpd-foreground"]' \
          -c 'LABEL team=web' -c 'EXPOSE 8080' -c 'WORKDIR /srv' -c 'USER 33' >/dev/null
        tar -tf opaque.tar"#,
    );
    assert!(
        text(opaque_layer).lines().any(|l| l == "opt/app/.wh..wh..opq"),
        "the fixture must hold an opaque directory"
    );
    let (base, web, web2) = (dir.join("base"), dir.join("web"), dir.join("web2"));
    vec![
        ("gzip", base.clone()),
        ("zstd", base.clone()),
        ("none", base),
        ("multi", web),
        ("opaque", web2.clone()),
        ("flat", web2.clone()),
        ("conf", web2),
    ]
}

#[test]
fn umoci_unpacks_every_kind_of_image_we_make_to_its_source_tree() {
    let Some(umoci) = peer("umoci") else { return };
    let t = tempdir();
    let dir = t.path();
    for (tag, source) in our_images(dir) {
        let want = whole_seconds(&snapshot(&source));
        let out = run(
            Command::new(&umoci).current_dir(dir).args([
                "unpack",
                "--image",
                &format!("store:{tag}"),
                &format!("umoci-{tag}"),
            ]),
            b"",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let ours_tree = ours(dir, &format!("store:{tag}"), &format!("ours-{tag}"));
        let umoci_tree = out
            .status
            .success()
            .then(|| snapshot(&dir.join(format!("umoci-{tag}/rootfs"))));
        if tag == "zstd" && umoci_version() < (0, 4, 8) {
            // umoci before 0.4.8 has no zstd layers: it refuses the media type, not our blob.
            // podman unpacks this image below; a newer umoci must unpack it here.
            assert!(
                !out.status.success()
                    && err.contains(
                        "blob is not correct mediatype: application/vnd.oci.image.layer.v1.tar+zstd"
                    ),
                "{err}"
            );
            assert_eq!(ours_tree, want, "our unpack of {tag}");
            continue;
        }
        assert!(out.status.success(), "umoci unpack {tag}: {err}");
        // umoci's tree first: this test is about what a peer makes of our images.
        let theirs = umoci_tree.expect("umoci unpacked it");
        assert_eq!(theirs, want, "umoci unpack of {tag}");
        assert_eq!(ours_tree, want, "our unpack of {tag}");
    }
    // umoci reads the config we wrote with -c as docker commit -c would.
    let config = json_of(&std::fs::read(dir.join("umoci-conf/config.json")).unwrap());
    assert_eq!(config["process"]["args"], json!(["httpd-foreground"]));
    assert_eq!(config["process"]["cwd"], "/srv");
    assert_eq!(config["process"]["user"]["uid"], 33);
    assert!(
        config["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("GREETING=hello"))
    );
    assert_eq!(config["annotations"]["team"], "web");
}

/// The layer digests of a tagged image, as skopeo reports them, and its manifest digest as
/// skopeo computes it from the raw bytes it reads.
fn skopeo_view(dir: &Path, image: &str) -> (Value, String) {
    let inspect = json_of(&sh_in(dir, &format!("skopeo inspect {image}")));
    let raw = sh_in(dir, &format!("skopeo inspect --raw {image}"));
    (inspect, sha256(&raw))
}

fn diff_ids(dir: &Path, image: &str) -> Value {
    json_of(&sh_in(dir, &format!("skopeo inspect --config {image}")))["rootfs"]["diff_ids"].clone()
}

/// image-history's rows as (tar size, created_by, comment): what must survive a copy. The tar's
/// length is what podman shows as a layer's SIZE (docker shows the content's: `size`).
fn history_rows(dir: &Path, image: &str, platform: &str) -> Vec<(u64, String, String)> {
    text(sh_in(
        dir,
        &format!("image-history {platform} --format json {image}"),
    ))
    .lines()
    .map(|l| {
        let v = json_of(l.as_bytes());
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        (
            v["tarSize"].as_u64().expect("tarSize"),
            s("createdBy"),
            s("comment"),
        )
    })
    .collect()
}

#[test]
fn skopeo_inspects_and_round_trips_our_images_through_oci_and_docker_archives() {
    let Some(_) = peer("skopeo") else { return };
    let t = tempdir();
    let dir = t.path();
    for (tag, source) in our_images(dir) {
        let want = whole_seconds(&snapshot(&source));
        let ours_img = format!("oci:store:{tag}");
        let (inspect, digest) = skopeo_view(dir, &ours_img);
        assert_eq!(
            digest,
            tagged(&dir.join("store"), tag),
            "{tag}: skopeo reads the manifest we tagged"
        );
        let manifest = json_of(&sh_in(dir, &format!("skopeo inspect --raw {ours_img}")));
        let layers: Vec<&Value> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["digest"])
            .collect();
        assert_eq!(
            inspect["Layers"].as_array().unwrap().iter().collect::<Vec<_>>(),
            layers,
            "{tag}"
        );

        // oci → oci-archive → oci: nothing to convert, so the very same manifest. (Without
        // --preserve-digests skopeo gzips an uncompressed layer on the way.)
        sh_in(
            dir,
            &format!(
                "skopeo copy -q --preserve-digests {ours_img} oci-archive:{tag}.oci.tar:{tag} \
               && skopeo copy -q --preserve-digests oci-archive:{tag}.oci.tar:{tag} oci:back:{tag}"
            ),
        );
        assert_eq!(
            tagged(&dir.join("back"), tag),
            digest,
            "{tag} through oci-archive"
        );
        assert_eq!(
            ours(dir, &format!("back:{tag}"), &format!("back-{tag}")),
            want,
            "{tag} through oci-archive"
        );

        // docker-archive holds uncompressed layers in a docker manifest: new digests, same diffIDs.
        let to_docker = run(
            Command::new("skopeo").current_dir(dir).args([
                "copy",
                "-q",
                &ours_img,
                &format!("docker-archive:{tag}.docker.tar:web:{tag}"),
            ]),
            b"",
        );
        if tag == "zstd" {
            // skopeo never recompresses into docker-archive, which has no zstd (skopeo#1286).
            let err = String::from_utf8_lossy(&to_docker.stderr);
            assert!(
                err.contains("zstd compression is not supported for docker images"),
                "{err}"
            );
            continue;
        }
        assert!(
            to_docker.status.success(),
            "{tag}: {}",
            String::from_utf8_lossy(&to_docker.stderr)
        );
        sh_in(
            dir,
            &format!("skopeo copy -q docker-archive:{tag}.docker.tar oci:fromdocker:{tag}"),
        );
        let back = format!("oci:fromdocker:{tag}");
        assert_eq!(
            diff_ids(dir, &back),
            diff_ids(dir, &ours_img),
            "{tag} through docker-archive"
        );
        assert_eq!(
            ours(dir, &format!("fromdocker:{tag}"), &format!("docker-{tag}")),
            want,
            "{tag} through docker-archive"
        );
        assert_eq!(
            history_rows(dir, &format!("fromdocker:{tag}"), ""),
            history_rows(dir, &format!("store:{tag}"), ""),
            "{tag}: sizes and history through docker-archive"
        );
    }
}

/// Two single-platform images of different trees, and an OCI index over them tagged `multi`.
fn multi_platform(dir: &Path) -> Vec<(&'static str, PathBuf, String)> {
    let mut entries = Vec::new();
    let mut out = Vec::new();
    for arch in ["amd64", "arm64"] {
        let tree = dir.join(arch);
        file(&tree, "etc/arch", arch.as_bytes(), 0o644, 1_600_000_000);
        file(
            &tree,
            &format!("lib/{arch}-linux-gnu/libc.so.6"),
            &[arch.len() as u8; 5000],
            0o755,
            1_600_000_000,
        );
        crate::support::mtime(&tree, "lib", 1_600_000_000);
        let layer = json_of(&sh_in(dir, &format!("layer-pack -q --layout store {arch}/")));
        let desc = json_of(&sh_in(
            dir,
            &format!("echo '{layer}' | image-stack -q --platform linux/{arch} --layer - --tag store:{arch}"),
        ));
        let mut entry = desc.clone();
        entry.as_object_mut().unwrap().remove("annotations");
        assert_eq!(entry["platform"], json!({"architecture": arch, "os": "linux"}));
        entries.push(entry);
        out.push((arch, tree, layer["digest"].as_str().unwrap().to_string()));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let layout = common::layout::Layout::open(dir.join("store")).unwrap();
    let (digest, _) = layout.write_blob(&index).unwrap();
    let desc = common::descriptor::Descriptor::new(
        "application/vnd.oci.image.index.v1+json",
        digest,
        index.len() as u64,
    );
    layout.set_tag("multi", desc).unwrap();
    out
}

#[test]
fn a_multi_platform_index_copied_by_skopeo_is_read_by_skopeo_and_by_us() {
    let Some(_) = peer("skopeo") else { return };
    let t = tempdir();
    let dir = t.path();
    let platforms = multi_platform(dir);
    // skopeo writes the index and both images into a new layout; no conversion, same digest.
    sh_in(
        dir,
        "skopeo copy -q --all --preserve-digests oci:store:multi oci:sk:multi",
    );
    let index_digest = tagged(&dir.join("sk"), "multi");
    assert_eq!(index_digest, tagged(&dir.join("store"), "multi"));
    let raw = json_of(&sh_in(dir, "skopeo inspect --raw oci:sk:multi"));
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);
    for (arch, tree, layer) in &platforms {
        let (inspect, _) = skopeo_view(dir, &format!("--override-arch {arch} oci:sk:multi"));
        assert_eq!(inspect["Layers"], json!([layer]), "skopeo picks {arch}");
        assert_eq!(inspect["Architecture"], *arch);
        let platform = format!("--platform linux/{arch}");
        sh_in(
            dir,
            &format!("image-stack -q {platform} --from sk:multi --rootfs unpacked-{arch}/"),
        );
        assert_eq!(
            snapshot(&dir.join(format!("unpacked-{arch}"))),
            whole_seconds(&snapshot(tree)),
            "image-stack {platform}"
        );
        let rows = text(sh_in(
            dir,
            &format!("image-history {platform} --format json sk:multi"),
        ));
        assert_eq!(
            json_of(rows.trim().as_bytes())["digest"],
            json!(layer),
            "image-history {platform}"
        );
        let same = sh_in(dir, &format!("layer-diff {platform} --list sk:multi {arch}/"));
        assert_eq!(text(same), "", "layer-diff {platform}: the image is its tree");
        let other = if *arch == "amd64" { "arm64" } else { "amd64" };
        // etc/arch differs in content only (same size and mtime): docker diff's stat rules miss
        // it, --ignore-times does not.
        let changed = text(sh_in(
            dir,
            &format!("layer-diff {platform} --list sk:multi {other}/"),
        ));
        let mut want = [
            "C /lib".to_string(),
            format!("D /lib/{arch}-linux-gnu"),
            format!("A /lib/{other}-linux-gnu"),
            format!("A /lib/{other}-linux-gnu/libc.so.6"),
        ];
        want.sort_by(|a, b| a[2..].cmp(&b[2..]));
        assert_eq!(changed, want.join("\n") + "\n");
        let changed = text(sh_in(
            dir,
            &format!("layer-diff --ignore-times {platform} --list sk:multi {other}/"),
        ));
        assert!(changed.starts_with("C /etc\nC /etc/arch\n"), "{changed}");
    }
    // Without --platform: the host's entry (these tests run on linux/amd64 or linux/arm64).
    let host = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let (_, tree, _) = platforms
        .iter()
        .find(|(a, _, _)| *a == host)
        .expect("host platform");
    assert_eq!(
        ours(dir, "sk:multi", "unpacked-host"),
        whole_seconds(&snapshot(tree))
    );
}

/// distribution's reference registry on 127.0.0.1 with its storage in a temp dir; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _root: tempfile::TempDir,
}

impl Registry {
    fn start(exe: &Path) -> Registry {
        let root = tempdir();
        // A port the kernel just handed out and released: free unless another process races us.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = root.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                p(&root.path().join("storage"))
            ),
        )
        .unwrap();
        let log = std::fs::File::create(root.path().join("log")).unwrap();
        let child = Command::new(exe)
            .args(["serve", p(&config)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let mut registry = Registry {
            child,
            port,
            _root: root,
        };
        registry.wait_until_it_answers();
        registry
    }

    fn wait_until_it_answers(&mut self) {
        use std::io::{Read, Write};
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut reply = String::new();
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not answer on port {}: {}",
            self.port,
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._root.path().join("log")).unwrap_or_default()
    }

    fn repo(&self, name: &str) -> String {
        format!("docker://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn push_to_a_registry_and_pull_back_gives_the_same_image_and_tree() {
    let (Some(_), Some(exe)) = (peer("skopeo"), peer("docker-registry")) else {
        return;
    };
    let t = tempdir();
    let dir = t.path();
    let images = our_images(dir);
    let platforms = multi_platform(dir);
    let registry = Registry::start(&exe);
    // --preserve-digests: otherwise skopeo's blob cache may push the gzip blob of the same
    // diffID, already in the repository, in place of our zstd one, and rewrite the manifest.
    for (tag, source) in images
        .iter()
        .filter(|(tag, _)| ["gzip", "zstd", "none", "opaque", "conf"].contains(tag))
    {
        let remote = registry.repo(&format!("web:{tag}"));
        sh_in(
            dir,
            &format!("skopeo copy -q --preserve-digests --dest-tls-verify=false oci:store:{tag} {remote}"),
        );
        let (inspect, _) = skopeo_view(dir, &format!("--tls-verify=false {remote}"));
        let digest = tagged(&dir.join("store"), tag);
        assert_eq!(
            inspect["Digest"],
            json!(digest),
            "{tag}: the registry serves our manifest"
        );
        sh_in(
            dir,
            &format!("skopeo copy -q --preserve-digests --src-tls-verify=false {remote} oci:pulled:{tag}"),
        );
        assert_eq!(tagged(&dir.join("pulled"), tag), digest, "{tag}: pulled back");
        assert_eq!(
            ours(dir, &format!("pulled:{tag}"), &format!("pulled-{tag}")),
            whole_seconds(&snapshot(source)),
            "{tag}"
        );
        assert_eq!(
            history_rows(dir, &format!("pulled:{tag}"), ""),
            history_rows(dir, &format!("store:{tag}"), "")
        );
    }
    // The multi-platform index goes up and comes back whole.
    let remote = registry.repo("multi:1");
    sh_in(
        dir,
        &format!("skopeo copy -q --all --preserve-digests --dest-tls-verify=false oci:store:multi {remote}"),
    );
    sh_in(
        dir,
        &format!("skopeo copy -q --all --preserve-digests --src-tls-verify=false {remote} oci:pulled:multi"),
    );
    assert_eq!(
        tagged(&dir.join("pulled"), "multi"),
        tagged(&dir.join("store"), "multi")
    );
    for (arch, tree, _) in &platforms {
        let into = format!("pulled-{arch}");
        sh_in(
            dir,
            &format!("image-stack -q --platform linux/{arch} --from pulled:multi --rootfs {into}/"),
        );
        assert_eq!(
            snapshot(&dir.join(into)),
            whole_seconds(&snapshot(tree)),
            "{arch} through the registry"
        );
    }
}

/// podman with its own vfs storage in temp dirs: no daemon, no overlay mount, no user namespace.
struct Podman {
    root: tempfile::TempDir,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.args([
            "--storage-driver",
            "vfs",
            "--root",
            p(&self.root.path().join("root")),
        ])
        .args(["--runroot", p(&self.root.path().join("run"))])
        .args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"])
        .args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        ok(&mut self.cmd(args), b"")
    }
}

#[test]
fn podman_loads_our_images_with_our_layers_sizes_history_and_trees() {
    let Some(_) = peer("podman") else { return };
    let podman = Podman { root: tempdir() };
    // Only whether podman can run at all on this machine is the environment's business.
    let info = run(&mut podman.cmd(&["info"]), b"");
    if !info.status.success() {
        let err = String::from_utf8_lossy(&info.stderr);
        assert!(!in_ci(), "podman cannot run here: {err}");
        eprintln!("SKIPPED: podman cannot run on this machine: {}", err.trim());
        return;
    }
    let t = tempdir();
    let dir = t.path();
    for (tag, source) in our_images(dir) {
        let archive = dir.join(format!("{tag}.oci.tar"));
        sh_in(
            dir,
            &format!(
                "skopeo copy -q --preserve-digests oci:store:{tag} oci-archive:{}:{tag}",
                p(&archive)
            ),
        );
        podman.ok(&["load", "-q", "-i", p(&archive)]);
        // podman's image id is the config digest.
        let id = tagged_config(dir, tag).trim_start_matches("sha256:").to_string();
        let store = format!("store:{tag}");
        let config = json_of(&sh_in(dir, &format!("skopeo inspect --config oci:{store}")));

        let inspect = json_of(&podman.ok(&["image", "inspect", &id]));
        let inspect = &inspect[0];
        assert_eq!(inspect["Id"], json!(id), "{tag}");
        assert_eq!(inspect["RootFS"]["Layers"], config["rootfs"]["diff_ids"], "{tag}");
        assert_eq!(inspect["Digest"], json!(tagged(&dir.join("store"), tag)), "{tag}");
        assert_eq!(inspect["History"], config["history"], "{tag}");

        // podman's history: one row per history entry, newest first, SIZE the layer's tar length.
        let theirs: Vec<u64> = json_of(&podman.ok(&["image", "history", "--format", "json", &id]))
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["size"].as_u64().unwrap())
            .collect();
        let mine: Vec<u64> = history_rows(dir, &store, "").iter().map(|r| r.0).collect();
        assert_eq!(theirs, mine, "{tag}: history sizes");

        let mount = text(podman.ok(&["image", "mount", &id]));
        let got = snapshot(Path::new(mount.trim()));
        podman.ok(&["image", "unmount", &id]);
        let mut want = whole_seconds(&snapshot(&source));
        if inspect["RootFS"]["Layers"].as_array().unwrap().len() > 1 {
            // vfs builds each layer on a copy of the one below, and that copy drops trusted.*
            // xattrs: podman's storage, not our layer (a one-layer image keeps them above).
            want = want
                .lines()
                .map(|l| {
                    l.split(' ')
                        .filter(|w| !w.starts_with("xattr:trusted."))
                        .collect::<Vec<_>>()
                        .join(" ")
                        + "\n"
                })
                .collect();
        }
        assert_eq!(got, want, "{tag}: podman's tree");
    }
}

fn tagged_config(dir: &Path, tag: &str) -> String {
    let manifest = json_of(&sh_in(dir, &format!("skopeo inspect --raw oci:store:{tag}")));
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

/// What tests/image_stack.rs leaves out of umoci's images: umoci repack's type replacements
/// (directory → file, symlink → directory, file → symlink with an odd target), unicode names,
/// 0000 modes, a setuid file losing its bit and an xattr on a directory; our commit on top of a
/// umoci image with a config umoci wrote; and layer-diff seeing no change between a umoci image
/// and umoci's own unpack of it.
#[test]
fn we_read_umoci_repacks_with_replaced_types_and_umoci_reads_our_commit_on_top() {
    let Some(_) = peer("umoci") else { return };
    let t = tempdir();
    let dir = t.path();
    sh_in(
        dir,
        "set -e; umoci init --layout u; umoci new --image u:base; umoci unpack --image u:base b1 >/dev/null",
    );
    sample_tree(&dir.join("b1/rootfs"));
    sh_in(
        dir,
        "umoci repack --image u:base b1 >/dev/null && umoci unpack --image u:base b2 >/dev/null",
    );
    let r = dir.join("b2/rootfs");
    std::fs::remove_dir_all(r.join("var/lib/data")).unwrap();
    file(
        &r,
        "var/lib/data",
        b"a file where a directory was\n",
        0o644,
        1_650_000_000,
    );
    std::fs::remove_file(r.join("lib")).unwrap();
    file(&r, "lib/now-a-dir", b"x\n", 0o644, 1_650_000_000);
    std::fs::remove_file(r.join("etc/hostname")).unwrap();
    std::os::unix::fs::symlink("../../\u{e9}t\u{e9}/ weird target", r.join("etc/hostname")).unwrap();
    file(
        &r,
        "srv/\u{65e5}\u{672c}/caf\u{e9}.txt",
        b"unicode\n",
        0o000,
        1_650_000_000,
    );
    std::fs::create_dir(r.join("srv/locked")).unwrap();
    std::fs::set_permissions(
        r.join("srv/locked"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(
        r.join("bin/su"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    xattr::set(r.join("srv"), "user.layerkit.dir", b"on a directory").unwrap();
    sh_in(
        dir,
        "set -e; umoci repack --image u:base b2 >/dev/null
         umoci config --image u:base --config.env PATH=/usr/bin --config.cmd sh --config.label team=umoci
         umoci unpack --image u:base reference >/dev/null",
    );
    let theirs = snapshot(&dir.join("reference/rootfs"));
    assert!(
        theirs.contains("var/lib/data file")
            && theirs.contains("lib/now-a-dir")
            && theirs.contains("caf\u{e9}.txt")
    );
    assert_eq!(ours(dir, "u:base", "ours"), theirs);
    assert_eq!(text(sh_in(dir, "layer-diff --list u:base reference/rootfs/")), "");

    // Our commit on top: umoci unpacks it, keeping its own config fields and adding ours.
    file(
        &dir.join("ours"),
        "srv/added",
        b"by layerkit\n",
        0o644,
        1_670_000_000,
    );
    sh_in(
        dir,
        "set -e; layer-diff u:base ours/ | layer-pack -q --layout u \
           | image-stack -q --from u:base --layer - -c 'ENV MODE=prod' -m 'Add one file' --tag u:ours >/dev/null
         umoci unpack --image u:ours bundle >/dev/null",
    );
    assert_eq!(
        snapshot(&dir.join("bundle/rootfs")),
        whole_seconds(&snapshot(&dir.join("ours")))
    );
    let config = json_of(&std::fs::read(dir.join("bundle/config.json")).unwrap());
    assert_eq!(config["process"]["args"], json!(["sh"]));
    // umoci adds TERM and HOME to the runtime config; the image's own Env is ours.
    assert_eq!(
        config["process"]["env"],
        json!(["PATH=/usr/bin", "TERM=xterm", "MODE=prod", "HOME=/root"])
    );
    let image_config = json_of(&sh_in(dir, "skopeo inspect --config oci:u:ours"));
    assert_eq!(
        image_config["config"]["Env"],
        json!(["PATH=/usr/bin", "MODE=prod"])
    );
    assert_eq!(config["annotations"]["team"], "umoci");
}

/// The names of the top layer of image `tag` in a layout umoci wrote (gzip), in tar order.
fn top_layer_names(layout: &Path, tag: &str) -> Vec<String> {
    let blob = |digest: &str| std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).expect("blob");
    let manifest = json_of(&blob(&tagged(layout, tag)));
    let top = manifest["layers"]
        .as_array()
        .and_then(|l| l.last())
        .expect("a layer");
    let gz = blob(top["digest"].as_str().expect("digest"));
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
    for e in archive.entries().expect("tar") {
        let e = e.expect("tar entry");
        names.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
    }
    names
}

/// A change that replaces a directory by a symlink to where its files went (Debian moves docs
/// so): `umoci repack` writes the symlink, then whiteouts *under* it. A whiteout hides lower
/// layers only, so the files this layer put behind the symlink stay, as umoci's own unpack
/// keeps them; `--rootfs` used to resolve the whiteouts through the new symlink and delete them.
#[test]
fn whiteouts_umoci_writes_under_a_symlink_of_their_own_layer_spare_what_it_points_to() {
    let Some(_) = peer("umoci") else { return };
    let t = tempdir();
    let dir = t.path();
    let lower = dir.join("lower");
    sample_tree(&lower);
    for (name, content) in [
        ("NEWS.Debian.gz", &b"news\n"[..]),
        ("changelog.gz", b"changes\n"),
        ("copyright", b"GPL-2+\n"),
    ] {
        file(
            &lower,
            &format!("usr/share/doc/apt/{name}"),
            content,
            0o644,
            1_600_000_000,
        );
    }
    for d in ["usr/share/doc/apt", "usr/share/doc", "usr/share", "usr"] {
        crate::support::mtime(&lower, d, 1_600_000_500);
    }
    sh_in(
        dir,
        "set -e
         layer-pack -q --layout store lower/ | image-stack -q --layer - --tag store:base >/dev/null
         umoci unpack --image store:base bundle >/dev/null
         cd bundle/rootfs
         mkdir -p opt/docs
         mv usr/share/doc/apt opt/docs/apt
         ln -s ../../../opt/docs/apt usr/share/doc/apt",
    );
    // Whole seconds: umoci's tar rounds times to the nearest one.
    let rootfs = dir.join("bundle/rootfs");
    for p in ["usr/share/doc/apt", "usr/share/doc", "opt/docs", "opt"] {
        crate::support::mtime_whole(&rootfs, p, 1_650_000_000);
    }
    sh_in(
        dir,
        "set -e
         umoci repack --image store:moved bundle >/dev/null
         umoci unpack --image store:moved reference >/dev/null",
    );
    let names = top_layer_names(&dir.join("store"), "moved");
    let at = |name: &str| names.iter().position(|n| n.trim_start_matches('/') == name);
    let link = at("usr/share/doc/apt").expect("the symlink is in the layer");
    let whiteout = at("usr/share/doc/apt/.wh.NEWS.Debian.gz").expect("a whiteout under it");
    assert!(link < whiteout, "{names:?}");
    assert!(at("opt/docs/apt/NEWS.Debian.gz").is_some(), "{names:?}");

    let changed = snapshot(&dir.join("bundle/rootfs"));
    let theirs = snapshot(&dir.join("reference/rootfs"));
    assert!(theirs.contains("opt/docs/apt/NEWS.Debian.gz file"), "{theirs}");
    assert_eq!(theirs, changed);
    assert_eq!(ours(dir, "store:moved", "ours"), theirs);
    // --tar is the same union: against the changed tree, nothing differs.
    sh_in(dir, "image-stack -q --from store:moved --tar > flat.tar");
    assert_eq!(text(sh_in(dir, "layer-diff --list bundle/rootfs/ flat.tar")), "");
    // layer-diff stacks the images to the trees they were made from.
    assert_eq!(
        text(sh_in(dir, "layer-diff --list store:moved bundle/rootfs/")),
        ""
    );
    let of_trees = text(sh_in(dir, "layer-diff --list lower/ bundle/rootfs/"));
    assert!(of_trees.contains("A /opt/docs/apt/NEWS.Debian.gz"), "{of_trees}");
    assert_eq!(
        text(sh_in(dir, "layer-diff --list store:base store:moved")),
        of_trees
    );
}

/// An opaque marker beneath a lower layer's symlink to a directory (`lnk -> d`, then
/// `lnk/.wh..wh..opq` and `lnk/b`) hides what `d` held, as umoci unpacks it: `--rootfs` and
/// `--tar` (extracted by GNU tar) both give umoci's tree.
#[test]
fn an_opaque_marker_beneath_a_lower_symlink_acts_as_umoci_applies_it() {
    let Some(_) = peer("umoci") else { return };
    let t = tempdir();
    let dir = t.path();
    sh_in(
        dir,
        "set -e
         mkdir -p l1/d l2/lnk
         echo a > l1/d/a
         ln -s d l1/lnk
         echo b > l2/lnk/b
         : > l2/lnk/.wh..wh..opq
         tar -C l1 -cf 1.tar .
         (cd l2 && tar --no-recursion -cf ../2.tar lnk/.wh..wh..opq lnk/b)
         layer-pack -q --layout store 1.tar | image-stack -q --layer - --tag store:lower >/dev/null
         layer-pack -q --layout store 2.tar | image-stack -q --from store:lower --layer - --tag store:opaque >/dev/null
         umoci raw unpack --image store:opaque theirs >/dev/null 2>&1
         image-stack -q --from store:opaque --rootfs ours/
         mkdir flat && image-stack -q --from store:opaque --tar | tar -C flat -xf -",
    );
    let list = |d: &str| {
        text(sh_in(
            dir,
            &format!("cd {d} && find . -printf '%p %y %l\\n' | LC_ALL=C sort"),
        ))
    };
    let theirs = list("theirs");
    assert_eq!(theirs, ". d \n./d d \n./d/b f \n./lnk l d\n", "umoci");
    assert_eq!(list("ours"), theirs, "--rootfs");
    assert_eq!(list("flat"), theirs, "--tar");
}
