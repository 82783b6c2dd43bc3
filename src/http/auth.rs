//! The gate every request passes: request id, client address, bearer-token
//! authentication with scopes, one log line and metrics per request.
//!
//! Failures are audit events themselves (`auth.fail`, with the source
//! address and route, never the presented secret). With no token at all, the
//! server serves loopback clients only (unless started with
//! `--insecure-no-auth`).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use subtle::ConstantTimeEq;

use crate::domain::{EventType, NewEvent};
use crate::store::tokens::{self, Scope, TokenInfo};
use crate::store::StoreError;

use super::error::ApiError;
use super::proxy::{self, Client};
use super::AppState;

/// What the gate learned about a request, for the handlers.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client: Client,
    /// The token that authorised the request, if one did.
    pub token: Option<String>,
}

impl RequestContext {
    pub fn of(req: &HttpRequest) -> Option<RequestContext> {
        req.extensions().get::<RequestContext>().cloned()
    }
}

/// Tokens as last read from the database; re-read at most once a second,
/// and at once after a change made through this server.
pub struct TokenCache {
    snapshot: RwLock<(Option<Instant>, Arc<Vec<TokenInfo>>)>,
}

const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            snapshot: RwLock::new((None, Arc::new(Vec::new()))),
        }
    }
}

impl TokenCache {
    pub fn invalidate(&self) {
        self.snapshot.write().expect("token cache").0 = None;
    }

    /// The tokens, and whether they were just read (not from the cache).
    pub async fn get(&self, state: &AppState) -> Result<(Arc<Vec<TokenInfo>>, bool), ApiError> {
        {
            let s = self.snapshot.read().expect("token cache");
            if s.0.is_some_and(|at| at.elapsed() < TOKEN_CACHE_TTL) {
                return Ok((s.1.clone(), false));
            }
        }
        let fresh = Arc::new(state.read_quick(tokens::list).await?);
        *self.snapshot.write().expect("token cache") = (Some(Instant::now()), fresh.clone());
        Ok((fresh, true))
    }
}

/// The scope a route needs; `None` for probes (and `/metrics` unless the
/// configuration puts it behind `admin`). `path` is relative to the base
/// path and fully percent-decoded. Anything not listed needs `admin`: a
/// route added later, or a path spelled in a way the router may decode
/// differently, fails closed.
pub fn required_scope(
    method: &actix_web::http::Method,
    path: &str,
    metrics_admin: bool,
) -> Option<Scope> {
    use actix_web::http::Method;
    let get = *method == Method::GET || *method == Method::HEAD;
    match path {
        "/healthz" | "/readyz" | "/openapi.json" => None,
        "/metrics" => metrics_admin.then_some(Scope::Admin),
        "/v1/events" if *method == Method::POST => Some(Scope::Ingest),
        "/v1/events" | "/v1/summary" | "/v1/head" | "/api/audit" | "/api/audit/summary"
        | "/v1/audit" | "/v1/audit/stats"
            if get =>
        {
            Some(Scope::Read)
        }
        p if get
            && p.strip_prefix("/v1/events/")
                .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
        {
            Some(Scope::Read)
        }
        _ => Some(Scope::Admin),
    }
}

/// The path as the router sees it, at most: every `%XX` decoded.
fn decoded_path(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Why a request was refused, as recorded in `auth.fail`.
struct Refusal {
    reason: &'static str,
    token: Option<String>,
    error: ApiError,
}

fn check(
    req: &ServiceRequest,
    client: &Client,
    needed: Scope,
    list: &[TokenInfo],
    insecure: bool,
) -> Result<Option<String>, Refusal> {
    let any_active = list.iter().any(|t| t.revoked_at.is_none());
    let authorization = req.headers().get(header::AUTHORIZATION);
    let presented = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|p| !p.is_empty());
    if !any_active {
        // Loopback-only mode serves loopback clients without a token, and
        // --insecure-no-auth every client; one that presents a credential
        // (a stale or revoked token, or anything else in `Authorization`)
        // is checked below, as when tokens exist, in both: it learns its
        // token is no good rather than passing by chance.
        if authorization.is_none() {
            if client.direct_loopback || insecure {
                return Ok(None);
            }
            return Err(Refusal {
                reason: "no_tokens",
                token: None,
                error: ApiError::Forbidden(
                    "this server has no API tokens and serves loopback clients only; create a token with `trail token create`"
                        .into(),
                ),
            });
        }
    }
    let Some(presented) = presented else {
        return Err(Refusal {
            reason: "missing_token",
            token: None,
            error: ApiError::Unauthorized(
                "an API token is required: Authorization: Bearer <token>".into(),
            ),
        });
    };
    let hash = tokens::hash_secret(presented);
    // Compare against every token, in constant time, without stopping early.
    let mut found: Option<&TokenInfo> = None;
    for t in list {
        if bool::from(t.secret_hash.ct_eq(&hash)) {
            found = Some(t);
        }
    }
    let Some(token) = found else {
        return Err(Refusal {
            reason: "invalid_token",
            token: None,
            error: ApiError::InvalidToken("the API token is not valid".into()),
        });
    };
    if token.revoked_at.is_some() {
        return Err(Refusal {
            reason: "revoked_token",
            token: Some(token.name.clone()),
            error: ApiError::InvalidToken("the API token has been revoked".into()),
        });
    }
    if !token.allows(needed) {
        return Err(Refusal {
            reason: "insufficient_scope",
            token: Some(token.name.clone()),
            error: ApiError::Forbidden(format!(
                "this token lacks the {} scope this route needs",
                needed.as_str()
            )),
        });
    }
    Ok(Some(token.name.clone()))
}

/// Appends `auth.fail`, and waits for it: a refusal is answered only once
/// it is on record. When it cannot be (the writer's queue is full, a failed
/// commit), the error says so, and the request gets that error (503 with
/// `Retry-After`) instead of its 401/403: no refusal goes unrecorded.
async fn record_failure(
    state: &AppState,
    req: &ServiceRequest,
    client: &Client,
    rid: &str,
    needed: Scope,
    r: &Refusal,
) -> Result<(), StoreError> {
    let mut details = serde_json::Map::new();
    details.insert("reason".into(), r.reason.into());
    // A client chooses the method's text (any token, any length): keep what
    // identifies it, not a 100 KB string in a row that can never be deleted.
    let method: String = req
        .method()
        .as_str()
        .chars()
        .take(MAX_METHOD_CHARS)
        .collect();
    details.insert("method".into(), method.into());
    details.insert("required_scope".into(), needed.as_str().into());
    let mut ev = NewEvent::builder(EventType::parse("auth.fail").expect("valid type"))
        .with_level(crate::domain::Level::Warning)
        .with_success(false);
    if let Ok(e) = ev
        .clone()
        .with_resource(&req.path().chars().take(512).collect::<String>())
    {
        ev = e;
    }
    if let Some(name) = &r.token {
        if let Ok(e) = ev.clone().with_actor(name) {
            ev = e;
        }
    }
    if let Ok(e) = ev.clone().with_details(details) {
        ev = e;
    }
    ev.fill_from_request(client.ip, Some(rid));
    let recorded = match state.writer.submit(vec![ev]) {
        Ok(p) => p.wait_async().await.map(drop),
        Err(e) => Err(e),
    };
    match &recorded {
        Ok(()) => metrics::counter!("trail_auth_failures_total", "reason" => r.reason).increment(1),
        Err(e) => tracing::warn!(
            error = %e,
            reason = r.reason,
            "auth.fail could not be recorded: answering 503 instead of the refusal"
        ),
    }
    recorded
}

/// How much of a method's name `auth.fail` keeps.
const MAX_METHOD_CHARS: usize = 32;

/// The method as a metrics label and in the log: the registered methods by
/// name, anything else as `other`, so clients cannot add label values.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// The middleware: see the module documentation.
pub async fn gate<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("app state is registered");
    let rid = request_id(&req);
    let client = proxy::resolve(req.request(), &state.trusted_proxies, state.proxy_headers);
    let method = req.method().clone();
    let full_path = decoded_path(req.path());
    let path = full_path
        .strip_prefix(state.base_path.as_str())
        .unwrap_or(&full_path)
        .to_owned();
    let route = super::route_of(&path);
    // A method the route does not serve is answered 405 by the router,
    // token or not: the allowed methods are public (`/openapi.json`).
    let wrong_method = route.is_some_and(|(_, allowed)| !allowed.contains(&method));
    let needed = if wrong_method {
        None
    } else {
        required_scope(&method, &path, state.metrics_require_admin)
    };

    let mut token = None;
    if let Some(needed) = needed {
        // A token unknown to the cached list may have been created since
        // (`trail token create` by a deploy script, used at once): the
        // tokens are read again before it is refused, and the refusal
        // recorded.
        let mut reread = false;
        let outcome = loop {
            let (list, fresh) = match state.tokens.get(&state).await {
                Ok(got) => got,
                Err(e) => {
                    break Err(Refusal {
                        reason: "token_store_unavailable",
                        token: None,
                        error: e,
                    })
                }
            };
            match check(&req, &client, needed, &list, state.insecure_no_auth) {
                Err(Refusal {
                    reason: "invalid_token" | "no_tokens",
                    ..
                }) if !fresh && !reread => {
                    state.tokens.invalidate();
                    reread = true;
                }
                checked => break checked,
            }
        };
        match outcome {
            Ok(name) => token = name,
            Err(refusal) => {
                let mut resp =
                    match record_failure(&state, &req, &client, &rid, needed, &refusal).await {
                        Ok(()) => refusal.error.error_response(),
                        Err(e) => ApiError::from(e).error_response(),
                    };
                let route = route.map_or("(unmatched)", |(pattern, _)| pattern);
                finish(&mut resp, &rid, &method, route, started, &client);
                return Ok(req.into_response(resp));
            }
        }
    }
    req.extensions_mut().insert(RequestContext {
        request_id: rid.clone(),
        client: client.clone(),
        token,
    });
    let mut res = next.call(req).await?.map_into_boxed_body();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".into());
    finish(res.response_mut(), &rid, &method, &route, started, &client);
    Ok(res)
}

fn finish(
    resp: &mut HttpResponse,
    rid: &str,
    method: &actix_web::http::Method,
    route: &str,
    started: Instant,
    client: &Client,
) {
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), v);
    }
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    let method = method_label(method);
    metrics::counter!("trail_http_requests_total", "route" => route.to_owned(), "method" => method, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("trail_http_request_duration_seconds").record(elapsed.as_secs_f64());
    let client = client.ip.map(|i| i.to_string()).unwrap_or_default();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    // A probe or a scrape every few seconds that succeeds says nothing new:
    // at debug, so the log holds the requests that matter.
    if matches!(route, "/healthz" | "/readyz" | "/metrics") && resp.status().is_success() {
        tracing::debug!(request_id = %rid, method = %method, route = %route, status, duration_ms, client = %client, "request");
    } else {
        tracing::info!(request_id = %rid, method = %method, route = %route, status, duration_ms, client = %client, "request");
    }
}

// ---- token routes (admin) ----

/// The token behind a request (or `loopback` in loopback-only mode), its
/// client's address and its request id, for the token events.
fn changed_by(req: &HttpRequest) -> tokens::By {
    let ctx = RequestContext::of(req);
    tokens::By {
        actor: ctx
            .as_ref()
            .and_then(|c| c.token.clone())
            .unwrap_or_else(|| "loopback".into()),
        source_ip: ctx.as_ref().and_then(|c| c.client.ip),
        request_id: ctx.map(|c| c.request_id),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    scopes: Vec<String>,
}

#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens",
    request_body(content = serde_json::Value, description = "{\"name\": \"...\", \"scopes\": [\"ingest\"|\"read\"|\"admin\", ...]}", content_type = "application/json"),
    responses(
        (status = 201, description = "{\"name\", \"scopes\", \"token\"}: the secret, shown this once"),
        (status = 400, description = "Malformed body", content_type = "application/problem+json"),
        (status = 422, description = "A bad or already used name, no scope, or an unknown scope", content_type = "application/problem+json"),
    )
)]
pub async fn create_token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::params::none(&req)?;
    let input: CreateToken = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        detail: format!(
            "expected {{\"name\": \"...\", \"scopes\": [\"ingest\"|\"read\"|\"admin\", ...]}}: {e}"
        ),
        errors: vec![],
    })?;
    let scopes: Vec<Scope> = input
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<_, _>>()
        .map_err(|m| ApiError::Invalid(crate::domain::InputError::single("scopes", m)))?;
    if scopes.is_empty() {
        // Named as this request names it (the CLI's flag is --scope).
        return Err(ApiError::Invalid(crate::domain::InputError::single(
            "scopes",
            "give at least one scope",
        )));
    }
    let by = changed_by(&req);
    let secret = tokens::generate_secret();
    let st = state.clone();
    let s2 = secret.clone();
    let info =
        web::block(move || tokens::create_audited(&st.writer, &input.name, &scopes, &s2, by))
            .await
            .map_err(|e| ApiError::Internal(format!("token task: {e}")))??;
    state.tokens.invalidate();
    Ok(HttpResponse::Created()
        .json(serde_json::json!({"name": info.name, "scopes": info.scopes, "token": secret})))
}

#[utoipa::path(
    get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, description = "{\"tokens\": [...]}: names, scopes, dates; never secrets"))
)]
pub async fn list_tokens(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::params::none(&req)?;
    let list = state.read(tokens::list).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"tokens": list})))
}

#[utoipa::path(
    delete, path = "/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No active token with that name", content_type = "application/problem+json"),
    )
)]
pub async fn revoke_token(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::params::none(&req)?;
    let name = path.into_inner();
    let by = changed_by(&req);
    let st = state.clone();
    let n2 = name.clone();
    let revoked = web::block(move || tokens::revoke_audited(&st.writer, &n2, by))
        .await
        .map_err(|e| ApiError::Internal(format!("token task: {e}")))??;
    state.tokens.invalidate();
    if revoked {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!(
            "no active token named {name:?}"
        )))
    }
}
