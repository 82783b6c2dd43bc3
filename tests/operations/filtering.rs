//! What the server drops (`min_level`, `exclude_events`) and how retries of
//! events with server-filled members are recognised.

use serde_json::json;
use trail::config::Cidr;
use trail::domain::{EventMatch, Level};

use crate::helpers::*;

#[actix_rt::test]
async fn events_below_min_level_are_dropped() {
    let s = start(|c| c.min_level = Level::Warning).await;
    let db = s.db();
    let dropped0 = metric_sum(
        &s.get("/metrics").await.text_lossy(),
        "trail_events_dropped_total",
        &["reason=\"min_level\""],
    );
    let n0 = db.count();
    for level in ["debug", "info"] {
        let r = s
            .post_event(json!({"event": "quiet.thing", "level": level}), None)
            .await;
        assert_eq!(r.status, 200, "a single {level} event: {}", r.text_lossy());
        assert_eq!(
            r.json(),
            json!({"dropped": "min_level", "detail": "the event is below the server's min_level; it was not stored"})
        );
        assert_eq!(r.header("location"), None);
        assert_eq!(db.count(), n0, "nothing stored for a {level} event");
    }
    // With a client id: still dropped, and not stored under that id.
    let r = s
        .post_event(
            json!({"id": "dropped-1", "event": "quiet.thing", "level": "info"}),
            None,
        )
        .await;
    r.expect(200);
    assert!(db.by_id("dropped-1").is_none());
    assert_eq!(db.count(), n0);
    for level in ["warning", "error", "critical"] {
        s.post_event(json!({"event": "loud.thing", "level": level}), None)
            .await
            .expect(201);
    }
    assert_eq!(db.count(), n0 + 3);
    // A batch keeps what passes and says how many were dropped; each
    // dropped event keeps its place in the answer.
    let r = s
        .post_event(
            json!([
                {"event": "mixed.a", "level": "info"},
                {"event": "mixed.b", "level": "error"},
                {"event": "mixed.c", "level": "debug"}
            ]),
            None,
        )
        .await;
    r.expect(201);
    let v = r.json();
    assert_eq!(v["events"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["events"][0], json!({"dropped": "min_level"}));
    assert_eq!(v["events"][1]["event"], "mixed.b");
    assert_eq!(
        v["events"][1]["seq"].as_u64(),
        db.events_of("mixed.b")[0]["seq"].as_u64()
    );
    assert_eq!(v["events"][2], json!({"dropped": "min_level"}));
    assert_eq!(v["dropped"], json!(2), "{v}");
    assert_eq!(db.count(), n0 + 4);
    // A keyed retry of such a batch: the same answer, drops in place; the
    // same stored events with a drop elsewhere are another request.
    let keyed = json!([
        {"event": "keyed.a", "level": "debug"},
        {"event": "keyed.b", "level": "error"}
    ]);
    let post_keyed = |body: serde_json::Value| {
        s.call(Req::post("/v1/events", body).header("idempotency-key", "drop-key"))
    };
    let first = post_keyed(keyed.clone()).await;
    first.expect(201);
    let again = post_keyed(keyed).await;
    again.expect(200);
    assert_eq!(again.body, first.body);
    let moved = post_keyed(json!([
        {"event": "keyed.b", "level": "error"},
        {"event": "keyed.a", "level": "debug"}
    ]))
    .await;
    moved.expect(409);
    assert_eq!(db.count(), n0 + 5);
    // A batch of only dropped events: 200, nothing stored.
    let r = s
        .post_event(
            json!([{"event": "q.a", "level": "info"}, {"event": "q.b", "level": "debug"}]),
            None,
        )
        .await;
    r.expect(200);
    assert_eq!(
        r.json(),
        json!({"events": [{"dropped": "min_level"}, {"dropped": "min_level"}], "dropped": 2})
    );
    assert_eq!(db.count(), n0 + 5);
    // The server's own warnings pass (auth.fail is a warning).
    let dropped1 = metric_sum(
        &s.get("/metrics").await.text_lossy(),
        "trail_events_dropped_total",
        &["reason=\"min_level\""],
    );
    assert!(
        dropped1 - dropped0 >= 7.0,
        "dropped {dropped0} -> {dropped1}"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn excluded_event_types_are_dropped() {
    let s = start(|c| c.exclude_events = EventMatch::parse("health.*,noise.ping").unwrap()).await;
    let db = s.db();
    let n0 = db.count();
    for kind in ["health.check", "health.probe.deep", "noise.ping"] {
        let r = s
            .post_event(json!({"event": kind, "level": "critical"}), None)
            .await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text_lossy());
        assert_eq!(r.json()["dropped"], json!("excluded"));
        assert_eq!(db.count(), n0, "{kind} not stored");
    }
    for kind in ["noise.pong", "healthy.check", "user.login"] {
        let r = s.post_event(json!({"event": kind}), None).await;
        assert_eq!(r.status, 201, "{kind}: {}", r.text_lossy());
    }
    assert_eq!(db.count(), n0 + 3);
    let r = s
        .post_event(
            json!([{"event": "noise.ping"}, {"event": "user.logout"}]),
            None,
        )
        .await;
    r.expect(201);
    let v = r.json();
    assert_eq!(v["dropped"], json!(1));
    assert_eq!(v["events"][0], json!({"dropped": "excluded"}));
    assert_eq!(v["events"][1]["event"], json!("user.logout"));
    assert_eq!(db.count(), n0 + 4);
    assert!(db.events_of("noise.ping").is_empty());
    s.stop().await;
}

#[actix_rt::test]
async fn a_retry_of_an_event_with_server_filled_members_is_recognised() {
    let s = start(|c| c.trusted_proxies = vec![Cidr::parse("127.0.0.1").unwrap()]).await;
    let db = s.db();
    // Through a proxy, a token is needed.
    let tk = s.create_token("retrier", &[trail::store::tokens::Scope::Ingest]);
    let ev =
        json!({"id": "retry-me-1", "event": "order.placed", "actor": "bob", "details": {"n": 1}});
    let r = s
        .call(
            Req::post("/v1/events", ev.clone())
                .token(&tk)
                .header("x-request-id", "first-try")
                .header("x-forwarded-for", "203.0.113.7"),
        )
        .await;
    r.expect(201);
    let first = r.json();
    assert_eq!(first["source_ip"], "203.0.113.7");
    assert_eq!(first["request_id"], "first-try");
    let n = db.count();

    // Another request id, another client address, and none at all: the same
    // event, so 200 with the original, nothing written.
    for headers in [
        vec![
            ("x-request-id", "second-try"),
            ("x-forwarded-for", "198.51.100.9"),
        ],
        vec![],
        vec![
            ("x-request-id", "first-try"),
            ("x-forwarded-for", "203.0.113.7"),
        ],
    ] {
        let r = s
            .call(
                Req::post("/v1/events", ev.clone())
                    .token(&tk)
                    .headers(&headers),
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "a retry of retry-me-1 with {headers:?} (server-filled source_ip/request_id differ): {}",
            r.text_lossy()
        );
        let again = r.json();
        assert_eq!(again["seq"], first["seq"]);
        assert_eq!(again["request_id"], "first-try");
        assert_eq!(again["source_ip"], "203.0.113.7");
        assert_eq!(db.count(), n, "nothing written by a retry");
    }
    // A batch retry too.
    let batch = json!([
        {"id": "retry-b-1", "event": "order.placed"},
        {"id": "retry-b-2", "event": "order.paid"}
    ]);
    s.call(
        Req::post("/v1/events", batch.clone())
            .token(&tk)
            .header("x-request-id", "b1"),
    )
    .await
    .expect(201);
    let n = db.count();
    let r = s
        .call(
            Req::post("/v1/events", batch)
                .token(&tk)
                .header("x-request-id", "b2"),
        )
        .await;
    assert_eq!(r.status, 200, "batch retry: {}", r.text_lossy());
    assert_eq!(db.count(), n);

    // The client's own members do count: a different content is a conflict.
    let changed = json!({"id": "retry-me-1", "event": "order.placed", "actor": "mallory", "details": {"n": 1}});
    s.post_event(changed, Some(&tk)).await.expect(409);
    let sent_ip = json!({"id": "retry-me-1", "event": "order.placed", "actor": "bob", "details": {"n": 1}, "source_ip": "192.0.2.1"});
    s.post_event(sent_ip, Some(&tk)).await.expect(409);
    assert_eq!(db.count(), n);
    s.stop().await;
}

/// The read threads keep connections for their whole life; they must not
/// take them from the pool the longer reads share, or a server configured
/// with a small pool could serve pages but never a summary.
#[actix_rt::test]
async fn a_pool_of_one_still_serves_long_reads_next_to_pages() {
    let s = start(|c| {
        c.workers = 2;
        c.read_pool_size = 1;
    })
    .await;
    s.post_event(json!({"event": "pool.test"}), None)
        .await
        .expect(201);
    for _ in 0..4 {
        let page = s.get("/v1/events?limit=1").await;
        assert_eq!(page.status, 200, "{}", page.text_lossy());
    }
    let summary = s.get("/v1/summary?period=all").await;
    assert_eq!(summary.status, 200, "{}", summary.text_lossy());
    // server.start and pool.test.
    assert_eq!(summary.json()["total_events"], json!(2));
    s.stop().await;
}
