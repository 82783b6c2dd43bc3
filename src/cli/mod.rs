//! The command line: argument parsing and dispatch. Every command works on
//! the database file directly; read commands open it read-only and work while
//! a server (or another CLI) writes to it.
//!
//! Exit codes: 0 ok, 1 verification failed, 2 usage or input error,
//! 3 the database or the file system failed.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Layers, LogFormat};
use crate::domain::event::format_timestamp;
use crate::domain::{Anchor, Filter, FilterInput, InputError, NewEvent};
use crate::store::export::{export, Format};
use crate::store::query::{self, for_each_match, Order, PageRequest, StoredEvent};
use crate::store::{
    open_read, verify_file, KeySource, StopCheckpoint, StoreError, VerifyRequest, Writer,
    WriterConfig,
};

/// `println!` that ends quietly when standard output's reader has gone
/// (`| head`): that is not the command's failure, and `println!` would
/// panic. Evaluates to `Result<(), CliError>`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).or_else($crate::cli::ignore_broken_pipe)
    }};
}

mod ops;
mod table;

pub use crate::config::DEFAULT_DB;

#[derive(Parser, Debug)]
#[command(
    name = "trail",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TRAIL_COMMIT"), ")"),
    about = "Tamper-evident audit log: SQLite, a SHA-256 chain, HMAC seals"
)]
pub struct Cli {
    /// A TOML configuration file (also TRAIL_CONFIG). Settings: defaults <
    /// this file < TRAIL_* environment variables < flags.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The database file (TRAIL_DB; default ./trail-data/trail.db).
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// File holding the HMAC key as 64 hex digits (TRAIL_HMAC_KEY_FILE;
    /// default: hmac.key beside the database; TRAIL_HMAC_KEY gives the key itself).
    #[arg(long, global = true)]
    pub hmac_key_file: Option<PathBuf>,
    /// fsync policy for appends (TRAIL_SYNCHRONOUS): full (default) or normal
    /// (faster; may lose the last transactions on power loss).
    #[arg(long, global = true)]
    pub synchronous: Option<String>,
    /// Earlier key files, comma-separated, that verification (trail verify,
    /// backup, prune, /v1/verify) and retention also accept, picked by key id
    /// (TRAIL_VERIFY_KEY_FILES).
    #[arg(long, global = true)]
    pub verify_key_files: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service on the database file.
    Serve(ServeArgs),
    /// Print the effective configuration, each setting with where it came from (secrets redacted).
    Config {
        /// One JSON object: each setting's value and source.
        #[arg(long)]
        json: bool,
    },
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Exit 0 when the server on this machine answers /readyz (container HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
    /// Append one event and print its seq, id and chain hash.
    Append(AppendArgs),
    /// Append JSON Lines (one event per line) in all-or-nothing batches.
    Import(ImportArgs),
    /// The newest events matching the filters, newest first.
    Show(ShowArgs),
    /// The newest N events, oldest of them first; --follow keeps printing new ones.
    Tail(TailArgs),
    /// Every event matching the filters, oldest first.
    Search(SearchArgs),
    /// Totals by type, level and actor over a period, and the chain status.
    Summary(SummaryArgs),
    /// The same as summary (the name the old tool used).
    Stats(SummaryArgs),
    /// Check the chain: intact, or the first bad row and what is wrong with it.
    Verify(VerifyArgs),
    /// Stream matching events to CSV, JSON or JSON Lines.
    Export(ExportArgs),
    /// Export everything as CSV (alias of export --format csv --output F).
    #[command(name = "export-csv")]
    ExportCsv {
        /// The file to write (`-`: standard output).
        file: PathBuf,
    },
    /// Export everything as JSON (alias of export --format json --output F).
    #[command(name = "export-json")]
    ExportJson {
        /// The file to write (`-`: standard output).
        file: PathBuf,
    },
    /// Retention: record a sealed cut, delete the events before it, log the prune.
    Prune(ops::PruneArgs),
    /// Copy the database while it is in use, then verify the copy.
    Backup(ops::BackupArgs),
}

#[derive(Args, Debug, Default, Clone)]
pub struct FilterArgs {
    /// Event type: exact, a comma-separated list, or a prefix such as auth.*
    #[arg(long, visible_alias = "type")]
    pub event: Option<String>,
    /// Minimum level: debug, info, warning, error, critical.
    #[arg(long)]
    pub level: Option<String>,
    /// Only events of this actor (exact).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only events on this resource (exact).
    #[arg(long)]
    pub resource: Option<String>,
    /// Only successes (true) or failures (false).
    #[arg(long)]
    pub success: Option<String>,
    /// Stored from this time on (RFC 3339 or YYYY-MM-DD): the time trail
    /// stored the event, not its occurred_at.
    #[arg(long, visible_alias = "start")]
    pub since: Option<String>,
    /// Stored up to this time (RFC 3339, inclusive, or YYYY-MM-DD, the whole day).
    #[arg(long, visible_alias = "end")]
    pub until: Option<String>,
}

impl FilterArgs {
    fn parse(&self) -> Result<Filter, InputError> {
        Filter::parse(&FilterInput {
            event: self.event.as_deref(),
            level: self.level.as_deref(),
            actor: self.actor.as_deref(),
            resource: self.resource.as_deref(),
            success: self.success.as_deref(),
            since: self.since.as_deref(),
            until: self.until.as_deref(),
        })
    }
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on (TRAIL_BIND; default 127.0.0.1:8080).
    #[arg(long)]
    pub bind: Option<String>,
    /// Largest request body in bytes (TRAIL_MAX_BODY_BYTES; default 1 MiB).
    #[arg(long)]
    pub max_body_bytes: Option<String>,
    /// Most events in one POST (TRAIL_MAX_BATCH; default 1000).
    #[arg(long)]
    pub max_batch: Option<String>,
    /// Append jobs that may wait before POSTs get 503 (TRAIL_QUEUE_DEPTH; default 4096).
    #[arg(long)]
    pub queue_depth: Option<String>,
    /// HTTP worker threads (TRAIL_WORKERS; default one per core).
    #[arg(long)]
    pub workers: Option<String>,
    /// Delete events older than this many days, checked hourly (TRAIL_RETENTION_DAYS; default keep).
    #[arg(long)]
    pub retention_days: Option<String>,
    /// Proxies whose Forwarded / X-Forwarded-* headers are believed, comma-separated
    /// addresses or CIDRs (TRAIL_TRUSTED_PROXIES).
    #[arg(long)]
    pub trusted_proxies: Option<String>,
    /// The forwarding headers those proxies write: x-forwarded (default:
    /// X-Forwarded-For/-Proto/-Host/-Port) or forwarded (RFC 7239); the
    /// other family is never read (TRAIL_PROXY_HEADERS).
    #[arg(long)]
    pub proxy_headers: Option<String>,
    /// Serve everything under this path, such as /audit (TRAIL_BASE_PATH).
    #[arg(long)]
    pub base_path: Option<String>,
    /// json (default) or pretty (TRAIL_LOG_FORMAT).
    #[arg(long)]
    pub log_format: Option<String>,
    /// Events below this level are counted and dropped (TRAIL_MIN_LEVEL).
    #[arg(long)]
    pub min_level: Option<String>,
    /// Serve a non-loopback address with no API token at all (TRAIL_INSECURE_NO_AUTH).
    #[arg(long)]
    pub insecure_no_auth: bool,
}

impl ServeArgs {
    fn apply(&self, layers: &mut Layers) {
        let pairs = [
            ("bind", &self.bind),
            ("max_body_bytes", &self.max_body_bytes),
            ("max_batch", &self.max_batch),
            ("queue_depth", &self.queue_depth),
            ("workers", &self.workers),
            ("retention_days", &self.retention_days),
            ("trusted_proxies", &self.trusted_proxies),
            ("proxy_headers", &self.proxy_headers),
            ("base_path", &self.base_path),
            ("log_format", &self.log_format),
            ("min_level", &self.min_level),
        ];
        for (name, value) in pairs {
            if let Some(v) = value {
                layers.flag(name, v.clone());
            }
        }
        if self.insecure_no_auth {
            layers.flag("insecure_no_auth", "true");
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown once; only a hash is stored).
    Create {
        /// The token's name (what list, revoke and the audit events call it).
        name: String,
        /// ingest, read or admin (repeatable, or comma-separated); admin includes the others.
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
        /// One JSON object: name, scopes and the secret.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        /// {"tokens": [...]} instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: new requests with it are refused (by a running
    /// server within a second).
    Revoke {
        /// The name of the token to revoke.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct AppendArgs {
    /// The event type, such as user.login.
    pub event: Option<String>,
    /// debug, info (default), warning, error or critical.
    #[arg(long)]
    pub level: Option<String>,
    /// Who did it: a user, a service.
    #[arg(long)]
    pub actor: Option<String>,
    /// What it was done to: a file, a record, a URL.
    #[arg(long)]
    pub resource: Option<String>,
    /// Whether it succeeded: true or false.
    #[arg(long)]
    pub success: Option<String>,
    /// A detail as KEY=VALUE (repeatable); the value is a string.
    #[arg(long = "detail", value_name = "KEY=VALUE")]
    pub details: Vec<String>,
    /// A client id, so a retry does not append twice.
    #[arg(long)]
    pub id: Option<String>,
    /// Read the whole event as a JSON object from FILE, or - for standard input.
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["event", "level", "actor", "resource", "success", "details", "id"])]
    pub json: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// JSON Lines file, or - for standard input.
    pub file: String,
    /// Events per transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// How many events, at most (default 20).
    #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// {"events": [...]} instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// How many of the newest events (default 20).
    #[arg(short = 'n', long = "lines", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub n: u32,
    /// Keep printing events as they are appended (one JSON object per line with --json).
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// {"events": [...]} instead of a table; with --follow, one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// {"events": [...]} instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// 24h (default), 7d, 30d or all.
    #[arg(long)]
    pub period: Option<String>,
    /// Instead of --period: from this time on (RFC 3339 or YYYY-MM-DD); period "custom".
    #[arg(long, visible_alias = "start", conflicts_with = "period")]
    pub since: Option<String>,
    /// Instead of --period: up to this time (RFC 3339, inclusive, or YYYY-MM-DD, the whole day).
    #[arg(long, visible_alias = "end", conflicts_with = "period")]
    pub until: Option<String>,
    /// One JSON object (the same as GET /v1/summary) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where the server listens, when `serve` was given flags rather than the
/// configuration (`TRAIL_BIND`, `TRAIL_BASE_PATH`) this command reads too.
#[derive(Args, Debug, Default)]
pub struct HealthcheckArgs {
    /// The server's --bind (default: the configured bind).
    #[arg(long)]
    pub bind: Option<String>,
    /// The server's --base-path (default: the configured base_path).
    #[arg(long)]
    pub base_path: Option<String>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// One JSON object (the same as GET /v1/verify) instead of a line of text.
    #[arg(long)]
    pub json: bool,
    /// A head seen earlier, SEQ:HEX: detects a cut-off or rewritten tail.
    #[arg(long, value_parser = Anchor::parse)]
    pub anchor: Option<Anchor>,
    /// Check hashes and links only, not the HMAC seals: for a log whose key
    /// is lost (else every row it sealed is unknown_key, and the run stops at
    /// the first).
    #[arg(long)]
    pub no_seals: bool,
    /// The first seq to check (1 to 2^63-1, as `/v1/verify` takes).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    pub from: Option<u64>,
    /// The last seq to check.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    pub to: Option<u64>,
    /// Another key the log may be sealed with (repeatable); picked by key id.
    #[arg(long = "key-file")]
    pub key_files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// csv, json (default, as GET /v1/export) or jsonl.
    #[arg(long, default_value = "json", value_parser = Format::parse)]
    pub format: Format,
    /// Write here instead of standard output (`-`: standard output).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// asc (default, oldest first) or desc.
    #[arg(long, default_value = "asc", value_parser = Order::parse)]
    pub order: Order,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// What went wrong, and so which exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    VerifyFailed(String),
    /// A write committed, and printing its confirmation failed: exit 3,
    /// with a message that says what was stored.
    #[error("{0}")]
    Unconfirmed(String),
    /// A store error with what the command had done before it (an import
    /// that failed part-way says how many events were committed).
    #[error("{source}; {note}")]
    WithNote { source: StoreError, note: String },
}

impl From<InputError> for CliError {
    fn from(e: InputError) -> Self {
        CliError::Input(e.to_string())
    }
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::VerifyFailed(_) => 1,
            CliError::Input(_) => 2,
            CliError::Unconfirmed(_) => 3,
            CliError::Store(e) | CliError::WithNote { source: e, .. } => match e {
                StoreError::PruneRefused { .. } => 1,
                StoreError::Input(_)
                | StoreError::Conflict { .. }
                | StoreError::NoDatabase(_)
                | StoreError::NotTrail { .. }
                | StoreError::NewerSchema { .. }
                | StoreError::Key(_) => 2,
                _ => 3,
            },
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::VerifyFailed(msg)) => {
            if !msg.is_empty() {
                // Exit 1 whether or not the reader is still there.
                let _ = out!("{msg}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("trail: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Logs to stderr. A server writes its log lines (one per request) from a
/// thread of their own, in batches: formatting stays on the thread that
/// logs, the writing does not (at 17,000 requests a second a write per line
/// took a tenth of the throughput). Nothing is dropped (a full channel makes
/// the logging thread wait); the lines still queued are written when the
/// returned guard is dropped, at the end of [`run`], and lost only if the
/// process is killed (the chain, not the log, is the record).
fn init_logging(
    serving: bool,
    format: LogFormat,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let default = if serving {
        "info,refinery_core=warn"
    } else {
        "warn"
    };
    let filter = match std::env::var("TRAIL_LOG") {
        Ok(spec) if !spec.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&spec)
            .unwrap_or_else(|e| {
                eprintln!("trail: warning: TRAIL_LOG is not a log filter ({e}); using {default:?}");
                default.into()
            }),
        _ => default.into(),
    };
    // Colours only on a terminal: a log file or `docker logs` gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        // A log that cannot be written (a full disk, a log shipper gone)
        // must not take the server down: by default a failed write is
        // reported with `eprintln!`, which panics on that same stderr, in
        // whichever thread logged (the writer's, the signal handler's).
        .log_internal_errors(false);
    if !serving {
        // A command's warnings read as the CLI's own (`trail: warning: …`),
        // not as a server's log lines.
        let _ = builder
            .with_writer(io::stderr)
            .event_format(CliFormat)
            .try_init();
        return None;
    }
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("trail-log")
        .finish(io::BufWriter::with_capacity(64 * 1024, io::stderr()));
    let builder = builder.with_writer(writer);
    let _ = if format == LogFormat::Json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
    Some(guard)
}

/// The log lines of a command (not of `trail serve`): `trail: warning:
/// MESSAGE key=value…`, as the CLI's other messages; below `warn` (with
/// `TRAIL_LOG=debug`) the module is named too.
struct CliFormat;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for CliFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing::Level;
        let meta = event.metadata();
        let level = *meta.level();
        let name = match level {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(writer, "trail: {name}: ")?;
        if level > Level::WARN {
            write!(writer, "{}: ", meta.target())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    let mut layers =
        Layers::load(cli.config.as_deref()).map_err(|e| CliError::Input(e.to_string()))?;
    // Printed whatever `TRAIL_LOG` says, and before a refusal: a misspelt
    // variable is often why another setting is not what was meant.
    for w in layers.warnings() {
        eprintln!("trail: warning: {w}");
    }
    if let Some(db) = &cli.db {
        layers.flag("db", db.display().to_string());
    }
    if let Some(f) = &cli.hmac_key_file {
        // The key file is read while the settings are resolved, from their
        // text: a path that is not UTF-8 would be read under another name.
        let Some(text) = f.to_str() else {
            return Err(CliError::Input(format!(
                "--hmac-key-file: the path {} is not valid UTF-8; rename the file, or give \
                 the key with TRAIL_HMAC_KEY",
                f.display()
            )));
        };
        layers.flag("hmac_key_file", text.to_owned());
    }
    if let Some(v) = &cli.verify_key_files {
        layers.flag("verify_key_files", v.clone());
    }
    if let Some(s) = &cli.synchronous {
        layers.flag("synchronous", s.clone());
    }
    if let Command::Serve(args) = &cli.command {
        args.apply(&mut layers);
    }
    let mut config = layers
        .resolve()
        .map_err(|e| CliError::Input(e.to_string()))?;
    // The settings' layers hold text: the database path given as a flag is
    // taken as given, byte for byte (one that is not UTF-8 was changed on
    // the way, and trail used another file than the one named).
    if let Some(db) = &cli.db {
        config.db.value = db.clone();
    }
    // Held until the command returns: the server's last lines are written.
    let _log = init_logging(
        matches!(cli.command, Command::Serve(_)),
        config.log_format.value,
    );
    let keys = config.key_source();
    let db_path = config.db.value.clone();
    let db = db_path.as_path();
    let sync = config.synchronous.value;
    match cli.command {
        Command::Serve(_) => serve(&config),
        Command::Config { json } => show_config(&config, json),
        Command::Token(cmd) => token_cmd(db, &keys, writer_config(&config), cmd),
        Command::Healthcheck(args) => healthcheck(&config, args),
        Command::Append(args) => append(db, &keys, &config, args),
        Command::Import(args) => import(db, &keys, &config, args),
        Command::Show(args) => show(db, args),
        Command::Tail(args) => tail(db, args),
        Command::Search(args) => search(db, args),
        Command::Summary(args) | Command::Stats(args) => summary(db, &keys, args),
        Command::Verify(args) => verify(db, &keys, args),
        Command::Export(args) => export_cmd(db, args.format, args.order, args.output, &args.filter),
        Command::ExportCsv { file } => export_cmd(
            db,
            Format::Csv,
            Order::Asc,
            Some(file),
            &FilterArgs::default(),
        ),
        Command::ExportJson { file } => export_cmd(
            db,
            Format::Json,
            Order::Asc,
            Some(file),
            &FilterArgs::default(),
        ),
        Command::Prune(args) => ops::prune(db, &keys, sync, args),
        Command::Backup(args) => ops::backup(db, &keys, args),
    }
}

fn serve(config: &Config) -> Result<(), CliError> {
    use crate::http::{Application, ServeConfig};
    let serve = ServeConfig::from_config(config).map_err(|e| CliError::Input(e.to_string()))?;
    let bind = serve.bind.clone();
    let bind_host = bind
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h)
        .to_owned();
    let db = config.db.value.clone();
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(serve).map_err(|e| match e {
            crate::http::StartError::Store(s) => CliError::Store(s),
            other => CliError::Input(other.to_string()),
        })?;
        // A fixed line on stderr, so scripts that bind port 0 learn the port.
        // Not `eprintln!`: it panics when stderr fails.
        let _ = writeln!(
            io::stderr(),
            "trail: listening on {}:{}",
            bind_host,
            app.port()
        );
        tracing::info!(port = app.port(), db = %db.display(), "trail is serving");
        // SIGTERM (docker stop) and SIGINT (Ctrl-C) alike: stop accepting,
        // let in-flight requests finish, then record server.stop.
        let handle = app.handle();
        actix_web::rt::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::error!("cannot listen for SIGTERM/SIGINT");
                return;
            };
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = which, "stopping: in-flight requests finish first");
            handle.stop(true).await;
        });
        app.run_until_stopped().await.map_err(|e| {
            CliError::Store(StoreError::Io {
                context: "serving".into(),
                source: e,
            })
        })
    })
}

fn show_config(config: &Config, json: bool) -> Result<(), CliError> {
    let rows = config.describe();
    if json {
        let obj: serde_json::Map<String, serde_json::Value> = rows
            .into_iter()
            .map(|(k, v, src)| (k, serde_json::json!({"value": v, "source": src})))
            .collect();
        out!("{}", serde_json::Value::Object(obj))?;
    } else {
        if let Some(f) = &config.config_file {
            out!("# config file: {}", f.display())?;
        }
        for (k, v, src) in rows {
            out!("{k:<22} = {v:<40} # {src}")?;
        }
    }
    Ok(())
}

fn token_cmd(
    db: &Path,
    keys: &KeySource,
    writing: WriterConfig,
    cmd: TokenCommand,
) -> Result<(), CliError> {
    use crate::store::tokens::{self, Scope};
    match cmd {
        TokenCommand::Create { name, scopes, json } => {
            let scopes: Vec<Scope> = scopes
                .iter()
                .map(|s| Scope::parse(s).map_err(|m| CliError::Input(format!("--scope: {m}"))))
                .collect::<Result<_, _>>()?;
            let secret = tokens::generate_secret();
            let writer = start_writer(db, keys, writing)?;
            let info = crate::store::tokens::create_audited(
                &writer,
                &name,
                &scopes,
                &secret,
                crate::store::tokens::By::named("cli"),
            )?;
            let list = info
                .scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",");
            // The secret is the command's only result: if it cannot be shown
            // (a closed pipe, a full disk), nobody holds it, and a token that
            // nobody holds must not stay active.
            let text = if json {
                serde_json::json!({"name": info.name, "scopes": info.scopes, "token": secret})
                    .to_string()
            } else {
                format!(
                    "token {} (scopes: {list}):\n{secret}\nStore it now: it is not shown again.",
                    info.name
                )
            };
            let shown = {
                let mut stdout = io::stdout().lock();
                writeln!(stdout, "{text}").and_then(|()| stdout.flush())
            };
            if let Err(e) = shown {
                crate::store::tokens::revoke_audited(
                    &writer,
                    &info.name,
                    crate::store::tokens::By::named("cli"),
                )?;
                return Err(CliError::Store(StoreError::Io {
                    context: format!(
                        "showing the secret of token {} (it was revoked again: nobody holds it)",
                        info.name
                    ),
                    source: e,
                }));
            }
            Ok(())
        }
        TokenCommand::List { json } => {
            let conn = open_read(db)?;
            let list = tokens::list(&conn)?;
            if json {
                out!("{}", serde_json::json!({"tokens": list}))?;
            } else if list.is_empty() {
                out!("no tokens")?;
            } else {
                out!("{:<24} {:<20} {:<28} REVOKED", "NAME", "SCOPES", "CREATED")?;
                for t in list {
                    let scopes = t
                        .scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",");
                    out!(
                        "{:<24} {scopes:<20} {:<28} {}",
                        t.name,
                        t.created_at,
                        t.revoked_at.as_deref().unwrap_or("-")
                    )?;
                }
            }
            Ok(())
        }
        TokenCommand::Revoke { name } => {
            let writer = start_writer(db, keys, writing)?;
            if crate::store::tokens::revoke_audited(
                &writer,
                &name,
                crate::store::tokens::By::named("cli"),
            )? {
                out!("token {name} revoked")?;
                Ok(())
            } else {
                Err(CliError::Input(format!("no active token named {name:?}")))
            }
        }
    }
}

/// GET /readyz on the configured port over plain TCP: the runtime image
/// needs no curl.
fn healthcheck(config: &Config, args: HealthcheckArgs) -> Result<(), CliError> {
    use std::io::Read;
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;
    let bind_text = args.bind.as_deref().unwrap_or(&config.bind.value);
    let bind: SocketAddr = bind_text.parse().map_err(|_| {
        CliError::Input(format!(
            "--bind: must be an address and port such as 0.0.0.0:8080 (got {bind_text:?})"
        ))
    })?;
    let base_path = match &args.base_path {
        Some(p) => crate::config::parse_base_path(p)
            .map_err(|e| CliError::Input(format!("--base-path: {e}")))?,
        None => config.base_path.value.clone(),
    };
    let host = if bind.ip().is_unspecified() {
        if bind.is_ipv4() {
            "127.0.0.1".parse().expect("ip")
        } else {
            "::1".parse().expect("ip")
        }
    } else {
        bind.ip()
    };
    let addr = SocketAddr::new(host, bind.port());
    let path = format!("{base_path}/readyz");
    let fail = |m: String| CliError::VerifyFailed(format!("unhealthy: {m}"));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| fail(format!("{addr}: {e}")))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .map_err(|e| fail(e.to_string()))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| fail(e.to_string()))?;
    let status = reply.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) == Some("200") {
        out!("healthy: {status}")?;
        Ok(())
    } else {
        Err(fail(status.to_owned()))
    }
}

/// How the CLI's writer writes, from the configuration: as the server's
/// (`synchronous`, the metadata added to every event), except that closing
/// it never waits for readers (see [`StopCheckpoint`]).
fn writer_config(config: &Config) -> WriterConfig {
    WriterConfig {
        synchronous: config.synchronous.value,
        server_metadata: config.server_metadata(),
        stop_checkpoint: StopCheckpoint::Passive,
        ..WriterConfig::default()
    }
}

fn start_writer(db: &Path, keys: &KeySource, writing: WriterConfig) -> Result<Writer, CliError> {
    crate::store::db::check_target(db)?;
    let key = keys.signing_key(db)?;
    let ring = keys.verify_keyring(db, &[])?;
    crate::store::keys::check_key_continues(db, &key, &ring)?;
    // Said, not refused: the events to come are not lost, and the bad row
    // stays detectable at its own seq whatever is chained after it.
    if let Some(r) = crate::store::verify::check_newest(db, &ring)?.filter(|r| !r.valid) {
        let kind = r.kind.expect("invalid has a kind");
        eprintln!(
            "trail: warning: the newest event does not verify (seq {}: {}, {}); new events are \
             chained after it; run `trail verify` and find out who changed the file",
            r.first_bad_seq.unwrap_or(0),
            kind,
            kind.explain()
        );
    }
    let writing = WriterConfig {
        verify_keys: ring,
        ..writing
    };
    Ok(Writer::start(db, key, writing)?)
}

fn append(db: &Path, keys: &KeySource, config: &Config, args: AppendArgs) -> Result<(), CliError> {
    let event = if let Some(src) = &args.json {
        let text = read_input(src)?;
        if let Some(e) = crate::domain::json::too_deep(&text) {
            return Err(e.into());
        }
        let value = crate::domain::json::parse_strict(&text)
            .map_err(|e| CliError::Input(format!("{src}: not valid JSON: {e}")))?;
        NewEvent::from_json(&value)?
    } else {
        let Some(name) = &args.event else {
            return Err(CliError::Input(
                "an event type is required (trail append EVENT, or --json FILE)".into(),
            ));
        };
        let mut obj = serde_json::Map::new();
        obj.insert("event".into(), name.clone().into());
        for (k, v) in [
            ("level", &args.level),
            ("actor", &args.actor),
            ("resource", &args.resource),
            ("id", &args.id),
        ] {
            if let Some(v) = v {
                obj.insert(k.into(), v.clone().into());
            }
        }
        if let Some(s) = &args.success {
            let b = match s.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(CliError::Input(format!(
                        "--success: must be true or false (got {s:?})"
                    )))
                }
            };
            obj.insert("success".into(), b.into());
        }
        if !args.details.is_empty() {
            let mut d = serde_json::Map::new();
            for kv in &args.details {
                let Some((k, v)) = kv.split_once('=') else {
                    return Err(CliError::Input(format!(
                        "--detail: must be KEY=VALUE (got {kv:?})"
                    )));
                };
                if k.is_empty() {
                    return Err(CliError::Input(format!(
                        "--detail: the key is empty in {kv:?}"
                    )));
                }
                if d.insert(k.into(), v.into()).is_some() {
                    return Err(CliError::Input(format!(
                        "--detail: the key {k:?} is given more than once"
                    )));
                }
            }
            obj.insert("details".into(), d.into());
        }
        NewEvent::from_json(&serde_json::Value::Object(obj)).map_err(|e| {
            // Name the flags as the user typed them.
            CliError::Input(
                e.errors
                    .iter()
                    .map(|f| {
                        // The flag for `details` is `--detail`; the type
                        // is the EVENT argument, not a flag.
                        match f.field.as_str() {
                            "event" => format!("EVENT: {}", f.message),
                            "details" => format!("--detail: {}", f.message),
                            flag => format!("--{flag}: {}", f.message),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?
    };
    // A path that is no trail database is refused whatever the event.
    crate::store::db::check_target(db)?;
    // As the server: an event the configuration drops is not stored, and
    // nothing is created for it (no database, no key).
    if let Some(why) = config.drop_policy().verdict(&event) {
        out!("{}", dropped_line(config, &event, why))?;
        return Ok(());
    }
    let writer = start_writer(db, keys, writer_config(config))?;
    let stored = writer.append(vec![event])?;
    let a = &stored[0];
    if !a.created {
        eprintln!(
            "trail: event id {:?} is stored already with the same content: nothing was written",
            a.id
        );
    }
    let line = format!(
        "seq={} id={} chain_hash={}",
        a.seq,
        a.id,
        hex::encode(a.chain_hash)
    );
    if a.created {
        confirm(&line, "the event WAS stored", "do not append it again")
    } else {
        // A retry by id wrote nothing: retrying again is harmless.
        confirm(
            &line,
            "the event is stored (from before: nothing was written now)",
            "a retry with the same id writes nothing either",
        )
    }
}

/// Prints the confirmation of a write that has committed. If it cannot be
/// printed (a full disk behind standard output), the error says what was
/// stored: a script that retries on any failure would store it twice
/// (exit 3, as any file-system failure). A reader that went away (`| head
/// -0`) is not a failure, as for every command.
fn confirm(line: &str, stored: &str, advice: &str) -> Result<(), CliError> {
    let shown = {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{line}").and_then(|()| stdout.flush())
    };
    match shown {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Unconfirmed(format!(
            "{stored}: {line}; writing that to standard output failed: {e}; {advice}"
        ))),
    }
}

/// What `append` prints for an event the configuration drops (exit 0, as
/// the server's `200 {"dropped": …}`): which setting, why, and where the
/// setting came from.
fn dropped_line(config: &Config, event: &NewEvent, why: crate::domain::Dropped) -> String {
    use crate::domain::Dropped;
    let because = match why {
        Dropped::MinLevel => format!(
            "level {} is below min_level {}, from {}",
            event.level().as_str(),
            config.min_level.value.as_str(),
            config.min_level.source
        ),
        Dropped::Excluded => format!(
            "type {} is in exclude_events, from {}",
            event.event().as_str(),
            config.exclude_events.source
        ),
    };
    format!("not stored: dropped={} ({because})", why.as_str())
}

/// The most one event's JSON may take, for `append --json` and each line of
/// `import`: the HTTP body limit's default, room for any event within the
/// member limits (64 KiB `details` and `metadata`, 1 KiB texts) even
/// written with escapes. Past it, the input is refused before it is held in
/// memory.
const MAX_EVENT_INPUT: usize = 1 << 20;

fn read_input(src: &str) -> Result<String, CliError> {
    let (what, reader): (String, Box<dyn io::Read>) = if src == "-" {
        ("standard input".into(), Box::new(io::stdin()))
    } else {
        let f = std::fs::File::open(src)
            .map_err(|e| CliError::Input(format!("cannot read {src}: {e}")))?;
        (src.to_owned(), Box::new(f))
    };
    let mut bytes = Vec::new();
    // The limit is the JSON's: a byte-order mark before it and a line
    // ending after it (what editors write) are not counted.
    io::Read::read_to_end(
        &mut io::Read::take(reader, (MAX_EVENT_INPUT + BOM.len() + 2) as u64 + 1),
        &mut bytes,
    )
    .map_err(|e| CliError::Input(format!("cannot read {what}: {e}")))?;
    let mut json = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    json = json
        .strip_suffix(b"\n")
        .map_or(json, |j| j.strip_suffix(b"\r").unwrap_or(j));
    if json.len() > MAX_EVENT_INPUT {
        return Err(CliError::Input(format!(
            "{what} is larger than {MAX_EVENT_INPUT} bytes, the 1 MiB limit for one event's JSON"
        )));
    }
    String::from_utf8(json.to_vec())
        .map_err(|_| CliError::Input(format!("{what} is not UTF-8 text")))
}

/// UTF-8's byte-order mark, which some Windows tools put first: not part
/// of the JSON.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// The next line of an import without its line ending, `None` at the end;
/// a line longer than [`MAX_EVENT_INPUT`] is refused before it is read whole.
fn next_line(reader: &mut dyn BufRead, name: &str, n: usize) -> Option<Result<String, String>> {
    let mut buf = Vec::new();
    let bom = if n == 1 { BOM.len() } else { 0 };
    match io::Read::take(&mut *reader, (MAX_EVENT_INPUT + bom) as u64 + 2)
        .read_until(b'\n', &mut buf)
    {
        Ok(0) => return None,
        Ok(_) => {}
        Err(e) => return Some(Err(format!("cannot read {name} at line {n}: {e}"))),
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if n == 1 && buf.starts_with(BOM) {
        buf.drain(..BOM.len());
    }
    if buf.len() > MAX_EVENT_INPUT {
        return Some(Err(format!(
            "line {n}: longer than {MAX_EVENT_INPUT} bytes, the 1 MiB limit for one event's JSON"
        )));
    }
    Some(String::from_utf8(buf).map_err(|_| format!("line {n}: not UTF-8 text")))
}

/// Progress of an import: what has committed so far.
#[derive(Default)]
struct Imported {
    /// Events written by this import.
    committed: u64,
    /// Lines whose client id matched an event stored already, with the same
    /// content: answered with that event, not written again.
    already: u64,
    /// Lines the configuration dropped (`min_level`, `exclude_events`):
    /// not stored, as the server does not store them.
    dropped_min_level: u64,
    dropped_excluded: u64,
    range: Option<(u64, u64)>,
}

/// A batch on its way: each event's line (to name the line of a conflict),
/// and its pending answer.
type InFlight = (Vec<usize>, crate::store::Pending);

impl Imported {
    /// What an import says at the end: how many events it wrote and where.
    fn summary(&self) -> String {
        let n = self.committed;
        let plural = if n == 1 { "event" } else { "events" };
        let mut msg = match self.range {
            Some((a, b)) if a == b => format!("imported {n} {plural} (seq {a})"),
            Some((a, b)) if b - a + 1 == n => format!("imported {n} {plural} (seq {a}..{b})"),
            // Another process appended at the same time: its rows sit between.
            Some((a, b)) => format!(
                "imported {n} {plural} (seqs from {a} to {b}, interleaved with other appends)"
            ),
            None => "imported 0 events".to_owned(),
        };
        if self.already > 0 {
            msg.push_str(&format!(
                "; {} already stored with the same content (matched by id, not written again)",
                self.already
            ));
        }
        let dropped = self.dropped_min_level + self.dropped_excluded;
        if dropped > 0 {
            let by: Vec<String> = [
                ("min_level", self.dropped_min_level),
                ("exclude_events", self.dropped_excluded),
            ]
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(setting, n)| format!("{setting}: {n}"))
            .collect();
            msg.push_str(&format!(
                "; {dropped} dropped by the configuration, not stored ({})",
                by.join(", ")
            ));
        }
        msg
    }

    fn dropped(&mut self, why: crate::domain::Dropped) {
        match why {
            crate::domain::Dropped::MinLevel => self.dropped_min_level += 1,
            crate::domain::Dropped::Excluded => self.dropped_excluded += 1,
        }
    }

    /// Waits for the batch in flight; its events are committed once it returns.
    fn settle(&mut self, in_flight: &mut Option<InFlight>) -> Result<(), CliError> {
        let Some((lines, p)) = in_flight.take() else {
            return Ok(());
        };
        match p.wait() {
            Ok(done) => {
                for a in &done {
                    if a.created {
                        self.committed += 1;
                        self.range = Some((self.range.map_or(a.seq, |r| r.0), a.seq));
                    } else {
                        self.already += 1;
                    }
                }
                Ok(())
            }
            Err(StoreError::Conflict { id, index, earlier }) => {
                let first = lines.first().copied().unwrap_or(0);
                let line_of = |i: usize| lines.get(i).copied().unwrap_or(first);
                let what = match earlier {
                    None => "is already stored with different content".to_owned(),
                    Some(j) => format!(
                        "was given on line {} of this batch with different content",
                        line_of(j)
                    ),
                };
                Err(CliError::Input(format!(
                    "line {}: event id {id:?} {what}; {}",
                    line_of(index),
                    self.nothing_of_batch_from(first)
                )))
            }
            Err(e) => Err(self.failed_from(lines.first().copied().unwrap_or(0), e)),
        }
    }

    /// What a refused batch leaves: where the import can resume.
    fn nothing_of_batch_from(&self, first: usize) -> String {
        format!(
            "nothing of the batch from line {first} on was written ({} events committed before it)",
            self.committed
        )
    }

    /// A batch from line `first` on could not be written: the error, and
    /// where the import stands, so it can be resumed from that line.
    fn failed_from(&self, first: usize, e: StoreError) -> CliError {
        CliError::WithNote {
            source: e,
            note: format!(
                "nothing from line {first} on was written ({} events committed before it)",
                self.committed
            ),
        }
    }
}

fn import(db: &Path, keys: &KeySource, config: &Config, args: ImportArgs) -> Result<(), CliError> {
    let (name, mut reader): (&str, Box<dyn BufRead>) = if args.file == "-" {
        ("standard input", Box::new(io::BufReader::new(io::stdin())))
    } else {
        let cannot = |why: String| CliError::Input(format!("cannot read {}: {why}", args.file));
        let f = std::fs::File::open(&args.file).map_err(|e| cannot(e.to_string()))?;
        // Opening a folder works; reading it does not.
        if f.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(cannot("it is a folder, not a file".into()));
        }
        (
            args.file.as_str(),
            Box::new(io::BufReader::with_capacity(1 << 20, f)),
        )
    };
    let writer = start_writer(db, keys, writer_config(config))?;
    let policy = config.drop_policy();
    let batch_size = args.batch_size as usize;
    let mut state = Imported::default();
    // One batch commits while the next is parsed.
    let mut in_flight: Option<InFlight> = None;
    let mut batch: Vec<NewEvent> = Vec::with_capacity(batch_size);
    let mut lines: Vec<usize> = Vec::with_capacity(batch_size);

    let mut n = 0;
    loop {
        n += 1;
        let Some(line) = next_line(&mut *reader, name, n) else {
            break;
        };
        let parsed = line.and_then(|line| {
            if line.trim().is_empty() {
                return Ok(None);
            }
            if let Some(e) = crate::domain::json::too_deep(&line) {
                return Err(format!("line {n}: {e}"));
            }
            // serde_json counts lines within the text it was given, always
            // line 1 here: the column is what tells.
            let v = crate::domain::json::parse_strict(&line).map_err(|e| {
                let text = e.to_string();
                let text = text
                    .strip_suffix(&format!(" at line 1 column {}", e.column()))
                    .map_or(text.clone(), |m| format!("{m} at column {}", e.column()));
                format!("line {n}: not valid JSON: {text}")
            })?;
            NewEvent::from_json(&v)
                .map(Some)
                .map_err(|e| format!("line {n}: {e}"))
        });
        match parsed {
            Ok(None) => continue,
            Ok(Some(ev)) => match policy.verdict(&ev) {
                // As the server: never stored, counted in the summary.
                Some(why) => {
                    state.dropped(why);
                    continue;
                }
                None => {
                    lines.push(n);
                    batch.push(ev);
                }
            },
            Err(m) => {
                state.settle(&mut in_flight)?;
                let first = lines.first().copied().unwrap_or(n);
                return Err(CliError::Input(format!(
                    "{m}; {}",
                    state.nothing_of_batch_from(first)
                )));
            }
        }
        if batch.len() == batch_size {
            // The previous batch must have committed before this one goes
            // in: a refused batch stops the import with nothing after it.
            state.settle(&mut in_flight)?;
            let p = writer
                .submit_wait(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(batch_size),
                ))
                .map_err(|e| state.failed_from(lines[0], e))?;
            in_flight = Some((std::mem::take(&mut lines), p));
        }
    }
    if !batch.is_empty() {
        state.settle(&mut in_flight)?;
        let p = writer
            .submit_wait(batch)
            .map_err(|e| state.failed_from(lines[0], e))?;
        in_flight = Some((lines, p));
    }
    state.settle(&mut in_flight)?;
    if state.committed == 0 {
        confirm(&state.summary(), "the import ended", "nothing was written")
    } else {
        confirm(
            &state.summary(),
            "the events WERE stored",
            "do not import them again",
        )
    }
}

fn print_events(events: &[StoredEvent], json: bool) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    let r = if json {
        let mut s = String::from("{\"events\":[");
        for (i, ev) in events.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            ev.write_json(&mut s);
        }
        s.push_str("]}\n");
        out.write_all(s.as_bytes())
    } else {
        table::write(&mut out, events, io::stdout().is_terminal())
    };
    r.or_else(ignore_broken_pipe)
}

pub(crate) fn ignore_broken_pipe(e: io::Error) -> Result<(), CliError> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(StoreError::Io {
            context: "writing to standard output".into(),
            source: e,
        }
        .into())
    }
}

fn show(db: &Path, args: ShowArgs) -> Result<(), CliError> {
    let filter = args.filter.parse()?;
    let conn = open_read(db)?;
    let page = query::list(
        &conn,
        &filter,
        PageRequest {
            order: Order::Desc,
            after: None,
            limit: args.limit as usize,
            offset: 0,
        },
    )?;
    print_events(&page.events, args.json)
}

fn tail(db: &Path, args: TailArgs) -> Result<(), CliError> {
    let filter = args.filter.parse()?;
    let conn = open_read(db)?;
    let page = query::list(
        &conn,
        &filter,
        PageRequest {
            order: Order::Desc,
            after: None,
            limit: args.n as usize,
            offset: 0,
        },
    )?;
    let mut events = page.events;
    events.reverse();
    let mut last = events
        .last()
        .map(|e| e.seq)
        .unwrap_or_else(|| query::head(&conn).map(|h| h.seq).unwrap_or(0));
    if !args.follow {
        return print_events(&events, args.json);
    }
    // Following prints one line per event as it comes, so that a pipe reads
    // them as they arrive.
    // A reader that has gone (`| head -2`) ends the command, with exit 0.
    let gone = |r: io::Result<()>| -> Result<bool, CliError> {
        match r {
            Ok(()) => Ok(false),
            Err(e) => ignore_broken_pipe(e).map(|()| true),
        }
    };
    let print_lines = |events: &[StoredEvent]| -> Result<bool, CliError> {
        let mut out = io::stdout().lock();
        for ev in events {
            let r = if args.json {
                let mut s = String::new();
                ev.write_json(&mut s);
                s.push('\n');
                out.write_all(s.as_bytes())
            } else {
                table::write_line(&mut out, ev)
            };
            if gone(r.and_then(|()| out.flush()))? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    if !args.json && gone(table::write_header(&mut io::stdout().lock(), true))? {
        return Ok(());
    }
    if !print_lines(&events)? {
        return Ok(());
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        // Noticed without waiting for an event to write: a pipe whose
        // reader has closed reports an error condition to poll.
        if stdout_reader_gone() {
            return Ok(());
        }
        let page = query::list(
            &conn,
            &filter,
            PageRequest {
                order: Order::Asc,
                after: Some(last),
                limit: 1000,
                offset: 0,
            },
        )?;
        if let Some(ev) = page.events.last() {
            last = ev.seq;
        }
        if !print_lines(&page.events)? {
            return Ok(());
        }
    }
}

/// Whether standard output is a pipe or socket whose reader has gone.
fn stdout_reader_gone() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout; poll only writes `revents`.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

fn search(db: &Path, args: SearchArgs) -> Result<(), CliError> {
    let filter = args.filter.parse()?;
    let conn = open_read(db)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let tty = io::stdout().is_terminal();
    let mut first = true;
    if args.json {
        out.write_all(b"{\"events\":[")
            .or_else(ignore_broken_pipe)?;
    }
    let mut line = String::new();
    for_each_match(&conn, &filter, Order::Asc, |ev| {
        let r = if args.json {
            line.clear();
            if !first {
                line.push(',');
            }
            ev.write_json(&mut line);
            out.write_all(line.as_bytes())
        } else {
            if first {
                table::write_header(&mut out, tty).map_err(|e| {
                    CliError::Store(StoreError::Io {
                        context: "writing to standard output".into(),
                        source: e,
                    })
                })?;
            }
            table::write_line(&mut out, ev)
        };
        first = false;
        r.map(|()| true).map_err(|e| {
            CliError::Store(StoreError::Io {
                context: "writing to standard output".into(),
                source: e,
            })
        })
    })
    .or_else(|e| match e {
        CliError::Store(StoreError::Io { source, .. })
            if source.kind() == io::ErrorKind::BrokenPipe =>
        {
            Ok(0)
        }
        e => Err(e),
    })?;
    if args.json {
        out.write_all(b"]}\n").or_else(ignore_broken_pipe)?;
    }
    out.flush().or_else(ignore_broken_pipe)
}

fn summary(db: &Path, keys: &KeySource, args: SummaryArgs) -> Result<(), CliError> {
    // As GET /v1/summary: a period, or an explicit window ("custom").
    let (period, filter) = if args.since.is_some() || args.until.is_some() {
        let window = FilterArgs {
            since: args.since.clone(),
            until: args.until.clone(),
            ..FilterArgs::default()
        };
        ("custom".to_owned(), window.parse()?)
    } else {
        let period = args.period.clone().unwrap_or_else(|| "24h".into());
        let filter = crate::domain::filter::period_filter(&period, chrono::Utc::now())
            .map_err(|e| CliError::Input(format!("--period: {e}")))?;
        (period.to_ascii_lowercase(), filter)
    };
    let conn = open_read(db)?;
    let s = query::summary(&conn, &period, &filter)?;
    if args.json {
        let line = serde_json::to_string(&s).expect("summary serializes");
        return writeln!(io::stdout().lock(), "{line}").or_else(ignore_broken_pipe);
    }
    let ring = keys.verify_keyring(db, &[])?;
    let report = verify_file(db, &ring, VerifyRequest::default())?;
    let mut out = io::stdout().lock();
    let w = |out: &mut io::StdoutLock<'_>, s: String| writeln!(out, "{s}");
    let range = match (&s.since, &s.until) {
        (Some(a), Some(b)) => format!("{a} .. {b}"),
        (Some(a), None) => format!("since {a}"),
        _ => "all time".into(),
    };
    let mut lines = vec![
        format!("period         {} ({range})", s.period),
        format!("total events   {}", s.total_events),
        format!("success        {}", s.success_count),
        format!("failure        {}", s.failure_count),
        format!("first event    {}", s.first_event.as_deref().unwrap_or("-")),
        format!("last event     {}", s.last_event.as_deref().unwrap_or("-")),
        format!(
            "chain          {}",
            if report.valid {
                format!(
                    "intact ({} entries, head {})",
                    report.entries_checked, report.head.seq
                )
            } else {
                format!(
                    "BROKEN at seq {} ({})",
                    report.first_bad_seq.unwrap_or(0),
                    report.kind.map(|k| k.as_str()).unwrap_or("")
                )
            }
        ),
    ];
    for (title, map) in [
        ("by type", &s.by_type),
        ("by level", &s.by_level),
        ("by actor", &s.by_actor),
    ] {
        lines.push(String::new());
        lines.push(title.to_owned());
        let mut items: Vec<_> = map.iter().collect();
        items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, v) in items {
            lines.push(format!("  {v:>10}  {k}"));
        }
    }
    for l in lines {
        w(&mut out, l).or_else(ignore_broken_pipe)?;
    }
    Ok(())
}

fn verify(db: &Path, keys: &KeySource, args: VerifyArgs) -> Result<(), CliError> {
    if let (Some(a), Some(b)) = (args.from, args.to) {
        if a > b {
            return Err(CliError::Input(format!("--from {a} is after --to {b}")));
        }
    }
    let ring = keys.verify_keyring(db, &args.key_files)?;
    let report = verify_file(
        db,
        &ring,
        VerifyRequest {
            from: args.from,
            to: args.to,
            anchor: args.anchor,
            skip_seals: args.no_seals,
        },
    )?;
    // The schema is not covered by the chain: said apart from the verdict
    // (stdout with the verdict, stderr beside JSON), which it leaves as is.
    let schema = crate::store::db::open_read(db)
        .and_then(|c| crate::store::db::schema_differences(&c))
        .unwrap_or_else(|e| vec![format!("it could not be compared: {e}")]);
    let mut warnings = Vec::new();
    if !schema.is_empty() {
        warnings.push(format!(
            "warning: the schema is not the one trail's migrations make ({}): queries of the \
             columns, the audit_log view or the triggers' protection may not be what they seem; \
             the chain itself is checked from entry, chain_hash and signature alone",
            schema.join("; ")
        ));
    }
    // An anchor a prune has passed is not compared (nothing is left to
    // compare it with): said, so that nobody takes the verdict for a check
    // of it.
    let cut = crate::store::db::open_read(db)
        .and_then(|c| crate::store::retention::newest_cut(&c))
        .ok()
        .flatten();
    if let (Some(anchor), Some(cut)) = (&args.anchor, &cut) {
        if anchor.seq < cut.up_to_seq {
            warnings.push(format!(
                "warning: the anchor (seq {}) is below the newest retention cut (seq {}): the \
                 rows it names were pruned, so it was not compared; keep anchors newer than the \
                 newest cut",
                anchor.seq, cut.up_to_seq
            ));
        }
    }
    let warning = (!warnings.is_empty()).then(|| warnings.join("\n"));
    if args.json {
        for w in &warnings {
            eprintln!("trail: {w}");
        }
    }
    let text = if args.json {
        serde_json::to_string(&report).expect("report serializes")
    } else if report.valid {
        format!(
            "intact: {} entries checked{}; head seq {} chain_hash {}",
            report.entries_checked,
            if args.no_seals {
                " (hashes and links only: seals not checked)"
            } else {
                ""
            },
            report.head.seq,
            report.head.chain_hash
        )
    } else {
        let kind = report.kind.expect("invalid has a kind");
        let mut s = format!(
            "BROKEN at seq {}: {} ({}); {} entries checked before it",
            report.first_bad_seq.unwrap_or(0),
            kind,
            kind.explain(),
            report.entries_checked
        );
        if ring.signing().is_none() {
            s.push_str("\nno HMAC key was found: set TRAIL_HMAC_KEY, TRAIL_HMAC_KEY_FILE or pass --key-file");
        }
        s
    };
    let text = match (&warning, args.json) {
        (Some(w), false) => format!("{text}\n{w}"),
        _ => text,
    };
    if report.valid {
        out!("{text}")?;
        Ok(())
    } else {
        Err(CliError::VerifyFailed(text))
    }
}

/// An export replaces its output file; it never replaces evidence. Refused
/// (nothing written): the database itself or a file SQLite keeps beside it
/// (also under another name, a hard link), any SQLite database (a backup),
/// any SQLite WAL, any `-wal`/`-shm`/`-journal` name beside an SQLite file
/// (whether such a file is there or not), and a
/// file holding a key (64 hex digits). Anything that is not a regular file
/// (a pipe, `/dev/stdout`) is written into, not replaced: see [`export_cmd`].
fn refuse_precious_output(db: &Path, out: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |what: &str| {
        Err(CliError::Input(format!(
            "refusing to write the export to {}: it is {what}; an export never replaces it (choose another --output)",
            out.display()
        )))
    };
    const SQLITE: &[u8] = b"SQLite format 3\0";
    // `X-wal`, `X-shm`, `X-journal` beside an SQLite file `X`, there or not:
    // SQLite would take an export of that name for a journal of X's (a hot
    // `-journal` stops every write to X).
    let name = out.as_os_str().to_string_lossy();
    for suffix in ["-wal", "-shm", "-journal"] {
        if let Some(main) = name.strip_suffix(suffix) {
            if file_head(Path::new(main)).starts_with(SQLITE) {
                return refuse("a file SQLite keeps beside a database");
            }
        }
    }
    let Ok(meta) = std::fs::metadata(out) else {
        return Ok(());
    };
    if meta.is_dir() {
        return refuse("a folder");
    }
    if !meta.is_file() {
        return Ok(());
    }
    let same_file = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
    };
    if same_file(db) {
        return refuse("the database being exported");
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        if same_file(&crate::store::db::sidecar(db, suffix)) {
            return refuse("one of the database's own files");
        }
    }
    // Read once: a key file is shorter than this, so it is all there.
    let head = file_head(out);
    if head.starts_with(SQLITE) {
        return refuse("an SQLite database (a backup?)");
    }
    // A WAL's magic number, big-endian, either checksum order.
    if head.starts_with(&[0x37, 0x7f, 0x06, 0x82]) || head.starts_with(&[0x37, 0x7f, 0x06, 0x83]) {
        return refuse("an SQLite WAL file");
    }
    let key_like =
        std::str::from_utf8(&head).is_ok_and(|text| crate::domain::HmacKey::from_hex(text).is_ok());
    if meta.len() <= 130 && key_like {
        return refuse("a key file (64 hex digits)");
    }
    Ok(())
}

/// The first 130 bytes of `path` when it is a regular file (empty otherwise).
fn file_head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::with_capacity(130);
    if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        let _ = std::fs::File::open(path).and_then(|f| f.take(130).read_to_end(&mut head));
    }
    head
}

fn export_cmd(
    db: &Path,
    format: Format,
    order: Order,
    output: Option<PathBuf>,
    filter: &FilterArgs,
) -> Result<(), CliError> {
    let filter = filter.parse()?;
    // `-` is standard output, as `-` is standard input to import and append.
    let output = output.filter(|p| p.as_os_str() != "-");
    if let Some(path) = &output {
        refuse_precious_output(db, path)?;
    }
    let conn = open_read(db)?;
    let now = format_timestamp(chrono::Utc::now());
    // A pipe or a device (`/dev/stdout`) is written into as it is.
    let into_special = output
        .as_deref()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| !m.is_file() && !m.is_dir());
    let n = match &output {
        Some(path) if into_special => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| CliError::Input(format!("cannot write to {}: {e}", path.display())))?;
            match export(&conn, &filter, order, format, &now, &file) {
                Err(StoreError::Io { source, .. })
                    if source.kind() == io::ErrorKind::BrokenPipe =>
                {
                    0
                }
                other => other?,
            }
        }
        Some(path) => {
            // Write beside the target and rename, so a failed export never
            // leaves a truncated file that looks complete. The name keeps
            // the target's whole name: two targets never share one.
            let mut tmp_name = path.as_os_str().to_os_string();
            tmp_name.push(".partial");
            let tmp = PathBuf::from(tmp_name);
            let file = std::fs::File::create(&tmp)
                .map_err(|e| CliError::Input(format!("cannot create {}: {e}", tmp.display())))?;
            let written = export(&conn, &filter, order, format, &now, &file).and_then(|n| {
                file.sync_all().map_err(|e| StoreError::Io {
                    context: format!("writing {}", tmp.display()),
                    source: e,
                })?;
                std::fs::rename(&tmp, path).map_err(|e| StoreError::Io {
                    context: format!("renaming to {}", path.display()),
                    source: e,
                })?;
                Ok(n)
            });
            if written.is_err() {
                // Never left behind: on a full disk it would keep the disk
                // full (and the server's appends failing) until found.
                drop(file);
                let _ = std::fs::remove_file(&tmp);
            }
            written?
        }
        None => match export(&conn, &filter, order, format, &now, io::stdout().lock()) {
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => 0,
            other => other?,
        },
    };
    if let Some(path) = output {
        eprintln!("exported {n} events to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Imported;

    #[test]
    fn an_import_says_where_its_events_went() {
        let said = |committed, range, already| {
            Imported {
                committed,
                already,
                range,
                ..Imported::default()
            }
            .summary()
        };
        assert_eq!(said(0, None, 0), "imported 0 events");
        assert_eq!(said(1, Some((7, 7)), 0), "imported 1 event (seq 7)");
        assert_eq!(said(3, Some((7, 9)), 0), "imported 3 events (seq 7..9)");
        // Another writer's rows between: the span, said as such.
        assert_eq!(
            said(3, Some((7, 12)), 0),
            "imported 3 events (seqs from 7 to 12, interleaved with other appends)"
        );
        assert_eq!(
            said(0, None, 2),
            "imported 0 events; 2 already stored with the same content (matched by id, not written again)"
        );
        let mut dropped = Imported {
            committed: 2,
            range: Some((1, 2)),
            ..Imported::default()
        };
        dropped.dropped(crate::domain::Dropped::Excluded);
        assert_eq!(
            dropped.summary(),
            "imported 2 events (seq 1..2); 1 dropped by the configuration, not stored (exclude_events: 1)"
        );
        dropped.dropped(crate::domain::Dropped::MinLevel);
        dropped.dropped(crate::domain::Dropped::MinLevel);
        assert_eq!(
            dropped.summary(),
            "imported 2 events (seq 1..2); 3 dropped by the configuration, not stored (min_level: 2, exclude_events: 1)"
        );
    }
}
