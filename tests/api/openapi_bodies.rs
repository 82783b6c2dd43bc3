//! `/openapi.json` describes the JSON bodies: real answers of every route
//! (events, batches, drops, pages, exports, problems, tokens, probes) are
//! validated against the schema the document gives for their path, method,
//! status and media type, and requests the server takes or refuses are
//! taken or refused by the request schema.

use awc::http::Method;
use serde_json::{json, Value};

use super::helpers::*;

/// The JSON Schema keywords the document uses, checked strictly: a keyword
/// this validator does not know fails the test rather than passing unseen.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        errors.push(format!("{at}: schema is not an object: {schema}"));
        return;
    };
    for (k, want) in s {
        match k.as_str() {
            "description" | "format" | "title" | "examples" => {}
            "$ref" => {
                let name = want
                    .as_str()
                    .unwrap()
                    .trim_start_matches("#/components/schemas/");
                let target = &doc["components"]["schemas"][name];
                assert!(target.is_object(), "{at}: no component {name}");
                check(doc, target, v, at, errors);
            }
            "type" => {
                let types: Vec<&str> = match want {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    other => panic!("{at}: type {other}"),
                };
                let ok = types.iter().any(|t| match *t {
                    "object" => v.is_object(),
                    "array" => v.is_array(),
                    "string" => v.is_string(),
                    "boolean" => v.is_boolean(),
                    "null" => v.is_null(),
                    "integer" => v.is_i64() || v.is_u64(),
                    "number" => v.is_number(),
                    other => panic!("{at}: type {other}"),
                });
                if !ok {
                    errors.push(format!("{at}: {v} is not {want}"));
                }
            }
            "const" if v != want => errors.push(format!("{at}: {v} is not {want}")),
            "enum" if !want.as_array().unwrap().contains(v) => {
                errors.push(format!("{at}: {v} not in {want}"))
            }
            "const" | "enum" => {}
            "properties" => {
                for (name, sub) in want.as_object().unwrap() {
                    if let Some(member) = v.get(name) {
                        check(doc, sub, member, &format!("{at}.{name}"), errors);
                    }
                }
            }
            "required" => {
                for name in want.as_array().unwrap() {
                    if v.is_object() && v.get(name.as_str().unwrap()).is_none() {
                        errors.push(format!("{at}: {name} missing"));
                    }
                }
            }
            "additionalProperties" => {
                // false, or the schema of every member (a map).
                let known = s.get("properties").and_then(Value::as_object);
                for (name, member) in v.as_object().into_iter().flatten() {
                    if known.is_some_and(|k| k.contains_key(name)) {
                        continue;
                    }
                    match want {
                        Value::Bool(false) => {
                            errors.push(format!("{at}: member {name} is not in the schema"))
                        }
                        sub => check(doc, sub, member, &format!("{at}.{name}"), errors),
                    }
                }
            }
            "propertyNames" => {
                for name in v.as_object().into_iter().flat_map(|o| o.keys()) {
                    check(
                        doc,
                        want,
                        &json!(name),
                        &format!("{at} name {name}"),
                        errors,
                    );
                }
            }
            "items" => {
                for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                    check(doc, want, item, &format!("{at}[{i}]"), errors);
                }
            }
            "oneOf" | "anyOf" => {
                let passing = want
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sub| {
                        let mut e = Vec::new();
                        check(doc, sub, v, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                let ok = if k == "oneOf" {
                    passing == 1
                } else {
                    passing >= 1
                };
                if !ok {
                    errors.push(format!("{at}: {passing} of {k} {want} match {v}"));
                }
            }
            "minimum" if v.as_f64().is_some_and(|n| n < want.as_f64().unwrap()) => {
                errors.push(format!("{at}: {v} below {want}"))
            }
            "maximum" if v.as_f64().is_some_and(|n| n > want.as_f64().unwrap()) => {
                errors.push(format!("{at}: {v} above {want}"))
            }
            "minLength" | "maxLength" => {
                let n = v.as_str().map(|t| t.chars().count() as u64);
                let bound = want.as_u64().unwrap();
                if n.is_some_and(|n| {
                    if k == "minLength" {
                        n < bound
                    } else {
                        n > bound
                    }
                }) {
                    errors.push(format!("{at}: {v}: {k} {bound}"));
                }
            }
            "minItems" | "maxItems" => {
                let n = v.as_array().map(|a| a.len() as u64);
                let bound = want.as_u64().unwrap();
                if n.is_some_and(|n| {
                    if k == "minItems" {
                        n < bound
                    } else {
                        n > bound
                    }
                }) {
                    errors.push(format!("{at}: {k} {bound}"));
                }
            }
            "pattern" => {
                let re = regex::Regex::new(want.as_str().unwrap()).unwrap();
                if v.as_str().is_some_and(|t| !re.is_match(t)) {
                    errors.push(format!("{at}: {v} does not match {want}"));
                }
            }
            "minimum" | "maximum" => {}
            other => panic!("{at}: the validator does not know {other}"),
        }
    }
}

fn errors_of(doc: &Value, schema: &Value, v: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(doc, schema, v, "$", &mut errors);
    errors
}

/// The schema the document gives the answer `r` to `method path`.
fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, r: &Resp) -> &'a Value {
    let media = r.content_type();
    let schema =
        &doc["paths"][path][method]["responses"][r.status.to_string()]["content"][&media]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {}: no schema for {media}",
        r.status
    );
    schema
}

/// Validates the answer `r` to `method path` against the document.
fn assert_answer(doc: &Value, path: &str, method: &str, r: &Resp) {
    let schema = response_schema(doc, path, method, r);
    let body = r.json();
    let errors = errors_of(doc, schema, &body);
    assert!(errors.is_empty(), "{}: {errors:#?}\n{body}", r.what);
    // Every header the document names for this answer is sent (the next
    // page's Link only when there is one).
    let headers = &doc["paths"][path][method]["responses"][r.status.to_string()]["headers"];
    for name in headers.as_object().into_iter().flat_map(|h| h.keys()) {
        if name == "Link" && body["has_more"] != json!(true) {
            assert!(
                r.header("link").is_none(),
                "{}: Link on the last page",
                r.what
            );
            continue;
        }
        if name == "Location" && body.get("events").is_some() {
            continue; // only for one event
        }
        assert!(r.header(name).is_some(), "{}: no {name} header", r.what);
    }
}

async fn with_token(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Resp {
    let mut req = app
        .client
        .request(method, app.url(path))
        .insert_header(("authorization", format!("Bearer {token}")));
    if body.is_some() {
        req = req.insert_header(("content-type", "application/json"));
    }
    send(req, body.map(|b| serde_json::to_vec(&b).unwrap())).await
}

#[actix_rt::test]
async fn every_json_answer_matches_the_schema_the_document_gives_it() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await.ok_json(200);
    assert_answer(
        &doc,
        "/openapi.json",
        "get",
        &app.get("/openapi.json").await,
    );

    // Appends: one, a batch, and their retries.
    let one = json!({"event": "auth.login", "level": "WARN", "actor": "alice", "resource": "/x",
        "success": false, "source_ip": "10.0.0.1", "user_agent": "ua", "request_id": "r1",
        "occurred_at": "2026-01-02T03:04:05+01:00", "details": {"b": 1, "a": [true]},
        "metadata": {"k": "v"}, "id": "client-1"});
    let r = app.post(&one).await.expect(201).clone();
    assert_answer(&doc, "/v1/events", "post", &r);
    let r = app.post(&one).await.expect(200).clone();
    assert_answer(&doc, "/v1/events", "post", &r);
    let batch = json!([{"type": "a.b", "user": "bob"}, {"event": "a.c", "severity": "error"}]);
    let r = app.post_idem("k1", &batch).await.expect(201).clone();
    assert_answer(&doc, "/v1/events", "post", &r);
    let r = app.post_idem("k1", &batch).await.expect(200).clone();
    assert_answer(&doc, "/v1/events", "post", &r);

    // Reads.
    for path in [
        "/v1/events?limit=2",
        "/v1/events?limit=1000",
        "/api/audit?limit=1",
        "/v1/audit?limit=1",
    ] {
        let r = app.get(path).await.expect(200).clone();
        let route = path.split('?').next().unwrap();
        assert_answer(&doc, route, "get", &r);
    }
    let last = app.get("/v1/events?limit=1000").await.json();
    assert_eq!(
        last["next_cursor"],
        Value::Null,
        "the last page has no cursor"
    );
    assert_answer(
        &doc,
        "/v1/events/{id}",
        "get",
        &app.get("/v1/events/client-1").await.expect(200).clone(),
    );
    assert_answer(
        &doc,
        "/v1/events/{id}",
        "get",
        &app.get("/v1/events/1").await.expect(200).clone(),
    );
    for path in [
        "/v1/summary",
        "/api/audit/summary",
        "/v1/audit/stats",
        "/v1/head",
        "/v1/verify",
        "/v1/audit/verify",
        "/healthz",
        "/readyz",
    ] {
        assert_answer(&doc, path, "get", &app.get(path).await.expect(200).clone());
    }
    for export in ["/v1/export", "/v1/audit/export"] {
        let r = app
            .get(&format!("{export}?format=json"))
            .await
            .expect(200)
            .clone();
        assert_answer(&doc, export, "get", &r);
        assert_eq!(r.json()["count"], json!(app.total()), "{export}");
        let r = app
            .get(&format!("{export}?format=jsonl"))
            .await
            .expect(200)
            .clone();
        let media = r.content_type();
        assert!(
            response_schema(&doc, export, "get", &r)["type"] == "string",
            "{media}"
        );
        let event = json!({"$ref": "#/components/schemas/Event"});
        for line in r.text().lines() {
            let errors = errors_of(&doc, &event, &serde_json::from_str(line).unwrap());
            assert!(errors.is_empty(), "{export} jsonl: {errors:?}");
        }
        let r = app
            .get(&format!("{export}?format=csv"))
            .await
            .expect(200)
            .clone();
        assert_eq!(response_schema(&doc, export, "get", &r)["type"], "string");
    }

    // Problems, each with the schema its route gives it.
    let problems = [
        (
            "/v1/events",
            "post",
            app.post(&json!({"event": "x", "bogus": 1})).await,
            422,
        ),
        (
            "/v1/events",
            "post",
            app.post(&json!({"event": "auth.login", "id": "client-1"}))
                .await,
            409,
        ),
        (
            "/v1/events",
            "post",
            app.post_raw(Some("application/json"), &[], b"{".to_vec())
                .await,
            400,
        ),
        (
            "/v1/events",
            "get",
            app.get("/v1/events?limit=0").await,
            400,
        ),
        (
            "/v1/events/{id}",
            "get",
            app.get("/v1/events/nope").await,
            404,
        ),
        (
            "/v1/verify",
            "get",
            app.get("/v1/verify?from=3&to=2").await,
            400,
        ),
    ];
    for (path, method, r, status) in &problems {
        assert_eq!(r.status, *status, "{}", r.text_lossy());
        assert_answer(&doc, path, method, r);
        assert_eq!(
            response_schema(&doc, path, method, r),
            &json!({"$ref": "#/components/schemas/Problem"})
        );
    }
    assert!(
        problems[0].2.json()["errors"].is_array(),
        "a 422 lists its errors"
    );

    // Tokens: created (the document's request schema takes the request),
    // listed with one revoked, and a 401 once tokens are in use.
    let create = json!({"name": "ops", "scopes": ["admin"]});
    let request =
        &doc["paths"]["/v1/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(errors_of(&doc, request, &create), Vec::<String>::new());
    // No token yet: on loopback none is needed to make the first.
    let req = app
        .client
        .post(app.url("/v1/tokens"))
        .insert_header(("content-type", "application/json"));
    let r = send(req, Some(serde_json::to_vec(&create).unwrap())).await;
    assert_eq!(r.status, 201, "{}", r.text_lossy());
    assert_answer(&doc, "/v1/tokens", "post", &r);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let r = with_token(
        &app,
        Method::POST,
        "/v1/tokens",
        &token,
        Some(json!({"name": "old", "scopes": ["read", "ingest"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text_lossy());
    assert_eq!(
        with_token(&app, Method::DELETE, "/v1/tokens/old", &token, None)
            .await
            .status,
        204
    );
    let r = with_token(&app, Method::GET, "/v1/tokens", &token, None).await;
    assert_eq!(r.status, 200);
    assert_answer(&doc, "/v1/tokens", "get", &r);
    let listed = r.json();
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["revoked_at"].is_string()),
        "{listed}"
    );
    let r = app.get("/v1/head").await;
    assert_eq!(r.status, 401);
    assert_answer(&doc, "/v1/head", "get", &r);
    app.stop().await;
}

/// Events dropped by min_level / exclude_events: the single 200 and the
/// batch's place holders match the document too.
#[actix_rt::test]
async fn dropped_events_match_the_schema() {
    let app = spawn_app_with(|cfg| cfg.min_level = trail::domain::Level::Warning).await;
    let doc = app.get("/openapi.json").await.ok_json(200);
    let r = app
        .post(&json!({"event": "noise", "level": "debug"}))
        .await
        .expect(200)
        .clone();
    assert_answer(&doc, "/v1/events", "post", &r);
    let r = app
        .post(&json!([{"event": "noise"}, {"event": "alarm", "level": "error"}]))
        .await
        .expect(201)
        .clone();
    assert_answer(&doc, "/v1/events", "post", &r);
    let r = app
        .post(&json!([{"event": "noise"}, {"event": "noise"}]))
        .await
        .expect(200)
        .clone();
    assert_answer(&doc, "/v1/events", "post", &r);
    app.stop().await;
}

/// The request schema of `POST /v1/events` takes what the server takes and
/// refuses what it refuses, for one event and for an array.
#[actix_rt::test]
async fn the_event_request_schema_agrees_with_the_server() {
    let app = spawn_app_with(|cfg| cfg.limits.max_batch = 3).await;
    let doc = app.get("/openapi.json").await.ok_json(200);
    let schema =
        &doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let cases = [
        json!({"event": "a"}),
        json!({"type": "a", "severity": "info", "user": "u", "target": "t", "ip_address": "::1"}),
        json!({"event": "a", "user_id": "u", "source": "127.0.0.1", "id": "A-b_9"}),
        json!([{"event": "a"}, {"type": "b"}, {"event": "c"}]),
        json!({"actor": "no type"}),
        json!({"event": "a", "bogus": 1}),
        json!({"event": "bad type!"}),
        json!({"event": "a", "success": "yes"}),
        json!({"event": "a", "details": [1]}),
        json!({"event": "a", "id": "has space"}),
        json!({"event": "a", "actor": ""}),
        json!({"event": "a".repeat(129)}),
        json!([]),
        json!([{"event": "a"}, {"event": "b"}, {"event": "c"}, {"event": "d"}]),
        json!("a"),
    ];
    for case in cases {
        let before = app.total();
        let r = app.post(&case).await;
        let taken = r.status == 201;
        let errors = errors_of(&doc, schema, &case);
        assert_eq!(
            errors.is_empty(),
            taken,
            "{case}: server {} {}, schema {errors:?}",
            r.status,
            r.text_lossy()
        );
        if !taken {
            assert_eq!(app.total(), before, "{case}");
        }
    }
    app.stop().await;
}
