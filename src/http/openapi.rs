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
    complete_query_params(&mut doc);
    describe_query_values(&mut doc);
    complete_responses(&mut doc);
    // Under a base path, the paths above are relative to it: say so, or a
    // client generated from this document would call the wrong URLs.
    if !state.base_path.is_empty() {
        doc.servers = Some(vec![utoipa::openapi::server::Server::new(
            state.base_path.clone(),
        )]);
    }
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    super::schemas::attach(&mut doc, state.limits.max_batch);
    Ok(HttpResponse::Ok().json(doc))
}

/// The query parameters each route accepts, from the lists the handlers
/// parse with ([`super::params`]): the document names every one of them, so
/// a parameter the server takes is never missing from it.
const ACCEPTED: &[(&str, &[&str])] = &[
    ("/v1/events", super::params::LIST_PARAMS),
    ("/api/audit", super::params::LIST_PARAMS),
    ("/v1/audit", super::params::LIST_PARAMS),
    ("/v1/export", super::params::EXPORT_PARAMS),
    ("/v1/audit/export", super::params::EXPORT_PARAMS),
    ("/v1/summary", super::params::SUMMARY_PARAMS),
    ("/api/audit/summary", super::params::SUMMARY_PARAMS),
    ("/v1/audit/stats", super::params::SUMMARY_PARAMS),
    ("/v1/verify", super::params::VERIFY_PARAMS),
    ("/v1/audit/verify", super::params::VERIFY_PARAMS),
];

/// Adds to each GET route the accepted query parameters its annotation does
/// not list (the seed systems' aliases, the /v1 filters the seed routes
/// also take), each saying what it is.
fn complete_query_params(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, RefOr, Required, Type};
    for (path, accepted) in ACCEPTED {
        let Some(op) = doc
            .paths
            .paths
            .get_mut(*path)
            .and_then(|item| item.get.as_mut())
        else {
            continue;
        };
        let params = op.parameters.get_or_insert_with(Vec::new);
        for name in *accepted {
            let listed = params
                .iter()
                .any(|p| matches!(p, RefOr::T(p) if p.name == *name));
            if listed {
                continue;
            }
            let description = match *name {
                "type" => "Alias of event (the seed systems' name)".to_owned(),
                "start" => "Alias of since (the seed systems' name)".to_owned(),
                "end" => "Alias of until (the seed systems' name)".to_owned(),
                "event" => {
                    "Alias: type. Exact type, comma-separated list, or prefix such as auth.*"
                        .to_owned()
                }
                "since" => "Alias: start. RFC 3339 or YYYY-MM-DD, inclusive".to_owned(),
                "until" => {
                    "Alias: end. RFC 3339 (inclusive) or YYYY-MM-DD (the whole day)".to_owned()
                }
                other => format!("As {other} on the /v1 route of the same kind"),
            };
            params.push(RefOr::T(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(description))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            ));
        }
    }
}

/// Routes that need no token (`/metrics` only with `metrics_require_admin`).
const PUBLIC: &[&str] = &["/healthz", "/readyz", "/openapi.json", "/metrics"];

/// The answers every route can give besides its own, said once here rather
/// than on every annotation: the bearer token (401 without a valid one, 403
/// without the scope, 503 when the refusal cannot be recorded in the chain,
/// as every refusal is), a 400 for a bad, unknown or repeated query
/// parameter, a 503 with `Retry-After` when the writer's queue or the read
/// connections are all busy.
fn complete_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement};
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            utoipa::openapi::security::SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (trail token create NAME --scope read|ingest|admin)",
                    ))
                    .build(),
            ),
        );
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(super::error::PROBLEM_JSON, ContentBuilder::new().build())
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str());
        let probe = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
        for op in operations_mut(item) {
            let mut add = |code: &str, description: &str| {
                op.responses
                    .responses
                    .entry(code.to_owned())
                    .or_insert_with(|| problem(description).into());
            };
            if !probe {
                add(
                    "400",
                    "A bad, unknown or repeated query parameter, named as sent; nothing is changed",
                );
            }
            if path == "/metrics" {
                add("401", "Only with metrics_require_admin: no valid token");
                add(
                    "403",
                    "Only with metrics_require_admin: a token without the admin scope",
                );
            }
            if !public {
                add(
                    "401",
                    "No token, or one that is wrong or revoked (recorded as an auth.fail event)",
                );
                add(
                    "403",
                    "A token without the scope this route needs (recorded as an auth.fail event)",
                );
                add(
                    "503",
                    "Busy: the writer's queue or every long-read connection (or a refusal that could not be recorded); nothing is changed; see Retry-After",
                );
            }
            if !public {
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
            }
        }
    }
}

/// The values each text query parameter takes, by name, on every route:
/// the canonical values of `level`, `order`, `period` and `format` (the
/// server also takes any case of a level, and `warn`), and the lengths of
/// the free-text filters (an empty filter value is refused).
fn describe_query_values(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ObjectBuilder, RefOr, Type};
    let text = || ObjectBuilder::new().schema_type(Type::String);
    for item in doc.paths.paths.values_mut() {
        for op in operations_mut(item) {
            for p in op.parameters.iter_mut().flatten() {
                let RefOr::T(p) = p else { continue };
                let schema = match p.name.as_str() {
                    "level" => {
                        text().enum_values(Some(["debug", "info", "warning", "error", "critical"]))
                    }
                    "order" => text().enum_values(Some(["desc", "asc"])),
                    "period" => text().enum_values(Some(["24h", "7d", "30d", "all"])),
                    "format" => text().enum_values(Some(["csv", "json", "jsonl"])),
                    "actor" | "resource" => text()
                        .min_length(Some(1))
                        .max_length(Some(crate::domain::event::MAX_TEXT_LEN)),
                    "event" | "type" | "since" | "until" | "start" | "end" | "cursor"
                    | "anchor" => text().min_length(Some(1)),
                    _ => continue,
                };
                p.schema = Some(schema.into());
            }
        }
    }
}

/// The operations of a path (trail serves GET, POST and DELETE only).
fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()]
        .into_iter()
        .flatten()
}
