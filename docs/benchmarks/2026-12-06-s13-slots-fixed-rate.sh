#!/usr/bin/env bash
# Fixed-rate durable refresh latency, 2 commit slots (A) against 1 (C), interleaved.
set -euo pipefail
BIN=/work/bins/slots/sessiond; LOAD=/work/bins/slots/examples/bench_load; OUT=${1:-/tmp/two/fx}; mkdir -p $OUT
PG=postgres://postgres@127.0.0.1:5432; db="fx_$(date +%s)"; W=$(mktemp -d)
psql -q $PG/postgres -c "CREATE DATABASE $db" >/dev/null; url=$PG/$db
pids=()
cleanup(){ for p in "${pids[@]}"; do kill $p 2>/dev/null; wait $p 2>/dev/null; done; psql -q $PG/postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; rm -rf $W; }
trap cleanup EXIT
openssl genpkey -algorithm ed25519 -out $W/k.pem 2>/dev/null
export SESSIOND_SIGNING_KEY_FILE=$W/k.pem SESSIOND_REFRESH_KEY="$(openssl rand -base64 48)" SESSIOND_RATE_LIMITS=off SESSIOND_LOG_FORMAT=json RUST_LOG=warn SESSIOND_ACCESS_TTL=6h
DATABASE_URL=$url $BIN migrate >/dev/null 2>&1
DATABASE_URL=$url $BIN seed --users 2000 --sessions-per-user 10 --first 9000000 --out $W/bulk.jsonl >/dev/null 2>&1
i=0
for round in 1 2 3; do for rate in ${RATES:-3000 4800}; do for s in 2 1; do
  i=$((i+1)); DATABASE_URL=$url $BIN seed --users 128 --sessions-per-user 10 --first $((i*10000)) --out $W/seed-$i.jsonl >/dev/null 2>&1
done; done; done
start(){ local port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env SESSIOND_COMMIT_SLOTS=$1 DATABASE_URL=$url SESSIOND_BIND=127.0.0.1:$port $BIN serve >$OUT/server-$1.log 2>&1 & pids+=($!)
  for _ in $(seq 1 300); do curl -fsS -o /dev/null http://127.0.0.1:$port/ready 2>/dev/null && break; sleep 0.1; done; echo "$port"; }
P2=$(start 2); P1=$(start 1)
i=0
for round in 1 2 3; do for rate in ${RATES:-3000 4800}; do for s in 2 1; do
  i=$((i+1)); port=$P2; [ $s = 1 ] && port=$P1
  taskset -c 1 $LOAD --kind refresh --seed $W/seed-$i.jsonl --target 127.0.0.1:$port --connections 64 --duration 15 --rate $rate --out $OUT/r$round-$rate-s$s.json >/dev/null 2>&1
  python3 -c "
import json,sys; d=json.load(open('$OUT/r$round-$rate-s$s.json')); l=d['latency_ms']; e=d['errors']
print(f'round $round rate $rate slots $s: ok/s {d[\"ok_per_s\"]:.0f} p50 {l[\"p50\"]:.2f} p99 {l[\"p99\"]:.2f} p99.9 {l[\"p99_9\"]:.2f} max {l[\"max\"]:.1f} ms errors {sum(e.values())}')"
done; done; done | tee $OUT/summary.txt
