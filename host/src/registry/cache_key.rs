//! The cache key: a secret of this user on this machine that authenticates
//! the compiled-code cache ([`super::cache`]).
//!
//! Compiled code is loaded without wasmtime checking the machine code in it,
//! so the registry directory alone cannot vouch for it: anyone who can write
//! that directory could put other code there. Every cache entry therefore
//! carries a MAC (keyed blake3) over the rule hash, the engine key and the
//! code, made with a key that lives outside the registry, and an entry is
//! only loaded if its MAC verifies under this key.
//!
//! The key is 32 bytes from the operating system's random source, kept as 64
//! hex digits in a file only its owner may read or write:
//! `$TALLY_CACHE_KEY` if set, else `$XDG_STATE_HOME/tally/cache.key`, else
//! `~/.local/state/tally/cache.key`. It is created on first use. Deleting it
//! only costs a recompile of every rule; a new key is made.

use super::fsio;
use rand::TryRngCore;
use rand::rngs::OsRng;
use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable naming the cache key file.
pub const ENV_VAR: &str = "TALLY_CACHE_KEY";

/// A cache key that cannot be found, read or created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// The secret key of the compiled-code cache.
pub struct CacheKey {
    key: [u8; 32],
    id: String,
    path: PathBuf,
}

impl fmt::Debug for CacheKey {
    /// Never shows the key itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKey")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Where the cache key lives: `$TALLY_CACHE_KEY` if set and not empty, else
/// `$XDG_STATE_HOME/tally/cache.key` if that is an absolute path, else
/// `$HOME/.local/state/tally/cache.key`.
pub fn location() -> Result<PathBuf, KeyError> {
    user_path(
        ENV_VAR,
        ("XDG_STATE_HOME", ".local/state"),
        "tally/cache.key",
    )
    .ok_or_else(|| {
        KeyError(format!(
            "there is nowhere to keep the cache key: set ${ENV_VAR} to a file path, or $HOME"
        ))
    })
}

/// A path of this user's: `$<env_var>` if set and not empty, else
/// `$<xdg.0>/<relative>` if that variable holds an absolute path, else
/// `$HOME/<xdg.1>/<relative>`; `None` without a home.
pub fn user_path(env_var: &str, xdg: (&str, &str), relative: &str) -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = var(env_var) {
        return Some(PathBuf::from(path));
    }
    if let Some(base) = var(xdg.0).map(PathBuf::from)
        && base.is_absolute()
    {
        return Some(base.join(relative));
    }
    var("HOME").map(|home| PathBuf::from(home).join(xdg.1).join(relative))
}

impl CacheKey {
    /// The key at [`location`], created if there is none yet.
    pub fn load_or_create() -> Result<CacheKey, KeyError> {
        CacheKey::load_or_create_at(&location()?)
    }

    /// The key in the file at `path`, created (with a new random key, readable
    /// only by its owner) if the file does not exist. A file that others may
    /// read or write is refused: whoever can read the key can forge cache
    /// entries, and whoever can write it can choose it.
    pub fn load_or_create_at(path: &Path) -> Result<CacheKey, KeyError> {
        match CacheKey::read(path)? {
            Some(key) => Ok(key),
            None => {
                CacheKey::create(path)?;
                CacheKey::read(path)?.ok_or_else(|| {
                    KeyError(format!(
                        "the cache key {} vanished right after it was created",
                        path.display()
                    ))
                })
            }
        }
    }

    /// Reads the key file, if it exists.
    fn read(path: &Path) -> Result<Option<CacheKey>, KeyError> {
        let fail = |what: &str| KeyError(format!("the cache key {} {what}", path.display()));
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(&format!("cannot be read: {e}"))),
        };
        if !metadata.is_file() {
            return Err(fail("is not a file"));
        }
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(fail(&format!(
                "may be read or written by other users (mode {:o}); make it private with `chmod 600`, or delete it to get a new one",
                mode & 0o777
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(&format!("cannot be read: {e}")))?;
        // 64 hex digits are 32 bytes, parsed as a blake3 hash is.
        let key = blake3::Hash::from_hex(text.trim())
            .map_err(|_| fail("does not hold a key (64 hex digits); delete it to get a new one"))?;
        Ok(Some(CacheKey::from_bytes(*key.as_bytes(), path)))
    }

    /// Creates the key file with a new random key, unless another process
    /// just did.
    fn create(path: &Path) -> Result<(), KeyError> {
        let fail = |what: &str| {
            KeyError(format!(
                "cannot create the cache key {}: {what}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| fail(&e.to_string()))?;
        }
        let mut key = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| fail(&format!("no randomness from the operating system: {e}")))?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        // Of two processes creating it at once, one wins and both use its key.
        fsio::create_new_atomic_with_mode(path, format!("{hex}\n").as_bytes(), fsio::PRIVATE)
            .map_err(|e| fail(&e.to_string()))?;
        Ok(())
    }

    /// A key from its bytes; `path` is where it came from.
    fn from_bytes(key: [u8; 32], path: &Path) -> CacheKey {
        let id = blake3::keyed_hash(&key, b"tally cache key id\0").to_hex()[..8].to_string();
        CacheKey {
            key,
            id,
            path: path.to_path_buf(),
        }
    }

    /// A short public name of the key, 8 hex digits (a keyed hash of a
    /// constant, which reveals nothing of the key). Cache entries carry it in
    /// their file names, so machines sharing a registry, each with its own
    /// key, keep their own entries side by side.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The file the key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The MAC of a cache entry: keyed blake3 over the rule hash, the engine
    /// key and the compiled code, each delimited.
    pub fn mac(&self, rule_hash: &blake3::Hash, engine_key: &str, code: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(b"tally compiled rule code mac, v1\0");
        hasher.update(rule_hash.as_bytes());
        hasher.update(&(engine_key.len() as u64).to_le_bytes());
        hasher.update(engine_key.as_bytes());
        hasher.update(&(code.len() as u64).to_le_bytes());
        hasher.update(code);
        hasher.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_private_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/tally/cache.key");
        let key = CacheKey::load_or_create_at(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert_eq!(key.id().len(), 8);

        let again = CacheKey::load_or_create_at(&path).unwrap();
        assert_eq!(again.id(), key.id());
        let hash = blake3::hash(b"rule");
        assert_eq!(
            again.mac(&hash, "engine", b"code"),
            key.mac(&hash, "engine", b"code")
        );
        assert!(!format!("{key:?}").contains(text.trim()), "{key:?}");

        // Another key: another id and other MACs.
        let other = CacheKey::load_or_create_at(&dir.path().join("other.key")).unwrap();
        assert_ne!(other.id(), key.id());
        assert_ne!(
            other.mac(&hash, "engine", b"code"),
            key.mac(&hash, "engine", b"code")
        );
        // Every input counts.
        let mac = key.mac(&hash, "engine", b"code");
        assert_ne!(mac, key.mac(&blake3::hash(b"other"), "engine", b"code"));
        assert_ne!(mac, key.mac(&hash, "engine2", b"code"));
        assert_ne!(mac, key.mac(&hash, "engine", b"code2"));
        assert_ne!(mac, key.mac(&hash, "enginec", b"ode"));
    }

    #[test]
    fn a_key_others_can_read_or_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.key");
        CacheKey::load_or_create_at(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CacheKey::load_or_create_at(&path).unwrap_err().to_string();
        assert!(
            err.contains("other users") && err.contains("chmod 600"),
            "{err}"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not a key\n").unwrap();
        let err = CacheKey::load_or_create_at(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");

        let err = CacheKey::load_or_create_at(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a file"), "{err}");
    }
}
