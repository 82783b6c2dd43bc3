//! The store: the SQLite file, its writer, its reads. Depends on the domain
//! core, never on HTTP or the CLI.

pub mod backup;
pub mod db;
pub mod error;
pub mod export;
pub mod keys;
pub mod query;
pub mod retention;
pub mod tokens;
pub mod verify;
pub mod writer;

pub use db::{open_read, open_write, Synchronous};
pub use error::StoreError;
pub use keys::KeySource;
pub use query::{Order, Page, PageRequest, StoredEvent, Summary};
pub use verify::{verify_file, VerifyRequest};
pub use writer::{
    Appended, IdempotencyKey, Pending, StopCheckpoint, WriteCtx, Writer, WriterConfig,
};

/// Helpers for the store's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    use crate::domain::{HmacKey, NewEvent};

    /// A new file in a temporary folder holding `events`, appended through
    /// the writer (which is stopped again). Keep the folder alive.
    pub fn file_with(events: Vec<NewEvent>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = super::Writer::start(
            &path,
            HmacKey::from_bytes([5; 32]),
            super::WriterConfig::default(),
        )
        .unwrap();
        writer.submit_wait(events).unwrap().wait().unwrap();
        (dir, path)
    }
}
