#!/usr/bin/env bash
# shellcheck disable=SC2012 # ls | head on file names we control (Debian packages)
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs everything the ARMv7 CI needs on a Debian 12 (bookworm) machine, as root:
#   1. armhf multiarch + cross linker/libc + qemu-user + qemu-system-arm + cpio/gzip
#      + gdb (ci/tools/bounded-run's backtraces of a hung test binary under qemu-arm)
#   2. Debian's rustc-web (/usr/bin/rustc) with the armv7 standard library copied from
#      libstd-rust-web-dev:armhf of the SAME version (see ci/README.md for why)
#   3. Debian's armmp kernel + the i.MX6ULL EVK device tree, for ci/board/boot.sh
# With --arm64 (the Debian packages of ci/deb.sh), also:
#   4. arm64 multiarch + aarch64 cross linker/libc, and the aarch64 standard library
#      copied from libstd-rust-web-dev:arm64 of the same version as rustc-web
#      (the version chosen in step 2 must then exist for arm64 too)
# Idempotent: every step checks first and is skipped when already done.
# Only Debian package mirrors are used. See /work/shared/notes/arm-toolchain.md.

ARM64=0
for a in "$@"; do
    case $a in
    --arm64) ARM64=1 ;;
    -h | --help)
        echo "usage: ci/install-arm.sh [--arm64]   (root; armhf always, arm64 with --arm64)"
        exit 0
        ;;
    *)
        echo "ci/install-arm.sh: unknown argument '$a' (known: --arm64)" >&2
        exit 2
        ;;
    esac
done

CACHE="${SHMBUS_CI_CACHE:-/var/cache/shmbus-ci}"
TARGET=armv7-unknown-linux-gnueabihf
RUSTLIB=/usr/lib/rustlib
export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=600)

# With them, for the packages' test (ci/deb-test.sh, whichever architectures are
# built): dpkg-dev (dpkg-shlibdeps cross-checks the computed Depends), pkg-config
# (libshmbus-dev's shmbus.pc), python3 (python3-shmbus). gdb: ci/tools/bounded-run
# dumps a test binary that hangs (qemu-arm's threads) with it before stopping it.
APT_PACKAGES=(
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross binutils-arm-linux-gnueabihf
    qemu-user qemu-system-arm cpio gzip procps gdb
    dpkg-dev pkg-config python3
)
APT_PACKAGES_ARM64=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu)
TARGET64=aarch64-unknown-linux-gnu
FOREIGN_ARCHES=(armhf)
if [ "$ARM64" -eq 1 ]; then
    APT_PACKAGES+=("${APT_PACKAGES_ARM64[@]}")
    FOREIGN_ARCHES+=(arm64)
fi

log() { printf '[install-arm] %s\n' "$*"; }
die() { printf '[install-arm] ERROR: %s\n' "$*" >&2; exit 1; }
# Scratch directories (a .deb unpacked): removed however the script ends, a
# failed `dpkg -x` or `cp` under `set -e` included.
SCRATCH=()
scratch() { # scratch NAME: a new directory under /tmp, in $x
    x=$(mktemp -d "/tmp/$1.XXXXXX")
    SCRATCH+=("$x")
}
trap 'rm -rf "${SCRATCH[@]}"' EXIT
now() { date +%s.%N; }

T_START=$(now)
SUMMARY=()
STEP_T0=
step_begin() { STEP_T0=$(now); log "== $1"; }
step_end() { # step_end NAME RESULT
    local dt
    dt=$(awk -v a="$STEP_T0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    SUMMARY+=("$(printf '%-13s %7ss  %s' "$1" "$dt" "$2")")
    log "   $1: $2 (${dt}s)"
}

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, dpkg, /usr/lib/rustlib)"
command -v apt-get >/dev/null || die "needs a Debian-family system with apt-get"

mkdir -p "$CACHE/debs" "$CACHE/kernel"
# Let apt-get download run sandboxed as _apt (avoids the "unsandboxed as root" warning).
if id _apt >/dev/null 2>&1; then chown _apt:root "$CACHE/debs"; fi

# --- apt index: refreshed at most once per run, and only if some step needs it -------
APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" -eq 1 ] && return 0
    APT_UPDATED=1
    local arch
    for arch in "${FOREIGN_ARCHES[@]}"; do
        if ! grep -qx "$arch" <<<"$(dpkg --print-foreign-architectures)"; then
            log "dpkg --add-architecture $arch"
            dpkg --add-architecture "$arch"
        fi
    done
    log "apt-get update (a failing foreign index, e.g. bookworm-security 'File has unexpected size', is tolerated)"
    if ! apt-get -q -o DPkg::Lock::Timeout=600 update; then
        log "WARNING: apt-get update reported errors; continuing, needed packages are verified below"
    fi
}

# Does apt know a candidate for this package (possibly arch-qualified)?
resolvable() {
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }')
    [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

is_installed() { # is_installed PKG[:ARCH] [VERSION]
    local st
    st=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$1" 2>/dev/null) || return 1
    [ "${st%% *}" = installed ] || return 1
    [ -z "${2:-}" ] || [ "${st#* }" = "$2" ]
}

# =====================================================================================
# 1. Debian packages: cross gcc/libc, binutils, qemu-user, qemu-system-arm, cpio, gzip
# =====================================================================================
step_begin "apt packages: ${APT_PACKAGES[*]}"
missing=()
for p in "${APT_PACKAGES[@]}"; do is_installed "$p" || missing+=("$p"); done
arch_missing=0
for arch in "${FOREIGN_ARCHES[@]}"; do
    grep -qx "$arch" <<<"$(dpkg --print-foreign-architectures)" || arch_missing=1
done
if [ "${#missing[@]}" -eq 0 ] && [ "$arch_missing" -eq 0 ]; then
    step_end apt-packages skipped
else
    apt_update
    for p in "${missing[@]}"; do
        resolvable "$p" || die "package '$p' is not available from the configured mirrors"
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        apt-get install "${APT_OPTS[@]}" "${missing[@]}"
    fi
    step_end apt-packages installed
fi
for c in arm-linux-gnueabihf-gcc arm-linux-gnueabihf-readelf qemu-arm qemu-system-arm cpio gzip gdb; do
    command -v "$c" >/dev/null || die "'$c' missing after installing packages"
done
[ -d /usr/arm-linux-gnueabihf/lib ] || die "/usr/arm-linux-gnueabihf/lib missing (libc6-dev-armhf-cross)"
if [ "$ARM64" -eq 1 ]; then
    for c in aarch64-linux-gnu-gcc aarch64-linux-gnu-readelf qemu-aarch64; do
        command -v "$c" >/dev/null || die "'$c' missing after installing packages"
    done
    [ -d /usr/aarch64-linux-gnu/lib ] || die "/usr/aarch64-linux-gnu/lib missing (libc6-dev-arm64-cross)"
fi

# =====================================================================================
# 2. Debian rustc-web (amd64) + its armv7 std, same version
# =====================================================================================
# The stamp records which Debian version the armv7 std was copied from; the compiler
# and the std must match exactly (otherwise rustc fails with E0514/E0460).
#
# Which version: the workspace's `rust-version` (the floor every armv7 crate must
# compile with, ci/README.md) when Debian still offers it, else the newest. Debian's
# security archive moves rustc-web forward (1.96 joined 1.85 in 2026), and taking the
# newest would leave the declared floor compiled nowhere. SHMBUS_ARM_RUST=newest takes
# the newest on purpose.
RUST_STAMP="$RUSTLIB/$TARGET/.shmbus-ci-version"
FLOOR=$(awk -F'"' '/^rust-version *= *"[0-9]+\.[0-9]+"/ { print $2; exit }' Cargo.toml)
[ -n "$FLOOR" ] || die "no rust-version = \"X.Y\" in Cargo.toml"
PREFER=${SHMBUS_ARM_RUST:-floor}
case $PREFER in
floor | newest) ;;
*) die "SHMBUS_ARM_RUST='$PREFER' (known: floor, newest)" ;;
esac
xy_of() { sed -E 's/^([0-9]+:)?([0-9]+\.[0-9]+)\..*/\2/' <<<"$1"; }
rust_ok() {
    /usr/bin/rustc --version >/dev/null 2>&1 || return 1
    compgen -G "$RUSTLIB/$TARGET/lib/libstd-*.rlib" >/dev/null || return 1
    [ -f "$RUST_STAMP" ] || return 1
    # A std of another version than the one preferred is chosen again (the choice
    # below falls back to it if the preferred one is not offered).
    if [ "$PREFER" = floor ] && [ "$(xy_of "$(cat "$RUST_STAMP")")" != "$FLOOR" ]; then
        return 1
    fi
    is_installed rustc-web "$(cat "$RUST_STAMP")"
}

step_begin "Debian rustc-web + armv7 std"
if rust_ok; then
    log "   /usr/bin/rustc: $(/usr/bin/rustc --version), armv7 std from $(cat "$RUST_STAMP")"
    step_end rust skipped
else
    apt_update
    # Versions of the armhf std, newest first, that amd64 also offers for the compiler,
    # its std and the versioned std package.
    armhf_versions=$(apt-cache madison libstd-rust-web-dev:armhf | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | awk '!seen[$0]++')
    [ -n "$armhf_versions" ] || die "apt-cache madison libstd-rust-web-dev:armhf lists nothing (armhf index missing?)"
    log "   libstd-rust-web-dev:armhf versions: $(tr '\n' ' ' <<<"$armhf_versions")"
    if [ "$PREFER" = floor ]; then
        # The floor's versions first (newest first among them), then the rest.
        armhf_versions=$(
            for v in $armhf_versions; do [ "$(xy_of "$v")" = "$FLOOR" ] && echo "$v"; done
            for v in $armhf_versions; do [ "$(xy_of "$v")" = "$FLOOR" ] || echo "$v"; done
        )
        log "   preferring the workspace's rust-version $FLOOR (SHMBUS_ARM_RUST=newest for the newest)"
    fi
    V=
    for v in $armhf_versions; do
        xy=$(xy_of "$v")
        ok=1
        for p in rustc-web libstd-rust-web-dev "libstd-rust-web-$xy"; do
            apt-cache madison "$p:amd64" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | grep -qxF "$v" || { ok=0; break; }
        done
        if [ "$ok" -eq 1 ] && [ "$ARM64" -eq 1 ]; then
            apt-cache madison libstd-rust-web-dev:arm64 | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | grep -qxF "$v" || ok=0
        fi
        if [ "$ok" -eq 1 ]; then V=$v; XY=$xy; break; fi
        log "   $v: not available for amd64$([ "$ARM64" -eq 1 ] && echo ' or arm64'), skipping"
    done
    [ -n "$V" ] || die "no libstd-rust-web-dev:armhf version is also available for amd64 rustc-web$([ "$ARM64" -eq 1 ] && echo ' and libstd-rust-web-dev:arm64')"
    log "   chosen version V=$V (libstd-rust-web-$XY)"
    if [ "$PREFER" = floor ] && [ "$XY" != "$FLOOR" ]; then
        log "   WARNING: Debian no longer offers Rust $FLOOR (the workspace's rust-version);"
        log "   building with $XY, so the declared floor is not compiled by this run"
    fi

    pkgs=(rustc-web="$V" libstd-rust-web-dev="$V" "libstd-rust-web-$XY=$V")
    if is_installed rustc-web "$V" && is_installed libstd-rust-web-dev "$V"; then
        log "   rustc-web $V already installed"
    else
        log "   apt-get install ${pkgs[*]}"
        apt-get install "${APT_OPTS[@]}" --allow-downgrades "${pkgs[@]}"
    fi
    /usr/bin/rustc --version >/dev/null || die "/usr/bin/rustc does not run"
    sysroot=$(/usr/bin/rustc --print sysroot)
    [ "$sysroot/lib/rustlib" = "$RUSTLIB" ] || die "unexpected /usr/bin/rustc sysroot '$sysroot' (expected /usr)"

    # Never apt-get install the armhf std (drags in libllvm:armhf, multiarch skew): fetch
    # the .deb and extract only the target's rustlib directory.
    deb="$CACHE/debs/libstd-rust-web-dev_${V//:/%3a}_armhf.deb"
    if [ ! -s "$deb" ]; then
        log "   apt-get download libstd-rust-web-dev:armhf=$V -> $CACHE/debs"
        rm -f "$CACHE"/debs/libstd-rust-web-dev_*_armhf.deb
        (cd "$CACHE/debs" && apt-get download -q "libstd-rust-web-dev:armhf=$V")
    fi
    [ -s "$deb" ] || die "download did not produce $deb"
    scratch shmbus-ci-rustlib
    dpkg -x "$deb" "$x"
    [ -d "$x/usr/lib/rustlib/$TARGET/lib" ] || { rm -rf "$x"; die "$deb has no usr/lib/rustlib/$TARGET"; }
    rm -rf "${RUSTLIB:?}/$TARGET"
    mkdir -p "$RUSTLIB"
    cp -a "$x/usr/lib/rustlib/$TARGET" "$RUSTLIB/"
    rm -rf "$x"
    printf '%s\n' "$V" >"$RUST_STAMP"
    rust_ok || die "armv7 std install did not verify"
    log "   /usr/bin/rustc: $(/usr/bin/rustc --version); std in $RUSTLIB/$TARGET"
    step_end rust "installed $V"
fi

# =====================================================================================
# 3. Debian armmp kernel + i.MX6ULL EVK dtb for qemu-system-arm -M mcimx6ul-evk
# =====================================================================================
KDIR="$CACHE/kernel"
step_begin "armmp kernel + imx6ull-14x14-evk.dtb -> $KDIR"
if [ -s "$KDIR/vmlinuz" ] && [ -s "$KDIR/imx6ull-14x14-evk.dtb" ]; then
    log "   present: $(cat "$KDIR/PACKAGE" 2>/dev/null || echo '?')"
    step_end kernel skipped
else
    apt_update
    kpkg=$(apt-cache depends linux-image-armmp:armhf 2>/dev/null \
        | sed -nE 's/^ *Depends: (linux-image-[0-9][^ :]*-armmp)(:armhf)?$/\1/p' | head -n1)
    [ -n "$kpkg" ] || die "could not resolve the kernel ABI from 'apt-cache depends linux-image-armmp:armhf'"
    log "   linux-image-armmp:armhf -> $kpkg"
    if ! ls "$CACHE/debs/${kpkg}_"*_armhf.deb >/dev/null 2>&1; then
        rm -f "$CACHE"/debs/linux-image-*-armmp_*_armhf.deb
        log "   apt-get download $kpkg:armhf -> $CACHE/debs"
        (cd "$CACHE/debs" && apt-get download -q "$kpkg:armhf")
    fi
    deb=$(ls "$CACHE/debs/${kpkg}_"*_armhf.deb | head -n1)
    scratch shmbus-ci-kernel
    dpkg -x "$deb" "$x"
    vmlinuz=$(ls "$x"/boot/vmlinuz-* | head -n1)
    dtb=$(ls "$x"/usr/lib/linux-image-*/imx6ull-14x14-evk.dtb | head -n1)
    if [ ! -s "$vmlinuz" ] || [ ! -s "$dtb" ]; then rm -rf "$x"; die "vmlinuz or imx6ull-14x14-evk.dtb missing in $deb"; fi
    install -m 0644 "$vmlinuz" "$KDIR/vmlinuz.tmp"
    install -m 0644 "$dtb" "$KDIR/imx6ull-14x14-evk.dtb.tmp"
    ul_dtb=$(ls "$x"/usr/lib/linux-image-*/imx6ul-14x14-evk.dtb 2>/dev/null | head -n1 || true)
    [ -z "$ul_dtb" ] || install -m 0644 "$ul_dtb" "$KDIR/imx6ul-14x14-evk.dtb"
    mv "$KDIR/imx6ull-14x14-evk.dtb.tmp" "$KDIR/imx6ull-14x14-evk.dtb"
    mv "$KDIR/vmlinuz.tmp" "$KDIR/vmlinuz"
    dpkg-deb -f "$deb" Package Version | tr '\n' ' ' >"$KDIR/PACKAGE"
    rm -rf "$x"
    log "   kernel: $(basename "$vmlinuz") from $(cat "$KDIR/PACKAGE")"
    step_end kernel "installed $kpkg"
fi

# =====================================================================================
# 4. (--arm64) the aarch64 std of the installed rustc-web's exact version
# =====================================================================================
RUST_STAMP64="$RUSTLIB/$TARGET64/.shmbus-ci-version"
rust64_ok() {
    compgen -G "$RUSTLIB/$TARGET64/lib/libstd-*.rlib" >/dev/null || return 1
    [ -f "$RUST_STAMP64" ] || return 1
    is_installed rustc-web "$(cat "$RUST_STAMP64")"
}
if [ "$ARM64" -eq 1 ]; then
    step_begin "aarch64 std for Debian rustc-web"
    if rust64_ok; then
        log "   aarch64 std from $(cat "$RUST_STAMP64")"
        step_end rust-arm64 skipped
    else
        # The compiler is already pinned (step 2): the arm64 std must be that version.
        V=$(cat "$RUST_STAMP")
        deb="$CACHE/debs/libstd-rust-web-dev_${V//:/%3a}_arm64.deb"
        if [ ! -s "$deb" ]; then
            apt_update
            apt-cache madison libstd-rust-web-dev:arm64 | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | grep -qxF "$V" ||
                die "libstd-rust-web-dev:arm64 has no version $V (the installed rustc-web); apt-cache madison libstd-rust-web-dev:arm64 lists what there is"
            log "   apt-get download libstd-rust-web-dev:arm64=$V -> $CACHE/debs"
            rm -f "$CACHE"/debs/libstd-rust-web-dev_*_arm64.deb
            (cd "$CACHE/debs" && apt-get download -q "libstd-rust-web-dev:arm64=$V")
        fi
        [ -s "$deb" ] || die "download did not produce $deb"
        scratch shmbus-ci-rustlib64
        dpkg -x "$deb" "$x"
        [ -d "$x/usr/lib/rustlib/$TARGET64/lib" ] || { rm -rf "$x"; die "$deb has no usr/lib/rustlib/$TARGET64"; }
        rm -rf "${RUSTLIB:?}/$TARGET64"
        cp -a "$x/usr/lib/rustlib/$TARGET64" "$RUSTLIB/"
        rm -rf "$x"
        printf '%s\n' "$V" >"$RUST_STAMP64"
        rust64_ok || die "aarch64 std install did not verify"
        step_end rust-arm64 "installed $V"
    fi
fi

total=$(awk -v a="$T_START" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
log "== summary"
for s in "${SUMMARY[@]}"; do log "   $s"; done
log "   $(printf '%-13s %7ss' total "$total")"
log "   cache: $CACHE   armv7 std: $RUSTLIB/$TARGET   rustc: $(/usr/bin/rustc --version)"
[ "$ARM64" -eq 0 ] || log "   aarch64 std: $RUSTLIB/$TARGET64"
