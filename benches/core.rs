//! Core benchmark: prints the figures issue 2 asks for.
//!
//!   cargo bench --bench core
//!
//! 1. appends through the writer in batches of 1,000 (synchronous=FULL) vs a
//!    plain rusqlite insert of the same entries into the same schema without
//!    encoding, hashing or sealing, alternating runs, medians and their ratio;
//! 2. `verify` over a file of TRAIL_BENCH_VERIFY_EVENTS (default 1,000,000);
//! 3. one-filter `show` queries and pages taken deep in that file.
//!
//! Scale with TRAIL_BENCH_APPEND_EVENTS / TRAIL_BENCH_VERIFY_EVENTS.

// The allocator of the `trail` binary (src/main.rs), so the figures are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::params;
use serde_json::json;
use trail::domain::{Filter, FilterInput, HmacKey, Keyring, NewEvent, Placement};
use trail::store::query::{self, Order, PageRequest};
use trail::store::{
    open_read, open_write, verify_file, Synchronous, VerifyRequest, Writer, WriterConfig,
};

const BATCH: usize = 1000;
/// Rows per INSERT in the schema-cost runs: the writer's largest statement.
const ROWS_PER_INSERT: usize = 512;
const ACTORS: usize = 1000;
const TYPES: [&str; 8] = [
    "user.login",
    "user.logout",
    "auth.fail",
    "auth.token.create",
    "file.read",
    "file.write",
    "order.create",
    "order.cancel",
];
const LEVELS: [&str; 5] = ["debug", "info", "info", "warning", "error"];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// About 300 bytes of JSON per event.
fn event(i: usize) -> NewEvent {
    NewEvent::from_json(&json!({
        "event": TYPES[i % TYPES.len()],
        "level": LEVELS[i % LEVELS.len()],
        "actor": format!("user-{:04}", (i * 7919) % ACTORS),
        "resource": format!("/api/v1/orders/{}", i % 100_000),
        "success": !i.is_multiple_of(10),
        "source_ip": format!("10.{}.{}.{}", i % 256, (i / 256) % 256, i % 200),
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) trail-bench/1.0",
        "request_id": format!("req-{i:012}"),
        "details": {"method": "POST", "status": 201, "bytes": i % 65536, "path": "/api/v1/orders", "region": "eu-west-1"}
    }))
    .expect("valid bench event")
}

/// A path with no database at it. With TRAIL_BENCH_PAGE_SIZE set, an empty
/// file with that page size is made there, so runs can compare page sizes
/// (trail itself creates files with its default).
fn fresh(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
    }
    if let Ok(size) = std::env::var("TRAIL_BENCH_PAGE_SIZE") {
        let size: u32 = size.parse().expect("TRAIL_BENCH_PAGE_SIZE: a number");
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch(&format!(
            "PRAGMA page_size = {size}; PRAGMA journal_mode = WAL; CREATE TABLE bench_page_size (x); DROP TABLE bench_page_size;"
        ))
        .unwrap();
    }
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn fill_with_writer(path: &Path, key: &HmacKey, n: usize) -> Duration {
    let writer = Writer::start(path, key.clone(), WriterConfig::default()).expect("writer");
    let events: Vec<Vec<NewEvent>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|c| c.iter().map(|&i| event(i)).collect())
        .collect();
    let start = Instant::now();
    // Keep batches in flight, as a real importer or several clients do
    // (TRAIL_BENCH_IN_FLIGHT, default 2); the writer groups what is queued.
    let in_flight = env_usize("TRAIL_BENCH_IN_FLIGHT", 2).max(1);
    let mut pending = std::collections::VecDeque::new();
    for batch in events {
        pending.push_back(writer.submit_wait(batch).expect("submit"));
        if pending.len() > in_flight {
            pending.pop_front().unwrap().wait().expect("append");
        }
    }
    for p in pending {
        p.wait().expect("append");
    }
    start.elapsed()
}

/// Inserts `entries` as seqs 1.. in transactions of [`BATCH`] rows; `insert`
/// writes one batch (its first seq, its entries) inside the transaction.
/// Returns the time the inserts took.
fn fill_batches(
    conn: &mut rusqlite::Connection,
    entries: &[String],
    mut insert: impl FnMut(&rusqlite::Transaction<'_>, usize, &[String]),
) -> Duration {
    let start = Instant::now();
    for (b, chunk) in entries.chunks(BATCH).enumerate() {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        insert(&tx, b * BATCH + 1, chunk);
        tx.commit().unwrap();
    }
    start.elapsed()
}

/// The same entries, inserted with no encoding, hashing or sealing: one
/// prepared single-row INSERT per row, one transaction per batch.
fn fill_plain(path: &Path, entries: &[String]) -> Duration {
    let mut conn = open_write(path, Synchronous::Full).expect("open");
    let hash = [0u8; 32];
    fill_batches(&mut conn, entries, |tx, first, chunk| {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (?1, ?2, ?3, ?4)",
            )
            .unwrap();
        for (i, e) in chunk.iter().enumerate() {
            st.execute(params![(first + i) as i64, e, &hash[..], &hash[..]])
                .unwrap();
        }
    })
}

/// The same entries with INSERT statements of up to 512 rows (as the writer
/// does), into the real schema or a stripped one: shows what the schema
/// itself costs.
fn fill_multirow(path: &Path, entries: &[String], strip: &[&str]) -> Duration {
    let mut conn = open_write(path, Synchronous::Full).expect("open");
    for sql in strip {
        conn.execute_batch(sql).unwrap();
    }
    let hash = [0u8; 32];
    fill_batches(&mut conn, entries, |tx, first, chunk| {
        for (r, rows) in chunk.chunks(ROWS_PER_INSERT).enumerate() {
            let mut sql =
                String::from("INSERT INTO events (seq, entry, chain_hash, signature) VALUES ");
            sql.push_str(&vec!["(?,?,?,?)"; rows.len()].join(","));
            let mut st = tx.prepare_cached(&sql).unwrap();
            for (k, e) in rows.iter().enumerate() {
                let seq = (first + r * ROWS_PER_INSERT + k) as i64;
                st.raw_bind_parameter(4 * k + 1, seq).unwrap();
                st.raw_bind_parameter(4 * k + 2, e.as_str()).unwrap();
                st.raw_bind_parameter(4 * k + 3, &hash[..]).unwrap();
                st.raw_bind_parameter(4 * k + 4, &hash[..]).unwrap();
            }
            st.raw_execute().unwrap();
        }
    })
}

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    // Before any connection, including `fresh`'s page-size files: SQLite
    // allocates through mimalloc only if this comes first, as in the binary.
    trail::store::db::sqlite_process_settings();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let key = HmacKey::from_bytes([42; 32]);
    let n_append = env_usize("TRAIL_BENCH_APPEND_EVENTS", 200_000);
    let n_verify = env_usize("TRAIL_BENCH_VERIFY_EVENTS", 1_000_000);

    // Pre-encoded entries for the plain baseline (what the writer would store).
    let entries: Vec<String> = (0..n_append)
        .map(|i| {
            event(i).encode(Placement {
                seq: i as u64 + 1,
                id: &format!("01a2{i:028}"),
                timestamp: "2026-11-22T10:00:00.000000Z",
                key_id: key.id().as_str(),
            })
        })
        .collect();
    let avg = entries.iter().map(|e| e.len()).sum::<usize>() / entries.len();
    println!(
        "== append: {n_append} events, batches of {BATCH} ({} in flight), average entry {avg} bytes, synchronous=FULL, page size {}",
        env_usize("TRAIL_BENCH_IN_FLIGHT", 2).max(1),
        std::env::var("TRAIL_BENCH_PAGE_SIZE").unwrap_or_else(|_| "trail's default".into())
    );
    let (mut w_rates, mut p_rates) = (Vec::new(), Vec::new());
    for run in 1..=3 {
        let (t, c) = (Instant::now(), cpu_seconds());
        fill_with_writer(&fresh(&dir, "append.db"), &key, n_append);
        let (w, wc) = (
            n_append as f64 / t.elapsed().as_secs_f64(),
            n_append as f64 / (cpu_seconds() - c),
        );
        let (t, c) = (Instant::now(), cpu_seconds());
        fill_plain(&fresh(&dir, "plain.db"), &entries);
        let (p, pc) = (
            n_append as f64 / t.elapsed().as_secs_f64(),
            n_append as f64 / (cpu_seconds() - c),
        );
        println!(
            "run {run}: writer {w:>7.0} events/s ({wc:>6.0} per CPU-s)   plain insert {p:>7.0} rows/s ({pc:>6.0} per CPU-s)   ratio {:.2}",
            w / p
        );
        w_rates.push(w);
        p_rates.push(p);
    }
    let (w, p) = (median(w_rates), median(p_rates));
    println!(
        "median: writer {w:.0} events/s, plain insert {p:.0} rows/s, writer/plain = {:.0}%",
        100.0 * w / p
    );

    println!(
        "\n== what the schema costs: the same rows, INSERTs of up to {ROWS_PER_INSERT} rows, no hashing (one run each)"
    );
    // The insert trigger's check that an id is not stored already needs the
    // id index: without the indexes, it keeps only its seq check (as in V1).
    let indexes = "DROP INDEX events_id; DROP INDEX events_ts; DROP INDEX events_event; DROP INDEX events_level; \
                   DROP INDEX events_actor; DROP INDEX events_resource; DROP INDEX events_success; \
                   DROP TRIGGER events_next_seq; \
                   CREATE TRIGGER events_next_seq BEFORE INSERT ON events \
                   WHEN NEW.seq IS NOT coalesce((SELECT max(seq) FROM events), (SELECT max(up_to_seq) FROM retention_cuts), 0) + 1 \
                   BEGIN SELECT RAISE(ABORT, 'trail: seq must be exactly the next number'); END;";
    let triggers = "DROP TRIGGER events_next_seq; DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;";
    for (name, strip) in [
        ("full schema", vec![]),
        ("without the triggers", vec![triggers]),
        ("without the 7 indexes", vec![indexes]),
        ("without triggers and indexes", vec![indexes, triggers]),
    ] {
        let (t, c) = (Instant::now(), cpu_seconds());
        fill_multirow(&fresh(&dir, "plain.db"), &entries, &strip);
        println!(
            "{name:<30} {:>7.0} rows/s ({:>6.0} per CPU-s)",
            n_append as f64 / t.elapsed().as_secs_f64(),
            n_append as f64 / (cpu_seconds() - c)
        );
    }
    fresh(&dir, "append.db");
    fresh(&dir, "plain.db");

    let big = dir.join(format!("verify-{n_verify}.db"));
    if !big.exists() || query::count(&open_read(&big).unwrap()).unwrap() != n_verify as u64 {
        let big = fresh(&dir, &format!("verify-{n_verify}.db"));
        println!("\n(building a {n_verify}-event file...)");
        let t = fill_with_writer(&big, &key, n_verify);
        println!(
            "built in {:.1} s ({:.0} events/s)",
            t.as_secs_f64(),
            n_verify as f64 / t.as_secs_f64()
        );
    }
    let ring = Keyring::new(key.clone());
    println!("\n== verify: {n_verify} events");
    let mut rates = Vec::new();
    for run in 1..=3 {
        let start = Instant::now();
        let report = verify_file(&big, &ring, VerifyRequest::default()).unwrap();
        let t = start.elapsed();
        assert!(
            report.valid && report.entries_checked == n_verify as u64,
            "{report:?}"
        );
        let r = n_verify as f64 / t.as_secs_f64();
        println!("run {run}: {:.3} s, {r:.0} events/s", t.as_secs_f64());
        rates.push(r);
    }
    println!("median: {:.0} events/s", median(rates));

    println!("\n== show / pages in the {n_verify}-event file (per query, 200 queries each)");
    let conn = open_read(&big).unwrap();
    let f = |event: Option<&str>, level: Option<&str>, actor: Option<&str>| {
        Filter::parse(&FilterInput {
            event,
            level,
            actor,
            ..FilterInput::default()
        })
        .unwrap()
    };
    let cases: Vec<(&str, Filter, bool)> = vec![
        (
            "show --actor (one of 1000)",
            f(None, None, Some("user-0421")),
            false,
        ),
        (
            "show --event user.login",
            f(Some("user.login"), None, None),
            false,
        ),
        ("show --event auth.*", f(Some("auth.*"), None, None), false),
        ("show --level error", f(None, Some("error"), None), false),
        ("show (no filter)", Filter::default(), false),
        ("deep page, no filter", Filter::default(), true),
        ("deep page --actor", f(None, None, Some("user-0421")), true),
        (
            "deep page --event user.login",
            f(Some("user.login"), None, None),
            true,
        ),
        (
            "deep page --level warning",
            f(None, Some("warning"), None),
            true,
        ),
    ];
    let mut seed = 0x9e3779b97f4a7c15u64;
    for (name, filter, deep) in cases {
        let mut times = Vec::new();
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let after = deep.then(|| n_verify as u64 / 10 + seed % (n_verify as u64 * 8 / 10));
            let start = Instant::now();
            let page = query::list(
                &conn,
                &filter,
                PageRequest {
                    order: Order::Desc,
                    after,
                    limit: 20,
                    offset: 0,
                },
            )
            .unwrap();
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            // A page is full unless it is the last one (a small
            // TRAIL_BENCH_VERIFY_EVENTS leaves few matches, at any depth:
            // 1,000 events hold one of user-0421).
            assert!(
                page.events.len() == 20 || !page.has_more,
                "{name}: {} events, has_more {}",
                page.events.len(),
                page.has_more
            );
            if let Some(after) = after {
                assert!(page.events.iter().all(|e| e.seq < after), "{name}");
            }
        }
        let med = median(times.clone());
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p99 = times[times.len() * 99 / 100];
        println!(
            "{name:<32} median {med:.3} ms   p99 {p99:.3} ms   max {:.3} ms",
            times[times.len() - 1]
        );
    }
}
