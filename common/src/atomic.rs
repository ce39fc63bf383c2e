//! Writing a file so that it appears complete under its name or not at all, and stays so across
//! a crash: write a temporary file in the destination's directory, fsync it, rename it into
//! place, fsync the directory (without that last step the rename itself may be lost on power
//! failure, leaving the old file or none). The layout's blobs, `index.json` and `oci-layout`,
//! and `layer-pack -o FILE`, are all written this way.
//!
//! The temporary file is registered with [`crate::signal`] from its creation to its rename, so
//! that SIGINT or SIGTERM removes it too: both steps hold the signal registry's lock, so the
//! handler never removes a file that is already renamed into place, nor misses one just made.

use anyhow::Context;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A file being written under a temporary name; removed on drop (or on a signal) unless
/// persisted.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    /// Declared after `tmp`, so dropped after it: the file is removed before it is unregistered.
    on_signal: crate::signal::Guard,
}

/// What [`AtomicFile::persist_new`] did.
pub enum Persisted {
    Done,
    /// Something already has the name: the file comes back unpersisted.
    Exists(AtomicFile),
}

impl AtomicFile {
    /// A new empty file in `dir` named `prefix`… with permission bits `mode` (less the umask).
    pub fn new_in(dir: &Path, prefix: &str, mode: u32) -> crate::Result<AtomicFile> {
        let mut registry = crate::signal::registry();
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(fs::Permissions::from_mode(mode))
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let on_signal = registry.remove_on_signal(tmp.path());
        Ok(AtomicFile { tmp, on_signal })
    }

    /// A file to become `dest`, a path a user named (`layer-pack -o FILE`, `image-history
    /// --report FILE`): written beside it, with the permissions of any file a user creates
    /// (0666 less the umask). Refused when `dest` is there and is no regular file (or symlink):
    /// the rename would replace it, and `-o /dev/null` run as root once turned the machine's
    /// /dev/null into a regular file.
    pub fn for_output(dest: &Path, prefix: &str) -> crate::Result<AtomicFile> {
        if let Ok(md) = fs::symlink_metadata(dest)
            && !(md.is_file() || md.is_symlink())
        {
            anyhow::bail!("{}: not a regular file (the output replaces it)", dest.display());
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        AtomicFile::new_in(dir, prefix, 0o666)
    }

    pub fn as_file(&self) -> &File {
        self.tmp.as_file()
    }

    /// fsyncs the file and renames it over `dest` (on the same file system), then fsyncs the
    /// directory `dest` is in.
    pub fn replace(self, dest: &Path) -> crate::Result<()> {
        self.sync(dest)?;
        let AtomicFile { tmp, on_signal } = self;
        let mut registry = crate::signal::registry();
        match tmp.persist(dest) {
            Ok(_) => registry.release(on_signal),
            Err(e) => {
                // The file is still there under its temporary name: it stays registered until
                // `e.file` is dropped, after the registry's lock is.
                drop(registry);
                return Err(e.error).with_context(|| format!("replacing {}", dest.display()));
            }
        }
        drop(registry);
        sync_parent(dest)
    }

    /// As [`AtomicFile::replace`], but never replaces an existing `dest`.
    pub fn persist_new(self, dest: &Path) -> crate::Result<Persisted> {
        self.sync(dest)?;
        let AtomicFile { tmp, on_signal } = self;
        let mut registry = crate::signal::registry();
        match tmp.persist_noclobber(dest) {
            Ok(_) => {
                registry.release(on_signal);
                drop(registry);
                sync_parent(dest)?;
                Ok(Persisted::Done)
            }
            Err(e) => {
                drop(registry);
                if e.error.kind() == io::ErrorKind::AlreadyExists {
                    Ok(Persisted::Exists(AtomicFile {
                        tmp: e.file,
                        on_signal,
                    }))
                } else {
                    Err(e.error).with_context(|| dest.display().to_string())
                }
            }
        }
    }

    fn sync(&self, dest: &Path) -> crate::Result<()> {
        self.as_file()
            .sync_all()
            .with_context(|| format!("syncing {}", dest.display()))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

fn sync_parent(path: &Path) -> crate::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let names = || fs::read_dir(dir.path()).unwrap().count();
        let mut f = AtomicFile::new_in(dir.path(), ".tmp-", 0o644).unwrap();
        f.write_all(b"one").unwrap();
        assert!(!dest.exists(), "visible before it is complete");
        drop(f);
        assert_eq!(names(), 0, "an abandoned file is removed");

        let mut f = AtomicFile::new_in(dir.path(), ".tmp-", 0o644).unwrap();
        f.write_all(b"one").unwrap();
        assert!(matches!(f.persist_new(&dest).unwrap(), Persisted::Done));
        let mut f = AtomicFile::new_in(dir.path(), ".tmp-", 0o644).unwrap();
        f.write_all(b"two").unwrap();
        let Persisted::Exists(f) = f.persist_new(&dest).unwrap() else {
            panic!("replaced an existing file");
        };
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        f.replace(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert_eq!(names(), 1);
    }
}
