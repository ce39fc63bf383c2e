//! The real docker engine as a test peer: a private `dockerd` for the test process, and images
//! moved between our layouts and it.
//!
//! One dockerd per test process, started on first use and shared by its tests. Everything it
//! owns lives under one short directory (`/tmp/lkd-XXXXXX`: data root, exec root, socket,
//! pidfile, its own daemon.json, logs), so it touches nothing of the host's docker (the paths
//! outside it that dockerd 20.10 hard-codes: `/run/docker/plugins` and containerd's shim sockets
//! under `/run/containerd/s/`). It is started through a small shell supervisor holding the read
//! end of a pipe whose write end only this process holds: when the process ends, however it
//! ends (destructors of statics never run), the pipe closes and the supervisor stops dockerd by
//! its PID (SIGTERM, then SIGKILL after 30 s), unmounts what is left under the directory and
//! removes it.
//!
//! The Debian client is `/usr/bin/docker` (called by that path: an unrelated newer client may
//! come first on PATH) and the engine `/usr/sbin/dockerd`; images cross with skopeo
//! (`docker load` and `docker save` speak only docker-archive).

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const DOCKER: &str = "/usr/bin/docker";
pub const DOCKERD: &str = "/usr/sbin/dockerd";

/// A running private dockerd.
pub struct Dockerd {
    dir: PathBuf,
    socket: PathBuf,
    driver: &'static str,
    /// The write end of the supervisor's pipe: closing it (by dropping it, or by this process
    /// ending) stops dockerd.
    _lifeline: Mutex<ChildStdin>,
}

/// Stops dockerd when its stdin (fd 3 once moved) reaches end of file, then cleans up. Arguments:
/// the directory, then dockerd's command line. The exit status of dockerd goes to `exited`.
const SUPERVISOR: &str = r#"
dir=$1; shift
exec 3<&0 </dev/null
"$@" >"$dir/dockerd.log" 2>&1 3<&- &
pid=$!
(
  cat <&3 >/dev/null
  [ -e "$dir/exited" ] && exit 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null
) &
watcher=$!
exec 3<&-
wait "$pid"
echo $? >"$dir/exited"
wait "$watcher"
# containerd dies with dockerd (parent-death signal); its pidfile is checked all the same.
pidfile="$dir/exec/containerd/containerd.pid"
[ -s "$pidfile" ] && kill -KILL "$(cat "$pidfile")" 2>/dev/null
awk -v r="$dir" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo |
  sort -r | while read -r m; do umount -l "$m"; done
rm -rf "$dir"
"#;

static ENGINE: OnceLock<Option<Dockerd>> = OnceLock::new();

/// The test process's private dockerd, started on first use. `None` when it cannot run here:
/// off CI with a visible SKIPPED line; in CI (`CI=true`) a failure instead.
pub fn dockerd() -> Option<&'static Dockerd> {
    ENGINE.get_or_init(start).as_ref()
}

fn start() -> Option<Dockerd> {
    if !super::needs_root("running a private dockerd") {
        return None;
    }
    for path in [DOCKER, DOCKERD] {
        if !Path::new(path).is_file() {
            assert!(
                !super::in_ci(),
                "{path} is missing in CI (the Makefile installs docker.io)"
            );
            eprintln!("SKIPPED: {path} is not installed (make test installs docker.io as root)");
            return None;
        }
    }
    super::peer("skopeo")?;
    let mut failures = Vec::new();
    // overlay2 is what docker's sizes are compared on; vfs runs where overlay cannot mount
    // (a data root on overlayfs, some containers).
    for driver in ["overlay2", "vfs"] {
        match Dockerd::start(driver) {
            Ok(d) => return Some(d),
            Err(e) => failures.push(format!("{driver}: {e}")),
        }
    }
    let why = failures.join("; ");
    assert!(!super::in_ci(), "dockerd does not start in CI: {why}");
    eprintln!("SKIPPED: dockerd does not start here: {why}");
    None
}

impl Dockerd {
    fn start(driver: &'static str) -> Result<Dockerd, String> {
        // Short: containerd's sockets under the exec root must stay under 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("lkd-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("making its directory: {e}"))?
            .keep();
        let socket = dir.join("d.sock");
        let config = dir.join("daemon.json");
        // Without deprecated-key-path dockerd writes /etc/docker/key.json (and refuses the
        // command-line flag for it).
        let json = serde_json::json!({ "deprecated-key-path": dir.join("key.json") });
        std::fs::write(&config, json.to_string()).map_err(|e| format!("writing daemon.json: {e}"))?;
        let path = |p: &str| dir.join(p).to_string_lossy().into_owned();
        let mut child = Command::new("bash")
            .args(["-c", SUPERVISOR, "supervisor"])
            .arg(&dir)
            .arg(DOCKERD)
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args(["-H", &format!("unix://{}", socket.display())])
            .args([
                "--pidfile",
                &path("dockerd.pid"),
                "--config-file",
                &path("daemon.json"),
            ])
            .args(["--bridge=none", "--iptables=false", "--storage-driver", driver])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting its supervisor: {e}"))?;
        let lifeline = child.stdin.take().expect("piped stdin");
        let d = Dockerd {
            dir,
            socket,
            driver,
            _lifeline: Mutex::new(lifeline),
        };
        // Dropping `d` on failure closes the lifeline: the supervisor stops and cleans up.
        let started = Instant::now();
        loop {
            if d.dir.join("exited").exists() {
                return Err(format!("dockerd exited: {}", d.log_tail()));
            }
            let out = d
                .docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .output();
            if out.is_ok_and(|o| o.status.success()) {
                return Ok(d);
            }
            if started.elapsed() > Duration::from_secs(90) {
                return Err(format!("no answer after 90 s: {}", d.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// The storage driver in use: `overlay2`, or `vfs` where overlay cannot mount.
    pub fn driver(&self) -> &str {
        self.driver
    }

    /// A docker CLI command talking to this engine only, with a client configuration of its
    /// own (nothing read from or written to ~/.docker).
    pub fn docker(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        c
    }

    /// Runs `docker ARGS…`, asserting success; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = super::ok(self.docker().args(args), b"");
        String::from_utf8(out).expect("docker prints UTF-8")
    }

    /// `docker run --network none IMAGE /bin/sh -c SCRIPT`, removed after (`--rm`), or kept as
    /// the container `name` for `docker diff` and `docker commit`; returns stdout.
    pub fn sh(&self, name: Option<&str>, image: &str, script: &str) -> String {
        let mut args = vec!["run"];
        match name {
            Some(name) => args.extend(["--name", name]),
            None => args.push("--rm"),
        }
        args.extend(["--network", "none", image, "/bin/sh", "-c", script]);
        self.run(&args)
    }

    /// Loads the image `layout:reference` of one of our layouts into the engine as `name`
    /// (`repo:tag`): skopeo writes a docker-archive, `docker load` reads it. zstd layers go
    /// through gzip first (a docker-archive cannot carry them: skopeo 1.9 refuses).
    pub fn load(&self, layout: &Path, reference: &str, name: &str) {
        let out = self.try_load(layout, reference, name);
        assert!(
            out.status.success(),
            "docker load: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// [`Dockerd::load`], for an image docker may refuse: what `docker load` did.
    pub fn try_load(&self, layout: &Path, reference: &str, name: &str) -> std::process::Output {
        let work = super::tempdir();
        let mut source = format!("oci:{}:{reference}", layout.display());
        let manifest = super::ok(Command::new("skopeo").args(["inspect", "--raw", &source]), b"");
        if String::from_utf8_lossy(&manifest).contains("+zstd") {
            let gzip = format!("oci:{}:{reference}", work.path().join("gzip").display());
            skopeo(&["copy", "--dest-compress-format", "gzip", &source, &gzip]);
            source = gzip;
        }
        let archive = work.path().join("image.tar");
        skopeo(&[
            "copy",
            &source,
            &format!("docker-archive:{}:{name}", archive.display()),
        ]);
        super::run(
            self.docker().args(["load", "-i", &archive.to_string_lossy()]),
            b"",
        )
    }

    /// Saves the engine's image `name` into `layout:reference` as docker holds it, its config
    /// byte for byte (so its id is docker's): `docker save`, then each file of the archive
    /// written as a blob by hand, with an OCI manifest over them. (skopeo rewrites a docker
    /// config into an OCI one on its way to an `oci:` layout, which changes the id.)
    pub fn save_as_is(&self, name: &str, layout: &Path, reference: &str) {
        use sha2::Digest as _;
        use std::io::Read;
        let work = super::tempdir();
        let archive = work.path().join("image.tar");
        self.run(&["save", "-o", &archive.to_string_lossy(), name]);
        let mut files = std::collections::HashMap::new();
        let mut tar = tar::Archive::new(std::fs::File::open(&archive).expect("archive"));
        for e in tar.entries().expect("tar") {
            let mut e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).expect("read");
            files.insert(path, bytes);
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&files["manifest.json"]).expect("manifest.json");
        std::fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir");
        if !layout.join("oci-layout").exists() {
            std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
                .expect("oci-layout");
            std::fs::write(
                layout.join("index.json"),
                br#"{"schemaVersion":2,"manifests":[]}"#,
            )
            .expect("index");
        }
        let blob = |bytes: &[u8], media_type: &str| {
            let hex = hex::encode(sha2::Sha256::digest(bytes));
            std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).expect("blob");
            serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
        };
        let config = blob(
            &files[manifest[0]["Config"].as_str().expect("Config")],
            "application/vnd.oci.image.config.v1+json",
        );
        let layers: Vec<serde_json::Value> = manifest[0]["Layers"]
            .as_array()
            .expect("Layers")
            .iter()
            .map(|l| {
                blob(
                    &files[l.as_str().expect("layer")],
                    "application/vnd.oci.image.layer.v1.tar",
                )
            })
            .collect();
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": layers});
        let mut entry = blob(
            &serde_json::to_vec(&m).expect("json"),
            "application/vnd.oci.image.manifest.v1+json",
        );
        entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": reference});
        let path = layout.join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("index")).expect("json");
        let entries = index["manifests"].as_array_mut().expect("manifests");
        entries.retain(|e| e["annotations"]["org.opencontainers.image.ref.name"] != reference);
        entries.push(entry);
        std::fs::write(&path, serde_json::to_vec(&index).expect("json")).expect("index");
    }

    /// Saves the engine's image `name` into `layout:reference` (`docker save`, then skopeo).
    pub fn save(&self, name: &str, layout: &Path, reference: &str) {
        let work = super::tempdir();
        let archive = work.path().join("image.tar");
        self.run(&["save", "-o", &archive.to_string_lossy(), name]);
        let dest = format!("oci:{}:{reference}", layout.display());
        skopeo(&["copy", &format!("docker-archive:{}", archive.display()), &dest]);
    }
}

fn skopeo(args: &[&str]) {
    super::ok(Command::new("skopeo").args(args), b"");
}
