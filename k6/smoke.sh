#!/usr/bin/env bash
# The smoke profile of every k6 scenario against a throw-away debug sessiond, as run by
# scripts/test. A few seconds per scenario, tiny rates, thresholds on checks and error rates only
# (never latency: this proves the suites still work, it measures nothing).
#
# Starts $SESSIOND_BIN (default $CARGO_TARGET_DIR/debug/sessiond) on a SQLite file in a temporary
# directory, on a free loopback port, with cheap argon2id, runs each scenario with PROFILE=smoke,
# fails if any threshold fails, and always stops sessiond.
#
# Env: SESSIOND_BIN, SMOKE_RESULTS_DIR (keep the JSON summaries there; default: discarded),
#      SMOKE_SCENARIOS (space-separated subset, default all).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessiond-target}"
BIN="${SESSIOND_BIN:-$CARGO_TARGET_DIR/debug/sessiond}"
SCENARIOS="${SMOKE_SCENARIOS:-lifecycle refresh_storm me_read replay concurrent_refresh login_flood}"
[ -x "$BIN" ] || { echo "k6 smoke: $BIN not found (build it: cargo build --bin sessiond)" >&2; exit 1; }

. k6/ensure-k6.sh

WORK="$(mktemp -d -t sessiond-k6-smoke.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE_URL="http://127.0.0.1:$PORT"
RESULTS="${SMOKE_RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"

export DATABASE_URL="sqlite://$WORK/sessiond.db?mode=rwc"
export SESSIOND_BIND="127.0.0.1:$PORT"
export SESSIOND_ARGON2_MEMORY_KIB=1024 SESSIOND_ARGON2_ITERATIONS=1
export SESSIOND_RATE_LIMITS=off
export SESSIOND_LOG_FORMAT=json RUST_LOG="${SMOKE_RUST_LOG:-warn}"

"$BIN" serve >"$WORK/sessiond.log" 2>&1 &
SERVER_PID=$!
ready=""
for _ in $(seq 1 100); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  if curl -fsS -o /dev/null "$BASE_URL/ready" 2>/dev/null; then ready=1; break; fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "k6 smoke: sessiond did not become ready on $BASE_URL; its log:" >&2
  tail -n 40 "$WORK/sessiond.log" >&2
  exit 1
fi

# Seeded sessions straight from the store when `sessiond seed` exists; otherwise each scenario
# seeds itself over HTTP in setup().
declare -A SEED_ENV=()
if "$BIN" seed --help >/dev/null 2>&1; then
  first=0
  for s in refresh_storm me_read login_flood; do
    # Separate accounts per file (user<first..>@seed.test) and separate sessions: refresh
    # tokens are single-use, so no two scenarios may share one.
    if "$BIN" seed --users 5 --sessions-per-user 5 --first "$first" --out "$WORK/seed-$s.jsonl" \
        --password 'k6 smoke password' >"$WORK/seed-$s.log" 2>&1; then
      first=$((first + 1000))
      SEED_ENV[$s]="$WORK/seed-$s.jsonl"
    else
      echo "k6 smoke: sessiond seed failed:" >&2; tail -n 20 "$WORK/seed-$s.log" >&2; exit 1
    fi
  done
  echo "k6 smoke: seeded with sessiond seed"
else
  echo "k6 smoke: no 'sessiond seed' in this build; scenarios seed over HTTP"
fi

failed=()
for s in $SCENARIOS; do
  start=$(date +%s)
  seed_file="${SEED_ENV[$s]:-}"
  if env BASE_URL="$BASE_URL" PROFILE=smoke RESULTS_DIR="$RESULTS" SEED_FILE="$seed_file" \
      "$K6" run --quiet --no-color --no-usage-report "k6/$s.js" >"$WORK/$s.out" 2>&1; then
    echo "k6 smoke: $s passed ($(( $(date +%s) - start ))s)"
  else
    echo "k6 smoke: $s FAILED; k6 output:" >&2
    cat "$WORK/$s.out" >&2
    failed+=("$s")
  fi
done
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "k6 smoke: sessiond died during the run; its log:" >&2
  tail -n 40 "$WORK/sessiond.log" >&2
  failed+=("sessiond-exited")
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "k6 smoke: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "k6 smoke: every scenario passed its smoke thresholds"
