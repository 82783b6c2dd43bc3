//! The seed systems' routes (`/api/audit…`, `/v1/audit…`): thin wrappers
//! over the `/v1` handlers, one per route, so that each route carries its
//! own OpenAPI entry under the parameter names its old clients send. They
//! must never hold logic of their own: a seed route answers exactly what its
//! `/v1` counterpart answers.

use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::{read, AppState};

#[utoipa::path(
    get, path = "/api/audit", tag = "seed",
    params(
        ("event" = Option<String>, Query, description = "Exact type, comma-separated list, or prefix such as auth.*"),
        ("level" = Option<String>, Query, description = "Minimum level: debug, info, warning, error, critical"),
        ("actor" = Option<String>, Query),
        ("start" = Option<String>, Query, description = "RFC 3339 or YYYY-MM-DD, inclusive"),
        ("end" = Option<String>, Query, description = "RFC 3339 (inclusive) or YYYY-MM-DD (the whole day)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100 (both bounds configurable; these are the defaults)"),
        ("offset" = Option<u32>, Query, minimum = 0, maximum = 10000, description = "Events to skip"),
        ("cursor" = Option<String>, Query, description = "next_cursor from the previous page (what the Link header carries)"),
    ),
    responses(
        (status = 200, description = "As GET /v1/events: {\"events\": [...], \"next_cursor\": ..., \"has_more\": bool}"),
        (status = 400, description = "A bad parameter, named as sent", content_type = "application/problem+json"),
    )
)]
pub async fn api_audit(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    read::list_events(req, state).await
}

#[utoipa::path(
    get, path = "/api/audit/summary", tag = "seed",
    params(
        ("period" = Option<String>, Query, description = "24h (default), 7d, 30d or all"),
        ("start" = Option<String>, Query), ("end" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "As GET /v1/summary", body = read::SummaryDoc),
        (status = 400, description = "A bad parameter, named as sent", content_type = "application/problem+json"),
    )
)]
pub async fn api_audit_summary(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    read::summary(req, state).await
}

#[utoipa::path(
    get, path = "/v1/audit", tag = "seed",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100 (both bounds configurable; these are the defaults)"),
        ("type" = Option<String>, Query, description = "Exact type, comma-separated list, or prefix such as auth.*"),
        ("cursor" = Option<String>, Query, description = "next_cursor from the previous page (what the Link header carries)"),
    ),
    responses(
        (status = 200, description = "As GET /v1/events: {\"events\": [...], \"next_cursor\": ..., \"has_more\": bool}"),
        (status = 400, description = "A bad parameter, named as sent", content_type = "application/problem+json"),
    )
)]
pub async fn v1_audit(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    read::list_events(req, state).await
}

#[utoipa::path(
    get, path = "/v1/audit/stats", tag = "seed",
    params(("period" = Option<String>, Query, description = "24h (default), 7d, 30d or all")),
    responses(
        (status = 200, description = "As GET /v1/summary", body = read::SummaryDoc),
        (status = 400, description = "A bad parameter", content_type = "application/problem+json"),
    )
)]
pub async fn v1_audit_stats(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    read::summary(req, state).await
}

#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "seed",
    responses(
        (status = 200, description = "As GET /v1/verify: the verdict", body = read::ReportDoc),
    )
)]
pub async fn v1_audit_verify(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    read::verify(req, state).await
}

#[utoipa::path(
    get, path = "/v1/audit/export", tag = "seed",
    params(
        ("format" = Option<String>, Query, description = "csv or json (jsonl also works); default json"),
        ("type" = Option<String>, Query, description = "Exact type, comma-separated list, or prefix such as auth.*"),
    ),
    responses(
        (status = 200, description = "As GET /v1/export: streamed, as an attachment"),
        (status = 400, description = "A bad parameter, named as sent", content_type = "application/problem+json"),
    )
)]
pub async fn v1_audit_export(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    read::export_events(req, state).await
}
