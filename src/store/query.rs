//! Reads: filtered pages, streaming scans, summaries, the head.
//!
//! No SQL is built from input (invariant 8): the statements are assembled
//! from the fixed fragments below, with every value bound as a parameter and
//! every column name taken from this file.
//!
//! Each page costs O(log n) plus the page, at any depth:
//! - a time range becomes a `seq` range (timestamps never decrease along
//!   the chain, so two lookups in the `ts` index bound it);
//! - the cursor is a `seq` bound, never an offset;
//! - a filter on one value walks that value's index, which holds `seq` in
//!   order; a filter on a set of values (a list of types, a prefix, a minimum
//!   level) takes the page from each value's index and merges them, instead of
//!   sorting every match.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde::Serialize;

use crate::domain::event::format_timestamp;
use crate::domain::filter::last_timestamp;
use crate::domain::Filter;

use super::error::{Result, StoreError};

/// One stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    pub entry: String,
    pub chain_hash: Vec<u8>,
    pub signature: Vec<u8>,
}

impl StoredEvent {
    /// The event object clients and exports see: the stored entry with
    /// `chain_hash` and `signature` (lowercase hex) appended as its last two
    /// members. Removing them gives back the exact hashed bytes.
    pub fn write_json(&self, out: &mut String) {
        match self.entry.strip_suffix('}') {
            Some(body) if body.len() > 1 => {
                let mut buf = [0u8; 64];
                out.push_str(body);
                out.push_str(",\"chain_hash\":\"");
                out.push_str(
                    std::str::from_utf8(hex_into(&self.chain_hash, &mut buf))
                        .expect("hex is ASCII"),
                );
                out.push_str("\",\"signature\":\"");
                out.push_str(
                    std::str::from_utf8(hex_into(&self.signature, &mut buf)).expect("hex is ASCII"),
                );
                out.push_str("\"}");
            }
            // Not an object: not written by trail. Show it for what it is.
            _ => {
                let _ = write!(
                    out,
                    "{{\"seq\":{},\"entry\":{},\"chain_hash\":\"{}\",\"signature\":\"{}\"}}",
                    self.seq,
                    serde_json::Value::String(self.entry.clone()),
                    hex::encode(&self.chain_hash),
                    hex::encode(&self.signature)
                );
            }
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut s = String::with_capacity(self.entry.len() + 170);
        self.write_json(&mut s);
        serde_json::from_str(&s).unwrap_or(serde_json::Value::Null)
    }

    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
        Ok(StoredEvent {
            seq: r.get::<_, i64>(0)? as u64,
            entry: r.get(1)?,
            chain_hash: r.get(2)?,
            signature: r.get(3)?,
        })
    }
}

/// Lowercase hex of up to 32 bytes into `out`, without allocating (exports
/// write two of these per row).
pub fn hex_into<'a>(bytes: &[u8], out: &'a mut [u8; 64]) -> &'a [u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = bytes.len().min(32);
    for (i, b) in bytes[..n].iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    &out[..2 * n]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

impl Order {
    /// `asc` or `desc`, in any case (as levels and `success`).
    pub fn parse(s: &str) -> std::result::Result<Order, String> {
        match s.to_ascii_lowercase().as_str() {
            "desc" => Ok(Order::Desc),
            "asc" => Ok(Order::Asc),
            _ => Err(format!("must be asc or desc (got {s:?})")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Desc => "desc",
            Order::Asc => "asc",
        }
    }
    fn sql(self) -> &'static str {
        match self {
            Order::Desc => "DESC",
            Order::Asc => "ASC",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub order: Order,
    /// Continue after this `seq` (exclusive), in `order`.
    pub after: Option<u64>,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// True when at least one more event matches after this page.
    pub has_more: bool,
}

const ROW_COLUMNS: &str = "seq, entry, chain_hash, signature";
/// Past this many distinct types under one prefix, a prefix filter falls back
/// to a range condition instead of one index walk per type.
const MAX_EXPANDED_TYPES: usize = 256;

/// A filter turned into SQL fragments and bound values.
struct Plan {
    /// `(column, value)` per arm: the page is taken from each and merged.
    arms: Vec<(&'static str, String)>,
    /// `AND`ed conditions shared by every arm.
    conds: Vec<String>,
    params: Vec<SqlValue>,
}

impl Plan {
    fn cond(&mut self, sql: &str, values: impl IntoIterator<Item = SqlValue>) {
        self.conds.push(sql.to_owned());
        self.params.extend(values);
    }
}

/// Turns a filter into a plan; `None` when nothing can match.
fn plan(
    conn: &Connection,
    filter: &Filter,
    order: Order,
    after: Option<u64>,
) -> Result<Option<Plan>> {
    let mut p = Plan {
        arms: Vec::new(),
        conds: Vec::new(),
        params: Vec::new(),
    };
    // One range on seq, time bounds and cursor folded together: SQLite uses
    // a single lower and a single upper bound of a range, so three separate
    // conditions could leave it walking from the wrong end.
    let Some((mut lo, mut hi)) = seq_range(conn, filter)? else {
        return Ok(None);
    };
    match (after, order) {
        (Some(c), Order::Desc) => {
            hi = hi.min(i64::try_from(c).unwrap_or(i64::MAX).saturating_sub(1))
        }
        (Some(c), Order::Asc) => {
            lo = lo.max(i64::try_from(c).unwrap_or(i64::MAX).saturating_add(1))
        }
        (None, _) => {}
    }
    if lo > hi {
        return Ok(None);
    }
    p.cond(
        "seq BETWEEN ? AND ?",
        [SqlValue::Integer(lo), SqlValue::Integer(hi)],
    );
    if let Some(a) = &filter.actor {
        p.cond("actor = ?", [SqlValue::Text(a.clone())]);
    }
    if let Some(r) = &filter.resource {
        p.cond("resource = ?", [SqlValue::Text(r.clone())]);
    }
    if let Some(s) = filter.success {
        p.cond("success = ?", [SqlValue::Integer(s as i64)]);
    }
    let levels: Vec<String> = filter
        .min_level
        .map(|l| l.at_least().map(|l| l.as_str().to_owned()).collect())
        .unwrap_or_default();

    let mut types: Vec<String> = filter
        .events
        .exact
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    let mut ranges: Vec<(String, String)> = Vec::new();
    for prefix in &filter.events.prefixes {
        let upper = prefix_upper_bound(prefix);
        match distinct_types(conn, prefix, &upper)? {
            Some(found) => types.extend(found),
            None => ranges.push((prefix.clone(), upper)),
        }
    }
    types.sort();
    types.dedup();
    if !filter.events.is_any() && types.is_empty() && ranges.is_empty() {
        return Ok(None);
    }

    if ranges.is_empty() && !types.is_empty() {
        if !levels.is_empty() {
            let marks = placeholders(levels.len());
            p.cond(
                &format!("level IN ({marks})"),
                levels.into_iter().map(SqlValue::Text),
            );
        }
        p.arms = types.into_iter().map(|t| ("event", t)).collect();
    } else {
        if !ranges.is_empty() || !types.is_empty() {
            let mut ors: Vec<String> = Vec::new();
            let mut values = Vec::new();
            for (lo, hi) in ranges {
                ors.push("(event >= ? AND event < ?)".into());
                values.push(SqlValue::Text(lo));
                values.push(SqlValue::Text(hi));
            }
            if !types.is_empty() {
                ors.push(format!("event IN ({})", placeholders(types.len())));
                values.extend(types.into_iter().map(SqlValue::Text));
            }
            p.cond(&format!("({})", ors.join(" OR ")), values);
        }
        p.arms = levels.into_iter().map(|l| ("level", l)).collect();
    }
    Ok(Some(p))
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The smallest string greater than every string starting with `prefix`.
/// Event types are ASCII, so bumping the last byte is enough.
fn prefix_upper_bound(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last += 1;
    }
    String::from_utf8(bytes).expect("ASCII stays ASCII")
}

/// Distinct event types in `[lo, hi)`, found by skipping through the index
/// (one O(log n) probe per type). `None` when there are too many to list.
fn distinct_types(conn: &Connection, lo: &str, hi: &str) -> Result<Option<Vec<String>>> {
    let mut out = Vec::new();
    let mut stmt = conn
        .prepare_cached("SELECT min(event) FROM events WHERE event > ?1 AND event < ?2")
        .map_err(StoreError::sqlite("listing event types"))?;
    let first: Option<String> = conn
        .prepare_cached("SELECT min(event) FROM events WHERE event >= ?1 AND event < ?2")
        .and_then(|mut s| s.query_row([lo, hi], |r| r.get(0)))
        .map_err(StoreError::sqlite("listing event types"))?;
    let mut cur = first;
    while let Some(t) = cur {
        if out.len() == MAX_EXPANDED_TYPES {
            return Ok(None);
        }
        cur = stmt
            .query_row([t.as_str(), hi], |r| r.get(0))
            .map_err(StoreError::sqlite("listing event types"))?;
        out.push(t);
    }
    Ok(Some(out))
}

/// The `seq` range a time filter allows (`since` inclusive, `until`
/// exclusive); `None` when no event falls in it.
fn seq_range(conn: &Connection, filter: &Filter) -> Result<Option<(i64, i64)>> {
    let mut lo = 0i64;
    let mut hi = i64::MAX;
    if let Some(since) = filter.since {
        let found: Option<i64> = conn
            .prepare_cached(
                "SELECT seq FROM events WHERE ts >= ?1 ORDER BY ts ASC, seq ASC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([format_timestamp(since)], |r| r.get(0))
                    .optional()
            })
            .map_err(StoreError::sqlite("finding the start of a time range"))?;
        match found {
            Some(s) => lo = s,
            None => return Ok(None),
        }
    }
    // Past the last timestamp there can be (`until=9999-12-31`): no bound.
    if let Some(until) = filter.until.filter(|u| *u <= last_timestamp()) {
        let found: Option<i64> = conn
            .prepare_cached(
                "SELECT seq FROM events WHERE ts < ?1 ORDER BY ts DESC, seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([format_timestamp(until)], |r| r.get(0))
                    .optional()
            })
            .map_err(StoreError::sqlite("finding the end of a time range"))?;
        match found {
            Some(s) => hi = s,
            None => return Ok(None),
        }
    }
    Ok((lo <= hi).then_some((lo, hi)))
}

/// One page of matching events.
#[tracing::instrument(skip(conn), level = "debug")]
pub fn list(conn: &Connection, filter: &Filter, req: PageRequest) -> Result<Page> {
    let Some(p) = plan(conn, filter, req.order, req.after)? else {
        return Ok(Page {
            events: Vec::new(),
            has_more: false,
        });
    };
    let dir = req.order.sql();
    let want = req.limit + 1;
    let conds = if p.conds.is_empty() {
        "1".to_owned()
    } else {
        p.conds.join(" AND ")
    };
    let mut params: Vec<SqlValue> = Vec::new();
    let sql = if p.arms.is_empty() {
        params.extend(p.params.iter().cloned());
        params.push(SqlValue::Integer(want as i64));
        params.push(SqlValue::Integer(req.offset as i64));
        format!(
            "SELECT {ROW_COLUMNS} FROM events WHERE {conds} ORDER BY seq {dir} LIMIT ? OFFSET ?"
        )
    } else {
        let per_arm = (want + req.offset) as i64;
        let arms: Vec<String> = p
            .arms
            .iter()
            .map(|(col, value)| {
                params.push(SqlValue::Text(value.clone()));
                params.extend(p.params.iter().cloned());
                params.push(SqlValue::Integer(per_arm));
                format!("SELECT seq FROM (SELECT seq FROM events WHERE {col} = ? AND {conds} ORDER BY seq {dir} LIMIT ?)")
            })
            .collect();
        params.push(SqlValue::Integer(want as i64));
        params.push(SqlValue::Integer(req.offset as i64));
        format!(
            "SELECT {ROW_COLUMNS} FROM events WHERE seq IN \
             (SELECT seq FROM ({}) ORDER BY seq {dir} LIMIT ? OFFSET ?) ORDER BY seq {dir}",
            arms.join(" UNION ALL ")
        )
    };
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(StoreError::sqlite("listing events"))?;
    let mut events: Vec<StoredEvent> = stmt
        .query_map(params_from_iter(params), StoredEvent::from_row)
        .and_then(|rows| rows.collect())
        .map_err(StoreError::sqlite("listing events"))?;
    let has_more = events.len() > req.limit;
    events.truncate(req.limit);
    Ok(Page { events, has_more })
}

/// Calls `f` for every matching event in `order`, a page at a time inside
/// one read transaction (one snapshot), so memory stays constant however many
/// rows match. `f` returns `false` to stop early. Returns how many were seen.
pub fn for_each_match<E>(
    conn: &Connection,
    filter: &Filter,
    order: Order,
    mut f: impl FnMut(&StoredEvent) -> std::result::Result<bool, E>,
) -> std::result::Result<u64, E>
where
    E: From<StoreError>,
{
    for_each_page(conn, filter, order, |page| {
        for ev in page {
            if !f(ev)? {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// Like [`for_each_match`], a page (up to 1,000 events) at a time.
pub fn for_each_page<E>(
    conn: &Connection,
    filter: &Filter,
    order: Order,
    mut f: impl FnMut(&[StoredEvent]) -> std::result::Result<bool, E>,
) -> std::result::Result<u64, E>
where
    E: From<StoreError>,
{
    const PAGE: usize = 1000;
    conn.execute_batch("BEGIN")
        .map_err(|e| E::from(StoreError::sqlite("starting a read")(e)))?;
    let result = (|| {
        let mut after = None;
        let mut seen = 0u64;
        loop {
            let page = list(
                conn,
                filter,
                PageRequest {
                    order,
                    after,
                    limit: PAGE,
                    offset: 0,
                },
            )?;
            seen += page.events.len() as u64;
            if !f(&page.events)? {
                return Ok(seen);
            }
            match page.events.last() {
                Some(last) if page.has_more => after = Some(last.seq),
                _ => return Ok(seen),
            }
        }
    })();
    let _ = conn.execute_batch("COMMIT");
    result
}

pub fn get_by_seq(conn: &Connection, seq: u64) -> Result<Option<StoredEvent>> {
    conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM events WHERE seq = ?1"))
        .and_then(|mut s| s.query_row([seq as i64], StoredEvent::from_row).optional())
        .map_err(StoreError::sqlite("reading an event"))
}

pub fn get_by_id(conn: &Connection, id: &str) -> Result<Option<StoredEvent>> {
    conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM events WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], StoredEvent::from_row).optional())
        .map_err(StoreError::sqlite("reading an event"))
}

/// The newest link, as `GET /v1/head` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadInfo {
    pub seq: u64,
    pub chain_hash: String,
    pub timestamp: Option<String>,
}

pub fn head(conn: &Connection) -> Result<HeadInfo> {
    let h = super::writer::read_head(conn).map_err(StoreError::sqlite("reading the chain head"))?;
    Ok(HeadInfo {
        seq: h.seq,
        chain_hash: hex::encode(h.hash),
        timestamp: h.timestamp.map(format_timestamp),
    })
}

pub fn count(conn: &Connection) -> Result<u64> {
    conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(StoreError::sqlite("counting events"))
}

/// Totals over a time range, computed with SQL aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub period: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub total_events: u64,
    pub by_type: BTreeMap<String, u64>,
    pub by_level: BTreeMap<String, u64>,
    pub by_actor: BTreeMap<String, u64>,
    pub success_count: u64,
    pub failure_count: u64,
    pub first_event: Option<String>,
    pub last_event: Option<String>,
}

/// How a summary reads a seq range. Both ways give the same figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SummaryPlan {
    /// A small part of the log: the range of the table, grouped in a
    /// temporary B-tree (rows of the range only).
    Rows,
    /// Much of the log: each column's own index, in its order, so there is
    /// nothing to sort, and index entries (a value and a seq) are read
    /// instead of whole rows. On a 1M-event file this turns a `period=all`
    /// summary from four scans of the table (and a sort of a million rows
    /// per column, up to the connection's cache size in memory each) into
    /// scans of five indexes.
    Indexes,
}

impl SummaryPlan {
    /// The range is "much of the log" when it spans at least an eighth of
    /// the seqs the table holds: an index scan reads every entry of the
    /// index whatever the range, and an entry is a small fraction of a row.
    fn choose(conn: &Connection, lo: i64, hi: i64) -> rusqlite::Result<SummaryPlan> {
        let (first, last): (Option<i64>, Option<i64>) =
            conn.query_row("SELECT min(seq), max(seq) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(SummaryPlan::Rows);
        };
        // A file whose indexes someone dropped still gets its summary.
        let indexes: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN \
             ('events_event', 'events_level', 'events_actor', 'events_success', 'events_ts')",
            [],
            |r| r.get(0),
        )?;
        if indexes != 5 {
            return Ok(SummaryPlan::Rows);
        }
        let span = i128::from(hi.min(last)) - i128::from(lo.max(first)) + 1;
        let all = i128::from(last) - i128::from(first) + 1;
        Ok(if span > 0 && span * 8 >= all {
            SummaryPlan::Indexes
        } else {
            SummaryPlan::Rows
        })
    }

    /// Counts by `col` (one of event, level, actor: each has an index) over
    /// seq ?1..=?2.
    fn grouped_sql(self, col: &str) -> String {
        match self {
            SummaryPlan::Rows => format!(
                "SELECT {col}, count(*) FROM events \
                 WHERE seq BETWEEN ?1 AND ?2 AND {col} IS NOT NULL GROUP BY {col}"
            ),
            SummaryPlan::Indexes => format!(
                "SELECT {col}, count(*) FROM events INDEXED BY events_{col} \
                 WHERE seq BETWEEN ?1 AND ?2 AND {col} IS NOT NULL GROUP BY {col}"
            ),
        }
    }

    /// (rows, successes, failures, first timestamp, last timestamp).
    #[allow(clippy::type_complexity)]
    fn totals(
        self,
        conn: &Connection,
        lo: i64,
        hi: i64,
    ) -> rusqlite::Result<(u64, u64, u64, Option<String>, Option<String>)> {
        match self {
            SummaryPlan::Rows => conn
                .prepare_cached(
                    "SELECT count(*), count(*) FILTER (WHERE success = 1), \
                     count(*) FILTER (WHERE success = 0), min(ts), max(ts) \
                     FROM events WHERE seq BETWEEN ?1 AND ?2",
                )?
                .query_row([lo, hi], |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)? as u64,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                }),
            SummaryPlan::Indexes => {
                let (mut total, mut ok, mut failed) = (0u64, 0u64, 0u64);
                let mut st = conn.prepare_cached(
                    "SELECT success = 1, success = 0, count(*) FROM events \
                     INDEXED BY events_success WHERE seq BETWEEN ?1 AND ?2 GROUP BY success",
                )?;
                let mut rows = st.query([lo, hi])?;
                while let Some(r) = rows.next()? {
                    let n = r.get::<_, i64>(2)? as u64;
                    total += n;
                    if r.get::<_, Option<bool>>(0)? == Some(true) {
                        ok += n;
                    }
                    if r.get::<_, Option<bool>>(1)? == Some(true) {
                        failed += n;
                    }
                }
                let (first, last) = conn
                    .prepare_cached(
                        "SELECT min(ts), max(ts) FROM events INDEXED BY events_ts \
                         WHERE seq BETWEEN ?1 AND ?2",
                    )?
                    .query_row([lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok((total, ok, failed, first, last))
            }
        }
    }
}

#[tracing::instrument(skip(conn), level = "debug")]
pub fn summary(conn: &Connection, period: &str, filter: &Filter) -> Result<Summary> {
    let mut s = Summary {
        period: period.to_owned(),
        since: filter.since.map(format_timestamp),
        until: filter.until.map(crate::domain::filter::inclusive_until),
        total_events: 0,
        by_type: BTreeMap::new(),
        by_level: BTreeMap::new(),
        by_actor: BTreeMap::new(),
        success_count: 0,
        failure_count: 0,
        first_event: None,
        last_event: None,
    };
    conn.execute_batch("BEGIN")
        .map_err(StoreError::sqlite("starting a read"))?;
    let result = (|| {
        let Some((lo, hi)) = seq_range(conn, filter)? else {
            return Ok(());
        };
        let e = StoreError::sqlite("summarising events");
        let how = SummaryPlan::choose(conn, lo, hi).map_err(e)?;
        let grouped = |col: &str| -> rusqlite::Result<BTreeMap<String, u64>> {
            let mut stmt = conn.prepare_cached(&how.grouped_sql(col))?;
            let rows = stmt.query_map([lo, hi], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect()
        };
        s.by_type = grouped("event").map_err(e)?;
        s.by_level = grouped("level").map_err(e)?;
        s.by_actor = grouped("actor").map_err(e)?;
        let (total, ok, failed, first, last) = how
            .totals(conn, lo, hi)
            .map_err(StoreError::sqlite("summarising events"))?;
        s.total_events = total;
        s.success_count = ok;
        s.failure_count = failed;
        s.first_event = first;
        s.last_event = last;
        Ok(())
    })();
    let _ = conn.execute_batch("COMMIT");
    result.map(|()| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NewEvent;
    use crate::store::open_read;

    /// The two ways of summarising give the same figures, and both equal a
    /// count of the rows made by hand, for ranges small and large.
    #[test]
    fn both_summary_plans_count_exactly_the_rows() {
        let levels = ["debug", "info", "warning", "error", "critical"];
        let events: Vec<NewEvent> = (0..400usize)
            .map(|i| {
                let mut v =
                    serde_json::json!({"event": format!("t.{}", i % 7), "level": levels[i % 5]});
                if i % 3 != 0 {
                    v["actor"] = format!("a{}", i % 11).into();
                }
                if i % 4 != 0 {
                    v["success"] = (i % 4 != 1).into();
                }
                NewEvent::from_json(&v).unwrap()
            })
            .collect();
        let (_dir, path) = crate::store::testing::file_with(events);
        let conn = open_read(&path).unwrap();
        let rows: Vec<(i64, serde_json::Value)> = conn
            .prepare("SELECT seq, entry FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    serde_json::from_str(&r.get::<_, String>(1)?).unwrap(),
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plans = [SummaryPlan::Rows, SummaryPlan::Indexes];
        for (lo, hi) in [
            (0, i64::MAX),
            (1, 400),
            (1, 10),
            (37, 260),
            (399, 400),
            (401, 900),
        ] {
            let inside: Vec<&serde_json::Value> = rows
                .iter()
                .filter(|(seq, _)| (lo..=hi).contains(seq))
                .map(|(_, e)| e)
                .collect();
            let by = |field: &str| {
                let mut m = BTreeMap::new();
                for e in &inside {
                    if let Some(v) = e[field].as_str() {
                        *m.entry(v.to_owned()).or_insert(0u64) += 1;
                    }
                }
                m
            };
            let count = |want: bool| {
                inside
                    .iter()
                    .filter(|e| e["success"].as_bool() == Some(want))
                    .count() as u64
            };
            let ts = |e: &&serde_json::Value| e["timestamp"].as_str().unwrap().to_owned();
            let expected_totals = (
                inside.len() as u64,
                count(true),
                count(false),
                inside.iter().map(ts).min(),
                inside.iter().map(ts).max(),
            );
            for plan in plans {
                for (col, field) in [("event", "event"), ("level", "level"), ("actor", "actor")] {
                    let got: BTreeMap<String, u64> = conn
                        .prepare(&plan.grouped_sql(col))
                        .unwrap()
                        .query_map([lo, hi], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
                        .unwrap()
                        .collect::<rusqlite::Result<_>>()
                        .unwrap();
                    assert_eq!(got, by(field), "{plan:?} {col} over {lo}..={hi}");
                }
                assert_eq!(
                    plan.totals(&conn, lo, hi).unwrap(),
                    expected_totals,
                    "{plan:?} totals over {lo}..={hi}"
                );
            }
        }
        // The choice: a range over an eighth of the log reads the indexes.
        assert_eq!(
            SummaryPlan::choose(&conn, 0, i64::MAX).unwrap(),
            SummaryPlan::Indexes
        );
        assert_eq!(
            SummaryPlan::choose(&conn, 1, 50).unwrap(),
            SummaryPlan::Indexes
        );
        assert_eq!(
            SummaryPlan::choose(&conn, 1, 49).unwrap(),
            SummaryPlan::Rows
        );
        assert_eq!(
            SummaryPlan::choose(&conn, 401, 900).unwrap(),
            SummaryPlan::Rows
        );

        // Without one of its indexes, the file is summarised from its rows.
        drop(conn);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("DROP INDEX events_level")
            .unwrap();
        let conn = open_read(&path).unwrap();
        assert_eq!(
            SummaryPlan::choose(&conn, 0, i64::MAX).unwrap(),
            SummaryPlan::Rows
        );
        let s = summary(&conn, "all", &Filter::default()).unwrap();
        assert_eq!(s.total_events, 400);
        assert_eq!(s.by_level.values().sum::<u64>(), 400);
    }
}
