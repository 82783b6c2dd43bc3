//! `GET /openapi.json`: the OpenAPI 3 document, generated from the handlers'
//! annotations so it cannot drift from the routes. Every handler registered
//! in [`super::routes`] must be listed here (the `api` tests compare the
//! document with [`super::route_table`]). HEAD, answered wherever GET is, is
//! said once in the description rather than repeated on every path.

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

use super::{auth, ingest, read, seed, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "trail",
        description = "Tamper-evident audit log: append, query, summarise, verify, export. \
            Every GET route also answers HEAD (same status and headers, no body); a method a \
            path does not serve is a 405 whose Allow header lists the ones it does."
    ),
    paths(
        ingest::post_events,
        read::list_events,
        read::get_event,
        read::summary,
        read::head,
        read::verify,
        read::export_events,
        read::healthz,
        read::readyz,
        read::metrics,
        openapi_json,
        auth::create_token,
        auth::list_tokens,
        auth::revoke_token,
        seed::api_audit,
        seed::api_audit_summary,
        seed::v1_audit,
        seed::v1_audit_stats,
        seed::v1_audit_verify,
        seed::v1_audit_export,
    ),
    components(schemas(read::SummaryDoc, read::HeadDoc, read::ReportDoc))
)]
pub struct ApiDoc;

#[utoipa::path(
    get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
pub async fn openapi_json(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, super::error::ApiError> {
    super::params::none(&req)?;
    let mut doc = ApiDoc::openapi();
    // Under a base path, the paths above are relative to it: say so, or a
    // client generated from this document would call the wrong URLs.
    if !state.base_path.is_empty() {
        doc.servers = Some(vec![utoipa::openapi::server::Server::new(
            state.base_path.clone(),
        )]);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.to_json().unwrap_or_default()))
}
