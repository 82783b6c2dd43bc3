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
    "proxy_headers",
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
        (
            "TRAIL_PROXY_HEADERS",
            "both",
            "proxy_headers (from environment variable TRAIL_PROXY_HEADERS): must be x-forwarded or forwarded (got \"both\")",
        ),
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

/// Audit finding: key-file errors said `key: cannot read key file …`
/// without the setting or where it was set. Now every one names
/// `hmac_key_file` (or `hmac_key`) and its source like any other setting,
/// for `serve` and for a writing command, before anything is created: no
/// folder, no database, no `hmac.key`.
#[test]
fn a_bad_key_file_names_the_setting_and_its_source_and_creates_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let missing = "/nonexistent/hmac.key";
    let folder = p("a-folder");
    std::fs::create_dir(&folder).unwrap();
    let junk = p("junk.key");
    std::fs::write(&junk, "not a key\n").unwrap();
    let big = p("big.key");
    std::fs::write(&big, "0".repeat(5000)).unwrap();
    let toml_file = p("key.toml");
    std::fs::write(&toml_file, format!("hmac_key_file = \"{missing}\"\n")).unwrap();
    let toml_key = p("hmac.toml");
    std::fs::write(&toml_key, format!("hmac_key = \"{}\"\n", "zz".repeat(32))).unwrap();
    let no_such = "No such file or directory (os error 2)";

    // Flags, environment, and the message after `trail: `.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, String);
    let mut cases: Vec<Case> = vec![
        (
            vec!["--hmac-key-file", missing],
            vec![],
            format!("setting hmac_key_file (from flag --hmac-key-file): cannot read key file {missing}: {no_such}"),
        ),
        (
            vec![],
            vec![("TRAIL_HMAC_KEY_FILE", missing)],
            format!("setting hmac_key_file (from environment variable TRAIL_HMAC_KEY_FILE): cannot read key file {missing}: {no_such}"),
        ),
        (
            vec!["--config", &toml_file],
            vec![],
            format!("setting hmac_key_file (from config file {toml_file}): cannot read key file {missing}: {no_such}"),
        ),
        (
            vec!["--hmac-key-file", &folder],
            vec![],
            format!("setting hmac_key_file (from flag --hmac-key-file): cannot read key file {folder}: it is a folder, not a file"),
        ),
        (
            // Read without end before: a device is refused up front.
            vec!["--hmac-key-file", "/dev/zero"],
            vec![],
            "setting hmac_key_file (from flag --hmac-key-file): cannot read key file /dev/zero: it is not a regular file".into(),
        ),
        (
            vec!["--hmac-key-file", &big],
            vec![],
            format!("setting hmac_key_file (from flag --hmac-key-file): cannot read key file {big}: it is larger than 4096 bytes"),
        ),
        (
            vec![],
            vec![("TRAIL_HMAC_KEY_FILE", &junk)],
            format!("setting hmac_key_file (from environment variable TRAIL_HMAC_KEY_FILE): key file {junk}: a key must be 64 hexadecimal digits (32 bytes); got 9 characters"),
        ),
        (
            vec![],
            vec![("TRAIL_HMAC_KEY_FILE", "")],
            "setting hmac_key_file (from environment variable TRAIL_HMAC_KEY_FILE): is empty: name a file, or leave the setting out".into(),
        ),
        (
            vec!["--config", &toml_key],
            vec![],
            format!("setting hmac_key (from config file {toml_key}): a key must be 64 hexadecimal digits; found a character that is not one"),
        ),
    ];
    // A file its reader may not open: not when the tests run as root,
    // who may read any file.
    let unreadable = p("unreadable.key");
    std::fs::write(&unreadable, format!("{HMAC_HEX}\n")).unwrap();
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&unreadable).is_err() {
        cases.push((
            vec!["--hmac-key-file", &unreadable],
            vec![],
            format!("setting hmac_key_file (from flag --hmac-key-file): cannot read key file {unreadable}: Permission denied (os error 13)"),
        ));
    }

    let data = dir.path().join("data");
    let db = data.join("trail.db");
    let dbs = db.to_str().unwrap();
    for (flags, env, message) in &cases {
        for command in [
            vec!["serve", "--bind", "127.0.0.1:0"],
            vec!["append", "x.y"],
            vec!["config"],
        ] {
            let mut args = flags.clone();
            args.extend(["--db", dbs]);
            args.extend(command);
            let out = trail_env(&args, env);
            refused(&out, &format!("trail: {message}"));
            assert!(!data.exists(), "`{}` created {}", out.what, data.display());
        }
    }
}

/// Audit finding: `TRAIL_HMAC_KEY` silently beat `--hmac-key-file`, so the
/// rows were sealed with a key the operator had not chosen. A key and its
/// file are one choice: the higher layer wins, the same layer is refused.
#[test]
fn a_key_and_its_file_are_one_choice_and_the_higher_layer_wins() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let key_file = dir.path().join("flag.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let kf = key_file.to_str().unwrap();
    let db = dir.path().join("d").join("trail.db");
    let dbs = db.to_str().unwrap();
    let env_key = [("TRAIL_HMAC_KEY", HMAC_HEX)];

    // The flag's file over the environment's key: it seals.
    trail_env(
        &["--db", dbs, "--hmac-key-file", kf, "append", "x.y"],
        &env_key,
    )
    .expect_code(0);
    trail_env(&["--db", dbs, "--hmac-key-file", kf, "verify"], &[]).expect_code(0);
    let out = trail_env(&["--db", dbs, "verify"], &env_key);
    out.expect_code(1);
    assert!(out.stdout.contains("unknown_key"), "{}", out.stdout);
    assert!(
        !db.with_file_name("hmac.key").exists(),
        "no default key made"
    );
    let cfg = config_json(&["--db", dbs, "--hmac-key-file", kf], &env_key);
    assert_eq!(
        setting(&cfg, "hmac_key"),
        (
            "(overridden by hmac_key_file from flag --hmac-key-file)".into(),
            "environment variable TRAIL_HMAC_KEY".into()
        )
    );
    assert_eq!(
        setting(&cfg, "hmac_key_file"),
        (kf.to_owned(), "flag --hmac-key-file".into())
    );

    // The environment's key over the file's key file, which is not read.
    let file = dir.path().join("trail.toml");
    std::fs::write(&file, "hmac_key_file = \"/nonexistent/hmac.key\"\n").unwrap();
    let f = file.to_str().unwrap();
    let cfg = config_json(&["--config", f, "--db", dbs], &env_key);
    assert_eq!(
        setting(&cfg, "hmac_key"),
        (
            "[redacted]".into(),
            "environment variable TRAIL_HMAC_KEY".into()
        )
    );
    assert_eq!(
        setting(&cfg, "hmac_key_file"),
        (
            "(overridden by hmac_key from environment variable TRAIL_HMAC_KEY)".into(),
            file_source(&file)
        )
    );

    // Both at one layer: refused, naming both and the layer.
    let other = dir.path().join("other").join("trail.db");
    let os = other.to_str().unwrap();
    let env_both = [("TRAIL_HMAC_KEY", HMAC_HEX), ("TRAIL_HMAC_KEY_FILE", kf)];
    for command in [
        vec!["append", "x.y"],
        vec!["serve", "--bind", "127.0.0.1:0"],
    ] {
        let mut args = vec!["--db", os];
        args.extend(command);
        let out = trail_env(&args, &env_both);
        refused(
            &out,
            "trail: setting hmac_key (from environment variable TRAIL_HMAC_KEY): hmac_key_file is set too (from environment variable TRAIL_HMAC_KEY_FILE); set one of them, not both",
        );
        assert!(!out.stderr.contains(HMAC_HEX));
    }
    std::fs::write(
        &file,
        format!("hmac_key = \"{HMAC_HEX}\"\nhmac_key_file = \"{kf}\"\n"),
    )
    .unwrap();
    refused(
        &trail_env(&["--config", f, "--db", os, "append", "x.y"], &[]),
        &format!("trail: setting hmac_key (from config file {f}): hmac_key_file is set too (from config file {f}); set one of them, not both"),
    );
    assert!(!other.parent().unwrap().exists(), "nothing created");
}

/// Audit finding: `bootstrap_token` beat `bootstrap_token_file` whatever
/// their layers, and both at once was accepted with the file ignored. The
/// same rule as the key: the higher layer wins, the same layer is refused.
#[actix_rt::test]
async fn a_bootstrap_token_and_its_file_are_one_choice() {
    use crate::util::spawn_listening;
    let dir = temp_dir();
    let db = dir.path().join("trail.db");
    let dbs = db.to_str().unwrap();
    let from_file = "bootstrap-secret-from-the-file-0123456789";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{from_file}\n")).unwrap();
    let tf = token_file.to_str().unwrap();
    let file = dir.path().join("trail.toml");
    std::fs::write(&file, format!("bootstrap_token = \"{BOOT}\"\n")).unwrap();
    let f = file.to_str().unwrap();

    // The environment's file over the config file's token.
    let cfg = config_json(
        &["--config", f, "--db", dbs],
        &[("TRAIL_BOOTSTRAP_TOKEN_FILE", tf)],
    );
    assert_eq!(
        setting(&cfg, "bootstrap_token"),
        (
            "(overridden by bootstrap_token_file from environment variable TRAIL_BOOTSTRAP_TOKEN_FILE)".into(),
            file_source(&file)
        )
    );
    let mut cmd = trail_cmd(&["--config", f, "--db", dbs, "serve", "--bind", "127.0.0.1:0"]);
    cmd.env("TRAIL_BOOTSTRAP_TOKEN_FILE", tf);
    let serving = spawn_listening(cmd);
    let client = client();
    for (secret, status) in [(from_file, 200), (BOOT, 401)] {
        send(
            client
                .get(format!("{}/v1/tokens", serving.base))
                .insert_header(("authorization", format!("Bearer {secret}"))),
            None,
        )
        .await
        .expect(status);
    }
    drop(serving);

    // Both at one layer: refused before anything is created.
    let other = dir.path().join("other").join("trail.db");
    let out = trail_env(
        &[
            "--db",
            other.to_str().unwrap(),
            "serve",
            "--bind",
            "127.0.0.1:0",
        ],
        &[
            ("TRAIL_BOOTSTRAP_TOKEN", BOOT),
            ("TRAIL_BOOTSTRAP_TOKEN_FILE", tf),
        ],
    );
    refused(
        &out,
        "trail: setting bootstrap_token (from environment variable TRAIL_BOOTSTRAP_TOKEN): bootstrap_token_file is set too (from environment variable TRAIL_BOOTSTRAP_TOKEN_FILE); set one of them, not both",
    );
    assert!(!other.parent().unwrap().exists(), "nothing created");
}

/// Audit findings: an empty item in a list (`10.0.0.1,,`) and `base_path`
/// with `.`, `..` or empty segments were accepted. Each is refused, naming
/// the setting, its source and what is wrong.
#[test]
fn empty_list_items_and_bad_base_paths_are_refused() {
    let dir = temp_dir();
    let db = dir.path().join("d").join("trail.db");
    let dbs = db.to_str().unwrap();
    let out = trail_env(
        &[
            "--db",
            dbs,
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--trusted-proxies",
            "10.0.0.1,,",
        ],
        &[],
    );
    refused(
        &out,
        "trail: setting trusted_proxies (from flag --trusted-proxies): item 2 of 3 is empty",
    );
    refused(
        &trail_env(&["--db", dbs, "config"], &[("TRAIL_TRUSTED_PROXIES", ",10.0.0.1")]),
        "trail: setting trusted_proxies (from environment variable TRAIL_TRUSTED_PROXIES): item 1 of 2 is empty",
    );
    refused(
        &trail_env(&["--db", dbs, "config"], &[("TRAIL_VERIFY_KEY_FILES", "a.key, ,b.key")]),
        "trail: setting verify_key_files (from environment variable TRAIL_VERIFY_KEY_FILES): item 2 of 3 is empty",
    );
    let file = dir.path().join("list.toml");
    std::fs::write(&file, "exclude_events = [\"debug.*\", \"\"]\n").unwrap();
    refused(
        &trail_env(
            &["--config", file.to_str().unwrap(), "--db", dbs, "config"],
            &[],
        ),
        &format!(
            "trail: setting exclude_events (from {}): item 2 of 2 is empty",
            file_source(&file)
        ),
    );
    // `*` among the excluded types would drop every event (it used to turn
    // the whole list into "exclude nothing", silently).
    refused(
        &trail_env(&["--db", dbs, "config"], &[("TRAIL_EXCLUDE_EVENTS", "a.*,*")]),
        "trail: setting exclude_events (from environment variable TRAIL_EXCLUDE_EVENTS): `*` would drop every event; list types or prefixes such as auth.*",
    );
    // An empty value is still the empty list.
    let cfg = config_json(&["--db", dbs], &[("TRAIL_TRUSTED_PROXIES", "")]);
    assert_eq!(
        setting(&cfg, "trusted_proxies"),
        (
            "".into(),
            "environment variable TRAIL_TRUSTED_PROXIES".into()
        )
    );

    let want =
        "must be a path such as /audit: segments of letters, digits and -_.~ after single slashes";
    for (value, why) in [
        ("/audit/./x", "a \".\" segment"),
        ("/audit/..", "a \"..\" segment"),
        ("/..", "a \"..\" segment"),
        ("/audit//x", "an empty segment (//)"),
        ("/audit//", "an empty segment (//)"),
        ("//", "an empty segment (//)"),
        ("/a b", "the character ' '"),
        ("/a%2e", "the character '%'"),
        ("/caf\u{e9}", "the character '\u{e9}'"),
        ("audit", "which does not start with /"),
    ] {
        let why = if why.starts_with("which") {
            why.to_owned()
        } else {
            format!("which has {why}")
        };
        refused(
            &trail_env(&["--db", dbs, "config"], &[("TRAIL_BASE_PATH", value)]),
            &format!("trail: setting base_path (from environment variable TRAIL_BASE_PATH): {want} (got {value:?}, {why})"),
        );
    }
    for (value, shown) in [("/audit/", "/audit"), ("/a/b.c/~d", "/a/b.c/~d"), ("/", "")] {
        let cfg = config_json(&["--db", dbs], &[("TRAIL_BASE_PATH", value)]);
        assert_eq!(setting(&cfg, "base_path").0, shown, "{value}");
    }
    assert!(!db.parent().unwrap().exists(), "nothing created");
}

/// Audit finding: a misspelt `TRAIL_*` variable was silently ignored. It is
/// a warning at start-up (not an error), naming the variable and the
/// nearest setting if one is close, never its value; the variables trail
/// reads that are not settings give none.
#[test]
fn an_unknown_trail_variable_is_warned_about_by_name() {
    let dir = temp_dir();
    let db = dir.path().join("d").join("trail.db");
    let dbs = db.to_str().unwrap();
    let value = "a-value-that-must-not-be-printed";
    let out = trail_env(
        &["--db", dbs, "config", "--json"],
        &[("TRAIL_QUEUE_DEPHT", value), ("TRAIL_COLOUR", value)],
    );
    out.expect_code(0);
    assert_eq!(
        out.stderr,
        "trail: warning: environment variable TRAIL_COLOUR is not a trail setting and is ignored\n\
         trail: warning: environment variable TRAIL_QUEUE_DEPHT is not a trail setting and is ignored; did you mean TRAIL_QUEUE_DEPTH?\n"
    );
    assert_eq!(
        setting(&out.json(), "queue_depth"),
        ("4096".into(), "default".into())
    );
    // At start-up of the server too, even when it then refuses.
    let out = trail_env(
        &[
            "--db",
            dbs,
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--queue-depth",
            "lots",
        ],
        &[("TRAIL_HMAC_KEYFILE", value)],
    );
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "trail: warning: environment variable TRAIL_HMAC_KEYFILE is not a trail setting and is ignored; did you mean TRAIL_HMAC_KEY_FILE?\n\
         trail: setting queue_depth (from flag --queue-depth): must be a whole number from 1 to 1000000\n"
    );
    assert!(!out.stderr.contains(value));

    // What trail (or its tests and benchmarks) reads besides the settings.
    let file = dir.path().join("trail.toml");
    std::fs::write(&file, "queue_depth = 7\n").unwrap();
    let out = trail_env(
        &["--db", dbs, "config"],
        &[
            ("TRAIL_CONFIG", file.to_str().unwrap()),
            ("TRAIL_LOG", "warn"),
            ("TRAIL_DATA_DIR", dir.path().to_str().unwrap()),
            ("TRAIL_BIN", "/usr/bin/true"),
            ("TRAIL_BLESS", "1"),
            ("TRAIL_BENCH_PAGE_SIZE", "4096"),
        ],
    );
    out.expect_code(0);
    assert_eq!(out.stderr, "");
    assert!(!db.parent().unwrap().exists(), "nothing created");
}

/// Audit finding: a value of the wrong type in the file said "must be a
/// string, not float" for a number and "not boolean" for a number of days.
/// Each message says what the setting wants, and what it got instead.
#[test]
fn a_wrong_type_in_the_file_says_what_the_setting_wants() {
    let dir = temp_dir();
    let file = dir.path().join("types.toml");
    let f = file.to_str().unwrap();
    let db = dir.path().join("d").join("trail.db");
    for (line, message) in [
        ("queue_depth = 5.5", "queue_depth: must be a whole number from 1 to 1000000, not a float"),
        ("retention_days = true", "retention_days: must be a whole number from 0 to 100000, not a boolean"),
        ("max_body_bytes = [1]", "max_body_bytes: must be a whole number from 1024 to 67108864, not a list"),
        ("max_batch = 1979-05-27", "max_batch: must be a whole number from 1 to 100000, not a date-time"),
        ("workers = { n = 1 }", "workers: must be a whole number from 0 to 1024, not a table"),
        ("queue_depth = -1", "queue_depth: must be a whole number from 1 to 1000000"),
        ("host_metadata = 1.0", "host_metadata: must be true or false, not a float"),
        ("metrics_require_admin = [true]", "metrics_require_admin: must be true or false, not a list"),
        ("insecure_no_auth = \"maybe\"", "insecure_no_auth: must be true or false (got \"maybe\")"),
        ("trusted_proxies = true", "trusted_proxies: must be a list of strings (or one comma-separated string), not a boolean"),
        ("exclude_events = 5", "exclude_events: must be a list of strings (or one comma-separated string), not an integer"),
        ("verify_key_files = [1]", "verify_key_files: must be a list of strings; item 1 is an integer"),
        ("metadata = 5", "metadata: must be a table of keys and values, not an integer"),
        ("synchronous = true", "synchronous: must be a string, not a boolean"),
        ("bootstrap_token = 42", "bootstrap_token: must be a string, not an integer"),
        ("hmac_key = 42", "hmac_key: must be a string, not an integer"),
    ] {
        std::fs::write(&file, format!("{line}\n")).unwrap();
        let (name, rest) = message.split_once(": ").unwrap();
        refused(
            &trail_env(&["--config", f, "--db", db.to_str().unwrap(), "config"], &[]),
            &format!("trail: setting {name} (from config file {f}): {rest}"),
        );
    }
    // The right types still pass, numbers and booleans also as strings.
    std::fs::write(
        &file,
        "queue_depth = \"12\"\nretention_days = 30\nhost_metadata = \"off\"\ninsecure_no_auth = false\ntrusted_proxies = \"10.0.0.1, 10.0.0.2\"\n",
    )
    .unwrap();
    let cfg = config_json(&["--config", f, "--db", db.to_str().unwrap()], &[]);
    assert_eq!(setting(&cfg, "queue_depth").0, "12");
    assert_eq!(setting(&cfg, "retention_days").0, "30");
    assert_eq!(setting(&cfg, "host_metadata").0, "false");
    assert_eq!(
        setting(&cfg, "trusted_proxies").0,
        "10.0.0.1/32,10.0.0.2/32"
    );
}

/// Audit finding: `trail config` said `hmac_key_file = (none)` when the key
/// in use is `hmac.key` beside the database. It shows that file, and
/// whether it is yet to be made, without creating it or printing the key.
#[test]
fn config_shows_where_the_key_comes_from() {
    let dir = temp_dir();
    let data = dir.path().join("d");
    let db = data.join("trail.db");
    let dbs = db.to_str().unwrap();
    let key = data.join("hmac.key");
    let cfg = config_json(&["--db", dbs], &[]);
    assert_eq!(
        setting(&cfg, "hmac_key_file"),
        (
            format!("(default: {}, created on first use)", key.display()),
            "default".into()
        )
    );
    assert!(!data.exists(), "trail config creates nothing");
    trail_env(&["--db", dbs, "append", "x.y"], &[]).expect_code(0);
    let out = run_cmd(trail_cmd(&["--db", dbs, "config", "--json"]));
    out.expect_code(0);
    assert_eq!(
        setting(&out.json(), "hmac_key_file"),
        (format!("(default: {})", key.display()), "default".into())
    );
    let hex = std::fs::read_to_string(&key).unwrap();
    assert!(!out.stdout.contains(hex.trim()), "{}", out.stdout);
    // A key given in full: no file at all.
    let cfg = config_json(&["--db", dbs], &[("TRAIL_HMAC_KEY", HMAC_HEX)]);
    assert_eq!(
        setting(&cfg, "hmac_key_file"),
        ("(none)".into(), "default".into())
    );
}

/// `db` and `data_dir` name one thing, the database: the higher layer wins
/// (an environment variable over the file), both at one layer is refused.
#[test]
fn db_and_data_dir_are_one_choice() {
    let dir = temp_dir();
    let file = dir.path().join("db.toml");
    let in_file = dir.path().join("file.db");
    std::fs::write(&file, format!("db = \"{}\"\n", in_file.display())).unwrap();
    let f = file.to_str().unwrap();
    let dd = dir.path().join("dd");
    let cfg = config_json(
        &["--config", f],
        &[("TRAIL_DATA_DIR", dd.to_str().unwrap())],
    );
    assert_eq!(
        setting(&cfg, "db"),
        (
            dd.join("trail.db").display().to_string(),
            "environment variable TRAIL_DATA_DIR".into()
        )
    );
    // The flag beats the environment's data_dir.
    let flag_db = dir.path().join("flag.db");
    let cfg = config_json(
        &["--config", f, "--db", flag_db.to_str().unwrap()],
        &[("TRAIL_DATA_DIR", dd.to_str().unwrap())],
    );
    assert_eq!(
        setting(&cfg, "db"),
        (flag_db.display().to_string(), "flag --db".into())
    );
    // Both in the file: refused, and nothing created.
    std::fs::write(
        &file,
        format!(
            "db = \"{}\"\ndata_dir = \"{}\"\n",
            in_file.display(),
            dd.display()
        ),
    )
    .unwrap();
    refused(
        &trail_env(&["--config", f, "append", "x.y"], &[]),
        &format!(
            "trail: setting db (from {}): data_dir is set too (from {}); set one of them, not both",
            file_source(&file),
            file_source(&file)
        ),
    );
    assert!(!in_file.exists() && !dd.exists());
}
