#!/bin/bash
# Lab test: a rogue central (hci0) writes garbage, truncated, oversized and
# undecryptable frames to a real peddlenetd (hci1), one case per connection.
# The daemon must drop each with a logged reason, stay up and answer, and
# then link with a good peer (another daemon on hci0) and get its message.
#   tests/vmlab/run.sh --bt 2 --timeout 600 -- tests/ble/lab-daemon-rogue.sh
set -euo pipefail
TEST_NAME=daemon-rogue
source "$(dirname "$0")/lib.sh"
require_lab 2

BIN=${PEDDLENET_BIN:-target/debug}
W=$(mktemp -d /tmp/pn-rogue.XXXXXX)
declare -A DPID=()
cleanup() { for n in "${!DPID[@]}"; do kill "${DPID[$n]}" 2>/dev/null; done; }
trap cleanup EXIT
cli() { local n=$1; shift; "$BIN/peddlenet" --socket "$W/$n.sock" "$@"; }
start_daemon() {  # start_daemon NAME ADAPTER
    printf '[bluetooth]\nadapter = "%s"\n[web]\nenabled = false\n' "$2" >"$W/$1.toml"
    "$BIN/peddlenetd" --data-dir "$W/$1" --socket "$W/$1.sock" --config "$W/$1.toml" --name "$1" --no-mdns \
        --listen /ip4/127.0.0.1/tcp/0 --log info,peddlenet_ble=debug >>"$LOGDIR/$1.log" 2>&1 &
    DPID[$1]=$!
    local i
    for ((i = 0; i < 100; i++)); do cli "$1" status >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "daemon $1 did not start"
}

start_daemon A hci1
cli A room create camp >/dev/null
start_probe rogue ble-rogue --adapter hci0 --target "$(adapter_address hci1)"
rc=0
wait_probe rogue || rc=$?
grep -E '^(CASE|ROGUE|ERROR|FOUND)' "$LOGDIR/rogue.log" | sed 's/^/  /' || true
((rc == 0)) || fail "the daemon kept a rogue connection (or the rogue failed)"
sed 's/\x1b\[[0-9;]*m//g' "$LOGDIR/A.log" | grep -E 'BLE link rejected' | sed 's/.*driver: /  A: /' | cut -c1-160
rejected=$(count 'BLE link rejected' A)
((rejected >= 5)) || fail "expected at least 5 rejected links in the daemon's log, got $rejected"
kill -0 "${DPID[A]}" 2>/dev/null || fail "the daemon died"
cli A status >/dev/null || fail "the daemon does not answer"

# A good peer: a daemon on the rogue's adapter, after the 5-s quarantine.
sleep 6
invite=$(cli A --json room invite camp | python3 -c 'import json,sys; print(json.load(sys.stdin)["invite"])')
start_daemon B hci0
cli B room join "$invite" >/dev/null
cli B send camp "a good peer after the rogue" >/dev/null
for ((i = 0; i < 900; i++)); do cli A history camp | grep -q "a good peer after the rogue" && break; sleep 0.2; done
cli A history camp | grep -q "a good peer after the rogue" || fail "the daemon did not link with a good peer after the attacks"
say "PASS: $rejected rogue connections rejected, the daemon stayed up and then got a good peer's message"
