//! The JSON bodies of `/openapi.json`: what each route takes and answers,
//! as JSON Schema (OpenAPI 3.1), so a client generated from the document
//! gets typed events, pages, problems and tokens rather than "any".
//!
//! The shapes are written here once, as the JSON they are, and attached to
//! the document the handlers' annotations generate (by path, method and
//! status). The `api` tests validate real answers of every route against
//! them, and every stored event member is listed (`additionalProperties`
//! is false), so a member the server sends is never missing here.

use serde_json::{json, Value};

use crate::domain::event::{MAX_OBJECT_BYTES, MAX_OBJECT_DEPTH, MAX_TEXT_LEN};

const LEVELS: [&str; 5] = ["debug", "info", "warning", "error", "critical"];

/// The routes that answer a page of events, and those that export.
const LIST_ROUTES: [&str; 3] = ["/v1/events", "/api/audit", "/v1/audit"];
const EXPORT_ROUTES: [&str; 2] = ["/v1/export", "/v1/audit/export"];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A short text member of an event (`actor`, `resource`, …).
fn text(description: &str) -> Value {
    json!({
        "type": "string", "minLength": 1, "maxLength": MAX_TEXT_LEN,
        "description": format!("{description} (no control characters; at most {MAX_TEXT_LEN} bytes)"),
    })
}

fn object(description: &str) -> Value {
    json!({
        "type": "object",
        "description": format!(
            "{description}: a JSON object, at most {} KiB serialized and {MAX_OBJECT_DEPTH} levels deep",
            MAX_OBJECT_BYTES / 1024
        ),
    })
}

fn hex(digits: usize, description: &str) -> Value {
    json!({
        "type": "string", "pattern": format!("^[0-9a-f]{{{digits}}}$"), "description": description,
    })
}

/// The component schemas, by name. `max_batch` is the server's configured
/// largest batch.
fn components(max_batch: usize) -> Value {
    let event_type = json!({
        "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_.:-]+$",
        "description": "The event type, such as auth.login",
    });
    let client_id = json!({
        "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_-]+$",
        "description": "The client's own id for the event: a retry with the same id and content \
            gets the stored event (200), with other content a 409. Generated when absent.",
    });
    let level_in = json!({
        "type": "string",
        "description": "debug, info (default), warning, error or critical, in any case; warn is taken as warning",
    });
    let success = json!({"type": "boolean"});
    let ip = json!({"type": "string", "description": "An IPv4 or IPv6 address"});
    let occurred = json!({
        "type": "string", "format": "date-time",
        "description": "RFC 3339, when it happened by the client's clock (stored in UTC)",
    });
    let scope = json!({"enum": ["ingest", "read", "admin"]});
    let alias = |of: &str, schema: &Value| {
        let mut s = schema.clone();
        s["description"] = json!(format!("The seed systems' name for {of}"));
        s
    };
    json!({
        "EventInput": {
            "type": "object",
            "description": "An event to append. event (or its alias type) is required; \
                any other member is a 422 naming it.",
            "properties": {
                "event": event_type,
                "level": level_in,
                "actor": text("Who did it"),
                "resource": text("What it was done to"),
                "success": success,
                "source_ip": ip,
                "user_agent": text("The client's user agent"),
                "request_id": text("The request it belongs to"),
                "occurred_at": occurred,
                "details": object("What happened"),
                "metadata": object("Anything else"),
                "id": client_id,
                "type": alias("event", &event_type),
                "severity": alias("level", &level_in),
                "user": alias("actor", &text("")),
                "user_id": alias("actor", &text("")),
                "target": alias("resource", &text("")),
                "ip_address": alias("source_ip", &ip),
                "source": alias("source_ip", &ip),
            },
            "additionalProperties": false,
            "anyOf": [{"required": ["event"]}, {"required": ["type"]}],
        },
        "Event": {
            "type": "object",
            "description": "A stored event: its entry (the exact bytes hashed, members in this \
                order, optional ones omitted when absent, never null) with chain_hash and \
                signature appended.",
            "properties": {
                "v": {"const": 1, "description": "The entry layout's version"},
                "seq": {"type": "integer", "minimum": 1, "description": "Its place in the chain"},
                "id": {"type": "string", "description": "The client's id, or one trail generated"},
                "timestamp": {"type": "string", "format": "date-time",
                    "description": "When trail stored it (UTC, microseconds); never decreases along the chain"},
                "event": event_type,
                "level": {"enum": LEVELS},
                "actor": {"type": "string"},
                "resource": {"type": "string"},
                "success": success,
                "source_ip": {"type": "string", "description": "As sent, or the client's address"},
                "user_agent": {"type": "string"},
                "request_id": {"type": "string", "description": "As sent, or the HTTP request's X-Request-Id"},
                "occurred_at": {"type": "string", "format": "date-time"},
                "details": {"type": "object"},
                "metadata": {"type": "object", "description": "As sent, with the server's own \
                    member trail when configured (host, pid, version) or when it filled in \
                    source_ip / request_id (trail.filled lists them)"},
                "key_id": hex(16, "Which HMAC key sealed it"),
                "chain_hash": hex(64, "SHA-256(previous chain_hash ‖ entry)"),
                "signature": hex(64, "HMAC-SHA256(key, chain_hash)"),
            },
            "required": ["v", "seq", "id", "timestamp", "event", "level", "key_id", "chain_hash", "signature"],
            "additionalProperties": false,
        },
        "Dropped": {
            "type": "object",
            "description": "An event the server's min_level or exclude_events dropped: not stored",
            "properties": {
                "dropped": {"enum": ["min_level", "excluded"]},
                "detail": {"type": "string"},
            },
            "required": ["dropped"],
            "additionalProperties": false,
        },
        "EventsPosted": {
            "type": "object",
            "description": "The answer to an array: one item per event sent, in request order",
            "properties": {
                "events": {
                    "type": "array", "maxItems": max_batch,
                    "items": {"oneOf": [schema_ref("Event"), schema_ref("Dropped")]},
                },
                "dropped": {"type": "integer", "minimum": 1, "description": "How many were dropped, when any were"},
            },
            "required": ["events"],
            "additionalProperties": false,
        },
        "Page": {
            "type": "object",
            "properties": {
                "events": {"type": "array", "items": schema_ref("Event")},
                "next_cursor": {"type": ["string", "null"],
                    "description": "The cursor of the next page (also in the Link header); null on the last"},
                "has_more": {"type": "boolean"},
            },
            "required": ["events", "next_cursor", "has_more"],
            "additionalProperties": false,
        },
        "Export": {
            "type": "object",
            "description": "format=json: one document, streamed",
            "properties": {
                "generated_at": {"type": "string", "format": "date-time"},
                "filters": {"type": "object", "description": "The filters applied, as given"},
                "events": {"type": "array", "items": schema_ref("Event")},
                "count": {"type": "integer", "minimum": 0},
            },
            "required": ["generated_at", "filters", "events", "count"],
            "additionalProperties": false,
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details",
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "description": "Every problem with the input, when it is invalid",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["field", "message"],
                        "additionalProperties": false,
                    },
                },
            },
            "required": ["type", "title", "status", "detail"],
            "additionalProperties": false,
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"const": "ok"}},
            "required": ["status"],
            "additionalProperties": false,
        },
        "Ready": {
            "type": "object",
            "properties": {
                "status": {"const": "ready"},
                "schema_version": {"type": "integer"},
                "head_seq": {"type": "integer", "minimum": 0},
            },
            "required": ["status", "schema_version", "head_seq"],
            "additionalProperties": false,
        },
        "TokenCreate": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "scopes": {"type": "array", "minItems": 1, "items": scope},
            },
            "required": ["name", "scopes"],
            "additionalProperties": false,
        },
        "TokenCreated": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "scopes": {"type": "array", "items": scope},
                "token": {"type": "string", "description": "The secret, shown this once"},
            },
            "required": ["name", "scopes", "token"],
            "additionalProperties": false,
        },
        "Tokens": {
            "type": "object",
            "properties": {
                "tokens": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "scopes": {"type": "array", "items": scope},
                            "created_at": {"type": "string", "format": "date-time"},
                            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
                        },
                        "required": ["name", "scopes", "created_at", "revoked_at"],
                        "additionalProperties": false,
                    },
                },
            },
            "required": ["tokens"],
            "additionalProperties": false,
        },
    })
}

/// The JSON bodies: (path, method, status, media type, schema). Problem
/// answers get theirs wherever the document has one.
fn bodies() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Value,
)> {
    let one_of =
        |names: &[&str]| json!({"oneOf": names.iter().map(|n| schema_ref(n)).collect::<Vec<_>>()});
    let json = "application/json";
    let mut out = vec![
        (
            "/v1/events",
            "post",
            "201",
            json,
            one_of(&["Event", "EventsPosted"]),
        ),
        (
            "/v1/events",
            "post",
            "200",
            json,
            one_of(&["Event", "EventsPosted", "Dropped"]),
        ),
        ("/v1/events/{id}", "get", "200", json, schema_ref("Event")),
        ("/healthz", "get", "200", json, schema_ref("Health")),
        ("/readyz", "get", "200", json, schema_ref("Ready")),
        (
            "/openapi.json",
            "get",
            "200",
            json,
            json!({"type": "object"}),
        ),
        (
            "/v1/tokens",
            "post",
            "201",
            json,
            schema_ref("TokenCreated"),
        ),
        ("/v1/tokens", "get", "200", json, schema_ref("Tokens")),
    ];
    for list in LIST_ROUTES {
        out.push((list, "get", "200", json, schema_ref("Page")));
    }
    for export in EXPORT_ROUTES {
        out.push((export, "get", "200", json, schema_ref("Export")));
        out.push((
            export,
            "get",
            "200",
            "application/x-ndjson",
            json!({"type": "string", "description": "format=jsonl: one Event per line"}),
        ));
        out.push((
            export,
            "get",
            "200",
            "text/csv; charset=utf-8",
            json!({"type": "string", "description": "format=csv: a header line, then one row per event"}),
        ));
    }
    out
}

/// Adds the schemas to `doc` (the generated document as JSON): the
/// components, the request bodies, and the content of each answer above.
/// Only answers the annotations declare get a body: nothing is added to a
/// route or status the document does not have.
pub fn attach(doc: &mut Value, max_batch: usize) {
    let at = |path: &str, rest: &str| {
        format!(
            "/paths/{}/{rest}",
            path.replace('~', "~0").replace('/', "~1")
        )
    };
    if let Some(schemas) = doc.pointer_mut("/components") {
        let into = &mut schemas["schemas"];
        if !into.is_object() {
            *into = json!({});
        }
        if let (Some(into), Value::Object(new)) = (into.as_object_mut(), components(max_batch)) {
            into.extend(new);
        }
    }
    let requests = [
        (
            "/v1/events",
            json!({"oneOf": [
                schema_ref("EventInput"),
                {"type": "array", "minItems": 1, "maxItems": max_batch, "items": schema_ref("EventInput")},
            ]}),
        ),
        ("/v1/tokens", schema_ref("TokenCreate")),
    ];
    for (path, schema) in requests {
        if let Some(body) = doc.pointer_mut(&at(path, "post/requestBody/content/application~1json"))
        {
            body["schema"] = schema;
        }
    }
    for (path, method, status, media, schema) in bodies() {
        if let Some(Value::Object(response)) =
            doc.pointer_mut(&at(path, &format!("{method}/responses/{status}")))
        {
            let content = response.entry("content").or_insert_with(|| json!({}));
            content[media]["schema"] = schema;
        }
    }
    let mut headers = vec![(
        "/v1/events",
        "post",
        "Location",
        "The new event's URL (for one event)",
    )];
    for list in LIST_ROUTES {
        headers.push((
            list,
            "get",
            "Link",
            "<absolute URL of the next page>; rel=\"next\", when has_more",
        ));
    }
    for export in EXPORT_ROUTES {
        headers.push((
            export,
            "get",
            "Content-Disposition",
            "attachment, with a file name",
        ));
    }
    for (path, method, name, description) in headers {
        let status = if method == "post" { "201" } else { "200" };
        if let Some(Value::Object(response)) =
            doc.pointer_mut(&at(path, &format!("{method}/responses/{status}")))
        {
            let all = response.entry("headers").or_insert_with(|| json!({}));
            all[name] = json!({"description": description, "schema": {"type": "string"}});
        }
    }
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        let Some(Value::Object(responses)) = op.get_mut("responses") else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            if status == "503" {
                response["headers"]["Retry-After"] = json!({
                    "description": "Seconds to wait before trying again",
                    "schema": {"type": "integer"},
                });
            }
            if status == "401" {
                response["headers"]["WWW-Authenticate"] = json!({
                    "description": "Bearer realm=\"trail\", with error=\"invalid_token\" when a token was presented and refused (RFC 6750)",
                    "schema": {"type": "string"},
                });
            }
            if let Some(problem) = response.pointer_mut(&format!(
                "/content/{}",
                super::error::PROBLEM_JSON.replace('/', "~1")
            )) {
                problem["schema"] = schema_ref("Problem");
            }
        }
    }
}
