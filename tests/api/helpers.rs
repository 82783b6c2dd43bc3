//! One `spawn_app()` that starts the real actix-web service on a free port
//! over a fresh database in a temporary folder, and small client helpers:
//! every request goes over real HTTP with `awc`, every response is read whole
//! into a [`Resp`], and the database file is read directly with rusqlite
//! (read-only) to check what was really stored. The client, [`send`] and
//! [`Resp`] are the shared ones of `tests/util/http.rs`.

#![allow(dead_code)]

use std::path::PathBuf;

use actix_web::dev::ServerHandle;
use awc::http::Method;
use rusqlite::Connection;
use serde_json::{json, Value};

pub use crate::util::http::{client, send, Resp};
use crate::util::http::{start_app, stop_server};
use crate::util::{temp_dir, Db};

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub port: u16,
    pub db_path: PathBuf,
    pub handle: ServerHandle,
    pub client: awc::Client,
    pub dir: tempfile::TempDir,
    /// The server's shared state (its writer, for fault injection).
    pub state: std::sync::Arc<trail::http::AppState>,
    /// Rows the server wrote about itself before serving (`server.start`):
    /// the seq the first client event follows.
    pub start_rows: u64,
}

impl Resp {
    /// The `seq` of every event of a list response, in order.
    pub fn seqs(&self) -> Vec<u64> {
        seqs_of(&self.json()["events"])
    }
}

pub fn seqs_of(events: &Value) -> Vec<u64> {
    events
        .as_array()
        .expect("events array")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

/// Starts the service on `127.0.0.1:0` over `trail.db` in a new temporary
/// folder, with the default limits.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Same as [`spawn_app`], after letting `tweak` change the configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut trail::http::ServeConfig)) -> TestApp {
    let dir = temp_dir("trail-api-");
    let db_path = dir.path().join("trail.db");
    let mut cfg = trail::http::ServeConfig::new("127.0.0.1:0", db_path.clone());
    cfg.workers = 2;
    cfg.shutdown_timeout = 5;
    tweak(&mut cfg);
    let client = client();
    let app = start_app(cfg, &client).await;
    let t = TestApp {
        base: app.base,
        port: app.port,
        db_path,
        handle: app.handle,
        client,
        dir,
        state: app.state,
        start_rows: 0,
    };
    let start_rows = t.total();
    TestApp { start_rows, ..t }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> Resp {
        send(self.client.get(self.url(path)), None).await
    }

    pub async fn request(&self, method: Method, path: &str) -> Resp {
        send(self.client.request(method, self.url(path)), None).await
    }

    /// `POST /v1/events` with `value` as JSON.
    pub async fn post(&self, value: &Value) -> Resp {
        self.post_raw(
            Some("application/json"),
            &[],
            serde_json::to_vec(value).unwrap(),
        )
        .await
    }

    /// `POST /v1/events` with an `Idempotency-Key`.
    pub async fn post_idem(&self, key: &str, value: &Value) -> Resp {
        self.post_raw(
            Some("application/json"),
            &[("Idempotency-Key", key)],
            serde_json::to_vec(value).unwrap(),
        )
        .await
    }

    /// `POST /v1/events` with exactly these bytes and headers.
    pub async fn post_raw(
        &self,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let mut req = self.client.post(self.url("/v1/events"));
        if let Some(ct) = content_type {
            req = req.insert_header(("content-type", ct));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        send(req, Some(body)).await
    }

    /// Posts `n` events made by `make(i)` in batches of up to 1000, `inflight`
    /// batches at a time; panics unless each batch answers 201.
    pub async fn post_many(&self, n: usize, inflight: usize, make: impl Fn(usize) -> Value) {
        let bodies: Vec<Vec<u8>> = (0..n)
            .collect::<Vec<_>>()
            .chunks(1000)
            .map(|c| {
                let batch: Vec<Value> = c.iter().map(|&i| make(i)).collect();
                serde_json::to_vec(&batch).unwrap()
            })
            .collect();
        use futures_util::StreamExt as _;
        let mut results = futures_util::stream::iter(bodies.into_iter().map(|b| {
            let req = self
                .client
                .post(self.url("/v1/events"))
                .insert_header(("content-type", "application/json"));
            send(req, Some(b))
        }))
        .buffer_unordered(inflight.max(1));
        while let Some(r) = results.next().await {
            r.expect(201);
        }
    }

    /// The database file, read directly.
    pub fn db(&self) -> Db {
        Db(self.db_path.clone(), None)
    }

    /// A read-only connection to the database file.
    pub fn sql(&self) -> Connection {
        self.db().conn()
    }

    /// Every row in the file.
    pub fn total(&self) -> u64 {
        self.db().count()
    }

    /// Rows written since the server started serving (the rows clients
    /// caused), so a test need not know what the server writes about itself.
    pub fn count(&self) -> u64 {
        self.total() - self.start_rows
    }

    /// The seq of the `n`th event written after start-up (1-based).
    pub fn seq(&self, n: u64) -> u64 {
        self.start_rows + n
    }

    /// Stops the server and waits (bounded) for it to finish.
    pub async fn stop(self) {
        stop_server(&self.handle).await;
    }
}

/// Checks an RFC 9457 problem response with `status` and returns its body.
/// The body must never show internal text: SQL, SQLite, file paths.
#[track_caller]
pub fn assert_problem(r: &Resp, status: u16) -> Value {
    assert_eq!(
        r.status,
        status,
        "status; body: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.content_type(), "application/problem+json", "content type");
    let v = r.json();
    let obj = v.as_object().expect("problem is an object");
    assert!(
        obj["type"].as_str().is_some_and(|s| !s.is_empty()),
        "type: {v}"
    );
    assert!(
        obj["title"].as_str().is_some_and(|s| !s.is_empty()),
        "title: {v}"
    );
    assert_eq!(obj["status"], json!(status), "status member: {v}");
    assert!(
        obj["detail"].as_str().is_some_and(|s| !s.is_empty()),
        "detail: {v}"
    );
    let text = String::from_utf8_lossy(&r.body).to_ascii_lowercase();
    for leak in [
        "sqlite",
        "select ",
        "insert ",
        "sql error",
        "/tmp",
        "trail.db",
        "panicked",
        "src/",
    ] {
        assert!(!text.contains(leak), "problem leaks {leak:?}: {v}");
    }
    for k in obj.keys() {
        assert!(
            ["type", "title", "status", "detail", "errors", "instance"].contains(&k.as_str()),
            "unexpected problem member {k}: {v}"
        );
    }
    v
}

/// The `field` of every entry of a problem's `errors`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
                    e["field"].as_str().expect("field").to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn is_hex64(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Follows `next_cursor` from `first` (a path with query) to the end;
/// returns every page's seqs, concatenated.
pub async fn walk(app: &TestApp, first: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut path = first.to_owned();
    let sep = if first.contains('?') { '&' } else { '?' };
    for _ in 0..100_000 {
        let r = app.get(&path).await;
        let v = r.ok_json(200);
        out.extend(seqs_of(&v["events"]));
        match v["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(v["has_more"], json!(true));
                path = format!("{first}{sep}cursor={}", enc(c));
            }
            None => {
                assert_eq!(v["has_more"], json!(false));
                return out;
            }
        }
    }
    panic!("paging did not end");
}
