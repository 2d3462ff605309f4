#!/bin/bash
# Runs the BLE lab tests (host side): builds the lab programs, runs each
# tests/ble/lab-<name>.sh in its own VM through tests/vmlab/run.sh, prints
# a PASS/FAIL line per test and a summary, and exits non-zero on any failure.
#   tests/ble/run-lab.sh                 # all: exchange drop rogue observer daemons daemon-rogue firstlink
#   tests/ble/run-lab.sh rogue drop      # some
# `firstlink` boots a fresh VM per run: LAB_FIRSTLINK_RUNS runs (default 5,
# about 1.5 min each; tests/ble/firstlink-lab.sh 20 for the full measurement).
# Full output of each test: target/ble-lab/<name>.log (the VM run directory,
# with the probes' logs, is kept on failure; its path is in that log).
set -uo pipefail
cd "$(dirname "$0")/../.."
TESTS=("$@")
((${#TESTS[@]})) || TESTS=(exchange drop rogue observer daemons daemon-rogue firstlink)
OUT=target/ble-lab
mkdir -p "$OUT"

echo "building the lab programs (cargo build --workspace --all-targets: a no-op after .ci/run's build)"
if ! cargo build -q --workspace --all-targets; then
    echo "FAIL build"
    exit 1
fi
# A private copy: a concurrent build elsewhere in the workspace cannot swap it.
mkdir -p "$OUT/bin"
built=${CARGO_TARGET_DIR:-target}/debug
cp "$built/examples/ble-probe" "$built/examples/ble-rogue" "$built/examples/ble-raw" \
    "$built/peddlenetd" "$built/peddlenet" "$OUT/bin/"
export PEDDLENET_BIN=$PWD/$OUT/bin
export LAB_BLE_BIN=$PWD/$OUT/bin

declare -A DESC=(
    [exchange]="two nodes (both roles) exchange 3 messages each way incl. 300 KiB"
    [drop]="link dropped mid-transfer (adapter power-cycled), reconnects, completes"
    [rogue]="rogue central's bad frames rejected, node stays up, links a good peer"
    [observer]="60-s observer: advertisements carry nothing node-specific"
    [daemons]="peddlenetd: Bluetooth-only pair, a Bluetooth/LAN bridge, a cut reconciliation resumes"
    [daemon-rogue]="peddlenetd rejects a rogue central's bad frames, stays up, links a good peer"
    [firstlink]="two fresh peddlenetd, Bluetooth only: the first message crosses in every run (median/worst time)"
)
# Controllers each test needs (default 2).
declare -A BT=([daemons]=3)
passed=0 failed=()
declare -A redone=()
for t in "${TESTS[@]}"; do
    script=tests/ble/lab-$t.sh
    [[ -x "$script" ]] || { echo "FAIL $t: no $script"; failed+=("$t"); continue; }
    log=$OUT/$t.log
    start=$(date +%s)
    rc=0
    if [[ $t == firstlink ]]; then
        # One VM per run; per-run lines and the summary go to the log.
        tests/ble/firstlink-lab.sh "${LAB_FIRSTLINK_RUNS:-5}" >"$log" 2>&1 || rc=$?
    else
        # Exit 125 is the lab itself (setup, or btvirt/bluetoothd/the guest
        # kernel dying under the test: tests/vmlab/guest-init.sh lab_fault):
        # the test is redone once, and the redo is reported on its line.
        for try in 1 2; do
            rc=0
            tests/vmlab/run.sh --bt "${BT[$t]:-2}" --timeout 900 -- "$script" >"$log" 2>&1 || rc=$?
            ((rc == 125 && try == 1)) || break
            cp "$log" "$OUT/$t.lab-fault.log"
            redone[$t]=$(grep -m1 'vmlab: error' "$log" | sed 's/^.*vmlab: error: //')
            echo "REDO $t: the lab failed under it (${redone[$t]}); log: $OUT/$t.lab-fault.log"
        done
    fi
    secs=$(($(date +%s) - start))
    if ((rc == 0)); then
        passed=$((passed + 1))
        echo "PASS $t (${secs}s${redone[$t]:+, redone after a lab fault}): ${DESC[$t]:-}"
        grep -E ': (PASS|REPORT|FIGURE)|^FIGURE|^run [0-9]' "$log" | sed 's/^\[[0-9:]*\] /    /; s/^\(FIGURE\|run \)/    \1/'
    else
        failed+=("$t")
        echo "FAIL $t (exit $rc, ${secs}s): ${DESC[$t]:-}; log: $log"
        grep -m8 -E 'FAIL|error|^FIGURE' "$log" | sed 's/^/    /'
    fi
done
echo "summary: $passed of ${#TESTS[@]} BLE lab tests passed${failed:+; failed: ${failed[*]}}${redone[*]:+; ${#redone[@]} redone after a lab fault: ${!redone[*]}}"
((${#failed[@]} == 0))
