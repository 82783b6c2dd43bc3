//! `GET /openapi.json`: the OpenAPI 3 document, generated from the handlers'
//! annotations so it cannot drift from the routes.

use actix_web::HttpResponse;
use utoipa::OpenApi;

use super::{ingest, read};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "trail",
        description = "Tamper-evident audit log: append, query, summarise, verify, export."
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
    ),
    components(schemas(read::SummaryDoc, read::HeadDoc, read::ReportDoc))
)]
pub struct ApiDoc;

pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(ApiDoc::openapi().to_json().unwrap_or_default())
}
