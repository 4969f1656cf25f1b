#!/usr/bin/env bash
# ci/deb-test.sh — test the Debian packages that ci/deb.sh built (root, Debian 12).
#
#   ci/deb-test.sh [DIR]        DIR: where the .deb files are (default target/deb)
#
# 1. contents: every package's control fields, dependencies, conffiles, maintainer
#    scripts and exact file list (dpkg-deb -I / -c), owners and modes, the ELF
#    machine of every binary, the units' ExecStart in /usr/bin.
# 2. foreign: the armhf package's binaries under qemu-arm (and arm64's under
#    qemu-aarch64), linked against Debian's cross glibc: a sensor publishes the
#    shipped config's topic and the package's own `shmbus` reads it back, and so
#    does a C program built against that architecture's libshmbus-dev.
# 3. install, in a private IPC namespace (it has its own System V limits and
#    topics; nothing of another test is seen or touched): the amd64 packages with
#    `apt-get install ./shmbus_V_amd64.deb ...`; `shmbus doctor` from /usr/bin; every
#    topic of the installed config published for a few seconds by its sensor, run the
#    way its systemd unit runs it (the unit file's ExecStart, User, Group,
#    LimitMEMLOCK, Nice, NoNewPrivileges: systemd itself does not run in CI), read by
#    `import shmbus` (python3-shmbus over libshmbus0) and by a C program built with
#    pkg-config against libshmbus-dev, dynamically and statically; two
#    upgrades (a pristine conffile is replaced, an edited one is kept), the second with
#    kernel.shmmni too small (postinst must raise it and say so), a third as in a
#    chroot image build under a policy-rc.d that exits 101 (postinst must leave the
#    kernel's limits alone and restart nothing); remove; purge; then
#    the machine must be exactly as before (files, user, group, sysctl, topics).
#
# Refuses (exit 1) if one of the packages is already installed here: the test would
# replace it. Every step that installs is undone by a trap, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${1:-target/deb}
DIR=$(cd "$DIR" && pwd)
VERSION=$(awk '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 }
    p && $1 == "version" { gsub(/[" ]/, "", $3); print $3; exit }' Cargo.toml)
NPASS=0

die() { printf 'ci/deb-test.sh: FAIL: %s\n' "$*" >&2; exit 1; }
# Every scratch directory lives in one, removed on exit however the script
# ends (a failed check exits from the middle of a step).
SCRATCH=$(mktemp -d /tmp/shmbus-deb-check.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
scratch() { mktemp -d "$SCRATCH/d.XXXXXX"; }
pass() { NPASS=$((NPASS + 1)); printf '  ok   %s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }

# =====================================================================================
# 1. contents
# =====================================================================================
multiarch() { case $1 in amd64) echo x86_64-linux-gnu ;; armhf) echo arm-linux-gnueabihf ;; arm64) echo aarch64-linux-gnu ;; esac; }
machine() { case $1 in amd64) echo 'Advanced Micro Devices X86-64' ;; armhf) echo ARM ;; arm64) echo AArch64 ;; esac; }
GLIBC_DEPS='libc6 \(>= 2\.[0-9]+\), libgcc-s1 \(>= [0-9.]+\)'
# Packages that this tree must produce: the C library and Python module with shmbus-ffi.
HAVE_FFI=0
[[ -f crates/shmbus-ffi/Cargo.toml ]] && HAVE_FFI=1

# The sensors of the multi-call program shmbus-sensor, each also a link shmbus-sensor-NAME.
SENSORS="iio imu net power system thermal"

# The exact file list of each package (directories left out; a link as "PATH -> TARGET"):
# a file that appears or goes must show up here.
expected_files() { # expected_files PKG ARCH
    local pkg=$1 arch=$2 ma b f
    ma=$(multiarch "$arch")
    case $pkg in
    shmbus)
        # The sensors are one multi-call program and six relative links to it.
        echo ./usr/bin/shmbus
        echo ./usr/bin/shmbus-sensor
        for b in $SENSORS; do echo "./usr/bin/shmbus-sensor-$b -> shmbus-sensor"; done
        # Executables beyond those (bridge, foxglove...) when the build had them.
        for f in target/deb-work/"$arch"/artifacts/bin/*; do
            case $(basename "$f") in shmbus | shmbus-sensor) ;; *) echo "./usr/bin/$(basename "$f")" ;; esac
        done
        # A manual page per name a user can type (lintian: binary-without-manpage).
        for b in shmbus shmbus-sensor; do echo "./usr/share/man/man1/$b.1.gz"; done
        for b in $SENSORS; do echo "./usr/share/man/man1/shmbus-sensor-$b.1.gz"; done
        for f in target/deb-work/"$arch"/artifacts/bin/*; do
            case $(basename "$f") in shmbus | shmbus-sensor) ;; *) echo "./usr/share/man/man1/$(basename "$f").1.gz" ;; esac
        done
        for b in configs/systemd/*.service; do echo "./usr/lib/systemd/system/$(basename "$b")"; done
        echo ./usr/lib/sysusers.d/shmbus.conf
        echo ./etc/shmbus/shmbus.toml
        for b in examples/demo.toml examples/imx6ull-board.toml configs/README.md INSTALL.md TROUBLESHOOTING.md README.md copyright changelog.gz; do
            echo "./usr/share/doc/shmbus/$b"
        done
        ;;
    libshmbus0)
        echo "./usr/lib/$ma/libshmbus.so.$CARGO_VERSION"
        echo "./usr/lib/$ma/libshmbus.so.0 -> libshmbus.so.$CARGO_VERSION"
        echo ./usr/share/doc/libshmbus0/copyright
        echo ./usr/share/doc/libshmbus0/changelog.gz
        ;;
    libshmbus-dev)
        echo ./usr/include/shmbus/shmbus.h
        echo "./usr/lib/$ma/libshmbus.a"
        echo "./usr/lib/$ma/libshmbus.so -> libshmbus.so.0"
        echo "./usr/lib/$ma/pkgconfig/shmbus.pc"
        echo ./usr/share/doc/libshmbus-dev/copyright
        echo ./usr/share/doc/libshmbus-dev/changelog.gz
        for b in shmbus-c-publisher.c shmbus-c-subscriber.c imu_types.h; do
            echo "./usr/share/doc/libshmbus-dev/examples/$b"
        done
        ;;
    python3-shmbus)
        echo ./usr/lib/python3/dist-packages/shmbus/__init__.py
        echo ./usr/share/doc/python3-shmbus/copyright
        echo ./usr/share/doc/python3-shmbus/changelog.gz
        for b in imu_publisher.py imu_subscriber.py; do echo "./usr/share/doc/python3-shmbus/examples/$b"; done
        ;;
    esac
}

# check_listing DEB PKG ARCH: dpkg-deb -c against the expected list; root/root;
# programs 0755, other files 0644.
check_listing() {
    local deb=$1 pkg=$2 arch=$3 listing got want
    listing=$(dpkg-deb -c "$deb")
    got=$(awk '$1 !~ /^d/ { $1 = $2 = $3 = $4 = $5 = ""; sub(/^ +/, ""); print }' <<<"$listing" | sort)
    want=$(expected_files "$pkg" "$arch" | sort)
    if [[ "$got" != "$want" ]]; then
        diff <(echo "$want") <(echo "$got") | sed 's/^/    /' >&2
        die "file list of $(basename "$deb") differs from the expected one (< expected, > in the package)"
    fi
    awk '$2 != "root/root" { bad = 1; print "    " $0 } END { exit bad }' <<<"$listing" || die "files not owned by root/root"
    awk '$1 ~ /^-/ && $6 ~ /^\.\/usr\/bin\// && $1 != "-rwxr-xr-x" { bad = 1; print "    " $0 }
         $1 ~ /^-/ && $6 !~ /^\.\/usr\/bin\// && $1 != "-rw-r--r--" { bad = 1; print "    " $0 } END { exit bad }' <<<"$listing" ||
        die "unexpected file modes"
    # Directories 0755 whatever the umask of the build (a user's 002 on Debian made
    # /etc/shmbus and the module's directory group-writable).
    awk '$1 ~ /^d/ && $1 != "drwxr-xr-x" { bad = 1; print "    " $0 } END { exit bad }' <<<"$listing" ||
        die "directories not 0755"
    pass "$(basename "$deb"): file list as expected ($(wc -l <<<"$got") entries), root/root, 0755 programs and directories, 0644 others"
}

# check_control DEB PKG ARCH DEPENDS-REGEX: the control fields.
check_control() {
    local deb=$1 pkg=$2 arch=$3 re=$4 dep
    [[ -f "$deb" ]] || die "$deb is missing: run ci/deb.sh first"
    step "contents of $(basename "$deb")"
    dpkg-deb -I "$deb" | sed 's/^/    /'
    [[ "$(dpkg-deb -f "$deb" Package)" == "$pkg" ]] || die "Package is not $pkg"
    [[ "$(dpkg-deb -f "$deb" Version)" == "$VERSION" ]] || die "Version is not $VERSION"
    [[ "$(dpkg-deb -f "$deb" Architecture)" == "$arch" ]] || die "Architecture is not $arch"
    [[ "$(dpkg-deb -f "$deb" Installed-Size)" =~ ^[0-9]+$ ]] || die "no Installed-Size"
    dep=$(dpkg-deb -f "$deb" Depends)
    [[ "$dep" =~ ^$re$ ]] || die "Depends is '$dep', expected /$re/"
    if [[ "$dep" == *libc6* ]]; then
        # The newest glibc symbol version must be one Debian 12 (glibc 2.36) has.
        local gv=${dep#*libc6 (>= }
        gv=${gv%%)*}
        [[ "$(printf '%s\n2.36\n' "$gv" | sort -V | tail -n1)" == 2.36 ]] || die "needs glibc $gv, newer than Debian 12's 2.36"
    fi
    pass "control: $pkg $VERSION $arch, Depends: $dep"
}

# Paths of the build machine that must not be in a shipped file: this checkout, the
# cargo home (the dependencies' sources) and any user's cargo or rustup directory.
# ci/deb.sh remaps them (--remap-path-prefix); without that, panic locations carry them.
CARGO_HOME_DIR=$(cd "${CARGO_HOME:-$HOME/.cargo}" 2>/dev/null && pwd -P || echo "${CARGO_HOME:-$HOME/.cargo}")
BUILD_PATHS=("$PWD/" "$(pwd -P)/" "$CARGO_HOME_DIR/" /.cargo/ /.rustup/)
build_paths() { # build_paths FILE: the build machine's paths in FILE, with a count each
    local f=$1 p n
    for p in "${BUILD_PATHS[@]}"; do
        n=$(grep -a -c -F -- "$p" "$f" || true)
        [[ $n == 0 ]] || echo "$n x '$p' (e.g. $(LC_ALL=C grep -a -o -- "$(sed 's/[].[*^$\\]/\\&/g' <<<"$p")[[:print:]]*" "$f" | head -n1 | cut -c1-120))"
    done
}

# ELF files of an extracted tree: the architecture's machine, dynamic glibc, stripped,
# no path of the build machine.
check_elves() {
    local root=$1 arch=$2 f n=0 paths
    while IFS= read -r -d '' f; do
        head -c4 "$f" | grep -q ELF || continue
        grep -q "Machine: *$(machine "$arch")\$" <<<"$(readelf -h "$f")" || die "$f is not a $(machine "$arch") binary"
        grep -q 'NEEDED.*libc\.so\.6' <<<"$(readelf -d "$f")" || die "$f is not linked against glibc dynamically"
        ! grep -q '\.debug_info' <<<"$(readelf -S "$f")" || die "$f has debug info"
        paths=$(build_paths "$f")
        [[ -z $paths ]] || die "${f#"$root"} holds paths of the build machine (not remapped): $paths"
        n=$((n + 1))
    done < <(find "$root" -type f -print0)
    [[ $n -gt 0 ]] || die "no ELF file in $root"
    pass "$n ELF files: $(machine "$arch"), dynamic glibc, no debug info, no path of the build machine"
}

# check_manpages ROOT [RUNNER...]: every program of ROOT/usr/bin has its manual page,
# and the page names every subcommand and every long option that the program's --help
# (and each subcommand's, recursively) lists: an option added to a program and not to
# its page fails here. groff must render each page without a warning (lintian's check).
check_manpages() {
    local root=$1 b name page words w nwords=0 npages=0
    shift
    local -a run=("$@")
    help_words() { # help_words PROGRAM WORDS...: subcommands and --options, recursively
        local prog=$1 text c
        shift
        text=$(env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 "${run[@]}" "$prog" "$@" --help </dev/null 2>&1) ||
            die "${prog##*/} $* --help failed"
        grep -o -- '--[a-z][a-z0-9-]*' <<<"$text" | sort -u || true
        for c in $(sed -n '/^Commands:$/,/^$/p' <<<"$text" | sed -n 's/^  \([a-z][a-z0-9-]*\)\( .*\)\{0,1\}$/\1/p' | grep -vx help || true); do
            echo "$c"
            help_words "$prog" "$@" "$c"
        done
    }
    for b in "$root"/usr/bin/*; do
        name=${b##*/}
        [[ -f "$root/usr/share/man/man1/$name.1.gz" ]] || die "$name has no manual page (usr/share/man/man1/$name.1.gz)"
        # The page as text, with roff's escaped hyphens as typed.
        page=$(zcat "$root/usr/share/man/man1/$name.1.gz" | sed -e 's/\\-/-/g' -e 's/\\e/\\/g')
        grep -q "^\.TH ${name^^} 1 " <<<"$page" || die "$name.1.gz: no .TH ${name^^} 1 line"
        grep -q "^$name - ." <<<"$page" || die "$name.1.gz: no NAME line '$name - ...' (whatis)"
        words=$(help_words "$b" | sort -u)
        for w in $words; do
            grep -q -F -e "$w" <<<"$page" || die "the manual page of $name does not mention '$w', which '$name --help' (or a subcommand's) lists: the page is not the program's"
            nwords=$((nwords + 1))
        done
        if command -v man >/dev/null; then
            w=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$root/usr/share/man/man1/$name.1.gz" 2>&1 >/dev/null) || true
            [[ -z $w ]] || die "groff warns about $name.1.gz: $w"
        fi
        npages=$((npages + 1))
    done
    pass "$npages manual pages, one per program; they name all $nwords subcommands and options of the programs' --help"
}

# Native: dpkg-shlibdeps reads this machine's libc6/libgcc-s1 symbols files and must
# agree with the Depends that ci/deb.sh computed from the ELF files.
check_shlibdeps() { # check_shlibdeps ROOT FILE-GLOB DEPENDS
    local root=$1 glob=$2 dep=$3 sd
    mkdir -p "$root/debian"
    printf 'Source: shmbus\n\nPackage: shmbus\nArchitecture: any\n' >"$root/debian/control"
    # shellcheck disable=SC2086 # the glob is meant to expand here
    sd=$(cd "$root" && dpkg-shlibdeps -O $glob 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
    rm -rf "$root/debian"
    [[ -n "$sd" && "$dep" == "$sd"* ]] || die "dpkg-shlibdeps says '$sd', the package says '$dep'"
    pass "Depends agrees with dpkg-shlibdeps ($sd)"
}

check_shmbus() {
    local arch=$1 deb=$DIR/shmbus_${VERSION}_$1.deb x dep
    check_control "$deb" shmbus "$arch" "$GLIBC_DEPS, passwd"
    x=$(scratch)
    dpkg-deb -e "$deb" "$x/DEBIAN"
    [[ "$(cat "$x/DEBIAN/conffiles")" == /etc/shmbus/shmbus.toml ]] || die "conffiles: $(cat "$x/DEBIAN/conffiles")"
    for s in postinst prerm postrm; do [[ -x "$x/DEBIAN/$s" ]] || die "no executable $s"; done
    (cd "$x/DEBIAN" && sh -n postinst && sh -n prerm && sh -n postrm) || die "a maintainer script is not valid sh"
    pass "conffiles: /etc/shmbus/shmbus.toml; postinst, prerm, postrm present"
    rm -rf "$x"
    check_listing "$deb" shmbus "$arch"
    x=$(scratch)
    dpkg-deb -x "$deb" "$x"
    check_elves "$x/usr/bin" "$arch"
    if [[ $arch == "$(dpkg --print-architecture)" ]]; then check_manpages "$x"; fi
    dep=$(dpkg-deb -f "$deb" Depends)
    [[ $arch != "$(dpkg --print-architecture)" ]] || check_shlibdeps "$x" 'usr/bin/*' "$dep"
    for u in "$x"/usr/lib/systemd/system/*.service; do
        grep -q '^ExecStart=/usr/bin/shmbus' "$u" || die "$(basename "$u"): ExecStart not in /usr/bin"
        [[ -x "$x$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$u" | sed 's/%i/imu/')" ]] || die "$(basename "$u"): its ExecStart program is not in the package"
        grep -q '^LimitMEMLOCK=' "$u" || die "$(basename "$u"): no LimitMEMLOCK="
        grep -q '^User=shmbus-sensors' "$u" || die "$(basename "$u"): not User=shmbus-sensors"
        # `systemctl help UNIT` opens its Documentation=: a file the package installs.
        local docs d
        docs=$(sed -n 's/^Documentation=//p' "$u")
        [[ -n $docs ]] || die "$(basename "$u"): no Documentation= (systemctl help has nothing to show)"
        for d in $docs; do
            [[ $d == file://* && -f "$x${d#file://}" ]] || die "$(basename "$u"): Documentation=$d is not a file of the package"
        done
    done
    # Both units publish topic imu, which takes one publisher: they must conflict, or
    # enabling the SCHED_FIFO one beside shmbus-sensor@imu fails five times and gives up.
    local imu=$x/usr/lib/systemd/system/shmbus-sensor-imu.service tpl=$x/usr/lib/systemd/system/shmbus-sensor@.service l
    grep -qx 'Conflicts=shmbus-sensor@imu.service' "$imu" || die "shmbus-sensor-imu.service does not conflict with shmbus-sensor@imu.service"
    # The SCHED_FIFO unit is sandboxed at least as the template is.
    for l in $(grep -E '^(NoNewPrivileges|Protect[A-Za-z]+|Private[A-Za-z]+|Restrict[A-Za-z]+)=' "$tpl"); do
        grep -qx "$l" "$imu" || die "shmbus-sensor-imu.service lacks the template's $l"
    done
    pass "shmbus-sensor-imu.service conflicts with shmbus-sensor@imu.service and has the template's sandboxing"
    cmp -s "$x/etc/shmbus/shmbus.toml" configs/demo.toml || die "/etc/shmbus/shmbus.toml is not configs/demo.toml"
    pass "units run /usr/bin programs as shmbus-sensors with LimitMEMLOCK=; conffile is configs/demo.toml"
    rm -rf "$x"
}

check_libs() {
    local arch=$1 lib=$DIR/libshmbus0_${VERSION}_$1.deb dev=$DIR/libshmbus-dev_${VERSION}_$1.deb x ma paths
    ma=$(multiarch "$arch")
    check_control "$lib" libshmbus0 "$arch" "$GLIBC_DEPS"
    [[ "$(dpkg-deb -f "$lib" Multi-Arch)" == same ]] || die "libshmbus0 is not Multi-Arch: same"
    x=$(scratch)
    dpkg-deb -e "$lib" "$x/DEBIAN"
    grep -qx 'activate-noawait ldconfig' "$x/DEBIAN/triggers" || die "libshmbus0 does not trigger ldconfig"
    grep -qx "libshmbus 0 libshmbus0 (>= $VERSION)" "$x/DEBIAN/shlibs" || die "libshmbus0 has no shlibs entry"
    rm -rf "$x"
    pass "libshmbus0: Multi-Arch: same, ldconfig trigger, shlibs"
    check_listing "$lib" libshmbus0 "$arch"
    x=$(scratch)
    dpkg-deb -x "$lib" "$x"
    check_elves "$x/usr/lib" "$arch"
    grep -q 'SONAME.*\[libshmbus\.so\.0\]' <<<"$(readelf -d "$x/usr/lib/$ma/libshmbus.so.$CARGO_VERSION")" || die "libshmbus.so has no SONAME libshmbus.so.0"
    pass "SONAME libshmbus.so.0"
    [[ $arch != "$(dpkg --print-architecture)" ]] || check_shlibdeps "$x" "usr/lib/$ma/libshmbus.so.$CARGO_VERSION" "$(dpkg-deb -f "$lib" Depends)"
    rm -rf "$x"
    check_control "$dev" libshmbus-dev "$arch" "libshmbus0 \(= ${VERSION//+/\\+}\)"
    check_listing "$dev" libshmbus-dev "$arch"
    x=$(scratch)
    dpkg-deb -x "$dev" "$x"
    ! grep -q '\.debug_info' <<<"$(readelf -S "$x/usr/lib/$ma/libshmbus.a" 2>/dev/null)" || die "libshmbus.a has debug info"
    paths=$(build_paths "$x/usr/lib/$ma/libshmbus.a")
    [[ -z $paths ]] || die "libshmbus.a holds paths of the build machine (not remapped): $paths"
    cmp -s "$x/usr/include/shmbus/shmbus.h" crates/shmbus-ffi/include/shmbus.h || die "the packaged shmbus.h is not the crate's"
    grep -qx "libdir=\${prefix}/lib/$ma" "$x/usr/lib/$ma/pkgconfig/shmbus.pc" || die "shmbus.pc: wrong libdir"
    grep -q '^Libs.private: .*-lc' "$x/usr/lib/$ma/pkgconfig/shmbus.pc" || die "shmbus.pc: no Libs.private"
    pass "libshmbus.a without debug info or build paths; header is the crate's; shmbus.pc with libdir /usr/lib/$ma and Libs.private"
    rm -rf "$x"
}

check_python() {
    local deb=$DIR/python3-shmbus_${VERSION}_all.deb x
    check_control "$deb" python3-shmbus all "python3 \(>= 3\.7\), libshmbus0 \(>= ${VERSION//+/\\+}\)"
    check_listing "$deb" python3-shmbus all
    x=$(scratch)
    dpkg-deb -x "$deb" "$x"
    cmp -s "$x/usr/lib/python3/dist-packages/shmbus/__init__.py" python/shmbus/__init__.py || die "the packaged module is not python/shmbus"
    rm -rf "$x"
    pass "the module is python/shmbus/__init__.py"
}

# =====================================================================================
# 2. foreign binaries under qemu-user
# =====================================================================================
run_foreign() {
    local arch=$1 deb=$DIR/shmbus_${VERSION}_$1.deb qemu cc x ma
    ma=$(multiarch "$arch")
    case $arch in
    armhf) qemu="qemu-arm -L /usr/arm-linux-gnueabihf" cc=arm-linux-gnueabihf-gcc ;;
    arm64) qemu="qemu-aarch64 -L /usr/aarch64-linux-gnu" cc=aarch64-linux-gnu-gcc ;;
    esac
    step "$arch packages under ${qemu%% *}"
    # QEMU 7.2's fork deadlock under threads (ci/arm-env.sh, G_SLICE).
    export G_SLICE=always-malloc
    x=$(scratch)
    dpkg-deb -x "$deb" "$x"
    if [[ $HAVE_FFI == 1 ]]; then
        # A C program built against the -dev package, linked with its libshmbus.so.
        dpkg-deb -x "$DIR/libshmbus0_${VERSION}_$arch.deb" "$x"
        dpkg-deb -x "$DIR/libshmbus-dev_${VERSION}_$arch.deb" "$x"
        $cc -std=c99 -Wall -Werror -o "$x/read-topic" packaging/debian/tests/read-topic.c \
            -I"$x/usr/include/shmbus" -L"$x/usr/lib/$ma" -lshmbus
    fi
    # shellcheck disable=SC2086 # the runner is words
    check_manpages "$x" $qemu
    # Run in a private IPC namespace: the topic and its key are this test's alone.
    unshare --ipc bash -euo pipefail -c '
        x=$1 qemu=$2 arch=$3 ma=$4 v=$5
        for b in "$x"/usr/bin/*; do
            h=$($qemu "$b" --help) || { echo "$b --help failed" >&2; exit 1; }
            # A program that has --version must say the version of its package.
            if grep -q -- "--version" <<<"$h"; then
                got=$($qemu "$b" --version)
                [[ $got == "${b##*/} $v" ]] || { echo "${b##*/} --version says \"$got\", the package is $v" >&2; exit 1; }
                echo "    $got"
            fi
        done
        echo "  ok   every program answers --help; those with --version say $v"
        $qemu "$x/usr/bin/shmbus-sensor-system" --config "$x/etc/shmbus/shmbus.toml" --rate 20 --duration 120 &
        pub=$!
        trap "kill $pub 2>/dev/null || true" EXIT
        # Wait (bounded) until the topic has frames, then read three in order.
        for _ in $(seq 1 300); do
            $qemu "$x/usr/bin/shmbus" echo system --count 1 --timeout 1 >/dev/null 2>&1 && break
            sleep 0.1
        done
        n=$(timeout 60 $qemu "$x/usr/bin/shmbus" echo system --all --count 3 --json | grep -c "\"generation\"")
        [[ $n == 3 ]] || { echo "read $n frames, expected 3" >&2; exit 1; }
        echo "  ok   $arch shmbus-sensor-system published, $arch shmbus echo read 3 frames"
        $qemu "$x/usr/bin/shmbus" doctor --config "$x/etc/shmbus/shmbus.toml" | sed "s/^/    /"
        if [[ -x $x/read-topic ]]; then
            out=$(timeout 120 $qemu -E "LD_LIBRARY_PATH=$x/usr/lib/$ma" "$x/read-topic" system demo 3)
            [[ $(grep -c "^{" <<<"$out") == 3 ]] || { echo "$out" >&2; echo "read-topic did not print 3 frames" >&2; exit 1; }
            tail -n1 <<<"$out" | sed "s/^/    /"
            [[ $(tail -n1 <<<"$out") == "libshmbus $v" ]] || { echo "shmbus_version() is not the package version $v" >&2; exit 1; }
            echo "  ok   a C program built with the $arch libshmbus-dev read 3 frames through the packaged libshmbus.so.0"
        fi
        kill $pub
        wait $pub 2>/dev/null || true
    ' _ "$x" "$qemu" "$arch" "$ma" "$VERSION" || die "$arch binaries under qemu"
    NPASS=$((NPASS + 2 + HAVE_FFI))
    rm -rf "$x"
}

CARGO_VERSION=$VERSION
ARCHES=()
for a in amd64 armhf arm64; do
    [[ -f "$DIR/shmbus_${VERSION}_$a.deb" ]] && ARCHES+=("$a")
done
[[ ${#ARCHES[@]} -gt 0 ]] || die "no shmbus_${VERSION}_*.deb in $DIR: run ci/deb.sh"
step "ci/deb.sh --version: only the workspace version, with a revision or suffix"
# The programs report the Cargo version: a package named for another would contradict
# `shmbus --version`. Refused before anything is built.
t=$(scratch)
if out=$(ci/deb.sh --arch amd64 --out "$t/out" --version 9.9.9 2>&1); then rm -rf "$t"; die "ci/deb.sh built packages of version 9.9.9 from a $VERSION workspace"; fi
[[ ! -e "$t/out" ]] || { rm -rf "$t"; die "ci/deb.sh --version 9.9.9 made $t/out before refusing"; }
rm -rf "$t"
grep -q "version '9.9.9' is not the workspace's $VERSION" <<<"$out" || die "ci/deb.sh --version 9.9.9 failed without saying why: $out"
pass "ci/deb.sh --version 9.9.9 refused: the programs say $VERSION"
for a in "${ARCHES[@]}"; do
    check_shmbus "$a"
    [[ $HAVE_FFI == 0 ]] || check_libs "$a"
done
[[ $HAVE_FFI == 0 ]] || check_python
for a in "${ARCHES[@]}"; do [[ $a == amd64 ]] || run_foreign "$a"; done

# =====================================================================================
# 3. install, upgrade, remove, purge on this machine (amd64 only)
# =====================================================================================
[[ " ${ARCHES[*]} " == *" amd64 "* ]] || die "no amd64 package to install"
[[ "$(dpkg --print-architecture)" == amd64 ]] || die "the install test needs an amd64 host"
[[ "$(id -u)" == 0 ]] || die "the install test needs root (it installs the package): sudo ci/deb-test.sh"
for p in shmbus libshmbus0 libshmbus-dev python3-shmbus; do
    if st=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$p" 2>/dev/null) && [[ "${st%% *}" != not-installed ]]; then
        die "package $p is on this machine already ($st): the test would replace and purge it. Remove it first (apt-get purge $p) or run the test on a throwaway machine"
    fi
done
# Not `exec`: that replaced this shell, and with it the EXIT trap that removes
# $SCRATCH, so every passing run left an empty /tmp/shmbus-deb-check.* behind.
# ci/test.sh's deb-test stage counts the /tmp/shmbus-deb-check.* before and after.
unshare --ipc ci/deb-install-test.sh "$DIR" "$VERSION" "$HAVE_FFI" "$NPASS"
