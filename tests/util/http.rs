//! The HTTP side shared by the `api` and `operations` binaries: one client
//! (pooled connections that never outlive the server's keep-alive), one
//! [`send`] that reads a whole response into a [`Resp`], and the in-process
//! server started on a free port and waited for (bounded) until `/healthz`
//! answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use awc::http::header::HeaderMap;
use bytes::Bytes;
use serde_json::Value;
use trail::http::{AppState, ServeConfig};

/// Generous bound for one request, so a hung server fails the test instead
/// of blocking it forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One whole response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// `METHOD URI` of the request, for messages.
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

    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default()
    }

    /// The body as text; panics unless it is UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("UTF-8 body")
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text_lossy(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): status {} body {:?}",
                self.what,
                self.status,
                self.text_lossy()
            )
        })
    }

    /// Panics, showing the body, unless the status is `status`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "{}: unexpected status; body: {}",
            self.what,
            self.text_lossy()
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
        what,
        status,
        headers,
        body,
    }
}

/// An in-process server started by [`start_app`].
pub struct Started {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub port: u16,
    pub handle: ServerHandle,
    pub state: Arc<AppState>,
    /// The task running `run_until_stopped`.
    pub join: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Builds and runs `cfg` on the current actix runtime; waits (bounded)
/// until `{base_path}/healthz` answers 200 to `client`.
pub async fn start_app(cfg: ServeConfig, client: &awc::Client) -> Started {
    let base_path = cfg.base_path.clone();
    let app = trail::http::Application::build(cfg)
        .unwrap_or_else(|e| panic!("the application does not build: {e}"));
    let port = app.port();
    let handle = app.handle();
    let state = app.state();
    let join = actix_rt::spawn(app.run_until_stopped());
    let base = format!("http://127.0.0.1:{port}");
    let health = format!("{base}{base_path}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.get(&health).send().await {
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
    Started {
        base,
        port,
        handle,
        state,
        join,
    }
}

/// Stops the server behind `handle` gracefully and waits (bounded) for it.
pub async fn stop_server(handle: &ServerHandle) {
    actix_rt::time::timeout(Duration::from_secs(30), handle.stop(true))
        .await
        .expect("the server stops within 30 s");
}
