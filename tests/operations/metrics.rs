//! `/metrics`: counters move as events are appended, requests served and
//! requests refused. Counters are process-wide (shared by every server of
//! this test binary), so only deltas of at least N are asserted.

use serde_json::json;
use trail::store::tokens::Scope;

use crate::helpers::*;

async fn scrape(s: &Server, token: Option<&str>) -> String {
    let r = s.call(Req::get("/metrics").maybe_token(token)).await;
    r.expect(200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "content type {ct:?}");
    r.text_lossy()
}

#[actix_rt::test]
async fn counters_move_with_appends_requests_and_refusals() {
    let s = start(|_| {}).await;
    let admin = s.create_token("metrics-admin", &[Scope::Admin]);
    let before = scrape(&s, None).await;
    let appended0 = metric_sum(&before, "trail_events_appended_total", &[]);
    let posts0 = metric_sum(
        &before,
        "trail_http_requests_total",
        &["route=\"/v1/events\"", "method=\"POST\"", "status=\"201\""],
    );
    let route0 = metric_sum(
        &before,
        "trail_http_requests_total",
        &["route=\"/v1/events\""],
    );
    let fails0 = metric_sum(&before, "trail_auth_failures_total", &[]);
    let missing0 = metric_sum(
        &before,
        "trail_auth_failures_total",
        &["reason=\"missing_token\""],
    );

    const N: usize = 12;
    for i in 0..N {
        s.post_event(
            json!({"event": "metrics.tick", "details": {"i": i}}),
            Some(&admin),
        )
        .await
        .expect(201);
    }
    // One batch of 5 more.
    let batch: Vec<_> = (0..5)
        .map(|i| json!({"event": "metrics.batch", "details": {"i": i}}))
        .collect();
    s.post_event(json!(batch), Some(&admin)).await.expect(201);
    // Refused: no token, a wrong token.
    s.get("/v1/events").await.expect(401);
    s.call(Req::get("/v1/events").token("trail_not-a-real-token-at-all-000000000"))
        .await
        .expect(401);

    let after = scrape(&s, None).await;
    let appended1 = metric_sum(&after, "trail_events_appended_total", &[]);
    assert!(
        appended1 - appended0 >= (N + 5 + 2) as f64,
        "trail_events_appended_total moved {appended0} -> {appended1}, expected at least +{} (N posts, a batch of 5, 2 auth.fail)",
        N + 5 + 2
    );
    let posts1 = metric_sum(
        &after,
        "trail_http_requests_total",
        &["route=\"/v1/events\"", "method=\"POST\"", "status=\"201\""],
    );
    assert!(
        posts1 - posts0 >= (N + 1) as f64,
        "trail_http_requests_total{{route=\"/v1/events\",method=\"POST\",status=\"201\"}} moved {posts0} -> {posts1}"
    );
    let route1 = metric_sum(
        &after,
        "trail_http_requests_total",
        &["route=\"/v1/events\""],
    );
    assert!(route1 - route0 >= (N + 1) as f64, "{route0} -> {route1}");
    let fails1 = metric_sum(&after, "trail_auth_failures_total", &[]);
    assert!(
        fails1 - fails0 >= 2.0,
        "trail_auth_failures_total {fails0} -> {fails1}"
    );
    let missing1 = metric_sum(
        &after,
        "trail_auth_failures_total",
        &["reason=\"missing_token\""],
    );
    assert!(missing1 - missing0 >= 1.0, "{missing0} -> {missing1}");
    assert!(
        metric_sum(
            &after,
            "trail_auth_failures_total",
            &["reason=\"invalid_token\""]
        ) >= 1.0,
        "{after}"
    );
    // Other series the service documents are there.
    for name in [
        "trail_http_request_duration_seconds",
        "trail_chain_head_seq",
        "trail_writer_queue_depth",
        "trail_database_size_bytes",
    ] {
        assert!(after.contains(name), "{name} in /metrics:\n{after}");
    }
    s.stop().await;
}
