#!/usr/bin/env bash
# ci/deb.sh — build the Debian packages (shmbus_VERSION_ARCH.deb, and every other
# package packaging/debian/ declares) for amd64, armhf and arm64, with dpkg-deb.
#
#   ci/deb.sh [--arch amd64,armhf,arm64] [--out DIR] [--version V] [--profile P]
#
# 1. One cargo build per architecture (Debian's rustc 1.85, profile `board`, glibc
#    linked dynamically) of the crates listed in packaging/debian/build that exist.
# 2. For each packaging/debian/PKG/ with a control.in: a staging tree from PKG/install,
#    the maintainer scripts, conffiles (every file under etc/), md5sums, Depends from
#    the ELF files' needed libraries and symbol versions, Installed-Size.
# 3. dpkg-deb --root-owner-group -b into DIR (default target/deb), then a size table,
#    also written to DIR/SIZES.txt.
#
# Needs: dpkg-deb, readelf, and for armhf/arm64 the toolchain of
# `ci/install-arm.sh --arm64` (which also installs Debian's rustc-web used for amd64).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ARCHES=amd64,armhf,arm64
OUT=target/deb
PROFILE=${SHMBUS_DEB_PROFILE:-board}
VERSION=

die() { printf 'ci/deb.sh: %s\n' "$*" >&2; exit 1; }
log() { printf '[deb] %s\n' "$*"; }

while [[ $# -gt 0 ]]; do
    case $1 in
    --arch) ARCHES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --version) VERSION=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# The workspace version ([workspace.package] version = "X").
if [[ -z "$VERSION" ]]; then
    VERSION=$(awk '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 }
        p && $1 == "version" { gsub(/[" ]/, "", $3); print $3; exit }' Cargo.toml)
fi
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "bad version '$VERSION' (Debian versions start with a digit)"
HOMEPAGE=$(awk '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 }
    p && $1 == "repository" { gsub(/"/, "", $3); print $3; exit }' Cargo.toml)

for c in dpkg-deb readelf md5sum; do command -v "$c" >/dev/null || die "'$c' is missing (apt-get install dpkg binutils coreutils)"; done

triple() {
    case $1 in
    amd64) echo x86_64-unknown-linux-gnu ;;
    armhf) echo armv7-unknown-linux-gnueabihf ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    *) die "unknown architecture '$1' (known: amd64, armhf, arm64)" ;;
    esac
}
multiarch() {
    case $1 in amd64) echo x86_64-linux-gnu ;; armhf) echo arm-linux-gnueabihf ;; arm64) echo aarch64-linux-gnu ;; esac
}
# The ELF machine readelf must report for each architecture's files.
elf_machine() {
    case $1 in amd64) echo 'Advanced Micro Devices X86-64' ;; armhf) echo ARM ;; arm64) echo AArch64 ;; esac
}

# ---------------------------------------------------------------- what to build
# packaging/debian/build: "CRATE [FEATURE...]"; keep crates that exist and features
# they declare.
crate_features() { # crate_features CRATE: the names in its [features] table
    awk '/^\[features\]/ { p = 1; next } /^\[/ { p = 0 } p && /^[A-Za-z0-9_-]+ *=/ { sub(/ *=.*/, ""); print }' \
        "crates/$1/Cargo.toml"
}
CARGO_PKGS=() CARGO_FEATURES=()
while read -r crate feats; do
    [[ -z "$crate" || "$crate" == \#* ]] && continue
    if [[ ! -f "crates/$crate/Cargo.toml" ]]; then
        log "crate $crate: not in this tree, skipped"
        continue
    fi
    CARGO_PKGS+=(-p "$crate")
    have=$(crate_features "$crate")
    for f in $feats; do
        if grep -qx "$f" <<<"$have"; then CARGO_FEATURES+=("$crate/$f"); else log "crate $crate: no feature '$f' yet, skipped"; fi
    done
done <packaging/debian/build
[[ ${#CARGO_PKGS[@]} -gt 0 ]] || die "packaging/debian/build names no crate of this tree"

# shellcheck source=ci/arm-env.sh
source ci/arm-env.sh

# build ARCH DIR: build and copy the executables and libraries cargo reports into DIR.
build() {
    local arch=$1 dir=$2 t json
    t=$(triple "$arch")
    [[ -x /usr/bin/rustc ]] || die "no Debian rustc (/usr/bin/rustc): run sudo ci/install-arm.sh --arm64"
    compgen -G "/usr/lib/rustlib/$t/lib/libstd-*.rlib" >/dev/null ||
        die "no $t standard library for /usr/bin/rustc: run sudo ci/install-arm.sh --arm64"
    local -a args=(build --profile "$PROFILE" "${CARGO_PKGS[@]}" --message-format json-render-diagnostics)
    if [[ ${#CARGO_FEATURES[@]} -gt 0 ]]; then args+=(--features "$(IFS=,; echo "${CARGO_FEATURES[*]}")"); fi
    log "$arch: cargo ${args[*]} (target $t, rustc $(/usr/bin/rustc --version | cut -d' ' -f2))"
    json=$(mktemp)
    case $arch in
    amd64) RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="${SHMBUS_ARM_TARGET_DIR_BASE:-$ROOT/target}/x86_64" \
        cargo "${args[@]}" --target "$t" >"$json" ;;
    armhf) arm_cargo "${args[@]}" >"$json" ;;
    arm64) arm64_cargo "${args[@]}" >"$json" ;;
    esac
    rm -rf "$dir"
    mkdir -p "$dir/bin" "$dir/lib"
    # Executables: "executable":"/path"; libraries: .so/.a in "filenames" outside deps/.
    local f
    for f in $(grep -o '"executable":"[^"]*"' "$json" | cut -d'"' -f4 | sort -u); do
        cp -p "$f" "$dir/bin/"
    done
    for f in $(grep -o '"filenames":\[[^]]*\]' "$json" | grep -o '"[^"]*\.\(so\|a\)"' | tr -d '"' | sort -u); do
        [[ "$f" == */deps/* ]] || cp -p "$f" "$dir/lib/"
    done
    rm -f "$json"
    [[ -n "$(ls "$dir/bin")" ]] || die "$arch: the build produced no executable"
}

# ---------------------------------------------------------------- dependencies
# Depends from the ELF files of a staging tree: every needed library is mapped to its
# Debian package, with the newest symbol version the files use as the minimum (what
# dpkg-shlibdeps derives from libc6's symbols file). An unknown library is an error.
shlibs_depends() { # shlibs_depends STAGE ARCH
    local stage=$1 arch=$2 f glibc=0 gcc='' libs=() machine
    machine=$(elf_machine "$arch")
    while IFS= read -r -d '' f; do
        head -c4 "$f" | grep -q ELF || continue
        readelf -h "$f" | grep -q "Machine: *$machine\$" || die "$f is not an $arch ELF file ($(readelf -h "$f" | sed -n 's/ *Machine: *//p'))"
        while read -r lib; do libs+=("$lib"); done < <(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
        while read -r file ver; do
            case $file:$ver in
            *:GLIBC_PRIVATE) die "$f uses GLIBC_PRIVATE symbols" ;;
            libc.so.6:GLIBC_* | libm.so.6:GLIBC_* | libpthread.so.0:GLIBC_* | libdl.so.2:GLIBC_* | librt.so.1:GLIBC_* | ld-linux*:GLIBC_*)
                glibc=$(printf '%s\n%s\n' "$glibc" "${ver#GLIBC_}" | sort -V | tail -n1) ;;
            libgcc_s.so.1:GCC_*)
                gcc=$(printf '%s\n%s\n' "${gcc:-0}" "${ver#GCC_}" | sort -V | tail -n1) ;;
            esac
        done < <(readelf -V -W "$f" | awk '/File:/ { for (i = 1; i < NF; i++) if ($i == "File:") file = $(i + 1) }
            /Name:/ { for (i = 1; i < NF; i++) if ($i == "Name:") print file, $(i + 1) }')
    done < <(find "$stage" -path "$stage/DEBIAN" -prune -o -type f -print0)
    local deps=() l
    for l in $(printf '%s\n' "${libs[@]}" | sort -u); do
        case $l in
        libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux*) ;;
        libgcc_s.so.1) ;;
        *) [[ -n "$(find "$stage" -name "$l" -print -quit)" ]] ||
            die "$l (needed by a file of $(basename "$stage")) has no Debian package in ci/deb.sh's map: add it there" ;;
        esac
    done
    if printf '%s\n' "${libs[@]}" | grep -qE '^(libc\.so\.6|libm\.so\.6|libpthread|libdl|librt|ld-linux)'; then
        [[ "$glibc" != 0 ]] || glibc=2.4
        deps+=("libc6 (>= $glibc)")
    fi
    if printf '%s\n' "${libs[@]}" | grep -qx libgcc_s.so.1; then
        # libgcc-s1's symbols file names GCC_4.3.0 as 4.3, GCC_3.0 as 3.0.
        gcc=$(echo "${gcc:-3.0}" | cut -d. -f1-2)
        deps+=("libgcc-s1 (>= $gcc)")
    fi
    (IFS=,; echo "${deps[*]}" | sed 's/,/, /g')
}

# ---------------------------------------------------------------- staging
# stage_pkg PKGDIR ARCH ARTIFACTS STAGE: fill STAGE from PKGDIR/install. Returns 3 if
# a `needs PATH` line names something this tree does not have.
stage_pkg() {
    local pkgdir=$1 arch=$2 art=$3 stage=$4 src dest opt matches m
    rm -rf "$stage"
    mkdir -p "$stage/DEBIAN"
    while read -r src dest _; do
        [[ -z "$src" || "$src" == \#* ]] && continue
        if [[ "$src" == needs ]]; then
            [[ -e "$dest" ]] || { log "$(basename "$pkgdir"): needs $dest, not in this tree: skipped"; return 3; }
            continue
        fi
        opt=0
        if [[ "$src" == \?* ]]; then opt=1; src=${src#\?}; fi
        dest=${dest//@MULTIARCH@/$(multiarch "$arch")}
        case $src in
        bin:*) matches=$(compgen -G "$art/bin/${src#bin:}" || true) ;;
        lib:*) matches=$(compgen -G "$art/lib/${src#lib:}" || true) ;;
        *) matches=$(compgen -G "$src" || true) ;;
        esac
        if [[ -z "$matches" ]]; then
            [[ $opt == 1 ]] && continue
            die "$(basename "$pkgdir")/install: nothing matches '$src'"
        fi
        while read -r m; do
            local to=$stage/$dest
            if [[ "$dest" == */ ]]; then to=$stage/$dest$(basename "$m"); fi
            mkdir -p "$(dirname "$to")"
            if [[ -x "$m" && "$src" != *.service ]]; then install -m 0755 "$m" "$to"; else install -m 0644 "$m" "$to"; fi
            case $to in
            *.service)
                # The units of configs/systemd name /usr/local/bin (a hand install);
                # the package's binaries are in /usr/bin.
                sed -i 's#/usr/local/bin/#/usr/bin/#g' "$to"
                if grep -q '^ExecStart=' "$to" && ! grep -q '^ExecStart=/usr/bin/' "$to"; then
                    die "$to: ExecStart does not run a program of /usr/bin"
                fi
                ;;
            esac
        done <<<"$matches"
    done <"$pkgdir/install"
    local s
    for s in preinst postinst prerm postrm; do
        if [[ -f "$pkgdir/$s" ]]; then install -m 0755 "$pkgdir/$s" "$stage/DEBIAN/$s"; fi
    done
    if [[ -d "$stage/etc" ]]; then
        (cd "$stage" && find etc -type f | sort | sed 's#^#/#') >"$stage/DEBIAN/conffiles"
    fi
    # md5sums of everything but conffiles (dpkg keeps those in its status instead).
    (cd "$stage" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
        sed 's#^\./##' | LC_ALL=C sort | xargs -r md5sum) >"$stage/DEBIAN/md5sums"
    [[ -s "$stage/DEBIAN/md5sums" ]] || rm -f "$stage/DEBIAN/md5sums"
    return 0
}

# Installed-Size in KiB as dpkg-gencontrol counts it: each file rounded up to 1 KiB,
# plus 1 per directory and symlink.
installed_size() {
    (cd "$1" && find . -path ./DEBIAN -prune -o \( -type f -printf '%s\n' \) -o \( -type d -printf 'd\n' \) -o \( -type l -printf 'l\n' \)) |
        awk '$1 == "d" || $1 == "l" { n += 1; next } { n += int(($1 + 1023) / 1024) } END { print n }'
}

# ---------------------------------------------------------------- main
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$EPOCH
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$ROOT/target/deb-work
SIZES=()
built_all=()
IFS=, read -r -a arch_list <<<"$ARCHES"
for arch in "${arch_list[@]}"; do
    triple "$arch" >/dev/null
    art=$WORK/$arch/artifacts
    t0=$(date +%s)
    build "$arch" "$art"
    log "$arch: built in $(($(date +%s) - t0)) s: $(ls "$art/bin" | tr '\n' ' ')$(ls "$art/lib" | tr '\n' ' ')"
    for pkgdir in packaging/debian/*/; do
        pkgdir=${pkgdir%/}
        [[ -f "$pkgdir/control.in" ]] || continue
        pkg=$(basename "$pkgdir")
        pkg_arch=$(sed -n 's/^Architecture: *//p' "$pkgdir/control.in")
        [[ "$pkg_arch" == @ARCH@ ]] && pkg_arch=$arch
        if [[ "$pkg_arch" == all ]]; then
            # An Architecture: all package is built once, with the first architecture.
            [[ " ${built_all[*]} " == *" $pkg "* ]] && continue
        fi
        stage=$WORK/$arch/$pkg
        rc=0
        stage_pkg "$pkgdir" "$arch" "$art" "$stage" || rc=$?
        [[ $rc == 3 ]] && continue
        [[ $rc == 0 ]] || exit "$rc"
        [[ "$pkg_arch" == all ]] && built_all+=("$pkg")
        depends=$(shlibs_depends "$stage" "$arch")
        size=$(installed_size "$stage")
        sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$pkg_arch/" -e "s/@INSTALLED_SIZE@/$size/" \
            -e "s#@HOMEPAGE@#$HOMEPAGE#" -e "s/@SHLIBS_DEPENDS@/$depends/" \
            "$pkgdir/control.in" | sed -e 's/^Depends: , */Depends: /' -e '/^Depends: *$/d' >"$stage/DEBIAN/control"
        ! grep -n '@[A-Z_]*@' "$stage/DEBIAN/control" || die "$pkg: unreplaced placeholder in control"
        find "$stage" -exec touch -h -d "@$EPOCH" {} +
        deb=$OUT/${pkg}_${VERSION}_${pkg_arch}.deb
        dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
        SIZES+=("$(printf '%-34s %10d %14d' "$(basename "$deb")" "$(stat -c %s "$deb")" "$size")")
        log "$(basename "$deb"): $(stat -c %s "$deb") bytes, Installed-Size $size KiB, Depends: $(dpkg-deb -f "$deb" Depends)"
    done
done

{
    printf '%-34s %10s %14s\n' package bytes installed-KiB
    printf '%s\n' "${SIZES[@]}"
} | tee "$OUT/SIZES.txt"
