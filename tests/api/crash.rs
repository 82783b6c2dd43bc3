//! Crash safety with the real binary: SIGKILL while eight clients post,
//! restart on the same file, and every acknowledged event is there, in a
//! chain that verifies.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::util::{spawn_listening, temp_dir, trail_cmd, Serving};

/// `trail --db DB ARGS...`, with no inherited `TRAIL_*` and `TRAIL_LOG=warn`.
fn trail(db: &Path, args: &[&str]) -> Command {
    let mut all = vec!["--db", db.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut c = trail_cmd(&all);
    c.env("TRAIL_LOG", "warn");
    c
}

/// Starts `trail --db DB serve --bind 127.0.0.1:0` and waits (bounded) for
/// its `trail: listening on HOST:PORT` line; killed (SIGKILL) when dropped.
fn serve(db: &Path) -> Serving {
    spawn_listening(trail(db, &["serve", "--bind", "127.0.0.1:0"]))
}

#[derive(Debug, Clone)]
struct Acked {
    id: String,
    seq: u64,
    chain_hash: String,
}

#[actix_rt::test]
async fn sigkill_under_load_loses_no_acknowledged_event() {
    let dir = temp_dir("trail-crash-");
    let db = dir.path().join("trail.db");
    let server = serve(&db);
    let client = client();

    let acked: Rc<RefCell<Vec<Acked>>> = Rc::default();
    let stop = Rc::new(Cell::new(false));
    let failures = Rc::new(Cell::new(0u64));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (client, url) = (client.clone(), format!("{}/v1/events", server.base));
        let (acked, stop, failures) = (acked.clone(), stop.clone(), failures.clone());
        tasks.push(actix_rt::spawn(async move {
            let mut i = 0u64;
            while !stop.get() {
                i += 1;
                let body = serde_json::to_vec(&json!({
                    "event": "crash.test", "actor": format!("w{w}"), "details": {"i": i}
                }))
                .unwrap();
                let res = client
                    .post(url.clone())
                    .insert_header(("content-type", "application/json"))
                    .timeout(Duration::from_secs(10))
                    .send_body(body)
                    .await;
                let mut res = match res {
                    Ok(r) => r,
                    Err(_) => {
                        failures.set(failures.get() + 1);
                        continue;
                    }
                };
                let status = res.status().as_u16();
                let Ok(body) = res.body().await else {
                    failures.set(failures.get() + 1);
                    continue;
                };
                if status == 201 {
                    let v: Value = serde_json::from_slice(&body).expect("a 201 body is JSON");
                    acked.borrow_mut().push(Acked {
                        id: v["id"].as_str().unwrap().to_owned(),
                        seq: v["seq"].as_u64().unwrap(),
                        chain_hash: v["chain_hash"].as_str().unwrap().to_owned(),
                    });
                } else {
                    eprintln!("status {status}: {}", String::from_utf8_lossy(&body));
                    failures.set(failures.get() + 1);
                }
            }
        }));
    }

    // Bounded wait for ~1,000 acknowledgements, then SIGKILL mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.borrow().len() < 1000 {
        assert!(
            Instant::now() < deadline,
            "only {} acknowledged within 60 s ({} failures)",
            acked.borrow().len(),
            failures.get()
        );
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(failures.get(), 0, "no request failed before the kill");
    let mut server = server;
    server.child.kill().expect("SIGKILL");
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "killed, not exited: {status:?}");
    stop.set(true);
    for t in tasks {
        actix_rt::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("client tasks end after the kill")
            .expect("client task did not panic");
    }
    drop(server);
    let acked = acked.borrow().clone();
    assert!(acked.len() >= 1000);
    let ids: std::collections::HashSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), acked.len(), "distinct ids");

    // Restart on the same file: every acknowledged event is there, as it was
    // acknowledged.
    let server = serve(&db);
    for a in &acked {
        let r = send(
            client.get(format!("{}/v1/events/{}", server.base, a.id)),
            None,
        )
        .await;
        let v = r.ok_json(200);
        assert_eq!(v["seq"], json!(a.seq), "{}", a.id);
        assert_eq!(v["chain_hash"], json!(a.chain_hash), "{}", a.id);
    }
    let head = send(client.get(format!("{}/v1/head", server.base)), None)
        .await
        .ok_json(200);
    let n = head["seq"].as_u64().unwrap();
    assert!(n >= acked.len() as u64, "head {n}");
    assert!(acked.iter().all(|a| a.seq <= n));
    // It keeps appending on the recovered chain.
    let r = send(
        client
            .post(format!("{}/v1/events", server.base))
            .insert_header(("content-type", "application/json")),
        Some(br#"{"event":"after.restart"}"#.to_vec()),
    )
    .await;
    assert_eq!(r.ok_json(201)["seq"], json!(n + 1));
    let v = send(client.get(format!("{}/v1/verify", server.base)), None)
        .await
        .ok_json(200);
    assert_eq!(v["valid"], json!(true), "{v}");
    assert_eq!(v["entries_checked"], json!(n + 1));
    drop(server);

    // The CLI agrees, on the file.
    let out = trail(&db, &["verify", "--json"])
        .output()
        .expect("run trail verify");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "trail verify --json printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["valid"], json!(true), "{report}");
    assert_eq!(report["entries_checked"], json!(n + 1), "{report}");
    assert!(out.status.success(), "{:?}", out.status);

    // And the file itself: seqs 1..=n+1, each acknowledged id once.
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let (count, max): (i64, i64) = conn
        .query_row("SELECT count(*), max(seq) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((count, max), ((n + 1) as i64, (n + 1) as i64));
    let mut st = conn
        .prepare("SELECT seq FROM events WHERE id = ?1")
        .unwrap();
    for a in &acked {
        let seq: i64 = st.query_row([&a.id], |r| r.get(0)).unwrap();
        assert_eq!(seq as u64, a.seq);
    }
}

/// Rows of `db` as another program sees them: `python3`'s sqlite3, opened
/// read-write (as `sqlite3 trail.db` does), counted, closed.
fn python_count(db: &Path) -> i64 {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             print(c.execute('select count(*) from events').fetchone()[0]); c.close()",
            db.to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// An analyst opening the live file with plain `sqlite3` (read-write, then
/// closing it) must not take the server's WAL away. Before, the server held
/// no lock SQLite could see on the database file (a handle of our own on it,
/// closed after the migrations, dropped SQLite's POSIX locks with it), so
/// the other program, closing last as it thought, deleted `trail.db-wal`
/// while the server still wrote into it: every later acknowledged event was
/// lost at the next start, and other readers saw a stale log.
#[actix_rt::test]
async fn another_programs_read_write_session_leaves_the_servers_events_alone() {
    let dir = temp_dir("trail-analyst-");
    let db = dir.path().join("trail.db");
    let wal = dir.path().join("trail.db-wal");
    let server = serve(&db);
    let client = client();
    let post = |event: &'static str| {
        let (client, url) = (client.clone(), format!("{}/v1/events", server.base));
        async move {
            let r = send(
                client
                    .post(url)
                    .insert_header(("content-type", "application/json")),
                Some(format!(r#"{{"event":"{event}"}}"#).into_bytes()),
            )
            .await;
            r.ok_json(201)["id"].as_str().unwrap().to_owned()
        }
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(post("before.analyst").await);
    }
    // server.start + 3.
    assert_eq!(python_count(&db), 4);
    assert!(
        wal.exists(),
        "the server's WAL is still there after the analyst closed"
    );
    for _ in 0..3 {
        ids.push(post("after.analyst").await);
    }
    assert_eq!(python_count(&db), 7, "another program sees the new events");

    // SIGKILL, then the file alone (with its WAL) holds every acknowledged event.
    drop(server);
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut st = conn
        .prepare("SELECT count(*) FROM events WHERE id = ?1")
        .unwrap();
    for id in &ids {
        let n: i64 = st.query_row([id], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "acknowledged event {id} is in the file");
    }
    drop(st);
    drop(conn);
    let out = trail(&db, &["verify", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], json!(true), "{report}");
    assert_eq!(report["entries_checked"], json!(7), "{report}");
}
