#!/usr/bin/env bash
# Model-check the seqlock protocol with loom (one writer, one reader, the
# bus's own orderings; see src/seqlock.rs). Uses its own target dir, because
# `--cfg loom` changes every crate's build.
set -euo pipefail
cd "$(dirname "$0")/../.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"
exec cargo test -p shmbus-core --lib --release "$@"
