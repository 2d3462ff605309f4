#!/bin/bash
# VM lab Wi-Fi self-test (guest script). Run it through the lab:
#   tests/vmlab/run.sh --wifi 2 -- tests/vmlab/selftest-wifi.sh
# Moves the two mac80211_hwsim radios into two network namespaces, runs one
# wpa_supplicant in each, forms a Wi-Fi Direct (P2P) group with push-button
# negotiation and pings the peer over IPv6 link-local on the group interface.
# Exit 0 only if the ping works.
set -euo pipefail

WORK=/tmp/selftest-wifi          # guest tmpfs
LOGS=${LAB_RUN_DIR:-$WORK}       # wpa_supplicant logs end up in the run dir
NS=(lab-a lab-b)
IFACE=(wlan0 wlan1)
NEGOTIATION_ATTEMPTS=3

say() { echo "selftest-wifi: $*"; }
fail() {
    say "FAIL: $*"
    local i
    for i in 0 1; do
        [[ -f "$LOGS/wpa_supplicant-${NS[i]}.log" ]] || continue
        say "last lines of wpa_supplicant-${NS[i]}.log:"
        tail -n 15 "$LOGS/wpa_supplicant-${NS[i]}.log" | sed 's/^/  | /'
    done
    exit 1
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
cli() {  # cli INDEX wpa_cli-args...: talk to wpa_supplicant number INDEX
    local i=$1; shift
    in_ns "${NS[i]}" wpa_cli -p "/run/wpa_supplicant-${NS[i]}" -i "${IFACE[i]}" "$@"
}

# poll SECONDS COMMAND...: run COMMAND every 0.5 s until it succeeds (0) or
# SECONDS have passed (1).
poll() {
    local timeout=$1 t
    shift
    for ((t = 0; t < timeout * 2; t++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# wait_until SECONDS DESCRIPTION COMMAND...: poll, and fail the test on timeout.
wait_until() {
    local timeout=$1 what=$2
    shift 2
    poll "$timeout" "$@" || fail "timed out after ${timeout}s waiting for $what"
}

start_supplicant() {  # start_supplicant INDEX: namespace, radio, wpa_supplicant
    local i=$1 ns=${NS[$1]} ifc=${IFACE[$1]} phy
    phy=$(cat "/sys/class/net/$ifc/phy80211/name") || fail "no radio behind $ifc"
    ip netns add "$ns"
    iw phy "$phy" set netns name "$ns"
    in_ns "$ns" ip link set lo up
    cat >"$WORK/$ns.conf" <<EOF
ctrl_interface=/run/wpa_supplicant-$ns
update_config=0
device_name=$ns
device_type=1-0050F204-1
EOF
    in_ns "$ns" wpa_supplicant -B -Dnl80211 -i "$ifc" -c "$WORK/$ns.conf" \
        -P "$WORK/$ns.pid" -t -f "$LOGS/wpa_supplicant-$ns.log" \
        || fail "wpa_supplicant for $ifc did not start"
    wait_until 15 "wpa_supplicant control socket of $ns" cli "$i" ping
    say "$ns: $phy/$ifc, wpa_supplicant up"
}

p2p_address() {  # p2p_address INDEX: P2P device address
    cli "$1" status | sed -n 's/^p2p_device_address=//p'
}

# sees_peer INDEX ADDR NAME: ADDR fully discovered (not only from its probe
# requests, which is not enough for p2p_connect: "unknown P2P Device").
sees_peer() {
    local info
    info=$(cli "$1" p2p_peer "$2")
    [[ "$info" == *"device_name=$3"* && "$info" != *PROBE_REQ_ONLY* ]]
}

group_iface() {  # group_iface INDEX: name of the P2P group interface, if any
    in_ns "${NS[$1]}" ip -o link show | awk -F': ' '$2 ~ /^p2p-/ { sub(/@.*/, "", $2); print $2; exit }'
}

# group_ready INDEX: the group interface exists and is connected (client
# associated and keyed, or GO running): wpa_state=COMPLETED on it.
group_ready() {
    local g
    g=$(group_iface "$1")
    [[ -n "$g" ]] || return 1
    [[ "$(in_ns "${NS[$1]}" wpa_cli -p "/run/wpa_supplicant-${NS[$1]}" -i "$g" status)" \
        == *wpa_state=COMPLETED* ]]
}

link_local() {  # link_local INDEX IFACE: usable (non-tentative) fe80:: address
    in_ns "${NS[$1]}" ip -6 -o addr show dev "$2" scope link \
        | awk '!/tentative/ { sub(/\/.*/, "", $4); print $4; exit }'
}

has_link_local() { [[ -n "$(link_local "$1" "$2")" ]]; }

discover_peers() {  # discover_peers ADDR0 ADDR1
    cli 0 p2p_find >/dev/null
    cli 1 p2p_find >/dev/null
    wait_until 30 "${NS[0]} to discover ${NS[1]}" sees_peer 0 "$2" "${NS[1]}"
    wait_until 30 "${NS[1]} to discover ${NS[0]}" sees_peer 1 "$1" "${NS[0]}"
}

# form_group ADDR0 ADDR1: push-button GO negotiation on both sides, lab-a
# wants to be group owner. Succeeds once both ends of the group are up.
# (GO negotiation frames have tight deadlines; a busy emulated CPU can miss
# them, which is why the caller retries.)
form_group() {
    local reply
    reply=$(cli 0 p2p_connect "$2" pbc go_intent=15)
    [[ "$reply" == OK ]] || fail "p2p_connect on ${NS[0]} answered '$reply'"
    reply=$(cli 1 p2p_connect "$1" pbc go_intent=0)
    [[ "$reply" == OK ]] || fail "p2p_connect on ${NS[1]} answered '$reply'"
    poll 45 group_ready 0 && poll 20 group_ready 1
}

reset_p2p() {  # drop half-formed groups and pending negotiations
    local i g
    for i in 0 1; do
        g=$(group_iface "$i")
        [[ -z "$g" ]] || cli "$i" p2p_group_remove "$g" >/dev/null 2>&1 || true
        cli "$i" p2p_cancel >/dev/null 2>&1 || true
    done
    sleep 1
}

main() {
    [[ "${LAB_IN_VM:-0}" == 1 ]] || fail "run me inside the lab: tests/vmlab/run.sh --wifi 2 -- $0"
    ((${LAB_WIFI:-0} >= 2)) || fail "needs at least 2 radios (run.sh --wifi 2)"
    mkdir -p "$WORK"
    local start=$SECONDS

    start_supplicant 0
    start_supplicant 1
    local addr0 addr1
    addr0=$(p2p_address 0) addr1=$(p2p_address 1)
    [[ -n "$addr0" && -n "$addr1" ]] || fail "no P2P device addresses"
    say "P2P devices: ${NS[0]}=$addr0 ${NS[1]}=$addr1"

    local attempt
    for ((attempt = 1; attempt <= NEGOTIATION_ATTEMPTS; attempt++)); do
        discover_peers "$addr0" "$addr1"
        say "attempt $attempt: peers see each other after $((SECONDS - start))s, negotiating"
        form_group "$addr0" "$addr1" && break
        ((attempt < NEGOTIATION_ATTEMPTS)) || fail "no P2P group after $NEGOTIATION_ATTEMPTS attempts"
        say "attempt $attempt: no group yet, cancelling and retrying"
        reset_p2p
    done
    local g0 g1
    g0=$(group_iface 0) g1=$(group_iface 1)
    say "group formed after $((SECONDS - start))s: ${NS[0]}/$g0 (GO) <-> ${NS[1]}/$g1"

    wait_until 20 "IPv6 link-local on $g0" has_link_local 0 "$g0"
    wait_until 20 "IPv6 link-local on $g1" has_link_local 1 "$g1"
    local ll0 ll1
    ll0=$(link_local 0 "$g0") ll1=$(link_local 1 "$g1")
    say "${NS[0]} $ll0%$g0, ${NS[1]} $ll1%$g1"

    in_ns "${NS[0]}" ping -6 -c 3 -i 0.5 -w 15 "$ll1%$g0" | sed 's/^/  | /' \
        || fail "ping6 ${NS[0]} -> ${NS[1]} failed"
    in_ns "${NS[1]}" ping -6 -c 3 -i 0.5 -w 15 "$ll0%$g1" | sed 's/^/  | /' \
        || fail "ping6 ${NS[1]} -> ${NS[0]} failed"
    say "PASS: P2P group and IPv6 link-local ping both ways ($((SECONDS - start))s)"

    cli 0 p2p_group_remove "$g0" >/dev/null 2>&1 || true
    cli 1 terminate >/dev/null 2>&1 || true
    cli 0 terminate >/dev/null 2>&1 || true
}

main "$@"
