#!/usr/bin/env bash
# ci/bridge-test.sh — the MQTT bridge (shmbus-bridge) against a real broker.
#
# Root on Debian 12 (CI runs it as the `bridge` stage of ci/test.sh):
#   1. installs Debian's mosquitto and mosquitto-clients (idempotent);
#   2. builds the bridge, its broker tests and the probe (release), and
#      runs clippy on the feature-gated test code;
#   3. the broker tests (crates/shmbus-bridge/tests/broker): two boards as
#      private IPC namespaces through one Mosquitto (10,000 frames), broker
#      killed and restarted mid-stream, wrong password, TLS failures and
#      mutual TLS, a topic removed and recreated, malformed inbound
#      payloads, a live local publisher, and mosquitto_sub checking the
#      retained schema, latest value, status and last will after kill -9;
#   4. the armv7 bridge (the static `board` build that goes on the board)
#      under qemu-arm against the same kind of broker: the two-board and
#      last-will tests, its CPU per 1,000 frames/s and its memory while the
#      broker is away;
#   5. figures on x86: CPU per 1,000 frames/s, memory while the broker is
#      away, and a fleet of SHMBUS_FLEET_BOARDS (50) boards into one broker.
# Every broker runs on a free port of 127.0.0.1 with a config of the test's
# own and is killed by the test harness when the test ends; boards are
# private IPC namespaces, so nothing is left in the host's System V tables.
#
# Env: SHMBUS_FLEET_BOARDS (50), SHMBUS_FLEET_SECONDS (30), SHMBUS_BRIDGE_FRAMES (10000).
set -euo pipefail
cd "$(dirname "$0")/.."

t() { date +%s; }
T0=$(t)
# The lines of a test run worth seeing (regex $1), plus, after a panic, the
# assertion's message and the values behind it (the next 20 lines): a
# failure in CI must say why without the full log.
show() { awk -v pat="$1" '/panicked/ { n = 21 } n > 0 { print; n--; next } $0 ~ pat { print }'; }
[[ $(id -u) == 0 ]] || { echo "bridge-test: needs root (unshare --ipc, apt-get)" >&2; exit 2; }

if ! command -v mosquitto >/dev/null || ! command -v mosquitto_sub >/dev/null || ! command -v mosquitto_passwd >/dev/null; then
    echo "bridge-test: installing mosquitto and mosquitto-clients"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q mosquitto mosquitto-clients >/dev/null ||
        { apt-get update -q >/dev/null || true; apt-get install -y -q mosquitto mosquitto-clients >/dev/null; }
fi
for c in mosquitto mosquitto_sub mosquitto_pub mosquitto_passwd openssl unshare nsenter; do
    command -v "$c" >/dev/null || { echo "bridge-test: $c is missing" >&2; exit 2; }
done
echo "bridge-test: $(mosquitto -h 2>/dev/null | head -1)"

FEAT=(-p shmbus-bridge --features broker-tests)
echo "bridge-test: clippy of the broker tests and the probe (feature broker-tests, not in the host stage)"
cargo clippy "${FEAT[@]}" --all-targets -- -D warnings
echo "bridge-test: build (release)"
cargo test --release "${FEAT[@]}" --no-run
T_BUILD=$(($(t) - T0))

echo
echo "==== broker tests (x86_64 bridge)"
cargo test --release "${FEAT[@]}" --test broker -- --nocapture 2>&1 | grep -v 'retrying in' | tee target/bridge-broker.log | show '^(test |test result|two boards:|broker restart:|status sequence)'
T_BROKER=$(($(t) - T0))

echo
echo "==== the armv7 bridge under qemu-arm"
source ci/arm-env.sh
ci/install-arm.sh >/dev/null # idempotent: 0.2 s when installed
# The board's binary (the board-build stage has usually built it already:
# then this is a no-op).
arm_cargo_static build --profile board -p shmbus-bridge --bin shmbus-bridge
ARM_BIN=target/armv7-static/$SHMBUS_ARM_TARGET/board/shmbus-bridge
arm-linux-gnueabihf-strip -o target/shmbus-bridge.armv7 "$ARM_BIN"
echo "bridge-test: armv7 shmbus-bridge (static, profile board, stripped): $(stat -c %s target/shmbus-bridge.armv7) bytes"
ARM="qemu-arm $PWD/target/shmbus-bridge.armv7"
SHMBUS_BRIDGE_UNDER_TEST=$ARM SHMBUS_BRIDGE_FRAMES=${SHMBUS_BRIDGE_ARM_FRAMES:-5000} \
    cargo test --release "${FEAT[@]}" --test broker -- --nocapture --test-threads=1 \
    two_boards liveness::retained_schema 2>&1 | grep -v 'retrying in' | tee target/bridge-arm.log |
    show '^(test |test result|two boards:)'
SHMBUS_BRIDGE_UNDER_TEST=$ARM cargo test --release "${FEAT[@]}" --test fleet -- --nocapture --test-threads=1 \
    bridge_cpu memory_while 2>&1 | tee -a target/bridge-arm.log | show '^(test |test result|CPU|AWAY)'
T_ARM=$(($(t) - T0))

echo
echo "==== figures (x86_64): CPU, memory, fleet of ${SHMBUS_FLEET_BOARDS:-50} boards"
cargo test --release "${FEAT[@]}" --test fleet -- --nocapture --test-threads=1 2>&1 |
    tee target/bridge-fleet.log | show '^(test |test result|CPU|AWAY|FLEET)'
T_END=$(($(t) - T0))
echo
echo "bridge-test: build ${T_BUILD} s, broker tests $((T_BROKER - T_BUILD)) s, armv7 $((T_ARM - T_BROKER)) s, figures $((T_END - T_ARM)) s; total ${T_END} s"
