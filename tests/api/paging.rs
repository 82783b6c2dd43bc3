//! Cursor paging over 10,000 events while another task keeps appending:
//! newest-first visits every event that existed at the start exactly once,
//! in order; oldest-first also picks up the new ones, without duplicates.

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::helpers::*;

/// Posts batches of 20 until `stop` (or `max_posts`), publishing the number
/// of acknowledged posts after each.
fn start_appender(
    app: &TestApp,
    stop: Rc<Cell<bool>>,
    max_posts: u64,
    tag: &'static str,
) -> (actix_rt::task::JoinHandle<u64>, watch::Receiver<u64>) {
    let (tx, rx) = watch::channel(0u64);
    let client = app.client.clone();
    let url = app.url("/v1/events");
    let handle = actix_rt::spawn(async move {
        let mut posts = 0u64;
        while !stop.get() && posts < max_posts {
            let batch: Vec<Value> = (0..20)
                .map(|i| json!({"event": "page.new", "actor": tag, "details": {"post": posts, "i": i}}))
                .collect();
            let req = client
                .post(url.clone())
                .insert_header(("content-type", "application/json"));
            send(req, Some(serde_json::to_vec(&batch).unwrap()))
                .await
                .expect(201);
            posts += 1;
            let _ = tx.send(posts);
        }
        posts
    });
    (handle, rx)
}

/// Waits (bounded) until the appender has acknowledged one more post, unless
/// it has finished.
async fn wait_for_progress(rx: &mut watch::Receiver<u64>) {
    match actix_rt::time::timeout(Duration::from_secs(20), rx.changed()).await {
        Ok(_) => {} // progress, or the appender finished
        Err(_) => panic!("the appender made no progress within 20 s"),
    }
}

async fn page(app: &TestApp, path: &str) -> (Vec<Value>, Option<String>) {
    let v = app.get(path).await.ok_json(200);
    let events = v["events"].as_array().unwrap().clone();
    let next = v["next_cursor"].as_str().map(str::to_owned);
    assert_eq!(v["has_more"], json!(next.is_some()), "{path}");
    (events, next)
}

/// Follows `next_cursor` from `first` to the end, waiting for one more
/// append between pages: the seqs served in order, their ids (each seen
/// once), and how many pages it took.
async fn walk(
    app: &TestApp,
    first: &str,
    progress: &mut watch::Receiver<u64>,
) -> (Vec<u64>, HashSet<String>, u64) {
    let mut seqs: Vec<u64> = Vec::new();
    let mut ids = HashSet::new();
    let mut path = first.to_owned();
    let mut pages = 0;
    loop {
        let (events, next) = page(app, &path).await;
        pages += 1;
        for e in &events {
            seqs.push(e["seq"].as_u64().unwrap());
            assert!(
                ids.insert(e["id"].as_str().unwrap().to_owned()),
                "id seen twice: {e}"
            );
        }
        match next {
            Some(c) => path = format!("{first}&cursor={}", enc(&c)),
            None => break,
        }
        wait_for_progress(progress).await;
        assert!(pages < 1000, "paging does not end");
    }
    (seqs, ids, pages)
}

#[actix_rt::test]
async fn cursor_paging_over_10000_events_while_another_task_appends() {
    let app = spawn_app().await;
    app.post_many(
        10_000,
        2,
        |i| json!({"event": "page.old", "actor": format!("a{}", i % 10)}),
    )
    .await;
    assert_eq!(app.count(), 10_000);

    // Newest first.
    let stop = Rc::new(Cell::new(false));
    let (appender, mut progress) = start_appender(&app, stop.clone(), 10_000, "desc");
    let (seqs, _, pages) = walk(&app, "/v1/events?limit=250", &mut progress).await;
    stop.set(true);
    let desc_posts = actix_rt::time::timeout(Duration::from_secs(30), appender)
        .await
        .expect("the appender stops")
        .expect("the appender did not panic");
    assert!(
        desc_posts >= 40,
        "appends happened while paging ({desc_posts} posts)"
    );
    let top = seqs[0];
    assert!(
        top >= app.seq(10_000),
        "the first page starts at the head ({top})"
    );
    let want: Vec<u64> = (1..=top).rev().collect();
    assert_eq!(seqs.len(), want.len(), "each event once");
    assert_eq!(
        seqs, want,
        "every event from the first page's head down to 1, in order"
    );
    assert_eq!(pages, top.div_ceil(250), "pages of 250");

    // Oldest first, while appends go on: picks up the new ones.
    let at_start = app.total();
    let stop = Rc::new(Cell::new(false));
    let (appender, mut progress) = start_appender(&app, stop.clone(), 300, "asc");
    let (seqs, ids, _) = walk(&app, "/v1/events?limit=250&order=asc", &mut progress).await;
    stop.set(true);
    actix_rt::time::timeout(Duration::from_secs(30), appender)
        .await
        .expect("the appender stops")
        .expect("the appender did not panic");
    let last = *seqs.last().unwrap();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<u64>>(),
        "gapless, in order, no duplicates"
    );
    assert!(
        last > at_start,
        "events appended during the walk were picked up (last {last}, {at_start} at the start)"
    );
    assert!(last <= app.total());

    // What was served is what is stored.
    let conn = app.sql();
    let mut stmt = conn
        .prepare("SELECT id FROM events WHERE seq <= ?1 ORDER BY seq")
        .unwrap();
    let stored: HashSet<String> = stmt
        .query_map([last as i64], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(stored, ids);
}
