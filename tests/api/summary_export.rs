//! Summaries against SQL aggregates on the same file, and exports of
//! 100,000 rows parsed back and compared row by row with the file.

use std::collections::BTreeMap;

use rusqlite::types::Value as SqlValue;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::helpers::*;

const TYPES: [&str; 7] = [
    "auth.login",
    "auth.logout",
    "auth.fail",
    "user.create",
    "user.delete",
    "file.read",
    "file.write",
];
const LEVELS: [&str; 5] = ["debug", "info", "warning", "error", "critical"];

fn mixed_event(i: usize) -> Value {
    let mut e = json!({"event": TYPES[i % 7], "level": LEVELS[(i / 3) % 5]});
    if !i.is_multiple_of(13) {
        e["actor"] = json!(format!("user{}", i % 11));
    }
    match i % 4 {
        0 => e["success"] = json!(true),
        1 => e["success"] = json!(false),
        2 => e["success"] = json!(i % 8 == 2),
        _ => {}
    }
    e
}

/// The summary SQL gives for `cond` (over `json_extract` of the stored
/// entries, not the server's generated columns).
fn sql_summary(app: &TestApp, cond: &str, params: &[SqlValue]) -> Value {
    let conn = app.sql();
    let grouped = |member: &str| -> BTreeMap<String, u64> {
        let sql = format!(
            "SELECT json_extract(entry, '$.{member}') AS k, count(*) FROM events \
             WHERE {cond} AND k IS NOT NULL GROUP BY k"
        );
        let mut st = conn.prepare(&sql).unwrap();
        st.query_map(rusqlite::params_from_iter(params), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
    };
    let (total, ok, failed, first, last): (i64, i64, i64, Option<String>, Option<String>) = conn
        .query_row(
            &format!(
                "SELECT count(*), \
                 coalesce(sum(json_extract(entry, '$.success') = 1), 0), \
                 coalesce(sum(json_extract(entry, '$.success') = 0), 0), \
                 min(json_extract(entry, '$.timestamp')), max(json_extract(entry, '$.timestamp')) \
                 FROM events WHERE {cond}"
            ),
            rusqlite::params_from_iter(params),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    json!({
        "total_events": total,
        "by_type": grouped("event"),
        "by_level": grouped("level"),
        "by_actor": grouped("actor"),
        "success_count": ok,
        "failure_count": failed,
        "first_event": first,
        "last_event": last,
    })
}

fn without_period(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    for k in ["period", "since", "until"] {
        assert!(o.remove(k).is_some(), "summary has {k}");
    }
    v
}

fn ts_of(app: &TestApp, seq: i64) -> String {
    app.sql()
        .query_row(
            "SELECT json_extract(entry, '$.timestamp') FROM events WHERE seq = ?1",
            [seq],
            |r| r.get(0),
        )
        .unwrap()
}

#[actix_rt::test]
async fn summary_counts_equal_sql_aggregates_on_the_same_file() {
    let app = spawn_app().await;
    let before = app.get("/v1/summary?period=all").await.ok_json(200);
    // Five separate POSTs, so the log spans several timestamps.
    for part in 0..5 {
        let batch: Vec<Value> = (part * 1000..(part + 1) * 1000).map(mixed_event).collect();
        app.post(&Value::Array(batch)).await.expect(201);
    }
    let all = "1";
    let v = app.get("/v1/summary?period=all").await.ok_json(200);
    assert_eq!(v["period"], json!("all"));
    assert_eq!(v["since"], Value::Null);
    assert_eq!(v["until"], Value::Null);
    assert_eq!(without_period(v.clone()), sql_summary(&app, all, &[]));
    // The same totals tallied here from what was posted, on top of what
    // the server had written before.
    let mut want = before.clone();
    let bump = |v: &mut Value, key: &str| {
        let n = v[key].as_u64().unwrap_or(0);
        v[key] = json!(n + 1);
    };
    for i in 0..5000 {
        let e = mixed_event(i);
        bump(&mut want["by_type"], e["event"].as_str().unwrap());
        bump(&mut want["by_level"], e["level"].as_str().unwrap());
        if let Some(a) = e["actor"].as_str() {
            bump(&mut want["by_actor"], a);
        }
        match e["success"].as_bool() {
            Some(true) => bump(&mut want, "success_count"),
            Some(false) => bump(&mut want, "failure_count"),
            None => {}
        }
        bump(&mut want, "total_events");
    }
    for k in [
        "by_type",
        "by_level",
        "by_actor",
        "success_count",
        "failure_count",
        "total_events",
    ] {
        assert_eq!(v[k], want[k], "{k}");
    }
    assert_eq!(v["total_events"], json!(app.seq(5000)));

    for (query, period) in [
        ("", "24h"),
        ("period=24h", "24h"),
        ("period=7d", "7d"),
        ("period=30d", "30d"),
    ] {
        let v = app.get(&format!("/v1/summary?{query}")).await.ok_json(200);
        assert_eq!(v["period"], json!(period));
        assert_eq!(v["until"], Value::Null);
        let since = v["since"].as_str().expect("since").to_owned();
        assert_eq!(
            without_period(v),
            sql_summary(
                &app,
                "json_extract(entry, '$.timestamp') >= ?1",
                &[SqlValue::Text(since)]
            ),
            "{query}"
        );
    }

    // An explicit range, inclusive at both ends.
    let (a, b) = (ts_of(&app, 1500), ts_of(&app, 3500));
    let v = app
        .get(&format!("/v1/summary?since={}&until={}", enc(&a), enc(&b)))
        .await
        .ok_json(200);
    assert_eq!(v["period"], json!("custom"));
    assert_eq!(v["since"], json!(a));
    let want = sql_summary(
        &app,
        "json_extract(entry, '$.timestamp') >= ?1 AND json_extract(entry, '$.timestamp') <= ?2",
        &[SqlValue::Text(a.clone()), SqlValue::Text(b.clone())],
    );
    assert!(want["total_events"].as_u64().unwrap() >= 2001);
    assert_eq!(without_period(v), want);
    // The seed names.
    let v = app
        .get(&format!(
            "/api/audit/summary?start={}&end={}",
            enc(&a),
            enc(&b)
        ))
        .await
        .ok_json(200);
    assert_eq!(without_period(v), want);

    // Whole days.
    let day = chrono::NaiveDate::parse_from_str(&a[..10], "%Y-%m-%d").unwrap();
    let prev = day.pred_opt().unwrap();
    let v = app
        .get(&format!("/v1/summary?until={prev}"))
        .await
        .ok_json(200);
    assert_eq!(v["total_events"], json!(0));
    assert_eq!(without_period(v), sql_summary(&app, "0", &[]));
    let v = app
        .get(&format!("/v1/summary?since={prev}"))
        .await
        .ok_json(200);
    assert_eq!(without_period(v), sql_summary(&app, all, &[]));
}

fn neutralised(s: &str) -> String {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{s}"),
        _ => s.to_owned(),
    }
}

#[derive(Deserialize)]
struct Row {
    seq: u64,
    id: String,
    chain_hash: String,
    signature: String,
}

#[derive(Deserialize)]
struct Doc {
    generated_at: String,
    filters: Value,
    events: Vec<Row>,
    count: u64,
}

/// Every stored row as the CSV must show it, from the `audit_log` view.
fn sql_rows(app: &TestApp) -> Vec<Vec<String>> {
    let conn = app.sql();
    let mut st = conn
        .prepare(
            "SELECT seq, id, timestamp, event, level, actor, resource, success, source_ip, \
             user_agent, request_id, occurred_at, details, metadata, key_id, chain_hash, signature \
             FROM audit_log ORDER BY seq",
        )
        .unwrap();
    st.query_map([], |r| {
        let mut out = Vec::with_capacity(17);
        for i in 0..17 {
            let cell = match r.get::<_, SqlValue>(i)? {
                SqlValue::Null => String::new(),
                SqlValue::Integer(n) if i == 7 => {
                    (if n == 1 { "true" } else { "false" }).to_owned()
                }
                SqlValue::Integer(n) => n.to_string(),
                SqlValue::Text(t) => t,
                other => panic!("column {i}: {other:?}"),
            };
            out.push(if matches!(i, 0 | 7 | 15 | 16) {
                cell
            } else {
                neutralised(&cell)
            });
        }
        Ok(out)
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

#[actix_rt::test]
async fn export_of_100000_rows_parses_back_equal_to_the_file() {
    const N: usize = 100_000;
    let app = spawn_app().await;
    app.post_many(N, 4, |i| {
        let mut e =
            json!({"event": TYPES[i % 7], "level": LEVELS[i % 5], "actor": format!("u{}", i % 50)});
        match i % 10_000 {
            1234 => e["actor"] = json!("=HYPERLINK(\"http://evil.example\",\"x\")"),
            2345 => e["resource"] = json!("+cmd|' /C calc'!A0"),
            3456 => e["user_agent"] = json!("-2+3"),
            4567 => e["request_id"] = json!("@SUM(1,2)"),
            5678 => e["details"] = json!({"note": "=1+1", "n": i}),
            _ => {}
        }
        if i % 100 == 0 {
            e["success"] = json!(i % 200 == 0);
            e["metadata"] = json!({"batch": i / 1000, "tags": ["a", "b"]});
        }
        e
    })
    .await;
    assert_eq!(app.count(), N as u64);
    // Every row of the file, the server's own included.
    let total = app.total() as usize;
    let want = sql_rows(&app);
    assert_eq!(want.len(), total);

    // CSV
    let r = app.get("/v1/export?format=csv").await;
    r.expect(200);
    assert_eq!(r.content_type(), "text/csv; charset=utf-8");
    let cd = r.header("content-disposition").unwrap();
    assert!(
        cd.starts_with("attachment; filename=\"trail-export-") && cd.ends_with(".csv\""),
        "{cd}"
    );
    assert_eq!(r.header("content-length"), None, "streamed, not buffered");
    let mut rd = csv::Reader::from_reader(&r.body[..]);
    assert_eq!(
        rd.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "seq",
            "id",
            "timestamp",
            "event",
            "level",
            "actor",
            "resource",
            "success",
            "source_ip",
            "user_agent",
            "request_id",
            "occurred_at",
            "details",
            "metadata",
            "key_id",
            "chain_hash",
            "signature"
        ]
    );
    let mut n = 0;
    for (i, rec) in rd.records().enumerate() {
        let rec = rec.unwrap();
        let got: Vec<&str> = rec.iter().collect();
        assert_eq!(got, want[i], "CSV row {i}");
        n += 1;
    }
    assert_eq!(n, total);
    // The formula cells came back neutralised (batches were posted
    // concurrently, so rows are found by content, not position).
    let count_cells = |col: usize, cell: &str| want.iter().filter(|row| row[col] == cell).count();
    let per = N / 10_000;
    assert_eq!(
        count_cells(5, "'=HYPERLINK(\"http://evil.example\",\"x\")"),
        per
    );
    assert_eq!(count_cells(6, "'+cmd|' /C calc'!A0"), per);
    assert_eq!(count_cells(9, "'-2+3"), per);
    assert_eq!(count_cells(10, "'@SUM(1,2)"), per);
    let neutral = want
        .iter()
        .filter(|row| row[5..14].iter().any(|c| c.starts_with('\'')))
        .count();
    assert_eq!(neutral, 4 * per, "no other cell is touched");
    let notes: Vec<&String> = want
        .iter()
        .map(|row| &row[12])
        .filter(|c| c.contains("=1+1"))
        .collect();
    assert_eq!(notes.len(), per);
    for c in notes {
        assert!(
            c.starts_with("{\"n\":") && c.ends_with(",\"note\":\"=1+1\"}"),
            "{c}"
        );
    }

    // A filter on the formula-looking actor.
    let r = app
        .get(&format!(
            "/v1/export?format=csv&actor={}",
            enc("=HYPERLINK(\"http://evil.example\",\"x\")")
        ))
        .await;
    let mut rd = csv::Reader::from_reader(&r.body[..]);
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), N / 10_000);
    for row in &rows {
        assert_eq!(&row[5], "'=HYPERLINK(\"http://evil.example\",\"x\")");
    }

    // JSON
    let r = app.get("/v1/export?format=json").await;
    r.expect(200);
    assert_eq!(r.content_type(), "application/json");
    let doc: Doc = serde_json::from_slice(&r.body).expect("one JSON document");
    chrono::DateTime::parse_from_rfc3339(&doc.generated_at).unwrap();
    assert_eq!(doc.filters, json!({}));
    assert_eq!(doc.count, total as u64);
    assert_eq!(doc.events.len(), total);
    for (i, e) in doc.events.iter().enumerate() {
        assert_eq!(e.seq.to_string(), want[i][0], "JSON row {i}");
        assert_eq!(e.id, want[i][1], "JSON row {i}");
        assert_eq!(e.chain_hash, want[i][15], "JSON row {i}");
        assert_eq!(e.signature, want[i][16], "JSON row {i}");
    }

    // JSON Lines, newest first
    let r = app.get("/v1/export?format=jsonl&order=desc").await;
    r.expect(200);
    let mut n = 0;
    for (i, line) in r
        .body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let e: Row = serde_json::from_slice(line).expect("one JSON object per line");
        let w = &want[total - 1 - i];
        assert_eq!(
            (e.seq.to_string(), &e.id, &e.chain_hash),
            (w[0].clone(), &w[1], &w[15]),
            "line {i}"
        );
        n += 1;
    }
    assert_eq!(n, total);
    assert_eq!(r.body.last(), Some(&b'\n'));
}

/// An export whose client reads nothing past the status line (by then the
/// export holds its read connection), over a raw socket.
async fn stalled_export(port: u16) -> std::net::TcpStream {
    actix_web::rt::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.write_all(b"GET /v1/export?format=csv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut status = [0u8; 15];
        s.read_exact(&mut status).unwrap();
        assert_eq!(&status, b"HTTP/1.1 200 OK");
        s
    })
    .await
    .unwrap()
}

/// More events than the export's channel and both socket buffers hold (at
/// least 12 MB, and three times the largest send buffer this machine's TCP
/// may grow to), so an export to a client that reads nothing stalls.
async fn more_than_the_buffers_hold(app: &TestApp) {
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().last().and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20);
    let bytes = (3 * wmem_max).max(12 << 20);
    let pad = "x".repeat(60_000);
    for i in 0..bytes.div_ceil(60_000) {
        app.post(&json!({"event": "bulk.pad", "details": {"i": i, "pad": pad}}))
            .await
            .expect(201);
    }
}

/// With every long-read connection held by exports nobody reads, a summary
/// is a 503 with `Retry-After` (retry), not a 500 after 30 s; an export
/// whose client takes nothing for the stall limit is cut off (a broken
/// transfer, not a short file that looks whole) and its connection serves
/// others again.
#[actix_rt::test]
async fn stalled_exports_give_503s_then_are_cut_off_and_free_their_connection() {
    // Stall limit longer than the pool wait: the summary finds no connection.
    let app = spawn_app_with(|c| c.read_pool_size = 1).await;
    more_than_the_buffers_hold(&app).await;
    let stalled = stalled_export(app.port).await;
    let r = app.get("/v1/summary?period=all").await;
    r.expect(503);
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    assert_eq!(r.json()["detail"], json!("every read connection is busy with long reads (exports, summaries, verifications); retry after the indicated delay"));
    // A verification shares the same connections.
    let r = app.get("/v1/verify").await;
    r.expect(503);
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    drop(stalled);
    app.get("/v1/summary?period=all").await.expect(200);
    assert_eq!(
        app.get("/v1/verify").await.ok_json(200)["valid"],
        json!(true)
    );

    // Stall limit shorter than the pool wait: the export is cut off first.
    let app = spawn_app_with(|c| {
        c.read_pool_size = 1;
        c.limits.export_stall = std::time::Duration::from_secs(1);
    })
    .await;
    more_than_the_buffers_hold(&app).await;
    let mut stalled = stalled_export(app.port).await;
    let r = app.get("/v1/summary?period=all").await;
    r.expect(200);
    assert_eq!(r.json()["total_events"], json!(app.total()));
    let received = actix_web::rt::task::spawn_blocking(move || {
        use std::io::Read;
        stalled
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut out = Vec::new();
        let _ = stalled.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    let whole: i64 = app
        .sql()
        .query_row("SELECT sum(length(entry)) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(
        (received.len() as i64) < whole,
        "the export was cut off: {} bytes of at least {whole}",
        received.len()
    );
    assert!(
        !received.ends_with(b"\r\n0\r\n\r\n"),
        "a cut-off export must not end like a whole one"
    );
}
