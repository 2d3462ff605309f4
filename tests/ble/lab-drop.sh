#!/bin/bash
# Lab test: the link drops in the middle of a large transfer (the central's
# adapter is powered off for a few seconds) and comes back with backoff;
# the transfer then completes and checksums match.
#   tests/vmlab/run.sh --bt 2 -- tests/ble/lab-drop.sh
set -euo pipefail
TEST_NAME=drop
source "$(dirname "$0")/lib.sh"
require_lab 2
OFF_SECS=${LAB_OFF_SECS:-4}

start_probe A ble-probe --adapter hci0 --role central --timeout 230 exchange --send 307200,307200 --expect 0 --seed 5
sleep 2
start_probe B ble-probe --adapter hci1 --role peripheral --timeout 230 exchange --expect 2 --seed 6
wait_for A '^LINKUP' 90 || fail "no link within 90 s"
sleep 2  # a 300 KiB message takes several seconds here
[[ $(count '^RECV' B) == 0 ]] || say "warning: B already got a message before the drop"
say "powering hci0 off for ${OFF_SECS}s, mid-transfer"
btmgmt --index hci0 power off | tail -1
sleep "$OFF_SECS"
btmgmt --index hci0 power on | tail -1
rc_a=0 rc_b=0
wait_probe A || rc_a=$?
wait_probe B || rc_b=$?
sed 's/\x1b\[[0-9;]*m//g' "$LOGDIR/A.log" | grep -E '^(LINKUP|LINKDOWN|SENT|PEERDONE)|reconnecting in|attempt failed' | sed 's/.*central: /  /;s/^/  /' | cut -c1-200
grep -E '^(RECV|LINKDOWN|LINKUP)' "$LOGDIR/B.log" | sed 's/^/  B: /' | cut -c1-160
((rc_a == 0 && rc_b == 0)) || fail "probes exited with $rc_a/$rc_b"
(($(count '^LINKDOWN' A) >= 1)) || fail "the link never dropped"
(($(count '^LINKUP' A) >= 2)) || fail "no reconnection"
[[ "$(shas A SENT)" == "$(shas B RECV)" ]] || fail "checksums differ"
first_down=$(grep -m1 '^LINKDOWN' "$LOGDIR/A.log" | sed -n 's/.*epoch_ms=\([0-9]*\).*/\1/p')
last_up=$(grep '^LINKUP' "$LOGDIR/A.log" | tail -1 | sed -n 's/.*epoch_ms=\([0-9]*\).*/\1/p')
say "PASS: dropped mid-transfer, reconnected $(((last_up - first_down) / 1000)) s later, both 300 KiB messages arrived intact"
