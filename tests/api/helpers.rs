//! One `spawn_app()` that starts the real actix-web service on a free port
//! over a fresh database in a temporary folder, and small client helpers:
//! every request goes over real HTTP with `awc`, every response is read whole
//! into a [`Resp`], and the database file is read directly with rusqlite
//! (read-only) to check what was really stored.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use awc::http::header::HeaderMap;
use awc::http::Method;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

/// Generous bound for one request, so a hung server fails the test instead
/// of blocking it forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

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

/// One whole response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    }

    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("UTF-8 body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): status {} body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Panics, showing the body, unless the status is `status`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// A 200/201 `application/json` response, as JSON.
    #[track_caller]
    pub fn ok_json(&self, status: u16) -> Value {
        self.expect(status);
        assert_eq!(self.content_type(), "application/json", "content type");
        self.json()
    }

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

/// A client whose pooled connections are dropped after 1 s idle, well
/// before the server's 5 s keep-alive closes them: reusing a connection the
/// server is closing at that moment fails with "connector has been
/// disconnected", a race of the client's, not a server failure.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connector(
            awc::Connector::new()
                .limit(256)
                .conn_keep_alive(Duration::from_secs(1)),
        )
        .finish()
}

/// Sends `req` (with `body` when given) and reads the whole response.
pub async fn send(req: awc::ClientRequest, body: Option<Vec<u8>>) -> Resp {
    let what = format!("{} {}", req.get_method(), req.get_uri());
    let sent = match body {
        Some(b) => req.send_body(b).await,
        None => req.send().await,
    };
    let mut res = sent.unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res
        .body()
        .limit(1 << 31)
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
    Resp {
        status,
        headers,
        body,
    }
}

/// Starts the service on `127.0.0.1:0` over `trail.db` in a new temporary
/// folder, with the default limits.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Same as [`spawn_app`], after letting `tweak` change the configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut trail::http::ServeConfig)) -> TestApp {
    let dir = tempfile::Builder::new()
        .prefix("trail-api-")
        .tempdir()
        .expect("temp dir");
    let db_path = dir.path().join("trail.db");
    let mut cfg = trail::http::ServeConfig::new("127.0.0.1:0", db_path.clone());
    cfg.workers = 2;
    cfg.shutdown_timeout = 5;
    tweak(&mut cfg);
    let app = trail::http::Application::build(cfg).expect("the application builds");
    let port = app.port();
    let handle = app.handle();
    let state = app.state();
    actix_rt::spawn(app.run_until_stopped());
    let t = TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        db_path,
        handle,
        client: client(),
        dir,
        state,
        start_rows: 0,
    };
    // Bounded wait until the server answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match t.client.get(t.url("/healthz")).send().await {
            Ok(r) if r.status().as_u16() == 200 => break,
            _ if Instant::now() < deadline => {
                actix_rt::time::sleep(Duration::from_millis(10)).await
            }
            other => panic!(
                "the server did not come up: {:?}",
                other.map(|r| r.status())
            ),
        }
    }
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

    /// A read-only connection to the database file.
    pub fn sql(&self) -> Connection {
        Connection::open_with_flags(
            &self.db_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open the database read-only")
    }

    /// Every row in the file.
    pub fn total(&self) -> u64 {
        self.sql()
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
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
        actix_rt::time::timeout(Duration::from_secs(30), self.handle.stop(true))
            .await
            .expect("the server stops within 30 s");
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
