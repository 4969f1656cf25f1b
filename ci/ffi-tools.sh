#!/usr/bin/env bash
# ci/ffi-tools.sh — the tools the C/Python stage needs, installed idempotently:
#   cbindgen (pinned, from crates.io, into a cache dir: the header drift check)
#   a Python venv with pytest (from PyPI) for the Python module's tests
# Prints the two paths as shell assignments (CBINDGEN=..., FFI_VENV=...).
#
# Debian 12's cbindgen (0.24) cannot parse edition 2024 (`#[unsafe(no_mangle)]`,
# C string literals), so cbindgen comes from crates.io: about 2 min of CPU the
# first time on a 2-core machine (7 min wall seen while the machine was loaded),
# then 0 s: it is cached in $SHMBUS_CI_CACHE/cbindgen-$VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

CBINDGEN_VERSION=0.29.4
PYTEST_VERSION=8.3.5
CACHE=${SHMBUS_CI_CACHE:-/var/cache/shmbus-ci}
if ! mkdir -p "$CACHE" 2>/dev/null || [[ ! -w "$CACHE" ]]; then
    CACHE=$PWD/target/ffi-cache # not root: keep it in the work tree
    mkdir -p "$CACHE"
fi

cb_root=$CACHE/cbindgen-$CBINDGEN_VERSION
if [[ ! -x $cb_root/bin/cbindgen ]] || [[ "$("$cb_root/bin/cbindgen" --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]]; then
    echo "ffi-tools: installing cbindgen $CBINDGEN_VERSION into $cb_root" >&2
    t0=$(date +%s)
    cargo install cbindgen --version "=$CBINDGEN_VERSION" --locked --root "$cb_root" --quiet >&2
    echo "ffi-tools: cbindgen installed in $(($(date +%s) - t0)) s" >&2
fi

venv=$CACHE/ffi-venv
if ! "$venv/bin/python" -c "import pytest, sys; sys.exit(pytest.__version__ != '$PYTEST_VERSION')" 2>/dev/null; then
    echo "ffi-tools: making $venv with pytest $PYTEST_VERSION" >&2
    py=$(command -v python3)
    [[ -x /usr/bin/python3 ]] && py=/usr/bin/python3 # Debian's, when present
    if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
        # Debian's python3 needs python3-venv for ensurepip.
        if command -v apt-get >/dev/null; then
            apt-get install -y -qq python3-venv >&2 || { apt-get update -qq >&2 || true; apt-get install -y -qq python3-venv >&2; }
        fi
        rm -rf "$venv"
        "$py" -m venv "$venv" >&2
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pytest==$PYTEST_VERSION" >&2
fi

echo "CBINDGEN=$cb_root/bin/cbindgen"
echo "FFI_VENV=$venv"
