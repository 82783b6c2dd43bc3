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
pub use writer::{Appended, IdempotencyKey, Pending, WriteCtx, Writer, WriterConfig};
