#!/usr/bin/env bash
# One quick run of one sessiond binary, for probing one change (compare.sh is the A/B):
#   refresh | me  wrk (2 threads, 16 connections) on durable refreshes or GET /v1/auth/me, and
#                 the server's CPU (user and system) and context switches per answer;
#   flood         the refresh latency under a login flood, as the limits harness's k6 step
#                 measures it (k6/login_flood.js: 266 logins/s, twice this machine's argon2id
#                 rate, and 100 refreshes/s for 30 s), with sessiond's default hashing settings.
#
# Usage: benches/probe.sh BIN OUT [refresh|me|flood]
# Env:   DURATION seconds of a wrk run (15), DBQ appended to the database URL (e.g.
#        '?sslmode=disable' or '?host=/var/run/postgresql'), PERF=1 (perf record -g for 12 s:
#        OUT/perf.data), STRACE=1 (strace -c -f for 6 s after STRACE_DELAY seconds:
#        OUT/strace.txt), WARMUP seconds of the same load before the measured run (0)
# A fresh database is created and dropped; the server binds to 127.0.0.1 and is stopped on
# exit; wrk and k6 end by themselves.
set -euo pipefail
BIN="$(realpath "$1")"; OUT="$2"; KIND="${3:-refresh}"; mkdir -p "$OUT"
case "$KIND" in refresh|me|flood) ;; *) echo "unknown kind $KIND" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
PG=postgres://postgres@127.0.0.1:5432
db="probe_$(date +%s)_$RANDOM"
psql -q "$PG/postgres" -c "CREATE DATABASE \"$db\"" >/dev/null
url="$PG/$db${DBQ:-}"
WORK=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
openssl genpkey -algorithm ed25519 -out "$WORK/signing.pem" 2>/dev/null
export SESSIOND_SIGNING_KEY_FILE="$WORK/signing.pem" SESSIOND_REFRESH_KEY="$(openssl rand -base64 48)"
export SESSIOND_RATE_LIMITS=off SESSIOND_LOG_FORMAT=json RUST_LOG=warn SESSIOND_ACCESS_TTL=6h
DATABASE_URL="$url" "$BIN" migrate >/dev/null 2>&1
# The flood logs in with the seeded accounts (and needs fewer sessions).
users=2000; [ "$KIND" = flood ] && users=200
DATABASE_URL="$url" "$BIN" seed --users "$users" --sessions-per-user 10 --first 0 \
  --out "$WORK/seed.jsonl" --password 'probe password 123' >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATABASE_URL="$url" SESSIOND_BIND="127.0.0.1:$port" "$BIN" serve > "$OUT/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$port/ready" 2>/dev/null && break; sleep 0.1; done

if [ "$KIND" = flood ]; then
  k6 run --quiet --no-usage-report -e BASE_URL="http://127.0.0.1:$port" -e PROFILE=full -e RESULTS_DIR="$OUT" \
    -e SEED_FILE="$WORK/seed.jsonl" -e LOGIN_RATE=266 -e REFRESH_RATE=100 -e DURATION=30s -e SESSIONS=1900 \
    -e LOGIN_USERS=100 -e MAX_VUS=300 -e P99_MS=20 k6/login_flood.js > "$OUT/k6.txt" 2>&1 || true
  grep -m1 "http_req_duration{scenario:refreshes}" "$OUT/k6.txt"
  exit 0
fi

export BENCH_LIB="$PWD/benches/lib" WRK_THREADS=2
if [ "${WARMUP:-0}" != 0 ]; then
  # Not measured: every seeded session's actor activated and every access token verified
  # once, by reads (a refresh run's tokens must not be spent before it).
  SEED_FILE="$WORK/seed.jsonl" WRK_JSON="$OUT/wrk-warmup.json" wrk -t2 -c16 -d"${WARMUP}s" --timeout 10s \
    -s "benches/lib/me.lua" "http://127.0.0.1:$port" > "$OUT/wrk-warmup.txt" 2>&1
fi
switches() { cat /proc/"$pid"/task/*/status | awk '/voluntary_ctxt_switches/{s+=$2} END{print s}'; }
x0=$(switches); c0=$(awk '{print $14" "$15}' /proc/"$pid"/stat)
perf_pid=""
if [ "${PERF:-0}" = 1 ]; then
  perf record -F 999 -e cpu-clock -g -p "$pid" -o "$OUT/perf.data" -- sleep 12 >/dev/null 2>&1 &
  perf_pid=$!
fi
if [ "${STRACE:-0}" = 1 ]; then
  (sleep "${STRACE_DELAY:-0}"; timeout -s INT 6 strace -c -f -p "$pid" -o "$OUT/strace.txt" >/dev/null 2>&1 || true) &
fi
SEED_FILE="$WORK/seed.jsonl" WRK_JSON="$OUT/wrk.json" wrk -t2 -c16 -d"${DURATION:-15}s" --timeout 10s \
  -s "benches/lib/$KIND.lua" "http://127.0.0.1:$port" > "$OUT/wrk.txt" 2>&1
x1=$(switches); c1=$(awk '{print $14" "$15}' /proc/"$pid"/stat)
if [ -n "$perf_pid" ]; then wait "$perf_pid" || true; fi
python3 - "$OUT/wrk.json" "$c0" "$c1" "$x0" "$x1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))
(u0, s0), (u1, s1) = (map(int, a.split()) for a in sys.argv[2:4])
hz, ok = int(sys.argv[6]), w["ok"] or 1
per = lambda ticks: ticks / hz * 1e6 / ok
print(f"ctxsw/ok {(int(sys.argv[5]) - int(sys.argv[4])) / ok:.2f} ok/s {w['ok_per_s']:.0f} "
      f"p99 {w['latency_ms']['p99']} ms  user {per(u1 - u0):.1f} us  sys {per(s1 - s0):.1f} us  "
      f"total {per(u1 - u0 + s1 - s0):.1f} us per ok")
PY
curl -s "http://127.0.0.1:$port/metrics" > "$OUT/metrics.txt" || true
