#!/usr/bin/env bash
# HTTP benchmark (issue 3): installs its load generator (wrk), builds the
# release binary, and prints the figures:
#   1. 64 concurrent clients posting single events (durable: synchronous=FULL)
#   2. batches of 500 events
#   3. GET /v1/events with one filter at random depths of a 1,000,000-event file
#   4. export of 1,000,000 rows as CSV, with the server's peak memory growth
# Everything runs on this machine, load generator included, on loopback only.
#
#   scripts/bench_http.sh            # DURATION=20 seconds per load run
#   EVENTS=200000 scripts/bench_http.sh   # a smaller file for 3 and 4
#   BATCH_CONNECTIONS=64 scripts/bench_http.sh   # more batches in flight (default 8)
#   ONLY_READS=1 / ONLY_WRITES=1                 # phases 3-4 / phases 1-2 only
#   ONLY_SINGLES=1                               # phase 1 only (A/B runs of the writer)
#   PAGE_SIZE=4096 scripts/bench_http.sh         # files made with this page size
#   TRAIL_BIN=/path/to/trail                     # another build (no cargo build)
#   BIG_DB=/path/to/big.db                       # phases 3-4 on a copy of this file
#                                                # (EVENTS events), not a new import
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
EVENTS=${EVENTS:-1000000}
WORK=${WORK:-target/bench-http}
export WRK_COMMON="$PWD/scripts/wrk/common.lua"

. scripts/common.sh
need_command wrk
trail_bin
rm -rf "$WORK"
mkdir -p "$WORK"

PID=""
PORT=""
# With PAGE_SIZE set, a new file is made empty with that page size first
# (trail itself makes new files with its default page size).
new_file() {
    if [ -n "${PAGE_SIZE:-}" ] && [ ! -e "$1" ]; then
        python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("PRAGMA page_size=%d" % int(sys.argv[2])); c.execute("PRAGMA journal_mode=WAL"); c.execute("CREATE TABLE t(x)"); c.execute("DROP TABLE t"); c.close()' "$1" "$PAGE_SIZE"
    fi
}
start_server() {
    local db=$1
    new_file "$db"
    "$BIN" --db "$db" serve --bind 127.0.0.1:0 --queue-depth 16384 2>"$WORK/server.log" &
    PID=$!
    for _ in $(seq 1 200); do
        PORT=$(sed -n 's/^trail: listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$WORK/server.log")
        [ -n "$PORT" ] && break
        sleep 0.05
    done
    [ -n "$PORT" ] || { echo "server did not start"; cat "$WORK/server.log"; exit 1; }
}
stop_server() {
    kill -TERM "$PID"
    wait "$PID" || true
}
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null || true' EXIT

rows() {
    python3 -c 'import sqlite3,sys; print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("select count(*) from events").fetchone()[0])' "$1"
}

# Every acknowledged event is in the file: its rows are at least the 2xx
# answers times the events per request (requests still in flight when wrk
# stopped may have been committed too, so more is fine).
check_rows() {
    local n ok
    n=$(rows "$1")
    ok=$(sed -n 's/.*RESULT ok=\([0-9]*\).*/\1/p' "$2")
    echo "rows in the file after shutdown: $n (acknowledged: $((ok * $3)))"
    [ "$n" -ge $((ok * $3)) ] || { echo "FEWER ROWS THAN ACKNOWLEDGED EVENTS"; exit 1; }
}

if [ -z "${ONLY_READS:-}" ]; then
echo "== 1. single events: 64 connections, ${DURATION}s, synchronous=FULL"
start_server "$WORK/single.db"
wrk -t2 -c64 -d"${DURATION}s" -s scripts/wrk/post_single.lua "http://127.0.0.1:$PORT" | grep RESULT | tee "$WORK/single.txt"
# What the writer's group commits looked like (its own metrics).
curl -fsS "http://127.0.0.1:$PORT/metrics" | python3 -c '
import sys
m = {}
for line in sys.stdin:
    if not line.startswith("#") and " " in line:
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
n = m["trail_commit_batch_events_count"]
print("commits: %d, %.1f events each, %.2f ms each, writer busy %.1f s of %s s"
      % (n, m["trail_commit_batch_events_sum"] / n, 1000 * m["trail_commit_duration_seconds_sum"] / n,
         m["trail_commit_duration_seconds_sum"], sys.argv[1]))' "$DURATION"
stop_server
check_rows "$WORK/single.db" "$WORK/single.txt" 1
"$BIN" --db "$WORK/single.db" verify

if [ -n "${ONLY_SINGLES:-}" ]; then exit 0; fi
echo
BATCH_CONNECTIONS=${BATCH_CONNECTIONS:-8}
echo "== 2. batches of 500: ${BATCH_CONNECTIONS} connections, ${DURATION}s"
start_server "$WORK/batch.db"
BATCH=500 wrk -t2 -c"$BATCH_CONNECTIONS" -d"${DURATION}s" -s scripts/wrk/post_batch.lua "http://127.0.0.1:$PORT" | grep RESULT | tee "$WORK/batch.txt"
stop_server
python3 -c 'import re,sys; t=open(sys.argv[1]).read(); print("events/s: %.0f" % (float(re.search(r"ok_per_s=(\S+)", t).group(1)) * 500))' "$WORK/batch.txt"
check_rows "$WORK/batch.db" "$WORK/batch.txt" 500
fi

if [ -n "${ONLY_WRITES:-}" ]; then exit 0; fi

echo
echo "== 3. pages at random depths of a ${EVENTS}-event file: 64 connections, ${DURATION}s"
if [ -n "${BIG_DB:-}" ]; then
    cp "$BIG_DB" "$WORK/big.db"
    cp "$(dirname "$BIG_DB")/hmac.key" "$WORK/hmac.key"
else
python3 - "$EVENTS" >"$WORK/big.jsonl" <<'PY'
import json, sys
n = int(sys.argv[1])
types = ["user.login", "user.logout", "auth.fail", "file.read", "file.write", "order.create"]
levels = ["debug", "info", "info", "warning", "error"]
out = sys.stdout
for i in range(n):
    out.write(json.dumps({
        "event": types[i % len(types)], "level": levels[i % len(levels)],
        "actor": "user-%04d" % ((i * 7919) % 1000), "resource": "/api/v1/orders/%d" % (i % 100000),
        "success": i % 10 != 0, "source_ip": "10.%d.%d.%d" % (i % 256, (i // 256) % 256, i % 200),
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) bench/1.0", "request_id": "req-%012d" % i,
        "details": {"method": "POST", "status": 201, "bytes": i % 65536, "path": "/api/v1/orders"},
    }, separators=(",", ":")) + "\n")
PY
new_file "$WORK/big.db"
"$BIN" --db "$WORK/big.db" import "$WORK/big.jsonl" --batch-size 5000
rm -f "$WORK/big.jsonl"
fi
start_server "$WORK/big.db"
# Cursors carry an HMAC tag under the database's key; the benchmark holds
# the key (it made the file), so it can mint cursors at random depths.
python3 - "$PORT" "$EVENTS" "$WORK/hmac.key" >"$WORK/urls.txt" <<'PY'
import base64, hashlib, hmac, json, random, sys, urllib.request
port, n, key_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
key = bytes.fromhex(open(key_file).read().strip())
query = "actor=user-0421&limit=20"
page = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/events?{query}"))
raw = base64.urlsafe_b64decode(page["next_cursor"] + "==").decode()
_, _, fp, _ = raw.split(".")
rnd = random.Random(7)
for _ in range(20000):
    seq = rnd.randint(n // 10, n)
    body = f"c1.{seq}.{fp}"
    tag = hmac.new(key, b"trail-cursor\x00" + body.encode(), hashlib.sha256).hexdigest()[:24]
    cur = base64.urlsafe_b64encode(f"{body}.{tag}".encode()).decode().rstrip("=")
    print(f"/v1/events?{query}&cursor={cur}")
PY
# One of them, checked: a forged cursor would be 400.
curl -fsS -o /dev/null "http://127.0.0.1:$PORT$(head -1 "$WORK/urls.txt")" || { echo "minted cursor refused"; exit 1; }
URLS_FILE="$WORK/urls.txt" wrk -t2 -c64 -d"${DURATION}s" -s scripts/wrk/get_pages.lua "http://127.0.0.1:$PORT" | grep RESULT
stop_server

echo
echo "== 4. export of ${EVENTS} rows as CSV"
start_server "$WORK/big.db"
curl -s -o /dev/null "http://127.0.0.1:$PORT/v1/events?limit=1"
rss_before=$(awk '/^VmRSS/ {print $2}' /proc/$PID/status)
read -r secs bytes < <(curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$PORT/v1/export?format=csv")
hwm=$(awk '/^VmHWM/ {print $2}' /proc/$PID/status)
stop_server
python3 -c 'import sys; n,s,b,r,h=int(sys.argv[1]),float(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]),int(sys.argv[5]); print("RESULT rows=%d seconds=%.2f rows_per_s=%.0f bytes=%d rss_before_mb=%.1f peak_mb=%.1f growth_mb=%.1f" % (n,s,n/s,b,r/1024,h/1024,(h-r)/1024))' "$EVENTS" "$secs" "$bytes" "$rss_before" "$hwm"
