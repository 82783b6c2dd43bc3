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

/// A stored value as a table shows it: control and format characters
/// (bidi overrides such as U+202E, zero-width ones) escaped as `\u{…}`, so
/// a value cannot rearrange or hide what a terminal shows. JSON output and
/// exports keep every value exactly.
fn shown(s: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}')
    };
    if !s.chars().any(hidden) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if hidden(c) {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
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
        c.actor.as_deref().map_or_else(|| "-".into(), shown),
        success.to_owned(),
    ];
    let mut line = String::new();
    for (cell, w) in cells.iter().zip(WIDTHS) {
        line.push_str(&format!("{cell:<w$} "));
    }
    line.push_str(&c.resource.as_deref().map_or_else(|| "-".into(), shown));
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

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn a_table_cell_escapes_what_would_rearrange_or_hide_text() {
        assert_eq!(shown("alice"), "alice");
        assert_eq!(shown("Jürgen 李"), "Jürgen 李");
        assert_eq!(shown("admin\u{202e}gpj.exe"), "admin\\u{202e}gpj.exe");
        assert_eq!(
            shown("a\u{200b}b\u{2066}c\u{feff}"),
            "a\\u{200b}b\\u{2066}c\\u{feff}"
        );
        assert_eq!(shown("tab\there\u{1b}[31m"), "tab\\u{9}here\\u{1b}[31m");
    }
}
