//! Writing files so that no reader ever sees half of one: every file is
//! written under a temporary name in its final directory, flushed to disk, and
//! only then given its final name (by a rename that replaces, or by a hard link
//! that refuses to replace).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of temporary files; they are hidden, and readers skip hidden files.
const TEMP_PREFIX: &str = ".tmp-";

/// The permissions of ordinary files (before the umask), as `File::create`.
const PUBLIC: u32 = 0o666;
/// The permissions of files only their owner may read or write.
pub const PRIVATE: u32 = 0o600;

/// Whether a directory entry is a leftover temporary file or otherwise hidden.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Whether a directory entry is a temporary file of this module: one being
/// written, or left behind by a write that was interrupted.
pub fn is_temp(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// Writes `bytes` to a new temporary file in `dir` with permissions `mode`,
/// flushed to disk.
fn write_temp(dir: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        return match written {
            Ok(()) => Ok(path),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        };
    }
}

/// Flushes a directory's entries (new names, renames) to disk.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory a file lives in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path`, replacing it atomically if it exists.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let temp = write_temp(dir, bytes, PUBLIC)?;
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Creates `path` holding `bytes`, unless it already exists: returns `false`
/// then, leaving it untouched. Of several writers racing for the same path,
/// exactly one gets `true`, and the file never exists without its full
/// contents.
pub fn create_new_atomic(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    create_new_atomic_with_mode(path, bytes, PUBLIC)
}

/// [`create_new_atomic`], the file created with permissions `mode` (for
/// example [`PRIVATE`]) from its first byte on.
pub fn create_new_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
    let dir = parent(path);
    let temp = write_temp(dir, bytes, mode)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links: fall back to an exclusive create.
        // A reader may then briefly see the file empty, and treats that as
        // not yet written.
        Err(_) => {
            let mut file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(e),
            };
            file.write_all(bytes)?;
            file.sync_all()?;
            sync_dir(dir)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_new_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claim");
        assert!(create_new_atomic(&path, b"first").unwrap());
        assert!(!create_new_atomic(&path, b"second").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_files_are_private_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        assert!(create_new_atomic_with_mode(&path, b"key", PRIVATE).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(is_temp(".tmp-1-2-3") && !is_temp("f") && !is_temp(".hidden"));
    }

    #[test]
    fn racing_creators_have_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claim");
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || create_new_atomic(path, format!("{i}").as_bytes()).unwrap())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(winners, 1);
    }
}
