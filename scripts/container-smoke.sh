#!/usr/bin/env bash
# Smoke test of the container: build and run the image where a Docker
# engine is available; otherwise run the release binary with the image's
# environment and user (uid 10001, TRAIL_DB under a /data-like folder,
# TRAIL_BIND on every interface). Checks: start-up is refused without a
# token, /readyz, a write, a read, `trail healthcheck`, a clean SIGTERM,
# server.stop last, the chain intact. Loopback traffic only.
#   TRAIL_BIN=/path/to/trail scripts/container-smoke.sh   # that build, no cargo build (no Docker)
set -euo pipefail
cd "$(dirname "$0")/.."

TOKEN="smoke-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

check_api() {
    local base=$1
    for _ in $(seq 1 100); do
        curl -fsS "$base/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] || fail "/readyz"
    ok "/readyz answers 200"
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/events")" = 401 ] || fail "a read without a token must be 401"
    ok "a read without a token is refused (401)"
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d '{"event":"smoke.test","actor":"container-smoke"}' "$base/v1/events")
    [ "$code" = 201 ] || fail "write answered $code"
    ok "a write with the bootstrap token is stored (201)"
    curl -fsS -H "Authorization: Bearer $TOKEN" "$base/v1/events?actor=container-smoke" | grep -q '"event":"smoke.test"' || fail "read"
    ok "the event reads back"
}

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "== Docker engine found: building the image"
    docker build -t trail:smoke .
    if docker run --rm trail:smoke serve >/dev/null 2>&1; then fail "the image started without a token"; fi
    ok "the image refuses to start without a token"
    cid=$(docker run -d -e TRAIL_BOOTSTRAP_TOKEN="$TOKEN" -p "127.0.0.1:$PORT:8080" trail:smoke)
    trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
    check_api "http://127.0.0.1:$PORT"
    docker exec "$cid" trail healthcheck >/dev/null || fail "healthcheck"
    ok "trail healthcheck inside the container"
    docker stop -t 20 "$cid" >/dev/null
    [ "$(docker inspect -f '{{.State.ExitCode}}' "$cid")" = 0 ] || fail "exit code after SIGTERM"
    ok "SIGTERM: clean exit"
    exit 0
fi

echo "== no Docker engine here: running the release binary as the image would (uid 10001, /data, 0.0.0.0)"
. scripts/common.sh
trail_bin
DATA=$(mktemp -d)
chown 10001:10001 "$DATA" 2>/dev/null || true
AS_USER=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
    AS_USER=(setpriv --reuid=10001 --regid=10001 --clear-groups)
    cp "$BIN" "$DATA/trail" && BIN=$DATA/trail
fi
image_env=(env -i PATH=/usr/local/bin:/usr/bin:/bin TRAIL_DB="$DATA/trail.db" TRAIL_BIND="0.0.0.0:$PORT" TRAIL_LOG_FORMAT=json)

if "${image_env[@]}" "${AS_USER[@]}" "$BIN" serve >"$DATA/refused.log" 2>&1; then fail "started without a token"; fi
grep -q "insecure-no-auth" "$DATA/refused.log" || fail "the refusal does not say what to do: $(cat "$DATA/refused.log")"
ok "start-up without a token is refused: $(tail -1 "$DATA/refused.log")"

"${image_env[@]}" TRAIL_BOOTSTRAP_TOKEN="$TOKEN" "${AS_USER[@]}" "$BIN" serve >"$DATA/server.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
check_api "http://127.0.0.1:$PORT"
"${image_env[@]}" "${AS_USER[@]}" "$BIN" healthcheck >/dev/null || fail "trail healthcheck"
ok "trail healthcheck (the image's HEALTHCHECK) exits 0"
[ "$(stat -c %u "$DATA/trail.db")" = "$( [ ${#AS_USER[@]} -gt 0 ] && echo 10001 || id -u)" ] || fail "database owner"
[ "$(stat -c %a "$DATA/hmac.key")" = 600 ] || fail "hmac.key mode"
ok "files are owned by the service user; hmac.key is 0600"
kill -TERM "$PID"
wait "$PID" || fail "exit code after SIGTERM"
ok "SIGTERM: clean exit"
last=$("$BIN" --db "$DATA/trail.db" show -n 1 --json)
echo "$last" | grep -q '"event":"server.stop"' || fail "server.stop is not the last event"
ok "server.stop is the last event"
"$BIN" --db "$DATA/trail.db" verify || fail "verify"
echo "container smoke: all checks passed"
