//! Retention: deleting old events without breaking the chain.
//!
//! A prune first verifies the rows it is about to delete, from the newest
//! cut up to the newest row older than its date: deleting rows that do not
//! verify would destroy the evidence of tampering, so it refuses instead
//! ([`StoreError::PruneRefused`]) and changes nothing. It then records a
//! *cut* in `retention_cuts`, in its own committed transaction: the `seq`
//! and chain hash of the newest row it will delete, sealed with the signing
//! key over both (`HMAC(key, "trail-cut" 0x00 seq chain_hash)`, see
//! [`HmacKey::cut_seal`]), and that key's id. Only then are the rows at or below the cut deleted (the
//! `events_no_delete` trigger refuses every row above the newest cut), in
//! short batches so that appends interleave, from the cut down. Verification resumes from the
//! newest cut: row `up_to_seq + 1` links to the cut's chain hash, and the
//! cut's own seal is checked with the key it names. Last, the prune is
//! itself recorded in the chain as a `retention.prune` event, and the
//! `Idempotency-Key`s of the deleted events are forgotten.
//!
//! A prune that stopped part-way (a crash between the cut and the end of the
//! deletion) is finished by the next prune, whatever its date, before that
//! one records a cut of its own. So the rows any prune leaves below the
//! newest cut run from the genesis or right after an older cut, where the
//! verifiers link them (see [`super::verify`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::event::{format_timestamp, truncate_micros};
use crate::domain::{EventType, FailureKind, Hash, HmacKey, Keyring, Level, NewEvent, GENESIS};

use super::error::{Result, StoreError};
use super::verify::{verify_file, VerifyRequest};
use super::writer::{append_direct_with, previous_hash};

/// Rows a prune verifies at a time before it deletes (well under a second;
/// a handful in unit tests, so that they go through several windows).
const VERIFY_WINDOW: u64 = if cfg!(test) { 4 } else { 250_000 };

/// The event type a prune appends.
pub const PRUNE_EVENT: &str = "retention.prune";

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// The cut this prune recorded (or finished): rows at or below it are
    /// gone. `None` when there was nothing to prune.
    pub up_to_seq: Option<u64>,
    /// Rows deleted by this prune.
    pub deleted: u64,
    /// The `seq` of the `retention.prune` event recording it; `None` when
    /// nothing was pruned (and nothing appended).
    pub event_seq: Option<u64>,
}

/// A row of `retention_cuts`: where the chain resumes after deleted rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub up_to_seq: u64,
    /// The chain hash of row `up_to_seq`, as stored (32 bytes unless the file
    /// was tampered with).
    pub chain_hash: Vec<u8>,
    /// The HMAC seal of that row, as stored.
    pub signature: Vec<u8>,
    /// The key the seal was made with.
    pub key_id: String,
    pub cut_at: String,
}

impl Cut {
    /// The hash row `up_to_seq + 1` links to (genesis if the stored one is
    /// not 32 bytes, which then fails as `modified` at the next row).
    pub fn link_hash(&self) -> Hash {
        self.chain_hash.as_slice().try_into().unwrap_or(GENESIS)
    }
}

/// The newest retention cut, if any. Read inside the caller's transaction.
pub fn newest_cut(conn: &Connection) -> Result<Option<Cut>> {
    read_cut(conn, "ORDER BY up_to_seq DESC LIMIT 1", None)
}

/// The retention cut recorded at `seq`, if any.
pub fn cut_at(conn: &Connection, seq: u64) -> Result<Option<Cut>> {
    read_cut(conn, "WHERE up_to_seq = ?1", Some(seq))
}

/// One row of `retention_cuts` (`tail` ends the query), read as it is
/// stored whatever its types.
fn read_cut(conn: &Connection, tail: &str, seq: Option<u64>) -> Result<Option<Cut>> {
    let text = |v: ValueRef<'_>| match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
        _ => String::new(),
    };
    let bytes = |v: ValueRef<'_>| match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => b.to_vec(),
        _ => Vec::new(),
    };
    conn.prepare_cached(&format!(
        "SELECT up_to_seq, chain_hash, signature, key_id, cut_at FROM retention_cuts {tail}"
    ))
    .and_then(|mut s| {
        let params: Vec<i64> = seq
            .map(|q| i64::try_from(q).unwrap_or(i64::MAX))
            .into_iter()
            .collect();
        s.query_row(rusqlite::params_from_iter(params), |r| {
            Ok(Cut {
                // Below 1 only by tampering (verification reports it):
                // read as 0, never as a huge unsigned number.
                up_to_seq: r.get::<_, i64>(0)?.max(0) as u64,
                chain_hash: bytes(r.get_ref(1)?),
                signature: bytes(r.get_ref(2)?),
                key_id: text(r.get_ref(3)?),
                cut_at: text(r.get_ref(4)?),
            })
        })
        .optional()
    })
    .map_err(StoreError::sqlite("reading retention cuts"))
}

/// Deletes every event with a timestamp before `before`, on a write
/// connection to the file at `db` that is not inside a transaction.
///
/// 0. Verifies the rows it would delete with `keys` (from the newest cut up
///    to the newest row older than `before`). If they do not verify, it
///    returns [`StoreError::PruneRefused`] naming the first bad row, and
///    records, deletes and appends nothing.
/// 1. In one `BEGIN IMMEDIATE` transaction: finds the newest row older than
///    `before` and, if it is above the newest cut, records a cut copying that
///    row's chain hash, seal and key id.
/// 2. Deletes the rows at or below the cut, `batch_rows` per transaction.
/// 3. Appends a `retention.prune` event saying what was cut.
/// 4. Forgets the `Idempotency-Key`s of the deleted events (best effort: a
///    failure is logged, and a later prune tries again).
///
/// With nothing older than `before` above the newest cut, it appends nothing.
/// A previous prune that stopped before deleting all it had cut is finished
/// first (recorded in the chain on its own), then this one runs.
pub fn prune(
    conn: &mut Connection,
    db: &Path,
    key: &HmacKey,
    keys: &Keyring,
    before: DateTime<Utc>,
    batch_rows: usize,
) -> Result<PruneReport, StoreError> {
    prune_until(
        conn,
        db,
        key,
        keys,
        before,
        batch_rows,
        &AtomicBool::new(false),
    )
}

/// [`prune`], stopping between two batches once `stop` is set (a server
/// shutting down): the cut stays recorded, rows at or below it may be left
/// (the next prune finishes them), and nothing is appended; the report then
/// has no `event_seq`.
pub fn prune_until(
    conn: &mut Connection,
    db: &Path,
    key: &HmacKey,
    keys: &Keyring,
    before: DateTime<Utc>,
    batch_rows: usize,
    stop: &AtomicBool,
) -> Result<PruneReport, StoreError> {
    let (first, finished_older) = prune_once(conn, db, key, keys, before, batch_rows, stop)?;
    if !finished_older || stop.load(Ordering::Relaxed) {
        return Ok(first);
    }
    let (then, _) = prune_once(conn, db, key, keys, before, batch_rows, stop)?;
    Ok(PruneReport {
        up_to_seq: then.up_to_seq.or(first.up_to_seq),
        deleted: first.deleted + then.deleted,
        event_seq: then.event_seq.or(first.event_seq),
    })
}

/// One prune (see [`prune`]); also says whether it finished an earlier,
/// interrupted one rather than recording a cut of its own.
fn prune_once(
    conn: &mut Connection,
    db: &Path,
    key: &HmacKey,
    keys: &Keyring,
    before: DateTime<Utc>,
    batch_rows: usize,
    stop: &AtomicBool,
) -> Result<(PruneReport, bool), StoreError> {
    let before = truncate_micros(before);
    let before_text = format_timestamp(before);
    let batch_rows = batch_rows.max(1);

    // (0) Never delete what does not verify. Outside any transaction, so
    // appends go on meanwhile; the cut below goes no further than this.
    // The check reaches the newest cut too: rows an interrupted prune left
    // at or below it are deleted by this one (see `record_cut`), so they
    // are checked first like any other.
    let older = newest_older_than(conn, &before_text, u64::MAX)?.map_or(0, |(seq, _)| seq as u64);
    let cut_seq = newest_cut(conn)?.map_or(0, |c| c.up_to_seq);
    let to = older.max(cut_seq);
    let nothing = PruneReport {
        up_to_seq: None,
        deleted: 0,
        event_seq: None,
    };
    // In windows of rows, so that a server shutting down stops a first
    // prune of a long log in a moment, not after the whole check. Each
    // window links to the last row of the one before, which it checked.
    let mut from = None;
    while to > 0 && from.is_none_or(|f| f <= to) {
        if stop.load(Ordering::Relaxed) {
            return Ok((nothing, false));
        }
        let end = from
            .unwrap_or(cut_seq)
            .saturating_add(VERIFY_WINDOW)
            .min(to);
        let req = VerifyRequest {
            from,
            to: Some(end),
            ..VerifyRequest::default()
        };
        let report = verify_file(db, keys, req)?;
        if !report.valid {
            return Err(StoreError::PruneRefused {
                seq: report.first_bad_seq.unwrap_or(0),
                kind: report.kind.unwrap_or(FailureKind::Modified),
            });
        }
        from = Some(end + 1);
    }
    if stop.load(Ordering::Relaxed) {
        return Ok((nothing, false));
    }
    let verified_to = older;

    // (a) Record the cut before deleting anything.
    let cut = record_cut(conn, key, keys, &before_text, verified_to)?;
    let Some((up_to_seq, chain_hash, finishes)) = cut else {
        return Ok((nothing, false));
    };
    let finished_older = finishes.is_some();

    // (b) Delete at or below the cut, in short transactions.
    let deleted = delete_up_to(conn, up_to_seq, batch_rows, stop)?;
    // Stopped with rows left: the next prune deletes them and records it.
    // Stopped after the last batch: recorded now (one append), not left to
    // a next prune that would find nothing to do.
    if stop.load(Ordering::Relaxed) && below_exists(conn, up_to_seq)? {
        tracing::info!(
            up_to_seq,
            deleted,
            "retention prune stopped part-way (shutting down); the next prune finishes it"
        );
        let report = PruneReport {
            up_to_seq: Some(up_to_seq),
            deleted,
            event_seq: None,
        };
        return Ok((report, false));
    }

    // (c) Record the prune in the chain.
    let mut details = Map::new();
    details.insert("up_to_seq".into(), Value::from(up_to_seq));
    details.insert("deleted".into(), Value::from(deleted));
    details.insert("chain_hash".into(), Value::from(hex::encode(&chain_hash)));
    details.insert("before".into(), Value::from(before_text));
    if finishes.is_some() {
        // The rows deleted are those of a cut another prune recorded and
        // has not recorded the end of: one interrupted, or one still running
        // in another process. Not rows this prune's `before` selected: the
        // record says so, without guessing which. Not when that cut was
        // recorded: its `cut_at` is not sealed, and nothing unsealed goes
        // into a sealed record (earlier builds copied it, as
        // `finishes_cut_recorded_at`).
        details.insert("finishes_earlier_cut".into(), Value::from(true));
    }
    let event = NewEvent::builder(EventType::parse(PRUNE_EVENT).expect("a valid event type"))
        .with_level(Level::Info)
        .with_actor("trail")
        .and_then(|e| e.with_details(details))
        .map_err(|e| StoreError::CommitFailed(format!("building the {PRUNE_EVENT} event: {e}")))?;
    let appended = append_direct_with(conn, key, keys, vec![event])?;
    let event_seq = appended.first().map(|a| a.seq);

    // (d) Forget the idempotency keys of the deleted events. After the
    // record, and never failing the prune: a key left behind only makes
    // its retry a 410 until a later prune forgets it.
    if let Err(err) = forget_keys_up_to(conn, up_to_seq, batch_rows, stop) {
        tracing::warn!(error = %err, up_to_seq, "retention: idempotency keys of the pruned events not forgotten yet; a later prune will");
    }
    tracing::info!(
        up_to_seq,
        deleted,
        event_seq,
        before = %format_timestamp(before),
        "retention prune done"
    );
    let report = PruneReport {
        up_to_seq: Some(up_to_seq),
        deleted,
        event_seq,
    };
    Ok((report, finished_older))
}

/// The row a cut would copy: `seq`, chain hash.
type CutRow = (i64, Vec<u8>);

/// The newest row with a timestamp before `before` and a `seq` of at most
/// `max_seq`: the row a cut would copy.
fn newest_older_than(conn: &Connection, before: &str, max_seq: u64) -> Result<Option<CutRow>> {
    conn.prepare_cached(
        "SELECT seq, chain_hash FROM events
         WHERE ts < ?1 AND seq <= ?2 ORDER BY ts DESC, seq DESC LIMIT 1",
    )
    .and_then(|mut s| {
        s.query_row(
            params![before, i64::try_from(max_seq).unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
    })
    .map_err(StoreError::sqlite("finding the newest event to prune"))
}

/// Step (a): records the cut, at most at `verified_to` and sealed with
/// `key`, and answers its `seq` and chain hash; `None` when there is nothing to prune. An existing
/// cut whose rows are not all deleted yet (an interrupted prune) is answered
/// again, so it gets finished, with the time it was recorded.
#[allow(clippy::type_complexity)]
fn record_cut(
    conn: &mut Connection,
    key: &HmacKey,
    keys: &Keyring,
    before: &str,
    verified_to: u64,
) -> Result<Option<(u64, Vec<u8>, Option<String>)>> {
    let e = StoreError::sqlite("recording a retention cut");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(e)?;
    let newest = newest_cut(&tx)?;
    let newest_seq = newest.as_ref().map_or(0, |c| c.up_to_seq);
    // Rows left at or below the newest cut (an interrupted prune) are
    // deleted before another cut is recorded: so what any prune leaves
    // starts right after an older cut (or at the genesis), where the
    // verifiers can link it.
    // So is a cut whose rows are all gone but whose `retention.prune` event
    // was never appended (a prune killed between its last delete and the
    // append): it is recorded now, with what this prune deletes (nothing).
    if let Some(cut) = newest {
        if below_exists(&tx, cut.up_to_seq)?
            || !prune_recorded(&tx, cut.up_to_seq, &cut.chain_hash)?
        {
            // The rows it finishes are deleted on the strength of that cut
            // (the prune that recorded it verified them): its seal is
            // checked here, under the write lock, since a cut may have been
            // added after this prune's own check ran.
            // As the verifiers: with the key its `key_id` names.
            let kind = match keys.get(&cut.key_id) {
                Some(k) if k.check_cut(cut.up_to_seq, &cut.chain_hash, &cut.signature) => None,
                Some(_) => Some(FailureKind::BadSeal),
                None => Some(FailureKind::UnknownKey),
            };
            if let Some(kind) = kind {
                return Err(StoreError::PruneRefused {
                    seq: cut.up_to_seq,
                    kind,
                });
            }
            tx.commit().map_err(e)?;
            return Ok(Some((cut.up_to_seq, cut.chain_hash, Some(cut.cut_at))));
        }
    }
    let candidate = newest_older_than(&tx, before, verified_to)?;
    let answer = match candidate {
        Some((seq, hash)) if seq as u64 > newest_seq => {
            // The row's entry and the hash before it go with the cut (schema
            // 7): once the row is deleted, they still give the chain's head a
            // time the chain hash vouches for (see `writer::read_head`).
            let prev = previous_hash(&tx, seq)
                .map_err(e)?
                .filter(|p| p.len() == 32);
            // The rows were verified before this transaction, in another
            // snapshot: the row the cut seals is checked again here, under
            // the write lock, so what is sealed is what verified (an entry
            // and hash rewritten in between would otherwise be sealed, and
            // its time given to every later event).
            let (entry, signature): (Vec<u8>, Vec<u8>) = tx
                .query_row(
                    "SELECT CAST(entry AS BLOB), signature FROM events WHERE seq = ?1",
                    [seq],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(e)?;
            let links = prev.as_ref().is_some_and(|p| {
                crate::domain::chain::link(p.as_slice().try_into().expect("32 bytes"), &entry)[..]
                    == hash[..]
            });
            if !links {
                return Err(StoreError::PruneRefused {
                    seq: seq as u64,
                    kind: FailureKind::Modified,
                });
            }
            // As the verifiers: the entry names its own seq, and the key
            // its `key_id` names sealed it (a sealed row of another seq,
            // replayed here, links if the hash before it is rewritten too).
            let named: Option<(u64, String)> =
                serde_json::from_slice::<Value>(&entry).ok().and_then(|v| {
                    Some((
                        v.get("seq")?.as_u64()?,
                        v.get("key_id")?.as_str()?.to_owned(),
                    ))
                });
            let Some(key_id) = named.filter(|(s, _)| *s == seq as u64).map(|(_, k)| k) else {
                return Err(StoreError::PruneRefused {
                    seq: seq as u64,
                    kind: FailureKind::Modified,
                });
            };
            match keys.get(&key_id) {
                Some(k) if k.check(&hash, &signature) => {}
                Some(_) => {
                    return Err(StoreError::PruneRefused {
                        seq: seq as u64,
                        kind: FailureKind::BadSeal,
                    })
                }
                None => {
                    return Err(StoreError::PruneRefused {
                        seq: seq as u64,
                        kind: FailureKind::UnknownKey,
                    })
                }
            }
            tx.prepare_cached(
                "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at, entry, prev_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT entry FROM events WHERE seq = ?1), ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    seq,
                    hash,
                    &key.cut_seal(seq as u64, &hash)[..],
                    key.id().as_str(),
                    format_timestamp(Utc::now()),
                    prev,
                ])
            })
            .map_err(e)?;
            Some((seq as u64, hash, None))
        }
        _ => None,
    };
    tx.commit().map_err(e)?;
    Ok(answer)
}

/// Whether a `retention.prune` event records the cut at `up_to_seq` (whose
/// chain hash is `chain_hash`): trail's own, by actor, cut and hash. A client
/// allowed to append may still post one that looks the same (event types
/// are not reserved); the cut itself stays the record of what it took.
fn prune_recorded(conn: &Connection, up_to_seq: u64, chain_hash: &[u8]) -> Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM events WHERE event = ?1 AND seq > ?2 AND actor = 'trail'
                        AND json_extract(entry, '$.details.up_to_seq') = ?2
                        AND json_extract(entry, '$.details.chain_hash') = ?3)",
    )
    .and_then(|mut s| {
        s.query_row(
            params![PRUNE_EVENT, up_to_seq as i64, hex::encode(chain_hash)],
            |r| r.get(0),
        )
    })
    .map_err(StoreError::sqlite("reading the retention.prune events"))
}

fn below_exists(conn: &Connection, up_to_seq: u64) -> Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE seq <= ?1)")
        .and_then(|mut s| s.query_row([up_to_seq as i64], |r| r.get(0)))
        .map_err(StoreError::sqlite("reading events below the retention cut"))
}

/// Step (b): deletes the rows at or below `up_to_seq`, `batch_rows` per
/// transaction, so that appends wait at most one batch. From the cut down:
/// rows a crash leaves then start right after the cut before (or at the
/// genesis), so their first one links to a known hash and each is verified;
/// deleting from the bottom up left a first row whose entry nothing checks.
fn delete_up_to(
    conn: &mut Connection,
    up_to_seq: u64,
    batch_rows: usize,
    stop: &AtomicBool,
) -> Result<u64> {
    let e = StoreError::sqlite("deleting events below the retention cut");
    let mut deleted = 0u64;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let n = tx
            .prepare_cached(
                "DELETE FROM events WHERE seq IN
                 (SELECT seq FROM events WHERE seq <= ?1 ORDER BY seq DESC LIMIT ?2)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    up_to_seq as i64,
                    i64::try_from(batch_rows).unwrap_or(i64::MAX)
                ])
            })
            .map_err(e)?;
        tx.commit().map_err(e)?;
        deleted += n as u64;
        if n < batch_rows || stop.load(Ordering::Relaxed) {
            return Ok(deleted);
        }
    }
}

/// Forgets the `Idempotency-Key`s whose events are all at or below the cut,
/// `batch_rows` per transaction, so the table lives as long as the events it
/// answers for. A key is forgotten when the largest seq it answers with is
/// at or below the cut (a batch replaying a stored id answers with that
/// event's older seq, in request order), or when its `seqs` is not a list of
/// seqs at all (it could never be answered). Keys are stored in commit
/// order, so those to forget come first in `rowid` order: the walk stops at
/// the first key that still answers for a stored event and never scans the
/// rest; one stopped behind it is forgotten by a later prune, and a retry
/// meanwhile is answered 410.
fn forget_keys_up_to(
    conn: &mut Connection,
    up_to_seq: u64,
    batch_rows: usize,
    stop: &AtomicBool,
) -> Result<()> {
    let e = StoreError::sqlite("forgetting idempotency keys below the retention cut");
    loop {
        // Shutting down: the rest is forgotten by a later prune.
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let rows: Vec<(i64, String)> = tx
            .prepare_cached("SELECT rowid, seqs FROM idempotency_keys ORDER BY rowid LIMIT ?1")
            .and_then(|mut s| {
                s.query_map([i64::try_from(batch_rows).unwrap_or(i64::MAX)], |r| {
                    Ok((
                        r.get(0)?,
                        // Any bytes, read as text: one unreadable value must
                        // not stop every later prune from forgetting keys.
                        match r.get_ref(1)? {
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                String::from_utf8_lossy(t).into_owned()
                            }
                            _ => String::new(),
                        },
                    ))
                })?
                .collect()
            })
            .map_err(e)?;
        let below = rows
            .iter()
            .take_while(|(_, seqs)| match serde_json::from_str::<Vec<u64>>(seqs) {
                Ok(seqs) => seqs.iter().max().is_none_or(|&m| m <= up_to_seq),
                Err(_) => true,
            })
            .count();
        {
            let mut del = tx
                .prepare_cached("DELETE FROM idempotency_keys WHERE rowid = ?1")
                .map_err(e)?;
            for (rowid, _) in &rows[..below] {
                del.execute([rowid]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        if below < rows.len() || rows.len() < batch_rows {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Keyring;
    use crate::store::writer::append_direct;
    use crate::store::{open_write, verify_file, Synchronous, VerifyRequest};

    fn event(i: usize) -> NewEvent {
        NewEvent::from_json(&serde_json::json!({"event": "user.login", "actor": format!("a{i}")}))
            .unwrap()
    }

    /// Row `seq`'s chain hash.
    fn hash_at(conn: &Connection, seq: i64) -> Vec<u8> {
        conn.query_row("SELECT chain_hash FROM events WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .unwrap()
    }

    /// Row `seq`'s stored timestamp.
    fn ts_at(conn: &Connection, seq: i64) -> String {
        conn.query_row("SELECT ts FROM events WHERE seq = ?1", [seq], |r| r.get(0))
            .unwrap()
    }

    /// Without the key: sealed row 5 moved to seq 10 of a 10-row log, row
    /// 9's hash rewritten to row 4's so that it links.
    fn replay_row_5_at_10(conn: &Connection) {
        let (entry5, hash5, sig5): (String, Vec<u8>, Vec<u8>) = conn
            .query_row(
                "SELECT entry, chain_hash, signature FROM events WHERE seq = 5",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let hash4 = hash_at(conn, 4);
        conn.execute_batch(
            "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;
             DELETE FROM events WHERE seq = 5;",
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET entry = ?1, chain_hash = ?2, signature = ?3 WHERE seq = 10",
            params![entry5, hash5, sig5],
        )
        .unwrap();
        conn.execute("UPDATE events SET chain_hash = ?1 WHERE seq = 9", [&hash4])
            .unwrap();
    }

    /// Asserts that a cut at `at` is refused with `kind`, and nothing is
    /// recorded.
    fn assert_cut_refused(
        conn: &mut Connection,
        key: &HmacKey,
        ring: &Keyring,
        at: u64,
        kind: FailureKind,
    ) {
        let later = format_timestamp(Utc::now() + chrono::Duration::seconds(1));
        let before = newest_cut(conn).unwrap().map(|c| c.up_to_seq);
        assert_refused(
            &record_cut(conn, key, ring, &later, at).unwrap_err(),
            at,
            kind,
        );
        assert_eq!(
            newest_cut(conn).unwrap().map(|c| c.up_to_seq),
            before,
            "nothing recorded"
        );
    }

    /// Asserts that the file verifies intact, `n` rows checked.
    fn intact(db: &Path, ring: &Keyring, n: u64) -> crate::domain::Report {
        let report = verify_file(db, ring, VerifyRequest::default()).unwrap();
        assert!(report.valid && report.entries_checked == n, "{report:?}");
        report
    }

    fn count(conn: &Connection) -> u64 {
        conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }

    /// A new file in a new folder holding `n` events sealed with `key`.
    fn log_of(n: usize, key: &HmacKey) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let mut conn = open_write(&db, Synchronous::Full).unwrap();
        append_direct(&mut conn, key, (0..n).map(event).collect()).unwrap();
        (dir, db, conn)
    }

    /// A prune told to stop (a server shutting down) before it has cut
    /// does nothing; one told while deleting stops after the batch it is
    /// deleting, from the cut down, appends nothing, and leaves a log that
    /// verifies; the next prune finishes it, then cuts on its own.
    #[test]
    fn a_stopped_prune_leaves_a_log_that_verifies_and_the_next_one_finishes_it() {
        let key = HmacKey::from_bytes([3; 32]);
        let ring = Keyring::new(key.clone());
        let (_dir, db, mut conn) = log_of(25, &key);
        let later = Utc::now() + chrono::Duration::seconds(1);

        let stop = AtomicBool::new(true);
        let r = prune_until(&mut conn, &db, &key, &ring, later, 7, &stop).unwrap();
        assert_eq!(r.up_to_seq, None);
        assert!(newest_cut(&conn).unwrap().is_none(), "nothing cut");
        assert_eq!(count(&conn), 25);

        // Stopped while deleting: the cut recorded, one batch deleted.
        let ts25 = ts_at(&conn, 25);
        let cut = record_cut(&mut conn, &key, &ring, &format_timestamp(later), 25).unwrap();
        assert_eq!(cut.map(|c| c.0), Some(25));
        assert_eq!(delete_up_to(&mut conn, 25, 7, &stop).unwrap(), 7);
        let seqs: Vec<i64> = conn
            .prepare("SELECT seq FROM events ORDER BY seq")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .unwrap();
        assert_eq!(
            seqs,
            (1..=18).collect::<Vec<_>>(),
            "deleted from the cut down"
        );
        let report = intact(&db, &ring, 18);
        // The cut's own row is gone: the head is the cut, and the chain goes
        // on after it, never below it (where the prune is deleting).
        let cut = newest_cut(&conn).unwrap().unwrap();
        assert_eq!(report.head.seq, 25);
        assert_eq!(report.head.chain_hash, hex::encode(&cut.chain_hash));
        // What comes next is stamped no earlier than the cut's row (its
        // entry is kept with the cut), whatever the clock says.
        let head = crate::store::writer::read_head(&conn).unwrap();
        assert_eq!(head.timestamp.map(format_timestamp), Some(ts25));
        // What a writer checks before chaining on is the cut's seal, not the
        // rows below it (there may be millions).
        let newest = crate::store::verify::check_newest(&db, &ring)
            .unwrap()
            .unwrap();
        assert!(newest.valid && newest.entries_checked == 0, "{newest:?}");
        assert_eq!(newest.head.seq, 25);
        let next = append_direct(&mut conn, &key, vec![event(99)]).unwrap();
        assert_eq!(next[0].seq, 26);
        let err = conn
            .execute(
                "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (19, '{}', zeroblob(32), zeroblob(32))",
                [],
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("seq must be exactly the next number"),
            "{err}"
        );
        let report = intact(&db, &ring, 19);
        assert_eq!(report.head.seq, 26);

        // Finished (18 rows, and its record at 27), then this one's own cut
        // at 27 (rows 26 and 27; its record at 28).
        let r = prune(
            &mut conn,
            &db,
            &key,
            &ring,
            later + chrono::Duration::seconds(1),
            7,
        )
        .unwrap();
        assert_eq!(
            r,
            PruneReport {
                up_to_seq: Some(27),
                deleted: 20,
                event_seq: Some(28)
            }
        );
        assert_eq!(count(&conn), 1);
        intact(&db, &ring, 1);
    }

    #[test]
    fn prune_cuts_deletes_in_batches_and_records_itself() {
        let key = HmacKey::from_bytes([3; 32]);
        let (_dir, db, mut conn) = log_of(25, &key);
        let later = Utc::now() + chrono::Duration::seconds(1);

        // Everything is older than `later`: all 25 go, 7 per batch.
        let r = prune(&mut conn, &db, &key, &Keyring::new(key.clone()), later, 7).unwrap();
        assert_eq!(
            r,
            PruneReport {
                up_to_seq: Some(25),
                deleted: 25,
                event_seq: Some(26)
            }
        );
        assert_eq!(count(&conn), 1);
        let cut = newest_cut(&conn).unwrap().unwrap();
        assert_eq!(cut.up_to_seq, 25);
        assert_eq!(cut.key_id, key.id().as_str());
        // Sealed over its position and hash, not a copy of the row's seal.
        assert!(key.check_cut(25, &cut.chain_hash, &cut.signature));
        assert!(!key.check_cut(24, &cut.chain_hash, &cut.signature));
        assert!(!key.check(&cut.chain_hash, &cut.signature));

        let report =
            verify_file(&db, &Keyring::new(key.clone()), VerifyRequest::default()).unwrap();
        assert!(report.valid, "{report:?}");
        assert_eq!(report.entries_checked, 1);

        // A date with nothing above the cut before it: nothing to do.
        let r = prune(
            &mut conn,
            &db,
            &key,
            &Keyring::new(key.clone()),
            Utc::now() - chrono::Duration::days(1),
            7,
        )
        .unwrap();
        assert_eq!(r.event_seq, None);
        assert_eq!(count(&conn), 1);
    }

    #[test]
    fn a_prune_forgets_the_idempotency_keys_of_the_events_it_deletes() {
        use crate::store::{IdempotencyKey, Writer, WriterConfig};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let key = HmacKey::from_bytes([3; 32]);
        let writer = Writer::start(&db, key.clone(), WriterConfig::default()).unwrap();
        let send = |k: &str, n: usize| {
            let idem = IdempotencyKey {
                key: k.into(),
                scope: None,
                request_hash: [n as u8; 32],
            };
            writer
                .submit_with((0..n).map(event).collect(), Some(idem))
                .unwrap()
                .wait()
        };
        let k1 = send("k1", 1).unwrap();
        let k2 = send("k2", 3).unwrap();
        let k3 = send("k3", 2).unwrap();
        assert!(
            k2[2].timestamp < k3[0].timestamp,
            "commits are stamped apart: {k2:?} {k3:?}"
        );
        let keys = |conn: &Connection| -> Vec<String> {
            let mut st = conn
                .prepare("SELECT key FROM idempotency_keys ORDER BY rowid")
                .unwrap();
            let v = st.query_map([], |r| r.get(0)).unwrap();
            v.map(Result::unwrap).collect()
        };

        // Cut before k3's events, one key per batch: k1's and k2's events
        // go, and their keys with them.
        let mut conn = open_write(&db, Synchronous::Full).unwrap();
        let before = DateTime::parse_from_rfc3339(&k3[0].timestamp)
            .unwrap()
            .with_timezone(&Utc);
        let r = prune(&mut conn, &db, &key, &Keyring::new(key.clone()), before, 1).unwrap();
        assert_eq!(r.up_to_seq, Some(k2[2].seq));
        assert_eq!(keys(&conn), ["k3"]);

        // k3 still answers its events; k1, forgotten with its event, is a
        // new request now.
        let again = send("k3", 2).unwrap();
        assert_eq!(
            again.iter().map(|a| (a.seq, a.created)).collect::<Vec<_>>(),
            k3.iter().map(|a| (a.seq, false)).collect::<Vec<_>>()
        );
        let new = send("k1", 1).unwrap();
        assert!(new[0].created && new[0].seq > k1[0].seq, "{new:?}");

        // A key whose events are gone but which is still recorded (a prune
        // stopped before forgetting it) is refused by name, never answered
        // empty nor written again.
        conn.execute(
            "INSERT INTO idempotency_keys (key, request_hash, seqs, created_at) VALUES ('gone', ?1, ?2, 't')",
            params![&[1u8; 32][..], format!("[{}]", k1[0].seq)],
        )
        .unwrap();
        let before_count = count(&conn);
        assert!(matches!(
            send("gone", 1),
            Err(StoreError::IdempotencyPruned { key }) if key == "gone"
        ));
        assert_eq!(count(&conn), before_count);

        // A key answers with the largest of its seqs in mind, wherever it is
        // in the list (a replayed id keeps its older seq in request order);
        // a `seqs` that is no list of seqs is forgotten; the walk stops at
        // the first key still needed.
        for (k, seqs) in [
            ("junk", "not json"),
            ("empty", "[]"),
            ("mixed", "[1000000000, 1]"),
            ("after-mixed", "[1]"),
        ] {
            conn.execute(
                "INSERT INTO idempotency_keys (key, request_hash, seqs, created_at) VALUES (?1, ?2, ?3, 't')",
                params![k, &[9u8; 32][..], seqs],
            )
            .unwrap();
        }
        // Not UTF-8 at all (a hand edit): forgotten too, never a stuck walk.
        conn.execute(
            "INSERT INTO idempotency_keys (key, request_hash, seqs, created_at) VALUES ('blob', ?1, X'FF', 't')",
            params![&[9u8; 32][..]],
        )
        .unwrap();
        conn.execute(
            "UPDATE idempotency_keys SET rowid = -1 WHERE key = 'blob'",
            [],
        )
        .unwrap();
        let everything = Utc::now() + chrono::Duration::seconds(1);
        let r = prune(
            &mut conn,
            &db,
            &key,
            &Keyring::new(key.clone()),
            everything,
            2,
        )
        .unwrap();
        assert!(r.event_seq.is_some(), "{r:?}");
        assert_eq!(keys(&conn), ["mixed", "after-mixed"]);
        writer.shutdown();
    }

    #[track_caller]
    fn assert_refused(err: &StoreError, seq: u64, kind: FailureKind) {
        assert!(
            matches!(err, StoreError::PruneRefused { seq: s, kind: k } if *s == seq && *k == kind),
            "{err:?}"
        );
    }

    /// The state a refused prune must leave untouched.
    fn snapshot(conn: &Connection) -> (u64, u64, Option<String>) {
        let cuts = conn
            .query_row("SELECT count(*) FROM retention_cuts", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as u64;
        let newest_type = conn
            .query_row(
                "SELECT event FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        (count(conn), cuts, newest_type)
    }

    #[test]
    fn prune_refuses_rows_that_do_not_verify_and_changes_nothing() {
        let key = HmacKey::from_bytes([5; 32]);
        let ring = Keyring::new(key.clone());
        let (_dir, db, mut conn) = log_of(3, &key);
        // Rows 4.. are stamped after `t`: a prune before `t` takes 1-3 only.
        let t = Utc::now();
        while Utc::now() <= t + chrono::Duration::milliseconds(1) {
            std::thread::yield_now();
        }
        append_direct(&mut conn, &key, (3..20).map(event).collect()).unwrap();
        // Row 10's actor edited in place (the trigger dropped first).
        conn.execute_batch(
            "DROP TRIGGER events_no_update;
             UPDATE events SET entry = replace(entry, '\"a9\"', '\"zz\"') WHERE seq = 10;",
        )
        .unwrap();
        let untouched = snapshot(&conn);

        let later = Utc::now() + chrono::Duration::seconds(1);
        let err = prune(&mut conn, &db, &key, &ring, later, 7).unwrap_err();
        assert_refused(&err, 10, FailureKind::Modified);
        assert_eq!(
            err.to_string(),
            "refusing to prune: the events to delete do not verify: seq 10 is modified \
             (the stored chain hash does not match the entry (entry or hash edited)); \
             nothing was cut or deleted, so the evidence stays for `trail verify`"
        );
        assert_eq!(snapshot(&conn), untouched);

        // Before `t`, only rows 1-3 are to go, and they verify.
        let r = prune(&mut conn, &db, &key, &ring, t, 7).unwrap();
        assert_eq!(
            r,
            PruneReport {
                up_to_seq: Some(3),
                deleted: 3,
                event_seq: Some(21)
            }
        );
    }

    #[test]
    fn prune_refuses_rows_sealed_with_a_key_it_was_not_given() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let old = HmacKey::from_bytes([6; 32]);
        let new = HmacKey::from_bytes([7; 32]);
        let mut conn = open_write(&db, Synchronous::Full).unwrap();
        append_direct(&mut conn, &old, (0..5).map(event).collect()).unwrap();
        append_direct(&mut conn, &new, (5..8).map(event).collect()).unwrap();
        let before = snapshot(&conn);
        let later = Utc::now() + chrono::Duration::seconds(1);

        let err = prune(&mut conn, &db, &new, &Keyring::new(new.clone()), later, 100).unwrap_err();
        assert_refused(&err, 1, FailureKind::UnknownKey);
        assert_eq!(snapshot(&conn), before);

        // Given the old key too, every row verifies and goes.
        let mut ring = Keyring::new(new.clone());
        ring.add(old.clone());
        let r = prune(&mut conn, &db, &new, &ring, later, 100).unwrap();
        assert_eq!(
            r,
            PruneReport {
                up_to_seq: Some(8),
                deleted: 8,
                event_seq: Some(9)
            }
        );
    }

    #[test]
    fn an_interrupted_prune_is_finished_by_the_next() {
        let key = HmacKey::from_bytes([4; 32]);
        let (_dir, db, mut conn) = log_of(10, &key);
        // A cut at 6 was recorded, then the process died before deleting.
        let hash = hash_at(&conn, 6);
        conn.execute(
            "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at) VALUES (6, ?1, ?2, ?3, 'x')",
            params![hash, &key.cut_seal(6, &hash)[..], key.id().as_str()],
        )
        .unwrap();
        let r = prune(
            &mut conn,
            &db,
            &key,
            &Keyring::new(key.clone()),
            Utc::now() - chrono::Duration::days(1),
            100,
        )
        .unwrap();
        assert_eq!(
            r,
            PruneReport {
                up_to_seq: Some(6),
                deleted: 6,
                event_seq: Some(11)
            }
        );
        let report = verify_file(&db, &Keyring::new(key), VerifyRequest::default()).unwrap();
        assert!(report.valid, "{report:?}");
        assert_eq!(report.entries_checked, 5);
        // The record says whose rows these were.
        let details: String = conn
            .query_row(
                "SELECT json_extract(entry, '$.details') FROM events WHERE seq = 11",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let details: serde_json::Value = serde_json::from_str(&details).unwrap();
        // Its `cut_at` ("x": not sealed) is not copied into the sealed
        // record.
        assert_eq!(details["finishes_earlier_cut"], true);
        assert!(
            details.get("finishes_cut_recorded_at").is_none(),
            "{details}"
        );
        assert_eq!(details["up_to_seq"], 6);
        assert_eq!(details["deleted"], 6);
    }

    /// A prune killed between its last delete and its `retention.prune`
    /// event left a cut with nothing below it and no record: the next prune
    /// records it (deleting nothing), once.
    #[test]
    fn a_cut_whose_rows_are_gone_but_never_recorded_is_recorded_by_the_next_prune() {
        let key = HmacKey::from_bytes([4; 32]);
        let ring = Keyring::new(key.clone());
        let (_dir, db, mut conn) = log_of(10, &key);
        let later = format_timestamp(Utc::now() + chrono::Duration::seconds(1));
        assert_eq!(
            record_cut(&mut conn, &key, &ring, &later, 10)
                .unwrap()
                .map(|c| c.0),
            Some(10)
        );
        let stop = AtomicBool::new(false);
        assert_eq!(delete_up_to(&mut conn, 10, 100, &stop).unwrap(), 10);
        // A client's event of the same type is not trail's record.
        let lookalike = NewEvent::from_json(&serde_json::json!({
            "event": PRUNE_EVENT, "actor": "someone", "details": {"up_to_seq": 10}
        }))
        .unwrap();
        append_direct(&mut conn, &key, vec![lookalike]).unwrap();

        let long_ago = Utc::now() - chrono::Duration::days(1);
        let r = prune(&mut conn, &db, &key, &ring, long_ago, 100).unwrap();
        assert_eq!(
            r,
            PruneReport {
                up_to_seq: Some(10),
                deleted: 0,
                event_seq: Some(12)
            }
        );
        let (event, details): (String, String) = conn
            .query_row(
                "SELECT event, json_extract(entry, '$.details') FROM events WHERE seq = 12",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(event, PRUNE_EVENT);
        let details: serde_json::Value = serde_json::from_str(&details).unwrap();
        assert_eq!(details["up_to_seq"], 10);
        assert_eq!(details["deleted"], 0);
        assert_eq!(details["finishes_earlier_cut"], true);
        // Recorded once: the prune after it has nothing to do.
        let r = prune(&mut conn, &db, &key, &ring, long_ago, 100).unwrap();
        assert_eq!(r.event_seq, None);
        assert_eq!(count(&conn), 2);
        intact(&db, &ring, 2);
    }

    /// The next event's time never goes below the head's, and that floor is
    /// only taken from an entry the chain hash and the key vouch for. A row
    /// slipped in below an interrupted prune's cut (no key needed) stamped
    /// every later event with its time, and verified intact once deleted
    /// again; so did the head row's entry edited and put back, and a row
    /// added at the head, hashed right but not sealed.
    #[test]
    fn the_head_time_comes_only_from_entries_the_chain_vouches_for() {
        let key = HmacKey::from_bytes([5; 32]);
        let ring = Keyring::new(key.clone());
        let (_dir, db, mut conn) = log_of(10, &key);
        for i in 0..5 {
            append_direct(&mut conn, &key, vec![event(100 + i)]).unwrap();
        }
        let ts_of = |conn: &Connection, seq: i64| -> String {
            conn.query_row("SELECT ts FROM events WHERE seq = ?1", [seq], |r| r.get(0))
                .unwrap()
        };
        let ts15 = ts_of(&conn, 15);
        // As the writer reads it, with its key.
        let head_time = |conn: &Connection| {
            crate::store::writer::read_head_with(conn, Some(&ring), None)
                .unwrap()
                .timestamp
                .map(format_timestamp)
        };

        // A prune interrupted after its first batch: rows 1..12 left, the
        // cut at 15 is the head, and its kept entry gives row 15's time.
        let later = format_timestamp(Utc::now() + chrono::Duration::seconds(1));
        record_cut(&mut conn, &key, &ring, &later, 15).unwrap();
        let (entry, prev): (String, Vec<u8>) = conn
            .query_row(
                "SELECT entry, prev_hash FROM retention_cuts WHERE up_to_seq = 15",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let row14 = hash_at(&conn, 14);
        assert_eq!(prev, row14);
        assert!(
            entry.contains(&format!("\"timestamp\":\"{ts15}\"")),
            "{entry}"
        );
        assert_eq!(
            delete_up_to(&mut conn, 15, 3, &AtomicBool::new(true)).unwrap(),
            3
        );
        assert_eq!(head_time(&conn), Some(ts15.clone()));

        // Forged below the cut, without the key: it steers nothing.
        conn.execute_batch(
            "DROP TRIGGER events_next_seq;
             INSERT INTO events (seq, entry, chain_hash, signature)
             VALUES (13, '{\"timestamp\":\"2999-01-01T00:00:00.000000Z\"}', zeroblob(32), zeroblob(32));",
        )
        .unwrap();
        assert_eq!(head_time(&conn), Some(ts15.clone()));
        // Even hashed right (anyone can: SHA-256 needs no key), with the
        // cut's kept entry removed to make it look like an earlier schema's:
        // rows below a cut may be deleted without a trace, so none counts.
        // No floor: the clock.
        let row12 = hash_at(&conn, 12);
        let forged = r#"{"timestamp":"2999-01-01T00:00:00.000000Z"}"#;
        let linked = crate::domain::chain::link(&row12.try_into().unwrap(), forged.as_bytes());
        conn.execute_batch("DROP TRIGGER events_no_update; DROP TRIGGER retention_cuts_no_update;")
            .unwrap();
        conn.execute(
            "UPDATE events SET entry = ?1, chain_hash = ?2 WHERE seq = 13",
            params![forged, &linked[..]],
        )
        .unwrap();
        conn.execute_batch("UPDATE retention_cuts SET entry = NULL, prev_hash = NULL;")
            .unwrap();
        assert_eq!(head_time(&conn), None);
        conn.execute("DELETE FROM events WHERE seq = 13", [])
            .unwrap();
        assert_eq!(head_time(&conn), None);
        // Shown without a key (GET /v1/head), a cut without its entry has
        // no time either.
        assert_eq!(
            crate::store::writer::read_head(&conn).unwrap().timestamp,
            None
        );

        // Chaining on, then the head row's entry edited to the far future:
        // it no longer links, so it gives no floor.
        let next = append_direct(&mut conn, &key, vec![event(200)]).unwrap();
        assert_eq!(next[0].seq, 16);
        assert!(next[0].timestamp.as_str() < "2999", "{}", next[0].timestamp);
        assert_eq!(head_time(&conn), Some(next[0].timestamp.clone()));
        conn.execute_batch(
            "UPDATE events SET entry = replace(entry, substr(entry, instr(entry, '\"timestamp\":\"') + 13, 4), '2999') WHERE seq = 16;",
        )
        .unwrap();
        assert!(ts_of(&conn, 16).starts_with("2999"));
        assert_eq!(head_time(&conn), None);
        let after = append_direct(&mut conn, &key, vec![event(201)]).unwrap();
        assert!(
            after[0].timestamp.as_str() < "2999",
            "{}",
            after[0].timestamp
        );

        // A plain INSERT at the head (the triggers allow the next seq),
        // hashed right, sealed with nothing: it links, but only the key
        // vouches for a time.
        let forged = r#"{"timestamp":"2999-01-01T00:00:00.000000Z"}"#;
        let hash = crate::domain::chain::link(&after[0].chain_hash, forged.as_bytes());
        conn.execute(
            "INSERT INTO events (seq, entry, chain_hash, signature) VALUES (18, ?1, ?2, zeroblob(32))",
            params![forged, &hash[..]],
        )
        .unwrap();
        assert_eq!(head_time(&conn), None);
        let last = append_direct(&mut conn, &key, vec![event(202)]).unwrap();
        assert_eq!(last[0].seq, 19);
        assert!(last[0].timestamp.as_str() < "2999", "{}", last[0].timestamp);
        let report = verify_file(&db, &ring, VerifyRequest::default()).unwrap();
        assert!(
            !report.valid && report.first_bad_seq == Some(16),
            "{report:?}"
        );
    }

    /// The row a cut seals is checked again under the write lock: verified
    /// in one snapshot, rewritten before the cut (hash recomputed, no key),
    /// it was sealed as it then was, and its time given to every later
    /// event. Refused now, and nothing is recorded.
    #[test]
    fn a_cut_row_rewritten_after_the_check_is_refused() {
        let key = HmacKey::from_bytes([6; 32]);
        let ring = Keyring::new(key.clone());
        let (_dir, _db, mut conn) = log_of(10, &key);
        let later = format_timestamp(Utc::now() + chrono::Duration::seconds(1));
        let row9 = hash_at(&conn, 9);
        // Its own time first (what the generated `ts` column and so the
        // choice of the row to cut read), 2999 last (what a JSON parser
        // keeps).
        let ts10 = ts_at(&conn, 10);
        let forged = format!(
            r#"{{"v":1,"seq":10,"timestamp":"{ts10}","key_id":"{}","timestamp":"2999-01-01T00:00:00.000000Z"}}"#,
            key.id().as_str()
        );
        let linked = crate::domain::chain::link(&row9.try_into().unwrap(), forged.as_bytes());
        let hash10 = hash_at(&conn, 10);
        conn.execute_batch("DROP TRIGGER events_no_update").unwrap();
        conn.execute(
            "UPDATE events SET entry = ?1, chain_hash = ?2 WHERE seq = 10",
            params![forged, &linked[..]],
        )
        .unwrap();
        assert_refused(
            &record_cut(&mut conn, &key, &ring, &later, 10).unwrap_err(),
            10,
            FailureKind::BadSeal,
        );
        // The entry alone edited (its sealed hash put back): it no longer
        // links.
        conn.execute(
            "UPDATE events SET chain_hash = ?1 WHERE seq = 10",
            [&hash10],
        )
        .unwrap();
        assert_cut_refused(&mut conn, &key, &ring, 10, FailureKind::Modified);
    }

    /// A head sealed with a key rotated out (given to the writer as one to
    /// verify with) still sets the floor; an unknown key's does not.
    #[test]
    fn a_head_sealed_with_a_rotated_out_key_keeps_its_time() {
        let old = HmacKey::from_bytes([7; 32]);
        let new = HmacKey::from_bytes([8; 32]);
        let (_dir, _db, conn) = log_of(3, &old);
        let ts = ts_at(&conn, 3);
        let head_time = |ring: &Keyring| {
            crate::store::writer::read_head_with(&conn, Some(ring), None)
                .unwrap()
                .timestamp
                .map(format_timestamp)
        };
        let mut both = Keyring::new(new.clone());
        both.add(old.clone());
        assert_eq!(head_time(&both), Some(ts));
        assert_eq!(head_time(&Keyring::new(new)), None);
    }

    /// What a cut seals or finishes is checked as the verifiers would, under
    /// the write lock: a cut added meanwhile without the key (garbage seal)
    /// is not finished, and a sealed row of another seq replayed at the cut
    /// (the hash before it rewritten so that it links) is not sealed.
    #[test]
    fn a_forged_cut_is_not_finished_and_a_replayed_row_is_not_sealed() {
        let key = HmacKey::from_bytes([9; 32]);
        let ring = Keyring::new(key.clone());
        let later = format_timestamp(Utc::now() + chrono::Duration::seconds(1));

        let (_dir, _db, mut conn) = log_of(10, &key);
        let hash10 = hash_at(&conn, 10);
        conn.execute(
            "INSERT INTO retention_cuts (up_to_seq, chain_hash, signature, key_id, cut_at)
             VALUES (10, ?1, zeroblob(32), ?2, '2026-01-01T00:00:00.000000Z')",
            params![hash10, key.id().as_str()],
        )
        .unwrap();
        assert_refused(
            &record_cut(&mut conn, &key, &ring, &later, 10).unwrap_err(),
            10,
            FailureKind::BadSeal,
        );
        assert_eq!(count(&conn), 10, "nothing deleted");

        let (_dir, _db, mut conn) = log_of(10, &key);
        replay_row_5_at_10(&conn);
        assert_cut_refused(&mut conn, &key, &ring, 10, FailureKind::Modified);
    }

    /// A sealed row of another seq replayed at the head (the hash before it
    /// rewritten so that it links) sets no floor: the verifiers would not
    /// take it there either.
    #[test]
    fn a_sealed_row_replayed_at_the_head_sets_no_time() {
        let key = HmacKey::from_bytes([10; 32]);
        let ring = Keyring::new(key.clone());
        let (_dir, _db, conn) = log_of(10, &key);
        let head_time = |conn: &Connection| {
            crate::store::writer::read_head_with(conn, Some(&ring), None)
                .unwrap()
                .timestamp
        };
        assert!(head_time(&conn).is_some());
        replay_row_5_at_10(&conn);
        assert_eq!(head_time(&conn), None);
    }
}
