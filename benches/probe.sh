#!/usr/bin/env bash
# One quick wrk run of one sessiond binary (durable refreshes or GET /me), with the server's CPU
# (user and system) and context switches per answer, and optionally a native profile or a
# system-call count of the server meanwhile. For probing one change; compare.sh is the A/B.
#
# Usage: benches/probe.sh BIN OUT [refresh|me]
# Env:   DURATION seconds (15), DBQ appended to the database URL (e.g. '?sslmode=disable' or
#        '?host=/var/run/postgresql'), PERF=1 (perf record -g for 12 s: OUT/perf.data),
#        STRACE=1 (strace -c -f for 6 s after STRACE_DELAY seconds: OUT/strace.txt)
# A fresh database (seeded with 20,000 sessions) is created and dropped; the server binds to
# 127.0.0.1 and is stopped on exit; wrk ends by itself.
set -euo pipefail
BIN="$(realpath "$1")"; OUT="$2"; KIND="${3:-refresh}"; mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PG=postgres://postgres@127.0.0.1:5432
db="prof_$(date +%s)_$RANDOM"
psql -q "$PG/postgres" -c "CREATE DATABASE \"$db\"" >/dev/null
url="$PG/$db${DBQ:-}"
WORK=$(mktemp -d)
pid=""
cleanup(){ [ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1; rm -rf $WORK; }
trap cleanup EXIT
openssl genpkey -algorithm ed25519 -out "$WORK/signing.pem" 2>/dev/null
export SESSIOND_SIGNING_KEY_FILE="$WORK/signing.pem" SESSIOND_REFRESH_KEY="$(openssl rand -base64 48)"
export SESSIOND_RATE_LIMITS=off SESSIOND_LOG_FORMAT=json RUST_LOG=warn SESSIOND_ACCESS_TTL=6h
DATABASE_URL="$url" "$BIN" migrate >/dev/null 2>&1
DATABASE_URL="$url" "$BIN" seed --users 2000 --sessions-per-user 10 --first 0 --out "$WORK/seed.jsonl" >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATABASE_URL="$url" SESSIOND_BIND="127.0.0.1:$port" "$BIN" serve > "$OUT/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$port/ready" 2>/dev/null && break; sleep 0.1; done
export BENCH_LIB="$PWD/benches/lib" WRK_THREADS=2
cs(){ cat /proc/$pid/task/*/status | awk '/voluntary_ctxt_switches/{s+=$2} END{print s}'; }
x0=$(cs)
c0=$(awk '{print $14" "$15}' /proc/$pid/stat)
if [ "${PERF:-0}" = 1 ]; then perf record -F 999 -e cpu-clock -g -p $pid -o "$OUT/perf.data" -- sleep 12 >/dev/null 2>&1 & PERFPID=$!; fi
if [ "${STRACE:-0}" = 1 ]; then (sleep ${STRACE_DELAY:-0}; timeout -s INT 6 strace -c -f -p $pid -o "$OUT/strace.txt" >/dev/null 2>&1 || true) & fi
SEED_FILE="$WORK/seed.jsonl" WRK_JSON="$OUT/wrk.json" wrk -t2 -c16 -d${DURATION:-15}s --timeout 10s -s benches/lib/$KIND.lua "http://127.0.0.1:$port" > "$OUT/wrk.txt" 2>&1
x1=$(cs)
c1=$(awk '{print $14" "$15}' /proc/$pid/stat)
[ -n "${PERFPID:-}" ] && wait $PERFPID; sleep 0.5
python3 - "$OUT/wrk.json" "$c0" "$c1" "$x0" "$x1" <<'PY'
import json,sys
w=json.load(open(sys.argv[1])); u0,s0=map(int,sys.argv[2].split()); u1,s1=map(int,sys.argv[3].split())
ok=w["ok"]; print(f"ctxsw/ok {(int(sys.argv[5])-int(sys.argv[4]))/ok:.2f} ok/s {w['ok_per_s']:.0f} p99 {w['latency_ms']['p99']} ms  user {(u1-u0)/100*1e6/ok:.1f} us  sys {(s1-s0)/100*1e6/ok:.1f} us  total {(u1-u0+s1-s0)/100*1e6/ok:.1f} us per ok")
PY
curl -s "http://127.0.0.1:$port/metrics" > "$OUT/metrics.txt" || true
