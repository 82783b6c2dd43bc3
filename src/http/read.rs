//! Read routes: list, get, summary, head, verify, export, probes. Every
//! database read runs on the blocking pool with a read-only connection.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::domain::event::format_timestamp;
use crate::domain::{Anchor, EventId, Filter};
use crate::store::export::{export, Format};
use crate::store::query::{self, HeadInfo, Order, Summary};
use crate::store::{verify_file, VerifyRequest};

use super::error::ApiError;
use super::params::{
    list_query, Cursor, Params, EXPORT_PARAMS, LIST_PARAMS, SUMMARY_PARAMS, VERIFY_PARAMS,
};
use super::AppState;

#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(
        ("event" = Option<String>, Query, description = "Exact type, comma-separated list, or prefix such as auth.* (alias: type)"),
        ("level" = Option<String>, Query, description = "Minimum level: debug, info, warning, error, critical"),
        ("actor" = Option<String>, Query), ("resource" = Option<String>, Query),
        ("success" = Option<bool>, Query),
        ("since" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD, inclusive (alias: start)"),
        ("until" = Option<String>, Query, description = "RFC 3339 (inclusive) or YYYY-MM-DD (the whole day) (alias: end)"),
        ("order" = Option<String>, Query, description = "desc (default) or asc"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100 (both bounds configurable; these are the defaults)"),
        ("cursor" = Option<String>, Query, description = "next_cursor from the previous page"),
        ("offset" = Option<u32>, Query, minimum = 0, maximum = 10000, description = "Events to skip, for old clients; not with cursor"),
    ),
    responses(
        (status = 200, description = "{\"events\": [...], \"next_cursor\": \"...\"|null, \"has_more\": bool}, with a Link rel=\"next\" header"),
        (status = 400, description = "A bad parameter", content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, level = "debug")]
pub async fn list_events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = query_params(&req, &state, LIST_PARAMS)?;
    let key = state
        .keys
        .signing()
        .ok_or_else(|| ApiError::Internal("no signing key".into()))?;
    let q = list_query(
        &params,
        key,
        state.limits.default_limit,
        state.limits.max_limit,
        state.limits.max_offset,
    )?;
    let filter = q.filter.clone();
    let page_req = q.page;
    let page = state
        .read_quick(move |conn| query::list(conn, &filter, page_req))
        .await?;
    let next = match page.events.last() {
        Some(last) if page.has_more => Some(Cursor::encode(last.seq, q.page.order, &q.filter, key)),
        _ => None,
    };
    let mut body = String::with_capacity(page.events.len() * 600 + 64);
    body.push_str("{\"events\":[");
    for (i, ev) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        ev.write_json(&mut body);
    }
    body.push_str("],\"next_cursor\":");
    body.push_str(&serde_json::to_string(&next).expect("string serializes"));
    body.push_str(",\"has_more\":");
    body.push_str(if page.has_more { "true" } else { "false" });
    body.push('}');
    let mut resp = HttpResponse::Ok();
    resp.content_type("application/json");
    if let Some(cursor) = &next {
        let mut pairs: Vec<(&str, &str)> = params
            .pairs()
            .iter()
            .filter(|(k, _)| k != "cursor" && k != "offset")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.push(("cursor", cursor));
        let qs = serde_urlencoded::to_string(&pairs).expect("pairs encode");
        let url = format!("{}{}?{qs}", state.public_origin(&req), req.path());
        resp.insert_header((header::LINK, format!("<{url}>; rel=\"next\"")));
    }
    Ok(resp.body(body))
}

#[utoipa::path(
    get, path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "An event id, or a seq when all digits")),
    responses((status = 200, description = "The event"), (status = 404, description = "No such event", content_type = "application/problem+json"))
)]
#[tracing::instrument(skip_all, level = "debug")]
pub async fn get_event(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::params::none(&req)?;
    let key = path.into_inner();
    // All digits: a seq first; an id that is all digits (ids may be) when
    // no event has that seq.
    let by_seq = match key.parse::<u64>() {
        Ok(seq) if key.bytes().all(|b| b.is_ascii_digit()) && seq <= i64::MAX as u64 => {
            state
                .read_quick(move |conn| query::get_by_seq(conn, seq))
                .await?
        }
        _ => None,
    };
    let found = if by_seq.is_some() {
        by_seq
    } else {
        // An id that cannot exist is simply not there.
        if EventId::parse(&key).is_err() {
            return Err(ApiError::NotFound(format!(
                "no event {:?}",
                key.chars().take(140).collect::<String>()
            )));
        }
        let id = key.clone();
        state
            .read_quick(move |conn| query::get_by_id(conn, &id))
            .await?
    };
    let ev = found.ok_or_else(|| ApiError::NotFound(format!("no event {key:?}")))?;
    let mut body = String::new();
    ev.write_json(&mut body);
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// `period` (24h, 7d, 30d, all; default 24h) or an explicit `since`/`until`.
fn summary_filter(p: &Params) -> Result<(String, Filter), ApiError> {
    let since = p.get_either("since", "start")?;
    let until = p.get_either("until", "end")?;
    if since.is_some() || until.is_some() {
        if p.get("period").is_some() {
            // Named as sent: a client of the old tools sent start/end.
            let window = if p.get("start").is_some() || p.get("end").is_some() {
                "start/end"
            } else {
                "since/until"
            };
            return Err(ApiError::bad_param(
                "period",
                format!("give either period or {window}, not both"),
            ));
        }
        let f = Filter::parse(&crate::domain::FilterInput {
            since,
            until,
            ..Default::default()
        })
        .map_err(|e| p.filter_error(e))?;
        return Ok(("custom".into(), f));
    }
    let period = p.get("period").unwrap_or("24h");
    let f = crate::domain::filter::period_filter(period, chrono::Utc::now())
        .map_err(|m| ApiError::bad_param("period", m))?;
    Ok((period.to_ascii_lowercase(), f))
}

#[utoipa::path(
    get, path = "/v1/summary", tag = "summary",
    params(
        ("period" = Option<String>, Query, description = "24h (default), 7d, 30d or all"),
        ("since" = Option<String>, Query), ("until" = Option<String>, Query),
    ),
    responses((status = 200, description = "Totals computed with SQL aggregates", body = SummaryDoc))
)]
#[tracing::instrument(skip_all, level = "debug")]
pub async fn summary(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = query_params(&req, &state, SUMMARY_PARAMS)?;
    let (period, filter) = summary_filter(&params)?;
    let s: Summary = state
        .read(move |conn| query::summary(conn, &period, &filter))
        .await?;
    Ok(HttpResponse::Ok().json(s))
}

#[utoipa::path(
    get, path = "/v1/head", tag = "verify",
    responses((status = 200, description = "The newest link, to keep as an anchor", body = HeadDoc))
)]
pub async fn head(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    super::params::none(&req)?;
    let h: HeadInfo = state.read_quick(query::head).await?;
    Ok(HttpResponse::Ok().json(h))
}

#[utoipa::path(
    get, path = "/v1/verify", tag = "verify",
    params(
        ("from" = Option<u64>, Query, minimum = 1, description = "First seq to check (default: the first)"),
        ("to" = Option<u64>, Query, minimum = 1, description = "Last seq to check (default: the newest)"),
        ("anchor" = Option<String>, Query, description = "SEQ:HEX, a head seen earlier"),
    ),
    responses((status = 200, description = "The verdict (valid or not: the request itself succeeded)", body = ReportDoc))
)]
#[tracing::instrument(skip_all, level = "debug")]
pub async fn verify(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = query_params(&req, &state, VERIFY_PARAMS)?;
    let from = params.uint("from", 1, i64::MAX as u64)?;
    let to = params.uint("to", 1, i64::MAX as u64)?;
    if let (Some(a), Some(b)) = (from, to) {
        if a > b {
            return Err(ApiError::bad_param("to", "must not be below from"));
        }
    }
    let anchor = params
        .get("anchor")
        .map(Anchor::parse)
        .transpose()
        .map_err(|m| ApiError::bad_param("anchor", m))?;
    let path = state.db_path.clone();
    let keys = state.keys.clone();
    // One of the shared long-read connections is held for the whole run (as
    // summaries and exports hold theirs), so verifications count against
    // `read_pool_size` too: a 503 with Retry-After when all are busy, never
    // an unbounded number of verify threads and their page caches.
    let report = state
        .read(move |_held| {
            verify_file(
                &path,
                &keys,
                VerifyRequest {
                    from,
                    to,
                    anchor,
                    skip_seals: false,
                },
            )
        })
        .await?;
    let result = if report.valid { "valid" } else { "invalid" };
    metrics::counter!("trail_verifications_total", "result" => result).increment(1);
    Ok(HttpResponse::Ok().json(report))
}

/// Streams the export from a blocking thread through a small channel: the
/// thread waits whenever the client reads slower than the database, so memory
/// stays at a few chunks whatever the size of the log.
/// A client that takes nothing for this long loses its export (the stream
/// is cut, so it sees a broken transfer), and its read connection goes back
/// to the pool.
pub const EXPORT_STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
    /// The runtime whose timers bound each wait for the client.
    runtime: tokio::runtime::Handle,
    stall_limit: std::time::Duration,
}

const CHUNK: usize = 64 * 1024;

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // In pieces of at most CHUNK (a CSV export hands over thousands of
        // rows at once): the channel then holds a few chunks' worth, and a
        // client that stops reading stops the export soon.
        let mut data = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        while !data.is_empty() {
            let piece = data.split_to(CHUNK.min(data.len()));
            self.send(piece)?;
        }
        Ok(())
    }
}

impl ChannelWriter {
    /// Waits for room in the channel, at most the stall limit.
    fn send(&self, chunk: Bytes) -> std::io::Result<()> {
        let sent = self.runtime.block_on(tokio::time::timeout(
            self.stall_limit,
            self.tx.send(Ok(chunk)),
        ));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "client went away",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} s",
                    self.stall_limit.as_secs()
                ),
            )),
        }
    }
}

#[utoipa::path(
    get, path = "/v1/export", tag = "export",
    params(
        ("format" = Option<String>, Query, description = "csv, json (default) or jsonl"),
        ("order" = Option<String>, Query, description = "asc (default) or desc"),
        ("event" = Option<String>, Query), ("level" = Option<String>, Query), ("actor" = Option<String>, Query),
        ("resource" = Option<String>, Query), ("success" = Option<bool>, Query),
        ("since" = Option<String>, Query), ("until" = Option<String>, Query),
    ),
    responses((status = 200, description = "Streamed with chunked encoding, as an attachment"))
)]
#[tracing::instrument(skip_all, level = "debug")]
pub async fn export_events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = query_params(&req, &state, EXPORT_PARAMS)?;
    let format = match params.get("format") {
        None => Format::Json,
        Some(f) => Format::parse(f).map_err(|m| ApiError::bad_param("format", m))?,
    };
    let filter = params.filter()?;
    let order = params.get("order").map_or(Ok(Order::Asc), |s| {
        Order::parse(s).map_err(|m| ApiError::bad_param("order", m))
    })?;
    let pool = state.reads.clone();
    // Take the connection before answering 200, so a broken database is a
    // clean error instead of a truncated stream.
    let conn = web::block(move || super::long_read_conn(&pool))
        .await
        .map_err(|e| ApiError::Internal(format!("export task: {e}")))??;
    let now = chrono::Utc::now();
    let filename = format!(
        "trail-export-{}.{}",
        now.format("%Y%m%dT%H%M%SZ"),
        format.extension()
    );
    let mut resp = HttpResponse::Ok();
    resp.content_type(format.content_type()).insert_header((
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{filename}\""),
    ));
    if req.method() == actix_web::http::Method::HEAD {
        // The same headers, and no export: actix-http would run it to the
        // end only to discard every byte.
        drop(conn);
        return Ok(resp.streaming(futures_util::stream::empty::<Result<Bytes, std::io::Error>>()));
    }
    let generated_at = format_timestamp(now);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let runtime = tokio::runtime::Handle::current();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = finished.clone();
    let stall_limit = state.limits.export_stall;
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
            runtime,
            stall_limit,
        };
        let result = export(&conn, &filter, order, format, &generated_at, &mut w).and_then(|_| {
            std::io::Write::flush(&mut w).map_err(|e| crate::store::StoreError::Io {
                context: "export".into(),
                source: e,
            })
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "export stopped before the end");
        } else {
            done.store(true, std::sync::atomic::Ordering::Release);
        }
    });
    // An export that did not finish (a database error, a client that
    // stalled) ends in an error item, so the client sees a broken transfer,
    // never a short file that looks whole.
    let stream = futures_util::stream::unfold(
        (rx, finished, false),
        |(mut rx, finished, cut)| async move {
            if cut {
                return None;
            }
            match rx.recv().await {
                Some(item) => Some((item, (rx, finished, false))),
                None if finished.load(std::sync::atomic::Ordering::Acquire) => None,
                None => Some((
                    Err(std::io::Error::other("export failed")),
                    (rx, finished, true),
                )),
            }
        },
    );
    Ok(resp.streaming(stream))
}

#[utoipa::path(
    get, path = "/healthz", tag = "probes",
    responses(
        (status = 200, description = "The process is alive"),
        (status = 503, description = "Its writer thread has stopped: restart it", content_type = "application/problem+json"),
    )
)]
pub async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // A writer that stopped without being asked to (a panic) never comes
    // back: only a restart gives this process its appends again.
    if !state.writer.is_running() {
        return Err(ApiError::Unavailable {
            detail: "the writer thread has stopped; nothing can be appended; restart trail".into(),
            retry_after: 5,
        });
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok"})))
}

#[utoipa::path(
    get, path = "/readyz", tag = "probes",
    responses((status = 200, description = "Database writable, migrations applied, head loaded"), (status = 503, description = "Not ready", content_type = "application/problem+json"))
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let not_ready = |why: String| {
        tracing::warn!(%why, "not ready");
        ApiError::Unavailable {
            detail: format!("not ready: {why}"),
            retry_after: 5,
        }
    };
    // An empty job takes the write lock and commits: the file is writable
    // and the writer is alive.
    let pending = state
        .writer
        .submit(Vec::new())
        .map_err(|e| not_ready(e.to_string()))?;
    match tokio::time::timeout(std::time::Duration::from_secs(5), pending.wait_async()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(not_ready(format!("the writer failed: {e}"))),
        Err(_) => return Err(not_ready("the writer did not answer within 5 s".into())),
    }
    let latest = crate::store::db::latest_migration();
    // On the short-read threads: a readiness probe must not wait behind
    // (or be refused by) exports holding the long-read pool.
    let (version, head) = state
        .read_quick(move |conn| {
            let v: i64 = conn
                .query_row(
                    "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
                    [],
                    |r| r.get(0),
                )
                .map_err(crate::store::StoreError::sqlite(
                    "reading the schema version",
                ))?;
            Ok((v, query::head(conn)?))
        })
        .await
        .map_err(|e| not_ready(e.to_string()))?;
    if version as u32 != latest {
        return Err(not_ready(format!(
            "schema version {version}, expected {latest}"
        )));
    }
    // The empty commit above writes nothing, so it passes on a full disk
    // while every append fails: the free space says it.
    if let Some(free) = super::free_bytes(&state.db_path) {
        if free < state.ready_min_free_bytes {
            return Err(not_ready(format!(
                "the database's file system has {} MiB free, less than the {} MiB appends need",
                free / (1024 * 1024),
                state.ready_min_free_bytes.div_ceil(1024 * 1024)
            )));
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ready", "schema_version": version, "head_seq": head.seq,
    })))
}

/// The query of a read route: on the seed systems' routes an empty
/// parameter counts as not sent ([`Params::parse_seed`]).
fn query_params(req: &HttpRequest, state: &AppState, allowed: &[&str]) -> Result<Params, ApiError> {
    let path = req
        .path()
        .strip_prefix(state.base_path.as_str())
        .unwrap_or(req.path());
    let seed = matches!(
        path,
        "/api/audit"
            | "/api/audit/summary"
            | "/v1/audit"
            | "/v1/audit/stats"
            | "/v1/audit/verify"
            | "/v1/audit/export"
    );
    if seed {
        Params::parse_seed(req.query_string(), allowed)
    } else {
        Params::parse(req.query_string(), allowed)
    }
}

/// OpenAPI shapes of the JSON bodies (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SummaryDoc {
    period: String,
    since: Option<String>,
    until: Option<String>,
    total_events: u64,
    by_type: std::collections::BTreeMap<String, u64>,
    by_level: std::collections::BTreeMap<String, u64>,
    by_actor: std::collections::BTreeMap<String, u64>,
    success_count: u64,
    failure_count: u64,
    first_event: Option<String>,
    last_event: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct HeadDoc {
    seq: u64,
    chain_hash: String,
    timestamp: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ReportDoc {
    valid: bool,
    entries_checked: u64,
    first_bad_seq: Option<u64>,
    kind: Option<String>,
    head: HeadDoc,
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "probes",
    responses(
        (status = 200, description = "Prometheus text format (admin scope when metrics_require_admin is set)", content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 503, description = "Metrics are not available"),
    )
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let Some(handle) = super::metrics::handle() else {
        return HttpResponse::ServiceUnavailable().body("metrics are not available");
    };
    metrics::gauge!("trail_writer_queue_depth").set(state.writer.queue_depth() as f64);
    // Beside the file a symlink leads to, as SQLite keeps its WAL.
    let real = std::fs::canonicalize(&state.db_path).unwrap_or_else(|_| state.db_path.clone());
    let len =
        |suffix| std::fs::metadata(crate::store::db::sidecar(&real, suffix)).map_or(0, |m| m.len());
    let wal = len("-wal");
    metrics::gauge!("trail_database_size_bytes").set((len("") + wal) as f64);
    metrics::gauge!("trail_wal_size_bytes").set(wal as f64);
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}
