#!/bin/bash
# Runs the Wi-Fi Direct lab test (host side): copies the daemon and CLI,
# boots the VM lab with three mac80211_hwsim radios and runs
# tests/wifi/lab-wifi.sh there. Prints PASS/FAIL with the figures.
# Full output: target/wifi-lab/wifi.log (the VM run directory, with the
# daemons' and wpa_supplicants' logs, is kept on failure; its path is there).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=target/wifi-lab
mkdir -p "$OUT/bin"
echo "building (cargo build --workspace: a no-op after .ci/run's build)"
cargo build -q --workspace || { echo "FAIL build"; exit 1; }
built=${CARGO_TARGET_DIR:-target}/debug
# A private copy: a concurrent build cannot swap the binaries mid-run.
cp "$built/peddlenetd" "$built/peddlenet" "$OUT/bin/"
export PEDDLENET_BIN=$PWD/$OUT/bin
log=$OUT/wifi.log
start=$(date +%s)
rc=0
tests/vmlab/run.sh --wifi 3 --timeout 900 -- tests/wifi/lab-wifi.sh >"$log" 2>&1 || rc=$?
secs=$(($(date +%s) - start))
desc="two daemons form a group and exchange; re-form after teardown and catch up; a phone joins the hosted group by QR and reaches the web UI; no P2P is said"
if ((rc == 0)); then
    echo "PASS wifi (${secs}s): $desc"
    grep -E ': (PASS|FIGURE)' "$log" | sed 's/^\[[0-9:]*\] /    /'
else
    echo "FAIL wifi (exit $rc, ${secs}s): $desc; log: $log"
    grep -E 'FAIL|error' "$log" | head -5 | sed 's/^/    /'
fi
exit "$rc"
