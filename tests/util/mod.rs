//! Shared helpers for the CLI integration tests: a temporary folder holding a
//! database path and fixed key files, runners for the `trail` binary and for
//! the independent verifier `scripts/verify_chain.py` (each bounded by a
//! deadline, never a hope-for-timing sleep), and raw SQLite access for
//! tampering and counting.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The key every test writes with, unless it says otherwise.
pub const KEY_HEX: &str = "6b1f0e5d2c3a4b59687766554433221100ffeeddccbbaa998877665544332211";
/// A second, unrelated key (for rows sealed by another writer).
pub const OTHER_KEY_HEX: &str = "0123456789abcdeffedcba98765432100123456789abcdeffedcba9876543210";

/// How long one short command may take before the test calls it hung.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

pub const BIN: &str = env!("CARGO_BIN_EXE_trail");

/// The outcome of one process.
#[derive(Debug)]
pub struct Out {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics, showing everything, unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code of `{}`\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// Standard output as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim_end()).unwrap_or_else(|e| {
            panic!(
                "stdout of `{}` is not one JSON document ({e}):\n{}\nstderr: {}",
                self.what, self.stdout, self.stderr
            )
        })
    }

    /// Panics unless standard error holds every one of `needles`.
    pub fn stderr_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr of `{}` should contain {n:?}\nstderr: {}\nstdout: {}",
                self.what,
                self.stderr,
                self.stdout
            );
        }
        self
    }
}

/// One stored row, as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    pub seq: i64,
    pub entry: String,
    pub chain_hash: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A temporary folder with `data/trail.db` (not created until a writer runs)
/// and `keys/main.key` holding [`KEY_HEX`].
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub key: PathBuf,
    runs: AtomicUsize,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("trail-cli-")
            .tempdir()
            .expect("temp dir");
        fs::create_dir_all(dir.path().join("data")).unwrap();
        fs::create_dir_all(dir.path().join("keys")).unwrap();
        fs::create_dir_all(dir.path().join("runs")).unwrap();
        let db = dir.path().join("data").join("trail.db");
        let env = Env {
            db,
            key: PathBuf::new(),
            dir,
            runs: AtomicUsize::new(0),
        };
        let key = env.write_key("main.key", KEY_HEX);
        Env { key, ..env }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a key file (64 hex digits and a newline) under `keys/`.
    pub fn write_key(&self, name: &str, hex: &str) -> PathBuf {
        let p = self.dir.path().join("keys").join(name);
        fs::write(&p, format!("{hex}\n")).unwrap();
        p
    }

    pub fn db_str(&self) -> &str {
        self.db.to_str().unwrap()
    }

    pub fn key_str(&self) -> &str {
        self.key.to_str().unwrap()
    }

    /// `trail --db DB ...` with `TRAIL_HMAC_KEY_FILE` = `key` (none when
    /// `None`), and no other trail variable from the caller's environment.
    pub fn command_with_key(&self, key: Option<&Path>, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--db").arg(&self.db).args(args);
        for v in [
            "TRAIL_DB",
            "TRAIL_HMAC_KEY",
            "TRAIL_HMAC_KEY_FILE",
            "TRAIL_SYNCHRONOUS",
            "TRAIL_LOG",
        ] {
            c.env_remove(v);
        }
        if let Some(k) = key {
            c.env("TRAIL_HMAC_KEY_FILE", k);
        }
        c.current_dir(self.dir.path());
        c
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with_key(Some(&self.key), args)
    }

    /// Runs `trail` with the main key and waits (bounded) for it.
    pub fn trail(&self, args: &[&str]) -> Out {
        self.run(self.command(args), COMMAND_DEADLINE)
    }

    pub fn trail_with_key(&self, key: Option<&Path>, args: &[&str]) -> Out {
        self.run(self.command_with_key(key, args), COMMAND_DEADLINE)
    }

    /// Runs `trail` with standard input taken from `input`.
    pub fn trail_stdin(&self, args: &[&str], input: &str) -> Out {
        let p = self.path(&format!("runs/stdin-{}", self.next_run()));
        fs::write(&p, input).unwrap();
        let mut c = self.command(args);
        c.stdin(fs::File::open(&p).unwrap());
        self.run(c, COMMAND_DEADLINE)
    }

    /// `python3 scripts/verify_chain.py DB ARGS...`, with no key taken from
    /// the environment: only the `--key-file`s in `args` count.
    pub fn py_verify(&self, args: &[&str]) -> Out {
        let mut c = Command::new("python3");
        c.arg(verify_script()).arg(&self.db).args(args);
        for v in ["TRAIL_DB", "TRAIL_HMAC_KEY", "TRAIL_HMAC_KEY_FILE"] {
            c.env_remove(v);
        }
        c.current_dir(self.dir.path());
        self.run(c, COMMAND_DEADLINE)
    }

    fn next_run(&self) -> usize {
        self.runs.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `cmd` with its output captured in files (no pipe can fill up),
    /// killing it if it outlives `deadline`.
    pub fn run(&self, mut cmd: Command, deadline: Duration) -> Out {
        let what = describe(&cmd);
        let n = self.next_run();
        let out_path = self.path(&format!("runs/{n}.stdout"));
        let err_path = self.path(&format!("runs/{n}.stderr"));
        cmd.stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let status = wait_bounded(&mut child, deadline, &what);
        Out {
            what,
            code: status.code(),
            stdout: fs::read_to_string(&out_path).unwrap(),
            stderr: fs::read_to_string(&err_path).unwrap(),
        }
    }

    /// Writes `lines` as a JSON Lines file under the temp folder.
    pub fn write_lines<I, S>(&self, name: &str, lines: I) -> PathBuf
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut s = String::new();
        for l in lines {
            s.push_str(l.as_ref());
            s.push('\n');
        }
        let p = self.path(name);
        fs::write(&p, s).unwrap();
        p
    }

    /// Imports `events` (JSON values, one per line) and asserts it worked.
    pub fn import_values(&self, name: &str, events: &[Value], batch: usize) -> Out {
        let p = self.write_lines(name, events.iter().map(|v| v.to_string()));
        let out = self.trail(&[
            "import",
            p.to_str().unwrap(),
            "--batch-size",
            &batch.to_string(),
        ]);
        out.ok();
        out
    }

    /// A read-write connection with the triggers in place.
    pub fn conn(&self) -> Connection {
        let c = Connection::open(&self.db).unwrap();
        c.busy_timeout(Duration::from_secs(60)).unwrap();
        c
    }

    /// A read-write connection with the append-only triggers dropped, as an
    /// attacker with write access to the file would have.
    pub fn tamper_conn(&self) -> Connection {
        let c = self.conn();
        c.execute_batch(
            "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete; DROP TRIGGER events_next_seq;",
        )
        .unwrap();
        c
    }

    /// A read-only connection (fails if the file or table does not exist yet).
    pub fn conn_ro(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(&self.db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        c.busy_timeout(Duration::from_secs(10))?;
        Ok(c)
    }

    pub fn count(&self) -> i64 {
        self.conn_ro()
            .unwrap()
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap()
    }

    /// Every row, in `seq` order.
    pub fn rows(&self) -> Vec<RawRow> {
        let c = self.conn_ro().unwrap();
        let mut st = c
            .prepare("SELECT seq, entry, chain_hash, signature FROM events ORDER BY seq")
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok(RawRow {
                    seq: r.get(0)?,
                    entry: r.get(1)?,
                    chain_hash: r.get(2)?,
                    signature: r.get(3)?,
                })
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    /// The newest row's `seq` and chain hash (hex), or 0 and genesis.
    pub fn head(&self) -> (u64, String) {
        let c = self.conn_ro().unwrap();
        c.query_row(
            "SELECT seq, chain_hash FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    hex::encode(r.get::<_, Vec<u8>>(1)?),
                ))
            },
        )
        .unwrap_or((0, hex::encode([0u8; 32])))
    }
}

/// Waits for `child` until `deadline`; kills it and panics past that.
pub fn wait_bounded(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    if s == BIN {
        s = "trail".into();
    }
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `scripts/verify_chain.py`. It is written alongside these tests; if it is
/// not there yet, wait for it (checking every 30 s, for up to 20 minutes)
/// rather than skip what depends on it.
pub fn verify_script() -> &'static Path {
    static SCRIPT: OnceLock<PathBuf> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_chain.py");
        let until = Instant::now() + Duration::from_secs(20 * 60);
        while !p.exists() {
            assert!(
                Instant::now() < until,
                "{} did not appear within 20 minutes",
                p.display()
            );
            eprintln!("waiting for {} ...", p.display());
            std::thread::sleep(Duration::from_secs(30));
        }
        p
    })
}

/// `key_id` = the first 16 hex digits of SHA-256("trail-key-id" ‖ key).
pub fn key_id(key_hex: &str) -> String {
    let key = hex::decode(key_hex).unwrap();
    let mut h = Sha256::new();
    h.update(b"trail-key-id");
    h.update(&key);
    hex::encode(h.finalize())[..16].to_owned()
}

/// SHA-256(prev ‖ entry).
pub fn link(prev: &[u8], entry: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(entry);
    h.finalize().into()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The `trail verify --json` object.
pub fn verdict(valid: bool, checked: u64, bad: Option<(u64, &str)>, head: &(u64, String)) -> Value {
    serde_json::json!({
        "valid": valid,
        "entries_checked": checked,
        "first_bad_seq": bad.map(|b| b.0),
        "kind": bad.map(|b| b.1),
        "head": {"seq": head.0, "chain_hash": head.1},
    })
}
