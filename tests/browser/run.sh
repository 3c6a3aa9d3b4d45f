#!/usr/bin/env bash
# The demo page and the OAuth sign-in pages end to end in real Chromium (tests/browser/*.test.mjs),
# as scripts/test runs it.
#
# Needs Node.js with npm, Debian's chromium (installed with apt-get when missing) and
# playwright-core (npm ci from the committed lockfile when node_modules is missing). Fails
# loudly when any of them cannot be had: nothing is skipped.
#
# Env: SESSIOND_BIN (default $CARGO_TARGET_DIR/debug/sessiond), BROWSER_DB (sqlite | postgres |
#      all; default sqlite), BROWSER_ARTEFACTS (screenshots; default tests/browser/artefacts).
set -euo pipefail
cd "$(dirname "$0")"

die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessiond-target}"
export SESSIOND_BIN="${SESSIOND_BIN:-$CARGO_TARGET_DIR/debug/sessiond}"
[ -x "$SESSIOND_BIN" ] || die "$SESSIOND_BIN not found (build it: cargo build --bin sessiond)"

command -v node >/dev/null || die "node not found: the browser tests need Node.js (apt-get install -y nodejs npm)"
command -v npm >/dev/null || die "npm not found: the browser tests need npm (apt-get install -y npm)"
major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$major" -ge 20 ] || die "Node.js $major is too old (the tests need 20 or later)"

CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/lib/chromium/chromium}"
if [ ! -x "$CHROMIUM_BIN" ]; then
  echo "Chromium missing: installing Debian's chromium"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    || die "apt-get install -y chromium failed (the browser tests need it)"
fi
[ -x "$CHROMIUM_BIN" ] || die "$CHROMIUM_BIN not found after installing chromium"
export CHROMIUM_BIN

if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund || die "npm ci failed (playwright-core from the committed lockfile)"
fi
installed="$(node -p 'require("playwright-core/package.json").version')"
pinned="$(node -p 'require("./package.json").devDependencies["playwright-core"]')"
[ "$installed" = "$pinned" ] || die "playwright-core $installed installed, $pinned pinned (rm -rf tests/browser/node_modules)"

BROWSER_DB="${BROWSER_DB:-sqlite}"
case "$BROWSER_DB" in
  all) backends="sqlite postgres" ;;
  sqlite|postgres) backends="$BROWSER_DB" ;;
  *) die "BROWSER_DB must be sqlite, postgres or all" ;;
esac
failed=""
for db in $backends; do
  echo "==> browser tests on $db ($("$CHROMIUM_BIN" --version 2>/dev/null | head -1), playwright-core $installed)"
  BROWSER_DB="$db" node --test --test-concurrency=1 --test-reporter=spec ./*.test.mjs || failed="$failed $db"
done
[ -z "$failed" ] || die "browser tests failed on:$failed (screenshots: ${BROWSER_ARTEFACTS:-tests/browser/artefacts})"
