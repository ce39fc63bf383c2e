//! Progress on a terminal (CLI.md, "Conventions every tool keeps"): the pipelines of CLI.md run
//! in a real terminal (a tmux pane of a fixed size, whose screen tmux renders from the escape
//! sequences), and the screen is read while they run and when they end:
//! - at the end, one clean state: the command, what it printed, the prompt; no stale line;
//! - while they run, one progress line at a time, never two stages taking turns on the row;
//! - a long run shows a total and a percentage (layer-diff's own line included), a short one
//!   (well under a second of work per stage) shows nothing.
//!
//! How long a run lasts must not depend on the machine: a fast one compresses 60 MB in under
//! a second, and then nothing is drawn, rightly. So the long runs pass their tar through
//! `pv -L`, which paces it at 20 MB/s: three seconds of steady work for every stage, as a
//! slow disk or network would make it.

use crate::support::{image_of_dir, ok, path_with_tools, peer, random_tree, tempdir};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WIDTH: usize = 200;
const SPINNER: &str = "⠁⠂⠄⡀⢀⠠⠐⠈";

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("layerkit-test-{}", std::process::id()),
        }
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn check(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&ok(self.tmux().args(args), b"")).into_owned()
    }

    /// A new window running an interactive shell in `dir`, with our tools first on PATH.
    fn shell(&self, dir: &Path) {
        let _ = self.tmux().args(["kill-session", "-t", "t"]).output();
        let mut new = self.tmux();
        new.args([
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &WIDTH.to_string(),
            "-y",
            "30",
            "-c",
        ])
        .arg(dir)
        .arg("bash --norc --noprofile")
        .env("PATH", path_with_tools())
        .env_remove("SOURCE_DATE_EPOCH");
        ok(&mut new, b"");
    }

    fn screen(&self) -> Vec<String> {
        let text = self.check(&["capture-pane", "-p", "-t", "t"]);
        let mut rows: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while rows.last().is_some_and(String::is_empty) {
            rows.pop();
        }
        rows
    }

    /// Types `command` at the prompt of a fresh shell and reads the screen every 50 ms until the
    /// command has printed `done STATUS`. Returns the prompt and every screen seen, the last one
    /// last.
    fn run(&self, dir: &Path, command: &str) -> (String, Vec<Vec<String>>) {
        self.shell(dir);
        let start = Instant::now();
        let prompt = loop {
            if let Some(first) = self.screen().first() {
                break first.clone();
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no prompt");
            std::thread::sleep(Duration::from_millis(20));
        };
        self.check(&[
            "send-keys",
            "-t",
            "t",
            "-l",
            &format!("{command}; echo \"done $?\""),
        ]);
        self.check(&["send-keys", "-t", "t", "Enter"]);
        let mut screens = Vec::new();
        loop {
            let screen = self.screen();
            // `done 0` at the end of a row (the typed command holds `"done $?"`).
            let done = screen.iter().any(|r| {
                r.rsplit_once("done ")
                    .is_some_and(|(_, s)| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
            });
            screens.push(screen);
            if done {
                // The prompt comes back just after.
                std::thread::sleep(Duration::from_millis(300));
                screens.push(self.screen());
                return (prompt, screens);
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "{command}: not done: {:?}",
                screens.last()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

fn is_progress(row: &str) -> bool {
    row.chars().next().is_some_and(|c| SPINNER.contains(c))
}

/// The label of a progress row: `⠂ writing the tar: 48MB / 300MB (16%) · …` → `writing the tar`.
fn label(row: &str) -> &str {
    let rest = row.split_once(' ').map_or("", |(_, r)| r);
    rest.split_once(':').map_or(rest, |(l, _)| l)
}

/// `48.1MB / 300MB (16%)`: an amount, a total and a percentage.
fn has_total_and_percentage(row: &str) -> bool {
    let parts = row.split_once(": ").map_or("", |(_, p)| p);
    parts.split(" · ").any(|part| {
        let Some((amounts, percent)) = part.split_once(" (") else {
            return false;
        };
        let percent = percent.strip_suffix("%)").and_then(|p| p.parse::<u8>().ok());
        let sizes: Vec<&str> = amounts.split(" / ").collect();
        percent.is_some_and(|p| p <= 100)
            && sizes.len() == 2
            && sizes
                .iter()
                .all(|s| s.ends_with('B') && s.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// What the screens of a run show: the labels of the progress lines in the order they took
/// the row, after checking that no screen holds two progress lines and that the last screen is
/// exactly the command, `done 0` and the prompt.
fn check_run(command: &str, (prompt, screens): &(String, Vec<Vec<String>>)) -> Vec<String> {
    let last = screens.last().expect("screens");
    let typed = format!("{prompt} {command}; echo \"done $?\"");
    assert_eq!(
        last,
        &vec![typed, "done 0".to_string(), prompt.clone()],
        "{command}: the screen does not end clean"
    );
    let mut labels: Vec<String> = Vec::new();
    for screen in screens {
        let rows: Vec<&String> = screen.iter().filter(|r| is_progress(r)).collect();
        assert!(
            rows.len() <= 1,
            "{command}: two progress lines at once: {screen:#?}"
        );
        if let Some(row) = rows.first() {
            assert!(
                row.chars().count() < WIDTH,
                "{command}: a line as wide as the terminal: {row}"
            );
            let l = label(row).to_string();
            if labels.last() != Some(&l) {
                assert!(
                    !labels.contains(&l),
                    "{command}: {l:?} took the row again after {labels:?}: two stages take turns"
                );
                labels.push(l);
            }
        }
    }
    labels
}

#[test]
fn the_pipelines_read_cleanly_on_a_terminal() {
    if peer("tmux").is_none() || peer("pv").is_none() {
        return;
    }
    let dir = tempdir();
    let tmux = Tmux::new();
    fs::create_dir(dir.path().join("base")).expect("mkdir");
    fs::write(dir.path().join("base/hello"), b"hello\n").expect("write");
    // 60 MB of random bytes (gzip cannot shrink them), paced at 20 MB/s below.
    random_tree(&dir.path().join("web"), 6);

    image_of_dir(&dir.path().join("base"), &dir.path().join("store"), "base");

    // A short run: nothing is drawn at all.
    let quick_squash = "image-stack --from store:base --tar | layer-pack --layout store \
                        | image-stack --layer - --tag store:base-flat >/dev/null";
    let run = tmux.run(dir.path(), quick_squash);
    assert_eq!(
        check_run(quick_squash, &run),
        Vec::<String>::new(),
        "a short run drew progress"
    );

    // docker commit, the walk-through: layer-diff shows its long diff with a total.
    let commit = "layer-diff store:base web/ | pv -q -L 20m | layer-pack --layout store \
                  | image-stack --from store:base --layer - --tag store:web >/dev/null";
    let run = tmux.run(dir.path(), commit);
    let labels = check_run(commit, &run);
    assert!(
        labels.iter().any(|l| l == "writing changes"),
        "layer-diff showed no progress: {labels:?}"
    );
    assert!(
        run.1
            .iter()
            .flatten()
            .any(|r| is_progress(r) && has_total_and_percentage(r)),
        "no total and percentage shown: {:#?}",
        run.1
            .iter()
            .flatten()
            .filter(|r| is_progress(r))
            .collect::<Vec<_>>()
    );

    // Squash an image into one layer: the stage that knows the total shows it.
    let squash = "image-stack --from store:web --tar | pv -q -L 20m | layer-pack --layout store \
                  | image-stack --layer - --tag store:flat >/dev/null";
    let run = tmux.run(dir.path(), squash);
    let labels = check_run(squash, &run);
    let with_total: Vec<&String> = run
        .1
        .iter()
        .flatten()
        .filter(|r| is_progress(r) && has_total_and_percentage(r))
        .collect();
    assert!(
        with_total.iter().any(|r| label(r) == "writing the tar"),
        "image-stack --tar showed no total: {labels:?}"
    );
    // Once it has a rate, the line says when it will be done. (Its layer N/M belongs to the
    // reading of the layers before it, too short here to be drawn.)
    let parts = |r: &str| -> Vec<String> {
        r.split_once(": ")
            .map_or("", |(_, p)| p)
            .split(" · ")
            .map(str::to_string)
            .collect()
    };
    assert!(
        with_total.iter().any(|r| {
            let p = parts(r);
            label(r) == "writing the tar" && p.iter().any(|p| p.starts_with("ETA ") && p.len() > 4)
        }),
        "no ETA on image-stack --tar's line: {with_total:#?}"
    );
}
