//! Query filters, validated before any SQL sees them.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::error::{FieldError, InputError};
use super::event::{format_timestamp, parse_rfc3339_exact, truncate_micros, EventType, Level};

/// Most types and prefixes one filter may list: each is a term of the query.
pub const MAX_EVENT_TERMS: usize = 100;

/// Which event types match: exact names, and prefixes (`auth.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMatch {
    pub exact: Vec<EventType>,
    /// Prefixes without the `*`; never empty strings (`*` alone matches all).
    pub prefixes: Vec<String>,
}

impl EventMatch {
    /// `a`, `a,b,c`, `auth.*`, or a mix: `auth.*,user.login`.
    pub fn parse(s: &str) -> Result<EventMatch, String> {
        let mut m = EventMatch::default();
        let n = s.split(',').count();
        if n > MAX_EVENT_TERMS {
            return Err(format!(
                "at most {MAX_EVENT_TERMS} types or prefixes (got {n})"
            ));
        }
        let mut all = false;
        for item in s.split(',') {
            let item = item.trim();
            if let Some(prefix) = item.strip_suffix('*') {
                if prefix.is_empty() {
                    // Matches every type; the other items are still checked.
                    all = true;
                    continue;
                }
                EventType::parse(prefix).map_err(|e| format!("{item:?}: {e}"))?;
                m.prefixes.push(prefix.to_owned());
            } else {
                m.exact
                    .push(EventType::parse(item).map_err(|e| format!("{item:?}: {e}"))?);
            }
        }
        if all {
            return Ok(EventMatch::default());
        }
        m.exact.sort();
        m.exact.dedup();
        Ok(m)
    }

    pub fn is_any(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

/// A validated set of filters. `since` is inclusive, `until` exclusive (a
/// date-only `until` means through the end of that day; a date-time `until`
/// is inclusive and stored here plus one microsecond).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub events: EventMatch,
    pub min_level: Option<Level>,
    pub actor: Option<String>,
    pub resource: Option<String>,
    pub success: Option<bool>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The raw text of each filter, as a CLI flag or query parameter gave it.
#[derive(Debug, Clone, Default)]
pub struct FilterInput<'a> {
    pub event: Option<&'a str>,
    pub level: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub success: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
}

impl Filter {
    /// Parses each filter, reporting every bad one under its own name.
    pub fn parse(input: &FilterInput<'_>) -> Result<Filter, InputError> {
        let mut errors = Vec::new();
        let mut f = Filter::default();
        if let Some(s) = input.event {
            match EventMatch::parse(s) {
                Ok(m) => f.events = m,
                Err(e) => errors.push(FieldError::new("event", e)),
            }
        }
        if let Some(s) = input.level {
            match Level::parse(s) {
                Ok(Level::Debug) => {}
                Ok(l) => f.min_level = Some(l),
                Err(e) => errors.push(FieldError::new("level", e)),
            }
        }
        for (name, raw, slot) in [
            ("actor", input.actor, &mut f.actor),
            ("resource", input.resource, &mut f.resource),
        ] {
            if let Some(s) = raw {
                match check_plain(s) {
                    Ok(()) => *slot = Some(s.to_owned()),
                    Err(e) => errors.push(FieldError::new(name, e)),
                }
            }
        }
        if let Some(s) = input.success {
            // Any case, as `level` is.
            match s.to_ascii_lowercase().as_str() {
                "true" | "1" => f.success = Some(true),
                "false" | "0" => f.success = Some(false),
                _ => errors.push(FieldError::new(
                    "success",
                    format!("must be true or false (or 1 or 0) (got {s:?})"),
                )),
            }
        }
        let mut instants = (None, None);
        if let Some(s) = input.since {
            match parse_instant(s, false) {
                // Rounded up past the last microsecond a timestamp can have.
                Ok(_) if parse_bound(s, false).is_ok_and(|b| b > last_timestamp()) => {
                    errors.push(FieldError::new(
                        "since",
                        format!(
                            "must be at most {} (the last timestamp there can be)",
                            format_timestamp(last_timestamp())
                        ),
                    ))
                }
                Ok(t) => (instants.0, f.since) = (Some(t), parse_bound(s, false).ok()),
                Err(e) => errors.push(FieldError::new("since", e)),
            }
        }
        if let Some(s) = input.until {
            match parse_instant(s, true) {
                Ok(t) => (instants.1, f.until) = (Some(t), parse_bound(s, true).ok()),
                Err(e) => errors.push(FieldError::new("until", e)),
            }
        }
        // Reversed is an error; a range no timestamp falls in (within one
        // microsecond) is not, it simply matches nothing.
        if let (Some(a), Some(b)) = instants {
            if a > b {
                errors.push(FieldError::new("until", "must not be before since"));
            }
        }
        if errors.is_empty() {
            Ok(f)
        } else {
            Err(InputError { errors })
        }
    }

    /// A stable description, for cursors and the `filters` member of exports.
    pub fn describe(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if !self.events.is_any() {
            let mut items: Vec<String> = self
                .events
                .exact
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect();
            items.extend(self.events.prefixes.iter().map(|p| format!("{p}*")));
            m.insert("event".into(), items.join(",").into());
        }
        if let Some(l) = self.min_level {
            m.insert("level".into(), l.as_str().into());
        }
        if let Some(a) = &self.actor {
            m.insert("actor".into(), a.clone().into());
        }
        if let Some(r) = &self.resource {
            m.insert("resource".into(), r.clone().into());
        }
        if let Some(s) = self.success {
            m.insert("success".into(), s.into());
        }
        if let Some(t) = self.since {
            m.insert("since".into(), format_timestamp(t).into());
        }
        if let Some(t) = self.until {
            m.insert("until".into(), inclusive_until(t).into());
        }
        serde_json::Value::Object(m)
    }
}

fn check_plain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > super::event::MAX_TEXT_LEN {
        return Err("is too long".into());
    }
    if s.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// RFC 3339 date-time or `YYYY-MM-DD` (midnight UTC). An `until` date means
/// the whole day; an `until` date-time is inclusive. The bound as applied to
/// timestamps (which have microseconds): `since` the first microsecond not
/// before it, `until` exclusive, just past the microsecond it falls in.
pub fn parse_bound(s: &str, until: bool) -> Result<DateTime<Utc>, String> {
    parse_instant(s, until).map(|t| {
        let whole = truncate_micros(t);
        if until || whole < t {
            whole + chrono::Duration::microseconds(1)
        } else {
            whole
        }
    })
}

/// The last microsecond a timestamp can name (they have four-digit years).
/// An exclusive `until` past it lets every timestamp through.
pub fn last_timestamp() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 999_999))
        .expect("a valid date-time")
        .and_utc()
}

/// The instant a bound names, exactly: a date is its midnight, or for
/// `until` the last nanosecond of that day. Years run from 0000 to 9999, as
/// in timestamps.
fn parse_instant(s: &str, until: bool) -> Result<DateTime<Utc>, String> {
    let t = parse_instant_any_year(s, until)?;
    if !(0..=9999).contains(&t.year()) {
        return Err(format!(
            "must be between 0000-01-01 and 9999-12-31 (got {:?})",
            s.chars().take(64).collect::<String>()
        ));
    }
    Ok(t)
}

fn parse_instant_any_year(s: &str, until: bool) -> Result<DateTime<Utc>, String> {
    if s.len() == 10 {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            format!("must be a date YYYY-MM-DD or an RFC 3339 date-time (got {s:?})")
        })?;
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(if until {
            midnight(d.succ_opt().ok_or("date out of range")?) - chrono::Duration::nanoseconds(1)
        } else {
            midnight(d)
        });
    }
    parse_rfc3339_exact(s).map_err(|_| {
        format!(
            "must be a date YYYY-MM-DD or an RFC 3339 date-time (got {:?})",
            s.chars().take(64).collect::<String>()
        )
    })
}

/// An exclusive `until` bound as the inclusive one it stands for, the last
/// microsecond it lets through (timestamps have microseconds): what is
/// shown back (a JSON export's `filters`, a summary's `until`) then selects
/// exactly the same events when given again as an RFC 3339 `until`.
pub fn inclusive_until(t: DateTime<Utc>) -> String {
    format_timestamp(t - chrono::Duration::microseconds(1))
}

/// `24h`, `7d`, `30d` or `all` as a filter on time, counted back from `now`.
pub fn period_filter(period: &str, now: DateTime<Utc>) -> Result<Filter, String> {
    // Any case, as `order` and `level` are.
    let since = match period.to_ascii_lowercase().as_str() {
        "24h" => Some(now - chrono::Duration::hours(24)),
        "7d" => Some(now - chrono::Duration::days(7)),
        "30d" => Some(now - chrono::Duration::days(30)),
        "all" => None,
        other => return Err(format!("must be 24h, 7d, 30d or all (got {other:?})")),
    };
    Ok(Filter {
        since,
        ..Filter::default()
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_bound, EventMatch, Filter, FilterInput};
    use crate::domain::event::format_timestamp;

    #[test]
    fn success_is_read_in_any_case_as_level_is() {
        let success = |s: &str| {
            Filter::parse(&FilterInput {
                success: Some(s),
                ..FilterInput::default()
            })
            .map(|f| f.success)
            .map_err(|e| e.to_string())
        };
        for (given, want) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("1", true),
            ("false", false),
            ("FALSE", false),
            ("0", false),
        ] {
            assert_eq!(success(given), Ok(Some(want)), "{given}");
        }
        for bad in ["yes", "2", "t", ""] {
            let e = success(bad).unwrap_err();
            assert!(e.contains("success: must be true or false"), "{bad}: {e}");
        }
    }

    #[test]
    fn bounds_keep_whole_microseconds_and_are_shown_inclusive() {
        let at = |s: &str, until: bool| format_timestamp(parse_bound(s, until).unwrap());
        // `since` starts at the first microsecond not before it.
        assert_eq!(
            at("2026-11-22T10:00:00.1234561Z", false),
            "2026-11-22T10:00:00.123457Z"
        );
        assert_eq!(
            at("2026-11-22T10:00:00.123456Z", false),
            "2026-11-22T10:00:00.123456Z"
        );
        // `until` (exclusive inside) lets its own microsecond through.
        assert_eq!(
            at("2026-11-22T10:00:00.1234569Z", true),
            "2026-11-22T10:00:00.123457Z"
        );
        assert_eq!(at("2026-11-22", true), "2026-11-23T00:00:00.000000Z");
        let shown = |until: &str| {
            Filter::parse(&FilterInput {
                until: Some(until),
                ..FilterInput::default()
            })
            .unwrap()
            .describe()["until"]
                .clone()
        };
        assert_eq!(shown("2026-11-22"), "2026-11-22T23:59:59.999999Z");
        // Within one microsecond: no timestamp can match, which is no error;
        // a reversed range is.
        let range = |since: &str, until: &str| {
            Filter::parse(&FilterInput {
                since: Some(since),
                until: Some(until),
                ..FilterInput::default()
            })
            .map(|f| (f.since, f.until))
            .map_err(|e| e.to_string())
        };
        let (a, b) = range(
            "2026-11-22T10:00:00.1234561Z",
            "2026-11-22T10:00:00.1234569Z",
        )
        .unwrap();
        assert_eq!(a, b);
        assert!(range("2026-11-22T10:00:00Z", "2026-11-22T10:00:00Z").is_ok());
        assert_eq!(
            range("2026-11-22T10:00:00.000001Z", "2026-11-22T10:00:00Z").unwrap_err(),
            "until: must not be before since"
        );
        assert_eq!(
            range("2026-11-23", "2026-11-22").unwrap_err(),
            "until: must not be before since"
        );
        assert!(range("2026-11-22", "2026-11-22").is_ok());
        assert_eq!(
            shown("2026-11-22T20:03:41.3Z"),
            "2026-11-22T20:03:41.300000Z"
        );
    }

    #[test]
    fn a_bare_star_matches_every_type_but_the_other_items_are_still_checked() {
        assert!(EventMatch::parse("*").unwrap().is_any());
        assert!(EventMatch::parse("auth.*,*").unwrap().is_any());
        let err = EventMatch::parse("*,bad type!").unwrap_err();
        assert!(err.contains("\"bad type!\""), "{err}");
        let m = EventMatch::parse("auth.*,user.login").unwrap();
        assert_eq!(m.prefixes, ["auth."]);
        assert_eq!(m.exact.len(), 1);
    }
}
