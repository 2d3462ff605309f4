#!/bin/bash
# Lab baseline: plain GATT (bluer server on hci1, btleplug client on hci0),
# without the PeddleNet stack. Prints the raw RESULT lines.
#   tests/vmlab/run.sh --bt 2 -- tests/ble/lab-raw.sh [BYTES] [MODES]
# MODES: any of write (write commands), indicate, notify (default: all three).
set -euo pipefail
TEST_NAME=${TEST_NAME:-raw}
source "$(dirname "$0")/lib.sh"
require_lab 2
BYTES=${1:-1048576}
MODES=${2:-write indicate notify}

for mode in $MODES; do
    server_args=()
    client_mode=$mode
    case $mode in
        indicate) server_args=(--indicate) client_mode=notify ;;
    esac
    # Scan first (btvirt reports an advertiser once per scan), then advertise.
    start_probe "raw-client-$mode" ble-raw --adapter hci0 client --mode "$client_mode" --bytes "$BYTES" --timeout 150
    sleep 2
    start_probe "raw-server-$mode" ble-raw --adapter hci1 serve "${server_args[@]}" --timeout 160
    wait_probe "raw-client-$mode" || fail "raw client ($mode) failed"
    sleep 1
    kill_probe "raw-server-$mode"
    grep -h '^RESULT\|^PUSHED\|^CONNECTED' "$LOGDIR/raw-client-$mode.log" "$LOGDIR/raw-server-$mode.log" \
        | sed "s/^/RAW $mode: /"
done
