#!/usr/bin/env bash
# ci/ffi-test.sh [host|armv7|all] — the C library and Python module stage of
# ci/test.sh (default: all).
#
#   header   shmbus.h matches the sources (cbindgen) and compiles alone as C99
#   host     libshmbus installed in target/ffi/host (cargo-c layout, pkg-config);
#            the C API tests linked against the .so and the .a, run against
#            a live Rust publisher
#            the C examples (shmbus-c-publisher, shmbus-c-subscriber) both
#            ways with each other and with the Rust examples; each example
#            publisher opens its topic again when its segment, then its
#            lock, is removed under it (ipcrm), and each subscriber reads on
#            the Python module: a wheel bundling libshmbus.so, installed
#            in a venv, tested with pytest against live Rust publishers
#            and subscribers (also the Python examples, python/examples);
#            the Python examples with the C ones both ways, and through a
#            removal of their topic; then the C-vs-Rust cost table (ffi_bench)
#   armv7    the C tests and examples cross-built with Debian's rustc 1.85
#            and arm-linux-gnueabihf-gcc, every program run under qemu-arm
#
# Everything that touches System V IPC runs in a private IPC namespace
# (unshare --ipc): fixed keys (0x79......) cannot meet another test's, and
# nothing is left behind when the namespace ends. Every program runs under
# `timeout` (a watchdog, never a time assertion).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
case $what in
all | host | armv7) ;;
*)
    echo "ffi-test: unknown stage '$what' (host, armv7 or all)" >&2
    exit 2
    ;;
esac
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
    local e
    for e in shmbus-c-publisher shmbus-c-subscriber; do
        # shellcheck disable=SC2046
        "$cc" "${flags[@]}" -o "$dir/$e" "crates/shmbus-ffi/examples/$e.c" \
            $($pc --cflags --libs shmbus) -lm -Wl,-rpath,"$prefix/lib"
    done
}

# exports LABEL NM LIB: every function the library exports is shmbus_*, and
# every function the header declares is exported.
exports() {
    local label=$1 nm=$2 lib=$3
    run "$label: exports only shmbus_* functions, all of them in shmbus.h" bash -c "
        set -e
        exported=\$($nm -D --defined-only '$lib' | awk '\$2 == \"T\" {print \$3}' | sort)
        declared=\$(grep -o 'shmbus_[a-z0-9_]*(' crates/shmbus-ffi/include/shmbus.h | tr -d '(' | sort -u)
        echo \"\$(echo \"\$exported\" | wc -l) exported functions\"
        if echo \"\$exported\" | grep -v '^shmbus_'; then echo 'exported without the shmbus_ prefix (above)'; exit 1; fi
        [ \"\$exported\" = \"\$declared\" ] || { diff <(echo \"\$exported\") <(echo \"\$declared\"); exit 1; }"
}

# interop LABEL RUNNER KEY PUBLISHER SUBSCRIBER: a publisher at 1 kHz for
# 60 s at most and a subscriber that must receive 200 frames in order
# (exit 0, "received 200 frames"); both are the same command-line shape in
# C and Rust.
interop() {
    local label=$1 runner=$2 key=$3 pub=$4 sub=$5 rc=0
    # shellcheck disable=SC2086
    $runner "$pub" --name imu --key "$key" --rate 1000 --duration 60 >"$OUT/interop.pub.log" 2>&1 &
    local p=$!
    PIDS+=("$p")
    echo "---- $label"
    # shellcheck disable=SC2086
    timeout --kill-after=10 "$WATCHDOG" $runner "$sub" --name imu --key "$key" --count 200 --timeout 20 --wait 30 \
        >"$OUT/interop.sub.log" 2>&1 || rc=$?
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    ipcrm -M "$key" 2>/dev/null || true
    ipcrm -S "$key" 2>/dev/null || true
    head -n 3 "$OUT/interop.sub.log" | sed 's/^/  /'
    tail -n 1 "$OUT/interop.sub.log" | sed 's/^/  /'
    if [[ $rc == 0 ]] && grep -q '^received 200 frames' "$OUT/interop.sub.log"; then
        note "ok    $label"
    else
        note "FAIL  $label (exit $rc)"
        sed 's/^/  pub: /' "$OUT/interop.pub.log" | tail -n 5
        fails=$((fails + 1))
    fi
}

# lines_within N PATTERN FILE: wait (60 s at most) until FILE has N lines
# matching PATTERN.
lines_within() {
    local i
    for ((i = 0; i < 600; i++)); do
        [[ $(grep -c -- "$2" "$3" || true) -ge $1 ]] && return 0
        sleep 0.1
    done
    echo "  no $1 line(s) matching '$2' within 60 s in $3:"
    sed 's/^/    /' "$3"
    return 1
}

# removed LABEL RUNNER KEY PUBLISHER SUBSCRIBER: the publisher's segment is
# removed under it (ipcrm -m, as `shmbus rm --force` or systemd-logind's
# RemoveIPC would), then its lock alone (ipcrm -s). Each time it must say so
# and open the topic again (a new segment, then a new lock on the same
# one). A subscriber started before reads through both: it says the topic
# was removed, attaches the new segment, and receives its 10000 frames
# (10 s at the publisher's 1 kHz, so it is still reading when both happen).
removed() {
    local label=$1 runner=$2 key=$3 pub=$4 sub=$5 rc=0 old new
    # One pair of logs per scenario (its key), emptied before anything
    # starts: `lines_within` below polls them right after the processes
    # start, and a log the previous scenario left ("subscribed to 'imu'")
    # matched before the new process truncated it. The segment was then
    # removed before a slow-starting (Python) subscriber attached: it never
    # saw a removal, and the scenario failed.
    local log=$OUT/removed.$key.pub.log slog=$OUT/removed.$key.sub.log
    : >"$log"
    : >"$slog"
    # shellcheck disable=SC2086
    $runner "$pub" --name imu --key "$key" --rate 1000 --duration 120 >"$log" 2>&1 &
    local p=$!
    PIDS+=("$p")
    echo "---- $label"
    shmid_at() { ipcs -m | awk -v k="$key" '$1 == k {print $2}'; }
    lines_within 1 "^publishing 'imu' at key" "$log" || rc=1
    # shellcheck disable=SC2086
    timeout --kill-after=10 "$WATCHDOG" $runner "$sub" --name imu --key "$key" --count 10000 --timeout 20 --wait 30 \
        >"$slog" 2>&1 &
    local s=$!
    PIDS+=("$s")
    lines_within 1 "^subscribed to 'imu'" "$slog" || rc=1
    old=$(shmid_at)
    if [[ $rc == 0 && -n $old ]]; then
        ipcrm -m "$old"
        lines_within 1 "again at key" "$log" || rc=1
        new=$(shmid_at)
        [[ -n $new && $new != "$old" ]] || { echo "  no new segment at $key (old shmid $old, now '$new')"; rc=1; }
    else
        rc=1
    fi
    if [[ $rc == 0 ]]; then
        ipcrm -S "$key"
        lines_within 2 "again at key" "$log" || rc=1
        ipcs -s | awk -v k="$key" '$1 == k {f = 1} END {exit !f}' || { echo "  no lock at $key again"; rc=1; }
        [[ $(shmid_at) == "$new" ]] || { echo "  the segment changed on a lock-only removal"; rc=1; }
    fi
    local src=0
    wait "$s" || src=$?
    [[ $src == 0 ]] || { echo "  the subscriber exited $src"; rc=1; }
    grep -q '^received 10000 frames' "$slog" || rc=1
    grep -q '^attached the topic again' "$slog" || { echo "  the subscriber did not attach the new segment"; rc=1; }
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    ipcrm -M "$key" 2>/dev/null || true
    ipcrm -S "$key" 2>/dev/null || true
    grep -e 'removed' -e 'again' "$log" | sed 's/^/  pub: /'
    grep -v '^frame ' "$slog" | sed 's/^/  sub: /'
    if [[ $rc == 0 ]]; then
        note "ok    $label"
    else
        note "FAIL  $label (exit $rc)"
        fails=$((fails + 1))
    fi
}

# examples LABEL RUNNER C_DIR RUST_DIR: the C examples with each other and
# with the Rust examples, both ways. Each subscriber expects the Imu type:
# a C/Rust schema fingerprint mismatch fails the open.
examples() {
    local label=$1 runner=$2 c=$3 rust=$4
    interop "$label: C publisher -> C subscriber" "$runner" 0x79000201 "$c/shmbus-c-publisher" "$c/shmbus-c-subscriber"
    interop "$label: C publisher -> Rust subscriber" "$runner" 0x79000202 "$c/shmbus-c-publisher" "$rust/imu-subscriber"
    interop "$label: Rust publisher -> C subscriber" "$runner" 0x79000203 "$rust/imu-publisher" "$c/shmbus-c-subscriber"
    removed "$label: C publisher and subscriber carry on when the topic is removed under them" "$runner" \
        0x79000204 "$c/shmbus-c-publisher" "$c/shmbus-c-subscriber"
    removed "$label: Rust publisher and subscriber carry on when the topic is removed under them" "$runner" \
        0x79000205 "$rust/imu-publisher" "$rust/imu-subscriber"
}

# python: the wheel, installed into a venv, tested against live Rust programs.
python_tests() {
    eval "$(ci/ffi-tools.sh)"
    local wheels=$OUT/wheels site
    rm -rf "$wheels"
    python3 python/build_wheel.py --lib "$OUT/host/lib/libshmbus.so.0.1.0" --version 0.1.0 \
        --plat "linux_$(uname -m)" --out "$wheels" >/dev/null
    "$FFI_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/shmbus-*.whl
    site=$("$FFI_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    ls -l "$wheels" | sed 's/^/  /'
    # From the tests' directory, so `import shmbus` is the installed wheel.
    # A test still running after 120 s gets every thread's stack printed
    # (faulthandler), before the watchdog ends the run: a hang then says
    # where it is, not only that the run timed out. The five slowest tests
    # are listed, to see one creep up. The suite is 79 tests (about 30 s
    # on a quiet machine), not one program: its watchdog is 900 s, so a
    # busy machine slows it without failing it.
    WATCHDOG=${SHMBUS_FFI_SUITE_WATCHDOG:-900} run "python: pytest (installed wheel) vs Rust publishers and subscribers" \
        env -C python/tests SHMBUS_EXAMPLES_DIR="$ROOT/target/release" SHMBUS_C_EXAMPLES_DIR="$OUT/host/bin" \
        SHMBUS_EXPECT_LIB_UNDER="$site" \
        "$FFI_VENV/bin/python" -m pytest -p no:cacheprovider -q -o faulthandler_timeout=120 --durations=5 .
    # The Python examples with the C ones, both ways, as the C and Rust
    # examples are checked above: their `#!/usr/bin/env python3` finds the
    # venv's python (the installed wheel) first on PATH.
    local py=python/examples c=$OUT/host/bin
    PATH=$FFI_VENV/bin:$PATH interop "python: Python publisher -> C subscriber" "" 0x79000206 \
        "$py/imu_publisher.py" "$c/shmbus-c-subscriber"
    PATH=$FFI_VENV/bin:$PATH interop "python: C publisher -> Python subscriber" "" 0x79000207 \
        "$c/shmbus-c-publisher" "$py/imu_subscriber.py"
    PATH=$FFI_VENV/bin:$PATH removed "python: Python publisher and C subscriber carry on when the topic is removed under them" "" \
        0x79000208 "$py/imu_publisher.py" "$c/shmbus-c-subscriber"
    PATH=$FFI_VENV/bin:$PATH removed "python: C publisher and Python subscriber carry on when the topic is removed under them" "" \
        0x79000209 "$c/shmbus-c-publisher" "$py/imu_subscriber.py"
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
    exports host nm "$OUT/host/lib/libshmbus.so"
    cargo build --release -p shmbus-examples
    cbuild cc "$OUT/host" "$OUT/host/bin"
    ctests host "" target/release "$OUT/host/bin"
    examples host "" "$OUT/host/bin" target/release
    python_tests
    echo "---- C API cost next to Rust (one run, one process)"
    cargo run --release -q -p shmbus-ffi --example ffi_bench | tee "$OUT/ffi_bench.txt"
fi

if [[ $what == all || $what == armv7 ]]; then
    # shellcheck source=ci/arm-env.sh
    source ci/arm-env.sh
    ci/ffi-install.sh "$OUT/armv7" armv7
    exports armv7 arm-linux-gnueabihf-nm "$OUT/armv7/lib/libshmbus.so"
    arm_cargo build --release -p shmbus-examples
    armdir=$(_shmbus_arm_target_base)/armv7/$SHMBUS_ARM_TARGET/release
    cbuild arm-linux-gnueabihf-gcc "$OUT/armv7" "$OUT/armv7/bin"
    file "$OUT/armv7/bin/test_api" | sed 's/^/  /'
    ctests armv7 "qemu-arm -L /usr/arm-linux-gnueabihf" "$armdir" "$OUT/armv7/bin"
    examples armv7 "qemu-arm -L /usr/arm-linux-gnueabihf" "$OUT/armv7/bin" "$armdir"
    # The board's wheel: the same module with the armv7 library inside.
    rm -rf "$OUT/wheels-armv7"
    whl=$(python3 python/build_wheel.py --lib "$OUT/armv7/lib/libshmbus.so.0.1.0" --version 0.1.0 \
        --plat linux_armv7l --out "$OUT/wheels-armv7")
    run "armv7: the wheel bundles an ARM libshmbus.so.0 and the module" bash -c "
        python3 -m zipfile -l '$whl' | grep -q 'shmbus/__init__.py' &&
        python3 -m zipfile -e '$whl' '$OUT/wheels-armv7/x' &&
        file -L '$OUT/wheels-armv7/x/shmbus/_lib/libshmbus.so.0' | grep -q 'ELF 32-bit LSB shared object, ARM'"
    ls -l "$OUT/wheels-armv7"/*.whl | sed 's/^/  /'
fi

echo
echo "ffi-test summary:"
printf '  %s\n' "${summary[@]}"
passed=$(printf '%s\n' "${summary[@]}" | grep -c '^ok' || true)
echo "ffi: $passed passed, $fails failed"
[[ $fails == 0 ]]
