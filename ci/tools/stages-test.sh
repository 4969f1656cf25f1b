#!/usr/bin/env bash
# ci/tools/stages-test.sh — tests of the test command's own time limits: the
# stage runner (ci/tools/stages.sh) and the test binaries' runner
# (ci/tools/bounded-run), and the dump (ci/tools/hang-dump.sh) of a hung
# binary and of a hung stage. About 32 s; ci/test.sh runs it as its first stage.
#
# Each check starts processes marked with a token of its own and, at the end,
# fails if one of them is still alive: a limit that ends the stage but leaves
# its processes running has not stopped the hang.
set -euo pipefail
cd "$(dirname "$0")/../.."

TOKEN="shmbus-stages-test-$$"
export SHMBUS_STOP_GRACE=1
# Outputs go to files, never through a pipe: a process that a broken limit left
# alive would hold a pipe open, and reading it to its end would hang this test.
TMP=$(mktemp -d /tmp/shmbus-stages-test.XXXXXX)
# Whatever a failed check left alive goes at the end, whatever happened.
kill_leftovers() {
    local f
    for f in /proc/[0-9]*/cmdline; do
        [[ ${f#/proc/} == "$$/cmdline" ]] && continue
        if tr '\0' ' ' 2>/dev/null <"$f" | grep -q -- "$TOKEN"; then
            f=${f#/proc/}
            kill -KILL "${f%/cmdline}" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap kill_leftovers EXIT
fails=0 checks=0
shown= # what the runners printed: shown only if a check fails (it holds "FAIL" lines on purpose)
check() { # check WHAT COMMAND...: one assertion
    checks=$((checks + 1))
    local what=$1
    shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what" >&2; fails=$((fails + 1)); fi
}
# Processes whose command line holds "$TOKEN-$PART-" (not this script's own):
# each part of the test marks its processes with a PART of its own.
alive() {
    local f n=0
    for f in /proc/[0-9]*/cmdline; do
        [[ ${f#/proc/} == "$$/cmdline" ]] && continue
        if tr '\0' ' ' 2>/dev/null <"$f" | grep -q -- "$TOKEN-$PART-"; then n=$((n + 1)); fi
    done
    echo "$n"
}
none_alive() { [[ $(alive) == 0 ]]; }
# A process tree that never ends: a child, a grandchild, and one that left for
# a session of its own. `exec -a` puts TOKEN in each command line.
hang_tree() {
    (exec -a "$TOKEN-$PART-child" sleep 600) &
    setsid bash -c "exec -a '$TOKEN-$PART-session' sleep 600" &
    bash -c "(exec -a '$TOKEN-$PART-grandchild' sleep 600) & wait" &
    wait
}
# Ends only by SIGKILL.
deaf() {
    trap '' TERM
    (
        trap '' TERM
        exec -a "$TOKEN-$PART-deaf" sleep 600
    ) &
    wait
}
export -f hang_tree deaf
export TOKEN PART
# run_stages STAGE_LIMIT BUDGET STEPS: the stage runner in a fresh shell doing
# STEPS, then its table and "counts PASSED FAILED"; its output in $out.
run_stages() {
    SHMBUS_STAGE_TIMEOUT=$1 SHMBUS_CI_BUDGET=$2 bash -c "
        set -euo pipefail
        source ci/tools/stages.sh
        $3
        stage_table
        echo \"counts \$npass \$nfail\"
    " >"$TMP/out" 2>&1 || true
    out=$(<"$TMP/out")
    shown+="$out"$'\n'
}

# --- the stage runner: ok, a failure, a hang, a deaf hang
PART=stages
run_stages 3 1000 '
    stage good true
    stage bad bash -c "exit 3"
    t=$SECONDS
    stage hung hang_tree
    echo "hung took $((SECONDS - t))"
    stage deaf deaf'
check "a stage that passes is ok" grep -q '^good  *[0-9]*  ok$' <<<"$out"
check "a stage that fails says its exit status" grep -q '^bad  *[0-9]*  FAIL (exit 3)$' <<<"$out"
check "a stage that hangs is stopped at its limit and fails as a hang" \
    grep -q '^hung  *[0-9]*  FAIL (stopped after 3 s: a hang)$' <<<"$out"
check "... within seconds of the limit" bash -c '(( $(sed -n "s/^hung took //p" <<<"$1") < 20 ))' _ "$out"
check "a stage deaf to SIGTERM is stopped too" grep -q '^deaf  *[0-9]*  FAIL (stopped after 3 s: a hang)$' <<<"$out"
check "the table counts 1 passed and 3 failed" grep -q '^counts 1 3$' <<<"$out"
check "no process of the stopped stages is left (children, grandchildren, other sessions)" none_alive

# --- the run's budget: the stage that reaches it is stopped, the next one fails unrun
PART=budget
run_stages 1000 3 '
    stage long hang_tree
    stage after true'
check "a stage that runs into the budget is stopped at it" \
    grep -q '^long  *[0-9]*  FAIL (stopped after 3 s: a hang)$' <<<"$out"
check "a stage after the budget is spent fails without running" \
    grep -q "^after  *0  FAIL (not run: the run's budget of 3 s" <<<"$out"
check "the table counts 0 passed and 2 failed" grep -q '^counts 0 2$' <<<"$out"
check "no process of the stopped stage is left" none_alive
check "... and it was dumped before it was stopped, as a stage at its limit is" \
    grep -q '^---- stage long: [0-9]* process(es) in its tree: ' <<<"$out"

# --- a limit that is no number stops the runner before anything runs
rc=0
out=$(SHMBUS_STAGE_TIMEOUT=soon bash -c 'source ci/tools/stages.sh; echo ran' 2>&1) || rc=$?
check "SHMBUS_STAGE_TIMEOUT=soon is refused, naming the variable" \
    bash -c '[[ $1 == 2 && $2 == *"SHMBUS_STAGE_TIMEOUT='"'soon'"' is not a whole number"* && $2 != *ran* ]]' _ "$rc" "$out"

# --- bounded-run: passes a test binary's status through, stops a hang with its group
rc=0
ci/tools/bounded-run bash -c 'exit 101' || rc=$?
check "bounded-run passes a failing binary's status (101) through" test "$rc" == 101
PART=binary
rc=0
t=$SECONDS
SHMBUS_TEST_BINARY_TIMEOUT=2 ci/tools/bounded-run bash -c \
    "(exec -a '$TOKEN-$PART-fork' sleep 600) & exec -a '$TOKEN-$PART-binary' sleep 600" >"$TMP/out" 2>&1 || rc=$?
out=$(<"$TMP/out")
shown+="$out"$'\n'
check "bounded-run stops a binary that hangs, with status 124" test "$rc" == 124
check "... at its limit" test $((SECONDS - t)) -lt 20
check "... and says that it hangs" grep -q 'was still running after 2 s (SHMBUS_TEST_BINARY_TIMEOUT) and was stopped' <<<"$out"
check "... and its child is gone too" none_alive
PART=deafbin
rc=0
t=$SECONDS
SHMBUS_TEST_BINARY_TIMEOUT=2 ci/tools/bounded-run bash -c "trap '' TERM; exec -a '$TOKEN-$PART-deafbin' bash -c \"trap '' TERM; sleep 600\"" \
    >/dev/null 2>&1 || rc=$?
check "bounded-run kills a binary deaf to SIGTERM (status 137)" test "$rc" == 137
check "... and its child is gone too" none_alive

# --- bounded-run: a hung binary's processes are dumped before it is stopped
PART=dump
if command -v gdb >/dev/null; then
    echo "gdb: $(command -v gdb): the dump's backtraces are checked"
else
    echo "gdb: not installed: the dump's backtraces are not checked"
fi
# The binary waits for its child, which sleeps: both where the kernel shows it.
rc=0
t=$SECONDS
SHMBUS_TEST_BINARY_TIMEOUT=2 TMPDIR=$TMP ci/tools/bounded-run bash -c \
    "echo \$\$ >'$TMP/binpid'; (exec -a '$TOKEN-$PART-sleeper' sleep 600) & echo \$! >'$TMP/kidpid'; wait" \
    "$TOKEN-$PART-binary" >"$TMP/out" 2>&1 || rc=$?
took=$((SECONDS - t))
out=$(<"$TMP/out")
shown+="$out"$'\n'
binpid=$(<"$TMP/binpid") kidpid=$(<"$TMP/kidpid")
# section WHAT PID: the dump's section "--- WHAT PID ...", up to the next one
section() { awk -v h="^--- $1 $2[ :]" '/^(---|bounded-run:) / { on = $0 ~ h } on' "$TMP/out"; }
# shellcheck disable=SC2053 # $2 is a glob on purpose
matches() { [[ $1 == $2 ]]; }                # matches TEXT GLOB: all of TEXT
has_line() { grep -Eq -- "$2" <<<"$1"; }     # has_line TEXT REGEX
no_dump_file() { ! compgen -G "$TMP/shmbus-hang-dump.*" >/dev/null; }
check "bounded-run stops a binary that hangs after dumping it, with status 124" test "$rc" == 124
check "... within seconds of its limit (it took $took s)" test "$took" -lt 30
check "... and says how long the limit, the dump and the grace take at most" \
    has_line "$out" 'is still running after 2 s .*at most 120 s, SHMBUS_HANG_DUMP_TIMEOUT.*: 123 s in all, at most'
check "the dump shows the binary: pid and command line" \
    has_line "$(section process "$binpid")" "^--- process $binpid \(parent [0-9]+, group [0-9]+\): bash -c .* $TOKEN-$PART-binary\$"
# child_dumped SECTION PARENT: the dump (read with SECTION, a function like
# `section`) shows the sleeping child $kidpid of PARENT, its thread, its kernel
# stack and gdb's backtrace: the checks both runners' dumps pass.
child_dumped() {
    local sec=$1 parent=$2
    check "... its child: pid, command line, state" \
        matches "$($sec process "$kidpid")" "--- process $kidpid (parent $parent, group *): $TOKEN-$PART-sleeper 600"$'\n'"    state S (sleeping), 1 thread(s)"$'\n'"*"
    check "... the child's thread: name, state, wchan" \
        has_line "$($sec process "$kidpid")" "^    thread $kidpid \"sleep\": state S \(sleeping\), wchan [a-z_]*nanosleep"
    if [[ $(id -u) == 0 ]]; then
        check "... and its kernel stack" has_line "$($sec process "$kidpid")" '^        \[<.*>\] [a-z_]*nanosleep'
    else
        check "... and that its kernel stack needs root" has_line "$($sec process "$kidpid")" '^        \(kernel stack not readable: .*; it needs root\)'
    fi
    if command -v gdb >/dev/null; then
        check "... and gdb's backtrace of the child, in nanosleep" \
            has_line "$($sec "gdb: process" "$kidpid")" '^    #0 .*nanosleep'
    fi
}
child_dumped section "$binpid"
check "... all before the message that it was stopped" \
    matches "$out" "*--- process $kidpid *was still running after 2 s (SHMBUS_TEST_BINARY_TIMEOUT) and was stopped*"
check "... and nothing of it is left: no process" none_alive
check "... no temporary file" no_dump_file

# --- bounded-run: an interrupted test command stops the binary and its group
# (Ctrl-C at a terminal is SIGINT to cargo and bounded-run, not to timeout's own
# group; SIGINT cannot be trapped where it was ignored at start, as in a stage
# that runs in the background, so SIGTERM stands for it here.)
PART=interrupt
rc=0
ci/tools/bounded-run bash -c \
    "(exec -a '$TOKEN-$PART-fork' sleep 600) & echo \$! >'$TMP/forkpid'; exec -a '$TOKEN-$PART-binary' sleep 600" \
    >"$TMP/out" 2>&1 &
brpid=$!
for _ in $(seq 200); do [[ -s $TMP/forkpid ]] && break; sleep 0.05; done
t=$SECONDS
kill -TERM "$brpid"
wait "$brpid" || rc=$?
took=$((SECONDS - t))
shown+="$(<"$TMP/out")"$'\n'
check "a bounded-run told to stop (SIGTERM) stops its binary and ends with it (143), at once (took $took s)" \
    test "$rc:$((took < 10))" == "143:1"
check "... and says that the test command was interrupted" \
    grep -q 'was stopped: the test command was interrupted (SIGTERM)' "$TMP/out"
check "... and the binary's child is gone too" none_alive

# --- bounded-run: a binary that ends in time is untouched
rc=0
t=$SECONDS
ci/tools/bounded-run bash -c 'echo out; echo err >&2; exit 101' >"$TMP/out" 2>"$TMP/err" || rc=$?
took=$((SECONDS - t))
shown+="$(<"$TMP/out")"$'\n'"$(<"$TMP/err")"$'\n'
check "a binary that ends in time: its status (101), its output and nothing else, at once" \
    test "$rc:$(<"$TMP/out"):$(<"$TMP/err"):$((took <= 1))" == "101:out:err:1"
# Its limit's `sleep` holds none of the caller's pipes, and is gone as soon as the
# binary ends (987: a limit of its own, to find it by).
sleeping_for() { # sleeping_for N: a `sleep N` is alive
    local f
    local -a a
    for f in /proc/[0-9]*/cmdline; do
        { mapfile -d '' a <"$f"; } 2>/dev/null || continue
        [[ ${a[*]:-} == "sleep $1" ]] && return 0
    done
    return 1
}
rc=0
timeout 20 bash -c 'SHMBUS_TEST_BINARY_TIMEOUT=987 ci/tools/bounded-run true | cat' >"$TMP/out" 2>&1 || rc=$?
check "... a pipe from bounded-run ends when the binary does" test "$rc" == 0
check "... and no sleep waits for its limit any more" eval '! sleeping_for 987'

# --- the stage runner: a hung stage's processes are dumped before it is stopped
PART=stagedump
# The stage waits for its child, which sleeps.
stuck() {
    echo "$BASHPID" >"$1/stagepid"
    (exec -a "$TOKEN-$PART-sleeper" sleep 600) &
    echo $! >"$1/kidpid"
    wait
}
export -f stuck
t=$SECONDS
TMPDIR=$TMP run_stages 2 1000 "stage stuck stuck $TMP"
took=$((SECONDS - t))
stagepid=$(<"$TMP/stagepid") kidpid=$(<"$TMP/kidpid")
# stage_section WHAT PID: the dump's section "--- WHAT PID ...", up to the next one
stage_section() { awk -v h="^--- $1 $2[ :]" '/^(---|----) / { on = $0 ~ h } on' "$TMP/out"; }
check "a stage that hangs is dumped, then stopped (it took $took s)" \
    has_line "$out" '^---- stage stuck: 2 process\(es\) in its tree: '"$stagepid $kidpid"'$'
check "... the dump shows the stage's own process" \
    has_line "$(stage_section process "$stagepid")" "^--- process $stagepid \(parent [0-9]+, group [0-9]+\): bash "
child_dumped stage_section "$stagepid"
check "... all before the stage is stopped and fails as a hang" \
    matches "$out" "*--- process $kidpid *---- stage stuck: end of the dump*---- stage stuck: FAIL (stopped after 2 s: a hang) in *"
check "... and nothing of it is left: no process" none_alive
check "... no temporary file" no_dump_file

# --- SHMBUS_CI_STAGES names only stages there are
PART=only
run_stages 60 1000 '
    ONLY=good,bord
    only_stages good bad
    stage good true'
check "a stage name the run does not have is refused, naming the stages" \
    grep -q "^SHMBUS_CI_STAGES='good,bord': no stage is named 'bord'; the stages are: good bad\$" <<<"$out"
check "... before any stage runs" bash -c '! grep -q "^good " <<<"$1"' _ "$out"
run_stages 60 1000 '
    ONLY=good
    only_stages good bad
    stage good true
    stage bad false'
check "the stages it names run, the others do not" grep -q '^counts 1 0$' <<<"$out"
# ci/test.sh's list is its stages, and the docs name only those.
# shellcheck disable=SC2207
listed=($(sed -n '/^STAGES=(/,/)/p' ci/test.sh | tr -d '()' | sed 's/^STAGES=//'))
# shellcheck disable=SC2207
staged=($(grep -oE '(^|[;&|] *|then |else |    )stage [a-z0-9-]+' ci/test.sh | awk '{print $NF}' | sort -u))
missing=$(comm -13 <(printf '%s\n' "${listed[@]}" | sort -u) <(printf '%s\n' "${staged[@]}"))
check "every stage ci/test.sh runs is in its STAGES list (${#staged[@]} stages)" \
    test -z "$missing" -a "${#staged[@]}" -gt 10
unknown=$(grep -rhoE 'SHMBUS_CI_STAGES=[a-z0-9,-]+' --include='*.md' README.md SECURITY.md docs ci configs python packaging 2>/dev/null |
    sed 's/^SHMBUS_CI_STAGES=//' | tr , '\n' | sort -u | comm -23 - <(printf '%s\n' "${listed[@]}" | sort -u))
check "every SHMBUS_CI_STAGES=... the docs show names stages ci/test.sh has${unknown:+ (not: $unknown)}" \
    test -z "$unknown"

if [[ $fails != 0 ]]; then
    echo "what the runners under test printed:"
    sed 's/^/    | /' <<<"$shown"
fi
echo "stages-test: $((checks - fails)) of $checks checks passed"
[[ $fails == 0 ]]
