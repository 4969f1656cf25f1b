#!/usr/bin/env bash
# ci/deb.sh — build the Debian packages (shmbus_VERSION_ARCH.deb, and every other
# package packaging/debian/ declares) for amd64, armhf and arm64, with dpkg-deb.
#
#   ci/deb.sh [--arch amd64,armhf,arm64] [--out DIR] [--version V]
#
# 1. Per architecture, cargo builds (Debian's rustc 1.85, glibc linked dynamically)
#    of the crates listed in packaging/debian/build that exist, each in its profile
#    (`board` for programs, `release` for the C library: see that file).
# 2. For each packaging/debian/PKG/ with a control.in: a staging tree from PKG/install,
#    the maintainer scripts and other DEBIAN files of PKG/, conffiles (every file under
#    etc/), md5sums, Depends from the ELF files' needed libraries and symbol versions,
#    Installed-Size. A package whose `needs` path is missing is skipped with a note.
# 3. dpkg-deb --root-owner-group -b into DIR (default target/deb), then a size table,
#    also written to DIR/SIZES.txt.
#
# Needs: dpkg-deb, readelf, and the toolchain of `sudo ci/install-arm.sh --arm64`
# (Debian's rustc-web with the x86_64, armv7 and aarch64 standard libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# The staging trees' directories are made with mkdir, under the caller's umask: with a
# Debian user's 002 the packages would create group-writable /etc/shmbus and module
# directories (lintian: non-standard-dir-perm), with 027 dpkg-deb refuses DEBIAN/.
umask 022

ARCHES=amd64,armhf,arm64
OUT=target/deb
VERSION=

die() { printf 'ci/deb.sh: %s\n' "$*" >&2; exit 1; }
log() { printf '[deb] %s\n' "$*"; }

while [[ $# -gt 0 ]]; do
    case $1 in
    --arch) ARCHES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --version) VERSION=$2; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

ws_field() { # ws_field NAME: a string of [workspace.package]
    awk -v k="$1" '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 }
        p && $1 == k { gsub(/"/, "", $3); print $3; exit }' Cargo.toml
}
CARGO_VERSION=$(ws_field version) # in file names (libshmbus.so.0.1.0)
VERSION=${VERSION:-$CARGO_VERSION} # the packages' Version
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "bad version '$VERSION' (Debian versions start with a digit)"
# The programs and the library report the Cargo version (`shmbus --version`,
# shmbus_version(), shmbus.pc): the package may add a Debian revision or a suffix
# (0.1.0-2, 0.1.0+git1, 0.1.0~rc1), never name another upstream version.
if [[ "$VERSION" != "$CARGO_VERSION" && ! "$VERSION" =~ ^${CARGO_VERSION//./\.}[-+~] ]]; then
    die "version '$VERSION' is not the workspace's $CARGO_VERSION (with a -REVISION, +SUFFIX or ~PRERELEASE at most): the programs would say $CARGO_VERSION; change [workspace.package] version in Cargo.toml instead"
fi
HOMEPAGE=$(ws_field repository)

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
elf_machine() { # what readelf -h says for each architecture
    case $1 in amd64) echo 'Advanced Micro Devices X86-64' ;; armhf) echo ARM ;; arm64) echo AArch64 ;; esac
}

# ---------------------------------------------------------------- what to build
# packaging/debian/build: "CRATE PROFILE [FEATURE...]": crates that exist, features
# they declare.
crate_features() { # the names in crates/CRATE/Cargo.toml's [features] table
    awk '/^\[features\]/ { p = 1; next } /^\[/ { p = 0 } p && /^[A-Za-z0-9_-]+ *=/ { sub(/ *=.*/, ""); print }' \
        "crates/$1/Cargo.toml"
}
is_staticlib() { grep -q '^crate-type *=.*"staticlib"' "crates/$1/Cargo.toml"; }
CRATES=() PROFILES=() FEATURES=()
while read -r crate profile feats; do
    [[ -z "$crate" || "$crate" == \#* ]] && continue
    [[ -n "$profile" ]] || die "packaging/debian/build: $crate has no profile"
    if [[ ! -f "crates/$crate/Cargo.toml" ]]; then
        log "crate $crate: not in this tree, skipped"
        continue
    fi
    have=$(crate_features "$crate") use=()
    for f in $feats; do
        if grep -qx "$f" <<<"$have"; then use+=("$crate/$f"); else log "crate $crate: no feature '$f' yet, skipped"; fi
    done
    CRATES+=("$crate") PROFILES+=("$profile") FEATURES+=("$(IFS=,; echo "${use[*]}")")
done <packaging/debian/build
[[ ${#CRATES[@]} -gt 0 ]] || die "packaging/debian/build names no crate of this tree"

# shellcheck source=ci/arm-env.sh
source ci/arm-env.sh

# The build machine's paths, which rustc writes into the programs (panic locations of
# the dependencies: $CARGO_HOME/registry/src/...; files generated under the target
# directory), replaced by fixed ones: the packages do not show where, or by whom, they
# were built, and two builds of one commit in two directories give the same programs.
# The last matching prefix wins, so the more specific ones come last. Passed as
# CARGO_ENCODED_RUSTFLAGS (a path may hold spaces), after the caller's RUSTFLAGS.
CARGO_HOME_DIR=$(cd "${CARGO_HOME:-$HOME/.cargo}" 2>/dev/null && pwd -P || echo "${CARGO_HOME:-$HOME/.cargo}")
TARGET_BASE=${SHMBUS_ARM_TARGET_DIR_BASE:-$ROOT/target}
REMAP=("--remap-path-prefix=$(cd "$ROOT" && pwd -P)=/usr/src/shmbus" "--remap-path-prefix=$ROOT=/usr/src/shmbus"
    "--remap-path-prefix=$TARGET_BASE=/usr/src/shmbus/target" "--remap-path-prefix=$CARGO_HOME_DIR=/usr/src/cargo")
[[ -z "${CARGO_ENCODED_RUSTFLAGS:-}" ]] || die "CARGO_ENCODED_RUSTFLAGS is set: it would replace the path remapping of the packages; use RUSTFLAGS"
ENCODED_RUSTFLAGS=$(
    read -r -a flags <<<"${RUSTFLAGS:-}"
    flags+=("${REMAP[@]}")
    IFS=$'\x1f'
    printf '%s' "${flags[*]}"
)

arch_cargo() { # arch_cargo ARCH ARGS...: cargo for ARCH with Debian's rustc
    local arch=$1
    shift
    local -x CARGO_ENCODED_RUSTFLAGS=$ENCODED_RUSTFLAGS
    case $arch in
    amd64) RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="${SHMBUS_ARM_TARGET_DIR_BASE:-$ROOT/target}/x86_64" \
        cargo "$@" --target x86_64-unknown-linux-gnu ;;
    armhf) arm_cargo "$@" ;;
    arm64) arm64_cargo "$@" ;;
    esac
}

# build ARCH DIR: build, then copy the executables (DIR/bin) and C libraries (DIR/lib,
# with LIB.native-static-libs: what linking the static library needs) cargo reports.
build() {
    local arch=$1 dir=$2 t json err i p f
    t=$(triple "$arch")
    [[ -x /usr/bin/rustc ]] || die "no Debian rustc (/usr/bin/rustc): run sudo ci/install-arm.sh --arm64"
    compgen -G "/usr/lib/rustlib/$t/lib/libstd-*.rlib" >/dev/null ||
        die "no $t standard library for /usr/bin/rustc: run sudo ci/install-arm.sh --arm64"
    rm -rf "$dir"
    mkdir -p "$dir/bin" "$dir/lib"
    json=$(mktemp) err=$(mktemp)
    # Removed however the build ends (`die` exits from the middle of it).
    # shellcheck disable=SC2064 # the names are fixed now
    trap "rm -f '$json' '$err'" EXIT
    for p in $(printf '%s\n' "${PROFILES[@]}" | sort -u); do
        # Programs of one profile in one cargo run; each static library alone, with
        # `cargo rustc` so that rustc prints the native libraries it needs.
        local -a pkgs=() feats=()
        for i in "${!CRATES[@]}"; do
            [[ "${PROFILES[$i]}" == "$p" ]] || continue
            if is_staticlib "${CRATES[$i]}"; then
                local -a a=(rustc --profile "$p" -p "${CRATES[$i]}" --lib --message-format json-render-diagnostics)
                [[ -z "${FEATURES[$i]}" ]] || a+=(--features "${FEATURES[$i]}")
                log "$arch: cargo ${a[*]} -- --print native-static-libs"
                local one
                one=$(mktemp)
                # shellcheck disable=SC2064 # the names are fixed now
                trap "rm -f '$json' '$err' '$one'" EXIT
                if ! arch_cargo "$arch" "${a[@]}" -- --print native-static-libs >"$one" 2>"$err"; then
                    cat "$err" >&2
                    die "$arch: cargo failed"
                fi
                cat "$err" >&2
                cat "$one" >>"$json"
                # LIB.native-static-libs beside the library: what linking LIB.a needs.
                for f in $(grep -o '"filenames":\[[^]]*\]' "$one" | grep -o '"[^"]*\.a"' | tr -d '"'); do
                    [[ "$f" == */deps/* ]] || sed -n 's/.*native-static-libs: //p' "$err" | tail -n1 >"$dir/lib/$(basename "${f%.a}").native-static-libs"
                done
                rm -f "$one"
            else
                pkgs+=(-p "${CRATES[$i]}")
                [[ -z "${FEATURES[$i]}" ]] || feats+=("${FEATURES[$i]}")
            fi
        done
        if [[ ${#pkgs[@]} -gt 0 ]]; then
            local -a a=(build --profile "$p" "${pkgs[@]}" --message-format json-render-diagnostics)
            [[ ${#feats[@]} -eq 0 ]] || a+=(--features "$(IFS=,; echo "${feats[*]}")")
            log "$arch: cargo ${a[*]}"
            arch_cargo "$arch" "${a[@]}" >>"$json"
        fi
    done
    for f in $(grep -o '"executable":"[^"]*"' "$json" | cut -d'"' -f4 | sort -u); do
        cp -p "$f" "$dir/bin/"
    done
    for f in $(grep -o '"filenames":\[[^]]*\]' "$json" | grep -o '"[^"]*\.\(so\|a\)"' | tr -d '"' | sort -u); do
        [[ "$f" == */deps/* ]] || cp -p "$f" "$dir/lib/"
    done
    rm -f "$json" "$err"
    [[ -n "$(ls "$dir/bin")" ]] || die "$arch: the build produced no executable"
    # Libraries as Debian ships them (dh_strip): the shared one without symbols it does
    # not export, the static one without debug info (Rust's std brings tens of MB of it).
    # The programs are stripped by their profile already.
    local strip
    case $arch in amd64) strip="strip" ;; armhf) strip=arm-linux-gnueabihf-strip ;; arm64) strip=aarch64-linux-gnu-strip ;; esac
    for f in "$dir"/lib/*.so; do
        [[ -e "$f" ]] && "$strip" --strip-unneeded --remove-section=.comment --remove-section=.note "$f"
    done
    for f in "$dir"/lib/*.a; do
        [[ -e "$f" ]] && "$strip" --strip-debug --enable-deterministic-archives --remove-section=.comment "$f"
    done
    return 0
}

# manpages ARCH DIR: DIR/man/PROGRAM.1.gz for each program of DIR/bin, made from its own
# --help by packaging/debian/mkman (foreign programs run under qemu-user), and NAME.1.gz
# for each `link:PROGRAM usr/bin/NAME` of an install file: the program run as NAME
# (through a link of that name: the multi-call shmbus-sensor is the sensor NAME says).
manpages() {
    local arch=$1 dir=$2 b
    local -a run=()
    case $arch in
    amd64) ;;
    armhf) run=(qemu-arm -L /usr/arm-linux-gnueabihf) ;;
    arm64) run=(qemu-aarch64 -L /usr/aarch64-linux-gnu) ;;
    esac
    [[ ${#run[@]} == 0 ]] || command -v "${run[0]}" >/dev/null || die "${run[0]} is missing (sudo ci/install-arm.sh --arm64): the manual pages are made from the $arch programs' --help"
    rm -rf "$dir/man"
    for b in "$dir"/bin/*; do
        packaging/debian/mkman "$dir/man/${b##*/}.1.gz" "$CARGO_VERSION" "$EPOCH" "${b##*/}" "${run[@]}" "$b" ||
            die "$arch: no manual page for ${b##*/}"
    done
    local target dest links=$dir/links
    rm -rf "$links"
    mkdir -p "$links"
    while read -r target dest _; do
        [[ $target == link:* && $dest == usr/bin/?* ]] || continue
        target=${target#link:}
        [[ -f "$dir/bin/$target" ]] || die "$arch: an install file links usr/bin/${dest##*/} to $target, which the build did not make"
        ln -sfn "../bin/$target" "$links/${dest##*/}"
        packaging/debian/mkman "$dir/man/${dest##*/}.1.gz" "$CARGO_VERSION" "$EPOCH" "${dest##*/}" "${run[@]}" "$links/${dest##*/}" ||
            die "$arch: no manual page for ${dest##*/} (a link to $target)"
    done < <(cat packaging/debian/*/install)
    rm -rf "$links"
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
        grep -q "Machine: *$machine\$" <<<"$(readelf -h "$f")" || die "$f is not an $arch ELF file ($(readelf -h "$f" | sed -n 's/ *Machine: *//p'))"
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
        libshmbus.so.0) deps+=("libshmbus0 (= $VERSION)") ;;
        *) die "$l (needed by a file of $(basename "$stage")) has no Debian package in ci/deb.sh's map: add it there" ;;
        esac
    done
    if grep -qE '^(libc\.so\.6|libm\.so\.6|libpthread|libdl|librt|ld-linux)' < <(printf '%s\n' "${libs[@]}"); then
        [[ "$glibc" != 0 ]] || glibc=2.4
        deps+=("libc6 (>= $glibc)")
    fi
    if grep -qx libgcc_s.so.1 < <(printf '%s\n' "${libs[@]}"); then
        # libgcc-s1's symbols file names GCC_4.3.0 as 4.3, GCC_3.0 as 3.0.
        gcc=$(echo "${gcc:-3.0}" | cut -d. -f1-2)
        deps+=("libgcc-s1 (>= $gcc)")
    fi
    local IFS=,
    echo "${deps[*]}" | sed 's/,/, /g'
}

# ---------------------------------------------------------------- staging
# subst ARCH ART: the placeholders of control.in, install destinations and *.in files.
subst() {
    local arch=$1 art=$2 libs_private=
    if compgen -G "$art/lib/*.native-static-libs" >/dev/null; then libs_private=$(cat "$art"/lib/*.native-static-libs | head -n1); fi
    sed -e "s/@VERSION@/$VERSION/g" -e "s/@CARGO_VERSION@/$CARGO_VERSION/g" \
        -e "s/@MULTIARCH@/$(multiarch "$arch")/g" -e "s#@HOMEPAGE@#$HOMEPAGE#g" \
        -e "s#@LIBS_PRIVATE@#$libs_private#g"
}

# stage_pkg PKGDIR ARCH ARTIFACTS STAGE: fill STAGE from PKGDIR/install. Returns 3 if
# a `needs PATH` line names something this tree does not have.
stage_pkg() {
    local pkgdir=$1 arch=$2 art=$3 stage=$4 src dest opt matches m to
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
        dest=$(subst "$arch" "$art" <<<"$dest")
        if [[ "$src" == link:* ]]; then # a symbolic link DEST -> TARGET
            src=$(subst "$arch" "$art" <<<"${src#link:}")
            mkdir -p "$(dirname "$stage/$dest")"
            ln -s "$src" "$stage/$dest"
            continue
        fi
        case $src in
        bin:*) matches=$(compgen -G "$art/bin/${src#bin:}" || true) ;;
        lib:*) matches=$(compgen -G "$art/lib/${src#lib:}" || true) ;;
        man:*) matches=$(compgen -G "$art/man/${src#man:}" || true) ;;
        *) matches=$(compgen -G "$src" || true) ;;
        esac
        if [[ -z "$matches" ]]; then
            [[ $opt == 1 ]] && continue
            die "$(basename "$pkgdir")/install: nothing matches '$src'"
        fi
        while read -r m; do
            to=$stage/$dest
            if [[ "$dest" == */ ]]; then to=$stage/$dest$(basename "${m%.in}"); fi
            mkdir -p "$(dirname "$to")"
            if [[ "$m" == *.in ]]; then
                subst "$arch" "$art" <"$m" >"$to"
                chmod 0644 "$to"
            elif [[ -x "$m" && "$src" != *.so* && "$dest" != usr/share/doc/* ]]; then
                # (Examples under usr/share/doc are documentation: 0644, run with
                # `python3 FILE`, whatever their mode in the repository.)
                install -m 0755 "$m" "$to"
            else
                install -m 0644 "$m" "$to"
            fi
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
    for s in triggers shlibs; do
        if [[ -f "$pkgdir/$s.in" ]]; then subst "$arch" "$art" <"$pkgdir/$s.in" >"$stage/DEBIAN/$s"; fi
    done
    if [[ -d "$stage/etc" ]]; then
        (cd "$stage" && find etc -type f | sort | sed 's#^#/#') >"$stage/DEBIAN/conffiles"
    fi
    # Debian's changelog of a native package: which commit this build is.
    local pkg doc
    pkg=$(basename "$pkgdir")
    doc=$stage/usr/share/doc/$pkg
    mkdir -p "$doc"
    {
        printf '%s (%s) unstable; urgency=medium\n\n' "$pkg" "$VERSION"
        printf '  * Built by ci/deb.sh from commit %s.\n\n' "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        printf ' -- shmbus developers <shmbus@example.invalid>  %s\n' "$(LC_ALL=C date -u -R -d "@$EPOCH")"
    } | gzip -9n >"$doc/changelog.gz"
    chmod 0644 "$doc/changelog.gz"
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
IFS=, read -r -a arch_list <<<"$ARCHES"
# Every architecture is checked before anything is made or built.
[[ ${#arch_list[@]} -gt 0 ]] || die "no architecture given (--arch amd64,armhf,arm64)"
for arch in "${arch_list[@]}"; do triple "$arch" >/dev/null; done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$ROOT/target/deb-work
SIZES=()
built_all=()
for arch in "${arch_list[@]}"; do
    art=$WORK/$arch/artifacts
    t0=$(date +%s)
    build "$arch" "$art"
    manpages "$arch" "$art"
    log "$arch: built in $(($(date +%s) - t0)) s: $(cd "$art" && echo bin/* lib/*)"
    for pkgdir in packaging/debian/*/; do
        pkgdir=${pkgdir%/}
        [[ -f "$pkgdir/control.in" ]] || continue
        pkg=$(basename "$pkgdir")
        pkg_arch=$(sed -n 's/^Architecture: *//p' "$pkgdir/control.in")
        [[ "$pkg_arch" == @ARCH@ ]] && pkg_arch=$arch
        # An Architecture: all package is built once, with the first architecture.
        if [[ "$pkg_arch" == all && " ${built_all[*]} " == *" $pkg "* ]]; then continue; fi
        stage=$WORK/$arch/$pkg
        rc=0
        stage_pkg "$pkgdir" "$arch" "$art" "$stage" || rc=$?
        [[ $rc == 3 ]] && continue
        [[ $rc == 0 ]] || exit "$rc"
        [[ "$pkg_arch" == all ]] && built_all+=("$pkg")
        depends=$(shlibs_depends "$stage" "$arch")
        size=$(installed_size "$stage")
        subst "$arch" "$art" <"$pkgdir/control.in" | sed -e "s/@ARCH@/$pkg_arch/" -e "s/@INSTALLED_SIZE@/$size/" \
            -e "s/@SHLIBS_DEPENDS@/$depends/" -e 's/^Depends: , */Depends: /' -e '/^Depends:/s/, *$//' -e '/^Depends: *$/d' \
            >"$stage/DEBIAN/control"
        ! grep -n '@[A-Z_]*@' "$stage/DEBIAN/control" || die "$pkg: unreplaced placeholder in control"
        find "$stage" -exec touch -h -d "@$EPOCH" {} +
        deb=$OUT/${pkg}_${VERSION}_${pkg_arch}.deb
        dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
        SIZES+=("$(printf '%-40s %10d %14d' "$(basename "$deb")" "$(stat -c %s "$deb")" "$size")")
        log "$(basename "$deb"): $(stat -c %s "$deb") bytes, Installed-Size $size KiB, Depends: $(dpkg-deb -f "$deb" Depends)"
    done
done

{
    printf '%-40s %10s %14s\n' package bytes installed-KiB
    printf '%s\n' "${SIZES[@]}"
} | tee "$OUT/SIZES.txt"
