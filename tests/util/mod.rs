//! Helpers shared by every integration-test binary, so a fix lands once:
//! the `trail` binary run to the end under a deadline (output in files, never
//! a pipe that can fill up) or started as `trail serve` and waited for until
//! it says where it listens; a temporary folder holding a database path and
//! key files, with the independent verifier `scripts/verify_chain.py`; raw
//! SQLite access for tampering and counting; and, in [`http`], the HTTP
//! client side and the in-process server of the API tests. Nothing here
//! sleeps hoping for timing: every wait polls a condition until a deadline.
//!
//! `tests/cli.rs` and `tests/ops.rs` include it as `mod util;`, the `api` and
//! `operations` binaries as `#[path = "../util/mod.rs"] mod util;`.

#![allow(dead_code)]

pub mod http;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The key every test writes with, unless it says otherwise.
pub const KEY_HEX: &str = "6b1f0e5d2c3a4b59687766554433221100ffeeddccbbaa998877665544332211";
/// A second, unrelated key (for rows sealed by another writer).
pub const OTHER_KEY_HEX: &str = "0123456789abcdeffedcba98765432100123456789abcdeffedcba9876543210";

/// How long one short command may take before the test calls it hung.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

pub const BIN: &str = env!("CARGO_BIN_EXE_trail");

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

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
    #[track_caller]
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

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// Standard output as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim_end()).unwrap_or_else(|e| {
            panic!(
                "stdout of `{}` is not one JSON document ({e}):\n{}\nstderr: {}",
                self.what, self.stdout, self.stderr
            )
        })
    }

    /// Panics unless standard error holds every one of `needles`.
    #[track_caller]
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

/// A `trail ARGS...` command with an empty environment (no inherited
/// `TRAIL_*`, `TRAIL_LOG=error`) and standard input from `/dev/null`.
pub fn trail_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("TRAIL_LOG", "error")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` to the end, killing it (and failing) after [`COMMAND_DEADLINE`].
pub fn run_cmd(cmd: Command) -> Out {
    run_cmd_within(cmd, COMMAND_DEADLINE)
}

/// Runs `cmd` to the end with its output captured in files (no pipe can
/// fill up), killing it (and failing) if it outlives `deadline`. Standard
/// input is left as `cmd` has it.
pub fn run_cmd_within(mut cmd: Command, deadline: Duration) -> Out {
    let what = describe(&cmd);
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    cmd.stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let status = wait_bounded(&mut child, deadline, &what);
    Out {
        what,
        code: status.code(),
        stdout: fs::read_to_string(out.path()).unwrap(),
        stderr: fs::read_to_string(err.path()).unwrap(),
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

/// A running `trail serve`, started by [`spawn_listening`]; killed
/// (SIGKILL) when dropped, unless it has exited.
pub struct Serving {
    pub child: Child,
    /// `HOST:PORT`, as the server printed it.
    pub addr: String,
    /// `http://HOST:PORT`
    pub base: String,
    /// Everything the server wrote on standard error so far.
    pub stderr: Arc<Mutex<String>>,
}

/// Starts `cmd` (a `trail ... serve` command) with standard error piped and
/// waits (bounded) for its `trail: listening on HOST:PORT` line. Standard
/// error keeps being drained into [`Serving::stderr`] by a thread, so the
/// server never blocks on a full pipe.
pub fn spawn_listening(mut cmd: Command) -> Serving {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start trail serve: {e}"));
    let err = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel::<String>();
    let log2 = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("trail: listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
            let mut l = log2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "trail serve did not say it was listening within 30 s ({e}); stderr:\n{}",
                log.lock().unwrap()
            );
        }
    };
    Serving {
        child,
        base: format!("http://{addr}"),
        addr,
        stderr: log,
    }
}

impl Serving {
    /// The port, asserting that the server listens on `host`.
    #[track_caller]
    pub fn port_on(&self, host: &str) -> u16 {
        self.addr
            .strip_prefix(host)
            .and_then(|rest| rest.strip_prefix(':'))
            .unwrap_or_else(|| panic!("trail serve listens on {}, not on {host}", self.addr))
            .parse()
            .expect("a port")
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A new temporary folder named `{prefix}...`.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

// ---------------------------------------------------------------------------
// A folder with a database and keys, for the CLI
// ---------------------------------------------------------------------------

/// One stored row, as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    pub seq: i64,
    pub entry: String,
    pub chain_hash: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A temporary folder with `data/trail.db` (not created until a writer runs)
/// and `keys/main.key` holding [`KEY_HEX`] (or the key given to
/// [`Env::with_key`]).
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
        Env::with_key(KEY_HEX)
    }

    /// Same as [`Env::new`], with `key_hex` in `keys/main.key`.
    pub fn with_key(key_hex: &str) -> Env {
        let dir = temp_dir("trail-cli-");
        for d in ["data", "keys", "runs"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let db = dir.path().join("data").join("trail.db");
        let env = Env {
            db,
            key: PathBuf::new(),
            dir,
            runs: AtomicUsize::new(0),
        };
        let key = env.write_key("main.key", key_hex);
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
    /// `None`), no other trail variable from the caller's environment, and
    /// standard input from `/dev/null` (until the caller sets another).
    pub fn command_on(&self, db: &Path, key: Option<&Path>, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--db").arg(db).args(args);
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
        c.current_dir(self.dir.path()).stdin(Stdio::null());
        c
    }

    /// [`Env::command_on`] this folder's database.
    pub fn command_with_key(&self, key: Option<&Path>, args: &[&str]) -> Command {
        self.command_on(&self.db, key, args)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with_key(Some(&self.key), args)
    }

    /// Runs `trail` with the main key and waits (bounded) for it.
    pub fn trail(&self, args: &[&str]) -> Out {
        run_cmd(self.command(args))
    }

    pub fn trail_with_key(&self, key: Option<&Path>, args: &[&str]) -> Out {
        run_cmd(self.command_with_key(key, args))
    }

    /// Runs `trail` on another database file `db`.
    pub fn trail_on(&self, db: &Path, key: Option<&Path>, args: &[&str]) -> Out {
        run_cmd(self.command_on(db, key, args))
    }

    /// Runs `trail` with standard input taken from `input`.
    pub fn trail_stdin(&self, args: &[&str], input: &str) -> Out {
        let p = self.path(&format!("runs/stdin-{}", self.next_run()));
        fs::write(&p, input).unwrap();
        let mut c = self.command(args);
        c.stdin(fs::File::open(&p).unwrap());
        run_cmd(c)
    }

    /// `python3 scripts/verify_chain.py DB ARGS...`, with no key taken from
    /// the environment: only the `--key-file`s in `args` count.
    pub fn py_verify(&self, args: &[&str]) -> Out {
        self.py_verify_on(&self.db, args)
    }

    /// [`Env::py_verify`] on another database file `db`.
    pub fn py_verify_on(&self, db: &Path, args: &[&str]) -> Out {
        let mut c = Command::new("python3");
        c.arg(verify_script()).arg(db).args(args);
        for v in ["TRAIL_DB", "TRAIL_HMAC_KEY", "TRAIL_HMAC_KEY_FILE"] {
            c.env_remove(v);
        }
        c.current_dir(self.dir.path()).stdin(Stdio::null());
        run_cmd(c)
    }

    fn next_run(&self) -> usize {
        self.runs.fetch_add(1, Ordering::Relaxed)
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
        open_ro(&self.db)
    }

    pub fn count(&self) -> i64 {
        count_in(&self.db).expect("the database can be read")
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
        head_of(&self.db)
    }
}

/// The newest row's `seq` and chain hash (hex) in the file at `db`, or 0
/// and genesis.
pub fn head_of(db: &Path) -> (u64, String) {
    let c = open_ro(db).unwrap();
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

// ---------------------------------------------------------------------------
// SQLite, read directly
// ---------------------------------------------------------------------------

/// A read-only connection to `db` that waits up to 10 s for a writer's lock.
pub fn open_ro(db: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    c.busy_timeout(Duration::from_secs(10))?;
    Ok(c)
}

/// `count(*)` of `events` in `db` (fails if the file or table does not exist
/// yet).
pub fn count_in(db: &Path) -> rusqlite::Result<i64> {
    open_ro(db)?.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
}

/// A database file read directly while a server may be writing it (keeps
/// its temporary folder, if any, alive).
#[derive(Clone)]
pub struct Db(pub PathBuf, pub Option<Arc<tempfile::TempDir>>);

impl Db {
    /// A read-only connection, without a busy timeout.
    pub fn conn(&self) -> Connection {
        Connection::open_with_flags(
            &self.0,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open the database read-only")
    }

    /// Every row in the file.
    pub fn count(&self) -> u64 {
        self.conn()
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }

    /// Every event's `entry` as JSON, by seq.
    pub fn events(&self) -> Vec<Value> {
        let c = self.conn();
        let mut st = c.prepare("SELECT entry FROM events ORDER BY seq").unwrap();
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|e| serde_json::from_str(&e.unwrap()).expect("entry is JSON"))
            .collect();
        rows
    }

    /// The events of this type, by seq.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// The events recorded with this `request_id`.
    pub fn by_request_id(&self, rid: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["request_id"] == rid)
            .collect()
    }

    pub fn by_id(&self, id: &str) -> Option<Value> {
        self.events().into_iter().find(|e| e["id"] == id)
    }

    pub fn last(&self) -> Value {
        self.events().pop().expect("at least one event")
    }

    /// Panics if `needle` occurs anywhere in the raw bytes of the database
    /// file or its WAL (or rollback journal).
    #[track_caller]
    pub fn assert_absent(&self, needle: &str, what: &str) {
        assert!(!needle.is_empty());
        let mut checked = 0;
        for suffix in ["", "-wal", "-journal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", self.0.display()));
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            checked += 1;
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{what} ({needle:?}) occurs in the raw bytes of {}",
                p.display()
            );
        }
        assert!(checked >= 1, "no database file at {}", self.0.display());
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// The independent verifier, keys and the chain
// ---------------------------------------------------------------------------

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
