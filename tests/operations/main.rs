//! Integration tests for trail's operations features: tokens and scopes,
//! the safe default without tokens, reverse proxies and base paths,
//! configuration layering, graceful shutdown under load, metrics, and the
//! server-side drop filters. In-process servers on free ports, and the real
//! binary where a process boundary matters (CLI, SIGTERM).

mod auth;
mod config;
mod filtering;
mod helpers;
mod lifecycle;
mod metrics;
mod proxy;
mod retention;
#[path = "../util/mod.rs"]
mod util;
