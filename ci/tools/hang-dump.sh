# ci/tools/hang-dump.sh — what hung processes are doing, printed before they are
# stopped. Sourced by ci/tools/bounded-run (a test binary at its limit) and by
# ci/tools/stages.sh (a stage at its limit, in a bash of its own under `timeout`).
#
#   hang_dump WHO WHAT BUDGET PID...   print to stderr, its own messages
#                                      prefixed "WHO: ", what the processes PID...
#                                      ("N process(es) in WHAT: PID...") are doing
#   tree_and_group PID PGID            the processes under PID, then the others of
#                                      process group PGID, PID itself left out
#   proc_stat PID                      sets st_state st_ppid st_pgid, or fails
#
# For each process: pid, parent, group, command line and state, and for each
# thread its name, state, wchan and kernel stack (/proc; the stack needs root, and
# says so), then `gdb -p PID -batch -ex 'thread apply all bt'` of each process
# when gdb is installed. The dump ends within BUDGET seconds (SHMBUS_HANG_DUMP_TIMEOUT,
# 120, in both callers): no process is started after it is spent, and each gdb is
# stopped after at most 30 s and before it. It prints at most 256 KiB. Its scratch
# file is HANG_DUMP_TMP while it runs (for a caller's EXIT trap); it is
# ${TMPDIR:-/tmp}/shmbus-hang-dump.XXXXXX and removed at the end.
# Needs bash 4.3 and `timeout`; works under `set -u`, not under `set -e`.

HANG_DUMP_TMP=

# A fresh Debian has no `ps`: everything comes from /proc.
proc_stat() { # proc_stat PID: sets st_state st_ppid st_pgid, or fails
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) } # after the command name, which may hold spaces
    read -r st_state st_ppid st_pgid _ <<<"$line"
}
# The processes of the tree under PID (parents first), then the other members of
# process group PGID (children whose parent has died), PID itself left out.
tree_and_group() {
    local -A kids=() seen=()
    local -a group=()
    local f p queue
    for f in /proc/[0-9]*/stat; do
        p=${f#/proc/}
        p=${p%/stat}
        proc_stat "$p" || continue
        kids[$st_ppid]+=" $p"
        [[ $st_pgid == "$2" ]] && group+=("$p")
    done
    seen[$1]=1
    queue=${kids[$1]:-}
    while [[ -n ${queue// /} ]]; do
        read -r p queue <<<"$queue"
        [[ -n ${seen[$p]:-} ]] && continue
        seen[$p]=1
        echo "$p"
        queue+=" ${kids[$p]:-}"
    done
    for p in "${group[@]}"; do [[ -z ${seen[$p]:-} ]] && echo "$p"; done
}
status_field() { # status_field FILE FIELD: "State" -> "S (sleeping)"
    local k v
    while IFS=$'\t' read -r k v; do
        [[ $k == "$2:" ]] && echo "$v" && return 0
    done 2>/dev/null <"$1"
    echo "?"
}
cmdline() { # the command line of PID, its arguments joined by spaces, cut at 500 characters
    local -a args=()
    { mapfile -d '' args <"/proc/$1/cmdline"; } 2>/dev/null
    local s="${args[*]}"
    if [[ -z $s ]]; then
        { read -r s <"/proc/$1/comm"; } 2>/dev/null
        s="[${s:-gone}]"
    fi
    ((${#s} > 500)) && s="${s:0:500}..."
    echo "$s"
}
# What /proc says of PID and each of its threads.
proc_section() {
    local p=$1 t comm wchan stack nthreads
    proc_stat "$p" || { echo "--- process $p: gone"; return 0; }
    nthreads=$(status_field "/proc/$p/status" Threads)
    echo "--- process $p (parent $st_ppid, group $st_pgid): $(cmdline "$p")"
    echo "    state $(status_field "/proc/$p/status" State), $nthreads thread(s)"
    for t in /proc/"$p"/task/[0-9]*; do
        [[ -d $t ]] || continue
        { read -r comm <"$t/comm"; } 2>/dev/null || comm='?'
        wchan=$(cat "$t/wchan" 2>/dev/null) || wchan="(not readable)"
        [[ $wchan == 0 || -z $wchan ]] && wchan="- (not waiting in the kernel)"
        echo "    thread ${t##*/} \"$comm\": state $(status_field "$t/status" State), wchan $wchan"
        if stack=$(cat "$t/stack" 2>&1); then
            if [[ -n $stack ]]; then
                echo "        ${stack//$'\n'/$'\n'        }"
            else
                echo "        (kernel stack empty: the thread is on a CPU, or gone)"
            fi
        else
            echo "        (kernel stack not readable: ${stack##*: }; it needs root)"
        fi
    done
}
# emit FILE: print it to stderr, within dump_bytes in all (hang_dump's locals
# printed, cut and dump_bytes).
emit() {
    local size left
    size=$(wc -c <"$1")
    left=$((dump_bytes - printed))
    if ((size > left)); then
        head -c "$left" "$1" >&2
        printed=$dump_bytes cut=1
        printf '\n... (the dump is cut here: it prints at most %s bytes)\n' "$dump_bytes" >&2
    else
        cat "$1" >&2
        printed=$((printed + size))
    fi
}
# hang_dump WHO WHAT BUDGET PID...: above.
hang_dump() {
    local who=$1 what=$2 budget=$3
    shift 3
    local -a procs=("$@")
    local d0=$SECONDS p left t grc printed=0 cut='' gdb_limit=30 dump_bytes=262144
    HANG_DUMP_TMP=$(mktemp "${TMPDIR:-/tmp}/shmbus-hang-dump.XXXXXX") || {
        HANG_DUMP_TMP=
        echo "$who: no temporary file for the dump: no dump" >&2
        return 0
    }
    echo "$who: ${#procs[@]} process(es) in $what: ${procs[*]}" >&2
    for p in "${procs[@]}"; do
        [[ -n $cut ]] && break
        if ((SECONDS - d0 >= budget)); then
            echo "$who: the dump's $budget s (SHMBUS_HANG_DUMP_TIMEOUT) are spent: the other processes are not shown" >&2
            break
        fi
        proc_section "$p" >"$HANG_DUMP_TMP" 2>&1
        emit "$HANG_DUMP_TMP"
    done
    if ! command -v gdb >/dev/null; then
        [[ -z $cut ]] && echo "$who: gdb is not installed: no user-space backtraces" >&2
    else
        for p in "${procs[@]}"; do
            [[ -n $cut ]] && break
            proc_stat "$p" || continue
            [[ $st_state == Z ]] && continue
            # Each gdb ends by the budget: TERM after t seconds, KILL 5 s later.
            left=$((budget - (SECONDS - d0) - 5))
            t=$((left < gdb_limit ? left : gdb_limit))
            if ((t < 1)); then
                echo "$who: the dump's $budget s (SHMBUS_HANG_DUMP_TIMEOUT) are spent: no gdb backtraces of the processes left" >&2
                break
            fi
            {
                echo "--- gdb: process $p: $(cmdline "$p")"
                timeout -k 5 "$t" gdb -p "$p" -batch -nx -iex 'set debuginfod enabled off' \
                    -ex 'thread apply all bt' </dev/null 2>&1 | sed 's/^/    /'
                grc=${PIPESTATUS[0]}
                [[ $grc == 124 || $grc == 137 ]] && echo "(gdb stopped after $t s)"
            } >"$HANG_DUMP_TMP" 2>&1
            emit "$HANG_DUMP_TMP"
        done
    fi
    rm -f "$HANG_DUMP_TMP"
    HANG_DUMP_TMP=
}
