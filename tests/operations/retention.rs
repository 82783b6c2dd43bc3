//! The server's own retention (`retention_days`): it prunes events older
//! than that when they verify, and refuses, deleting nothing, when they do
//! not, counting the refusal in `/metrics`. After a key change,
//! `verify_key_files` lets it (and `/v1/verify`) accept the old rows.
//!
//! The writer stamps every event with the current time, so the old events
//! are written here directly, in the chain format, with a timestamp 40 days
//! back: what a file that has served for a while holds.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use trail::domain::chain::link;
use trail::domain::event::format_timestamp;
use trail::domain::{HmacKey, NewEvent, Placement, GENESIS};
use trail::store::{open_write, Synchronous};

use crate::helpers::*;

const KEY_HEX: &str = "4c1f0e2d3b5a69788796a5b4c3d2e1f04c1f0e2d3b5a69788796a5b4c3d2e1f0";
const OLD_KEY_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Writes `n` events, 40 days old, as seqs 1..=n of a new file at `db`,
/// sealed with `key`.
fn old_events(db: &Path, key: &HmacKey, n: u64) {
    let conn = open_write(db, Synchronous::Full).unwrap();
    let ts = format_timestamp(chrono::Utc::now() - chrono::Duration::days(40));
    let mut prev = GENESIS;
    conn.execute_batch("BEGIN").unwrap();
    for seq in 1..=n {
        let event =
            NewEvent::from_json(&json!({"event": "user.login", "actor": format!("old-{seq}")}))
                .unwrap();
        let id = format!("old-{seq}");
        let entry = event.encode(Placement {
            seq,
            id: &id,
            timestamp: &ts,
            key_id: key.id().as_str(),
        });
        let hash = link(&prev, entry.as_bytes());
        conn.execute(
            "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![seq as i64, entry, &hash[..], &key.seal(&hash)[..]],
        )
        .unwrap();
        prev = hash;
    }
    conn.execute_batch("COMMIT").unwrap();
}

/// A folder holding `trail.db` with `n` old events sealed with `sealed_hex`,
/// and the server's key ([`KEY_HEX`]) beside it as `hmac.key`.
fn folder_with_old_events(n: u64, sealed_hex: &str) -> std::sync::Arc<tempfile::TempDir> {
    let dir = temp_dir();
    let key = HmacKey::from_hex(sealed_hex).unwrap();
    std::fs::write(dir.path().join("hmac.key"), format!("{KEY_HEX}\n")).unwrap();
    old_events(&dir.path().join("trail.db"), &key, n);
    dir
}

/// `trail_retention_refusals_total` now. The counter is process-wide, and
/// only [`retention_days_refuses_old_events_that_do_not_verify`] moves it,
/// one server after the other, so each of its refusals adds exactly one.
fn refusals() -> f64 {
    let text = trail::http::metrics::handle()
        .map(|h| h.render())
        .unwrap_or_default();
    metric_sum(&text, "trail_retention_refusals_total", &[])
}

/// Waits until the count of refusals is `n`.
async fn refusals_reach(n: f64) {
    poll(
        "a counted retention refusal",
        Duration::from_secs(20),
        || async move { (refusals() >= n).then_some(()) },
    )
    .await;
    assert_eq!(refusals(), n, "exactly one more refusal");
}

/// `GET /v1/verify` names `seq` and `kind` as the first damage.
async fn assert_verify_fails_at(s: &Server, seq: u64, kind: &str) {
    let v = s.get("/v1/verify").await.ok_json(200);
    assert_eq!(
        (&v["first_bad_seq"], &v["kind"]),
        (&json!(seq), &json!(kind)),
        "{v}"
    );
}

/// Every row of the file is still there: seqs 1..=n, then what the server
/// appended itself.
fn assert_first_rows_kept(s: &Server, n: u64) {
    let seqs: Vec<u64> = s
        .db()
        .events()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .take(n as usize)
        .collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "nothing was deleted");
    assert_eq!(cuts(s), Vec::<i64>::new(), "no cut recorded");
    assert!(s.db().events_of("retention.prune").is_empty());
}

fn cuts(s: &Server) -> Vec<i64> {
    let conn = s.db().conn();
    let mut st = conn
        .prepare("SELECT up_to_seq FROM retention_cuts ORDER BY up_to_seq")
        .unwrap();
    let v = st.query_map([], |r| r.get(0)).unwrap();
    v.map(Result::unwrap).collect()
}

#[actix_rt::test]
async fn retention_days_prunes_old_events_that_verify() {
    let dir = folder_with_old_events(6, KEY_HEX);
    let s = start_in(dir, |c| c.retention_days = Some(30)).await;

    let prune = poll("the retention.prune event", Duration::from_secs(20), || {
        let db = s.db();
        async move { db.events_of("retention.prune").into_iter().next() }
    })
    .await;
    assert_eq!(prune["details"]["up_to_seq"], json!(6));
    assert_eq!(prune["details"]["deleted"], json!(6));
    assert_eq!(cuts(&s), vec![6]);
    let left: Vec<Value> = s.db().events();
    assert!(
        left.iter().all(|e| e["seq"].as_u64().unwrap() > 6),
        "rows at or below the cut are gone: {left:?}"
    );
    let v = s.get("/v1/verify").await.ok_json(200);
    assert_eq!(v["valid"], json!(true), "{v}");
    s.stop().await;
}

/// Refused, with nothing deleted, and counted: an edited row, then rows
/// sealed with a key the server was not given.
#[actix_rt::test]
async fn retention_days_refuses_old_events_that_do_not_verify() {
    let dir = folder_with_old_events(6, KEY_HEX);
    // Row 3 edited in place, as someone with write access to the file would.
    let conn = rusqlite::Connection::open(dir.path().join("trail.db")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER events_no_update;
         UPDATE events SET entry = replace(entry, '\"old-3\"', '\"old-X\"') WHERE seq = 3;",
    )
    .unwrap();
    drop(conn);
    let n0 = refusals();
    let s = start_in(dir, |c| c.retention_days = Some(30)).await;
    refusals_reach(n0 + 1.0).await;
    assert_first_rows_kept(&s, 6);
    assert_verify_fails_at(&s, 3, "modified").await;
    s.stop().await;

    // Sealed with an earlier key the server is not given: it does not start
    // (its key does not continue the log), so nothing is sealed or pruned.
    let dir = folder_with_old_events(4, OLD_KEY_HEX);
    let db = dir.path().join("trail.db");
    let before = std::fs::read(&db).unwrap();
    let mut cfg = config_in(dir.path());
    cfg.retention_days = Some(30);
    match trail::http::Application::build(cfg) {
        Ok(_) => panic!("a server whose key does not continue the log started"),
        Err(e) => assert!(
            e.to_string().contains("the key given is")
                && e.to_string().contains("verify_key_files"),
            "{e}"
        ),
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

/// After a key change, `verify_key_files` gives the server the old key:
/// the old rows verify, and retention prunes them.
#[actix_rt::test]
async fn after_a_key_change_verify_key_files_lets_old_rows_verify_and_go() {
    let dir = folder_with_old_events(4, OLD_KEY_HEX);
    let old_key = dir.path().join("old.key");
    std::fs::write(&old_key, OLD_KEY_HEX).unwrap();
    let s = start_in(dir, |c| {
        c.retention_days = Some(30);
        c.keys.verify_files = vec![old_key.clone()];
    })
    .await;
    poll("the retention.prune event", Duration::from_secs(20), || {
        let db = s.db();
        async move { db.events_of("retention.prune").into_iter().next() }
    })
    .await;
    assert_eq!(cuts(&s), vec![4]);
    let v = s.get("/v1/verify").await.ok_json(200);
    assert_eq!(v["valid"], json!(true), "{v}");
    s.stop().await;
}

/// A server stopped while its retention prunes a backlog: the prune stops
/// after its current batch, `server.stop` is the run's last event, the stop
/// checkpoints the whole WAL into the file, and what is left verifies.
#[actix_rt::test]
async fn a_stop_during_retention_ends_with_server_stop_and_a_log_that_verifies() {
    let dir = folder_with_old_events(60_000, KEY_HEX);
    let db = dir.path().join("trail.db");
    let s = start_in(dir.clone(), |c| c.retention_days = Some(30)).await;
    s.stop().await;
    let events = Db(db.clone(), None).events_of("server.stop");
    assert_eq!(events.len(), 1);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let last: String = conn
        .query_row(
            "SELECT event FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(last, "server.stop", "the last event of the run");
    drop(conn);
    let wal = std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the stop checkpointed the WAL");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trail"))
        .args(["--db", db.to_str().unwrap(), "verify", "--json"])
        .env("TRAIL_HMAC_KEY", KEY_HEX)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], json!(true), "{v}");
}
