//! List filters against a known data set: every filter (alone and combined)
//! returns exactly the events computed here from what was posted, in both
//! orders, through any page size, and exports filter the same way. SQL
//! metacharacters in filter values are plain data.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

const EVENTS: [&str; 8] = [
    "auth.login",
    "auth.logout",
    "auth.fail",
    "user.create",
    "user.delete",
    "a_b",
    "axb",
    "auth",
];
const LEVELS: [&str; 5] = ["debug", "info", "warning", "error", "critical"];
const ACTORS: [Option<&str>; 9] = [
    Some("alice"),
    Some("bob"),
    Some("o'brien"),
    Some("O'Brien"),
    Some("50%"),
    Some("a_c"),
    Some("abc"),
    None,
    Some("x\"; DROP TABLE events; --"),
];
const RESOURCES: [Option<&str>; 4] = [Some("r1"), Some("' OR ''='"), None, Some("r%")];
const SUCCESS: [Option<bool>; 3] = [Some(true), Some(false), None];

#[derive(Debug, Clone)]
struct Ev {
    seq: u64,
    event: String,
    level: usize,
    actor: Option<String>,
    resource: Option<String>,
    success: Option<bool>,
    ts: String,
}

type Pred = Box<dyn Fn(&Ev) -> bool>;

fn p(f: impl Fn(&Ev) -> bool + 'static) -> Pred {
    Box::new(f)
}

fn q(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn with(base: &str, extra: &str) -> String {
    if base.is_empty() {
        extra.to_owned()
    } else {
        format!("{base}&{extra}")
    }
}

fn in_offset(ts: &str, hours: i32) -> String {
    let t: DateTime<Utc> = ts.parse().unwrap();
    t.with_timezone(&FixedOffset::east_opt(hours * 3600).unwrap())
        .to_rfc3339_opts(SecondsFormat::Micros, false)
}

#[actix_rt::test]
async fn every_filter_matches_exactly_in_both_orders_and_any_page_size() {
    let app = spawn_app().await;
    // Whatever the server wrote about itself counts like any other event.
    let mut evs: Vec<Ev> = app
        .get("/v1/events?order=asc&limit=1000")
        .await
        .ok_json(200)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Ev {
            seq: e["seq"].as_u64().unwrap(),
            event: e["event"].as_str().unwrap().to_owned(),
            level: LEVELS.iter().position(|l| e["level"] == json!(l)).unwrap(),
            actor: e["actor"].as_str().map(String::from),
            resource: e["resource"].as_str().map(String::from),
            success: e["success"].as_bool(),
            ts: e["timestamp"].as_str().unwrap().to_owned(),
        })
        .collect();
    assert_eq!(evs.len() as u64, app.start_rows);
    for i in 0..60usize {
        let mut e = json!({"event": EVENTS[i % 8], "level": LEVELS[i % 5]});
        if let Some(a) = ACTORS[i % 9] {
            e["actor"] = json!(a);
        }
        if let Some(r) = RESOURCES[i % 4] {
            e["resource"] = json!(r);
        }
        if let Some(s) = SUCCESS[i % 3] {
            e["success"] = json!(s);
        }
        // One POST each, so timestamps move along the log.
        let v = app.post(&e).await.ok_json(201);
        evs.push(Ev {
            seq: v["seq"].as_u64().unwrap(),
            event: EVENTS[i % 8].into(),
            level: i % 5,
            actor: ACTORS[i % 9].map(String::from),
            resource: RESOURCES[i % 4].map(String::from),
            success: SUCCESS[i % 3],
            ts: v["timestamp"].as_str().unwrap().to_owned(),
        });
    }
    let ts = |seq: usize| evs[seq - 1].ts.clone();
    let day = chrono::NaiveDate::parse_from_str(&evs[0].ts[..10], "%Y-%m-%d").unwrap();
    let last_day =
        chrono::NaiveDate::parse_from_str(&evs[evs.len() - 1].ts[..10], "%Y-%m-%d").unwrap();
    let (before, after) = (
        day.pred_opt().unwrap().to_string(),
        last_day.succ_opt().unwrap().to_string(),
    );
    let (t10, t40) = (ts(10), ts(40));
    let (t10b, t40b) = (t10.clone(), t40.clone());
    let (t10c, t40c) = (t10.clone(), t40.clone());
    let t25 = ts(25);
    let t25b = t25.clone();

    let actor_is = |a: &'static str| p(move |e| e.actor.as_deref() == Some(a));
    let res_is = |r: &'static str| p(move |e| e.resource.as_deref() == Some(r));
    let cases: Vec<(String, Pred)> = vec![
        (q(&[]), p(|_| true)),
        (
            q(&[("event", "auth.login")]),
            p(|e| e.event == "auth.login"),
        ),
        (
            q(&[("event", "auth.login,user.create")]),
            p(|e| e.event == "auth.login" || e.event == "user.create"),
        ),
        (
            q(&[("event", "auth.*")]),
            p(|e| e.event.starts_with("auth.")),
        ),
        (
            q(&[("type", "auth.*")]),
            p(|e| e.event.starts_with("auth.")),
        ),
        (q(&[("event", "auth*")]), p(|e| e.event.starts_with("auth"))),
        (q(&[("event", "a_*")]), p(|e| e.event.starts_with("a_"))),
        (
            q(&[("event", "auth.*,user.delete")]),
            p(|e| e.event.starts_with("auth.") || e.event == "user.delete"),
        ),
        (q(&[("event", "nothing.here")]), p(|_| false)),
        (q(&[("event", "zzz.*")]), p(|_| false)),
        (q(&[("level", "debug")]), p(|_| true)),
        (q(&[("level", "info")]), p(|e| e.level >= 1)),
        (q(&[("level", "warning")]), p(|e| e.level >= 2)),
        (q(&[("level", "WARN")]), p(|e| e.level >= 2)),
        (q(&[("level", "error")]), p(|e| e.level >= 3)),
        (q(&[("level", "Critical")]), p(|e| e.level == 4)),
        (
            q(&[("event", "auth.*"), ("level", "error")]),
            p(|e| e.event.starts_with("auth.") && e.level >= 3),
        ),
        (
            q(&[("event", "auth.login,user.create"), ("level", "warning")]),
            p(|e| (e.event == "auth.login" || e.event == "user.create") && e.level >= 2),
        ),
        (q(&[("actor", "alice")]), actor_is("alice")),
        (q(&[("actor", "o'brien")]), actor_is("o'brien")),
        (q(&[("actor", "O'Brien")]), actor_is("O'Brien")),
        (q(&[("actor", "50%")]), actor_is("50%")),
        (q(&[("actor", "a_c")]), actor_is("a_c")),
        (q(&[("actor", "' OR 1=1 --")]), p(|_| false)),
        (q(&[("actor", "%")]), p(|_| false)),
        (q(&[("actor", "_")]), p(|_| false)),
        (q(&[("actor", "alice' --")]), p(|_| false)),
        (
            q(&[("actor", "x\"; DROP TABLE events; --")]),
            actor_is("x\"; DROP TABLE events; --"),
        ),
        (q(&[("resource", "r1")]), res_is("r1")),
        (q(&[("resource", "' OR ''='")]), res_is("' OR ''='")),
        (q(&[("resource", "r%")]), res_is("r%")),
        (q(&[("resource", "r_")]), p(|_| false)),
        (q(&[("success", "true")]), p(|e| e.success == Some(true))),
        (q(&[("success", "1")]), p(|e| e.success == Some(true))),
        (q(&[("success", "false")]), p(|e| e.success == Some(false))),
        (q(&[("success", "0")]), p(|e| e.success == Some(false))),
        (
            q(&[("since", t10.as_str()), ("until", t40.as_str())]),
            p(move |e| e.ts >= t10b && e.ts <= t40b),
        ),
        (
            q(&[
                ("since", in_offset(&t10, 2).as_str()),
                ("until", in_offset(&t40, -5).as_str()),
            ]),
            p(move |e| e.ts >= t10c && e.ts <= t40c),
        ),
        (q(&[("since", t25.as_str())]), p(move |e| e.ts >= t25b)),
        (q(&[("until", ts(25).as_str())]), {
            let t = ts(25);
            p(move |e| e.ts <= t)
        }),
        (
            q(&[("start", ts(30).as_str()), ("end", ts(31).as_str())]),
            {
                let (a, b) = (ts(30), ts(31));
                p(move |e| e.ts >= a && e.ts <= b)
            },
        ),
        (
            q(&[("since", before.as_str()), ("until", after.as_str())]),
            p(|_| true),
        ),
        (q(&[("since", before.as_str())]), p(|_| true)),
        (q(&[("until", before.as_str())]), p(|_| false)),
        (q(&[("since", after.as_str())]), p(|_| false)),
        (
            q(&[("since", "2000-01-01"), ("until", "2000-12-31")]),
            p(|_| false),
        ),
        (
            q(&[
                ("event", "auth.*"),
                ("actor", "alice"),
                ("success", "true"),
                ("level", "info"),
            ]),
            p(|e| {
                e.event.starts_with("auth.")
                    && e.actor.as_deref() == Some("alice")
                    && e.success == Some(true)
                    && e.level >= 1
            }),
        ),
        (
            q(&[
                ("event", "a_b,axb,auth"),
                ("resource", "r%"),
                ("since", ts(5).as_str()),
            ]),
            {
                let t = ts(5);
                p(move |e| {
                    ["a_b", "axb", "auth"].contains(&e.event.as_str())
                        && e.resource.as_deref() == Some("r%")
                        && e.ts >= t
                })
            },
        ),
    ];

    for (query, pred) in &cases {
        let want: Vec<u64> = evs
            .iter()
            .rev()
            .filter(|e| pred(e))
            .map(|e| e.seq)
            .collect();
        let mut asc = want.clone();
        asc.reverse();

        let r = app.get(&format!("/v1/events?{query}")).await;
        let v = r.ok_json(200);
        assert_eq!(r.seqs(), want, "GET /v1/events?{query}");
        assert_eq!(v["has_more"], json!(false), "{query}");
        assert_eq!(v["next_cursor"], Value::Null, "{query}");

        let r = app
            .get(&format!("/v1/events?{}", with(query, "order=asc")))
            .await;
        assert_eq!(r.seqs(), asc, "asc {query}");

        let paged = walk(&app, &format!("/v1/events?{}", with(query, "limit=4"))).await;
        assert_eq!(paged, want, "desc pages of 4: {query}");
        let paged = walk(
            &app,
            &format!("/v1/events?{}", with(query, "limit=7&order=asc")),
        )
        .await;
        assert_eq!(paged, asc, "asc pages of 7: {query}");

        let r = app
            .get(&format!("/v1/export?{}", with(query, "format=jsonl")))
            .await;
        r.expect(200);
        let exported: Vec<u64> = r
            .text()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(exported, asc, "export {query}");
    }

    // Nothing was changed by any of it.
    assert_eq!(app.count(), 60);
    let tables: i64 = app
        .sql()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
    let verify = app.get("/v1/verify").await.ok_json(200);
    assert_eq!(verify["valid"], json!(true));
    assert_eq!(verify["entries_checked"], json!(app.seq(60)));
}
