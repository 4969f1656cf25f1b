#!/usr/bin/env bash
# ci/deb-install-test.sh DIR VERSION HAVE_FFI [NPASS] — part 3 of ci/deb-test.sh (which
# runs it as `unshare --ipc ci/deb-install-test.sh ...`): install, run, upgrade, remove
# and purge the amd64 packages of DIR on this machine, inside a private IPC namespace,
# and check that purge leaves the machine as it found it. A trap purges whatever
# happens. HAVE_FFI=1: also libshmbus0, libshmbus-dev and python3-shmbus.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=$1
V=$2
HAVE_FFI=$3
NPASS=${4:-0}
DEB=$DIR/shmbus_${V}_amd64.deb
PKGS=(shmbus)
DEBS=("$DEB")
if [[ $HAVE_FFI == 1 ]]; then
    PKGS+=(libshmbus0 libshmbus-dev python3-shmbus)
    DEBS+=("$DIR/libshmbus0_${V}_amd64.deb" "$DIR/libshmbus-dev_${V}_amd64.deb" "$DIR/python3-shmbus_${V}_all.deb")
fi
CONF=/etc/shmbus/shmbus.toml
DROPIN=/etc/sysctl.d/60-shmbus.conf
UNIT=/usr/lib/systemd/system/shmbus-sensor@.service
SHMBUS=/usr/bin/shmbus

die() { printf 'ci/deb-install-test.sh: FAIL: %s\n' "$*" >&2; exit 1; }
pass() { NPASS=$((NPASS + 1)); printf '  ok   %s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }

[[ "$(id -u)" == 0 ]] || die "needs root"
[[ "$(readlink /proc/self/ns/ipc)" != "$(readlink /proc/1/ns/ipc)" ]] ||
    die "not in a private IPC namespace: run it through ci/deb-test.sh (unshare --ipc)"

WORK=$(mktemp -d /tmp/shmbus-deb-test.XXXXXX)
SENSORS=()
# A file of "the administrator's" in /etc/shmbus, which purge must leave alone.
MARK=/etc/shmbus/deb-test-$$.txt
HAD_ETC=0
[[ -d /etc/shmbus ]] && HAD_ETC=1
# Known to dpkg in any state but not-installed (config-files counts). The status is
# read whole first (no `dpkg-query | grep` under pipefail); an unknown package makes
# dpkg-query fail and print nothing, which is "not installed".
installed() {
    local st
    st=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != not-installed ]]
}
# The policy-rc.d a step put in place goes, and the machine's own comes back.
POLICY_PUT=0
restore_policy() {
    [[ $POLICY_PUT == 1 ]] || return 0
    rm -f /usr/sbin/policy-rc.d
    if [[ -e "$WORK/policy-rc.d.orig" || -L "$WORK/policy-rc.d.orig" ]]; then
        mv "$WORK/policy-rc.d.orig" /usr/sbin/policy-rc.d
    fi
    POLICY_PUT=0
}
# /etc/sysctl.d, moved aside to play a minimal system (no procps, no systemd).
SYSCTLD_ASIDE=
restore_sysctld() {
    [[ -n $SYSCTLD_ASIDE && -d $SYSCTLD_ASIDE ]] || return 0
    rm -rf /etc/sysctl.d # what postinst made meanwhile
    mv "$SYSCTLD_ASIDE" /etc/sysctl.d
    SYSCTLD_ASIDE=
}
# Files and directories (deepest last) a step made to play an administrator, and the
# user shmbus-sensors (ADMIN_USER=1).
ADMIN_MADE=()
ADMIN_USER=0
remove_admin_made() {
    local i
    for ((i = ${#ADMIN_MADE[@]} - 1; i >= 0; i--)); do
        if [[ -d ${ADMIN_MADE[$i]} && ! -L ${ADMIN_MADE[$i]} ]]; then rmdir "${ADMIN_MADE[$i]}" 2>/dev/null || true; else rm -f "${ADMIN_MADE[$i]}"; fi
    done
    ADMIN_MADE=()
}
# mkadmin_dir DIR: make DIR and the parents it lacks, each recorded in ADMIN_MADE.
mkadmin_dir() { [[ -d $1 ]] || { mkadmin_dir "$(dirname "$1")"; mkdir "$1"; ADMIN_MADE+=("$1"); }; }
# /usr/bin/shmbus, moved aside for a stand-in (SHMBUS_ASIDE=1).
SHMBUS_ASIDE=0
cleanup() {
    local rc=$? p left=()
    if [[ $SHMBUS_ASIDE == 1 && -e $WORK/shmbus.real ]]; then mv -f "$WORK/shmbus.real" /usr/bin/shmbus; fi
    restore_policy
    restore_sysctld
    for p in "${SENSORS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PKGS[@]}"; do installed "$p" && left+=("$p"); done
    if [[ ${#left[@]} -gt 0 ]]; then
        echo "cleanup: purging what this test installed: ${left[*]}"
        "${APT[@]}" purge "${left[@]}" >/dev/null 2>&1 || dpkg --purge "${left[@]}" || true
        # dpkg alone leaves the ldconfig trigger of libshmbus0 pending.
        dpkg --triggers-only --pending || true
    fi
    rm -f "$MARK"
    remove_admin_made
    if [[ $ADMIN_USER == 1 ]]; then userdel shmbus-sensors 2>/dev/null || true; fi
    [[ $HAD_ETC == 1 ]] || rmdir /etc/shmbus 2>/dev/null || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# The maintainer scripts run with only the commands a Debian system is sure to have
# on PATH: those of the Essential packages, and of the packages' own Depends
# (passwd's useradd and userdel). A script calling anything else (awk: mawk is
# Priority: required but not Essential, and gone from some minimal images) fails
# here, as it would there. apt gives dpkg, and so the scripts, DPkg::Path.
ESSENTIAL_BIN=$WORK/essential-bin
mkdir -p "$ESSENTIAL_BIN"
# (Unpacked in any state: libc-bin may be "triggers-pending" after an earlier run.)
essential_pkgs=$(dpkg-query -W -f='${Package} ${Essential} ${db:Status-Status}\n' |
    awk '$2 == "yes" && $3 != "not-installed" && $3 != "config-files" { print $1 }')
# shellcheck disable=SC2086 # one argument per package
essential_files=$(dpkg-query -L $essential_pkgs passwd)
while read -r f; do
    if [[ -f "$f" && -x "$f" && ! -e "$ESSENTIAL_BIN/${f##*/}" ]]; then ln -s "$f" "$ESSENTIAL_BIN/${f##*/}"; fi
done < <(grep -E '^(/usr)?/s?bin/[^/]+$' <<<"$essential_files")
for c in sh ldconfig start-stop-daemon dpkg-deb tar diff rm useradd getent ipcrm ischroot; do
    [[ -x "$ESSENTIAL_BIN/$c" ]] || die "$c is not a command of an Essential package or of passwd here: the PATH of the maintainer scripts is wrong"
done
[[ ! -e "$ESSENTIAL_BIN/awk" ]] || die "awk counts as Essential here: the PATH of the maintainer scripts is wrong"
APT=(apt-get -y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold -o DPkg::Path="$ESSENTIAL_BIN")
apt_install() { "${APT[@]}" install --no-install-recommends "$@"; }

# Everything a purge must put back as it was.
PATHS=$(for d in "${DEBS[@]}"; do dpkg-deb -c "$d" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }'; done)
snapshot() {
    getent passwd shmbus-sensors || echo "no user shmbus-sensors"
    getent group shmbus || echo "no group shmbus"
    local p
    for p in /etc/shmbus /var/lib/shmbus "$DROPIN" /usr/include/shmbus /usr/lib/python3/dist-packages/shmbus \
        /usr/share/doc/{shmbus,libshmbus0,libshmbus-dev,python3-shmbus} $PATHS; do
        [[ -e "$p" || -L "$p" ]] && echo "exists $p"
    done
    find /etc/systemd/system -lname '*shmbus-sensor*' 2>/dev/null || true
    ls /etc/sysctl.d
    for p in "${PKGS[@]}"; do echo "dpkg $p: $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | sed 's/^$/not-installed/' || echo not-installed)"; done
    echo "segments: $(($(wc -l </proc/sysvipc/shm) - 1)), semaphore sets: $(($(wc -l </proc/sysvipc/sem) - 1))"
}

# repack SRC VERSION MARK OUT: the same package with another version and MARK as a
# last line of the default config: an upgrade whose shipped conffile changed.
repack() {
    local src=$1 v=$2 mark=$3 out=$4 d=$WORK/repack
    rm -rf "$d"
    dpkg-deb -R "$src" "$d"
    sed -i "s/^Version: .*/Version: $v/" "$d/DEBIAN/control"
    echo "$mark" >>"$d$CONF"
    dpkg-deb --root-owner-group -Zxz -b "$d" "$out" >/dev/null
}

# =====================================================================================
step "install ${PKGS[*]} (apt-get install ./...)"
BEFORE=$(snapshot)
out=$(apt_install "${DEBS[@]}" 2>&1) || { echo "$out"; die "apt-get install failed"; }
FIRST_INSTALL_OUT=$out
echo "$out" | grep '^shmbus:' | sed 's/^/    /'
for p in "${PKGS[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$p")" == "installed $V" ]] || die "$p is not installed after apt-get install"
done
pass "installed ${PKGS[*]} $V"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd shmbus-sensors) || die "no user shmbus-sensors"
[[ $uid -lt 1000 && "$shell" == /usr/sbin/nologin && "$home" == /nonexistent ]] ||
    die "shmbus-sensors is not a system user with no login (uid $uid, $home, $shell)"
[[ "$(getent group shmbus | cut -d: -f3)" == "$gid" ]] || die "shmbus-sensors' primary group is not shmbus"
grep -q 'created system user shmbus-sensors' <<<"$out" || die "postinst did not say it created the user"
pass "postinst created system user shmbus-sensors (uid $uid) in system group shmbus (gid $gid)"
[[ ! -e "$DROPIN" ]] || die "$DROPIN written although this namespace has the kernel's default limits"
grep -q 'limits suffice.*no sysctl change' <<<"$out" || die "postinst did not report the limit check"
pass "default System V limits suffice: no sysctl drop-in"

if command -v systemd-analyze >/dev/null; then
    # Offline check of the installed units: syntax, directives, ExecStart programs.
    units=(shmbus-sensor-imu.service)
    for i in $(sed -n 's/^publisher *= *"shmbus-sensor-\([a-z0-9]*\)".*/\1/p' "$CONF"); do units+=("shmbus-sensor@$i.service"); done
    systemd-analyze verify --man=no "${units[@]}" || die "systemd-analyze verify found problems in the installed units"
    pass "systemd-analyze verify: ${units[*]}"
else
    echo "    note: no systemd-analyze on this machine (systemd not installed): the units' syntax is not verified here"
fi

# =====================================================================================
step "$SHMBUS from /usr/bin"
[[ "$("$SHMBUS" --version)" == "shmbus $V" ]] || die "$SHMBUS --version says '$("$SHMBUS" --version)', the package is $V"
doc=$("$SHMBUS" doctor) || { echo "$doc"; die "shmbus doctor reports a FAIL"; }
echo "$doc" | sed 's/^/    /'
grep -q "6 topics on bus 'demo' from $CONF" <<<"$doc" || die "doctor did not find $CONF"
pass "shmbus doctor: no FAIL, config found at $CONF"

# =====================================================================================
step "every topic of $CONF published by its sensor, run as $UNIT runs it"
# The unit's [Service] value of KEY (the last one wins, as in systemd).
unit_get() { awk -v k="$2" '/^\[/ { s = ($0 == "[Service]") } s && index($0, k "=") == 1 { v = substr($0, length(k) + 2) } END { print v }' "$1"; }
# Directives that need systemd itself (sandboxing, restart policy, scheduling): not
# applied here. An unknown one makes the test fail, so that a new directive is looked at.
NOT_APPLIED="Type Restart RestartSec PrivateIPC ProtectSystem ProtectHome PrivateTmp ProtectKernelTunables ProtectControlGroups RestrictAddressFamilies"
APPLIED="ExecStart User Group LimitMEMLOCK Nice NoNewPrivileges"
for k in $(awk '/^\[/ { s = ($0 == "[Service]"); next } s && /^[A-Za-z]+=/ { sub(/=.*/, ""); print }' "$UNIT"); do
    [[ " $APPLIED $NOT_APPLIED " == *" $k "* ]] || die "$UNIT has $k=, which this test neither applies nor knows: teach run_unit"
done
bytes() { # systemd sizes: 16M = 16 MiB
    local v=$1
    case $v in
    infinity) echo unlimited ;;
    *K) echo $((${v%K} * 1024)) ;; *M) echo $((${v%M} * 1024 * 1024)) ;; *G) echo $((${v%G} * 1024 * 1024 * 1024)) ;;
    *) echo "$v" ;;
    esac
}
# The unit's LimitMEMLOCK in bytes. Raising a hard limit needs CAP_SYS_RESOURCE, which
# a container's root may lack (Docker drops it); then the hard limit this machine
# allows is used instead, and said (systemd there could not apply the unit's value either).
MEMLOCK=$(bytes "$(unit_get "$UNIT" LimitMEMLOCK)")
if ! prlimit "--memlock=$MEMLOCK:$MEMLOCK" true 2>/dev/null; then
    hard=$(ulimit -Hl)
    [[ $hard == unlimited ]] || hard=$((hard * 1024))
    echo "    note: LimitMEMLOCK=$(unit_get "$UNIT" LimitMEMLOCK) cannot be set here (no CAP_SYS_RESOURCE, as in a container): using this machine's hard limit $hard"
    MEMLOCK=$hard
fi
run_unit() { # run_unit INSTANCE: start it in the background, its pid in SENSORS
    local inst=$1 exec user group memlock=$MEMLOCK nice nnp
    exec=$(unit_get "$UNIT" ExecStart)
    exec=${exec//%i/$inst}
    user=$(unit_get "$UNIT" User) group=$(unit_get "$UNIT" Group)
    nice=$(unit_get "$UNIT" Nice) nnp=$(unit_get "$UNIT" NoNewPrivileges)
    local -a cmd=(nice -n "${nice:-0}" prlimit "--memlock=$memlock:$memlock" --
        setpriv "--reuid=$user" "--regid=$group" --init-groups)
    [[ "$nnp" == yes ]] && cmd+=(--no-new-privs)
    # shellcheck disable=SC2206 # ExecStart is words, as systemd splits it (no quotes in ours)
    cmd+=(-- $exec)
    echo "    shmbus-sensor@$inst: ${cmd[*]}"
    "${cmd[@]}" >"$WORK/$inst.log" 2>&1 &
    SENSORS+=($!)
}
mapfile -t INSTANCES < <(sed -n 's/^publisher *= *"shmbus-sensor-\([a-z0-9]*\)".*/\1/p' "$CONF")
[[ ${#INSTANCES[@]} == 6 ]] || die "expected 6 sensor topics in $CONF, found ${#INSTANCES[@]}"
for i in "${INSTANCES[@]}"; do run_unit "$i"; done

# topic_json NAME: the topic's object of `shmbus list --json` on one line, or nothing
# yet; locked: shmid_ds.locked of `shmbus info NAME --json`.
topic_json() {
    "$SHMBUS" list --json --window 0 2>/dev/null | tr -d '\n ' | sed 's/},{"status"/}\n{"status"/g' |
        grep "\"name\":\"$1\"" || true
}
locked() { "$SHMBUS" info "$1" --json | tr -d '\n ' | grep -o '"locked":[a-z]*' | cut -d: -f2; }
field() { grep -o "\"$2\":[^,}]*" <<<"$1" | head -n1 | cut -d: -f2- | tr -d '"'; }
wait_live() { # wait_live NAME: up to 30 s (a loaded machine) for NAME's publisher to be live
    local j
    for _ in $(seq 1 300); do
        j=$(topic_json "$1")
        [[ -n "$j" && "$(field "$j" publisher_alive)" == true ]] && return 0
        sleep 0.1
    done
    cat "$WORK"/*.log
    die "topic $1 has no live publisher after 30 s"
}
names=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$CONF")
for n in $names; do
    ok=0
    for _ in $(seq 1 300); do # up to 30 s on a loaded machine
        j=$(topic_json "$n")
        if [[ -n "$j" && "$(field "$j" publisher_alive)" == true && "$(field "$j" generation)" -ge 1 ]]; then ok=1; break; fi
        sleep 0.1
    done
    [[ $ok == 1 ]] || { cat "$WORK"/*.log; die "topic $n has no live publisher after 30 s"; }
done
G1=() ; for n in $names; do G1+=("$(field "$(topic_json "$n")" generation)"); done
# Each topic publishes on: its generation moves past the one just read.
# Polled for up to 30 s (the slowest sensor publishes once a second), not
# read once after a fixed sleep, which a loaded machine can outlast.
k=0
for n in $names; do
    for _ in $(seq 1 300); do
        j=$(topic_json "$n")
        g=$(field "$j" generation)
        [[ "$g" -gt "${G1[$k]}" ]] && break
        sleep 0.1
    done
    [[ "$g" -gt "${G1[$k]}" ]] || die "topic $n did not publish in 30 s (generation ${G1[$k]} -> $g)"
    [[ "$(field "$j" owner)" == shmbus-sensors ]] || die "topic $n is owned by $(field "$j" owner), not shmbus-sensors"
    [[ "$(locked "$n")" == true ]] || die "topic $n is not locked in RAM"
    printf '    %-8s generation %6s -> %6s  owner %s  mode %s  locked\n' "$n" "${G1[$k]}" "$g" "$(field "$j" owner)" "$(field "$j" mode)"
    k=$((k + 1))
done
pass "6 topics publishing by shmbus-sensors, each seen to publish on, locked in RAM"
for p in "${SENSORS[@]}"; do
    [[ "$(awk '/^Uid:/ { print $2 }' "/proc/$p/status")" == "$uid" ]] || die "sensor $p does not run as shmbus-sensors"
    [[ "$(awk '/^Gid:/ { print $2 }' "/proc/$p/status")" == "$gid" ]] || die "sensor $p does not run in group shmbus"
    [[ "$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$p/status")" == 1 ]] || die "sensor $p lacks NoNewPrivileges"
    [[ "$(awk '/^Max locked memory/ { print $4 }' "/proc/$p/limits")" == "$MEMLOCK" ]] ||
        die "sensor $p has not the RLIMIT_MEMLOCK $MEMLOCK it was started with"
    [[ "$(awk '{ print $19 }' "/proc/$p/stat")" == "$(unit_get "$UNIT" Nice)" ]] || die "sensor $p has not the unit's Nice"
done
pass "each sensor runs as shmbus-sensors:shmbus, NoNewPrivs, nice $(unit_get "$UNIT" Nice), RLIMIT_MEMLOCK $MEMLOCK"
n=$(setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$SHMBUS" echo imu --all --count 5 --json --timeout 10 | grep -c '"generation"')
[[ $n == 5 ]] || die "user nobody read $n imu frames, expected 5"
pass "user nobody reads imu with /usr/bin/shmbus echo (5 frames)"
if [[ $HAVE_FFI == 1 ]]; then
    # Python: Debian's python3 (the one dist-packages belongs to) and the installed
    # module over the system's libshmbus.so.0 (found through ldconfig's cache).
    py=$(cd "$WORK" && timeout 60 /usr/bin/python3 - <<'PY'
import shmbus
assert shmbus.library_path() == "libshmbus.so.0", shmbus.library_path()
sub = shmbus.Subscriber("imu", bus="demo", wait=10.0)
frames = [sub.wait(timeout=10.0) for _ in range(5)]
assert all(f is not None and len(f["value"]["acc"]) == 3 for f in frames), frames
gens = [f["generation"] for f in frames]
assert gens == sorted(gens) and len(set(gens)) == 5, gens
sub.close()
print("python3-shmbus %s: 5 imu frames, generations %d..%d, via %s" % (shmbus.version(), gens[0], gens[-1], shmbus.library_path()))
PY
    ) || die "import shmbus did not read imu"
    echo "    $py"
    pass "python3: import shmbus reads imu through the system libshmbus.so.0"
    # C: built with pkg-config against libshmbus-dev, linked dynamically, then statically.
    # shellcheck disable=SC2046 # pkg-config prints words
    cc -std=c99 -Wall -Werror -o "$WORK/read-dyn" packaging/debian/tests/read-topic.c $(pkg-config --cflags --libs shmbus)
    grep -q 'NEEDED.*\[libshmbus\.so\.0\]' <<<"$(readelf -d "$WORK/read-dyn")" || die "read-topic is not linked to libshmbus.so.0"
    n=$(timeout 60 "$WORK/read-dyn" imu demo 5 | grep -c '^{')
    [[ $n == 5 ]] || die "the C program (dynamic) read $n imu frames, expected 5"
    pass "C: cc \$(pkg-config --cflags --libs shmbus): linked to libshmbus.so.0, read 5 imu frames"
    # shellcheck disable=SC2046 # pkg-config prints words
    cc -std=c99 -Wall -Werror -o "$WORK/read-static" packaging/debian/tests/read-topic.c $(pkg-config --cflags shmbus) \
        /usr/lib/x86_64-linux-gnu/libshmbus.a $(pkg-config --static --libs-only-l shmbus | sed 's/-lshmbus //')
    ! grep -q 'libshmbus' <<<"$(readelf -d "$WORK/read-static")" || die "read-topic (static) still needs libshmbus.so"
    n=$(timeout 60 "$WORK/read-static" imu demo 5 | grep -c '^{')
    [[ $n == 5 ]] || die "the C program (static libshmbus.a) read $n imu frames, expected 5"
    pass "C: libshmbus.a with shmbus.pc's Libs.private: read 5 imu frames"
    # The examples the packages ship, as a user copies them: the C subscriber built
    # from /usr/share/doc/libshmbus-dev/examples with pkg-config, reading what the
    # Python publisher from /usr/share/doc/python3-shmbus/examples publishes, both
    # over the system's libshmbus.so.0.
    ex_c=/usr/share/doc/libshmbus-dev/examples ex_py=/usr/share/doc/python3-shmbus/examples
    # shellcheck disable=SC2046 # pkg-config prints words
    cc -std=c99 -Wall -Werror -o "$WORK/c-sub" "$ex_c/shmbus-c-subscriber.c" $(pkg-config --cflags --libs shmbus) ||
        die "the shipped C example subscriber does not build with pkg-config"
    ex_key=0x79000301
    timeout 120 /usr/bin/python3 "$ex_py/imu_publisher.py" --key "$ex_key" --rate 200 --duration 90 \
        >"$WORK/ex-pub.log" 2>&1 &
    ex_pub=$!
    ex_out=$(timeout 60 "$WORK/c-sub" --key "$ex_key" --count 50 --timeout 20 --wait 30 2>&1) || true
    kill "$ex_pub" 2>/dev/null || true
    wait "$ex_pub" 2>/dev/null || true
    ipcrm -M "$ex_key" 2>/dev/null || true
    ipcrm -S "$ex_key" 2>/dev/null || true
    grep -q '^received 50 frames' <<<"$ex_out" ||
        { echo "$ex_out"; cat "$WORK/ex-pub.log"; die "the shipped examples: the C subscriber did not read 50 frames of the Python publisher"; }
    pass "the shipped examples: C subscriber (built with pkg-config) read 50 frames of the Python publisher"
fi
doc=$("$SHMBUS" doctor) || { echo "$doc"; die "shmbus doctor reports a FAIL with the sensors running"; }
grep -q "6 topics with a live publisher" <<<"$doc" || { echo "$doc"; die "doctor does not see 6 live topics"; }
pass "shmbus doctor: 6 topics with a live publisher"
for p in "${SENSORS[@]}"; do kill -TERM "$p"; done # what systemctl stop sends
for p in "${SENSORS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$p" 2>/dev/null || die "sensor $p still runs 10 s after SIGTERM"
done
SENSORS=()
pass "every sensor stopped on SIGTERM"

# =====================================================================================
step "upgrade with an unedited conffile: the new default config replaces it"
repack "$DEB" "$V+debtest1" "# upgrade test 1" "$WORK/shmbus_up1.deb"
apt_install "$WORK/shmbus_up1.deb" >"$WORK/up1.log" 2>&1 || { cat "$WORK/up1.log"; die "upgrade 1 failed"; }
[[ "$(dpkg-query -W -f='${Version}' shmbus)" == "$V+debtest1" ]] || die "upgrade 1 did not install $V+debtest1"
[[ "$(tail -n1 "$CONF")" == "# upgrade test 1" ]] || die "the unedited $CONF was not replaced by the new one"
[[ ! -e "$CONF.dpkg-dist" && ! -e "$CONF.dpkg-old" ]] || die "an unedited conffile left .dpkg-dist/.dpkg-old"
! grep -q 'created system' "$WORK/up1.log" || die "upgrade created the user or group again"
pass "upgrade $V -> $V+debtest1: unedited $CONF replaced, user kept"

# =====================================================================================
step "upgrade with an edited conffile and too small kernel.shmmni and kernel.sem"
echo "# local edit" >>"$CONF"
cp "$CONF" "$WORK/edited.toml"
# In this namespace only: the topics' segments and 6 publisher locks exist, so 4
# segments (kernel.shmmni) and 4 semaphore sets (SEMMNI, kernel.sem's 4th field) are
# too few: doctor FAILs both.
sysv() { tr -s ' \t' '  ' <"/proc/sys/kernel/$1"; }
echo 4 >/proc/sys/kernel/shmmni
read -r msl mns opm _ < <(sysv sem)
LOW_SEM="$msl $mns $opm 4"
echo "$LOW_SEM" >/proc/sys/kernel/sem
repack "$DEB" "$V+debtest2" "# upgrade test 2" "$WORK/shmbus_up2.deb"
apt_install "$WORK/shmbus_up2.deb" >"$WORK/up2.log" 2>&1 || { cat "$WORK/up2.log"; die "upgrade 2 failed"; }
grep '^shmbus:' "$WORK/up2.log" | sed 's/^/    /'
cmp -s "$CONF" "$WORK/edited.toml" || die "the upgrade changed the edited $CONF"
[[ "$(tail -n1 "$CONF.dpkg-dist")" == "# upgrade test 2" ]] || die "no $CONF.dpkg-dist with the new default"
pass "upgrade -> $V+debtest2: edited $CONF kept, new default in $CONF.dpkg-dist"
raised=$(sysv shmmni) raised_sem=$(sysv sem)
[[ $raised -gt 4 ]] || die "kernel.shmmni is still $raised"
[[ ${raised_sem##* } -gt 4 ]] || die "kernel.sem is still $raised_sem"
grep -qx "kernel.shmmni = $raised" "$DROPIN" || die "$DROPIN does not set kernel.shmmni = $raised: $(cat "$DROPIN")"
grep -qx "kernel.sem = $raised_sem" "$DROPIN" || die "$DROPIN does not set kernel.sem = $raised_sem: $(cat "$DROPIN")"
grep -q "raised kernel.shmmni from 4 to $raised" "$WORK/up2.log" || die "postinst did not say what it changed"
grep -q "raised kernel.sem from $LOW_SEM to $raised_sem" "$WORK/up2.log" || die "postinst did not say what it changed"
doc=$("$SHMBUS" doctor --config "$CONF") || true
grep -q '^OK    shmmni' <<<"$doc" && grep -q '^OK    sem' <<<"$doc" || { echo "$doc"; die "doctor still FAILs after postinst"; }
pass "postinst raised kernel.shmmni 4 -> $raised and kernel.sem '$LOW_SEM' -> '$raised_sem', kept them in $DROPIN and said so"
sed 's/^/    /' "$DROPIN"

# =====================================================================================
step "upgrade in a chroot image build, under a policy-rc.d that forbids restarts"
# An image build runs postinst in a chroot, where /proc/sys is the build host's kernel:
# postinst must leave it and the drop-in alone, however small its limits. ischroot
# (debianutils) answers through a stand-in on dpkg's PATH, as it does in a real chroot; a
# policy-rc.d that exits 101, as image builders and containers install, must stop the
# restart of the sensors.
echo 4 >/proc/sys/kernel/shmmni
cp "$DROPIN" "$WORK/dropin.before"
mkdir -p "$WORK/chroot-bin"
printf '#!/bin/sh\nexit 0\n' >"$WORK/chroot-bin/ischroot"
chmod 755 "$WORK/chroot-bin/ischroot"
if [[ -e /usr/sbin/policy-rc.d || -L /usr/sbin/policy-rc.d ]]; then
    mv /usr/sbin/policy-rc.d "$WORK/policy-rc.d.orig"
fi
POLICY_PUT=1
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
repack "$DEB" "$V+debtest3" "# upgrade test 3" "$WORK/shmbus_up3.deb"
# apt runs dpkg, and so the maintainer scripts, with its own PATH: DPkg::Path.
apt_install -o DPkg::Path="$WORK/chroot-bin:$ESSENTIAL_BIN" \
    "$WORK/shmbus_up3.deb" >"$WORK/up3.log" 2>&1 ||
    { cat "$WORK/up3.log"; die "upgrade 3 failed"; }
grep '^shmbus:' "$WORK/up3.log" | sed 's/^/    /'
restore_policy
[[ "$(sysv shmmni)" == 4 ]] || die "postinst in a chroot changed the running kernel's kernel.shmmni to $(sysv shmmni)"
cmp -s "$DROPIN" "$WORK/dropin.before" || die "postinst in a chroot changed $DROPIN: $(cat "$DROPIN")"
grep -q 'in a chroot.*neither checked nor changed' "$WORK/up3.log" || die "postinst did not say it left the limits alone in a chroot"
grep -q 'policy-rc.d does not allow restarts (exit 101)' "$WORK/up3.log" || die "postinst did not honour policy-rc.d"
pass "upgrade -> $V+debtest3 in a chroot: kernel.shmmni left at 4 and $DROPIN unchanged; policy-rc.d's 101 stopped the restart, and postinst said both"
echo "$raised" >/proc/sys/kernel/shmmni

# =====================================================================================
step "postinst run again (as dpkg --configure does): doctor warning on stderr, printing garbage, failing; no CAP_SYS_NICE"
# postinst reads `shmbus doctor --sysctl` to write the drop-in. Only doctor's standard
# output may reach the file, and only lines that are System V limit settings: a notice
# on standard error (a later version's), a garbled output or a failure must leave a
# drop-in that `sysctl --system` takes, say what happened, and not fail the configure.
# /usr/bin/shmbus is replaced by a stand-in for each run (put back by the trap).
POSTINST=/var/lib/dpkg/info/shmbus.postinst
[[ -x $POSTINST ]] || die "no $POSTINST"
mv "$SHMBUS" "$WORK/shmbus.real"
SHMBUS_ASIDE=1
fake_doctor() { # fake_doctor SH-BODY: /usr/bin/shmbus runs SH-BODY for `doctor`, the real one otherwise
    printf '#!/bin/sh\nif [ "$1" = doctor ]; then\n%s\nfi\nexec %s "$@"\n' "$1" "$WORK/shmbus.real" >"$SHMBUS"
    chmod 755 "$SHMBUS"
}
configure_again() { # configure_again LOG [WRAPPER...]: postinst configure, as after an upgrade
    local log=$1 rc=0
    shift
    "$@" env -i PATH="$ESSENTIAL_BIN" DPKG_MAINTSCRIPT_PACKAGE=shmbus DPKG_MAINTSCRIPT_NAME=postinst \
        "$POSTINST" configure "$(dpkg-query -W -f='${Version}' shmbus)" >"$log" 2>&1 || rc=$?
    [[ $rc == 0 ]] || { cat "$log"; die "postinst configure failed (exit $rc)"; }
    grep '^shmbus:' "$log" | sed 's/^/    /'
}
# Every line of the drop-in a comment or `kernel.NAME = NUMBERS`, as sysctl reads it.
dropin_valid() { ! grep -v -E '^(#.*|kernel\.(shmmax|shmall|shmmni|sem) = [0-9]+( [0-9]+){0,3}|)$' "$DROPIN"; }

# 1. A notice on stderr (with " = " in it, as a config message may have), then the
#    real output, while kernel.shmmni is too small again.
echo 4 >/proc/sys/kernel/shmmni
fake_doctor "echo 'shmbus: warning: [topic.imu] slots = 3 is deprecated, write ring = 3' >&2"
configure_again "$WORK/conf1.log"
grep -q '^shmbus: warning: \[topic.imu\] slots = 3 is deprecated' "$WORK/conf1.log" || die "doctor's notice on stderr was not shown"
bad=$(dropin_valid) || die "postinst wrote doctor's standard error into $DROPIN: $bad"
[[ "$(sysv shmmni)" -gt 4 ]] || die "postinst did not raise kernel.shmmni from 4 (it is $(sysv shmmni))"
grep -qx "kernel.shmmni = $(sysv shmmni)" "$DROPIN" || die "$DROPIN does not set kernel.shmmni = $(sysv shmmni)"
pass "doctor's notice on stderr shown, not written: $DROPIN holds only settings (kernel.shmmni 4 -> $(sysv shmmni))"

# 2. Garbage on standard output, exit 0: nothing may be written or set.
cp "$DROPIN" "$WORK/dropin.good"
before=$(sysv shmmni)
# (Only names of this IPC namespace: a postinst that wrote them anyway changes nothing
# outside it.)
fake_doctor "printf '# kernel.shmmni: too small\nkernel.shmmni = 64\nkernel.shmmni = 12ab\\033[31m\nkernel.msgmni = 64\n'; exit 0"
configure_again "$WORK/conf2.log"
cmp -s "$DROPIN" "$WORK/dropin.good" || die "postinst wrote doctor's garbage into $DROPIN: $(diff "$WORK/dropin.good" "$DROPIN")"
[[ "$(sysv shmmni)" == "$before" ]] || die "postinst set kernel.shmmni to $(sysv shmmni) from a garbled doctor output"
[[ ! -e $DROPIN.new && ! -e $DROPIN.tmp ]] || die "postinst left $DROPIN.new or .tmp"
grep -q "^shmbus: WARNING: 'shmbus doctor .*--sysctl' printed a line that is not a System V limit setting: 'kernel.shmmni = 12ab?\[31m'. Nothing was written" "$WORK/conf2.log" ||
    die "postinst did not say (escaped) which line of doctor's output it refused"
pass "a garbled doctor output: $DROPIN and kernel.shmmni unchanged, the line refused shown escaped, configure succeeds"

# 3. doctor fails (a config error): its message, and that nothing changed.
fake_doctor "echo 'shmbus: error: /etc/shmbus/shmbus.toml: topic imu: slots must be at least 1' >&2; exit 2"
configure_again "$WORK/conf3.log"
grep -q '^shmbus: error: /etc/shmbus/shmbus.toml: topic imu: slots must be at least 1' "$WORK/conf3.log" || die "doctor's error was not shown"
grep -q "^shmbus: WARNING: the System V limits for $CONF were not checked: .*failed (exit 2" "$WORK/conf3.log" ||
    die "postinst did not say that the limits were not checked"
cmp -s "$DROPIN" "$WORK/dropin.good" || die "postinst changed $DROPIN after doctor failed"
pass "doctor failing: its message and postinst's WARNING shown, $DROPIN unchanged, configure succeeds"
mv "$WORK/shmbus.real" "$SHMBUS"
SHMBUS_ASIDE=0

# 4. Without CAP_SYS_NICE (a container): SCHED_FIFO cannot be set, so
#    shmbus-sensor-imu.service cannot start. postinst says so, naming the capability
#    and the unit to use instead; a WARNING when that unit is enabled. (With the
#    capability, as in the first install above, it says nothing.)
if chrt -f 50 true 2>/dev/null; then
    ! grep -q 'SCHED_FIFO' <<<"$FIRST_INSTALL_OUT" || die "postinst spoke of SCHED_FIFO on a machine that allows it"
fi
# setpriv (util-linux): root without CAP_SYS_NICE from here on, as in a container.
NO_NICE=(setpriv --bounding-set -sys_nice --)
! "${NO_NICE[@]}" chrt -f 50 true 2>/dev/null || die "${NO_NICE[*]} did not take SCHED_FIFO away"
configure_again "$WORK/conf4.log" "${NO_NICE[@]}"
grep -q "^shmbus: this system does not allow SCHED_FIFO ('chrt -f 50': .*Operation not permitted.*CAP_SYS_NICE .*shmbus-sensor-imu.service would fail to start here .*use shmbus-sensor@imu.service" "$WORK/conf4.log" ||
    die "postinst did not say that shmbus-sensor-imu.service cannot start without CAP_SYS_NICE"
IMU_LINK=/etc/systemd/system/multi-user.target.wants/shmbus-sensor-imu.service
[[ ! -e $IMU_LINK && ! -L $IMU_LINK ]] || die "$IMU_LINK exists on this machine already"
mkadmin_dir "${IMU_LINK%/*}"
ADMIN_MADE+=("$IMU_LINK")
ln -s /usr/lib/systemd/system/shmbus-sensor-imu.service "$IMU_LINK"
configure_again "$WORK/conf5.log" "${NO_NICE[@]}"
grep -q "^shmbus: WARNING: this system does not allow SCHED_FIFO .*shmbus-sensor-imu.service is enabled but cannot start here .*systemctl disable shmbus-sensor-imu && systemctl enable --now shmbus-sensor@imu.*CAP_SYS_NICE" "$WORK/conf5.log" ||
    die "postinst did not warn that the enabled shmbus-sensor-imu.service cannot start without CAP_SYS_NICE"
remove_admin_made
pass "without CAP_SYS_NICE postinst says shmbus-sensor-imu.service cannot start, names the capability and shmbus-sensor@imu (a WARNING when it is enabled)"

# =====================================================================================
step "a deleted conffile: an upgrade keeps it deleted and says so; dpkg -i --force-confmiss restores it"
# As INSTALL.md "Upgrade" says: dpkg takes the deletion as the administrator's choice,
# so the sensor units (which read $CONF) would fail to start after any upgrade.
rm "$CONF"
repack "$DEB" "$V+debtest4" "# upgrade test 4" "$WORK/shmbus_up4.deb"
apt_install "$WORK/shmbus_up4.deb" >"$WORK/up4.log" 2>&1 || { cat "$WORK/up4.log"; die "upgrade 4 (deleted conffile) failed"; }
grep '^shmbus:' "$WORK/up4.log" | sed 's/^/    /'
[[ "$(dpkg-query -W -f='${Version}' shmbus)" == "$V+debtest4" ]] || die "upgrade 4 did not install $V+debtest4"
[[ ! -e $CONF ]] || die "the upgrade brought back the deleted $CONF (INSTALL.md says it does not)"
grep -q "^shmbus: WARNING: $CONF is missing .*the sensor units read it and will not start.* dpkg -i --force-confmiss FILE.deb" "$WORK/up4.log" ||
    die "postinst did not warn that $CONF is missing and how to restore it"
pass "upgrade -> $V+debtest4 with $CONF deleted: kept deleted, and postinst warned, naming dpkg -i --force-confmiss"
# INSTALL.md's command, as written (dpkg itself, not apt).
dpkg -i --force-confmiss "$WORK/shmbus_up4.deb" >"$WORK/confmiss.log" 2>&1 || { cat "$WORK/confmiss.log"; die "dpkg -i --force-confmiss failed"; }
[[ -f $CONF && "$(tail -n1 "$CONF")" == "# upgrade test 4" ]] || die "dpkg -i --force-confmiss did not restore the package's default $CONF"
! grep -q "WARNING: $CONF is missing" "$WORK/confmiss.log" || die "postinst warned of a missing $CONF after it was restored"
dpkg-deb --fsys-tarfile "$WORK/shmbus_up4.deb" | tar -xO ".$CONF" >"$WORK/shipped.toml"
cmp -s "$CONF" "$WORK/shipped.toml" || die "the restored $CONF differs from the one in the package: $(diff "$WORK/shipped.toml" "$CONF")"
pass "dpkg -i --force-confmiss restored $CONF as the package ships it, and postinst no longer warns"

# =====================================================================================
step "remove: programs and the stopped sensors' topics go, configuration and user stay"
# The sensors stopped above left their 6 topics (locked in RAM until reboot otherwise);
# one more runs as shmbus-sensors outside any unit, as an administrator may start one:
# remove takes the 5 stopped ones with their locks and keeps the running one.
run_unit system
wait_live system
mine() { awk -v u="$1" 'FNR > 1 && ((FILENAME ~ /shm$/ && $10 == u && $1 != 0) || (FILENAME ~ /sem$/ && $7 == u))' /proc/sysvipc/shm /proc/sysvipc/sem | wc -l; }
[[ $(mine "$uid") -ge 12 ]] || die "only $(mine "$uid") System V objects of shmbus-sensors before remove (6 topics and 6 locks expected)"
live_shmid=$(field "$(topic_json system)" shmid)
"${APT[@]}" remove "${PKGS[@]}" >"$WORK/rm.log" 2>&1 || { cat "$WORK/rm.log"; die "apt-get remove failed"; }
grep '^shmbus:' "$WORK/rm.log" | sed 's/^/    /'
[[ $(grep -c "^shmbus: *removed topic '" "$WORK/rm.log") == 5 ]] || die "prerm did not say it removed the 5 stopped sensors' topics"
grep -q "^shmbus: *topic 'system' .*has a live publisher, pid ${SENSORS[0]}" "$WORK/rm.log" ||
    die "prerm did not say it kept the topic whose publisher runs"
[[ $(mine "$uid") == 2 ]] || die "after remove, $(mine "$uid") System V objects of shmbus-sensors (the live topic and its lock expected)"
awk -v id="$live_shmid" 'NR > 1 && $2 == id && $1 != 0' /proc/sysvipc/shm | grep -q . ||
    die "remove took the topic 'system' (shmid $live_shmid) whose publisher runs"
kill -TERM "${SENSORS[0]}"
wait "${SENSORS[0]}" 2>/dev/null || true
SENSORS=()
pass "remove took the 5 stopped sensors' topics and their locks, kept the one whose publisher ran, and said both"
[[ "$(dpkg-query -W -f='${db:Status-Status}' shmbus)" == config-files ]] || die "not in state config-files after remove"
[[ ! -e /usr/lib/python3/dist-packages/shmbus ]] || die "python3-shmbus left $(find /usr/lib/python3/dist-packages/shmbus)"
[[ ! -e "$SHMBUS" && -e "$CONF" && -e "$DROPIN" ]] || die "remove took the wrong things"
getent passwd shmbus-sensors >/dev/null || die "remove deleted the user (only purge may)"
pass "removed ${PKGS[*]}: programs and module gone (no __pycache__ left); $CONF, $DROPIN and shmbus-sensors kept"

# =====================================================================================
step "purge: everything the package made goes, and nothing else"
# What remove kept: the topic whose publisher ran then, and its lock.
OBJECTS=$(mine "$uid")
[[ $OBJECTS == 2 ]] || die "$OBJECTS System V objects of shmbus-sensors before purge (the system topic and its lock expected)"
mkdir -p /etc/shmbus
echo "not the package's" >"$MARK"
# Packages without conffiles are gone entirely after remove; purge what dpkg still knows.
left=()
for p in "${PKGS[@]}"; do installed "$p" && left+=("$p"); done
[[ "${left[*]}" == shmbus ]] || die "after remove, dpkg still knows '${left[*]}' (expected shmbus, with its conffile)"
"${APT[@]}" purge "${left[@]}" >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; die "apt-get purge failed"; }
grep '^shmbus:' "$WORK/purge.log" | sed 's/^/    /'
[[ "$(cat "$MARK")" == "not the package's" ]] || die "purge removed a file the package did not make"
rm "$MARK"
[[ $HAD_ETC == 1 ]] || rmdir /etc/shmbus
pass "purge left a file it did not make ($MARK)"
[[ "$(sysv shmmni)" == 4 ]] || die "purge did not restore kernel.shmmni to 4 (it is $(sysv shmmni))"
[[ "$(sysv sem)" == "$LOW_SEM" ]] || die "purge did not restore kernel.sem to $LOW_SEM (it is $(sysv sem))"
grep -q "restored kernel.shmmni to 4" "$WORK/purge.log" || die "postrm did not say it restored kernel.shmmni"
grep -q "restored kernel.sem to $LOW_SEM" "$WORK/purge.log" || die "postrm did not say it restored kernel.sem"
grep -q "removed $OBJECTS System V objects" "$WORK/purge.log" || die "postrm did not remove the sensors' $OBJECTS System V objects"
pass "purge restored kernel.shmmni and kernel.sem and removed the sensors' $OBJECTS System V objects (the topic remove kept, with its lock)"
AFTER=$(snapshot)
if [[ "$AFTER" != "$BEFORE" ]]; then
    diff <(echo "$BEFORE") <(echo "$AFTER") | sed 's/^/    /' >&2
    die "the machine differs after purge (< before install, > after purge)"
fi
pass "after purge the machine is as before: no files, user, group, drop-in, links or System V objects"
echo "$AFTER" | sed 's/^/    /'

# =====================================================================================
step "on a minimal system (no /etc/sysctl.d), purge after the user shmbus-sensors was deleted by hand"
# A minimal image (debootstrap minbase, a container) has neither procps nor systemd,
# which ship /etc/sysctl.d. The kernel's limits are still too small here (purge put
# back kernel.shmmni 4): postinst must make the directory for its drop-in, say that
# nothing on the system applies it at boot, and purge remove both.
if [[ -e /etc/sysctl.d ]]; then
    SYSCTLD_ASIDE=/etc/.sysctl.d.deb-test-$$
    mv /etc/sysctl.d "$SYSCTLD_ASIDE"
fi
out=$(apt_install "$DEB" 2>&1) || { echo "$out"; die "apt-get install (second round, no /etc/sysctl.d) failed"; }
echo "$out" | grep '^shmbus:' | sed 's/^/    /'
grep -qx "kernel.shmmni = $(sysv shmmni)" "$DROPIN" || die "postinst did not write $DROPIN on a system without /etc/sysctl.d"
grep -q "no /etc/sysctl.d here .*nothing applies it at boot" <<<"$out" || die "postinst did not say that nothing applies $DROPIN at boot"
pass "no /etc/sysctl.d: postinst made it, raised kernel.shmmni to $(sysv shmmni), wrote $DROPIN and said that nothing applies it at boot"
# System V objects keep the creator's uid, not the name: once `userdel shmbus-sensors`
# has run, purge must still find the sensors' topics (locked in RAM until reboot
# otherwise) through the uid postinst recorded, and touch nobody else's.
uid2=$(id -u shmbus-sensors) || die "postinst did not create shmbus-sensors again"
run_unit system
wait_live system
kill -TERM "${SENSORS[0]}"
wait "${SENSORS[0]}" 2>/dev/null || true
SENSORS=()
n=$(mine "$uid2")
[[ $n -ge 2 ]] || die "only $n System V objects of uid $uid2 (the system topic and its lock expected)"
userdel shmbus-sensors
"${APT[@]}" purge shmbus >"$WORK/purge2.log" 2>&1 || { cat "$WORK/purge2.log"; die "apt-get purge after userdel failed"; }
grep '^shmbus:' "$WORK/purge2.log" | sed 's/^/    /'
[[ $(mine "$uid2") == 0 ]] || die "purge left $(mine "$uid2") System V objects of the deleted user's uid $uid2"
grep -q "removed $n System V objects .*(uid $uid2)" "$WORK/purge2.log" || die "postrm did not say it removed the $n objects of uid $uid2"
[[ ! -e /etc/sysctl.d ]] || die "purge left the /etc/sysctl.d that postinst made: $(ls -A /etc/sysctl.d)"
restore_sysctld
AFTER=$(snapshot)
if [[ "$AFTER" != "$BEFORE" ]]; then
    diff <(echo "$BEFORE") <(echo "$AFTER") | sed 's/^/    /' >&2
    die "the machine differs after the second purge (< before install, > after purge)"
fi
pass "userdel shmbus-sensors, then purge: the $n System V objects of uid $uid2 removed, /etc/sysctl.d that postinst made removed, the machine as before"

# =====================================================================================
step "over an install by hand (units in /etc/systemd/system, a regular user shmbus-sensors)"
# configs/README.md's install by hand copies the units to /etc/systemd/system, where
# they take precedence over the package's in /usr/lib/systemd/system: after
# `apt install` systemd would go on running /usr/local/bin's programs. postinst must
# say so. The copy's enable link (pointing at /etc/systemd/system) is the
# administrator's: purge removes only the links to the package's unit files.
# The administrator also made shmbus-sensors a regular user, whose topics
# systemd-logind deletes when a session of that user ends: postinst must say that too,
# and purge keep the user.
getent passwd shmbus-sensors >/dev/null && die "user shmbus-sensors exists before the third round"
ADMIN_USER=1
useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin shmbus-sensors
admin_uid=$(id -u shmbus-sensors)
[[ $admin_uid -ge 1000 ]] || die "useradd without --system gave uid $admin_uid"
WANTS=/etc/systemd/system/multi-user.target.wants
mkadmin_dir "$WANTS"
HAND=/etc/systemd/system/shmbus-sensor@.service
for f in "$HAND" "$WANTS"/shmbus-sensor{@power,@thermal,-imu}.service; do
    [[ ! -e $f && ! -L $f ]] || die "$f exists on this machine already"
done
ADMIN_MADE+=("$HAND" "$WANTS/shmbus-sensor@power.service")
cp configs/systemd/shmbus-sensor@.service "$HAND"
ln -s "$HAND" "$WANTS/shmbus-sensor@power.service"
# And a full copy of the package's IMU unit (ExecStart in /usr/bin), edited by hand
# instead of with a drop-in: it runs the package's program, so postinst must not
# claim otherwise, only that the package's changes to the unit do not reach it.
COPY=/etc/systemd/system/shmbus-sensor-imu.service
[[ ! -e $COPY && ! -L $COPY ]] || die "$COPY exists on this machine already"
ADMIN_MADE+=("$COPY")
sed 's#/usr/local/bin/#/usr/bin/#' configs/systemd/shmbus-sensor-imu.service >"$COPY"
out=$(apt_install "$DEB" 2>&1) || { echo "$out"; die "apt-get install (third round, units by hand) failed"; }
echo "$out" | grep '^shmbus:' | sed 's/^/    /'
grep -q "^shmbus: $HAND overrides the unit of this package .*/usr/local/bin/shmbus-sensor-%i" <<<"$out" ||
    die "postinst did not say that $HAND overrides the package's unit"
grep -q "^shmbus: $COPY overrides the unit of this package (a full copy): .*systemctl edit shmbus-sensor-imu.service" <<<"$out" ||
    die "postinst did not say that $COPY, a full copy running /usr/bin's program, keeps the package's changes out"
! grep -q "^shmbus: $COPY .*not the programs of /usr/bin" <<<"$out" || die "postinst says that $COPY does not run /usr/bin's program"
pass "postinst says that $HAND (a copy by hand, /usr/local/bin) overrides the package's unit, and how to switch; and that $COPY (a full copy, /usr/bin) misses the package's changes"
grep -q "^shmbus: user shmbus-sensors exists already (uid $admin_uid) and is not a system user .*RemoveIPC=" <<<"$out" ||
    die "postinst did not say that the existing shmbus-sensors (uid $admin_uid) is a regular user, whose topics logind removes"
! grep -q 'created system user' <<<"$out" || die "postinst created shmbus-sensors although it existed"
pass "postinst says that the existing shmbus-sensors (uid $admin_uid) is not a system user, and what logind's RemoveIPC= does to its topics"
# Enable links of the package's units, as `systemctl enable` makes them (through
# /usr/lib or, on a merged /usr, /lib): purge's.
ADMIN_MADE+=("$WANTS/shmbus-sensor@thermal.service" "$WANTS/shmbus-sensor-imu.service")
ln -s /usr/lib/systemd/system/shmbus-sensor@.service "$WANTS/shmbus-sensor@thermal.service"
ln -s /lib/systemd/system/shmbus-sensor-imu.service "$WANTS/shmbus-sensor-imu.service"
"${APT[@]}" purge shmbus >"$WORK/purge3.log" 2>&1 || { cat "$WORK/purge3.log"; die "apt-get purge (third round) failed"; }
[[ "$(readlink "$WANTS/shmbus-sensor@power.service")" == "$HAND" && -f $HAND && -f $COPY ]] ||
    die "purge removed a unit installed by hand or its enable link"
[[ ! -L $WANTS/shmbus-sensor@thermal.service && ! -L $WANTS/shmbus-sensor-imu.service ]] ||
    die "purge left the enable links of the package's units"
pass "purge removed the enable links of the package's units and kept the one of the unit installed by hand"
[[ "$(id -u shmbus-sensors 2>/dev/null)" == "$admin_uid" ]] || die "purge removed the user shmbus-sensors that the administrator made"
pass "purge kept the administrator's user shmbus-sensors"
remove_admin_made
userdel shmbus-sensors
ADMIN_USER=0
AFTER=$(snapshot)
if [[ "$AFTER" != "$BEFORE" ]]; then
    diff <(echo "$BEFORE") <(echo "$AFTER") | sed 's/^/    /' >&2
    die "the machine differs after the third purge (< before install, > after purge)"
fi
pass "the machine as before"
echo
echo "ci/deb-test.sh: all $NPASS checks passed"
