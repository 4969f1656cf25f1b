#!/usr/bin/env bash
# ARMv7 cross-build environment for shmbus (needs ci/install-arm.sh to have run).
#
#   source ci/arm-env.sh            # then: arm_cargo test --target "$SHMBUS_ARM_TARGET"
#   ci/arm-env.sh arm_cargo test    # or run one command with the environment
#
# When sourced it only exports variables and defines functions: it does NOT `set -e`
# or `cd` in the caller's shell. When executed, it behaves like the other ci/ scripts
# (set -euo pipefail, cd to the repo root) and runs its arguments.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    cd "$(dirname "$0")/.."
fi

_SHMBUS_CI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

export SHMBUS_ARM_TARGET=armv7-unknown-linux-gnueabihf
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf"
# For crates that build C code with cc-rs, and for ARM binaries run by hand with qemu-arm.
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
export AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
export QEMU_LD_PREFIX=/usr/arm-linux-gnueabihf
# QEMU 7.2's user mode (Debian 12) can deadlock in the child of a fork made while
# other guest threads run: the child translates code into a GTree, whose GSlice
# allocator lock another thread may have held at the fork (QEMU issue 285, fixed in
# QEMU 8.0). A test that spawned a process then waited for good on a child that
# never reached its exec: gdb showed it in g_slice_alloc under tcg_tb_insert. glib
# < 2.76 takes this variable to put its slices on malloc, which is fork-safe.
export G_SLICE=always-malloc

# aarch64 (arm64), for the Debian packages (needs `ci/install-arm.sh --arm64`). Run its
# binaries with `qemu-aarch64 -L /usr/aarch64-linux-gnu` (QEMU_LD_PREFIX above is armhf's).
export SHMBUS_ARM64_TARGET=aarch64-unknown-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

# Target dir for the ARM builds: $SHMBUS_ARM_TARGET_DIR_BASE (if set), else target/ of
# the cargo workspace around the current directory, else ./target.
_shmbus_arm_target_base() {
    if [[ -n "${SHMBUS_ARM_TARGET_DIR_BASE:-}" ]]; then
        printf '%s\n' "$SHMBUS_ARM_TARGET_DIR_BASE"
        return
    fi
    local manifest
    if manifest=$(cargo locate-project --workspace --message-format plain 2>/dev/null); then
        printf '%s/target\n' "$(dirname "$manifest")"
    else
        printf 'target\n'
    fi
}

# RUSTDOC for arm_cargo: Debian's rustdoc if present. rustup's cargo (>= 1.89) passes
# `--test-runtool` for cross doctests, which rustdoc 1.85 lacks: then go through
# ci/tools/rustdoc-compat.sh, which maps it to 1.85's unstable `--runtool`.
_shmbus_arm_rustdoc() {
    [[ -x /usr/bin/rustdoc ]] || return 0
    # The help is read whole before it is searched: `rustdoc --help | grep -q`
    # under pipefail fails at random (grep exits at the first match, rustdoc
    # dies of SIGPIPE writing the rest, exit 141), which picked the wrapper
    # for a rustdoc that has no `--runtool` any more.
    local help
    help=$(/usr/bin/rustdoc --help 2>/dev/null || true)
    if [[ $help == *--test-runtool* ]]; then
        echo RUSTDOC=/usr/bin/rustdoc
    else
        echo "RUSTDOC=$_SHMBUS_CI_DIR/tools/rustdoc-compat.sh"
    fi
}

# rustup's cargo driving Debian's rustc-web 1.85 (/usr/bin/rustc), which has the armv7
# std. The target dir is separate from the host one so the two compilers (rustup 1.9x,
# Debian 1.85) never share artifacts. The default build target is armv7; an explicit
# --target on the command line wins. RUSTFLAGS from the caller are left alone.
arm_cargo() {
    local base
    base=$(_shmbus_arm_target_base)
    local -a extra=(RUSTC=/usr/bin/rustc "CARGO_TARGET_DIR=$base/armv7"
        "CARGO_BUILD_TARGET=$SHMBUS_ARM_TARGET")
    local rd
    rd=$(_shmbus_arm_rustdoc)
    if [[ -n "$rd" ]]; then extra+=("$rd"); fi
    env "${extra[@]}" cargo "$@"
}

# Like arm_cargo, but the armv7 artifacts are linked statically (glibc, +crt-static),
# for a bare initramfs on the board (ci/board/). Only the armv7 target gets the flag
# (build scripts and proc-macros stay dynamic host binaries). Target dir target/armv7-static.
#
# Cargo ignores the per-target rustflags whenever RUSTFLAGS is set, so if the caller has
# RUSTFLAGS, it is folded into the armv7 per-target flags for this command only (with
# --target, RUSTFLAGS only ever applied to target artifacts anyway). The caller's
# environment is not changed.
arm_cargo_static() {
    local base flags
    base=$(_shmbus_arm_target_base)
    if [[ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]]; then
        echo "arm_cargo_static: CARGO_ENCODED_RUSTFLAGS is set and would override +crt-static; unset it" >&2
        return 2
    fi
    flags="${RUSTFLAGS:-} ${CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS:-} -C target-feature=+crt-static"
    flags="${flags#"${flags%%[![:space:]]*}"}"
    local -a extra=(RUSTC=/usr/bin/rustc "CARGO_TARGET_DIR=$base/armv7-static"
        "CARGO_BUILD_TARGET=$SHMBUS_ARM_TARGET"
        "CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS=$flags")
    local rd
    rd=$(_shmbus_arm_rustdoc)
    if [[ -n "$rd" ]]; then extra+=("$rd"); fi
    env -u RUSTFLAGS "${extra[@]}" cargo "$@"
}

# Like arm_cargo, for aarch64: Debian's rustc with the aarch64 std, dynamic glibc,
# target dir target/aarch64, default target aarch64-unknown-linux-gnu.
arm64_cargo() {
    local base
    base=$(_shmbus_arm_target_base)
    local -a extra=(RUSTC=/usr/bin/rustc "CARGO_TARGET_DIR=$base/aarch64"
        "CARGO_BUILD_TARGET=$SHMBUS_ARM64_TARGET")
    local rd
    rd=$(_shmbus_arm_rustdoc)
    if [[ -n "$rd" ]]; then extra+=("$rd"); fi
    env "${extra[@]}" cargo "$@"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    if [[ $# -eq 0 ]]; then
        echo "usage: source ci/arm-env.sh | ci/arm-env.sh COMMAND [ARGS...]   (e.g. arm_cargo test, arm64_cargo build)" >&2
        exit 2
    fi
    "$@"
fi
