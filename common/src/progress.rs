//! Progress on stderr: only on a terminal, never with `--quiet`, and only for work that lasts
//! more than about a second; with a total, a percentage, a rate and an ETA where the size is
//! known, and the layer N/M where there are layers.
//!
//! **Who draws.** The tools of a pipeline (`image-stack --tar | layer-pack | image-stack --tag`)
//! share one terminal through their stderr, and one row: two tools drawing there overwrite each
//! other. So a tool draws only while it holds an exclusive `flock` on that terminal (each opens
//! the device its stderr names, so each has a lock of its own; a killed holder's lock goes
//! with it), and only while its own counter moves. A tool whose counter has stood still for a
//! second (a stage waiting for its input, or for its reader) clears its line and lets the lock
//! go, so the stage doing the work is the one shown, one at a time. "Only the last stage
//! draws" was the other way: but the last stage of the squash pipeline (`image-stack --tag`)
//! waits for nearly the whole run, so nothing would be shown while the first two work.
//!
//! **No stale line.** A tool clears its line when its progress ends (dropped: on success and on
//! every error path, which unwinds the stack before `crate::cli::report` prints), and on a
//! signal (an action registered with [`crate::signal`]). Messages printed while a line may be
//! shown, by this tool or another stage, go through [`message`], which erases the row first:
//! the message takes its place, and the line is drawn again below it.
//!
//! Not drawn either when TERM=dumb, when the terminal cannot be opened to lock, or when the
//! tool runs in the background (its process group is not the terminal's foreground group).

use crate::signal;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Nothing is drawn before the work has lasted this long.
const DELAY: Duration = Duration::from_secs(1);
/// A counter that has not moved for this long is waiting, not working: its line goes.
const STALL: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(200);
/// The rate is measured over this much of the recent past.
const WINDOW: Duration = Duration::from_secs(5);
const SPINNER: [char; 8] = ['⠁', '⠂', '⠄', '⡀', '⢀', '⠠', '⠐', '⠈'];
/// Moves to the start of the row and erases it.
const ERASE: &str = "\r\x1b[2K";

/// What a phase counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    /// Entries, blobs.
    Items,
    /// Nothing to count (walking a tree, comparing): busy for as long as the phase lasts.
    Busy,
}

/// A progress line, shown while its work lasts. Hidden (every method a no-op) when quiet or
/// when stderr is not a terminal.
pub struct Progress {
    shared: Option<Arc<Shared>>,
    ticker: Option<JoinHandle<()>>,
    on_signal: Option<signal::Guard>,
}

struct Shared {
    pos: AtomicU64,
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    /// The terminal, opened anew: the lock and the width are taken on it.
    tty: File,
    label: String,
    unit: Unit,
    total: Option<u64>,
    layer: Option<(usize, usize)>,
    created: Instant,
    phase_start: Instant,
    /// The counter as last seen, and when it last moved (or the phase started).
    last_pos: u64,
    moved: Instant,
    /// Since when it has been working without a stall.
    working_since: Option<Instant>,
    samples: VecDeque<(Instant, u64)>,
    /// This tool holds the terminal's lock, and so may have a line drawn.
    held: bool,
    closed: bool,
    frame: usize,
}

/// Serializes this process's writes to stderr that may meet a progress line.
static STDERR: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// True when stderr is a terminal that understands the erase sequences.
fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Prints `line` on stderr. On a terminal it first erases the row the cursor is on, which holds
/// the progress line if one is drawn, by this tool or another stage of the pipeline.
pub fn message(line: &str) {
    let text = if stderr_is_terminal() {
        format!("{ERASE}{line}\n")
    } else {
        format!("{line}\n")
    };
    let _serial = lock(&STDERR);
    let _ = io::stderr().write_all(text.as_bytes());
}

impl Progress {
    /// A progress line with no phase yet ([`Progress::start`] starts one).
    pub fn new(quiet: bool) -> Progress {
        let hidden = Progress {
            shared: None,
            ticker: None,
            on_signal: None,
        };
        if quiet || !stderr_is_terminal() {
            return hidden;
        }
        let Some(tty) = open_terminal() else {
            return hidden;
        };
        let shared = Arc::new(Shared {
            pos: AtomicU64::new(0),
            state: Mutex::new(State::new(tty, Instant::now())),
            wake: Condvar::new(),
        });
        let for_signal = Arc::clone(&shared);
        let on_signal = signal::on_signal(move || lock(&for_signal.state).close());
        let for_ticker = Arc::clone(&shared);
        let Ok(ticker) = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || tick_until_closed(&for_ticker))
        else {
            return hidden;
        };
        Progress {
            shared: Some(shared),
            ticker: Some(ticker),
            on_signal: Some(on_signal),
        }
    }

    /// A progress line that is never drawn.
    pub fn hidden() -> Progress {
        Progress::new(true)
    }

    /// A line counting bytes, labelled `what`.
    pub fn bytes(what: &str, quiet: bool) -> Progress {
        let p = Progress::new(quiet);
        p.start(what, Unit::Bytes, None);
        p
    }

    /// A line counting items (entries, blobs), labelled `what`.
    pub fn items(what: &str, quiet: bool) -> Progress {
        let p = Progress::new(quiet);
        p.start(what, Unit::Items, None);
        p
    }

    /// Starts a phase: a new label, unit and total (when known); the counter starts at 0.
    pub fn start(&self, what: &str, unit: Unit, total: Option<u64>) {
        let Some(shared) = &self.shared else { return };
        let mut st = lock(&shared.state);
        shared.pos.store(0, Ordering::Relaxed);
        let now = Instant::now();
        st.label = what.to_string();
        st.unit = unit;
        st.total = total;
        st.layer = None;
        st.phase_start = now;
        st.last_pos = 0;
        st.moved = now;
        st.samples.clear();
    }

    /// The total of the current phase, once known (a walk has ended).
    pub fn set_total(&self, total: Option<u64>) {
        if let Some(shared) = &self.shared {
            lock(&shared.state).total = total;
        }
    }

    /// Shows `layer n/of`.
    pub fn set_layer(&self, n: usize, of: usize) {
        if let Some(shared) = &self.shared {
            lock(&shared.state).layer = Some((n, of));
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(shared) = &self.shared {
            shared.pos.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Wraps a reader so that what it reads is counted.
    pub fn reader<R: Read>(&self, inner: R) -> Counted<'_, R> {
        Counted {
            inner,
            progress: self,
        }
    }

    /// Wraps a writer so that what it writes is counted.
    pub fn writer<W: Write>(&self, inner: W) -> Counted<'_, W> {
        Counted {
            inner,
            progress: self,
        }
    }

    /// Prints a warning, in place of the line if one is drawn.
    pub fn warn(&self, tool: &str, msg: &str) {
        message(&format!("{tool}: warning: {msg}"));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else { return };
        lock(&shared.state).close();
        shared.wake.notify_all();
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        drop(self.on_signal.take());
    }
}

/// Counts what passes through on a [`Progress`].
pub struct Counted<'a, T> {
    inner: T,
    progress: &'a Progress,
}

impl<T> Counted<'_, T> {
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn tick_until_closed(shared: &Shared) {
    let mut st = lock(&shared.state);
    loop {
        st = shared
            .wake
            .wait_timeout(st, TICK)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if st.closed {
            return;
        }
        let pos = shared.pos.load(Ordering::Relaxed);
        st.tick(pos, Instant::now());
    }
}

/// The terminal stderr is on, opened for its lock (never as a controlling terminal).
fn open_terminal() -> Option<File> {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    let name = rustix::termios::ttyname(io::stderr(), Vec::new()).ok()?;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.as_bytes()));
    let fd = rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    Some(File::from(fd))
}

/// What a tick does with the row.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Draw the line (taking the terminal's lock first if need be).
    Draw,
    /// Nothing to draw: clear the line if one is drawn, and let the lock go.
    Clear,
    /// Not yet: leave things as they are.
    Wait,
}

impl State {
    /// A line with no phase yet, on the terminal `tty`, created at `now`.
    fn new(tty: File, now: Instant) -> State {
        State {
            tty,
            label: String::new(),
            unit: Unit::Busy,
            total: None,
            layer: None,
            created: now,
            phase_start: now,
            last_pos: 0,
            moved: now,
            working_since: None,
            samples: VecDeque::new(),
            held: false,
            closed: false,
            frame: 0,
        }
    }

    fn tick(&mut self, pos: u64, now: Instant) {
        match self.next_step(pos, now) {
            Step::Clear => self.release(),
            Step::Wait => {}
            Step::Draw => {
                if !self.held {
                    use rustix::fs::FlockOperation;
                    if rustix::fs::flock(&self.tty, FlockOperation::NonBlockingLockExclusive).is_err() {
                        return;
                    }
                    self.held = true;
                }
                self.frame = self.frame.wrapping_add(1);
                let width = rustix::termios::tcgetwinsize(&self.tty)
                    .ok()
                    .map_or(0, |w| usize::from(w.ws_col));
                let width = if width == 0 { 80 } else { width };
                // One column short of the width: a line that fills the row would wrap on some
                // terminals, and `\r` would then return to the wrong row.
                let line: String = self.render(pos, now).chars().take(width - 1).collect();
                let _serial = lock(&STDERR);
                let _ = io::stderr().write_all(format!("\r{line}\x1b[K").as_bytes());
            }
        }
    }

    /// Takes in the counter at `now` and says what to do with the row.
    fn next_step(&mut self, pos: u64, now: Instant) -> Step {
        if pos != self.last_pos {
            self.last_pos = pos;
            self.moved = now;
        }
        self.samples.push_back((now, pos));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            self.samples.pop_front();
        }
        let working = self.unit == Unit::Busy || now.duration_since(self.moved) < STALL;
        self.working_since = working.then(|| self.working_since.unwrap_or(now));
        let due = now.duration_since(self.created) >= DELAY;
        if !(working && due && !self.label.is_empty() && self.in_foreground()) {
            return Step::Clear;
        }
        // A line that knows its total takes the terminal at once; one that does not (a stage
        // reading a pipe) only after a second of steady work, so that where two stages work
        // together, the one that can tell how far along they are is the one shown.
        let steady = self.working_since.is_some_and(|t| now.duration_since(t) >= DELAY);
        if !self.held && self.total.is_none() && !steady {
            return Step::Wait;
        }
        Step::Draw
    }

    /// False when this process runs in the background of its terminal.
    fn in_foreground(&self) -> bool {
        match rustix::termios::tcgetpgrp(&self.tty) {
            Ok(pgrp) => pgrp == rustix::process::getpgrp(),
            Err(_) => true,
        }
    }

    /// Clears the line if one is drawn and lets the terminal's lock go.
    fn release(&mut self) {
        if !self.held {
            return;
        }
        {
            let _serial = lock(&STDERR);
            let _ = io::stderr().write_all(ERASE.as_bytes());
        }
        let _ = rustix::fs::flock(&self.tty, rustix::fs::FlockOperation::Unlock);
        self.held = false;
    }

    /// Ends the line for good: cleared, never drawn again.
    fn close(&mut self) {
        self.closed = true;
        self.release();
    }

    fn render(&self, pos: u64, now: Instant) -> String {
        let mut line = format!("{} {}:", SPINNER[self.frame % SPINNER.len()], self.label);
        let mut parts: Vec<String> = Vec::new();
        if let Some((n, of)) = self.layer {
            parts.push(format!("layer {n}/{of}"));
        }
        let amount = |n: u64| match self.unit {
            Unit::Bytes => crate::units::human_size(n, 3),
            _ => n.to_string(),
        };
        let total = self.total.filter(|t| *t > 0);
        if self.unit != Unit::Busy {
            parts.push(match total {
                Some(t) => {
                    let percent = (u128::from(pos) * 100 / u128::from(t)).min(100);
                    format!("{} / {} ({percent}%)", amount(pos), amount(t))
                }
                None => amount(pos),
            });
        }
        let rate = self.rate();
        if self.unit == Unit::Bytes
            && let Some(r) = rate
        {
            parts.push(format!("{}/s", crate::units::human_size(r as u64, 3)));
        }
        match (total, rate) {
            (Some(t), Some(r)) if t > pos && r > 0.0 => {
                let secs = (t - pos) as f64 / r;
                parts.push(format!("ETA {}", clock(Duration::from_secs_f64(secs.min(1e7)))));
            }
            _ => parts.push(clock(now.duration_since(self.phase_start))),
        }
        for (i, p) in parts.iter().enumerate() {
            let sep = if i == 0 { " " } else { " · " };
            let _ = write!(line, "{sep}{p}");
        }
        line
    }

    /// Units per second over the recent past, once there is half a second of it.
    fn rate(&self) -> Option<f64> {
        let (t0, p0) = self.samples.front()?;
        let (t1, p1) = self.samples.back()?;
        let secs = t1.duration_since(*t0).as_secs_f64();
        (secs >= 0.5).then(|| p1.saturating_sub(*p0) as f64 / secs)
    }
}

/// `4s`, `1m05s`, `2h03m`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(unit: Unit, total: Option<u64>) -> (State, Instant) {
        let now = Instant::now();
        let st = State {
            label: "reading layers".into(),
            unit,
            total,
            layer: Some((2, 5)),
            ..State::new(File::open("/dev/null").unwrap(), now)
        };
        (st, now)
    }

    /// The counter's values at each tick, 200 ms apart, and what each tick does.
    fn steps(st: &mut State, start: Instant, counts: &[u64]) -> Vec<Step> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &pos)| st.next_step(pos, start + TICK * (i as u32 + 1)))
            .collect()
    }

    #[test]
    fn a_line_waits_a_second_and_goes_when_its_work_stalls() {
        use Step::{Clear, Draw, Wait};
        // A total is known: drawn from the tick at 1 s, while the counter moves; cleared at
        // 2.4 s, a second after it stopped (at 1.4 s); drawn again when it moves.
        let (mut st, start) = state(Unit::Bytes, Some(1000));
        let counts = [1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7, 7, 8];
        let want = [
            Clear, Clear, Clear, Clear, Draw, Draw, Draw, Draw, Draw, Draw, Draw, Clear, Draw,
        ];
        assert_eq!(steps(&mut st, start, &counts), want);
        // No total (a stage waiting on a pipe, then reading it from 1.4 s): drawn only after a
        // second of steady work, at 2.4 s.
        let (mut st, start) = state(Unit::Bytes, None);
        let counts = [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7];
        let want = [
            Clear, Clear, Clear, Clear, Clear, Clear, Wait, Wait, Wait, Wait, Wait, Draw, Draw,
        ];
        assert_eq!(steps(&mut st, start, &counts), want);
    }

    #[test]
    fn a_known_total_shows_amount_percentage_rate_and_eta() {
        let (mut st, start) = state(Unit::Bytes, Some(120_000_000));
        st.samples.push_back((start, 0));
        st.samples.push_back((start + Duration::from_secs(4), 48_000_000));
        // 12 MB/s with 72 MB to go: 6 s.
        assert_eq!(
            st.render(48_000_000, start + Duration::from_secs(4)),
            "⠁ reading layers: layer 2/5 · 48MB / 120MB (40%) · 12MB/s · ETA 6s"
        );
    }

    #[test]
    fn an_unknown_total_shows_the_amount_and_the_time_spent() {
        let (mut st, start) = state(Unit::Items, None);
        st.layer = None;
        st.label = "checking blobs".into();
        assert_eq!(
            st.render(1234, start + Duration::from_secs(65)),
            "⠁ checking blobs: 1234 · 1m05s"
        );
        st.unit = Unit::Busy;
        assert_eq!(
            st.render(0, start + Duration::from_secs(3)),
            "⠁ checking blobs: 3s"
        );
    }
}
