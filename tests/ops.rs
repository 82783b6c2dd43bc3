//! End-to-end tests of the operator commands on real database files:
//! `trail prune` (retention cuts, sealed and recorded before any delete;
//! verification resuming from the newest cut, checked by `trail verify` and
//! by the independent `scripts/verify_chain.py`) and `trail backup` (an
//! online copy taken while another process writes, verified intact).

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use util::{count_in, key_id, verdict, wait_bounded, Env};

const KEY_HEX: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9";
const OTHER_KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A [`util::Env`] whose `keys/main.key` holds this file's [`KEY_HEX`]; every
/// command runs with `TRAIL_HMAC_KEY_FILE` set to it unless told otherwise.
fn new_env() -> Env {
    Env::with_key(KEY_HEX)
}

/// `keys/other.key`, holding [`OTHER_KEY_HEX`].
fn write_other_key(env: &Env) -> PathBuf {
    env.write_key("other.key", OTHER_KEY_HEX)
}

/// Imports `n` events named `{prefix}-{i}` and asserts it worked.
fn import(env: &Env, prefix: &str, n: usize) {
    let p = write_events(env, &format!("{prefix}.jsonl"), prefix, n, 0);
    env.trail(&["import", p.to_str().unwrap()]).expect_code(0);
}

/// A JSON Lines file of `n` events, each with `pad` bytes of details.
fn write_events(env: &Env, name: &str, prefix: &str, n: usize, pad: usize) -> PathBuf {
    let filler = "x".repeat(pad);
    env.write_lines(
        name,
        (0..n).map(|i| {
            json!({
                "event": "user.login",
                "actor": format!("{prefix}-{i}"),
                "resource": format!("/doc/{i}"),
                "details": {"n": i, "pad": filler},
            })
            .to_string()
        }),
    )
}

/// `(chain_hash, signature)` of row `seq`.
fn seal_of(env: &Env, seq: u64) -> (Vec<u8>, Vec<u8>) {
    env.conn()
        .query_row(
            "SELECT chain_hash, signature FROM events WHERE seq = ?1",
            [seq as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// Both verifiers on `db` with `key` print exactly `expected` and exit
/// 0 (valid) or 1.
fn assert_both_verify(env: &Env, db: &Path, key: &Path, expected: &Value) {
    let code = if expected["valid"] == json!(true) {
        0
    } else {
        1
    };
    let t = env.trail_on(db, Some(key), &["verify", "--json"]);
    let p = env.py_verify_on(db, &["--key-file", key.to_str().unwrap(), "--json"]);
    assert_eq!(t.json(), *expected, "verdict of `trail verify`");
    assert_eq!(p.json(), *expected, "verdict of verify_chain.py");
    t.expect_code(code);
    p.expect_code(code);
}

/// The seal a cut at `seq` copying `hash` must carry, computed here from the
/// documented format: HMAC(key, "trail-cut" 0x00 seq(8 bytes, big-endian)
/// hash).
fn expected_cut_seal(key_hex: &str, seq: u64, hash: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&hex::decode(key_hex).unwrap()).unwrap();
    mac.update(b"trail-cut\x00");
    mac.update(&seq.to_be_bytes());
    mac.update(hash);
    mac.finalize().into_bytes().to_vec()
}

/// Waits (bounded) until the clock is past `t`.
fn wait_past(t: DateTime<Utc>) {
    let until = Instant::now() + Duration::from_secs(10);
    while Utc::now() <= t + chrono::Duration::milliseconds(2) {
        assert!(Instant::now() < until, "the clock did not move");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A `--before` that takes every event stored so far: just past the
/// newest one's timestamp, once the clock has moved past it (a cut-off
/// later than now is refused).
fn past_newest(env: &Env) -> String {
    let newest: String = env
        .conn()
        .query_row("SELECT max(ts) FROM events", [], |r| r.get(0))
        .unwrap();
    let newest = DateTime::parse_from_rfc3339(&newest)
        .unwrap()
        .with_timezone(&Utc);
    let before = newest + chrono::Duration::microseconds(1);
    wait_past(before);
    before.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What [`pruned_log`] built.
struct Pruned {
    env: Env,
    before: String,
    /// Rows of batch A (all cut), rows of batch B (all kept).
    a: u64,
    b: u64,
    cut_hash: Vec<u8>,
    cut_sig: Vec<u8>,
    prune: Value,
}

/// Imports batch A, notes the time, imports batch B once the clock has moved
/// past it, and prunes `--before` that time: A goes, B stays.
fn pruned_log(a: u64, b: u64) -> Pruned {
    let env = new_env();
    import(&env, "a", a as usize);
    let t = Utc::now();
    wait_past(t);
    import(&env, "b", b as usize);
    let before = t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let (cut_hash, _) = seal_of(&env, a);
    let cut_sig = expected_cut_seal(KEY_HEX, a, &cut_hash);
    let out = env.trail(&["prune", "--before", &before, "--json", "--batch-size", "7"]);
    out.expect_code(0);
    Pruned {
        prune: out.json(),
        env,
        before,
        a,
        b,
        cut_hash,
        cut_sig,
    }
}

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

#[test]
fn prune_cuts_before_deleting_and_both_verifiers_resume_from_the_cut() {
    let p = pruned_log(30, 20);
    let env = &p.env;
    let event_seq = p.a + p.b + 1;
    assert_eq!(
        p.prune,
        json!({"up_to_seq": p.a, "deleted": p.a, "event_seq": event_seq, "before": p.before})
    );

    // The cut: row A's last seq and hash, sealed over both, and the key id.
    let cut: (i64, Vec<u8>, Vec<u8>, String) = env
        .conn()
        .query_row(
            "SELECT up_to_seq, chain_hash, signature, key_id FROM retention_cuts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        cut,
        (
            p.a as i64,
            p.cut_hash.clone(),
            p.cut_sig.clone(),
            key_id(KEY_HEX)
        )
    );

    // Remaining: batch B and the prune event.
    assert_eq!(env.count() as u64, p.b + 1);
    let first: i64 = env
        .conn()
        .query_row("SELECT min(seq) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(first as u64, p.a + 1);

    // The prune event is the last one and says what was cut.
    let (seq, event, level, actor, details): (i64, String, String, String, String) = env
        .conn()
        .query_row(
            "SELECT seq, event, level, actor, details FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(seq as u64, event_seq);
    assert_eq!(
        (event.as_str(), level.as_str(), actor.as_str()),
        ("retention.prune", "info", "trail")
    );
    let details: Value = serde_json::from_str(&details).unwrap();
    assert_eq!(
        details,
        json!({
            "up_to_seq": p.a,
            "deleted": p.a,
            "chain_hash": hex::encode(&p.cut_hash),
            "before": p.before,
        })
    );

    // Both verifiers: intact, counting the remaining rows only.
    let head = env.head();
    assert_eq!(head.0, event_seq);
    assert_both_verify(env, &env.db, &env.key, &verdict(true, p.b + 1, None, &head));

    // An anchor at the cut still matches; one below it has nothing left to
    // compare with; both verifiers agree.
    for anchor in [
        format!("{}:{}", p.a, hex::encode(&p.cut_hash)),
        format!("3:{}", "ab".repeat(32)),
    ] {
        let t = env.trail(&["verify", "--json", "--anchor", &anchor]);
        let py = env.py_verify(&["--key-file", env.key_str(), "--json", "--anchor", &anchor]);
        assert_eq!(
            t.json(),
            verdict(true, p.b + 1, None, &head),
            "anchor {anchor}"
        );
        assert_eq!(py.json(), t.json(), "anchor {anchor}");
        // The one below the cut is said not to have been compared.
        let below = anchor.starts_with("3:");
        for (who, stderr) in [("trail", &t.stderr), ("verify_chain.py", &py.stderr)] {
            assert_eq!(
                stderr.contains("is below the newest retention cut"),
                below,
                "{who}, anchor {anchor}: {stderr}"
            );
        }
    }

    // Appends go on after a prune, and the chain stays intact.
    env.trail(&["append", "after.prune", "--actor", "ops"])
        .expect_code(0);
    let head = env.head();
    assert_eq!(head.0, event_seq + 1);
    assert_both_verify(env, &env.db, &env.key, &verdict(true, p.b + 2, None, &head));
}

fn cut_count(env: &Env) -> i64 {
    env.conn()
        .query_row("SELECT count(*) FROM retention_cuts", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn pruning_twice_with_the_same_date_does_nothing_the_second_time() {
    let p = pruned_log(12, 5);
    let env = &p.env;
    let head = env.head();
    let cuts_before = cut_count(env);

    let again = env.trail(&["prune", "--before", &p.before, "--json"]);
    again.expect_code(0);
    assert_eq!(
        again.json(),
        json!({"up_to_seq": null, "deleted": 0, "event_seq": null, "before": p.before})
    );
    let human = env.trail(&["prune", "--before", &p.before]);
    human.expect_code(0);
    assert!(
        human.stdout.starts_with("nothing to prune"),
        "{}",
        human.stdout
    );

    assert_eq!(env.head(), head, "nothing was appended");
    assert_eq!(env.count() as u64, p.b + 1);
    let cuts_after = cut_count(env);
    assert_eq!(cuts_after, cuts_before, "no second cut");
    assert_both_verify(env, &env.db, &env.key, &verdict(true, p.b + 1, None, &head));
}

#[test]
fn triggers_refuse_deletes_above_the_cut_and_any_change_to_a_cut() {
    let p = pruned_log(10, 6);
    let env = &p.env;
    let conn = env.conn();
    let head = env.head();

    // Every row above the cut, the first and the last, is refused.
    for seq in [p.a + 1, head.0] {
        let err = conn
            .execute("DELETE FROM events WHERE seq = ?1", [seq as i64])
            .unwrap_err();
        assert!(
            err.to_string().contains("DELETE is refused"),
            "deleting seq {seq}: {err}"
        );
    }
    let err = conn.execute("DELETE FROM events", []).unwrap_err();
    assert!(err.to_string().contains("DELETE is refused"), "{err}");

    // Cuts are never deleted nor updated.
    let err = conn.execute("DELETE FROM retention_cuts", []).unwrap_err();
    assert!(err.to_string().contains("never deleted"), "{err}");
    let err = conn
        .execute("UPDATE retention_cuts SET signature = zeroblob(32)", [])
        .unwrap_err();
    assert!(err.to_string().contains("UPDATE is refused"), "{err}");

    assert_eq!(env.count() as u64, p.b + 1);
    assert_both_verify(env, &env.db, &env.key, &verdict(true, p.b + 1, None, &head));
}

#[test]
fn a_tampered_or_foreign_cut_fails_verification_at_the_cut() {
    let p = pruned_log(8, 4);
    let env = &p.env;
    let head = env.head();

    // Sealed with a key the verifier does not hold: unknown_key at the cut.
    assert_both_verify(
        env,
        &env.db,
        &write_other_key(env),
        &verdict(false, 0, Some((p.a, "unknown_key")), &head),
    );

    // A cut whose seal was edited (triggers dropped, as an attacker with
    // write access would): bad_seal at the cut, for both verifiers.
    let conn = env.conn();
    conn.execute_batch("DROP TRIGGER retention_cuts_no_update")
        .unwrap();
    let mut sig = p.cut_sig.clone();
    sig[0] ^= 1;
    conn.execute(
        "UPDATE retention_cuts SET signature = ?1 WHERE up_to_seq = ?2",
        rusqlite::params![sig, p.a as i64],
    )
    .unwrap();
    drop(conn);
    assert_both_verify(
        env,
        &env.db,
        &env.key,
        &verdict(false, 0, Some((p.a, "bad_seal")), &head),
    );
    let human = env.trail(&["verify"]);
    human.expect_code(1);
    assert!(
        human
            .stdout
            .contains(&format!("BROKEN at seq {}: bad_seal", p.a)),
        "{}",
        human.stdout
    );

    // A cut moved to another hash (to hide rewritten rows after it) but
    // keeping the old seal: bad_seal at the cut too, not a clean chain.
    let conn = env.conn();
    conn.execute(
        "UPDATE retention_cuts SET signature = ?1, chain_hash = zeroblob(32) WHERE up_to_seq = ?2",
        rusqlite::params![p.cut_sig, p.a as i64],
    )
    .unwrap();
    drop(conn);
    assert_both_verify(
        env,
        &env.db,
        &env.key,
        &verdict(false, 0, Some((p.a, "bad_seal")), &head),
    );
}

/// Someone with write access but no key copies a row's own seal into a cut,
/// to make the rows at or below it deletable and the deletion look like
/// retention. The cut seal binds the position, so both verifiers say
/// bad_seal at the forged cut instead of intact.
#[test]
fn a_cut_forged_from_a_rows_seal_does_not_hide_deleted_rows() {
    // (cut at, copy the seal of row): the whole log; a prefix.
    for (at, from) in [(8u64, 8u64), (5, 5)] {
        let env = new_env();
        import(&env, "a", 8);
        let head = env.head();
        let (hash, sig) = seal_of(&env, from);
        let conn = env.conn();
        // The insert guard lets this one in: above the newest cut, and the
        // hash of the row it names.
        conn.execute(
            "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at) VALUES (?1, ?2, ?3, ?4, 'forged')",
            rusqlite::params![at as i64, hash, sig, key_id(KEY_HEX)],
        )
        .unwrap();
        conn.execute("DELETE FROM events WHERE seq <= ?1", [at as i64])
            .unwrap();
        drop(conn);
        assert_both_verify(
            &env,
            &env.db,
            &env.key,
            &verdict(false, 0, Some((at, "bad_seal")), &head),
        );
    }

    // A cut far ahead, with row 1's hash and seal: the insert guard refuses
    // it; with the guard dropped too, it is still bad_seal.
    let env = new_env();
    import(&env, "a", 8);
    let head = env.head();
    let (hash, sig) = seal_of(&env, 1);
    let conn = env.conn();
    let insert = |c: &Connection| {
        c.execute(
            "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at) VALUES (20, ?1, ?2, ?3, 'forged')",
            rusqlite::params![hash, sig, key_id(KEY_HEX)],
        )
    };
    let err = insert(&conn).unwrap_err();
    assert!(
        err.to_string().contains("must copy the chain hash"),
        "{err}"
    );
    conn.execute_batch("DROP TRIGGER retention_cuts_insert")
        .unwrap();
    insert(&conn).unwrap();
    conn.execute("DELETE FROM events", []).unwrap();
    drop(conn);
    let mut after = head.clone();
    after.0 = 20;
    after.1 = hex::encode(&hash);
    assert_both_verify(
        &env,
        &env.db,
        &env.key,
        &verdict(false, 0, Some((20, "bad_seal")), &after),
    );
}

/// A cut is sealed over its seq and hash, not over the file: a cut copied
/// from another log sealed with the same key must not make this log's rows
/// "below the cut" and so unchecked (found by fuzzing both verifiers).
#[test]
fn a_cut_copied_from_another_log_does_not_hide_this_logs_rows() {
    let donor = pruned_log(6, 2);
    let donor_cut: (i64, Vec<u8>, Vec<u8>, String) = donor
        .env
        .conn()
        .query_row(
            "SELECT up_to_seq, chain_hash, signature, key_id FROM retention_cuts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();

    let env = new_env(); // the same key as the donor's
    import(&env, "v", 3);
    let head = env.head();
    let conn = env.conn();
    conn.execute_batch("DROP TRIGGER retention_cuts_insert; DROP TRIGGER events_no_update;")
        .unwrap();
    conn.execute(
        "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at) VALUES (?1, ?2, ?3, ?4, 'copied')",
        rusqlite::params![donor_cut.0, donor_cut.1, donor_cut.2, donor_cut.3],
    )
    .unwrap();
    drop(conn);
    // The cut claims rows up to 6 were deleted; this log ends at 3: as a
    // prune from the cut down that stopped there would leave it (or the
    // same log with its tail simply deleted, which only an anchor shows:
    // the head is now the cut's). Its rows are checked all the same, from
    // the genesis.
    let at_cut = (donor_cut.0 as u64, hex::encode(&donor_cut.1));
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 3, None, &at_cut));

    // And an edit under it is seen, with or without an anchor at the old
    // head.
    edit_actor(&env, 2, "v-1", "v-x");
    let expected = verdict(false, 1, Some((2, "modified")), &at_cut);
    assert_both_verify(&env, &env.db, &env.key, &expected);
    let anchor = format!("{}:{}", head.0, head.1);
    let t = env.trail(&["verify", "--json", "--anchor", &anchor]);
    assert_eq!(t.json(), expected);
    let p = env.py_verify(&["--key-file", env.key_str(), "--json", "--anchor", &anchor]);
    assert_eq!(p.json(), expected);
}

/// Rows still at or below the newest cut (a prune records the cut, then
/// deletes in batches: a crash in between leaves them) are checked too: a run
/// ending at the cut with the cut's hash.
/// Renames the actor of row `seq` in place (the update trigger dropped),
/// as someone with write access and no key would.
fn edit_actor(env: &Env, seq: u64, from: &str, to: &str) {
    let conn = env.conn();
    conn.execute_batch("DROP TRIGGER IF EXISTS events_no_update")
        .unwrap();
    let n = conn
        .execute(
            "UPDATE events SET entry = replace(entry, ?1, ?2) WHERE seq = ?3",
            rusqlite::params![format!("\"{from}\""), format!("\"{to}\""), seq as i64],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// 8 events, a properly sealed cut at 5 recorded, and the rows `deleted`
/// (an SQL list) gone: a prune interrupted part-way.
fn interrupted_prune(deleted: &str) -> (Env, (u64, String)) {
    let env = new_env();
    import(&env, "a", 8);
    let head = env.head();
    let (hash, _) = seal_of(&env, 5);
    let conn = env.conn();
    conn.execute(
        "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at) VALUES (5, ?1, ?2, ?3, 'interrupted')",
        rusqlite::params![hash, expected_cut_seal(KEY_HEX, 5, &hash), key_id(KEY_HEX)],
    )
    .unwrap();
    conn.execute(&format!("DELETE FROM events WHERE seq IN ({deleted})"), [])
        .unwrap();
    (env, head)
}

/// Rows still at or below the newest cut (a prune records the cut, then
/// deletes in batches from the cut down: a crash in between leaves them)
/// are checked too: a run from the genesis, ending on the cut's hash when it
/// reaches the cut.
#[test]
fn rows_left_below_a_cut_are_checked_up_to_it() {
    // The prune got as far as deleting rows 5 and 4.
    let (env, head) = interrupted_prune("4, 5");
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 6, None, &head));

    // An edit below the cut is modified there, not hidden by the cut.
    edit_actor(&env, 2, "a-1", "a-x");
    let edited = verdict(false, 1, Some((2, "modified")), &head);
    assert_both_verify(&env, &env.db, &env.key, &edited);

    // A gap below the cut is missing there.
    let (env, head) = interrupted_prune("2, 4, 5");
    let gap = verdict(false, 1, Some((2, "missing")), &head);
    assert_both_verify(&env, &env.db, &env.key, &gap);

    // Nothing deleted yet: the run reaches the cut, on its hash.
    let (env, head) = interrupted_prune("0");
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 8, None, &head));
}

/// A prune whose cut is the newest row, stopped after deleting from the top:
/// the head is the cut (its row is gone), both verifiers say so, and the
/// next append goes after the cut (not below it, where the prune would
/// delete it); a plain INSERT below the cut is refused by the trigger.
#[test]
fn after_a_prune_took_the_cuts_own_row_the_chain_goes_on_after_the_cut() {
    let env = new_env();
    import(&env, "a", 8);
    let (hash8, _) = seal_of(&env, 8);
    let conn = env.conn();
    conn.execute(
        "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at) VALUES (8, ?1, ?2, ?3, 'at the head')",
        rusqlite::params![
            hash8,
            expected_cut_seal(KEY_HEX, 8, &hash8),
            key_id(KEY_HEX)
        ],
    )
    .unwrap();
    conn.execute("DELETE FROM events WHERE seq >= 6", [])
        .unwrap();
    let refused = conn
        .execute(
            "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (6, '{}', zeroblob(32), zeroblob(32))",
            [],
        )
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("seq must be exactly the next number"),
        "{refused}"
    );
    drop(conn);
    let at_cut = (8, hex::encode(&hash8));
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 5, None, &at_cut));
    let anchor = format!("8:{}", hex::encode(&hash8));
    let t = env.trail(&["verify", "--json", "--anchor", &anchor]);
    let p = env.py_verify(&["--key-file", env.key_str(), "--json", "--anchor", &anchor]);
    assert_eq!(t.json(), verdict(true, 5, None, &at_cut));
    assert_eq!(p.json(), t.json());

    env.trail(&["append", "after.the.cut"]).expect_code(0);
    let head = env.head();
    assert_eq!(head.0, 9, "after the cut");
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 6, None, &head));
    // The prune finished by the next one takes rows 1-5, never row 9.
    env.trail(&["prune", "--before", "2000-01-01"])
        .expect_code(0);
    let left: Vec<i64> = env.rows().iter().map(|r| r.seq).collect();
    assert_eq!(left, [9, 10]);
    let head = env.head();
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 2, None, &head));
}

/// A cut stored below seq 1 (read as unsigned it would start the chain past
/// every row): broken_link at 0 for both verifiers, as a row stored there.
#[test]
fn a_cut_below_seq_1_is_broken_link_at_0() {
    let env = new_env();
    import(&env, "a", 4);
    let head = env.head();
    let conn = env.conn();
    conn.execute_batch(
        "DROP TRIGGER retention_cuts_insert;
         INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at) VALUES (-5, zeroblob(32), zeroblob(32), 'x', 't');",
    )
    .unwrap();
    drop(conn);
    let found = verdict(false, 0, Some((0, "broken_link")), &head);
    assert_both_verify(&env, &env.db, &env.key, &found);
    for args in [vec!["--no-seals"], vec!["--no-seals", "--from", "2"]] {
        let mut t_args = vec!["verify", "--json"];
        t_args.extend(&args);
        let t = env.trail(&t_args);
        let mut p_args = vec!["--key-file", env.key_str(), "--json"];
        p_args.extend(&args);
        let p = env.py_verify(&p_args);
        assert_eq!(t.json(), found, "{args:?}");
        assert_eq!(p.json(), found, "{args:?}");
    }
}

/// Rows below the cut must start where something links them: the genesis,
/// or an older cut. A row slipped in below the cut with the cut's hash and
/// a seal copied from an export (no key needed) would otherwise pass every
/// other check (found by an audit); it is broken_link, for both verifiers,
/// and a prune refuses to delete it.
#[test]
fn a_row_below_the_cut_that_nothing_links_is_broken_link() {
    // Forged: a cut at 5 with everything up to it deleted, then a row of
    // anyone's making put back at 5 (the insert trigger dropped and
    // recreated as it was, so the schema check sees nothing).
    let (env, head) = interrupted_prune("0");
    // Row 5's hash and seal, as any export taken before the prune shows.
    let (hash5, sig5) = seal_of(&env, 5);
    env.conn()
        .execute("DELETE FROM events WHERE seq <= 5", [])
        .unwrap();
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 3, None, &head));
    let kid = key_id(KEY_HEX);
    let forged = format!(
        r#"{{"v":1,"seq":5,"id":"forged-1","timestamp":"2026-01-01T00:00:00.000000Z","event":"auth.login","level":"info","actor":"ceo","key_id":"{kid}"}}"#
    );
    let conn = env.conn();
    let trigger: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'events_next_seq'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute_batch("DROP TRIGGER events_next_seq").unwrap();
    conn.execute(
        "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (5, ?1, ?2, ?3)",
        rusqlite::params![forged, hash5, sig5],
    )
    .unwrap();
    conn.execute_batch(&trigger).unwrap();
    drop(conn);
    let found = verdict(false, 0, Some((5, "broken_link")), &head);
    assert_both_verify(&env, &env.db, &env.key, &found);
    let out = env.trail(&["prune", "--before", "2000-01-01"]);
    out.expect_code(1);
    out.stderr_has(&["refusing to prune", "seq 5 is broken_link"]);
    assert_both_verify(&env, &env.db, &env.key, &found);

    // What a prune of an older trail left (it deleted from the bottom up)
    // cannot be told from that: the same verdict, at its first row.
    let (env, head) = interrupted_prune("1, 2");
    assert_both_verify(
        &env,
        &env.db,
        &env.key,
        &verdict(false, 0, Some((3, "broken_link")), &head),
    );

    // Right after an older cut, the run links to that cut's hash, whose
    // seal is checked.
    let (env, head) = interrupted_prune("0");
    let (hash2, _) = seal_of(&env, 2);
    let conn = env.conn();
    conn.execute("DELETE FROM events WHERE seq IN (1, 2, 4, 5)", [])
        .unwrap();
    conn.execute_batch("DROP TRIGGER retention_cuts_insert")
        .unwrap();
    conn.execute(
        "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at) VALUES (2, ?1, ?2, ?3, 'older')",
        rusqlite::params![hash2, expected_cut_seal(KEY_HEX, 2, &hash2), kid],
    )
    .unwrap();
    drop(conn);
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 4, None, &head));
    env.conn()
        .execute_batch("DROP TRIGGER retention_cuts_no_update; UPDATE retention_cuts SET signature = zeroblob(32) WHERE up_to_seq = 2")
        .unwrap();
    assert_both_verify(
        &env,
        &env.db,
        &env.key,
        &verdict(false, 0, Some((2, "bad_seal")), &head),
    );
}

/// `--before` later than now is refused (exit 2, the flag and the value
/// named, nothing cut or deleted): it would take events stored a moment ago,
/// as `--older-than-days 0` would. A cut-off just past the newest event
/// (in the past once the clock has moved) takes everything, and the chain
/// goes on after the cut.
#[test]
fn prune_before_a_future_date_is_refused_and_one_just_past_the_newest_event_cuts_everything() {
    let env = new_env();
    import(&env, "a", 9);
    let rows = env.rows();
    for future in ["2099-01-01", "2999-12-31T23:59:59Z"] {
        let out = env.trail(&["prune", "--before", future]);
        out.expect_code(2);
        out.stderr_has(&[
            &format!("--before: {future:?} is later than now ("),
            "nothing was pruned",
        ]);
        assert_eq!(out.stdout, "");
        assert_eq!(env.rows(), rows, "{future}: nothing changed");
        assert_eq!(cut_count(&env), 0);
    }

    let before = past_newest(&env);
    let (h9, _) = seal_of(&env, 9);
    let out = env.trail(&["prune", "--before", &before]);
    out.expect_code(0);
    assert!(
        out.stdout
            .starts_with(&format!("pruned 9 events before {before}")),
        "{}",
        out.stdout
    );
    // Only the prune event is left, linked to the cut.
    assert_eq!(env.count(), 1);
    let entry: String = env
        .conn()
        .query_row("SELECT entry FROM events WHERE seq = 10", [], |r| r.get(0))
        .unwrap();
    let (h10, _) = seal_of(&env, 10);
    let mut h = Sha256::new();
    h.update(&h9);
    h.update(entry.as_bytes());
    assert_eq!(h.finalize().to_vec(), h10, "row 10 links to the cut");
    env.trail(&["append", "next.one"]).expect_code(0);
    let head = env.head();
    assert_eq!(head.0, 11);
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 2, None, &head));
}

#[test]
fn prune_refuses_bad_input_with_exit_2() {
    let env = new_env();
    // No database yet: refused, and none is created.
    let out = env.trail(&["prune", "--older-than-days", "30"]);
    out.expect_code(2);
    assert!(!env.db.exists(), "prune must not create a database");

    import(&env, "a", 3);
    for args in [
        vec!["prune"],
        vec!["prune", "--before", "2020-01-01", "--older-than-days", "3"],
        vec!["prune", "--before", "yesterday"],
        vec!["prune", "--before", "2020-13-01"],
        vec!["prune", "--older-than-days", "0"],
        vec!["prune", "--older-than-days", "-1"],
        // As far back as retention_days goes (its cut-off was printed as
        // the year -712).
        vec!["prune", "--older-than-days", "100001"],
        vec!["prune", "--before", "2020-01-01", "--batch-size", "0"],
    ] {
        let out = env.trail(&args);
        out.expect_code(2);
        assert!(!out.stderr.is_empty(), "{args:?} explains itself");
    }
    let bad = env.trail(&["prune", "--before", "yesterday"]);
    assert!(bad.stderr.contains("--before"), "{}", bad.stderr);

    // Nothing that old: nothing to do, exit 0.
    let out = env.trail(&["prune", "--older-than-days", "30", "--json"]);
    out.expect_code(0);
    assert_eq!(out.json()["deleted"], json!(0));
    assert_eq!(env.count(), 3);
}

/// Rows that do not verify are the evidence of tampering: a prune refuses to
/// delete them (exit 1, nothing cut, deleted or appended), and both
/// verifiers still see the damage afterwards.
#[test]
fn prune_never_deletes_rows_that_do_not_verify() {
    let env = new_env();
    import(&env, "a", 10);
    env.tamper_conn()
        .execute(
            "UPDATE events SET entry = replace(entry, '\"a-3\"', '\"a-X\"') WHERE seq = 4",
            [],
        )
        .unwrap();
    let head = env.head();
    let damaged = verdict(false, 3, Some((4, "modified")), &head);
    assert_both_verify(&env, &env.db, &env.key, &damaged);

    let later = past_newest(&env);
    let out = env.trail(&["prune", "--before", &later, "--json"]);
    out.expect_code(1);
    out.stderr_has(&[
        "refusing to prune",
        "seq 4 is modified",
        "nothing was cut or deleted",
    ]);
    assert_eq!(out.stdout, "");
    assert_eq!(env.count(), 10);
    let cuts: i64 = env
        .conn()
        .query_row("SELECT count(*) FROM retention_cuts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(cuts, 0);
    assert_both_verify(&env, &env.db, &env.key, &damaged);
}

/// A prune that finishes an interrupted one (rows left at or below the
/// newest cut, nothing new to cut) checks those rows first: it finishes an
/// honest one, and refuses one whose rows were edited meanwhile.
#[test]
fn finishing_an_interrupted_prune_deletes_only_rows_that_verify() {
    // Damaged: refused, nothing deleted or appended.
    let (env, head) = interrupted_prune("4, 5");
    edit_actor(&env, 2, "a-1", "a-x");
    let out = env.trail(&["prune", "--before", "2000-01-01", "--json"]);
    out.expect_code(1);
    out.stderr_has(&["refusing to prune", "seq 2 is modified"]);
    assert_eq!(env.count(), 6);
    let damaged = verdict(false, 1, Some((2, "modified")), &head);
    assert_both_verify(&env, &env.db, &env.key, &damaged);

    // Honest: finished; rows 1 to 3 go, the prune is on record, intact.
    let (env, _) = interrupted_prune("4, 5");
    let out = env.trail(&["prune", "--before", "2000-01-01", "--json"]);
    out.expect_code(0);
    assert_eq!(out.json()["deleted"], 3, "{}", out.stdout);
    assert_eq!(out.json()["up_to_seq"], 5, "{}", out.stdout);
    assert_eq!(env.count(), 4); // rows 6 to 8 and retention.prune
    let head = env.head();
    assert_eq!(head.0, 9);
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 4, None, &head));

    // Finished first (its retention.prune is seq 9, stored after the
    // cut-off), then this prune's own cut: two records in the chain.
    let (env, _) = interrupted_prune("4, 5");
    let out = env.trail(&["prune", "--before", &past_newest(&env), "--json"]);
    out.expect_code(0);
    assert_eq!(out.json()["deleted"], 6, "{}", out.stdout); // 1-3, then 6-8
    assert_eq!(out.json()["up_to_seq"], 8, "{}", out.stdout);
    assert_eq!(out.json()["event_seq"], 10, "{}", out.stdout);
    assert_eq!(env.count(), 2);
    let head = env.head();
    assert_both_verify(&env, &env.db, &env.key, &verdict(true, 2, None, &head));
}

/// After a key change, the rows sealed with the old key verify only with it:
/// without it a prune refuses (unknown_key); `verify_key_files` lets
/// `verify` accept them, and `--key-file` lets a prune delete them.
#[test]
fn rows_sealed_with_an_old_key_verify_and_prune_only_with_that_key() {
    let env = new_env();
    let other = write_other_key(&env);
    let p = write_events(&env, "old.jsonl", "old", 5, 0);
    env.trail_with_key(Some(&other), &["import", p.to_str().unwrap()])
        .expect_code(0);
    // The key changes to the main one on purpose: the old one is kept in
    // verify_key_files for the writer's check, and only for that command.
    let q = write_events(&env, "new.jsonl", "new", 3, 0);
    let mut cmd = env.command(&["import", q.to_str().unwrap()]);
    cmd.env("TRAIL_VERIFY_KEY_FILES", other.to_str().unwrap());
    util::run_cmd(cmd).expect_code(0);
    let later = past_newest(&env);

    let out = env.trail(&["prune", "--before", &later]);
    out.expect_code(1);
    out.stderr_has(&["refusing to prune", "seq 1 is unknown_key"]);
    assert_eq!(env.count(), 8);

    // `verify_key_files` (from the environment, or the flag on any
    // command) gives the verifiers the old key.
    let mut cmd = env.command(&["verify", "--json"]);
    cmd.env("TRAIL_VERIFY_KEY_FILES", other.to_str().unwrap());
    let v = util::run_cmd(cmd);
    v.expect_code(0);
    assert_eq!(v.json()["valid"], json!(true));
    assert_eq!(v.json()["entries_checked"], json!(8));
    let v = env.trail(&[
        "verify",
        "--json",
        "--verify-key-files",
        other.to_str().unwrap(),
    ]);
    v.expect_code(0);
    assert_eq!(v.json()["entries_checked"], json!(8));
    let copy = env.path("with-old-key.db");
    env.trail(&[
        "--verify-key-files",
        other.to_str().unwrap(),
        "backup",
        copy.to_str().unwrap(),
    ])
    .expect_code(0);

    let out = env.trail(&[
        "prune",
        "--before",
        &later,
        "--key-file",
        other.to_str().unwrap(),
        "--json",
    ]);
    out.expect_code(0);
    assert_eq!(out.json()["deleted"], json!(8));
    assert_eq!(out.json()["up_to_seq"], json!(8));
    assert_eq!(env.count(), 1);
}

// ---------------------------------------------------------------------------
// Backup
// ---------------------------------------------------------------------------

#[test]
fn backup_while_an_import_writes_is_a_verified_copy() {
    let env = new_env();
    import(&env, "seed", 5);
    // Large enough that the import is still running when the backup starts.
    let big = write_events(&env, "big.jsonl", "big", 150_000, 200);
    let log = fs::File::create(env.path("runs/import.log")).unwrap();
    let mut import = env
        .command_with_key(
            Some(&env.key),
            &["import", big.to_str().unwrap(), "--batch-size", "500"],
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();

    // Wait (bounded) until the import has committed something.
    let until = Instant::now() + Duration::from_secs(120);
    let n = loop {
        let n = count_in(&env.db).unwrap_or(0);
        if n > 5 {
            break n;
        }
        assert!(
            import.try_wait().unwrap().is_none(),
            "the import ended before committing anything"
        );
        assert!(Instant::now() < until, "the import committed nothing");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        import.try_wait().unwrap().is_none(),
        "the import should still be running when the backup starts"
    );

    let dest = env.path("backups/copy.db");
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let out = env.trail(&["backup", dest.to_str().unwrap(), "--json"]);
    out.expect_code(0);
    let report = out.json();
    let events = report["events"].as_u64().unwrap();
    assert!(events >= n as u64, "the copy holds {events} < {n} events");
    assert_eq!(report["head_seq"].as_u64(), Some(events));
    assert_eq!(report["dest"], json!(dest.to_str().unwrap()));
    assert_eq!(report["verify"]["valid"], json!(true));

    // The copy verifies intact with both verifiers, on its own.
    assert_eq!(count_in(&dest).unwrap() as u64, events);
    let c = Connection::open_with_flags(&dest, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let head: (u64, String) = c
        .query_row(
            "SELECT seq, lower(hex(chain_hash)) FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )
        .unwrap();
    drop(c);
    assert_both_verify(&env, &dest, &env.key, &verdict(true, events, None, &head));
    // A self-contained file: nothing left beside it.
    let mut names: Vec<String> = fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["copy.db"]);

    let status = wait_bounded(&mut import, Duration::from_secs(600), "trail import");
    assert!(
        status.success(),
        "import failed: {}",
        fs::read_to_string(env.path("runs/import.log")).unwrap()
    );
    assert_eq!(env.count(), 150_005);
    assert!(
        (events as i64) < env.count(),
        "the backup was taken while the import ran"
    );
    env.trail(&["verify"]).expect_code(0);

    // The human line.
    let dest2 = env.path("backups/copy2.db");
    let out = env.trail(&["backup", dest2.to_str().unwrap()]);
    out.expect_code(0);
    assert_eq!(
        out.stdout.trim_end(),
        format!(
            "backup of 150005 events (head seq 150005) to {}: verified intact",
            dest2.display()
        )
    );
}

#[test]
fn backup_of_a_pruned_log_keeps_the_cut() {
    let p = pruned_log(6, 3);
    let env = &p.env;
    let dest = env.path("pruned-copy.db");
    env.trail(&["backup", dest.to_str().unwrap()])
        .expect_code(0);
    let head = env.head();
    assert_both_verify(env, &dest, &env.key, &verdict(true, p.b + 1, None, &head));
}

#[test]
fn backup_never_overwrites_a_file() {
    let env = new_env();
    import(&env, "a", 4);
    let dest = env.path("precious.db");
    fs::write(&dest, b"do not touch\n").unwrap();
    let out = env.trail(&["backup", dest.to_str().unwrap()]);
    out.expect_code(2);
    assert!(
        out.stderr.contains(dest.to_str().unwrap()) && out.stderr.contains("already exists"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read(&dest).unwrap(), b"do not touch\n");

    // A folder as DEST: said so, with what to give instead.
    let folder = env.path("backups");
    fs::create_dir(&folder).unwrap();
    let out = env.trail(&["backup", folder.to_str().unwrap()]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains(&format!("{} is a folder", folder.display())),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_dir(&folder).unwrap().count(), 0);

    // Nor into a folder that does not exist, nor from a missing database.
    let out = env.trail(&["backup", env.path("nowhere/x.db").to_str().unwrap()]);
    out.expect_code(2);
    env.trail_on(&env.path("missing.db"), Some(&env.key), &["backup", "x.db"])
        .expect_code(2);
    assert!(!env.path("x.db").exists());

    // No partial file was left behind.
    let leftovers: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn backup_that_does_not_verify_exits_1() {
    let env = new_env();
    import(&env, "a", 4);
    // Verified with a key the log was not sealed with.
    let dest = env.path("copy.db");
    let out = env.trail_with_key(
        Some(&write_other_key(&env)),
        &["backup", dest.to_str().unwrap()],
    );
    out.expect_code(1);
    assert!(
        out.stdout
            .contains("verification FAILED at seq 1: unknown_key"),
        "{}",
        out.stdout
    );
}
