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

/// Reads a key file, warning (once per file and process) when others may
/// read it.
pub fn read_key_file(path: &Path) -> Result<HmacKey> {
    let key = parse_key_file(path)?;
    warn_if_readable_by_others(path);
    Ok(key)
}

/// Reads and checks a key file, and says nothing of its mode: for the
/// configuration's check at start-up, before the log is set up (the
/// commands that use the key read it again and warn then).
pub fn parse_key_file(path: &Path) -> Result<HmacKey> {
    let text = read_secret_file(path)
        .map_err(|e| StoreError::Key(format!("cannot read key file {}: {e}", path.display())))?;
    HmacKey::from_hex(&text)
        .map_err(|e| StoreError::Key(format!("key file {}: {e}", path.display())))
}

/// A key file others may read is said once per process, however many
/// times it is read (the signing key, then the verifying keyring).
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let Ok(mut warned) = WARNED.lock() else {
        return;
    };
    if warned.contains(&real) {
        return;
    }
    warned.push(real);
    tracing::warn!(
        "key file {} can be read by others (mode {mode:o}): whoever reads it can forge seals; chmod 600 it",
        path.display()
    );
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
        // A new key only for a log that has sealed nothing yet: beside a
        // log that has, the key file was lost or not mounted, and a new key
        // would seal the next events with a key nobody can link to the old
        // ones (every old row `unknown_key` from then on).
        if let Some((seq, key_id)) = newest_seal(db)? {
            return Err(StoreError::Key(format!(
                "{} is missing, but {} holds events sealed with key {key_id} (newest: seq {seq}): \
                 restore that key file, or give the key with TRAIL_HMAC_KEY / TRAIL_HMAC_KEY_FILE; \
                 nothing was written",
                path.display(),
                db.display()
            )));
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

/// The newest seal of the log at `db`: (seq, key_id) of its newest row, else
/// of its newest retention cut. None for a missing, empty or still-being-
/// created log, or when the key id cannot be read (a tampered row:
/// verification reports it).
pub fn newest_seal(db: &Path) -> Result<Option<(u64, String)>> {
    let conn = match super::db::open_read(db) {
        Ok(c) => c,
        // No file yet, or one another trail is creating right now (its
        // migrations not yet applied): nothing is sealed. A file of another
        // program was refused before this (`check_target`).
        Err(StoreError::NoDatabase(_) | StoreError::NotTrail { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    // The head row's key id, read from the chain format's layout as the
    // verifiers read it; else, or when it is higher (a prune deleting from
    // the cut down has taken the cut's own row), the newest cut's.
    let head: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, CAST(entry AS BLOB) FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    let cut = super::retention::newest_cut(&conn)?;
    let cut_seq = cut.as_ref().map_or(0, |c| c.up_to_seq);
    if let Some((seq, entry)) = head.filter(|(seq, _)| (*seq).max(0) as u64 >= cut_seq) {
        return Ok(crate::domain::verify::entry_key_id(&entry).map(|id| (seq.max(0) as u64, id)));
    }
    Ok(cut.map(|c| (c.up_to_seq, c.key_id)))
}

/// Refuses to append with `key` when the log's newest seal was made with a
/// key that is neither `key` nor one of `ring`: a mistyped or mis-mounted key
/// would otherwise seal new rows that no verifier holding the old key can
/// check, silently. Changing keys on purpose keeps the old key file in
/// `verify_key_files` (README, Keys), which passes.
pub fn check_key_continues(db: &Path, key: &HmacKey, ring: &Keyring) -> Result<()> {
    let Some((seq, key_id)) = newest_seal(db)? else {
        return Ok(());
    };
    if key_id == key.id().as_str() || ring.get(&key_id).is_some() {
        return Ok(());
    }
    Err(StoreError::Key(format!(
        "the newest event of {} (seq {seq}) says it is sealed with key {key_id}, but the key given is {}: \
         give the key with id {key_id} (check TRAIL_HMAC_KEY / TRAIL_HMAC_KEY_FILE, or restore hmac.key); \
         to change keys on purpose, keep the old key file in verify_key_files; if that key is lost \
         for good, start a new log file and keep this one for verification; if no key with that id \
         was ever used for this log, the row was written by someone else: run `trail verify`; \
         nothing was written",
        db.display(),
        key.id().as_str()
    )))
}
