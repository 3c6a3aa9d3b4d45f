#!/usr/bin/env bash
# A/B comparison of the hot paths (durable refresh, GET /v1/auth/me) of two sessiond release
# binaries on this machine, interleaved so that drift of the machine hits both alike:
#   A B A B ... (ROUNDS pairs), each run on a fresh PostgreSQL database seeded the same way,
#   measured with wrk exactly as benches/limits.sh measures them (same Lua scripts, threads and
#   connections), plus the server's CPU time per request read from /proc.
# The spread between the runs of one binary is the run-to-run noise the difference is judged
# against. Rate limits off, like the limits harness.
#
# HOPS=1 adds a third path, "hop": a second instance of the same binary on the same database,
# and durable refreshes from bench_load (the limits harness's generator, CONNECTIONS
# connections) sent to one of the two instances at random for every request, as a round-robin
# load balancer does: a session's refreshes hop between instances (issue #15, target 4). Its
# server CPU is summed over both instances. And "sticky": the same two instances, with each
# session's refreshes always sent to the same one (bench_load --spread session), as a load
# balancer with affinity on the session does. And "single": bench_load against the first
# instance alone, the one-instance figure the two-instance ones are divided by. The summary
# also divides B's two-instance rates by A's single rate of the same round: with the same
# binary for both and a setting in ENV_B, that is "two instances so configured ÷ one as it is".
#
# Usage: benches/compare.sh BIN_A BIN_B [OUT_DIR]
# Env:   ROUNDS (default 3), DURATION seconds per wrk run (default 15), CONNECTIONS (16),
#        SEED_SESSIONS (default 20000), PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres),
#        HOPS=1 (see above), BENCH_LOAD (default: the release build's examples/bench_load),
#        ENV_A, ENV_B: settings for A's or B's servers, space-separated NAME=value words
#        (e.g. ENV_B="SESSIOND_COMMIT_SLOTS=1": the same binary twice, one setting compared)
# Every server it starts is stopped and every database it creates is dropped on exit; each wrk
# run ends by itself after DURATION seconds. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [OUT_DIR]" >&2; exit 2; }
BIN_A="$(realpath "$1")"; BIN_B="$(realpath "$2")"
ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-15}"; CONNECTIONS="${CONNECTIONS:-16}"
SEED_SESSIONS="${SEED_SESSIONS:-20000}"; WRK_THREADS="${WRK_THREADS:-2}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
OUT="${3:-$ROOT/benches/results/compare-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
export BENCH_LIB="$ROOT/benches/lib" WRK_THREADS

command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null || { echo "wrk missing" >&2; exit 1; }; }
command -v openssl >/dev/null || { echo "openssl missing" >&2; exit 1; }
HOPS="${HOPS:-0}"
BENCH_LOAD="${BENCH_LOAD:-${CARGO_TARGET_DIR:-$HOME/.cache/sessiond-target}/release/examples/bench_load}"
[ "$HOPS" != 1 ] || [ -x "$BENCH_LOAD" ] || { echo "HOPS=1 needs bench_load ($BENCH_LOAD): cargo build --release --example bench_load" >&2; exit 1; }

PIDS=(); DBS=()
WORK="$(mktemp -d -t sessiond-compare.XXXXXX)"
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  for d in "${DBS[@]:-}"; do
    [ -n "$d" ] && psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# server_ticks pid [pid2]: CPU ticks of one server, or of two summed.
server_ticks() { local t; t="$(cpu_ticks "$1")"; [ -n "${2:-}" ] && t=$(( t + $(cpu_ticks "$2") )); echo "$t"; }
# serve_ready bin db_url log [NAME=value...] -> SERVE_PORT, SERVE_PID: a server on a free
# loopback port, ready, with those settings.
serve_ready() {
  SERVE_PORT="$(free_port)"
  local bin="$1" url="$2" log="$3"; shift 3
  env "$@" DATABASE_URL="$url" SESSIOND_BIND="127.0.0.1:$SERVE_PORT" "$bin" serve >"$log" 2>&1 &
  SERVE_PID=$!; PIDS+=("$SERVE_PID")
  for _ in $(seq 1 600); do curl -fsS -o /dev/null "http://127.0.0.1:$SERVE_PORT/ready" 2>/dev/null && break; sleep 0.1; done
}

openssl genpkey -algorithm ed25519 -out "$WORK/signing.pem" 2>/dev/null
export SESSIOND_SIGNING_KEY_FILE="$WORK/signing.pem"
SESSIOND_REFRESH_KEY="$(openssl rand -base64 48)"; export SESSIOND_REFRESH_KEY
export SESSIOND_RATE_LIMITS=off SESSIOND_LOG_FORMAT=json RUST_LOG=warn SESSIOND_ACCESS_TTL=6h

# one_run label bin round -> appends a JSON line to $OUT/runs.jsonl
one_run() {
  local label="$1" bin="$2" round="$3"
  local db="sessiond_compare_${label}_${round}_$(date +%s)_$RANDOM"
  psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE \"$db\"" >/dev/null; DBS+=("$db")
  local url; url="$(python3 -c 'import sys, urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$PG_ADMIN_URL" "$db")"
  DATABASE_URL="$url" "$bin" migrate >/dev/null 2>&1
  local users=$(( (SEED_SESSIONS + 9) / 10 ))
  DATABASE_URL="$url" "$bin" seed --users "$users" --sessions-per-user 10 --first 0 \
    --out "$WORK/seed-refresh.jsonl" >"$OUT/seed-$label-$round.log" 2>&1
  DATABASE_URL="$url" "$bin" seed --users "$users" --sessions-per-user 10 --first 1000000 \
    --out "$WORK/seed-read.jsonl" >>"$OUT/seed-$label-$round.log" 2>&1
  local path first
  if [ "$HOPS" = 1 ]; then
    for path in hop:2000000 sticky:3000000 single:4000000; do
      first="${path#*:}"; path="${path%%:*}"
      DATABASE_URL="$url" "$bin" seed --users "$users" --sessions-per-user 10 \
        --first "$first" --out "$WORK/seed-$path.jsonl" >>"$OUT/seed-$label-$round.log" 2>&1
    done
  fi
  local port pid port2="" pid2="" paths="refresh me" settings
  if [ "$label" = A ]; then read -r -a settings <<<"${ENV_A:-}"; else read -r -a settings <<<"${ENV_B:-}"; fi
  serve_ready "$bin" "$url" "$OUT/server-$label-$round.log" "${settings[@]}"; port="$SERVE_PORT"; pid="$SERVE_PID"
  if [ "$HOPS" = 1 ]; then
    paths="refresh me single hop sticky"
    serve_ready "$bin" "$url" "$OUT/server-$label-$round-b.log" "${settings[@]}"; port2="$SERVE_PORT"; pid2="$SERVE_PID"
  fi
  local line="{\"label\": \"$label\", \"round\": $round, \"env\": $(python3 "$BENCH_LIB/shown_settings.py" --json "${settings[@]}")"
  for path in $paths; do
    local c0; c0="$(server_ticks "$pid" "$pid2")"
    if [ "$path" = single ] || [ "$path" = hop ] || [ "$path" = sticky ]; then
      local targets=(--target "127.0.0.1:$port") spread=random
      [ "$path" = single ] || targets+=(--target "127.0.0.1:$port2")
      [ "$path" = sticky ] && spread=session
      "$BENCH_LOAD" --kind refresh --seed "$WORK/seed-$path.jsonl" "${targets[@]}" --spread "$spread" \
        --connections "$CONNECTIONS" --duration "$DURATION" \
        --out "$OUT/wrk-$label-$round-$path.json" >"$OUT/wrk-$label-$round-$path.txt" 2>&1
    else
      SEED_FILE="$WORK/seed-$( [ "$path" = refresh ] && echo refresh || echo read ).jsonl" \
        WRK_JSON="$OUT/wrk-$label-$round-$path.json" \
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
        -s "$BENCH_LIB/$path.lua" "http://127.0.0.1:$port" >"$OUT/wrk-$label-$round-$path.txt" 2>&1
    fi
    local c1; c1="$(server_ticks "$pid" "$pid2")"
    line="$line, \"$path\": $(python3 - "$OUT/wrk-$label-$round-$path.json" "$c0" "$c1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
w = json.load(open(sys.argv[1])); ticks = int(sys.argv[3]) - int(sys.argv[2]); hz = int(sys.argv[4])
ok = w.get("ok", 0) or 1
print(json.dumps({"ok_per_s": w["ok_per_s"], "p99_ms": w["latency_ms"]["p99"],
                  "not_ok": w["requests"] - w["ok"],
                  "server_cpu_us_per_ok": round(ticks / hz * 1e6 / ok, 1)}))
PY
)"
  done
  echo "$line}" | tee -a "$OUT/runs.jsonl"
  if [ -n "$pid2" ]; then kill -TERM "$pid2" 2>/dev/null || true; wait "$pid2" 2>/dev/null || true; fi
  kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
}

for r in $(seq 1 "$ROUNDS"); do
  one_run A "$BIN_A" "$r"
  one_run B "$BIN_B" "$r"
done

python3 - "$OUT/runs.jsonl" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
for path in ("refresh", "me", "single", "hop", "sticky"):
    if not any(path in r for r in runs):
        continue
    for metric in ("ok_per_s", "server_cpu_us_per_ok", "p99_ms"):
        row = []
        for label in ("A", "B"):
            v = [r[path][metric] for r in runs if r["label"] == label and path in r and r[path].get(metric) is not None]
            if v:
                row.append(f"{label}: median {statistics.median(v):,.1f} (min {min(v):,.1f}, max {max(v):,.1f}, n={len(v)})")
        print(f"{path:8s} {metric:22s} " + " | ".join(row))
# Two instances against one, per round (the same generator and round for both), then the median.
for two in ("hop", "sticky"):
    row = []
    for label in ("A", "B"):
        v = [r[two]["ok_per_s"] / r["single"]["ok_per_s"] for r in runs
             if r["label"] == label and two in r and r["single"]["ok_per_s"]]
        if v:
            row.append(f"{label}: median {statistics.median(v):.3f} (min {min(v):.3f}, max {max(v):.3f}, n={len(v)})")
    if row:
        print(f"{two + '/single':8s} {'ok_per_s ratio':22s} " + " | ".join(row))
    # B's two instances against A's one, round by round.
    single_a = {r["round"]: r["single"]["ok_per_s"] for r in runs if r["label"] == "A" and "single" in r}
    v = [r[two]["ok_per_s"] / single_a[r["round"]] for r in runs
         if r["label"] == "B" and two in r and single_a.get(r["round"])]
    if v:
        print(f"{two + ' B/single A':8s} {'ok_per_s ratio':11s} median {statistics.median(v):.3f} "
              f"(min {min(v):.3f}, max {max(v):.3f}, n={len(v)})")
PY
