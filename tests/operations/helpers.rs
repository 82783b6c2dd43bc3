//! The operations binary's own helpers: an in-process server (tokens,
//! shutdown) over a fresh database, requests with bearer tokens, bounded
//! polling, and Prometheus text. The HTTP client, whole responses, the
//! database read directly and the `trail` binary with deadlines come from
//! the shared `tests/util` and are re-exported here. Nothing here sleeps
//! hoping for timing: every wait polls a condition until a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use awc::http::Method;
use serde_json::Value;
use trail::http::{AppState, ServeConfig};
use trail::store::tokens::{self, Scope};

pub use crate::util::http::{client, send, Resp};
use crate::util::http::{start_app, stop_server};
pub use crate::util::{run_cmd, run_cmd_within, trail_cmd, Db, Out};

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
    Arc::new(crate::util::temp_dir("trail-ops-"))
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
    let client = client();
    let app = start_app(cfg, &client).await;
    Server {
        base: app.base,
        port: app.port,
        db_path,
        state: app.state,
        handle: app.handle,
        join: Some(app.join),
        client,
        dir,
    }
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
        tokens::create_audited(
            &self.state.writer,
            name,
            scopes,
            &secret,
            tokens::By::named("test"),
        )
        .unwrap_or_else(|e| panic!("create token {name}: {e}"));
        self.state.tokens.invalidate();
        secret
    }

    pub fn revoke_token(&self, name: &str) {
        assert!(
            tokens::revoke_audited(&self.state.writer, name, tokens::By::named("test"))
                .expect("revoke"),
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
        stop_server(&self.handle).await;
        if let Some(j) = self.join.take() {
            actix_rt::time::timeout(Duration::from_secs(30), j)
                .await
                .expect("run_until_stopped returns within 30 s")
                .expect("the server task did not panic")
                .expect("the server ran without an I/O error");
        }
    }
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
