#!/bin/bash
# VM lab Bluetooth self-test (guest script). Run it through the lab:
#   tests/vmlab/run.sh --bt 2 -- tests/vmlab/selftest-bt.sh
# hci0 advertises (LE, connectable, general discoverable); hci1 runs an
# LE-only discovery and must find hci0's address. Exit 0 only if found.
set -euo pipefail

ADV_INSTANCE=1
SCAN_ATTEMPTS=3

say() { echo "selftest-bt: $*"; }
fail() { say "FAIL: $*"; exit 1; }

adapter_address() {  # adapter_address hciN: its public address, via bluetoothd
    dbus-send --system --print-reply --dest=org.bluez "/org/bluez/$1" \
        org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Address \
        | sed -n 's/.*string "\([0-9A-F:]*\)".*/\1/p'
}

main() {
    [[ "${LAB_IN_VM:-0}" == 1 ]] || fail "run me inside the lab: tests/vmlab/run.sh --bt 2 -- $0"
    ((${LAB_BT:-0} >= 2)) || fail "needs at least 2 controllers (run.sh --bt 2)"

    local addr0
    addr0=$(adapter_address hci0)
    [[ -n "$addr0" ]] || fail "cannot read hci0's address from bluetoothd"
    say "hci0 is $addr0, hci1 is $(adapter_address hci1)"

    # Scan first, then advertise. btvirt's controllers report an advertiser
    # once per scan (duplicate filter); if that report arrives while the
    # kernel is still starting discovery it is dropped, so advertising that
    # predates the scan is found only now and then.
    # BlueZ/Linux 6.1 only sends advertising data (and with it the Flags field
    # that marks the device discoverable) when the instance carries some data:
    # -u adds the 16-bit service UUID 0x180f.
    local attempt out scan_log=/tmp/selftest-bt-scan.log
    for ((attempt = 1; attempt <= SCAN_ATTEMPTS; attempt++)); do
        say "attempt $attempt: LE scan on hci1, then advertising on hci0"
        btmgmt --index hci0 rm-adv "$ADV_INSTANCE" >/dev/null 2>&1 || true
        timeout 40 btmgmt --index hci1 find -l >"$scan_log" 2>&1 &
        local scan_pid=$!
        sleep 2
        out=$(timeout 20 btmgmt --index hci0 add-adv -c -g -n -u 180f "$ADV_INSTANCE" 2>&1) || true
        say "add-adv: $out"
        [[ "$out" == *"Instance added: $ADV_INSTANCE"* ]] || fail "hci0 could not start advertising"
        wait "$scan_pid" || true
        sed 's/^/  | /' "$scan_log"
        if grep -q "dev_found: $addr0 type LE" "$scan_log"; then
            say "PASS: hci1 found hci0 ($addr0) advertising over LE"
            exit 0
        fi
    done
    fail "hci1 did not find $addr0 in $SCAN_ATTEMPTS LE scans"
}

main "$@"
