//! Where the signing key comes from: `TRAIL_HMAC_KEY` (64 hex digits),
//! `TRAIL_HMAC_KEY_FILE`, or `hmac.key` beside the database, created on first
//! use with mode 0600. Never from or into the database.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::domain::{HmacKey, Keyring};

use super::error::{Result, StoreError};

/// Where to find the key; `Debug` never prints the key itself.
#[derive(Clone, Default)]
pub struct KeySource {
    pub key_hex: Option<String>,
    pub key_file: Option<PathBuf>,
    /// Earlier keys that verifiers also accept (`verify_key_files`): rows
    /// sealed before a key change.
    pub verify_files: Vec<PathBuf>,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySource")
            .field("key_hex", &self.key_hex.as_ref().map(|_| "[redacted]"))
            .field("key_file", &self.key_file)
            .field("verify_files", &self.verify_files)
            .finish()
    }
}

/// The default key file for a database: `hmac.key` in the same folder.
pub fn default_key_path(db: &Path) -> PathBuf {
    match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("hmac.key"),
        _ => PathBuf::from("hmac.key"),
    }
}

/// Reads a small secret file (a key, a token): a regular file of at most
/// 4 KiB, as UTF-8. A device such as `/dev/zero` or a FIFO is refused up
/// front instead of being read without end or waited on.
pub fn read_secret_file(path: &Path) -> std::result::Result<String, String> {
    use std::io::Read;
    const MAX: u64 = 4096;
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(if meta.is_dir() {
            "it is a folder, not a file".into()
        } else {
            "it is not a regular file".into()
        });
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX {
        return Err(format!("it is larger than {MAX} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".into())
}

pub fn read_key_file(path: &Path) -> Result<HmacKey> {
    let text = read_secret_file(path)
        .map_err(|e| StoreError::Key(format!("cannot read key file {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "key file {} can be read by others (mode {mode:o}): whoever reads it can forge seals; chmod 600 it",
                    path.display()
                );
            }
        }
    }
    HmacKey::from_hex(&text)
        .map_err(|e| StoreError::Key(format!("key file {}: {e}", path.display())))
}

impl KeySource {
    /// The key that signs new rows; creates the default key file if no key is
    /// configured and none exists yet.
    pub fn signing_key(&self, db: &Path) -> Result<HmacKey> {
        if let Some(hex) = &self.key_hex {
            return HmacKey::from_hex(hex)
                .map_err(|e| StoreError::Key(format!("TRAIL_HMAC_KEY: {e}")));
        }
        if let Some(path) = &self.key_file {
            return read_key_file(path);
        }
        let path = default_key_path(db);
        if path.exists() {
            return read_key_file(&path);
        }
        create_key_file(&path)
    }

    /// The keys for verifying, without creating anything: the configured or
    /// default key if it exists, the configured earlier keys, and `extra`
    /// key files.
    pub fn verify_keyring(&self, db: &Path, extra: &[PathBuf]) -> Result<Keyring> {
        let mut ring = Keyring::empty();
        if let Some(hex) = &self.key_hex {
            ring.add(
                HmacKey::from_hex(hex)
                    .map_err(|e| StoreError::Key(format!("TRAIL_HMAC_KEY: {e}")))?,
            );
        } else if let Some(path) = &self.key_file {
            ring.add(read_key_file(path)?);
        } else {
            let path = default_key_path(db);
            if path.exists() {
                ring.add(read_key_file(&path)?);
            }
        }
        for p in self.verify_files.iter().chain(extra) {
            ring.add(read_key_file(p)?);
        }
        Ok(ring)
    }
}

fn create_key_file(path: &Path) -> Result<HmacKey> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
    }
    let key = HmacKey::from_bytes(rand::random::<[u8; 32]>());
    // Written to a private temporary file, then linked into place: another
    // process racing to create the key either wins the link or reads ours,
    // never a half-written file.
    let tmp = path.with_extension(format!("key.tmp{}", std::process::id()));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let io = |source, what: &Path| StoreError::Io {
        context: format!("writing {}", what.display()),
        source,
    };
    let mut f = opts.open(&tmp).map_err(|e| io(e, &tmp))?;
    writeln!(f, "{}", key.to_hex())
        .and_then(|_| f.sync_all())
        .map_err(|e| io(e, &tmp))?;
    drop(f);
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(io(e, path)),
    }
}
