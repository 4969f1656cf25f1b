#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../.."
CALLER_PWD=$OLDPWD # relative arguments are relative to where we were called from

# mkinitramfs.sh OUT.cpio.gz INIT_BINARY [EXTRA_BINARY...]
#
# Builds a gzipped newc cpio initramfs for ci/board/boot.sh:
#   /init            INIT_BINARY (a STATIC armv7 executable, e.g. from arm_cargo_static)
#   /bin/<name>      each EXTRA_BINARY (static armv7 too: there is no libc in the image)
#   /dev /proc /sys /tmp /run /etc /root, /home/{sensor,intruder}
#   /etc/passwd, /etc/group, /etc/nsswitch.conf with root 0, sensor 1000, intruder 1001,
#   nobody 65534
# No device nodes are created: the kernel's built-in initramfs already provides
# /dev/console, and /init must mount devtmpfs on /dev, proc on /proc and sysfs on /sys
# itself (devtmpfs.mount=1 only applies to a root fs on disk, not to an initramfs).

usage() { echo "usage: $0 OUT.cpio.gz INIT_BINARY [EXTRA_BINARY...]" >&2; exit 2; }
die() { echo "mkinitramfs: ERROR: $*" >&2; exit 1; }
[[ $# -ge 2 ]] || usage

abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$CALLER_PWD" "$1" ;; esac; }
OUT=$(abspath "$1")
INIT=$(abspath "$2")
shift 2
EXTRA=()
for b in "$@"; do EXTRA+=("$(abspath "$b")"); done

command -v cpio >/dev/null || die "cpio not installed (run ci/install-arm.sh)"
READELF=$(command -v arm-linux-gnueabihf-readelf || command -v readelf || true)
[[ -n "$READELF" ]] || die "no readelf (run ci/install-arm.sh)"

# Refuse anything that cannot run as a bare /init: not ARM, or dynamically linked.
check_static_arm() {
    [[ -f "$1" ]] || die "$1: no such file"
    local hdr
    hdr=$("$READELF" -h "$1" 2>/dev/null) || die "$1: not an ELF file"
    grep -qE 'Machine:[[:space:]]+ARM$' <<<"$hdr" || die "$1: not a 32-bit ARM executable"
    if grep -q 'Requesting program interpreter' <<<"$("$READELF" -l "$1" 2>/dev/null)"; then
        die "$1: dynamically linked; build it with arm_cargo_static (+crt-static)"
    fi
}
check_static_arm "$INIT"
declare -A seen=()
for b in "${EXTRA[@]}"; do
    check_static_arm "$b"
    n=$(basename "$b")
    [[ -z "${seen[$n]:-}" ]] || die "two extra binaries named $n"
    seen[$n]=1
done

STAGE=$(mktemp -d /tmp/shmbus-initramfs.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT

mkdir -p "$STAGE"/{bin,dev,proc,sys,tmp,run,etc,root,home/sensor,home/intruder}
chmod 1777 "$STAGE/tmp"
chmod 0700 "$STAGE/root"
install -m 0755 "$INIT" "$STAGE/init"
for b in "${EXTRA[@]}"; do install -m 0755 "$b" "$STAGE/bin/$(basename "$b")"; done

cat >"$STAGE/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
sensor:x:1000:1000:shmbus sensor (writer):/home/sensor:/bin/sh
intruder:x:1001:1001:shmbus intruder (unprivileged):/home/intruder:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$STAGE/etc/group" <<'EOF'
root:x:0:
sensor:x:1000:
intruder:x:1001:
nogroup:x:65534:
EOF
cat >"$STAGE/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
EOF
chmod 0644 "$STAGE"/etc/{passwd,group,nsswitch.conf}

# Deterministic archive: sorted names, fixed mtime, everything owned by root.
find "$STAGE" -exec touch -h -d @0 {} +
mkdir -p "$(dirname "$OUT")"
(cd "$STAGE" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z \
    | cpio --null -o -H newc -R 0:0 --quiet) | gzip -9 -n >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"

echo "mkinitramfs: $OUT ($(stat -c %s "$OUT") bytes): /init=$(basename "$INIT")${EXTRA:+ /bin: $(for b in "${EXTRA[@]}"; do printf '%s ' "$(basename "$b")"; done)}"
