//! Configuration: defaults < a TOML file (`--config` or `TRAIL_CONFIG`) <
//! `TRAIL_*` environment variables < command-line flags.
//!
//! Every setting remembers where its value came from, so a bad value fails
//! start-up with a message naming the setting and its source, and
//! `trail config` can show both. A secret and the file holding it
//! (`hmac_key` / `hmac_key_file`, `bootstrap_token` / `bootstrap_token_file`)
//! are one choice: the higher layer wins, both at one layer is an error.
//! A `TRAIL_*` variable that names no setting is a warning, not an error.
//!
//! Never printed, in a value, an error or a warning: secrets (wrapped in
//! [`Secret`], whose `Debug` and `Display` print `[redacted]`), the text of
//! the config file (a syntax error gives its line and column, not the
//! parser's excerpt) and the values of environment variables.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::domain::{EventMatch, Level};
use crate::store::{KeySource, Synchronous};

/// The database when nothing says otherwise.
pub const DEFAULT_DB: &str = "./trail-data/trail.db";

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl Source {
    /// The layer's rank: a value from a higher layer beats a lower one.
    fn level(&self) -> u8 {
        match self {
            Source::Default => 0,
            Source::File(_) => 1,
            Source::Env(_) => 2,
            Source::Flag(_) => 3,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(n) => write!(f, "flag --{n}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// A secret: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The one family of forwarding headers the trusted proxies write; the
/// other is never read (a proxy passes a client's own on untouched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyHeaders {
    /// `X-Forwarded-For`, `-Proto`, `-Host`, `-Port` (nginx, Traefik,
    /// Caddy, HAProxy, cloud load balancers).
    #[default]
    XForwarded,
    /// RFC 7239 `Forwarded`.
    Forwarded,
}

impl ProxyHeaders {
    pub fn parse(s: &str) -> Result<ProxyHeaders, String> {
        match s {
            "x-forwarded" => Ok(ProxyHeaders::XForwarded),
            "forwarded" => Ok(ProxyHeaders::Forwarded),
            other => Err(format!("must be x-forwarded or forwarded (got {other:?})")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyHeaders::XForwarded => "x-forwarded",
            ProxyHeaders::Forwarded => "forwarded",
        }
    }
}

/// An address or a CIDR block (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub config_file: Option<PathBuf>,
    pub bind: Setting<String>,
    pub db: Setting<PathBuf>,
    pub synchronous: Setting<Synchronous>,
    pub hmac_key: Setting<Option<Secret>>,
    pub hmac_key_file: Setting<Option<PathBuf>>,
    /// Earlier keys the server verifies with (rows sealed before a key change).
    pub verify_key_files: Setting<Vec<PathBuf>>,
    pub min_level: Setting<Level>,
    pub exclude_events: Setting<EventMatch>,
    pub metadata: Setting<Map<String, Value>>,
    pub host_metadata: Setting<bool>,
    pub max_body_bytes: Setting<usize>,
    pub max_batch: Setting<usize>,
    pub queue_depth: Setting<usize>,
    pub workers: Setting<usize>,
    pub retention_days: Setting<Option<u32>>,
    pub trusted_proxies: Setting<Vec<Cidr>>,
    pub proxy_headers: Setting<ProxyHeaders>,
    pub base_path: Setting<String>,
    pub log_format: Setting<LogFormat>,
    pub metrics_require_admin: Setting<bool>,
    pub insecure_no_auth: Setting<bool>,
    pub bootstrap_token: Setting<Option<Secret>>,
    pub bootstrap_token_file: Setting<Option<PathBuf>>,
}

/// A bad value, named with its setting and source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting} (from {origin}): {message}")]
pub struct ConfigError {
    pub setting: String,
    pub origin: String,
    pub message: String,
}

/// Every setting a config file may hold.
pub const SETTINGS: &[&str] = &[
    "bind",
    "db",
    "data_dir",
    "synchronous",
    "hmac_key",
    "hmac_key_file",
    "verify_key_files",
    "min_level",
    "exclude_events",
    "metadata",
    "host_metadata",
    "max_body_bytes",
    "max_batch",
    "queue_depth",
    "workers",
    "retention_days",
    "trusted_proxies",
    "proxy_headers",
    "base_path",
    "log_format",
    "metrics_require_admin",
    "insecure_no_auth",
    "bootstrap_token",
    "bootstrap_token_file",
];

/// A raw value before parsing.
#[derive(Debug, Clone)]
enum Raw {
    Text(String),
    Toml(toml::Value),
}

/// `TRAIL_*` variables that are not settings but are read all the same: by
/// the program (`TRAIL_CONFIG`, `TRAIL_LOG`) or by the project's tests and
/// scripts, which may leave them in the environment of the `trail` they run.
const OTHER_VARS: &[&str] = &[
    "TRAIL_CONFIG",
    "TRAIL_LOG",
    "TRAIL_BIN",
    "TRAIL_BLESS",
    // The build's (build.rs): cargo also sets it when running tests.
    "TRAIL_COMMIT",
];
/// Prefixes of such variables (the benchmarks' knobs).
const OTHER_PREFIXES: &[&str] = &["TRAIL_BENCH_"];

/// The layers, highest priority last.
#[derive(Default, Clone)]
pub struct Layers {
    file: Option<(PathBuf, toml::Table)>,
    env: BTreeMap<String, String>,
    flags: BTreeMap<String, String>,
    warnings: Vec<String>,
}

/// Names only: the values may be secrets.
impl fmt::Debug for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layers")
            .field(
                "file",
                &self
                    .file
                    .as_ref()
                    .map(|(p, t)| (p, t.keys().collect::<Vec<_>>())),
            )
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("flags", &self.flags.keys().collect::<Vec<_>>())
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl Layers {
    /// Reads the config file (if any) and the process environment.
    pub fn load(config_flag: Option<&Path>) -> Result<Layers, ConfigError> {
        // `vars_os`: `std::env::vars` panics on any variable that is not
        // UTF-8, a trail one or not (it took every command down).
        let mut env = BTreeMap::new();
        for (k, v) in std::env::vars_os() {
            let Some(k) = k.to_str().filter(|k| k.starts_with("TRAIL_")) else {
                continue;
            };
            let v = v.into_string().map_err(|_| ConfigError {
                setting: k.trim_start_matches("TRAIL_").to_ascii_lowercase(),
                origin: format!("environment variable {k}"),
                message: "is not valid UTF-8 (for a path, give it as a flag instead, \
                          such as --db)"
                    .into(),
            })?;
            env.insert(k.to_owned(), v);
        }
        Self::from_parts(config_flag, env)
    }

    pub fn from_parts(
        config_flag: Option<&Path>,
        env: BTreeMap<String, String>,
    ) -> Result<Layers, ConfigError> {
        let (path, source) = match (config_flag, env.get("TRAIL_CONFIG")) {
            (Some(p), _) => (Some(p.to_owned()), Source::Flag("config".into())),
            (None, Some(p)) => (Some(PathBuf::from(p)), Source::Env("TRAIL_CONFIG".into())),
            (None, None) => (None, Source::Default),
        };
        let file = match path {
            None => None,
            Some(p) => {
                let err = |message: String| ConfigError {
                    setting: "config".into(),
                    origin: source.to_string(),
                    message,
                };
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| err(format!("cannot read {}: {e}", p.display())))?;
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| err(toml_error(&p, &text, &e)))?;
                for k in table.keys() {
                    if !SETTINGS.contains(&k.as_str()) {
                        return Err(unknown_key(k, &p));
                    }
                }
                Some((p, table))
            }
        };
        let warnings = env.keys().filter_map(|k| unknown_var(k)).collect();
        Ok(Layers {
            file,
            env,
            flags: BTreeMap::new(),
            warnings,
        })
    }

    /// What start-up should print but not refuse: `TRAIL_*` variables that
    /// name no setting (a typo would otherwise be silently ignored).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Sets a flag's value (`name` as in [`SETTINGS`]).
    pub fn flag(&mut self, name: &str, value: impl Into<String>) {
        self.flags.insert(name.to_owned(), value.into());
    }

    fn raw(&self, name: &str) -> Option<(Raw, Source)> {
        if let Some(v) = self.flags.get(name) {
            return Some((Raw::Text(v.clone()), Source::Flag(name.replace('_', "-"))));
        }
        let var = format!("TRAIL_{}", name.to_ascii_uppercase());
        if let Some(v) = self.env.get(&var) {
            return Some((Raw::Text(v.clone()), Source::Env(var)));
        }
        let (path, table) = self.file.as_ref()?;
        table
            .get(name)
            .map(|v| (Raw::Toml(v.clone()), Source::File(path.clone())))
    }

    fn get<T>(
        &self,
        name: &str,
        default: T,
        parse: impl Fn(&Raw) -> Result<T, String>,
    ) -> Result<Setting<T>, ConfigError> {
        match self.raw(name) {
            None => Ok(Setting {
                value: default,
                source: Source::Default,
            }),
            Some((raw, source)) => match parse(&raw) {
                Ok(value) => Ok(Setting { value, source }),
                Err(message) => Err(ConfigError {
                    setting: name.to_owned(),
                    origin: source.to_string(),
                    message,
                }),
            },
        }
    }

    /// Resolves every setting.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let data_dir = self.get("data_dir", None, path)?;
        let default_db = match &data_dir.value {
            Some(d) => d.join("trail.db"),
            None => PathBuf::from(DEFAULT_DB),
        };
        // An empty value (`TRAIL_DB=`) is a mistake, not "the default".
        let mut db = self.get("db", default_db, |r| {
            path(r)?.ok_or_else(|| "must not be empty".to_owned())
        })?;
        // `db` and `data_dir` are one choice too: the higher layer wins,
        // both at one layer is an error.
        if let Some(dir) = &data_dir.value {
            match db.source.level().cmp(&data_dir.source.level()) {
                std::cmp::Ordering::Greater => {}
                std::cmp::Ordering::Less => {
                    db.value = dir.join("trail.db");
                    db.source = data_dir.source.clone();
                }
                std::cmp::Ordering::Equal => {
                    return Err(ConfigError {
                        setting: "db".into(),
                        origin: db.source.to_string(),
                        message: format!(
                            "data_dir is set too (from {}); set one of them, not both",
                            data_dir.source
                        ),
                    })
                }
            }
        }
        let mut hmac_key = self.get("hmac_key", None, |r| {
            let s = secret_text(r)?;
            crate::domain::HmacKey::from_hex(&s).map_err(|e| e.to_string())?;
            Ok(Some(Secret(s)))
        })?;
        let mut hmac_key_file = self.get("hmac_key_file", None, path)?;
        one_of(
            ("hmac_key", &mut hmac_key),
            ("hmac_key_file", &mut hmac_key_file),
        )?;
        // Read now, so that a missing or bad key file stops every command
        // before it creates anything, with the setting named.
        if let Some(p) = &hmac_key_file.value {
            key_file(p).map_err(|message| ConfigError {
                setting: "hmac_key_file".into(),
                origin: hmac_key_file.source.to_string(),
                message,
            })?;
        }
        let mut bootstrap_token = self.get("bootstrap_token", None, |r| {
            let s = secret_text(r)?;
            crate::store::tokens::check_secret(&s)?;
            Ok(Some(Secret(s)))
        })?;
        let mut bootstrap_token_file = self.get("bootstrap_token_file", None, path)?;
        one_of(
            ("bootstrap_token", &mut bootstrap_token),
            ("bootstrap_token_file", &mut bootstrap_token_file),
        )?;
        Ok(Config {
            config_file: self.file.as_ref().map(|(p, _)| p.clone()),
            bind: self.get("bind", "127.0.0.1:8080".to_owned(), |r| {
                let s = text(r)?;
                s.parse::<std::net::SocketAddr>()
                    .map(|_| s.clone())
                    .map_err(|_| format!("must be IP:PORT such as 0.0.0.0:8080 (got {s:?})"))
            })?,
            db,
            synchronous: self.get("synchronous", Synchronous::Full, |r| Synchronous::parse(&text(r)?))?,
            hmac_key,
            hmac_key_file,
            verify_key_files: self.get("verify_key_files", Vec::new(), |r| {
                list(r)?
                    .into_iter()
                    .map(|s| {
                        let p = PathBuf::from(s);
                        key_file(&p)?;
                        Ok(p)
                    })
                    .collect()
            })?,
            min_level: self.get("min_level", Level::Debug, |r| Level::parse(&text(r)?))?,
            exclude_events: self.get("exclude_events", EventMatch::default(), |r| {
                let items = list(r)?;
                if items.is_empty() {
                    return Ok(EventMatch::default());
                }
                if items.iter().any(|i| i.trim() == "*") {
                    return Err("`*` would drop every event; list types or prefixes such as auth.*".into());
                }
                EventMatch::parse(&items.join(","))
            })?,
            metadata: self.get("metadata", Map::new(), |r| {
                let m = match r {
                    Raw::Toml(toml::Value::Table(t)) => toml_to_json(&toml::Value::Table(t.clone()))
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    Raw::Text(s) => match serde_json::from_str::<Value>(s) {
                        Ok(Value::Object(m)) => m,
                        _ => return Err("must be a JSON object such as {\"env\":\"prod\"} (or a table in the config file)".into()),
                    },
                    Raw::Toml(other) => return Err(format!("must be a table of keys and values, not {}", kind(other))),
                };
                // In TOML every key after `[metadata]` belongs to it: a
                // setting written below the table (`hmac_key = ...`) would
                // be recorded in every event, where it can never be removed.
                match m.keys().find(|k| SETTINGS.contains(&k.as_str())) {
                    Some(k) => Err(format!(
                        "holds {k:?}, the name of a setting: in a config file every key after [metadata] belongs to it; move {k} above [metadata]"
                    )),
                    None => Ok(m),
                }
            })?,
            host_metadata: self.get("host_metadata", true, boolean)?,
            max_body_bytes: self.get("max_body_bytes", 1 << 20, |r| uint(r, 1024, 64 << 20))?,
            max_batch: self.get("max_batch", 1000, |r| uint(r, 1, 100_000))?,
            queue_depth: self.get("queue_depth", 4096, |r| uint(r, 1, 1_000_000))?,
            workers: self.get("workers", 0, |r| uint(r, 0, 1024))?,
            retention_days: self.get("retention_days", None, |r| {
                let n = uint(r, 0, 100_000)?;
                Ok((n > 0).then_some(n as u32))
            })?,
            trusted_proxies: self.get("trusted_proxies", Vec::new(), |r| {
                list(r)?.iter().map(|s| Cidr::parse(s)).collect()
            })?,
            proxy_headers: self.get("proxy_headers", ProxyHeaders::XForwarded, |r| {
                ProxyHeaders::parse(&text(r)?)
            })?,
            base_path: self.get("base_path", String::new(), base_path)?,
            log_format: self.get("log_format", LogFormat::Json, |r| match text(r)?.as_str() {
                "json" => Ok(LogFormat::Json),
                "pretty" => Ok(LogFormat::Pretty),
                other => Err(format!("must be json or pretty (got {other:?})")),
            })?,
            metrics_require_admin: self.get("metrics_require_admin", false, boolean)?,
            insecure_no_auth: self.get("insecure_no_auth", false, boolean)?,
            bootstrap_token,
            bootstrap_token_file,
        })
    }
}

/// A TOML value's type as a message names it: "not a float".
fn kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// A secret: text only (a number in the file is a mistake, not a secret).
fn secret_text(r: &Raw) -> Result<String, String> {
    match r {
        Raw::Toml(toml::Value::Integer(_)) => Err("must be a string, not an integer".into()),
        other => text(other),
    }
}

fn text(r: &Raw) -> Result<String, String> {
    match r {
        Raw::Text(s) => Ok(s.clone()),
        Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
        Raw::Toml(toml::Value::Integer(i)) => Ok(i.to_string()),
        Raw::Toml(other) => Err(format!("must be a string, not {}", kind(other))),
    }
}

/// A file name: an empty one is a mistake (`TRAIL_HMAC_KEY_FILE=`), not "none".
fn path(r: &Raw) -> Result<Option<PathBuf>, String> {
    let s = text(r)?;
    if s.trim().is_empty() {
        return Err("is empty: name a file, or leave the setting out".into());
    }
    Ok(Some(PathBuf::from(s)))
}

fn uint(r: &Raw, min: u64, max: u64) -> Result<usize, String> {
    let want = format!("must be a whole number from {min} to {max}");
    let n = match r {
        Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok(),
        Raw::Toml(toml::Value::String(s)) | Raw::Text(s) => s.trim().parse::<u64>().ok(),
        Raw::Toml(other) => return Err(format!("{want}, not {}", kind(other))),
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n as usize),
        _ => Err(want),
    }
}

fn boolean(r: &Raw) -> Result<bool, String> {
    let s = match r {
        Raw::Toml(toml::Value::Boolean(b)) => return Ok(*b),
        Raw::Toml(toml::Value::Integer(i)) => i.to_string(),
        Raw::Toml(toml::Value::String(s)) | Raw::Text(s) => s.clone(),
        Raw::Toml(other) => return Err(format!("must be true or false, not {}", kind(other))),
    };
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        s => Err(format!("must be true or false (got {s:?})")),
    }
}

/// A list: a TOML array of strings, or comma-separated text. An empty text
/// is the empty list; an empty item (`10.0.0.1,,`) is refused, as a typo
/// would otherwise pass unseen.
fn list(r: &Raw) -> Result<Vec<String>, String> {
    let items: Vec<String> = match r {
        Raw::Toml(toml::Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    format!("must be a list of strings; item {} is {}", i + 1, kind(v))
                })
            })
            .collect::<Result<_, _>>()?,
        Raw::Toml(toml::Value::String(s)) | Raw::Text(s) => {
            if s.trim().is_empty() {
                return Ok(Vec::new());
            }
            s.split(',').map(str::to_owned).collect()
        }
        Raw::Toml(other) => {
            return Err(format!(
                "must be a list of strings (or one comma-separated string), not {}",
                kind(other)
            ))
        }
    };
    let n = items.len();
    items
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.trim();
            if s.is_empty() {
                Err(format!("item {} of {n} is empty", i + 1))
            } else {
                Ok(s.to_owned())
            }
        })
        .collect()
}

/// [`base_path`] of a command-line value.
pub fn parse_base_path(s: &str) -> Result<String, String> {
    base_path(&Raw::Text(s.to_owned()))
}

/// A URL path prefix such as `/audit` or `/a/b`: segments of letters,
/// digits and `-_.~`, none empty, `.` or `..`. `/` alone (or nothing) is the
/// root; one trailing `/` is dropped.
fn base_path(r: &Raw) -> Result<String, String> {
    let s = text(r)?;
    if s.is_empty() || s == "/" {
        return Ok(String::new());
    }
    let want =
        "must be a path such as /audit: segments of letters, digits and -_.~ after single slashes";
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!("{want} (got {s:?}, which does not start with /)"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    for seg in rest.split('/') {
        let why = if seg.is_empty() {
            "an empty segment (//)".to_owned()
        } else if seg == "." || seg == ".." {
            format!("a {seg:?} segment")
        } else if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.~".contains(*c)))
        {
            format!("the character {c:?}")
        } else {
            continue;
        };
        return Err(format!("{want} (got {s:?}, which has {why})"));
    }
    Ok(format!("/{rest}"))
}

/// Reads and checks a key file, for the error to name the setting.
fn key_file(p: &Path) -> Result<(), String> {
    match crate::store::keys::parse_key_file(p) {
        Ok(_) => Ok(()),
        Err(crate::store::StoreError::Key(m)) => Err(m),
        Err(e) => Err(e.to_string()),
    }
}

/// Two settings that are one choice, a secret or the file holding it: the
/// one set at the higher layer wins and the other is dropped (its source
/// kept, so `trail config` can say it was overridden); both at the same
/// layer is an error naming both.
fn one_of<A, B>(
    (a_name, a): (&str, &mut Setting<Option<A>>),
    (b_name, b): (&str, &mut Setting<Option<B>>),
) -> Result<(), ConfigError> {
    if a.value.is_none() || b.value.is_none() {
        return Ok(());
    }
    match a.source.level().cmp(&b.source.level()) {
        std::cmp::Ordering::Greater => b.value = None,
        std::cmp::Ordering::Less => a.value = None,
        std::cmp::Ordering::Equal => {
            return Err(ConfigError {
                setting: a_name.to_owned(),
                origin: a.source.to_string(),
                message: format!(
                    "{b_name} is set too (from {}); set one of them, not both",
                    b.source
                ),
            })
        }
    }
    Ok(())
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// A TOML syntax error as file, line, column and the parser's message. Never
/// the parser's excerpt of the file: the line may hold `hmac_key` or
/// `bootstrap_token`.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let at = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!(" at line {line}, column {column}")
        }
        None => String::new(),
    };
    format!(
        "{} is not valid TOML{at}: {}",
        path.display(),
        e.message().trim_end()
    )
}

/// The warning for a `TRAIL_*` variable that is neither a setting nor one of
/// [`OTHER_VARS`], with the nearest name if one is close. Names only, never
/// the value: it may be a secret.
fn unknown_var(var: &str) -> Option<String> {
    let known: Vec<String> = SETTINGS
        .iter()
        .map(|s| format!("TRAIL_{}", s.to_ascii_uppercase()))
        .chain(OTHER_VARS.iter().map(|v| (*v).to_owned()))
        .collect();
    if known.iter().any(|k| k == var) || OTHER_PREFIXES.iter().any(|p| var.starts_with(p)) {
        return None;
    }
    let upper = var.to_ascii_uppercase();
    let hint = nearest(
        upper.strip_prefix("TRAIL_").unwrap_or(&upper),
        known.iter().map(|k| &k["TRAIL_".len()..]),
    )
    .map_or(String::new(), |k| format!("; did you mean TRAIL_{k}?"));
    Some(format!(
        "environment variable {var} is not a trail setting and is ignored{hint}"
    ))
}

/// A config file's key that is no setting. Named, with the nearest setting
/// if one is close, unless it does not look like a setting's name at all:
/// then it may be a secret pasted in the wrong place, and is not printed.
fn unknown_key(key: &str, file: &Path) -> ConfigError {
    let known = format!("known settings are {}", SETTINGS.join(", "));
    let looks_like_a_name = key.len() <= 32
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let (setting, message) = if looks_like_a_name {
        let hint = nearest(&key.to_ascii_lowercase(), SETTINGS.iter().copied())
            .map_or(String::new(), |k| format!("did you mean {k}? "));
        (key.to_owned(), format!("unknown setting; {hint}{known}"))
    } else {
        (
            "(a key not shown)".to_owned(),
            format!(
                "unknown setting of {} characters, not printed in case it is a secret; {known}",
                key.chars().count()
            ),
        )
    };
    ConfigError {
        setting,
        origin: Source::File(file.to_owned()).to_string(),
        message,
    }
}

/// The known name closest to `name`, if it is close enough to be a typo:
/// one edit for short names, two otherwise.
fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(name, k), k))
        .min()
        .filter(|(d, k)| *d <= if k.len() <= 4 { 1 } else { 2 })
        .map(|(_, k)| k)
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

impl Config {
    pub fn key_source(&self) -> KeySource {
        KeySource {
            key_hex: self.hmac_key.value.as_ref().map(|s| s.expose().to_owned()),
            key_file: self.hmac_key_file.value.clone(),
            verify_files: self.verify_key_files.value.clone(),
        }
    }

    /// `min_level` and `exclude_events`: what every way in (HTTP, `trail
    /// append`, `trail import`) drops instead of storing.
    pub fn drop_policy(&self) -> crate::domain::DropPolicy {
        crate::domain::DropPolicy {
            min_level: self.min_level.value,
            exclude_events: self.exclude_events.value.clone(),
        }
    }

    /// The metadata trail adds to every event under `metadata.trail`, by
    /// the server and by `trail append` / `trail import` alike (`pid` is
    /// the writing process's).
    pub fn server_metadata(&self) -> Map<String, Value> {
        let mut m = self.metadata.value.clone();
        if self.host_metadata.value {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_owned())
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "unknown".into());
            m.entry("host").or_insert(Value::String(host));
            m.entry("pid").or_insert(Value::from(std::process::id()));
            m.entry("version")
                .or_insert(Value::String(env!("CARGO_PKG_VERSION").into()));
        }
        m
    }

    /// The bootstrap token's secret, from the setting or its file.
    pub fn bootstrap_secret(&self) -> Result<Option<Secret>, ConfigError> {
        if let Some(s) = &self.bootstrap_token.value {
            return Ok(Some(s.clone()));
        }
        let Some(path) = &self.bootstrap_token_file.value else {
            return Ok(None);
        };
        let err = |message: String| ConfigError {
            setting: "bootstrap_token_file".into(),
            origin: self.bootstrap_token_file.source.to_string(),
            message,
        };
        let s = crate::store::keys::read_secret_file(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let s = s.trim().to_owned();
        crate::store::tokens::check_secret(&s).map_err(err)?;
        Ok(Some(Secret(s)))
    }

    /// `name = value  # source` lines, secrets redacted.
    pub fn describe(&self) -> Vec<(String, String, String)> {
        fn row<T>(
            name: &str,
            s: &Setting<T>,
            show: impl Fn(&T) -> String,
        ) -> (String, String, String) {
            (name.to_owned(), show(&s.value), s.source.to_string())
        }
        /// One of a secret and the file holding it (see `one_of`): its
        /// value, or that the other, set at a higher layer, overrode it.
        fn one_row<T, U>(
            name: &str,
            s: &Setting<Option<T>>,
            other: &Setting<Option<U>>,
            other_name: &str,
            show: impl Fn(&T) -> String,
        ) -> (String, String, String) {
            let value = match &s.value {
                Some(v) => show(v),
                None if s.source != Source::Default => {
                    format!("(overridden by {other_name} from {})", other.source)
                }
                None => "(none)".into(),
            };
            (name.to_owned(), value, s.source.to_string())
        }
        vec![
            row("bind", &self.bind, |v| v.clone()),
            row("db", &self.db, |v| v.display().to_string()),
            (
                "data_dir".to_owned(),
                self.db
                    .value
                    .parent()
                    .map_or(String::new(), |d| d.display().to_string()),
                format!("derived from db ({})", self.db.source),
            ),
            row("synchronous", &self.synchronous, |v| {
                format!("{v:?}").to_lowercase()
            }),
            one_row(
                "hmac_key",
                &self.hmac_key,
                &self.hmac_key_file,
                "hmac_key_file",
                |_| "[redacted]".into(),
            ),
            if self.hmac_key.value.is_none() && self.hmac_key_file.value.is_none() {
                // Neither: the key beside the database (see `store::keys`).
                let p = crate::store::keys::default_key_path(&self.db.value);
                let how = if p.exists() {
                    ""
                } else {
                    ", created on first use"
                };
                (
                    "hmac_key_file".to_owned(),
                    format!("(default: {}{how})", p.display()),
                    Source::Default.to_string(),
                )
            } else {
                one_row(
                    "hmac_key_file",
                    &self.hmac_key_file,
                    &self.hmac_key,
                    "hmac_key",
                    |p| p.display().to_string(),
                )
            },
            row("verify_key_files", &self.verify_key_files, |v| {
                if v.is_empty() {
                    "(none)".into()
                } else {
                    let items: Vec<String> = v.iter().map(|p| p.display().to_string()).collect();
                    items.join(",")
                }
            }),
            row("min_level", &self.min_level, |v| v.as_str().into()),
            row("exclude_events", &self.exclude_events, |v| {
                let mut items: Vec<String> =
                    v.exact.iter().map(|e| e.as_str().to_owned()).collect();
                items.extend(v.prefixes.iter().map(|p| format!("{p}*")));
                items.join(",")
            }),
            row("metadata", &self.metadata, |v| {
                Value::Object(v.clone()).to_string()
            }),
            row("host_metadata", &self.host_metadata, |v| v.to_string()),
            row("max_body_bytes", &self.max_body_bytes, |v| v.to_string()),
            row("max_batch", &self.max_batch, |v| v.to_string()),
            row("queue_depth", &self.queue_depth, |v| v.to_string()),
            row("workers", &self.workers, |v| {
                if *v == 0 {
                    "0 (one per core)".into()
                } else {
                    v.to_string()
                }
            }),
            row("retention_days", &self.retention_days, |v| {
                v.map_or("0 (keep forever)".into(), |d| d.to_string())
            }),
            row("trusted_proxies", &self.trusted_proxies, |v| {
                v.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            row("proxy_headers", &self.proxy_headers, |v| v.as_str().into()),
            row("base_path", &self.base_path, |v| v.clone()),
            row("log_format", &self.log_format, |v| {
                format!("{v:?}").to_lowercase()
            }),
            row("metrics_require_admin", &self.metrics_require_admin, |v| {
                v.to_string()
            }),
            row("insecure_no_auth", &self.insecure_no_auth, |v| {
                v.to_string()
            }),
            one_row(
                "bootstrap_token",
                &self.bootstrap_token,
                &self.bootstrap_token_file,
                "bootstrap_token_file",
                |_| "[redacted]".into(),
            ),
            one_row(
                "bootstrap_token_file",
                &self.bootstrap_token_file,
                &self.bootstrap_token,
                "bootstrap_token",
                |p| p.display().to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_default_file_env_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trail.toml");
        std::fs::write(
            &file,
            "queue_depth = 10\nmax_batch = 20\nmax_body_bytes = 4096\nbind = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let mut l = Layers::from_parts(
            Some(&file),
            env(&[("TRAIL_MAX_BATCH", "30"), ("TRAIL_MAX_BODY_BYTES", "8192")]),
        )
        .unwrap();
        l.flag("max_body_bytes", "16384");
        let c = l.resolve().unwrap();
        assert_eq!(
            (c.queue_depth.value, c.queue_depth.source.clone()),
            (10, Source::File(file.clone()))
        );
        assert_eq!(
            (c.max_batch.value, c.max_batch.source.clone()),
            (30, Source::Env("TRAIL_MAX_BATCH".into()))
        );
        assert_eq!(
            (c.max_body_bytes.value, c.max_body_bytes.source.clone()),
            (16384, Source::Flag("max-body-bytes".into()))
        );
        assert_eq!(c.bind.value, "127.0.0.1:9000");
        assert_eq!((c.workers.value, c.workers.source), (0, Source::Default));
    }

    #[test]
    fn a_bad_value_names_the_setting_and_where_it_came_from() {
        let err = Layers::from_parts(None, env(&[("TRAIL_QUEUE_DEPTH", "lots")]))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting queue_depth (from environment variable TRAIL_QUEUE_DEPTH): must be a whole number from 1 to 1000000"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        // The error resolving a config file holding `text`.
        let refused = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Layers::from_parts(Some(&file), env(&[]))
                .unwrap()
                .resolve()
                .unwrap_err()
        };
        let err = refused("synchronous = \"sometimes\"");
        assert_eq!(
            err.to_string(),
            format!("setting synchronous (from config file {}): must be full or normal (got \"sometimes\")", file.display())
        );
        std::fs::write(&file, "colour = 1").unwrap();
        let err = Layers::from_parts(Some(&file), env(&[])).unwrap_err();
        assert_eq!(err.setting, "colour");
        assert!(err.message.starts_with("unknown setting"), "{err}");
        // A setting written below [metadata] is in the table, not a
        // setting: refused, or the key would be in every event for good.
        let key = "ab".repeat(32);
        let err = refused(&format!(
            "[metadata]\nenv = \"prod\"\nhmac_key = \"{key}\"\n"
        ));
        assert_eq!(
            err.to_string(),
            format!("setting metadata (from config file {}): holds \"hmac_key\", the name of a setting: in a config file every key after [metadata] belongs to it; move hmac_key above [metadata]", file.display())
        );
        assert!(!err.to_string().contains(&key));
    }

    #[test]
    fn secrets_are_redacted() {
        let c = Layers::from_parts(None, env(&[("TRAIL_HMAC_KEY", &"ab".repeat(32))]))
            .unwrap()
            .resolve()
            .unwrap();
        let printed = format!("{:?} {:?}", c, c.describe());
        assert!(!printed.contains(&"ab".repeat(32)), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn a_secret_and_its_file_are_one_choice() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "a-token-from-the-file-0123456789\n").unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "bootstrap_token = \"a-token-from-the-config-file-0123\"\n",
        )
        .unwrap();
        let tf = token_file.to_str().unwrap();
        // The environment's file beats the config file's token.
        let c = Layers::from_parts(Some(&file), env(&[("TRAIL_BOOTSTRAP_TOKEN_FILE", tf)]))
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(
            c.bootstrap_secret().unwrap().unwrap().expose(),
            "a-token-from-the-file-0123456789"
        );
        assert_eq!(c.bootstrap_token.value, None);
        // Both in the environment: refused, naming both.
        let err = Layers::from_parts(
            None,
            env(&[
                ("TRAIL_BOOTSTRAP_TOKEN_FILE", tf),
                ("TRAIL_BOOTSTRAP_TOKEN", "a-token-from-the-environment-01"),
            ]),
        )
        .unwrap()
        .resolve()
        .unwrap_err();
        assert_eq!(err.setting, "bootstrap_token");
        assert!(err.message.contains("bootstrap_token_file"), "{err}");
    }

    #[test]
    fn lists_refuse_empty_items_but_not_an_empty_value() {
        let t = |s: &str| list(&Raw::Text(s.into()));
        assert_eq!(t("a, b").unwrap(), ["a", "b"]);
        assert_eq!(t(" ").unwrap(), Vec::<String>::new());
        assert_eq!(t("a,,").unwrap_err(), "item 2 of 3 is empty");
        assert_eq!(t(",a").unwrap_err(), "item 1 of 2 is empty");
    }

    #[test]
    fn base_paths() {
        let b = |s: &str| base_path(&Raw::Text(s.into()));
        for (given, kept) in [
            ("", ""),
            ("/", ""),
            ("/audit/", "/audit"),
            ("/a/b.c", "/a/b.c"),
        ] {
            assert_eq!(b(given).unwrap(), kept, "{given}");
        }
        for bad in [
            "audit", "//", "/a//", "/a//b", "/.", "/a/..", "/a b", "/a%2e", "/a?b",
        ] {
            assert!(b(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn near_names_are_suggested() {
        assert_eq!(edit_distance("QUEUE_DEPHT", "QUEUE_DEPTH"), 1);
        assert_eq!(edit_distance("", "DB"), 2);
        let hint = |v: &str| unknown_var(v);
        assert_eq!(hint("TRAIL_LOG"), None);
        assert_eq!(hint("TRAIL_BENCH_ANYTHING"), None);
        assert!(hint("TRAIL_WORKER")
            .unwrap()
            .ends_with("did you mean TRAIL_WORKERS?"));
        assert!(hint("TRAIL_SOMETHING").unwrap().ends_with("is ignored"));
        assert_eq!(
            nearest("queue_dept", SETTINGS.iter().copied()),
            Some("queue_depth")
        );
        assert_eq!(nearest("colour", SETTINGS.iter().copied()), None);
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }
}
