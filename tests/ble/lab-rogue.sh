#!/bin/bash
# Lab test: a rogue central (btleplug, hci0) connects to a node (hci1) and
# writes garbage, truncated, oversized and undecryptable frames, one case
# per connection. The node must drop each connection with a logged reason,
# stay up, and then link with a good peer (hci0 again) and exchange.
#   tests/vmlab/run.sh --bt 2 -- tests/ble/lab-rogue.sh
set -euo pipefail
TEST_NAME=rogue
source "$(dirname "$0")/lib.sh"
require_lab 2

start_probe rogue ble-rogue --adapter hci0
sleep 2
start_probe node ble-probe --adapter hci1 --role peripheral --timeout 280 exchange --send 100 --expect 1 --seed 3
rc=0
wait_probe rogue || rc=$?
grep -E '^(CASE|ROGUE|ERROR|FOUND)' "$LOGDIR/rogue.log" | sed 's/^/  /'
((rc == 0)) || fail "the node kept a rogue connection (or the rogue failed)"
say "node's reasons:"
sed 's/\x1b\[[0-9;]*m//g' "$LOGDIR/node.log" | grep -E 'BLE link rejected|BLE link down' | sed 's/.*driver: /  /' | cut -c1-200
rejected=$(count 'BLE link rejected' node)
((rejected >= 5)) || fail "expected at least 5 rejected links in the node's log, got $rejected"
kill -0 "${PROBE_PID[node]}" 2>/dev/null || fail "the node died"
# A good peer from the same adapter, once the node's 5-s quarantine is over.
sleep 6
start_probe good ble-probe --adapter hci0 --role central --timeout 120 exchange --send 200 --expect 1 --seed 4
rc_good=0 rc_node=0
wait_probe good || rc_good=$?
wait_probe node || rc_node=$?
((rc_good == 0 && rc_node == 0)) || fail "good peer and node did not exchange after the attacks ($rc_good/$rc_node)"
[[ "$(shas good SENT)" == "$(shas node RECV)" && "$(shas node SENT)" == "$(shas good RECV)" ]] || fail "checksums differ"
say "PASS: $rejected rogue connections rejected, node still up and linked with a good peer"
