#!/usr/bin/env bash
# ci/ffi-install.sh PREFIX [host|armv7] — build libshmbus (profile release)
# and install it the way cargo-c lays out a C library:
#   PREFIX/lib/libshmbus.so.0.1.0 (stripped), libshmbus.so.0 -> it, libshmbus.so -> it
#   PREFIX/lib/libshmbus.a
#   PREFIX/include/shmbus/shmbus.h
#   PREFIX/lib/pkgconfig/shmbus.pc   (Cflags -I${includedir}/shmbus, Libs -lshmbus,
#                                     Libs.private: what the static library needs)
# Then `PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cc app.c $(pkg-config --cflags --libs shmbus)`.
# `armv7` cross-builds with Debian's rustc 1.85 (ci/install-arm.sh, ci/arm-env.sh).
#
# Profile release keeps panic = "unwind", so the library's catch_unwind at
# every export turns a bug's panic into SHMBUS_ERR_INTERNAL. The `board`
# profile's panic = "abort" is for executables; a C library built with it
# would abort the calling C process instead: this script never does that.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${1:?usage: ci/ffi-install.sh PREFIX [host|armv7]}
target=${2:-host}
# Every argument is checked before anything is made: a bad one leaves no
# PREFIX directory behind.
case $target in
host | armv7) ;;
*)
    echo "ffi-install: unknown target '$target' (host or armv7)" >&2
    exit 2
    ;;
esac
[[ $# -le 2 ]] || { echo "ffi-install: too many arguments (usage: ci/ffi-install.sh PREFIX [host|armv7])" >&2; exit 2; }
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
case $target in
host)
    cargo rustc --release -p shmbus-ffi --lib -- --print native-static-libs 2>"$log" || { cat "$log" >&2; exit 1; }
    out=target/release
    strip=strip
    ;;
armv7)
    # shellcheck source=ci/arm-env.sh
    source ci/arm-env.sh
    arm_cargo rustc --release -p shmbus-ffi --lib -- --print native-static-libs 2>"$log" || { cat "$log" >&2; exit 1; }
    out=$(_shmbus_arm_target_base)/armv7/$SHMBUS_ARM_TARGET/release
    strip=arm-linux-gnueabihf-strip
    ;;
esac
private=$(sed -n 's/.*native-static-libs: //p' "$log" | tail -1)

install -d "$prefix/lib/pkgconfig" "$prefix/include/shmbus"
install -m 0755 "$out/libshmbus.so" "$prefix/lib/libshmbus.so.$version"
# The symbol table only (the release profile has no debug info); the
# dynamic symbols C programs link against stay.
"$strip" --strip-unneeded "$prefix/lib/libshmbus.so.$version"
ln -sfn "libshmbus.so.$version" "$prefix/lib/libshmbus.so.$major"
ln -sfn "libshmbus.so.$major" "$prefix/lib/libshmbus.so"
install -m 0644 "$out/libshmbus.a" "$prefix/lib/libshmbus.a"
install -m 0644 crates/shmbus-ffi/include/shmbus.h "$prefix/include/shmbus/shmbus.h"
cat >"$prefix/lib/pkgconfig/shmbus.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: shmbus
Description: shmbus telemetry bus over System V shared memory (C API)
Version: $version
Libs: -L\${libdir} -lshmbus
Libs.private: $private
Cflags: -I\${includedir}/shmbus
PC
echo "ffi-install: libshmbus $version ($target) installed in $prefix"
ls -l "$prefix/lib" | sed 's/^/  /'
