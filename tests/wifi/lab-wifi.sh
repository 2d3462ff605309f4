#!/bin/bash
# Lab test: real peddlenetd daemons over real wpa_supplicant and Wi-Fi Direct
# (mac80211_hwsim radios, one per network namespace, nothing else between them).
#   A (wlan0) and B (wlan1): P2P-capable wpa_supplicant, a daemon each;
#   C (wlan2): a plain Wi-Fi client (wpa_supplicant with P2P disabled), as a phone.
# 1. A and B form a group by themselves and exchange room messages.
# 2. The group breaks (A's end torn down from outside, B's link turned off);
#    A writes meanwhile; B comes back, they re-form, and B catches up.
# 3. B hosts a group; C joins it with the credentials from B's Wi-Fi QR code,
#    gets an address by DHCP, reaches the web UI and opens a guest pass; A
#    joins B's group by push button.
# 4. A daemon on C's wpa_supplicant (no P2P) runs and says why Wi-Fi Direct is off.
# Prints figures for the closing note as "FIGURE" lines.
#   tests/vmlab/run.sh --wifi 3 --timeout 900 -- tests/wifi/lab-wifi.sh
set -euo pipefail
TEST_NAME=wifi
BIN=${PEDDLENET_BIN:-target/debug}
LOGDIR=${LAB_RUN_DIR:-/tmp}/wifi-lab
mkdir -p "$LOGDIR"
W=$(mktemp -d /tmp/pn-wifi.XXXXXX)
NS=(pnA pnB pnC)
declare -A DPID=()

say() { echo "[$(date +%T)] $TEST_NAME: $*"; }
fail() {
    say "FAIL: $*"
    local f
    for f in "$LOGDIR"/*.log; do
        echo "----- $f (last 40 lines) -----"
        tail -n 40 "$f" | cut -c1-300
    done
    exit 1
}
cleanup() {
    set +e
    for n in "${!DPID[@]}"; do kill "${DPID[$n]}" 2>/dev/null; done
    sleep 0.5
    for ns in "${NS[@]}"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; done
    sleep 0.5
    for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
}
trap cleanup EXIT
[[ "${LAB_IN_VM:-0}" == 1 ]] || { echo "run me in the lab: tests/vmlab/run.sh --wifi 3 -- $0"; exit 2; }
((${LAB_WIFI:-0} >= 3)) || { echo "needs --wifi 3"; exit 2; }

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
cli() { local n=$1; shift; "$BIN/peddlenet" --socket "$W/$n.sock" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
has() { local h; h=$(cli "$1" history camp -n 500 2>/dev/null) && grep -qF -- "$2" <<<"$h"; }
wait_until() {  # wait_until SECONDS COMMAND...
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 2; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    return 1
}
wifi_status() { cli "$1" --json status | json 'd["wifi_direct"]'; }
in_group() { [[ "$(wifi_status "$1")" == *"group"* || "$(wifi_status "$1")" == *hosting* ]]; }
mesh_peers() { cli "$1" --json status | json 'd["peers"]'; }
has_peer() { (($(mesh_peers "$1") > 0)); }
not_in_group() { ! in_group "$1"; }

for i in 0 1 2; do
    ns=${NS[i]}
    phy=$(cat "/sys/class/net/wlan$i/phy80211/name")
    ip netns add "$ns"
    iw phy "$phy" set netns name "$ns"
    in_ns "$ns" ip link set lo up
done

start_supplicant() {  # start_supplicant NAME IFACE P2P(0|1)
    local n=$1 ifc=$2 p2p=$3
    {
        echo "ctrl_interface=/run/wpa-$n"
        echo "update_config=0"
        if ((p2p)); then echo "device_type=1-0050F204-1"; else echo "p2p_disabled=1"; fi
    } >"$W/wpa-$n.conf"
    in_ns "pn$n" wpa_supplicant -B -Dnl80211 -i "$ifc" -c "$W/wpa-$n.conf" -P "$W/wpa-$n.pid" -t -f "$LOGDIR/wpa_supplicant-$n.log" \
        || fail "wpa_supplicant $n did not start"
    wait_until 15 in_ns "pn$n" wpa_cli -p "/run/wpa-$n" -i "$ifc" ping || fail "wpa_supplicant $n does not answer"
}

start_daemon() {  # start_daemon NAME IFACE
    local n=$1 ifc=$2
    cat >"$W/$n.toml" <<CONF
[bluetooth]
enabled = false
[wifi_direct]
ctrl_interface = "/run/wpa-$n"
interface = "$ifc"
CONF
    in_ns "pn$n" "$BIN/peddlenetd" --log info,peddlenet_wifi=debug --data-dir "$W/$n" --socket "$W/$n.sock" \
        --config "$W/$n.toml" --name "$n" >>"$LOGDIR/$n.log" 2>&1 &
    DPID[$n]=$!
    wait_until 20 cli "$n" status || fail "daemon $n did not start"
}

start_supplicant A wlan0 1
start_supplicant B wlan1 1
t0=$(now)
start_daemon A wlan0
start_daemon B wlan1
cli A room create camp >/dev/null
invite=$(cli A --json room invite camp | json 'd["invite"]')
cli B room join "$invite" >/dev/null

# 1. A group formed by the daemons alone.
wait_until 120 in_group A || fail "A formed no group: $(wifi_status A)"
say "FIGURE group_s=$(since "$t0") (daemons started -> group up)"
say "A: $(wifi_status A)"
say "B: $(wifi_status B)"
wait_until 60 has_peer B || fail "B's mesh found no peer over the group: $(wifi_status B)"
say "FIGURE mesh_s=$(since "$t0") (daemons started -> mesh connected over the group)"
cli B peers | sed 's/^/  B peer: /'
t=$(now)
cli A send camp "over Wi-Fi Direct from A" >/dev/null
wait_until 30 has B "over Wi-Fi Direct from A" || fail "A's message did not reach B"
say "FIGURE a_to_b_s=$(since "$t")"
cli B send camp "back from B" >/dev/null
wait_until 30 has A "back from B" || fail "B's message did not reach A"
say "PASS 1: A and B formed a group by themselves and exchange messages both ways"

# 2. The group breaks while B is away: B's Wi-Fi Direct is turned off (its
#    daemon leaves the group), and A's end is torn down from outside the
#    daemon. A writes while they are apart (nothing can re-form the group:
#    without that, a quick re-formation makes "meanwhile" a race). B comes
#    back: they find each other, re-form, and B catches up.
cli B settings --wifi-direct off >/dev/null
# (Listed first, then filtered: nothing in a pipefail pipe stops reading early.)
ga=$(in_ns pnA ls /sys/class/net); ga=$(grep -m1 '^p2p-' <<<"$ga")
[[ -n "$ga" ]] && { in_ns pnA wpa_cli -p /run/wpa-A -i wlan0 p2p_group_remove "$ga" >/dev/null || true; }
wait_until 20 not_in_group A || fail "A still reports a group after it was removed: $(wifi_status A)"
wait_until 20 not_in_group B || fail "B still reports a group with Wi-Fi Direct off: $(wifi_status B)"
for i in 1 2 3; do cli A send camp "while apart $i" >/dev/null; done
sleep 2
has B "while apart 1" && fail "B has a message sent while apart, with no link between them"
t=$(now)
cli B settings --wifi-direct on >/dev/null
wait_until 150 in_group B || fail "no new group: B: $(wifi_status B)"
say "FIGURE reform_s=$(since "$t") (B back -> group up again)"
wait_until 90 has B "while apart 3" || fail "B did not catch up after the group re-formed"
has B "while apart 1" && has B "while apart 2" || fail "B missed a message sent while apart"
say "FIGURE catch_up_s=$(since "$t") (B back -> B has all 3 messages written meanwhile)"
say "PASS 2: after the group broke, A wrote while apart; they re-formed a group and B caught up"

# 3. Hosting for phones: B, a member of A's group, leaves it and starts an
#    autonomous group.
t=$(now)
cli B wifi host on >/dev/null
wait_until 90 cli B wifi qr --no-qr || fail "B does not host: $(wifi_status B)"
say "FIGURE host_s=$(since "$t") (hosting on -> autonomous group up, QR code available)"
qr=$(cli B --json wifi qr | json 'd["qr"]')
say "B: $(wifi_status B); QR: ${qr%%;P:*};P:…"
read -r ssid pass <<<"$(python3 - "$qr" <<'PY'
import sys
t = sys.argv[1]
assert t.startswith("WIFI:"), t
fields, cur, esc = {}, "", False
for ch in t[5:]:
    if esc: cur += ch; esc = False
    elif ch == "\\": esc = True
    elif ch == ";":
        if ":" in cur:
            k, v = cur.split(":", 1); fields[k] = v
        cur = ""
    else: cur += ch
assert fields.get("T") == "WPA", fields
print(fields["S"], fields["P"])
PY
)"
[[ -n "$ssid" && -n "$pass" ]] || fail "cannot read the QR code $qr"
cat >"$W/wpa-C.conf" <<CONF
ctrl_interface=/run/wpa-C
update_config=0
p2p_disabled=1
network={
    ssid="$ssid"
    psk="$pass"
    key_mgmt=WPA-PSK
    proto=RSN
}
CONF
t=$(now)
in_ns pnC wpa_supplicant -B -Dnl80211 -i wlan2 -c "$W/wpa-C.conf" -P "$W/wpa-C.pid" -t -f "$LOGDIR/wpa_supplicant-C.log" \
    || fail "C's wpa_supplicant did not start"
c_connected() { local st; st=$(in_ns pnC wpa_cli -p /run/wpa-C -i wlan2 status) && grep -q wpa_state=COMPLETED <<<"$st"; }
wait_until 60 c_connected || fail "C did not join B's network"
say "FIGURE phone_join_s=$(since "$t") (phone's supplicant started -> associated)"
cat >"$W/udhcpc.sh" <<'SCRIPT'
#!/bin/sh
[ "$1" = bound ] && ip addr add "$ip/$subnet" dev "$interface"
exit 0
SCRIPT
chmod +x "$W/udhcpc.sh"
in_ns pnC busybox udhcpc -i wlan2 -n -q -t 10 -T 2 -s "$W/udhcpc.sh" >"$LOGDIR/udhcpc.log" 2>&1 \
    || fail "C got no address by DHCP"
caddr=$(in_ns pnC ip -4 -o addr show dev wlan2 | awk '{ print $4 }')
say "C got $caddr"
[[ "$caddr" == 192.168.49.* ]] || fail "C's address $caddr is not in the group's subnet"
say "FIGURE phone_dhcp_s=$(since "$t") (phone's supplicant started -> address)"
web=$(cli B --json wifi qr | json 'd.get("web_url") or ""')
[[ "$web" == http://192.168.49.1:* ]] || fail "no web UI URL in the group: '$web'"
# (Output is read whole first, here and in has(): `… | grep -q` under
# pipefail fails when grep stops reading before the writer is done.)
page=$(in_ns pnC curl -fsS --max-time 10 "$web") || fail "C cannot load the web UI at $web"
grep -q PeddleNet <<<"$page" || fail "the page at $web is not PeddleNet's"
url=$(cli B --json guest create camp | json 'd["url"]')
[[ "$url" == "${web%/}/g/"* ]] || fail "the guest link $url does not point into the group"
jar=$W/cookies
# The guest link redirects to /guest#<session token>; the token goes with the
# cookie on every request (the cookie alone reads nothing).
loc=$(in_ns pnC curl -fsS --max-time 10 -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' "$url") || fail "C cannot open the guest link $url"
[[ "$loc" == *"/guest#"* ]] || fail "the guest link did not redirect to the guest page: '$loc'"
msgs=$(in_ns pnC curl -fsS --max-time 10 -b "$jar" -H "X-Session-Token: ${loc#*#}" "${web%/}/api/guest/messages") || fail "C's guest session is refused"
grep -q "over Wi-Fi Direct from A" <<<"$msgs" || fail "C's guest session cannot read the room"
say "PASS 3: a plain Wi-Fi client joined B's autonomous group with the QR code's credentials, got an address, reached the web UI and a room as a guest"

# 3b. A, whose own group emptied, joins B's group (a node that owns a group
#     is joined by push button, not negotiated with).
t=$(now)
member() { [[ "$(wifi_status "$1")" == *"in a group"* ]]; }
wait_until 150 member A || fail "A did not join B's group: $(wifi_status A)"
say "A: $(wifi_status A)"
cli A send camp "A in B's group" >/dev/null
wait_until 60 has B "A in B's group" || fail "A's message did not reach B in B's group"
say "FIGURE join_s=$(since "$t") (B hosting -> A's message reached B through B's group)"
say "PASS 3b: A joined B's hosted group by push button and they exchange messages"

# 4. No P2P: the daemon runs and says why.
start_daemon C wlan2
wait_until 20 bash -c "[[ \"\$($BIN/peddlenet --socket $W/C.sock --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"wifi_direct\"])')\" == off:* ]]" \
    || fail "C's daemon does not say Wi-Fi Direct is off: $(wifi_status C)"
say "C: $(wifi_status C)"
[[ "$(wifi_status C)" == *"P2P"* ]] || fail "C's reason does not name P2P: $(wifi_status C)"
(($(grep -c "Wi-Fi Direct off" "$LOGDIR/C.log") == 1)) || fail "C's log does not say it exactly once"
say "PASS 4: without P2P support the daemon runs and says once why Wi-Fi Direct is off"
