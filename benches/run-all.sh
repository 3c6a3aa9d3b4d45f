#!/usr/bin/env bash
# The whole measurement run, unattended, in ONE command. Run it on a quiet machine:
#
#   benches/run-all.sh [OUT_DIR]          (default benches/results/<UTC timestamp>)
#
# 1. release build of sessiond, the harness's helper binaries and the criterion benches;
# 2. benches/limits.sh: the machine's limits and sessiond against them  → OUT/limits.json;
#    then benches/callgrind.sh: instructions per refresh and per /me, against the run of record
#                                                                         → OUT/callgrind/;
# 3. every k6 scenario with PROFILE=full against a release sessiond on PostgreSQL, seeded with
#    `sessiond seed` (one seed file per scenario: refresh tokens are single-use) → OUT/k6/*.json;
# 4. the criterion benches                                              → OUT/criterion.json;
# 5. SVG plots from all of it                                           → docs/plots/*.svg;
# 6. the tables for docs/benchmarks.md                                  → OUT/benchmarks-tables.md.
#
# A failed k6 threshold is recorded (OUT/k6-status.txt) and the run goes on; a broken tool stops
# it. Env: passed on to limits.sh (DURATION, CONNECTIONS, MEMORY_1M, HASH_VARIANTS, PIN_LOAD,
# RECORD, ...) and callgrind.sh (RECORD); QUICK=1 for a validation run of the whole pipeline in
# a few minutes (figures meaningless; plots go to OUT/plots instead of docs/plots); CRITERION=0
# skips the criterion benches (a cold release build of them takes a while); SCENARIOS=0 skips
# the k6 scenarios. FEATURES: cargo features of the release build it makes (FEATURES=jemalloc
# for the jemalloc build); SESSIOND_BIN: a prebuilt binary instead, its examples beside it.
#
# ROUND2=1: the second round's measurement (issue #15) in about 20 minutes: the limits harness
# with its second-round steps (hashing variants, fixed-rate latency, two instances) but without
# the memory figures, and callgrind; no k6 scenarios, no criterion (MEMORY=0 SCENARIOS=0
# CRITERION=0 unless set); plots into OUT/plots. Every step's start and end time goes to
# OUT/run.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessiond-target}"
QUICK="${QUICK:-0}"
if [ "${ROUND2:-0}" = 1 ]; then
  export MEMORY="${MEMORY:-0}"; SCENARIOS="${SCENARIOS:-0}"; CRITERION="${CRITERION:-0}"
fi
OUT="${1:-$ROOT/benches/results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\nrun-all: FAILED: %s\n' "$*" >&2; exit 1; }

. "$ROOT/k6/ensure-k6.sh"

if [ -z "${SESSIOND_BIN:-}" ]; then
  say "release build"
  cargo build --release --locked --features "${FEATURES:-}" --bin sessiond \
    --example bench_hello --example bench_argon2 --example bench_actor_rss --example bench_load >&2
  SESSIOND_BIN="$CARGO_TARGET_DIR/release/sessiond"
fi
export SESSIOND_BIN
step() { echo "step $1: $(date -u +%H:%M:%S)" >>"$OUT/run.txt"; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "command: benches/run-all.sh $*"
  echo "quick: $QUICK"
  echo "round2: ${ROUND2:-0} (memory ${MEMORY:-1}, scenarios ${SCENARIOS:-1}, criterion ${CRITERION:-1})"
  echo "binary: $SESSIOND_BIN"
  uname -a
  nproc
  grep -m1 'model name' /proc/cpuinfo || true
  grep MemTotal /proc/meminfo || true
  uptime
} >"$OUT/run.txt"

say "limits harness"
step "limits start"
QUICK="$QUICK" "$ROOT/benches/limits.sh" "$OUT"
step "limits end"

say "instructions per request (callgrind)"
if [ "$QUICK" = 1 ]; then CG_REQUESTS=200; else CG_REQUESTS=2000; fi
step "callgrind start"
# A validation run never becomes the callgrind record either.
RECORD="$([ "$QUICK" = 1 ] && echo 0 || echo "${RECORD:-0}")" REQUESTS="$CG_REQUESTS" \
  "$ROOT/benches/callgrind.sh" "$OUT/callgrind" | tee "$OUT/callgrind-summary.txt" >&2
step "callgrind end"

# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT/k6" "$OUT/raw"   # k6 does not create its summary's directory
if [ "${SCENARIOS:-1}" = 0 ]; then
  echo "SCENARIOS=0: k6 scenarios skipped" >&2
else
step "k6 scenarios start"
say "k6 full profiles"
WORK="$(mktemp -d -t sessiond-runall.XXXXXX)"
SVC_PID=""; DB=""
cleanup() {
  [ -n "$SVC_PID" ] && { kill -TERM "$SVC_PID" 2>/dev/null || true; wait "$SVC_PID" 2>/dev/null || true; }
  [ -n "$DB" ] && psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
DB="sessiond_runall_$(date +%s)_$RANDOM"
psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE \"$DB\"" >/dev/null
DB_URL="$(python3 -c 'import sys, urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$PG_ADMIN_URL" "$DB")"
openssl genpkey -algorithm ed25519 -out "$WORK/signing.pem" 2>/dev/null
export DATABASE_URL="$DB_URL" SESSIOND_SIGNING_KEY_FILE="$WORK/signing.pem"
SESSIOND_REFRESH_KEY="$(openssl rand -base64 48)"; export SESSIOND_REFRESH_KEY
export SESSIOND_RATE_LIMITS=off SESSIOND_ACCESS_TTL=6h SESSIOND_LOG_FORMAT=json RUST_LOG=warn
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
export SESSIOND_BIND="127.0.0.1:$PORT"
BASE_URL="http://127.0.0.1:$PORT"
"$SESSIOND_BIN" serve >"$OUT/raw/sessiond-k6.log" 2>&1 &
SVC_PID=$!
for _ in $(seq 1 300); do curl -fsS -o /dev/null "$BASE_URL/ready" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "$BASE_URL/ready" || die "sessiond did not become ready"

if [ "$QUICK" = 1 ]; then PROFILE=smoke; else PROFILE=full; fi
# scenario:users:sessions-per-user (0 users = the scenario seeds itself over HTTP)
if [ "$QUICK" = 1 ]; then
  PLAN="lifecycle:0:0 refresh_storm:4:5 me_read:4:5 replay:2:5 concurrent_refresh:3:1 login_flood:5:5"
else
  PLAN="lifecycle:0:0 refresh_storm:1000:10 me_read:1000:10 replay:100:5 concurrent_refresh:20:1 login_flood:210:10"
fi
first=0
: >"$OUT/k6-status.txt"
for item in $PLAN; do
  IFS=: read -r s users per <<<"$item"
  seed_env=()
  if [ "$users" -gt 0 ]; then
    "$SESSIOND_BIN" seed --users "$users" --sessions-per-user "$per" --first "$first" \
      --out "$WORK/seed-$s.jsonl" --password 'run-all password' >"$OUT/raw/seed-k6-$s.log" 2>&1 \
      || die "sessiond seed for $s (see $OUT/raw/seed-k6-$s.log)"
    first=$(( first + users ))
    seed_env=(-e SEED_FILE="$WORK/seed-$s.jsonl")
  fi
  say "k6 $s ($PROFILE)"
  if "$K6" run --quiet --no-usage-report -e BASE_URL="$BASE_URL" -e PROFILE="$PROFILE" \
      -e RESULTS_DIR="$OUT/k6" "${seed_env[@]}" "$ROOT/k6/$s.js" >"$OUT/raw/k6-$s.txt" 2>&1; then
    echo "$s: thresholds passed" | tee -a "$OUT/k6-status.txt" >&2
  else
    echo "$s: a threshold FAILED (see raw/k6-$s.txt)" | tee -a "$OUT/k6-status.txt" >&2
  fi
done
kill -TERM "$SVC_PID"; wait "$SVC_PID" 2>/dev/null || true; SVC_PID=""
step "k6 scenarios end"
fi # SCENARIOS

# ---------------------------------------------------------------------------------------------
say "criterion benches"
if [ "${CRITERION:-1}" = 0 ]; then
  echo "CRITERION=0: criterion benches skipped" >&2
  echo '{}' >"$OUT/criterion.json"
else
  CRIT_ARGS=()
  [ "$QUICK" = 1 ] && CRIT_ARGS=(--warm-up-time 0.2 --measurement-time 0.5 --sample-size 10)
  cargo bench --locked --bench rotation --bench jwt --bench actor_roundtrip --bench store_write \
    -- "${CRIT_ARGS[@]}" >"$OUT/raw/criterion.txt" 2>&1 || die "cargo bench (see $OUT/raw/criterion.txt)"
  python3 "$ROOT/benches/lib/criterion_json.py" "$CARGO_TARGET_DIR/criterion" >"$OUT/criterion.json"
fi

# ---------------------------------------------------------------------------------------------
say "plots and tables"
if [ "$QUICK" = 1 ] || [ "${ROUND2:-0}" = 1 ]; then PLOTS="$OUT/plots"; else PLOTS="$ROOT/docs/plots"; fi
python3 "$ROOT/benches/plot.py" "$OUT" "$PLOTS" >&2
python3 "$ROOT/benches/lib/summarise.py" --markdown "$OUT/limits.json" "$OUT/criterion.json" \
  "$OUT/k6" >"$OUT/benchmarks-tables.md"
{
  echo
  echo '**Instructions per request (callgrind), against the run of record**'
  echo
  echo '```text'
  cat "$OUT/callgrind-summary.txt"
  echo
  cat "$OUT/limits-vs-record.txt"
  echo '```'
} >>"$OUT/benchmarks-tables.md"
python3 "$ROOT/benches/lib/summarise.py" --table "$OUT/limits.json"
step "done"
echo "run-all: results in $OUT; plots in $PLOTS; tables for docs/benchmarks.md in $OUT/benchmarks-tables.md" >&2
