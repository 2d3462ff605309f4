# Helpers for the BLE lab scripts (sourced; guest side unless noted).
# Probes write their output to $LOGDIR/<name>.log; on failure, the logs are
# printed so that run-lab.sh's output says what happened.

# run-lab.sh and bench-lab.sh pass LAB_BLE_BIN: a private copy of the
# binaries, so that a concurrent cargo build cannot swap them mid-run.
BLE_BIN=${BLE_BIN:-${LAB_BLE_BIN:-target/debug/examples}}
# Logs land in the lab's run directory (visible on the host, kept on failure).
LOGDIR=${LOGDIR:-${LAB_RUN_DIR:-/tmp}/ble-${TEST_NAME:-lab}}
declare -A PROBE_PID=()

say() { echo "[$(date +%T)] ${TEST_NAME:-ble}: $*"; }

dump_logs() {
    local f
    for f in "$LOGDIR"/*.log; do
        [[ -e "$f" ]] || continue
        echo "----- $f (last 60 lines) -----"
        tail -n 60 "$f" | cut -c1-400
    done
}

fail() {
    say "FAIL: $*"
    dump_logs
    exit 1
}

require_lab() {  # require_lab N: inside the lab, with at least N controllers
    [[ "${LAB_IN_VM:-0}" == 1 ]] || { echo "run me in the lab: tests/vmlab/run.sh --bt $1 -- $0"; exit 2; }
    ((${LAB_BT:-0} >= $1)) || { echo "needs --bt $1"; exit 2; }
    mkdir -p "$LOGDIR"
    rm -f "$LOGDIR"/*.log
}

adapter_address() {  # adapter_address hciN
    dbus-send --system --print-reply --dest=org.bluez "/org/bluez/$1" \
        org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Address \
        | sed -n 's/.*string "\([0-9A-F:]*\)".*/\1/p'
}

start_probe() {  # start_probe NAME BINARY ARGS...: runs in the background
    local name=$1 bin=$2
    shift 2
    RUST_BACKTRACE=0 RUST_LOG=${RUST_LOG:-info} "$BLE_BIN/$bin" "$@" >"$LOGDIR/$name.log" 2>&1 &
    PROBE_PID[$name]=$!
    say "started $name ($bin $*), pid ${PROBE_PID[$name]}"
}

wait_probe() {  # wait_probe NAME: its exit code
    local rc=0
    wait "${PROBE_PID[$1]}" || rc=$?
    say "$1 exited with $rc"
    return "$rc"
}

wait_for() {  # wait_for NAME PATTERN SECONDS: until the log has a line matching PATTERN
    local name=$1 pattern=$2 secs=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        grep -qE "$pattern" "$LOGDIR/$name.log" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

count() {  # count NAME PATTERN
    grep -cE "$1" "$LOGDIR/$2.log" 2>/dev/null || true
}

shas() {  # shas NAME KIND: sorted checksums of SENT or RECV lines
    grep -E "^$2 " "$LOGDIR/$1.log" | sed -n 's/.*sha256=\([0-9a-f]*\).*/\1/p' | sort -u
}

kill_probe() {  # kill_probe NAME [SIGNAL]
    kill "-${2:-TERM}" "${PROBE_PID[$1]}" 2>/dev/null || true
    wait "${PROBE_PID[$1]}" 2>/dev/null || true
}
