//! Reverse proxies: forwarded headers believed only from trusted peers, the
//! client address recorded as `source_ip`, absolute `Link` URLs, request
//! ids, and a base path.

use awc::http::Method;
use serde_json::{json, Value};
use trail::config::{Cidr, ProxyHeaders};
use trail::store::tokens::Scope;

use crate::helpers::*;

const XF: &[(&str, &str)] = &[
    ("x-forwarded-for", "203.0.113.7"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "audit.example.com"),
];
const RFC7239: &[(&str, &str)] = &[(
    "forwarded",
    "for=203.0.113.9;proto=https;host=audit.example.com",
)];

/// Posts an event without `source_ip` with `headers`; returns the stored entry.
async fn post_via(s: &Server, token: &str, headers: &[(&str, &str)]) -> Value {
    let id = unique("px");
    let r = s
        .call(
            Req::post("/v1/events", json!({"id": id, "event": "proxy.check"}))
                .token(token)
                .headers(headers),
        )
        .await;
    r.expect(201);
    let body = r.json();
    assert_eq!(body["id"], id.as_str());
    let stored = s.db().by_id(&id).expect("stored");
    assert_eq!(stored["source_ip"], body["source_ip"], "response = stored");
    stored
}

/// The `Link` header of `GET /v1/events?limit=1` sent with `headers`.
async fn link_via(s: &Server, token: &str, headers: &[(&str, &str)]) -> String {
    let r = s
        .call(Req::get("/v1/events?limit=1").token(token).headers(headers))
        .await;
    r.expect(200);
    assert_eq!(r.json()["has_more"], json!(true));
    r.header("link").expect("a Link header on a page with more")
}

#[actix_rt::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let s = start(|_| {}).await;
    let token = s.create_token("px", &[Scope::Admin]);
    let own = format!("<http://127.0.0.1:{}/v1/events?", s.port);
    for (label, headers) in [("X-Forwarded-*", XF), ("Forwarded", RFC7239)] {
        let stored = post_via(&s, &token, headers).await;
        assert_eq!(
            stored["source_ip"], "127.0.0.1",
            "{label} from an untrusted peer: {stored}"
        );
        assert!(
            stored["metadata"]["trail"]["filled"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("source_ip"))),
            "source_ip marked as filled by the server: {stored}"
        );
        let link = link_via(&s, &token, headers).await;
        assert!(
            link.starts_with(&own),
            "{label} from an untrusted peer: Link {link:?} should start with {own:?}"
        );
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        assert!(link.contains("limit=1"), "{link}");
    }
    // A Host header that is no host (it would break the Link's URL): the
    // address the client connected to instead.
    let link = link_via(&s, &token, &[("host", "evil>.com")]).await;
    assert!(
        link.starts_with(&own),
        "Link {link:?} should start with {own:?}"
    );
    // A refusal through an untrusted proxy records the peer, too.
    let rid = unique("rid");
    s.call(
        Req::get("/v1/events")
            .headers(XF)
            .header("x-request-id", &rid),
    )
    .await
    .expect(401);
    assert_eq!(s.db().by_request_id(&rid)[0]["source_ip"], "127.0.0.1");
    s.stop().await;
}

#[actix_rt::test]
async fn forwarded_headers_from_a_trusted_proxy_are_believed() {
    // One server reads X-Forwarded-* (the default), the other Forwarded
    // (`proxy_headers = "forwarded"`); each never reads the other family.
    let s = start(|c| c.trusted_proxies = vec![Cidr::parse("127.0.0.1").unwrap()]).await;
    let token = s.create_token("px", &[Scope::Admin]);
    let f = start(|c| {
        c.trusted_proxies = vec![Cidr::parse("127.0.0.1").unwrap()];
        c.proxy_headers = ProxyHeaders::Forwarded;
    })
    .await;
    let ftoken = f.create_token("px", &[Scope::Admin]);
    let pick = |h: &[(&str, &str)]| {
        if h.iter().any(|(k, _)| *k == "forwarded") {
            (&f, &ftoken)
        } else {
            (&s, &token)
        }
    };
    for (label, headers, ip) in [
        ("X-Forwarded-*", XF, "203.0.113.7"),
        ("Forwarded", RFC7239, "203.0.113.9"),
    ] {
        let (s, token) = pick(headers);
        let stored = post_via(s, token, headers).await;
        assert_eq!(
            stored["source_ip"], ip,
            "{label} from a trusted proxy: {stored}"
        );
        let link = link_via(s, token, headers).await;
        assert!(
            link.starts_with("<https://audit.example.com/v1/events?"),
            "{label} from a trusted proxy: Link {link:?}"
        );
    }
    // RFC 7239 with a quoted IPv6 node and port.
    let stored = post_via(
        &f,
        &ftoken,
        &[("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https")],
    )
    .await;
    assert_eq!(stored["source_ip"], "2001:db8:cafe::17", "{stored}");
    // Unusable proto / host values are ignored, not copied into URLs.
    let link = link_via(
        &s,
        &token,
        &[
            ("x-forwarded-proto", "javascript"),
            ("x-forwarded-host", "evil.example/phish"),
        ],
    )
    .await;
    assert!(
        link.starts_with(&format!("<http://127.0.0.1:{}/v1/events?", s.port)),
        "{link}"
    );
    // A chain: the nearest address that is not a trusted proxy is the client.
    let stored = post_via(
        &s,
        &token,
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 127.0.0.1")],
    )
    .await;
    assert_eq!(stored["source_ip"], "203.0.113.7", "{stored}");
    // Several proxies: the scheme and host are those the outermost trusted
    // proxy was addressed with, not the internal ones nearer to trail.
    for (headers, ip, start) in [
        (
            vec![(
                "forwarded",
                "for=10.1.1.1;proto=https;host=audit.example.com, for=127.0.0.1;proto=http;host=internal:8080",
            )],
            "10.1.1.1",
            "<https://audit.example.com/v1/events?",
        ),
        (
            vec![
                ("x-forwarded-for", "203.0.113.7, 127.0.0.1"),
                ("x-forwarded-proto", "https, http"),
                ("x-forwarded-host", "ex.example.com, internal"),
            ],
            "203.0.113.7",
            "<https://ex.example.com/v1/events?",
        ),
        // One value for a longer chain: the outermost proxy's.
        (
            vec![
                ("x-forwarded-for", "198.51.100.1, 203.0.113.7, 127.0.0.1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "audit.example.com"),
            ],
            "203.0.113.7",
            "<https://audit.example.com/v1/events?",
        ),
        // X-Forwarded-Port: added unless the scheme's default or given.
        (
            vec![
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "audit.example.com"),
                ("x-forwarded-port", "8443"),
            ],
            "203.0.113.7",
            "<https://audit.example.com:8443/v1/events?",
        ),
        (
            vec![
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "audit.example.com"),
                ("x-forwarded-port", "443"),
            ],
            "203.0.113.7",
            "<https://audit.example.com/v1/events?",
        ),
        (
            vec![
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-host", "audit.example.com:9000"),
                ("x-forwarded-port", "8443"),
            ],
            "203.0.113.7",
            "<http://audit.example.com:9000/v1/events?",
        ),
    ] {
        let (s, token) = pick(&headers);
        let stored = post_via(s, token, &headers).await;
        assert_eq!(stored["source_ip"], ip, "{headers:?}: {stored}");
        let link = link_via(s, token, &headers).await;
        assert!(link.starts_with(start), "{headers:?}: Link {link:?}");
    }
    // What a client writes before the proxies' own items never becomes the
    // scheme, host or address: lists line up from the right, and an element
    // of a trusted proxy without `for=` stops the walk.
    for (headers, ip, start) in [
        (
            vec![
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-host", "evil.example.com, audit.example.com"),
                ("x-forwarded-proto", "http, https"),
                ("x-forwarded-port", "6666, 443"),
            ],
            Some("203.0.113.7"),
            "<https://audit.example.com/v1/events?",
        ),
        (
            vec![
                ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
                ("x-forwarded-host", "evil.example.com, audit.example.com"),
            ],
            Some("203.0.113.7"),
            "<http://audit.example.com/v1/events?",
        ),
        (
            vec![("x-forwarded-host", "evil.example.com, audit.example.com")],
            Some("127.0.0.1"),
            "<http://audit.example.com/v1/events?",
        ),
        (
            vec![(
                "forwarded",
                "for=6.6.6.6;host=evil.example.com, proto=https;host=audit.example.com",
            )],
            None,
            "<https://audit.example.com/v1/events?",
        ),
        // A port that is not all digits is no port.
        (
            vec![
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-host", "audit.example.com"),
                ("x-forwarded-port", "+8443"),
            ],
            Some("203.0.113.7"),
            "<http://audit.example.com/v1/events?",
        ),
    ] {
        let (s, token) = pick(&headers);
        let stored = post_via(s, token, &headers).await;
        assert_eq!(
            stored.get("source_ip").and_then(Value::as_str),
            ip,
            "{headers:?}: {stored}"
        );
        let link = link_via(s, token, &headers).await;
        assert!(link.starts_with(start), "{headers:?}: Link {link:?}");
    }
    // The other family is never read: a client's own `Forwarded` passed on
    // by a proxy that writes X-Forwarded-* (nginx does), and the reverse.
    for (server, token, headers, ip, start) in [
        (
            &s,
            &token,
            vec![
                ("forwarded", "for=6.6.6.6;host=evil.example.com;proto=https"),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-host", "audit.example.com"),
            ],
            "203.0.113.7",
            "<http://audit.example.com/v1/events?",
        ),
        (
            &s,
            &token,
            vec![("forwarded", "for=6.6.6.6;host=evil.example.com;proto=https")],
            "127.0.0.1",
            "<http://127.0.0.1:",
        ),
        (
            &f,
            &ftoken,
            vec![
                (
                    "forwarded",
                    "for=203.0.113.9;host=audit.example.com;proto=https",
                ),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-host", "evil.example.com"),
            ],
            "203.0.113.9",
            "<https://audit.example.com/v1/events?",
        ),
        (
            &f,
            &ftoken,
            vec![
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-host", "evil.example.com"),
            ],
            "127.0.0.1",
            "<http://127.0.0.1:",
        ),
    ] {
        let stored = post_via(server, token, &headers).await;
        assert_eq!(stored["source_ip"], ip, "{headers:?}: {stored}");
        let link = link_via(server, token, &headers).await;
        assert!(link.starts_with(start), "{headers:?}: Link {link:?}");
    }
    // A proxy that does not know (or hides) the client's address: no
    // address is recorded, never the proxy's own as the client's.
    for headers in [
        [("forwarded", "for=unknown;proto=https")],
        [("forwarded", "for=_hidden")],
        [("x-forwarded-for", "not-an-ip")],
        [("x-forwarded-for", "unknown, 127.0.0.1")],
    ] {
        let (s, token) = pick(&headers);
        let stored = post_via(s, token, &headers).await;
        assert_eq!(stored.get("source_ip"), None, "{headers:?}: {stored}");
    }

    // Without forwarding headers, the peer.
    let stored = post_via(&s, &token, &[]).await;
    assert_eq!(stored["source_ip"], "127.0.0.1");
    let link = link_via(&s, &token, &[]).await;
    assert!(
        link.starts_with(&format!("<http://127.0.0.1:{}/v1/events?", s.port)),
        "{link}"
    );

    // A refusal through the proxy records the forwarded client.
    let rid = unique("rid");
    s.call(
        Req::get("/v1/events")
            .headers(XF)
            .header("x-request-id", &rid),
    )
    .await
    .expect(401);
    let ev = s.db().by_request_id(&rid);
    assert_eq!(ev[0]["event"], "auth.fail");
    assert_eq!(ev[0]["source_ip"], "203.0.113.7", "{}", ev[0]);
    s.stop().await;
    f.stop().await;
}

#[actix_rt::test]
async fn a_client_sent_source_ip_and_request_id_are_kept() {
    let s = start(|c| c.trusted_proxies = vec![Cidr::parse("127.0.0.1").unwrap()]).await;
    let token = s.create_token("px", &[Scope::Admin]);
    let id = unique("own");
    let r = s
        .call(
            Req::post(
                "/v1/events",
                json!({"id": id, "event": "own.ip", "source_ip": "192.0.2.44", "request_id": "client-rid-1"}),
            )
            .token(&token)
            .headers(XF)
            .header("x-request-id", "header-rid-1"),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("x-request-id").as_deref(), Some("header-rid-1"));
    let stored = s.db().by_id(&id).unwrap();
    assert_eq!(stored["source_ip"], "192.0.2.44", "{stored}");
    assert_eq!(stored["request_id"], "client-rid-1", "{stored}");
    let filled = &stored["metadata"]["trail"]["filled"];
    assert!(
        !filled
            .as_array()
            .is_some_and(|a| a.contains(&json!("source_ip")) || a.contains(&json!("request_id"))),
        "nothing filled in: {stored}"
    );

    // Same without a proxy.
    let s2 = start(|_| {}).await;
    let id = unique("own");
    s2.post_event(
        json!({"id": id, "event": "own.ip", "source_ip": "2001:db8::7"}),
        None,
    )
    .await
    .expect(201);
    assert_eq!(s2.db().by_id(&id).unwrap()["source_ip"], "2001:db8::7");
    s2.stop().await;
    s.stop().await;
}

#[actix_rt::test]
async fn request_ids_are_echoed_recorded_and_generated() {
    let s = start(|_| {}).await;
    let db = s.db();

    // Sent: echoed and recorded.
    let id = unique("rid-ev");
    let r = s
        .call(
            Req::post("/v1/events", json!({"id": id, "event": "rid.sent"}))
                .header("x-request-id", "ops-req-0001"),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("x-request-id").as_deref(), Some("ops-req-0001"));
    assert_eq!(r.json()["request_id"], "ops-req-0001");
    assert_eq!(db.by_id(&id).unwrap()["request_id"], "ops-req-0001");

    // Absent: generated, returned, recorded; different each time.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let id = unique("rid-ev");
        let r = s
            .post_event(json!({"id": id, "event": "rid.generated"}), None)
            .await;
        r.expect(201);
        let rid = r.header("x-request-id").expect("a generated X-Request-Id");
        assert!(!rid.is_empty() && rid.len() <= 128, "{rid:?}");
        assert_eq!(db.by_id(&id).unwrap()["request_id"], rid.as_str());
        seen.push(rid);
    }
    assert_ne!(seen[0], seen[1], "a fresh id per request");

    // Unusable ids are replaced by a generated one (and that is recorded).
    let long_ok = "r".repeat(128);
    for (sent, kept) in [
        ("has a space", false),
        (&*"x".repeat(129), false),
        (long_ok.as_str(), true),
        ("tab\there", false),
    ] {
        let id = unique("rid-ev");
        let r = s
            .call(
                Req::post("/v1/events", json!({"id": id, "event": "rid.odd"}))
                    .header("x-request-id", sent),
            )
            .await;
        r.expect(201);
        let back = r.header("x-request-id").expect("X-Request-Id");
        assert_eq!(
            back == sent,
            kept,
            "X-Request-Id {sent:?} answered with {back:?}"
        );
        assert!(!back.is_empty() && back.len() <= 128);
        assert_eq!(db.by_id(&id).unwrap()["request_id"], back.as_str());
    }

    // On every response, errors included.
    for path in ["/healthz", "/v1/events", "/nope"] {
        let r = s
            .call(Req::get(path).header("x-request-id", "probe-rid-7"))
            .await;
        assert_eq!(
            r.header("x-request-id").as_deref(),
            Some("probe-rid-7"),
            "{path}"
        );
        let r = s.get(path).await;
        assert!(
            r.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "{path}"
        );
    }
    s.stop().await;
}

#[actix_rt::test]
async fn a_base_path_prefixes_every_route_and_url() {
    let s = start(|c| c.base_path = "/audit".into()).await;
    let token = s.create_token("bp", &[Scope::Admin]);
    let id = unique("bp");
    let r = s
        .call(Req::post("/audit/v1/events", json!({"id": id, "event": "base.path"})).token(&token))
        .await;
    r.expect(201);
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("/audit/v1/events/{id}").as_str())
    );
    s.call(Req::get(format!("/audit/v1/events/{id}")).token(&token))
        .await
        .expect(200);
    let r = s
        .call(Req::get("/audit/v1/events?limit=1").token(&token))
        .await;
    r.expect(200);
    let link = r.header("link").expect("Link");
    let want = format!("<http://127.0.0.1:{}/audit/v1/events?", s.port);
    assert!(
        link.starts_with(&want),
        "Link {link:?} should start with {want:?}"
    );

    // The unprefixed routes do not exist.
    for path in ["/v1/events", "/healthz", "/v1/head"] {
        let r = s.call(Req::get(path).token(&token)).await;
        assert_eq!(
            r.status,
            404,
            "{path} with base_path /audit: {}",
            r.text_lossy()
        );
    }
    let r = s
        .call(Req::post("/v1/events", json!({"event": "base.path"})).token(&token))
        .await;
    assert_eq!(r.status, 404, "POST /v1/events with base_path /audit");

    // 405 and HEAD under the prefix; a wrong method without it stays 404.
    let r = s
        .call(Req::new(Method::DELETE, format!("/audit/v1/events/{id}")).token(&token))
        .await;
    assert_eq!(r.status, 405, "{}", r.text_lossy());
    assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
    let r = s
        .call(Req::new(Method::DELETE, format!("/v1/events/{id}")).token(&token))
        .await;
    assert_eq!(r.status, 404, "{}", r.text_lossy());
    let r = s
        .call(Req::new(Method::HEAD, "/audit/v1/head").token(&token))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(r.body.is_empty(), "HEAD body {:?}", r.text_lossy());

    // Probes under the prefix, without a token; other routes need one.
    for path in [
        "/audit/healthz",
        "/audit/readyz",
        "/audit/openapi.json",
        "/audit/metrics",
    ] {
        assert_eq!(s.get(path).await.status, 200, "{path}");
    }
    // The document's paths are relative to the base path, and it says so.
    let doc = s.get("/audit/openapi.json").await.ok_json(200);
    assert_eq!(
        doc["servers"],
        json!([{"url": "/audit"}]),
        "{}",
        doc["servers"]
    );
    assert!(doc["paths"]["/v1/events"].is_object());
    let rid = unique("rid");
    let r = s
        .call(Req::get("/audit/v1/events").header("x-request-id", &rid))
        .await;
    r.expect(401);
    let ev = s.db().by_request_id(&rid);
    assert_eq!(ev[0]["resource"], "/audit/v1/events", "{}", ev[0]);
    s.call(Req::get("/audit/v1/verify").token(&token))
        .await
        .expect(200);
    let started = s.db().events_of("server.start");
    assert_eq!(started[0]["details"]["base_path"], "/audit");

    // Behind a trusted proxy too.
    s.stop().await;
    let s = start(|c| {
        c.base_path = "/audit".into();
        c.trusted_proxies = vec![Cidr::parse("127.0.0.0/8").unwrap()];
    })
    .await;
    let token = s.create_token("bp", &[Scope::Read]);
    let r = s
        .call(
            Req::get("/audit/v1/events?limit=1")
                .token(&token)
                .headers(XF),
        )
        .await;
    r.expect(200);
    let link = r.header("link").expect("Link");
    assert!(
        link.starts_with("<https://audit.example.com/audit/v1/events?"),
        "{link}"
    );
    s.stop().await;
}
