# ci/tools/stages.sh — the stage runner of ci/test.sh (sourced; needs bash 4).
#
#   stage NAME COMMAND...   run COMMAND (a function or a program) as stage NAME:
#                           timed, recorded ok or FAIL, never stops the script
#   skip NAME WHY           record a stage that could not run (after a failure)
#   passed NAME             the stage ran and passed
#   wanted NAME             NAME is in ONLY (a comma list), or ONLY is empty
#   stage_table             the table of stages; sets npass and nfail
#
# Time limits, so that a hang anywhere ends as a named failure and the summary
# always comes: a stage still running after STAGE_LIMIT seconds
# (SHMBUS_STAGE_TIMEOUT, 1800) is stopped with every process under it, and no
# stage starts or runs past BUDGET seconds (SHMBUS_CI_BUDGET, 5000) after the
# runner was sourced. One stage that never ended once held the whole run until the
# CI's own limit of 90 minutes, with no verdict on anything. A whole run takes 40
# to 44 minutes on a 2-core CI machine, its longest stage (arm-test) about 9.
# Each test binary of host-test and arm-test has a limit of its own as well
# (ci/tools/bounded-run). ci/tools/stages-test.sh tests all of this.
#
# Before a stage is stopped (at its limit, or at the budget: a stage still
# running there is as hung, for all the run can tell), what the stage's
# processes are doing is printed to stderr: the stage's pid and every process
# under it (as stop_tree finds them; a stage has no process group of its own),
# with bounded-run's dump (ci/tools/hang-dump.sh: per process and thread /proc's
# state, wchan and kernel stack, then gdb's backtraces). The dump runs in a bash
# of its own under `timeout` (SHMBUS_HANG_DUMP_TIMEOUT seconds, 120, + 10), 256 KiB at most,
# and it cannot stop the script. A hung stage therefore ends up to that
# much later than its limit (plus SHMBUS_STOP_GRACE), and the seconds the table
# shows for it include the dump.

NAMES=() SECS=() RESULTS=()
T_ALL=$(date +%s)

banner() { printf '\n==== %s ====\n' "$*"; }
wanted() { [[ -z "${ONLY:-}" || ",$ONLY," == *",$1,"* ]]; }
# only_stages NAME...: the stages this run has. A name in ONLY
# (SHMBUS_CI_STAGES) that is none of them is refused, exit 2, before anything
# runs: `SHMBUS_CI_STAGES=board` (for board-build,board-boot) ran no stage
# and ended "0 passed, 0 failed", exit 0, as if the board had passed.
only_stages() {
    local w have found
    [[ -z "${ONLY:-}" ]] && return 0
    local -a want
    IFS=, read -ra want <<<"$ONLY"
    for w in "${want[@]}"; do
        found=
        for have in "$@"; do [[ $w == "$have" ]] && found=1; done
        if [[ -z $found ]]; then
            echo "SHMBUS_CI_STAGES='$ONLY': no stage is named '$w'; the stages are: $*" >&2
            exit 2
        fi
    done
}

STAGE_LIMIT=${SHMBUS_STAGE_TIMEOUT:-1800}
BUDGET=${SHMBUS_CI_BUDGET:-5000}
STOP_GRACE=${SHMBUS_STOP_GRACE:-10}
DUMP_BUDGET=${SHMBUS_HANG_DUMP_TIMEOUT:-120}
for _v in SHMBUS_STAGE_TIMEOUT:$STAGE_LIMIT SHMBUS_CI_BUDGET:$BUDGET SHMBUS_STOP_GRACE:$STOP_GRACE \
    SHMBUS_HANG_DUMP_TIMEOUT:$DUMP_BUDGET; do
    if ! [[ ${_v#*:} =~ ^[1-9][0-9]*$ ]]; then
        echo "ci/tools/stages.sh: ${_v%%:*}='${_v#*:}' is not a whole number of seconds" >&2
        exit 2
    fi
done
unset _v
# The dump of a hung stage: sourced by the bash that stage_dump starts.
HANG_DUMP_SH=${BASH_SOURCE[0]%/*}
[[ $HANG_DUMP_SH == "${BASH_SOURCE[0]}" ]] && HANG_DUMP_SH=.
HANG_DUMP_SH=$(cd "$HANG_DUMP_SH" && pwd)/hang-dump.sh
if [[ ! -f $HANG_DUMP_SH ]]; then
    echo "ci/tools/stages.sh: no $HANG_DUMP_SH next to it" >&2
    exit 2
fi

# The processes below PID (children first found, then theirs), from /proc: a
# fresh Debian has no `ps`.
descendants() {
    local -A kids=()
    local f line rest state ppid p queue
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        rest=${line##*) } # after the command name, which may hold spaces
        read -r state ppid _ <<<"$rest"
        [[ $ppid =~ ^[0-9]+$ ]] || continue
        p=${f#/proc/}
        kids[$ppid]+=" ${p%/stat}"
    done
    queue=${kids[$1]:-}
    while [[ -n ${queue// /} ]]; do
        read -r p queue <<<"$queue"
        echo "$p"
        queue+=" ${kids[$p]:-}"
    done
}
# stage_dump NAME PID: print what stage NAME's process PID and every process under
# it are doing (ci/tools/hang-dump.sh), within DUMP_BUDGET seconds, whatever the
# dump meets: `timeout` ends the bash that runs it 10 s after that, with its gdb.
stage_dump() {
    local -a procs
    mapfile -t procs < <(descendants "$2")
    # shellcheck disable=SC2016 # expanded by that bash
    timeout -k 5 "$((DUMP_BUDGET + 10))" bash -c '
        source "$1" || exit 2
        gone() { [[ -z $HANG_DUMP_TMP ]] || rm -f "$HANG_DUMP_TMP"; }
        trap gone EXIT
        trap "exit 143" TERM
        hang_dump "${@:2}"' _ "$HANG_DUMP_SH" "---- stage $1" "its tree" "$DUMP_BUDGET" "$2" "${procs[@]}" ||
        echo "---- stage $1: the dump ended with status $? (124: stopped by its timeout)" >&2
}
# Stop PID and everything under it: TERM, then KILL STOP_GRACE seconds later (a
# process that forked meanwhile is found again).
stop_tree() {
    local pids
    pids=$(descendants "$1")
    kill -TERM "$1" $pids 2>/dev/null || true
    sleep "$STOP_GRACE"
    pids="$pids $(descendants "$1")"
    kill -KILL "$1" $pids 2>/dev/null || true
}

# stage NAME COMMAND...: run it, time it, record ok/FAIL; never stops the script.
stage() {
    local name=$1
    shift
    if ! wanted "$name"; then return 0; fi
    local t0 rc=0 pid limit left over=
    t0=$(date +%s)
    left=$((BUDGET - (t0 - T_ALL)))
    if ((left <= 0)); then
        # A failure, not a skip: what did not run did not pass.
        NAMES+=("$name") SECS+=(0) RESULTS+=("FAIL (not run: the run's budget of $BUDGET s, SHMBUS_CI_BUDGET, is spent)")
        echo "---- stage $name: ${RESULTS[-1]}"
        return 0
    fi
    limit=$((STAGE_LIMIT < left ? STAGE_LIMIT : left))
    banner "stage $name: $*"
    # In the background and then waited for: a subshell on the left of `||`
    # would run with `set -e` switched off, hiding failures inside a stage.
    ("$@") &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if (($(date +%s) - t0 >= limit)); then
            over=$limit
            echo "---- stage $name: still running after $limit s: what its processes are doing follows (at most $DUMP_BUDGET s, SHMBUS_HANG_DUMP_TIMEOUT; the stage's time includes it), then it is stopped with every process under it" >&2
            stage_dump "$name" "$pid"
            echo "---- stage $name: end of the dump, after $(($(date +%s) - t0 - limit)) s: stopping it and every process under it" >&2
            stop_tree "$pid"
            break
        fi
        sleep 1
    done
    wait "$pid" || rc=$?
    NAMES+=("$name")
    SECS+=($(($(date +%s) - t0)))
    if [[ -n $over ]]; then
        RESULTS+=("FAIL (stopped after $over s: a hang)")
    elif [[ $rc == 0 ]]; then
        RESULTS+=(ok)
    else
        RESULTS+=("FAIL (exit $rc)")
    fi
    echo "---- stage $name: ${RESULTS[-1]} in ${SECS[-1]} s"
    return 0
}
skip() { NAMES+=("$1"); SECS+=(0); RESULTS+=("skipped: $2"); echo "---- stage $1: skipped ($2)"; }
passed() { # passed NAME: the stage ran and passed
    local i
    for i in "${!NAMES[@]}"; do [[ ${NAMES[$i]} == "$1" && ${RESULTS[$i]} == ok ]] && return 0; done
    return 1
}

# The table of stages, and their count: sets npass and nfail.
stage_table() {
    local i
    printf '%-14s %8s  %s\n' stage seconds result
    nfail=0 npass=0
    for i in "${!NAMES[@]}"; do
        printf '%-14s %8s  %s\n' "${NAMES[$i]}" "${SECS[$i]}" "${RESULTS[$i]}"
        case ${RESULTS[$i]} in ok) npass=$((npass + 1)) ;; FAIL*) nfail=$((nfail + 1)) ;; esac
    done
}
