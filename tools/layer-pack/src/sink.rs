//! Where the compressed layer goes: a blob of a layout, or the file `-o` names. Either way it is
//! written to a temporary file first and appears complete or not at all (`common::atomic`).

use anyhow::Context;
use common::atomic::AtomicFile;
use common::digest::{Digest, HashingWriter};
use common::layout::{BlobWriter, Layout, TMP_PREFIX};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

/// The compressed bytes' destination.
pub enum Sink {
    Blob(BlobWriter, Layout),
    File {
        out: HashingWriter<BufWriter<AtomicFile>>,
        dest: PathBuf,
    },
}

/// A committed blob.
pub struct Stored {
    pub digest: Digest,
    pub size: u64,
    /// The layout already held this blob.
    pub reused: bool,
    /// The absolute path of the layout or file holding it.
    pub source: PathBuf,
}

impl Sink {
    pub fn blob(layout: &Layout) -> common::Result<Sink> {
        Ok(Sink::Blob(layout.blob_writer()?, layout.clone()))
    }

    /// A file written beside `dest` and renamed over it on commit.
    pub fn file(dest: &Path) -> common::Result<Sink> {
        let tmp = AtomicFile::for_output(dest, TMP_PREFIX).context("-o")?;
        Ok(Sink::File {
            out: HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp)),
            dest: dest.to_path_buf(),
        })
    }

    /// Refuses to write inside `dir`, the directory being packed: the pack would read its own
    /// output.
    pub fn check_outside(&self, dir: &Path) -> common::Result<()> {
        let target = match self {
            Sink::Blob(_, layout) => layout.root(),
            Sink::File { dest, .. } => dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        };
        if absolute(target)?.starts_with(absolute(dir)?) {
            anyhow::bail!(
                "{}: the blob would be written inside the directory being packed, {}",
                target.display(),
                dir.display()
            );
        }
        Ok(())
    }

    pub fn commit(self) -> common::Result<Stored> {
        match self {
            Sink::Blob(writer, layout) => {
                let (digest, size, reused) = writer.commit()?;
                let source = absolute(layout.root())?;
                Ok(Stored {
                    digest,
                    size,
                    reused,
                    source,
                })
            }
            Sink::File { out, dest } => {
                let (buf, digest, size) = out.finish();
                let tmp = buf
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| format!("writing {}", dest.display()))?;
                tmp.replace(&dest)?;
                Ok(Stored {
                    digest,
                    size,
                    reused: false,
                    source: absolute(&dest)?,
                })
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Blob(w, _) => w.write(buf),
            Sink::File { out, .. } => out.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Blob(w, _) => w.flush(),
            Sink::File { out, .. } => out.flush(),
        }
    }
}

fn absolute(path: &Path) -> common::Result<PathBuf> {
    fs::canonicalize(path).with_context(|| path.display().to_string())
}

/// A layout this run created. Unless [`NewLayout::keep`] is called, dropping it removes what
/// creating it made, so a failed first pack into a new layout leaves nothing behind. Only an
/// untouched layout goes: as soon as anything else holds a blob, everything stays.
pub struct NewLayout {
    root: PathBuf,
    made_root: bool,
    keep: bool,
    /// A signal removes it too (after the blob's temporary file, registered later).
    _on_signal: common::signal::Guard,
}

impl NewLayout {
    /// Opens the layout at `root`, creating it when missing.
    pub fn open(root: &Path) -> common::Result<(Layout, Option<NewLayout>)> {
        let existed = root.join("oci-layout").exists();
        let made_root = !root.exists();
        // Registered before the layout is made, so that no moment is left uncovered.
        let created = (!existed).then(|| {
            let (root, on_signal) = (root.to_path_buf(), root.to_path_buf());
            NewLayout {
                root,
                made_root,
                keep: false,
                _on_signal: common::signal::on_signal(move || remove_untouched(&on_signal, made_root)),
            }
        });
        let layout = Layout::open_or_create(root)?;
        Ok((layout, created))
    }

    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for NewLayout {
    fn drop(&mut self) {
        if !self.keep {
            remove_untouched(&self.root, self.made_root);
        }
    }
}

/// Removes the layout a run created at `root` unless something else has stored a blob there.
fn remove_untouched(root: &Path, made_root: bool) {
    // remove_dir refuses a non-empty directory: that is the "untouched" check.
    let untouched =
        fs::remove_dir(root.join("blobs/sha256")).is_ok() && fs::remove_dir(root.join("blobs")).is_ok();
    if untouched {
        for name in ["index.json", "oci-layout"] {
            let _ = fs::remove_file(root.join(name));
        }
        if made_root {
            let _ = fs::remove_dir(root);
        }
    }
}

/// A [`Sink`] written on a thread of its own, so that hashing and writing the compressed bytes
/// overlap with reading the input, hashing it and compressing it.
pub struct Behind {
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    writer: Option<thread::JoinHandle<io::Result<Sink>>>,
}

/// Bytes handed to the writer thread at a time, and how many such chunks may wait for it.
const CHUNK: usize = 1 << 20;
const QUEUED: usize = 4;

impl Behind {
    pub fn new(mut sink: Sink) -> common::Result<Behind> {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUED);
        let writer = thread::Builder::new()
            .name("blob-writer".into())
            .spawn(move || {
                for chunk in rx {
                    sink.write_all(&chunk)?;
                }
                Ok(sink)
            })
            .context("starting the blob writer thread")?;
        Ok(Behind {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
            writer: Some(writer),
        })
    }

    /// Writes what is buffered, waits for the thread and returns the sink, ready to commit.
    pub fn finish(mut self) -> io::Result<Sink> {
        self.send()?;
        self.tx = None;
        self.join()
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let sent = self.tx.as_ref().map(|tx| tx.send(chunk));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread stopped on a write error: that error is the one to report.
            _ => {
                self.tx = None;
                Err(self
                    .join()
                    .err()
                    .unwrap_or_else(|| io::Error::other("blob writer stopped")))
            }
        }
    }

    fn join(&mut self) -> io::Result<Sink> {
        match self.writer.take().map(thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the blob writer thread panicked")),
            None => Err(io::Error::other("blob writer already finished")),
        }
    }
}

impl Write for Behind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Behind {
    /// On failure the thread drops the sink, which removes the temporary file: wait for that,
    /// so that nothing is left behind when the process exits.
    fn drop(&mut self) {
        self.tx = None;
        let _ = self.writer.take().map(thread::JoinHandle::join);
    }
}
