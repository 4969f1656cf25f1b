#!/usr/bin/env bash
# One command for the benchmark: builds the shmbus bench tool (release),
# builds the iceoryx2 peer if it can (registry reachable, a Rust new enough
# for iceoryx2: rustup's toolchain, never the ARM build's 1.85), and runs
# everything in one session with iceoryx2 interleaved in the same rounds.
#
#   bench/run.sh [--quick] [any other `shmbus bench` option]
#
# Writes target/bench/bench.txt, bench.json and bench.svg and prints the
# table. Environment: OUT (output dir), CARGO_TARGET_DIR, ICEORYX2_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-target/bench}"
target="${CARGO_TARGET_DIR:-target}"
ice_target="$(realpath -m "${ICEORYX2_TARGET_DIR:-$target/iceoryx2-peer}")"
mkdir -p "$out"

echo "== building shmbus-bench (release)" >&2
cargo build --release -p shmbus-bench >&2
tool="$target/release/shmbus-bench"

ice_args=()
echo "== building the iceoryx2 peer (bench/iceoryx2-peer, outside the workspace)" >&2
# rustup's toolchain, whatever RUSTC the caller set for the 1.85 floor.
if (cd bench/iceoryx2-peer && env -u RUSTC CARGO_TARGET_DIR="$ice_target" \
        cargo build --release >&2); then
    ice_args=(--iceoryx2 "$ice_target/release/iceoryx2-peer")
else
    echo "== iceoryx2 peer did not build (offline, or Rust older than 1.89): running without it" >&2
fi

echo "== running: shmbus bench --out $out ${ice_args[*]} $*" >&2
"$tool" --out "$out" "${ice_args[@]}" "$@"
echo "== wrote $out/bench.txt $out/bench.json $out/bench.svg" >&2
