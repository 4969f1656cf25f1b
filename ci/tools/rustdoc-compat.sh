#!/usr/bin/env bash
set -euo pipefail
# RUSTDOC wrapper used by arm_cargo (ci/arm-env.sh) around Debian's /usr/bin/rustdoc 1.85.
#
# rustup's newer cargo (>= 1.89) runs doctests when cross-compiling and hands rustdoc the
# runner as `--test-runtool X --test-runtool-arg Y`. Rustdoc 1.85 only knows these as the
# unstable `--runtool` / `--runtool-arg` (behind -Z unstable-options), so
# `arm_cargo test --target armv7-...` fails with "Unrecognized option: 'test-runtool'".
# This wrapper renames the two flags and enables the unstable options for that one
# rustdoc call (RUSTC_BOOTSTRAP=1 is scoped to it). Everything else passes through.
# (No `cd` here: rustdoc must run in the directory cargo chose.)
REAL=${SHMBUS_REAL_RUSTDOC:-/usr/bin/rustdoc}
args=()
renamed=0
for a in "$@"; do
    case "$a" in
        --test-runtool) args+=(--runtool); renamed=1 ;;
        --test-runtool-arg) args+=(--runtool-arg); renamed=1 ;;
        --test-runtool=*) args+=("--runtool=${a#--test-runtool=}"); renamed=1 ;;
        --test-runtool-arg=*) args+=("--runtool-arg=${a#--test-runtool-arg=}"); renamed=1 ;;
        *) args+=("$a") ;;
    esac
done
if [[ $renamed -eq 1 ]]; then
    RUSTC_BOOTSTRAP=1 exec "$REAL" -Z unstable-options "${args[@]}"
fi
exec "$REAL" "$@"
