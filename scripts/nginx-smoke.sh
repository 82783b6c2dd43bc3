#!/usr/bin/env bash
# Smoke test of the README's nginx configuration, with a real nginx in front
# of a real trail: installs nginx if missing, builds the release binary
# (or uses TRAIL_BIN), takes the `location` block from README.md as it is,
# and sends requests from 127.0.0.2 (so that the client is not the trusted
# proxy 127.0.0.1) carrying forged Forwarded, X-Forwarded-For, -Host, -Proto
# and -Port headers. Checks: the recorded source_ip is the address nginx saw,
# the Link header is the URL the client used (host, port, base path), none of
# the forged values is believed, and the chain verifies. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

. scripts/common.sh
need_command nginx
trail_bin
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
TRAIL_PORT=$(free_port)
NGINX_PORT=$(free_port)
WORK=$(mktemp -d)
cleanup() {
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

DB=$WORK/trail.db
TOKEN=$("$BIN" --db "$DB" token create smoke --scope admin --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$BIN" --db "$DB" serve --bind "127.0.0.1:$TRAIL_PORT" --trusted-proxies 127.0.0.1 --base-path /audit 2>"$WORK/trail.log" &
PID=$!

# The README's block, pointed at this trail.
LOCATION=$(sed -n '/^```nginx$/,/^```$/p' README.md | sed '1d;$d' | sed "s#127.0.0.1:8080#127.0.0.1:$TRAIL_PORT#")
[ -n "$LOCATION" ] || fail "no nginx block in README.md"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $WORK;
    proxy_temp_path $WORK;
    server {
        listen 127.0.0.1:$NGINX_PORT;
$LOCATION
    }
}
EOF
nginx -c "$WORK/nginx.conf"
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$TRAIL_PORT/audit/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

FORGED=(-H 'Forwarded: for=6.6.6.6;host=evil.example.com;proto=https'
        -H 'X-Forwarded-For: 9.9.9.9'
        -H 'X-Forwarded-Host: evil.example.com'
        -H 'X-Forwarded-Proto: https'
        -H 'X-Forwarded-Port: 6666')
code=$(curl -s --interface 127.0.0.2 -o "$WORK/post.json" -w '%{http_code}' -X POST \
    "http://127.0.0.1:$NGINX_PORT/audit/v1/events" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' "${FORGED[@]}" -d '{"event":"smoke.proxy"}')
[ "$code" = 201 ] || fail "POST through nginx answered $code: $(cat "$WORK/post.json")"
ip=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("source_ip"))' "$WORK/post.json")
[ "$ip" = 127.0.0.2 ] || fail "source_ip is $ip, not the address nginx saw (127.0.0.2)"
ok "source_ip is the client nginx saw (127.0.0.2), not a forged one"
location=$(curl -s --interface 127.0.0.2 -D - -o /dev/null -X POST "http://localhost:$NGINX_PORT/audit/v1/events" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "${FORGED[@]}" \
    -d '{"event":"smoke.proxy"}' | tr -d '\r' | sed -n 's/^location: //Ip')
[ "${location#/audit/v1/events/}" != "$location" ] || fail "Location $location is not under the base path"
ok "Location is under the base path ($location)"
link=$(curl -s --interface 127.0.0.2 -D - -o /dev/null "http://localhost:$NGINX_PORT/audit/v1/events?limit=1" \
    -H "Authorization: Bearer $TOKEN" "${FORGED[@]}" | tr -d '\r' | sed -n 's/^link: //Ip')
case "$link" in
    "<http://localhost:$NGINX_PORT/audit/v1/events?limit=1&cursor="*) ok "Link is the URL the client used: $link" ;;
    *) fail "Link is $link, not http://localhost:$NGINX_PORT/audit/v1/events?..." ;;
esac
kill "$PID"
wait "$PID" || true
PID=""
"$BIN" --db "$DB" verify >/dev/null || fail "the chain does not verify"
ok "the chain verifies"
echo "nginx smoke test passed"
