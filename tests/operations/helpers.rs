//! Shared helpers: an in-process server on a free port over a fresh database,
//! a small HTTP client that reads whole responses, direct (read-only) access
//! to the database file, the `trail` binary with deadlines, and bounded
//! polling. Nothing here sleeps hoping for timing: every wait polls a
//! condition until a deadline.

#![allow(dead_code)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use awc::http::header::HeaderMap;
use awc::http::Method;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use trail::http::{AppState, ServeConfig};
use trail::store::tokens::{self, Scope};

pub const BIN: &str = env!("CARGO_BIN_EXE_trail");

/// Bound for one HTTP request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for one short CLI command.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// One whole response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub what: String,
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): status {} body {:?}",
                self.what,
                self.status,
                self.text()
            )
        })
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "{}: unexpected status; body: {}",
            self.what,
            self.text()
        );
        self
    }
}

/// A client whose idle pooled connections are dropped well before the
/// server's keep-alive closes them (avoids a client-side reuse race).
pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connector(
            awc::Connector::new()
                .limit(64)
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
        .limit(1 << 30)
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
    Resp {
        what,
        status,
        headers,
        body,
    }
}

/// A request under construction: method, path, bearer token, headers, body.
pub struct Req<'a> {
    pub method: Method,
    pub path: String,
    pub token: Option<&'a str>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl<'a> Req<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Req<'a> {
        Req {
            method,
            path: path.into(),
            token: None,
            headers: Vec::new(),
            body: None,
        }
    }
    pub fn get(path: impl Into<String>) -> Req<'a> {
        Req::new(Method::GET, path)
    }
    pub fn post(path: impl Into<String>, body: Value) -> Req<'a> {
        let mut r = Req::new(Method::POST, path);
        r.body = Some(body);
        r
    }
    pub fn token(mut self, t: &'a str) -> Req<'a> {
        self.token = Some(t);
        self
    }
    pub fn maybe_token(mut self, t: Option<&'a str>) -> Req<'a> {
        self.token = t;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Req<'a> {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn headers(mut self, hs: &[(&str, &str)]) -> Req<'a> {
        for (k, v) in hs {
            self.headers.push(((*k).to_owned(), (*v).to_owned()));
        }
        self
    }
}

/// A running in-process server.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub port: u16,
    pub db_path: PathBuf,
    pub state: Arc<AppState>,
    pub handle: ServerHandle,
    pub join: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub client: awc::Client,
    pub dir: Arc<tempfile::TempDir>,
}

pub fn temp_dir() -> Arc<tempfile::TempDir> {
    Arc::new(
        tempfile::Builder::new()
            .prefix("trail-ops-")
            .tempdir()
            .expect("temp dir"),
    )
}

/// A configuration on `127.0.0.1:0` over `trail.db` in `dir`, with 2
/// workers and a short shutdown timeout.
pub fn config_in(dir: &Path) -> ServeConfig {
    let mut cfg = ServeConfig::new("127.0.0.1:0", dir.join("trail.db"));
    cfg.workers = 2;
    cfg.read_pool_size = 4;
    cfg.shutdown_timeout = 5;
    cfg
}

/// Starts a server over a new temporary folder after `tweak` changes its
/// configuration.
pub async fn start(tweak: impl FnOnce(&mut ServeConfig)) -> Server {
    start_in(temp_dir(), tweak).await
}

/// Starts a server over `dir/trail.db` after `tweak`.
pub async fn start_in(dir: Arc<tempfile::TempDir>, tweak: impl FnOnce(&mut ServeConfig)) -> Server {
    let mut cfg = config_in(dir.path());
    tweak(&mut cfg);
    run(dir, cfg).await
}

/// Builds and runs `cfg`; waits (bounded) until `/healthz` answers.
pub async fn run(dir: Arc<tempfile::TempDir>, cfg: ServeConfig) -> Server {
    let db_path = cfg.db.clone();
    let base_path = cfg.base_path.clone();
    let app = trail::http::Application::build(cfg).unwrap_or_else(|e| panic!("build: {e}"));
    let port = app.port();
    let state = app.state();
    let handle = app.handle();
    let join = actix_rt::spawn(app.run_until_stopped());
    let s = Server {
        base: format!("http://127.0.0.1:{port}"),
        port,
        db_path,
        state,
        handle,
        join: Some(join),
        client: client(),
        dir,
    };
    let health = s.url(&format!("{base_path}/healthz"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match s.client.get(&health).send().await {
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
    s
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn call(&self, r: Req<'_>) -> Resp {
        let mut req = self.client.request(r.method.clone(), self.url(&r.path));
        if let Some(t) = r.token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        let has_ct = r
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        for (k, v) in &r.headers {
            req = req.append_header((k.as_str(), v.as_str()));
        }
        let body = r.body.map(|b| serde_json::to_vec(&b).unwrap());
        if body.is_some() && !has_ct {
            req = req.insert_header(("content-type", "application/json"));
        }
        send(req, body).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Req::get(path)).await
    }

    /// `POST /v1/events` (under no base path) with `body`.
    pub async fn post_event(&self, body: Value, token: Option<&str>) -> Resp {
        self.call(Req::post("/v1/events", body).maybe_token(token))
            .await
    }

    /// Creates a token in-process (as the CLI would) and makes the server
    /// see it at once; returns its secret.
    pub fn create_token(&self, name: &str, scopes: &[Scope]) -> String {
        let secret = tokens::generate_secret();
        tokens::create_audited(&self.state.writer, name, scopes, &secret, "test")
            .unwrap_or_else(|e| panic!("create token {name}: {e}"));
        self.state.tokens.invalidate();
        secret
    }

    pub fn revoke_token(&self, name: &str) {
        assert!(
            tokens::revoke_audited(&self.state.writer, name, "test").expect("revoke"),
            "token {name} was active"
        );
        self.state.tokens.invalidate();
    }

    pub fn db(&self) -> Db {
        Db(self.db_path.clone(), Some(self.dir.clone()))
    }

    /// Stops the server and waits (bounded) until `run_until_stopped` has
    /// returned (its `server.stop` recorded and the writer shut down).
    pub async fn stop(mut self) {
        actix_rt::time::timeout(Duration::from_secs(30), self.handle.stop(true))
            .await
            .expect("the server stops within 30 s");
        if let Some(j) = self.join.take() {
            actix_rt::time::timeout(Duration::from_secs(30), j)
                .await
                .expect("run_until_stopped returns within 30 s")
                .expect("the server task did not panic")
                .expect("the server ran without an I/O error");
        }
    }
}

/// The database file, read directly (keeps its temporary folder alive).
#[derive(Clone)]
pub struct Db(pub PathBuf, pub Option<Arc<tempfile::TempDir>>);

impl Db {
    pub fn conn(&self) -> Connection {
        Connection::open_with_flags(
            &self.0,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open the database read-only")
    }

    pub fn count(&self) -> u64 {
        self.conn()
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }

    /// Every event's `entry` as JSON, by seq.
    pub fn events(&self) -> Vec<Value> {
        let c = self.conn();
        let mut st = c.prepare("SELECT entry FROM events ORDER BY seq").unwrap();
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|e| serde_json::from_str(&e.unwrap()).expect("entry is JSON"))
            .collect();
        rows
    }

    /// The events of this type, by seq.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// The events recorded with this `request_id`.
    pub fn by_request_id(&self, rid: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["request_id"] == rid)
            .collect()
    }

    pub fn by_id(&self, id: &str) -> Option<Value> {
        self.events().into_iter().find(|e| e["id"] == id)
    }

    pub fn last(&self) -> Value {
        self.events().pop().expect("at least one event")
    }

    /// Panics if `needle` occurs anywhere in the raw bytes of the database
    /// file or its WAL (or rollback journal).
    #[track_caller]
    pub fn assert_absent(&self, needle: &str, what: &str) {
        assert!(!needle.is_empty());
        let mut checked = 0;
        for suffix in ["", "-wal", "-journal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", self.0.display()));
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            checked += 1;
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{what} ({needle:?}) occurs in the raw bytes of {}",
                p.display()
            );
        }
        assert!(checked >= 1, "no database file at {}", self.0.display());
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `limit`.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The outcome of one `trail` process.
#[derive(Debug)]
pub struct Out {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code of `{}`\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim_end()).unwrap_or_else(|e| {
            panic!(
                "stdout of `{}` is not one JSON document ({e}):\n{}\nstderr: {}",
                self.what, self.stdout, self.stderr
            )
        })
    }
}

/// A `trail` command with an empty environment (no inherited `TRAIL_*`).
pub fn trail_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env_clear().env("TRAIL_LOG", "error");
    c
}

/// Runs `cmd` to the end, killing it after `COMMAND_DEADLINE`.
pub fn run_cmd(cmd: Command) -> Out {
    run_cmd_within(cmd, COMMAND_DEADLINE)
}

/// Runs `cmd` to the end, killing it (and failing) after `limit`.
pub fn run_cmd_within(mut cmd: Command, limit: Duration) -> Out {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        what,
        code: status.code(),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// `trail --db DB args...`
pub fn trail(db: &Path, args: &[&str]) -> Out {
    let mut all = vec!["--db", db.to_str().unwrap()];
    all.extend_from_slice(args);
    run_cmd(trail_cmd(&all))
}

/// Runs a blocking closure off the test's single-threaded runtime, so a
/// CLI command does not stall the in-process server's client side.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// Prometheus text: the sum of every sample of `name` whose labels include
/// each of `labels` (`key="value"` strings).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some((l, v)) = r.split_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // another metric whose name starts with `name`
        };
        if labels.iter().all(|l| label_part.contains(l)) {
            if let Some(v) = value.split_whitespace().next() {
                sum += v.parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    sum
}

/// A unique string for request ids and names.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
