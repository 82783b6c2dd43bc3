//! A few threads for the short reads (a page, one event, the head).
//!
//! Reads stay off the async executor, as the design asks, but not on tokio's
//! blocking pool: that pool grows a thread per concurrent call (up to 512 per
//! worker), and with 64 clients each request woke and parked its own thread;
//! about a fifth of the CPU went to scheduling. A fixed set of threads, one
//! per core, takes the next read off a queue without sleeping while there is
//! work. `scripts/bench_http.sh` (pages at random depths, 64 clients): about
//! 4.7k requests/s with p99 58 ms on the blocking pool, about 7k with p99
//! 20 ms here, on the same run of the machine.
//!
//! Each thread keeps one read-only connection for as long as it runs, so its
//! page cache stays warm. They come from a pool of their own (one connection
//! per thread), not from the pool the longer reads share.
//!
//! Long reads (summaries over a period, verification, exports) stay on the
//! blocking pool, so one of them never holds up the pages behind it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::ReadPool;

/// A read: given the thread's connection, or why there is none.
type Task = Box<dyn FnOnce(Result<&Connection, String>) + Send>;

pub struct ReadThreads {
    tx: Sender<Task>,
}

/// The read could not run: the threads are gone (shutting down) or the
/// task panicked.
#[derive(Debug, thiserror::Error)]
#[error("the read thread did not answer")]
pub struct Lost;

impl ReadThreads {
    /// Starts `threads` threads (at least one) reading through `pool`. They
    /// end when the last handle is dropped.
    pub fn start(pool: ReadPool, threads: usize) -> std::io::Result<ReadThreads> {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (rx, pool) = (rx.clone(), pool.clone());
            std::thread::Builder::new()
                .name(format!("trail-read-{i}"))
                .spawn(move || serve(&rx, &pool))?;
        }
        Ok(ReadThreads { tx })
    }

    /// Runs `f` on one of the threads with its connection (or the reason
    /// there is none) and waits, asynchronously, for the answer.
    pub async fn run<T, F>(&self, f: F) -> Result<T, Lost>
    where
        T: Send + 'static,
        F: FnOnce(Result<&Connection, String>) -> T + Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Box::new(move |conn| {
                let _ = done.send(f(conn));
            }))
            .map_err(|_| Lost)?;
        answer.await.map_err(|_| Lost)
    }
}

fn serve(rx: &Mutex<Receiver<Task>>, pool: &ReadPool) {
    let mut conn = None;
    loop {
        let task = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(task) = task else { return };
        if conn.is_none() {
            match pool.get() {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    task(Err(e.to_string()));
                    continue;
                }
            }
        }
        let c: &Connection = conn.as_deref().expect("checked out above");
        // A panicking read answers its caller with an error (its sender is
        // dropped) and leaves the thread serving the others, with a fresh
        // connection in case it left this one in a bad state.
        if catch_unwind(AssertUnwindSafe(|| task(Ok(c)))).is_err() {
            conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pool_gives_its_connections_the_cache_it_was_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(crate::store::open_write(&path, crate::store::Synchronous::Full).unwrap());
        let pool = super::super::read_pool(&path, 2, super::super::LONG_READ_CACHE_KIB).unwrap();
        let conn = pool.get().unwrap();
        let kib: i64 = conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kib, -i64::from(super::super::LONG_READ_CACHE_KIB));
        assert_eq!(kib, -8192);
    }
    use super::*;

    #[tokio::test]
    async fn answers_on_its_connection_and_survives_a_panicking_task() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(crate::store::open_write(&path, crate::store::Synchronous::Full).unwrap());
        let pool = super::super::read_pool(&path, 2, 1024).unwrap();
        let threads = ReadThreads::start(pool, 1).unwrap();
        let count = |conn: Result<&Connection, String>| -> i64 {
            conn.unwrap()
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(threads.run(count).await.unwrap(), 0);
        let lost = threads
            .run(|_: Result<&Connection, String>| -> u8 { panic!("boom") })
            .await;
        assert!(lost.is_err());
        // The one thread is still there, and reads again.
        assert_eq!(threads.run(count).await.unwrap(), 0);
        let name = threads
            .run(|_: Result<&Connection, String>| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("trail-read-0"));
    }

    /// A thread keeps its connection between reads, but no read may leave it
    /// inside a read transaction: that would pin the WAL, and checkpoints
    /// could never empty it (the file would grow while the server runs).
    #[tokio::test]
    async fn a_pinned_connection_does_not_hold_the_wal() {
        use crate::domain::{Filter, HmacKey, NewEvent};
        use crate::store::query::{self, PageRequest};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut w = crate::store::open_write(&path, crate::store::Synchronous::Full).unwrap();
        let key = HmacKey::from_bytes([3; 32]);
        let events = (0..50)
            .map(|n| {
                NewEvent::from_json(&serde_json::json!({"event": "wal.test", "details": {"n": n}}))
                    .unwrap()
            })
            .collect();
        crate::store::writer::append_direct(&mut w, &key, events).unwrap();
        let threads =
            ReadThreads::start(super::super::read_pool(&path, 2, 1024).unwrap(), 1).unwrap();
        let page = threads
            .run(|conn| {
                let req = PageRequest {
                    order: query::Order::Desc,
                    after: None,
                    limit: 10,
                    offset: 0,
                };
                query::list(conn.unwrap(), &Filter::default(), req)
                    .unwrap()
                    .events
                    .len()
            })
            .await
            .unwrap();
        assert_eq!(page, 10);
        // TRUNCATE needs every reader out of the WAL: (busy, frames, done).
        let (busy, log, done): (i64, i64, i64) = w
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((busy, log, done), (0, 0, 0));
    }
}
