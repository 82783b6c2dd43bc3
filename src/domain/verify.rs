//! Verification of stored rows against the chain format.
//!
//! Each row is checked against its predecessor's stored hash only, so any run
//! of rows can be checked on its own (the store checks chunks in parallel and
//! keeps the failure with the lowest `seq`). For row `n`, in this order:
//!
//! 1. `missing`: `n` is not the next number: rows before it were deleted.
//! 2. `broken_link`: the entry's own `seq` member is not `n`: the row was
//!    moved, swapped or renumbered.
//! 3. `modified`: `chain_hash[n] != SHA-256(chain_hash[n-1] ‖ entry[n])`:
//!    the entry or the stored hash was edited.
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
    prev: Hash,
    checked: u64,
}

impl<'k> Checker<'k> {
    pub fn new(keys: &'k Keyring, first_seq: u64, prev: Hash) -> Self {
        Checker {
            keys,
            expected: first_seq,
            prev,
            checked: 0,
        }
    }

    pub fn check(&mut self, row: Row<'_>) -> Result<(), Failure> {
        let fail = |kind| Err(Failure { seq: row.seq, kind });
        if row.seq != self.expected {
            return Err(Failure {
                seq: self.expected.min(row.seq),
                kind: FailureKind::Missing,
            });
        }
        let fields = EntryHead::read(row.entry);
        if let Some(f) = &fields {
            if f.seq != row.seq {
                return fail(FailureKind::BrokenLink);
            }
        }
        let Ok(stored): Result<Hash, _> = row.chain_hash.try_into() else {
            return fail(FailureKind::Modified);
        };
        if link(&self.prev, row.entry) != stored {
            return fail(FailureKind::Modified);
        }
        let Some(fields) = fields else {
            // Hashes match but the entry is not an entry: written by
            // something that is not trail.
            return fail(FailureKind::Modified);
        };
        let Some(key) = self.keys.get(fields.key_id) else {
            return fail(FailureKind::UnknownKey);
        };
        if !key.check(&stored, row.signature) {
            return fail(FailureKind::BadSeal);
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
}

/// The two members verification needs from an entry: `seq` and `key_id`.
struct EntryHead<'a> {
    seq: u64,
    key_id: &'a str,
}

impl<'a> EntryHead<'a> {
    fn read(entry: &'a [u8]) -> Option<EntryHead<'a>> {
        Self::fast(entry).or_else(|| Self::slow(entry))
    }

    /// trail's own encoding puts `seq` second and `key_id` last.
    fn fast(entry: &'a [u8]) -> Option<EntryHead<'a>> {
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
        let key_id = std::str::from_utf8(id).ok()?;
        Some(EntryHead { seq, key_id })
    }

    fn slow(entry: &'a [u8]) -> Option<EntryHead<'a>> {
        #[derive(serde::Deserialize)]
        struct Head<'b> {
            seq: u64,
            #[serde(borrow)]
            key_id: &'b str,
        }
        let h: Head<'a> = serde_json::from_slice(entry).ok()?;
        Some(EntryHead {
            seq: h.seq,
            key_id: h.key_id,
        })
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
