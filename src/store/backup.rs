//! Online backup: a consistent copy of the database file while a server (or
//! a CLI) keeps writing to it.
//!
//! The copy is made with SQLite's backup API from a read-only connection that
//! holds one read transaction for the whole copy: every step reads the same
//! snapshot (WAL mode lets writers go on meanwhile), so the copy is one
//! consistent state of the chain and the backup never restarts because of
//! them. It is written beside the destination under a temporary name and
//! linked into place only when complete, so a failed backup never leaves a
//! file that looks like one, and an existing file is never overwritten.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::db::{open_read, sidecar};
use super::error::{Result, StoreError};
use super::query;

/// Pages copied per step; between steps the copy pauses briefly.
const PAGES_PER_STEP: i32 = 256;
const PAUSE: Duration = Duration::from_millis(2);
/// How long a step may keep answering busy/locked before the backup gives up.
const BUSY_LIMIT: Duration = Duration::from_secs(60);

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub dest: PathBuf,
    /// Rows of `events` in the copy.
    pub events: u64,
    /// The newest `seq` in the copy (or its newest retention cut's).
    pub head_seq: u64,
}

/// Copies the database at `src` to the new file `dest`, refusing if `dest`
/// exists (an [`io::ErrorKind::AlreadyExists`] I/O error naming it). The
/// caller verifies the copy.
pub fn backup(src: &Path, dest: &Path) -> Result<BackupReport, StoreError> {
    if dest.exists() {
        return Err(already_exists(dest));
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(StoreError::Io {
                context: format!(
                    "cannot create {}: the folder {} does not exist",
                    dest.display(),
                    dir.display()
                ),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
    }
    let source = open_read(src)?;
    let tmp = temp_path(dest);
    let result = copy_to(&source, &tmp).and_then(|()| link_into_place(&tmp, dest));
    for p in [
        tmp.clone(),
        sidecar(&tmp, "-journal"),
        sidecar(&tmp, "-wal"),
        sidecar(&tmp, "-shm"),
    ] {
        let _ = fs::remove_file(p);
    }
    result?;
    drop(source);

    let copy = open_read(dest)?;
    let events = query::count(&copy)?;
    let head_seq = query::head(&copy)?.seq;
    Ok(BackupReport {
        dest: dest.to_owned(),
        events,
        head_seq,
    })
}

fn already_exists(dest: &Path) -> StoreError {
    let what = if dest.is_dir() {
        "is a folder; give the path of a new file in it (e.g. DIR/trail-backup.db)"
    } else {
        "already exists; a backup never overwrites a file (choose a new name)"
    };
    StoreError::Io {
        context: format!("{} {what}", dest.display()),
        source: io::Error::from(io::ErrorKind::AlreadyExists),
    }
}

/// `DEST.partial-PID` beside the destination, so the final link stays on
/// one file system.
fn temp_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "backup".into());
    name.push(format!(".partial-{}", std::process::id()));
    dest.with_file_name(name)
}

/// Copies `source` into a new database file at `tmp`.
fn copy_to(source: &Connection, tmp: &Path) -> Result<()> {
    let e = StoreError::sqlite("backing up the database");
    let _ = fs::remove_file(tmp);
    let mut dest = super::db::open_path(
        tmp,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        "",
    )?
    .map_err(|err| match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::CannotOpen) => StoreError::Io {
            context: format!(
                "cannot create {} (does its folder exist and is it writable?)",
                tmp.display()
            ),
            // The folder exists (checked before): a file-system refusal,
            // exit 3, not a usage error.
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        },
        _ => e(err),
    })?;
    dest.execute_batch("PRAGMA synchronous = FULL").map_err(e)?;

    // One read transaction for the whole copy: one snapshot, no restarts.
    source.execute_batch("BEGIN").map_err(e)?;
    let copied = (|| {
        source
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(e)?;
        let b = Backup::new(source, &mut dest).map_err(e)?;
        let mut busy_since: Option<std::time::Instant> = None;
        loop {
            match b.step(PAGES_PER_STEP).map_err(e)? {
                StepResult::Done => return Ok(()),
                StepResult::More => {
                    busy_since = None;
                    std::thread::sleep(PAUSE);
                }
                StepResult::Busy | StepResult::Locked => {
                    let since = *busy_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > BUSY_LIMIT {
                        return Err(StoreError::Io {
                            context: "backing up the database: the source stayed locked".into(),
                            source: io::Error::from(io::ErrorKind::TimedOut),
                        });
                    }
                    std::thread::sleep(PAUSE * 10);
                }
                // `StepResult` is non-exhaustive.
                #[allow(unreachable_patterns)]
                _ => std::thread::sleep(PAUSE),
            }
        }
    })();
    let _ = source.execute_batch("COMMIT");
    copied?;
    // A backup is one self-contained file: no `-wal`/`-shm` appear beside it
    // when it is read. Opening it for writing (a restore) turns WAL back on.
    let mode: String = dest
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(e)?;
    if !mode.eq_ignore_ascii_case("delete") {
        tracing::warn!(mode, "the backup copy kept journal mode {mode}");
    }
    dest.close().map_err(|(_, err)| e(err))?;
    // The backup committed with synchronous=FULL; make sure of the file.
    fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|source| StoreError::Io {
            context: format!("syncing {}", tmp.display()),
            source,
        })
}

/// Puts the finished copy at `dest` without ever replacing a file there: a
/// hard link fails if `dest` exists, atomically.
fn link_into_place(tmp: &Path, dest: &Path) -> Result<()> {
    match fs::hard_link(tmp, dest) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Err(already_exists(dest)),
        // A file system without hard links: check, then rename.
        Err(_) => {
            if dest.exists() {
                return Err(already_exists(dest));
            }
            fs::rename(tmp, dest).map_err(|source| StoreError::Io {
                context: format!("moving the backup into place at {}", dest.display()),
                source,
            })?;
        }
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
