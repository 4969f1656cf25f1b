#!/usr/bin/env bash
# ci/ffi-test.sh [host|armv7|all] — the C library and Python module stage of
# ci/test.sh (default: all).
#
#   header   shmbus.h matches the sources (cbindgen) and compiles alone as C99
#   host     libshmbus installed in target/ffi/host (cargo-c layout, pkg-config);
#            the C API tests linked against the .so and the .a, run against
#            a live Rust publisher
#   armv7    the same cross-built with Debian's rustc 1.85 and
#            arm-linux-gnueabihf-gcc, every program run under qemu-arm
#
# Everything that touches System V IPC runs in a private IPC namespace
# (unshare --ipc): fixed keys (0x79......) cannot meet another test's, and
# nothing is left behind when the namespace ends. Every program runs under
# `timeout` (a watchdog, never a time assertion).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
if [[ -z ${SHMBUS_FFI_IN_NS:-} ]]; then
    exec env SHMBUS_FFI_IN_NS=1 unshare --ipc -- "$0" "$@"
fi

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
ROOT=$PWD
OUT=$ROOT/target/ffi
mkdir -p "$OUT"
WATCHDOG=${SHMBUS_FFI_WATCHDOG:-300}
fails=0
summary=()
note() { summary+=("$1"); echo "ffi-test: $1"; }

# run NAME CMD...: run a test program under the watchdog; record the result.
run() {
    local name=$1 rc=0
    shift
    echo "---- $name: $*"
    timeout --kill-after=10 "$WATCHDOG" "$@" || rc=$?
    if [[ $rc == 0 ]]; then note "ok    $name"; else note "FAIL  $name (exit $rc)"; fails=$((fails + 1)); fi
}

# A Rust IMU publisher at 1 kHz for the C API tests, stopped and removed on exit.
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# cbuild CC PREFIX OUTDIR: compile the C tests against an installed prefix,
# once against libshmbus.so (rpath to the prefix) and once against libshmbus.a.
cbuild() {
    local cc=$1 prefix=$2 dir=$3
    local -a flags=(-std=c99 -O2 -Wall -Wextra -Werror -Icrates/shmbus-ffi/tests/c)
    mkdir -p "$dir"
    local pc="env PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config"
    # shellcheck disable=SC2046
    "$cc" "${flags[@]}" -o "$dir/test_api" crates/shmbus-ffi/tests/c/test_api.c \
        $($pc --cflags --libs shmbus) -lm -Wl,-rpath,"$prefix/lib"
    # shellcheck disable=SC2046
    "$cc" "${flags[@]}" -o "$dir/test_api_static" crates/shmbus-ffi/tests/c/test_api.c \
        $($pc --cflags shmbus) "$prefix/lib/libshmbus.a" $($pc --static --libs-only-l shmbus | sed 's/-lshmbus//') -lm
}

# ctests LABEL RUNNER EXAMPLES_DIR TESTS_DIR
ctests() {
    local label=$1 runner=$2 ex=$3 dir=$4
    local key=0x79000101 free=0x79000102
    # shellcheck disable=SC2086
    $runner "$ex/imu-publisher" --name imu --key $key --rate 1000 --duration 600 --remove true >"$OUT/imu-publisher.$label.log" 2>&1 &
    PIDS+=($!)
    # shellcheck disable=SC2086
    run "$label: C API tests (libshmbus.so) vs a Rust publisher" $runner "$dir/test_api" $key $free
    # shellcheck disable=SC2086
    run "$label: C API tests (libshmbus.a) vs a Rust publisher" $runner "$dir/test_api_static" $key $free
    kill "${PIDS[-1]}" 2>/dev/null || true
    wait "${PIDS[-1]}" 2>/dev/null || true
}

if [[ $what == all || $what == host ]]; then
    run "header: matches the sources, compiles alone as C99" ci/ffi-header.sh --check
    ci/ffi-install.sh "$OUT/host" host
    cargo build --release -p shmbus-examples
    cbuild cc "$OUT/host" "$OUT/host/bin"
    ctests host "" target/release "$OUT/host/bin"
fi

if [[ $what == all || $what == armv7 ]]; then
    # shellcheck source=ci/arm-env.sh
    source ci/arm-env.sh
    ci/ffi-install.sh "$OUT/armv7" armv7
    arm_cargo build --release -p shmbus-examples
    armdir=$(_shmbus_arm_target_base)/armv7/$SHMBUS_ARM_TARGET/release
    cbuild arm-linux-gnueabihf-gcc "$OUT/armv7" "$OUT/armv7/bin"
    file "$OUT/armv7/bin/test_api" | sed 's/^/  /'
    ctests armv7 "qemu-arm -L /usr/arm-linux-gnueabihf" "$armdir" "$OUT/armv7/bin"
fi

echo
echo "ffi-test summary:"
printf '  %s\n' "${summary[@]}"
passed=$(printf '%s\n' "${summary[@]}" | grep -c '^ok' || true)
echo "ffi: $passed passed, $fails failed"
[[ $fails == 0 ]]
