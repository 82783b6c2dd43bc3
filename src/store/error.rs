//! Store errors. Their `Display` is safe to show an operator; none carries
//! the HMAC key. HTTP maps them to responses in exactly one place.

use std::path::PathBuf;

use crate::domain::{FailureKind, InputError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Input(#[from] InputError),
    /// The event at `index` of a request carries a client id that names
    /// other content: an event stored already, or (`earlier`) an event
    /// before it in the same request.
    #[error("{}", conflict_text(id, *index, *earlier))]
    Conflict {
        id: String,
        index: usize,
        earlier: Option<usize>,
    },
    #[error("Idempotency-Key {key:?} was first used with a different request")]
    IdempotencyMismatch { key: String },
    #[error("the events first written with Idempotency-Key {key:?} were removed by retention")]
    IdempotencyPruned { key: String },
    #[error("the writer's queue is full; retry shortly")]
    QueueFull,
    #[error("the transaction did not commit, nothing of it was stored: {0}")]
    CommitFailed(String),
    #[error("the writer has stopped")]
    Closed,
    #[error("no trail database at {0} (append an event first, or check --db / TRAIL_DB)")]
    NoDatabase(PathBuf),
    /// The path holds something else: a folder, a file that is not SQLite,
    /// or another program's SQLite database. Nothing is written to it.
    #[error("{path} is not a trail database: {why} (check --db / TRAIL_DB)")]
    NotTrail { path: PathBuf, why: String },
    /// SQLite found the database read-only for this process.
    #[error("cannot write {path}: {why}; nothing was written")]
    NotWritable { path: PathBuf, why: String },
    #[error("{context}: {source}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key: {0}")]
    Key(String),
    #[error("migrations failed: {0}")]
    Migration(String),
    /// The file's schema is newer than this binary's migrations.
    #[error(
        "{} was migrated by a newer trail (schema version {found}; this trail knows versions up to {known}): \
         use that version or a later one; nothing was changed",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: u32,
    },
    #[error("read pool: {0}")]
    Pool(String),
    /// Every read connection stayed checked out (long reads: exports,
    /// summaries, verifications) for as long as a request may wait.
    #[error("every read connection is busy with long reads (exports, summaries, verifications)")]
    ReadersBusy,
    /// A prune found that the rows it would delete do not verify.
    #[error(
        "refusing to prune: the events to delete do not verify: seq {seq} is {kind} ({}); \
         nothing was cut or deleted, so the evidence stays for `trail verify`",
        kind.explain()
    )]
    PruneRefused { seq: u64, kind: FailureKind },
}

impl StoreError {
    pub fn sqlite(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + Copy {
        move |source| StoreError::Sqlite { context, source }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a conflict says: positions are a request's array indexes.
fn conflict_text(id: &str, index: usize, earlier: Option<usize>) -> String {
    match earlier {
        None => format!("event id {id:?} is already stored with different content"),
        Some(j) => format!(
            "event id {id:?} is given twice in this request with different content ([{j}] and [{index}])"
        ),
    }
}
