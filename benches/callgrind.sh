#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a figure that does not depend on
# what else the machine runs (this VM has no hardware counters; `perf stat -e instructions` is
# not supported), so a regression shows without the noise of timed runs.
#
#   benches/callgrind.sh [OUT_DIR]        (default benches/results/callgrind-<UTC time>)
#
# A release sessiond runs under `valgrind --tool=callgrind` on a fresh database, seeded with
# `sessiond seed` (by the same binary, outside valgrind). benches/lib/callgrind_drive.py then
# sends, over one keep-alive connection and one request at a time, a warm-up (every session's
# actor activated, every access token seen once, then WARMUP more of each kind) and two measured
# phases: REQUESTS durable refreshes (round-robin over SESSIONS sessions, each presenting its
# newest token), REQUESTS `GET /v1/auth/me` (round-robin over SESSIONS other sessions' access
# tokens) and ACTIVATIONS first `GET /v1/auth/me` of sessions never used before (each starts
# its actor from the store: the cost of a request whose session's actor had passivated; after
# 50 such requests of warm-up). Counters are zeroed before each phase and dumped after it (`callgrind_control`), so
# start-up, seeding and warm-up are excluded. What is counted: every instruction sessiond
# executes in that window, on all its threads (HTTP, actors, group commit, the database driver
# and its TLS, background tasks) — not PostgreSQL's, not the client's.
#
# Prints instructions per request per phase and the change against the run of record
# (RECORD_FILE, committed); RECORD=1 makes this run the new record.
#
# TOOL=perf runs the same set-up and sequence with sessiond running natively and `perf record`
# (cpu-clock, DWARF call graphs) attached for each phase instead, and draws a flame graph per
# phase with inferno (`cargo install inferno`): OUT/flame-<phase>.svg. Use REQUESTS=10000 or more
# there, for enough samples.
#
# Env: STORE        postgres (default) or sqlite
#      PG_SSLMODE   appended to the PostgreSQL URL as sslmode=... (default: none, i.e. sqlx's
#                   `prefer`, which negotiates TLS with the local server, as the limits harness
#                   does); `disable` for plain TCP
#      REQUESTS     requests per measured phase (default 2000)
#      SESSIONS     sessions per phase (default 200)
#      WARMUP       extra warm-up requests of each kind (default 200)
#      ACTIVATIONS  requests of the activate phase (default 500; 0 leaves the phase out)
#      RECORD_FILE  run of record (default docs/benchmarks/callgrind-record.json)
#      RECORD=1     write this run's figures as the new record (same STORE/PG_SSLMODE key)
#      PG_ADMIN_URL admin connection (default postgres://postgres@127.0.0.1:5432/postgres)
#      SESSIOND_BIN prebuilt release binary (default: cargo build --release)
#      FEATURES     cargo features of that build when it is made here (e.g. jemalloc)
#      COMMIT       the commit that binary was built from, for the record (default: this
#                   worktree's HEAD, "-dirty" if it has uncommitted changes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessiond-target}"
TOOL="${TOOL:-callgrind}"
STORE="${STORE:-postgres}"
PG_SSLMODE="${PG_SSLMODE:-}"
REQUESTS="${REQUESTS:-2000}"; SESSIONS="${SESSIONS:-200}"; WARMUP="${WARMUP:-200}"
ACTIVATIONS="${ACTIVATIONS:-500}"
RECORD_FILE="${RECORD_FILE:-$ROOT/docs/benchmarks/callgrind-record.json}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
OUT="${1:-$ROOT/benches/results/callgrind-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\ncallgrind: FAILED: %s\n' "$*" >&2; exit 1; }

command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null || die "valgrind"; }
command -v callgrind_control >/dev/null || die "callgrind_control not found (Debian: valgrind)"

if [ -z "${SESSIOND_BIN:-}" ]; then
  say "release build"
  cargo build --release --locked --features "${FEATURES:-}" --bin sessiond >&2
  SESSIOND_BIN="$CARGO_TARGET_DIR/release/sessiond"
fi
SESSIOND_BIN="$(realpath "$SESSIOND_BIN")"

SVC_PID=""; DB=""
WORK="$(mktemp -d -t sessiond-callgrind.XXXXXX)"
cleanup() {
  if [ -n "$SVC_PID" ]; then kill -TERM "$SVC_PID" 2>/dev/null || true; wait "$SVC_PID" 2>/dev/null || true; fi
  if [ -n "$DB" ]; then
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

case "$STORE" in
  postgres)
    pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL does not answer on 127.0.0.1:5432"
    DB="sessiond_callgrind_$(date +%s)_$RANDOM"
    psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE \"$DB\"" >/dev/null
    DB_URL="$(python3 -c 'import sys, urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$PG_ADMIN_URL" "$DB")"
    if [ -n "$PG_SSLMODE" ]; then DB_URL="$DB_URL?sslmode=$PG_SSLMODE"; fi
    CONFIG_KEY="postgres${PG_SSLMODE:+-sslmode-$PG_SSLMODE}"
    ;;
  sqlite)
    DB_URL="sqlite://$WORK/sessiond.db?mode=rwc"
    CONFIG_KEY="sqlite"
    ;;
  *) die "STORE must be postgres or sqlite" ;;
esac

openssl genpkey -algorithm ed25519 -out "$WORK/signing.pem" 2>/dev/null
export SESSIOND_SIGNING_KEY_FILE="$WORK/signing.pem"
SESSIOND_REFRESH_KEY="$(openssl rand -base64 48)"; export SESSIOND_REFRESH_KEY
# As the limits harness, plus time-outs and windows that a program slowed ~50x by valgrind
# never reaches (no passivation, no call or request time-out during a phase).
export DATABASE_URL="$DB_URL" SESSIOND_RATE_LIMITS=off SESSIOND_LOG_FORMAT=json RUST_LOG=warn \
  SESSIOND_ACCESS_TTL=6h SESSIOND_PASSIVATE_AFTER=1h SESSIOND_CALL_TIMEOUT=60s \
  SESSIOND_REQUEST_TIMEOUT=120s SESSIOND_DB_ACQUIRE_TIMEOUT=60s

say "migrate and seed ($STORE)"
"$SESSIOND_BIN" migrate >"$OUT/migrate.log" 2>&1 || die "migrate (see $OUT/migrate.log)"
"$SESSIOND_BIN" seed --users "$SESSIONS" --sessions-per-user 1 --first 0 \
  --out "$WORK/seed-refresh.jsonl" >"$OUT/seed.log" 2>&1 || die "seed (see $OUT/seed.log)"
"$SESSIOND_BIN" seed --users "$SESSIONS" --sessions-per-user 1 --first 1000000 \
  --out "$WORK/seed-read.jsonl" >>"$OUT/seed.log" 2>&1 || die "seed (see $OUT/seed.log)"
ACTIVATE_ARGS=(); PHASES="refresh me"
if [ "$ACTIVATIONS" -gt 0 ]; then
  "$SESSIOND_BIN" seed --users "$(( ACTIVATIONS + 50 ))" --sessions-per-user 1 --first 2000000 \
    --out "$WORK/seed-activate.jsonl" >>"$OUT/seed.log" 2>&1 || die "seed (see $OUT/seed.log)"
  ACTIVATE_ARGS=(--activate-seed "$WORK/seed-activate.jsonl" --activations "$ACTIVATIONS" --activate-warmup 50)
  PHASES="refresh me activate"
fi

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
say "sessiond under $TOOL on 127.0.0.1:$PORT"
rm -f "$OUT"/callgrind.out.*
if [ "$TOOL" = perf ]; then
  command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null || die "perf (Debian: linux-perf)"
  command -v inferno-flamegraph >/dev/null || die "inferno-flamegraph not found (cargo install inferno)"
  SESSIOND_BIND="127.0.0.1:$PORT" "$SESSIOND_BIN" serve >"$OUT/sessiond.log" 2>&1 &
else
  SESSIOND_BIND="127.0.0.1:$PORT" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" \
    "$SESSIOND_BIN" serve >"$OUT/sessiond.log" 2>&1 &
fi
SVC_PID=$!
for _ in $(seq 1 1200); do
  kill -0 "$SVC_PID" 2>/dev/null || { tail -20 "$OUT/sessiond.log" >&2; die "sessiond exited"; }
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/ready" 2>/dev/null && break
  sleep 0.25
done
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/ready" || die "sessiond did not become ready"

say "fixed sequence: warm-up, $REQUESTS refreshes, $REQUESTS /me ($SESSIONS sessions each)"
python3 "$ROOT/benches/lib/callgrind_drive.py" --pid "$SVC_PID" --url "http://127.0.0.1:$PORT" \
  --refresh-seed "$WORK/seed-refresh.jsonl" --read-seed "$WORK/seed-read.jsonl" \
  --sessions "$SESSIONS" --requests "$REQUESTS" --warmup "$WARMUP" --dump-dir "$OUT" \
  --mode "$TOOL" "${ACTIVATE_ARGS[@]}" >"$OUT/drive.json" || die "request sequence"
kill -TERM "$SVC_PID"; wait "$SVC_PID" 2>/dev/null || true; SVC_PID=""

if [ "$TOOL" = perf ]; then
  for phase in $PHASES; do
    perf script -i "$OUT/perf-$phase.data" 2>/dev/null | inferno-collapse-perf >"$OUT/folded-$phase.txt"
    inferno-flamegraph --title "sessiond: $REQUESTS sequential $phase requests ($CONFIG_KEY, perf cpu-clock)" \
      --width 1600 <"$OUT/folded-$phase.txt" >"$OUT/flame-$phase.svg"
  done
  echo "callgrind.sh (TOOL=perf): flame graphs in $OUT/flame-{refresh,me}.svg" >&2
  exit 0
fi

for phase in $PHASES; do
  f="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["phases"][sys.argv[2]]["dump"])' "$OUT/drive.json" "$phase")"
  mv "$f" "$OUT/callgrind.out.$phase"
  callgrind_annotate --inclusive=yes "$OUT/callgrind.out.$phase" >"$OUT/annotate-$phase-inclusive.txt" 2>/dev/null || true
  callgrind_annotate "$OUT/callgrind.out.$phase" >"$OUT/annotate-$phase-self.txt" 2>/dev/null || true
done

python3 - "$OUT" "$CONFIG_KEY" "$RECORD_FILE" "${RECORD:-0}" "$SESSIOND_BIN" "${COMMIT:-}" <<'PY'
import json, os, re, subprocess, sys, datetime
out, key, record_file, record, binary, given_commit = sys.argv[1:7]
drive = json.load(open(os.path.join(out, "drive.json")))["phases"]

def total_ir(path):
    with open(path) as f:
        for line in f:
            m = re.match(r"(?:totals|summary):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise SystemExit(f"no totals in {path}")

try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip() != ""
except Exception:
    commit, dirty = "unknown", False
if given_commit:
    commit, dirty = given_commit, False
run = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "commit": commit + ("-dirty" if dirty else ""),
    "config": key,
    "valgrind": subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip(),
    "phases": {},
}
for phase, d in drive.items():
    ir = total_ir(os.path.join(out, f"callgrind.out.{phase}"))
    run["phases"][phase] = {"requests": d["requests"], "instructions": ir,
                            "instructions_per_request": round(ir / d["requests"])}
json.dump(run, open(os.path.join(out, "callgrind.json"), "w"), indent=2)

records = {}
if os.path.exists(record_file):
    records = json.load(open(record_file))
prev = records.get(key)
print(f"callgrind ({key}, commit {run['commit']}): instructions per request")
for phase, p in run["phases"].items():
    line = f"  {phase:8} {p['instructions_per_request']:>12,}"
    if prev and phase in prev.get("phases", {}):
        before = prev["phases"][phase]["instructions_per_request"]
        line += f"   record {before:>12,} ({prev['commit']})  change {100.0 * (p['instructions_per_request'] - before) / before:+.1f} %"
    else:
        line += "   (no run of record for this configuration)"
    print(line)
if record == "1":
    records[key] = run
    with open(record_file, "w") as f:
        json.dump(records, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"  recorded as the run of record in {record_file}")
PY
echo "callgrind: results in $OUT (callgrind.json, callgrind.out.<phase>, annotate-<phase>-*.txt)" >&2
