#!/usr/bin/env bash
# Short coverage-guided fuzz run of every shmbus fuzz target (libFuzzer via
# cargo-fuzz, on stable Rust with `-s none`: see docs/RELIABILITY.md).
# Fails on the first crash, panic, timeout or out-of-memory, and prints the
# reproducer's path and the command that replays it.
#
#   ci/fuzz.sh                 # 60 s in total, split over the targets
#   SHMBUS_FUZZ_SECONDS=3600 ci/fuzz.sh
#
# The seed corpus in fuzz/corpus/<target>/ is only read; new inputs go to a
# temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

total=${SHMBUS_FUZZ_SECONDS:-60}
targets=(schema frame dyn_frame segment typed)
per=$(( total / ${#targets[@]} ))
(( per >= 1 )) || per=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

cd fuzz
export CARGO_TARGET_DIR=${SHMBUS_FUZZ_TARGET_DIR:-$PWD/target}
echo "== building fuzz targets"
cargo fuzz build -s none

# The `segment` target makes real segments at key 0x7d000000 | pid and
# removes each one; a crash leaves the last one behind. Remove those whose
# creator is gone.
cleanup_segments() {
    awk 'NR > 1 && $1 >= 2097152000 && $1 <= 2113929215 { print $2, $5 }' /proc/sysvipc/shm |
        while read -r shmid cpid; do
            kill -0 "$cpid" 2>/dev/null || ipcrm -m "$shmid" 2>/dev/null || true
        done
}

work=$(mktemp -d)
trap 'rm -rf "$work"; cleanup_segments' EXIT
runs_total=0
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    echo "== fuzzing $t for ${per}s"
    if ! cargo fuzz run -s none "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$per" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
        >"$work/$t.log" 2>&1; then
        tail -n 40 "$work/$t.log"
        echo "FAIL: fuzz target '$t' found a crash; reproducer in fuzz/artifacts/$t/"
        echo "replay: (cd fuzz && cargo fuzz run -s none $t artifacts/$t/<file>)"
        exit 1
    fi
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$work/$t.log" | tail -n 1)
    cov=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
    echo "   $t: ${runs:-${cov:-?}} executions, 0 crashes, corpus $(ls "$work/$t" | wc -l) new inputs"
    runs_total=$(( runs_total + ${runs:-0} ))
done
echo "fuzz: ${runs_total} executions over ${#targets[@]} targets, 0 crashes"
