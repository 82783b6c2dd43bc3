//! Configuration through the real binary: `trail config --json` shows every
//! setting with its value and source; precedence default < file < env <
//! flag; bad values and unknown keys are refused with exit 2, naming the
//! setting and where the value came from; secrets are redacted.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const HMAC_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const BOOT: &str = "a-bootstrap-secret-of-enough-length-42";

/// Every setting `trail config` must show.
const SHOWN: &[&str] = &[
    "bind",
    "db",
    "synchronous",
    "hmac_key",
    "hmac_key_file",
    "verify_key_files",
    "min_level",
    "exclude_events",
    "metadata",
    "host_metadata",
    "max_body_bytes",
    "max_batch",
    "queue_depth",
    "workers",
    "retention_days",
    "trusted_proxies",
    "base_path",
    "log_format",
    "metrics_require_admin",
    "insecure_no_auth",
    "bootstrap_token",
    "bootstrap_token_file",
];

fn config_json(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = args.to_vec();
    all.extend(["config", "--json"]);
    let mut cmd = trail_cmd(&all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_cmd(cmd);
    out.expect_code(0);
    out.json()
}

#[track_caller]
fn setting(cfg: &Value, name: &str) -> (String, String) {
    let s = &cfg[name];
    (
        s["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}.value is a string: {cfg}"))
            .to_owned(),
        s["source"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}.source is a string: {cfg}"))
            .to_owned(),
    )
}

fn file_source(p: &Path) -> String {
    format!("config file {}", p.display())
}

#[test]
fn config_shows_every_setting_with_its_value_and_source() {
    let dir = temp_dir();
    let file = dir.path().join("trail.toml");
    let file_db = dir.path().join("from-file.db");
    std::fs::write(
        &file,
        format!(
            "db = \"{}\"\nqueue_depth = 10\nmin_level = \"warning\"\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\nbase_path = \"/audit/\"\nexclude_events = [\"health.*\", \"noise.ping\"]\nmetrics_require_admin = true\n",
            file_db.display()
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let cfg = config_json(&["--config", f], &[]);
    let obj = cfg.as_object().expect("an object");
    for name in SHOWN {
        assert!(obj.contains_key(*name), "{name} missing from {cfg}");
        setting(&cfg, name);
    }
    let fs = file_source(&file);
    assert_eq!(
        setting(&cfg, "db"),
        (file_db.display().to_string(), fs.clone())
    );
    assert_eq!(setting(&cfg, "queue_depth"), ("10".into(), fs.clone()));
    assert_eq!(setting(&cfg, "min_level"), ("warning".into(), fs.clone()));
    assert_eq!(
        setting(&cfg, "trusted_proxies"),
        ("10.0.0.0/8,127.0.0.1/32".into(), fs.clone())
    );
    assert_eq!(setting(&cfg, "base_path"), ("/audit".into(), fs.clone()));
    assert_eq!(
        setting(&cfg, "exclude_events"),
        ("noise.ping,health.*".into(), fs.clone())
    );
    assert_eq!(
        setting(&cfg, "metrics_require_admin"),
        ("true".into(), fs.clone())
    );
    assert_eq!(
        setting(&cfg, "bind"),
        ("127.0.0.1:8080".into(), "default".into())
    );
    assert_eq!(
        setting(&cfg, "max_batch"),
        ("1000".into(), "default".into())
    );
    assert_eq!(
        setting(&cfg, "hmac_key"),
        ("(none)".into(), "default".into())
    );

    // The file named by TRAIL_CONFIG instead of --config.
    let cfg = config_json(&[], &[("TRAIL_CONFIG", f)]);
    assert_eq!(setting(&cfg, "queue_depth"), ("10".into(), fs.clone()));
}

#[test]
fn precedence_is_default_then_file_then_env_then_flag() {
    let dir = temp_dir();
    let file = dir.path().join("trail.toml");
    let (file_db, env_db, flag_db) = (
        dir.path().join("file.db"),
        dir.path().join("env.db"),
        dir.path().join("flag.db"),
    );
    std::fs::write(
        &file,
        format!("db = \"{}\"\nsynchronous = \"normal\"\n", file_db.display()),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let env_db_s = env_db.display().to_string();
    let flag_db_s = flag_db.display().to_string();

    // Default.
    let cfg = config_json(&[], &[]);
    assert_eq!(
        setting(&cfg, "db"),
        ("./trail-data/trail.db".into(), "default".into())
    );
    assert_eq!(
        setting(&cfg, "synchronous"),
        ("full".into(), "default".into())
    );
    // File over default.
    let cfg = config_json(&["--config", f], &[]);
    assert_eq!(
        setting(&cfg, "db"),
        (file_db.display().to_string(), file_source(&file))
    );
    assert_eq!(
        setting(&cfg, "synchronous"),
        ("normal".into(), file_source(&file))
    );
    // Environment over file.
    let cfg = config_json(
        &["--config", f],
        &[("TRAIL_DB", &env_db_s), ("TRAIL_SYNCHRONOUS", "full")],
    );
    assert_eq!(
        setting(&cfg, "db"),
        (env_db_s.clone(), "environment variable TRAIL_DB".into())
    );
    assert_eq!(
        setting(&cfg, "synchronous"),
        (
            "full".into(),
            "environment variable TRAIL_SYNCHRONOUS".into()
        )
    );
    // Flag over environment.
    let cfg = config_json(
        &["--config", f, "--db", &flag_db_s, "--synchronous", "normal"],
        &[("TRAIL_DB", &env_db_s), ("TRAIL_SYNCHRONOUS", "full")],
    );
    assert_eq!(setting(&cfg, "db"), (flag_db_s.clone(), "flag --db".into()));
    assert_eq!(
        setting(&cfg, "synchronous"),
        ("normal".into(), "flag --synchronous".into())
    );
    // A global flag after the subcommand counts the same.
    let out = run_cmd(trail_cmd(&["config", "--json", "--db", &flag_db_s]));
    out.expect_code(0);
    assert_eq!(
        setting(&out.json(), "db"),
        (flag_db_s.clone(), "flag --db".into())
    );
    // The text form says the same.
    let out = run_cmd({
        let mut c = trail_cmd(&["--config", f, "config"]);
        c.env("TRAIL_DB", &env_db_s);
        c
    });
    out.expect_code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("db "))
        .unwrap_or_else(|| panic!("a db line: {}", out.stdout));
    assert!(line.contains(&env_db_s), "{line}");
    assert!(line.contains("environment variable TRAIL_DB"), "{line}");

    // The setting really is used: a token created with the flag's database
    // lands there, not in the file's or the environment's.
    let out = run_cmd({
        let mut c = trail_cmd(&[
            "--config", f, "--db", &flag_db_s, "token", "create", "p", "--scope", "read",
        ]);
        c.env("TRAIL_DB", &env_db_s);
        c
    });
    out.expect_code(0);
    assert!(flag_db.exists(), "the flag's database was used");
    assert!(
        !env_db.exists() && !file_db.exists(),
        "no other database created"
    );
}

#[test]
fn secrets_are_redacted() {
    let dir = temp_dir();
    let out = run_cmd({
        let mut c = trail_cmd(&["config", "--json"]);
        c.env("TRAIL_HMAC_KEY", HMAC_HEX)
            .env("TRAIL_BOOTSTRAP_TOKEN", BOOT)
            .env("TRAIL_DB", dir.path().join("t.db"));
        c
    });
    out.expect_code(0);
    let cfg = out.json();
    assert_eq!(
        setting(&cfg, "hmac_key"),
        (
            "[redacted]".into(),
            "environment variable TRAIL_HMAC_KEY".into()
        )
    );
    assert_eq!(
        setting(&cfg, "bootstrap_token"),
        (
            "[redacted]".into(),
            "environment variable TRAIL_BOOTSTRAP_TOKEN".into()
        )
    );
    assert!(!out.stdout.contains(HMAC_HEX) && !out.stderr.contains(HMAC_HEX));
    assert!(!out.stdout.contains(BOOT) && !out.stderr.contains(BOOT));

    // From a file, in the text form.
    let file = dir.path().join("secret.toml");
    std::fs::write(&file, format!("hmac_key = \"{HMAC_HEX}\"\n")).unwrap();
    let out = run_cmd(trail_cmd(&["--config", file.to_str().unwrap(), "config"]));
    out.expect_code(0);
    assert!(!out.stdout.contains(HMAC_HEX), "{}", out.stdout);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("hmac_key "))
        .expect("an hmac_key line");
    assert!(line.contains("[redacted]"), "{line}");

    // A bad key is refused without echoing it.
    let bad = "zz".repeat(32);
    let out = run_cmd({
        let mut c = trail_cmd(&["config", "--json"]);
        c.env("TRAIL_HMAC_KEY", &bad);
        c
    });
    out.expect_code(2);
    assert!(out.stderr.contains("hmac_key"), "{}", out.stderr);
}

#[test]
fn a_bad_value_stops_serve_and_config_with_exit_2_naming_setting_and_source() {
    let dir = temp_dir();
    let db = dir.path().join("trail.db");
    let dbs = db.to_str().unwrap();
    let want = ["queue_depth", "environment variable TRAIL_QUEUE_DEPTH"];
    for args in [
        vec!["--db", dbs, "serve", "--bind", "127.0.0.1:0"],
        vec!["--db", dbs, "config"],
        vec!["--db", dbs, "config", "--json"],
    ] {
        let mut c = trail_cmd(&args);
        c.env("TRAIL_QUEUE_DEPTH", "lots");
        let out = run_cmd_within(c, Duration::from_secs(20));
        out.expect_code(2);
        for w in want {
            assert!(
                out.stderr.contains(w),
                "`trail {}` stderr should name {w:?}: {}",
                args.join(" "),
                out.stderr
            );
        }
        assert!(!out.stderr.contains("listening"), "{}", out.stderr);
    }
    assert!(!db.exists(), "serve refused before touching the database");

    // A serve flag names the flag.
    let out = run_cmd_within(
        trail_cmd(&[
            "--db",
            dbs,
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--queue-depth",
            "lots",
        ]),
        Duration::from_secs(20),
    );
    out.expect_code(2);
    assert!(
        out.stderr.contains("queue_depth") && out.stderr.contains("flag --queue-depth"),
        "{}",
        out.stderr
    );

    // A file names the file.
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "max_batch = \"many\"\n").unwrap();
    let out = run_cmd_within(
        trail_cmd(&[
            "--config",
            file.to_str().unwrap(),
            "--db",
            dbs,
            "serve",
            "--bind",
            "127.0.0.1:0",
        ]),
        Duration::from_secs(20),
    );
    out.expect_code(2);
    assert!(
        out.stderr.contains("max_batch") && out.stderr.contains(&file_source(&file)),
        "{}",
        out.stderr
    );

    // Other bad values, each named.
    for (var, val, name) in [
        ("TRAIL_BIND", "localhost", "bind"),
        ("TRAIL_MIN_LEVEL", "loud", "min_level"),
        ("TRAIL_TRUSTED_PROXIES", "10.0.0.0/99", "trusted_proxies"),
        ("TRAIL_BASE_PATH", "audit", "base_path"),
        ("TRAIL_BOOTSTRAP_TOKEN", "short", "bootstrap_token"),
        (
            "TRAIL_VERIFY_KEY_FILES",
            "/nonexistent/old.key",
            "verify_key_files",
        ),
    ] {
        let mut c = trail_cmd(&["--db", dbs, "config"]);
        c.env(var, val);
        let out = run_cmd(c);
        out.expect_code(2);
        assert!(
            out.stderr.contains(name)
                && out.stderr.contains(&format!("environment variable {var}")),
            "{var}={val}: {}",
            out.stderr
        );
    }
}

#[test]
fn an_unknown_key_in_the_file_is_refused_by_name() {
    let dir = temp_dir();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "queue_depht = 10\n").unwrap();
    let db = dir.path().join("trail.db");
    for args in [
        vec!["--config", file.to_str().unwrap(), "config", "--json"],
        vec![
            "--config",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "serve",
            "--bind",
            "127.0.0.1:0",
        ],
    ] {
        let out = run_cmd_within(trail_cmd(&args), Duration::from_secs(20));
        out.expect_code(2);
        assert!(out.stderr.contains("queue_depht"), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
    assert!(!db.exists());
    // Not TOML at all.
    std::fs::write(&file, "this is = = not toml\n").unwrap();
    let out = run_cmd(trail_cmd(&["--config", file.to_str().unwrap(), "config"]));
    out.expect_code(2);
    // A missing file.
    let out = run_cmd(trail_cmd(&[
        "--config",
        dir.path().join("absent.toml").to_str().unwrap(),
        "config",
    ]));
    out.expect_code(2);
}

/// `trail ARGS` (with `env`), within 20 s: `serve` refused or not.
fn trail_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = trail_cmd(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run_cmd_within(c, Duration::from_secs(20))
}

/// Exit 2 and exactly `line` (plus a newline) on standard error; nothing
/// on standard output.
#[track_caller]
fn refused(out: &Out, line: &str) {
    out.expect_code(2);
    assert_eq!(out.stderr, format!("{line}\n"), "{}", out.what);
    assert_eq!(out.stdout, "", "{}", out.what);
}

/// Audit finding: a TOML syntax error printed the parser's excerpt of the
/// file, which showed the line holding the HMAC key (an unclosed string) or
/// the bootstrap token (a key given twice). The message is the file, line,
/// column and the parser's own words, for `config` and `serve` alike.
#[test]
fn a_toml_syntax_error_names_file_line_and_column_and_never_shows_the_text() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let db = data.join("trail.db");
    let dbs = db.to_str().unwrap();
    for (name, text, at, secret) in [
        (
            "unclosed.toml",
            format!("hmac_key = \"{HMAC_HEX}\n"),
            "at line 1, column 77: invalid basic string, expected `\"`",
            HMAC_HEX,
        ),
        (
            "twice.toml",
            format!(
                "queue_depth = 10\nbootstrap_token = \"{BOOT}\"\nbootstrap_token = \"{BOOT}\"\n"
            ),
            "at line 3, column 1: duplicate key",
            BOOT,
        ),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let f = file.to_str().unwrap();
        for (args, env, origin) in [
            (
                vec!["--config", f, "--db", dbs, "config"],
                vec![],
                "flag --config",
            ),
            (
                vec!["--db", dbs, "serve", "--bind", "127.0.0.1:0"],
                vec![("TRAIL_CONFIG", f)],
                "environment variable TRAIL_CONFIG",
            ),
            (
                vec!["--config", f, "--db", dbs, "serve", "--bind", "127.0.0.1:0"],
                vec![],
                "flag --config",
            ),
        ] {
            let out = trail_env(&args, &env);
            refused(
                &out,
                &format!("trail: setting config (from {origin}): {f} is not valid TOML {at}"),
            );
            // Not even a part of it.
            assert!(!out.stderr.contains(&secret[..12]), "{}", out.stderr);
        }
    }
    // A key pasted as a setting's name is refused without being shown.
    let file = dir.path().join("pasted.toml");
    std::fs::write(&file, format!("\"{HMAC_HEX}\" = 1\n")).unwrap();
    let f = file.to_str().unwrap();
    refused(
        &trail_env(&["--config", f, "--db", dbs, "config"], &[]),
        &format!(
            "trail: setting (a key not shown) (from config file {f}): unknown setting of 64 characters, not printed in case it is a secret; known settings are {}",
            trail::config::SETTINGS.join(", ")
        ),
    );
    assert!(!data.exists(), "nothing created");
}
