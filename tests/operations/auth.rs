//! Bearer tokens and scopes: the whole route × credential matrix, the
//! `auth.fail` events refusals append, the safe default with no token, the
//! start-up refusal on a public address, bootstrap tokens, token events, and
//! token changes made by another process.

use std::time::Duration;

use awc::http::Method;
use serde_json::{json, Value};
use trail::store::tokens::Scope;

use crate::helpers::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    Ingest,
    Read,
    Admin,
}

impl Need {
    fn as_str(self) -> &'static str {
        match self {
            Need::Ingest => "ingest",
            Need::Read => "read",
            Need::Admin => "admin",
        }
    }
}

struct Route {
    method: Method,
    /// As requested (may hold a query string).
    path: &'static str,
    need: Need,
    ok: u16,
}

fn routes() -> Vec<Route> {
    use Need::*;
    let r = |method: Method, path: &'static str, need: Need, ok: u16| Route {
        method,
        path,
        need,
        ok,
    };
    vec![
        r(Method::POST, "/v1/events", Ingest, 201),
        r(Method::GET, "/v1/events", Read, 200),
        r(Method::GET, "/v1/events?limit=1", Read, 200),
        r(Method::GET, "/v1/events/1", Read, 200),
        r(Method::GET, "/v1/summary", Read, 200),
        r(Method::GET, "/v1/head", Read, 200),
        r(Method::GET, "/api/audit", Read, 200),
        r(Method::GET, "/api/audit/summary", Read, 200),
        r(Method::GET, "/v1/audit", Read, 200),
        r(Method::GET, "/v1/audit/stats", Read, 200),
        r(Method::GET, "/v1/verify", Admin, 200),
        r(Method::GET, "/v1/export", Admin, 200),
        r(Method::GET, "/v1/export?format=csv", Admin, 200),
        r(Method::GET, "/v1/audit/verify", Admin, 200),
        r(Method::GET, "/v1/audit/export", Admin, 200),
        r(Method::GET, "/v1/tokens", Admin, 200),
        r(Method::POST, "/v1/tokens", Admin, 201),
        r(Method::DELETE, "/v1/tokens/{name}", Admin, 204),
    ]
}

/// What the matrix knows: the tokens and their secrets.
struct Creds {
    ingest: String,
    read: String,
    /// ingest + read, no admin.
    both: String,
    admin: String,
    revoked: String,
    wrong: String,
}

impl Creds {
    /// Tokens lacking the scope `need`, by name.
    fn lacking(&self, need: Need) -> Vec<(&'static str, &str)> {
        match need {
            Need::Ingest => vec![("tk-read", self.read.as_str())],
            Need::Read => vec![("tk-ingest", self.ingest.as_str())],
            Need::Admin => vec![
                ("tk-both", self.both.as_str()),
                ("tk-ingest", self.ingest.as_str()),
                ("tk-read", self.read.as_str()),
            ],
        }
    }
    /// Tokens holding the scope `need` (admin always does).
    fn holding(&self, need: Need) -> Vec<(&'static str, &str)> {
        let mut v = match need {
            Need::Ingest => vec![
                ("tk-ingest", self.ingest.as_str()),
                ("tk-both", self.both.as_str()),
            ],
            Need::Read => vec![
                ("tk-read", self.read.as_str()),
                ("tk-both", self.both.as_str()),
            ],
            Need::Admin => vec![],
        };
        v.push(("tk-admin", self.admin.as_str()));
        v
    }
}

/// The request path of `route` for one attempt (`{name}` filled in), and
/// its body.
fn prepare(server: &Server, route: &Route, succeed: bool) -> (String, Option<Value>) {
    let path = if route.path.contains("{name}") {
        let victim = if succeed {
            // A fresh active token for each successful revocation.
            let name = unique("victim");
            server.create_token(&name, &[Scope::Read]);
            name
        } else {
            "victim-kept".to_owned()
        };
        route.path.replace("{name}", &victim)
    } else {
        route.path.to_owned()
    };
    let body = match (route.method.as_str(), route.path) {
        ("POST", "/v1/events") => Some(json!({"event": "matrix.post", "actor": "alice"})),
        ("POST", "/v1/tokens") => Some(json!({"name": unique("made"), "scopes": ["read"]})),
        _ => None,
    };
    (path, body)
}

/// A refused attempt: label, secret presented, status, `details.reason`,
/// and the token name recorded as actor.
type Attempt = (
    String,
    Option<String>,
    u16,
    &'static str,
    Option<&'static str>,
);

/// The `auth.fail` event recorded for request `rid`, checked against what
/// every refusal must record.
#[track_caller]
fn check_fail_event(
    db: &Db,
    rid: &str,
    path: &str,
    reason: &str,
    actor: Option<&str>,
    need: Need,
    method: &str,
) -> Value {
    let found = db.by_request_id(rid);
    assert_eq!(
        found.len(),
        1,
        "exactly one event for refused request {rid} ({method} {path}): {found:?}"
    );
    let ev = found[0].clone();
    let resource = path.split('?').next().unwrap();
    assert_eq!(ev["event"], "auth.fail", "{ev}");
    assert_eq!(ev["level"], "warning", "{ev}");
    assert_eq!(ev["success"], json!(false), "{ev}");
    assert_eq!(
        ev["resource"], resource,
        "resource of {method} {path}: {ev}"
    );
    assert_eq!(ev["source_ip"], "127.0.0.1", "{ev}");
    assert_eq!(ev["details"]["reason"], reason, "{method} {path}: {ev}");
    assert_eq!(ev["details"]["method"], method, "{ev}");
    assert_eq!(ev["details"]["required_scope"], need.as_str(), "{ev}");
    match actor {
        Some(a) => assert_eq!(ev["actor"], a, "{ev}"),
        None => assert!(ev.get("actor").is_none(), "no actor expected: {ev}"),
    }
    ev
}

#[actix_rt::test]
async fn every_route_by_every_kind_of_credential() {
    let server = start(|_| {}).await;
    let db = server.db();
    let creds = Creds {
        ingest: server.create_token("tk-ingest", &[Scope::Ingest]),
        read: server.create_token("tk-read", &[Scope::Read]),
        both: server.create_token("tk-both", &[Scope::Ingest, Scope::Read]),
        admin: server.create_token("tk-admin", &[Scope::Admin]),
        revoked: server.create_token("tk-gone", &[Scope::Admin]),
        wrong: trail::store::tokens::generate_secret(),
    };
    server.create_token("victim-kept", &[Scope::Read]);
    server.revoke_token("tk-gone");
    let mut made_secrets: Vec<String> = Vec::new();

    for route in routes() {
        let m = route.method.as_str().to_owned();
        // (label, secret, expected status, reason, actor)
        let mut failures: Vec<Attempt> = vec![
            ("no token".into(), None, 401, "missing_token", None),
            (
                "a wrong token".into(),
                Some(creds.wrong.clone()),
                401,
                "invalid_token",
                None,
            ),
            (
                "a revoked token".into(),
                Some(creds.revoked.clone()),
                401,
                "revoked_token",
                Some("tk-gone"),
            ),
        ];
        for (name, secret) in creds.lacking(route.need) {
            failures.push((
                format!("token {name} without {}", route.need.as_str()),
                Some(secret.to_owned()),
                403,
                "insufficient_scope",
                Some(name),
            ));
        }
        for (label, secret, status, reason, actor) in failures {
            let (path, body) = prepare(&server, &route, false);
            let rid = unique("rid");
            let before = db.count();
            let mut req = Req::new(route.method.clone(), path.clone())
                .maybe_token(secret.as_deref())
                .header("x-request-id", &rid);
            req.body = body;
            let r = server.call(req).await;
            assert_eq!(
                r.status,
                status,
                "{m} {path} with {label}: body {}",
                r.text_lossy()
            );
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("application/problem+json"),
                "{m} {path} with {label}"
            );
            if status == 401 {
                // RFC 6750, section 3.1: a token presented and refused is
                // `invalid_token`; a request without one gets no error code.
                let challenge = if secret.is_some() {
                    "Bearer realm=\"trail\", error=\"invalid_token\""
                } else {
                    "Bearer realm=\"trail\""
                };
                assert_eq!(
                    r.header("www-authenticate").as_deref(),
                    Some(challenge),
                    "{m} {path} with {label}"
                );
            }
            assert_eq!(
                r.header("x-request-id").as_deref(),
                Some(rid.as_str()),
                "{m} {path} with {label}"
            );
            assert_eq!(
                db.count(),
                before + 1,
                "{m} {path} with {label}: exactly one event (auth.fail) appended"
            );
            check_fail_event(&db, &rid, &path, reason, actor, route.need, &m);
            assert_eq!(
                db.last()["request_id"],
                rid.as_str(),
                "the auth.fail is the newest event"
            );
        }
        for (name, secret) in creds.holding(route.need) {
            let (path, body) = prepare(&server, &route, true);
            let rid = unique("rid");
            let mut req = Req::new(route.method.clone(), path.clone())
                .token(secret)
                .header("x-request-id", &rid);
            req.body = body;
            let r = server.call(req).await;
            assert_eq!(
                r.status,
                route.ok,
                "{m} {path} with token {name}: body {}",
                r.text_lossy()
            );
            assert!(
                db.by_request_id(&rid)
                    .iter()
                    .all(|e| e["event"] != "auth.fail"),
                "{m} {path} with {name}: no auth.fail"
            );
            if route.path == "/v1/tokens" && m == "POST" {
                made_secrets.push(r.json()["token"].as_str().expect("token").to_owned());
            }
        }
    }

    // Failed revocations did not revoke.
    let r = server
        .call(Req::get("/v1/tokens").token(&creds.admin))
        .await;
    r.expect(200);
    let list = r.json();
    let kept = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "victim-kept")
        .expect("victim-kept listed")
        .clone();
    assert_eq!(kept["revoked_at"], Value::Null, "{kept}");
    assert!(
        !list.to_string().contains("trail_"),
        "the token list shows no secret: {list}"
    );

    // Other shapes of a missing credential.
    for (label, value) in [
        ("Basic", "Basic dXNlcjpwYXNz"),
        ("empty Bearer", "Bearer "),
        ("bare secret", creds.admin.as_str()),
    ] {
        let rid = unique("rid");
        let r = server
            .call(
                Req::get("/v1/events")
                    .header("authorization", value)
                    .header("x-request-id", &rid),
            )
            .await;
        assert_eq!(r.status, 401, "Authorization: {label}");
        check_fail_event(
            &db,
            &rid,
            "/v1/events",
            "missing_token",
            None,
            Need::Read,
            "GET",
        );
    }

    // Probes and documents answer without a token, and record nothing.
    for path in ["/healthz", "/readyz", "/openapi.json", "/metrics"] {
        let before = db.count();
        let r = server.get(path).await;
        assert_eq!(r.status, 200, "{path} without a token: {}", r.text_lossy());
        assert_eq!(db.count(), before, "{path} appends nothing");
    }

    // No secret ever presented or issued is in the file.
    for (what, s) in [
        ("the ingest token", &creds.ingest),
        ("the read token", &creds.read),
        ("the ingest+read token", &creds.both),
        ("the admin token", &creds.admin),
        ("the revoked token", &creds.revoked),
        ("the wrong token", &creds.wrong),
    ] {
        db.assert_absent(s, what);
    }
    for s in &made_secrets {
        db.assert_absent(s, "a token made by POST /v1/tokens");
    }
    server.stop().await;
    // And still not after the WAL was checkpointed at shutdown.
    for s in [&creds.admin, &creds.revoked, &creds.wrong] {
        db.assert_absent(s, "a secret, after shutdown");
    }
}

#[actix_rt::test]
async fn metrics_can_require_admin() {
    let server = start(|c| c.metrics_require_admin = true).await;
    let db = server.db();
    let read = server.create_token("reader", &[Scope::Read]);
    let admin = server.create_token("root", &[Scope::Admin]);

    let rid = unique("rid");
    let r = server
        .call(Req::get("/metrics").header("x-request-id", &rid))
        .await;
    r.expect(401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"trail\"")
    );
    check_fail_event(
        &db,
        &rid,
        "/metrics",
        "missing_token",
        None,
        Need::Admin,
        "GET",
    );

    let rid = unique("rid");
    let r = server
        .call(
            Req::get("/metrics")
                .token(&read)
                .header("x-request-id", &rid),
        )
        .await;
    r.expect(403);
    check_fail_event(
        &db,
        &rid,
        "/metrics",
        "insufficient_scope",
        Some("reader"),
        Need::Admin,
        "GET",
    );

    let r = server.call(Req::get("/metrics").token(&admin)).await;
    r.expect(200);
    assert!(r.text_lossy().contains("trail_"), "{}", r.text_lossy());
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        server.get(path).await.expect(200);
    }
    server.stop().await;
}

#[actix_rt::test]
async fn with_no_token_only_direct_loopback_clients_are_served() {
    let server = start(|_| {}).await;
    let db = server.db();

    // Loopback, no token anywhere: served, every scope.
    let r = server.post_event(json!({"event": "open.post"}), None).await;
    r.expect(201);
    server.get("/v1/events").await.expect(200);
    server.get("/v1/verify").await.expect(200);
    server.get("/v1/tokens").await.expect(200);

    // Through a proxy (a forwarding header present): refused, recorded.
    for (h, v) in [
        ("x-forwarded-for", "203.0.113.7"),
        ("forwarded", "for=203.0.113.9;proto=https"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "audit.example.com"),
        ("x-forwarded-server", "proxy-1"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/audit"),
        ("x-real-ip", "203.0.113.8"),
        ("x-client-ip", "203.0.113.10"),
        ("true-client-ip", "203.0.113.11"),
        ("via", "1.1 proxy-1"),
        ("x-forwarded", "for=203.0.113.12"),
        ("x-cluster-client-ip", "203.0.113.13"),
        ("client-ip", "203.0.113.14"),
        ("fastly-client-ip", "203.0.113.15"),
        ("x-envoy-external-address", "203.0.113.16"),
    ] {
        let rid = unique("rid");
        let before = db.count();
        let r = server
            .call(
                Req::get("/v1/events")
                    .header(h, v)
                    .header("x-request-id", &rid),
            )
            .await;
        assert_eq!(r.status, 403, "{h}: {v} with no tokens: {}", r.text_lossy());
        assert_eq!(db.count(), before + 1, "{h}: one auth.fail");
        let ev = db.by_request_id(&rid);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0]["event"], "auth.fail");
        assert_eq!(ev[0]["success"], json!(false));
        assert_eq!(ev[0]["level"], "warning");
        assert_eq!(ev[0]["resource"], "/v1/events");
        assert_eq!(ev[0]["source_ip"], "127.0.0.1", "untrusted header ignored");
        assert!(
            ev[0]["details"]["reason"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{}",
            ev[0]
        );
    }
    let r = server
        .call(
            Req::post("/v1/events", json!({"event": "proxied.post"}))
                .header("x-forwarded-for", "203.0.113.7"),
        )
        .await;
    r.expect(403);
    assert!(db.events_of("proxied.post").is_empty());

    // A token presented from loopback is checked all the same: a wrong one,
    // and the last token once revoked, are 401 and on record.
    let fails = db.events_of("auth.fail").len();
    server
        .call(Req::get("/v1/events").token("trail_not-a-real-token-at-all-000000000"))
        .await
        .expect(401);
    let last = server.create_token("last", &[Scope::Admin]);
    server.revoke_token("last");
    server
        .call(Req::get("/v1/events").token(&last))
        .await
        .expect(401);
    // So is any other credential: a Basic one, an empty Bearer.
    for value in ["Basic dXNlcjpwYXNz", "Bearer "] {
        server
            .call(Req::get("/v1/events").header("authorization", value))
            .await
            .expect(401);
    }
    server.get("/v1/events").await.expect(200);
    let reasons: Vec<Value> = db.events_of("auth.fail")[fails..]
        .iter()
        .map(|e| e["details"]["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            json!("invalid_token"),
            json!("revoked_token"),
            json!("missing_token"),
            json!("missing_token")
        ]
    );
    server.stop().await;
}

#[actix_rt::test]
async fn a_public_address_needs_a_token_or_an_explicit_opt_out() {
    let dir = temp_dir();
    let cfg = trail::http::ServeConfig::new("0.0.0.0:0", dir.path().join("trail.db"));
    match trail::http::Application::build(cfg) {
        Ok(_) => panic!("0.0.0.0 with no token must be refused"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("--insecure-no-auth"), "{msg}");
        }
    }

    // Only a revoked token: still no token.
    {
        let s = start_in(dir.clone(), |_| {}).await;
        s.create_token("old", &[Scope::Admin]);
        s.revoke_token("old");
        s.stop().await;
        let cfg = trail::http::ServeConfig::new("0.0.0.0:0", dir.path().join("trail.db"));
        match trail::http::Application::build(cfg) {
            Ok(_) => panic!("0.0.0.0 with only a revoked token must be refused"),
            Err(e) => assert!(e.to_string().contains("--insecure-no-auth"), "{e}"),
        }
    }

    // --insecure-no-auth: starts, and serves without a token even through a proxy.
    let s = start_in(dir.clone(), |c| {
        c.bind = "0.0.0.0:0".into();
        c.insecure_no_auth = true;
    })
    .await;
    s.get("/v1/events").await.expect(200);
    s.call(Req::get("/v1/events").header("x-forwarded-for", "203.0.113.7"))
        .await
        .expect(200);
    // A credential presented all the same is checked, as in loopback-only
    // mode: a client with a wrong token learns it, rather than passing.
    s.call(Req::get("/v1/events").token("trail_not-a-token"))
        .await
        .expect(401);
    s.call(Req::get("/v1/events").header("authorization", "Basic YTpi"))
        .await
        .expect(401);
    // Once a token exists, it is required even so.
    let t = s.create_token("now-locked", &[Scope::Read]);
    s.get("/v1/events").await.expect(401);
    s.call(Req::get("/v1/events").token(&t)).await.expect(200);
    s.stop().await;
}

#[actix_rt::test]
async fn a_bootstrap_token_is_an_admin_token_and_its_secret_is_never_stored() {
    let dir = temp_dir();
    let secret = "bootstrap-secret-0123456789-abcdefgh";
    let s = start_in(dir.clone(), |c| {
        c.bind = "0.0.0.0:0".into();
        c.bootstrap_token = Some(trail::config::Secret::new(secret.into()));
    })
    .await;
    let db = s.db();
    // A token exists now: no token is 401, the secret is admin.
    s.get("/v1/events").await.expect(401);
    for path in ["/v1/events", "/v1/verify", "/v1/export", "/v1/tokens"] {
        let r = s.call(Req::get(path).token(secret)).await;
        assert_eq!(
            r.status,
            200,
            "{path} with the bootstrap token: {}",
            r.text_lossy()
        );
    }
    s.post_event(json!({"event": "boot.post"}), Some(secret))
        .await
        .expect(201);
    let r = s.call(Req::get("/v1/tokens").token(secret)).await;
    let tokens = r.json()["tokens"].clone();
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
    assert_eq!(tokens[0]["name"], "bootstrap");
    assert_eq!(tokens[0]["scopes"], json!(["admin"]));

    let created = db.events_of("auth.token.create");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["details"]["token"], "bootstrap");
    assert!(!created[0].to_string().contains(secret));
    s.stop().await;

    // Started again with the same secret: no second token.
    let s = start_in(dir.clone(), |c| {
        c.bootstrap_token = Some(trail::config::Secret::new(secret.into()));
    })
    .await;
    let r = s.call(Req::get("/v1/tokens").token(secret)).await;
    assert_eq!(r.json()["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(db.events_of("auth.token.create").len(), 1);
    s.stop().await;
    db.assert_absent(secret, "the bootstrap secret");

    // A new secret (a leaked one rotated through the environment): the new
    // one is admin, the old one stops working, both changes are on record.
    let rotated = "bootstrap-secret-rotated-9876543210-zyxw";
    let s = start_in(dir.clone(), |c| {
        c.bootstrap_token = Some(trail::config::Secret::new(rotated.into()));
    })
    .await;
    s.call(Req::get("/v1/events").token(secret))
        .await
        .expect(401);
    let r = s.call(Req::get("/v1/tokens").token(rotated)).await;
    let tokens = r.ok_json(200)["tokens"].clone();
    let state: Vec<(String, bool)> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["revoked_at"].is_null(),
            )
        })
        .collect();
    assert_eq!(
        state,
        [
            ("bootstrap".to_owned(), false),
            ("bootstrap-2".to_owned(), true)
        ],
        "{tokens}"
    );
    let revoked = db.events_of("auth.token.revoke");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["details"]["token"], "bootstrap");
    assert_eq!(revoked[0]["actor"], "bootstrap");
    s.stop().await;

    // The revoked secret given again: it stays revoked, nothing is created.
    let s = start_in(dir.clone(), |c| {
        c.bootstrap_token = Some(trail::config::Secret::new(secret.into()));
    })
    .await;
    s.call(Req::get("/v1/events").token(secret))
        .await
        .expect(401);
    s.call(Req::get("/v1/events").token(rotated))
        .await
        .expect(200);
    assert_eq!(db.events_of("auth.token.create").len(), 2);
    assert_eq!(db.events_of("auth.token.revoke").len(), 1);
    // The secret of a token without the admin scope: refused, since it
    // would neither become admin nor be told apart from that token.
    let reader = s.create_token("reader", &[Scope::Read]);
    s.stop().await;
    db.assert_absent(rotated, "the rotated bootstrap secret");
    let mut cfg = trail::http::ServeConfig::new("127.0.0.1:0", dir.path().join("trail.db"));
    cfg.bootstrap_token = Some(trail::config::Secret::new(reader));
    match trail::http::Application::build(cfg) {
        Ok(_) => panic!("a reader's secret as the bootstrap secret must be refused"),
        Err(e) => assert_eq!(
            e.to_string(),
            "the bootstrap secret is the secret of token \"reader\", which lacks the admin scope: choose another secret"
        ),
    }
}

#[actix_rt::test]
async fn token_create_and_revoke_are_audited_by_name_never_by_secret() {
    let server = start(|_| {}).await;
    let db = server.db();
    let admin = server.create_token("ops-admin", &[Scope::Admin]);

    // Through the API.
    let r = server
        .call(
            Req::post(
                "/v1/tokens",
                json!({"name": "svc-api", "scopes": ["ingest", "read"]}),
            )
            .token(&admin)
            .header("x-request-id", "create-svc-api-1"),
        )
        .await;
    r.expect(201);
    // Bad scopes are named by the member the request used.
    for (scopes, message) in [
        (json!([]), "give at least one scope"),
        (
            json!(["nope"]),
            "unknown scope \"nope\": use ingest, read or admin",
        ),
    ] {
        let bad = server
            .call(
                Req::post("/v1/tokens", json!({"name": "svc-bad", "scopes": scopes})).token(&admin),
            )
            .await;
        bad.expect(422);
        assert_eq!(
            bad.json()["errors"],
            json!([{"field": "scopes", "message": message}])
        );
    }
    let create_rid = "create-svc-api-1";
    let body = r.json();
    assert_eq!(body["name"], "svc-api");
    assert_eq!(body["scopes"], json!(["ingest", "read"]));
    let api_secret = body["token"].as_str().unwrap().to_owned();
    server
        .post_event(json!({"event": "svc.post"}), Some(&api_secret))
        .await
        .expect(201);
    let revoke_rid = "revoke-svc-api-1";
    server
        .call(
            Req::new(Method::DELETE, "/v1/tokens/svc-api")
                .token(&admin)
                .header("x-request-id", revoke_rid),
        )
        .await
        .expect(204);
    // Revoked through this server: refused at once.
    let r = server
        .post_event(json!({"event": "svc.post"}), Some(&api_secret))
        .await;
    r.expect(401);
    // A second revocation: 404, nothing appended.
    let before = db.count();
    server
        .call(Req::new(Method::DELETE, "/v1/tokens/svc-api").token(&admin))
        .await
        .expect(404);
    assert_eq!(db.count(), before);
    // A duplicate name: refused.
    let r = server
        .call(
            Req::post(
                "/v1/tokens",
                json!({"name": "ops-admin", "scopes": ["read"]}),
            )
            .token(&admin),
        )
        .await;
    assert!(
        matches!(r.status, 409 | 422),
        "a duplicate name: {} {}",
        r.status,
        r.text_lossy()
    );

    let create = db
        .events_of("auth.token.create")
        .into_iter()
        .find(|e| e["details"]["token"] == "svc-api")
        .expect("auth.token.create for svc-api");
    assert_eq!(create["actor"], "ops-admin", "{create}");
    assert_eq!(create["source_ip"], "127.0.0.1", "{create}");
    assert_eq!(create["request_id"], create_rid, "{create}");
    assert_eq!(create["success"], json!(true));
    assert_eq!(create["details"]["scopes"], json!(["ingest", "read"]));
    let revoke = db
        .events_of("auth.token.revoke")
        .into_iter()
        .find(|e| e["details"]["token"] == "svc-api")
        .expect("auth.token.revoke for svc-api");
    assert_eq!(revoke["actor"], "ops-admin", "{revoke}");
    assert_eq!(revoke["source_ip"], "127.0.0.1", "{revoke}");
    assert_eq!(revoke["request_id"], revoke_rid, "{revoke}");

    // Through the CLI, beside the running server.
    let dbp = server.db_path.clone();
    let out = blocking(move || {
        trail(
            &dbp,
            &["token", "create", "svc-cli", "--scope", "read", "--json"],
        )
    })
    .await;
    out.expect_code(0);
    let made = out.json();
    assert_eq!(made["name"], "svc-cli");
    assert_eq!(made["scopes"], json!(["read"]));
    let cli_secret = made["token"].as_str().unwrap().to_owned();
    let dbp = server.db_path.clone();
    blocking(move || trail(&dbp, &["token", "revoke", "svc-cli"]))
        .await
        .expect_code(0);
    let dbp = server.db_path.clone();
    let listed = blocking(move || trail(&dbp, &["token", "list", "--json"])).await;
    listed.expect_code(0);
    assert!(!listed.stdout.contains(&cli_secret));
    assert!(!listed.stdout.contains(&admin));

    let c = db
        .events_of("auth.token.create")
        .into_iter()
        .find(|e| e["details"]["token"] == "svc-cli")
        .expect("auth.token.create for svc-cli");
    assert_eq!(c["actor"], "cli");
    let v = db
        .events_of("auth.token.revoke")
        .into_iter()
        .find(|e| e["details"]["token"] == "svc-cli")
        .expect("auth.token.revoke for svc-cli");
    assert_eq!(v["actor"], "cli");

    for e in db.events() {
        let text = e.to_string();
        for s in [&admin, &api_secret, &cli_secret] {
            assert!(!text.contains(s.as_str()), "a secret in {text}");
        }
    }
    server.stop().await;
    for (what, s) in [
        ("the admin secret", &admin),
        ("the API-made secret", &api_secret),
        ("the CLI-made secret", &cli_secret),
    ] {
        db.assert_absent(s, what);
    }
    // The chain is intact after all of it.
    let dbp = db.0.clone();
    let out = blocking(move || trail(&dbp, &["verify"])).await;
    out.expect_code(0);
    assert!(out.stdout.starts_with("intact"), "{}", out.stdout);
}

#[actix_rt::test]
async fn tokens_changed_by_another_process_are_seen_within_a_second_or_so() {
    let server = start(|_| {}).await;
    let db = server.db();
    // No token yet: open to loopback.
    server.get("/v1/events").await.expect(200);

    let dbp = server.db_path.clone();
    let out = blocking(move || {
        trail(
            &dbp,
            &["token", "create", "late", "--scope", "read", "--json"],
        )
    })
    .await;
    out.expect_code(0);
    let secret = out.json()["token"].as_str().unwrap().to_owned();

    // Within the cache TTL the server notices the token: no-token is 401.
    poll(
        "the server to see the CLI-made token",
        Duration::from_secs(5),
        || async { (server.get("/v1/events").await.status == 401).then_some(()) },
    )
    .await;
    server
        .call(Req::get("/v1/events").token(&secret))
        .await
        .expect(200);
    server
        .post_event(json!({"event": "late.post"}), Some(&secret))
        .await
        .expect(403);

    // Another token, so that revoking "late" leaves the server with tokens.
    let dbp = server.db_path.clone();
    blocking(move || {
        trail(
            &dbp,
            &["token", "create", "keeper", "--scope", "admin", "--json"],
        )
    })
    .await
    .expect_code(0);
    let dbp = server.db_path.clone();
    blocking(move || trail(&dbp, &["token", "revoke", "late"]))
        .await
        .expect_code(0);
    // Within the cache TTL the revocation takes effect: 401 revoked_token.
    let rid = poll(
        "the server to see the revocation",
        Duration::from_secs(5),
        || async {
            let rid = unique("rid");
            let r = server
                .call(
                    Req::get("/v1/events")
                        .token(&secret)
                        .header("x-request-id", &rid),
                )
                .await;
            (r.status == 401).then_some(rid)
        },
    )
    .await;
    check_fail_event(
        &db,
        &rid,
        "/v1/events",
        "revoked_token",
        Some("late"),
        Need::Read,
        "GET",
    );
    db.assert_absent(&secret, "the CLI-made secret");
    server.stop().await;
}

/// A token made with the CLI works at once on a running server (a deploy
/// script creates one and uses it): the server reads the tokens again
/// before refusing one it does not know, so no 401 and no auth.fail event.
#[actix_rt::test]
async fn a_token_made_by_another_process_works_at_once() {
    let server = start(|_| {}).await;
    let dbp = server.db_path.clone();
    let first = blocking(move || {
        trail(
            &dbp,
            &["token", "create", "first", "--scope", "read", "--json"],
        )
    })
    .await;
    first.expect_code(0);
    let first = first.json()["token"].as_str().unwrap().to_owned();
    // The server has seen "first": its token list is cached now.
    poll(
        "the server to see the first token",
        Duration::from_secs(5),
        || async {
            (server
                .call(Req::get("/v1/events").token(&first))
                .await
                .status
                == 200)
                .then_some(())
        },
    )
    .await;
    server
        .call(Req::get("/v1/head").token(&first))
        .await
        .expect(200);

    let dbp = server.db_path.clone();
    let late = blocking(move || {
        trail(
            &dbp,
            &["token", "create", "late", "--scope", "read", "--json"],
        )
    })
    .await;
    late.expect_code(0);
    let late = late.json()["token"].as_str().unwrap().to_owned();
    server
        .call(Req::get("/v1/events").token(&late))
        .await
        .expect(200);
    assert!(
        server.db().events_of("auth.fail").is_empty(),
        "no refusal recorded"
    );

    // An unknown token is still refused, and recorded.
    server
        .call(Req::get("/v1/events").token("trail_not-a-token"))
        .await
        .expect(401);
    assert_eq!(server.db().events_of("auth.fail").len(), 1);
    server.stop().await;
}

/// A route reached through a percent-encoded path (`/v1/%74okens` is
/// `/v1/tokens` to the router) must need the same scope as the plain path.
#[actix_rt::test]
async fn percent_encoded_paths_need_the_same_scope() {
    let server = start(|c| c.metrics_require_admin = true).await;
    let db = server.db();
    server.create_token("tk-admin", &[Scope::Admin]);
    let read = server.create_token("tk-read", &[Scope::Read]);
    let ingest = server.create_token("tk-ingest", &[Scope::Ingest]);
    let mut served = Vec::new();
    let cases: Vec<(Method, &str, &str, Option<Value>)> = vec![
        (Method::GET, "/v1/%65xport", "read", None),
        (Method::GET, "/v1/%76erify", "read", None),
        (Method::GET, "/v1/audit/%65xport", "read", None),
        (Method::GET, "/v1/audit/%76erify", "read", None),
        (Method::GET, "/v1/%74okens", "read", None),
        (
            Method::POST,
            "/v1/%74okens",
            "read",
            Some(json!({"name": "escalated", "scopes": ["admin"]})),
        ),
        (Method::DELETE, "/v1/%74okens/tk-admin", "read", None),
        (Method::GET, "/%6detrics", "read", None),
        (
            Method::POST,
            "/v1/%65vents",
            "read",
            Some(json!({"event": "escalated.post"})),
        ),
        (Method::GET, "/v1/%65vents", "ingest", None),
    ];
    for (method, path, who, body) in cases {
        let secret = if who == "read" { &read } else { &ingest };
        let mut req = Req::new(method.clone(), path).token(secret);
        req.body = body;
        let r = server.call(req).await;
        if !matches!(r.status, 403 | 404) {
            served.push(format!(
                "{method} {path} with the {who}-only token -> {} {}",
                r.status,
                r.text_lossy()
                    .replace('\n', " ")
                    .chars()
                    .take(100)
                    .collect::<String>()
            ));
        }
    }
    // Nothing was escalated behind our back (read from the file: the admin
    // token itself may have been revoked).
    let list = trail::store::tokens::list(&db.conn()).expect("tokens");
    let names: Vec<String> = list.iter().map(|t| t.name.clone()).collect();
    let admin_revoked = list
        .iter()
        .find(|t| t.name == "tk-admin")
        .and_then(|t| t.revoked_at.clone());
    let escalated_posts = db.events_of("escalated.post").len();
    server.stop().await;

    // Under a base path too.
    let s2 = start(|c| c.base_path = "/audit".into()).await;
    let read2 = s2.create_token("tk-read", &[Scope::Read]);
    for path in [
        "/%61udit/v1/export",
        "/audit/v1/%65xport",
        "/%61udit/v1/tokens",
    ] {
        let r = s2.call(Req::get(path).token(&read2)).await;
        if !matches!(r.status, 403 | 404) {
            served.push(format!(
                "GET {path} (base_path /audit) with the read-only token -> {}",
                r.status
            ));
        }
    }
    s2.stop().await;

    assert!(
        served.is_empty()
            && !names.iter().any(|n| n == "escalated")
            && admin_revoked.is_none()
            && escalated_posts == 0,
        "percent-encoded paths bypass the scope check:\n  {}\ntokens now: {names:?}; tk-admin revoked_at: {:?}; events posted with a read-only token: {escalated_posts}",
        served.join("\n  "),
        admin_revoked
    );
}

/// A method a route does not serve is a 405 with `Allow` whether or not a
/// token comes with it (the allowed methods are public in /openapi.json),
/// and it is not an authentication failure.
#[actix_rt::test]
async fn a_wrong_method_is_405_before_any_token_is_asked_for() {
    let s = start(|_| {}).await;
    s.create_token("methods", &[Scope::Read]);
    let db = s.db();
    let fails = db.events_of("auth.fail").len();
    for (method, path, allow) in [
        (Method::DELETE, "/v1/events", "GET, HEAD, POST"),
        (Method::PUT, "/v1/verify", "GET, HEAD"),
        (Method::POST, "/v1/tokens/someone", "DELETE"),
    ] {
        let r = s.call(Req::new(method.clone(), path)).await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text_lossy());
        assert_eq!(r.header("allow").as_deref(), Some(allow), "{method} {path}");
        assert_eq!(r.content_type(), "application/problem+json");
    }
    assert_eq!(
        db.events_of("auth.fail").len(),
        fails,
        "no auth.fail for a 405"
    );
    // The right method still needs its token.
    s.get("/v1/verify").await.expect(401);
    s.stop().await;
}

/// A refusal that cannot be put on record (the writer's queue is full) is
/// not answered 401 off the record: it gets the 503 with `Retry-After` of a
/// full queue, and once there is room the same request is refused, 401,
/// with its `auth.fail` in the chain.
#[actix_rt::test]
async fn a_refusal_that_cannot_be_recorded_is_a_503_not_an_unrecorded_401() {
    let s = start(|c| c.writer.queue_depth = 1).await;
    s.create_token("admin", &[Scope::Admin]);
    let db = s.db();
    let fails = db.events_of("auth.fail").len();
    // Hold the writer until released, and fill its one-job queue.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, is_held) = std::sync::mpsc::channel::<()>();
    let state = s.state.clone();
    let blocker = std::thread::spawn(move || {
        state
            .writer
            .exec(move |_| {
                entered.send(()).unwrap();
                held.recv().unwrap();
            })
            .unwrap()
    });
    is_held.recv().unwrap();
    let queued = s
        .state
        .writer
        .submit(vec![trail::domain::NewEvent::from_json(
            &json!({"event": "fills.queue"}),
        )
        .unwrap()])
        .expect("one job fits in the queue");
    let r = s
        .call(Req::get("/v1/events").token("trail_not-a-real-token-at-all-000000000"))
        .await;
    r.expect(503);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    release.send(()).unwrap();
    blocker.join().unwrap();
    queued.wait_async().await.unwrap();
    assert_eq!(
        db.events_of("auth.fail").len(),
        fails,
        "nothing recorded, nothing claimed"
    );
    s.call(Req::get("/v1/events").token("trail_not-a-real-token-at-all-000000000"))
        .await
        .expect(401);
    assert_eq!(db.events_of("auth.fail").len(), fails + 1);
    s.stop().await;
}

/// An `Idempotency-Key` belongs to the token that sent it: another client
/// using the same key (a counter, a hash of the body) gets its own event
/// stored, never the first client's event nor a 409 for a request it did not
/// send. Each one's retry still gets its own original answer.
#[actix_rt::test]
async fn idempotency_keys_are_per_token() {
    let s = start(|_| {}).await;
    let a = s.create_token("app-a", &[Scope::Ingest]);
    let b = s.create_token("app-b", &[Scope::Ingest]);
    let post = |token: String, body: Value| {
        let s = &s;
        async move {
            s.call(
                Req::post("/v1/events", body)
                    .token(&token)
                    .header("idempotency-key", "1"),
            )
            .await
        }
    };
    let ev = json!({"event": "service.heartbeat"});
    let first_a = post(a.clone(), ev.clone()).await;
    let first_b = post(b.clone(), ev.clone()).await;
    let (va, vb) = (first_a.ok_json(201), first_b.ok_json(201));
    assert_ne!(va["seq"], vb["seq"], "two events: {va} {vb}");
    assert_eq!(s.db().events_of("service.heartbeat").len(), 2);
    for (token, first) in [(&a, &first_a), (&b, &first_b)] {
        let again = post(token.clone(), ev.clone()).await;
        again.ok_json(200);
        assert_eq!(again.body, first.body);
    }
    // Other content under a key is a conflict only for the key's own token.
    let conflict = post(a.clone(), json!({"event": "other.thing"})).await;
    conflict.expect(409);
    assert_eq!(conflict.content_type(), "application/problem+json");
    let c = s.create_token("app-c", &[Scope::Ingest]);
    post(c, json!({"event": "other.thing"})).await.expect(201);
    assert_eq!(s.db().events_of("service.heartbeat").len(), 2);
    assert_eq!(s.db().events_of("other.thing").len(), 1);
    s.stop().await;
}
