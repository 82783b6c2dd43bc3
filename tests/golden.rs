//! Golden vectors: fixed inputs and a fixed key → the exact `entry` bytes,
//! chain hashes and seals. The same file is checked by
//! `scripts/verify_chain.py --vectors`. Regenerate (only for a deliberate
//! format change, which is a breaking change for outside verifiers) with
//! `TRAIL_BLESS=1 cargo test --test golden`.

use serde_json::{json, Value};
use trail::domain::{chain, HmacKey, NewEvent, Placement, GENESIS};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden.json");
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn inputs() -> Vec<(Value, &'static str, &'static str)> {
    vec![
        (
            json!({"event": "user.login"}),
            "evt-0001",
            "2026-01-01T00:00:00.000000Z",
        ),
        (
            json!({
                "id": "evt-0002", "event": "file.read", "level": "WARN", "actor": "alice",
                "resource": "/srv/payroll.xlsx", "success": false, "source_ip": "2001:DB8::1",
                "user_agent": "curl/8.5.0", "request_id": "req-42",
                "occurred_at": "2026-01-01T02:00:00.5+02:00",
                "details": {"z": 1, "a": {"y": [3, {"b": 2, "a": 1}], "x": null}},
                "metadata": {"host": "node-1"}
            }),
            "evt-0002",
            "2026-01-01T00:00:00.000001Z",
        ),
        (
            json!({
                "type": "auth.fail", "severity": "critical", "user": "mallory \"the\" <admin>",
                "target": "ünïcødé ✓", "ip_address": "192.0.2.7",
                "details": {"reason": "line\nbreak\ttab\\slash", "n": -12.5, "big": 12345678901234567u64, "e": 1e-7}
            }),
            "evt-0003",
            "2026-01-01T00:00:01.000000Z",
        ),
        (
            json!({"event": "x:y_z-1.2", "user_id": "42", "source": "10.0.0.1", "success": true}),
            "evt-0004",
            "2026-01-01T00:00:01.000000Z",
        ),
        (
            json!({"event": "user.logout", "level": "debug", "details": {}}),
            "evt-0005",
            "2026-06-30T23:59:59.999999Z",
        ),
    ]
}

fn build() -> Value {
    let key = HmacKey::from_hex(KEY_HEX).unwrap();
    let mut prev = GENESIS;
    let mut events = Vec::new();
    for (i, (input, id, ts)) in inputs().into_iter().enumerate() {
        let seq = i as u64 + 1;
        let ev = NewEvent::from_json(&input).unwrap();
        let entry = ev.encode(Placement {
            seq,
            id,
            timestamp: ts,
            key_id: key.id().as_str(),
        });
        let hash = chain::link(&prev, entry.as_bytes());
        let sig = key.seal(&hash);
        events.push(json!({
            "seq": seq, "input": input, "entry": entry,
            "chain_hash": hex::encode(hash), "signature": hex::encode(sig),
        }));
        prev = hash;
    }
    json!({"key_hex": KEY_HEX, "key_id": key.id().as_str(), "events": events})
}

#[test]
fn golden_vectors_match_the_encoder_and_the_chain() {
    let built = build();
    if std::env::var_os("TRAIL_BLESS").is_some() {
        std::fs::write(PATH, serde_json::to_string_pretty(&built).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert_eq!(stored["key_id"], built["key_id"]);
    let (a, b) = (
        stored["events"].as_array().unwrap(),
        built["events"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (s, n) in a.iter().zip(b) {
        assert_eq!(s["entry"], n["entry"], "entry bytes of seq {}", s["seq"]);
        assert_eq!(
            s["chain_hash"], n["chain_hash"],
            "chain hash of seq {}",
            s["seq"]
        );
        assert_eq!(
            s["signature"], n["signature"],
            "signature of seq {}",
            s["seq"]
        );
    }
}

#[test]
fn golden_entries_are_exactly_these_bytes() {
    // Spelled out so that a reader sees the format, and so that a change of
    // the encoder cannot be blessed by accident without touching this test.
    let built = build();
    let e = |i: usize| built["events"][i]["entry"].as_str().unwrap().to_owned();
    assert_eq!(
        e(0),
        r#"{"v":1,"seq":1,"id":"evt-0001","timestamp":"2026-01-01T00:00:00.000000Z","event":"user.login","level":"info","key_id":"79528188b09d5dfd"}"#
    );
    assert_eq!(
        e(1),
        r#"{"v":1,"seq":2,"id":"evt-0002","timestamp":"2026-01-01T00:00:00.000001Z","event":"file.read","level":"warning","actor":"alice","resource":"/srv/payroll.xlsx","success":false,"source_ip":"2001:db8::1","user_agent":"curl/8.5.0","request_id":"req-42","occurred_at":"2026-01-01T00:00:00.500000Z","details":{"a":{"x":null,"y":[3,{"a":1,"b":2}]},"z":1},"metadata":{"host":"node-1"},"key_id":"79528188b09d5dfd"}"#
    );
    assert_eq!(
        e(2),
        r#"{"v":1,"seq":3,"id":"evt-0003","timestamp":"2026-01-01T00:00:01.000000Z","event":"auth.fail","level":"critical","actor":"mallory \"the\" <admin>","resource":"ünïcødé ✓","source_ip":"192.0.2.7","details":{"big":12345678901234567,"e":1e-7,"n":-12.5,"reason":"line\nbreak\ttab\\slash"},"key_id":"79528188b09d5dfd"}"#
    );
}

#[test]
fn key_id_is_the_documented_derivation() {
    use sha2::{Digest, Sha256};
    let key = HmacKey::from_hex(KEY_HEX).unwrap();
    let mut h = Sha256::new();
    h.update(b"trail-key-id");
    h.update(hex::decode(KEY_HEX).unwrap());
    assert_eq!(key.id().as_str(), &hex::encode(h.finalize())[..16]);
}

#[test]
fn the_python_verifier_checks_the_same_vectors() {
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/verify_chain.py"
        ))
        .args(["--vectors", PATH])
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "vectors ok: 5 events"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_python_verifier_rejects_an_edited_vector() {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let edited = v["events"][2]["entry"]
        .as_str()
        .unwrap()
        .replace("mallory", "mallorz");
    v["events"][2]["entry"] = Value::String(edited);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edited.json");
    std::fs::write(&file, v.to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/verify_chain.py"
        ))
        .arg("--vectors")
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("seq 3"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
