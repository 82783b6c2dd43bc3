//! Verification of stored rows against the chain format.
//!
//! Each row is checked against its predecessor's stored hash only, so any run
//! of rows can be checked on its own (the store checks chunks in parallel and
//! keeps the failure with the lowest `seq`). For row `n`, in this order:
//!
//! 1. `missing`: `n` is past the next number: rows before it were deleted;
//!    `broken_link`: `n` is below it (a `seq` stored twice).
//! 2. `broken_link`: the entry's own `seq` member is not `n`: the row was
//!    moved, swapped or renumbered.
//! 3. `modified`: `chain_hash[n] != SHA-256(chain_hash[n-1] ‖ entry[n])`:
//!    the entry or the stored hash was edited. An entry not in the layout of
//!    the chain format (`{"v":1,"seq":N,` first, `,"key_id":"<16 hex>"}`
//!    last) is `modified` too: trail writes no other, and a verifier needs no
//!    JSON parser to read the two members it uses.
//! 4. `unknown_key`: the entry's `key_id` names no key the verifier holds.
//! 5. `bad_seal`: `signature[n] != HMAC(key, chain_hash[n])`: a row forged
//!    without the key, or a signature edited.
//!
//! `truncated` comes from an anchor (a head seen earlier) that the log no
//! longer reaches or no longer matches.

use std::fmt;

use serde::Serialize;

use super::chain::{link, Anchor, Hash, Keyring};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Modified,
    BadSeal,
    UnknownKey,
    Missing,
    BrokenLink,
    Truncated,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Modified => "modified",
            FailureKind::BadSeal => "bad_seal",
            FailureKind::UnknownKey => "unknown_key",
            FailureKind::Missing => "missing",
            FailureKind::BrokenLink => "broken_link",
            FailureKind::Truncated => "truncated",
        }
    }

    /// What the kind means, for a human reading `trail verify`.
    pub fn explain(self) -> &'static str {
        match self {
            FailureKind::Modified => {
                "the stored chain hash does not match the entry (entry or hash edited)"
            }
            FailureKind::BadSeal => {
                "the HMAC seal does not match the chain hash (forged or re-sealed row)"
            }
            FailureKind::UnknownKey => "the row is sealed with a key this verifier does not hold",
            FailureKind::Missing => "a row is missing (deleted)",
            FailureKind::BrokenLink => {
                "the row's entry belongs at another position (moved, swapped or renumbered)"
            }
            FailureKind::Truncated => {
                "the log no longer reaches or matches the anchor (tail cut off or rewritten)"
            }
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub seq: u64,
    pub kind: FailureKind,
}

/// One stored row, borrowed from wherever it was read.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub seq: u64,
    pub entry: &'a [u8],
    pub chain_hash: &'a [u8],
    pub signature: &'a [u8],
}

/// Checks consecutive rows starting at `first_seq`, whose predecessor's hash
/// is `prev`.
#[derive(Debug)]
pub struct Checker<'k> {
    keys: &'k Keyring,
    expected: u64,
    /// The previous row's hash (or the genesis, or a retention cut's).
    prev: Hash,
    checked: u64,
    /// False for a hash-chain-only check (a log whose key is lost).
    seals: bool,
}

impl<'k> Checker<'k> {
    pub fn new(keys: &'k Keyring, first_seq: u64, prev: Hash) -> Self {
        Checker {
            keys,
            expected: first_seq,
            prev,
            checked: 0,
            seals: true,
        }
    }

    /// Checks hashes, links and the layout only, not the seals: for a log
    /// whose key is lost, where every row it sealed would otherwise stop the
    /// run at `unknown_key` and hide whatever comes after.
    pub fn without_seals(mut self) -> Self {
        self.seals = false;
        self
    }

    pub fn check(&mut self, row: Row<'_>) -> Result<(), Failure> {
        let fail = |kind| Err(Failure { seq: row.seq, kind });
        if row.seq > self.expected {
            return Err(Failure {
                seq: self.expected,
                kind: FailureKind::Missing,
            });
        }
        if row.seq < self.expected {
            return fail(FailureKind::BrokenLink);
        }
        let fields = EntryHead::read(row.entry);
        if fields.as_ref().is_some_and(|f| f.seq != row.seq) {
            return fail(FailureKind::BrokenLink);
        }
        let Ok(stored): Result<Hash, _> = row.chain_hash.try_into() else {
            return fail(FailureKind::Modified);
        };
        if link(&self.prev, row.entry) != stored {
            return fail(FailureKind::Modified);
        }
        let Some(fields) = fields else {
            // Hashes match but the entry is not in trail's layout: written by
            // something that is not trail.
            return fail(FailureKind::Modified);
        };
        if self.seals {
            let Some(key) = self.keys.get(&fields.key_id) else {
                return fail(FailureKind::UnknownKey);
            };
            if !key.check(&stored, row.signature) {
                return fail(FailureKind::BadSeal);
            }
        }
        self.prev = stored;
        self.expected += 1;
        self.checked += 1;
        Ok(())
    }

    /// After the last row of a run that should end at `last_seq`: rows
    /// missing at its end are a gap too.
    pub fn finish(&self, last_seq: u64) -> Result<(), Failure> {
        if self.expected <= last_seq {
            Err(Failure {
                seq: self.expected,
                kind: FailureKind::Missing,
            })
        } else {
            Ok(())
        }
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last row checked (before any, the one the run
    /// starts from).
    pub fn last_hash(&self) -> Hash {
        self.prev
    }

    /// The `seq` the next row must have.
    pub fn next_seq(&self) -> u64 {
        self.expected
    }
}

/// The two members verification needs from an entry, read from the layout
/// of the chain format: `seq` second, `key_id` last.
struct EntryHead {
    seq: u64,
    key_id: String,
}

/// The `key_id` of an entry in the chain format's layout; `None` when the
/// entry is not in it (verification reports such a row as `modified`).
pub fn entry_key_id(entry: &[u8]) -> Option<String> {
    EntryHead::read(entry).map(|h| h.key_id)
}

impl EntryHead {
    fn read(entry: &[u8]) -> Option<EntryHead> {
        let rest = entry.strip_prefix(b"{\"v\":1,\"seq\":")?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 19 || rest.get(digits) != Some(&b',') {
            return None;
        }
        let seq = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        const TAIL: usize = 11 + 16 + 2; // ,"key_id":" + 16 hex + "}
        if entry.len() < TAIL {
            return None;
        }
        let tail = &entry[entry.len() - TAIL..];
        let id = tail.strip_prefix(b",\"key_id\":\"")?.strip_suffix(b"\"}")?;
        if !id.iter().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let key_id = std::str::from_utf8(id).ok()?.to_owned();
        Some(EntryHead { seq, key_id })
    }
}

/// Checks an anchor against the head and the hash now stored at its `seq`
/// (`None` when no row holds that `seq` any more).
pub fn check_anchor(
    anchor: &Anchor,
    head_seq: u64,
    hash_at_anchor: Option<Hash>,
) -> Option<Failure> {
    if anchor.seq > head_seq {
        return Some(Failure {
            seq: head_seq + 1,
            kind: FailureKind::Truncated,
        });
    }
    match hash_at_anchor {
        Some(h) if h == anchor.chain_hash => None,
        _ => Some(Failure {
            seq: anchor.seq,
            kind: FailureKind::Truncated,
        }),
    }
}

/// The verdict, as `trail verify --json` and `GET /v1/verify` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub valid: bool,
    pub entries_checked: u64,
    pub first_bad_seq: Option<u64>,
    pub kind: Option<FailureKind>,
    pub head: Head,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub seq: u64,
    /// Lowercase hex.
    pub chain_hash: String,
}

impl Report {
    pub fn new(
        entries_checked: u64,
        failure: Option<Failure>,
        head_seq: u64,
        head_hash: &Hash,
    ) -> Report {
        Report {
            valid: failure.is_none(),
            entries_checked,
            first_bad_seq: failure.map(|f| f.seq),
            kind: failure.map(|f| f.kind),
            head: Head {
                seq: head_seq,
                chain_hash: hex::encode(head_hash),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{chain, HmacKey, NewEvent, Placement, GENESIS};

    struct Built {
        entries: Vec<String>,
        hashes: Vec<Hash>,
        sigs: Vec<Hash>,
    }

    fn build(key: &HmacKey, n: u64) -> Built {
        let mut b = Built {
            entries: vec![],
            hashes: vec![],
            sigs: vec![],
        };
        let mut prev = GENESIS;
        for seq in 1..=n {
            let ev =
                NewEvent::from_json(&serde_json::json!({"event": "e", "actor": format!("a{seq}")}))
                    .unwrap();
            let entry = ev.encode(Placement {
                seq,
                id: &format!("id{seq}"),
                timestamp: "2026-01-01T00:00:00.000000Z",
                key_id: key.id().as_str(),
            });
            let h = chain::link(&prev, entry.as_bytes());
            b.sigs.push(key.seal(&h));
            b.hashes.push(h);
            b.entries.push(entry);
            prev = h;
        }
        b
    }

    fn run(keys: &Keyring, rows: &[(u64, &str, Hash, Hash)]) -> Result<u64, Failure> {
        let mut c = Checker::new(keys, 1, GENESIS);
        for (seq, e, h, s) in rows {
            c.check(Row {
                seq: *seq,
                entry: e.as_bytes(),
                chain_hash: h,
                signature: s,
            })?;
        }
        Ok(c.checked())
    }

    fn rows(b: &Built) -> Vec<(u64, &str, Hash, Hash)> {
        (0..b.entries.len())
            .map(|i| (i as u64 + 1, b.entries[i].as_str(), b.hashes[i], b.sigs[i]))
            .collect()
    }

    #[test]
    fn each_kind_of_damage() {
        let key = HmacKey::from_bytes([7; 32]);
        let keys = Keyring::new(key.clone());
        let b = build(&key, 6);
        assert_eq!(run(&keys, &rows(&b)), Ok(6));

        let fail = |seq, kind| Err(Failure { seq, kind });
        let mut r = rows(&b);
        let edited = r[2].1.replace("a3", "zz");
        r[2].1 = &edited;
        assert_eq!(run(&keys, &r), fail(3, FailureKind::Modified));

        let mut r = rows(&b);
        r[3].2[0] ^= 1;
        assert_eq!(run(&keys, &r), fail(4, FailureKind::Modified));

        let mut r = rows(&b);
        r.remove(1);
        assert_eq!(run(&keys, &r), fail(2, FailureKind::Missing));

        let mut r = rows(&b);
        r.swap(1, 2);
        let (a, c) = (r[1].0, r[2].0);
        r[1].0 = c;
        r[2].0 = a;
        assert_eq!(run(&keys, &r), fail(2, FailureKind::BrokenLink));

        let mut r = rows(&b);
        r[4].3[5] ^= 1;
        assert_eq!(run(&keys, &r), fail(5, FailureKind::BadSeal));

        assert_eq!(
            run(&Keyring::empty(), &rows(&b)),
            fail(1, FailureKind::UnknownKey)
        );
        let mut other = Keyring::new(HmacKey::from_bytes([8; 32]));
        assert_eq!(run(&other, &rows(&b)), fail(1, FailureKind::UnknownKey));
        other.add(key);
        assert_eq!(run(&other, &rows(&b)), Ok(6));
    }

    #[test]
    fn a_run_that_stops_short_is_missing_its_tail() {
        let key = HmacKey::from_bytes([7; 32]);
        let keys = Keyring::new(key.clone());
        let b = build(&key, 3);
        let mut c = Checker::new(&keys, 1, GENESIS);
        for (seq, e, h, s) in rows(&b) {
            c.check(Row {
                seq,
                entry: e.as_bytes(),
                chain_hash: &h,
                signature: &s,
            })
            .unwrap();
        }
        assert_eq!(c.finish(3), Ok(()));
        assert_eq!(
            c.finish(5),
            Err(Failure {
                seq: 4,
                kind: FailureKind::Missing
            })
        );
    }

    #[test]
    fn anchors() {
        let a = Anchor::parse(&format!("5:{}", "ab".repeat(32))).unwrap();
        assert_eq!(
            check_anchor(&a, 4, None),
            Some(Failure {
                seq: 5,
                kind: FailureKind::Truncated
            })
        );
        assert_eq!(check_anchor(&a, 9, Some([0xab; 32])), None);
        assert_eq!(
            check_anchor(&a, 9, Some([0; 32])),
            Some(Failure {
                seq: 5,
                kind: FailureKind::Truncated
            })
        );
        assert!(Anchor::parse("5").is_err());
        assert!(Anchor::parse("x:00").is_err());
        assert!(Anchor::parse(&format!("0:{}", "ab".repeat(32))).is_err());
    }
}
