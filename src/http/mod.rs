//! The HTTP service (actix-web) over the store: ingest through the writer,
//! reads through a pool of read-only connections run off the async executor,
//! errors as problem+json (see [`error`]). Must never run SQLite on an async
//! worker thread, nor send internal error text to a client.

pub mod error;
mod ingest;
mod openapi;
pub mod params;
mod read;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use crate::domain::Keyring;
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_batch: 1000,
            default_limit: 100,
            max_limit: 1000,
            max_offset: 10_000,
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
            shutdown_timeout: 30,
        }
    }
}

/// Shared by every worker.
pub struct AppState {
    pub writer: Writer,
    pub reads: ReadPool,
    pub db_path: PathBuf,
    pub keys: Keyring,
    pub limits: Limits,
    /// Prefix of every route (empty for none).
    pub base_path: String,
}

impl AppState {
    /// Runs `f` with a read-only connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.reads.clone();
        let span = tracing::Span::current();
        web::block(move || {
            let _enter = span.enter();
            let conn = pool.get().map_err(|e| StoreError::Pool(e.to_string()))?;
            f(&conn)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("read task: {e}")))?
        .map_err(ApiError::from)
    }

    /// `scheme://host` as the client addressed this server.
    pub fn public_origin(&self, req: &HttpRequest) -> String {
        let host = req
            .headers()
            .get(actix_web::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| req.app_config().host().to_owned());
        format!(
            "{}://{host}",
            req.app_config()
                .secure()
                .then_some("https")
                .unwrap_or("http")
        )
    }
}

pub fn read_pool(path: &std::path::Path, size: u32) -> Result<ReadPool, StoreError> {
    let manager = SqliteConnectionManager::file(path)
        .with_flags(
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .with_init(|c| crate::store::db::reader_pragmas(c));
    r2d2::Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(1))
        .build(manager)
        .map_err(|e| StoreError::Pool(e.to_string()))
}

/// Registers every route under `base_path`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/events", web::post().to(ingest::post_events))
        .route("/v1/events", web::get().to(read::list_events))
        .route("/v1/events/{id}", web::get().to(read::get_event))
        .route("/v1/summary", web::get().to(read::summary))
        .route("/v1/head", web::get().to(read::head))
        .route("/v1/verify", web::get().to(read::verify))
        .route("/v1/export", web::get().to(read::export_events))
        .route("/healthz", web::get().to(read::healthz))
        .route("/readyz", web::get().to(read::readyz))
        .route("/openapi.json", web::get().to(openapi::openapi_json))
        // The seed systems' routes, served by the same handlers.
        .route("/api/audit", web::get().to(read::list_events))
        .route("/api/audit/summary", web::get().to(read::summary))
        .route("/v1/audit", web::get().to(read::list_events))
        .route("/v1/audit/stats", web::get().to(read::summary))
        .route("/v1/audit/verify", web::get().to(read::verify))
        .route("/v1/audit/export", web::get().to(read::export_events));
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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl Application {
    pub fn build(config: ServeConfig) -> Result<Application, StartError> {
        let key = config.keys.signing_key(&config.db)?;
        let keys = Keyring::new(key.clone());
        let writer = Writer::start(&config.db, key, config.writer)?;
        let reads = read_pool(&config.db, config.read_pool_size)?;
        let listener = TcpListener::bind(&config.bind).map_err(|source| StartError::Bind {
            addr: config.bind.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.bind.clone(),
                source,
            })?
            .port();
        let state = web::Data::new(AppState {
            writer,
            reads,
            db_path: config.db.clone(),
            keys,
            limits: config.limits,
            base_path: String::new(),
        });
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(tracing_actix_web::TracingLogger::default())
                .app_data(app_state.clone())
                .configure(routes)
                .default_service(web::to(not_found))
        })
        .shutdown_timeout(config.shutdown_timeout)
        .listen(listener)
        .map_err(|source| StartError::Bind {
            addr: config.bind.clone(),
            source,
        })?;
        if config.workers > 0 {
            server = server.workers(config.workers);
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
        web::block(move || state.writer.shutdown()).await.ok();
        result
    }
}
