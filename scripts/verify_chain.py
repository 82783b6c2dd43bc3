#!/usr/bin/env python3
"""Independent verifier for a trail audit log (Python 3.11 standard library only).

Reads the SQLite database file directly, read-only, and re-derives the verdict
of `trail verify` from the chain format alone:

    chain_hash[n] = SHA-256(chain_hash[n-1] || entry[n])   (genesis: 32 zero bytes,
                    or the newest retention cut's chain_hash)
    signature[n]  = HMAC-SHA256(key, chain_hash[n])
    key_id        = hex(SHA-256(b"trail-key-id" || key))[:16]

After retention, the newest cut's own seal is checked first:
HMAC-SHA256(key[cut.key_id], b"trail-cut" || 0x00 || up_to_seq as 8 bytes
big-endian || cut.chain_hash) == cut.signature, else `bad_seal` (or
`unknown_key`) at the cut's up_to_seq.

Usage:
    verify_chain.py DB [--key-file F]... [--anchor SEQ:HEX] [--from SEQ] [--to SEQ] [--no-seals] [--json]
    verify_chain.py --vectors FILE

Keys: every --key-file, plus TRAIL_HMAC_KEY (64 hex digits) if set, else the
file named by TRAIL_HMAC_KEY_FILE if set (both set is an error, as in trail),
else hmac.key beside DB if it exists; plus every file of
TRAIL_VERIFY_KEY_FILES (comma-separated). A TOML configuration file
(TRAIL_CONFIG) is not read: give the keys it names with --key-file.

Exit codes: 0 intact, 1 verification failure, 2 usage or input error,
3 the database could not be read (part-way through, or at all on read-only
media with events in its -wal).
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import sqlite3
import sys
import urllib.parse

PROG = "verify_chain.py"
# --no-seals: hashes and links only (a log whose key is lost).
CHECK = {"seals": True}
GENESIS = bytes(32)
U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1

MISSING = "missing"
BROKEN_LINK = "broken_link"
MODIFIED = "modified"
UNKNOWN_KEY = "unknown_key"
BAD_SEAL = "bad_seal"
TRUNCATED = "truncated"

# trail's own encoding: `{"v":1,"seq":N,` first and `,"key_id":"<16>"}` last.
_FAST_HEAD = re.compile(rb'\{"v":1,"seq":([0-9]{1,19}),')
_TAIL_LEN = 11 + 16 + 2  # ,"key_id":" + 16 hex + "}
_TAIL_OPEN = b',"key_id":"'
_TAIL_CLOSE = b'"}'
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SEQ = re.compile(r"\+?[0-9]+")


class InputError(Exception):
    """A usage or input problem: exit code 2."""


class ReadError(Exception):
    """The database failed while being read: exit code 3."""


# --------------------------------------------------------------------------
# Keys


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(b"trail-key-id" + key).hexdigest()[:16]


def parse_key_hex(text: str, what: str) -> bytes:
    s = text.strip()
    if len(s) != 64:
        raise InputError(
            f"{what}: a key must be 64 hexadecimal digits (32 bytes); got {len(s)} characters"
        )
    if not _HEX64.fullmatch(s):
        raise InputError(f"{what}: a key must be 64 hexadecimal digits; found a character that is not one")
    return bytes.fromhex(s)


def read_key_file(path: str) -> bytes:
    # A regular file of at most 4 KiB, as trail reads it: a device such as
    # /dev/zero or a FIFO is refused, not read without end or waited on.
    if os.path.exists(path) and not os.path.isfile(path):
        what = "a folder" if os.path.isdir(path) else "not a regular file"
        raise InputError(f"cannot read key file {path}: it is {what}")
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)
    except OSError as e:
        raise InputError(f"cannot read key file {path}: {e.strerror or e}") from None
    if len(raw) > 4096:
        raise InputError(f"cannot read key file {path}: it is larger than 4096 bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"key file {path}: not UTF-8 text; a key must be 64 hexadecimal digits") from None
    return parse_key_hex(text, f"key file {path}")


class Keyring:
    """key_id -> a prepared HMAC-SHA256 object, copied per row."""

    def __init__(self):
        self.macs = {}

    def add(self, key: bytes):
        kid = key_id_of(key)
        if kid not in self.macs:
            self.macs[kid] = hmac.new(key, digestmod=hashlib.sha256)

    def __len__(self):
        return len(self.macs)


def build_keyring(db_path: str, key_files) -> Keyring:
    ring = Keyring()
    env_hex = os.environ.get("TRAIL_HMAC_KEY")
    env_file = os.environ.get("TRAIL_HMAC_KEY_FILE")
    if env_hex is not None and env_file is not None:
        # As trail: one choice, given twice, is an error naming both.
        raise InputError("TRAIL_HMAC_KEY and TRAIL_HMAC_KEY_FILE are both set; "
                         "set one of them, not both")
    if env_hex is not None:
        ring.add(parse_key_hex(env_hex, "TRAIL_HMAC_KEY"))
    elif env_file is not None:
        if not env_file:
            raise InputError("TRAIL_HMAC_KEY_FILE is set but empty: unset it or name a key file")
        ring.add(read_key_file(env_file))
    else:
        default = os.path.join(os.path.dirname(db_path), "hmac.key")
        if os.path.exists(default):
            ring.add(read_key_file(default))
    # Earlier keys, as trail takes them from the environment (comma-separated).
    earlier = os.environ.get("TRAIL_VERIFY_KEY_FILES", "")
    if earlier.strip():
        items = earlier.split(",")
        for i, path in enumerate(items):
            if not path.strip():
                raise InputError(f"TRAIL_VERIFY_KEY_FILES: item {i + 1} of {len(items)} is empty")
            ring.add(read_key_file(path.strip()))
    for path in key_files:
        ring.add(read_key_file(path))
    return ring


# --------------------------------------------------------------------------
# Entries


_HEX16 = re.compile(rb"[0-9a-fA-F]{16}")


def entry_head(entry: bytes):
    """(seq, key_id) read from the layout of the chain format: `{"v":1,"seq":N,`
    first and `,"key_id":"<16 hex>"}` last; None for an entry in any other
    layout (trail writes no other, so such an entry is `modified`)."""
    m = _FAST_HEAD.match(entry)
    if m is None or len(entry) < _TAIL_LEN:
        return None
    tail = entry[-_TAIL_LEN:]
    if not (tail.startswith(_TAIL_OPEN) and tail.endswith(_TAIL_CLOSE)):
        return None
    kid = tail[len(_TAIL_OPEN):-len(_TAIL_CLOSE)]
    if not _HEX16.fullmatch(kid):
        return None
    return int(m.group(1)), kid.decode("ascii")


def hash_of(v):
    """A stored hash as trail reads it: 32 bytes of a BLOB or TEXT, else None."""
    return v if isinstance(v, bytes) and len(v) == 32 else None


def as_bytes(v) -> bytes:
    # TEXT and BLOB arrive as bytes (text_factory = bytes); NULL and numbers
    # are no bytes at all.
    return v if isinstance(v, bytes) else b""


# --------------------------------------------------------------------------
# Database


def wal_on_read_only_media(path: str) -> str:
    return (f"cannot read {path}: events in {path}-wal can only be read where SQLite "
            f"may create {path}-shm beside it (read-only media?); copy the file and "
            "its -wal to a writable folder and verify the copy")


def open_db(path: str) -> sqlite3.Connection:
    if not os.path.exists(path):
        raise InputError(f"no database at {path}")
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder, not a trail database")
    # Bytes, as the file system has them: a name that is not UTF-8 is
    # still the file named.
    uri = "file:" + urllib.parse.quote(os.fsencode(os.path.abspath(path))) + "?mode=ro"

    def connect(uri):
        conn = sqlite3.connect(uri, uri=True, timeout=60.0, isolation_level=None)
        conn.text_factory = bytes
        conn.execute("PRAGMA query_only = ON")
        n = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()[0]
        return conn, n

    try:
        try:
            conn, n = connect(uri)
        except sqlite3.OperationalError as e:
            # A copy on read-only media: SQLite cannot make the -shm a WAL
            # file needs. With no WAL content beside it, the file alone is
            # the whole log and may be read as immutable (as trail does).
            wal = path + "-wal"
            wal_empty = not os.path.exists(wal) or os.path.getsize(wal) == 0
            msg = str(e)
            read_only_media = "readonly" in msg or "unable to open" in msg
            folder = os.path.dirname(os.path.abspath(path))
            if read_only_media and wal_empty:
                conn, n = connect(uri + "&immutable=1")
            elif read_only_media and os.access(path, os.R_OK) and not os.access(folder, os.W_OK):
                # As trail (exit 3): the file system, not the input.
                raise ReadError(wal_on_read_only_media(path)) from None
            else:
                raise
    except sqlite3.Error as e:
        if "unable to open" in str(e) or "disk I/O" in str(e):
            # As trail (exit 3): the file system refused, not the input.
            raise ReadError(f"cannot read {path}: {e}") from None
        if "malformed" in str(e):
            # As trail (exit 3): a damaged file, not a usage error.
            raise ReadError(f"reading {path}: the database file is damaged "
                            f"(SQLite: {e}); restore it from a backup") from None
        raise InputError(f"cannot open {path} as a trail database: {e}") from None
    if not n:
        conn.close()
        raise InputError(f"{path} is not a trail database (it has no events table)")
    return conn


def newest_cut(conn):
    """The newest retention cut as (up_to_seq, chain_hash, signature, key_id),
    the values as stored, or None when there is none."""
    has = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'retention_cuts'"
    ).fetchone()[0]
    if not has:
        return None
    row = conn.execute(
        "SELECT up_to_seq, chain_hash, signature, key_id FROM retention_cuts "
        "ORDER BY up_to_seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    kid = as_bytes(row[3]).decode("utf-8", errors="replace")
    return int(row[0]), as_bytes(row[1]), as_bytes(row[2]), kid


def check_cut(ring: Keyring, cut):
    """The cut's own seal, which binds its position and hash:
    HMAC(key[key_id], b"trail-cut" 0x00 up_to_seq(8 bytes, big-endian) chain_hash)
    == signature. Returns a failure (up_to_seq, kind) or None."""
    up_to_seq, ch, sig, kid = cut
    mac = ring.macs.get(kid)
    if mac is None:
        return (up_to_seq, UNKNOWN_KEY)
    mac = mac.copy()
    mac.update(b"trail-cut\x00" + (up_to_seq % (1 << 64)).to_bytes(8, "big") + ch)
    if not hmac.compare_digest(mac.digest(), sig):
        return (up_to_seq, BAD_SEAL)
    return None


def read_head(conn, cut_seq: int, cut_hash: bytes):
    """The newest row at seq 1 or above, unless the newest cut is higher (a
    prune deleting from the cut down has taken the cut's own row)."""
    row = conn.execute(
        "SELECT seq, chain_hash FROM events WHERE seq >= 1 ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None or int(row[0]) < cut_seq:
        return cut_seq, cut_hash
    return int(row[0]), hash_of(row[1]) or GENESIS


def verify_db(conn, ring: Keyring, from_seq, to_seq, anchor):
    """Returns (entries_checked, failure or None, head_seq, head_hash);
    failure = (seq, kind)."""
    conn.execute("BEGIN")  # one snapshot for every read
    try:
        cut = newest_cut(conn)
        if cut is None:
            cut_seq, cut_hash = 0, GENESIS
        else:
            cut_seq = cut[0]
            cut_hash = cut[1] if len(cut[1]) == 32 else GENESIS
        head_seq, head_hash = read_head(conn, cut_seq, cut_hash)
        checked = 0
        # A row, or a retention cut, below seq 1: no chain starts there.
        if conn.execute("SELECT EXISTS (SELECT 1 FROM events WHERE seq < 1)").fetchone()[0] \
                or (cut is not None and conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM retention_cuts WHERE up_to_seq < 1)").fetchone()[0]):
            return checked, (0, BROKEN_LINK), head_seq, head_hash
        # Rows after a cut are only as trustworthy as the cut they link to.
        failure = check_cut(ring, cut) if cut is not None and CHECK["seals"] else None
        if failure is not None:
            return checked, failure, head_seq, head_hash
        if cut_seq > 0 and (from_seq is None or from_seq <= cut_seq) \
                and (to_seq is None or to_seq >= cut_seq):
            checked, failure = check_below_cut(conn, ring, cut_seq, cut_hash)
            if failure is not None:
                return checked, failure, head_seq, head_hash
        start = max(from_seq if from_seq is not None else 1, cut_seq + 1)
        end = min(to_seq if to_seq is not None else U64_MAX, head_seq)
        if start <= end:
            n, failure = check_range(conn, ring, start, end, cut_seq, cut_hash)
            checked += n
        if failure is None and anchor is not None:
            failure = check_anchor(conn, anchor, head_seq, cut_seq, cut_hash)
    finally:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            pass
    return checked, failure, head_seq, head_hash


def _rows(cur):
    while True:
        batch = cur.fetchmany(4096)
        if not batch:
            return
        yield from batch


# What is read of a row: the chained columns, then the generated ones, which
# must hold the entry's members of the same names (GENERATED).
# (TEXT arrives as bytes, as BLOB does: the last column tells them apart.)
ROW_COLUMNS = ("seq, entry, chain_hash, signature, "
               "id, ts, event, level, actor, resource, success, source_ip, "
               "'blob' IN (typeof(id), typeof(ts), typeof(event), typeof(level), "
               "typeof(actor), typeof(resource), typeof(success), typeof(source_ip))")
GENERATED = ("id", "timestamp", "event", "level", "actor", "resource", "success", "source_ip")


def _first_member(pairs):
    doc = {}
    for k, v in pairs:
        doc.setdefault(k, v)
    return doc


def columns_agree(entry: bytes, columns) -> bool:
    """Whether the generated columns hold what the entry says. SQLite
    computes them when a row is written; they disagree only if someone
    rewrote the table's schema, and then every filter and query of the
    columns shows a forged value beside an entry that verifies."""
    try:
        # The first of two members of one name, as SQLite's json_extract.
        doc = json.loads(entry, object_pairs_hook=_first_member)
    except ValueError:
        return False
    if not isinstance(doc, dict) or columns[-1]:
        return False
    for name, have in zip(GENERATED, columns):
        want = doc.get(name)
        if isinstance(want, bool):
            want = int(want)
        elif isinstance(want, str):
            # A lone surrogate escape decodes to the bytes SQLite gives it.
            want = want.encode("utf-8", "surrogatepass")
        if type(have) is not type(want) or have != want:
            return False
    return True


def check_rows(rows, ring: Keyring, expected: int, prev):
    """Checks rows (ROW_COLUMNS) in seq order, the first
    expected at `expected`; `prev` is its predecessor's hash. Returns
    (checked, failure or None, next expected seq, last hash)."""
    macs = ring.macs
    sha256 = hashlib.sha256
    compare = hmac.compare_digest
    checked = 0
    for seq, entry, ch, sig, *columns in rows:
        if type(seq) is not int:
            seq = 0  # as trail reads a seq that is not an integer
        if seq > expected:
            return checked, (expected, MISSING), expected, prev
        if seq < expected:
            return checked, (seq, BROKEN_LINK), expected, prev
        entry = as_bytes(entry)
        head = entry_head(entry)
        if head is not None and head[0] != seq:
            return checked, (seq, BROKEN_LINK), expected, prev
        if type(ch) is not bytes or len(ch) != 32 or sha256(prev + entry).digest() != ch:
            return checked, (seq, MODIFIED), expected, prev
        if head is None:
            return checked, (seq, MODIFIED), expected, prev
        if CHECK["seals"]:
            mac = macs.get(head[1])
            if mac is None:
                return checked, (seq, UNKNOWN_KEY), expected, prev
            mac = mac.copy()
            mac.update(ch)
            if type(sig) is not bytes or not compare(mac.digest(), sig):
                return checked, (seq, BAD_SEAL), expected, prev
        if not columns_agree(entry, columns):
            return checked, (seq, MODIFIED), expected, prev
        prev = ch
        expected += 1
        checked += 1
    return checked, None, expected, prev


def cut_at(conn, seq: int):
    """The retention cut recorded at seq, as newest_cut gives one, or None."""
    row = conn.execute(
        "SELECT up_to_seq, chain_hash, signature, key_id FROM retention_cuts WHERE up_to_seq = ?",
        (seq,),
    ).fetchone()
    if row is None:
        return None
    return int(row[0]), as_bytes(row[1]), as_bytes(row[2]), as_bytes(row[3]).decode("utf-8", errors="replace")


def check_below_cut(conn, ring: Keyring, cut_seq: int, cut_hash: bytes):
    """Rows still at or below the newest cut (a prune deletes them in batches
    after recording it, from the cut down, and finishes an interrupted one
    before cutting again): a run starting at the genesis or right after an
    older cut (its seal checked, its hash the first row's link), each row
    checked, ending on the cut's hash if it reaches the cut. A run starting
    anywhere else is broken_link at its first row: nothing ties that row's
    entry to the chain."""
    cur = conn.execute(
        "SELECT " + ROW_COLUMNS + " FROM events WHERE seq BETWEEN 1 AND ? ORDER BY seq",
        (cut_seq,),
    )
    first = cur.fetchone()
    if first is None:
        return 0, None
    seq0 = first[0] if type(first[0]) is int else 0
    if seq0 == 1:
        start = GENESIS
    else:
        older = cut_at(conn, seq0 - 1)
        if older is None:
            return 0, (seq0, BROKEN_LINK)
        failure = check_cut(ring, older) if CHECK["seals"] else None
        if failure is not None:
            return 0, failure
        start = older[1] if len(older[1]) == 32 else GENESIS
    rows = _rows(cur)
    checked, failure, expected, last = check_rows([first], ring, seq0, start)
    if failure is None:
        n, failure, expected, last = check_rows(rows, ring, expected, last)
        checked += n
    if failure is not None:
        return checked, failure
    # One that stops below the cut is a prune's, stopped part-way.
    if expected > cut_seq and last != cut_hash:
        return checked, (cut_seq, MODIFIED)
    return checked, None


def check_range(conn, ring: Keyring, start: int, end: int, cut_seq: int, cut_hash: bytes):
    row = conn.execute(
        "SELECT seq, chain_hash FROM events WHERE seq < ? AND seq > ? ORDER BY seq DESC LIMIT 1",
        (start, cut_seq),
    ).fetchone()
    if row is None:
        prev_seq, prev = cut_seq, cut_hash
    else:
        prev_seq, prev = int(row[0]), hash_of(row[1]) or GENESIS
    if prev_seq + 1 != start:
        return 0, (prev_seq + 1, MISSING)
    cur = conn.execute(
        "SELECT " + ROW_COLUMNS + " FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
        (start, end),
    )
    checked, failure, expected, _ = check_rows(_rows(cur), ring, start, prev)
    if failure is not None:
        return checked, failure
    if expected <= end:
        return checked, (expected, MISSING)
    return checked, None


def check_anchor(conn, anchor, head_seq: int, cut_seq: int, cut_hash: bytes):
    aseq, ahash = anchor
    if aseq > head_seq:
        return (head_seq + 1, TRUNCATED)
    if aseq < cut_seq:
        return None  # below the newest retention cut: nothing left to compare with
    if aseq == cut_seq:
        stored = cut_hash
    else:
        row = conn.execute("SELECT chain_hash FROM events WHERE seq = ?", (aseq,)).fetchone()
        stored = row[0] if row is not None and isinstance(row[0], bytes) else None
    if stored is None or not hmac.compare_digest(stored, ahash):
        return (aseq, TRUNCATED)
    return None


# --------------------------------------------------------------------------
# Golden vectors


def run_vectors(path: str) -> int:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except OSError as e:
        raise InputError(f"cannot read vectors file {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise InputError(f"vectors file {path} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InputError(f"vectors file {path}: the top level must be an object")
    key_hex = doc.get("key_hex")
    want_kid = doc.get("key_id")
    events = doc.get("events")
    if not isinstance(key_hex, str) or not isinstance(want_kid, str) or not isinstance(events, list):
        raise InputError(f"vectors file {path}: needs key_hex, key_id (strings) and events (a list)")
    if not events:
        raise InputError(f"vectors file {path}: events is empty, nothing to check")
    key = parse_key_hex(key_hex, "key_hex")
    failures = []
    kid = key_id_of(key)
    if kid != want_kid:
        failures.append(f"key_id: derived {kid} from key_hex, the file says {want_kid}")
    mac0 = hmac.new(key, digestmod=hashlib.sha256)
    prev = GENESIS
    for i, ev in enumerate(events):
        label = f"event #{i}"
        if not isinstance(ev, dict):
            raise InputError(f"vectors file {path}: {label} is not an object")
        seq, entry, ch_hex, sig_hex = (ev.get(k) for k in ("seq", "entry", "chain_hash", "signature"))
        if type(seq) is not int or not isinstance(entry, str) or not isinstance(ch_hex, str) \
                or not isinstance(sig_hex, str):
            raise InputError(
                f"vectors file {path}: {label} needs seq (integer), entry, chain_hash, signature (strings)"
            )
        label = f"event #{i} (seq {seq})"
        try:
            ch = bytes.fromhex(ch_hex)
            sig = bytes.fromhex(sig_hex)
        except ValueError:
            raise InputError(f"vectors file {path}: {label}: chain_hash/signature are not hex") from None
        entry_b = entry.encode("utf-8")
        if seq != i + 1:
            failures.append(f"{label}: seq is not {i + 1} (events must run 1, 2, 3, ... from genesis)")
        try:
            obj = json.loads(entry)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            failures.append(f"{label}: entry is not a JSON object")
        else:
            if obj.get("seq") != seq or type(obj.get("seq")) is not int:
                failures.append(f"{label}: entry seq {obj.get('seq')!r} != vector seq {seq}")
            if obj.get("key_id") != want_kid:
                failures.append(f"{label}: entry key_id {obj.get('key_id')!r} != {want_kid}")
            if not entry.startswith('{"v":1,"seq":%d,' % seq):
                failures.append(f"{label}: entry does not begin with {{\"v\":1,\"seq\":{seq},")
        got = hashlib.sha256(prev + entry_b).digest()
        if got != ch:
            failures.append(f"{label}: chain_hash: SHA-256(prev || entry) is {got.hex()}, the file says {ch_hex}")
        m = mac0.copy()
        m.update(ch)
        if not hmac.compare_digest(m.digest(), sig):
            failures.append(
                f"{label}: signature: HMAC-SHA256(key, chain_hash) is {m.hexdigest()}, the file says {sig_hex}"
            )
        prev = ch  # go on from the stored hash, so each event is judged on its own
    if failures:
        for f in failures:
            print(f"vectors FAILED: {f}")
        return 1
    print(f"vectors ok: {len(events)} events")
    return 0


# --------------------------------------------------------------------------
# Command line


def parse_seq_arg(s: str) -> int:
    if not _SEQ.fullmatch(s):
        raise argparse.ArgumentTypeError(f"must be a sequence number (got {s!r})")
    n = int(s)
    if not 1 <= n <= I64_MAX:
        raise argparse.ArgumentTypeError(f"must be from 1 to {I64_MAX} (got {s!r})")
    return n


def parse_anchor(s: str):
    seq_s, sep, hex_s = s.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("must be SEQ:HEX, such as 42:9f86d0... (64 hex digits)")
    if not _SEQ.fullmatch(seq_s) or int(seq_s) > U64_MAX:
        raise argparse.ArgumentTypeError(f"the part before ':' must be a sequence number (got {seq_s!r})")
    seq = int(seq_s)
    if seq == 0:
        raise argparse.ArgumentTypeError("the sequence number must be 1 or more")
    if not _HEX64.fullmatch(hex_s):
        raise argparse.ArgumentTypeError("the part after ':' must be a chain hash of 64 hex digits")
    return seq, bytes.fromhex(hex_s)


def make_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Independent verifier of a trail audit log (SQLite file) or of golden vectors.",
    )
    p.add_argument("db", nargs="?", metavar="DB", help="the trail database file")
    p.add_argument("--key-file", action="append", default=[], metavar="F",
                   help="a file holding a key as 64 hex digits (repeatable)")
    p.add_argument("--anchor", type=parse_anchor, metavar="SEQ:HEX",
                   help="a head seen earlier: detects a cut-off or rewritten tail")
    p.add_argument("--from", dest="from_seq", type=parse_seq_arg, metavar="SEQ")
    p.add_argument("--to", dest="to_seq", type=parse_seq_arg, metavar="SEQ")
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON line")
    p.add_argument("--no-seals", action="store_true",
                   help="check hashes and links only, not the HMAC seals (a log whose key is lost)")
    p.add_argument("--vectors", metavar="FILE", help="check a golden vectors file instead of a database")
    return p


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.vectors is not None:
        if args.db is not None or args.key_file or args.anchor or args.from_seq is not None \
                or args.to_seq is not None or args.json or args.no_seals:
            parser.error("--vectors FILE takes no database nor other options")
        return run_vectors(args.vectors)
    if args.db is None:
        parser.error("the database file DB is required (or --vectors FILE)")
    if args.from_seq is not None and args.to_seq is not None and args.from_seq > args.to_seq:
        raise InputError(f"--from {args.from_seq} is after --to {args.to_seq}")

    CHECK["seals"] = not args.no_seals
    ring = build_keyring(args.db, args.key_file)
    conn = open_db(args.db)
    try:
        checked, failure, head_seq, head_hash = verify_db(
            conn, ring, args.from_seq, args.to_seq, args.anchor
        )
        cut = newest_cut(conn)
    except sqlite3.Error as e:
        raise ReadError(f"reading {args.db}: {e}") from None
    finally:
        conn.close()

    if args.json:
        report = {
            "valid": failure is None,
            "entries_checked": checked,
            "first_bad_seq": failure[0] if failure else None,
            "kind": failure[1] if failure else None,
            "head": {"seq": head_seq, "chain_hash": head_hash.hex()},
        }
        print(json.dumps(report, separators=(",", ":")))
    elif failure is None:
        only = " (hashes and links only: seals not checked)" if args.no_seals else ""
        print(f"intact: {checked} entries checked{only}; head seq {head_seq} chain_hash {head_hash.hex()}")
    else:
        print(f"BROKEN at seq {failure[0]}: {failure[1]}; {checked} entries checked before it")
    if args.anchor is not None and cut is not None and args.anchor[0] < cut[0]:
        print(f"{PROG}: warning: the anchor (seq {args.anchor[0]}) is below the newest retention "
              f"cut (seq {cut[0]}): the rows it names were pruned, so it was not compared; keep "
              "anchors newer than the newest cut", file=sys.stderr)
    if failure is not None and len(ring) == 0:
        print(f"{PROG}: no HMAC key was found: set TRAIL_HMAC_KEY, TRAIL_HMAC_KEY_FILE "
              "or pass --key-file", file=sys.stderr)
    return 0 if failure is None else 1


if __name__ == "__main__":
    try:
        code = main()
    except InputError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        code = 2
    except ReadError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        code = 3
    except BrokenPipeError:
        code = 0
    sys.exit(code)
