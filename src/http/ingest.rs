//! `POST /v1/events`: one event or an all-or-nothing batch.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::{Dropped, InputError, NewEvent};
use crate::store::{Appended, IdempotencyKey, StoredEvent};

use super::error::ApiError;
use super::AppState;

/// Reads the body, refusing it as soon as it passes the limit, or when it
/// has not all arrived within `deadline` (a client that sends fewer bytes
/// than it announced, or sends them a byte at a time, holds a connection
/// no longer than that).
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<web::BytesMut, ApiError> {
    match tokio::time::timeout(deadline, read_body_to_end(req, payload, limit)).await {
        Ok(body) => body,
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not all arrive within {} s; nothing was written",
            deadline.as_secs()
        ))),
    }
}

async fn read_body_to_end(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let too_large = || ApiError::TooLarge(format!("the request body is larger than {limit} bytes"));
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        if len
            .to_str()
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .is_some_and(|n| n > limit)
        {
            return Err(too_large());
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            // actix's own text (debug formatting, internals) stays in the log.
            tracing::debug!(error = %e, "reading a request body failed");
            match e {
                actix_web::error::PayloadError::Overflow => too_large(),
                actix_web::error::PayloadError::Incomplete(_) => ApiError::BadRequest {
                    detail: "the request body ended before all of it arrived \
                             (fewer bytes than its Content-Length, or no last chunk)"
                        .into(),
                    errors: vec![],
                },
                _ => ApiError::BadRequest {
                    detail: "the request body could not be read".into(),
                    errors: vec![],
                },
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        // JSON is UTF-8 (RFC 8259): a body declared in another charset
        // would be read as UTF-8 all the same, and stored changed.
        let charset = ct.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
        });
        match charset.as_deref() {
            None | Some("utf-8" | "utf8") => Ok(()),
            Some(other) => Err(ApiError::UnsupportedMediaType(format!(
                "events must be sent as UTF-8 JSON (got charset {:?})",
                other.chars().take(40).collect::<String>()
            ))),
        }
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "events must be sent as application/json (got {:?})",
            ct.chars().take(80).collect::<String>()
        )))
    }
}

/// The body must arrive as sent by the client, uncompressed: a coded body
/// would otherwise be parsed as JSON and refused as "not UTF-8", which sends
/// the client looking in the wrong place. `identity` (any number of times,
/// any case) is the only coding accepted.
fn check_content_encoding(req: &HttpRequest) -> Result<(), ApiError> {
    for v in req.headers().get_all(header::CONTENT_ENCODING) {
        let text = v.to_str().unwrap_or("?");
        let unsupported = text
            .split(',')
            .map(str::trim)
            .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
        if unsupported || v.to_str().is_err() {
            return Err(ApiError::UnsupportedEncoding(format!(
                "Content-Encoding {:?} is not supported; send the JSON uncompressed (no Content-Encoding)",
                text.chars().take(80).collect::<String>()
            )));
        }
    }
    Ok(())
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut given = req.headers().get_all("idempotency-key");
    let Some(v) = given.next() else {
        return Ok(None);
    };
    if given.next().is_some() {
        return Err(ApiError::BadRequest {
            detail: "the Idempotency-Key header is given more than once; send one".into(),
            errors: vec![crate::domain::FieldError::new(
                "Idempotency-Key",
                "is given more than once",
            )],
        });
    }
    let bad = || ApiError::BadRequest {
        detail: "the Idempotency-Key header must be 1 to 255 visible ASCII characters".into(),
        errors: vec![crate::domain::FieldError::new(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )],
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// Parses the body into events; every rule broken is reported.
pub fn parse_events(body: &[u8], max_batch: usize) -> Result<(Vec<NewEvent>, bool), ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| ApiError::BadRequest {
        detail: format!(
            "the request body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ),
        errors: vec![],
    })?;
    // A byte-order mark is not JSON, but RFC 8259 lets a reader skip it,
    // and the CLI does.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(e) = crate::domain::json::too_deep(text) {
        return Err(ApiError::Invalid(e));
    }
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest {
            detail: "the body is empty: send one event object, or an array of them".into(),
            errors: vec![],
        });
    }
    let value: Value = crate::domain::json::parse_strict(text).map_err(|e| {
        let what = if e.is_eof() {
            "truncated JSON"
        } else {
            "malformed JSON"
        };
        ApiError::BadRequest {
            detail: format!("{what}: {e}"),
            errors: vec![],
        }
    })?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ApiError::Invalid(InputError::single(
                    "",
                    "a batch must hold at least one event",
                )));
            }
            if items.len() > max_batch {
                return Err(ApiError::TooLarge(format!(
                    "a batch may hold at most {max_batch} events (got {})",
                    items.len()
                )));
            }
            let mut events = Vec::with_capacity(items.len());
            let mut errors = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match NewEvent::from_json(item) {
                    Ok(e) => events.push(e),
                    Err(e) => errors.extend(e.within(&format!("[{i}]")).errors),
                }
            }
            if errors.is_empty() {
                Ok((events, true))
            } else {
                Err(ApiError::Invalid(InputError { errors }))
            }
        }
        other => Ok((
            vec![NewEvent::from_json(&other).map_err(ApiError::Invalid)?],
            false,
        )),
    }
}

/// What an idempotent retry must match: the shape and each event's content.
/// The hash of a request's content, in request order; `None` stands for an
/// event dropped by `min_level` / `exclude_events` (a request without one
/// hashes as it always has).
fn request_hash<'a>(
    events: impl IntoIterator<Item = Option<&'a NewEvent>>,
    is_batch: bool,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(if is_batch { b"batch\n" } else { b"event\n" });
    for e in events {
        let Some(e) = e else {
            h.update(b"dropped\n");
            continue;
        };
        if let Some(id) = e.id() {
            h.update(id.as_str());
        }
        h.update(b"\x00");
        h.update(e.content_fingerprint());
        h.update(b"\n");
    }
    h.finalize().into()
}

pub fn appended_json(a: &Appended, out: &mut String) {
    StoredEvent {
        seq: a.seq,
        entry: a.entry.clone(),
        chain_hash: a.chain_hash.to_vec(),
        signature: a.signature.to_vec(),
    }
    .write_json(out);
}

#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body(content = serde_json::Value, description = "One event object, or an array of up to 1,000 (all-or-nothing)", content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key returns the original result")),
    responses(
        (status = 201, description = "Stored: the event, or {\"events\": [...]} for an array, in request order (an event dropped by min_level / exclude_events keeps its place as {\"dropped\": \"min_level\"|\"excluded\"}, and \"dropped\" counts them)"),
        (status = 200, description = "A retry: the original result, nothing written; or every event dropped by min_level / exclude_events: {\"dropped\": REASON, \"detail\"} for one event, {\"events\": [{\"dropped\": REASON}, ...], \"dropped\": N} for an array"),
        (status = 400, description = "Malformed body", content_type = "application/problem+json"),
        (status = 409, description = "Id or Idempotency-Key already used with other content", content_type = "application/problem+json"),
        (status = 410, description = "Idempotency-Key whose events retention removed", content_type = "application/problem+json"),
        (status = 413, description = "Body or batch too large", content_type = "application/problem+json"),
        (status = 408, description = "The body did not all arrive within 30 s; nothing written", content_type = "application/problem+json"),
        (status = 415, description = "Not application/json, or a Content-Encoding other than identity (send the JSON uncompressed)", content_type = "application/problem+json"),
        (status = 422, description = "An event breaks a rule; every problem is listed", content_type = "application/problem+json"),
        (status = 503, description = "Queue full or storage failing; nothing written; see Retry-After", content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, level = "debug")]
pub async fn post_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::params::none(&req)?;
    check_content_type(&req)?;
    check_content_encoding(&req)?;
    let idem = idempotency_key(&req)?;
    let body = read_body(
        &req,
        payload,
        state.limits.max_body_bytes,
        state.limits.body_deadline,
    )
    .await?;
    let (parsed, is_batch) = parse_events(&body, state.limits.max_batch)?;
    let ctx = super::auth::RequestContext::of(&req);
    // Why each event of the request is not stored (`min_level`,
    // `excluded`), by position; `None` for those to store.
    let drops: Vec<Option<Dropped>> = parsed
        .iter()
        .map(|ev| state.drop_policy.verdict(ev))
        .collect();
    let hash = request_hash(
        parsed
            .iter()
            .zip(&drops)
            .map(|(e, d)| d.is_none().then_some(e)),
        is_batch,
    );
    let mut events = Vec::with_capacity(parsed.len());
    for (mut ev, drop) in parsed.into_iter().zip(&drops) {
        if let Some(reason) = drop {
            metrics::counter!("trail_events_dropped_total", "reason" => reason.as_str())
                .increment(1);
            continue;
        }
        if let Some(ctx) = &ctx {
            ev.fill_from_request(ctx.client.ip, Some(&ctx.request_id));
        }
        events.push(ev);
    }
    let dropped = drops.len() - events.len();
    if !is_batch && events.is_empty() {
        // Nothing to store, nothing stored: 200, saying so.
        let reason = drops[0].expect("the one event was dropped");
        return Ok(HttpResponse::Ok().json(serde_json::json!({
            "dropped": reason.as_str(),
            "detail": reason.detail(),
        })));
    }
    let idempotency = idem.map(|key| IdempotencyKey {
        key,
        scope: ctx.as_ref().and_then(|c| c.token.clone()),
        request_hash: hash,
    });
    let stored = if events.is_empty() {
        Vec::new()
    } else {
        let started = std::time::Instant::now();
        let stored = state
            .writer
            .submit_with(events, idempotency)?
            .wait_async()
            .await?;
        metrics::histogram!("trail_append_latency_seconds").record(started.elapsed().as_secs_f64());
        stored
    };
    let kept = drops.iter().filter(|d| d.is_none()).count();
    if stored.len() != kept {
        // Only a hand-edited idempotency_keys row can answer another count.
        return Err(ApiError::Internal(format!(
            "a replay answered {} events for {kept} stored ones",
            stored.len()
        )));
    }
    let created = stored.iter().any(|a| a.created);
    let mut body = String::with_capacity(stored.len() * 600 + 16);
    let mut resp = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    if is_batch {
        // In request order: a dropped event keeps its place, as
        // `{"dropped": REASON}`, so answers match requests by position.
        body.push_str("{\"events\":[");
        let mut stored_in_order = stored.iter();
        for (i, drop) in drops.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            match drop {
                Some(reason) => body.push_str(&format!("{{\"dropped\":\"{}\"}}", reason.as_str())),
                None => appended_json(
                    stored_in_order
                        .next()
                        .expect("one stored event per kept one"),
                    &mut body,
                ),
            }
        }
        body.push(']');
        if dropped > 0 {
            body.push_str(&format!(",\"dropped\":{dropped}"));
        }
        body.push('}');
    } else if let Some(a) = stored.first() {
        appended_json(a, &mut body);
        // A path of digits names a seq first: an all-digit id is located
        // by its seq, which cannot name another event.
        let key = if a.id.bytes().all(|b| b.is_ascii_digit()) {
            a.seq.to_string()
        } else {
            a.id.clone()
        };
        resp.insert_header((
            header::LOCATION,
            format!("{}/v1/events/{key}", state.base_path),
        ));
    }
    Ok(resp.content_type("application/json").body(body))
}
