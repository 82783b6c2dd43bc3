//! The real binary's life: start, serve under load, SIGTERM, exit 0 with
//! every acknowledged event committed and `server.stop` last; start again on
//! the same file; the chain verifies.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::util::{spawn_listening, Serving};

/// A `trail serve` process (its standard error kept in `serving`) and the
/// port it listens on.
struct Proc {
    serving: Serving,
    port: u16,
}

impl Proc {
    fn start(db: &Path) -> Proc {
        Proc::start_logging(db, "warn")
    }

    /// [`Proc::start`] with `TRAIL_LOG` at `level`.
    fn start_logging(db: &Path, level: &str) -> Proc {
        let mut cmd = serve_cmd(db);
        cmd.env("TRAIL_LOG", level);
        let serving = spawn_listening(cmd);
        Proc {
            port: serving.port_on("127.0.0.1"),
            serving,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn sigterm(&self) {
        let st = std::process::Command::new("kill")
            .args(["-TERM", &self.serving.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM failed");
    }

    /// Waits (bounded, polling) for the process to exit; kills it and
    /// panics after `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(st) = self.serving.child.try_wait().expect("try_wait") {
                return (st, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = self.serving.child.kill();
                let _ = self.serving.child.wait();
                panic!(
                    "trail serve did not exit within {limit:?} of SIGTERM; stderr:\n{}",
                    self.serving.stderr.lock().unwrap()
                );
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// id -> seq, for every 201.
    acked: Vec<(String, u64)>,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: u64,
}

#[cfg(unix)]
#[actix_rt::test]
async fn sigterm_under_load_commits_every_acknowledged_event() {
    let dir = temp_dir();
    let db_path = dir.path().join("trail.db");
    let mut proc = Proc::start(&db_path);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .connector(awc::Connector::new().limit(32))
        .finish();
    // Up and answering.
    let url = proc.url("/v1/events");
    poll(
        "the first event to be accepted",
        Duration::from_secs(20),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client
                    .post(url)
                    .insert_header(("content-type", "application/json"))
                    .send_body(serde_json::to_vec(&json!({"event": "load.warmup"})).unwrap())
                    .await
                    .ok()?;
                (r.status().as_u16() == 201).then_some(())
            }
        },
    )
    .await;

    let seen = Rc::new(RefCell::new(Seen::default()));
    let load_deadline = Instant::now() + Duration::from_secs(40);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (client, url, seen) = (client.clone(), url.clone(), seen.clone());
            async move {
                for i in 0u64.. {
                    if Instant::now() > load_deadline {
                        break;
                    }
                    let id = format!("load-{t}-{i}");
                    let body = json!({"id": id, "event": "load.tick", "actor": format!("client-{t}"), "details": {"i": i}});
                    let sent = client
                        .post(url.as_str())
                        .insert_header(("content-type", "application/json"))
                        .send_body(serde_json::to_vec(&body).unwrap())
                        .await;
                    let mut res = match sent {
                        Ok(r) => r,
                        Err(_) => {
                            seen.borrow_mut().errors += 1;
                            break; // the server went away
                        }
                    };
                    let status = res.status().as_u16();
                    *seen.borrow_mut().statuses.entry(status).or_default() += 1;
                    if status != 201 {
                        break;
                    }
                    let Ok(bytes) = res.body().await else {
                        // Acknowledged status but the body was cut: not counted.
                        seen.borrow_mut().errors += 1;
                        break;
                    };
                    let v: Value = serde_json::from_slice(&bytes).expect("201 body is JSON");
                    assert_eq!(v["id"], id.as_str());
                    let seq = v["seq"].as_u64().expect("seq");
                    seen.borrow_mut().acked.push((id, seq));
                }
            }
        })
        .collect();

    let controller = {
        let seen = seen.clone();
        let proc = &mut proc;
        async move {
            // Let the load build up, then SIGTERM while it runs.
            poll("200 acknowledged events", Duration::from_secs(30), || {
                let n = seen.borrow().acked.len();
                async move { (n >= 200).then_some(()) }
            })
            .await;
            let at_kill = seen.borrow().acked.len();
            proc.sigterm();
            let (status, took) = proc.wait_exit(Duration::from_secs(45)).await;
            (status, took, at_kill)
        }
    };
    let ((status, took, at_kill), _) =
        futures_util::future::join(controller, futures_util::future::join_all(tasks)).await;
    let stderr = proc.serving.stderr.lock().unwrap().clone();
    let seen = seen.take();
    eprintln!(
        "SIGTERM after {at_kill} acks; {} acked in all; statuses {:?}; {} client errors; exit {:?} after {:?}",
        seen.acked.len(),
        seen.statuses,
        seen.errors,
        status,
        took
    );
    assert_eq!(
        status.code(),
        Some(0),
        "trail serve exits 0 on SIGTERM; stderr:\n{stderr}"
    );
    assert!(
        took < Duration::from_secs(15),
        "exited {took:?} after SIGTERM (in-flight requests are short)"
    );
    assert!(seen.acked.len() >= 200);

    // The stopped server's file holds everything by itself: the WAL was
    // checkpointed into it at shutdown, so copying just trail.db (a cold
    // backup, a copy for forensics) loses nothing.
    let wal = format!("{}-wal", db_path.display());
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        0,
        "nothing is left in {wal} after a clean stop"
    );
    let alone = dir.path().join("copied-alone.db");
    std::fs::copy(&db_path, &alone).unwrap();
    let rows_alone: i64 = rusqlite::Connection::open(&alone)
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();

    // Every acknowledged event is in the file, at the seq it was given.
    let db = Db(db_path.clone(), Some(dir.clone()));
    let c = db.conn();
    let mut st = c.prepare("SELECT seq FROM events WHERE id = ?1").unwrap();
    let mut missing = Vec::new();
    for (id, seq) in &seen.acked {
        match st.query_row([id], |r| r.get::<_, i64>(0)) {
            Ok(s) => assert_eq!(
                s as u64, *seq,
                "{id} stored at the seq it was acknowledged with"
            ),
            Err(_) => missing.push(id.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged events are missing after SIGTERM: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    // server.stop is the last event of the run, and counts the run's appends.
    let events = db.events();
    assert_eq!(
        rows_alone as usize,
        events.len(),
        "the main file alone holds every row"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "server.stop", "the last event: {last}");
    assert_eq!(last["actor"], "trail");
    let start = events
        .iter()
        .rev()
        .find(|e| e["event"] == "server.start")
        .expect("server.start");
    let appended = last["details"]["events_appended"]
        .as_u64()
        .unwrap_or_else(|| panic!("server.stop details.events_appended: {last}"));
    let (start_seq, stop_seq) = (
        start["seq"].as_u64().unwrap(),
        last["seq"].as_u64().unwrap(),
    );
    assert_eq!(
        appended,
        stop_seq - start_seq,
        "events_appended = every event of the run before server.stop (server.start at {start_seq}, server.stop at {stop_seq})"
    );
    assert!(appended as usize > seen.acked.len());
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "server.stop")
            .count(),
        1
    );
    drop(st);
    drop(c);

    // Start again on the same file: serves what was acknowledged.
    let mut again = Proc::start(&db_path);
    let (id, seq) = seen.acked.last().unwrap().clone();
    let r = send(client.get(again.url(&format!("/v1/events/{id}"))), None).await;
    r.expect(200);
    assert_eq!(r.json()["seq"], json!(seq));
    let r = send(
        client.get(again.url("/v1/events?event=server.*&order=asc")),
        None,
    )
    .await;
    let kinds: Vec<String> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["server.start", "server.stop", "server.start"]);
    let r = send(client.get(again.url("/v1/verify")), None).await;
    r.expect(200);
    assert_eq!(r.json()["valid"], json!(true), "{}", r.text_lossy());
    // `trail healthcheck` against the configured address.
    let (dbp, bind) = (db_path.clone(), format!("127.0.0.1:{}", again.port));
    let out = blocking(move || {
        let mut c = trail_cmd(&["--db", dbp.to_str().unwrap(), "healthcheck"]);
        c.env("TRAIL_BIND", bind);
        run_cmd(c)
    })
    .await;
    out.expect_code(0);
    // Or given as flags, for a server started with `serve --bind`: they
    // win over the configuration (which here names a port nobody uses).
    let (dbp, bind) = (db_path.clone(), format!("127.0.0.1:{}", again.port));
    let out = blocking(move || {
        let mut c = trail_cmd(&[
            "--db",
            dbp.to_str().unwrap(),
            "healthcheck",
            "--bind",
            &bind,
            "--base-path",
            "/",
        ]);
        c.env("TRAIL_BIND", "127.0.0.1:9");
        run_cmd(c)
    })
    .await;
    out.expect_code(0);
    let dbp = db_path.clone();
    let out = blocking(move || {
        run_cmd(trail_cmd(&[
            "--db",
            dbp.to_str().unwrap(),
            "healthcheck",
            "--base-path",
            "no-slash",
        ]))
    })
    .await;
    out.expect_code(2);
    assert!(out.stderr.contains("--base-path"), "{}", out.stderr);
    again.sigterm();
    let (status, _) = again.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        again.serving.stderr.lock().unwrap()
    );
    assert_eq!(db.last()["event"], "server.stop");

    // Nothing listens now: unhealthy, exit 1.
    let (dbp, bind) = (db_path.clone(), format!("127.0.0.1:{}", again.port));
    let out = blocking(move || {
        let mut c = trail_cmd(&["--db", dbp.to_str().unwrap(), "healthcheck"]);
        c.env("TRAIL_BIND", bind);
        run_cmd(c)
    })
    .await;
    out.expect_code(1);

    let dbp = db_path.clone();
    let out = blocking(move || trail(&dbp, &["verify"])).await;
    out.expect_code(0);
    assert!(out.stdout.starts_with("intact"), "{}", out.stdout);
}

#[actix_rt::test]
async fn in_process_start_and_stop_are_recorded() {
    let s = start(|_| {}).await;
    let db = s.db();
    let first = db.events();
    assert_eq!(first.len(), 1, "{first:?}");
    let ev = &first[0];
    assert_eq!(ev["event"], "server.start");
    assert_eq!(ev["actor"], "trail");
    assert_eq!(ev["success"], json!(true));
    assert_eq!(ev["details"]["pid"], json!(std::process::id()));
    // Which build: the version and the commit it was built from, as
    // `trail --version` says them.
    assert_eq!(ev["details"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(ev["details"]["commit"], env!("TRAIL_COMMIT"));
    let v = run_cmd(trail_cmd(&["--version"]));
    assert_eq!(
        v.stdout.trim(),
        format!(
            "trail {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            env!("TRAIL_COMMIT")
        )
    );
    assert_eq!(
        ev["details"]["bind"],
        format!("127.0.0.1:{}", s.port).as_str(),
        "{ev}"
    );
    for i in 0..5 {
        s.post_event(json!({"event": "run.tick", "details": {"i": i}}), None)
            .await
            .expect(201);
    }
    s.stop().await;
    let last = db.last();
    assert_eq!(last["event"], "server.stop", "{last}");
    assert_eq!(last["details"]["events_appended"], json!(6), "{last}");
    assert!(last["details"]["uptime_seconds"].is_u64(), "{last}");
}

/// `server.stop`'s `events_appended` is the number of events the run
/// appended: not idempotent retries (nothing appended), and including the
/// server's own events (token changes) appended on the writer thread.
#[actix_rt::test]
async fn events_appended_counts_exactly_the_events_of_the_run() {
    let s = start(|_| {}).await;
    let db = s.db();
    // 3 new events.
    for i in 0..3 {
        s.post_event(json!({"id": format!("run-{i}"), "event": "run.tick"}), None)
            .await
            .expect(201);
    }
    // 4 retries: 200, nothing appended.
    for i in 0..4 {
        s.post_event(
            json!({"id": format!("run-{}", i % 3), "event": "run.tick"}),
            None,
        )
        .await
        .expect(200);
    }
    // A token made and revoked through the API: 2 events.
    let r = s
        .call(Req::post(
            "/v1/tokens",
            json!({"name": "short-lived", "scopes": ["admin"]}),
        ))
        .await;
    r.expect(201);
    let secret = r.json()["token"].as_str().unwrap().to_owned();
    // Revoking itself (the only token: the server is open to loopback again).
    s.call(Req::new(awc::http::Method::DELETE, "/v1/tokens/short-lived").token(&secret))
        .await
        .expect(204);
    s.stop().await;
    let events = db.events();
    let stop = events.last().unwrap();
    let start = events
        .iter()
        .find(|e| e["event"] == "server.start")
        .unwrap();
    assert_eq!(stop["event"], "server.stop");
    let expected = stop["seq"].as_u64().unwrap() - start["seq"].as_u64().unwrap();
    assert_eq!(expected, 1 + 3 + 2, "server.start, 3 posts, 2 token events");
    assert_eq!(
        stop["details"]["events_appended"],
        json!(expected),
        "server.stop details.events_appended should count the {expected} events appended in the run \
         (server.start, 3 new events, auth.token.create, auth.token.revoke), not the 4 retries: {stop}"
    );
}

/// The real binary refuses a public address with no token, naming the way
/// out; with a bootstrap token it serves, and the secret works as admin.
#[cfg(unix)]
#[actix_rt::test]
async fn serve_on_a_public_address_needs_a_token() {
    let dir = temp_dir();
    let db_path = dir.path().join("trail.db");
    let dbp = db_path.clone();
    let out = blocking(move || {
        run_cmd_within(
            trail_cmd(&[
                "--db",
                dbp.to_str().unwrap(),
                "serve",
                "--bind",
                "0.0.0.0:0",
            ]),
            Duration::from_secs(20),
        )
    })
    .await;
    out.expect_code(2);
    assert!(out.stderr.contains("--insecure-no-auth"), "{}", out.stderr);
    assert!(!out.stderr.contains("listening"), "{}", out.stderr);
    // A refused start leaves nothing behind: no database, no key.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "a refused start created {left:?}");

    // Nor does a start refused because the port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dbp = db_path.clone();
    let out = blocking(move || {
        run_cmd_within(
            trail_cmd(&["--db", dbp.to_str().unwrap(), "serve", "--bind", &addr]),
            Duration::from_secs(20),
        )
    })
    .await;
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("cannot listen on"), "{}", out.stderr);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "a start on a taken port created {left:?}");
    drop(taken);

    // TRAIL_BOOTSTRAP_TOKEN: serves; the secret is an admin token.
    let secret = "bootstrap-from-env-0123456789abcdef";
    let mut cmd = trail_cmd(&[
        "--db",
        db_path.to_str().unwrap(),
        "serve",
        "--bind",
        "0.0.0.0:0",
    ]);
    cmd.env("TRAIL_BOOTSTRAP_TOKEN", secret);
    let serving = spawn_listening(cmd);
    let mut proc = Proc {
        port: serving.port_on("0.0.0.0"),
        serving,
    };
    let client = client();
    send(client.get(proc.url("/v1/tokens")), None)
        .await
        .expect(401);
    let r = send(
        client
            .get(proc.url("/v1/tokens"))
            .insert_header(("authorization", format!("Bearer {secret}"))),
        None,
    )
    .await;
    r.expect(200);
    assert_eq!(r.json()["tokens"][0]["scopes"], json!(["admin"]));
    proc.sigterm();
    let (status, _) = proc.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0));
    Db(db_path, Some(dir.clone())).assert_absent(secret, "the bootstrap secret");
}

/// A client that stops reading an export does not hold the shutdown past
/// `docker stop`'s 10 s (then SIGKILL): in-flight requests get 5 s, then
/// `server.stop` is written and the WAL checkpointed into the file.
#[cfg(unix)]
#[actix_rt::test]
async fn sigterm_with_a_stalled_export_still_stops_cleanly_within_ten_seconds() {
    use std::io::{Read, Write};
    let dir = temp_dir();
    let db_path = dir.path().join("trail.db");
    // About 13 MB of CSV: far more than the socket buffers hold.
    let pad = "x".repeat(2000);
    let lines: String = (0..6000)
        .map(|i| {
            format!("{{\"event\":\"e.x\",\"actor\":\"a{i}\",\"details\":{{\"pad\":\"{pad}\"}}}}\n")
        })
        .collect();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines).unwrap();
    run_cmd(trail_cmd(&[
        "--db",
        db_path.to_str().unwrap(),
        "import",
        input.to_str().unwrap(),
    ]))
    .expect_code(0);

    let mut proc = Proc::start(&db_path);
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", proc.port)).unwrap();
    stalled
        .write_all(b"GET /v1/export?format=csv HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // ... and reads nothing more.
    proc.sigterm();
    let (status, took) = proc.wait_exit(Duration::from_secs(40)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_secs(9),
        "stopped {took:?} after SIGTERM with a stalled export"
    );
    drop(stalled);
    let wal = format!("{}-wal", db_path.display());
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    let last: String = rusqlite::Connection::open(&db_path)
        .unwrap()
        .query_row(
            "SELECT event FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(last, "server.stop");
}

/// SIGINT (Ctrl-C, some supervisors) stops as gracefully as SIGTERM: a
/// request in flight when it comes (here: its headers read, its body not
/// yet sent) is answered and its event stored, and server.stop is last.
/// Before, actix's own handling made SIGINT a forced stop that cut the
/// connection.
#[actix_rt::test]
async fn sigint_lets_a_request_in_flight_finish() {
    use std::io::{Read, Write};
    let dir = temp_dir();
    let db_path = dir.path().join("trail.db");
    let mut proc = Proc::start(&db_path);
    let body = br#"{"event":"during.sigint"}"#;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", proc.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    // The server has read the headers and waits for the body.
    let mut cont = [0u8; 25];
    conn.read_exact(&mut cont).unwrap();
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    let st = std::process::Command::new("kill")
        .args(["-INT", &proc.serving.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    conn.write_all(body).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201 Created\r\n"), "{answer}");
    let (status, _) = proc.wait_exit(Duration::from_secs(40)).await;
    assert_eq!(status.code(), Some(0));
    let events: Vec<String> = event_types(&db_path);
    assert_eq!(events, ["server.start", "during.sigint", "server.stop"]);
}

/// The database file deleted or replaced under a running server (an
/// operator's `rm`, a restore copied over it): appends are refused with 503
/// instead of acknowledged into a file that is gone, and `/readyz` says so.
#[actix_rt::test]
async fn a_database_deleted_or_replaced_under_the_server_is_refused_not_acknowledged() {
    for replace in [false, true] {
        let s = start(|_| {}).await;
        s.post_event(json!({"event": "before.rm"}), None)
            .await
            .expect(201);
        s.get("/readyz").await.expect(200);
        let db = s.db_path.clone();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        if replace {
            std::fs::write(&db, b"").unwrap();
        }
        let r = s.post_event(json!({"event": "after.rm"}), None).await;
        r.expect(503);
        assert_eq!(
            r.json()["detail"],
            json!("the events could not be stored durably; nothing was written"),
            "replace={replace}"
        );
        let ready = s.get("/readyz").await;
        ready.expect(503);
        let detail = ready.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            detail.contains(if replace { "was replaced" } else { "is gone" }),
            "{detail}"
        );
        assert!(
            !detail.contains(&*db.to_string_lossy()),
            "no file path to clients: {detail}"
        );
        s.stop().await;
    }
}

/// `/readyz` counts the free space of the database's file system: its empty
/// commit writes nothing, so on a full disk it passed while every append
/// failed. Here the threshold is set above any disk's free space.
#[actix_rt::test]
async fn readyz_is_not_ready_when_the_disk_has_no_room_for_appends() {
    let s = start(|_| {}).await;
    s.get("/readyz").await.expect(200);
    s.stop().await;

    let s = start(|c| c.ready_min_free_bytes = u64::MAX).await;
    let r = s.get("/readyz").await;
    r.expect(503);
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        detail.contains("MiB free, less than the") && detail.contains("appends need"),
        "{detail}"
    );
    s.stop().await;
}

/// A server started on a log whose newest event was changed says so in its
/// `server.start` (and its log), chains after it, and `verify` still names
/// the changed row.
#[actix_rt::test]
async fn server_start_records_whether_the_newest_event_verifies() {
    let s = start(|_| {}).await;
    s.post_event(json!({"event": "head.one"}), None)
        .await
        .expect(201);
    let dir = s.dir.clone();
    let db = s.db();
    s.stop().await;
    let stop_seq = db.count();

    // Intact: recorded as such (an empty log has nothing to check).
    let s = start_in(dir.clone(), |_| {}).await;
    let started = s.db().events_of("server.start");
    assert_eq!(started[0]["details"].get("head_check"), None);
    assert_eq!(
        started[1]["details"]["head_check"],
        json!({"seq": stop_seq, "valid": true, "kind": null}),
        "{}",
        started[1]
    );
    s.stop().await;
    let stop_seq = db.count();

    // The newest row's seal replaced, as by someone without the key.
    {
        let c = rusqlite::Connection::open(&db.0).unwrap();
        c.execute_batch("DROP TRIGGER events_no_update").unwrap();
        c.execute(
            "UPDATE events SET signature = zeroblob(32) WHERE seq = ?1",
            [stop_seq as i64],
        )
        .unwrap();
    }
    let s = start_in(dir.clone(), |_| {}).await;
    let started = s.db().events_of("server.start");
    assert_eq!(started.len(), 3);
    assert_eq!(
        started[2]["details"]["head_check"],
        json!({"seq": stop_seq, "valid": false, "kind": "bad_seal"}),
        "{}",
        started[2]
    );
    // The trigger dropped to do it is on record too.
    assert_eq!(
        started[2]["details"]["schema_differences"],
        json!(["trigger events_no_update: missing"])
    );
    assert_eq!(started[1]["details"].get("schema_differences"), None);
    let r = s.get("/v1/verify").await;
    r.expect(200);
    assert_eq!(r.json()["first_bad_seq"], json!(stop_seq));
    assert_eq!(r.json()["kind"], json!("bad_seal"));
    s.stop().await;
}

/// `POST /v1/events` of `body` over a new connection; the status line.
fn post_status(port: u16, body: &str) -> String {
    use std::io::{BufRead, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut status = String::new();
    let _ = std::io::BufReader::new(conn).read_line(&mut status);
    status.trim_end().to_owned()
}

/// A log that cannot be written (its reader gone: a dead log shipper, a
/// `| head`) does not take the server down: appends are answered, and
/// SIGTERM still stops it gracefully with `server.stop` last. Before, the
/// first failed log line panicked the thread that logged it: the writer
/// (never restarted), the request handlers, the signal handler.
#[test]
fn a_log_nobody_reads_any_more_stops_nothing() {
    use std::io::BufRead;
    let dir = temp_dir();
    let db_path = dir.path().join("trail.db");
    let mut cmd = serve_cmd(&db_path);
    cmd.env("TRAIL_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let port = {
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("a listening line").unwrap();
            if let Some(addr) = line.strip_prefix("trail: listening on ") {
                break addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
            }
        }
        // The read end of the log is closed here.
    };
    for i in 0..20 {
        let status = post_status(
            port,
            &format!(r#"{{"event":"log.gone","details":{{"i":{i}}}}}"#),
        );
        assert_eq!(status, "HTTP/1.1 201 Created", "post {i}");
    }
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("trail serve did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let events: Vec<String> = event_types(&db_path);
    assert_eq!(events.len(), 22, "{events:?}");
    assert_eq!(events.first().map(String::as_str), Some("server.start"));
    assert_eq!(events.last().map(String::as_str), Some("server.stop"));
}

/// `trail.db-wal` deleted under a running server (a careless cleanup of
/// "stale" files): appends are refused (503, `/readyz` says why) instead of
/// acknowledged into an unlinked WAL, and what was acknowledged before is
/// copied into the database file at once, so even a crash then loses
/// nothing. Before, the server went on answering 201, and a SIGKILL lost
/// every event not yet checkpointed.
#[actix_rt::test]
async fn a_wal_deleted_under_the_server_is_refused_and_nothing_acknowledged_is_lost() {
    let dir = temp_dir();
    let db_path = dir.path().join("trail.db");
    let mut proc = Proc::start(&db_path);
    let port = proc.port;
    let acked = actix_web::rt::task::spawn_blocking(move || {
        (0..30)
            .map(|i| {
                post_status(
                    port,
                    &format!(r#"{{"event":"before.rm","details":{{"i":{i}}}}}"#),
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        acked.iter().all(|s| s == "HTTP/1.1 201 Created"),
        "{acked:?}"
    );
    std::fs::remove_file(format!("{}-wal", db_path.display())).unwrap();
    let after =
        actix_web::rt::task::spawn_blocking(move || post_status(port, r#"{"event":"after.rm"}"#))
            .await
            .unwrap();
    assert_eq!(after, "HTTP/1.1 503 Service Unavailable");
    let client = client();
    let ready = send(client.get(proc.url("/readyz")), None).await;
    ready.expect(503);
    assert!(
        ready
            .text_lossy()
            .contains("-wal file was deleted or replaced"),
        "{}",
        ready.text_lossy()
    );
    // Token changes are appends too: refused alike.
    let token = send(
        client
            .post(proc.url("/v1/tokens"))
            .insert_header(("content-type", "application/json")),
        Some(br#"{"name":"after-rm","scopes":["read"]}"#.to_vec()),
    )
    .await;
    token.expect(503);
    // A copy of the deleted WAL was saved beside the file.
    let copies: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("trail.db-wal.deleted-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    // A crash now.
    proc.serving.child.kill().unwrap();
    proc.serving.child.wait().unwrap();
    let events: Vec<String> = event_types(&db_path);
    assert_eq!(events.iter().filter(|e| *e == "before.rm").count(), 30);
    assert!(!events.iter().any(|e| e == "after.rm"));
    assert!(
        !events.iter().any(|e| e == "auth.token.create"),
        "{events:?}"
    );
    let dbp = db_path.clone();
    let out = blocking(move || trail(&dbp, &["verify"])).await;
    out.expect_code(0);
}

/// `trail.db-shm` deleted under a running server: another process would
/// make a new one and write without sharing the server's locks (a corrupt
/// file). The server refuses to commit from then on, and does not empty
/// the WAL at stop (its view of it is no longer shared); every event is
/// still there at the next open.
#[actix_rt::test]
async fn a_shm_deleted_under_the_server_is_refused_and_the_log_stays_whole() {
    let s = start(|_| {}).await;
    for i in 0..5 {
        s.post_event(json!({"event": "before.shm", "details": {"i": i}}), None)
            .await
            .expect(201);
    }
    std::fs::remove_file(format!("{}-shm", s.db_path.display())).unwrap();
    s.post_event(json!({"event": "after.shm"}), None)
        .await
        .expect(503);
    let ready = s.get("/readyz").await;
    ready.expect(503);
    assert!(
        ready.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("-shm file was deleted or replaced"),
        "{}",
        ready.text_lossy()
    );
    let db_path = s.db_path.clone();
    let db = s.db();
    s.stop().await;
    let events: Vec<String> = db
        .events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events.iter().filter(|e| *e == "before.shm").count(),
        5,
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e == "after.shm"));
    let out = blocking(move || trail(&db_path, &["verify"])).await;
    out.expect_code(0);
}

/// A writer thread that stopped on its own (here: a panic on it) never
/// comes back: `/healthz` says so (503), so a supervisor restarts the
/// process, instead of "alive" beside appends that all fail; an append says
/// the writer is not running, not only that the server is shutting down.
#[actix_rt::test]
async fn a_writer_that_died_fails_the_liveness_probe() {
    let s = start(|_| {}).await;
    s.get("/healthz").await.expect(200);
    let state = s.state.clone();
    let died = blocking(move || {
        state
            .writer
            .exec(|_| -> () { panic!("injected writer failure") })
    })
    .await;
    assert!(died.is_err());
    // The caller hears of it while the thread is still unwinding: wait
    // (bounded) until it is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let h = loop {
        let h = s.get("/healthz").await;
        if h.status != 200 || Instant::now() > deadline {
            break h;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    };
    h.expect(503);
    assert_eq!(
        h.json()["detail"],
        json!("the writer thread has stopped; nothing can be appended; restart trail")
    );
    let r = s.post_event(json!({"event": "after.death"}), None).await;
    r.expect(503);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("its writer stopped (then /healthz says so)"),
        "{}",
        r.text_lossy()
    );
    s.get("/readyz").await.expect(503);
}

/// The `event` of every row of the file at `db`, by seq.
fn event_types(db: &Path) -> Vec<String> {
    rusqlite::Connection::open(db)
        .unwrap()
        .prepare("SELECT event FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Successful probes and scrapes are logged at debug; every other request
/// (and a probe that fails) keeps its info line.
#[actix_rt::test]
async fn successful_probes_stay_out_of_the_info_log() {
    let dir = temp_dir();
    let db_path = dir.path().join("trail.db");
    let mut proc = Proc::start_logging(&db_path, "info");
    let client = client();
    for path in ["/healthz", "/readyz", "/metrics", "/healthz"] {
        send(client.get(proc.url(path)), None).await.expect(200);
    }
    send(client.get(proc.url("/v1/events/999")), None)
        .await
        .expect(404);
    proc.sigterm();
    let (status, _) = proc.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0));
    let log = proc.serving.stderr.lock().unwrap().clone();
    let requests: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""message":"request""#))
        .collect();
    assert_eq!(requests.len(), 1, "{log}");
    assert!(
        requests[0].contains(r#""route":"/v1/events/{id}""#),
        "{log}"
    );
}

/// `trail serve` on `db`, on a free loopback port, with two workers.
fn serve_cmd(db: &Path) -> std::process::Command {
    trail_cmd(&[
        "--db",
        db.to_str().unwrap(),
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
    ])
}
