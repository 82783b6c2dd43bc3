//! Bad input, as a table: each request is answered with the right 4xx
//! `application/problem+json` naming the offending fields, and nothing is
//! written.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::helpers::*;

enum Req {
    /// `POST /v1/events` with this content type, headers and body.
    Post {
        ct: Option<&'static str>,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// `POST /v1/events` with a chunked body of `len` bytes (no length).
    PostStream {
        len: usize,
    },
    Get(String),
}

struct Case {
    name: String,
    req: Req,
    status: u16,
    /// The `field` of each entry of `errors`, in any order; `None`: not checked.
    fields: Option<Vec<&'static str>>,
}

fn post(
    name: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    fields: Option<Vec<&'static str>>,
) -> Case {
    Case {
        name: name.to_owned(),
        req: Req::Post {
            ct: Some("application/json"),
            headers: vec![],
            body: body.into(),
        },
        status,
        fields,
    }
}

impl Case {
    /// The same POST with one more request header.
    fn with_header(mut self, name: &'static str, value: &str) -> Case {
        if let Req::Post { headers, .. } = &mut self.req {
            headers.push((name, value.to_owned()));
        }
        self
    }
}

fn post_json(name: &str, v: Value, status: u16, fields: &[&'static str]) -> Case {
    post(
        name,
        serde_json::to_vec(&v).unwrap(),
        status,
        Some(fields.to_vec()),
    )
}

fn get(path: &str, status: u16, fields: &[&'static str]) -> Case {
    Case {
        name: format!("GET {path}"),
        req: Req::Get(path.to_owned()),
        status,
        fields: Some(fields.to_vec()),
    }
}

/// `n` event types, comma-separated: e0,e1,…
fn terms(n: usize) -> String {
    (0..n)
        .map(|i| format!("e{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `{"event":"a"}` compressed with gzip (`printf '{"event":"a"}' | gzip -n`).
const GZIP_EVENT: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0x56, 0x4a, 0x2d, 0x4b, 0xcd,
    0x2b, 0x51, 0xb2, 0x52, 0x4a, 0x54, 0xaa, 0x05, 0x00, 0x24, 0x04, 0xf8, 0xdc, 0x0d, 0x00, 0x00,
    0x00,
];

fn nested(depth: usize) -> Value {
    let mut v = json!({});
    for _ in 1..depth {
        v = json!({ "d": v });
    }
    v
}

async fn run(app: &TestApp, case: &Case) -> Resp {
    match &case.req {
        Req::Post { ct, headers, body } => {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.post_raw(*ct, &hs, body.clone()).await
        }
        Req::PostStream { len } => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let n = len / chunk.len();
            let stream = futures_util::stream::iter(
                (0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            let req = app
                .client
                .post(app.url("/v1/events"))
                .insert_header(("content-type", "application/json"));
            let mut res = req
                .send_stream(stream)
                .await
                .unwrap_or_else(|e| panic!("{}: request failed: {e}", case.name));
            Resp {
                what: case.name.clone(),
                status: res.status().as_u16(),
                headers: res.headers().clone(),
                body: res.body().await.unwrap(),
            }
        }
        Req::Get(path) => app.get(path).await,
    }
}

/// Five events, so a request that wrote anything would show.
async fn seeded() -> TestApp {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"event": "seed", "actor": format!("a{i}")}))
        .collect();
    app.post(&Value::Array(batch)).await.expect(201);
    app
}

fn check(app: &TestApp, case: &Case, r: &Resp) {
    let p = assert_problem_named(&case.name, r, case.status);
    if let Some(want) = &case.fields {
        let mut got = error_fields(&p);
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{}: errors of {p}", case.name);
    }
    assert_eq!(app.count(), 5, "{}: nothing may be written", case.name);
}

#[track_caller]
fn assert_problem_named(name: &str, r: &Resp, status: u16) -> Value {
    assert_eq!(
        r.status,
        status,
        "{name}: status; body {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_problem(r, status)
}

#[actix_rt::test]
async fn bad_posts_are_refused_with_problems_and_write_nothing() {
    let app = seeded().await;
    let big_details = json!({"event": "a", "details": {"k": "x".repeat(70_000)}});
    // Valid JSON (each event within its limits), just over 1 MiB in all.
    let over_limit = serde_json::to_vec(&Value::Array(vec![
        json!({"event": "a", "details": {"k": "y".repeat(60_000)}});
        18
    ]))
    .unwrap();
    assert!(over_limit.len() > 1 << 20 && over_limit.len() < 1_200_000);
    let cases = vec![
        post("malformed JSON", r#"{"event" "x"}"#, 400, Some(vec![])),
        post(
            "malformed JSON: trailing garbage",
            r#"{"event":"x"} x"#,
            400,
            Some(vec![]),
        ),
        post(
            "truncated JSON",
            r#"{"event":"a","actor":"b"#,
            400,
            Some(vec![]),
        ),
        post(
            "truncated batch",
            r#"[{"event":"a"},{"event":"#,
            400,
            Some(vec![]),
        ),
        post("empty body", "", 400, Some(vec![])),
        post("a body of blanks", " \r\n", 400, Some(vec![])),
        // Ambiguous or inexact JSON: refused, not silently resolved.
        post(
            "a member given twice",
            r#"{"event":"a","event":"b"}"#,
            400,
            Some(vec![]),
        ),
        post(
            "a member of details given twice",
            r#"{"event":"a","details":{"k":1,"k":2}}"#,
            400,
            Some(vec![]),
        ),
        post(
            "an integer past 64 bits",
            r#"{"event":"a","details":{"n":123456789012345678901234567890}}"#,
            400,
            Some(vec![]),
        ),
        post(
            "invalid UTF-8",
            b"{\"event\":\"a\",\"actor\":\"\xff\xfe\"}".to_vec(),
            400,
            Some(vec![]),
        ),
        post(
            "invalid UTF-8 (lone continuation)",
            b"{\"event\":\"a\x80\"}".to_vec(),
            400,
            Some(vec![]),
        ),
        post_json(
            "40-deep details",
            json!({"event": "a", "details": nested(40)}),
            422,
            &["details"],
        ),
        post_json(
            "33-deep metadata",
            json!({"event": "a", "metadata": nested(33)}),
            422,
            &["metadata"],
        ),
        post_json("details over 64 KiB", big_details, 422, &["details"]),
        post_json(
            "details not an object",
            json!({"event": "a", "details": [1]}),
            422,
            &["details"],
        ),
        post_json(
            "metadata a string",
            json!({"event": "a", "metadata": "m"}),
            422,
            &["metadata"],
        ),
        post("10 MB body", vec![b' '; 10 << 20], 413, Some(vec![])),
        post("valid JSON over 1 MiB", over_limit, 413, Some(vec![])),
        Case {
            name: "10 MB chunked body".into(),
            req: Req::PostStream { len: 10 << 20 },
            status: 413,
            fields: Some(vec![]),
        },
        post_json(
            "batch of 1001",
            Value::Array(vec![json!({"event": "a"}); 1001]),
            413,
            &[],
        ),
        post_json(
            "wrong types",
            json!({"event": 5, "level": 1, "actor": 7, "success": "yes", "details": "d"}),
            422,
            &["event", "level", "actor", "success", "details"],
        ),
        post_json(
            "unknown field",
            json!({"event": "a", "colour": "red"}),
            422,
            &["colour"],
        ),
        post_json(
            "server member seq",
            json!({"event": "a", "seq": 1}),
            422,
            &["seq"],
        ),
        post_json(
            "server members",
            json!({"event": "a", "chain_hash": "00", "signature": "00", "timestamp": "t", "key_id": "k"}),
            422,
            &["chain_hash", "signature", "timestamp", "key_id"],
        ),
        post_json(
            "alias given twice",
            json!({"event": "a", "type": "b"}),
            422,
            &["type"],
        ),
        post_json("event missing", json!({"actor": "x"}), 422, &["event"]),
        post_json("event empty", json!({"event": ""}), 422, &["event"]),
        post_json(
            "event 129 chars",
            json!({"event": "a".repeat(129)}),
            422,
            &["event"],
        ),
        post_json(
            "event with a space",
            json!({"event": "a b"}),
            422,
            &["event"],
        ),
        post_json(
            "event with a quote",
            json!({"event": "a'b"}),
            422,
            &["event"],
        ),
        post_json("event null", json!({"event": null}), 422, &["event"]),
        post_json(
            "level unknown",
            json!({"event": "a", "level": "loud"}),
            422,
            &["level"],
        ),
        post_json(
            "success a number",
            json!({"event": "a", "success": 1}),
            422,
            &["success"],
        ),
        post_json(
            "source_ip a name",
            json!({"event": "a", "source_ip": "example.com"}),
            422,
            &["source_ip"],
        ),
        post_json(
            "ip_address alias bad",
            json!({"event": "a", "ip_address": "1.2.3.256"}),
            422,
            &["ip_address"],
        ),
        post_json(
            "occurred_at not RFC 3339",
            json!({"event": "a", "occurred_at": "yesterday"}),
            422,
            &["occurred_at"],
        ),
        post_json(
            "occurred_at impossible",
            json!({"event": "a", "occurred_at": "2026-02-30T00:00:00Z"}),
            422,
            &["occurred_at"],
        ),
        post_json(
            "id with a space",
            json!({"event": "a", "id": "x y"}),
            422,
            &["id"],
        ),
        post_json(
            "id with a dot",
            json!({"event": "a", "id": "x.y"}),
            422,
            &["id"],
        ),
        post_json(
            "id 129 chars",
            json!({"event": "a", "id": "i".repeat(129)}),
            422,
            &["id"],
        ),
        post_json("id a number", json!({"event": "a", "id": 5}), 422, &["id"]),
        post_json(
            "actor with NUL",
            json!({"event": "a", "actor": "a\u{0}b"}),
            422,
            &["actor"],
        ),
        post_json(
            "actor empty",
            json!({"event": "a", "actor": ""}),
            422,
            &["actor"],
        ),
        post_json("not an object", json!(5), 422, &[""]),
        post_json("a string", json!("event"), 422, &[""]),
        post_json("empty batch", json!([]), 422, &[""]),
        post_json(
            "batch with bad items (all-or-nothing)",
            json!([{"event": "ok"}, {"event": "bad x"}, {"event": "y", "level": "loud", "nope": 1}, 7]),
            422,
            &["[1].event", "[2].level", "[2].nope", "[3]"],
        ),
        Case {
            name: "text/plain".into(),
            req: Req::Post {
                ct: Some("text/plain"),
                headers: vec![],
                body: br#"{"event":"a"}"#.to_vec(),
            },
            status: 415,
            fields: Some(vec![]),
        },
        Case {
            name: "form encoded".into(),
            req: Req::Post {
                ct: Some("application/x-www-form-urlencoded"),
                headers: vec![],
                body: b"event=a".to_vec(),
            },
            status: 415,
            fields: Some(vec![]),
        },
        Case {
            name: "no content type".into(),
            req: Req::Post {
                ct: None,
                headers: vec![],
                body: br#"{"event":"a"}"#.to_vec(),
            },
            status: 415,
            fields: Some(vec![]),
        },
        post(
            "gzip Content-Encoding",
            GZIP_EVENT.to_vec(),
            415,
            Some(vec![]),
        )
        .with_header("Content-Encoding", "gzip"),
        post(
            "deflate Content-Encoding on plain JSON",
            br#"{"event":"a"}"#.to_vec(),
            415,
            Some(vec![]),
        )
        .with_header("Content-Encoding", "deflate"),
        post(
            "identity then br Content-Encoding",
            br#"{"event":"a"}"#.to_vec(),
            415,
            Some(vec![]),
        )
        .with_header("Content-Encoding", "identity, br"),
        post(
            "Idempotency-Key too long",
            br#"{"event":"a"}"#.to_vec(),
            400,
            Some(vec!["Idempotency-Key"]),
        )
        .with_header("Idempotency-Key", &"k".repeat(256)),
        post(
            "Idempotency-Key with a space",
            br#"{"event":"a"}"#.to_vec(),
            400,
            Some(vec!["Idempotency-Key"]),
        )
        .with_header("Idempotency-Key", "a b"),
    ];
    for case in &cases {
        let r = run(&app, case).await;
        check(&app, case, &r);
        if case.name.contains("Content-Encoding") {
            let p = r.json();
            assert_eq!(
                p["type"],
                json!("urn:trail:problem:unsupported-encoding"),
                "{}",
                case.name
            );
            let detail = p["detail"].as_str().unwrap();
            assert!(
                detail.contains("is not supported; send the JSON uncompressed"),
                "{}: {detail}",
                case.name
            );
            assert_eq!(
                r.header("accept-encoding").as_deref(),
                Some("identity"),
                "{}",
                case.name
            );
        }
    }
    // The server still works, and the chain is intact.
    app.post(&json!({"event": "after"})).await.expect(201);
    let v = app.get("/v1/verify").await.ok_json(200);
    assert_eq!(v["valid"], json!(true));
    assert_eq!(v["entries_checked"], json!(app.seq(6)));
}

#[actix_rt::test]
async fn json_content_types_with_parameters_are_accepted() {
    let app = spawn_app().await;
    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/problem+json",
        "application/json; charset=\"UTF-8\"",
    ] {
        app.post_raw(Some(ct), &[], br#"{"event":"a"}"#.to_vec())
            .await
            .expect(201);
    }
    assert_eq!(app.count(), 4);
    // JSON is UTF-8: another charset would be read as UTF-8 all the same.
    let r = app
        .post_raw(
            Some("application/json; charset=latin-1"),
            &[],
            br#"{"event":"a"}"#.to_vec(),
        )
        .await;
    r.expect(415);
    assert_eq!(
        r.json()["detail"],
        json!("events must be sent as UTF-8 JSON (got charset \"latin-1\")")
    );
    assert_eq!(app.count(), 4);
}

#[actix_rt::test]
async fn bad_query_parameters_are_400_problems() {
    let app = seeded().await;
    let page = app.get("/v1/events?limit=2&actor=a1").await.ok_json(200);
    assert_eq!(page["has_more"], json!(false));
    let page = app.get("/v1/events?limit=2").await.ok_json(200);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let paths = vec![
        get("/v1/events?limit=-1", 400, &["limit"]),
        get("/v1/events?limit=0", 400, &["limit"]),
        get("/v1/events?limit=100000", 400, &["limit"]),
        get("/v1/events?limit=1001", 400, &["limit"]),
        get("/v1/events?limit=abc", 400, &["limit"]),
        get("/v1/events?limit=", 400, &["limit"]),
        get("/v1/events?limit=1.5", 400, &["limit"]),
        get("/v1/events?limit=10%27%20OR%201=1", 400, &["limit"]),
        get("/v1/events?offset=10001", 400, &["offset"]),
        get("/v1/events?offset=-1", 400, &["offset"]),
        get(
            "/v1/events?offset=1;DROP%20TABLE%20events",
            400,
            &["offset"],
        ),
        get("/v1/events?since=2026-02-30", 400, &["since"]),
        get("/v1/events?until=2026-13-01", 400, &["until"]),
        get("/v1/events?since=2026-01-01T25:00:00Z", 400, &["since"]),
        get("/v1/events?since=yesterday", 400, &["since"]),
        get(
            "/v1/events?since=2026-01-01%27%20OR%20%271%27=%271",
            400,
            &["since"],
        ),
        get(
            "/v1/events?since=2026-03-02&until=2026-03-01",
            400,
            &["until"],
        ),
        get(
            "/v1/events?since=2026-02-30&until=2026-02-31",
            400,
            &["since", "until"],
        ),
        get("/v1/events?cursor=abc", 400, &["cursor"]),
        get("/v1/events?cursor=not%20a%20cursor%21", 400, &["cursor"]),
        get("/v1/events?cursor=%27%20OR%201=1%20--", 400, &["cursor"]),
        get(
            &format!("/v1/events?cursor={}", b64("c1.3.deadbeefdeadbeef")),
            400,
            &["cursor"],
        ),
        get(
            &format!("/v1/events?cursor={}", b64("c1.x.deadbeefdeadbeef")),
            400,
            &["cursor"],
        ),
        get(
            &format!("/v1/events?cursor={}", b64("c2.3")),
            400,
            &["cursor"],
        ),
        get("/v1/events?cursor=", 400, &["cursor"]),
        get(
            &format!("/v1/events?limit=2&actor=a1&cursor={cursor}"),
            400,
            &["cursor"],
        ),
        get(
            &format!("/v1/events?limit=2&order=asc&cursor={cursor}"),
            400,
            &["cursor"],
        ),
        get(
            &format!("/v1/events?limit=2&event=seed&cursor={cursor}"),
            400,
            &["cursor"],
        ),
        get(
            &format!("/v1/events?limit=2&cursor={cursor}&offset=3"),
            400,
            &["offset"],
        ),
        get("/v1/events?actor=%00", 400, &["actor"]),
        get("/v1/events?actor=a%00b", 400, &["actor"]),
        get("/v1/events?resource=%00", 400, &["resource"]),
        get("/v1/events?event=%00", 400, &["event"]),
        get("/v1/events?level=%00", 400, &["level"]),
        get("/v1/events?success=%00", 400, &["success"]),
        get("/v1/events?since=%00", 400, &["since"]),
        get("/v1/events?cursor=%00", 400, &["cursor"]),
        get("/v1/events?actor=", 400, &["actor"]),
        get("/v1/events?event=a%20b", 400, &["event"]),
        get("/v1/events?event=a%27%20OR%201=1", 400, &["event"]),
        get("/v1/events?event=auth.%25", 400, &["event"]),
        get("/v1/events?level=loud", 400, &["level"]),
        get("/v1/events?level=%27%20OR%201=1%20--", 400, &["level"]),
        get("/v1/events?success=yes", 400, &["success"]),
        get("/v1/events?success=1%20OR%201=1", 400, &["success"]),
        get("/v1/events?order=sideways", 400, &["order"]),
        get(
            "/v1/events?order=seq;DROP%20TABLE%20events",
            400,
            &["order"],
        ),
        get("/v1/events?foo=1", 400, &["foo"]),
        get("/v1/events?limit=1&limit=2", 400, &["limit"]),
        get("/v1/events?actor=a&actor=b", 400, &["actor"]),
        get("/v1/events?event=a&type=b", 400, &["type"]),
        get(
            "/v1/events?since=2026-01-01&start=2026-01-01",
            400,
            &["start"],
        ),
        get("/api/audit?limit=0", 400, &["limit"]),
        // Errors name the parameter as the client sent it.
        get("/api/audit?start=2026-02-30", 400, &["start"]),
        get("/api/audit?end=2026-13-01", 400, &["end"]),
        get("/api/audit?start=2026-03-02&end=2026-03-01", 400, &["end"]),
        get("/api/audit?since=2026-03-02&end=2026-03-01", 400, &["end"]),
        get("/v1/audit?type=a%20b", 400, &["type"]),
        get("/v1/audit/export?format=csv&type=a%20b", 400, &["type"]),
        get("/api/audit/summary?start=2026-02-30", 400, &["start"]),
        // One term more than a filter may list: refused before any SQL
        // (and before an export sends its headers).
        get(&format!("/v1/events?event={}", terms(101)), 400, &["event"]),
        get(&format!("/api/audit?event={}", terms(101)), 400, &["event"]),
        get(
            &format!("/v1/export?format=csv&event={}", terms(101)),
            400,
            &["event"],
        ),
        get("/v1/audit?limit=100000", 400, &["limit"]),
        get("/v1/summary?period=1y", 400, &["period"]),
        get("/v1/summary?period=24h&since=2026-01-01", 400, &["period"]),
        get("/v1/summary?since=2026-02-30", 400, &["since"]),
        get("/v1/summary?limit=5", 400, &["limit"]),
        get("/v1/summary?period=all&period=24h", 400, &["period"]),
        get("/v1/audit/stats?period=%00", 400, &["period"]),
        get("/v1/verify?from=0", 400, &["from"]),
        get("/v1/verify?from=-1", 400, &["from"]),
        get("/v1/verify?from=5&to=2", 400, &["to"]),
        get("/v1/verify?anchor=xyz", 400, &["anchor"]),
        get("/v1/verify?anchor=3:abc", 400, &["anchor"]),
        get(
            "/v1/verify?anchor=0:0000000000000000000000000000000000000000000000000000000000000000",
            400,
            &["anchor"],
        ),
        get("/v1/verify?limit=1", 400, &["limit"]),
        get("/v1/export?format=xml", 400, &["format"]),
        get("/v1/export?format=csv&limit=5", 400, &["limit"]),
        get("/v1/export?format=csv&cursor=abc", 400, &["cursor"]),
        get("/v1/export?format=csv&since=2026-02-30", 400, &["since"]),
        get("/v1/export?format=csv&actor=%00", 400, &["actor"]),
        get("/v1/export?format=csv&order=up", 400, &["order"]),
        get("/v1/export?format=csv&format=json", 400, &["format"]),
        get("/v1/audit/export?format=pdf", 400, &["format"]),
        // Strict percent-decoding: malformed escapes and bytes that are not
        // UTF-8 are refused, naming the parameter (when its name decodes).
        get("/v1/events?actor=%ff", 400, &["actor"]),
        get("/v1/events?actor=a%FFb", 400, &["actor"]),
        get("/v1/events?actor=%C3", 400, &["actor"]),
        get("/v1/events?actor=%C3%28", 400, &["actor"]),
        get("/v1/events?actor=%ED%A0%80", 400, &["actor"]),
        get("/v1/events?actor=%zz", 400, &["actor"]),
        get("/v1/events?actor=%4", 400, &["actor"]),
        get("/v1/events?actor=abc%", 400, &["actor"]),
        get("/v1/events?actor=%%41", 400, &["actor"]),
        get("/v1/events?limit=2&actor=%g1", 400, &["actor"]),
        get("/v1/events?foo=%zz", 400, &["foo"]),
        get("/v1/events?%ff=1", 400, &[]),
        get("/v1/events?act%zzor=1", 400, &[]),
        get("/v1/events?%4", 400, &[]),
        get("/api/audit?start=%e2%82", 400, &["start"]),
        get("/v1/audit?type=%zz", 400, &["type"]),
        get("/v1/summary?period=%ff", 400, &["period"]),
        get("/v1/verify?anchor=%zz", 400, &["anchor"]),
        get("/v1/export?format=csv&actor=%ff", 400, &["actor"]),
        get("/v1/audit/export?format=%zz", 400, &["format"]),
        get("/v1/events/99999", 404, &[]),
        get("/v1/events/no-such-event", 404, &[]),
        // Routes that take no parameters refuse any.
        get("/v1/events/1?x=1", 400, &["x"]),
        get("/v1/events/1?a=%zz", 400, &["a"]),
        get("/v1/head?x=1", 400, &["x"]),
        get("/v1/head?a=1&a=2", 400, &["a"]),
        get("/openapi.json?x=1", 400, &["x"]),
    ];
    for case in &paths {
        let r = run(&app, case).await;
        check(&app, case, &r);
    }
    let p = assert_problem(&app.get("/v1/head?x=1").await, 400);
    assert_eq!(
        p["errors"],
        json!([{"field": "x", "message": "unknown parameter; this route takes no parameters"}])
    );
    // A POST with a query string writes nothing.
    let before = app.total();
    let req = app
        .client
        .post(app.url("/v1/events?x=1"))
        .insert_header(("content-type", "application/json"));
    let r = crate::util::http::send(req, Some(br#"{"event":"a.b"}"#.to_vec())).await;
    assert_problem(&r, 400);
    assert_eq!(app.total(), before);
    // The probes ignore their query string (a monitor's cache-buster).
    app.get("/healthz?t=1").await.expect(200);
    app.get("/readyz?t=1").await.expect(200);
}

/// A cursor is opaque: one the server did not issue (here: an issued one
/// with its position edited) is refused, not followed.
#[actix_rt::test]
async fn a_cursor_with_an_edited_position_is_refused() {
    let app = seeded().await;
    let page = app.get("/v1/events?limit=2").await.ok_json(200);
    let cursor = page["next_cursor"].as_str().unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some(raw) = raw else {
        return; // not base64 text: nothing to edit, nothing to forge
    };
    let forged: Vec<String> = ["2", "5", "1"]
        .iter()
        .filter_map(|seq| {
            let mut parts: Vec<&str> = raw.split('.').collect();
            let pos = parts
                .iter()
                .position(|p| p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty())?;
            if parts[pos] == *seq {
                return None;
            }
            parts[pos] = seq;
            Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(parts.join(".")))
        })
        .collect();
    assert!(!forged.is_empty(), "cursor {raw:?} holds a position");
    for c in forged {
        let r = app.get(&format!("/v1/events?limit=2&cursor={c}")).await;
        let p = assert_problem(&r, 400);
        assert_eq!(error_fields(&p), ["cursor"]);
    }
}

/// The limits are inclusive: exactly at each limit is accepted.
#[actix_rt::test]
async fn inputs_exactly_at_the_limits_are_accepted() {
    let app = spawn_app().await;
    let mut written = 0;

    // details of exactly 64 KiB serialized: {"k":"…"} is 8 bytes + the text.
    let exact = json!({"event": "a", "details": {"k": "x".repeat(65_536 - 8)}});
    app.post(&exact).await.expect(201);
    written += 1;
    let over = json!({"event": "a", "details": {"k": "x".repeat(65_536 - 7)}});
    let p = assert_problem(&app.post(&over).await, 422);
    assert_eq!(error_fields(&p), ["details"]);

    // Past the parser's own limit, the member is named, and how deep it
    // is: 100 levels of details in one event (counted from details).
    let body = format!("{{\"event\":\"a\",\"details\":{}}}", nested(100));
    let p = assert_problem(
        &app.post_raw(Some("application/json"), &[], body.into_bytes())
            .await,
        422,
    );
    assert_eq!(
        p["errors"],
        json!([{"field": "details", "message": "is nested at least 100 levels deep; at most 32 are allowed"}])
    );

    // 32 levels deep.
    app.post(&json!({"event": "a", "details": nested(32), "metadata": nested(32)}))
        .await
        .expect(201);
    written += 1;

    // 128-character event and id.
    app.post(&json!({"event": "e".repeat(128), "id": "i".repeat(128)}))
        .await
        .expect(201);
    written += 1;

    // A filter listing exactly 100 types and prefixes.
    let list = format!("{},auth.*", terms(99));
    let page = app
        .get(&format!("/v1/events?event={list}"))
        .await
        .ok_json(200);
    assert_eq!(page["events"], json!([]));
    let r = app
        .get(&format!("/v1/export?format=csv&event={list}"))
        .await;
    r.expect(200);

    // A batch of exactly 1,000.
    let batch = Value::Array(vec![json!({"event": "full.batch"}); 1000]);
    assert_eq!(
        app.post(&batch).await.ok_json(201)["events"]
            .as_array()
            .unwrap()
            .len(),
        1000
    );
    written += 1000;

    // A body of exactly 1 MiB (valid JSON padded with trailing whitespace),
    // then one byte more.
    let mut body = serde_json::to_vec(&Value::Array(vec![
        json!({"event": "a", "details": {"k": "y".repeat(60_000)}});
        17
    ]))
    .unwrap();
    assert!(body.len() < 1 << 20);
    body.resize(1 << 20, b' ');
    app.post_raw(Some("application/json"), &[], body.clone())
        .await
        .expect(201);
    written += 17;
    body.push(b' ');
    assert_problem(
        &app.post_raw(Some("application/json"), &[], body).await,
        413,
    );

    assert_eq!(app.count(), written);
}

/// Nesting far past the 32-level rule is still valid JSON breaking a rule:
/// 422 naming `details`, not 400 "malformed JSON" from the parser's own
/// recursion limit.
#[actix_rt::test]
async fn details_nested_200_deep_is_a_422_naming_details() {
    let app = seeded().await;
    let mut body = String::from(r#"{"event":"a","details":"#);
    body.push_str(&r#"{"d":"#.repeat(199));
    body.push_str("{}");
    body.push_str(&"}".repeat(199));
    body.push('}');
    let r = app
        .post_raw(Some("application/json"), &[], body.into_bytes())
        .await;
    let p = assert_problem(&r, 422);
    assert_eq!(error_fields(&p), ["details"]);
    assert_eq!(app.count(), 5);
}

/// Strict decoding keeps correct encodings working: a percent-encoded
/// non-ASCII actor (and `+` for a space) matches exactly that actor.
#[actix_rt::test]
async fn a_percent_encoded_non_ascii_actor_matches_exactly() {
    let app = spawn_app().await;
    let batch = json!([
        {"event": "a", "actor": "Jürgen"},
        {"event": "a", "actor": "Jurgen"},
        {"event": "a", "actor": "Jürgen M"},
        {"event": "a", "actor": "J\u{fffd}rgen"},
        {"event": "a", "actor": "Jürgen"},
    ]);
    app.post(&batch).await.expect(201);
    let page = app
        .get("/v1/events?actor=J%C3%BCrgen&order=asc")
        .await
        .ok_json(200);
    assert_eq!(seqs_of(&page["events"]), [app.seq(1), app.seq(5)]);
    for ev in page["events"].as_array().unwrap() {
        assert_eq!(ev["actor"], json!("Jürgen"));
    }
    let page = app.get("/v1/events?actor=J%C3%BCrgen+M").await.ok_json(200);
    assert_eq!(seqs_of(&page["events"]), [app.seq(3)]);
    let page = app
        .get("/v1/events?actor=J%c3%bcrgen%20M")
        .await
        .ok_json(200);
    assert_eq!(seqs_of(&page["events"]), [app.seq(3)]);
    // The seed routes decode the same way.
    let page = app.get("/api/audit?actor=J%C3%BCrgen").await.ok_json(200);
    assert_eq!(seqs_of(&page["events"]), [app.seq(5), app.seq(1)]);
}

/// A body that stops short of its `Content-Length` (the client closed its
/// side) is a 400 in trail's own words: actix's internal text (`payload
/// reached EOF before completing: None`) never reaches the client.
#[actix_rt::test]
async fn a_body_cut_short_is_a_400_in_plain_words_and_writes_nothing() {
    let app = spawn_app().await;
    let before = app.total();
    let port = app.port;
    let raw = raw_exchange(
        port,
        b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"event\":\"cut.off\"}",
        true,
    )
    .await;
    let (head, body) = raw.split_once("\r\n\r\n").expect("end of headers");
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    let p: Value = serde_json::from_str(body).expect("a problem document");
    assert_eq!(
        p["detail"],
        json!("the request body ended before all of it arrived (fewer bytes than its Content-Length, or no last chunk)")
    );
    assert_eq!(app.total(), before);
}

/// A body that never arrives whole (fewer bytes than `Content-Length`, the
/// connection kept open) gets a 408 when the body deadline passes, the
/// connection is closed, and nothing is written.
#[actix_rt::test]
async fn a_body_that_never_arrives_whole_is_a_408_at_the_deadline() {
    let app = spawn_app_with(|c| c.limits.body_deadline = std::time::Duration::from_secs(1)).await;
    let before = app.total();
    let port = app.port;
    // No shutdown: the client just stops sending.
    let raw = raw_exchange(
        port,
        b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"event\":\"never.whole\"}",
        false,
    )
    .await;
    let (head, body) = raw.split_once("\r\n\r\n").expect("end of headers");
    assert!(
        head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(lower.contains("connection: close"), "{head}");
    let p: Value = serde_json::from_str(body).expect("a problem document");
    assert_eq!(p["status"], json!(408));
    assert_eq!(
        p["detail"],
        json!("the request body did not all arrive within 1 s; nothing was written")
    );
    assert_eq!(app.total(), before);
}

/// A reversed range is named with the parameters the client sent: the seed
/// systems' `start`/`end` as such.
#[actix_rt::test]
async fn a_reversed_range_names_the_parameters_sent() {
    let app = spawn_app().await;
    for (query, field, message) in [
        (
            "/v1/events?since=2026-02-01&until=2026-01-01",
            "until",
            "must not be before since",
        ),
        (
            "/api/audit?start=2026-02-01&end=2026-01-01",
            "end",
            "must not be before start",
        ),
        (
            "/api/audit?since=2026-02-01&end=2026-01-01",
            "end",
            "must not be before since",
        ),
    ] {
        let r = app.get(query).await;
        r.expect(400);
        let p = r.json();
        assert_eq!(
            p["errors"],
            json!([{"field": field, "message": message}]),
            "{query}"
        );
    }
}

/// Two `Idempotency-Key` headers are ambiguous: a 400 naming the header,
/// nothing written. A leading byte-order mark is skipped, as by the CLI.
#[actix_rt::test]
async fn two_idempotency_keys_are_refused_and_a_bom_is_skipped() {
    let app = spawn_app().await;
    let before = app.total();
    let r = send(
        app.client
            .post(app.url("/v1/events"))
            .insert_header(("content-type", "application/json"))
            .append_header(("idempotency-key", "k-1"))
            .append_header(("idempotency-key", "k-2")),
        Some(br#"{"event":"two.keys"}"#.to_vec()),
    )
    .await;
    r.expect(400);
    assert_eq!(
        r.json()["errors"],
        json!([{"field": "Idempotency-Key", "message": "is given more than once"}])
    );
    assert_eq!(app.total(), before);

    let mut body = "\u{feff}".as_bytes().to_vec();
    body.extend_from_slice(br#"{"event":"with.bom"}"#);
    let v = app
        .post_raw(Some("application/json"), &[], body)
        .await
        .ok_json(201);
    assert_eq!(v["event"], json!("with.bom"));
    assert_eq!(app.total(), before + 1);
}

/// Sends `request` as it is over a new connection (then closes the sending
/// side when `close_write`), and reads until the server closes.
async fn raw_exchange(port: u16, request: &'static [u8], close_write: bool) -> String {
    actix_web::rt::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.write_all(request).unwrap();
        if close_write {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .expect("the server answers and closes");
        String::from_utf8(out).expect("UTF-8 response")
    })
    .await
    .unwrap()
}

/// Messages name what the client sent: an empty body as empty (not as
/// truncated JSON at column 0), a window given with the old tools' names
/// under those names.
#[actix_rt::test]
async fn messages_name_what_was_sent() {
    let app = spawn_app().await;
    let before = app.total();
    for body in ["", "  \r\n"] {
        let p = assert_problem(
            &app.post_raw(Some("application/json"), &[], body.into())
                .await,
            400,
        );
        assert_eq!(
            p["detail"],
            json!("the body is empty: send one event object, or an array of them")
        );
    }
    for (path, says) in [
        (
            "/api/audit/summary?period=7d&start=2026-01-01",
            "give either period or start/end, not both",
        ),
        (
            "/v1/summary?period=7d&until=2026-01-01",
            "give either period or since/until, not both",
        ),
    ] {
        let p = assert_problem(&app.get(path).await, 400);
        assert_eq!(
            p["errors"],
            json!([{"field": "period", "message": says}]),
            "{path}"
        );
    }
    assert_eq!(app.total(), before);
    app.stop().await;
}
