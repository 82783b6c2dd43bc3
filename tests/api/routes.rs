//! Every route once, with exact statuses, content types, key headers and
//! bodies.

use awc::http::Method;
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

const GENESIS_HEX: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The stored row for `seq`: (entry, chain_hash, signature).
fn row(app: &TestApp, seq: u64) -> (String, Vec<u8>, Vec<u8>) {
    app.sql()
        .query_row(
            "SELECT entry, chain_hash, signature FROM events WHERE seq = ?1",
            [seq as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

/// The chain hash of `seq` (genesis for 0).
fn hash_of(app: &TestApp, seq: u64) -> Vec<u8> {
    if seq == 0 {
        return vec![0u8; 32];
    }
    row(app, seq).1
}

fn key_bytes(app: &TestApp) -> Vec<u8> {
    let text = std::fs::read_to_string(app.dir.path().join("hmac.key")).expect("hmac.key");
    hex::decode(text.trim()).expect("hex key")
}

/// The event object an API answer must be: the stored entry with
/// `chain_hash` and `signature` appended, each recomputed here.
fn check_event_object(app: &TestApp, ev: &Value, prev_hash: &[u8]) {
    let seq = ev["seq"].as_u64().expect("seq");
    let (entry, chain_hash, signature) = row(app, seq);
    let mut want: Value = serde_json::from_str(&entry).unwrap();
    want["chain_hash"] = json!(hex::encode(&chain_hash));
    want["signature"] = json!(hex::encode(&signature));
    assert_eq!(ev, &want, "the answer is the stored row");
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(entry.as_bytes());
    assert_eq!(h.finalize().to_vec(), chain_hash, "chain hash of seq {seq}");
    let key = key_bytes(app);
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(&chain_hash);
    assert_eq!(
        mac.finalize().into_bytes().to_vec(),
        signature,
        "seal of {seq}"
    );
    let mut kid = Sha256::new();
    kid.update(b"trail-key-id");
    kid.update(&key);
    assert_eq!(ev["key_id"], json!(hex::encode(&kid.finalize()[..8])));
    let ts = ev["timestamp"].as_str().expect("timestamp");
    assert_eq!(ts.len(), 27, "fixed-width timestamp {ts}");
    assert!(ts.ends_with('Z'), "{ts}");
    chrono::DateTime::parse_from_rfc3339(ts).expect("RFC 3339 timestamp");
}

/// Ids may be all digits, and a path of digits names a seq first: such an
/// id's `Location` names its seq, and it is still found by id when no event
/// has that seq.
#[actix_rt::test]
async fn an_all_digit_id_is_located_by_seq_and_found_by_id() {
    let app = spawn_app().await;
    let first = app.post(&json!({"event": "digits.a"})).await.ok_json(201);
    let r = app.post(&json!({"event": "digits.b", "id": "1"})).await;
    let v = r.ok_json(201);
    let seq = v["seq"].as_u64().unwrap();
    assert_ne!(seq, 1);
    assert_eq!(r.header("location"), Some(format!("/v1/events/{seq}")));
    let located = app.get(&format!("/v1/events/{seq}")).await;
    assert_eq!(located.ok_json(200)["id"], json!("1"));
    // "1" is seq 1 (the server's own start), not the event with id "1".
    assert_eq!(app.get("/v1/events/1").await.ok_json(200)["seq"], json!(1));
    assert_ne!(first["id"], json!("1"));

    let r = app
        .post(&json!({"event": "digits.c", "id": "999999"}))
        .await;
    let v = r.ok_json(201);
    let got = app.get("/v1/events/999999").await;
    assert_eq!(got.ok_json(200)["seq"], v["seq"]);
    assert_eq!(got.body, r.body);
    app.get("/v1/events/999998").await.expect(404);
    // Past 64 bits it can only be an id.
    let long = "123456789012345678901234567890";
    let r = app.post(&json!({"event": "digits.d", "id": long})).await;
    let v = r.ok_json(201);
    assert_eq!(
        app.get(&format!("/v1/events/{long}")).await.ok_json(200)["seq"],
        v["seq"]
    );
}

#[actix_rt::test]
async fn post_one_event_returns_201_the_stored_event_and_location() {
    let app = spawn_app().await;
    let r = app
        .post(&json!({
            "event": "user.login",
            "level": "WARN",
            "actor": "alice",
            "resource": "account/1",
            "success": true,
            "source_ip": "10.0.0.1",
            "user_agent": "curl/8",
            "request_id": "req-1",
            "occurred_at": "2026-03-01T10:00:00-05:00",
            "details": {"b": 1, "a": {"z": true}},
            "metadata": {"k": "v"}
        }))
        .await;
    let v = r.ok_json(201);
    let id = v["id"].as_str().expect("id").to_owned();
    assert_eq!(r.header("location"), Some(format!("/v1/events/{id}")));
    assert_eq!(v["seq"], json!(app.seq(1)));
    assert_eq!(v["event"], json!("user.login"));
    assert_eq!(v["level"], json!("warning"));
    assert_eq!(v["actor"], json!("alice"));
    assert_eq!(v["resource"], json!("account/1"));
    assert_eq!(v["success"], json!(true));
    assert_eq!(v["source_ip"], json!("10.0.0.1"));
    assert_eq!(v["user_agent"], json!("curl/8"));
    assert_eq!(v["request_id"], json!("req-1"));
    assert_eq!(v["occurred_at"], json!("2026-03-01T15:00:00.000000Z"));
    assert_eq!(v["details"], json!({"a": {"z": true}, "b": 1}));
    assert_eq!(v["metadata"], json!({"k": "v"}));
    assert!(is_hex64(&v["chain_hash"]), "{v}");
    assert!(is_hex64(&v["signature"]), "{v}");
    check_event_object(&app, &v, &hash_of(&app, app.seq(0)));
    assert_eq!(app.count(), 1);

    // The stored event is served back byte for byte.
    let by_id = app.get(&format!("/v1/events/{id}")).await;
    by_id.ok_json(200);
    assert_eq!(by_id.body, r.body);
    let by_seq = app.get(&format!("/v1/events/{}", app.seq(1))).await;
    by_seq.ok_json(200);
    assert_eq!(by_seq.body, r.body);
}

#[actix_rt::test]
async fn post_accepts_seed_aliases_levels_in_any_case_and_client_ids() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"type": "a.b", "severity": "Error", "user": "u1", "target": "t1", "ip_address": "::FFFF:1.2.3.4"}),
            json!({"event": "a.b", "level": "error", "actor": "u1", "resource": "t1", "source_ip": "::ffff:1.2.3.4"}),
        ),
        (
            json!({"event": "a:b-c_d.e", "level": "CRITICAL", "user_id": "u2", "source": "192.168.0.1"}),
            json!({"event": "a:b-c_d.e", "level": "critical", "actor": "u2", "source_ip": "192.168.0.1"}),
        ),
        (
            json!({"event": "x", "level": "warn"}),
            json!({"event": "x", "level": "warning"}),
        ),
        (
            json!({"event": "x", "level": "Debug", "success": false}),
            json!({"event": "x", "level": "debug", "success": false}),
        ),
        (
            json!({"event": "x"}),
            json!({"event": "x", "level": "info"}),
        ),
        (
            json!({"event": "E".repeat(128), "id": "Client_id-1"}),
            json!({"event": "E".repeat(128), "level": "info", "id": "Client_id-1"}),
        ),
    ];
    let mut prev = hash_of(&app, app.seq(0));
    for (i, (input, want)) in cases.iter().enumerate() {
        let r = app.post(input).await;
        let v = r.ok_json(201);
        assert_eq!(v["seq"], json!(app.seq(i as u64 + 1)));
        for (k, w) in want.as_object().unwrap() {
            assert_eq!(&v[k], w, "{k} of {input}");
        }
        for absent in [
            "type",
            "severity",
            "user",
            "user_id",
            "target",
            "ip_address",
            "source",
        ] {
            assert!(v.get(absent).is_none(), "{absent} in {v}");
        }
        check_event_object(&app, &v, &prev);
        prev = row(&app, app.seq(i as u64 + 1)).1;
    }
    let by_client_id = app.get("/v1/events/Client_id-1").await;
    assert_eq!(by_client_id.ok_json(200)["seq"], json!(app.seq(6)));
}

#[actix_rt::test]
async fn post_batch_returns_201_with_every_event_in_order() {
    let app = spawn_app().await;
    app.post(&json!({"event": "first"})).await.expect(201);
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"event": "batch.item", "actor": format!("a{i}")}))
        .collect();
    let r = app.post(&Value::Array(batch)).await;
    let v = r.ok_json(201);
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["events"]);
    let events = v["events"].as_array().unwrap();
    let want: Vec<u64> = (2..=6).map(|n| app.seq(n)).collect();
    assert_eq!(seqs_of(&v["events"]), want);
    let mut prev = row(&app, app.seq(1)).1;
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev["actor"], json!(format!("a{i}")));
        check_event_object(&app, ev, &prev);
        prev = row(&app, app.seq(i as u64 + 2)).1;
    }
    // A one-element batch is still a batch.
    let one = app.post(&json!([{"event": "solo"}])).await;
    assert_eq!(seqs_of(&one.ok_json(201)["events"]), [app.seq(7)]);
    assert_eq!(app.count(), 7);
}

#[actix_rt::test]
async fn list_pages_with_next_cursor_and_an_absolute_link_header() {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..150)
        .map(|i| json!({"event": "e", "actor": format!("a{}", i % 3)}))
        .collect();
    app.post(&Value::Array(batch)).await.expect(201);

    let r = app.get("/v1/events").await;
    let v = r.ok_json(200);
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    assert_eq!(keys, ["events", "has_more", "next_cursor"]);
    assert_eq!(
        r.seqs(),
        (app.seq(51)..=app.seq(150)).rev().collect::<Vec<u64>>(),
        "default: 100, newest first"
    );
    assert_eq!(v["has_more"], json!(true));
    let cursor = v["next_cursor"].as_str().expect("next_cursor").to_owned();
    let link = r.header("link").expect("Link header");
    let url = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("Link format: {link}"));
    assert_eq!(url, format!("{}/v1/events?cursor={cursor}", app.base));
    // Every event is the stored row.
    let first = &v["events"][0];
    let (entry, _, _) = row(&app, app.seq(150));
    let mut want: Value = serde_json::from_str(&entry).unwrap();
    want["chain_hash"] = first["chain_hash"].clone();
    want["signature"] = first["signature"].clone();
    assert_eq!(first, &want);

    let r2 = send(app.client.get(url), None).await;
    let v2 = r2.ok_json(200);
    assert_eq!(r2.seqs(), (1..=app.seq(50)).rev().collect::<Vec<u64>>());
    assert_eq!(v2["has_more"], json!(false));
    assert_eq!(v2["next_cursor"], Value::Null);
    assert_eq!(r2.header("link"), None);

    // The Link of a filtered page keeps the filters.
    let r3 = app.get("/v1/events?actor=a1&limit=20&order=asc").await;
    let v3 = r3.ok_json(200);
    let c3 = v3["next_cursor"].as_str().unwrap();
    let link3 = r3.header("link").unwrap();
    assert!(
        link3.starts_with(&format!("<{}/v1/events?", app.base))
            && link3.ends_with(">; rel=\"next\""),
        "{link3}"
    );
    for part in [
        "actor=a1",
        "limit=20",
        "order=asc",
        format!("cursor={c3}").as_str(),
    ] {
        assert!(link3.contains(part), "{part} in {link3}");
    }
    let url3 = &link3[1..link3.len() - ">; rel=\"next\"".len()];
    let next3 = send(app.client.get(url3.to_owned()), None).await;
    let want: Vec<u64> = (1..=150)
        .filter(|n| (n - 1) % 3 == 1)
        .skip(20)
        .take(20)
        .map(|n| app.seq(n))
        .collect();
    assert_eq!(next3.seqs(), want);

    // limit 1000 is allowed.
    let all = app.get("/v1/events?limit=1000").await;
    assert_eq!(all.seqs(), (1..=app.seq(150)).rev().collect::<Vec<u64>>());
    assert_eq!(all.json()["has_more"], json!(false));
}

#[actix_rt::test]
async fn an_empty_page_and_offset_paging() {
    let app = spawn_app().await;
    let r = app.get("/v1/events?actor=nobody").await;
    assert_eq!(
        r.ok_json(200),
        json!({"events": [], "next_cursor": null, "has_more": false})
    );
    assert_eq!(r.header("link"), None);

    let batch: Vec<Value> = (0..30).map(|_| json!({"event": "e"})).collect();
    app.post(&Value::Array(batch)).await.expect(201);
    let r = app.get("/v1/events?limit=5&offset=10").await;
    let want: Vec<u64> = (16..=20).rev().map(|n| app.seq(n)).collect();
    assert_eq!(r.seqs(), want);
    assert_eq!(r.json()["has_more"], json!(true));
    let r = app.get("/v1/events?limit=5&offset=10&order=asc").await;
    assert_eq!(r.seqs(), [11, 12, 13, 14, 15]);
    let r = app.get("/v1/events?offset=10000").await;
    assert_eq!(
        r.ok_json(200),
        json!({"events": [], "next_cursor": null, "has_more": false})
    );
}

#[actix_rt::test]
async fn get_event_by_id_or_seq_and_404_problems() {
    let app = spawn_app().await;
    let v = app
        .post(&json!({"event": "x", "id": "abc-123"}))
        .await
        .ok_json(201);
    assert_eq!(v["id"], json!("abc-123"));
    assert_eq!(app.get("/v1/events/abc-123").await.ok_json(200), v);
    let by_seq = format!("/v1/events/{}", app.seq(1));
    assert_eq!(app.get(&by_seq).await.ok_json(200), v);
    let next = format!("/v1/events/{}", app.seq(2));
    for missing in [
        next.as_str(),
        "/v1/events/0",
        "/v1/events/99999999999999999999999",
        "/v1/events/no-such-id",
        "/v1/events/ABC-123",
    ] {
        let p = assert_problem(&app.get(missing).await, 404);
        assert_eq!(p["title"], json!("Not found"), "{missing}");
    }
}

/// The issue: "by id, or by seq when all digits; 404 problem otherwise",
/// also for ids that could never have been stored.
#[actix_rt::test]
async fn get_event_with_an_impossible_id_is_404() {
    let app = spawn_app().await;
    let long = format!("/v1/events/{}", "x".repeat(129));
    for path in ["/v1/events/a.b", "/v1/events/%27%20OR%201=1", long.as_str()] {
        assert_problem(&app.get(path).await, 404);
    }
}

#[actix_rt::test]
async fn summary_shape_and_values() {
    let app = spawn_app().await;
    // What the server wrote about itself before serving, as a baseline.
    let base = app.get("/v1/summary?period=all").await.ok_json(200);
    assert_eq!(base["total_events"], json!(app.start_rows));
    let mut keys: Vec<&String> = base.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "by_actor",
            "by_level",
            "by_type",
            "failure_count",
            "first_event",
            "last_event",
            "period",
            "since",
            "success_count",
            "total_events",
            "until"
        ]
    );
    let day = app.get("/v1/summary").await.ok_json(200);
    let since = day["since"].as_str().expect("24h has a since").to_owned();
    let since_t = chrono::DateTime::parse_from_rfc3339(&since).unwrap();
    let age = chrono::Utc::now().signed_duration_since(since_t);
    assert!(
        age >= chrono::Duration::hours(24)
            && age < chrono::Duration::hours(24) + chrono::Duration::seconds(60),
        "since {since}"
    );
    let mut want_day = base.clone();
    want_day["period"] = json!("24h");
    want_day["since"] = json!(since);
    assert_eq!(day, want_day);

    let posted = app
        .post(&json!([
            {"event": "auth.login", "actor": "alice", "success": true},
            {"event": "auth.login", "actor": "bob", "success": false, "level": "warning"},
            {"event": "file.read", "actor": "alice", "level": "error"},
            {"event": "file.read"}
        ]))
        .await
        .ok_json(201);
    let first_ts = if app.start_rows == 0 {
        posted["events"][0]["timestamp"].clone()
    } else {
        base["first_event"].clone()
    };
    let last_ts = posted["events"][3]["timestamp"].clone();
    let add = |map: &Value, more: &[(&str, u64)]| {
        let mut m = map.clone();
        for (k, n) in more {
            let had = m[*k].as_u64().unwrap_or(0);
            m[*k] = json!(had + n);
        }
        m
    };
    let num = |k: &str| base[k].as_u64().unwrap();
    let want = |period: &str, since: Value, until: Value| {
        json!({
            "period": period, "since": since, "until": until,
            "total_events": num("total_events") + 4,
            "by_type": add(&base["by_type"], &[("auth.login", 2), ("file.read", 2)]),
            "by_level": add(&base["by_level"], &[("info", 2), ("warning", 1), ("error", 1)]),
            "by_actor": add(&base["by_actor"], &[("alice", 2), ("bob", 1)]),
            "success_count": num("success_count") + 1,
            "failure_count": num("failure_count") + 1,
            "first_event": first_ts, "last_event": last_ts
        })
    };
    let all = app.get("/v1/summary?period=all").await;
    assert_eq!(all.ok_json(200), want("all", Value::Null, Value::Null));
    // In any case, as `order` and `level`; answered as spelled in the docs.
    let upper = app.get("/v1/summary?period=ALL").await;
    assert_eq!(upper.ok_json(200), want("all", Value::Null, Value::Null));
    for period in ["24h", "7d", "30d"] {
        let v = app
            .get(&format!("/v1/summary?period={period}"))
            .await
            .ok_json(200);
        let since = v["since"].clone();
        assert!(since.is_string(), "{v}");
        assert_eq!(v, want(period, since, Value::Null));
    }
    let custom = app
        .get("/v1/summary?since=2020-01-01&until=2100-12-31")
        .await
        .ok_json(200);
    assert_eq!(custom["period"], json!("custom"));
    assert_eq!(custom["since"], json!("2020-01-01T00:00:00.000000Z"));
    // A date `until` is the whole day: shown as its last microsecond, which
    // given back as an (inclusive) RFC 3339 `until` selects the same events.
    assert_eq!(
        custom,
        want(
            "custom",
            json!("2020-01-01T00:00:00.000000Z"),
            json!("2100-12-31T23:59:59.999999Z")
        )
    );
    let same = app
        .get("/v1/summary?since=2020-01-01T00:00:00Z&until=2100-12-31T23:59:59.999999Z")
        .await
        .ok_json(200);
    assert_eq!(same, custom);
    let none = app
        .get("/v1/summary?since=2000-01-01&until=2000-01-02")
        .await
        .ok_json(200);
    assert_eq!(
        none,
        json!({
            "period": "custom", "since": "2000-01-01T00:00:00.000000Z", "until": "2000-01-02T23:59:59.999999Z",
            "total_events": 0, "by_type": {}, "by_level": {}, "by_actor": {},
            "success_count": 0, "failure_count": 0, "first_event": null, "last_event": null
        })
    );
}

#[actix_rt::test]
async fn head_and_verify() {
    let app = spawn_app().await;
    // Before any client event: genesis, or what the server wrote at start.
    let b = app.start_rows;
    let (h0, t0) = if b == 0 {
        (GENESIS_HEX.to_owned(), Value::Null)
    } else {
        let (entry, hash, _) = row(&app, b);
        let e: Value = serde_json::from_str(&entry).unwrap();
        (hex::encode(hash), e["timestamp"].clone())
    };
    assert_eq!(
        app.get("/v1/head").await.ok_json(200),
        json!({"seq": b, "chain_hash": h0, "timestamp": t0})
    );
    assert_eq!(
        app.get("/v1/verify").await.ok_json(200),
        json!({"valid": true, "entries_checked": b, "first_bad_seq": null, "kind": null,
               "head": {"seq": b, "chain_hash": h0}})
    );
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"event": "v", "actor": format!("{i}")}))
        .collect();
    let posted = app.post(&Value::Array(batch)).await.ok_json(201);
    let last = &posted["events"][9];
    let top = app.seq(10);
    let head = app.get("/v1/head").await.ok_json(200);
    assert_eq!(
        head,
        json!({"seq": top, "chain_hash": last["chain_hash"], "timestamp": last["timestamp"]})
    );
    let h = head["chain_hash"].as_str().unwrap().to_owned();
    let valid = |n: u64| {
        json!({"valid": true, "entries_checked": n, "first_bad_seq": null, "kind": null,
               "head": {"seq": top, "chain_hash": h}})
    };
    assert_eq!(app.get("/v1/verify").await.ok_json(200), valid(top));
    assert_eq!(
        app.get("/v1/verify?from=3&to=7").await.ok_json(200),
        valid(5)
    );
    assert_eq!(
        app.get("/v1/verify?from=8").await.ok_json(200),
        valid(top - 7)
    );
    assert_eq!(app.get("/v1/verify?to=4").await.ok_json(200), valid(4));
    assert_eq!(
        app.get(&format!("/v1/verify?anchor={top}:{h}"))
            .await
            .ok_json(200),
        valid(top)
    );
    let s4 = posted["events"][3]["seq"].as_u64().unwrap();
    let h4 = posted["events"][3]["chain_hash"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/verify?anchor={s4}:{h4}"))
            .await
            .ok_json(200),
        valid(top)
    );
    // An anchor the log no longer matches: the log was rewritten or cut.
    let wrong = app
        .get(&format!("/v1/verify?anchor={s4}:{h}"))
        .await
        .ok_json(200);
    assert_eq!(
        wrong,
        json!({"valid": false, "entries_checked": top, "first_bad_seq": s4, "kind": "truncated",
               "head": {"seq": top, "chain_hash": h}})
    );
    let beyond = app
        .get(&format!("/v1/verify?anchor={}:{h}", top + 2))
        .await
        .ok_json(200);
    assert_eq!(beyond["valid"], json!(false));
    assert_eq!(beyond["first_bad_seq"], json!(top + 1));
    assert_eq!(beyond["kind"], json!("truncated"));
}

fn neutralised(s: &str) -> String {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{s}"),
        _ => s.to_owned(),
    }
}

/// The CSV cells an event object must export as.
fn csv_cells(ev: &Value) -> Vec<String> {
    let text = |k: &str| {
        ev.get(k)
            .and_then(Value::as_str)
            .map(neutralised)
            .unwrap_or_default()
    };
    let obj = |k: &str| {
        ev.get(k)
            .map(|v| serde_json::to_string(v).unwrap())
            .unwrap_or_default()
    };
    vec![
        ev["seq"].to_string(),
        text("id"),
        text("timestamp"),
        text("event"),
        text("level"),
        text("actor"),
        text("resource"),
        ev.get("success").map(|b| b.to_string()).unwrap_or_default(),
        text("source_ip"),
        text("user_agent"),
        text("request_id"),
        text("occurred_at"),
        obj("details"),
        obj("metadata"),
        text("key_id"),
        text("chain_hash"),
        text("signature"),
    ]
}

#[actix_rt::test]
async fn export_formats_headers_and_bodies() {
    let app = spawn_app().await;
    let posted = app
        .post(&json!([
            {"event": "a", "actor": "alice", "details": {"k": [1, 2]}, "success": true},
            {"event": "b", "actor": "=SUM(A1:A2)", "resource": "+1", "user_agent": "-2", "request_id": "@3"},
            {"event": "a", "actor": "bob", "metadata": {"m": "x,y\"z"}, "success": false}
        ]))
        .await
        .ok_json(201);
    let events = posted["events"].as_array().unwrap().clone();

    let check_attachment = |r: &Resp, ext: &str| {
        let cd = r
            .header("content-disposition")
            .expect("Content-Disposition");
        let name = cd
            .strip_prefix("attachment; filename=\"trail-export-")
            .and_then(|s| s.strip_suffix(&format!(".{ext}\"")))
            .unwrap_or_else(|| panic!("Content-Disposition: {cd}"));
        assert!(
            !name.is_empty() && !name.contains('/') && !name.contains('"'),
            "{cd}"
        );
    };

    // CSV
    let r = app.get("/v1/export?format=csv").await;
    r.expect(200);
    assert_eq!(r.content_type(), "text/csv; charset=utf-8");
    check_attachment(&r, "csv");
    let text = r.text();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("seq,id,timestamp,event,level,actor,resource,success,source_ip,user_agent,request_id,occurred_at,details,metadata,key_id,chain_hash,signature")
    );
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let all_rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    let b = app.start_rows as usize;
    assert_eq!(all_rows.len(), b + 3);
    let rows = &all_rows[b..];
    for (row, ev) in rows.iter().zip(&events) {
        assert_eq!(row.iter().collect::<Vec<_>>(), csv_cells(ev), "{ev}");
    }
    assert_eq!(&rows[0][4], "info");
    assert_eq!(&rows[0][5], "alice");
    assert_eq!(&rows[0][7], "true");
    assert_eq!(&rows[0][12], r#"{"k":[1,2]}"#);
    assert_eq!(&rows[1][5], "'=SUM(A1:A2)");
    assert_eq!(&rows[1][6], "'+1");
    assert_eq!(&rows[1][7], "");
    assert_eq!(&rows[1][9], "'-2");
    assert_eq!(&rows[1][10], "'@3");
    assert_eq!(&rows[2][7], "false");
    assert!(
        rows[2][13].starts_with(r#"{"m":"x,y\"z""#),
        "{}",
        &rows[2][13]
    );

    // JSON
    let r = app.get("/v1/export?format=json").await;
    let v = r.ok_json(200);
    check_attachment(&r, "json");
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["count", "events", "filters", "generated_at"]);
    chrono::DateTime::parse_from_rfc3339(v["generated_at"].as_str().unwrap()).unwrap();
    assert_eq!(v["filters"], json!({}));
    assert_eq!(v["count"], json!(b + 3));
    let all_events = v["events"].as_array().unwrap().clone();
    assert_eq!(all_events[b..], events[..]);
    // The server's own rows are exported like any other.
    for (row, ev) in all_rows.iter().zip(&all_events) {
        assert_eq!(row.iter().collect::<Vec<_>>(), csv_cells(ev), "{ev}");
    }

    // JSON with filters and order
    let v = app
        .get("/v1/export?format=json&event=a&order=desc&success=false")
        .await
        .ok_json(200);
    assert_eq!(v["filters"], json!({"event": "a", "success": false}));
    assert_eq!(v["count"], json!(1));
    assert_eq!(v["events"], json!([events[2]]));
    let v = app
        .get("/v1/export?format=json&event=a&order=desc")
        .await
        .ok_json(200);
    assert_eq!(v["events"], json!([events[2], events[0]]));

    // JSON Lines
    let r = app.get("/v1/export?format=jsonl").await;
    r.expect(200);
    assert_eq!(r.content_type(), "application/x-ndjson");
    check_attachment(&r, "jsonl");
    let text = r.text();
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, all_events);

    // An empty match still gives a whole document.
    let v = app
        .get("/v1/export?format=json&actor=nobody")
        .await
        .ok_json(200);
    assert_eq!(v["events"], json!([]));
    assert_eq!(v["count"], json!(0));
    let r = app.get("/v1/export?format=csv&actor=nobody").await;
    assert_eq!(r.text().lines().count(), 1);
    let r = app.get("/v1/export?format=jsonl&actor=nobody").await;
    r.expect(200);
    assert_eq!(r.text(), "");
}

#[actix_rt::test]
async fn probes_and_openapi() {
    let app = spawn_app().await;
    let h = app.get("/healthz").await;
    h.expect(200);
    let r = app.get("/readyz").await;
    let v = r.ok_json(200);
    assert_eq!(v["status"], json!("ready"));

    let r = app.get("/openapi.json").await;
    let doc = r.ok_json(200);
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    // No base path: the paths are the URLs, no `servers` to add.
    assert!(doc.get("servers").is_none(), "{}", doc["servers"]);
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/events",
        "/v1/events/{id}",
        "/v1/summary",
        "/v1/verify",
        "/v1/head",
        "/v1/export",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "openapi lists {p}");
    }
    assert!(paths["/v1/events"].get("post").is_some());
    assert!(paths["/v1/events"].get("get").is_some());
}

#[actix_rt::test]
async fn seed_routes_are_served_by_the_same_handlers() {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..40)
        .map(|i| {
            json!({
                "event": (["auth.login", "auth.logout", "file.read"][i % 3]),
                "level": (["info", "warning", "error"][i % 3]),
                "actor": (["alice", "bob"][i % 2]),
            })
        })
        .collect();
    let posted = app.post(&Value::Array(batch)).await.ok_json(201);
    let ts = posted["events"][0]["timestamp"].as_str().unwrap();
    let day = chrono::NaiveDate::parse_from_str(&ts[..10], "%Y-%m-%d").unwrap();
    let (d0, d1) = (day.pred_opt().unwrap(), day.succ_opt().unwrap());

    // /api/audit: event, level, actor, start, end, limit, offset
    let seed = app
        .get(&format!("/api/audit?event=auth.login&level=info&actor=alice&start={d0}&end={d1}&limit=3&offset=1"))
        .await;
    let ours = app
        .get(&format!("/v1/events?event=auth.login&level=info&actor=alice&since={d0}&until={d1}&limit=3&offset=1"))
        .await;
    assert_eq!(seed.ok_json(200), ours.ok_json(200));
    assert_eq!(seed.seqs(), [app.seq(31), app.seq(25), app.seq(19)]);
    assert!(seed
        .header("link")
        .unwrap()
        .starts_with(&format!("<{}/api/audit?", app.base)));

    // A form's blank fields: on the seed routes an empty parameter is as
    // if not sent (on trail's own routes it is refused).
    let blank = app
        .get("/api/audit?event=&level=&actor=&start=&end=&limit=5&offset=")
        .await;
    let plain = app.get("/api/audit?limit=5").await;
    assert_eq!(blank.ok_json(200), plain.ok_json(200));
    assert_eq!(blank.seqs().len(), 5);
    assert_eq!(
        app.get("/v1/audit?type=&limit=2").await.ok_json(200),
        app.get("/v1/audit?limit=2").await.ok_json(200)
    );
    let stats = app
        .get("/api/audit/summary?start=&end=&period=")
        .await
        .ok_json(200);
    assert_eq!(stats["period"], json!("24h"), "{stats}");
    let export = app.get("/v1/audit/export?format=&type=").await;
    assert_eq!(export.ok_json(200)["count"], json!(app.total()));
    assert_eq!(
        app.get("/v1/audit/verify?from=&to=").await.ok_json(200)["valid"],
        json!(true)
    );
    // order in any case, as level and success.
    assert_eq!(
        app.get("/v1/events?order=ASC&limit=3").await.ok_json(200),
        app.get("/v1/events?order=asc&limit=3").await.ok_json(200)
    );
    for own in [
        "/v1/events?actor=",
        "/v1/summary?since=",
        "/v1/export?format=",
        "/v1/verify?from=",
    ] {
        assert_eq!(app.get(own).await.status, 400, "{own}");
    }

    // /v1/audit: limit, type
    let seed = app.get("/v1/audit?limit=4&type=file.read").await;
    let ours = app.get("/v1/events?limit=4&event=file.read").await;
    assert_eq!(seed.ok_json(200), ours.ok_json(200));
    let want: Vec<u64> = [39, 36, 33, 30].iter().map(|&n| app.seq(n)).collect();
    assert_eq!(seed.seqs(), want);

    // Summaries
    for seed_path in [
        "/api/audit/summary?period=all",
        "/v1/audit/stats?period=all",
    ] {
        let seed = app.get(seed_path).await.ok_json(200);
        assert_eq!(
            seed,
            app.get("/v1/summary?period=all").await.ok_json(200),
            "{seed_path}"
        );
        assert_eq!(seed["total_events"], json!(app.seq(40)));
    }
    for seed_path in ["/api/audit/summary", "/v1/audit/stats"] {
        let v = app.get(seed_path).await.ok_json(200);
        assert_eq!(v["period"], json!("24h"));
        assert_eq!(v["total_events"], json!(app.seq(40)));
    }

    // Verify
    assert_eq!(
        app.get("/v1/audit/verify").await.ok_json(200),
        app.get("/v1/verify").await.ok_json(200)
    );

    // Export
    let seed = app.get("/v1/audit/export?format=csv").await;
    let ours = app.get("/v1/export?format=csv").await;
    seed.expect(200);
    assert_eq!(seed.content_type(), "text/csv; charset=utf-8");
    assert!(seed
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment; filename=\"trail-export-"));
    assert_eq!(seed.body, ours.body);
    assert_eq!(seed.text().lines().count() as u64, 1 + app.seq(40));
    let seed = app.get("/v1/audit/export?format=json").await.ok_json(200);
    let ours = app.get("/v1/export?format=json").await.ok_json(200);
    assert_eq!(seed["events"], ours["events"]);
    assert_eq!(seed["count"], json!(app.seq(40)));
}

#[actix_rt::test]
async fn unknown_routes_are_404_problems() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/nope",
        "/v1/event",
        "/v1/events/1/more",
        "/v2/events",
        "/api/audit/x",
    ] {
        let p = assert_problem(&app.get(path).await, 404);
        assert_eq!(p["type"], json!("urn:trail:problem:not-found"), "{path}");
    }
    let r = app
        .request(awc::http::Method::POST, "/v1/nothing-here")
        .await;
    assert_problem(&r, 404);
}

#[actix_rt::test]
async fn configured_limits_are_honoured() {
    let app = spawn_app_with(|cfg| {
        cfg.limits.max_body_bytes = 400;
        cfg.limits.max_batch = 3;
        cfg.limits.default_limit = 2;
        cfg.limits.max_limit = 5;
        cfg.limits.max_offset = 4;
    })
    .await;
    let three = json!([{"event": "a"}, {"event": "b"}, {"event": "c"}]);
    app.post(&three).await.expect(201);
    let four = json!([{"event": "a"}, {"event": "b"}, {"event": "c"}, {"event": "d"}]);
    assert_problem(&app.post(&four).await, 413);
    let big = json!({"event": "a", "details": {"k": "x".repeat(400)}});
    assert_problem(&app.post(&big).await, 413);
    assert_eq!(app.count(), 3);
    let all: Vec<u64> = (1..=app.seq(3)).rev().collect();
    assert_eq!(app.get("/v1/events").await.seqs(), all[..2]);
    assert_eq!(
        app.get("/v1/events?limit=5").await.seqs(),
        all[..all.len().min(5)]
    );
    let p = assert_problem(&app.get("/v1/events?limit=6").await, 400);
    assert_eq!(error_fields(&p), ["limit"]);
    assert_eq!(
        app.get("/v1/events?offset=4").await.seqs(),
        all.iter().skip(4).take(2).copied().collect::<Vec<u64>>()
    );
    let p = assert_problem(&app.get("/v1/events?offset=5").await, 400);
    assert_eq!(error_fields(&p), ["offset"]);
}

/// A path that exists answers a method it does not serve with a 405
/// problem whose `Allow` lists what it serves (HEAD wherever GET is); a path
/// that does not exist stays 404, whatever the method.
#[actix_rt::test]
async fn wrong_methods_are_405_problems_with_allow() {
    let app = spawn_app().await;
    app.post(&json!({"event": "a"})).await.expect(201);
    let seq = app.seq(1);
    let cases: Vec<(Method, String, &str)> = vec![
        (Method::DELETE, format!("/v1/events/{seq}"), "GET, HEAD"),
        (Method::PUT, format!("/v1/events/{seq}"), "GET, HEAD"),
        (Method::PUT, "/v1/events".into(), "GET, HEAD, POST"),
        (Method::DELETE, "/v1/events".into(), "GET, HEAD, POST"),
        (Method::PATCH, "/v1/events".into(), "GET, HEAD, POST"),
        (Method::OPTIONS, "/v1/events".into(), "GET, HEAD, POST"),
        (Method::POST, "/v1/summary".into(), "GET, HEAD"),
        (Method::POST, "/v1/head".into(), "GET, HEAD"),
        (Method::POST, "/v1/verify".into(), "GET, HEAD"),
        (Method::DELETE, "/v1/export".into(), "GET, HEAD"),
        (Method::PATCH, "/healthz".into(), "GET, HEAD"),
        (Method::POST, "/readyz".into(), "GET, HEAD"),
        (Method::PUT, "/openapi.json".into(), "GET, HEAD"),
        (Method::POST, "/metrics".into(), "GET, HEAD"),
        (Method::PUT, "/v1/tokens".into(), "GET, HEAD, POST"),
        (Method::GET, "/v1/tokens/someone".into(), "DELETE"),
        (Method::HEAD, "/v1/tokens/someone".into(), "DELETE"),
        (Method::POST, "/api/audit".into(), "GET, HEAD"),
        (Method::DELETE, "/api/audit/summary".into(), "GET, HEAD"),
        (Method::POST, "/v1/audit".into(), "GET, HEAD"),
        (Method::PUT, "/v1/audit/stats".into(), "GET, HEAD"),
        (Method::POST, "/v1/audit/verify".into(), "GET, HEAD"),
        (
            Method::DELETE,
            "/v1/audit/export?format=csv".into(),
            "GET, HEAD",
        ),
    ];
    for (method, path, allow) in &cases {
        let r = app.request(method.clone(), path).await;
        let what = format!("{method} {path}");
        assert_eq!(r.status, 405, "{what}: body {}", r.text_lossy());
        assert_eq!(r.header("allow").as_deref(), Some(*allow), "{what}");
        if *method == Method::HEAD {
            assert_eq!(r.content_type(), "application/problem+json", "{what}");
            assert!(r.body.is_empty(), "{what}: HEAD body {:?}", r.text_lossy());
            continue;
        }
        let p = assert_problem(&r, 405);
        assert_eq!(
            p["type"],
            json!("urn:trail:problem:method-not-allowed"),
            "{what}"
        );
        let path_only = path.split('?').next().unwrap();
        assert_eq!(
            p["detail"],
            json!(format!(
                "{method} is not allowed on {path_only}; it serves {allow}"
            )),
            "{what}"
        );
    }
    // Nothing was written by any of them, and the event is still there.
    assert_eq!(app.count(), 1);
    app.get(&format!("/v1/events/{seq}")).await.ok_json(200);

    for (method, path) in [
        (Method::DELETE, "/v1/nope"),
        (Method::PUT, "/v1/events/1/more"),
        (Method::GET, "/v1/event"),
        (Method::HEAD, "/v1/event"),
        (Method::POST, "/v2/events"),
    ] {
        let r = app.request(method.clone(), path).await;
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.header("allow"), None, "{method} {path}");
        if method != Method::HEAD {
            let p = assert_problem(&r, 404);
            assert_eq!(
                p["type"],
                json!("urn:trail:problem:not-found"),
                "{method} {path}"
            );
        }
    }
}

/// HEAD answers wherever GET does, with the GET's status and headers and no
/// body, on the wire (read raw, so a body sent anyway would show).
#[actix_rt::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app().await;
    app.post(&json!([{"event": "a"}, {"event": "b"}]))
        .await
        .expect(201);
    for path in [
        "/v1/head",
        "/v1/events",
        "/v1/events?limit=1",
        "/api/audit?limit=1",
        "/healthz",
        "/openapi.json",
        "/v1/events?limit=0",
    ] {
        let get = app.get(path).await;
        let head = app.request(Method::HEAD, path).await;
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert_eq!(head.content_type(), get.content_type(), "HEAD {path}");
        assert!(!get.body.is_empty(), "GET {path} has a body");
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string()),
            "HEAD {path}"
        );
        assert_eq!(head.header("link"), get.header("link"), "HEAD {path}");
        assert!(
            head.body.is_empty(),
            "HEAD {path}: body {:?}",
            head.text_lossy()
        );
    }
    let head = app.request(Method::HEAD, "/v1/events").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.content_type(), "application/json");

    // The streamed export: its headers, no rows.
    let head = app.request(Method::HEAD, "/v1/export?format=csv").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.content_type(), "text/csv; charset=utf-8");
    assert!(head
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment; filename=\"trail-export-"));
    assert!(head.body.is_empty());

    // On the wire: the status line and headers, then nothing.
    for path in ["/v1/head", "/v1/events", "/v1/export?format=csv"] {
        let raw = raw_request(app.port, &format!("HEAD {path} HTTP/1.1")).await;
        let (head, rest) = raw.split_once("\r\n\r\n").expect("end of headers");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(rest, "", "HEAD {path} sent a body");
    }
    assert_eq!(app.count(), 2, "HEAD writes nothing");
}

/// Sends `request_line` with `Connection: close` over a plain socket and
/// returns everything the server sends back.
async fn raw_request(port: u16, request_line: &str) -> String {
    let req = format!("{request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    actix_web::rt::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .expect("the server closes the connection");
        String::from_utf8(out).expect("UTF-8 response")
    })
    .await
    .unwrap()
}

/// Every (path, method) the server registers, once. `/openapi.json` must
/// document exactly these, and each one is requested here, so the list
/// cannot name a route that does not exist.
const SERVED: &[(&str, &str)] = &[
    ("/v1/events", "get"),
    ("/v1/events", "post"),
    ("/v1/events/{id}", "get"),
    ("/v1/summary", "get"),
    ("/v1/head", "get"),
    ("/v1/verify", "get"),
    ("/v1/export", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/openapi.json", "get"),
    ("/metrics", "get"),
    ("/v1/tokens", "get"),
    ("/v1/tokens", "post"),
    ("/v1/tokens/{name}", "delete"),
    ("/api/audit", "get"),
    ("/api/audit/summary", "get"),
    ("/v1/audit", "get"),
    ("/v1/audit/stats", "get"),
    ("/v1/audit/verify", "get"),
    ("/v1/audit/export", "get"),
];

type Pairs = std::collections::BTreeSet<(String, String)>;

#[actix_rt::test]
async fn openapi_documents_every_route_the_server_serves() {
    let app = spawn_app().await;
    let want: Pairs = SERVED
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(want.len(), SERVED.len(), "no duplicates in SERVED");

    // The document lists exactly these.
    let doc = app.get("/openapi.json").await.ok_json(200);
    let documented: Pairs = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .filter(|k| {
                    [
                        "get", "put", "post", "delete", "options", "head", "patch", "trace",
                    ]
                    .contains(&k.as_str())
                })
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    assert_eq!(documented, want, "documented vs served");

    // The server registers exactly these (and HEAD beside every GET).
    let mut registered = Pairs::new();
    for (path, methods) in trail::http::route_table() {
        let has = |m: &str| methods.iter().any(|x| x.as_str() == m);
        assert_eq!(has("GET"), has("HEAD"), "{path}: HEAD exactly where GET is");
        for m in methods.iter().filter(|m| m.as_str() != "HEAD") {
            registered.insert((path.to_owned(), m.as_str().to_ascii_lowercase()));
        }
    }
    assert_eq!(registered, want, "registered vs SERVED");

    // And each is really served: a request to each, with its expected status.
    let mut token: Option<String> = None;
    let mut used_token = false;
    for (path, method) in SERVED {
        let (method, concrete, body, status) = match (*path, *method) {
            ("/v1/events", "post") => (
                Method::POST,
                path.to_string(),
                Some(json!({"event": "a"})),
                201,
            ),
            // seq 1: the server's own server.start.
            ("/v1/events/{id}", _) => (Method::GET, "/v1/events/1".into(), None, 200),
            ("/v1/tokens", "post") => (
                Method::POST,
                path.to_string(),
                Some(json!({"name": "routes", "scopes": ["admin"]})),
                201,
            ),
            ("/v1/tokens/{name}", _) => (Method::DELETE, "/v1/tokens/routes".into(), None, 204),
            (_, "get") => (Method::GET, path.to_string(), None, 200),
            other => panic!("no request for {other:?}"),
        };
        let mut req = app.client.request(method.clone(), app.url(&concrete));
        if let Some(t) = &token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        if body.is_some() {
            req = req.insert_header(("content-type", "application/json"));
        }
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        let r = send(req, body).await;
        assert_eq!(r.status, status, "{method} {concrete}: {}", r.text_lossy());
        if concrete == "/v1/tokens" && method == Method::POST {
            // From now on every request needs a token.
            token = Some(r.json()["token"].as_str().unwrap().to_owned());
            used_token = true;
        }
        if concrete == "/v1/tokens/routes" && method == Method::DELETE {
            // The last token revoked: loopback-only again, where a revoked
            // token presented is refused, and none is needed.
            token = None;
        }
    }
    assert!(used_token, "the token route was exercised");

    // Each seed route under its own parameter names.
    let names = |path: &str| -> Vec<String> {
        let mut v: Vec<String> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    // (Every other parameter a route takes is listed too: see
    // openapi_names_exactly_the_query_parameters_each_route_takes.)
    for (path, seed_names) in [
        (
            "/api/audit",
            &[
                "actor", "cursor", "end", "event", "level", "limit", "offset", "start",
            ][..],
        ),
        ("/api/audit/summary", &["end", "period", "start"]),
        ("/v1/audit", &["cursor", "limit", "type"]),
        ("/v1/audit/stats", &["period"]),
        ("/v1/audit/export", &["format", "type"]),
        ("/v1/audit/verify", &["anchor", "from", "to"]),
    ] {
        let listed = names(path);
        for n in seed_names {
            assert!(
                listed.iter().any(|l| l == n),
                "{path} documents {n}: {listed:?}"
            );
        }
    }

    // limit with the bounds the server enforces (1 to 1000), offset 0 to 10000.
    for path in ["/v1/events", "/api/audit", "/v1/audit"] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let schema = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == json!(name))
                .unwrap_or_else(|| panic!("{path} documents {name}"))["schema"]
                .clone()
        };
        let limit = schema("limit");
        assert_eq!(
            (&limit["minimum"], &limit["maximum"]),
            (&json!(1), &json!(1000)),
            "{path}: limit {limit}"
        );
        if path != "/v1/audit" {
            let offset = schema("offset");
            assert_eq!(
                (&offset["minimum"], &offset["maximum"]),
                (&json!(0), &json!(10000)),
                "{path}: offset {offset}"
            );
        }
    }
}

/// The document names every query parameter each route takes, and no
/// other: each name is tried on the running server, and those not refused
/// as unknown must be exactly those documented (the probes, which ignore
/// their query string, aside).
#[actix_rt::test]
async fn openapi_names_exactly_the_query_parameters_each_route_takes() {
    use trail::http::params::{EXPORT_PARAMS, LIST_PARAMS, SUMMARY_PARAMS, VERIFY_PARAMS};
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await.ok_json(200);
    let mut universe: std::collections::BTreeSet<&str> =
        [LIST_PARAMS, EXPORT_PARAMS, SUMMARY_PARAMS, VERIFY_PARAMS]
            .concat()
            .into_iter()
            .collect();
    universe.insert("x");
    for (path, method) in SERVED {
        if *method != "get" || ["/healthz", "/readyz", "/metrics"].contains(path) {
            continue;
        }
        let documented: std::collections::BTreeSet<String> = doc["paths"][*path]["get"]
            ["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let concrete = path.replace("{id}", "1").replace("{name}", "none");
        let mut accepted = std::collections::BTreeSet::new();
        for name in &universe {
            let r = app.get(&format!("{concrete}?{name}=1")).await;
            let unknown = r.status == 400
                && r.json()["errors"][0]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("unknown parameter"));
            if !unknown {
                accepted.insert(name.to_string());
            }
        }
        assert_eq!(documented, accepted, "GET {path}: documented vs accepted");
    }
}

/// The answers every route can give besides its own are in the document:
/// the bearer scheme on each route that needs a token, with its 401, 403
/// and 503, and the 400 for a bad query parameter; the probes need none.
/// Each is then provoked on the running server for one route.
#[actix_rt::test]
async fn openapi_documents_auth_and_the_common_refusals() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await.ok_json(200);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "description": "An API token (trail token create NAME --scope read|ingest|admin)"})
    );
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let codes: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            let has = |c: &str| codes.iter().any(|k| k.as_str() == c);
            let public =
                ["/healthz", "/readyz", "/openapi.json", "/metrics"].contains(&path.as_str());
            assert_eq!(
                op.get("security").is_some(),
                !public,
                "{method} {path}: security"
            );
            if !public {
                for c in ["400", "401", "403", "503"] {
                    assert!(has(c), "{method} {path}: {c} in {codes:?}");
                    assert!(
                        op["responses"][c]["content"]["application/problem+json"].is_object(),
                        "{method} {path}: {c} is problem+json"
                    );
                }
            }
        }
    }
    assert!(doc["paths"]["/healthz"]["get"]["responses"]
        .get("401")
        .is_none());
    let from = doc["paths"]["/v1/verify"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "from")
        .unwrap()
        .clone();
    assert_eq!(from["schema"]["minimum"], json!(1), "{from}");
    // Every value a parameter's enum names is taken by the server.
    let mut tried = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let Some(params) = ops["get"]["parameters"].as_array() else {
            continue;
        };
        for p in params {
            for v in p["schema"]["enum"].as_array().into_iter().flatten() {
                let url = format!(
                    "{path}?{}={}",
                    p["name"].as_str().unwrap(),
                    v.as_str().unwrap()
                );
                let r = app.get(&url).await;
                assert_eq!(r.status, 200, "{url}: {}", r.text_lossy());
                tried += 1;
            }
        }
    }
    assert!(tried >= 30, "{tried} enum values tried");
    // The documented 400 is what a bad parameter gets.
    let r = app.get("/v1/head?x=1").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type(), "application/problem+json");
}
