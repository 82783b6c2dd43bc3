//! Verification over the database file: reads rows and feeds the core's
//! [`Checker`]. The range is cut into chunks checked on parallel threads,
//! each with its own read-only connection; the failure with the lowest `seq`
//! wins, so the verdict is the same as a single pass in `seq` order.
//!
//! Before anything else, a row stored below `seq` 1 is `broken_link` at 0:
//! no chain starts there (an edited `seq` could also turn into a range
//! without end).
//!
//! After retention, the chain starts from the newest cut: its own seal is
//! checked first (`bad_seal` or `unknown_key` at `up_to_seq`). Rows still at
//! or below it (a prune deletes them in batches after recording the cut,
//! from the cut down, and finishes an interrupted one before cutting again)
//! must be a run that starts at the genesis or right after an older cut
//! (whose seal is checked and whose hash the first row links to), each row
//! checked as usual, and that ends on the cut's hash if it reaches the cut:
//! else `broken_link` at the first row (it cannot be tied to the chain),
//! `missing` at the first absent `seq`, or `modified` at the cut. A cut
//! copied from another log sealed with the same key therefore does not hide
//! this log's rows, and no row can be slipped in below the cut.
//! Then row `up_to_seq + 1` links to the cut's chain hash.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};

use crate::domain::verify::check_anchor;
use crate::domain::{Anchor, Checker, Failure, FailureKind, Hash, Keyring, Report, Row, GENESIS};

use super::db::open_read;
use super::error::{Result, StoreError};
use super::retention::{cut_at, newest_cut, Cut};

#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyRequest {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub anchor: Option<Anchor>,
    /// Hashes and links only, no seals (nor the cut's): a log whose key is
    /// lost.
    pub skip_seals: bool,
}

/// Verifies the chain in the file at `path`.
#[tracing::instrument(skip(keys))]
pub fn verify_file(path: &Path, keys: &Keyring, req: VerifyRequest) -> Result<Report> {
    // The chunks are read after the head and the cut, in snapshots of their
    // own: a prune committing in between deletes rows the run expected, which
    // reads as `missing`. When the newest cut moved meanwhile, run again.
    let mut attempt = 1;
    loop {
        let (report, cut_seq) = verify_once(path, keys, req)?;
        if report.kind == Some(FailureKind::Missing) && attempt < 3 {
            let conn = open_read(path)?;
            let now = newest_cut(&conn)?.map_or(0, |c| c.up_to_seq);
            if now != cut_seq {
                attempt += 1;
                continue;
            }
        }
        return Ok(report);
    }
}

/// Verifies the newest event alone (its hash, its link, its seal; the
/// newest cut's seal too): what a writer is about to chain after. `None`
/// for a log with no events (or no file yet).
pub fn check_newest(path: &Path, keys: &Keyring) -> Result<Option<Report>> {
    let conn = match open_read(path) {
        Ok(c) => c,
        // No file yet, or one another trail is creating right now (its
        // migrations not yet applied): nothing to chain after.
        Err(StoreError::NoDatabase(_) | StoreError::NotTrail { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let head = super::query::head(&conn)?.seq;
    let cut = newest_cut(&conn)?;
    drop(conn);
    if head == 0 {
        return Ok(None);
    }
    // The head is the newest cut (a prune is deleting below it): what comes
    // next chains after the cut's hash, which its seal vouches for. The rows
    // still below it are a full verification's to check, not every start's
    // (there may be millions).
    if let Some(cut) = cut.filter(|c| c.up_to_seq == head) {
        let failure = check_cut(keys, &cut);
        return Ok(Some(Report::new(0, failure, head, &cut.link_hash())));
    }
    let req = VerifyRequest {
        from: Some(head),
        to: Some(head),
        ..VerifyRequest::default()
    };
    verify_file(path, keys, req).map(Some)
}

/// One verification run; also answers the cut it started from.
fn verify_once(path: &Path, keys: &Keyring, req: VerifyRequest) -> Result<(Report, u64)> {
    let conn = open_read(path)?;
    conn.execute_batch("BEGIN")
        .map_err(StoreError::sqlite("starting a read"))?;
    let cut = newest_cut(&conn)?;
    let (cut_seq, cut_hash) = cut
        .as_ref()
        .map_or((0, GENESIS), |c| (c.up_to_seq, c.link_hash()));
    let head = chain_head(&conn, cut_seq, cut_hash)?;
    let stray = any_row_below_one(&conn)?;
    let _ = conn.execute_batch("COMMIT");
    let report = |checked, failure| Ok((Report::new(checked, failure, head.0, &head.1), cut_seq));
    if stray {
        return report(
            0,
            Some(Failure {
                seq: 0,
                kind: FailureKind::BrokenLink,
            }),
        );
    }
    // Rows after a cut are only as trustworthy as the cut they link to.
    if let Some(failure) = cut
        .as_ref()
        .filter(|_| !req.skip_seals)
        .and_then(|c| check_cut(keys, c))
    {
        return report(0, Some(failure));
    }
    let mut checked = 0;
    let covers_cut =
        cut_seq > 0 && req.from.is_none_or(|f| f <= cut_seq) && req.to.is_none_or(|t| t >= cut_seq);
    if covers_cut {
        let (n, failure) = check_below_cut(&conn, keys, cut_seq, cut_hash, req.skip_seals)?;
        checked += n;
        if failure.is_some() {
            return report(checked, failure);
        }
    }

    let start = req.from.unwrap_or(1).max(cut_seq + 1);
    let end = req.to.unwrap_or(u64::MAX).min(head.0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mut chunks = Vec::new();
    if start <= end {
        let total = end - start + 1;
        let n = if total < 10_000 { 1 } else { threads };
        let size = total.div_ceil(n);
        let mut a = start;
        loop {
            let b = a.saturating_add(size - 1).min(end);
            chunks.push((a, b));
            if b == end {
                break;
            }
            a = b + 1;
        }
    }
    let results: Vec<Result<(u64, Option<Failure>)>> = if chunks.len() == 1 {
        vec![check_chunk(
            &conn,
            keys,
            chunks[0],
            cut_seq,
            cut_hash,
            req.skip_seals,
        )]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|&chunk| {
                    s.spawn(move || {
                        let conn = open_read(path)?;
                        check_chunk(&conn, keys, chunk, cut_seq, cut_hash, req.skip_seals)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("verify thread panicked"))
                .collect()
        })
    };
    let mut failure: Option<Failure> = None;
    for r in results {
        let (n, f) = r?;
        if failure.is_none() {
            checked += n;
            failure = f;
        }
    }
    if failure.is_none() {
        // An anchor below the newest cut was pruned away: nothing is left
        // to compare it with (as scripts/verify_chain.py).
        if let Some(anchor) = req.anchor.filter(|a| a.seq >= cut_seq) {
            let at = hash_at(&conn, anchor.seq, cut_seq, cut_hash)?;
            failure = check_anchor(&anchor, head.0, at);
        }
    }
    report(checked, failure)
}

/// A stored hash as verification reads it: the 32 bytes of a BLOB or a
/// TEXT value (as scripts/verify_chain.py reads them), else nothing.
fn hash_of(v: ValueRef<'_>) -> Option<Hash> {
    v.as_bytes().ok().and_then(|b| b.try_into().ok())
}

/// The newest row at `seq` 1 or above (its hash as [`hash_of`] reads it, or
/// zeros), unless the newest cut is higher (a prune deleting from the cut
/// down has taken the cut's own row): then the cut; with neither, the
/// genesis.
fn chain_head(conn: &Connection, cut_seq: u64, cut_hash: Hash) -> Result<(u64, Hash)> {
    conn.prepare_cached(
        "SELECT seq, chain_hash FROM events WHERE seq >= 1 ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut s| {
        s.query_row([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                hash_of(r.get_ref(1)?).unwrap_or(GENESIS),
            ))
        })
        .optional()
    })
    .map(|h| match h {
        Some((seq, hash)) if seq >= cut_seq => (seq, hash),
        _ => (cut_seq, cut_hash),
    })
    .map_err(StoreError::sqlite("reading the chain head"))
}

/// A row, or a retention cut, stored below seq 1: no chain starts there
/// (and a cut's seq read as unsigned would be a start past every row).
fn any_row_below_one(conn: &Connection) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM events WHERE seq < 1)
             OR EXISTS (SELECT 1 FROM retention_cuts WHERE up_to_seq < 1)",
        [],
        |r| r.get(0),
    )
    .map_err(StoreError::sqlite("reading events to verify"))
}

/// The rows still at or below the newest cut (see the module
/// documentation): a run that starts at the genesis or right after an older
/// cut, and ends at the newest cut with its hash or below it.
fn check_below_cut(
    conn: &Connection,
    keys: &Keyring,
    cut_seq: u64,
    cut_hash: Hash,
    skip_seals: bool,
) -> Result<(u64, Option<Failure>)> {
    let e = || StoreError::sqlite("reading events to verify");
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM events WHERE seq BETWEEN 1 AND ?1 ORDER BY seq"
        ))
        .map_err(e())?;
    let mut rows = stmt.query([cut_seq as i64]).map_err(e())?;
    let mut checker: Option<Checker<'_>> = None;
    while let Some(r) = rows.next().map_err(e())? {
        let row = row_of(r)?;
        let c = match checker.as_mut() {
            Some(c) => c,
            None => {
                // What a prune leaves starts where the prune before it
                // stopped, so the first row links to something known: the
                // genesis, or that older cut (sealed). A run starting
                // anywhere else cannot be tied to the chain: its first
                // entry could be anything (a forged row given the cut's
                // hash and a seal copied from an export passes every other
                // check).
                let start = match row.seq {
                    1 => GENESIS,
                    first => match cut_at(conn, first - 1)? {
                        Some(older) => {
                            if let Some(f) = check_cut(keys, &older).filter(|_| !skip_seals) {
                                return Ok((0, Some(f)));
                            }
                            older.link_hash()
                        }
                        None => {
                            return Ok((
                                0,
                                Some(Failure {
                                    seq: first,
                                    kind: FailureKind::BrokenLink,
                                }),
                            ))
                        }
                    },
                };
                let c = Checker::new(keys, row.seq, start);
                checker.insert(if skip_seals { c.without_seals() } else { c })
            }
        };
        if let Err(f) = c.check(row) {
            return Ok((c.checked(), Some(f)));
        }
        if let Some(f) = columns_disagree(conn, r, row)? {
            return Ok((c.checked() - 1, Some(f)));
        }
    }
    let Some(c) = checker else {
        return Ok((0, None));
    };
    // A run that reaches the cut ends on its hash. One that stops below it
    // is a prune's, stopped part-way: it deletes from the cut down.
    if c.next_seq() > cut_seq && c.last_hash() != cut_hash {
        return Ok((
            c.checked(),
            Some(Failure {
                seq: cut_seq,
                kind: FailureKind::Modified,
            }),
        ));
    }
    Ok((c.checked(), None))
}

/// What verification reads of a row: the chained columns, then the
/// generated ones (see [`columns_disagree`]).
const ROW_COLUMNS: &str =
    "seq, entry, chain_hash, signature, id, ts, event, level, actor, resource, success, source_ip";

/// `modified` when a generated column of the row (read as
/// [`ROW_COLUMNS`]) does not hold what `json_extract` takes from its entry.
/// SQLite computes them when a row is written, so they can only disagree if
/// someone rewrote the table's schema to change them; every filter, SQL
/// query and summary would then show the forged value beside an entry that
/// verifies. Called only for a row whose entry verified, so the entry is
/// trail's own serialization: its column members come first, in the chain
/// format's order, and [`generated_agree`] reads just them. A row it cannot
/// vouch for is asked of SQLite's own `json_extract`, so the verdict is
/// exactly SQLite's.
fn columns_disagree(
    conn: &Connection,
    r: &rusqlite::Row<'_>,
    row: Row<'_>,
) -> Result<Option<Failure>> {
    if generated_agree(r, row.entry) == Some(true) {
        return Ok(None);
    }
    let agree: Option<bool> = conn
        .prepare_cached(
            // `+column`: the value as stored, without the column's type
            // affinity (with it, an actor stored as the integer 7 would
            // compare equal to the entry's "007").
            "SELECT +id IS json_extract(entry, '$.id') AND +ts IS json_extract(entry, '$.timestamp') \
             AND +event IS json_extract(entry, '$.event') AND +level IS json_extract(entry, '$.level') \
             AND +actor IS json_extract(entry, '$.actor') AND +resource IS json_extract(entry, '$.resource') \
             AND +success IS json_extract(entry, '$.success') \
             AND +source_ip IS json_extract(entry, '$.source_ip') \
             FROM events WHERE seq = ?1",
        )
        .and_then(|mut s| s.query_row([row.seq as i64], |r| r.get(0)))
        .map_err(StoreError::sqlite("reading events to verify"))?;
    Ok((agree != Some(true)).then_some(Failure {
        seq: row.seq,
        kind: FailureKind::Modified,
    }))
}

/// Whether the generated columns (`r`'s columns 4 to 11) hold the members
/// at the start of `entry`: `{"v":1,"seq":N,"id","timestamp","event","level"`
/// then `actor`, `resource`, `success`, `source_ip` when present. `None`
/// when the entry does not start that way or a string has an escape in it.
fn generated_agree(r: &rusqlite::Row<'_>, entry: &[u8]) -> Option<bool> {
    let mut rest = entry.strip_prefix(b"{\"v\":1,\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    rest = &rest[digits..];
    let col = |i: usize| r.get_ref(i).ok();
    let mut agree = true;
    for (i, name) in [
        (4, "id"),
        (5, "timestamp"),
        (6, "event"),
        (7, "level"),
        (8, "actor"),
        (9, "resource"),
        (10, "success"),
        (11, "source_ip"),
    ] {
        let member = rest
            .strip_prefix(b",\"")
            .and_then(|m| m.strip_prefix(name.as_bytes()))
            .and_then(|m| m.strip_prefix(b"\":"));
        let have = col(i)?;
        let Some(value) = member else {
            // id to level are always there; the others may be absent.
            if i < 8 {
                return None;
            }
            agree &= matches!(have, ValueRef::Null);
            continue;
        };
        if name == "success" {
            let (b, after) = if let Some(a) = value.strip_prefix(b"true") {
                (1, a)
            } else {
                (0, value.strip_prefix(b"false")?)
            };
            agree &= matches!(have, ValueRef::Integer(v) if v == b);
            rest = after;
            continue;
        }
        let text = value.strip_prefix(b"\"")?;
        let end = text.iter().position(|&b| b == b'"' || b == b'\\')?;
        if text[end] != b'"' {
            return None;
        }
        agree &= matches!(have, ValueRef::Text(t) if t == &text[..end]);
        rest = &text[end + 1..];
    }
    // What follows must be a later member of the layout (or the end), so a
    // column member cannot come again further on.
    const LATER: [&[u8]; 7] = [
        b",\"user_agent\":",
        b",\"request_id\":",
        b",\"occurred_at\":",
        b",\"details\":",
        b",\"metadata\":",
        b",\"key_id\":",
        b"}",
    ];
    if !LATER.iter().any(|m| rest.starts_with(m)) {
        return None;
    }
    Some(agree)
}

fn row_of<'r>(r: &'r rusqlite::Row<'_>) -> Result<Row<'r>> {
    let get = |i| {
        r.get_ref(i)
            .map_err(StoreError::sqlite("reading events to verify"))
    };
    Ok(Row {
        seq: get(0)?.as_i64().unwrap_or(0) as u64,
        entry: get(1)?.as_bytes().unwrap_or_default(),
        chain_hash: get(2)?.as_bytes().unwrap_or_default(),
        signature: get(3)?.as_bytes().unwrap_or_default(),
    })
}

/// Checks the seal of a retention cut, which binds its `up_to_seq` and
/// chain hash (see [`crate::domain::HmacKey::cut_seal`]).
fn check_cut(keys: &Keyring, cut: &Cut) -> Option<Failure> {
    let kind = match keys.get(&cut.key_id) {
        None => FailureKind::UnknownKey,
        Some(key) if !key.check_cut(cut.up_to_seq, &cut.chain_hash, &cut.signature) => {
            FailureKind::BadSeal
        }
        Some(_) => return None,
    };
    Some(Failure {
        seq: cut.up_to_seq,
        kind,
    })
}

/// Checks `[a, b]`; returns the rows checked and the first failure.
fn check_chunk(
    conn: &Connection,
    keys: &Keyring,
    (a, b): (u64, u64),
    cut_seq: u64,
    cut_hash: Hash,
    skip_seals: bool,
) -> Result<(u64, Option<Failure>)> {
    let e = StoreError::sqlite("reading events to verify");
    conn.execute_batch("BEGIN").map_err(e)?;
    let result = (|| {
        let prev: Option<(i64, Hash)> = conn
            .prepare_cached("SELECT seq, chain_hash FROM events WHERE seq < ?1 AND seq > ?2 ORDER BY seq DESC LIMIT 1")
            .and_then(|mut s| {
                s.query_row([a as i64, cut_seq as i64], |r| {
                    Ok((r.get(0)?, hash_of(r.get_ref(1)?).unwrap_or(GENESIS)))
                })
                .optional()
            })
            .map_err(StoreError::sqlite("reading events to verify"))?;
        let (prev_seq, prev_hash) = match prev {
            Some((s, h)) => (s as u64, h),
            None => (cut_seq, cut_hash),
        };
        if prev_seq + 1 != a {
            return Ok((
                0,
                Some(Failure {
                    seq: prev_seq + 1,
                    kind: FailureKind::Missing,
                }),
            ));
        }
        let mut checker = Checker::new(keys, a, prev_hash);
        if skip_seals {
            checker = checker.without_seals();
        }
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM events WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq"
            ))
            .map_err(StoreError::sqlite("reading events to verify"))?;
        let mut rows = stmt
            .query([a as i64, b as i64])
            .map_err(StoreError::sqlite("reading events to verify"))?;
        while let Some(r) = rows
            .next()
            .map_err(StoreError::sqlite("reading events to verify"))?
        {
            let row = row_of(r)?;
            if let Err(f) = checker.check(row) {
                return Ok((checker.checked(), Some(f)));
            }
            if let Some(f) = columns_disagree(conn, r, row)? {
                return Ok((checker.checked() - 1, Some(f)));
            }
        }
        Ok((checker.checked(), checker.finish(b).err()))
    })();
    let _ = conn.execute_batch("COMMIT");
    result
}

fn hash_at(conn: &Connection, seq: u64, cut_seq: u64, cut_hash: Hash) -> Result<Option<Hash>> {
    if seq == cut_seq {
        return Ok(Some(cut_hash));
    }
    let h: Option<Option<Hash>> = conn
        .prepare_cached("SELECT chain_hash FROM events WHERE seq = ?1")
        .and_then(|mut s| {
            s.query_row([seq as i64], |r| Ok(hash_of(r.get_ref(0)?)))
                .optional()
        })
        .map_err(StoreError::sqlite("reading the anchor row"))?;
    Ok(h.flatten())
}
