//! The writer: one thread owns the write connection and commits in groups.
//!
//! Callers submit a job (one event or an all-or-nothing batch) and get a
//! [`Pending`] answer. The thread takes the first job off the queue, then
//! every job already waiting behind it (up to [`WriterConfig::max_group_events`]),
//! and appends them all in one `BEGIN IMMEDIATE` transaction: jobs that queue
//! up while a commit is in flight share the next one (group commit). A job is
//! refused (an id conflict) before it writes anything, so one job's refusal
//! does not fail its neighbours, and the rows of all jobs of a group share
//! multi-row INSERT statements. Nobody is answered before `COMMIT` returns;
//! if the commit fails (disk full, I/O error) every job in the group gets the
//! error and nothing of it is acknowledged (invariants 3 and 6).
//!
//! The chain head is read inside the transaction, never cached across
//! transactions, so another process appending to the same file (a CLI next
//! to the server) still extends the one chain (invariant 4).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::domain::event::{content_of_entry, format_timestamp, truncate_micros};
use crate::domain::{
    chain, Checker, EventId, Hash, HmacKey, Keyring, NewEvent, Placement, Row, GENESIS,
};

use super::db::{open_write, Synchronous};
use super::error::{Result, StoreError};

/// One event as the writer stored it (or found it already stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub seq: u64,
    pub id: String,
    pub timestamp: String,
    pub chain_hash: Hash,
    pub signature: Hash,
    pub entry: String,
    /// False when a retry matched an event already stored under its id.
    pub created: bool,
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Jobs that may wait for the writer; past this, `submit` answers
    /// [`StoreError::QueueFull`] instead of queueing more.
    pub queue_depth: usize,
    /// Most events one transaction takes from the queue.
    pub max_group_events: usize,
    pub synchronous: Synchronous,
    /// Added to every event under `metadata.trail` (empty: nothing added).
    pub server_metadata: serde_json::Map<String, serde_json::Value>,
    /// What happens to the WAL when the writer stops.
    pub stop_checkpoint: StopCheckpoint,
    /// Keys besides the signing one that the log's rows may be sealed with
    /// (`verify_key_files`: a key rotated out). The head sealed with one of
    /// them still gives the next event its time floor.
    pub verify_keys: Keyring,
}

/// The checkpoint a writer runs when it stops (nothing is lost either way:
/// rows left in the WAL are read from there, and copied into the file by
/// a later checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopCheckpoint {
    /// Copy the whole WAL into the file and empty it, waiting up to
    /// [`STOP_CHECKPOINT_WAIT`] for readers still in it: a stopped server
    /// leaves a file that is whole on its own (a cold copy of just
    /// `trail.db` loses nothing).
    #[default]
    WaitForReaders,
    /// Copy what no reader still needs, without waiting (`PASSIVE`): a CLI
    /// command does not stall behind someone else's export, and says
    /// nothing about the rows it leaves in the WAL for them.
    Passive,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_depth: 4096,
            max_group_events: 10_000,
            synchronous: Synchronous::Full,
            server_metadata: serde_json::Map::new(),
            stop_checkpoint: StopCheckpoint::default(),
            verify_keys: Keyring::empty(),
        }
    }
}

/// What the writer answers for one job.
pub type JobResult = std::result::Result<Vec<Appended>, StoreError>;

struct Job {
    events: Vec<NewEvent>,
    idempotency: Option<IdempotencyKey>,
    reply: oneshot::Sender<JobResult>,
}

/// Work run on the writer thread with its connection.
/// `Err` with the reason when the file may not be written (see
/// [`FileIdentity::check`]): the work is then not run.
type ExecFn = Box<dyn FnOnce(std::result::Result<&mut WriteCtx<'_>, String>) + Send>;

/// What work run on the writer thread ([`Writer::exec`]) gets: the write
/// connection, the key, and appends that are counted like the writer's own.
pub struct WriteCtx<'a> {
    pub conn: &'a mut Connection,
    pub key: &'a HmacKey,
    /// The signing key and the writer's `verify_keys`.
    keys: &'a Keyring,
    observer: &'a dyn WriterObserver,
}

impl WriteCtx<'_> {
    /// [`append_direct`], reported to the writer's observer.
    pub fn append(&mut self, events: Vec<NewEvent>) -> JobResult {
        let started = std::time::Instant::now();
        let result = append_direct_with(self.conn, self.key, self.keys, events);
        if let Ok(done) = &result {
            let created = done.iter().filter(|a| a.created).count();
            if let Some(last) = done.iter().map(|a| a.seq).max() {
                self.observer.committed(created, 1, last, started.elapsed());
            }
        }
        result
    }
}

enum Msg {
    Job(Job),
    /// Work on the write connection between groups (retention).
    Exec(ExecFn),
    /// Commit what is queued, then stop.
    Stop,
}

/// An `Idempotency-Key` and the hash of the request it was first sent with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The key as the client sent it (1 to 255 visible ASCII characters).
    pub key: String,
    /// Whose key it is: the name of the token that sent it, so one client's
    /// key never answers for another's request. `None` without tokens.
    pub scope: Option<String>,
    pub request_hash: Hash,
}

impl IdempotencyKey {
    /// The `key` column: `TOKEN KEY` for a token's key (a key has no space,
    /// so the two cannot be confused), the key alone otherwise.
    pub fn stored(&self) -> String {
        match &self.scope {
            Some(scope) => format!("{scope} {}", self.key),
            None => self.key.clone(),
        }
    }
}

/// Hooks for metrics: called on the writer thread after each group.
pub trait WriterObserver: Send + Sync + 'static {
    fn committed(
        &self,
        _events: usize,
        _jobs: usize,
        _head_seq: u64,
        _elapsed: std::time::Duration,
    ) {
    }
    fn failed(&self, _jobs: usize) {}
}

struct NoObserver;
impl WriterObserver for NoObserver {}

/// The handle callers hold. Dropping it (the last clone's `shutdown`) lets
/// the thread finish every job already queued, then stop.
pub struct Writer {
    tx: SyncSender<Msg>,
    depth: Arc<AtomicUsize>,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// An answer still to come.
pub struct Pending(oneshot::Receiver<JobResult>);

impl Pending {
    /// Waits on this thread (CLI, start-up, tests). Inside an async runtime
    /// the wait happens on a scoped helper thread, since tokio forbids
    /// blocking a thread that drives tasks.
    pub fn wait(self) -> JobResult {
        if tokio::runtime::Handle::try_current().is_ok() {
            let rx = self.0;
            return std::thread::scope(|s| s.spawn(move || rx.blocking_recv()).join())
                .ok()
                .and_then(Result::ok)
                .unwrap_or(Err(StoreError::Closed));
        }
        self.0.blocking_recv().unwrap_or(Err(StoreError::Closed))
    }
    pub async fn wait_async(self) -> JobResult {
        self.0.await.unwrap_or(Err(StoreError::Closed))
    }
}

impl Writer {
    /// Opens the file for writing (applying migrations) and starts the thread.
    pub fn start(path: &Path, key: HmacKey, config: WriterConfig) -> Result<Writer> {
        Self::start_observed(path, key, config, Arc::new(NoObserver))
    }

    pub fn start_observed(
        path: &Path,
        key: HmacKey,
        config: WriterConfig,
        observer: Arc<dyn WriterObserver>,
    ) -> Result<Writer> {
        let conn = open_write(path, config.synchronous)?;
        // Room for an INSERT of every size up to EXACT_ROWS_UP_TO, the
        // power-of-two ones above it and the writer's other statements.
        conn.set_prepared_statement_cache_capacity(EXACT_ROWS_UP_TO + 32);
        let file = FileIdentity::of(path)?;
        let (tx, rx) = mpsc::sync_channel::<Msg>(config.queue_depth.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let thread_depth = depth.clone();
        let thread = std::thread::Builder::new()
            .name("trail-writer".into())
            .spawn(move || run(conn, file, key, rx, thread_depth, config, observer))
            .map_err(|source| StoreError::Io {
                context: "starting the writer thread".into(),
                source,
            })?;
        Ok(Writer {
            tx,
            depth,
            closed: AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a job without waiting; a full queue is an error, never a drop.
    pub fn submit(&self, events: Vec<NewEvent>) -> Result<Pending> {
        self.submit_with(events, None)
    }

    /// Like [`Writer::submit`], for a request carrying an `Idempotency-Key`.
    pub fn submit_with(
        &self,
        events: Vec<NewEvent>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Pending> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (reply, rx) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Job(Job {
            events,
            idempotency,
            reply,
        })) {
            Ok(()) => Ok(Pending(rx)),
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => StoreError::QueueFull,
                    TrySendError::Disconnected(_) => StoreError::Closed,
                })
            }
        }
    }

    /// Queues a job, waiting for room in the queue (CLI imports).
    pub fn submit_wait(&self, events: Vec<NewEvent>) -> Result<Pending> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (reply, rx) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Msg::Job(Job {
                events,
                idempotency: None,
                reply,
            }))
            .map_err(|_| {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                StoreError::Closed
            })?;
        Ok(Pending(rx))
    }

    /// Runs `f` on the writer thread with the write connection, between two
    /// groups of appends, and returns its result (blocking).
    pub fn exec<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> T + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.tx
            .send(Msg::Exec(Box::new(move |ctx| {
                let _ = tx.send(ctx.map(f));
            })))
            .map_err(|_| StoreError::Closed)?;
        rx.recv()
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::CommitFailed)
    }

    /// Appends and waits for the commit (blocking).
    pub fn append(&self, events: Vec<NewEvent>) -> JobResult {
        self.submit_wait(events)?.wait()
    }

    /// Whether the writer thread is still there to take jobs: false once
    /// it was shut down, or if it stopped on its own (a panic).
    pub fn is_running(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
            && self
                .thread
                .lock()
                .map(|t| t.as_ref().is_some_and(|t| !t.is_finished()))
                .unwrap_or(false)
    }

    /// Jobs waiting for the writer right now.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Stops taking jobs, lets the thread commit every queued one, and waits
    /// for it. A job that slips in after the stop gets [`StoreError::Closed`]:
    /// refused, never silently dropped.
    pub fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.lock().expect("writer thread handle").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The database file the writer opened, by device and inode, and the
/// `-wal` and `-shm` SQLite keeps beside it. A file deleted or replaced
/// under a running writer (an operator's `rm`, a restore copied over it)
/// would take commits into an unlinked inode: answered, then gone at the
/// next start. A `-wal` deleted (a careless cleanup) holds the same fate for
/// every commit not yet checkpointed, and a `-shm` replaced lets another
/// process write beside this one without sharing its locks (a corrupt
/// file). Each commit checks first, and refuses instead.
struct FileIdentity {
    path: std::path::PathBuf,
    /// `path` with symlinks resolved: where the sidecars are.
    real: std::path::PathBuf,
    dev: u64,
    ino: u64,
    /// `-wal`, `-shm`: their identity once seen (SQLite makes them on
    /// first use, and never replaces them while it has the file open).
    sidecars: [(&'static str, Option<(u64, u64)>); 2],
    /// Set once a sidecar was found gone or replaced: it stays so.
    broken: Option<SidecarBroken>,
    /// The WAL's size at the last check.
    wal_len: u64,
    /// With the `-wal` deleted: whether its frames are all in the file now,
    /// and where a copy of it was saved.
    rescued: bool,
    saved_copy: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SidecarBroken {
    Wal,
    Shm,
}

impl FileIdentity {
    fn of(path: &Path) -> Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).map_err(|source| StoreError::Io {
            context: format!("reading {}", path.display()),
            source,
        })?;
        // SQLite keeps `-wal` and `-shm` beside the file a symlink leads to.
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut id = FileIdentity {
            path: path.to_owned(),
            real,
            dev: m.dev(),
            ino: m.ino(),
            sidecars: [("-wal", None), ("-shm", None)],
            broken: None,
            wal_len: 0,
            rescued: false,
            saved_copy: None,
        };
        id.check_sidecars();
        Ok(id)
    }

    /// An error naming the problem when the path no longer leads to the
    /// file the writer holds, or a sidecar of it was deleted or replaced.
    fn check(&mut self) -> std::result::Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {}
            // No path in the reason: it can reach clients (`/readyz`); the
            // log line names the file.
            Ok(_) => {
                return Err(
                    "the database file was replaced by another file while trail was running; \
                     nothing was written; restart trail"
                        .into(),
                )
            }
            Err(e) => {
                return Err(format!(
                    "the database file is gone ({}) while trail was running; nothing was written; \
                     put it back before restarting trail, which would otherwise start a new, \
                     empty log (while trail runs, its open copy can be copied from \
                     /proc/<pid of trail>/fd)",
                    e.kind()
                ))
            }
        }
        self.check_sidecars();
        match self.broken {
            None => Ok(()),
            Some(SidecarBroken::Wal) => Err(format!(
                "the database's -wal file was deleted or replaced while trail was running; \
                 nothing was written; {}; then stop trail (SIGTERM) and start it again; never \
                 delete -wal or -shm while a trail process has the file open",
                if self.rescued {
                    "the events trail acknowledged are copied into the database file"
                } else {
                    "the events trail acknowledged are being copied into the database file \
                     (held up by a reader: close open sqlite3 sessions), and a copy of the \
                     deleted -wal is saved beside it as -wal.deleted-<time>"
                }
            )),
            Some(SidecarBroken::Shm) => Err(
                "the database's -shm file was deleted or replaced while trail was running, so \
                 other processes no longer share its locks; nothing was written; stop every \
                 trail process using the file, then start again; never delete -wal or -shm \
                 while a trail process has the file open"
                    .into(),
            ),
        }
    }

    /// Records each sidecar's identity when first seen, and whether one is
    /// gone or replaced since.
    fn check_sidecars(&mut self) {
        use std::os::unix::fs::MetadataExt;
        for (suffix, seen) in &mut self.sidecars {
            let meta = std::fs::metadata(super::db::sidecar(&self.real, suffix)).ok();
            if *suffix == "-wal" {
                self.wal_len = meta.as_ref().map_or(0, |m| m.len());
            }
            let now = meta.map(|m| (m.dev(), m.ino()));
            match (*seen, now) {
                (None, now) => *seen = now,
                (Some(was), Some(is)) if was == is => {}
                (Some(_), _) => {
                    if self.broken.is_none() {
                        self.broken = Some(if *suffix == "-wal" {
                            SidecarBroken::Wal
                        } else {
                            SidecarBroken::Shm
                        });
                    }
                }
            }
        }
    }
}

fn run(
    mut conn: Connection,
    mut file: FileIdentity,
    key: HmacKey,
    rx: Receiver<Msg>,
    depth: Arc<AtomicUsize>,
    config: WriterConfig,
    observer: Arc<dyn WriterObserver>,
) {
    let server = Some(config.server_metadata.clone()).filter(|m| !m.is_empty());
    let mut keys = Keyring::new(key.clone());
    for k in config.verify_keys.keys() {
        keys.add(k.clone());
    }
    let mut stopping = false;
    let mut execs: Vec<ExecFn> = Vec::new();
    let mut wal_warned: Option<std::time::Instant> = None;
    // The head this writer's last commit left, with its time (see
    // `read_head_with`): a head moved by anything else (another process, an
    // exec) is read and checked again; forgotten when a commit fails.
    let mut last_head: Option<ChainHead> = None;
    while !stopping {
        for f in execs.drain(..) {
            run_exec(f, &mut conn, &mut file, &key, &keys, observer.as_ref());
        }
        let first = match rx.recv() {
            Ok(Msg::Job(job)) => job,
            Ok(Msg::Exec(f)) => {
                run_exec(f, &mut conn, &mut file, &key, &keys, observer.as_ref());
                continue;
            }
            Ok(Msg::Stop) | Err(_) => {
                // Finish whatever is still queued behind the stop.
                stopping = true;
                match rx.try_recv() {
                    Ok(Msg::Job(job)) => job,
                    _ => break,
                }
            }
        };
        let mut events = first.events.len();
        let mut jobs = vec![first];
        while events < config.max_group_events || stopping {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => {
                    events += job.events.len();
                    jobs.push(job);
                }
                Ok(Msg::Stop) => stopping = true,
                Ok(Msg::Exec(f)) => {
                    execs.push(f);
                    break;
                }
                Err(_) => break,
            }
        }
        depth.fetch_sub(jobs.len(), Ordering::Relaxed);
        let started = std::time::Instant::now();
        let n_jobs = jobs.len();
        if let Err(why) = check_and_rescue(&conn, &mut file) {
            tracing::error!(%why, db = %file.path.display(), pid = std::process::id(), jobs = n_jobs, "refusing to commit");
            fail_group(jobs, why, observer.as_ref());
            continue;
        }
        if file.wal_len > WAL_WARN_BYTES
            && wal_warned.is_none_or(|t: std::time::Instant| t.elapsed() > WAL_WARN_EVERY)
        {
            wal_warned = Some(std::time::Instant::now());
            tracing::warn!(
                wal_mib = file.wal_len >> 20,
                db = %file.path.display(),
                "the WAL keeps growing: a reader holds an old snapshot (a long transaction, such \
                 as an open BEGIN in sqlite3), so it cannot start over; it grows with every \
                 append until that reader ends; end that reader, and never delete the -wal: it \
                 holds acknowledged events"
            );
        }
        match commit_group(
            &mut conn,
            &key,
            &keys,
            &jobs,
            server.as_ref(),
            last_head.as_ref(),
        ) {
            Ok((results, head)) => {
                let head_seq = head.seq;
                last_head = Some(head);
                // Only rows written count: a retry answered from the log is not.
                let stored: usize = results
                    .iter()
                    .map(|r| {
                        r.as_ref()
                            .map_or(0, |v| v.iter().filter(|a| a.created).count())
                    })
                    .sum();
                observer.committed(stored, n_jobs, head_seq, started.elapsed());
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                last_head = None;
                tracing::error!(error = %e, jobs = n_jobs, "append transaction failed; nothing of it was acknowledged");
                let _ = conn.execute_batch("ROLLBACK");
                fail_group(jobs, e.to_string(), observer.as_ref());
            }
        }
    }
    let _ = check_and_rescue(&conn, &mut file);
    match file.broken {
        None => checkpoint_on_stop(
            &conn,
            config.stop_checkpoint,
            &super::db::sidecar(&file.real, "-wal"),
        ),
        Some(broken) => {
            if broken == SidecarBroken::Wal && !file.rescued {
                // Readers held it so far: wait longer for them, once.
                let _ = conn.busy_timeout(std::time::Duration::from_secs(30));
                file.rescued = rescue_checkpoint(&conn);
            }
            tracing::error!(
                db = %file.path.display(),
                rescued = file.rescued,
                "stopping without closing the write connection: with a -wal or -shm deleted or \
                 replaced, SQLite's checkpoint at close could empty or delete another process's \
                 WAL"
            );
            // Closing would run SQLite's own checkpoint and unlink the WAL
            // path, which may now be another process's.
            std::mem::forget(conn);
        }
    }
}

/// Runs work sent with [`Writer::exec`], only if the file may be written
/// (token changes are appends like any other).
fn run_exec(
    f: ExecFn,
    conn: &mut Connection,
    file: &mut FileIdentity,
    key: &HmacKey,
    keys: &Keyring,
    observer: &dyn WriterObserver,
) {
    match check_and_rescue(conn, file) {
        Ok(()) => f(Ok(&mut WriteCtx {
            conn,
            key,
            keys,
            observer,
        })),
        Err(why) => {
            tracing::error!(%why, db = %file.path.display(), "refusing to write");
            f(Err(why))
        }
    }
}

/// [`FileIdentity::check`]; with the `-wal` deleted, first saves what it
/// holds (still open here): a copy of it beside the file, once, and its
/// frames copied into the file, until that succeeds (a reader holding an
/// old snapshot can block it for a while).
fn check_and_rescue(conn: &Connection, file: &mut FileIdentity) -> std::result::Result<(), String> {
    let checked = file.check();
    if file.broken == Some(SidecarBroken::Wal) {
        if file.saved_copy.is_none() {
            file.saved_copy = Some(save_deleted_wal(&file.real));
        }
        if !file.rescued {
            file.rescued = rescue_checkpoint(conn);
        }
    }
    checked
}

/// Copies the WAL this process still has open after its path was deleted
/// (through `/proc/self/fd`) to `<file>-wal.deleted-<unix time>`, synced:
/// what it holds survives whatever happens to this process. The copy's
/// name, or why there is none.
fn save_deleted_wal(real: &Path) -> String {
    let wal = super::db::sidecar(real, "-wal");
    let deleted = format!("{} (deleted)", wal.display());
    let fd = std::fs::read_dir("/proc/self/fd").ok().and_then(|dir| {
        dir.flatten().map(|e| e.path()).find(|p| {
            std::fs::read_link(p).is_ok_and(|t| t.as_os_str() == std::ffi::OsStr::new(&deleted))
        })
    });
    let Some(fd) = fd else {
        return "no copy (the deleted -wal is not open here)".into();
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dest = std::path::PathBuf::from(format!("{}.deleted-{stamp}", wal.display()));
    // A copy through its own handle on the WAL inode: SQLite holds no
    // locks on the WAL itself, so closing it drops none.
    let copied = std::fs::copy(&fd, &dest).and_then(|_| std::fs::File::open(&dest)?.sync_all());
    match copied {
        Ok(()) => {
            tracing::warn!(copy = %dest.display(), "saved a copy of the deleted -wal");
            dest.display().to_string()
        }
        Err(e) => {
            tracing::error!(error = %e, "could not save a copy of the deleted -wal");
            format!("no copy ({e})")
        }
    }
}

/// `PRAGMA wal_checkpoint(mode)`: (busy, frames in the WAL, frames copied).
fn wal_checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// A deleted `-wal` found: everything committed is copied from the WAL
/// (still open here) into the database file. Whether all of it was.
fn rescue_checkpoint(conn: &Connection) -> bool {
    let outcome = wal_checkpoint(conn, "FULL");
    match outcome {
        Ok((0, log, done)) if log == done => {
            tracing::warn!("the events of the deleted -wal were copied into the database file");
            true
        }
        Ok(_) => {
            tracing::error!(
                "copying the deleted -wal into the database file is held up by a reader (an open \
                 transaction); it is tried again with every request until it is done"
            );
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "copying the deleted -wal into the database file failed; it is tried again with every request");
            false
        }
    }
}

/// The clock reads earlier than the newest event: events are stamped with
/// that event's time (invariant 5), and a clock set back far (or put right
/// after running ahead) freezes every timestamp until it catches up.
/// Reported at most once a minute when it is behind by more than a second.
fn clock_behind(by: chrono::TimeDelta) {
    static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    if by <= chrono::TimeDelta::seconds(1) {
        return;
    }
    let Ok(mut last) = LAST.lock() else { return };
    if last.is_some_and(|t| t.elapsed() < WAL_WARN_EVERY) {
        return;
    }
    *last = Some(std::time::Instant::now());
    tracing::warn!(
        behind_seconds = by.num_seconds(),
        "the clock reads earlier than the newest event: new events get that event's time \
         (timestamps never go backwards) until the clock catches up; check the clock (NTP)"
    );
}

/// A WAL past this is reported (every [`WAL_WARN_EVERY`] while it lasts):
/// far past what checkpoints let it reach (a few MiB), so a reader is
/// holding it.
const WAL_WARN_BYTES: u64 = 1 << 30;
const WAL_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Answers every job of a group that was not committed: nothing of it was
/// written, and each caller is told why.
fn fail_group(jobs: Vec<Job>, reason: String, observer: &dyn WriterObserver) {
    observer.failed(jobs.len());
    for job in jobs {
        let _ = job
            .reply
            .send(Err(StoreError::CommitFailed(reason.clone())));
    }
}

/// How long the last checkpoint waits for readers still in the WAL.
const STOP_CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// When the writer stops, everything committed moves from the WAL into the
/// file itself, as far as `how` lets it: copying just `trail.db` of a
/// stopped server (a cold backup, a copy for forensics) then loses nothing.
/// Before this, a stopped server's file could be a bare header with every
/// row in `trail.db-wal`. With [`StopCheckpoint::WaitForReaders`] a reader
/// still in the WAL (a long export) is waited for briefly; if the
/// checkpoint cannot finish, the rows stay in the WAL (`wal`, named in the
/// warning), where SQLite finds them on the next open, so nothing is lost
/// either way.
fn checkpoint_on_stop(conn: &Connection, how: StopCheckpoint, wal: &Path) {
    let outcome = match how {
        StopCheckpoint::WaitForReaders => {
            let _ = conn.busy_timeout(STOP_CHECKPOINT_WAIT);
            wal_checkpoint(conn, "TRUNCATE")
        }
        // PASSIVE never calls the busy handler: it copies what it can now.
        StopCheckpoint::Passive => wal_checkpoint(conn, "PASSIVE"),
    };
    match outcome {
        Ok(outcome) => match stop_checkpoint_report(how, outcome, wal) {
            Some((true, text)) => tracing::warn!("{text}"),
            Some((false, text)) => tracing::debug!("{text}"),
            None => {}
        },
        Err(e) => tracing::warn!(
            error = %e,
            wal = %wal.display(),
            "the checkpoint at stop failed; the rows stay in the WAL until a later checkpoint"
        ),
    }
}

/// What to say of a stop checkpoint's outcome `(busy, frames in the WAL,
/// frames copied)`: `(warn, text)`, or `None` when it copied everything.
/// SQLite reports `-1` frames when the checkpoint could not run at all
/// (another connection was checkpointing): that is not a count.
fn stop_checkpoint_report(
    how: StopCheckpoint,
    (busy, log, done): (i64, i64, i64),
    wal: &Path,
) -> Option<(bool, String)> {
    let wal = wal.display();
    if log < 0 || done < 0 {
        return Some((
            false,
            format!(
                "no checkpoint at stop: another connection was checkpointing {wal}; the rows \
                 stay there until it or a later checkpoint copies them into the file"
            ),
        ));
    }
    if log == done {
        // Every frame is in the file (a reader may have kept the WAL from
        // being emptied, which costs nothing).
        return None;
    }
    let _ = busy;
    let left = log - done;
    let text = format!(
        "a reader kept {left} of the {log} WAL frames at stop; those rows stay in {wal} \
         (read from there, nothing is lost) until a later checkpoint copies them into the file"
    );
    // A CLI command leaves them without waiting: nothing to report.
    Some((how == StopCheckpoint::WaitForReaders, text))
}

/// Appends `events` as one all-or-nothing job on `conn`, outside any writer
/// thread: for code that already holds the write connection (retention,
/// running inside [`Writer::exec`] or on a CLI's own connection).
pub fn append_direct(conn: &mut Connection, key: &HmacKey, events: Vec<NewEvent>) -> JobResult {
    append_direct_with(conn, key, &Keyring::new(key.clone()), events)
}

/// [`append_direct`], where the head may also be sealed with one of `keys`
/// (a key rotated out): its time still sets the floor for these events'.
pub fn append_direct_with(
    conn: &mut Connection,
    key: &HmacKey,
    keys: &Keyring,
    events: Vec<NewEvent>,
) -> JobResult {
    let (reply, _rx) = oneshot::channel();
    let job = Job {
        events,
        idempotency: None,
        reply,
    };
    match commit_group(conn, key, keys, std::slice::from_ref(&job), None, None) {
        Ok((mut results, _)) => results.pop().unwrap_or(Ok(Vec::new())),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(StoreError::CommitFailed(e.to_string()))
        }
    }
}

/// The newest link: where the next row attaches.
#[derive(Debug, Clone)]
pub(crate) struct ChainHead {
    pub seq: u64,
    pub hash: Hash,
    pub timestamp: Option<DateTime<Utc>>,
}

/// Reads the head inside the caller's transaction: the newest row, else the
/// newest retention cut, else genesis. Its `timestamp` is what the chain and
/// `key` vouch for (see [`read_head_with`]); with no key, what links.
pub(crate) fn read_head(conn: &Connection) -> rusqlite::Result<ChainHead> {
    read_head_with(conn, None, None)
}

/// The head, with the time the next event may not go below (invariant 5).
///
/// That time is only taken from something the chain vouches for: the newest
/// row's entry when SHA-256(previous hash ‖ entry) is its chain hash and its
/// seal is one of `keys`' (the signing key, or one rotated out); after a
/// prune, the entry the cut keeps of its deleted row (schema 7), which links
/// to the cut's chain hash, sealed by the cut seal.
/// Not the generated `ts` column (the schema can be rewritten), not a cut's
/// `cut_at`, not a row below a cut (rows there may be deleted without a
/// trace), not an entry anyone can hash without the key. Anything else gives
/// no floor: the clock is used. Without `keys` (showing the head), linking
/// is enough. `known` is the head this writer committed last, with its time:
/// while the file's head is still that one, nothing is read again.
pub(crate) fn read_head_with(
    conn: &Connection,
    keys: Option<&Keyring>,
    known: Option<&ChainHead>,
) -> rusqlite::Result<ChainHead> {
    let row = conn
        .prepare_cached("SELECT seq, chain_hash, signature FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| {
            // A tampered row may hold anything here (bytes that are not a
            // hash, another type): verification, not reading the head, is
            // where that is reported, and appends go on.
            Ok((r.get::<_, i64>(0)?, bytes_of(r, 1)?, bytes_of(r, 2)?))
        })
        .optional()?;
    let cut = conn
        .prepare_cached(
            "SELECT up_to_seq, chain_hash, signature, key_id FROM retention_cuts ORDER BY up_to_seq DESC LIMIT 1",
        )?
        .query_row([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                bytes_of(r, 1)?,
                bytes_of(r, 2)?,
                String::from_utf8_lossy(&bytes_of(r, 3)?).into_owned(),
            ))
        })
        .optional()?;
    // The higher of the newest row and the newest cut: a prune deletes from
    // its cut down, so while it runs the cut's own row may be gone, and the
    // chain goes on after the cut, never at or below it (where the prune is
    // deleting). The events_next_seq trigger says the same.
    let cut_seq = cut.as_ref().map_or(0, |(seq, _, _, _)| *seq);
    let (seq, stored_hash, source) = match (row, cut) {
        (Some((seq, hash, seal)), _) if seq >= cut_seq => (seq, hash, Some((Source::Row, seal))),
        (_, Some((seq, hash, seal, key_id))) => (seq, hash, Some((Source::Cut(key_id), seal))),
        (_, None) => (0, GENESIS.to_vec(), None),
    };
    let head_seq = seq.max(0) as u64;
    let hash: Hash = stored_hash.as_slice().try_into().unwrap_or(GENESIS);
    let timestamp = match (known, source) {
        (Some(k), _) if k.seq == head_seq && k.hash == hash => k.timestamp,
        (_, None) => None,
        (_, Some((Source::Row, seal))) => {
            let entry = conn
                .prepare_cached("SELECT entry FROM events WHERE seq = ?1")?
                .query_row([seq], |r| bytes_of(r, 0))?;
            let row = Row {
                seq: head_seq,
                entry: &entry,
                chain_hash: &stored_hash,
                signature: &seal,
            };
            linked_time(previous_hash(conn, seq)?, row, keys)
        }
        (_, Some((Source::Cut(key_id), seal))) => {
            // As the verifiers: with the key the cut's `key_id` names.
            let sealed = |k: &Keyring| {
                k.get(&key_id)
                    .is_some_and(|k| k.check_cut(head_seq, &stored_hash, &seal))
            };
            if keys.is_some_and(|k| !sealed(k)) {
                None
            } else {
                // The cut's seal, checked above, vouches for its hash.
                cut_entry(conn, seq)?.and_then(|(entry, prev)| {
                    let row = Row {
                        seq: head_seq,
                        entry: &entry,
                        chain_hash: &stored_hash,
                        signature: &[],
                    };
                    linked_time(prev, row, None)
                })
            }
        }
    };
    Ok(ChainHead {
        seq: head_seq,
        hash,
        timestamp,
    })
}

/// Where the head is: the newest row, or a cut above it (with its key id).
enum Source {
    Row,
    Cut(String),
}

/// A column's bytes, whatever its type (empty for NULL).
fn bytes_of(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Vec<u8>> {
    r.get_ref(i)
        .map(|v| v.as_bytes().unwrap_or_default().to_vec())
}

/// The chain hash row `seq` links to: row `seq - 1`'s, else that of a cut
/// at `seq - 1`, else genesis for row 1; `None` when nothing is stored there.
pub(crate) fn previous_hash(conn: &Connection, seq: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    if seq == 1 {
        return Ok(Some(GENESIS.to_vec()));
    }
    let Some(prev) = seq.checked_sub(1) else {
        return Ok(None);
    };
    let row = conn
        .prepare_cached("SELECT chain_hash FROM events WHERE seq = ?1")?
        .query_row([prev], |r| bytes_of(r, 0))
        .optional()?;
    if row.is_some() {
        return Ok(row);
    }
    conn.prepare_cached("SELECT chain_hash FROM retention_cuts WHERE up_to_seq = ?1")?
        .query_row([prev], |r| bytes_of(r, 0))
        .optional()
}

/// A cut's kept entry and the hash before it (which may be missing).
type KeptEntry = (Vec<u8>, Option<Vec<u8>>);

/// The entry and previous hash a cut keeps of its row (schema 7); `None` for
/// a cut recorded before, or a file of an earlier schema read as it is (its
/// `retention_cuts` has no such columns until it is migrated).
fn cut_entry(conn: &Connection, seq: i64) -> rusqlite::Result<Option<KeptEntry>> {
    let has_entry: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('retention_cuts') WHERE name = 'entry')",
        )?
        .query_row([], |r| r.get(0))?;
    if !has_entry {
        return Ok(None);
    }
    let got = conn
        .prepare_cached("SELECT entry, prev_hash FROM retention_cuts WHERE up_to_seq = ?1")?
        .query_row([seq], |r| {
            let entry = bytes_of(r, 0)?;
            let prev = r.get_ref(1)?.as_bytes().ok().map(<[u8]>::to_vec);
            Ok((!entry.is_empty()).then_some((entry, prev)))
        })
        .optional()?;
    Ok(got.flatten())
}

/// The `timestamp` of `row` if it passes the verifiers' own check
/// ([`Checker`]) after a row whose hash is `prev`: it links, names its own
/// seq, and (with `keys`) is sealed by the key its `key_id` names.
fn linked_time(
    prev: Option<Vec<u8>>,
    row: Row<'_>,
    keys: Option<&Keyring>,
) -> Option<DateTime<Utc>> {
    let prev: Hash = prev?.try_into().ok()?;
    let none = Keyring::empty();
    let checker = Checker::new(keys.unwrap_or(&none), row.seq, prev);
    let mut checker = if keys.is_some() {
        checker
    } else {
        checker.without_seals()
    };
    checker.check(row).ok()?;
    let v: serde_json::Value = serde_json::from_slice(row.entry).ok()?;
    DateTime::parse_from_rfc3339(v.get("timestamp")?.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The answers of a group's jobs, and the head it left (with its time).
type GroupOutcome = (Vec<JobResult>, ChainHead);

/// `known`: the head the last commit of this writer left; while the file's
/// head is still that one, its time is not read and checked again.
fn commit_group(
    conn: &mut Connection,
    key: &HmacKey,
    keys: &Keyring,
    jobs: &[Job],
    server: Option<&serde_json::Map<String, serde_json::Value>>,
    known: Option<&ChainHead>,
) -> rusqlite::Result<GroupOutcome> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut head = read_head_with(conn, Some(keys), known)?;
    let read_seq = head.seq;
    // Invariant 5: time never goes backwards along the chain, whatever the
    // clock does. One timestamp serves the whole group.
    let now = truncate_micros(Utc::now());
    let ts = match head.timestamp {
        Some(prev) if prev > now => {
            clock_behind(prev - now);
            prev
        }
        _ => now,
    };
    let ts_text = format_timestamp(ts);
    let mut rows = RowBuffer::default();
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(append_job(
            conn, key, &mut head, &ts_text, job, server, &mut rows,
        )?);
    }
    rows.flush(conn)?;
    conn.execute_batch("COMMIT")?;
    if head.seq != read_seq {
        head.timestamp = Some(ts);
    }
    Ok((results, head))
}

/// Most rows one INSERT statement takes. Every statement that writes pays
/// for a statement journal (the generated columns call functions, which may
/// fail), copying each page it touches first; so the rows of a whole group,
/// across its jobs, share as few statements as possible.
const MAX_ROWS_PER_INSERT: usize = 512;

/// Up to this many rows, the statement has exactly that many rows: the small
/// groups of single-event requests take one statement instead of one per
/// power of two (a group of 28 took 16 + 8 + 4, about a sixth more time
/// per commit). Larger groups keep
/// power-of-two statements, so a few dozen cached statements serve any size.
const EXACT_ROWS_UP_TO: usize = 64;

/// Rows encoded and sealed but not yet inserted, in seq order.
#[derive(Default)]
struct RowBuffer {
    rows: Vec<(i64, String, Hash, Hash)>,
}

impl RowBuffer {
    fn push(&mut self, conn: &Connection, a: &Appended) -> rusqlite::Result<()> {
        self.rows
            .push((a.seq as i64, a.entry.clone(), a.chain_hash, a.signature));
        if self.rows.len() == MAX_ROWS_PER_INSERT {
            self.flush(conn)?;
        }
        Ok(())
    }

    /// Inserts every buffered row: statements of power-of-two sizes while
    /// more than [`EXACT_ROWS_UP_TO`] rows are left, then one of exactly the
    /// rest.
    fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut rest = &self.rows[..];
        while !rest.is_empty() {
            let n = if rest.len() <= EXACT_ROWS_UP_TO {
                rest.len()
            } else {
                1usize << rest.len().min(MAX_ROWS_PER_INSERT).ilog2()
            };
            let (now, later) = rest.split_at(n);
            insert_rows(conn, now)?;
            rest = later;
        }
        self.rows.clear();
        Ok(())
    }
}

/// What to do with one event of a job.
enum Step {
    /// Append it with this id.
    New(EventId),
    /// Answer with an event already stored (a retry by client id).
    Stored(Appended),
    /// The same as an earlier event of this job.
    SameAs(usize),
}

/// Appends one job's events. The outer error aborts the whole group (SQL
/// failed); the inner one refuses this job only (an id conflict). Every
/// refusal is decided before the job writes anything, so a refused job needs
/// no rollback and its neighbours in the group are not disturbed.
fn append_job(
    conn: &Connection,
    key: &HmacKey,
    head: &mut ChainHead,
    ts: &str,
    job: &Job,
    server: Option<&serde_json::Map<String, serde_json::Value>>,
    rows: &mut RowBuffer,
) -> rusqlite::Result<std::result::Result<Vec<Appended>, StoreError>> {
    // Lookups must see the rows earlier jobs of this group have buffered.
    if job.idempotency.is_some() || job.events.iter().any(|e| e.id().is_some()) {
        rows.flush(conn)?;
    }
    if let Some(idem) = &job.idempotency {
        if let Some(answer) = replay_idempotent(conn, idem)? {
            return Ok(answer);
        }
    }
    let events = &job.events;
    let mut steps = Vec::with_capacity(events.len());
    for (i, ev) in events.iter().enumerate() {
        let Some(id) = ev.id() else {
            steps.push(Step::New(EventId::generate()));
            continue;
        };
        let earlier = events[..i].iter().position(|e| e.id() == Some(id));
        let step = match earlier {
            Some(j) if events[j].content_fingerprint() == ev.content_fingerprint() => {
                Step::SameAs(j)
            }
            Some(j) => {
                return Ok(Err(StoreError::Conflict {
                    id: id.as_str().to_owned(),
                    index: i,
                    earlier: Some(j),
                }))
            }
            None => match find_by_id(conn, id.as_str())? {
                Some(existing)
                    if content_of_entry(&existing.entry).as_deref()
                        == Some(&ev.content_fingerprint()) =>
                {
                    Step::Stored(existing)
                }
                Some(_) => {
                    return Ok(Err(StoreError::Conflict {
                        id: id.as_str().to_owned(),
                        index: i,
                        earlier: None,
                    }))
                }
                None => Step::New(id.clone()),
            },
        };
        steps.push(step);
    }

    let key_id = key.id().as_str();
    let mut out: Vec<Appended> = Vec::with_capacity(events.len());
    for (ev, step) in events.iter().zip(steps) {
        match step {
            Step::Stored(existing) => out.push(existing),
            Step::SameAs(j) => {
                let mut again = out[j].clone();
                again.created = false;
                out.push(again);
            }
            Step::New(id) => {
                // Only a log whose seq was edited (triggers dropped) gets
                // here: SQLite's integers end at i64::MAX.
                // The whole transaction fails: nothing of it is written.
                if head.seq >= i64::MAX as u64 {
                    return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(
                        std::io::Error::other(format!(
                            "the newest row's seq ({}) leaves no next number: the log was edited; run trail verify",
                            head.seq as i64
                        )),
                    )));
                }
                let seq = head.seq + 1;
                let entry = ev.encode_with(
                    Placement {
                        seq,
                        id: id.as_str(),
                        timestamp: ts,
                        key_id,
                    },
                    server,
                );
                let hash = chain::link(&head.hash, entry.as_bytes());
                let signature = key.seal(&hash);
                head.seq = seq;
                head.hash = hash;
                out.push(Appended {
                    seq,
                    id: id.as_str().to_owned(),
                    timestamp: ts.to_owned(),
                    chain_hash: hash,
                    signature,
                    entry,
                    created: true,
                });
                rows.push(conn, out.last().expect("just pushed"))?;
            }
        }
    }
    if let Some(idem) = &job.idempotency {
        let seqs = serde_json::to_string(&out.iter().map(|a| a.seq).collect::<Vec<_>>())
            .expect("numbers serialize");
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (key, request_hash, seqs, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![idem.stored(), &idem.request_hash[..], seqs, ts])?;
    }
    Ok(Ok(out))
}

/// Inserts `rows` (consecutive seqs) in one statement.
fn insert_rows(conn: &Connection, rows: &[(i64, String, Hash, Hash)]) -> rusqlite::Result<()> {
    let mut sql = String::with_capacity(64 + rows.len() * 10);
    sql.push_str("INSERT INTO events (seq, entry, chain_hash, signature) VALUES ");
    for k in 0..rows.len() {
        sql.push_str(if k == 0 { "(?,?,?,?)" } else { ",(?,?,?,?)" });
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    for (k, (seq, entry, hash, signature)) in rows.iter().enumerate() {
        stmt.raw_bind_parameter(4 * k + 1, *seq)?;
        stmt.raw_bind_parameter(4 * k + 2, entry.as_str())?;
        stmt.raw_bind_parameter(4 * k + 3, &hash[..])?;
        stmt.raw_bind_parameter(4 * k + 4, &signature[..])?;
    }
    stmt.raw_execute()?;
    Ok(())
}

/// The original answer for a key seen before, or a refusal when the key
/// came with another request; `None` for a new key.
fn replay_idempotent(
    conn: &Connection,
    idem: &IdempotencyKey,
) -> rusqlite::Result<Option<std::result::Result<Vec<Appended>, StoreError>>> {
    let found: Option<(Vec<u8>, String)> = conn
        .prepare_cached("SELECT request_hash, seqs FROM idempotency_keys WHERE key = ?1")?
        .query_row([idem.stored()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((hash, seqs)) = found else {
        return Ok(None);
    };
    if hash != idem.request_hash {
        return Ok(Some(Err(StoreError::IdempotencyMismatch {
            key: idem.key.clone(),
        })));
    }
    let seqs: Vec<u64> = serde_json::from_str(&seqs).unwrap_or_default();
    let mut out = Vec::with_capacity(seqs.len());
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {STORED_COLUMNS} FROM events WHERE seq = ?1"
    ))?;
    for seq in &seqs {
        match stmt.query_row([*seq as i64], stored_from_row).optional()? {
            Some(a) => out.push(a),
            // Pruned by retention since (its key is forgotten at the end of
            // the prune): the original answer cannot be given, and writing
            // the request again would store the event a second time.
            None => {
                return Ok(Some(Err(StoreError::IdempotencyPruned {
                    key: idem.key.clone(),
                })))
            }
        }
    }
    if seqs.is_empty() {
        return Ok(Some(Err(StoreError::IdempotencyPruned {
            key: idem.key.clone(),
        })));
    }
    Ok(Some(Ok(out)))
}

/// The columns [`stored_from_row`] reads.
const STORED_COLUMNS: &str = "seq, entry, chain_hash, signature, ts, id";

/// An event already in the log, as an answer to a retry.
fn stored_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Appended> {
    Ok(Appended {
        seq: r.get::<_, i64>(0)? as u64,
        entry: r.get(1)?,
        chain_hash: r.get::<_, Vec<u8>>(2)?.try_into().unwrap_or(GENESIS),
        signature: r.get::<_, Vec<u8>>(3)?.try_into().unwrap_or(GENESIS),
        timestamp: r.get(4)?,
        id: r.get(5)?,
        created: false,
    })
}

fn find_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<Appended>> {
    conn.prepare_cached(&format!(
        "SELECT {STORED_COLUMNS} FROM events WHERE id = ?1"
    ))?
    .query_row([id], stored_from_row)
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Keyring;
    use crate::store::{verify_file, VerifyRequest};
    use serde_json::json;

    fn ev(n: usize, id: Option<&str>) -> NewEvent {
        let mut v = json!({"event": "group.test", "actor": format!("a{n}"), "details": {"n": n}});
        if let Some(id) = id {
            v["id"] = json!(id);
        }
        NewEvent::from_json(&v).unwrap()
    }

    fn job(events: Vec<NewEvent>, idem: Option<(&str, u8)>) -> Job {
        Job {
            events,
            idempotency: idem.map(|(key, h)| IdempotencyKey {
                key: key.into(),
                scope: None,
                request_hash: [h; 32],
            }),
            reply: oneshot::channel().0,
        }
    }

    /// One group whose jobs share INSERT statements: a job large enough to
    /// fill one and leave a remainder, and later jobs that must see rows the
    /// earlier ones buffered (client id retries, an Idempotency-Key replay).
    #[test]
    fn jobs_of_one_group_share_statements_and_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let key = HmacKey::from_bytes([7; 32]);
        let mut conn = open_write(&path, Synchronous::Full).unwrap();
        let jobs = vec![
            job((0..700).map(|n| ev(n, None)).collect(), None),
            job(vec![ev(1000, Some("x"))], None),
            // A retry of "x" in the same group: answered with row 701.
            job(vec![ev(1000, Some("x"))], None),
            // "x" with other content: refused, writes nothing.
            job(vec![ev(1001, Some("x"))], None),
            job((2000..2003).map(|n| ev(n, None)).collect(), Some(("k", 1))),
            // The same key and request in the same group: the same answer.
            job((2000..2003).map(|n| ev(n, None)).collect(), Some(("k", 1))),
            job((3000..3005).map(|n| ev(n, None)).collect(), None),
        ];
        let ring = Keyring::new(key.clone());
        let (results, head) = commit_group(&mut conn, &key, &ring, &jobs, None, None).unwrap();
        assert_eq!(head.seq, 709);
        let seqs = |r: &JobResult| -> Vec<(u64, bool)> {
            r.as_ref()
                .unwrap()
                .iter()
                .map(|a| (a.seq, a.created))
                .collect()
        };
        assert_eq!(
            seqs(&results[0]),
            (1..=700).map(|s| (s, true)).collect::<Vec<_>>()
        );
        assert_eq!(seqs(&results[1]), vec![(701, true)]);
        assert_eq!(seqs(&results[2]), vec![(701, false)]);
        assert!(
            matches!(&results[3], Err(StoreError::Conflict { id, index: 0, earlier: None }) if id == "x"),
            "{:?}",
            results[3]
        );
        assert_eq!(
            seqs(&results[4]),
            vec![(702, true), (703, true), (704, true)]
        );
        assert_eq!(
            seqs(&results[5]),
            vec![(702, false), (703, false), (704, false)]
        );
        assert_eq!(
            seqs(&results[6]),
            (705..=709).map(|s| (s, true)).collect::<Vec<_>>()
        );
        // Every answered row is stored exactly as answered.
        for a in results.iter().filter_map(|r| r.as_ref().ok()).flatten() {
            let stored = conn
                .query_row(
                    "SELECT entry, chain_hash FROM events WHERE seq = ?1",
                    [a.seq as i64],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
                )
                .unwrap();
            assert_eq!(stored, (a.entry.clone(), a.chain_hash.to_vec()));
        }
        let count: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 709);
        drop(conn);
        let report = verify_file(&path, &Keyring::new(key), VerifyRequest::default()).unwrap();
        assert!(report.valid, "{report:?}");
        assert_eq!(report.entries_checked, 709);
    }

    /// A reader holding an old snapshot keeps the WAL from starting over, so
    /// it grows; once the reader is gone the WAL starts over and is cut back
    /// to [`super::super::db::WAL_KEEP_BYTES`] instead of keeping its size on
    /// disk until the writer stops.
    #[test]
    fn the_wal_shrinks_back_once_a_long_reader_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trail.db");
        let writer =
            Writer::start(&path, HmacKey::from_bytes([7; 32]), WriterConfig::default()).unwrap();
        let pad = "p".repeat(2000);
        let batch = |b: usize| -> Vec<NewEvent> {
            (0..1000)
                .map(|i| NewEvent::from_json(&json!({"event": "wal.grow", "actor": format!("a{}", (b * 1000 + i) % 997), "details": {"pad": pad}})).unwrap())
                .collect()
        };
        writer.append(batch(0)).unwrap();
        let reader = super::super::db::open_read(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        let wal = super::super::db::sidecar(&path, "-wal");
        let mut b = 1;
        while std::fs::metadata(&wal).unwrap().len() <= 2 * super::super::db::WAL_KEEP_BYTES {
            writer.append(batch(b)).unwrap();
            b += 1;
        }
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        // A commit checkpoints the whole WAL; the next one starts it over.
        for _ in 0..3 {
            writer.append(batch(b)).unwrap();
            b += 1;
        }
        let len = std::fs::metadata(&wal).unwrap().len();
        assert!(
            len <= super::super::db::WAL_KEEP_BYTES,
            "the WAL stayed at {} MiB",
            len >> 20
        );
    }

    /// What a stop checkpoint says: nothing when every frame is in the
    /// file, the real WAL's name and the frames a reader kept otherwise (a
    /// warning only for the server's waiting checkpoint), and never a count
    /// of -1 (SQLite's "could not run").
    #[test]
    fn a_stop_checkpoint_names_the_wal_and_no_count_of_minus_one() {
        let wal = Path::new("/srv/x/t.db-wal");
        let wait = StopCheckpoint::WaitForReaders;
        assert_eq!(stop_checkpoint_report(wait, (0, 8, 8), wal), None);
        assert_eq!(stop_checkpoint_report(wait, (1, 8, 8), wal), None);
        assert_eq!(stop_checkpoint_report(wait, (0, 0, 0), wal), None);
        let (warn, text) = stop_checkpoint_report(wait, (1, 8, 3), wal).unwrap();
        assert!(warn);
        assert!(
            text.starts_with(
                "a reader kept 5 of the 8 WAL frames at stop; those rows stay in /srv/x/t.db-wal "
            ),
            "{text}"
        );
        let (warn, text) = stop_checkpoint_report(StopCheckpoint::Passive, (0, 8, 0), wal).unwrap();
        assert!(
            !warn,
            "a CLI command does not warn of rows left for a reader"
        );
        assert!(text.contains("/srv/x/t.db-wal"), "{text}");
        for how in [wait, StopCheckpoint::Passive] {
            let (warn, text) = stop_checkpoint_report(how, (1, -1, -1), wal).unwrap();
            assert!(!warn);
            assert!(!text.contains("-1"), "{text}");
            assert!(text.contains("another connection was checkpointing /srv/x/t.db-wal"));
        }
    }

    /// A writer stopping with [`StopCheckpoint::Passive`] does not wait for
    /// a reader holding a snapshot: the waiting checkpoint spends its whole
    /// [`STOP_CHECKPOINT_WAIT`] in SQLite's busy handler before giving up,
    /// the passive one never calls it. The rows it leaves in the WAL are
    /// read from there, and a later writer's stop copies them in.
    #[test]
    fn a_passive_stop_does_not_wait_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let key = HmacKey::from_bytes([7; 32]);
        let config = WriterConfig {
            stop_checkpoint: StopCheckpoint::Passive,
            ..WriterConfig::default()
        };
        let writer = Writer::start(&path, key.clone(), config.clone()).unwrap();
        writer.append(vec![ev(0, None)]).unwrap();
        drop(writer);
        let reader = super::super::db::open_read(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let n: i64 = reader
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);

        let writer = Writer::start(&path, key.clone(), config.clone()).unwrap();
        writer.append(vec![ev(1, None)]).unwrap();
        let started = std::time::Instant::now();
        writer.shutdown();
        let took = started.elapsed();
        assert!(
            took < STOP_CHECKPOINT_WAIT,
            "the stop waited {took:?} for the reader"
        );
        // The reader's snapshot is as it was; a new one sees both rows.
        let n: i64 = reader
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let fresh = super::super::db::open_read(&path).unwrap();
        let n: i64 = fresh
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        drop(fresh);
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        // With the reader gone, the next stop copies everything in: the
        // file alone holds both rows.
        let writer = Writer::start(&path, key, config).unwrap();
        drop(writer);
        let wal = super::super::db::sidecar(&path, "-wal");
        assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
    }
}
