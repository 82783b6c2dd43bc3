//! Human-readable event tables.

use std::io::{self, Write};

use serde::Deserialize;

use crate::store::StoredEvent;

#[derive(Deserialize, Default)]
struct Cols {
    timestamp: Option<String>,
    event: Option<String>,
    level: Option<String>,
    actor: Option<String>,
    resource: Option<String>,
    success: Option<bool>,
}

const WIDTHS: [usize; 6] = [8, 27, 8, 28, 20, 7];

pub fn write_header(out: &mut impl Write, _tty: bool) -> io::Result<()> {
    let names = ["SEQ", "TIMESTAMP", "LEVEL", "EVENT", "ACTOR", "SUCCESS"];
    let mut line = String::new();
    for (n, w) in names.iter().zip(WIDTHS) {
        line.push_str(&format!("{n:<w$} "));
    }
    line.push_str("RESOURCE");
    writeln!(out, "{}", line.trim_end())
}

pub fn write_line(out: &mut impl Write, ev: &StoredEvent) -> io::Result<()> {
    let c: Cols = serde_json::from_str(&ev.entry).unwrap_or_default();
    let success = match c.success {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let cells = [
        ev.seq.to_string(),
        c.timestamp.unwrap_or_default(),
        c.level.unwrap_or_default(),
        c.event.unwrap_or_default(),
        c.actor.unwrap_or_else(|| "-".into()),
        success.to_owned(),
    ];
    let mut line = String::new();
    for (cell, w) in cells.iter().zip(WIDTHS) {
        line.push_str(&format!("{cell:<w$} "));
    }
    line.push_str(c.resource.as_deref().unwrap_or("-"));
    writeln!(out, "{}", line.trim_end())
}

pub fn write(out: &mut impl Write, events: &[StoredEvent], tty: bool) -> io::Result<()> {
    if events.is_empty() {
        return writeln!(out, "no matching events");
    }
    write_header(out, tty)?;
    for ev in events {
        write_line(out, ev)?;
    }
    Ok(())
}
