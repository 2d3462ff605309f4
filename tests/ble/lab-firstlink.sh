#!/bin/bash
# Lab test, one run: how long until the first message crosses a fresh
# Bluetooth link between two peddlenetd, in a VM booted for this run.
#   A on hci0, B on hci1, both roles each, Bluetooth only (each daemon in a
#   network namespace with loopback alone, no mDNS). Setup, Bluetooth off: A
#   creates a room, B joins it, both stop. Then both start with Bluetooth on
#   (the clock starts); A sends one message 8 s later; B must show it within
#   60 s of the send.
# Prints "FIGURE first_delivery_s=S link_up_s=S" (from starting the daemons
# to the message in B's room, and to B's first Bluetooth peer) or FAIL.
# tests/ble/firstlink-lab.sh runs it N times, each in a fresh VM, and
# prints the median and worst time with the failures counted.
#   tests/vmlab/run.sh --bt 2 --timeout 300 -- tests/ble/lab-firstlink.sh
# LAB_FIRSTLINK_LOG: the daemons' --log filter (default info,peddlenet_ble=debug);
# LAB_FIRSTLINK_BTMON=1: record the HCI traffic of both controllers
# (btmon -w, read it on the host with `btmon -r FILE`).
set -euo pipefail
TEST_NAME=firstlink
source "$(dirname "$0")/lib.sh"
require_lab 2

BIN=${PEDDLENET_BIN:-target/debug}
SEND_AFTER=8
DELIVER_WITHIN=60
W=$(mktemp -d /tmp/pn-firstlink.XXXXXX)
NS=(pnA pnB)
declare -A DPID=()
WATCH_PID="" BTMON_PID=""

cleanup() {
    set +e
    [[ -n "$WATCH_PID" ]] && kill "$WATCH_PID" 2>/dev/null
    for n in A B; do [[ -n "${DPID[$n]:-}" ]] && kill "${DPID[$n]}" 2>/dev/null; done
    sleep 0.5
    [[ -n "$BTMON_PID" ]] && kill "$BTMON_PID" 2>/dev/null
    for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
}
trap cleanup EXIT

for ns in "${NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
if [[ "${LAB_FIRSTLINK_BTMON:-0}" == 1 ]]; then
    btmon -w "$LOGDIR/hci.btsnoop" >/dev/null 2>&1 &
    BTMON_PID=$!
    sleep 0.5
fi
write_config() {  # write_config on|off
    local n hci
    for n in A B; do
        hci=hci0
        [[ $n == B ]] && hci=hci1
        printf '[bluetooth]\nenabled = %s\nadapter = "%s"\n[web]\nenabled = false\n' \
            "$([[ $1 == on ]] && echo true || echo false)" "$hci" >"$W/$n.toml"
    done
}
cli() { local n=$1; shift; "$BIN/peddlenet" --socket "$W/$n.sock" "$@"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
start_daemon() {  # start_daemon NAME: in the background, returns at once
    local n=$1
    ip netns exec "pn$n" "$BIN/peddlenetd" --data-dir "$W/$n" --socket "$W/$n.sock" \
        --config "$W/$n.toml" --name "$n" --no-mdns --listen /ip4/127.0.0.1/tcp/0 \
        --log "${LAB_FIRSTLINK_LOG:-info,peddlenet_ble=debug}" >>"$LOGDIR/$n.log" 2>&1 &
    DPID[$n]=$!
}
wait_daemon() {
    local i
    for ((i = 0; i < 300; i++)); do
        cli "$1" status >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "daemon $1 did not start"
}

stop_daemon() { kill "${DPID[$1]}" 2>/dev/null || true; wait "${DPID[$1]}" 2>/dev/null || true; unset "DPID[$1]"; }

# Setup with Bluetooth off: the room, then both daemons stop.
write_config off
start_daemon A
start_daemon B
wait_daemon A
wait_daemon B
cli A room create camp >/dev/null
invite=$(cli A --json room invite camp | python3 -c 'import json,sys; print(json.load(sys.stdin)["invite"])')
cli B room join "$invite" >/dev/null
stop_daemon A
stop_daemon B
say "room set up (Bluetooth off); starting both daemons with Bluetooth on"

write_config on
t0=$(now)
start_daemon A
start_daemon B
wait_daemon A
wait_daemon B
say "daemons up after $(secs "$(now)" "$t0") s"
# B's events, each line stamped with the time it arrived.
cli B watch 2>/dev/null | while IFS= read -r line; do printf '%s %s\n' "$(now)" "$line"; done \
    >"$LOGDIR/B-watch.log" &
WATCH_PID=$!

text="first over the air $RANDOM$RANDOM"
while (($(awk -v a="$(now)" -v b="$t0" -v s="$SEND_AFTER" 'BEGIN { print (a - b < s) }'))); do
    sleep 0.1
done
ts=$(now)
cli A send camp "$text" >/dev/null
say "A sent at $(secs "$ts" "$t0") s"

got=""
deadline=$(awk -v a="$ts" -v s="$DELIVER_WITHIN" 'BEGIN { printf "%.3f", a + s }')
while (($(awk -v a="$(now)" -v d="$deadline" 'BEGIN { print (a < d) }'))); do
    got=$(grep -m1 -F -- "$text" "$LOGDIR/B-watch.log" | cut -d' ' -f1 || true)
    [[ -n "$got" ]] && break
    sleep 0.1
done
# Peer-up lines of the watch stream name the link; the first Bluetooth one.
up=$(grep -m1 -iE '^[0-9.]+ peer up: .* via bluetooth' "$LOGDIR/B-watch.log" | cut -d' ' -f1 || true)
link_up=unknown
[[ -n "$up" ]] && link_up=$(secs "$up" "$t0")
for n in A B; do
    say "$n: $(grep -cE 'BLE link up' "$LOGDIR/$n.log" || true) link(s) up, $(grep -cE 'BLE link down' "$LOGDIR/$n.log" || true) down, $(grep -cE 'connection attempt failed|link ended; reconnecting' "$LOGDIR/$n.log" || true) retries"
done
[[ -n "$got" ]] || fail "B did not show A's message ${DELIVER_WITHIN} s after it was sent (Bluetooth link up: $link_up)"
say "FIGURE first_delivery_s=$(secs "$got" "$t0") send_to_delivery_s=$(secs "$got" "$ts") link_up_s=$link_up"
say "PASS: the first message crossed the fresh Bluetooth link"
