#!/usr/bin/env bash
# Refresh latency under a login flood as the limits harness's k6 step measures it
# (k6/login_flood.js: 266 logins/s, twice this machine's argon2id rate, and 100 refreshes/s for
# 30 s), against one sessiond binary with its default hashing settings: A/B runs of that figure.
#
# Usage: benches/flood.sh BIN OUT   (prints k6's refresh latency line; OUT/k6.txt has the rest)
# A fresh database is created and dropped; the server binds to 127.0.0.1 and is stopped on exit.
set -euo pipefail
BIN="$(realpath "$1")"; OUT="$2"; mkdir -p "$OUT"; cd "$(dirname "$0")/.."
PG=postgres://postgres@127.0.0.1:5432
db="flood_$(date +%s)_$RANDOM"; psql -q "$PG/postgres" -c "CREATE DATABASE \"$db\"" >/dev/null
url="$PG/$db"; WORK=$(mktemp -d); pid=""
cleanup(){ [ -n "$pid" ] && kill $pid 2>/dev/null; sleep 0.5; psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1; rm -rf $WORK; }
trap cleanup EXIT
openssl genpkey -algorithm ed25519 -out "$WORK/signing.pem" 2>/dev/null
export SESSIOND_SIGNING_KEY_FILE="$WORK/signing.pem" SESSIOND_REFRESH_KEY="$(openssl rand -base64 48)"
export SESSIOND_RATE_LIMITS=off SESSIOND_LOG_FORMAT=json RUST_LOG=warn SESSIOND_ACCESS_TTL=6h
DATABASE_URL="$url" "$BIN" migrate >/dev/null 2>&1
DATABASE_URL="$url" "$BIN" seed --users 200 --sessions-per-user 10 --first 0 --out "$WORK/seed.jsonl" --password 'bench-password-123' >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATABASE_URL="$url" SESSIOND_BIND="127.0.0.1:$port" "$BIN" serve > "$OUT/server.log" 2>&1 & pid=$!
for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$port/ready" 2>/dev/null && break; sleep 0.1; done
k6 run --quiet --no-usage-report -e BASE_URL="http://127.0.0.1:$port" -e PROFILE=full -e RESULTS_DIR="$OUT" \
  -e SEED_FILE="$WORK/seed.jsonl" -e LOGIN_RATE=266 -e REFRESH_RATE=100 -e DURATION=30s -e SESSIONS=1900 \
  -e LOGIN_USERS=100 -e MAX_VUS=300 -e P99_MS=20 k6/login_flood.js > "$OUT/k6.txt" 2>&1 || true
grep "http_req_duration{scenario:refreshes}" "$OUT/k6.txt" | head -1
