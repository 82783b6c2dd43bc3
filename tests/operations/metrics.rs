//! `/metrics`: counters move as events are appended, requests served and
//! requests refused. Counters are process-wide (shared by every server of
//! this test binary), so only deltas of at least N are asserted.

use awc::http::Method;
use serde_json::json;
use trail::store::tokens::Scope;

use crate::helpers::*;

async fn scrape(s: &Server, token: Option<&str>) -> String {
    let r = s.call(Req::get("/metrics").maybe_token(token)).await;
    r.expect(200);
    // The Prometheus text exposition format, with its charset.
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
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
    let refused0 = metric_sum(
        &before,
        "trail_http_requests_total",
        &["route=\"/v1/events\"", "method=\"GET\"", "status=\"401\""],
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
    // Refused before routing, and still counted under the route asked for.
    let refused1 = metric_sum(
        &after,
        "trail_http_requests_total",
        &["route=\"/v1/events\"", "method=\"GET\"", "status=\"401\""],
    );
    assert!(refused1 - refused0 >= 2.0, "{refused0} -> {refused1}");
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
        "trail_wal_size_bytes",
    ] {
        assert!(after.contains(name), "{name} in /metrics:\n{after}");
    }
    // Every series says what it is; alerting counters exist before they move.
    for name in [
        "trail_events_appended_total",
        "trail_events_dropped_total",
        "trail_commit_failures_total",
        "trail_http_requests_total",
        "trail_auth_failures_total",
        "trail_append_latency_seconds",
        "trail_commit_batch_events",
        "trail_chain_head_seq",
        "trail_database_size_bytes",
    ] {
        assert!(
            after.contains(&format!("# HELP {name} ")),
            "# HELP for {name}:\n{after}"
        );
    }
    for series in [
        "trail_events_dropped_total{reason=\"min_level\"}",
        "trail_events_dropped_total{reason=\"excluded\"}",
        "trail_commit_failures_total",
    ] {
        assert!(after.contains(series), "{series} in /metrics:\n{after}");
    }
    s.stop().await;
}

/// A method is any token a client likes: it must not become a label value
/// (the series would grow with every request) nor be kept whole in an
/// `auth.fail` row, which can never be deleted.
#[actix_rt::test]
async fn methods_chosen_by_clients_add_no_series_and_are_cut_in_auth_fail() {
    let s = start(|_| {}).await;
    s.create_token("methods-admin", &[Scope::Admin]);
    let other0 = metric_sum(
        &scrape(&s, None).await,
        "trail_http_requests_total",
        &["method=\"other\""],
    );

    let odd = Method::from_bytes(b"RNDMETHOD12345").unwrap();
    s.call(Req::new(odd.clone(), "/healthz")).await.expect(405);
    let long = "Q".repeat(6000);
    let long_method = Method::from_bytes(long.as_bytes()).unwrap();
    let refused = s.call(Req::new(long_method, "/v1/nowhere")).await;
    refused.expect(401);

    let after = scrape(&s, None).await;
    assert!(
        !after.contains("RNDMETHOD"),
        "a client's method became a label:\n{after}"
    );
    assert!(!after.contains("QQQQ"), "a client's method became a label");
    assert_eq!(
        metric_sum(&after, "trail_http_requests_total", &["method=\"other\""]) - other0,
        2.0,
        "both requests are counted under method=\"other\""
    );

    let rid = refused.header("x-request-id").expect("a request id");
    let found = s.db().by_request_id(&rid);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["event"], "auth.fail");
    assert_eq!(
        found[0]["details"]["method"],
        "Q".repeat(32),
        "{}",
        found[0]
    );
    assert_eq!(
        found[0]["details"]["reason"], "missing_token",
        "{}",
        found[0]
    );
    s.stop().await;
}
