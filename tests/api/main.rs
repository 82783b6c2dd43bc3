//! HTTP integration tests for trail: the real service (in-process, or the
//! real binary for crash tests) on a free port, spoken to over real HTTP.

mod bad_input;
mod crash;
mod disk_full;
mod filters;
mod helpers;
mod idempotency;
mod openapi_bodies;
mod paging;
mod routes;
mod summary_export;
#[path = "../util/mod.rs"]
mod util;
