//! The server's own retention (`retention_days`): it prunes events older
//! than that when they verify, and refuses, deleting nothing, when they do
//! not, counting the refusal in `/metrics`.
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

/// Writes `n` events, 40 days old, as seqs 1..=n of a new file at `db`,
/// sealed with `key`.
fn old_events(db: &Path, key: &HmacKey, n: u64) {
    let conn = open_write(db, Synchronous::Full).unwrap();
    let ts = format_timestamp(chrono::Utc::now() - chrono::Duration::days(40));
    let mut prev = GENESIS;
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
}

/// A folder holding `trail.db` with `n` old events and the key beside it.
fn folder_with_old_events(n: u64) -> std::sync::Arc<tempfile::TempDir> {
    let dir = temp_dir();
    let key = HmacKey::from_hex(KEY_HEX).unwrap();
    std::fs::write(dir.path().join("hmac.key"), format!("{KEY_HEX}\n")).unwrap();
    old_events(&dir.path().join("trail.db"), &key, n);
    dir
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
    let dir = folder_with_old_events(6);
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

#[actix_rt::test]
async fn retention_days_refuses_old_events_that_do_not_verify() {
    let dir = folder_with_old_events(6);
    // Row 3 edited in place, as someone with write access to the file would.
    let conn = rusqlite::Connection::open(dir.path().join("trail.db")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER events_no_update;
         UPDATE events SET entry = replace(entry, '\"old-3\"', '\"old-X\"') WHERE seq = 3;",
    )
    .unwrap();
    drop(conn);
    let s = start_in(dir, |c| c.retention_days = Some(30)).await;

    // The refusal is counted once the first run is over (the counter is
    // process-wide, but no other test of this binary makes one).
    poll(
        "a counted retention refusal",
        Duration::from_secs(20),
        || {
            let s = &s;
            async move {
                let text = s.get("/metrics").await.text_lossy();
                (metric_sum(&text, "trail_retention_refusals_total", &[]) >= 1.0).then_some(())
            }
        },
    )
    .await;
    assert_eq!(cuts(&s), Vec::<i64>::new());
    assert!(s.db().events_of("retention.prune").is_empty());
    let seqs: Vec<u64> = s
        .db()
        .events()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .take(6)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6], "nothing was deleted");
    let v = s.get("/v1/verify").await.ok_json(200);
    assert_eq!(v["first_bad_seq"], json!(3), "{v}");
    assert_eq!(v["kind"], json!("modified"), "{v}");
    s.stop().await;
}
