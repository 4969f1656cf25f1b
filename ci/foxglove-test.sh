#!/usr/bin/env bash
# ci/foxglove-test.sh — `shmbus foxglove` against a real Foxglove client.
#
# The client is Foxglove's own protocol library, @foxglove/ws-protocol from
# npm (with `ws` for Node and ajv to validate the JSON Schemas), installed by
# `npm ci` from crates/shmbus-foxglove/tests/node/package-lock.json into
# $SHMBUS_CI_CACHE/foxglove-node (skipped when that lock is already there).
# Everything runs in a private IPC namespace (`unshare --ipc`) on 127.0.0.1:
#   1. the x86_64 server: every test of tests/node/foxglove.test.cjs;
#   2. the armv7 server (static, profile board) under qemu-arm, the same
#      client: the "core" tests (channels and schemas, frames equal to
#      `shmbus echo --json`, subprotocols, topics appearing and going,
#      liveness, rate limits, publishing);
#   3. with --bench (or SHMBUS_FOXGLOVE_BENCH=1): server CPU per client per
#      1,000 frames/s, x86_64 and armv7 under qemu-arm (tests/node/bench.cjs).
# The armv7 `shmbus` is the static one of the board profile with default
# features (ci/test.sh's board-build stage leaves it built).
#
# Usage: ci/foxglove-test.sh [all|host] [--bench]   (host: step 1 only)
# Env: SHMBUS_CI_CACHE (default /var/cache/shmbus-ci), FOX_ONLY (test tags).
set -euo pipefail
cd "$(dirname "$0")/.."

WHAT=all
BENCH=${SHMBUS_FOXGLOVE_BENCH:-0}
for a in "$@"; do
    case $a in
    all | host) WHAT=$a ;;
    --bench) BENCH=1 ;;
    *)
        echo "usage: ci/foxglove-test.sh [all|host] [--bench]" >&2
        exit 2
        ;;
    esac
done
CACHE=${SHMBUS_CI_CACHE:-/var/cache/shmbus-ci}/foxglove-node
NODE_DIR=crates/shmbus-foxglove/tests/node

# ---- Node and the client library
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "foxglove-test: installing Debian's nodejs and npm"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 18)); then
    echo "foxglove-test: Node $(node --version) is too old: the tests need Node 18 or newer" >&2
    exit 1
fi
mkdir -p "$CACHE"
want=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
if [[ ! -d "$CACHE/node_modules" || "$(cat "$CACHE/.lock-sha256" 2>/dev/null)" != "$want" ]]; then
    cp "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json" "$CACHE/"
    (cd "$CACHE" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$CACHE/.lock-sha256"
fi
export NODE_PATH="$CACHE/node_modules"
echo "foxglove-test: node $(node --version), @foxglove/ws-protocol $(node -p 'require("@foxglove/ws-protocol/package.json").version')"

# ---- Binaries
cargo build --release -p shmbus-cli -p shmbus-foxglove --bin shmbus --example fox-test-pub
# Relative, as docs/FOXGLOVE.md's command by hand gives them (the tests'
# publisher runs in `/`: lib.cjs resolves them from here).
export SHMBUS=target/release/shmbus
export FOX_PUB=target/release/examples/fox-test-pub

run_node() { # run_node SCRIPT: in a private IPC namespace
    unshare --ipc node --test --test-reporter=spec "$NODE_DIR/$1"
}

echo
echo "==== foxglove: x86_64 server, every test"
SHMBUS_SERVER=$SHMBUS run_node foxglove.test.cjs
if [[ $BENCH == 1 ]]; then
    echo
    echo "==== foxglove: server CPU per client per 1,000 frames/s, x86_64"
    SHMBUS_SERVER=$SHMBUS FOX_LABEL="x86_64 native" unshare --ipc node "$NODE_DIR/bench.cjs"
fi
[[ $WHAT == all ]] || exit 0

ci/install-arm.sh >/dev/null
# shellcheck source=ci/arm-env.sh
source ci/arm-env.sh
# The default-feature `shmbus`, as the last build of ci/test.sh's board-build
# stage makes it: nothing to do after that stage.
arm_cargo_static build --profile board -p shmbus-cli --bin shmbus
ARM_SHMBUS=$PWD/target/armv7-static/armv7-unknown-linux-gnueabihf/board/shmbus
QEMU="qemu-arm -L /usr/arm-linux-gnueabihf"

echo
echo "==== foxglove: armv7 server under qemu-arm, the core tests"
SHMBUS_SERVER="$QEMU $ARM_SHMBUS" FOX_SLOW=4 FOX_ONLY=${FOX_ONLY:-core} run_node foxglove.test.cjs
if [[ $BENCH == 1 ]]; then
    echo
    echo "==== foxglove: server CPU per client per 1,000 frames/s, armv7 under qemu-arm"
    SHMBUS_SERVER="$QEMU $ARM_SHMBUS" FOX_LABEL="armv7 under qemu-arm" FOX_SLOW=4 unshare --ipc node "$NODE_DIR/bench.cjs"
fi
