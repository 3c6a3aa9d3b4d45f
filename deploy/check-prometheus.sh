#!/usr/bin/env bash
# Checks the shipped Prometheus configuration, alert rules and Grafana dashboard against a real
# Prometheus scraping a real sessiond, all on loopback:
#
# 1. `promtool check config` / `promtool check rules` on deploy/prometheus.yml and alerts.yml
#    (Prometheus is installed from the Debian packages when missing; that needs root).
# 2. Starts sessiond (the debug or release binary from $CARGO_TARGET_DIR, SQLite in a temp dir)
#    and Prometheus with the shipped config, its target pointed at that sessiond and its scrape
#    and evaluation intervals set to 1s.
# 3. Drives traffic: the whole lifecycle plus one refresh-token replay.
# 4. Asks Prometheus's HTTP API for every dashboard expression (each must be valid and return at
#    least one series) and every alert rule (each must be valid and evaluate without error).
#
# Both processes are killed on exit, whatever happens; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

DEPLOY=deploy
DASHBOARD=$DEPLOY/grafana/dashboards/sessiond.json
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessiond-target}"

say() { printf '==> %s\n' "$*"; }
die() { printf 'check-prometheus: FAILED: %s\n' "$*" >&2; exit 1; }

# ---- tools
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  say "installing Prometheus from the Debian packages"
  [ "$(id -u)" = 0 ] || die "prometheus is missing and installing it needs root (apt-get install prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq >/dev/null
  timeout 600 apt-get install -y -qq prometheus >/dev/null
fi
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
say "$(prometheus --version 2>&1 | head -1)"

say "promtool check config / rules"
promtool check config "$DEPLOY/prometheus.yml"
promtool check rules "$DEPLOY/alerts.yml"

# ---- sessiond binary
BIN="${SESSIOND_BIN:-}"
if [ -z "$BIN" ]; then
  for candidate in "$CARGO_TARGET_DIR/debug/sessiond" "$CARGO_TARGET_DIR/release/sessiond"; do
    if [ -x "$candidate" ]; then BIN=$candidate; break; fi
  done
fi
if [ -z "$BIN" ]; then
  say "building sessiond"
  cargo build --locked --bin sessiond
  BIN=$CARGO_TARGET_DIR/debug/sessiond
fi

# ---- processes, always cleaned up
WORK=$(mktemp -d)
SESSIOND_PID=""
PROMETHEUS_PID=""
cleanup() {
  local status=$?
  for pid in "$PROMETHEUS_PID" "$SESSIOND_PID"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ "$status" != 0 ]; then
    echo "---- sessiond log (tail) ----" >&2; tail -n 40 "$WORK/sessiond.log" 2>/dev/null >&2 || true
    echo "---- prometheus log (tail) ----" >&2; tail -n 40 "$WORK/prometheus.log" 2>/dev/null >&2 || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Polls `$1` (a command) every 0.2 s until it succeeds, for at most `$2` seconds.
wait_for() {
  local what=$1 seconds=$2 i
  for i in $(seq 1 $((seconds * 5))); do
    if eval "$what" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

SPORT=$(free_port)
S=http://127.0.0.1:$SPORT
say "starting sessiond ($BIN) on $S"
env -i PATH="$PATH" HOME="$HOME" \
  DATABASE_URL="sqlite://$WORK/sessiond.db?mode=rwc" \
  SESSIOND_KEYS_FILE="$WORK/sessiond.keys" \
  SESSIOND_BIND="127.0.0.1:$SPORT" \
  SESSIOND_GRACE_WINDOW=1s \
  SESSIOND_ARGON2_MEMORY_KIB=1024 SESSIOND_ARGON2_ITERATIONS=1 \
  RUST_LOG=warn NO_COLOR=1 \
  "$BIN" serve >"$WORK/sessiond.log" 2>&1 &
SESSIOND_PID=$!
wait_for "curl -fsS $S/ready" 60 || die "sessiond did not become ready on $S"

PPORT=$(free_port)
P=http://127.0.0.1:$PPORT
# The shipped configuration, pointed at this sessiond (bound to loopback, so its main listener
# serves /metrics, as the separate listener does in compose), 1 s intervals, rules next to it.
sed -e "s/sessiond:9464/127.0.0.1:$SPORT/" \
    -e "s/scrape_interval: 15s/scrape_interval: 1s/" \
    -e "s/evaluation_interval: 15s/evaluation_interval: 1s/" \
    "$DEPLOY/prometheus.yml" >"$WORK/prometheus.yml"
cp "$DEPLOY/alerts.yml" "$WORK/alerts.yml"
grep -q "127.0.0.1:$SPORT" "$WORK/prometheus.yml" || die "could not point the scrape config at sessiond"
grep -q "scrape_interval: 1s" "$WORK/prometheus.yml" || die "could not set the scrape interval"
promtool check config "$WORK/prometheus.yml" >/dev/null
say "starting Prometheus on $P"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PPORT" >"$WORK/prometheus.log" 2>&1 &
PROMETHEUS_PID=$!
wait_for "curl -fsS $P/-/ready" 60 || die "Prometheus did not become ready on $P"

# Instant query; prints the JSON answer.
query() { curl -sS -G "$P/api/v1/query" --data-urlencode "query=$1"; }
wait_for "[ \"\$(query 'up{job=\"sessiond\"}' | jq -r '.data.result[0].value[1]')\" = 1 ]" 60 \
  || die "Prometheus never scraped sessiond (up != 1)"

# ---- traffic: lifecycle plus one replay
post() { curl -sS -X POST "$S$1" -H 'content-type: application/json' ${3:+-H "authorization: Bearer $3"} -d "$2"; }
expect_code() { # body, expected error code
  [ "$(jq -r '.error.code' <<<"$1")" = "$2" ] || die "expected $2, got: $1"
}
say "driving traffic"
for round in 1 2 3; do
  email="ops$round@example.com"
  post /v1/auth/register "{\"email\":\"$email\",\"password\":\"correct horse battery\"}" >/dev/null
  login=$(post /v1/auth/sessions "{\"email\":\"$email\",\"password\":\"correct horse battery\"}")
  at=$(jq -r .access_token <<<"$login"); rt=$(jq -r .refresh_token <<<"$login")
  [ "$rt" != null ] || die "login failed: $login"
  curl -fsS "$S/v1/auth/me" -H "authorization: Bearer $at" >/dev/null
  curl -fsS "$S/v1/auth/sessions" -H "authorization: Bearer $at" >/dev/null
  refreshed=$(post /v1/auth/tokens/refresh "{\"refresh_token\":\"$rt\"}")
  rt2=$(jq -r .refresh_token <<<"$refreshed"); at2=$(jq -r .access_token <<<"$refreshed")
  [ "$rt2" != null ] || die "refresh failed: $refreshed"
  post /v1/auth/tokens/refresh "{\"refresh_token\":\"$rt\"}" >/dev/null   # grace retry
  expect_code "$(post /v1/auth/sessions "{\"email\":\"$email\",\"password\":\"wrong horse battery\"}")" invalid_credentials
  expect_code "$(post /v1/auth/tokens/refresh '{"refresh_token":"rt1_garbage"}')" invalid_refresh_token
  curl -sS "$S/no/such/route" >/dev/null
  if [ "$round" = 1 ]; then
    # The replay: the parent after the grace window compromises the session.
    sleep 1.5
    expect_code "$(post /v1/auth/tokens/refresh "{\"refresh_token\":\"$rt\"}")" refresh_token_reused
    expect_code "$(post /v1/auth/tokens/refresh "{\"refresh_token\":\"$rt2\"}")" session_compromised
  else
    second=$(post /v1/auth/sessions "{\"email\":\"$email\",\"password\":\"correct horse battery\"}")
    curl -fsS -o /dev/null -X DELETE "$S/v1/auth/sessions" -H "authorization: Bearer $at2"
    post /v1/auth/sessions/current/revoke '' "$at2" >/dev/null
    : "$second"
  fi
  sleep 1
done

# Wait until Prometheus has seen the replay, then give rates two more scrapes.
wait_for "[ \"\$(query 'sessiond_refresh_total{outcome=\"reused\"}' | jq -r '.data.result[0].value[1]')\" = 1 ]" 30 \
  || die "Prometheus never saw the replay (sessiond_refresh_total{outcome=\"reused\"})"
sleep 3

# ---- every dashboard expression: valid and non-empty
failures=0
checked=0
say "dashboard expressions ($DASHBOARD)"
while IFS= read -r expr; do
  checked=$((checked + 1))
  answer=$(query "$expr")
  status=$(jq -r .status <<<"$answer")
  series=$(jq -r '.data.result | length' <<<"$answer" 2>/dev/null || echo 0)
  if [ "$status" != success ]; then
    printf '  INVALID  %s\n           %s\n' "$expr" "$(jq -r .error <<<"$answer")"
    failures=$((failures + 1))
  elif [ "$series" = 0 ]; then
    printf '  EMPTY    %s\n' "$expr"
    failures=$((failures + 1))
  else
    printf '  ok %3d series  %s\n' "$series" "$expr"
  fi
done < <(jq -r '.. | objects | select(has("expr")) | .expr' "$DASHBOARD")
[ "$checked" -gt 0 ] || die "no expressions found in $DASHBOARD"
dashboard_checked=$checked

# ---- every alert rule: valid, and evaluated by Prometheus without error
say "alert rules ($DEPLOY/alerts.yml)"
rules_json=$(curl -sS "$P/api/v1/rules")
wait_for "curl -sS $P/api/v1/rules | jq -e '[.data.groups[].rules[] | select(.lastEvaluation | startswith(\"0001\"))] | length == 0'" 30 \
  || die "Prometheus has not evaluated every rule"
rules_json=$(curl -sS "$P/api/v1/rules")
loaded=$(jq '[.data.groups[].rules[]] | length' <<<"$rules_json")
shipped=$(python3 -c 'import sys, yaml; print(sum(len(g["rules"]) for g in yaml.safe_load(open(sys.argv[1]))["groups"]))' "$DEPLOY/alerts.yml")
[ "$loaded" = "$shipped" ] || { echo "  Prometheus loaded $loaded rules, alerts.yml has $shipped"; failures=$((failures + 1)); }
rules_checked=0
while IFS=$'\x1f' read -r name health error expr; do
  rules_checked=$((rules_checked + 1))
  answer=$(query "$expr")
  status=$(jq -r .status <<<"$answer")
  if [ "$status" != success ] || [ "$health" != ok ]; then
    printf '  INVALID  %s (%s %s): %s\n' "$name" "$health" "$error" "$(jq -r '.error // ""' <<<"$answer")"
    failures=$((failures + 1))
  else
    printf '  ok %-28s %s series now (%s)\n' "$name" "$(jq -r '.data.result | length' <<<"$answer")" \
      "$(jq -r --arg n "$name" '[.data.groups[].rules[] | select(.name == $n)][0].state' <<<"$rules_json")"
  fi
done < <(jq -r '.data.groups[].rules[] | [.name, .health, (.lastError // ""), .query] | join("\u001f")' <<<"$rules_json")

families=$(curl -fsS "$S/metrics" | grep -c '^# TYPE ' || true)
say "summary: $dashboard_checked dashboard expressions, $rules_checked alert rules, $families metric families exported, $failures failures"
[ "$failures" = 0 ] || die "$failures expression(s) invalid or empty"
echo "check-prometheus: OK"
