#!/usr/bin/env bash
# The limits harness (issue "Performance"): measures this machine's physical limits and sessiond
# against them, in one run, and writes every figure with its ratio as JSON.
#
#   limits: (a) pgbench tps of a single-row UPDATE per transaction, 16 clients, default
#           durability, on a scratch database created and dropped here — one durable rotation;
#           (b) requests/s of a minimal axum hello world (benches/bin/hello.rs) — one HTTP
#           exchange; (c) argon2id hashes/s at the configured parameters on all cores — one login.
#   sessiond (release build, PostgreSQL, real keys, rate limits off), through the same load tool
#           (wrk) and connection count as (b): durable refreshes/s, GET /v1/auth/me/s, logins/s;
#           with k6 at a constant arrival rate: /me p99 at half the hello-world rate, refresh p99
#           under a login flood offered at twice the argon2id limit; startup to ready on an empty
#           database; resident memory per session actor vs a bare ractor actor, and passivation.
#
# Usage: benches/limits.sh [OUT_DIR]        (default benches/results/<UTC timestamp>)
#
# Run it on a QUIET machine: any figure measured while other work runs is meaningless.
#
# Env: QUICK=1           validation run: seconds and tiny counts; the figures mean nothing
#      DURATION          seconds per throughput run (default 30)
#      CONNECTIONS       connections / pgbench clients (default 16)
#      SEED_SESSIONS     seeded sessions for the refresh and read runs (default 20000)
#      MEMORY_SESSIONS   resident sessions for the memory figure (default 100000)
#      MEMORY_1M=1       also measure with 1 000 000 resident sessions (about 20 minutes: the
#                        idle window, PASSIVATE_AFTER_1M (default 8m), must outlast activation)
#      MEMORY_ONLY=1     only the memory figures (skips the limits and throughput runs)
#      PASSIVATE_AFTER   idle window for the passivation figure (default 30s)
#      MEMORY=0          skip the memory figures (the second round's run does not need them)
#      HASH_VARIANTS     hashing settings measured for logins/s and the login flood, each
#                        label:concurrency:priority[:autogroup] ("-" = sessiond's default);
#                        default "default:-:- cores:<nproc>:19 idle:<nproc>:idle", plus
#                        "ungrouped:<nproc>:19:0" where kernel.sched_autogroup_enabled is 1 and
#                        writable. autogroup 0 or 1 sets that sysctl for the variant (root only;
#                        the machine's value is restored after it and on exit): it decides
#                        whether nice ranks hashing below other processes' threads, such as
#                        PostgreSQL's, or only below sessiond's own (src/crypto/priority_scope.rs)
#      FIXED_RATE=0      skip the fixed-rate latency runs (bench_load and oha at 25/50/75 %
#                        of the measured maximum; FIXED_SECONDS each, default 20)
#      FIXED_CONNECTIONS connections of the fixed-rate runs (default 64)
#      PIN_LOAD          CPU list the fixed-rate and two-instance generators are pinned to with
#                        taskset (default: the last CPU; "none" to leave them unpinned)
#      TWO_INSTANCES=0   skip the two-instance run (one vs two sessiond on one database)
#      TWO_INSTANCE_SETTINGS  settings of each of the two instances, NAME=value words (default
#                        "SESSIOND_COMMIT_SLOTS=1", README's advice for several instances: two
#                        slots each halve the batches); the one instance runs on the defaults
#      RECORD=1          make this run the limits run of record (LIMITS_RECORD_FILE, default
#                        docs/benchmarks/limits-record.json); every run prints its change
#                        against the record
#      PG_ADMIN_URL      admin connection (default postgres://postgres@127.0.0.1:5432/postgres)
#      SESSIOND_BIN      prebuilt release binary (default: cargo build --release)
#      FEATURES          cargo features of that build when it is made here (e.g. jemalloc)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessiond-target}"
QUICK="${QUICK:-0}"
if [ "$QUICK" = 1 ]; then
  DURATION="${DURATION:-2}"; SEED_SESSIONS="${SEED_SESSIONS:-200}"
  MEMORY_SESSIONS="${MEMORY_SESSIONS:-2000}"; PASSIVATE_AFTER="${PASSIVATE_AFTER:-4s}"
  ARGON2_SECONDS=2; K6_SECONDS=3; FIXED_SECONDS="${FIXED_SECONDS:-2}"
else
  DURATION="${DURATION:-30}"; SEED_SESSIONS="${SEED_SESSIONS:-20000}"
  MEMORY_SESSIONS="${MEMORY_SESSIONS:-100000}"; PASSIVATE_AFTER="${PASSIVATE_AFTER:-30s}"
  ARGON2_SECONDS=15; K6_SECONDS=30; FIXED_SECONDS="${FIXED_SECONDS:-20}"
fi
NCPU="$(nproc)"
AUTOGROUP_SYSCTL=/proc/sys/kernel/sched_autogroup_enabled
MACHINE_AUTOGROUP="$(cat "$AUTOGROUP_SYSCTL" 2>/dev/null || echo none)"
if [ -z "${HASH_VARIANTS:-}" ]; then
  HASH_VARIANTS="default:-:- cores:$NCPU:19 idle:$NCPU:idle"
  if [ "$MACHINE_AUTOGROUP" = 1 ] && [ -w "$AUTOGROUP_SYSCTL" ]; then
    HASH_VARIANTS+=" ungrouped:$NCPU:19:0"
  fi
fi
FIXED_CONNECTIONS="${FIXED_CONNECTIONS:-64}"
PIN_LOAD="${PIN_LOAD:-$(( NCPU - 1 ))}"
if [ "$PIN_LOAD" = none ] || ! command -v taskset >/dev/null; then PIN=(); else PIN=(taskset -c "$PIN_LOAD"); fi
LIMITS_RECORD_FILE="${LIMITS_RECORD_FILE:-$ROOT/docs/benchmarks/limits-record.json}"
[ "$QUICK" = 1 ] && [ "${RECORD:-0}" = 1 ] && { echo "limits: RECORD=1 with QUICK=1 refused: a validation run is never a record" >&2; exit 2; }
CONNECTIONS="${CONNECTIONS:-16}"
WRK_THREADS="${WRK_THREADS:-2}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
OUT="${1:-$ROOT/benches/results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
RAW="$OUT/raw"
mkdir -p "$RAW" "$OUT/limits-k6"   # k6 does not create its summary's directory
[ "${#PIN[@]}" -gt 0 ] && echo "$PIN_LOAD" >"$RAW/pin-load.txt"
export BENCH_LIB="$ROOT/benches/lib" WRK_THREADS

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\nlimits: FAILED: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools and binaries
command -v wrk >/dev/null || { say "installing wrk (Debian)"; apt-get install -y -qq wrk >/dev/null || die "wrk"; }
command -v pgbench >/dev/null || die "pgbench not found (Debian: postgresql-contrib / postgresql-client)"
command -v psql >/dev/null || die "psql not found"
command -v openssl >/dev/null || die "openssl not found (for the signing key)"
. "$ROOT/k6/ensure-k6.sh"
. "$ROOT/benches/lib/ensure-oha.sh"
pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL does not answer on 127.0.0.1:5432"

if [ -z "${SESSIOND_BIN:-}" ]; then
  say "release build"
  cargo build --release --locked --features "${FEATURES:-}" --bin sessiond \
    --example bench_hello --example bench_argon2 --example bench_actor_rss --example bench_load >&2
  SESSIOND_BIN="$CARGO_TARGET_DIR/release/sessiond"
fi
EXAMPLES="$(dirname "$SESSIOND_BIN")/examples"
"$SESSIOND_BIN" seed --help >/dev/null 2>&1 && HAVE_SEED=1 || HAVE_SEED=0

# ---------------------------------------------------------------------------------------------
# Cleanup: every server this script starts, every database it creates.
PIDS=()
DBS=()
WORK="$(mktemp -d -t sessiond-limits.XXXXXX)"
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  for d in "${DBS[@]:-}"; do
    [ -n "$d" ] && psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
  restore_autogroup
}
trap cleanup EXIT INT TERM
# set_autogroup 0|1: the kernel's session autogroups for processes started from now on (a
# process keeps the group it started in; PostgreSQL's backends start per connection).
set_autogroup() {
  [ -w "$AUTOGROUP_SYSCTL" ] || die "a hashing variant sets kernel.sched_autogroup_enabled=$1, but $AUTOGROUP_SYSCTL is not writable (run as root, or leave the variant's fourth field out)"
  echo "$1" >"$AUTOGROUP_SYSCTL"
}
restore_autogroup() {
  if [ "$MACHINE_AUTOGROUP" != none ] && [ "$(cat "$AUTOGROUP_SYSCTL" 2>/dev/null)" != "$MACHINE_AUTOGROUP" ]; then
    echo "$MACHINE_AUTOGROUP" >"$AUTOGROUP_SYSCTL" 2>/dev/null || true
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
# new_db label -> sets DB_URL. Not called in $(...): the name must reach DBS in this shell, or
# the cleanup would not drop the database.
new_db() {
  local name="sessiond_limits_$1_$(date +%s)_$RANDOM"
  psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE \"$name\"" >/dev/null
  DBS+=("$name")
  DB_URL="$(python3 -c 'import sys, urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$PG_ADMIN_URL" "$name")"
}
kill_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }
wait_ready() { # url pid -> waits for 200 (bounded 60 s)
  for _ in $(seq 1 600); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# wrk run: name script url [extra env...]; writes $RAW/wrk-<name>.json
# The server's CPU time (user + system, in clock ticks) is read around each run from
# /proc/$SERVER_PID/stat and written to $RAW/cpu-<name>.json, so each figure comes with the
# server CPU it cost per request.
SERVER_PID=""
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run_wrk() {
  local name="$1" script="$2" url="$3"; shift 3
  say "wrk: $name (${DURATION}s, $CONNECTIONS connections)"
  local c0=""; [ -n "$SERVER_PID" ] && c0="$(cpu_ticks "$SERVER_PID")"
  env "$@" WRK_JSON="$RAW/wrk-$name.json" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
    --timeout 10s -s "$BENCH_LIB/$script" "$url" >"$RAW/wrk-$name.txt" 2>&1 || die "wrk $name (see $RAW/wrk-$name.txt)"
  if [ -n "$c0" ]; then
    printf '{"server_cpu_ticks": %s, "ticks_per_s": %s}\n' "$(( $(cpu_ticks "$SERVER_PID") - c0 ))" \
      "$(getconf CLK_TCK)" >"$RAW/cpu-$name.json"
  fi
  cat "$RAW/wrk-$name.json" >&2
}

# ---------------------------------------------------------------------------------------------
if [ "${MEMORY_ONLY:-0}" != 1 ]; then
# (a) pgbench: one single-row UPDATE per transaction, default durability
say "limit (a): pgbench single-row UPDATE, $CONNECTIONS clients, ${DURATION}s"
new_db pgbench; PGB_URL="$DB_URL"
psql -q "$PGB_URL" >/dev/null <<'SQL'
CREATE TABLE rotation (id int PRIMARY KEY, generation bigint NOT NULL DEFAULT 0, at timestamptz);
INSERT INTO rotation (id) SELECT g FROM generate_series(1, 100000) g;
VACUUM ANALYZE rotation;
SQL
cat >"$WORK/update.sql" <<'SQL'
\set id random(1, 100000)
UPDATE rotation SET generation = generation + 1, at = now() WHERE id = :id;
SQL
pgbench -n -c "$CONNECTIONS" -j "$WRK_THREADS" -T "$DURATION" -f "$WORK/update.sql" "$PGB_URL" \
  >"$RAW/pgbench.txt" 2>&1 || die "pgbench (see $RAW/pgbench.txt)"
grep -E "tps|latency" "$RAW/pgbench.txt" >&2 || true
psql -At "$PGB_URL" -c "SHOW synchronous_commit" >"$RAW/pg_synchronous_commit.txt"
psql -At "$PGB_URL" -c "SHOW fsync" >"$RAW/pg_fsync.txt"
psql -At "$PGB_URL" -c "SELECT version()" >"$RAW/pg_version.txt"

# (b) hello world
HELLO_PORT="$(free_port)"
"$EXAMPLES/bench_hello" "127.0.0.1:$HELLO_PORT" >"$RAW/hello.log" 2>&1 &
HELLO_PID=$!; PIDS+=("$HELLO_PID")
wait_ready "http://127.0.0.1:$HELLO_PORT/" "$HELLO_PID" || die "hello world did not start"
SERVER_PID="$HELLO_PID"
run_wrk hello hello.lua "http://127.0.0.1:$HELLO_PORT/"
SERVER_PID=""
kill_pid "$HELLO_PID"

# (c) argon2id at the configured parameters (sessiond's defaults unless SESSIOND_ARGON2_* set)
say "limit (c): argon2id hashes/s on all cores (${ARGON2_SECONDS}s)"
"$EXAMPLES/bench_argon2" "$ARGON2_SECONDS" >"$RAW/argon2.json" || die "argon2 bench"
cat "$RAW/argon2.json" >&2

fi # MEMORY_ONLY

# ---------------------------------------------------------------------------------------------
# sessiond on PostgreSQL
openssl genpkey -algorithm ed25519 -out "$WORK/signing.pem" 2>/dev/null
export SESSIOND_SIGNING_KEY_FILE="$WORK/signing.pem"
SESSIOND_REFRESH_KEY="$(openssl rand -base64 48)"
export SESSIOND_REFRESH_KEY
export SESSIOND_RATE_LIMITS=off SESSIOND_LOG_FORMAT=json RUST_LOG="${BENCH_RUST_LOG:-warn}"
# Long enough that seeded access tokens outlive the whole run.
export SESSIOND_ACCESS_TTL=6h
SEED_PASSWORD='limits harness password'

# start_sessiond name db_url [env...] -> sets SVC_PID, SVC_URL; startup time in $RAW/startup-<name>.json
start_sessiond() {
  local name="$1" url="$2"; shift 2
  local port; port="$(free_port)"
  SVC_URL="http://127.0.0.1:$port"
  local t0; t0=$(date +%s%N)
  env "$@" DATABASE_URL="$url" SESSIOND_BIND="127.0.0.1:$port" "$SESSIOND_BIN" serve \
    >"$RAW/sessiond-$name.log" 2>&1 &
  SVC_PID=$!; PIDS+=("$SVC_PID")
  wait_ready "$SVC_URL/ready" "$SVC_PID" || { tail -20 "$RAW/sessiond-$name.log" >&2; die "sessiond ($name) did not become ready"; }
  local t1; t1=$(date +%s%N)
  python3 -c 'import sys; print("{\"startup_to_ready_ms\": %.1f}" % ((int(sys.argv[2]) - int(sys.argv[1])) / 1e6))' \
    "$t0" "$t1" >"$RAW/startup-$name.json"
}

# seed name db_url users per_user first -> $WORK/seed-<name>.jsonl
seed() {
  local name="$1" url="$2" users="$3" per="$4" first="$5"
  say "seeding $name: $users users × $per sessions"
  if [ "$HAVE_SEED" = 1 ]; then
    DATABASE_URL="$url" "$SESSIOND_BIN" seed --users "$users" --sessions-per-user "$per" \
      --first "$first" --out "$WORK/seed-$name.jsonl" --password "$SEED_PASSWORD" >"$RAW/seed-$name.log" 2>&1 \
      || { tail -20 "$RAW/seed-$name.log" >&2; die "sessiond seed ($name)"; }
  else
    # Without `sessiond seed`: over HTTP (slow with real argon2id; counts are capped).
    "$K6" run --quiet --no-usage-report -e BASE_URL="$SVC_URL" -e PREFIX="$name" \
      -e USERS="$(( users < 20 ? users : 20 ))" -e SESSIONS_PER_USER="$(( per < 10 ? per : 10 ))" \
      -e OUT="$WORK/seed-$name.jsonl" "$BENCH_LIB/seed_http.js" >&2
    echo '{"seeded_over_http": true}' >"$RAW/seeded-over-http-$name.json"
  fi
  wc -l <"$WORK/seed-$name.jsonl" | tr -d ' ' >"$RAW/seed-$name.count"
}

if [ "${MEMORY_ONLY:-0}" != 1 ]; then
say "sessiond: startup to ready on an empty database"
new_db svc; SVC_DB="$DB_URL"
start_sessiond main "$SVC_DB"
cat "$RAW/startup-main.json" >&2
MAIN_PID="$SVC_PID"; MAIN_URL="$SVC_URL"

PER_USER=10
USERS=$(( (SEED_SESSIONS + PER_USER - 1) / PER_USER ))
seed refresh "$SVC_DB" "$USERS" "$PER_USER" 0
seed read "$SVC_DB" "$USERS" "$PER_USER" 1000000

SERVER_PID="$MAIN_PID"
run_wrk refresh refresh.lua "$MAIN_URL" SEED_FILE="$WORK/seed-refresh.jsonl"
# Group commit's batch sizes during that run (sessiond_store_commit_batch_size_{sum,count}).
curl -fsS "$MAIN_URL/metrics" >"$RAW/metrics-after-refresh.txt" 2>/dev/null || true
run_wrk me me.lua "$MAIN_URL" SEED_FILE="$WORK/seed-read.jsonl"
SERVER_PID=""

HELLO_RPS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok_per_s"])' "$RAW/wrk-hello.json")"
ARGON2_RATE="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hashes_per_s"])' "$RAW/argon2.json")"
HALF_HELLO="$(python3 -c 'import sys; print(max(1, int(float(sys.argv[1]) / 2)))' "$HELLO_RPS")"
FLOOD_RATE="$(python3 -c 'import sys; print(max(2, int(float(sys.argv[1]) * 2)))' "$ARGON2_RATE")"

say "k6: /me at half the hello-world rate ($HALF_HELLO/s, ${K6_SECONDS}s)"
"$K6" run --quiet --no-usage-report -e BASE_URL="$MAIN_URL" -e PROFILE=full -e RESULTS_DIR="$OUT/limits-k6" \
  -e SEED_FILE="$WORK/seed-read.jsonl" -e RATE="$HALF_HELLO" -e DURATION="${K6_SECONDS}s" \
  -e SESSIONS="$(cat "$RAW/seed-read.count")" -e MAX_VUS=400 -e P99_MS=5 \
  "$ROOT/k6/me_read.js" >"$RAW/k6-me_read.txt" 2>&1 || echo "me_read: a threshold failed (recorded)" >&2

# Fixed-rate latency (issue #15, target 5): /me and durable refresh at 25, 50 and 75 % of the
# maximum wrk measured above, open loop, coordinated omission corrected. bench_load for both
# (refresh needs each answer's child token, which no general tool carries over); oha for /me
# beside it, as an independent generator (one access token: oha's headers are fixed).
if [ "${FIXED_RATE:-1}" != 0 ]; then
  # Refresh tokens are single-use: every refresh run gets sessions of its own (a token spent by
  # an earlier run would be a replay, and compromise its session).
  for pct in 25 50 75; do
    seed "fixed-$pct" "$SVC_DB" "$(( (FIXED_CONNECTIONS * 20 + PER_USER - 1) / PER_USER ))" "$PER_USER" "$(( 3000000 + pct * 1000 ))"
  done
  for kind in me refresh; do
    MAX="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok_per_s"])' "$RAW/wrk-$kind.json")"
    for pct in 25 50 75; do
      RATE="$(python3 -c 'import sys; print(max(1.0, round(float(sys.argv[1]) * int(sys.argv[2]) / 100, 1)))' "$MAX" "$pct")"
      if [ "$kind" = me ]; then SEED_FILE="$WORK/seed-read.jsonl"; else SEED_FILE="$WORK/seed-fixed-$pct.jsonl"; fi
      say "fixed rate: $kind at $pct % of $MAX/s = $RATE/s (${FIXED_SECONDS}s, bench_load${PIN:+, pinned to CPU $PIN_LOAD})"
      c0="$(cpu_ticks "$MAIN_PID")"
      "${PIN[@]}" "$EXAMPLES/bench_load" --kind "$kind" --seed "$SEED_FILE" --target "${MAIN_URL#http://}" \
        --connections "$FIXED_CONNECTIONS" --duration "$FIXED_SECONDS" --rate "$RATE" \
        --out "$RAW/fixed-$kind-$pct.json" >&2 || die "bench_load fixed $kind $pct"
      printf '{"server_cpu_ticks": %s, "ticks_per_s": %s}\n' "$(( $(cpu_ticks "$MAIN_PID") - c0 ))" \
        "$(getconf CLK_TCK)" >"$RAW/cpu-fixed-$kind-$pct.json"
      if [ "$kind" = me ]; then
        TOKEN="$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["access_token"])' "$WORK/seed-read.jsonl")"
        say "fixed rate: /me at $RATE/s with oha $OHA_VERSION (-q, --latency-correction)"
        echo "$RATE" >"$RAW/oha-me-$pct.rate"
        # -w: requests still in flight at the deadline are awaited, not counted as errors.
        "${PIN[@]}" "$OHA" --no-tui --output-format json -o "$RAW/oha-me-$pct.json" -z "${FIXED_SECONDS}s" -w \
          -q "$RATE" --latency-correction -c "$FIXED_CONNECTIONS" \
          -H "Authorization: Bearer $TOKEN" "$MAIN_URL/v1/auth/me" >&2 || die "oha /me $pct"
      fi
    done
  done
fi
kill_pid "$MAIN_PID"

# Logins/s against the argon2id limit and refresh p99 under a login flood at twice that limit
# (issue #15, target 3), once per hashing setting: one slot fewer than cores at nice 10 (the
# default) against as many slots as cores at nice 19 and at SCHED_IDLE. Each variant is its own
# sessiond process on the same database, with its own flood sessions.
i=0
for variant in $HASH_VARIANTS; do
  IFS=: read -r label slots prio autogroup <<<"$variant"
  autogroup="${autogroup:--}"
  [ "$autogroup" != - ] && set_autogroup "$autogroup"
  venv=()
  [ "$slots" != - ] && venv+=(SESSIOND_HASH_CONCURRENCY="$slots")
  [ "$prio" != - ] && venv+=(SESSIOND_HASH_PRIORITY="$prio")
  if [ "$label" = default ]; then suffix=""; k6dir="$OUT/limits-k6"; else suffix="-$label"; k6dir="$OUT/limits-k6/hash-$label"; fi
  mkdir -p "$k6dir"
  say "hashing variant $label (concurrency ${slots/-/default}, priority ${prio/-/default})"
  seed "flood$suffix" "$SVC_DB" 200 10 "$(( 2000000 + i * 10000 ))"
  start_sessiond "hash$suffix" "$SVC_DB" "${venv[@]}"
  SERVER_PID="$SVC_PID"
  run_wrk "login$suffix" login.lua "$SVC_URL" SEED_FILE="$WORK/seed-read.jsonl" SEED_PASSWORD="$SEED_PASSWORD"
  SERVER_PID=""
  say "k6: refresh p99 under a login flood at $FLOOD_RATE logins/s (${K6_SECONDS}s, variant $label)"
  FLOOD_SESSIONS=$(( $(cat "$RAW/seed-flood$suffix.count") - 100 ))
  "$K6" run --quiet --no-usage-report -e BASE_URL="$SVC_URL" -e PROFILE=full -e RESULTS_DIR="$k6dir" \
    -e SEED_FILE="$WORK/seed-flood$suffix.jsonl" -e LOGIN_RATE="$FLOOD_RATE" -e REFRESH_RATE=100 \
    -e DURATION="${K6_SECONDS}s" -e SESSIONS="$FLOOD_SESSIONS" -e LOGIN_USERS=100 -e MAX_VUS=300 \
    -e P99_MS=20 "$ROOT/k6/login_flood.js" >"$RAW/k6-login_flood$suffix.txt" 2>&1 || echo "login_flood ($label): a threshold failed (recorded)" >&2
  printf '{"label": "%s", "concurrency": "%s", "priority": "%s", "autogroup": "%s"}\n' "$label" "$slots" "$prio" \
    "$(cat "$AUTOGROUP_SYSCTL" 2>/dev/null || echo none)" >"$RAW/hash-variant-$label.json"
  kill_pid "$SVC_PID"
  restore_autogroup
  i=$(( i + 1 ))
done

# Two instances on one PostgreSQL (issue #15, target 4): the same closed-loop generator
# (bench_load, CONNECTIONS connections) against one instance, then with every request sent to
# one of two instances at random, so a session's refreshes hop between them and fencing and
# the change feed do real work. Server CPU is summed over both; each instance's /metrics is
# read before and after for fence conflicts and store reads.
if [ "${TWO_INSTANCES:-1}" != 0 ]; then
  TWO_SESSIONS=$(( SEED_SESSIONS / 4 > CONNECTIONS * 20 ? SEED_SESSIONS / 4 : CONNECTIONS * 20 ))
  seed two-one "$SVC_DB" "$(( (TWO_SESSIONS + PER_USER - 1) / PER_USER ))" "$PER_USER" 4000000
  seed two-two "$SVC_DB" "$(( (TWO_SESSIONS + PER_USER - 1) / PER_USER ))" "$PER_USER" 5000000
  read -r -a TWO_SETTINGS <<<"${TWO_INSTANCE_SETTINGS-SESSIOND_COMMIT_SLOTS=1}"
  python3 "$BENCH_LIB/shown_settings.py" "${TWO_SETTINGS[@]}" >"$RAW/two-settings.txt"
  # The one instance on the defaults; B is started only for the two-instance runs.
  start_sessiond two-one "$SVC_DB"; A_PID="$SVC_PID"; A_URL="$SVC_URL"; B_PID=""; B_URL=""
  two_run() { # name kind seed targets...
    local name="$1" kind="$2" seedf="$3"; shift 3
    local targets=() pids=() t
    for t in "$@"; do targets+=(--target "${t#http://}"); done
    [ "$#" = 2 ] && pids=("$A_PID" "$B_PID") || pids=("$A_PID")
    say "two instances: $name (${DURATION}s, $CONNECTIONS connections, $# instance(s))"
    curl -fsS "$A_URL/metrics" >"$RAW/metrics-$name-a-before.txt" 2>/dev/null || true
    [ -z "$B_URL" ] || curl -fsS "$B_URL/metrics" >"$RAW/metrics-$name-b-before.txt" 2>/dev/null || true
    local c0=0 p; for p in "${pids[@]}"; do c0=$(( c0 + $(cpu_ticks "$p") )); done
    "${PIN[@]}" "$EXAMPLES/bench_load" --kind "$kind" --seed "$seedf" "${targets[@]}" \
      --connections "$CONNECTIONS" --duration "$DURATION" --out "$RAW/two-$name.json" >&2 || die "bench_load $name"
    local c1=0; for p in "${pids[@]}"; do c1=$(( c1 + $(cpu_ticks "$p") )); done
    printf '{"server_cpu_ticks": %s, "ticks_per_s": %s}\n' "$(( c1 - c0 ))" "$(getconf CLK_TCK)" >"$RAW/cpu-two-$name.json"
    curl -fsS "$A_URL/metrics" >"$RAW/metrics-$name-a-after.txt" 2>/dev/null || true
    [ -z "$B_URL" ] || curl -fsS "$B_URL/metrics" >"$RAW/metrics-$name-b-after.txt" 2>/dev/null || true
  }
  # /me is measured in the steady state on both sides: unmeasured 2 s passes over the read
  # sessions on each instance first, until a pass activates no session (every actor resident;
  # at most 10 passes). Without them, the two new instances activated every session each,
  # twice the one instance's activations, at about seven times the instructions of a /me answer
  # each (docs/benchmarks.md, session 13).
  activations() { # url -> sessions activated from the store so far
    curl -fsS "$1/metrics" | awk '/^sessiond_session_activations_total\{.*source="store"/ { s += $NF } END { printf "%d", s }'
  }
  warm_me() { # urls...
    local u pass a0 a1
    for u in "$@"; do
      for pass in $(seq 1 10); do
        a0="$(activations "$u")"
        "${PIN[@]}" "$EXAMPLES/bench_load" --kind me --seed "$WORK/seed-read.jsonl" --target "${u#http://}" \
          --connections "$CONNECTIONS" --duration 2 --out "$RAW/warm-me-${u##*:}-$pass.json" >&2 || die "bench_load warm-up"
        a1="$(activations "$u")"
        say "two instances: unmeasured /me pass $pass on ${u#http://}: $(( a1 - a0 )) activations"
        [ "$a1" != "$a0" ] || break
      done
    done
  }
  two_run one-refresh refresh "$WORK/seed-two-one.jsonl" "$A_URL"
  warm_me "$A_URL"
  two_run one-me me "$WORK/seed-read.jsonl" "$A_URL"
  kill_pid "$A_PID"
  start_sessiond two-a "$SVC_DB" "${TWO_SETTINGS[@]}"; A_PID="$SVC_PID"; A_URL="$SVC_URL"
  start_sessiond two-b "$SVC_DB" "${TWO_SETTINGS[@]}"; B_PID="$SVC_PID"; B_URL="$SVC_URL"
  two_run two-refresh refresh "$WORK/seed-two-two.jsonl" "$A_URL" "$B_URL"
  warm_me "$A_URL" "$B_URL"
  two_run two-me me "$WORK/seed-read.jsonl" "$A_URL" "$B_URL"
  kill_pid "$A_PID"; kill_pid "$B_PID"
fi

# Reference (not a limit of the issue): sessiond's own rotation statement, one session per
# transaction, under the same pgbench load as (a), on the seeded sessions: the database's cost
# of one rotation with this schema (heap and index writes of sessions and refresh_tokens, and
# whatever checks the schema runs) against (a)'s single-row UPDATE. The store batches these
# statements; this is the unbatched cost.
say "reference: pgbench of sessiond's rotation statement, $CONNECTIONS clients, ${DURATION}s"
psql -q "$SVC_DB" >/dev/null <<'SQL'
CREATE TABLE bench_ids AS SELECT row_number() OVER () AS n, id FROM sessions;
CREATE INDEX ON bench_ids (n);
ANALYZE bench_ids;
SQL
cat >"$WORK/rotate.sql" <<SQL
\\set n random(1, $(psql -At "$SVC_DB" -c "SELECT count(*) FROM bench_ids"))
WITH input AS (SELECT * FROM unnest((SELECT ARRAY[id] FROM bench_ids WHERE n = :n), ARRAY[now()])
                 AS i(id, at)),
upd AS (UPDATE sessions s SET previous_hash = s.current_hash,
          current_hash = sha256(gen_random_uuid()::text::bytea), generation = s.generation + 1,
          rotated_at = i.at, last_seen_at = i.at, version = s.version + 1
        FROM input i WHERE s.id = i.id
        RETURNING s.id, s.current_hash, s.generation, i.at),
ins AS (INSERT INTO refresh_tokens (session_id, generation, token_hash, issued_at)
        SELECT id, generation, current_hash, at FROM upd)
SELECT count(*) FROM upd;
SQL
pgbench -n -M prepared -c "$CONNECTIONS" -j "$WRK_THREADS" -T "$DURATION" -f "$WORK/rotate.sql" "$SVC_DB" \
  >"$RAW/pgbench-rotation.txt" 2>&1 || die "pgbench rotation (see $RAW/pgbench-rotation.txt)"
grep -E "tps|latency" "$RAW/pgbench-rotation.txt" >&2 || true

fi # MEMORY_ONLY

# ---------------------------------------------------------------------------------------------
# Memory: bare ractor actors vs session actors in one process, then sessiond itself.
if [ "${MEMORY:-1}" != 0 ]; then
PASSIVATE_SECS="$(python3 -c 'import sys,re; m=re.fullmatch(r"(\d+)(ms|s|m)?", sys.argv[1]); v=int(m.group(1)); u=m.group(2) or "s"; print(max(1, v//1000 if u=="ms" else v*60 if u=="m" else v))' "$PASSIVATE_AFTER")"
say "memory: bare actor vs session actor, in process ($MEMORY_SESSIONS each)"
"$EXAMPLES/bench_actor_rss" "$MEMORY_SESSIONS" "$PASSIVATE_SECS" >"$RAW/actor_rss-$MEMORY_SESSIONS.json" || die "actor_rss"
cat "$RAW/actor_rss-$MEMORY_SESSIONS.json" >&2

secs_of() { python3 -c 'import sys,re; m=re.fullmatch(r"(\d+)(ms|s|m)?", sys.argv[1]); v=int(m.group(1)); u=m.group(2) or "s"; print(max(1, v//1000 if u=="ms" else v*60 if u=="m" else v))' "$1"; }
resident_now() { # url -> sessiond_session_actors_resident
  curl -fsS "$1/metrics" 2>/dev/null | awk '/^sessiond_session_actors_resident / { print int($2) }'
}
memory_run() { # n window
  local n="$1" window="$2" window_secs; window_secs="$(secs_of "$2")"
  say "memory: sessiond with $n resident sessions, passivation after $window"
  local db; new_db "mem$n"; db="$DB_URL"
  local per=100 users=$(( (n + 99) / 100 ))
  if [ "$HAVE_SEED" != 1 ]; then
    echo '{"skipped": "needs sessiond seed"}' >"$RAW/memory-$n.json"; return
  fi
  DATABASE_URL="$db" "$SESSIOND_BIN" migrate >"$RAW/migrate-mem$n.log" 2>&1 || die "migrate (memory $n)"
  seed "mem$n" "$db" "$users" "$per" 0
  head -n 1000 "$WORK/seed-mem$n.jsonl" >"$WORK/warm-mem$n.jsonl"
  start_sessiond "mem$n" "$db" SESSIOND_PASSIVATE_AFTER="$window"
  sleep 2
  local idle; idle="$(rss_bytes "$SVC_PID")"
  # The warm baseline: the same process after a little traffic (1 000 sessions activated and
  # passivated again), so one-time growth (database connections opened on demand, HTTP and
  # TLS buffers, worker threads' allocator arenas) is told apart from what sessions leave.
  "$K6" run --quiet --no-usage-report -e BASE_URL="$SVC_URL" -e SEED_FILE="$WORK/warm-mem$n.jsonl" \
    "$BENCH_LIB/activate.js" >"$RAW/warm-$n.txt" 2>&1 || die "warming up (see $RAW/warm-$n.txt)"
  sleep $(( window_secs * 3 / 2 + 5 ))
  local warm_resident; warm_resident="$(resident_now "$SVC_URL")"
  local warm; warm="$(rss_bytes "$SVC_PID")"
  local t0; t0=$(date +%s)
  "$K6" run --quiet --no-usage-report -e BASE_URL="$SVC_URL" -e SEED_FILE="$WORK/seed-mem$n.jsonl" \
    "$BENCH_LIB/activate.js" >"$RAW/activate-$n.txt" 2>&1 || die "activating $n sessions (see $RAW/activate-$n.txt)"
  local t1; t1=$(date +%s)
  sleep 2
  # Read the resident count with the RSS: a figure per session is only valid if every session
  # is still resident, i.e. the window outlasted the activation.
  local resident; resident="$(resident_now "$SVC_URL")"
  local active; active="$(rss_bytes "$SVC_PID")"
  # Every activated actor is idle from its activation on; all have passivated after the idle
  # window plus one sweep period (a quarter of it), counted from the end of activation.
  sleep $(( window_secs * 3 / 2 + 5 ))
  local passivated; passivated="$(rss_bytes "$SVC_PID")"
  local left; left="$(resident_now "$SVC_URL")"
  curl -fsS "$SVC_URL/metrics" >"$RAW/metrics-mem$n.txt" 2>/dev/null || true
  python3 - "$n" "$idle" "$active" "$passivated" "$(( t1 - t0 ))" "$window" "$resident" "$left" \
    "$warm" "$warm_resident" >"$RAW/memory-$n.json" <<'PY'
import json, sys
n, idle, active, passivated, secs = map(int, sys.argv[1:6])
resident, left, warm, warm_resident = (int(v) if v else None for v in sys.argv[7:11])
complete = resident == n
print(json.dumps({
    "sessions": n, "resident_at_measure": resident, "resident_after_window": left,
    "rss_idle": idle, "rss_warm_idle": warm, "warm_resident": warm_resident,
    "rss_active": active, "rss_after_passivation": passivated,
    # Only when every session was resident at the reading; else null, never an estimate.
    "bytes_per_session": (active - warm) / n if complete else None,
    "activation_s": secs, "passivate_after": sys.argv[6],
    "over_idle_after_passivation": (passivated - idle) / idle,
    "over_warm_idle_after_passivation": (passivated - warm) / warm,
}))
PY
  cat "$RAW/memory-$n.json" >&2
  kill_pid "$SVC_PID"
}
memory_run "$MEMORY_SESSIONS" "$PASSIVATE_AFTER"
# 1 M sessions take minutes to activate: the window must outlast the activation, or actors
# passivate before the reading (the run records resident_at_measure and refuses the figure).
[ "${MEMORY_1M:-0}" = 1 ] && memory_run 1000000 "${PASSIVATE_AFTER_1M:-8m}"
fi # MEMORY

# ---------------------------------------------------------------------------------------------
say "summary"
python3 "$ROOT/benches/lib/summarise.py" "$OUT" "$QUICK" "$CONNECTIONS" "$DURATION" >"$OUT/limits.json"
python3 "$ROOT/benches/lib/summarise.py" --table "$OUT/limits.json"
# The regression guard: every figure against the run of record.
python3 "$ROOT/benches/lib/summarise.py" --against "$OUT/limits.json" "$LIMITS_RECORD_FILE" | tee "$OUT/limits-vs-record.txt"
if [ "${RECORD:-0}" = 1 ]; then
  cp "$OUT/limits.json" "$LIMITS_RECORD_FILE"
  echo "limits: recorded as the run of record in $LIMITS_RECORD_FILE" >&2
fi
echo "limits: results in $OUT/limits.json" >&2
