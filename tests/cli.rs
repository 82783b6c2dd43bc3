//! End-to-end tests of the `trail` binary on real database files: every kind
//! of tampering (checked by `trail verify` and by the independent
//! `scripts/verify_chain.py`, which must agree byte for byte on the verdict),
//! the append-only triggers, concurrent writers, a writer killed mid-import,
//! input validation, and the read commands.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::{key_id, link, sha256, verdict, Env, Out, RawRow, KEY_HEX, OTHER_KEY_HEX};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Asserts that `trail verify --json` and `verify_chain.py --json` both print
/// exactly `expected`, print the same object, and exit 0 (valid) or 1.
fn assert_verdicts(trail: &Out, py: &Out, expected: &Value) {
    let code = if expected["valid"] == json!(true) {
        0
    } else {
        1
    };
    let t = trail.json();
    let p = py.json();
    assert_eq!(t, *expected, "verdict of `{}`", trail.what);
    assert_eq!(p, *expected, "verdict of `{}`", py.what);
    assert_eq!(t, p, "the two verifiers disagree");
    trail.expect_code(code);
    py.expect_code(code);
    assert_eq!(
        trail.stdout.lines().count(),
        1,
        "`trail verify --json` prints one line"
    );
}

/// Both verifiers with the main key, plus `extra` arguments for both.
fn verify_both(env: &Env, extra: &[&str], expected: &Value) {
    let mut targs = vec!["verify", "--json"];
    targs.extend_from_slice(extra);
    let mut pargs = vec!["--key-file", env.key_str(), "--json"];
    pargs.extend_from_slice(extra);
    let t = env.trail(&targs);
    let p = env.py_verify(&pargs);
    assert_verdicts(&t, &p, expected);
}

const ACTORS: [&str; 3] = ["alice", "bob", "carol"];

/// 20 events from one `trail import`; row 7's actor is alice.
fn log_of_20(env: &Env) -> Vec<RawRow> {
    let events: Vec<Value> = (1..=20usize)
        .map(|i| {
            json!({
                "id": format!("evt-{i:04}"),
                "event": "user.login",
                "actor": ACTORS[(i - 1) % 3],
                "resource": format!("/doc/{i}"),
                "details": {"n": i},
            })
        })
        .collect();
    env.import_values("twenty.jsonl", &events, 1000);
    let rows = env.rows();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert!(rows[6].entry.contains(r#""actor":"alice""#));
    rows
}

/// Runs `sql` on a connection without the triggers and checks it changed
/// exactly `rows` rows.
fn tamper(env: &Env, sql: &str, params: impl rusqlite::Params, rows: usize) {
    let c = env.tamper_conn();
    assert_eq!(c.execute(sql, params).unwrap(), rows, "{sql}");
}

fn entry_of(env: &Env, seq: i64) -> String {
    env.conn_ro()
        .unwrap()
        .query_row("SELECT entry FROM events WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .unwrap()
}

/// `seq=N id=X chain_hash=H` printed by `trail append`.
fn parse_append(out: &Out) -> (u64, String, String) {
    out.ok();
    let line = out.stdout.trim();
    let mut seq = None;
    let mut id = None;
    let mut hash = None;
    for part in line.split(' ') {
        match part.split_once('=') {
            Some(("seq", v)) => seq = Some(v.parse().unwrap()),
            Some(("id", v)) => id = Some(v.to_owned()),
            Some(("chain_hash", v)) => hash = Some(v.to_owned()),
            _ => panic!("unexpected output of `{}`: {line}", out.what),
        }
    }
    (seq.unwrap(), id.unwrap(), hash.unwrap())
}

fn seqs(v: &Value) -> Vec<u64> {
    v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array in {v}"))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// Tamper matrix: each damage, its exact kind and first bad seq, on both
// verifiers.
// ---------------------------------------------------------------------------

#[test]
fn untouched_log_verifies_intact_after_writer_restarts() {
    let env = Env::new();
    env.trail(&["append", "user.login", "--actor", "alice"])
        .ok();
    let lines = env.write_lines(
        "a.jsonl",
        (0..3).map(|i| json!({"event": "file.read", "details": {"n": i}}).to_string()),
    );
    env.trail(&["import", lines.to_str().unwrap(), "--batch-size", "2"])
        .ok();
    env.trail(&["append", "user.logout", "--level", "warning"])
        .ok();
    let lines = env.write_lines(
        "b.jsonl",
        (0..5).map(|i| json!({"type": "x.y", "user": format!("u{i}")}).to_string()),
    );
    let imp = env.trail(&["import", lines.to_str().unwrap()]);
    imp.ok();
    assert_eq!(imp.stdout.trim(), "imported 5 events (seq 6..10)");
    let json_file = env.path("one.json");
    std::fs::write(&json_file, r#"{"event":"z.last","success":true}"#).unwrap();
    let (seq, _, hash) =
        parse_append(&env.trail(&["append", "--json", json_file.to_str().unwrap()]));
    assert_eq!(seq, 11);
    assert_eq!(env.count(), 11);
    verify_both(&env, &[], &verdict(true, 11, None, &(11, hash)));
}

#[test]
fn entry_edited_in_place_is_modified_at_that_row() {
    let env = Env::new();
    log_of_20(&env);
    tamper(
        &env,
        r#"UPDATE events SET entry = replace(entry, '"alice"', '"mallory"') WHERE seq = 7"#,
        [],
        1,
    );
    assert!(entry_of(&env, 7).contains(r#""actor":"mallory""#));
    verify_both(
        &env,
        &[],
        &verdict(false, 6, Some((7, "modified")), &env.head()),
    );
}

/// Rewrites generated column `column` of row `seq` to `value` the only way
/// SQLite allows: the table's schema rewritten to make it a plain column,
/// the row updated, the schema put back (`integrity_check` still says ok).
fn forge_generated_column(env: &Env, seq: i64, column: &str, value: rusqlite::types::Value) {
    let generated = format!(
        "{column:<10} TEXT    GENERATED ALWAYS AS (json_extract(entry, '$.{column}')) STORED"
    );
    let c = env.conn();
    let schema: String = c
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(schema.contains(&generated), "{schema}");
    let plain = schema.replace(&generated, &format!("{column} TEXT"));
    let set_schema = |sql: &str| {
        let c = env.conn();
        c.execute_batch("PRAGMA writable_schema = ON").unwrap();
        c.execute(
            "UPDATE sqlite_master SET sql = ?1 WHERE name = 'events'",
            [sql],
        )
        .unwrap();
    };
    drop(c);
    set_schema(&plain);
    tamper(
        env,
        &format!("UPDATE events SET {column} = ?1 WHERE seq = ?2"),
        rusqlite::params![value, seq],
        1,
    );
    set_schema(&schema);
    let c = env.conn();
    c.execute_batch("CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'x'); END;").unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

/// A stored column made to disagree with its row's entry (every filter and
/// summary reads the columns) is `modified` at that row, though the entry
/// itself and its seal are untouched; so is one set where the entry has no
/// such member.
#[test]
fn a_generated_column_forged_through_the_schema_is_modified_at_that_row() {
    let env = Env::new();
    log_of_20(&env);
    forge_generated_column(&env, 7, "actor", "mallory".to_owned().into());
    let actor: String = env
        .conn_ro()
        .unwrap()
        .query_row("SELECT actor FROM events WHERE seq = 7", [], |r| r.get(0))
        .unwrap();
    assert_eq!(actor, "mallory");
    assert!(entry_of(&env, 7).contains(r#""actor":"alice""#));
    verify_both(
        &env,
        &[],
        &verdict(false, 6, Some((7, "modified")), &env.head()),
    );
    // Rows before it are intact on their own.
    verify_both(&env, &["--to", "6"], &verdict(true, 6, None, &env.head()));

    let env = Env::new();
    log_of_20(&env);
    forge_generated_column(&env, 12, "source_ip", "10.0.0.1".to_owned().into());
    verify_both(
        &env,
        &[],
        &verdict(false, 11, Some((12, "modified")), &env.head()),
    );

    // Members with escapes in their JSON text are compared decoded.
    let env = Env::new();
    env.import_values(
        "escaped.jsonl",
        &[
            json!({"event": "a.b", "actor": "o\"brien\\x", "resource": "caf\u{e9}"}),
            json!({"event": "a.b", "actor": "plain", "success": false}),
        ],
        10,
    );
    assert!(entry_of(&env, 1).contains(r#""actor":"o\"brien\\x""#));
    verify_both(&env, &[], &verdict(true, 2, None, &env.head()));
    forge_generated_column(&env, 1, "actor", "o'brien".to_owned().into());
    verify_both(
        &env,
        &[],
        &verdict(false, 0, Some((1, "modified")), &env.head()),
    );
}

#[test]
fn chain_hash_edited_is_modified_at_that_row() {
    let env = Env::new();
    let rows = log_of_20(&env);
    let mut forged = rows[6].chain_hash.clone();
    forged[0] ^= 0xff;
    tamper(
        &env,
        "UPDATE events SET chain_hash = ?1 WHERE seq = 7",
        [&forged],
        1,
    );
    verify_both(
        &env,
        &[],
        &verdict(
            false,
            6,
            Some((7, "modified")),
            &(20, hex::encode(&rows[19].chain_hash)),
        ),
    );
}

#[test]
fn middle_row_deleted_is_missing_at_its_seq() {
    let env = Env::new();
    let rows = log_of_20(&env);
    tamper(&env, "DELETE FROM events WHERE seq = 7", [], 1);
    verify_both(
        &env,
        &[],
        &verdict(
            false,
            6,
            Some((7, "missing")),
            &(20, hex::encode(&rows[19].chain_hash)),
        ),
    );
}

#[test]
fn first_row_deleted_is_missing_at_1() {
    let env = Env::new();
    let rows = log_of_20(&env);
    tamper(&env, "DELETE FROM events WHERE seq = 1", [], 1);
    verify_both(
        &env,
        &[],
        &verdict(
            false,
            0,
            Some((1, "missing")),
            &(20, hex::encode(&rows[19].chain_hash)),
        ),
    );
}

#[test]
fn row_forged_at_the_end_without_the_key_is_bad_seal() {
    let env = Env::new();
    let rows = log_of_20(&env);
    let last: Value = serde_json::from_str(&rows[19].entry).unwrap();
    let kid = key_id(KEY_HEX);
    assert_eq!(last["key_id"], json!(kid), "key_id derivation");
    // Built exactly like trail builds entries, with a correct chain hash:
    // only the seal cannot be made without the key.
    let entry = format!(
        r#"{{"v":1,"seq":21,"id":"evt-0021","timestamp":{},"event":"user.login","level":"info","actor":"mallory","resource":"/doc/21","details":{{"n":21}},"key_id":"{kid}"}}"#,
        last["timestamp"]
    );
    let hash = link(&rows[19].chain_hash, entry.as_bytes());
    let signature = sha256(b"not the real key, so not the real seal");
    let c = env.tamper_conn();
    c.execute(
        "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (21, ?1, ?2, ?3)",
        rusqlite::params![entry, &hash[..], &signature[..]],
    )
    .unwrap();
    drop(c);
    verify_both(
        &env,
        &[],
        &verdict(false, 20, Some((21, "bad_seal")), &(21, hex::encode(hash))),
    );
}

#[test]
fn two_rows_swapped_is_broken_link_at_the_first() {
    let env = Env::new();
    let rows = log_of_20(&env);
    let mut c = env.tamper_conn();
    // `id` is a UNIQUE generated column: swap whole rows.
    let tx = c.transaction().unwrap();
    assert_eq!(
        tx.execute("DELETE FROM events WHERE seq IN (5, 6)", [])
            .unwrap(),
        2
    );
    for (seq, from) in [(5, &rows[5]), (6, &rows[4])] {
        tx.execute(
            "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![seq, from.entry, from.chain_hash, from.signature],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(c);
    assert_eq!(entry_of(&env, 5), rows[5].entry);
    verify_both(
        &env,
        &[],
        &verdict(
            false,
            4,
            Some((5, "broken_link")),
            &(20, hex::encode(&rows[19].chain_hash)),
        ),
    );
}

#[test]
fn tail_cut_off_is_intact_alone_and_truncated_against_an_anchor() {
    let env = Env::new();
    let rows = log_of_20(&env);
    let anchor = format!("20:{}", hex::encode(&rows[19].chain_hash));
    tamper(&env, "DELETE FROM events WHERE seq >= 16", [], 5);
    let head = (15, hex::encode(&rows[14].chain_hash));
    // Without an anchor a cut tail is indistinguishable from a shorter log.
    verify_both(&env, &[], &verdict(true, 15, None, &head));
    verify_both(
        &env,
        &["--anchor", &anchor],
        &verdict(false, 15, Some((16, "truncated")), &head),
    );
    // An anchor the log still reaches, and matches: intact.
    let ok = format!("15:{}", hex::encode(&rows[14].chain_hash));
    verify_both(&env, &["--anchor", &ok], &verdict(true, 15, None, &head));
    // An anchor the log reaches but whose hash differs: truncated at its seq.
    let wrong = format!("12:{}", hex::encode(&rows[12].chain_hash));
    verify_both(
        &env,
        &["--anchor", &wrong],
        &verdict(false, 15, Some((12, "truncated")), &head),
    );
}

/// A lost, mistyped or mis-mounted key never seals new events silently:
/// writing with a key that is not the one of the newest seal (nor kept in
/// verify_key_files) exits 2 naming both key ids, and a missing hmac.key
/// beside a log that has events is not replaced by a new one.
#[test]
fn a_key_that_does_not_continue_the_log_is_refused_and_nothing_is_written() {
    let env = Env::new();
    log_of_20(&env);
    let other = env.write_key("other.key", OTHER_KEY_HEX);
    let (main_id, other_id) = (key_id(KEY_HEX), key_id(OTHER_KEY_HEX));
    let lines = env.write_lines("x.jsonl", ["{\"event\":\"x.y\"}"]);
    for args in [
        vec!["append", "x.y"],
        vec!["import", lines.to_str().unwrap()],
        vec!["prune", "--before", "2000-01-01"],
        vec!["serve", "--bind", "127.0.0.1:0"],
    ] {
        let out = env.trail_with_key(Some(&other), &args);
        out.expect_code(2);
        out.stderr_has(&[
            &format!("sealed with key {main_id}"),
            &format!("the key given is {other_id}"),
            "verify_key_files",
            "nothing was written",
        ]);
    }
    assert_eq!(env.count(), 20);

    // No key configured and no hmac.key beside the log: refused, and no new
    // key file is made.
    let default_key = env.db.parent().unwrap().join("hmac.key");
    assert!(!default_key.exists());
    for args in [
        vec!["append", "x.y"],
        vec!["serve", "--bind", "127.0.0.1:0"],
    ] {
        let out = env.trail_with_key(None, &args);
        out.expect_code(2);
        out.stderr_has(&["hmac.key is missing", &format!("sealed with key {main_id}")]);
        assert!(!default_key.exists(), "no new key beside a log with events");
    }
    assert_eq!(env.count(), 20);

    // The right key still appends; reading never needed it.
    env.trail(&["append", "x.y"]).ok();
    assert_eq!(env.count(), 21);
}

#[test]
fn rows_sealed_with_another_key_are_unknown_key_until_that_key_is_given() {
    let env = Env::new();
    log_of_20(&env);
    let other = env.write_key("other.key", OTHER_KEY_HEX);
    // A deliberate key change: the new key signs, the old one is kept in
    // verify_key_files (without it the writer refuses, see below).
    let with_other = |args: &[&str]| {
        let mut c = env.command_with_key(Some(&other), args);
        c.env("TRAIL_VERIFY_KEY_FILES", env.key_str());
        util::run_cmd(c)
    };
    with_other(&["append", "other.writer", "--actor", "eve"]).ok();
    let lines = env.write_lines(
        "other.jsonl",
        [
            "{\"event\":\"other.writer\"}",
            "{\"event\":\"other.writer\"}",
        ],
    );
    with_other(&["import", lines.to_str().unwrap()]).ok();
    assert_eq!(env.count(), 23);
    let e21: Value = serde_json::from_str(&entry_of(&env, 21)).unwrap();
    assert_eq!(e21["key_id"], json!(key_id(OTHER_KEY_HEX)));
    let head = env.head();
    let (main, other_s) = (env.key_str(), other.to_str().unwrap());

    // Only the first key.
    let t = env.trail(&["verify", "--json"]);
    let p = env.py_verify(&["--key-file", main, "--json"]);
    assert_verdicts(
        &t,
        &p,
        &verdict(false, 20, Some((21, "unknown_key")), &head),
    );

    // Only the other key: the very first row is unknown.
    let t = env.trail_with_key(None, &["verify", "--json", "--key-file", other_s]);
    let p = env.py_verify(&["--key-file", other_s, "--json"]);
    assert_verdicts(&t, &p, &verdict(false, 0, Some((1, "unknown_key")), &head));

    // Both keys, each as --key-file.
    let t = env.trail_with_key(
        None,
        &[
            "verify",
            "--json",
            "--key-file",
            main,
            "--key-file",
            other_s,
        ],
    );
    let p = env.py_verify(&["--key-file", main, "--key-file", other_s, "--json"]);
    assert_verdicts(&t, &p, &verdict(true, 23, None, &head));

    // The configured key plus --key-file for the other one.
    let t = env.trail(&["verify", "--json", "--key-file", other_s]);
    assert_eq!(t.json(), verdict(true, 23, None, &head));
    t.ok();

    // The environment of the rotation itself: the new key signs, the old
    // one is in TRAIL_VERIFY_KEY_FILES. The script reads it as trail does.
    let t = with_other(&["verify", "--json"]);
    let mut py = std::process::Command::new("python3");
    py.arg(util::verify_script())
        .arg(&env.db)
        .arg("--json")
        .env_remove("TRAIL_HMAC_KEY")
        .env("TRAIL_HMAC_KEY_FILE", other_s)
        .env("TRAIL_VERIFY_KEY_FILES", main);
    let p = util::run_cmd(py);
    assert_verdicts(&t, &p, &verdict(true, 23, None, &head));

    // An empty item is refused by both, with the same words.
    let list = format!("{main},,{main}");
    let mut t = env.command(&["verify"]);
    t.env("TRAIL_VERIFY_KEY_FILES", &list);
    let t = util::run_cmd(t);
    let mut py = std::process::Command::new("python3");
    py.arg(util::verify_script())
        .arg(&env.db)
        .env("TRAIL_VERIFY_KEY_FILES", &list);
    let p = util::run_cmd(py);
    for out in [&t, &p] {
        out.expect_code(2);
        out.stderr_has(&["TRAIL_VERIFY_KEY_FILES", "item 2 of 3 is empty"]);
    }
}

// ---------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------

/// A file cut short (a bad copy, a full disk) is the storage failing, not a
/// usage error: both verifiers exit 3 and name the file.
#[test]
fn a_database_file_cut_short_is_exit_3_from_both_verifiers_naming_it() {
    let env = Env::new();
    log_of_20(&env);
    {
        let c = env.conn();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", env.db_str()));
    }
    let len = std::fs::metadata(&env.db).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&env.db)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let t = env.trail(&["verify", "--json"]);
    t.expect_code(3);
    let p = env.py_verify(&["--json", "--key-file", env.key_str()]);
    p.expect_code(3);
    for (who, out) in [("trail", &t), ("verify_chain.py", &p)] {
        assert!(
            out.stderr.contains(env.db_str()) && out.stderr.contains("damaged"),
            "{who}: {}",
            out.stderr
        );
    }
}

/// Damage found by fuzzing the two verifiers against each other: each case
/// gets one verdict from both, never an I/O error (exit 3) from one of them,
/// never an endless run.
#[test]
fn odd_rows_get_the_same_verdict_from_both_verifiers() {
    // A row renumbered below 1 (its seq read as unsigned was a range without
    // end): broken_link at 0, the head is the newest row at 1 or above.
    let env = Env::new();
    let rows = log_of_20(&env);
    tamper(&env, "UPDATE events SET seq = -1 WHERE seq = 1", [], 1);
    let head = (20, hex::encode(&rows[19].chain_hash));
    verify_both(
        &env,
        &[],
        &verdict(false, 0, Some((0, "broken_link")), &head),
    );
    verify_both(
        &env,
        &["--to", "5"],
        &verdict(false, 0, Some((0, "broken_link")), &head),
    );

    // The newest row renumbered to the last integer SQLite has: an append
    // fails whole (it was stored at i64::MIN and reported as 2^63).
    let env = Env::new();
    log_of_20(&env);
    tamper(
        &env,
        "UPDATE events SET seq = 9223372036854775807 WHERE seq = 20",
        [],
        1,
    );
    let out = env.trail(&["append", "after.edit"]);
    out.expect_code(3);
    out.stderr_has(&["leaves no next number", "run trail verify"]);
    assert_eq!(env.count(), 20);

    // The newest row's hash stored as TEXT with the same bytes: the same
    // hash, intact; as an INTEGER: modified.
    let env = Env::new();
    let rows = log_of_20(&env);
    let c = env.conn();
    c.execute_batch("DROP TRIGGER events_no_update; PRAGMA ignore_check_constraints = ON;")
        .unwrap();
    c.execute(
        "UPDATE events SET chain_hash = CAST(chain_hash AS TEXT) WHERE seq = 20",
        [],
    )
    .unwrap();
    let head = (20, hex::encode(&rows[19].chain_hash));
    verify_both(&env, &[], &verdict(true, 20, None, &head));
    let anchor = format!("20:{}", head.1);
    verify_both(
        &env,
        &["--anchor", &anchor],
        &verdict(true, 20, None, &head),
    );
    c.execute("UPDATE events SET chain_hash = 12345 WHERE seq = 20", [])
        .unwrap();
    drop(c);
    let zeros = (20, hex::encode([0u8; 32]));
    verify_both(
        &env,
        &[],
        &verdict(false, 19, Some((20, "modified")), &zeros),
    );

    // A byte that is not UTF-8 in the newest entry: modified there, `--to`
    // before it intact, and appends go on (their link is the stored hash).
    let env = Env::new();
    let rows = log_of_20(&env);
    let mut bytes = rows[19].entry.clone().into_bytes();
    let at = rows[19].entry.find("T").unwrap();
    bytes[at] = 0xb8;
    tamper(
        &env,
        "UPDATE events SET entry = CAST(?1 AS TEXT) WHERE seq = 20",
        [&bytes],
        1,
    );
    let head = (20, hex::encode(&rows[19].chain_hash));
    verify_both(
        &env,
        &[],
        &verdict(false, 19, Some((20, "modified")), &head),
    );
    verify_both(&env, &["--to", "19"], &verdict(true, 19, None, &head));
    let (seq, _, _) = parse_append(&env.trail(&["append", "after.tamper"]));
    assert_eq!(seq, 21);

    // An entry that is not in trail's layout (members reordered, or a key_id
    // that is not hex) and re-hashed without the key: modified for both,
    // whatever a JSON parser would make of it.
    for (from, to) in [
        (r#"{"v":1,"seq":7,"#, r#"{"seq":7,"v":1,"#),
        (r#""key_id":""#, r#""key_id":"zz"#),
    ] {
        let env = Env::new();
        let rows = log_of_20(&env);
        let forged = rows[6].entry.replacen(from, to, 1);
        assert_ne!(forged, rows[6].entry);
        let forged = if to.ends_with("zz") {
            // Same length: drop two hex digits after the inserted ones.
            let i = forged.find(r#""key_id":"zz"#).unwrap() + 12;
            format!("{}{}", &forged[..i], &forged[i + 2..])
        } else {
            forged
        };
        let hash = link(&rows[5].chain_hash, forged.as_bytes());
        tamper(
            &env,
            "UPDATE events SET entry = ?1, chain_hash = ?2 WHERE seq = 7",
            rusqlite::params![forged, &hash[..]],
            1,
        );
        verify_both(
            &env,
            &[],
            &verdict(
                false,
                6,
                Some((7, "modified")),
                &(20, hex::encode(&rows[19].chain_hash)),
            ),
        );
    }
}

#[test]
fn triggers_refuse_update_delete_replace_and_out_of_order_insert() {
    let env = Env::new();
    log_of_20(&env);
    let before = env.rows();
    let c = env.conn();

    let e = c
        .execute(
            "UPDATE events SET entry = replace(entry, 'alice', 'mallory') WHERE seq = 7",
            [],
        )
        .expect_err("UPDATE must be refused");
    assert!(e.to_string().contains("append-only"), "UPDATE error: {e}");

    let e = c
        .execute("DELETE FROM events WHERE seq = 3", [])
        .expect_err("DELETE must be refused");
    assert!(e.to_string().contains("append-only"), "DELETE error: {e}");

    let e = c
        .execute("DELETE FROM events", [])
        .expect_err("DELETE of everything must be refused");
    assert!(e.to_string().contains("append-only"), "DELETE error: {e}");

    for seq in [25i64, 20, 3] {
        let e = c
            .execute(
                "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (?1, ?2, zeroblob(32), zeroblob(32))",
                rusqlite::params![seq, format!(r#"{{"v":1,"seq":{seq},"id":"wrong-{seq}","event":"x"}}"#)],
            )
            .expect_err("INSERT with a wrong seq must be refused");
        assert!(
            e.to_string()
                .contains("seq must be exactly the next number"),
            "INSERT seq {seq} error: {e}"
        );
    }

    // INSERT OR REPLACE with a stored event's id, at the next seq: without
    // the guard, REPLACE deletes row 3 through the unique id index, past
    // the DELETE trigger.
    let entry3: String = c
        .query_row("SELECT entry FROM events WHERE seq = 3", [], |r| r.get(0))
        .unwrap();
    for verb in ["INSERT OR REPLACE", "REPLACE"] {
        let e = c
            .execute(
                &format!("{verb} INTO events (seq, entry, chain_hash, signature) VALUES (21, ?1, zeroblob(32), zeroblob(32))"),
                [&entry3],
            )
            .expect_err("REPLACE of a stored id must be refused");
        assert!(
            e.to_string().contains("events are never replaced"),
            "{verb} error: {e}"
        );
    }
    drop(c);
    assert_eq!(env.count(), 20);
    assert_eq!(
        env.rows(),
        before,
        "rows changed although every write failed"
    );
    verify_both(&env, &[], &verdict(true, 20, None, &env.head()));
}

// ---------------------------------------------------------------------------
// Concurrency and crashes
// ---------------------------------------------------------------------------

#[test]
fn two_concurrent_imports_make_one_gapless_valid_chain() {
    let env = Env::new();
    const N: usize = 5000;
    let file = |tag: &str| {
        env.write_lines(
            &format!("{tag}.jsonl"),
            (0..N).map(|i| {
                json!({
                    "id": format!("{tag}-{i:05}"),
                    "event": format!("bulk.{tag}"),
                    "actor": format!("proc-{tag}"),
                    "details": {"n": i},
                })
                .to_string()
            }),
        )
    };
    let (fa, fb) = (file("a"), file("b"));
    let env = &env;
    let run = |f: &std::path::Path| {
        let cmd = env.command(&["import", f.to_str().unwrap(), "--batch-size", "100"]);
        util::run_cmd_within(cmd, Duration::from_secs(120))
    };
    let (oa, ob) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&fa));
        let b = s.spawn(|| run(&fb));
        (a.join().unwrap(), b.join().unwrap())
    });
    let c = env.conn_ro().unwrap();
    // Each says where its events went: a run of seqs, or the span its
    // events took among the other's.
    for (o, tag) in [(&oa, "a"), (&ob, "b")] {
        o.ok();
        // Neither waits for nor warns of the other's connection when it
        // stops (its checkpoint may find the other one checkpointing).
        assert_eq!(stderr_besides_key_mode(o), Vec::<&str>::new(), "{}", o.what);
        let (lo, hi): (i64, i64) = c
            .query_row(
                "SELECT min(seq), max(seq) FROM events WHERE actor = ?1",
                [format!("proc-{tag}")],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let want = if hi - lo + 1 == N as i64 {
            format!("imported 5000 events (seq {lo}..{hi})")
        } else {
            format!("imported 5000 events (seqs from {lo} to {hi}, interleaved with other appends)")
        };
        assert_eq!(o.stdout.trim(), want, "stdout of `{}`", o.what);
    }
    let (min, max, n): (i64, i64, i64) = c
        .query_row("SELECT min(seq), max(seq), count(*) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((min, max, n), (1, 10_000, 10_000), "seq must be gapless");
    for tag in ["a", "b"] {
        let ids: Vec<String> = c
            .prepare("SELECT id FROM events WHERE actor = ?1 ORDER BY seq")
            .unwrap()
            .query_map([format!("proc-{tag}")], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let expected: Vec<String> = (0..N).map(|i| format!("{tag}-{i:05}")).collect();
        assert_eq!(ids.len(), N, "events of proc-{tag}");
        assert_eq!(ids, expected, "every event of {tag}.jsonl, in file order");
    }
    drop(c);
    verify_both(env, &[], &verdict(true, 10_000, None, &env.head()));
}

#[test]
fn import_killed_mid_way_leaves_whole_batches_and_a_valid_chain() {
    let env = Env::new();
    const LINES: usize = 200_000;
    let big = env.write_lines(
        "big.jsonl",
        (0..LINES).map(|i| {
            format!(
                r#"{{"event":"bulk.load","actor":"user-{}","details":{{"n":{i}}}}}"#,
                i % 50
            )
        }),
    );
    let mut child = env
        .command(&["import", big.to_str().unwrap(), "--batch-size", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count_now = || -> i64 { util::count_in(&env.db).unwrap_or(0) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if count_now() > 0 {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("import ended ({st}) before a row was seen");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no row committed within 60 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the import must have been killed part-way, not finished: {status}"
    );

    let n = env.count();
    assert!(n > 0 && n < LINES as i64, "rows after the kill: {n}");
    assert_eq!(
        n % 1000,
        0,
        "only whole batches of 1000 may be stored; got {n}"
    );
    let head = env.head();
    assert_eq!(head.0, n as u64);
    verify_both(&env, &[], &verdict(true, n as u64, None, &head));

    // The file opens for reading and for writing again.
    let shown = env.trail(&["show", "-n", "1", "--json"]);
    shown.ok();
    assert_eq!(seqs(&shown.json()), vec![n as u64]);
    let (seq, _, hash) = parse_append(&env.trail(&["append", "after.crash"]));
    assert_eq!(seq, n as u64 + 1);
    verify_both(&env, &[], &verdict(true, seq, None, &(seq, hash)));
}

// ---------------------------------------------------------------------------
// Bad input: exit 2, a message naming the problem, nothing written.
// ---------------------------------------------------------------------------

/// A log with two events, and its rows.
fn seeded() -> (Env, Vec<RawRow>) {
    let env = Env::new();
    env.trail(&["append", "seed.one", "--actor", "alice"]).ok();
    env.trail(&["append", "seed.two"]).ok();
    let rows = env.rows();
    assert_eq!(rows.len(), 2);
    (env, rows)
}

fn assert_refused(env: &Env, before: &[RawRow], out: &Out, needles: &[&str]) {
    out.expect_code(2);
    out.stderr_has(needles);
    assert_eq!(
        env.rows(),
        before,
        "rows changed after the refused `{}`",
        out.what
    );
}

/// `trail append --json FILE` with `body` as the file.
fn append_json(env: &Env, body: &str) -> Out {
    let p = env.path("event.json");
    std::fs::write(&p, body).unwrap();
    env.trail(&["append", "--json", p.to_str().unwrap()])
}

#[test]
fn append_accepts_a_valid_json_event() {
    // The refusals below mean something only if the same path accepts.
    let (env, _) = seeded();
    let (seq, _, _) = parse_append(&append_json(
        &env,
        r#"{"event":"a.b","actor":"x","success":true,"source_ip":"192.0.2.1","occurred_at":"2026-01-01T00:00:00Z","details":{"k":[1,2]}}"#,
    ));
    assert_eq!(seq, 3);
    assert_eq!(env.count(), 3);
}

#[test]
fn append_event_type_with_a_space_is_refused() {
    let (env, rows) = seeded();
    let out = env.trail(&["append", "bad type!"]);
    assert_refused(&env, &rows, &out, &["EVENT", "may hold only"]);
}

#[test]
fn append_event_type_of_129_chars_is_refused() {
    let (env, rows) = seeded();
    let long = "a".repeat(129);
    let out = env.trail(&["append", &long]);
    assert_refused(&env, &rows, &out, &["EVENT", "128", "129"]);
}

#[test]
fn append_unknown_level_is_refused() {
    let (env, rows) = seeded();
    let out = env.trail(&["append", "x.y", "--level", "loud"]);
    assert_refused(&env, &rows, &out, &["level", "loud"]);
}

#[test]
fn append_success_that_is_not_a_boolean_is_refused() {
    let (env, rows) = seeded();
    let out = env.trail(&["append", "x.y", "--success", "maybe"]);
    assert_refused(&env, &rows, &out, &["success", "maybe"]);
    // Any case of true and false, as `show --success` and `--level` take.
    for (given, stored) in [("TRUE", true), ("False", false)] {
        let (seq, _, _) = parse_append(&env.trail(&["append", "x.y", "--success", given]));
        let entry: serde_json::Value = serde_json::from_str(&entry_of(&env, seq as i64)).unwrap();
        assert_eq!(entry["success"], json!(stored), "{given}");
    }
}

#[test]
fn append_detail_without_value_is_refused() {
    let (env, rows) = seeded();
    let out = env.trail(&["append", "x.y", "--detail", "novalue"]);
    assert_refused(&env, &rows, &out, &["detail", "KEY=VALUE"]);
}

#[test]
fn append_json_that_is_not_json_is_refused() {
    let (env, rows) = seeded();
    let out = append_json(&env, "{\"event\": oops");
    assert_refused(&env, &rows, &out, &["event.json", "not valid JSON"]);
}

#[test]
fn append_json_array_is_refused() {
    let (env, rows) = seeded();
    let out = append_json(&env, r#"[{"event":"a"}]"#);
    assert_refused(&env, &rows, &out, &["JSON object", "array"]);
}

#[test]
fn append_json_unknown_field_is_refused_by_name() {
    let (env, rows) = seeded();
    let out = append_json(&env, r#"{"event":"a","colour":"red"}"#);
    assert_refused(&env, &rows, &out, &["colour", "unknown"]);
    // The same from standard input.
    let out = env.trail_stdin(
        &["append", "--json", "-"],
        r#"{"event":"a","colour":"red"}"#,
    );
    assert_refused(&env, &rows, &out, &["colour", "unknown"]);
}

#[test]
fn append_json_success_as_string_is_refused() {
    let (env, rows) = seeded();
    let out = append_json(&env, r#"{"event":"a","success":"yes"}"#);
    assert_refused(&env, &rows, &out, &["success", "true or false"]);
}

#[test]
fn append_json_details_nested_40_deep_is_refused() {
    let (env, rows) = seeded();
    let mut nested = "1".to_owned();
    for _ in 0..40 {
        nested = format!(r#"{{"d":{nested}}}"#);
    }
    let out = append_json(&env, &format!(r#"{{"event":"a","details":{nested}}}"#));
    assert_refused(&env, &rows, &out, &["details", "nested", "32"]);

    // Past what the JSON parser itself takes (128): still the member and
    // the rule, from `append --json` and from `import`.
    for _ in 40..140 {
        nested = format!(r#"{{"d":{nested}}}"#);
    }
    let line = format!(r#"{{"event":"a","details":{nested}}}"#);
    let out = append_json(&env, &line);
    assert_refused(
        &env,
        &rows,
        &out,
        &["details: is nested at least 100 levels deep; at most 32 are allowed"],
    );
    let file = env.write_lines("deep.jsonl", [r#"{"event":"ok"}"#, line.as_str()]);
    let out = env.trail(&["import", file.to_str().unwrap()]);
    assert_refused(
        &env,
        &rows,
        &out,
        &["line 2: details: is nested at least 100 levels deep"],
    );
}

#[test]
fn append_json_details_over_64_kib_is_refused() {
    let (env, rows) = seeded();
    let body = json!({"event": "a", "details": {"blob": "x".repeat(70_000)}}).to_string();
    let out = append_json(&env, &body);
    assert_refused(&env, &rows, &out, &["details", "65536"]);
}

#[test]
fn append_json_id_with_bad_character_is_refused() {
    let (env, rows) = seeded();
    let out = append_json(&env, r#"{"id":"bad!id","event":"a"}"#);
    assert_refused(&env, &rows, &out, &["id:", "'!'"]);
}

#[test]
fn append_json_occurred_at_not_rfc3339_is_refused() {
    let (env, rows) = seeded();
    let out = append_json(&env, r#"{"event":"a","occurred_at":"yesterday at noon"}"#);
    assert_refused(&env, &rows, &out, &["occurred_at", "RFC 3339"]);
    // Valid RFC 3339 that UTC cannot hold as given: refused, not changed.
    let out = append_json(
        &env,
        r#"{"event":"a","occurred_at":"9999-12-31T23:59:59-23:59"}"#,
    );
    assert_refused(&env, &rows, &out, &["occurred_at", "years 0000-9999"]);
    let out = append_json(
        &env,
        r#"{"event":"a","occurred_at":"2016-12-31T23:59:60Z"}"#,
    );
    assert_refused(&env, &rows, &out, &["occurred_at", "leap second"]);
}

#[test]
fn append_json_source_ip_not_an_ip_is_refused() {
    let (env, rows) = seeded();
    let out = append_json(&env, r#"{"event":"a","source_ip":"999.1.1.1"}"#);
    assert_refused(&env, &rows, &out, &["source_ip", "IPv4 or IPv6"]);
}

#[test]
fn append_json_with_a_member_given_twice_is_refused() {
    let (env, rows) = seeded();
    let out = append_json(&env, r#"{"event":"a","event":"b"}"#);
    assert_refused(&env, &rows, &out, &["\"event\" is given more than once"]);
    let out = append_json(&env, r#"{"event":"a","details":{"k":1,"k":2}}"#);
    assert_refused(&env, &rows, &out, &["\"k\" is given more than once"]);
    let out = env.trail(&["append", "x.y", "--detail", "k=1", "--detail", "k=2"]);
    assert_refused(
        &env,
        &rows,
        &out,
        &["--detail", "\"k\" is given more than once"],
    );
    let out = import_with_bad_line_3(&env, r#"{"event":"a","actor":"x","actor":"y"}"#, "3");
    assert_refused(
        &env,
        &rows,
        &out,
        &["line 3", "\"actor\" is given more than once"],
    );
}

#[test]
fn append_json_with_a_number_it_cannot_keep_exactly_is_refused() {
    let (env, rows) = seeded();
    let out = append_json(
        &env,
        r#"{"event":"a","details":{"n":123456789012345678901234567890}}"#,
    );
    assert_refused(
        &env,
        &rows,
        &out,
        &["cannot be stored exactly", "as a string"],
    );
}

#[test]
fn append_detail_over_64_kib_names_the_flag_as_typed() {
    let (env, rows) = seeded();
    let big = format!("k={}", "x".repeat(70_000));
    let out = env.trail(&["append", "x.y", "--detail", &big]);
    assert_refused(&env, &rows, &out, &["--detail:"]);
    assert!(!out.stderr.contains("--details"), "{}", out.stderr);
}

#[test]
fn append_json_with_both_event_and_type_is_refused() {
    let (env, rows) = seeded();
    let out = append_json(&env, r#"{"event":"a","type":"b"}"#);
    assert_refused(&env, &rows, &out, &["event", "type", "given twice"]);
}

/// Lines 1, 2 and 4 are valid events (ids imp-1, imp-2, imp-4); line 3 is
/// `bad`.
fn import_with_bad_line_3(env: &Env, bad: &str, batch: &str) -> Out {
    let f = env.write_lines(
        "bad3.jsonl",
        [
            r#"{"id":"imp-1","event":"imp.ok"}"#,
            r#"{"id":"imp-2","event":"imp.ok"}"#,
            bad,
            r#"{"id":"imp-4","event":"imp.ok"}"#,
        ],
    );
    env.trail(&["import", f.to_str().unwrap(), "--batch-size", batch])
}

fn ids(env: &Env) -> Vec<String> {
    env.conn_ro()
        .unwrap()
        .prepare("SELECT id FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn import_bad_json_on_line_3_commits_only_the_batches_before_it() {
    let (env, rows) = seeded();
    let out = import_with_bad_line_3(&env, r#"{"event": oops"#, "2");
    out.expect_code(2);
    // The column within line 3, not serde_json's "line 1" of it.
    out.stderr_has(&["line 3: not valid JSON: expected value at column 11;"]);
    assert!(!out.stderr.contains("line 1 column"), "{}", out.stderr);
    let now = env.rows();
    assert_eq!(&now[..2], &rows[..], "earlier rows untouched");
    assert_eq!(
        ids(&env)[2..],
        ["imp-1", "imp-2"],
        "only lines 1-2 (the first batch)"
    );
    verify_both(&env, &[], &verdict(true, 4, None, &env.head()));
}

#[test]
fn import_bad_line_3_writes_nothing_of_its_own_batch() {
    // With --batch-size 3, lines 1-2 share the batch of line 3.
    let (env, rows) = seeded();
    let out = import_with_bad_line_3(&env, r#"{"event": oops"#, "3");
    assert_refused(&env, &rows, &out, &["line 3"]);
    // An invalid event (valid JSON) on line 3 is the same.
    let out = import_with_bad_line_3(&env, r#"{"event":"ok","level":"loud"}"#, "3");
    assert_refused(&env, &rows, &out, &["line 3", "level"]);
}

#[test]
fn import_same_id_twice_is_idempotent_and_different_content_is_refused() {
    let (env, _) = seeded();
    let same = env.write_lines(
        "same.jsonl",
        [r#"{"id":"dup-1","event":"order.placed","actor":"alice"}"#],
    );
    env.trail(&["import", same.to_str().unwrap()]).ok();
    let after_first = env.rows();
    assert_eq!(after_first.len(), 3);
    let again = env.trail(&["import", same.to_str().unwrap()]);
    again.ok();
    assert_eq!(env.rows(), after_first, "a retried id appends nothing");
    assert_eq!(
        again.stdout.trim(),
        "imported 0 events; 1 already stored with the same content (matched by id, not written again)"
    );
    // The same through `trail append --id`, which says nothing was written.
    let replay = env.trail(&[
        "append",
        "order.placed",
        "--actor",
        "alice",
        "--id",
        "dup-1",
    ]);
    replay.stderr_has(&[
        "event id \"dup-1\" is stored already with the same content: nothing was written",
    ]);
    let (seq, id, _) = parse_append(&replay);
    assert_eq!((seq, id.as_str()), (3, "dup-1"));
    assert_eq!(env.rows(), after_first);

    let different = env.write_lines(
        "different.jsonl",
        [r#"{"id":"dup-1","event":"order.placed","actor":"bob"}"#],
    );
    let out = env.trail(&["import", different.to_str().unwrap()]);
    assert_refused(&env, &after_first, &out, &["dup-1"]);
    let out = env.trail(&["append", "order.placed", "--actor", "bob", "--id", "dup-1"]);
    assert_refused(&env, &after_first, &out, &["dup-1"]);

    // In a batch, the conflict names its own line, not the batch's first.
    let lines = env.write_lines(
        "conflict-on-4.jsonl",
        [
            r#"{"event":"a"}"#,
            r#"{"event":"b"}"#,
            r#"{"event":"c"}"#,
            r#"{"id":"dup-1","event":"order.placed","actor":"carol"}"#,
        ],
    );
    let out = env.trail(&["import", lines.to_str().unwrap(), "--batch-size", "2"]);
    out.expect_code(2);
    out.stderr_has(&[
        "line 4: event id \"dup-1\"",
        "batch from line 3 on was written (2 events committed before it)",
    ]);
    // An id given twice in one batch with different content: the second
    // line is named, and what it clashes with (nothing was stored).
    let clash = env.write_lines(
        "clash.jsonl",
        [
            r#"{"event":"p"}"#,
            r#"{"id":"clash-1","event":"d"}"#,
            r#"{"id":"clash-1","event":"e"}"#,
        ],
    );
    let before = env.rows();
    let out = env.trail(&["import", clash.to_str().unwrap()]);
    assert_refused(&env, &before, &out, &[]);
    out.stderr_has(&[
        "line 3: event id \"clash-1\" was given on line 2 of this batch with different content; nothing of the batch from line 1 on was written (0 events committed before it)",
    ]);
    // A line that repeats an id of the same file with the same content is
    // answered with that event: counted as already stored.
    let twice = env.write_lines(
        "twice.jsonl",
        [
            r#"{"id":"twice-1","event":"x.y"}"#,
            r#"{"id":"twice-1","event":"x.y"}"#,
        ],
    );
    let out = env.trail(&["import", twice.to_str().unwrap()]);
    out.ok();
    let seq = env.count();
    assert_eq!(
        out.stdout.trim(),
        format!("imported 1 event (seq {seq}); 1 already stored with the same content (matched by id, not written again)")
    );
}

/// An import that fails part-way on the file system (here: a file-size
/// limit, as a full disk) exits 3 and says where it stands: the batches
/// before the failing one are committed, the count it prints is the count
/// in the file, and the line to resume from is named.
#[test]
fn an_import_stopped_by_the_file_system_says_how_many_events_were_committed() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    env.trail(&["append", "seed.one"]).ok();
    let lines: Vec<String> = (0..6000)
        .map(|i| {
            format!(
                r#"{{"event":"fill.up","actor":"a{i}","details":{{"pad":"{}"}}}}"#,
                "x".repeat(400)
            )
        })
        .collect();
    let file = env.write_lines("many.jsonl", &lines);
    let mut cmd = env.command(&["import", file.to_str().unwrap(), "--batch-size", "500"]);
    // SAFETY: between fork and exec, only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(|| {
            // Writes past 2 MiB fail with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 2 << 20,
                rlim_max: 2 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = util::run_cmd(cmd);
    out.expect_code(3);
    let committed = env.count() - 1;
    assert!(
        committed % 500 == 0 && committed < 6000,
        "whole batches only, and not all: {committed}"
    );
    out.stderr_has(&[&format!(
        "; nothing from line {} on was written ({committed} events committed before it)",
        committed + 1
    )]);
    env.trail(&["verify"]).ok();
}

/// The key given twice (as itself and as a file) is one choice made twice:
/// trail and the verifier script both refuse it, exit 2, naming both.
#[test]
fn both_key_variables_are_refused_by_trail_and_the_script_alike() {
    let (env, _) = seeded();
    let mut c = env.command(&["verify"]);
    c.env("TRAIL_HMAC_KEY", KEY_HEX);
    util::run_cmd(c)
        .expect_code(2)
        .stderr_has(&["TRAIL_HMAC_KEY", "set one of them, not both"]);
    let mut py = std::process::Command::new("python3");
    py.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/verify_chain.py"
    ))
    .arg(&env.db)
    .env("TRAIL_HMAC_KEY", KEY_HEX)
    .env("TRAIL_HMAC_KEY_FILE", &env.key)
    .stdin(std::process::Stdio::null());
    util::run_cmd(py).expect_code(2).stderr_has(&[
        "TRAIL_HMAC_KEY and TRAIL_HMAC_KEY_FILE are both set; set one of them, not both",
    ]);
}

/// Input as Windows tools write it (a byte-order mark, CRLF) is read; input
/// larger than any valid event (1 MiB) is refused before it is held in
/// memory, naming the line, and nothing is written.
#[test]
fn a_bom_is_skipped_and_an_oversized_input_is_refused_unread() {
    let (env, _) = seeded();
    let before = env.count();
    let file = env.path("bom.jsonl");
    std::fs::write(
        &file,
        "\u{feff}{\"event\":\"bom.one\"}\r\n{\"event\":\"bom.two\"}\r\n",
    )
    .unwrap();
    let out = env.trail(&["import", file.to_str().unwrap()]);
    out.ok();
    assert!(
        out.stdout.starts_with("imported 2 events"),
        "{}",
        out.stdout
    );
    let (seq, _, _) = parse_append(&append_json(&env, "\u{feff}{\"event\":\"bom.three\"}"));
    assert_eq!(seq as i64, before + 3);

    let rows = env.rows();
    let huge = format!(
        r#"{{"event":"big","details":{{"pad":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let file = env.path("huge.jsonl");
    std::fs::write(&file, format!("{{\"event\":\"small\"}}\n{huge}\n")).unwrap();
    let out = env.trail(&["import", file.to_str().unwrap()]);
    assert_refused(
        &env,
        &rows,
        &out,
        &["line 2: longer than 1048576 bytes, the 1 MiB limit for one event's JSON; nothing of the batch from line 1 on was written (0 events committed before it)"],
    );
    let out = append_json(&env, &huge);
    assert_refused(
        &env,
        &rows,
        &out,
        &["is larger than 1048576 bytes, the 1 MiB limit for one event's JSON"],
    );

    // The limit is the JSON's: JSON of exactly 1 MiB, with a byte-order
    // mark before it and CRLF after it, gets as far as the event's own
    // checks (its details are over 64 KiB); one byte more does not.
    let sized = |n: usize| {
        let frame = r#"{"event":"big","details":{"pad":""}}"#.len();
        format!(
            r#"{{"event":"big","details":{{"pad":"{}"}}}}"#,
            "x".repeat(n - frame)
        )
    };
    for (n, says) in [
        (
            1 << 20,
            "details: is 1048550 bytes serialized; at most 65536 are allowed",
        ),
        ((1 << 20) + 1, "the 1 MiB limit for one event's JSON"),
    ] {
        let text = format!("\u{feff}{}\r\n", sized(n));
        let out = append_json(&env, &text);
        assert_refused(&env, &rows, &out, &[says]);
        let file = env.path("sized.jsonl");
        std::fs::write(&file, &text).unwrap();
        let out = env.trail(&["import", file.to_str().unwrap()]);
        assert_refused(&env, &rows, &out, &[says]);
    }
}

#[test]
fn verify_with_a_malformed_anchor_is_a_usage_error() {
    let (env, rows) = seeded();
    let out = env.trail(&["verify", "--anchor", "nonsense"]);
    assert_refused(&env, &rows, &out, &["--anchor"]);
}

#[test]
fn show_with_bad_filters_is_a_usage_error() {
    let (env, rows) = seeded();
    let out = env.trail(&["show", "--level", "loud"]);
    assert_refused(&env, &rows, &out, &["level", "loud"]);
    let out = env.trail(&["show", "--since", "notadate"]);
    assert_refused(&env, &rows, &out, &["since", "notadate"]);
}

#[test]
fn show_on_a_missing_database_is_a_usage_error_and_creates_nothing() {
    let env = Env::new();
    let out = env.trail(&["show"]);
    out.expect_code(2);
    out.stderr_has(&["no trail database", env.db_str()]);
    assert!(!env.db.exists(), "a read command must not create the file");
}

/// With no key configured, the first write creates `hmac.key` beside the
/// database, readable by its owner only, as 64 hex digits and a newline; a
/// key file others can read works, with a warning.
#[test]
fn the_default_key_is_created_private_and_a_readable_one_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let db = env.path("k/trail.db");
    env.trail_on(&db, None, &["append", "x.y"]).ok();
    let key = env.path("k/hmac.key");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(text.len(), 65, "{text:?}");
    assert!(text.ends_with('\n') && text[..64].bytes().all(|b| b.is_ascii_hexdigit()));

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Once per command (append reads the key to seal and to check the
    // newest seal), in the CLI's own format; no colour codes on a pipe.
    let want = format!(
        "trail: warning: key file {} can be read by others (mode 644): whoever reads it can \
         forge seals; chmod 600 it\n",
        key.display()
    );
    for args in [vec!["verify"], vec!["append", "x.z"], vec!["import", "-"]] {
        let mut cmd = env.command_on(&db, None, &args);
        cmd.env("TRAIL_LOG", "warn");
        let out = util::run_cmd(cmd);
        out.expect_code(0);
        assert_eq!(out.stderr, want, "{args:?}");
    }
}

/// A folder, a file that is not SQLite, or another program's SQLite
/// database: every command exits 2 naming the problem, both verifiers agree,
/// and nothing is written to it.
#[test]
fn a_path_that_is_not_a_trail_database_is_a_usage_error_and_is_left_alone() {
    let env = Env::new();
    let junk = env.path("junk.db");
    std::fs::write(&junk, b"this is not a database\n").unwrap();
    let folder = env.path("a-folder");
    std::fs::create_dir_all(&folder).unwrap();
    let other = env.path("other.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('x');")
            .unwrap();
    }
    let other_before = std::fs::read(&other).unwrap();
    // Another program that also keeps its schema with refinery.
    let refinery = env.path("refinery.db");
    {
        let c = rusqlite::Connection::open(&refinery).unwrap();
        c.execute_batch(
            "CREATE TABLE refinery_schema_history (version INT4 PRIMARY KEY, name VARCHAR(255), \
               applied_on VARCHAR(255), checksum VARCHAR(255)); \
             INSERT INTO refinery_schema_history VALUES (1, 'create_users', '2024-01-01', '1'), \
               (7, 'add_emails', '2024-02-01', '2'); \
             CREATE TABLE users (name TEXT);",
        )
        .unwrap();
    }
    let refinery_before = std::fs::read(&refinery).unwrap();
    for (path, why) in [
        (&junk, "the file is not an SQLite database"),
        (&folder, "it is a folder"),
        (&other, "an SQLite database of another program"),
        (&refinery, "an SQLite database of another program"),
    ] {
        for args in [
            vec!["append", "x.y"],
            vec!["show"],
            vec!["verify"],
            vec!["summary", "--json"],
            vec!["export", "--format", "csv"],
            vec!["prune", "--before", "2020-01-01"],
        ] {
            let out = env.trail_on(path, None, &args);
            out.expect_code(2);
            out.stderr_has(&["is not a trail database", why]);
        }
        env.py_verify_on(path, &[]).expect_code(2);
    }
    assert!(
        !env.path("hmac.key").exists(),
        "no key was created beside a file that is not trail's"
    );
    assert_eq!(std::fs::read(&junk).unwrap(), b"this is not a database\n");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        other_before,
        "another program's file is untouched"
    );
    assert_eq!(std::fs::read(&refinery).unwrap(), refinery_before);
}

/// A file that a newer trail migrated (after a rollback to this binary, say):
/// every command that would migrate it exits 2 naming both schema versions
/// and leaves it alone; reading and verifying it still work.
#[test]
fn a_file_migrated_by_a_newer_trail_is_refused_for_writing_and_left_alone() {
    let env = Env::new();
    let db = env.path("t.db");
    env.trail_on(&db, None, &["append", "x.y"]).expect_code(0);
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES (99, 'from_the_future', '2030-01-01T00:00:00Z', '0')",
            [],
        )
        .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let known = format!("up to {}", trail::store::db::latest_migration());
    for args in [
        vec!["append", "x.z"],
        vec!["prune", "--before", "2020-01-01"],
        vec!["serve", "--bind", "127.0.0.1:0"],
    ] {
        let out = env.trail_on(&db, None, &args);
        out.expect_code(2);
        out.stderr_has(&["was migrated by a newer trail", "schema version 99", &known]);
    }
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file is untouched");
    assert_eq!(util::count_in(&db).unwrap(), 1);
    env.trail_on(&db, None, &["verify"]).expect_code(0);
    env.trail_on(&db, None, &["show", "--json"]).expect_code(0);
}

/// A copy kept on read-only media (a write-protected folder, as evidence is
/// kept): SQLite cannot create the `-shm` a WAL-mode file needs to be read,
/// so with no WAL content beside it trail reads the file as immutable;
/// `verify`, `show` and `export` work and nothing is created beside it.
#[test]
fn a_copy_in_a_read_only_folder_can_be_read_and_verified() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    log_of_20(&env);
    let evidence = env.path("evidence");
    std::fs::create_dir(&evidence).unwrap();
    let copy = evidence.join("trail.db");
    std::fs::copy(&env.db, &copy).unwrap();
    let key = env.path("reader.key");
    std::fs::write(&key, KEY_HEX).unwrap();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&key, 0o644);
    mode(&copy, 0o444);
    mode(&evidence, 0o555);
    mode(env.dir.path(), 0o755);
    // Permissions do not bind root: run as nobody then.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    // `program`, as nobody when this is root.
    let as_nobody = |program: &str| {
        if root {
            let mut c = std::process::Command::new("setpriv");
            c.args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                program,
            ]);
            c
        } else {
            std::process::Command::new(program)
        }
    };
    let run = |args: &[&str]| {
        let mut c = as_nobody(util::BIN);
        c.arg("--db")
            .arg(&copy)
            .args(args)
            .env_clear()
            .env("TRAIL_LOG", "error")
            .env("TRAIL_HMAC_KEY_FILE", &key)
            .stdin(std::process::Stdio::null());
        util::run_cmd(c)
    };
    let v = run(&["verify", "--json"]);
    v.expect_code(0);
    assert_eq!(v.json()["valid"], json!(true));
    assert_eq!(v.json()["entries_checked"], json!(20));
    let shown = run(&["show", "--limit", "5", "--json"]);
    shown.expect_code(0);
    assert_eq!(shown.json()["events"].as_array().unwrap().len(), 5);
    let export = run(&["export", "--format", "jsonl"]);
    export.expect_code(0);
    assert_eq!(export.stdout.lines().count(), 20);
    let beside: Vec<String> = std::fs::read_dir(&evidence)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, vec!["trail.db".to_owned()]);

    // With events in a -wal beside it, the copy cannot be read there (SQLite
    // needs its -shm): both verifiers say so, and what to do, with exit 3.
    mode(&evidence, 0o755);
    std::fs::write(evidence.join("trail.db-wal"), [7u8; 64]).unwrap();
    mode(&evidence, 0o555);
    let v = run(&["verify"]);
    v.expect_code(3).stderr_has(&[
        "events in",
        "trail.db-wal can only be read where SQLite may create",
        "copy the file and its -wal to a writable folder",
    ]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/verify_chain.py");
    // As nobody, an interpreter nobody may run (not one under /root, say).
    let system = std::path::Path::new("/usr/bin/python3");
    let python = if root && system.exists() {
        system.to_str().unwrap()
    } else {
        "python3"
    };
    let py_cmd = |db: &std::path::Path| {
        let mut py = as_nobody(python);
        py.arg(script)
            .arg(db)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TRAIL_HMAC_KEY_FILE", &key)
            .stdin(std::process::Stdio::null());
        py
    };
    let v = util::run_cmd(py_cmd(&copy));
    v.expect_code(3).stderr_has(&[
        "trail.db-wal can only be read where SQLite may create",
        "copy the file and its -wal to a writable folder",
    ]);

    // A file this user may not read is not "read-only media": both say
    // what SQLite says, exit 3 alike.
    mode(&evidence, 0o755);
    std::fs::remove_file(evidence.join("trail.db-wal")).unwrap();
    mode(&copy, 0o000);
    let v = run(&["verify"]);
    v.expect_code(3);
    assert!(!v.stderr.contains("read-only media"), "{}", v.stderr);
    let py = py_cmd(&copy);
    let v = util::run_cmd(py);
    v.expect_code(3)
        .stderr_has(&["cannot read", "unable to open database file"]);
    assert!(!v.stderr.contains("read-only media"), "{}", v.stderr);
    mode(&copy, 0o444);

    // Writing there is refused in terms of the file and its folder, not
    // SQLite's "attempt to write a readonly database"; nothing is written.
    let v = run(&["append", "x.y"]);
    v.expect_code(3).stderr_has(&[
        "cannot write",
        "the file is read-only for user",
        "nothing was written",
    ]);
    mode(&copy, 0o666);
    mode(&evidence, 0o555);
    let v = run(&["append", "x.y"]);
    v.expect_code(3).stderr_has(&[
        "cannot write",
        "cannot create files in",
        "trail.db-wal and trail.db-shm beside the file",
    ]);
    assert!(!v.stderr.contains("attempt to write"), "{}", v.stderr);
    mode(&evidence, 0o755);
    mode(&copy, 0o444);
    assert_eq!(util::count_in(&copy).unwrap(), 20);
}

// ---------------------------------------------------------------------------
// Read commands
// ---------------------------------------------------------------------------

const QUOTED: &str = r#"d'artagnan "the" musketeer"#;
const FORMULA: &str = "=cmd|' /C calc'!A0";
const TYPES: [&str; 4] = ["auth.login", "auth.logout", "file.read", "authz.check"];
const LEVELS: [&str; 5] = ["debug", "info", "warning", "error", "critical"];
const TOTAL: u64 = 45;

#[derive(Debug, Clone)]
struct Spec {
    seq: u64,
    event: &'static str,
    level: &'static str,
    actor: &'static str,
    success: Option<bool>,
}

fn specs() -> Vec<Spec> {
    (1..=TOTAL)
        .map(|i| Spec {
            seq: i,
            event: TYPES[(i % 4) as usize],
            level: LEVELS[((i * 2 + i / 5) % 5) as usize],
            actor: if i == TOTAL {
                FORMULA
            } else {
                match i % 5 {
                    0..=2 => "alice",
                    3 => "bob",
                    _ => QUOTED,
                }
            },
            success: match (i / 2) % 3 {
                0 => Some(true),
                1 => Some(false),
                _ => None,
            },
        })
        .collect()
}

/// 45 events on a fresh log (seq = spec.seq), in several batches.
fn read_fixture(env: &Env) -> Vec<Spec> {
    let specs = specs();
    let events: Vec<Value> = specs
        .iter()
        .map(|s| {
            let mut v = json!({
                "event": s.event,
                "level": s.level,
                "actor": s.actor,
                "details": {"i": s.seq},
            });
            if let Some(b) = s.success {
                v["success"] = json!(b);
            }
            v
        })
        .collect();
    env.import_values("fixture.jsonl", &events, 10);
    assert_eq!(env.count(), TOTAL as i64);
    specs
}

fn newest(specs: &[Spec], keep: impl Fn(&Spec) -> bool, limit: usize) -> Vec<u64> {
    let mut v: Vec<u64> = specs.iter().filter(|s| keep(s)).map(|s| s.seq).collect();
    v.reverse();
    v.truncate(limit);
    v
}

fn rank(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap()
}

/// What every read command must print for a row: its entry plus the hex
/// chain hash and signature.
fn event_json(row: &RawRow) -> Value {
    let mut v: Value = serde_json::from_str(&row.entry).unwrap();
    v["chain_hash"] = json!(hex::encode(&row.chain_hash));
    v["signature"] = json!(hex::encode(&row.signature));
    v
}

#[test]
fn show_json_is_newest_first_with_a_default_limit_of_20() {
    let env = Env::new();
    read_fixture(&env);
    let out = env.trail(&["show", "--json"]);
    out.ok();
    let v = out.json();
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["events"]
    );
    assert_eq!(seqs(&v), (26..=TOTAL).rev().collect::<Vec<_>>());
    let rows = env.rows();
    for e in v["events"].as_array().unwrap() {
        let seq = e["seq"].as_u64().unwrap() as usize;
        assert_eq!(*e, event_json(&rows[seq - 1]), "event {seq}");
    }
    let out = env.trail(&["show", "--json", "-n", "5"]);
    assert_eq!(seqs(&out.json()), vec![45, 44, 43, 42, 41]);
}

#[test]
fn show_json_filters_select_exactly_the_matching_events() {
    let env = Env::new();
    let specs = read_fixture(&env);
    let check = |args: &[&str], expected: Vec<u64>| {
        let mut a = vec!["show", "--json"];
        a.extend_from_slice(args);
        let out = env.trail(&a);
        out.ok();
        assert_eq!(seqs(&out.json()), expected, "`{}`", out.what);
    };
    let file_read = newest(&specs, |s| s.event == "file.read", 20);
    assert!(!file_read.is_empty());
    check(&["--event", "file.read"], file_read.clone());
    check(&["--type", "file.read"], file_read);
    check(
        &["--event", "auth.*"],
        newest(&specs, |s| s.event.starts_with("auth."), 20),
    );
    check(
        &["--event", "auth.login,file.read"],
        newest(
            &specs,
            |s| s.event == "auth.login" || s.event == "file.read",
            20,
        ),
    );
    let warning_up = newest(&specs, |s| rank(s.level) >= rank("warning"), 100);
    assert!(
        warning_up.len() > 20,
        "the fixture must exceed the default limit"
    );
    check(&["--level", "warning"], warning_up[..20].to_vec());
    check(&["--level", "warning", "-n", "100"], warning_up);
    check(
        &["--level", "critical"],
        newest(&specs, |s| s.level == "critical", 20),
    );
    let quoted = newest(&specs, |s| s.actor == QUOTED, 20);
    assert!(!quoted.is_empty());
    check(&["--actor", QUOTED], quoted);
    check(&["--actor", "o'brien"], vec![]);
    check(
        &["--actor", "alice", "--success", "false"],
        newest(
            &specs,
            |s| s.actor == "alice" && s.success == Some(false),
            20,
        ),
    );
}

#[test]
fn tail_json_prints_the_newest_n_oldest_first() {
    let env = Env::new();
    read_fixture(&env);
    let out = env.trail(&["tail", "-n", "3", "--json"]);
    out.ok();
    assert_eq!(seqs(&out.json()), vec![43, 44, 45]);
}

#[test]
fn search_json_returns_every_match_oldest_first() {
    let env = Env::new();
    let specs = read_fixture(&env);
    let out = env.trail(&["search", "--actor", "alice", "--json"]);
    out.ok();
    let expected: Vec<u64> = specs
        .iter()
        .filter(|s| s.actor == "alice")
        .map(|s| s.seq)
        .collect();
    assert!(expected.len() > 20, "more matches than any default limit");
    assert_eq!(seqs(&out.json()), expected);
    let out = env.trail(&["search", "--actor", QUOTED, "--json"]);
    let expected: Vec<u64> = specs
        .iter()
        .filter(|s| s.actor == QUOTED)
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs(&out.json()), expected);
}

#[test]
fn summary_json_counts_exactly_and_stats_is_the_same() {
    let env = Env::new();
    let specs = read_fixture(&env);
    let count_by = |f: fn(&Spec) -> &'static str| {
        let mut m = BTreeMap::new();
        for s in &specs {
            *m.entry(f(s).to_owned()).or_insert(0u64) += 1;
        }
        json!(m)
    };
    let (first_ts, last_ts): (String, String) = env
        .conn_ro()
        .unwrap()
        .query_row("SELECT min(ts), max(ts) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let out = env.trail(&["summary", "--period", "all", "--json"]);
    out.ok();
    let v = out.json();
    assert_eq!(v["period"], json!("all"));
    assert_eq!(v["total_events"], json!(TOTAL));
    assert_eq!(v["by_type"], count_by(|s| s.event));
    assert_eq!(v["by_level"], count_by(|s| s.level));
    assert_eq!(v["by_actor"], count_by(|s| s.actor));
    let ok = specs.iter().filter(|s| s.success == Some(true)).count();
    let failed = specs.iter().filter(|s| s.success == Some(false)).count();
    assert_eq!(v["success_count"], json!(ok));
    assert_eq!(v["failure_count"], json!(failed));
    assert_eq!(v["first_event"], json!(first_ts));
    assert_eq!(v["last_event"], json!(last_ts));

    let stats = env.trail(&["stats", "--period", "all", "--json"]);
    stats.ok();
    assert_eq!(stats.json(), v);

    // Everything was written just now, so the default period (24h) holds it all.
    let day = env.trail(&["summary", "--json"]);
    day.ok();
    assert_eq!(day.json()["total_events"], json!(TOTAL));
    assert_eq!(day.json()["by_actor"], v["by_actor"]);
}

const CSV_HEADER: &str = "seq,id,timestamp,event,level,actor,resource,success,source_ip,user_agent,request_id,occurred_at,details,metadata,key_id,chain_hash,signature";

#[test]
fn export_csv_has_the_exact_header_every_row_and_neutralised_formulas() {
    let env = Env::new();
    let specs = read_fixture(&env);
    let path = env.path("out.csv");
    env.trail(&[
        "export",
        "--format",
        "csv",
        "--output",
        path.to_str().unwrap(),
    ])
    .ok();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().next().unwrap(), CSV_HEADER);
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let rows = env.rows();
    let records: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(records.len(), TOTAL as usize);
    let kid = key_id(KEY_HEX);
    for (rec, (spec, row)) in records.iter().zip(specs.iter().zip(&rows)) {
        let entry: Value = serde_json::from_str(&row.entry).unwrap();
        let want_actor = if spec.actor.starts_with('=') {
            format!("'{}", spec.actor)
        } else {
            spec.actor.to_owned()
        };
        let success = match spec.success {
            Some(true) => "true",
            Some(false) => "false",
            None => "",
        };
        let want: Vec<String> = vec![
            spec.seq.to_string(),
            entry["id"].as_str().unwrap().to_owned(),
            entry["timestamp"].as_str().unwrap().to_owned(),
            spec.event.to_owned(),
            spec.level.to_owned(),
            want_actor,
            String::new(),
            success.to_owned(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            format!(r#"{{"i":{}}}"#, spec.seq),
            // What trail adds to every event (host, pid, version).
            entry["metadata"].to_string(),
            kid.clone(),
            hex::encode(&row.chain_hash),
            hex::encode(&row.signature),
        ];
        assert_eq!(rec.iter().collect::<Vec<_>>(), want, "CSV row {}", spec.seq);
    }
    assert_eq!(&records[TOTAL as usize - 1][5], "'=cmd|' /C calc'!A0");

    // The alias writes the same bytes.
    let alias = env.path("alias.csv");
    env.trail(&["export-csv", alias.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(&alias).unwrap(), text);
}

/// An export replaces an ordinary output file, never evidence: the
/// database (under any name, or a hard link to it), a backup (any SQLite
/// file) or a key file is refused with exit 2 and left as it was. Before,
/// `export --output trail.db` answered "exported" over the log itself.
#[test]
fn an_export_never_replaces_the_database_a_backup_or_a_key() {
    let env = Env::new();
    read_fixture(&env);
    let backup = env.path("backup.db");
    env.trail(&["backup", backup.to_str().unwrap()]).ok();
    let link = env.path("link.db");
    std::fs::hard_link(&env.db, &link).unwrap();
    let other_spelling = env.path("data/../data/trail.db");
    let precious = |p: &std::path::Path| std::fs::read(p).unwrap();
    let (db_before, backup_before, key_before) =
        (precious(&env.db), precious(&backup), precious(&env.key));
    for (target, what) in [
        (&env.db, "the database being exported"),
        (&other_spelling, "the database being exported"),
        (&link, "the database being exported"),
        (&backup, "an SQLite database"),
        (&env.key, "a key file"),
    ] {
        for args in [
            vec![
                "export",
                "--format",
                "csv",
                "--output",
                target.to_str().unwrap(),
            ],
            vec!["export-json", target.to_str().unwrap()],
        ] {
            env.trail(&args)
                .expect_code(2)
                .stderr_has(&["refusing to write the export to", what]);
        }
    }
    assert_eq!(precious(&env.db), db_before);
    assert_eq!(precious(&backup), backup_before);
    assert_eq!(precious(&env.key), key_before);
    env.trail(&["verify"]).ok();

    // Another database's live WAL (and a copy of it under another name),
    // and the -shm beside it.
    let other = env.path("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    )
    .unwrap();
    let wal = env.path("other.db-wal");
    let wal_copy = env.path("wal-copy.bin");
    std::fs::copy(&wal, &wal_copy).unwrap();
    let wal_before = precious(&wal);
    for (target, what) in [
        (wal.clone(), "a file SQLite keeps beside a database"),
        (
            env.path("other.db-shm"),
            "a file SQLite keeps beside a database",
        ),
        (wal_copy.clone(), "an SQLite WAL file"),
        // Not there yet: a CSV of that name would be a hot journal.
        (
            env.path("other.db-journal"),
            "a file SQLite keeps beside a database",
        ),
        (
            std::path::PathBuf::from(format!("{}-journal", env.db.display())),
            "a file SQLite keeps beside a database",
        ),
    ] {
        env.trail(&["export-csv", target.to_str().unwrap()])
            .expect_code(2)
            .stderr_has(&["refusing to write the export to", what]);
    }
    assert_eq!(precious(&wal), wal_before);
    assert!(!env.path("other.db-journal").exists());
    assert!(!std::path::Path::new(&format!("{}-journal", env.db.display())).exists());
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);

    // A pipe is written into, not replaced (and does not hang the export).
    let fifo = env.path("export.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    env.trail(&[
        "export",
        "--format",
        "csv",
        "--output",
        fifo.to_str().unwrap(),
    ])
    .ok();
    let piped = reader.join().unwrap();
    assert_eq!(piped.lines().next(), Some(CSV_HEADER));
    assert_eq!(piped.lines().count(), TOTAL as usize + 1);
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "still a pipe"
    );

    // An ordinary file is replaced, through `NAME.partial`, which is gone.
    let out = env.path("out.csv");
    std::fs::write(&out, "an older export\n").unwrap();
    env.trail(&["export-csv", out.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().next(), Some(CSV_HEADER));
    assert_eq!(text.lines().count(), TOTAL as usize + 1);
    assert!(!env.path("out.csv.partial").exists());

    // An export that fails part-way (the file size limit here, as a full
    // disk would) leaves neither the target changed nor `NAME.partial`
    // behind, which on a full disk would keep it full. (The limit leaves
    // room for SQLite's 32 KiB -shm; 400 more events make the CSV larger.)
    let more: Vec<Value> = (0..400)
        .map(|i| json!({"event": "bulk.row", "actor": format!("bulk-{i:04}"), "details": {"pad": "x".repeat(200)}}))
        .collect();
    env.import_values("more.jsonl", &more, 400).ok();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 128; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_trail"))
        .args(["--db", env.db_str(), "export-csv", out.to_str().unwrap()]);
    let failed = util::run_cmd(cmd);
    failed.expect_code(3);
    failed.stderr_has(&["File too large"]);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        text,
        "the target is unchanged"
    );
    assert!(
        !env.path("out.csv.partial").exists(),
        "no partial file left"
    );
}

#[test]
fn export_json_and_jsonl_hold_every_event_oldest_first() {
    let env = Env::new();
    let specs = read_fixture(&env);
    let rows = env.rows();
    let all: Vec<Value> = rows.iter().map(event_json).collect();

    let path = env.path("out.json");
    env.trail(&[
        "export",
        "--format",
        "json",
        "--output",
        path.to_str().unwrap(),
    ])
    .ok();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let keys: BTreeSet<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["generated_at", "filters", "events", "count"])
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(doc["generated_at"].as_str().unwrap()).is_ok(),
        "generated_at: {}",
        doc["generated_at"]
    );
    assert_eq!(doc["filters"], json!({}));
    assert_eq!(doc["count"], json!(TOTAL));
    assert_eq!(doc["events"], json!(all));

    // Filtered: the filters are echoed, the count is the filtered count.
    let filtered = env.path("auth.json");
    env.trail(&[
        "export",
        "--format",
        "json",
        "--event",
        "auth.*",
        "--output",
        filtered.to_str().unwrap(),
    ])
    .ok();
    let f: Value = serde_json::from_str(&std::fs::read_to_string(&filtered).unwrap()).unwrap();
    let want: Vec<u64> = specs
        .iter()
        .filter(|s| s.event.starts_with("auth."))
        .map(|s| s.seq)
        .collect();
    assert_eq!(f["filters"], json!({"event": "auth.*"}));
    assert_eq!(f["count"], json!(want.len()));
    assert_eq!(seqs(&f), want);

    let lpath = env.path("out.jsonl");
    env.trail(&[
        "export",
        "--format",
        "jsonl",
        "--output",
        lpath.to_str().unwrap(),
    ])
    .ok();
    let text = std::fs::read_to_string(&lpath).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, all, "one event per line, oldest first");

    // The alias: the same document but for generated_at.
    let alias = env.path("alias.json");
    env.trail(&["export-json", alias.to_str().unwrap()]).ok();
    let mut a: Value = serde_json::from_str(&std::fs::read_to_string(&alias).unwrap()).unwrap();
    let mut d = doc.clone();
    a.as_object_mut().unwrap().remove("generated_at");
    d.as_object_mut().unwrap().remove("generated_at");
    assert_eq!(a, d);
}

#[test]
fn read_commands_work_while_another_process_holds_the_file_for_writing() {
    let env = Env::new();
    let specs = read_fixture(&env);

    // Another trail process with the file open for writing, idle between
    // batches...
    let mut writer = env
        .command(&["import", "-", "--batch-size", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    for i in 0..4 {
        writeln!(
            stdin,
            r#"{{"event":"live.write","actor":"writer","details":{{"i":{i}}}}}"#
        )
        .unwrap();
    }
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.count() < TOTAL as i64 + 4 {
        assert!(
            writer.try_wait().unwrap().is_none(),
            "the writer ended early"
        );
        assert!(
            Instant::now() < deadline,
            "the writer's batches never committed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let total = TOTAL + 4;

    // ...and this process in the middle of a write transaction.
    let holder = env.conn();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    holder
        .execute(
            "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (?1, ?2, zeroblob(32), zeroblob(32))",
            rusqlite::params![
                total as i64 + 1,
                format!(r#"{{"v":1,"seq":{},"id":"uncommitted","event":"not.yet"}}"#, total + 1)
            ],
        )
        .unwrap();

    let out = env.trail(&["show", "--json"]);
    out.ok();
    assert_eq!(
        seqs(&out.json()),
        ((total - 19)..=total).rev().collect::<Vec<_>>()
    );
    let out = env.trail(&["tail", "-n", "2", "--json"]);
    out.ok();
    assert_eq!(seqs(&out.json()), vec![total - 1, total]);
    let out = env.trail(&["search", "--actor", "alice", "--json"]);
    out.ok();
    assert_eq!(
        seqs(&out.json()),
        specs
            .iter()
            .filter(|s| s.actor == "alice")
            .map(|s| s.seq)
            .collect::<Vec<_>>()
    );
    let out = env.trail(&["summary", "--period", "all", "--json"]);
    out.ok();
    assert_eq!(out.json()["total_events"], json!(total));
    let out = env.trail(&["export", "--format", "jsonl"]);
    out.ok();
    assert_eq!(out.stdout.lines().count(), total as usize);
    verify_both(&env, &[], &verdict(true, total, None, &env.head()));

    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    drop(stdin);
    let status = util::wait_bounded(&mut writer, Duration::from_secs(60), "trail import -");
    assert!(status.success(), "the writer failed: {status}");
    assert_eq!(env.count(), total as i64);
}

/// An empty `TRAIL_DB` (or `TRAIL_DATA_DIR`) is a mistake named as such,
/// exit 2, before anything is created: no database, no `hmac.key`.
#[test]
fn an_empty_trail_db_is_refused_before_anything_is_created() {
    let env = Env::new();
    let cwd = env.path("cwd");
    std::fs::create_dir(&cwd).unwrap();
    for var in ["TRAIL_DB", "TRAIL_DATA_DIR"] {
        for cmd in [&["append", "x.y"][..], &["serve", "--bind", "127.0.0.1:0"]] {
            let mut c = std::process::Command::new(util::BIN);
            c.args(cmd)
                .env_clear()
                .env(var, "")
                .current_dir(&cwd)
                .stdin(std::process::Stdio::null());
            util::run_cmd(c)
                .expect_code(2)
                .stderr_has(&[var, "is empty"]);
        }
    }
    let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().collect();
    assert!(left.is_empty(), "nothing created: {left:?}");
}

/// A float in `details` is stored as the number sent (not one a step off),
/// so a retry of the same lines by id is the same event, not a conflict.
#[test]
fn floats_are_stored_as_sent_and_their_retry_is_the_same_event() {
    let env = Env::new();
    let values = [
        "9007199254740991.0",
        "8282494558699.3125",
        "9.525102111858402e-14",
        "0.1",
        "5e-324",
        "-2.2250738585072014e-308",
    ];
    let lines: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!(r#"{{"id":"float-{i}","event":"num.float","details":{{"n":{v}}}}}"#))
        .collect();
    let file = env.write_lines("floats.jsonl", &lines);
    let file = file.to_str().unwrap();
    env.trail(&["import", file]).ok();
    for (i, v) in values.iter().enumerate() {
        let entry: Value = serde_json::from_str(&entry_of(&env, i as i64 + 1)).unwrap();
        let stored = entry["details"]["n"].as_f64().unwrap();
        let sent: f64 = v.parse().unwrap();
        assert_eq!(stored.to_bits(), sent.to_bits(), "{v} stored as {stored:e}");
    }
    let again = env.trail(&["import", file]);
    again.ok();
    assert_eq!(env.count(), values.len() as i64, "{}", again.stdout);
}

/// `until=9999-12-31` (a common "no upper bound") lets every event through,
/// and shows back as the last microsecond of that day; bounds outside the
/// years 0000 to 9999, or a `since` past the last timestamp there can be,
/// are refused by name.
#[test]
fn time_bounds_at_the_end_of_year_9999_and_beyond_it() {
    let env = Env::new();
    env.trail(&["append", "a.one"]).ok();
    env.trail(&["append", "a.two"]).ok();
    for until in [
        "9999-12-31",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.9999999Z",
    ] {
        let out = env.trail(&["search", "--until", until, "--json"]);
        out.ok();
        assert_eq!(
            out.json()["events"].as_array().unwrap().len(),
            2,
            "until {until}"
        );
    }
    let out = env.trail(&["export", "--format", "json", "--until", "9999-12-31"]);
    out.ok();
    let doc = out.json();
    assert_eq!(doc["count"], json!(2));
    assert_eq!(
        doc["filters"]["until"],
        json!("9999-12-31T23:59:59.999999Z")
    );

    for (flag, value, says) in [
        (
            "--since",
            "9999-12-31T23:59:59.9999999Z",
            "since: must be at most 9999-12-31T23:59:59.999999Z",
        ),
        (
            "--since",
            "-001-01-01",
            "since: must be between 0000-01-01 and 9999-12-31",
        ),
        (
            "--until",
            "-001-01-01",
            "until: must be between 0000-01-01 and 9999-12-31",
        ),
    ] {
        let out = env.trail(&["search", &format!("{flag}={value}"), "--json"]);
        out.expect_code(2);
        assert!(out.stderr.contains(says), "{flag} {value}: {}", out.stderr);
    }
}

/// `--output -` is standard output (as `-` is standard input to `import`),
/// not a file named `-`.
#[test]
fn export_to_dash_is_standard_output() {
    let env = Env::new();
    env.trail(&["append", "dash.one"]).ok();
    let out = env.trail(&["export", "--format", "jsonl", "--output", "-"]);
    out.ok();
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"], json!("dash.one"));
    assert!(!env.path("-").exists());
    assert!(!std::path::Path::new("-").exists());
}

/// `--from`/`--to` take seqs from 1 to 2^63-1 in both verifiers, as
/// `/v1/verify` does: 0 is refused (exit 2), not "intact, 0 checked".
#[test]
fn verify_ranges_run_from_seq_1_in_both_verifiers() {
    let env = Env::new();
    log_of_20(&env);
    for args in [
        ["--from", "0"],
        ["--to", "0"],
        ["--from", "9223372036854775808"],
    ] {
        let mut t = vec!["verify", "--json"];
        t.extend(args);
        env.trail(&t)
            .expect_code(2)
            .stderr_has(&["is not in 1..=9223372036854775807"]);
        let mut p = vec!["--key-file", env.key_str(), "--json"];
        p.extend(args);
        env.py_verify(&p)
            .expect_code(2)
            .stderr_has(&["must be from 1 to 9223372036854775807"]);
    }
    verify_both(
        &env,
        &["--from", "20", "--to", "20"],
        &verdict(true, 1, None, &env.head()),
    );
}

/// The schema is not covered by the chain: a view redefined to relabel or
/// hide rows, a trigger dropped, and the chain still verifies. `verify`
/// says so beside its verdict (stdout with the text, stderr beside JSON),
/// leaving the verdict and the JSON object as they are.
#[test]
fn verify_names_a_schema_that_is_not_trails() {
    let env = Env::new();
    log_of_20(&env);
    let out = env.trail(&["verify"]);
    out.ok();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);

    let c = env.conn();
    let view: String = c
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'audit_log'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    c.execute_batch("DROP VIEW audit_log").unwrap();
    c.execute_batch(&view.replace("FROM events", "FROM events WHERE seq <> 7"))
        .unwrap();
    c.execute_batch("DROP TRIGGER events_no_update; CREATE INDEX x_extra ON events (level);")
        .unwrap();
    drop(c);
    let out = env.trail(&["verify"]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("intact: 20 entries checked"),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].starts_with("warning: the schema is not the one trail's migrations make ("),
        "{}",
        out.stdout
    );
    for part in [
        "trigger events_no_update: missing",
        "view audit_log: changed",
        "index x_extra: not trail's",
    ] {
        assert!(lines[1].contains(part), "{part}: {}", out.stdout);
    }
    let json = env.trail(&["verify", "--json"]);
    json.ok();
    assert_eq!(json.json()["valid"], json!(true));
    assert_eq!(json.stdout.lines().count(), 1);
    json.stderr_has(&[
        "warning: the schema is not the one",
        "view audit_log: changed",
    ]);
}

/// `append` and `import` after a newest row that does not verify (its seal
/// replaced, as by someone without the key): they append, and say so.
#[test]
fn appending_after_a_newest_event_that_does_not_verify_says_so() {
    let env = Env::new();
    log_of_20(&env);
    tamper(
        &env,
        "UPDATE events SET signature = zeroblob(32) WHERE seq = 20",
        [],
        1,
    );
    let out = env.trail(&["append", "after.forged"]);
    out.ok();
    out.stderr_has(&[
        "warning: the newest event does not verify (seq 20: bad_seal",
        "run `trail verify`",
    ]);
    assert_eq!(env.count(), 21);
    // Once the newest event verifies again (this one), no warning.
    let out = env.trail(&["append", "after.that"]);
    out.ok();
    assert!(!out.stderr.contains("does not verify"), "{}", out.stderr);
    verify_both(
        &env,
        &[],
        &verdict(false, 19, Some((20, "bad_seal")), &env.head()),
    );
}

/// A log whose first key is lost: every row that key sealed is
/// `unknown_key`, and the run stops at the first of them, hiding an edit
/// further on. `--no-seals` checks hashes and links alone, in both
/// verifiers, and finds it.
#[test]
fn no_seals_checks_the_hash_chain_of_a_log_whose_key_is_lost() {
    let env = Env::new();
    log_of_20(&env);
    tamper(
        &env,
        r#"UPDATE events SET entry = replace(entry, '"bob"', '"eve"') WHERE seq = 14"#,
        [],
        1,
    );
    let other = env.write_key("other.key", OTHER_KEY_HEX);
    let other_s = other.to_str().unwrap();
    // Only a key that sealed nothing here: the first row decides.
    let t = env.trail_with_key(None, &["verify", "--json", "--key-file", other_s]);
    let p = env.py_verify(&["--key-file", other_s, "--json"]);
    assert_verdicts(
        &t,
        &p,
        &verdict(false, 0, Some((1, "unknown_key")), &env.head()),
    );
    // Hashes and links alone: the edit at 14.
    let t = env.trail_with_key(None, &["verify", "--json", "--no-seals"]);
    let p = env.py_verify(&["--json", "--no-seals"]);
    assert_verdicts(
        &t,
        &p,
        &verdict(false, 13, Some((14, "modified")), &env.head()),
    );

    // An untouched log verifies that way with no key at all.
    let env = Env::new();
    log_of_20(&env);
    let t = env.trail_with_key(None, &["verify", "--no-seals"]);
    t.ok();
    assert!(
        t.stdout
            .starts_with("intact: 20 entries checked (hashes and links only: seals not checked)"),
        "{}",
        t.stdout
    );
    let p = env.py_verify(&["--no-seals"]);
    p.ok();
    assert!(
        p.stdout
            .starts_with("intact: 20 entries checked (hashes and links only: seals not checked)"),
        "{}",
        p.stdout
    );
}

/// `tail --follow`: the newest N (under the table's header on a table),
/// then each event as it is stored, a line each; with `--json`, one event
/// object per line (JSON Lines, not `{"events": [...]}`).
#[test]
fn tail_follow_prints_new_events_as_they_are_stored() {
    use std::io::BufRead;
    let env = Env::new();
    for i in 0..3 {
        env.trail(&["append", &format!("e.{i}")]).ok();
    }
    for json in [false, true] {
        let mut args = vec!["tail", "-n", "2", "--follow"];
        if json {
            args.push("--json");
        }
        let mut cmd = env.command(&args);
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let next = || {
            rx.recv_timeout(Duration::from_secs(20))
                .expect("a line within 20 s")
        };
        let mut lines: Vec<String> = (0..if json { 2 } else { 3 }).map(|_| next()).collect();
        env.trail(&["append", &format!("e.new-{json}")]).ok();
        lines.push(next());
        child.kill().unwrap();
        child.wait().unwrap();
        let events: Vec<String> = if json {
            lines
                .iter()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["event"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        } else {
            assert!(lines[0].starts_with("SEQ"), "the header first: {lines:?}");
            lines[1..]
                .iter()
                .map(|l| l.split_whitespace().nth(3).unwrap().to_owned())
                .collect()
        };
        let first = if json { "e.2" } else { "e.1" };
        let mut want = vec![first.to_owned()];
        if json {
            want.push("e.new-false".into());
        } else {
            want.push("e.2".into());
        }
        want.push(format!("e.new-{json}"));
        assert_eq!(events, want, "{lines:?}");
    }
}

/// The old tools' `start`/`end` are `--since`/`--until` on the CLI too, and
/// `trail export` without `--format` is JSON, as `GET /v1/export`.
#[test]
fn start_and_end_and_an_export_without_a_format() {
    let env = Env::new();
    env.trail(&["append", "a.b"]).ok();
    let old = env.trail(&[
        "search",
        "--start",
        "2000-01-01",
        "--end",
        "9999-12-31",
        "--json",
    ]);
    old.ok();
    let new = env.trail(&[
        "search",
        "--since",
        "2000-01-01",
        "--until",
        "9999-12-31",
        "--json",
    ]);
    assert_eq!(old.stdout, new.stdout);
    assert_eq!(old.json()["events"].as_array().unwrap().len(), 1);
    let none = env.trail(&["search", "--end", "2000-01-01", "--json"]);
    assert_eq!(none.json()["events"], json!([]));
    let out = env.trail(&["export"]);
    out.ok();
    assert_eq!(out.json()["count"], json!(1));

    // summary takes a window too (period "custom"), as GET /v1/summary.
    let s = env.trail(&["summary", "--json", "--start", "2000-01-01"]);
    s.ok();
    let s = s.json();
    assert_eq!(s["period"], json!("custom"));
    assert_eq!(s["since"], json!("2000-01-01T00:00:00.000000Z"));
    assert_eq!(s["total_events"], json!(1));
    let s = env.trail(&["summary", "--json", "--until", "2000-01-01"]);
    assert_eq!(s.json()["total_events"], json!(0));
    let both = env.trail(&["summary", "--period", "7d", "--since", "2000-01-01"]);
    both.expect_code(2);
    assert!(both.stderr.contains("--period"), "{}", both.stderr);
}

/// A `TRAIL_LOG` that is not a log filter is said, not silently ignored;
/// the command still runs with the default filter.
#[test]
fn a_bad_trail_log_is_a_warning() {
    let env = Env::new();
    let mut cmd = env.command(&["append", "a.b"]);
    cmd.env("TRAIL_LOG", "[[[bad");
    let out = util::run_cmd(cmd);
    out.ok();
    out.stderr_has(&["warning: TRAIL_LOG is not a log filter", "using \"warn\""]);
    assert!(
        !out.stderr.contains("[[[bad"),
        "values of variables are never printed"
    );
    let mut cmd = env.command(&["append", "a.c"]);
    cmd.env("TRAIL_LOG", "debug");
    let out = util::run_cmd(cmd);
    out.ok();
    assert!(
        !out.stderr.contains("is not a log filter"),
        "{}",
        out.stderr
    );
}

/// The type given to `append` is its EVENT argument, and is named so.
#[test]
fn a_bad_event_argument_is_named_as_the_argument() {
    let (env, rows) = seeded();
    let out = env.trail(&["append", "bad event"]);
    assert_refused(
        &env,
        &rows,
        &out,
        &["EVENT: may hold only letters, digits and _ . : -"],
    );
    assert!(!out.stderr.contains("--event"), "{}", out.stderr);
}

/// Output cut off by a reader that went away (`| head`) ends the command
/// quietly with its own exit code: never a panic (exit 101) with a trace.
#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    let (env, _) = seeded();
    for args in [
        vec!["summary", "--json"],
        vec!["stats", "--json"],
        vec!["summary"],
        vec!["show", "--json"],
        vec!["search"],
        vec!["tail", "-n", "5"],
        vec!["export", "--format", "csv"],
        vec!["verify", "--json"],
        vec!["token", "list", "--json"],
        vec!["config", "--json"],
    ] {
        let mut cmd = env.command(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // Gone before anything is written: every write meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A file an earlier trail made (schema 4 and 5, before this build's
/// migrations) is migrated by the first command that writes, whichever it
/// is: nothing may read what only a later schema has before that.
#[test]
fn every_writing_command_takes_a_file_of_an_earlier_schema() {
    for (version, command) in [
        (5, vec!["append", "a.b"]),
        (4, vec!["append", "a.b"]),
        (5, vec!["import", "-"]),
        (5, vec!["token", "create", "ops", "--scope", "admin"]),
        (5, vec!["prune", "--before", "2000-01-01"]),
    ] {
        let env = Env::new();
        std::fs::create_dir_all(env.db.parent().unwrap()).unwrap();
        trail::store::db::create_at_version(&env.db, version).unwrap();
        let out = if command[0] == "import" {
            env.trail_stdin(&command, "{\"event\":\"x.y\"}\n")
        } else {
            env.trail(&command)
        };
        out.expect_code(0);
        let latest: i64 = env
            .conn()
            .query_row(
                "SELECT max(version) FROM refinery_schema_history",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            latest,
            i64::from(trail::store::db::latest_migration()),
            "{command:?}"
        );
        env.trail(&["verify"]).ok();
    }
    // And a backup of such a file, made before anything migrated it.
    let env = Env::new();
    std::fs::create_dir_all(env.db.parent().unwrap()).unwrap();
    trail::store::db::create_at_version(&env.db, 5).unwrap();
    let copy = env.path("copy.db");
    env.trail(&["backup", copy.to_str().unwrap()])
        .expect_code(0);

    // The same with the head a cut whose row is gone (a prune interrupted
    // under an earlier trail), where the head's time is looked for in what
    // only schema 7 keeps with a cut: each command works, and an append
    // goes on right after the cut.
    for version in [4, 5, 6] {
        for command in [
            vec!["append", "a.b"],
            vec!["token", "create", "ops", "--scope", "admin"],
            vec!["backup", "COPY"],
        ] {
            let env = Env::new();
            std::fs::create_dir_all(env.db.parent().unwrap()).unwrap();
            trail::store::db::create_at_version(&env.db, version).unwrap();
            let key = trail::domain::HmacKey::from_hex(util::KEY_HEX).unwrap();
            let mut c = env.conn();
            let events = (0..3)
                .map(|i| {
                    trail::domain::NewEvent::from_json(
                        &json!({"event": "old.one", "actor": format!("a{i}")}),
                    )
                    .unwrap()
                })
                .collect();
            trail::store::writer::append_direct(&mut c, &key, events).unwrap();
            let hash3: Vec<u8> = c
                .query_row("SELECT chain_hash FROM events WHERE seq = 3", [], |r| {
                    r.get(0)
                })
                .unwrap();
            c.execute(
                "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at) VALUES (3, ?1, ?2, ?3, 'x')",
                rusqlite::params![hash3, &key.cut_seal(3, &hash3)[..], key.id().as_str()],
            )
            .unwrap();
            c.execute("DELETE FROM events WHERE seq = 3", []).unwrap();
            drop(c);
            let copy = env.path("copy.db");
            let command: Vec<&str> = command
                .iter()
                .map(|a| {
                    if *a == "COPY" {
                        copy.to_str().unwrap()
                    } else {
                        a
                    }
                })
                .collect();
            env.trail(&command).expect_code(0);
            if command[0] == "append" {
                assert_eq!(env.head().0, 4, "schema {version}");
            }
            env.trail(&["verify"]).ok();
        }
    }
}

/// `tail --follow | head -2`: once the reader has gone, the command ends
/// (exit 0), also while no new event comes; and `token create` whose secret
/// cannot be shown revokes the token again (nobody holds it) and fails.
#[test]
fn follow_ends_with_its_reader_and_an_unshown_secret_is_revoked() {
    use std::io::Read;
    let (env, _) = seeded();
    let mut cmd = env.command(&["tail", "-n", "2", "--follow"]);
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 3];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"SEQ");
    drop(stdout);
    let status = util::wait_bounded(&mut child, Duration::from_secs(20), "tail --follow");
    assert_eq!(status.code(), Some(0));

    let mut cmd = env.command(&["token", "create", "unseen", "--scope", "admin"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("it was revoked again: nobody holds it"),
        "{stderr}"
    );
    let list = env.trail(&["token", "list", "--json"]);
    let unseen = list.json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "unseen")
        .cloned()
        .unwrap();
    assert!(unseen["revoked_at"].is_string(), "{unseen}");
}

/// Every option and argument of every command says what it is in `--help`
/// (an empty help line leaves the reader guessing), and each command's
/// usage line names the command as typed: `trail stats --help` says
/// `Usage: trail stats`, not the name of the command it is an alias of.
#[test]
fn every_option_has_help_and_usage_names_the_command_typed() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.trim().is_empty() {
                missing.push(if arg.is_positional() {
                    format!("{path} <{id}>")
                } else {
                    format!("{path} --{id}")
                });
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&trail::cli::Cli::command(), "trail", &mut missing);
    assert_eq!(missing, Vec::<String>::new(), "options without help");

    let env = Env::new();
    for (args, usage) in [
        (vec!["stats", "--help"], "Usage: trail stats "),
        (vec!["summary", "--help"], "Usage: trail summary "),
        (vec!["export-csv", "--help"], "Usage: trail export-csv "),
    ] {
        let out = env.trail(&args);
        out.ok();
        assert!(out.stdout.contains(usage), "{args:?}: {}", out.stdout);
    }
}

// ---------------------------------------------------------------------------
// What CLI writes share with the server, and what they say
// ---------------------------------------------------------------------------

/// Standard error without the warning that the test's key file (written
/// with the default mode, 0644) can be read by others.
fn stderr_besides_key_mode(out: &Out) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| !l.contains("can be read by others"))
        .collect()
}

/// The `entry` of row `seq`, as JSON.
fn stored(env: &Env, seq: i64) -> Value {
    serde_json::from_str(&entry_of(env, seq)).unwrap()
}

/// `min_level`, `exclude_events` and `metadata` from a configuration file
/// or `TRAIL_*` variables apply to `trail append` and `trail import` as to
/// the server: a dropped event is not stored (append says so on standard
/// output and exits 0, creating nothing; import counts the drops), and
/// every stored event carries `metadata.trail` with the configured keys
/// and `host`, `pid`, `version` (unless `host_metadata = false`).
#[test]
fn append_and_import_drop_events_and_add_metadata_as_the_server_does() {
    let env = Env::new();
    let cfg = env.path("trail.toml");
    std::fs::write(
        &cfg,
        "min_level = \"info\"\nexclude_events = [\"health.*\", \"noise.ping\"]\n[metadata]\ndc = \"eu-1\"\n",
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let with_config = |args: &[&str]| {
        let mut all = vec!["--config", cfg_s];
        all.extend_from_slice(args);
        env.trail(&all)
    };

    let out = with_config(&["append", "user.login", "--level", "debug"]);
    out.ok();
    assert_eq!(
        out.stdout,
        format!("not stored: dropped=min_level (level debug is below min_level info, from config file {cfg_s})\n")
    );
    let out = with_config(&["append", "health.check", "--level", "error"]);
    out.ok();
    assert_eq!(
        out.stdout,
        format!("not stored: dropped=excluded (type health.check is in exclude_events, from config file {cfg_s})\n")
    );
    let input = env.path("ev.json");
    std::fs::write(&input, r#"{"event":"noise.ping","level":"critical"}"#).unwrap();
    let out = with_config(&["append", "--json", input.to_str().unwrap()]);
    out.ok();
    assert!(
        out.stdout
            .starts_with("not stored: dropped=excluded (type noise.ping"),
        "{}",
        out.stdout
    );
    let mut cmd = env.command(&["append", "user.login"]);
    cmd.env("TRAIL_MIN_LEVEL", "warning");
    let out = util::run_cmd(cmd);
    out.ok();
    assert_eq!(
        out.stdout,
        "not stored: dropped=min_level (level info is below min_level warning, from environment variable TRAIL_MIN_LEVEL)\n"
    );
    assert!(!env.db.exists(), "nothing is created for a dropped event");
    // Bad input is refused before any policy: exit 2.
    with_config(&["append", "bad event", "--level", "debug"]).expect_code(2);
    assert!(!env.db.exists());

    // Stored, with the configured metadata and the writing process's.
    let out = with_config(&["append", "user.login", "--actor", "alice"]);
    let (seq, _, _) = parse_append(&out);
    assert_eq!(seq, 1);
    let trail_meta = stored(&env, 1)["metadata"]["trail"].clone();
    let keys: Vec<&str> = trail_meta
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["dc", "host", "pid", "version"], "{trail_meta}");
    assert_eq!(trail_meta["dc"], json!("eu-1"));
    assert_eq!(trail_meta["version"], json!(env!("CARGO_PKG_VERSION")));
    assert!(trail_meta["pid"].as_u64().unwrap() > 0);
    assert!(!trail_meta["host"].as_str().unwrap().is_empty());

    // import: the drops are counted, the rest stored in order.
    let lines = env.write_lines(
        "mixed.jsonl",
        [
            r#"{"event":"a.one"}"#,
            r#"{"event":"health.ping","level":"error"}"#,
            r#"{"event":"b.two","level":"debug"}"#,
            r#"{"event":"noise.ping"}"#,
            r#"{"event":"noise.pings"}"#,
            r#"{"event":"c.three","level":"critical"}"#,
        ],
    );
    let out = with_config(&["import", lines.to_str().unwrap(), "--batch-size", "2"]);
    out.ok();
    assert_eq!(
        out.stdout,
        "imported 3 events (seq 2..4); 3 dropped by the configuration, not stored (min_level: 1, exclude_events: 2)\n"
    );
    let events: Vec<Value> = (2..=4).map(|s| stored(&env, s)).collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["a.one", "noise.pings", "c.three"]);
    for e in &events {
        assert_eq!(e["metadata"]["trail"]["dc"], json!("eu-1"), "{e}");
    }
    assert_eq!(env.count(), 4);
    // Everything dropped: nothing written, and said.
    let all_dropped = env.write_lines("dropped.jsonl", [r#"{"event":"health.x"}"#]);
    let out = with_config(&["import", all_dropped.to_str().unwrap()]);
    out.ok();
    assert_eq!(
        out.stdout,
        "imported 0 events; 1 dropped by the configuration, not stored (exclude_events: 1)\n"
    );
    assert_eq!(env.count(), 4);

    // host_metadata = false: the configured keys only.
    let mut cmd = env.command(&["--config", cfg_s, "append", "user.logout"]);
    cmd.env("TRAIL_HOST_METADATA", "false");
    parse_append(&util::run_cmd(cmd));
    assert_eq!(
        stored(&env, 5)["metadata"],
        json!({"trail": {"dc": "eu-1"}})
    );
    // No configuration: nothing dropped, and host, pid and version added,
    // as the server adds them.
    let out = env.trail(&["append", "debug.thing", "--level", "debug"]);
    assert_eq!(parse_append(&out).0, 6);
    let keys: Vec<String> = stored(&env, 6)["metadata"]["trail"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["host", "pid", "version"]);
    verify_both(&env, &[], &verdict(true, 6, None, &env.head()));
}

/// An append or import that committed, and whose confirmation could not be
/// written (`> /dev/full`), exits 3 with a message that says what WAS
/// stored, so that nobody stores it a second time.
#[test]
fn a_write_whose_confirmation_cannot_be_printed_says_it_was_stored() {
    let env = Env::new();
    let run_to_full = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .stderr(Stdio::piped());
        let out = cmd.spawn().unwrap().wait_with_output().unwrap();
        (out.status.code(), String::from_utf8(out.stderr).unwrap())
    };
    let (code, stderr) = run_to_full(&["append", "user.login", "--actor", "alice"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(env.count(), 1);
    let row = &env.rows()[0];
    let id = stored(&env, 1)["id"].as_str().unwrap().to_owned();
    let want = format!(
        "trail: the event WAS stored: seq=1 id={id} chain_hash={}; writing that to standard \
         output failed: No space left on device (os error 28); do not append it again\n",
        hex::encode(&row.chain_hash)
    );
    assert!(stderr.ends_with(&want), "{stderr}");

    let lines = env.write_lines("two.jsonl", [r#"{"event":"a.b"}"#, r#"{"event":"c.d"}"#]);
    let (code, stderr) = run_to_full(&["import", lines.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.ends_with(
            "trail: the events WERE stored: imported 2 events (seq 2..3); writing that to \
             standard output failed: No space left on device (os error 28); do not import them \
             again\n"
        ),
        "{stderr}"
    );
    assert_eq!(env.count(), 3);

    // A retry by id that wrote nothing does not say "do not append it
    // again": another retry is just as harmless.
    let body = r#"{"event":"a.b","id":"retry-1"}"#;
    env.trail_stdin(&["append", "--json", "-"], body).ok();
    let mut cmd = env.command(&["append", "--json", "-"]);
    cmd.stdin(Stdio::piped())
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the event is stored (from before: nothing was written now)")
            && stderr.contains("a retry with the same id writes nothing either")
            && !stderr.contains("WAS stored"),
        "{stderr}"
    );
    assert_eq!(env.count(), 4);
}

/// A CLI write next to a reader holding a snapshot (a slow export, an open
/// transaction in sqlite3) does not wait for it and says nothing of the
/// rows it leaves in the WAL for it: they are read from there. (Before, it
/// waited 2 s and warned of `trail.db-wal`, whatever the file was called.)
#[test]
fn a_cli_write_does_not_wait_for_a_reader_nor_warn_of_it() {
    let env = Env::new();
    let db = env.path("t.db");
    let key = Some(env.key.as_path());
    env.trail_on(&db, key, &["append", "a.one"]).ok();
    let reader = util::open_ro(&db).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&reader), 1);

    let out = env.trail_on(&db, key, &["append", "b.two"]);
    out.ok();
    assert_eq!(stderr_besides_key_mode(&out), Vec::<&str>::new());
    let lines = env.write_lines("c.jsonl", [r#"{"event":"c.three"}"#]);
    let out = env.trail_on(&db, key, &["import", lines.to_str().unwrap()]);
    out.ok();
    assert_eq!(stderr_besides_key_mode(&out), Vec::<&str>::new());

    assert_eq!(count(&reader), 1, "the reader's snapshot is its own");
    assert_eq!(count(&util::open_ro(&db).unwrap()), 3);
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let t = env.trail_on(&db, key, &["verify", "--json"]);
    assert_eq!(t.json()["entries_checked"], json!(3));
}

/// A path that is not UTF-8 is used byte for byte (it was changed to U+FFFD
/// on the way, and trail wrote another file than the one named, which the
/// Python verifier and sqlite3 then could not find); a variable of the
/// environment that is not UTF-8 no longer takes every command down (a
/// panic), and a trail one is refused by name.
#[test]
fn paths_and_variables_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let db = env
        .path("data")
        .join(std::ffi::OsStr::from_bytes(b"odd\xfe.db"));
    env.trail_on(&db, Some(&env.key), &["append", "odd.name"])
        .ok();
    let names: Vec<Vec<u8>> = std::fs::read_dir(env.path("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert!(names.contains(&b"odd\xfe.db".to_vec()), "{names:?}");
    // No file named with U+FFFD (EF BF BD) in its place.
    assert!(
        !names
            .iter()
            .any(|n| n.windows(3).any(|w| w == [0xef, 0xbf, 0xbd])),
        "{names:?}"
    );
    let p = env.py_verify_on(&db, &["--key-file", env.key_str(), "--json"]);
    p.expect_code(0);
    assert_eq!(p.json()["entries_checked"], json!(1));

    let (seeded_env, _) = seeded();
    let mut c = seeded_env.command(&["show", "--json"]);
    c.env("SOME_OTHER_VARIABLE", std::ffi::OsStr::from_bytes(b"\xfe"));
    let out = util::run_cmd(c);
    out.expect_code(0);
    assert_eq!(seqs(&out.json()), [2, 1]);
    // A key file path that is not UTF-8 is refused by name (the settings
    // read the key file from their text, which would be another name).
    let key = env.path("keys").join(std::ffi::OsStr::from_bytes(b"k\xfe"));
    std::fs::write(&key, format!("{KEY_HEX}\n")).unwrap();
    let mut c = util::trail_cmd(&["append", "a.b"]);
    c.arg("--db").arg(&db).arg("--hmac-key-file").arg(&key);
    util::run_cmd(c)
        .expect_code(2)
        .stderr_has(&["--hmac-key-file", "not valid UTF-8"]);
    assert_eq!(util::head_of(&db).0, 1);

    let mut c = seeded_env.command(&["show"]);
    c.env("TRAIL_MIN_LEVEL", std::ffi::OsStr::from_bytes(b"\xfe"));
    util::run_cmd(c)
        .expect_code(2)
        .stderr_has(&["TRAIL_MIN_LEVEL", "not valid UTF-8"]);
}

/// `--db` is a file-system path, for every command: `file:fx.db` is a file
/// of that name in the current folder (SQLite would read it as a URI naming
/// `fx.db`), and so is a name holding `?`, `#` or `%`.
#[test]
fn a_db_path_that_looks_like_a_uri_is_a_path() {
    let env = Env::new();
    let key = Some(env.key.as_path());
    for (name, uri_target) in [
        ("file:fx.db", "fx.db"),
        ("file:mem?mode=memory#x%41.db", "mem"),
    ] {
        let db = std::path::Path::new(name);
        let out = env.trail_on(db, key, &["append", "x.y"]);
        assert_eq!(parse_append(&out).0, 1, "{name}");
        let lines = env.write_lines("in.jsonl", [r#"{"event":"a.b"}"#]);
        env.trail_on(db, key, &["import", lines.to_str().unwrap()])
            .ok();
        env.trail_on(db, key, &["token", "create", "t", "--scope", "read"])
            .ok();
        assert!(env.path(name).is_file(), "{name} is the database");
        assert!(!env.path(uri_target).exists(), "{name}: {uri_target} made");

        let shown = env.trail_on(db, key, &["show", "--json"]);
        shown.ok();
        assert_eq!(seqs(&shown.json()), [3, 2, 1], "{name}");
        let summary = env.trail_on(db, key, &["stats", "--json"]);
        assert_eq!(summary.json()["total_events"], json!(3));
        let head = util::head_of(&env.path(name));
        let t = env.trail_on(db, key, &["verify", "--json"]);
        let p = env.py_verify_on(&env.path(name), &["--key-file", env.key_str(), "--json"]);
        assert_verdicts(&t, &p, &verdict(true, 3, None, &head));

        let copy = format!("{name}.copy");
        env.trail_on(db, key, &["backup", &copy]).ok();
        assert!(env.path(&copy).is_file(), "{copy}");
        let t = env.trail_on(std::path::Path::new(&copy), key, &["verify", "--json"]);
        assert_eq!(t.json()["entries_checked"], json!(3), "{copy}");
        env.trail_on(db, key, &["prune", "--before", "2000-01-01"])
            .ok();
    }
    assert!(!env.path("fx.db").exists());
}

/// `trail import` of a folder names the folder, not a line, and writes
/// nothing.
#[test]
fn importing_a_folder_names_the_folder() {
    let env = Env::new();
    let folder = env.path("runs");
    let out = env.trail(&["import", folder.to_str().unwrap()]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!(
            "trail: cannot read {}: it is a folder, not a file\n",
            folder.display()
        )
    );
    assert!(!env.db.exists());
}
