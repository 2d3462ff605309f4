#!/bin/bash
# First Bluetooth link, measured over many fresh VMs (host side): runs
# tests/ble/lab-firstlink.sh N times, each in its own VM (fresh BlueZ, fresh
# controllers, fresh daemons), and prints one line per run and a summary:
# start-to-first-delivery median and worst, with the failed runs counted
# (a run fails when the message has not arrived 60 s after it was sent).
#   tests/ble/firstlink-lab.sh [N]          # N runs (default 20)
# run-lab.sh runs it as the test `firstlink` with N from LAB_FIRSTLINK_RUNS
# (default 5: each run boots a VM, about 60-90 s on a 2-core machine).
# Uses the binaries in PEDDLENET_BIN (run-lab.sh sets it); otherwise builds
# the workspace and copies them to target/ble-lab/bin. Exits non-zero if any
# run failed. Logs: target/ble-lab/firstlink-<i>.log; the VM run directory
# (daemon logs, bluetoothd.log) is kept for failed runs, its path is in the log.
set -uo pipefail
cd "$(dirname "$0")/../.."
N=${1:-${LAB_FIRSTLINK_RUNS:-20}}
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive integer, got '$N'"; exit 2; }
OUT=target/ble-lab
mkdir -p "$OUT"

if [[ -z "${PEDDLENET_BIN:-}" ]]; then
    echo "building (cargo build --workspace --all-targets)"
    cargo build -q --workspace --all-targets || { echo "FAIL build"; exit 1; }
    mkdir -p "$OUT/bin"
    built=${CARGO_TARGET_DIR:-target}/debug
    cp "$built/peddlenetd" "$built/peddlenet" "$OUT/bin/"
    export PEDDLENET_BIN=$PWD/$OUT/bin
fi

times=() failures=0 lab_errors=0 done_runs=0
summary() {
    local stats
    stats=$(printf '%s\n' ${times[@]+"${times[@]}"} | sed '/^$/d' | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "median_s=none worst_s=none"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "median_s=%.2f worst_s=%.2f", m, v[NR]
        }')
    echo "FIGURE firstlink runs=$done_runs delivered=${#times[@]} failures=$failures $stats lab_errors_redone=$lab_errors (daemons started -> first message delivered over Bluetooth; worst of the delivered runs)"
}
# Stopped early (Ctrl-C, a CI time limit): the runs done so far still count.
trap 'echo "stopped after $done_runs of $N runs"; summary; exit 130' INT TERM
for ((i = 1; i <= N; i++)); do
    log=$OUT/firstlink-$i.log
    # A run that failed before A sent its message (exit 125: the lab itself,
    # e.g. bluetoothd setup on a loaded machine; or a VM too slow to get
    # there in time) says nothing about the link: it is redone (twice at most).
    for try in 1 2 3; do
        start=$(date +%s)
        rc=0
        tests/vmlab/run.sh --bt 2 --timeout 600 -- tests/ble/lab-firstlink.sh >"$log" 2>&1 || rc=$?
        wall=$(($(date +%s) - start))
        ((rc != 0)) && ! grep -q 'firstlink: A sent at' "$log" || break
        lab_errors=$((lab_errors + 1))
        echo "run $i/$N: lab error before the send (exit $rc, try $try, VM ${wall}s): $(grep -m1 -E 'vmlab: error|FAIL' "$log" || true)"
    done
    fig=$(grep -m1 'FIGURE first_delivery_s=' "$log" || true)
    first=$(sed -n 's/.*first_delivery_s=\([0-9.]*\).*/\1/p' <<<"$fig")
    if ((rc == 0)) && [[ -n "$first" ]]; then
        times+=("$first")
        echo "run $i/$N: ${fig#*FIGURE } (VM ${wall}s)"
    else
        failures=$((failures + 1))
        why=$(grep -m1 -E 'FAIL|error' "$log" | sed 's/^\[[0-9:]*\] //' || true)
        echo "run $i/$N: FAIL (exit $rc, VM ${wall}s): ${why:-see $log}"
    fi
    done_runs=$i
done

summary
((failures == 0))
