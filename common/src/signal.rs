//! What a tool undoes when SIGINT, SIGTERM or SIGHUP ends it, and the exit status it ends with.
//!
//! A signal kills a process without running destructors, so a `tempfile` being written stayed
//! behind (a `.layerkit-tmp-*` of 15-156 MB per Ctrl-C of `layer-pack`). Instead, every tool
//! (through [`crate::cli::main`]) runs [`install`]: a thread waits for the signals, and on the
//! first one it runs the actions registered here, newest first (a temporary file's removal
//! before the removal of the layout created to hold it; the progress line cleared before a
//! last message), then exits with 128 + the signal's number (130, 143, 129), as CLI.md says.
//! It exits with `_exit`: nothing buffered for stdout (half a JSON line) is flushed after the
//! cut.
//!
//! Races. Registering, running the actions and renaming a registered file into place all hold
//! one lock, and the handler keeps it until the process is gone:
//! - a file is created and registered under the lock ([`Registry`]), so none is created after
//!   the handler ran and left behind;
//! - a file is renamed into place and unregistered under the lock (see `crate::atomic`), so the
//!   handler never removes what a rename has just made complete: it runs wholly before the
//!   rename (the temporary name goes, the destination was never touched) or wholly after (the
//!   file is complete under its name: a content-addressed blob, or an `index.json` replaced
//!   atomically, both harmless to keep);
//! - an action removing a file that its owner removed meanwhile finds nothing, which is fine.
//!
//! Only SIGKILL (or a crash) can leave a temporary file, which image-prune then names; or a
//! second signal while the first one's actions still run, which ends the process at once.
//!
//! A signal the tool was started with ignored (`nohup` ignores SIGHUP, a non-interactive shell
//! ignores SIGINT for `cmd &`) stays ignored: the user asked for the tool not to be
//! interrupted by it. SIGPIPE is not handled: Rust ignores it, so a reader that goes away shows
//! as a broken pipe error, which `crate::cli::report` turns into a quiet exit.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

type Action = Box<dyn Fn() + Send>;

struct Actions {
    next: u64,
    list: Vec<(u64, Action)>,
}

impl Actions {
    fn remove(&mut self, id: u64) {
        self.list.retain(|(i, _)| *i != id);
    }
}

static ACTIONS: Mutex<Actions> = Mutex::new(Actions {
    next: 0,
    list: Vec::new(),
});

/// The signals that end a tool cleanly.
const HANDLED: [i32; 3] = [SIGHUP, SIGINT, SIGTERM];

/// The handled signal that came, 0 until one does: set in the signal handler itself, so it is
/// seen before anything the signal caused elsewhere (the end of a pipe whose writer it killed).
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// Starts the thread that, on SIGINT, SIGTERM or SIGHUP, runs the registered actions and exits
/// with 128 + the signal's number. Signals ignored at start stay ignored.
pub fn install() -> io::Result<()> {
    let ignored = ignored_at_start();
    let wanted: Vec<i32> = HANDLED.into_iter().filter(|s| !ignored.contains(s)).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    for &signal in &wanted {
        signal_hook::flag::register_usize(signal, &RECEIVED, signal as usize)?;
    }
    let mut signals = signal_hook::iterator::Signals::new(&wanted)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut signals = signals.forever();
            let Some(signal) = signals.next() else { return };
            // The actions run on a thread of their own, so that a second signal still ends the
            // process at once should they hang (a write to stdout that a stopped reader
            // blocks): the impatient second Ctrl-C, at the price of what was not yet undone.
            let undo = std::thread::Builder::new()
                .name("undo".into())
                .spawn(move || undo_and_exit(signal));
            if undo.is_err() {
                signal_hook::low_level::exit(128 + signal);
            }
            if let Some(again) = signals.next() {
                signal_hook::low_level::exit(128 + again);
            }
        })?;
    Ok(())
}

/// Runs the registered actions, newest first, and exits with 128 + `signal`. Whoever comes
/// first (the signal thread, or an error that the signal caused) runs them; the lock, held
/// until the process is gone, makes the other wait for the exit.
fn undo_and_exit(signal: i32) -> ! {
    let actions = lock();
    for (_, action) in actions.list.iter().rev() {
        action();
    }
    signal_hook::low_level::exit(128 + signal);
}

/// For a tool about to report an error: when a handled signal has come, the error is the
/// signal's doing (a Ctrl-C to a whole pipeline ends the writer upstream, and this tool then
/// reads a cut input), so it ends as the signal ends it, quietly, and never returns.
pub fn exit_if_interrupted() {
    if let Ok(signal) = i32::try_from(RECEIVED.load(Ordering::SeqCst))
        && signal != 0
    {
        undo_and_exit(signal);
    }
}

/// The handled signals whose disposition is "ignore" in this process, from `SigIgn` of
/// `/proc/self/status` (reading the disposition through sigaction(2) would take unsafe code).
fn ignored_at_start() -> Vec<i32> {
    let mask = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(line.trim(), 16).ok()
        })
        .unwrap_or(0);
    HANDLED
        .into_iter()
        .filter(|s| mask & (1 << (s - 1)) != 0)
        .collect()
}

fn lock() -> MutexGuard<'static, Actions> {
    ACTIONS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The registry of actions, locked: what is created and registered while it is held, or
/// renamed and released, is seen by the handler wholly before or wholly after. Once a signal
/// is being handled, taking it blocks until the process exits.
pub struct Registry(MutexGuard<'static, Actions>);

/// Locks the registry (see [`Registry`]).
pub fn registry() -> Registry {
    Registry(lock())
}

impl Registry {
    /// Runs `action` if a signal ends the process while the returned guard lives.
    pub fn on_signal(&mut self, action: impl Fn() + Send + 'static) -> Guard {
        let id = self.0.next;
        self.0.next += 1;
        self.0.list.push((id, Box::new(action)));
        Guard { id: Some(id) }
    }

    /// Removes the file at `path` if a signal ends the process while the guard lives.
    pub fn remove_on_signal(&mut self, path: &Path) -> Guard {
        let path = path.to_path_buf();
        self.on_signal(move || {
            let _ = fs::remove_file(&path);
        })
    }

    /// Unregisters `guard`'s action under this lock: what it would undo has just been made
    /// permanent (a file renamed into place).
    pub fn release(&mut self, mut guard: Guard) {
        if let Some(id) = guard.id.take() {
            self.0.remove(id);
        }
    }
}

/// Runs `action` if a signal ends the process while the returned guard lives.
pub fn on_signal(action: impl Fn() + Send + 'static) -> Guard {
    registry().on_signal(action)
}

/// An action registered with [`Registry`]: unregistered when dropped. Never drop one while
/// holding the [`Registry`] (use [`Registry::release`]): the lock is not reentrant.
#[must_use = "the action is unregistered when the guard is dropped"]
#[derive(Debug)]
pub struct Guard {
    id: Option<u64>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            lock().remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn registered(id: &Guard) -> bool {
        let id = id.id.expect("live guard");
        lock().list.iter().any(|(i, _)| *i == id)
    }

    #[test]
    fn guards_unregister_when_dropped_or_released() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let a = on_signal(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let b = registry().remove_on_signal(Path::new("/nonexistent/layerkit"));
        assert!(registered(&a) && registered(&b));
        let (ida, idb) = (a.id, b.id);
        drop(a);
        let mut reg = registry();
        reg.release(b);
        assert!(!reg.0.list.iter().any(|(i, _)| Some(*i) == ida || Some(*i) == idb));
        drop(reg);
        assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing ran without a signal");
    }
}
