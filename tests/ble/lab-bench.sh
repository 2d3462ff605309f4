#!/bin/bash
# Lab benchmark (guest side; tests/ble/bench-lab.sh runs it and prints the table).
# 1. The PeddleNet link through the public API (ble-probe bench): ping
#    latency, throughput both ways, time from advertising to first message.
# 2. Plain GATT baselines (ble-raw): write commands, indications, notifications.
#   tests/vmlab/run.sh --bt 2 -- tests/ble/lab-bench.sh [BYTES] [PINGS]
set -euo pipefail
TEST_NAME=bench
source "$(dirname "$0")/lib.sh"
require_lab 2
BYTES=${1:-1048576}
PINGS=${2:-100}

# PeddleNet first, on a fresh BlueZ: a device object left over from the
# plain-GATT runs would carry their cached service list (see the
# "Limits" section of docs/ble-link.md).
# The client scans before the server advertises (btvirt reports an
# advertiser once per scan), as a node that is already running would.
start_probe bench-client ble-probe --adapter hci0 --role central --timeout 400 bench --bytes "$BYTES" --pings "$PINGS"
sleep 2
start_probe bench-server ble-probe --adapter hci1 --role peripheral --timeout 400 bench --serve
rc=0
wait_probe bench-client || rc=$?
wait_probe bench-server || true
grep -h '^RESULT' "$LOGDIR/bench-client.log" "$LOGDIR/bench-server.log" | sed 's/^/BENCH: /'
((rc == 0)) || fail "bench client failed"

"$(dirname "$0")/lab-raw.sh" "$BYTES"
