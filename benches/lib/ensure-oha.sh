#!/usr/bin/env bash
# Makes sure oha (the fixed-rate HTTP load generator of the limits harness's /me latency runs)
# is installed at the pinned version: `cargo install oha --version $OHA_VERSION --locked` into
# ~/.cargo/bin when it is missing or another version, niced (it compiles for a few minutes on 2
# cores; the build directory is removed afterwards). Source it; it defines OHA (the binary).
OHA_VERSION=1.16.0
OHA="${OHA:-$HOME/.cargo/bin/oha}"
oha_ok() { [ -x "$OHA" ] && "$OHA" --version 2>/dev/null | grep -q "oha ${OHA_VERSION}$"; }
if ! oha_ok; then
  echo "installing oha ${OHA_VERSION} (cargo install oha --version ${OHA_VERSION} --locked)" >&2
  env -u CARGO_TARGET_DIR nice -n 10 cargo install oha --version "$OHA_VERSION" --locked --root "$HOME/.cargo" >&2 \
    || { echo "oha ${OHA_VERSION} could not be installed" >&2; return 1 2>/dev/null || exit 1; }
  OHA="$HOME/.cargo/bin/oha"
  oha_ok || { echo "oha ${OHA_VERSION} is not what cargo installed" >&2; return 1 2>/dev/null || exit 1; }
fi
