//! trail: a tamper-evident audit log.
//!
//! Code map (ARCHITECTURE.md has the long version):
//! - [`domain`]: the pure core: event validation, the canonical `entry`
//!   encoding, SHA-256 links, HMAC seals, verification. No I/O.
//! - [`store`]: the SQLite file: migrations, the group-commit writer, reads,
//!   exports, verification over the file.
//! - [`cli`]: the `trail` command.
//!
//! Dependencies point one way: `cli → store → domain`.

pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod store;
