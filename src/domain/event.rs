//! Event input: validation of what clients send, and the canonical `entry`
//! encoding that is hashed and stored byte for byte.
//!
//! The encoding is a public contract (DESIGN.md "Chain format"): compact JSON,
//! members in a fixed order, absent optional members omitted (never `null`),
//! object keys of `details` and `metadata` sorted recursively. It is written
//! by hand here rather than through a serde derive so that no crate feature
//! (serde_json's `preserve_order`, say) can ever change the bytes.

use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::error::{FieldError, InputError};

/// Largest serialized size of `details` or `metadata`.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024;
/// Deepest nesting of `details` or `metadata` (the object itself is level 1).
pub const MAX_OBJECT_DEPTH: usize = 32;
/// Longest free-text member (actor, resource, user agent, request id).
pub const MAX_TEXT_LEN: usize = 1024;
/// Entry format version written in `v`.
pub const ENTRY_VERSION: u64 = 1;

/// Severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];

    /// Accepts any case, and `warn` for `warning`.
    pub fn parse(s: &str) -> Result<Level, String> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warning" | "warn" => Ok(Level::Warning),
            "error" => Ok(Level::Error),
            "critical" => Ok(Level::Critical),
            _ => Err(format!(
                "must be one of debug, info, warning, error, critical (got {:?})",
                truncate_for_message(s)
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }

    /// This level and every more severe one.
    pub fn at_least(self) -> impl Iterator<Item = Level> {
        Level::ALL.into_iter().filter(move |l| *l >= self)
    }
}

/// An event type: 1–128 of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(String);

impl EventType {
    pub fn parse(s: &str) -> Result<EventType, String> {
        if s.is_empty() || s.len() > 128 {
            return Err(format!(
                "must be 1 to 128 characters (got {})",
                s.chars().count()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
        {
            return Err(format!(
                "may hold only letters, digits and _ . : - (found {c:?})"
            ));
        }
        Ok(EventType(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client-chosen event id: 1–128 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    pub fn parse(s: &str) -> Result<EventId, String> {
        if s.is_empty() || s.len() > 128 {
            return Err(format!(
                "must be 1 to 128 characters (got {})",
                s.chars().count()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
        {
            return Err(format!(
                "may hold only letters, digits, _ and - (found {c:?})"
            ));
        }
        Ok(EventId(s.to_owned()))
    }
    /// A fresh, time-ordered id (UUID v7) for events that come without one.
    pub fn generate() -> EventId {
        EventId(uuid::Uuid::now_v7().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated event, as a client asked for it, before the writer gives it a
/// place in the chain. Fields are private: the only way to get one is
/// [`NewEvent::from_json`] (or [`NewEvent::builder`]), which enforce every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    id: Option<EventId>,
    event: EventType,
    level: Level,
    actor: Option<String>,
    resource: Option<String>,
    success: Option<bool>,
    source_ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    occurred_at: Option<String>,
    details: Option<Map<String, Value>>,
    metadata: Option<Map<String, Value>>,
    /// Members trail filled in from the request (not sent by the client):
    /// recorded in `metadata.trail.filled`, left out of retry comparisons.
    filled: Filled,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Filled {
    source_ip: bool,
    request_id: bool,
}

/// The position and identity the writer gives an event.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    pub seq: u64,
    pub id: &'a str,
    pub timestamp: &'a str,
    pub key_id: &'a str,
}

/// The member of `metadata` that holds what trail adds; clients may not set it.
pub const SERVER_METADATA_KEY: &str = "trail";

/// Member names accepted on input, with the canonical member each maps to.
/// The seed systems' names are aliases.
const ALIASES: &[(&str, &str)] = &[
    ("id", "id"),
    ("event", "event"),
    ("type", "event"),
    ("level", "level"),
    ("severity", "level"),
    ("actor", "actor"),
    ("user", "actor"),
    ("user_id", "actor"),
    ("resource", "resource"),
    ("target", "resource"),
    ("success", "success"),
    ("source_ip", "source_ip"),
    ("ip_address", "source_ip"),
    ("source", "source_ip"),
    ("user_agent", "user_agent"),
    ("request_id", "request_id"),
    ("occurred_at", "occurred_at"),
    ("details", "details"),
    ("metadata", "metadata"),
];

/// Members that trail sets itself; a client sending one gets a precise error.
const SERVER_MEMBERS: &[&str] = &["v", "seq", "timestamp", "key_id", "chain_hash", "signature"];

impl NewEvent {
    /// Validates one event object. Every problem is reported, each naming its
    /// field, so a client can fix them all at once.
    pub fn from_json(value: &Value) -> Result<NewEvent, InputError> {
        let obj = match value {
            Value::Object(m) => m,
            other => {
                return Err(InputError::single(
                    "",
                    format!("an event must be a JSON object, not {}", json_type(other)),
                ))
            }
        };
        let mut errors = Vec::new();
        let mut seen: Vec<(&str, &str, &Value)> = Vec::new();
        for (name, v) in obj {
            if let Some((_, canon)) = ALIASES.iter().find(|(a, _)| a == name) {
                if let Some((other, _, _)) = seen.iter().find(|(_, c, _)| c == canon) {
                    errors.push(FieldError::new(
                        name,
                        format!("given twice: {other} and {name} both mean {canon}"),
                    ));
                    continue;
                }
                seen.push((name.as_str(), canon, v));
            } else if SERVER_MEMBERS.contains(&name.as_str()) {
                errors.push(FieldError::new(name, "is set by trail and may not be sent"));
            } else {
                errors.push(FieldError::new(name, "unknown field"));
            }
        }
        let get = |canon: &str| {
            seen.iter()
                .find(|(_, c, _)| *c == canon)
                .map(|(n, _, v)| (*n, *v))
        };

        let id = match get("id") {
            None => None,
            Some((n, v)) => text(n, v, &mut errors).and_then(|s| match EventId::parse(s) {
                Ok(id) => Some(id),
                Err(m) => {
                    errors.push(FieldError::new(n, m));
                    None
                }
            }),
        };
        let event = match get("event") {
            None => {
                errors.push(FieldError::new("event", "is required"));
                None
            }
            Some((n, v)) => text(n, v, &mut errors).and_then(|s| match EventType::parse(s) {
                Ok(e) => Some(e),
                Err(m) => {
                    errors.push(FieldError::new(n, m));
                    None
                }
            }),
        };
        let level = match get("level") {
            None => Some(Level::Info),
            Some((n, v)) => text(n, v, &mut errors).and_then(|s| match Level::parse(s) {
                Ok(l) => Some(l),
                Err(m) => {
                    errors.push(FieldError::new(n, m));
                    None
                }
            }),
        };
        let short = |canon: &str, errors: &mut Vec<FieldError>| -> Option<String> {
            let (n, v) = get(canon)?;
            // The seed systems' user ids may be numbers: an integer sent as
            // `user_id` or `user` is stored as its decimal text.
            if matches!(n, "user_id" | "user") {
                if let Some(i) = v
                    .as_i64()
                    .map(|i| i.to_string())
                    .or(v.as_u64().map(|u| u.to_string()))
                {
                    return Some(i);
                }
                if !v.is_string() {
                    errors.push(FieldError::new(
                        n,
                        format!(
                            "must be a string or an integer, not {}",
                            match v {
                                Value::Number(_) => "a number with a fraction or an exponent",
                                other => json_type(other),
                            }
                        ),
                    ));
                    return None;
                }
            }
            let s = text(n, v, errors)?;
            match check_text(s) {
                Ok(()) => Some(s.to_owned()),
                Err(m) => {
                    errors.push(FieldError::new(n, m));
                    None
                }
            }
        };
        let actor = short("actor", &mut errors);
        let resource = short("resource", &mut errors);
        let user_agent = short("user_agent", &mut errors);
        let request_id = short("request_id", &mut errors);
        let success = match get("success") {
            None => None,
            Some((_, Value::Bool(b))) => Some(*b),
            Some((n, other)) => {
                errors.push(FieldError::new(
                    n,
                    format!("must be true or false, not {}", json_type(other)),
                ));
                None
            }
        };
        let source_ip = match get("source_ip") {
            None => None,
            Some((n, v)) => text(n, v, &mut errors).and_then(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Some(ip.to_string()),
                Err(_) => {
                    errors.push(FieldError::new(
                        n,
                        format!(
                            "must be an IPv4 or IPv6 address (got {:?})",
                            truncate_for_message(s)
                        ),
                    ));
                    None
                }
            }),
        };
        let occurred_at = match get("occurred_at") {
            None => None,
            Some((n, v)) => text(n, v, &mut errors).and_then(|s| match parse_occurred_at(s) {
                Ok(t) => Some(t),
                Err(m) => {
                    errors.push(FieldError::new(n, m));
                    None
                }
            }),
        };
        let details = get("details").and_then(|(n, v)| object(n, v, &mut errors));
        let metadata = get("metadata").and_then(|(n, v)| object(n, v, &mut errors));
        if metadata
            .as_ref()
            .is_some_and(|m| m.contains_key(SERVER_METADATA_KEY))
        {
            errors.push(FieldError::new(
                format!("metadata.{SERVER_METADATA_KEY}"),
                "is reserved for the metadata trail adds itself",
            ));
        }

        if !errors.is_empty() {
            return Err(InputError { errors });
        }
        Ok(NewEvent {
            id,
            event: event.expect("checked above"),
            level: level.expect("checked above"),
            actor,
            resource,
            success,
            source_ip,
            user_agent,
            request_id,
            occurred_at,
            details,
            metadata,
            filled: Filled::default(),
        })
    }

    /// The shortest way to a valid event, for trail's own events and the CLI.
    pub fn builder(event: EventType) -> NewEvent {
        NewEvent {
            id: None,
            event,
            level: Level::Info,
            actor: None,
            resource: None,
            success: None,
            source_ip: None,
            user_agent: None,
            request_id: None,
            occurred_at: None,
            details: None,
            metadata: None,
            filled: Filled::default(),
        }
    }

    /// Fills `source_ip` and `request_id` from the request when the client
    /// did not send them.
    pub fn fill_from_request(&mut self, source_ip: Option<IpAddr>, request_id: Option<&str>) {
        if self.source_ip.is_none() {
            if let Some(ip) = source_ip {
                self.source_ip = Some(ip.to_string());
                self.filled.source_ip = true;
            }
        }
        if self.request_id.is_none() {
            if let Some(id) = request_id.filter(|id| check_text(id).is_ok()) {
                self.request_id = Some(id.to_owned());
                self.filled.request_id = true;
            }
        }
    }

    pub fn id(&self) -> Option<&EventId> {
        self.id.as_ref()
    }
    pub fn event(&self) -> &EventType {
        &self.event
    }
    pub fn level(&self) -> Level {
        self.level
    }

    /// The canonical `entry` bytes for this event at `place`.
    pub fn encode(&self, place: Placement<'_>) -> String {
        self.encode_with(place, None)
    }

    /// The canonical `entry`, with `server` (the metadata trail adds to every
    /// event: host, pid, version, configured keys) under `metadata.trail`.
    /// Kept apart from the client's content, so a retry still matches.
    pub fn encode_with(&self, place: Placement<'_>, server: Option<&Map<String, Value>>) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"v\":");
        let _ = write!(out, "{ENTRY_VERSION}");
        let _ = write!(out, ",\"seq\":{}", place.seq);
        member_str(&mut out, "id", place.id);
        member_str(&mut out, "timestamp", place.timestamp);
        self.encode_content(&mut out, server.filter(|m| !m.is_empty()), false);
        member_str(&mut out, "key_id", place.key_id);
        out.push('}');
        out
    }

    /// The members a client chose, in entry order; two events with the same
    /// content encode to the same string (used for idempotent retries).
    pub fn content_fingerprint(&self) -> String {
        let mut out = String::with_capacity(200);
        self.encode_content(&mut out, None, true);
        out
    }

    fn encode_content(
        &self,
        out: &mut String,
        server: Option<&Map<String, Value>>,
        fingerprint: bool,
    ) {
        member_str(out, "event", self.event.as_str());
        member_str(out, "level", self.level.as_str());
        if let Some(s) = &self.actor {
            member_str(out, "actor", s);
        }
        if let Some(s) = &self.resource {
            member_str(out, "resource", s);
        }
        if let Some(b) = self.success {
            out.push_str(if b {
                ",\"success\":true"
            } else {
                ",\"success\":false"
            });
        }
        if let Some(s) = self
            .source_ip
            .as_ref()
            .filter(|_| !(fingerprint && self.filled.source_ip))
        {
            member_str(out, "source_ip", s);
        }
        if let Some(s) = &self.user_agent {
            member_str(out, "user_agent", s);
        }
        if let Some(s) = self
            .request_id
            .as_ref()
            .filter(|_| !(fingerprint && self.filled.request_id))
        {
            member_str(out, "request_id", s);
        }
        if let Some(s) = &self.occurred_at {
            member_str(out, "occurred_at", s);
        }
        if let Some(m) = &self.details {
            out.push_str(",\"details\":");
            write_canonical_object(out, m);
        }
        let mut filled = Vec::new();
        if self.filled.request_id {
            filled.push(Value::from("request_id"));
        }
        if self.filled.source_ip {
            filled.push(Value::from("source_ip"));
        }
        let with_filled;
        let server = if fingerprint || filled.is_empty() {
            server
        } else {
            let mut m = server.cloned().unwrap_or_default();
            m.insert("filled".into(), Value::Array(filled));
            with_filled = m;
            Some(&with_filled)
        };
        // An empty `metadata` cannot be told from none once trail's own
        // member is taken out of a stored entry, so a retry compares them as
        // the same content.
        let metadata = self
            .metadata
            .as_ref()
            .filter(|m| !(fingerprint && m.is_empty()));
        match (metadata, server) {
            (None, None) => {}
            (Some(m), None) => {
                out.push_str(",\"metadata\":");
                write_canonical_object(out, m);
            }
            (m, Some(server)) => {
                let mut all = m.cloned().unwrap_or_default();
                all.insert(SERVER_METADATA_KEY.into(), Value::Object(server.clone()));
                out.push_str(",\"metadata\":");
                write_canonical_object(out, &all);
            }
        }
    }

    // Setters used by trail's own code paths (CLI flags, self-audit events);
    // each keeps the same rules as `from_json`.
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }
    pub fn with_actor(mut self, actor: &str) -> Result<Self, String> {
        check_text(actor)?;
        self.actor = Some(actor.to_owned());
        Ok(self)
    }
    pub fn with_resource(mut self, resource: &str) -> Result<Self, String> {
        check_text(resource)?;
        self.resource = Some(resource.to_owned());
        Ok(self)
    }
    pub fn with_success(mut self, success: bool) -> Self {
        self.success = Some(success);
        self
    }
    pub fn with_details(mut self, details: Map<String, Value>) -> Result<Self, String> {
        check_object(&details)?;
        self.details = Some(details);
        Ok(self)
    }
}

fn text<'v>(name: &str, v: &'v Value, errors: &mut Vec<FieldError>) -> Option<&'v str> {
    match v {
        Value::String(s) => Some(s),
        other => {
            errors.push(FieldError::new(
                name,
                format!("must be a string, not {}", json_type(other)),
            ));
            None
        }
    }
}

fn check_text(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_TEXT_LEN {
        return Err(format!(
            "must be at most {MAX_TEXT_LEN} bytes (got {})",
            s.len()
        ));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

fn object(name: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => match check_object(m) {
            Ok(()) => Some(m.clone()),
            Err(msg) => {
                errors.push(FieldError::new(name, msg));
                None
            }
        },
        other => {
            errors.push(FieldError::new(
                name,
                format!("must be a JSON object, not {}", json_type(other)),
            ));
            None
        }
    }
}

fn check_object(m: &Map<String, Value>) -> Result<(), String> {
    let depth = object_depth(m);
    if depth > MAX_OBJECT_DEPTH {
        return Err(format!(
            "is nested {depth} levels deep; at most {MAX_OBJECT_DEPTH} are allowed"
        ));
    }
    let mut s = String::new();
    write_canonical_object(&mut s, m);
    if s.len() > MAX_OBJECT_BYTES {
        return Err(format!(
            "is {} bytes serialized; at most {MAX_OBJECT_BYTES} are allowed",
            s.len()
        ));
    }
    Ok(())
}

fn object_depth(m: &Map<String, Value>) -> usize {
    1 + m.values().map(value_depth).max().unwrap_or(0)
}

fn value_depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => object_depth(m),
        Value::Array(a) => 1 + a.iter().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate_for_message(s: &str) -> String {
    s.chars().take(64).collect()
}

fn member_str(out: &mut String, name: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
    write_json_string(out, value);
}

/// JSON string escaping as serde_json does it: `"` `\` and control
/// characters; everything else, non-ASCII included, is written as UTF-8.
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Compact JSON with object keys sorted (by code point, recursively).
pub fn write_canonical(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_json_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => write_canonical_object(out, m),
    }
}

fn write_canonical_object(out: &mut String, m: &Map<String, Value>) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_unstable();
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, k);
        out.push(':');
        write_canonical(out, &m[k]);
    }
    out.push('}');
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: fixed width, so text order is time order.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Truncates to the microseconds the entry format keeps.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).expect("in range")
}

pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    parse_rfc3339_exact(s).map(truncate_micros)
}

/// A client's `occurred_at`, in UTC, as precise as it was given: six
/// fractional digits, or nine when the client sent finer ones (truncating
/// would change the value, and a retry differing only there would pass for
/// the same event). More than nine digits is refused, not cut.
fn parse_occurred_at(s: &str) -> Result<String, String> {
    let t = parse_rfc3339_exact(s)?;
    let frac: String = s
        .split_once('.')
        .map(|(_, f)| f.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_default();
    if frac.len() > 9 {
        return Err(format!(
            "has {} fractional digits; nanoseconds (9) are the finest time kept (got {:?})",
            frac.len(),
            truncate_for_message(s)
        ));
    }
    Ok(if t.timestamp_subsec_nanos() % 1000 == 0 {
        format_timestamp(t)
    } else {
        t.to_rfc3339_opts(SecondsFormat::Nanos, true)
    })
}

/// [`parse_rfc3339`] without the truncation to microseconds.
pub fn parse_rfc3339_exact(s: &str) -> Result<DateTime<Utc>, String> {
    use chrono::{Datelike, Timelike};
    let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
        format!(
            "must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z (got {:?}: {e})",
            truncate_for_message(s)
        )
    })?;
    // Stored in UTC, so these would come out changed: a leap second as the
    // next second, a year past 9999 (or before 0) as something that is not
    // RFC 3339 at all.
    if t.nanosecond() >= 1_000_000_000 {
        return Err(format!(
            "a leap second (:60) cannot be stored as given (got {:?})",
            truncate_for_message(s)
        ));
    }
    let utc = t.with_timezone(&Utc);
    if !(0..=9999).contains(&utc.year()) {
        return Err(format!(
            "is outside the years 0000-9999 once converted to UTC (got {:?})",
            truncate_for_message(s)
        ));
    }
    Ok(utc)
}

/// Parses a stored entry back into its content, for comparing a retried
/// event with the one already stored under its id.
pub fn content_of_entry(entry: &str) -> Option<String> {
    let mut v: Value = serde_json::from_str(entry).ok()?;
    let obj = v.as_object_mut()?;
    for k in ["v", "seq", "id", "timestamp", "key_id"] {
        obj.remove(k);
    }
    let mut filled: Vec<String> = Vec::new();
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        if let Some(Value::Object(server)) = m.remove(SERVER_METADATA_KEY) {
            if let Some(Value::Array(names)) = server.get("filled") {
                filled = names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect();
            }
        }
        if m.is_empty() {
            obj.remove("metadata");
        }
    }
    for name in filled {
        if name == "source_ip" || name == "request_id" {
            obj.remove(&name);
        }
    }
    NewEvent::from_json(&v)
        .ok()
        .map(|e| e.content_fingerprint())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Validates `input` and returns either the content or the error text.
    fn check(input: Value) -> String {
        match NewEvent::from_json(&input) {
            Ok(e) => e.content_fingerprint(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(
            check(json!({"event": "a"})),
            r#","event":"a","level":"info""#
        );
        assert_eq!(
            check(json!({"event": "a", "level": "WARN"})),
            r#","event":"a","level":"warning""#
        );
        assert_eq!(
            check(
                json!({"type": "a", "severity": "Error", "user_id": "u", "target": "t", "source": "::FFFF:1.2.3.4"})
            ),
            r#","event":"a","level":"error","actor":"u","resource":"t","source_ip":"::ffff:1.2.3.4""#
        );
        // A seed system's numeric user id is its decimal text; only there.
        assert_eq!(
            check(json!({"event": "a", "user_id": 42})),
            r#","event":"a","level":"info","actor":"42""#
        );
        assert_eq!(
            check(json!({"event": "a", "user_id": 4.5})),
            "error: user_id: must be a string or an integer, not a number with a fraction or an exponent"
        );
        assert_eq!(
            check(json!({"event": "a", "actor": 42})),
            "error: actor: must be a string, not a number"
        );
        assert_eq!(
            check(json!({"event": "a", "occurred_at": "2026-03-01T10:00:00-05:00"})),
            r#","event":"a","level":"info","occurred_at":"2026-03-01T15:00:00.000000Z""#
        );
        // Finer than microseconds: kept (nine digits), not cut, so two
        // retries differing only there are two different contents.
        assert_eq!(
            check(json!({"event": "a", "occurred_at": "2026-11-22T10:00:00.1234561+01:00"})),
            r#","event":"a","level":"info","occurred_at":"2026-11-22T09:00:00.123456100Z""#
        );
        assert_eq!(
            check(json!({"event": "a", "occurred_at": "2026-11-22T10:00:00.123456000Z"})),
            r#","event":"a","level":"info","occurred_at":"2026-11-22T10:00:00.123456Z""#
        );
        assert_eq!(
            check(json!({"event": "a", "occurred_at": "2026-11-22T10:00:00.1234567891Z"})),
            "error: occurred_at: has 10 fractional digits; nanoseconds (9) are the finest time kept (got \"2026-11-22T10:00:00.1234567891Z\")"
        );
    }

    #[test]
    fn every_rule_names_its_field() {
        let cases = [
            (json!([1]), "an event must be a JSON object, not an array"),
            (json!({}), "event: is required"),
            (
                json!({"event": ""}),
                "event: must be 1 to 128 characters (got 0)",
            ),
            (
                json!({"event": "a".repeat(129)}),
                "event: must be 1 to 128 characters (got 129)",
            ),
            (
                json!({"event": "a b"}),
                "event: may hold only letters, digits and _ . : - (found ' ')",
            ),
            (json!({"event": 5}), "event: must be a string, not a number"),
            (
                json!({"event": "a", "level": "loud"}),
                "level: must be one of debug, info, warning, error, critical (got \"loud\")",
            ),
            (
                json!({"event": "a", "success": "yes"}),
                "success: must be true or false, not a string",
            ),
            (
                json!({"event": "a", "colour": "red"}),
                "colour: unknown field",
            ),
            (
                json!({"event": "a", "seq": 3}),
                "seq: is set by trail and may not be sent",
            ),
            (
                json!({"event": "a", "type": "b"}),
                "type: given twice: event and type both mean event",
            ),
            (
                json!({"event": "a", "id": "x y"}),
                "id: may hold only letters, digits, _ and - (found ' ')",
            ),
            (
                json!({"event": "a", "source_ip": "example.com"}),
                "source_ip: must be an IPv4 or IPv6 address (got \"example.com\")",
            ),
            (
                json!({"event": "a", "actor": "a\u{0}b"}),
                "actor: must not contain control characters",
            ),
            (
                json!({"event": "a", "details": [1]}),
                "details: must be a JSON object, not an array",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                check(input.clone()),
                format!("error: {want}"),
                "input {input}"
            );
        }
    }

    #[test]
    fn details_limits() {
        let mut deep = json!({});
        for _ in 0..39 {
            deep = json!({ "d": deep });
        }
        assert_eq!(
            check(json!({"event": "a", "details": deep})),
            "error: details: is nested 40 levels deep; at most 32 are allowed"
        );
        let mut ok = json!({});
        for _ in 0..31 {
            ok = json!({ "d": ok });
        }
        assert!(!check(json!({"event": "a", "metadata": ok})).starts_with("error"));
        let big = "x".repeat(70_000);
        assert!(check(json!({"event": "a", "details": {"k": big}}))
            .starts_with("error: details: is 70008 bytes serialized"));
    }

    #[test]
    fn reports_all_problems_at_once() {
        let e = NewEvent::from_json(&json!({"level": 1, "success": 2})).unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["event", "level", "success"]);
    }

    #[test]
    fn json_string_escaping_matches_serde_json() {
        for s in [
            "plain",
            "q\"b\\s",
            "\u{1}\u{1f}\u{7f}",
            "tab\tnl\ncr\r\u{8}\u{c}",
            "ünï ✓ 😀",
        ] {
            let mut out = String::new();
            write_json_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn retries_compare_by_content() {
        let a = NewEvent::from_json(&json!({"event": "a", "details": {"b": 1, "a": 2}})).unwrap();
        let b = NewEvent::from_json(
            &json!({"details": {"a": 2, "b": 1}, "type": "a", "level": "INFO"}),
        )
        .unwrap();
        assert_eq!(a.content_fingerprint(), b.content_fingerprint());
        let entry = a.encode(Placement {
            seq: 9,
            id: "i",
            timestamp: "t",
            key_id: "k",
        });
        assert_eq!(content_of_entry(&entry).unwrap(), b.content_fingerprint());
    }

    #[test]
    fn an_empty_metadata_is_the_same_content_as_none() {
        let server: Map<String, Value> = json!({"host": "h"}).as_object().unwrap().clone();
        let place = Placement {
            seq: 1,
            id: "i",
            timestamp: "t",
            key_id: "k",
        };
        for input in [json!({"event": "a", "metadata": {}}), json!({"event": "a"})] {
            let e = NewEvent::from_json(&input).unwrap();
            // Stored with and without trail's own metadata, as the server and
            // the CLI store it, and retried with either.
            for entry in [e.encode(place), e.encode_with(place, Some(&server))] {
                for retry in [json!({"event": "a", "metadata": {}}), json!({"event": "a"})] {
                    let retry = NewEvent::from_json(&retry).unwrap();
                    assert_eq!(
                        content_of_entry(&entry).unwrap(),
                        retry.content_fingerprint(),
                        "{entry} retried as {retry:?}"
                    );
                }
            }
        }
        // Metadata with members is still content.
        let with = NewEvent::from_json(&json!({"event": "a", "metadata": {"x": 1}})).unwrap();
        let without = NewEvent::from_json(&json!({"event": "a"})).unwrap();
        assert_ne!(with.content_fingerprint(), without.content_fingerprint());
    }
}
