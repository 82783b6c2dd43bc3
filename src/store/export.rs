//! Exports: CSV, one JSON document, or JSON Lines, written row by row to any
//! `Write`, a page of rows in memory at a time whatever the size of the log.
//! The CLI writes to a file; HTTP writes into a channel that streams chunks.

use std::io::Write;

use rusqlite::Connection;
use serde::Deserialize;
use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::domain::Filter;

use super::error::{Result, StoreError};
use super::query::{for_each_match, for_each_page, hex_into, Order, StoredEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> std::result::Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            _ => Err(format!("must be csv, json or jsonl (got {s:?})")),
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Jsonl => "application/x-ndjson",
        }
    }
}

/// The CSV header; a contract (README, issue 2).
pub const CSV_HEADER: [&str; 17] = [
    "seq",
    "id",
    "timestamp",
    "event",
    "level",
    "actor",
    "resource",
    "success",
    "source_ip",
    "user_agent",
    "request_id",
    "occurred_at",
    "details",
    "metadata",
    "key_id",
    "chain_hash",
    "signature",
];

/// OWASP's rule against formula injection: a cell a spreadsheet would read
/// as a formula gets a leading `'`.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

#[derive(Deserialize)]
struct EntryFields<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    level: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    actor: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    resource: Option<std::borrow::Cow<'a, str>>,
    success: Option<bool>,
    #[serde(borrow)]
    source_ip: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    request_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    occurred_at: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    details: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    key_id: Option<std::borrow::Cow<'a, str>>,
}

fn io_err(e: std::io::Error) -> StoreError {
    StoreError::Io {
        context: "writing the export".into(),
        source: e,
    }
}

/// Writes one CSV record for `ev`.
pub fn write_csv_row<W: Write>(w: &mut csv::Writer<W>, ev: &StoredEvent) -> Result<()> {
    let f: EntryFields<'_> = serde_json::from_str(&ev.entry).unwrap_or(EntryFields {
        id: None,
        timestamp: None,
        event: None,
        level: None,
        actor: None,
        resource: None,
        success: None,
        source_ip: None,
        user_agent: None,
        request_id: None,
        occurred_at: None,
        details: None,
        metadata: None,
        key_id: None,
    });
    // Cells borrow from the entry wherever they can: an export of millions
    // of rows should not allocate per cell.
    fn text<'a>(v: &'a Option<Cow<'_, str>>) -> Cow<'a, str> {
        v.as_deref().map(neutralise).unwrap_or_default()
    }
    fn raw(v: Option<&RawValue>) -> Cow<'_, str> {
        v.map(|r| neutralise(r.get())).unwrap_or_default()
    }
    let (mut hash_hex, mut sig_hex) = ([0u8; 64], [0u8; 64]);
    let success = match f.success {
        Some(true) => "true",
        Some(false) => "false",
        None => "",
    };
    let csv_err = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(io) => io_err(io),
        other => StoreError::Io {
            context: "writing the export".into(),
            source: std::io::Error::other(format!("{other:?}")),
        },
    };
    w.write_field(ev.seq.to_string()).map_err(csv_err)?;
    for cell in [
        &f.id,
        &f.timestamp,
        &f.event,
        &f.level,
        &f.actor,
        &f.resource,
    ] {
        w.write_field(text(cell).as_bytes()).map_err(csv_err)?;
    }
    w.write_field(success).map_err(csv_err)?;
    for cell in [&f.source_ip, &f.user_agent, &f.request_id, &f.occurred_at] {
        w.write_field(text(cell).as_bytes()).map_err(csv_err)?;
    }
    w.write_field(raw(f.details).as_bytes()).map_err(csv_err)?;
    w.write_field(raw(f.metadata).as_bytes()).map_err(csv_err)?;
    w.write_field(text(&f.key_id).as_bytes()).map_err(csv_err)?;
    w.write_field(hex_into(&ev.chain_hash, &mut hash_hex))
        .map_err(csv_err)?;
    w.write_field(hex_into(&ev.signature, &mut sig_hex))
        .map_err(csv_err)?;
    w.write_record(None::<&[u8]>).map_err(csv_err)
}

/// CSV records (no header) for `rows`.
fn csv_chunk(rows: &[StoredEvent]) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::with_capacity(rows.len() * 700));
    for ev in rows {
        write_csv_row(&mut w, ev)?;
    }
    w.into_inner()
        .map_err(|e| io_err(std::io::Error::other(e.to_string())))
}

/// Page cache of a connection while it exports, in KiB: a scan reads each
/// page once, so a reader's usual cache (32 MiB) would only hold memory.
const SCAN_CACHE_KIB: i64 = 2048;

/// Gives the connection a small page cache for a scan, and its own back
/// when dropped (pool connections serve page reads afterwards). Lowering the
/// size frees the cached pages above it.
struct ScanCache<'c> {
    conn: &'c Connection,
    before: Option<i64>,
}

impl<'c> ScanCache<'c> {
    fn new(conn: &'c Connection) -> Self {
        let before = conn
            .query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0))
            .ok();
        if before.is_some() {
            // A pragma that fails leaves the cache as it was: no harm.
            let _ = conn.execute_batch(&format!("PRAGMA cache_size = -{SCAN_CACHE_KIB}"));
        }
        ScanCache { conn, before }
    }
}

impl Drop for ScanCache<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.before {
            let _ = self.conn.execute_batch(&format!("PRAGMA cache_size = {n}"));
        }
    }
}

/// Streams every event matching `filter` to `out`; returns how many.
pub fn export<W: Write>(
    conn: &Connection,
    filter: &Filter,
    order: Order,
    format: Format,
    generated_at: &str,
    out: W,
) -> Result<u64> {
    let _cache = ScanCache::new(conn);
    match format {
        Format::Csv => {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
            let mut header = csv::Writer::from_writer(Vec::new());
            header
                .write_record(CSV_HEADER)
                .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
            let header = header
                .into_inner()
                .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
            out.write_all(&header).map_err(io_err)?;
            // Formatting is the cost (JSON parsing, quoting), not reading:
            // each page is formatted in halves on two threads, then written
            // in order. Memory stays at one page and its text.
            let n = for_each_page(conn, filter, order, |page| {
                let (a, b) = page.split_at(page.len() / 2);
                let (ta, tb) = std::thread::scope(|s| {
                    let ha = s.spawn(|| csv_chunk(a));
                    let tb = csv_chunk(b);
                    (ha.join().expect("csv thread"), tb)
                });
                out.write_all(&ta?).map_err(io_err)?;
                out.write_all(&tb?).map_err(io_err)?;
                Ok::<_, StoreError>(true)
            })?;
            out.flush().map_err(io_err)?;
            Ok(n)
        }
        Format::Jsonl => {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
            let mut line = String::with_capacity(1024);
            let n = for_each_match(conn, filter, order, |ev| {
                line.clear();
                ev.write_json(&mut line);
                line.push('\n');
                out.write_all(line.as_bytes()).map_err(io_err)?;
                Ok::<_, StoreError>(true)
            })?;
            out.flush().map_err(io_err)?;
            Ok(n)
        }
        Format::Json => {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
            let head = format!(
                "{{\"generated_at\":{},\"filters\":{},\"events\":[",
                serde_json::Value::String(generated_at.to_owned()),
                filter.describe()
            );
            out.write_all(head.as_bytes()).map_err(io_err)?;
            let mut item = String::with_capacity(1024);
            let mut first = true;
            let n = for_each_match(conn, filter, order, |ev| {
                item.clear();
                if !first {
                    item.push(',');
                }
                first = false;
                ev.write_json(&mut item);
                out.write_all(item.as_bytes()).map_err(io_err)?;
                Ok::<_, StoreError>(true)
            })?;
            out.write_all(format!("],\"count\":{n}}}\n").as_bytes())
                .map_err(io_err)?;
            out.flush().map_err(io_err)?;
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NewEvent;
    use crate::store::open_read;

    /// Accepts `ok` bytes, then fails, as a client that goes away.
    struct Breaks {
        ok: usize,
    }

    impl Write for Breaks {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.ok < buf.len() {
                return Err(std::io::Error::other("client gone"));
            }
            self.ok -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_export_gives_the_connection_its_page_cache_back_finished_or_not() {
        let events = (0..3000)
            .map(|n| {
                NewEvent::from_json(&serde_json::json!({"event": "e", "details": {"n": n}}))
                    .unwrap()
            })
            .collect();
        let (_dir, path) = crate::store::testing::file_with(events);
        let conn = open_read(&path).unwrap();
        let cache = |c: &Connection| c.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0));
        assert_eq!(cache(&conn).unwrap(), -32768);

        let mut out = Vec::new();
        let n = export(
            &conn,
            &Filter::default(),
            Order::Asc,
            Format::Csv,
            "t",
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 3000);
        assert_eq!(cache(&conn).unwrap(), -32768);

        let err = export(
            &conn,
            &Filter::default(),
            Order::Asc,
            Format::Jsonl,
            "t",
            Breaks { ok: 100_000 },
        );
        assert!(matches!(err, Err(StoreError::Io { .. })), "{err:?}");
        assert_eq!(cache(&conn).unwrap(), -32768);

        // While it runs, the cache is the small one.
        let probe = ScanCache::new(&conn);
        assert_eq!(cache(&conn).unwrap(), -SCAN_CACHE_KIB);
        drop(probe);
        assert_eq!(cache(&conn).unwrap(), -32768);
    }
}
