#!/bin/bash
# Lab test: an observer (hci0) scans for ~60 s while a node advertises
# (hci1, peripheral role). Every advertising report is recorded (btmon) and
# must carry nothing node-specific: only Flags and the PeddleNet service
# UUID; no name, manufacturer/service data, TX power, appearance or class.
# LE privacy is switched on for hci1 first (what `Privacy = device` in
# bluetoothd's main.conf does) with a 30-s RPA timeout where debugfs allows;
# the node re-registers its advertisement every 20 s (a new advertising
# instance gets a fresh resolvable private address; see BleConfig::
# readvertise_interval). The test reports whether the address changes.
#   tests/vmlab/run.sh --bt 2 -- tests/ble/lab-observer.sh [SECONDS]
set -euo pipefail
TEST_NAME=observer
source "$(dirname "$0")/lib.sh"
require_lab 2
SECS=${1:-60}

rpa_note="kernel default RPA timeout (900 s)"
if [[ "${LAB_PRIVACY:-1}" == 1 ]]; then
    mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug 2>/dev/null || true
    btmgmt --index hci1 power off >/dev/null
    btmgmt --index hci1 privacy on | tail -1 | sed 's/^/  /'
    if echo 30 >/sys/kernel/debug/bluetooth/hci1/rpa_timeout 2>/dev/null; then
        rpa_note="RPA timeout set to $(cat /sys/kernel/debug/bluetooth/hci1/rpa_timeout) s via debugfs"
    fi
    btmgmt --index hci1 power on >/dev/null
    say "privacy on for hci1 ($rpa_note)"
else
    rpa_note="privacy off"
fi

btmon -i hci0 -w "$LOGDIR/observer.btsnoop" >/dev/null 2>&1 &
btmon_pid=$!
# Scan first, in back-to-back LE discoveries (btvirt reports an advertiser once per scan).
(
    end=$((SECONDS + SECS))
    while ((SECONDS < end)); do timeout 12 btmgmt --index hci0 find -l || true; done
) >"$LOGDIR/find.log" 2>&1 &
find_pid=$!
sleep 2
start_probe node ble-probe --adapter hci1 --role peripheral --readvertise "${LAB_READVERTISE:-20}" --timeout $((SECS + 30)) exchange --expect 1
wait "$find_pid" || true
kill "$btmon_pid" 2>/dev/null || true
wait "$btmon_pid" 2>/dev/null || true
kill_probe node

btmon -r "$LOGDIR/observer.btsnoop" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >"$LOGDIR/observer.txt" || true
# Every advertising report (advertising data and scan responses), one per
# line: "address | AD types (hex)", decoded from the raw bytes btmon dumps.
awk '
    function hexval(h,    i, v) {
        h = tolower(h); sub(/^0x/, "", h); v = 0
        for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
        return v
    }
    function flush() {
        if (addr != "") {
            types = ""; n = split(hex, b, " ")
            for (i = 1; i <= n; ) {
                len = hexval(b[i]); if (len == 0) break
                types = types (types == "" ? "" : ",") "0x" b[i + 1]; i += len + 1
            }
            print addr " | " types
        }
        addr = ""; hex = ""; want = 0
    }
    /^[<>@=] / { flush(); inrep = 0 }
    /LE (Extended )?Advertising Report/ { inrep = 1; next }
    inrep && /^ +Address: / { sub(/.*Address: /, ""); addr = $0; next }
    inrep && /^ +Data length: / { v = $NF; want = (v ~ /^0x/) ? hexval(v) : v + 0; got = 0; next }
    inrep && want > got && /^ +([0-9a-f][0-9a-f] )+/ {
        for (k = 1; k <= NF && k <= 16 && got < want; k++) { hex = hex " " $k; got++ }
        next
    }
    END { flush() }
' "$LOGDIR/observer.txt" >"$LOGDIR/reports.txt"

reports=$(wc -l <"$LOGDIR/reports.txt")
((reports > 0)) || fail "the observer recorded no advertisement"
types=$(cut -d'|' -f2 "$LOGDIR/reports.txt" | tr ',' '\n' | sed 's/ //g' | grep . | sort -u | paste -sd' ' -)
say "REPORT $reports advertising reports in ${SECS}s; AD types seen: ${types:-none} (0x01 flags, 0x07 complete 128-bit UUID list)"
# Allowed: flags (0x01) and 128-bit service UUID lists (0x06, 0x07). Anything
# else (names 0x08/0x09, TX power 0x0a, appearance 0x19, service data 0x16/
# 0x20/0x21, manufacturer data 0xff, …) is a failure.
for t in $types; do
    case $t in 0x01 | 0x06 | 0x07) ;; *) fail "advertising data of type $t was on the air" ;; esac
done
grep -q "0a f7 63 36 0b 9b 9b b8 6c 42 83 29 8e 84" "$LOGDIR/observer.txt" || fail "the PeddleNet service UUID was not advertised"
addrs=$(cut -d'|' -f1 "$LOGDIR/reports.txt" | sed 's/ *$//' | sort | uniq -c | sed 's/^ */    /')
n_addrs=$(cut -d'|' -f1 "$LOGDIR/reports.txt" | sort -u | wc -l)
say "REPORT advertiser addresses seen by the observer ($rpa_note):"
echo "$addrs"
say "REPORT btmgmt find: $(grep -c 'dev_found' "$LOGDIR/find.log" || true) results, names: $(grep -ciE ' name ' "$LOGDIR/find.log" || true)"
if ((n_addrs > 1)); then
    say "REPORT the address rotated: $n_addrs different addresses in ${SECS}s"
else
    say "REPORT the address did not change during ${SECS}s"
fi
say "PASS: advertisements carry only flags and the service UUID"
