//! Fail closed, lose nothing: when a commit cannot be made durable (here the
//! database is full), every request in it is refused with 503, nothing of it
//! is stored, and the chain goes on intact once there is room again.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

fn big_batch(tag: &str) -> Value {
    let filler = "x".repeat(8 * 1024);
    Value::Array(
        (0..64)
            .map(|i| json!({"event": "disk.fill", "actor": format!("{tag}-{i}"), "details": {"pad": filler}}))
            .collect(),
    )
}

fn set_max_pages(app: &crate::helpers::TestApp, pages: Option<i64>) {
    app.state
        .writer
        .exec(move |ctx| {
            let current: i64 = ctx.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let limit = pages.unwrap_or(current);
            ctx.conn
                .query_row(&format!("PRAGMA max_page_count = {limit}"), [], |r| {
                    r.get::<_, i64>(0)
                })
        })
        .expect("the writer runs the pragma")
        .expect("the pragma applies");
}

#[actix_rt::test]
async fn a_full_disk_fails_every_request_in_the_commit_and_stores_nothing() {
    let app = spawn_app().await;
    app.post(&json!({"event": "before.full", "actor": "a"}))
        .await
        .expect(201);
    let rows_before = app.total();

    // No page may be added from now on: the next commits cannot be made.
    set_max_pages(&app, None);
    let app_ref = &app;
    let refused = futures_util::future::join_all((0..4).map(|i| {
        let batch = big_batch(&format!("full{i}"));
        async move { app_ref.post(&batch).await }
    }))
    .await;
    for r in &refused {
        let p = assert_problem(r, 503);
        assert_eq!(
            p["detail"],
            "the events could not be stored durably; nothing was written"
        );
        assert_eq!(r.header("retry-after").as_deref(), Some("5"));
        assert!(
            !r.text().contains("SQL") && !r.text().contains("full"),
            "no internal text: {}",
            r.text()
        );
    }
    assert_eq!(
        app.total(),
        rows_before,
        "nothing of a failed commit is stored"
    );

    // Room again: appends continue the one chain, with no gap.
    set_max_pages(&app, Some(1 << 30));
    let ok = app.post(&big_batch("after")).await.ok_json(201);
    assert_eq!(ok["events"][0]["seq"].as_u64(), Some(rows_before + 1));
    let verdict = app.get("/v1/verify").await.ok_json(200);
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["entries_checked"].as_u64(), Some(rows_before + 64));
}
