//! Retries: `Idempotency-Key` and client `id`s answer the original result
//! with 200 and write nothing; other content under the same key or id is a
//! 409. And group commit seen from outside: concurrent POSTs get distinct,
//! gapless seqs.

use std::collections::HashSet;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;

#[actix_rt::test]
async fn same_idempotency_key_returns_the_original_with_200_and_writes_nothing() {
    let app = spawn_app().await;
    let ev = json!({"event": "pay.create", "actor": "alice", "details": {"amount": 5}});
    let first = app.post_idem("key-1", &ev).await;
    let v = first.ok_json(201);
    let location = first.header("location").expect("Location");
    assert_eq!(
        location,
        format!("/v1/events/{}", v["id"].as_str().unwrap())
    );
    assert_eq!(app.count(), 1);

    let again = app.post_idem("key-1", &ev).await;
    again.ok_json(200);
    assert_eq!(again.body, first.body, "the original body, byte for byte");
    assert_eq!(again.header("location"), Some(location.clone()));
    assert_eq!(app.count(), 1);

    // The same content, written differently, is the same request.
    let same =
        json!({"details": {"amount": 5}, "actor": "alice", "type": "pay.create", "level": "INFO"});
    let r = app.post_idem("key-1", &same).await;
    r.expect(200);
    assert_eq!(r.body, first.body);
    assert_eq!(app.count(), 1);

    // Other content under the same key.
    for other in [
        json!({"event": "pay.create", "actor": "alice", "details": {"amount": 6}}),
        json!({"event": "pay.create", "actor": "bob", "details": {"amount": 5}}),
        json!([{"event": "pay.create", "actor": "alice", "details": {"amount": 5}}]),
    ] {
        let r = app.post_idem("key-1", &other).await;
        let p = assert_problem(&r, 409);
        assert_eq!(p["title"], json!("Conflict"), "{other}");
    }
    assert_eq!(app.count(), 1);

    // Without the key, the same event is a new event.
    app.post(&ev).await.expect(201);
    assert_eq!(app.count(), 2);
    // Another key, another event.
    let r = app.post_idem("key-2", &ev).await;
    assert_eq!(r.ok_json(201)["seq"], json!(app.seq(3)));

    // Batches too.
    let batch = json!([{"event": "b1"}, {"event": "b2"}, {"event": "b3", "success": false}]);
    let first = app.post_idem("batch-key", &batch).await;
    assert_eq!(first.ok_json(201)["events"].as_array().unwrap().len(), 3);
    let again = app.post_idem("batch-key", &batch).await;
    again.ok_json(200);
    assert_eq!(again.body, first.body);
    assert_eq!(app.count(), 6);
    let shorter = json!([{"event": "b1"}, {"event": "b2"}]);
    assert_problem(&app.post_idem("batch-key", &shorter).await, 409);
    assert_eq!(app.count(), 6);
    let v = app.get("/v1/verify").await.ok_json(200);
    assert_eq!(v["valid"], json!(true));

    // A key still recorded whose events retention removed (a prune forgets
    // such keys last): 410, never an empty 200 nor a second copy.
    let rw = rusqlite::Connection::open(&app.db().0).unwrap();
    rw.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    rw.execute(
        "UPDATE idempotency_keys SET seqs = '[999999]' WHERE key = 'key-1'",
        [],
    )
    .unwrap();
    let p = assert_problem(&app.post_idem("key-1", &ev).await, 410);
    assert_eq!(p["title"], json!("Gone"));
    assert_eq!(
        p["detail"],
        json!("the events first written with Idempotency-Key \"key-1\" were removed by retention; they cannot be answered again, and the request was not written a second time")
    );
    assert_eq!(app.count(), 6);
}

#[actix_rt::test]
async fn concurrent_duplicates_with_one_key_produce_one_set_of_rows() {
    let app = spawn_app().await;
    app.post(&json!({"event": "before"})).await.expect(201);
    let batch = json!([{"event": "dup.a"}, {"event": "dup.b"}, {"event": "dup.c"}]);
    let answers = join_all((0..24).map(|_| app.post_idem("same-key", &batch))).await;
    let created: Vec<&Resp> = answers.iter().filter(|r| r.status == 201).collect();
    let replayed: Vec<&Resp> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(created.len(), 1, "one request creates");
    assert_eq!(replayed.len(), 23, "the others replay");
    for r in &answers {
        assert_eq!(r.body, created[0].body, "one answer for all");
    }
    assert_eq!(
        seqs_of(&created[0].json()["events"]),
        [app.seq(2), app.seq(3), app.seq(4)]
    );
    assert_eq!(app.count(), 4);

    // The same with single events and client ids, no key.
    let ev = json!({"event": "dup.single", "id": "client-dup-1", "actor": "x"});
    let answers = join_all((0..24).map(|_| app.post(&ev))).await;
    assert_eq!(answers.iter().filter(|r| r.status == 201).count(), 1);
    assert_eq!(answers.iter().filter(|r| r.status == 200).count(), 23);
    for r in &answers {
        assert_eq!(r.body, answers[0].body);
        assert_eq!(r.json()["id"], json!("client-dup-1"));
    }
    assert_eq!(app.count(), 5);
}

#[actix_rt::test]
async fn same_client_id_returns_the_original_and_other_content_is_409() {
    let app = spawn_app().await;
    let ev = json!({"event": "doc.save", "id": "evt-0001", "actor": "alice", "metadata": {"a": 1, "b": 2}});
    let first = app.post(&ev).await;
    let v = first.ok_json(201);
    assert_eq!(v["id"], json!("evt-0001"));
    assert_eq!(
        first.header("location").as_deref(),
        Some("/v1/events/evt-0001")
    );

    let again = app.post(&ev).await;
    again.ok_json(200);
    assert_eq!(again.body, first.body);
    let reordered = json!({"metadata": {"b": 2, "a": 1}, "user": "alice", "id": "evt-0001", "type": "doc.save"});
    let r = app.post(&reordered).await;
    r.expect(200);
    assert_eq!(r.body, first.body);
    assert_eq!(app.count(), 1);

    for other in [
        json!({"event": "doc.save", "id": "evt-0001", "actor": "bob", "metadata": {"a": 1, "b": 2}}),
        json!({"event": "doc.save", "id": "evt-0001", "actor": "alice"}),
        json!({"event": "doc.delete", "id": "evt-0001", "actor": "alice", "metadata": {"a": 1, "b": 2}}),
    ] {
        assert_problem(&app.post(&other).await, 409);
    }
    // In a batch: the whole batch is refused.
    let batch =
        json!([{"event": "new.one", "id": "evt-0002"}, {"event": "doc.save", "id": "evt-0001"}]);
    let p = assert_problem(&app.post(&batch).await, 409);
    assert_eq!(
        p["detail"],
        json!("event id \"evt-0001\" is already stored with different content")
    );
    // One id twice in the same request, with different content.
    let twice =
        json!([{"event": "a", "id": "evt-t"}, {"event": "b"}, {"event": "c", "id": "evt-t"}]);
    let p = assert_problem(&app.post(&twice).await, 409);
    assert_eq!(
        p["detail"],
        json!("event id \"evt-t\" is given twice in this request with different content ([0] and [2])")
    );
    assert_eq!(app.count(), 1);
    assert_problem(&app.get("/v1/events/evt-0002").await, 404);

    // A batch retried whole is answered whole.
    let batch = json!([{"event": "b", "id": "evt-b1"}, {"event": "b", "id": "evt-b2"}]);
    let first = app.post(&batch).await;
    assert_eq!(
        seqs_of(&first.ok_json(201)["events"]),
        [app.seq(2), app.seq(3)]
    );
    let again = app.post(&batch).await;
    again.ok_json(200);
    assert_eq!(again.body, first.body);
    assert_eq!(app.count(), 3);

    // An empty `metadata` is retried as the same event, with or without it.
    let empty = json!({"event": "doc.save", "id": "evt-empty", "metadata": {}});
    let first = app.post(&empty).await;
    first.ok_json(201);
    for retry in [
        empty.clone(),
        json!({"event": "doc.save", "id": "evt-empty"}),
    ] {
        let again = app.post(&retry).await;
        again.ok_json(200);
        assert_eq!(again.body, first.body, "{retry}");
    }
    assert_eq!(app.count(), 4);
}

#[actix_rt::test]
async fn sixty_four_concurrent_posts_get_distinct_gapless_seqs() {
    let app = spawn_app().await;
    app.post(&json!({"event": "start"})).await.expect(201);
    let evs: Vec<Value> = (0..64)
        .map(|i| json!({"event": "burst", "actor": format!("w{i}")}))
        .collect();
    let answers = join_all(evs.iter().map(|e| app.post(e))).await;
    let mut seqs = Vec::new();
    let conn = app.sql();
    for (i, r) in answers.iter().enumerate() {
        let v = r.ok_json(201);
        assert_eq!(v["actor"], json!(format!("w{i}")));
        let seq = v["seq"].as_u64().unwrap();
        let (id, actor): (String, String) = conn
            .query_row(
                "SELECT id, actor FROM events WHERE seq = ?1",
                [seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (id.as_str(), actor.as_str()),
            (v["id"].as_str().unwrap(), format!("w{i}").as_str())
        );
        seqs.push(seq);
    }
    let distinct: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), 64);
    seqs.sort();
    assert_eq!(seqs, (app.seq(2)..=app.seq(65)).collect::<Vec<u64>>());
    assert_eq!(app.count(), 65);
    let v = app.get("/v1/verify").await.ok_json(200);
    assert_eq!(v["valid"], json!(true));
    assert_eq!(v["entries_checked"], json!(app.seq(65)));
}

#[actix_rt::test]
async fn a_full_writer_queue_answers_503_and_writes_nothing_for_it() {
    let app = spawn_app_with(|cfg| cfg.writer.queue_depth = 1).await;
    let evs: Vec<Value> = (0..64)
        .map(|i| json!({"event": "burst", "actor": format!("w{i}")}))
        .collect();
    let answers = join_all(evs.iter().map(|e| app.post(e))).await;
    let mut seqs = Vec::new();
    for r in &answers {
        match r.status {
            201 => seqs.push(r.json()["seq"].as_u64().unwrap()),
            503 => {
                assert_problem(r, 503);
                assert!(
                    r.header("retry-after")
                        .is_some_and(|s| s.parse::<u32>().is_ok()),
                    "Retry-After"
                );
            }
            other => panic!("status {other}: {}", r.text()),
        }
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (app.seq(1)..=app.seq(seqs.len() as u64)).collect::<Vec<u64>>()
    );
    assert_eq!(app.count(), seqs.len() as u64);
}
