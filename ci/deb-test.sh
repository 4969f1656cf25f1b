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
#    shipped config's topic and the package's own `shmbus` reads it back.
# 3. install, in a private IPC namespace (it has its own System V limits and
#    topics; nothing of another test is seen or touched): the amd64 package with
#    `apt-get install ./shmbus_V_amd64.deb`; `shmbus doctor` from /usr/bin; every
#    topic of the installed config published for a few seconds by its sensor, run the
#    way its systemd unit runs it (the unit file's ExecStart, User, Group,
#    LimitMEMLOCK, Nice, NoNewPrivileges: systemd itself does not run in CI); two
#    upgrades (a pristine conffile is replaced, an edited one is kept), the second with
#    kernel.shmmni too small (postinst must raise it and say so); remove; purge; then
#    the machine must be exactly as before (files, user, group, sysctl, topics).
#
# Refuses (exit 1) if a shmbus package is already installed here: the test would
# replace it. Every step that installs is undone by a trap, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${1:-target/deb}
DIR=$(cd "$DIR" && pwd)
VERSION=$(awk '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 }
    p && $1 == "version" { gsub(/[" ]/, "", $3); print $3; exit }' Cargo.toml)
NPASS=0

die() { printf 'ci/deb-test.sh: FAIL: %s\n' "$*" >&2; exit 1; }
pass() { NPASS=$((NPASS + 1)); printf '  ok   %s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }

# =====================================================================================
# 1. contents
# =====================================================================================
# The exact file list of the shmbus package (directories left out): a file that
# appears or goes must show up here.
expected_files() {
    local b
    for b in shmbus shmbus-sensor-iio shmbus-sensor-imu shmbus-sensor-net shmbus-sensor-power \
        shmbus-sensor-system shmbus-sensor-thermal; do
        echo "./usr/bin/$b"
    done
    for b in configs/systemd/*.service; do echo "./usr/lib/systemd/system/$(basename "$b")"; done
    echo ./usr/lib/sysusers.d/shmbus.conf
    echo ./etc/shmbus/shmbus.toml
    for b in examples/demo.toml examples/imx6ull-board.toml configs/README.md INSTALL.md README.md copyright; do
        echo "./usr/share/doc/shmbus/$b"
    done
}
# Executables shipped beyond those (bridge, foxglove...) are accepted when the build
# had them: they are listed by ci/deb.sh's artifacts.
extra_bins() {
    local arch=$1 f
    for f in target/deb-work/"$arch"/artifacts/bin/*; do
        case $(basename "$f") in shmbus | shmbus-sensor-*) ;; *) echo "./usr/bin/$(basename "$f")" ;; esac
    done
}

check_contents() {
    local arch=$1 deb=$DIR/shmbus_${VERSION}_$1.deb machine x
    [[ -f "$deb" ]] || die "$deb is missing: run ci/deb.sh first"
    step "contents of $(basename "$deb")"
    dpkg-deb -I "$deb" | sed 's/^/    /'
    [[ "$(dpkg-deb -f "$deb" Package)" == shmbus ]] || die "Package is not shmbus"
    [[ "$(dpkg-deb -f "$deb" Version)" == "$VERSION" ]] || die "Version is not $VERSION"
    [[ "$(dpkg-deb -f "$deb" Architecture)" == "$arch" ]] || die "Architecture is not $arch"
    local dep
    dep=$(dpkg-deb -f "$deb" Depends)
    [[ "$dep" =~ ^libc6\ \(\>=\ 2\.[0-9]+\),\ libgcc-s1\ \(\>=\ [0-9.]+\),\ passwd$ ]] ||
        die "Depends is '$dep', expected libc6 (>= 2.x), libgcc-s1 (>= x), passwd"
    # The newest glibc symbol version must be one Debian 12 (glibc 2.36) has.
    local gv=${dep#libc6 (>= }
    gv=${gv%%)*}
    [[ "$(printf '%s\n2.36\n' "$gv" | sort -V | tail -n1)" == 2.36 ]] || die "needs glibc $gv, newer than Debian 12's 2.36"
    pass "control: shmbus $VERSION $arch, Depends: $dep"
    [[ "$(dpkg-deb -f "$deb" Installed-Size)" =~ ^[0-9]+$ ]] || die "no Installed-Size"
    x=$(mktemp -d)
    dpkg-deb -e "$deb" "$x/DEBIAN"
    [[ "$(cat "$x/DEBIAN/conffiles")" == /etc/shmbus/shmbus.toml ]] || die "conffiles: $(cat "$x/DEBIAN/conffiles")"
    for s in postinst prerm postrm; do [[ -x "$x/DEBIAN/$s" ]] || die "no executable $s"; done
    (cd "$x/DEBIAN" && sh -n postinst && sh -n prerm && sh -n postrm) || die "a maintainer script is not valid sh"
    pass "conffiles: /etc/shmbus/shmbus.toml; postinst, prerm, postrm present"
    rm -rf "$x"

    # File list: exact, every entry root:root, binaries 0755, the rest 0644.
    local listing got want
    listing=$(dpkg-deb -c "$deb")
    got=$(awk '$1 !~ /^d/ { print $6 }' <<<"$listing" | sort)
    want=$( (expected_files; extra_bins "$arch") | sort)
    if [[ "$got" != "$want" ]]; then
        diff <(echo "$want") <(echo "$got") | sed 's/^/    /' >&2
        die "file list of $(basename "$deb") differs from the expected one (< expected, > in the package)"
    fi
    awk '$2 != "root/root" { bad = 1; print "    " $0 } END { exit bad }' <<<"$listing" || die "files not owned by root/root"
    awk '$1 ~ /^-/ && $6 ~ /^\.\/usr\/bin\// && $1 != "-rwxr-xr-x" { bad = 1; print "    " $0 }
         $1 ~ /^-/ && $6 !~ /^\.\/usr\/bin\// && $1 != "-rw-r--r--" { bad = 1; print "    " $0 } END { exit bad }' <<<"$listing" ||
        die "unexpected file modes"
    pass "file list: $(wc -l <<<"$got") files as expected, root/root, 0755 binaries, 0644 others"

    # What is inside: ELF machine, dynamic glibc, unit paths, the conffile's content.
    x=$(mktemp -d)
    dpkg-deb -x "$deb" "$x"
    case $arch in amd64) machine='Advanced Micro Devices X86-64' ;; armhf) machine=ARM ;; arm64) machine=AArch64 ;; esac
    for f in "$x"/usr/bin/*; do
        readelf -h "$f" | grep -q "Machine: *$machine\$" || die "$f is not a $machine binary"
        readelf -d "$f" | grep -q 'NEEDED.*libc\.so\.6' || die "$f is not linked against glibc dynamically"
        readelf -S "$f" | grep -q '\.debug_info' && die "$f is not stripped"
    done
    pass "binaries: $machine ELF, dynamic glibc, stripped"
    if [[ $arch == "$(dpkg --print-architecture)" ]]; then
        # Native: dpkg-shlibdeps can read this machine's libc6/libgcc-s1 symbols files,
        # and must agree with the Depends that ci/deb.sh computed from the ELF files.
        local sd
        sd=$(cd "$x" && mkdir -p debian && printf 'Source: shmbus

Package: shmbus
Architecture: any
' >debian/control &&
            dpkg-shlibdeps -O usr/bin/* 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
        [[ "$sd, passwd" == "$dep" ]] || die "dpkg-shlibdeps says '$sd', the package says '$dep'"
        pass "Depends agrees with dpkg-shlibdeps ($sd)"
    fi
    for u in "$x"/usr/lib/systemd/system/*.service; do
        grep -q '^ExecStart=/usr/bin/shmbus' "$u" || die "$(basename "$u"): ExecStart not in /usr/bin"
        [[ -x "$x$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$u" | sed 's/%i/imu/')" ]] || die "$(basename "$u"): its ExecStart program is not in the package"
        grep -q '^LimitMEMLOCK=' "$u" || die "$(basename "$u"): no LimitMEMLOCK="
        grep -q '^User=shmbus-sensors' "$u" || die "$(basename "$u"): not User=shmbus-sensors"
    done
    cmp -s "$x/etc/shmbus/shmbus.toml" configs/demo.toml || die "/etc/shmbus/shmbus.toml is not configs/demo.toml"
    pass "units run /usr/bin programs as shmbus-sensors with LimitMEMLOCK=; conffile is configs/demo.toml"
    rm -rf "$x"
}

# =====================================================================================
# 2. foreign binaries under qemu-user
# =====================================================================================
run_foreign() {
    local arch=$1 deb=$DIR/shmbus_${VERSION}_$1.deb qemu x
    case $arch in
    armhf) qemu="qemu-arm -L /usr/arm-linux-gnueabihf" ;;
    arm64) qemu="qemu-aarch64 -L /usr/aarch64-linux-gnu" ;;
    esac
    step "$(basename "$deb") binaries under ${qemu%% *}"
    x=$(mktemp -d)
    dpkg-deb -x "$deb" "$x"
    # Run in a private IPC namespace: the topic and its key are this test's alone.
    unshare --ipc bash -euo pipefail -c '
        x=$1 qemu=$2 arch=$3
        $qemu "$x/usr/bin/shmbus" --version
        for b in "$x"/usr/bin/shmbus-sensor-*; do
            $qemu "$b" --help >/dev/null || { echo "$b --help failed" >&2; exit 1; }
        done
        echo "  ok   every sensor answers --help"
        $qemu "$x/usr/bin/shmbus-sensor-system" --config "$x/etc/shmbus/shmbus.toml" --rate 20 --duration 60 &
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
        kill $pub
        wait $pub 2>/dev/null || true
    ' _ "$x" "$qemu" "$arch" || die "$arch binaries under qemu"
    NPASS=$((NPASS + 2))
    rm -rf "$x"
}

CONTENTS_ARCHES=()
for a in amd64 armhf arm64; do
    [[ -f "$DIR/shmbus_${VERSION}_$a.deb" ]] && CONTENTS_ARCHES+=("$a")
done
[[ ${#CONTENTS_ARCHES[@]} -gt 0 ]] || die "no shmbus_${VERSION}_*.deb in $DIR: run ci/deb.sh"
for a in "${CONTENTS_ARCHES[@]}"; do check_contents "$a"; done
for a in "${CONTENTS_ARCHES[@]}"; do [[ $a == amd64 ]] || run_foreign "$a"; done

# =====================================================================================
# 3. install, upgrade, remove, purge on this machine (amd64 only)
# =====================================================================================
[[ " ${CONTENTS_ARCHES[*]} " == *" amd64 "* ]] || die "no amd64 package to install"
[[ "$(dpkg --print-architecture)" == amd64 ]] || die "the install test needs an amd64 host"
[[ "$(id -u)" == 0 ]] || die "the install test needs root (it installs the package): sudo ci/deb-test.sh"
if st=$(dpkg-query -W -f='${db:Status-Status} ${Version}' shmbus 2>/dev/null) && [[ "${st%% *}" != not-installed ]]; then
    die "a shmbus package is on this machine already ($st): the test would replace and purge it. Remove it first (apt-get purge shmbus) or run the test on a throwaway machine"
fi
exec unshare --ipc ci/deb-install-test.sh "$DIR/shmbus_${VERSION}_amd64.deb" "$NPASS"
