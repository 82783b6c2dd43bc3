//! What trail keeps of what it is sent: the `min_level` and
//! `exclude_events` settings. One decision for every way in (the HTTP ingest
//! route, `trail append`, `trail import`), so an event the configuration
//! drops is dropped whichever way it came.

use super::event::{Level, NewEvent};
use super::filter::EventMatch;

/// The settings that drop events before they are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropPolicy {
    /// Events below this level are dropped.
    pub min_level: Level,
    /// Event types (exact, or prefixes such as `debug.*`) that are dropped;
    /// empty: none.
    pub exclude_events: EventMatch,
}

impl Default for DropPolicy {
    /// Keeps everything.
    fn default() -> Self {
        DropPolicy {
            min_level: Level::Debug,
            exclude_events: EventMatch::default(),
        }
    }
}

/// Why an event was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Below `min_level`.
    MinLevel,
    /// Its type is in `exclude_events`.
    Excluded,
}

impl Dropped {
    /// The reason as the HTTP answer and the metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::MinLevel => "min_level",
            Dropped::Excluded => "excluded",
        }
    }

    /// The setting that dropped it.
    pub fn setting(self) -> &'static str {
        match self {
            Dropped::MinLevel => "min_level",
            Dropped::Excluded => "exclude_events",
        }
    }

    /// One sentence for the HTTP answer's `detail`.
    pub fn detail(self) -> &'static str {
        match self {
            Dropped::MinLevel => "the event is below the server's min_level; it was not stored",
            Dropped::Excluded => {
                "the event's type is in the server's exclude_events; it was not stored"
            }
        }
    }
}

impl DropPolicy {
    /// Why `ev` is not to be stored, or `None` to store it. `min_level` is
    /// checked first: an event both settings drop is a `min_level` drop.
    pub fn verdict(&self, ev: &NewEvent) -> Option<Dropped> {
        if ev.level() < self.min_level {
            Some(Dropped::MinLevel)
        } else if self.excludes(ev.event().as_str()) {
            Some(Dropped::Excluded)
        } else {
            None
        }
    }

    /// Whether `event` is one of the excluded types (an exact name or one
    /// starting with a listed prefix). An empty list excludes nothing.
    pub fn excludes(&self, event: &str) -> bool {
        let m = &self.exclude_events;
        m.exact.iter().any(|e| e.as_str() == event)
            || m.prefixes.iter().any(|p| event.starts_with(p.as_str()))
    }

    /// Whether this policy keeps every event (nothing configured).
    pub fn keeps_all(&self) -> bool {
        self.min_level == Level::Debug && self.exclude_events.is_any()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, level: &str) -> NewEvent {
        NewEvent::from_json(&serde_json::json!({"event": event, "level": level})).unwrap()
    }

    #[test]
    fn min_level_then_excluded_types_decide() {
        let p = DropPolicy {
            min_level: Level::Info,
            exclude_events: EventMatch::parse("health.*,noise.ping").unwrap(),
        };
        assert_eq!(
            p.verdict(&ev("user.login", "debug")),
            Some(Dropped::MinLevel)
        );
        assert_eq!(
            p.verdict(&ev("health.check", "debug")),
            Some(Dropped::MinLevel)
        );
        assert_eq!(
            p.verdict(&ev("health.check", "info")),
            Some(Dropped::Excluded)
        );
        assert_eq!(
            p.verdict(&ev("noise.ping", "error")),
            Some(Dropped::Excluded)
        );
        assert_eq!(p.verdict(&ev("noise.pings", "error")), None);
        assert_eq!(p.verdict(&ev("healthy", "info")), None);
        assert_eq!(p.verdict(&ev("user.login", "info")), None);
        assert!(!p.keeps_all());
        let all = DropPolicy::default();
        assert!(all.keeps_all());
        assert_eq!(all.verdict(&ev("health.check", "debug")), None);
    }
}
