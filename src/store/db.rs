//! Opening the database file: pragmas, migrations, read-only connections.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::error::{Result, StoreError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged event survives power loss.
    #[default]
    Full,
    /// WAL `NORMAL`: faster, and the last transactions may be lost on power
    /// loss (never on a process crash). Opt-in only.
    Normal,
}

impl Synchronous {
    pub fn parse(s: &str) -> Result<Synchronous, String> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            _ => Err(format!("must be full or normal (got {s:?})")),
        }
    }
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// How long a connection waits for another one's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Process-wide SQLite settings, applied once before the first connection:
/// no memory statistics, so SQLite's allocations do not take a global mutex
/// (trail never reads them, nor sets a soft heap limit).
fn sqlite_process_settings() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is only valid before SQLite initialises; if
        // a connection was already opened it returns SQLITE_MISUSE and
        // changes nothing, which is harmless here.
        unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            );
        }
    });
}

/// Opens (creating if needed) the database for writing and applies pending
/// migrations. Migrations run under an exclusive `flock` on the file, so two
/// processes opening a new file at once do not both try to create it.
pub fn open_write(path: &Path, sync: Synchronous) -> Result<Connection> {
    sqlite_process_settings();
    refuse_folder(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
    }
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| StoreError::Io {
            context: format!("opening {}", path.display()),
            source,
        })?;
    lock.lock().map_err(|source| StoreError::Io {
        context: format!("locking {}", path.display()),
        source,
    })?;
    let mut conn = Connection::open(path).map_err(StoreError::sqlite("opening the database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite("setting busy timeout"))?;
    // The writer keeps one INSERT per power-of-two row count, besides its
    // lookups: room for all of them.
    conn.set_prepared_statement_cache_capacity(64);
    refuse_foreign(&conn, path)?;
    // 16 KiB pages (taken only when the file is created). A batch of appends
    // dirties a leaf per distinct actor, resource, type… in each index, which
    // favours big pages; a page read at a random depth copies a whole page
    // from the OS, which favours small ones. Measured here (1M-event files,
    // 64 clients reading pages at random depths): 16 KiB served the most
    // pages at the lowest p99, and imported twice as fast as 4 KiB.
    conn.execute_batch(&format!(
        "PRAGMA page_size = 16384;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {};
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -65536;
         PRAGMA temp_store = MEMORY;",
        sync.pragma()
    ))
    .map_err(StoreError::sqlite("setting pragmas"))?;
    let report = embedded::migrations::runner()
        .run(&mut conn)
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    // One line of our own (refinery's are kept at warn: their log records
    // carry the build machine's source paths).
    let applied: Vec<String> = report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    if !applied.is_empty() {
        tracing::info!(db = %path.display(), ?applied, "schema migrated");
    }
    drop(lock);
    Ok(conn)
}

/// Opens the database read-only. Works while another process writes (WAL).
pub fn open_read(path: &Path) -> Result<Connection> {
    sqlite_process_settings();
    if !path.exists() {
        return Err(StoreError::NoDatabase(path.to_owned()));
    }
    refuse_folder(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(StoreError::sqlite("opening the database read-only"))?;
    configure_reader(&conn).map_err(|e| not_sqlite(e, path))?;
    let tables = table_names(&conn).map_err(|e| not_sqlite(e, path))?;
    if !tables.iter().any(|t| t == "events") {
        return Err(if tables.is_empty() {
            StoreError::NoDatabase(path.to_owned())
        } else {
            foreign(path)
        });
    }
    Ok(conn)
}

/// Refuses, before anything is created beside it (such as `hmac.key`), a
/// path that holds something other than a trail database. A missing file is
/// fine: it will be created.
pub fn check_target(path: &Path) -> Result<()> {
    refuse_folder(path)?;
    if !path.exists() {
        return Ok(());
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::sqlite("opening the database read-only"))
    .map_err(|e| not_sqlite(e, path))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite("setting busy timeout"))?;
    refuse_foreign(&conn, path)
}

fn refuse_folder(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(StoreError::NotTrail {
            path: path.to_owned(),
            why: "it is a folder".into(),
        });
    }
    Ok(())
}

/// `file is not a database` becomes [`StoreError::NotTrail`]; anything
/// else stays what it was.
fn not_sqlite(e: StoreError, path: &Path) -> StoreError {
    match &e {
        StoreError::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) =>
        {
            StoreError::NotTrail {
                path: path.to_owned(),
                why: "the file is not an SQLite database".into(),
            }
        }
        _ => e,
    }
}

fn foreign(path: &Path) -> StoreError {
    StoreError::NotTrail {
        path: path.to_owned(),
        why: "it is an SQLite database of another program (it has tables, but not trail's)".into(),
    }
}

fn table_names(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .map_err(StoreError::sqlite("reading the schema"))?;
    let names = st
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(StoreError::sqlite("reading the schema"))?;
    Ok(names)
}

/// Before trail adds its tables to a file: the file must be empty, or a
/// trail database (refinery's history table is there), never another
/// program's database.
fn refuse_foreign(conn: &Connection, path: &Path) -> Result<()> {
    let tables = table_names(conn).map_err(|e| not_sqlite(e, path))?;
    if tables.is_empty() || tables.iter().any(|t| t == "refinery_schema_history") {
        Ok(())
    } else {
        Err(foreign(path))
    }
}

pub(crate) fn configure_reader(conn: &Connection) -> Result<()> {
    reader_pragmas(conn).map_err(StoreError::sqlite("configuring a read connection"))
}

/// Settings of every read-only connection (CLI, verify threads, HTTP pool).
pub fn reader_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Plans that do not depend on bound values. Without this, a bound LIMIT
    // marks the statement to be prepared again after every new binding, so
    // every cached page query was parsed and planned anew (about a tenth of
    // the server's CPU under page reads).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.execute_batch(
        "PRAGMA query_only = ON; PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY;",
    )
}

/// The newest schema version the embedded migrations reach.
pub fn latest_migration() -> u32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version() as u32)
        .max()
        .unwrap_or(0)
}
