//! Opening the database file: pragmas, migrations, read-only connections.

use std::fs;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

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

/// Process-wide SQLite settings, applied once before the first connection
/// (every function here that opens one calls this first):
/// - SQLite allocates through Rust's global allocator (mimalloc in the
///   `trail` binary) instead of glibc's malloc. A multi-row INSERT with
///   triggers keeps a statement journal: every index page it touches is
///   copied into 1 KiB chunks, each malloc'd and freed, and glibc's
///   `_int_malloc`/`_int_free`/`unlink_chunk` were a fifth of the writer
///   thread's CPU in `perf`;
/// - no memory statistics, so SQLite's allocations do not take a global
///   mutex (trail never reads them, nor sets a soft heap limit).
///
/// Public for the benchmarks, which open connections of their own.
#[doc(hidden)]
pub fn sqlite_process_settings() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is only valid before SQLite initialises; if
        // a connection was already opened it returns SQLITE_MISUSE and
        // changes nothing (SQLite keeps its own allocator), which is said
        // below. The methods are a static that lives as long as the
        // process, as SQLITE_CONFIG_MALLOC requires.
        let rc = unsafe {
            let rc = rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MALLOC,
                &sqlite_alloc::METHODS.0 as *const rusqlite::ffi::sqlite3_mem_methods,
            );
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            );
            rc
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::warn!(
                rc,
                "SQLite was initialised before trail's settings: it keeps the C library's allocator"
            );
        }
    });
}

/// SQLite's memory methods over Rust's global allocator. Each block starts
/// with an 8-byte header holding its size (SQLite asks for sizes back and
/// frees without one), so the pointer handed to SQLite is 8-byte aligned, as
/// it requires.
mod sqlite_alloc {
    use std::alloc::{alloc, dealloc, realloc, Layout};
    use std::os::raw::{c_int, c_void};

    use rusqlite::ffi::sqlite3_mem_methods;

    const HEADER: usize = 8;

    /// The methods, shareable: SQLite only reads them (pAppData is null).
    pub(super) struct Methods(pub(super) sqlite3_mem_methods);
    // SAFETY: immutable after construction; the one pointer is null.
    unsafe impl Sync for Methods {}

    pub(super) static METHODS: Methods = Methods(sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    });

    fn layout(n: usize) -> Option<Layout> {
        Layout::from_size_align(n.checked_add(HEADER)?, HEADER).ok()
    }

    /// SAFETY: `base` is a live block of at least HEADER + n bytes.
    unsafe fn finish(base: *mut u8, n: usize) -> *mut c_void {
        if base.is_null() {
            return std::ptr::null_mut();
        }
        unsafe {
            (base as *mut u64).write(n as u64);
            base.add(HEADER) as *mut c_void
        }
    }

    /// SAFETY: `p` was returned by x_malloc or x_realloc and not freed.
    unsafe fn header(p: *mut c_void) -> (*mut u8, usize) {
        unsafe {
            let base = (p as *mut u8).sub(HEADER);
            (base, (base as *const u64).read() as usize)
        }
    }

    /// With memory statistics off SQLite calls xMalloc without xRoundup, but
    /// compares xSize with xRoundup before a realloc: blocks are made and
    /// reported at their rounded size, so a realloc to the same rounded size
    /// is a no-op, as with SQLite's own allocator.
    unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
        let Some(l) = usize::try_from(x_roundup(n)).ok().and_then(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: the layout has a non-zero size (the header).
        unsafe { finish(alloc(l), l.size() - HEADER) }
    }

    unsafe extern "C" fn x_free(p: *mut c_void) {
        if p.is_null() {
            return;
        }
        // SAFETY: SQLite frees only what x_malloc/x_realloc returned, once;
        // the layout is the one it was allocated with.
        unsafe {
            let (base, n) = header(p);
            dealloc(base, Layout::from_size_align_unchecked(n + HEADER, HEADER));
        }
    }

    unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        let Some(new) = usize::try_from(x_roundup(n)).ok().and_then(layout) else {
            return std::ptr::null_mut();
        };
        if p.is_null() {
            // SAFETY: as in x_malloc.
            return unsafe { finish(alloc(new), new.size() - HEADER) };
        }
        // SAFETY: `p` is live (SQLite's contract); on failure realloc leaves
        // the old block untouched and SQLite keeps it.
        unsafe {
            let (base, old) = header(p);
            let old = Layout::from_size_align_unchecked(old + HEADER, HEADER);
            finish(realloc(base, old, new.size()), new.size() - HEADER)
        }
    }

    unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
        if p.is_null() {
            return 0;
        }
        // SAFETY: `p` is live; sizes fit c_int since they came from one.
        unsafe { header(p).1 as c_int }
    }

    /// The size x_malloc would give for `n`: `n` rounded up to a multiple of
    /// 8, never less than `n` (SQLite asks for at most 0x7FFFFEFF bytes, so
    /// the rounding always fits; a size that would not is kept as it is, and
    /// so is a negative one).
    extern "C" fn x_roundup(n: c_int) -> c_int {
        if n < 0 {
            return n; // never asked; x_malloc refuses it
        }
        n.checked_add(7).map_or(n, |m| m & !7)
    }

    extern "C" fn x_init(_: *mut c_void) -> c_int {
        rusqlite::ffi::SQLITE_OK
    }

    extern "C" fn x_shutdown(_: *mut c_void) {}

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn blocks_keep_their_size_and_content_through_realloc() {
            unsafe {
                let p = x_malloc(10) as *mut u8;
                assert!(!p.is_null());
                assert_eq!(p as usize % 8, 0, "SQLite needs 8-byte alignment");
                assert_eq!(x_size(p as *mut c_void), 16, "rounded up to 8");
                std::ptr::copy_nonoverlapping(b"0123456789".as_ptr(), p, 10);
                let q = x_realloc(p as *mut c_void, 100_000) as *mut u8;
                assert_eq!(x_size(q as *mut c_void), 100_000);
                assert_eq!(std::slice::from_raw_parts(q, 10), b"0123456789");
                let r = x_realloc(q as *mut c_void, 4) as *mut u8;
                assert_eq!(x_size(r as *mut c_void), 8);
                assert_eq!(std::slice::from_raw_parts(r, 4), b"0123");
                x_free(r as *mut c_void);
                x_free(std::ptr::null_mut());
                assert_eq!(x_size(std::ptr::null_mut()), 0);
                assert!(x_malloc(-1).is_null());
            }
            assert_eq!(x_roundup(1), 8);
            assert_eq!(x_roundup(16), 16);
            assert_eq!(x_roundup(0x7FFF_FEFF), 0x7FFF_FF00);
            assert_eq!(x_roundup(i32::MAX), i32::MAX);
        }

        #[test]
        fn sqlite_allocates_through_these_methods() {
            // Every connection in this crate is opened after this call, so
            // it comes before SQLite initialises in any test process.
            super::super::sqlite_process_settings();
            unsafe {
                let p = rusqlite::ffi::sqlite3_malloc(10);
                assert!(!p.is_null());
                // glibc would report its usable size (24 for 10 bytes);
                // these methods report the size rounded up to 8.
                assert_eq!(rusqlite::ffi::sqlite3_msize(p), 16);
                rusqlite::ffi::sqlite3_free(p);
            }
        }
    }
}

/// Opens (creating if needed) the database for writing and applies pending
/// migrations. Migrations run under an exclusive `flock` on the folder that
/// holds the file, so two processes opening a new file at once do not both
/// try to create it.
///
/// The lock is on the folder, never on the database file: closing any handle
/// of our own on the database file would drop the POSIX locks SQLite holds on
/// it (they belong to the process, not to a handle). Another program (an
/// analyst's `sqlite3`) would then take itself for the last one using the
/// file and delete the WAL the writer still writes into.
pub fn open_write(path: &Path, sync: Synchronous) -> Result<Connection> {
    open_write_inner(path, sync).map_err(|e| not_writable(e, path))
}

/// SQLite's "attempt to write a readonly database", for a file trail is
/// about to write, said in terms of the file and its folder.
fn not_writable(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) =>
        {
            StoreError::NotWritable {
                path: path.to_owned(),
                why: not_writable_why(path),
            }
        }
        e => e,
    }
}

/// Why SQLite found `path` read-only, in the terms an operator fixes.
fn not_writable_why(path: &Path) -> String {
    let user = format!("user {}", process_uid());
    // `access`, never an open: a handle of our own closed on the database
    // file would drop the locks SQLite holds on it in this process.
    if path.exists() && !access(path, libc::W_OK) {
        format!("the file is read-only for {user} (trail writes it; check its owner and mode, or the mount)")
    } else {
        let name = path.file_name().map_or("".into(), |n| n.to_string_lossy());
        format!(
            "{user} cannot create files in {} (trail keeps {name}-wal and {name}-shm beside the file; check the folder's owner and mode, or the mount)",
            folder_of(path).display(),
        )
    }
}

/// This process's user id (from `/proc`, without unsafe code).
fn process_uid() -> String {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map_or_else(|_| "?".into(), |m| m.uid().to_string())
}

fn open_write_inner(path: &Path, sync: Synchronous) -> Result<Connection> {
    sqlite_process_settings();
    refuse_folder(path)?;
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
            dir
        }
        None => Path::new("."),
    };
    // The folder of the real file, so two spellings of one database (a
    // symlink) take the same lock. A folder this process may not list
    // cannot be locked: SQLite's own locks still keep the file whole; only
    // the first-open race is open.
    let real_dir = fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| dir.to_path_buf());
    let lock = fs::File::open(&real_dir).ok();
    match &lock {
        Some(lock) => lock.lock().map_err(|source| StoreError::Io {
            context: format!("locking {}", real_dir.display()),
            source,
        })?,
        None => tracing::debug!(
            folder = %real_dir.display(),
            "cannot open the folder to lock it: migrating without the lock"
        ),
    }
    let mut conn = open_path(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        "",
    )?
    .map_err(StoreError::sqlite("opening the database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite("setting busy timeout"))?;
    // The writer keeps one INSERT per power-of-two row count, besides its
    // lookups: room for all of them.
    conn.set_prepared_statement_cache_capacity(64);
    refuse_foreign(&conn, path)?;
    refuse_newer_schema(&conn, path)?;
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
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = {WAL_KEEP_BYTES};",
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

/// Refuses a file that a newer trail migrated (after a rollback to an older
/// binary, say), naming both versions, instead of refinery's "migration …
/// is missing from the filesystem".
fn refuse_newer_schema(conn: &Connection, path: &Path) -> Result<()> {
    let found: Option<i64> = conn
        .query_row(
            "SELECT max(version) FROM refinery_schema_history",
            [],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            // A new file: no history yet.
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.starts_with("no such table") => {
                Ok(None)
            }
            e => Err(e),
        })
        .map_err(StoreError::sqlite("reading the schema version"))?;
    let known = latest_migration();
    match found {
        Some(found) if found > i64::from(known) => Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            known,
        }),
        _ => Ok(()),
    }
}

/// Opens the database read-only. Works while another process writes (WAL).
pub fn open_read(path: &Path) -> Result<Connection> {
    sqlite_process_settings();
    if !path.exists() {
        return Err(StoreError::NoDatabase(path.to_owned()));
    }
    refuse_folder(path)?;
    let conn = match read_connection(path, false) {
        // A copy on read-only media (a write-protected folder or mount):
        // SQLite cannot make the `-shm` a WAL-mode file needs even to be
        // read. With no WAL content beside it, the file alone is the whole
        // log, and SQLite may read it as immutable (no locks, no WAL).
        Err(e) if is_read_only_media(&e) && wal_is_empty(path) => {
            read_connection(path, true).map_err(|_| e)?
        }
        // WAL content there cannot be read without a `-shm`: say so, and
        // what to do (exit 3, as the verifier script). Only when the folder
        // really refuses writes: a file we may not read is SQLite's error.
        Err(e) if is_read_only_media(&e) && readable(path) && !folder_writable(path) => {
            let shown = path.display();
            return Err(StoreError::Io {
                context: format!(
                    "cannot read {shown}: events in {shown}-wal can only be read where SQLite \
                     may create {shown}-shm beside it (read-only media?); copy the file and \
                     its -wal to a writable folder and read the copy"
                ),
                source: std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem),
            });
        }
        other => other?,
    };
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

/// A configured read-only connection; `immutable` opens the file with
/// `immutable=1`.
fn read_connection(path: &Path, immutable: bool) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let query = if immutable { "immutable=1" } else { "" };
    let conn = open_path(path, flags, query)?
        .map_err(StoreError::sqlite("opening the database read-only"))?;
    configure_reader(&conn).map_err(|e| not_sqlite(e, path))?;
    Ok(conn)
}

/// SQLite could not set up reading because it may not write beside the
/// file (its `-shm`).
fn is_read_only_media(e: &StoreError) -> bool {
    matches!(e, StoreError::Sqlite { source, .. }
        if matches!(source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)))
}

/// Whether this process may read `path` (checked without opening it: a
/// handle of our own closed on the database file would drop SQLite's locks).
fn readable(path: &Path) -> bool {
    access(path, libc::R_OK)
}

/// Whether this process may create files in the folder holding `path`.
fn folder_writable(path: &Path) -> bool {
    access(folder_of(path), libc::W_OK)
}

/// The folder holding `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn access(path: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path that lives across the call.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

/// `path` + `suffix`: the names SQLite gives the files beside a database
/// (`-wal`, `-shm`, `-journal`).
/// What the WAL is cut back to when it starts over after a checkpoint.
/// A reader holding an old snapshot (an analyst's open transaction) keeps
/// it from starting over, so it grows meanwhile; without a limit it kept
/// that size on disk until the writer stopped.
pub const WAL_KEEP_BYTES: u64 = 64 << 20;

pub fn sidecar(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    s.into()
}

/// No `-wal` beside `path`, or an empty one: the file alone holds the log.
fn wal_is_empty(path: &Path) -> bool {
    match fs::metadata(sidecar(path, "-wal")) {
        Ok(m) => m.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The `file:` URI of `path`, a file-system path (never read as a URI
/// itself): `file://` + the absolute path, percent-encoded, + `?query` if
/// any. This SQLite build reads every name that starts with `file:` as a
/// URI (`SQLITE_USE_URI`), so a database opened by its plain name would be
/// another file when that name is `file:x.db` (`x.db`), or has `?` or `#`
/// in it; every connection to a database trail opens takes this URI.
pub fn file_uri(path: &Path, query: &str) -> Result<String> {
    use percent_encoding::{percent_encode, NON_ALPHANUMERIC};
    use std::os::unix::ffi::OsStrExt;
    const PATH: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    let abs = std::path::absolute(path).map_err(|source| StoreError::Io {
        context: format!("resolving {}", path.display()),
        source,
    })?;
    let mut uri = format!(
        "file://{}",
        percent_encode(abs.as_os_str().as_bytes(), PATH)
    );
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(query);
    }
    Ok(uri)
}

/// Opens the database file at `path` (a path, never a URI: see
/// [`file_uri`]) with `flags`, and `query` as URI parameters. The outer
/// error is the path's (it could not be made absolute), the inner SQLite's.
pub fn open_path(
    path: &Path,
    flags: OpenFlags,
    query: &str,
) -> Result<rusqlite::Result<Connection>> {
    Ok(Connection::open_with_flags(
        file_uri(path, query)?,
        flags | OpenFlags::SQLITE_OPEN_URI,
    ))
}

/// Refuses, before anything is created beside it (such as `hmac.key`), a
/// path that holds something other than a trail database, or one that a
/// newer trail migrated. A missing file is fine: it will be created.
pub fn check_target(path: &Path) -> Result<()> {
    check_target_inner(path).map_err(|e| not_writable(e, path))
}

fn check_target_inner(path: &Path) -> Result<()> {
    sqlite_process_settings();
    refuse_folder(path)?;
    if !path.exists() {
        return Ok(());
    }
    let conn = open_path(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        "",
    )?
    .map_err(StoreError::sqlite("opening the database read-only"))
    .map_err(|e| not_sqlite(e, path))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite("setting busy timeout"))?;
    refuse_foreign(&conn, path)?;
    refuse_newer_schema(&conn, path)
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
        // A damaged file (cut short, overwritten) is not a usage error: the
        // storage failed (exit 3). Said with the file's name.
        StoreError::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) =>
        {
            StoreError::Io {
                context: format!("reading {}", path.display()),
                source: std::io::Error::other(
                    "the database file is damaged (SQLite: database disk image is malformed); \
                     restore it from a backup",
                ),
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
    if tables.is_empty() {
        return Ok(());
    }
    if !tables.iter().any(|t| t == "refinery_schema_history") {
        return Err(foreign(path));
    }
    // Another program may use refinery too: trail's history starts with
    // its V1, `events` (no row yet: a file another trail is creating).
    let first: Option<String> = conn
        .query_row(
            "SELECT name FROM refinery_schema_history ORDER BY version LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::sqlite("reading the schema version"))?;
    match first {
        Some(name) if name != "events" => Err(foreign(path)),
        _ => Ok(()),
    }
}

pub(crate) fn configure_reader(conn: &Connection) -> Result<()> {
    reader_pragmas(conn).map_err(StoreError::sqlite("configuring a read connection"))
}

/// Page cache of a read connection, in KiB, unless it asks for another.
pub const READER_CACHE_KIB: u32 = 32 * 1024;

/// Settings of every read-only connection (CLI, verify threads, HTTP pool),
/// with the reader's usual page cache.
pub fn reader_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    reader_pragmas_with_cache(conn, READER_CACHE_KIB)
}

/// [`reader_pragmas`] with a page cache of `cache_kib` KiB: each connection
/// keeps up to that much memory for the life of the connection.
pub fn reader_pragmas_with_cache(conn: &Connection, cache_kib: u32) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Plans that do not depend on bound values. Without this, a bound LIMIT
    // marks the statement to be prepared again after every new binding, so
    // every cached page query was parsed and planned anew (about a tenth of
    // the server's CPU under page reads).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.execute_batch(&format!(
        "PRAGMA query_only = ON; PRAGMA cache_size = -{cache_kib}; PRAGMA temp_store = MEMORY;"
    ))
}

/// The newest schema version the embedded migrations reach.
/// How the file's schema differs from what trail's migrations make, up to
/// the version the file records: each table, index, trigger and view that
/// is missing, changed, or not trail's (`"view audit_log: changed"`). Empty
/// when it is exactly trail's. The chain and seals say nothing of these: a
/// view redefined to relabel or hide rows, a trigger dropped, verify
/// intact. Objects SQLite keeps for itself (`sqlite_*`) are not compared.
pub fn schema_differences(conn: &Connection) -> Result<Vec<String>> {
    let version: i64 = conn
        .query_row(
            "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
            [],
            |r| r.get(0),
        )
        .map_err(StoreError::sqlite("reading the schema version"))?;
    if version > i64::from(latest_migration()) {
        return Ok(vec![format!(
            "schema version {version} is newer than this trail's ({}); not compared",
            latest_migration()
        )]);
    }
    let mut reference =
        Connection::open_in_memory().map_err(StoreError::sqlite("opening a scratch database"))?;
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version as i32))
        .run(&mut reference)
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    let objects =
        |c: &Connection| -> Result<std::collections::BTreeMap<(String, String), Option<String>>> {
            let mut st = c
                .prepare(
                    "SELECT type, name, sql FROM sqlite_schema \
                 WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                )
                .map_err(StoreError::sqlite("reading the schema"))?;
            let rows = st
                .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
                .and_then(|rows| rows.collect())
                .map_err(StoreError::sqlite("reading the schema"))?;
            Ok(rows)
        };
    let (have, want) = (objects(conn)?, objects(&reference)?);
    let mut out = Vec::new();
    for ((kind, name), sql) in &want {
        match have.get(&(kind.clone(), name.clone())) {
            None => out.push(format!("{kind} {name}: missing")),
            Some(s) if s != sql => out.push(format!("{kind} {name}: changed")),
            Some(_) => {}
        }
    }
    for (kind, name) in have.keys() {
        if !want.contains_key(&(kind.clone(), name.clone())) {
            out.push(format!("{kind} {name}: not trail's"));
        }
    }
    Ok(out)
}

pub fn latest_migration() -> u32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version() as u32)
        .max()
        .unwrap_or(0)
}

/// A new, empty database at `path` with the schema of an earlier version
/// (migrations up to `version` only), as an earlier trail made it: for the
/// tests of what this one does with such a file.
#[doc(hidden)]
pub fn create_at_version(path: &Path, version: u32) -> Result<()> {
    let mut conn = open_path(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        "",
    )?
    .map_err(StoreError::sqlite("opening the database"))?;
    conn.execute_batch("PRAGMA page_size = 16384; PRAGMA journal_mode = WAL;")
        .map_err(StoreError::sqlite("setting pragmas"))?;
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version as i32))
        .run(&mut conn)
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(())
}
