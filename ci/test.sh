#!/usr/bin/env bash
# ci/test.sh — THE test command of shmbus (README; .ci/run calls it).
#
# Runs on a fresh Debian 12 machine as root, with only package registries
# reachable, in these stages (each timed; a table at the end):
#   ci-limits ci/tools/stages-test.sh: the time limits below stop a hang
#   host      cargo fmt --check, clippy -D warnings, cargo doc -D warnings,
#             cargo test --workspace, loom model
#   arm       ci/install-arm.sh, then the whole workspace test suite for armv7
#             under qemu-arm (Debian's rustc 1.85 + armhf std)
#   mixed     ci/mixed-arch.sh: x86_64 and armv7 processes sharing one segment
#   board     static armv7 binaries (profile `board`), their stripped sizes and
#             those of `shmbus` per cargo feature set, an initramfs with
#             shmbus-board as /init and the board feature set's `shmbus`, booted
#             on QEMU's i.MX6UL EVK (ci/board/boot.sh: PASS only on the guest's
#             explicit marker)
#   ffi       ci/ffi-test.sh: libshmbus (C) and the Python module, host and
#             armv7 under qemu-arm, against the Rust examples both ways
#   foxglove  ci/foxglove-test.sh: `shmbus foxglove` against Foxglove's own
#             client library (npm), x86_64 and the armv7 server under qemu-arm
#   bridge    ci/bridge-test.sh: the MQTT bridge against Debian's Mosquitto
#             (boards as IPC namespaces, faults, TLS, the armv7 bridge under
#             qemu-arm, a 50-board fleet)
#   deb       ci/install-arm.sh, then ci/deb.sh: shmbus_VERSION_{amd64,armhf}.deb
#             (SHMBUS_CI_DEB_ARCHES=amd64,armhf,arm64: arm64 too, after --arm64);
#             ci/deb-test.sh: contents (dpkg-deb -I/-c), armhf (arm64) binaries under
#             qemu, amd64 install/run/upgrade/purge on this machine (private IPC namespace)
#   extras    ci/fuzz.sh and the quick benchmark, when present
# Every stage runs even if an earlier one failed (unless it needs that one's
# output); the exit status is non-zero if any stage failed. A hang ends as a
# failure: every test binary of host-test and arm-test is stopped after
# SHMBUS_TEST_BINARY_TIMEOUT (600 s, ci/tools/bounded-run), every stage after
# SHMBUS_STAGE_TIMEOUT (1800 s), and no stage runs past SHMBUS_CI_BUDGET (5000 s)
# from the start (ci/tools/stages.sh), so the summary always comes.
#
# Env: SHMBUS_STRESS_SCALE (armv7 stage, default 0.05), SHMBUS_CI_MORE_SIZES=1
# (two more feature sets' sizes in the board stage), SHMBUS_CI_STAGES (a
# comma list of stage names to run, default all; a name that is no stage is
# refused), SHMBUS_BOARD_TIMEOUT (600 s),
# SHMBUS_TEST_BINARY_TIMEOUT, SHMBUS_STAGE_TIMEOUT, SHMBUS_CI_BUDGET (above).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export CARGO_INCREMENTAL=0
ARM_SCALE=${SHMBUS_STRESS_SCALE:-0.05}
ONLY=${SHMBUS_CI_STAGES:-}

# The stage runner: stage, skip, passed, wanted, banner, stage_table, and the
# time limits (SHMBUS_STAGE_TIMEOUT, SHMBUS_CI_BUDGET).
source ci/tools/stages.sh
# Every stage below, in order; SHMBUS_CI_STAGES may name only these
# (ci/tools/stages-test.sh checks that each `stage NAME` is one of them).
STAGES=(ci-limits host-fmt host-clippy host-doc host-test host-loom arm-install arm-test mixed-arch
    board-build board-boot ffi foxglove bridge deb-build deb-test fuzz bench-quick)
only_stages "${STAGES[@]}"

ensure_host_tools() {
    # rustfmt and clippy come with rustup's default profile; install them if not.
    if command -v rustup >/dev/null; then
        for c in rustfmt clippy; do
            grep -q "^$c" <<<"$(rustup component list --installed 2>/dev/null)" || rustup component add "$c"
        done
    fi
}

# ---------------------------------------------------------------- host
host_fmt() { ensure_host_tools && cargo fmt --all -- --check; }
host_clippy() { cargo clippy --workspace --all-targets -- -D warnings; }
# The API docs build without a broken link or a stray HTML tag.
host_doc() { RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps; }
# Every test binary runs under ci/tools/bounded-run: one that hangs fails by
# itself, and the binaries after it still run.
BOUNDED_RUN="$PWD/ci/tools/bounded-run"
# Before it stops a hung binary, bounded-run dumps its processes, with gdb's
# backtraces when gdb is there: Debian's gdb, installed here for host-test
# (arm-test's comes with ci/install-arm.sh). Without it the dump still has
# /proc's view, so a failed install only warns.
ensure_gdb() {
    command -v gdb >/dev/null && return 0
    echo "host-test: installing Debian's gdb (bounded-run's backtraces of a hung test binary)"
    { apt-get update -qq || true; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gdb; } ||
        echo "host-test: WARNING: gdb could not be installed: a hung test binary's dump will have no backtraces" >&2
}
host_test() {
    local host
    ensure_gdb
    host=$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z.-' 'A-Z__')
    env "CARGO_TARGET_${host}_RUNNER=$BOUNDED_RUN" cargo test --workspace --no-fail-fast
}
host_loom() { bash crates/shmbus-core/loom.sh; }

# ---------------------------------------------------------------- armv7
arm_install() { ci/install-arm.sh; }
arm_test() {
    source ci/arm-env.sh
    if [[ ${G_SLICE:-} != always-malloc ]]; then
        echo "ci/arm-env.sh did not export G_SLICE=always-malloc: without it qemu-arm 7.2 can deadlock in a fork under threads, and a test waits for good" >&2
        return 1
    fi
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="$BOUNDED_RUN $CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER" \
        SHMBUS_TEST_RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf" SHMBUS_STRESS_SCALE=$ARM_SCALE \
        arm_cargo test --workspace --no-fail-fast
}

# ---------------------------------------------------------------- board
BOARD_DIR=target/armv7-static/armv7-unknown-linux-gnueabihf/board
# The `shmbus` CLI's cargo feature sets whose armv7 size the summary shows, as
# NAME=FEATURES (crates/shmbus-cli/Cargo.toml): those of the table in
# docs/CROSS.md. The first is what the board image takes; `full` is the default
# build (every command family), which the foxglove stage then finds built.
# Each set is one more LTO build of the CLI (minutes on 2 cores): set
# SHMBUS_CI_MORE_SIZES=1 for the board set with each network family too.
CLI_FEATURE_SETS=("board=record" "core=")
if [[ ${SHMBUS_CI_MORE_SIZES:-0} == 1 ]]; then
    CLI_FEATURE_SETS+=("board+foxglove=record,foxglove" "board+bridge=record,bridge")
fi
CLI_FEATURE_SETS+=("full=default") # last: the foxglove stage builds the same
board_build() {
    source ci/arm-env.sh
    rm -rf target/board-stripped target/board-console.log target/cli-sizes # nothing stale from an earlier run
    arm_cargo_static build --profile board --workspace --bins
    mkdir -p target/board-stripped target/cli-sizes
    local b set name features
    for b in $(board_bins); do
        arm-linux-gnueabihf-strip -o "target/board-stripped/$(basename "$b")" "$b"
    done
    # The CLI once per feature set (only shmbus-cli and the final link rebuild).
    for set in "${CLI_FEATURE_SETS[@]}"; do
        name=${set%%=*} features=${set#*=}
        if [[ $features == default ]]; then
            arm_cargo_static build --profile board -p shmbus-cli --bin shmbus
        else
            arm_cargo_static build --profile board -p shmbus-cli --bin shmbus --no-default-features --features "$features"
        fi
        arm-linux-gnueabihf-strip -o "target/cli-sizes/shmbus-$name" "$BOARD_DIR/shmbus"
        echo "$features" >"target/cli-sizes/shmbus-$name.features"
    done
    # The board image gets the board feature set's shmbus.
    cp "target/cli-sizes/shmbus-${CLI_FEATURE_SETS[0]%%=*}" target/board-stripped/shmbus
    echo
    board_sizes
}
# Stripped armv7 sizes: every binary of the image, and `shmbus` per feature set.
board_sizes() {
    local b n
    echo "armv7 binaries (profile board, static, stripped with arm-linux-gnueabihf-strip), bytes:"
    for b in target/board-stripped/*; do printf '  %-34s %9d\n' "$(basename "$b")" "$(stat -c %s "$b")"; done
    if compgen -G 'target/cli-sizes/shmbus-*.features' >/dev/null; then
        echo "shmbus per feature set (a static hello world in this profile: about 698000):"
        for b in target/cli-sizes/shmbus-*.features; do
            n=${b%.features}
            printf '  %-34s %9d\n' "$(basename "$n") ($(cat "$b" | sed 's/^$/none/'))" "$(stat -c %s "$n")"
        done
    fi
}
# The armv7 executables of the board build (ELF files directly in the profile dir).
board_bins() {
    local f
    for f in "$BOARD_DIR"/*; do
        [[ -f "$f" && -x "$f" ]] && head -c4 "$f" | grep -q ELF && echo "$f"
    done
    return 0
}
board_boot() {
    local init=target/board-stripped/shmbus-board extra=() b
    [[ -f "$init" ]] || { echo "no $init: the board build failed" >&2; return 1; }
    for b in target/board-stripped/*; do [[ "$b" == "$init" ]] || extra+=("$b"); done
    ci/board/mkinitramfs.sh target/board.cpio.gz "$init" "${extra[@]}"
    SHMBUS_BOARD_LOG=target/board-console.log ci/board/boot.sh target/board.cpio.gz "${SHMBUS_BOARD_TIMEOUT:-600}"
}

# ---------------------------------------------------------------- Debian packages
# The packages' architectures: amd64 (installed and run here) and armhf (the
# board's, its binaries run under qemu-arm). Each is a whole LTO build of the
# programs (10 to 12 minutes on a slow 2-core machine: the stage took 2,178 s
# with arm64 too); SHMBUS_CI_DEB_ARCHES=amd64,armhf,arm64 adds arm64.
DEB_ARCHES=${SHMBUS_CI_DEB_ARCHES:-amd64,armhf}
deb_build() {
    rm -rf target/deb # no package or size table from an earlier run
    if [[ ",$DEB_ARCHES," == *,arm64,* ]]; then ci/install-arm.sh --arm64; else ci/install-arm.sh; fi
    ci/deb.sh --arch "$DEB_ARCHES"
}
# ci/deb-test.sh, and nothing of it left in /tmp: its scratch directory is removed by
# its EXIT trap, which an `exec` at its end once skipped (an empty
# /tmp/shmbus-deb-check.* after every passing run).
deb_test() {
    local before after
    before=$(compgen -G '/tmp/shmbus-deb-check.*' | sort || true)
    ci/deb-test.sh || return $?
    after=$(compgen -G '/tmp/shmbus-deb-check.*' | sort || true)
    if [[ "$after" != "$before" ]]; then
        echo "ci/deb-test.sh left scratch directories behind: $(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')" >&2
        return 1
    fi
    echo "ci/deb-test.sh left nothing in /tmp"
}

# ---------------------------------------------------------------- extras
extras_fuzz() { ci/fuzz.sh; }
extras_bench() {
    if [[ -x bench/run.sh ]]; then
        bench/run.sh --quick
    else
        cargo build --release -p shmbus-cli && target/release/shmbus bench --quick
    fi
}

echo "shmbus CI: $(uname -srm), $(nproc) cores, $(cargo --version)"

stage ci-limits ci/tools/stages-test.sh
stage host-fmt host_fmt
stage host-clippy host_clippy
stage host-doc host_doc
stage host-test host_test
if [[ -f crates/shmbus-core/loom.sh ]]; then stage host-loom host_loom; fi
stage arm-install arm_install
if passed arm-install || ! wanted arm-install; then
    stage arm-test arm_test
    stage mixed-arch ci/mixed-arch.sh
    stage board-build board_build
    if passed board-build || ! wanted board-build; then stage board-boot board_boot; else skip board-boot "no board build"; fi
    stage ffi ci/ffi-test.sh all
    stage foxglove ci/foxglove-test.sh all
else
    skip arm-test "arm toolchain missing"
    skip mixed-arch "arm toolchain missing"
    skip board-build "arm toolchain missing"
    skip board-boot "arm toolchain missing"
    stage ffi ci/ffi-test.sh host
    stage foxglove ci/foxglove-test.sh host
fi
if [[ -x ci/bridge-test.sh ]]; then stage bridge ci/bridge-test.sh; fi
stage deb-build deb_build
if passed deb-build || ! wanted deb-build; then stage deb-test deb_test; else skip deb-test "no packages built"; fi
if [[ -x ci/fuzz.sh ]]; then stage fuzz extras_fuzz; fi
if [[ -x bench/run.sh ]] || grep -q 'Bench' crates/shmbus-cli/src/args.rs 2>/dev/null; then stage bench-quick extras_bench; fi

# ---------------------------------------------------------------- summary
total=$(($(date +%s) - T_ALL))
banner "summary"
stage_table
printf '%-14s %8s\n' total "$total"
if compgen -G 'target/board-stripped/*' >/dev/null; then
    echo
    board_sizes
fi
if [[ -f target/deb/SIZES.txt ]]; then
    echo
    echo "Debian packages (ci/deb.sh, target/deb):"
    sed 's/^/  /' target/deb/SIZES.txt
fi
if [[ -f target/board-console.log ]]; then
    echo
    echo "board figures (from target/board-console.log):"
    grep '^SHMBUS-BOARD: .*\(ok\|FAIL\|one-core-cpu:\)' target/board-console.log | sed 's/^/  /' || true
    if [[ -f bench/results/board-before.txt ]]; then
        echo "  board bench before waiter registration (bench/results/board-before.txt):"
        grep -v '^#' bench/results/board-before.txt | sed 's/^/    /'
    fi
fi
echo
echo "ci stages: $npass passed, $nfail failed"
[[ $nfail == 0 ]]
