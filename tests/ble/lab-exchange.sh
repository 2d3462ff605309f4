#!/bin/bash
# Lab test: two processes on hci0 and hci1 (both roles each) link once and
# exchange messages both ways, one of 300 KiB; checksums must match.
#   tests/vmlab/run.sh --bt 2 -- tests/ble/lab-exchange.sh
set -euo pipefail
TEST_NAME=exchange
source "$(dirname "$0")/lib.sh"
require_lab 2

# LAB_ROLES="central peripheral" runs A as central only and B as peripheral only.
read -r ROLE_A ROLE_B <<<"${LAB_ROLES:-both both}"
start_probe A ble-probe --adapter hci0 --role "$ROLE_A" --timeout 170 exchange --send 100,33792,307200 --expect 3 --seed 1
sleep 2
start_probe B ble-probe --adapter hci1 --role "$ROLE_B" --timeout 170 exchange --send 307200,200,1 --expect 3 --seed 2
rc_a=0 rc_b=0
wait_probe A || rc_a=$?
wait_probe B || rc_b=$?
((rc_a == 0 && rc_b == 0)) || fail "probes exited with $rc_a/$rc_b"
[[ "$(shas A SENT)" == "$(shas B RECV)" ]] || fail "A→B checksums differ"
[[ "$(shas B SENT)" == "$(shas A RECV)" ]] || fail "B→A checksums differ"
[[ $(shas A SENT | wc -l) == 3 && $(shas B SENT | wc -l) == 3 ]] || fail "expected 3 messages each way"
links_a=$(count '^LINKUP' A) links_b=$(count '^LINKUP' B)
say "A: $links_a link(s) ($(grep -m1 '^LINKUP' "$LOGDIR/A.log")), B: $links_b link(s)"
grep -h '^RECV' "$LOGDIR/A.log" "$LOGDIR/B.log" | sed 's/^/  /'
((links_a == 1 && links_b == 1)) || fail "expected exactly one link between the two nodes"
say "PASS: 3 messages each way (incl. 300 KiB), checksums match, one link"
