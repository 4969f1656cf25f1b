#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../.."
CALLER_PWD=$OLDPWD # relative arguments are relative to where we were called from

# boot.sh INITRAMFS [TIMEOUT_SECONDS] [EXTRA_KERNEL_ARGS...]
#
# Boots Debian's armmp kernel (cached by ci/install-arm.sh) on QEMU's emulated NXP
# i.MX6UL EVK (one Cortex-A7, 256 MiB) with the i.MX6ULL EVK device tree and INITRAMFS
# (from ci/board/mkinitramfs.sh). The whole console goes to a log file; guest lines that
# start with "SHMBUS-BOARD:" are echoed to stdout as they arrive.
#
# Verdict, from the console only (QEMU exits 0 even when the guest panics):
#   PASS  iff the exact line "SHMBUS-BOARD: PASS" appears, no line starts with
#         "SHMBUS-BOARD: FAIL", the kernel did not panic, and QEMU exited (guest powered
#         off) before TIMEOUT_SECONDS (default 600, as ci/test.sh gives: the board's 13
#         scenarios took 51 s from boot to power-off on the CI machine, 2026-12-05, and
#         a loaded machine emulates several times slower).
#   exit 0 on PASS, 1 otherwise (with the tail of the log), 2 on usage errors.
#
# EXTRA_KERNEL_ARGS are appended to the kernel command line; /init can read them from
# /proc/cmdline (and the kernel passes unknown `name=value` args without a dot to /init's
# environment). Env: SHMBUS_CI_CACHE (default /var/cache/shmbus-ci), SHMBUS_BOARD_LOG
# (log file path; default a new /tmp/shmbus-board.*.log).

usage() { echo "usage: $0 INITRAMFS [TIMEOUT_SECONDS] [EXTRA_KERNEL_ARGS...]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
case "$1" in /*) INITRD=$1 ;; *) INITRD=$CALLER_PWD/$1 ;; esac
TIMEOUT=${2:-600}
shift $(($# >= 2 ? 2 : 1))
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || usage
[[ -f "$INITRD" ]] || { echo "boot: $INITRD: no such file" >&2; exit 2; }

KDIR="${SHMBUS_CI_CACHE:-/var/cache/shmbus-ci}/kernel"
KERNEL=$KDIR/vmlinuz
DTB=$KDIR/imx6ull-14x14-evk.dtb
for f in "$KERNEL" "$DTB"; do
    [[ -s "$f" ]] || { echo "boot: $f missing: run ci/install-arm.sh" >&2; exit 2; }
done
command -v qemu-system-arm >/dev/null || { echo "boot: qemu-system-arm missing: run ci/install-arm.sh" >&2; exit 2; }

LOG=${SHMBUS_BOARD_LOG:-$(mktemp /tmp/shmbus-board.XXXXXX.log)}
: >"$LOG"
APPEND="console=ttymxc0,115200 panic=-1 quiet${*:+ $*}"

echo "boot: $(basename "$INITRD") on mcimx6ul-evk, timeout ${TIMEOUT}s, log $LOG"
echo "boot: kernel $(cat "$KDIR/PACKAGE" 2>/dev/null || echo "$KERNEL"), cmdline: $APPEND"

t0=$(date +%s.%N)
# stdin from /dev/null: QEMU must not grab or reconfigure the CI's terminal.
# -k: SIGKILL a QEMU that ignores SIGTERM.
set +e
timeout -k 5 "$TIMEOUT" qemu-system-arm -M mcimx6ul-evk -m 256 \
    -dtb "$DTB" -kernel "$KERNEL" -initrd "$INITRD" \
    -append "$APPEND" -nographic -no-reboot </dev/null 2>&1 |
    while IFS= read -r line || [[ -n "$line" ]]; do
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$LOG"
        if [[ "$line" == SHMBUS-BOARD:* ]]; then printf '%s\n' "$line"; fi
    done
rcs=("${PIPESTATUS[@]}")
set -e
qemu_rc=${rcs[0]}
elapsed=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

verdict=PASS
reason=
if grep -q '^SHMBUS-BOARD: FAIL' "$LOG"; then
    verdict=FAIL reason="guest reported FAIL"
elif grep -q 'Kernel panic - not syncing' "$LOG"; then
    verdict=FAIL reason="kernel panic: $(grep -m1 -o 'Kernel panic - not syncing.*' "$LOG")"
elif [[ "$qemu_rc" -eq 124 || "$qemu_rc" -eq 137 ]]; then
    verdict=FAIL reason="timeout after ${TIMEOUT}s (guest did not power off)"
elif ! grep -qx 'SHMBUS-BOARD: PASS' "$LOG"; then
    verdict=FAIL reason="no 'SHMBUS-BOARD: PASS' line on the console (qemu exit code $qemu_rc)"
fi

if [[ "$verdict" == PASS ]]; then
    echo "boot: PASS in ${elapsed}s (boot to power-off); log $LOG"
    exit 0
fi
echo "boot: FAIL: $reason (${elapsed}s); last console lines of $LOG:" >&2
tail -n 40 "$LOG" | sed 's/^/  | /' >&2
exit 1
