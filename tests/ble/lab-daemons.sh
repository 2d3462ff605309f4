#!/bin/bash
# Lab test: real peddlenetd daemons over real BlueZ (three btvirt controllers).
#   A: Bluetooth only (hci0), in a network namespace with loopback alone;
#   B: Bluetooth (hci1) and a LAN link to C (veth 10.77.0.1 <-> 10.77.0.2);
#   C: LAN only.
# 1. A and B, with only Bluetooth between them, exchange messages both ways.
# 2. Bridge: A's message reaches C and C's reaches A, through B.
# 3. A long reconciliation over Bluetooth (B was away while A wrote 60
#    messages of 30 KiB) is cut by powering B's adapter off mid-way, and resumes.
# (A rogue central against a daemon: lab-daemon-rogue.sh.)
# Prints figures for the closing note (times, rates) as "FIGURE" lines.
#   tests/vmlab/run.sh --bt 3 --timeout 600 -- tests/ble/lab-daemons.sh
set -euo pipefail
TEST_NAME=daemons
source "$(dirname "$0")/lib.sh"
require_lab 3

BIN=${PEDDLENET_BIN:-target/debug}
W=$(mktemp -d /tmp/pn-daemons.XXXXXX)
NS=(pnA pnB pnC)
declare -A DPID=()

cleanup() {
    set +e
    for n in A B C; do [[ -n "${DPID[$n]:-}" ]] && kill "${DPID[$n]}" 2>/dev/null; done
    sleep 0.5
    for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
}
trap cleanup EXIT

for ns in "${NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n pnB link add lan type veth peer name lan netns pnC
ip -n pnB addr add 10.77.0.1/24 dev lan && ip -n pnB link set lan up
ip -n pnC addr add 10.77.0.2/24 dev lan && ip -n pnC link set lan up

cat >"$W/A.toml" <<EOF
[bluetooth]
adapter = "hci0"
[web]
enabled = false
EOF
cat >"$W/B.toml" <<EOF
[bluetooth]
adapter = "hci1"
[web]
enabled = false
EOF
cat >"$W/C.toml" <<EOF
[bluetooth]
enabled = false
[web]
enabled = false
EOF

start_daemon() {  # start_daemon NAME NAMESPACE LISTEN [PEER]
    local n=$1 ns=$2 listen=$3 peer=${4:-}
    local args=(--data-dir "$W/$n" --socket "$W/$n.sock" --config "$W/$n.toml" --name "$n" --no-mdns --listen "$listen" --log info,peddlenet_ble=debug)
    [[ -n "$peer" ]] && args+=(--peer "$peer")
    ip netns exec "$ns" "$BIN/peddlenetd" "${args[@]}" >>"$LOGDIR/$n.log" 2>&1 &
    DPID[$n]=$!
    local i
    for ((i = 0; i < 100; i++)); do
        cli "$n" status >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "daemon $n did not start"
}
cli() { local n=$1; shift; "$BIN/peddlenet" --socket "$W/$n.sock" "$@"; }
stop_daemon() { kill "${DPID[$1]}" 2>/dev/null || true; wait "${DPID[$1]}" 2>/dev/null || true; unset "DPID[$1]"; }
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
has() {  # has NAME TEXT: NAME's history of "camp" holds TEXT
    cli "$1" history camp -n 500 2>/dev/null | grep -qF -- "$2"
}
wait_has() {  # wait_has NAME TEXT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do has "$1" "$2" && return 0; sleep 0.1; done
    return 1
}
messages() { cli "$1" --json room list | python3 -c 'import json,sys; print(sum(r["messages"] for r in json.load(sys.stdin) if r["name"]=="camp"))'; }
bt_links() { cli "$1" --json peers | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin) if p["link"]=="bluetooth"))'; }
wait_link() {  # wait_link NAME SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do (($(bt_links "$1") > 0)) && return 0; sleep 0.1; done
    return 1
}

t0=$(now)
start_daemon A pnA /ip4/127.0.0.1/tcp/0
start_daemon B pnB /ip4/10.77.0.1/tcp/4717
start_daemon C pnC /ip4/10.77.0.2/tcp/4717 /ip4/10.77.0.1/tcp/4717
say "A: $(cli A status | grep bluetooth), B: $(cli B status | grep bluetooth), C: $(cli C status | grep bluetooth)"
cli A room create camp >/dev/null
invite=$(cli A --json room invite camp | python3 -c 'import json,sys; print(json.load(sys.stdin)["invite"])')
cli B room join "$invite" >/dev/null
cli C room join "$invite" >/dev/null

# 1. Bluetooth only between A and B.
wait_link A 90 || fail "A and B did not link over Bluetooth"
say "FIGURE link_up_s=$(since "$t0") (daemons started -> Bluetooth link up)"
cli A peers | sed 's/^/  A peer: /'
t=$(now)
cli A send camp "over the air from A" >/dev/null
wait_has B "over the air from A" 30 || fail "A's message did not reach B over Bluetooth"
say "FIGURE a_to_b_s=$(since "$t")"
t=$(now)
cli B send camp "back from B" >/dev/null
wait_has A "back from B" 30 || fail "B's message did not reach A over Bluetooth"
say "FIGURE b_to_a_s=$(since "$t")"
say "PASS 1: A and B exchange messages both ways with only Bluetooth between them"

# 2. The bridge.
t=$(now)
cli A send camp "from the tent to the camp" >/dev/null
wait_has C "from the tent to the camp" 30 || fail "A's message did not reach C through B"
say "FIGURE a_to_c_s=$(since "$t")"
t=$(now)
cli C send camp "from the camp to the tent" >/dev/null
wait_has A "from the camp to the tent" 30 || fail "C's message did not reach A through B"
say "FIGURE c_to_a_s=$(since "$t")"
say "PASS 2: A (Bluetooth only) and C (LAN only) reach each other through B"

# 3. A long reconciliation, cut and resumed.
stop_daemon B
# 60 messages of 30 KiB, about 1.8 MB to reconcile and fetch over
# Bluetooth (each CLI call costs about half a second in the emulated VM).
N=60
pad=$(head -c 30000 /dev/zero | tr '\0' x)
for i in $(seq 1 $N); do cli A send camp "backlog $i $pad" >/dev/null; done
before=$(messages A)
mark=$(wc -l <"$LOGDIR/B.log")
start_daemon B pnB /ip4/10.77.0.1/tcp/4717
t=$(now)
# Cut as soon as the first backlog envelope has arrived (30 KB: A's outbox
# sends them one by one when the link comes up, and a sync fetch answer
# carries hundreds of KB): watched in B's log, faster than asking B.
cut=
for ((i = 0; i < 1800; i++)); do
    if tail -n +"$mark" "$LOGDIR/B.log" | grep -qE 'message received .* len=[0-9]{5,}'; then
        btmgmt -i hci1 power off >/dev/null
        cut=$(messages B)
        break
    fi
    sleep 0.1
done
[[ -n "$cut" ]] || fail "the reconciliation never got going (B has $(messages B) of $before)"
((cut < before)) || fail "B had everything before the cut ($cut of $before): not a cut mid-way"
say "cut B's adapter with $cut of $before messages after $(since "$t") s"
sleep 3
btmgmt -i hci1 power on >/dev/null
for ((i = 0; i < 1200; i++)); do (($(messages B) >= before)) && break; sleep 0.25; done
got=$(messages B)
((got >= before)) || fail "after the link came back, B has $got of $before"
total=$(since "$t")
say "FIGURE backlog_messages=$N backlog_total_s=$total (including the 3 s cut and the reconnection)"
say "PASS 3: the reconciliation resumed after the link dropped: B has all $got"

say "PASS: all"
