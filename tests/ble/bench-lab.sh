#!/bin/bash
# BLE benchmark in the VM lab (host side): builds the lab programs, runs
# tests/ble/lab-bench.sh in a VM with two virtual controllers and prints a
# table. Everything runs under TCG emulation: compare ratios, not absolutes.
#   tests/ble/bench-lab.sh [BYTES] [PINGS]
# Release builds by default (what the daemon ships); BENCH_PROFILE=debug for
# the dev profile.
set -uo pipefail
cd "$(dirname "$0")/../.."
BYTES=${1:-1048576}
PINGS=${2:-100}
OUT=target/ble-lab
mkdir -p "$OUT"
log=$OUT/bench.log

PROFILE=${BENCH_PROFILE:-release}
flag=()
[[ "$PROFILE" == release ]] && flag=(--release)
cargo build -q "${flag[@]}" -p peddlenet-ble --examples || { echo "build failed"; exit 1; }
# A private copy: a concurrent build elsewhere in the workspace cannot swap it.
mkdir -p "$OUT/bench-bin"
cp "target/$PROFILE/examples/ble-probe" "target/$PROFILE/examples/ble-raw" "$OUT/bench-bin/"
export LAB_BLE_BIN=$PWD/$OUT/bench-bin
echo "running the benchmark in the lab ($BYTES bytes per direction, $PINGS pings); log: $log"
rc=0
tests/vmlab/run.sh --bt 2 --timeout 900 -- tests/ble/lab-bench.sh "$BYTES" "$PINGS" >"$log" 2>&1 || rc=$?
if ((rc != 0)); then
    echo "FAIL: the benchmark run failed (exit $rc); last lines of $log:"
    tail -n 30 "$log"
    exit 1
fi

# field LINE-PATTERN KEY: the value of KEY=... on the first matching line
field() { grep -m1 -E "$1" "$log" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

raw_w=$(field 'RAW write: RESULT dir=write-client' mbps)
raw_i=$(field 'RAW indicate: RESULT dir=notify' total_mbps)
raw_n=$(field 'RAW notify: RESULT dir=notify' total_mbps)
raw_n_lost=$(field 'RAW notify: RESULT dir=notify' lost)
raw_n_req=$(field 'RAW notify: RESULT dir=notify' requested)
raw_i_lost=$(field 'RAW indicate: RESULT dir=notify' lost)
c2p=$(field 'BENCH: RESULT dir=c2p' mbps)
p2c=$(field 'BENCH: RESULT dir=p2c' mbps)
p50=$(field 'BENCH: RESULT ping_count' oneway_p50_ms)
p99=$(field 'BENCH: RESULT ping_count' oneway_p99_ms)
r50=$(field 'BENCH: RESULT ping_count' rtt_p50_ms)
r99=$(field 'BENCH: RESULT ping_count' rtt_p99_ms)
first=$(field 'BENCH: RESULT first_message' first_message_after_advertising_ms)
mtu=$(field 'BENCH: RESULT link_mtu' link_mtu)

printf '\nBLE in the VM lab (btvirt, BlueZ 5.66, TCG, %s build), ATT MTU %s, %s bytes per direction\n\n' "$PROFILE" "${mtu:-?}" "$BYTES"
printf '%-58s %12s %10s\n' "measure" "value" "ratio"
printf '%-58s %12s %10s\n' "----------------------------------------------------------" "------------" "----------"
printf '%-58s %9s MB/s %10s\n' "plain GATT write-without-response loop (central -> periph.)" "${raw_w:-?}" ""
printf '%-58s %9s MB/s %10s\n' "plain GATT indications (periph. -> central)" "${raw_i:-?}" ""
printf '%-58s %9s MB/s %10s\n' "plain GATT notifications (lost ${raw_n_lost:-?} of ${raw_n_req:-?})" "${raw_n:-?}" ""
printf '%-58s %9s MB/s %10s\n' "PeddleNet API, central -> peripheral (vs plain writes)" "${c2p:-?}" "$(ratio "${c2p:-0}" "${raw_w:-0}")"
printf '%-58s %9s MB/s %10s\n' "PeddleNet API, peripheral -> central (vs plain indications)" "${p2c:-?}" "$(ratio "${p2c:-0}" "${raw_i:-0}")"
printf '%-58s %6s/%-5s ms %10s\n' "one-hop latency p50/p99 (RTT/2 over $PINGS pings)" "${p50:-?}" "${p99:-?}" ""
printf '%-58s %6s/%-5s ms %10s\n' "round trip p50/p99" "${r50:-?}" "${r99:-?}" ""
printf '%-58s %9s ms %10s\n' "advertising start -> first message delivered" "${first:-?}" ""
[[ -n "${raw_i_lost:-}" && "$raw_i_lost" != 0 ]] && printf '\nnote: the indication baseline counted %s gaps (reordering across EATT bearers shows up as gaps there)\n' "$raw_i_lost"
echo
