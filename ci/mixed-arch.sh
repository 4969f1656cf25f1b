#!/usr/bin/env bash
# ci/mixed-arch.sh — one segment, two architectures, one (host) kernel.
#
#   1. an x86_64 publisher with two armv7 subscribers (under qemu-arm);
#   2. an armv7 publisher (under qemu-arm) with two x86_64 subscribers.
#
# qemu-user hands shmget/shmat/futex to the host kernel, so a 32-bit ARM process
# and a 64-bit x86 process really share the segment and its futex word: this
# checks that the layout (offsets, sizes, alignment, endianness, atomics) is
# the same for both. Each side is `shmbus-board pub|sub` (the board runner's
# roles): the publisher sends N self-checking frames at a fixed rate; an
# in-order subscriber (wait_next) must account for all of them (delivered, or
# missed and counted, in order) and a latest-value one (wait_latest) must see the
# last one, none torn.
#
# Needs ci/install-arm.sh. Env: MIXED_FRAMES (default 300), MIXED_RATE (200 Hz).
# Builds what it needs (host debug and armv7 debug of shmbus-board).
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/arm-env.sh

FRAMES=${MIXED_FRAMES:-300}
RATE=${MIXED_RATE:-200}
QEMU=(qemu-arm -L /usr/arm-linux-gnueabihf)

# The examples' IMU pair, when the crate has them: a second, independent check.
PKGS=(-p shmbus-board)
EXAMPLES=0
if [[ -f crates/shmbus-examples/src/bin/imu-publisher.rs && -f crates/shmbus-examples/src/bin/imu-subscriber.rs ]]; then
    PKGS+=(-p shmbus-examples)
    EXAMPLES=1
fi
echo "mixed-arch: building ${PKGS[*]} for the host and for armv7"
cargo build -q "${PKGS[@]}" --bins
arm_cargo build -q "${PKGS[@]}" --bins
HOST_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug
ARM_DIR=$(_shmbus_arm_target_base)/armv7/$SHMBUS_ARM_TARGET/debug
HOST_BIN=$HOST_DIR/shmbus-board
ARM_BIN=$ARM_DIR/shmbus-board
[[ -x "$HOST_BIN" && -x "$ARM_BIN" ]] || { echo "mixed-arch: missing $HOST_BIN or $ARM_BIN" >&2; exit 1; }
file_of() { readelf -h "$1" | sed -n 's/.*Machine:[[:space:]]*//p'; }
echo "mixed-arch: host $(file_of "$HOST_BIN"), arm $(file_of "$ARM_BIN")"

# A key of our own (0x7c top byte; testkit uses 0x7e, the fuzz targets 0x7d), removed on any exit.
KEY=$(printf '0x7c%06x' $(( ($$ * 2654435761 + $(date +%s%N) / 1000) & 0xffffff )))
WORK=$(mktemp -d /tmp/shmbus-mixed.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ipcrm -M "$KEY" 2>/dev/null || true
    ipcrm -S "$KEY" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# 1024 slots: 5 s of slack at 200 Hz, so a subscriber under qemu-arm on a loaded
# machine does not fall a whole ring behind. If one still does, the frames it
# lost are reported as missed: delivered + missed must equal published.
TOPIC=(--key "$KEY" --name mixed/beat --mode 644 --lock try --slots 1024)

# field NAME FILE: the value of NAME=... on the RESULT line of FILE.
field() { sed -n "s/^RESULT.* $1=\([^ ]*\).*/\1/p; s/^RESULT $1=\([^ ]*\).*/\1/p" "$2" | head -1; }

# round LABEL PUB_ARCH SUB_ARCH
round() {
    local label=$1 pub_arch=$2 sub_arch=$3
    local -a pub_cmd sub_cmd
    if [[ $pub_arch == arm ]]; then pub_cmd=("${QEMU[@]}" "$ARM_BIN"); else pub_cmd=("$HOST_BIN"); fi
    if [[ $sub_arch == arm ]]; then sub_cmd=("${QEMU[@]}" "$ARM_BIN"); else sub_cmd=("$HOST_BIN"); fi
    ipcrm -M "$KEY" 2>/dev/null || true
    ipcrm -S "$KEY" 2>/dev/null || true
    PIDS=()
    timeout 120 "${pub_cmd[@]}" pub "${TOPIC[@]}" --rate "$RATE" --count "$FRAMES" --wait-subs 2 \
        --epoch 1 --linger-ms 500 >"$WORK/pub" 2>&1 &
    PIDS+=($!)
    local pub_pid=$!
    timeout 120 "${sub_cmd[@]}" sub "${TOPIC[@]}" --how next --timeout-ms 60000 >"$WORK/next" 2>&1 &
    PIDS+=($!)
    timeout 120 "${sub_cmd[@]}" sub "${TOPIC[@]}" --how latest --timeout-ms 60000 >"$WORK/latest" 2>&1 &
    PIDS+=($!)
    local rc=0 p
    for p in "${PIDS[@]}"; do wait "$p" || rc=$?; done
    PIDS=()
    local ok=1 why=()
    grep -q '^DONE' "$WORK/pub" || { ok=0; why+=("publisher: $(tail -n1 "$WORK/pub")"); }
    local s
    for s in next latest; do
        if ! grep -q '^RESULT' "$WORK/$s"; then
            ok=0; why+=("$s subscriber: $(tail -n1 "$WORK/$s")"); continue
        fi
        [[ $(field torn "$WORK/$s") == 0 && $(field corrupt "$WORK/$s") == 0 ]] || { ok=0; why+=("$s subscriber saw torn/corrupt frames"); }
        [[ $(field done "$WORK/$s") == true ]] || { ok=0; why+=("$s subscriber never saw the last frame"); }
        [[ $(field out_of_order "$WORK/$s") == 0 ]] || { ok=0; why+=("$s subscriber saw frames out of order"); }
    done
    if grep -q '^RESULT' "$WORK/next"; then
        local got lost
        got=$(field frames "$WORK/next") lost=$(field missed "$WORK/next")
        [[ $((got + lost)) == "$FRAMES" ]] || { ok=0; why+=("in-order subscriber: $got delivered + $lost missed != $FRAMES published"); }
        [[ $lost == 0 ]] || echo "mixed-arch: $label: note: the in-order subscriber fell a whole ring behind and missed $lost frames (counted exactly)"
    fi
    echo "mixed-arch: $label: publisher: $(grep -m1 '^OPEN' "$WORK/pub" | cut -c1-60)... $(grep -m1 '^DONE' "$WORK/pub" || true)"
    echo "mixed-arch: $label: wait_next   $(grep -m1 '^RESULT' "$WORK/next" || echo none)"
    echo "mixed-arch: $label: wait_latest $(grep -m1 '^RESULT' "$WORK/latest" || echo none)"
    if [[ $ok == 1 && $rc == 0 ]]; then
        echo "mixed-arch: $label ... ok"
        return 0
    fi
    echo "mixed-arch: $label ... FAIL (exit $rc): ${why[*]:-see above}" >&2
    return 1
}

# imu_round LABEL PUB_ARCH SUB_ARCH: the examples' imu-publisher (until killed,
# 100 Hz) and an imu-subscriber that must print IMU_FRAMES frames and exit 0.
IMU_FRAMES=${MIXED_IMU_FRAMES:-50}
imu_round() {
    local label=$1 pub_arch=$2 sub_arch=$3
    local -a pub_cmd sub_cmd
    if [[ $pub_arch == arm ]]; then pub_cmd=("${QEMU[@]}" "$ARM_DIR/imu-publisher"); else pub_cmd=("$HOST_DIR/imu-publisher"); fi
    if [[ $sub_arch == arm ]]; then sub_cmd=("${QEMU[@]}" "$ARM_DIR/imu-subscriber"); else sub_cmd=("$HOST_DIR/imu-subscriber"); fi
    ipcrm -M "$KEY" 2>/dev/null || true
    ipcrm -S "$KEY" 2>/dev/null || true
    timeout 120 "${sub_cmd[@]}" --key "$KEY" --name mixed/imu --count "$IMU_FRAMES" --mode next \
        --wait 30 --timeout 10 >"$WORK/imu-sub" 2>&1 &
    local sub_pid=$!
    PIDS=("$sub_pid")
    timeout 120 "${pub_cmd[@]}" --key "$KEY" --name mixed/imu --rate 100 --count 0 >"$WORK/imu-pub" 2>&1 &
    PIDS+=($!)
    local rc=0
    wait "$sub_pid" || rc=$?
    kill "${PIDS[1]}" 2>/dev/null || true
    wait "${PIDS[1]}" 2>/dev/null || true
    PIDS=()
    echo "mixed-arch: $label: $(tail -n1 "$WORK/imu-sub")"
    if [[ $rc == 0 ]] && grep -q "^received $IMU_FRAMES frames" "$WORK/imu-sub"; then
        echo "mixed-arch: $label ... ok"
        return 0
    fi
    echo "mixed-arch: $label ... FAIL (subscriber exit $rc); publisher said: $(tail -n2 "$WORK/imu-pub" | tr '\n' ' ')" >&2
    return 1
}

pass=0 fail=0
tally() { if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi; }
tally round "x86_64 publisher -> 2 armv7 subscribers" host arm
tally round "armv7 publisher -> 2 x86_64 subscribers" arm host
if [[ $EXAMPLES == 1 ]]; then
    tally imu_round "examples: x86_64 imu-publisher -> armv7 imu-subscriber" host arm
    tally imu_round "examples: armv7 imu-publisher -> x86_64 imu-subscriber" arm host
fi
echo "mixed-arch: $pass passed, $fail failed"
[[ $fail == 0 ]]
