#!/usr/bin/env bash
# Builds every fuzz target (cargo-fuzz, libFuzzer) and runs each for SECONDS
# (default 20), starting from its seed corpus in fuzz/corpus/<target>/.
# Fails if any target crashes, panics, times out or runs out of memory; the
# input that did it is left in fuzz/artifacts/<target>/ and named in the
# output (replay it with `cargo fuzz run --sanitizer none <target> <file>`).
#
#   fuzz/run.sh              every target, 20 s each (what CI runs)
#   fuzz/run.sh 600          every target, 10 min each
#   fuzz/run.sh 60 envelope  some targets only
#
# Works with the stable toolchain: coverage instrumentation (sancov) needs
# only stable `-C` flags, so the default `--sanitizer none` build needs
# nothing more. AddressSanitizer (FUZZ_SANITIZER=address) needs the
# unstable `-Zsanitizer`, allowed on stable with RUSTC_BOOTSTRAP=1, which
# this script then sets for the fuzz build only. Our crates forbid unsafe
# code, so CI runs without it.
#
# New inputs the fuzzer finds go to a temporary directory, not into the
# committed corpus; `fuzz/make-corpus.py` writes the seeds.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-20}
shift || true
sanitizer=${FUZZ_SANITIZER:-none}
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}

if ! command -v cargo-fuzz >/dev/null; then
    echo "== installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi

start=$(date +%s)
# The lockfile must be current: fail rather than let the build change it.
cargo fetch --locked -q
echo "== fuzz: building every target (sanitizer: $sanitizer)"
cargo fuzz build --sanitizer "$sanitizer"
built=$(date +%s)

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "artifacts/$t"
    log="$work/$t.log"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: memory
    # a hostile input can make a decoder take.
    if cargo fuzz run --sanitizer "$sanitizer" "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
        echo "fuzz: $t ok: ${runs:-?} runs in ${secs} s, ${cov:-cov: ?}"
    else
        echo "fuzz: $t FAILED" >&2
        grep -E "panicked at|assertion|^ *(left|right):|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -20 >&2 || tail -30 "$log" >&2
        failed+=("$t")
    fi
done
end=$(date +%s)
echo "fuzz: build $((built - start)) s, ${#targets[@]} targets × ${secs} s, total $((end - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
