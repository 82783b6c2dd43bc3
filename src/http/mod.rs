//! The HTTP service (actix-web) over the store: ingest through the writer,
//! reads through a pool of read-only connections run off the async executor,
//! errors as problem+json (see [`error`]). Must never run SQLite on an async
//! worker thread, nor send internal error text to a client.

pub mod auth;
pub mod error;
mod ingest;
pub mod metrics;
mod openapi;
pub mod params;
pub mod proxy;
mod read;
pub mod readers;
mod schemas;
mod seed;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::Method;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use crate::config::{Cidr, Config, ConfigError, ProxyHeaders, Secret};
use crate::domain::{DropPolicy, EventMatch, EventType, Keyring, Level, NewEvent};
use crate::store::{KeySource, StoreError, Writer, WriterConfig};

use error::ApiError;

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub default_limit: usize,
    pub max_limit: usize,
    pub max_offset: usize,
    /// An export whose client takes nothing for this long is cut off.
    pub export_stall: std::time::Duration,
    /// A request body must have arrived whole within this (else 408).
    pub body_deadline: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_batch: 1000,
            default_limit: 100,
            max_limit: 1000,
            max_offset: 10_000,
            export_stall: read::EXPORT_STALL_LIMIT,
            body_deadline: std::time::Duration::from_secs(30),
        }
    }
}

/// Everything `trail serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: String,
    pub db: PathBuf,
    pub keys: KeySource,
    pub limits: Limits,
    pub writer: WriterConfig,
    pub read_pool_size: u32,
    /// actix workers; 0 means one per core.
    pub workers: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout: u64,
    /// `/readyz` answers 503 when the database's file system has less free
    /// space than this (appends would fail).
    pub ready_min_free_bytes: u64,
    pub trusted_proxies: Vec<Cidr>,
    pub proxy_headers: ProxyHeaders,
    /// Prefix of every route, such as `/audit` (empty for none).
    pub base_path: String,
    /// Events below this level are counted and dropped.
    pub min_level: Level,
    /// Event types that are counted and dropped.
    pub exclude_events: EventMatch,
    pub retention_days: Option<u32>,
    pub metrics_require_admin: bool,
    pub insecure_no_auth: bool,
    pub bootstrap_token: Option<Secret>,
}

impl ServeConfig {
    pub fn new(bind: impl Into<String>, db: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            bind: bind.into(),
            db: db.into(),
            keys: KeySource::default(),
            limits: Limits::default(),
            writer: WriterConfig::default(),
            read_pool_size: 16,
            workers: 0,
            // Inside `docker stop`'s 10 s before its SIGKILL, with room for
            // the writer's last commit, `server.stop` and the checkpoint:
            // appends finish in milliseconds; a client reading an export
            // slowly is cut off rather than holding the stop past the kill.
            shutdown_timeout: 5,
            ready_min_free_bytes: READY_MIN_FREE_BYTES,
            trusted_proxies: Vec::new(),
            proxy_headers: ProxyHeaders::default(),
            base_path: String::new(),
            min_level: Level::Debug,
            exclude_events: EventMatch::default(),
            retention_days: None,
            metrics_require_admin: false,
            insecure_no_auth: false,
            bootstrap_token: None,
        }
    }

    pub fn from_config(c: &Config) -> Result<ServeConfig, ConfigError> {
        let mut s = ServeConfig::new(c.bind.value.clone(), c.db.value.clone());
        s.keys = c.key_source();
        s.limits = Limits {
            max_body_bytes: c.max_body_bytes.value,
            max_batch: c.max_batch.value,
            ..Limits::default()
        };
        s.writer = WriterConfig {
            queue_depth: c.queue_depth.value,
            synchronous: c.synchronous.value,
            server_metadata: c.server_metadata(),
            ..WriterConfig::default()
        };
        s.workers = c.workers.value;
        s.trusted_proxies = c.trusted_proxies.value.clone();
        s.proxy_headers = c.proxy_headers.value;
        s.base_path = c.base_path.value.clone();
        s.min_level = c.min_level.value;
        s.exclude_events = c.exclude_events.value.clone();
        s.retention_days = c.retention_days.value;
        s.metrics_require_admin = c.metrics_require_admin.value;
        s.insecure_no_auth = c.insecure_no_auth.value;
        s.bootstrap_token = c.bootstrap_secret()?;
        Ok(s)
    }
}

/// Shared by every worker.
pub struct AppState {
    pub writer: Writer,
    pub reads: ReadPool,
    /// Threads for the short reads: see [`readers`].
    pub quick: readers::ReadThreads,
    pub db_path: PathBuf,
    pub keys: Keyring,
    pub limits: Limits,
    /// Prefix of every route (empty for none).
    pub base_path: String,
    pub trusted_proxies: Vec<Cidr>,
    pub proxy_headers: ProxyHeaders,
    /// `min_level` and `exclude_events`: what is dropped, not stored.
    pub drop_policy: DropPolicy,
    pub metrics_require_admin: bool,
    pub insecure_no_auth: bool,
    pub tokens: auth::TokenCache,
    pub writer_metrics: Arc<metrics::WriterMetrics>,
    pub started: std::time::Instant,
    pub ready_min_free_bytes: u64,
    /// The retention task's: see [`spawn_retention`].
    pub retention: RetentionGate,
}

/// The longest a shutdown waits for the retention task's prune to stop.
const RETENTION_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Lets a shutdown stop the retention task's prune between two batches and
/// wait for it, so that `server.stop` is the last event of a run, the stop
/// takes one batch, not a whole prune, and the prune's connection is closed
/// before the writer's last checkpoint.
#[derive(Default)]
pub struct RetentionGate {
    stop: std::sync::atomic::AtomicBool,
    /// Held while a prune runs.
    running: std::sync::Mutex<()>,
}

impl RetentionGate {
    /// Stops any prune at its next batch and keeps any from starting again;
    /// waits for it, at most [`RETENTION_STOP_WAIT`]: a prune still checking
    /// a long run of rows left below a cut by an interrupted one (seconds
    /// per million) is left to finish that check, after which it sees the
    /// flag and writes nothing, while the stop goes on.
    fn stop_and_wait(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let deadline = std::time::Instant::now() + RETENTION_STOP_WAIT;
        loop {
            match self.running.try_lock() {
                Ok(_) | Err(std::sync::TryLockError::Poisoned(_)) => return,
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!("retention: a prune is still checking rows; stopping without waiting for it (it writes nothing now)");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Free space below which `/readyz` says not ready: room for a group of
/// batches, its WAL frames and a checkpoint.
pub const READY_MIN_FREE_BYTES: u64 = 16 * 1024 * 1024;

/// Bytes an unprivileged process may still write on the file system that
/// holds `path` (its folder); `None` when that cannot be read.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path; statvfs fills `st` when it
    // returns 0, and `st` is read only then.
    let st = unsafe {
        if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
            return None;
        }
        st.assume_init()
    };
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

impl AppState {
    /// Runs `f` with a read-only connection on the read threads: for reads
    /// whose cost is bounded (a page, one event, the head).
    pub async fn read_quick<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let span = tracing::Span::current();
        self.quick
            .run(move |conn| {
                let _enter = span.enter();
                f(conn.map_err(StoreError::Pool)?)
            })
            .await
            .map_err(|e| ApiError::Internal(format!("read task: {e}")))?
            .map_err(ApiError::from)
    }

    /// Runs `f` with a read-only connection on the blocking pool: for reads
    /// that may take long (summaries over a period, readiness).
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.reads.clone();
        let span = tracing::Span::current();
        web::block(move || {
            let _enter = span.enter();
            let conn = long_read_conn(&pool)?;
            f(&conn)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("read task: {e}")))?
        .map_err(ApiError::from)
    }

    /// `scheme://host` as the client addressed this server (through a
    /// trusted proxy, as the proxy says).
    pub fn public_origin(&self, req: &HttpRequest) -> String {
        let client = auth::RequestContext::of(req)
            .map(|c| c.client)
            .unwrap_or_else(|| proxy::resolve(req, &self.trusted_proxies, self.proxy_headers));
        format!("{}://{}", client.scheme, client.host)
    }
}

/// Page cache of each connection of the pool for longer reads (summaries,
/// exports, verification, tokens), in KiB. Those read much of the file once,
/// so a big cache buys little, and each of up to `read_pool_size`
/// connections keeps its cache for life: with the readers' usual 32 MiB,
/// sixteen concurrent `period=all` summaries of a 1M-event file left the
/// server at about 950 MB resident; with 8 MiB, about 370 MB. The threads
/// that serve pages keep the usual cache (their p99 is the target).
pub const LONG_READ_CACHE_KIB: u32 = 8 * 1024;

/// How long a request waits for a read connection of the long-read pool
/// before it is answered 503 with `Retry-After`.
pub const READ_POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection of the long-read pool. Waiting in vain while every one is
/// checked out is [`StoreError::ReadersBusy`] (a 503: retry), not a failure.
pub fn long_read_conn(
    pool: &ReadPool,
) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, StoreError> {
    pool.get().map_err(|e| {
        let state = pool.state();
        if state.idle_connections == 0 && state.connections == pool.max_size() {
            StoreError::ReadersBusy
        } else {
            StoreError::Pool(e.to_string())
        }
    })
}

pub fn read_pool(
    path: &std::path::Path,
    size: u32,
    cache_kib: u32,
) -> Result<ReadPool, StoreError> {
    crate::store::db::sqlite_process_settings();
    // The path as a path: see `file_uri`.
    let manager = SqliteConnectionManager::file(crate::store::db::file_uri(path, "")?)
        .with_flags(
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .with_init(move |c| crate::store::db::reader_pragmas_with_cache(c, cache_kib));
    r2d2::Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(1))
        .connection_timeout(READ_POOL_WAIT)
        .build(manager)
        .map_err(|e| StoreError::Pool(e.to_string()))
}

/// One path and the methods it serves. Built once in [`table`], which both
/// [`routes`] (to register them) and [`route_table`] (to list them) read, so
/// the list cannot differ from what is served.
struct Route {
    path: &'static str,
    methods: Vec<Method>,
    resource: actix_web::Resource,
}

impl Route {
    fn new(path: &'static str) -> Route {
        Route {
            path,
            methods: Vec::new(),
            resource: web::resource(path),
        }
    }

    fn to<F, Args>(mut self, method: Method, handler: F) -> Route
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.resource = self
            .resource
            .route(web::route().method(method.clone()).to(handler));
        self.methods.push(method);
        self
    }

    /// GET, and HEAD with the same handler: actix routes HEAD only where it
    /// is registered, and actix-http sends HEAD responses without their
    /// body (keeping status and headers, `Content-Length` included).
    fn get<F, Args>(self, handler: F) -> Route
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.to(Method::GET, handler.clone())
            .to(Method::HEAD, handler)
    }

    /// Sorted, as sent in `Allow`.
    fn allowed(&self) -> Vec<Method> {
        let mut m = self.methods.clone();
        m.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        m
    }

    /// The resource, answering any other method with a 405 problem and
    /// `Allow` (actix's own 405 has an empty body, not problem+json).
    fn into_resource(self) -> actix_web::Resource {
        let allow = self
            .allowed()
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        self.resource
            .default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move { method_not_allowed(req, allow) }
            }))
    }
}

/// Every route. The seed systems' routes are served by the `/v1` handlers
/// through the thin wrappers of [`seed`], which carry their documentation.
fn table() -> Vec<Route> {
    vec![
        Route::new("/v1/events")
            .to(Method::POST, ingest::post_events)
            .get(read::list_events),
        Route::new("/v1/events/{id}").get(read::get_event),
        Route::new("/v1/summary").get(read::summary),
        Route::new("/v1/head").get(read::head),
        Route::new("/v1/verify").get(read::verify),
        Route::new("/v1/export").get(read::export_events),
        Route::new("/healthz").get(read::healthz),
        Route::new("/readyz").get(read::readyz),
        Route::new("/openapi.json").get(openapi::openapi_json),
        Route::new("/metrics").get(read::metrics),
        Route::new("/v1/tokens")
            .to(Method::POST, auth::create_token)
            .get(auth::list_tokens),
        Route::new("/v1/tokens/{name}").to(Method::DELETE, auth::revoke_token),
        Route::new("/api/audit").get(seed::api_audit),
        Route::new("/api/audit/summary").get(seed::api_audit_summary),
        Route::new("/v1/audit").get(seed::v1_audit),
        Route::new("/v1/audit/stats").get(seed::v1_audit_stats),
        Route::new("/v1/audit/verify").get(seed::v1_audit_verify),
        Route::new("/v1/audit/export").get(seed::v1_audit_export),
    ]
}

/// Registers every route under `base_path`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for route in table() {
        cfg.service(route.into_resource());
    }
}

/// Every path (relative to `base_path`, in the router's `{name}` syntax)
/// with the methods it serves, sorted: what [`routes`] registers.
pub fn route_table() -> Vec<(&'static str, Vec<Method>)> {
    table().into_iter().map(|r| (r.path, r.allowed())).collect()
}

/// The route pattern a path (without the base path) falls under, matched by
/// actix's own `ResourceDef` as the router matches it, and the methods it
/// serves. For the gate, which runs before routing: a refused request is
/// still counted under its route, and a method the route does not serve
/// gets its 405 without asking for a token.
pub(crate) fn route_of(path: &str) -> Option<(&'static str, &'static [Method])> {
    type Routes = Vec<(actix_web::dev::ResourceDef, &'static str, Vec<Method>)>;
    static ROUTES: std::sync::OnceLock<Routes> = std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        route_table()
            .into_iter()
            .map(|(pattern, methods)| (actix_web::dev::ResourceDef::new(pattern), pattern, methods))
            .collect()
    });
    routes
        .iter()
        .find(|(def, _, _)| def.is_match(path))
        .map(|(_, pattern, methods)| (*pattern, methods.as_slice()))
}

fn method_not_allowed(req: HttpRequest, allow: String) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        detail: format!(
            "{} is not allowed on {}; it serves {allow}",
            req.method(),
            req.path()
        ),
        allow,
    })
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route {} {}",
        req.method(),
        req.path()
    )))
}

/// A built server, bound and ready to run.
pub struct Application {
    server: Server,
    port: u16,
    state: web::Data<AppState>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the read threads: {0}")]
    Threads(#[source] std::io::Error),
}

impl Application {
    pub fn build(config: ServeConfig) -> Result<Application, StartError> {
        crate::store::db::check_target(&config.db)?;
        // Refusals first, so a refused start leaves no trace: no database,
        // no migration of an existing one, no `hmac.key`.
        let public = config
            .bind
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| !a.ip().is_loopback())
            && !config.insecure_no_auth;
        if public && config.bootstrap_token.is_none() && !any_active_token(&config.db)? {
            return Err(no_token_refusal(&config.bind, false));
        }
        let listener = TcpListener::bind(&config.bind).map_err(|source| StartError::Bind {
            addr: config.bind.clone(),
            source,
        })?;
        let key = config.keys.signing_key(&config.db)?;
        let mut keys = Keyring::new(key.clone());
        for p in &config.keys.verify_files {
            keys.add(crate::store::keys::read_key_file(p)?);
        }
        crate::store::keys::check_key_continues(&config.db, &key, &keys)?;
        let writer_metrics = Arc::new(metrics::WriterMetrics::default());
        metrics::handle();
        let writer = Writer::start_observed(
            &config.db,
            key,
            WriterConfig {
                verify_keys: keys.clone(),
                ..config.writer.clone()
            },
            writer_metrics.clone(),
        )?;
        let reads = read_pool(&config.db, config.read_pool_size, LONG_READ_CACHE_KIB)?;

        let mut bootstrap_revoked = false;
        if let Some(secret) = &config.bootstrap_token {
            bootstrap_revoked = bootstrap_token(&writer, &reads, secret)? == Bootstrap::Revoked;
        }
        if public {
            let conn = reads.get().map_err(|e| StoreError::Pool(e.to_string()))?;
            let active = crate::store::tokens::list(&conn)?
                .iter()
                .any(|t| t.revoked_at.is_none());
            if !active {
                return Err(no_token_refusal(&config.bind, bootstrap_revoked));
            }
        }

        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.bind.clone(),
                source,
            })?
            .port();
        let mut details = serde_json::Map::new();
        details.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        details.insert("commit".into(), env!("TRAIL_COMMIT").into());
        let bound = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        details.insert("bind".into(), bound.into());
        details.insert("pid".into(), std::process::id().into());
        if !config.base_path.is_empty() {
            details.insert("base_path".into(), config.base_path.clone().into());
        }
        if let Some(check) = check_head(&config.db, &keys)? {
            details.insert("head_check".into(), check);
        }
        let schema = {
            let conn = reads.get().map_err(|e| StoreError::Pool(e.to_string()))?;
            crate::store::db::schema_differences(&conn)?
        };
        if !schema.is_empty() {
            tracing::error!(
                differences = ?schema,
                "the database's schema is not the one trail's migrations make: someone changed \
                 its views, triggers or indexes; the chain is unaffected, queries may not be"
            );
            details.insert("schema_differences".into(), schema.into());
        }
        writer.append(vec![self_event("server.start", details)])?;

        // The read threads keep their connections for life: a pool of their
        // own, so `read_pool_size` stays whole for the longer reads.
        let n_quick = read_threads(&config);
        let quick_pool = read_pool(
            &config.db,
            n_quick as u32,
            crate::store::db::READER_CACHE_KIB,
        )?;
        let quick =
            readers::ReadThreads::start(quick_pool, n_quick).map_err(StartError::Threads)?;
        let state = web::Data::new(AppState {
            writer,
            reads,
            quick,
            db_path: config.db.clone(),
            keys,
            limits: config.limits,
            base_path: config.base_path.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            proxy_headers: config.proxy_headers,
            drop_policy: DropPolicy {
                min_level: config.min_level,
                exclude_events: config.exclude_events.clone(),
            },
            metrics_require_admin: config.metrics_require_admin,
            insecure_no_auth: config.insecure_no_auth,
            tokens: auth::TokenCache::default(),
            writer_metrics,
            started: std::time::Instant::now(),
            ready_min_free_bytes: config.ready_min_free_bytes,
            retention: RetentionGate::default(),
        });
        let app_state = state.clone();
        let base = config.base_path.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .service(web::scope(&base).configure(routes))
                .default_service(web::to(not_found))
                .wrap(actix_web::middleware::from_fn(auth::gate))
        })
        .shutdown_timeout(config.shutdown_timeout)
        // Signals are trail's to handle (the binary: SIGTERM and SIGINT
        // both stop gracefully); actix's own handling would cut in-flight
        // requests off on SIGINT.
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartError::Bind {
            addr: config.bind.clone(),
            source,
        })?;
        if config.workers > 0 {
            server = server.workers(config.workers);
        }
        if let Some(days) = config.retention_days {
            spawn_retention(state.clone(), days, config.writer.synchronous);
        }
        Ok(Application {
            server: server.run(),
            port,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone().into_inner()
    }

    /// Serves until SIGTERM/SIGINT (or the handle's `stop`), lets in-flight
    /// requests finish, then commits every queued append before returning.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let state = self.state.clone();
        web::block(move || {
            state.retention.stop_and_wait();
            // The last event of the run: written after every in-flight
            // request and any prune has finished, before the writer stops.
            let mut details = serde_json::Map::new();
            details.insert(
                "uptime_seconds".into(),
                state.started.elapsed().as_secs().into(),
            );
            details.insert(
                "events_appended".into(),
                state
                    .writer_metrics
                    .appended
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .into(),
            );
            if let Err(e) = state
                .writer
                .append(vec![self_event("server.stop", details)])
            {
                tracing::error!(error = %e, "server.stop could not be recorded");
            }
            state.writer.shutdown();
        })
        .await
        .ok();
        result
    }
}

/// An event trail writes about itself.
fn self_event(kind: &str, details: serde_json::Map<String, serde_json::Value>) -> NewEvent {
    let ev = NewEvent::builder(EventType::parse(kind).expect("valid type")).with_success(true);
    let ev = ev.clone().with_actor("trail").unwrap_or(ev);
    ev.clone().with_details(details).unwrap_or(ev)
}

/// Creates the bootstrap admin token unless a token with that secret exists.
fn no_token_refusal(bind: &str, bootstrap_revoked: bool) -> StartError {
    let why = if bootstrap_revoked {
        "the bootstrap token given to this server was revoked and no other API token is active: \
         create one (trail token create NAME --scope admin), set a new TRAIL_BOOTSTRAP_TOKEN, or pass --insecure-no-auth"
    } else {
        "create one (trail token create NAME --scope admin), set TRAIL_BOOTSTRAP_TOKEN, or pass --insecure-no-auth"
    };
    StartError::Refused(format!(
        "refusing to listen on {bind} with no API token: {why}"
    ))
}

/// Whether the file holds an active API token, read without creating or
/// migrating anything (a missing file, or one made before tokens existed,
/// holds none).
fn any_active_token(path: &std::path::Path) -> Result<bool, StoreError> {
    if !path.exists() {
        return Ok(false);
    }
    let conn = crate::store::open_read(path)?;
    let has_table: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'api_tokens'",
            [],
            |r| r.get(0),
        )
        .map_err(StoreError::sqlite("looking for the token table"))?;
    if has_table == 0 {
        return Ok(false);
    }
    Ok(crate::store::tokens::list(&conn)?
        .iter()
        .any(|t| t.revoked_at.is_none()))
}

#[derive(Debug, PartialEq, Eq)]
enum Bootstrap {
    /// The secret's token exists and is active.
    Active,
    /// The secret's token was revoked; it stays revoked.
    Revoked,
    /// A new admin token was created for it.
    Created,
}

/// Makes the bootstrap secret an admin token. A new secret replaces the
/// previous bootstrap tokens: rotating a leaked secret through the
/// environment must stop the old one from working. Which tokens came from a
/// bootstrap secret is read from the chain (`auth.token.create` by
/// `bootstrap`). Every change is an audit event.
fn bootstrap_token(
    writer: &Writer,
    reads: &ReadPool,
    secret: &Secret,
) -> Result<Bootstrap, StartError> {
    use crate::store::tokens::{self, By, Scope};
    let conn = reads.get().map_err(|e| StoreError::Pool(e.to_string()))?;
    let existing = tokens::list(&conn)?;
    let hash = tokens::hash_secret(secret.expose());
    if let Some(t) = existing.iter().find(|t| t.secret_hash == hash) {
        if t.revoked_at.is_none() && !t.allows(Scope::Admin) {
            // It would be neither made admin nor told apart from that token.
            return Err(StartError::Refused(format!(
                "the bootstrap secret is the secret of token {:?}, which lacks the admin scope: choose another secret",
                t.name
            )));
        }
        if t.revoked_at.is_some() {
            tracing::warn!(
                token = %t.name,
                "the bootstrap token given to this server was revoked; it stays revoked"
            );
            return Ok(Bootstrap::Revoked);
        }
        return Ok(Bootstrap::Active);
    }
    let mut stmt = conn
        .prepare(
            "SELECT DISTINCT json_extract(entry, '$.details.token') FROM events \
             WHERE event = 'auth.token.create' AND actor = 'bootstrap'",
        )
        .map_err(StoreError::sqlite("finding bootstrap tokens"))?;
    let earlier: Vec<String> = stmt
        .query_map([], |r| r.get::<_, Option<String>>(0))
        .and_then(|rows| rows.filter_map(|r| r.transpose()).collect())
        .map_err(StoreError::sqlite("finding bootstrap tokens"))?;
    let name = (1..)
        .map(|n| {
            if n == 1 {
                "bootstrap".to_owned()
            } else {
                format!("bootstrap-{n}")
            }
        })
        .find(|n| !existing.iter().any(|t| &t.name == n))
        .expect("a free name");
    tokens::create_audited(
        writer,
        &name,
        &[Scope::Admin],
        secret.expose(),
        By::named("bootstrap"),
    )?;
    for old in existing
        .iter()
        .filter(|t| t.revoked_at.is_none() && earlier.contains(&t.name))
    {
        if tokens::revoke_audited(writer, &old.name, By::named("bootstrap"))? {
            tracing::warn!(
                revoked = %old.name,
                created = %name,
                "a new bootstrap secret: the previous bootstrap token is revoked"
            );
        }
    }
    Ok(Bootstrap::Created)
}

/// Checks the newest event (its hash, its link, its seal) before the first
/// new one is chained after it: `{"seq", "valid", "kind"}` for
/// `server.start`, `None` for an empty log. A head that does not verify is
/// logged as an error and recorded, and the server starts anyway: refusing
/// would lose the events still to come, and the bad row stays detectable
/// by `verify` at its own `seq` whatever is chained after it.
fn check_head(
    db: &std::path::Path,
    keys: &Keyring,
) -> Result<Option<serde_json::Value>, StartError> {
    let Some(report) = crate::store::verify::check_newest(db, keys)? else {
        return Ok(None);
    };
    let kind = report.kind.map(|k| k.as_str());
    if let (Some(seq), Some(kind)) = (report.first_bad_seq, kind) {
        tracing::error!(
            seq,
            kind,
            db = %db.display(),
            "the newest event does not verify; new events are chained after it, and `trail verify` \
             reports it: find out who changed the file before trusting it"
        );
    }
    Ok(Some(serde_json::json!({
        "seq": report.first_bad_seq.unwrap_or(report.head.seq),
        "valid": report.valid,
        "kind": kind,
    })))
}

/// One read thread per actix worker (per core by default).
fn read_threads(config: &ServeConfig) -> usize {
    match config.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
    .clamp(1, 64)
}

/// Prunes events older than `days`, at start and then every hour, on a
/// write connection of its own: each delete batch is a short transaction, so
/// the writer's appends interleave with it (as with `trail prune` from a CLI
/// beside the server).
fn spawn_retention(state: web::Data<AppState>, days: u32, sync: crate::store::Synchronous) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let st = state.clone();
            let before = chrono::Utc::now() - chrono::Duration::days(days as i64);
            let done = web::block(move || {
                // Declared first, so released last: after the connection
                // below is closed.
                let _running = st
                    .retention
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if st.retention.stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(None);
                }
                // Only while the writer may write the file (not with its
                // -wal or -shm deleted or replaced, say): asked of it.
                st.writer.exec(|_| ())?;
                let key = st
                    .keys
                    .signing()
                    .cloned()
                    .ok_or(StoreError::Key("no signing key".into()))?;
                let mut conn = crate::store::open_write(&st.db_path, sync)?;
                crate::store::retention::prune_until(
                    &mut conn,
                    &st.db_path,
                    &key,
                    &st.keys,
                    before,
                    10_000,
                    &st.retention.stop,
                )
                .map(Some)
            })
            .await;
            match done {
                Ok(Ok(None)) => return,
                Ok(Ok(Some(report))) => {
                    if let Some(seq) = report.event_seq {
                        state.writer_metrics.appended_outside(1, seq);
                    }
                    tracing::info!(
                        days,
                        up_to_seq = report.up_to_seq,
                        deleted = report.deleted,
                        event_seq = report.event_seq,
                        "retention"
                    );
                }
                Ok(Err(e @ StoreError::PruneRefused { .. })) => {
                    // Kept for the operator and the auditors: nothing of it
                    // is deleted until the damage is looked at.
                    ::metrics::counter!("trail_retention_refusals_total").increment(1);
                    tracing::error!(error = %e, "retention refused: the events to prune do not verify");
                }
                Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
                Err(e) => tracing::error!(error = %e, "retention task failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::route_of;

    fn route_pattern(path: &str) -> Option<&'static str> {
        route_of(path).map(|(p, _)| p)
    }

    #[test]
    fn paths_fall_under_the_route_patterns_actix_would_match() {
        assert_eq!(route_pattern("/v1/events"), Some("/v1/events"));
        assert_eq!(route_pattern("/v1/events/42"), Some("/v1/events/{id}"));
        assert_eq!(
            route_pattern("/v1/tokens/ci-bot"),
            Some("/v1/tokens/{name}")
        );
        assert_eq!(route_pattern("/healthz"), Some("/healthz"));
        assert_eq!(route_pattern("/v1/events/"), None, "an empty segment");
        assert_eq!(route_pattern("/v1/events/1/2"), None);
        assert_eq!(route_pattern("/v1/event"), None);
        assert_eq!(route_pattern("/"), None);
        assert_eq!(route_pattern(""), None);
        let (_, methods) = route_of("/v1/tokens/x").unwrap();
        assert_eq!(methods, [actix_web::http::Method::DELETE]);
    }
}
