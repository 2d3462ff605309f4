#!/usr/bin/env bash
# Replays a contact trace on real daemons, each in its own network namespace,
# and checks the daemons against the trace (docs/simulation.md, "Validation
# against real daemons"). Needs root and iproute2; in CI a skip is a failure.
#
#   tests/simlab/run.sh            small: 30 daemons, 150 s of trace in 150 s
#   tests/simlab/run.sh full       on demand: 50 daemons, 10 minutes of trace
#   SIMLAB_TRACE=FILE tests/simlab/run.sh   any trace (e.g. peddlenet-sim --export-trace)
#
# Prints the comparison table and writes it as JSON to
# $CARGO_TARGET_DIR/simlab-report.json (target/ by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-small}
target=${CARGO_TARGET_DIR:-target}
if [ "$(id -u)" != 0 ]; then
    if [ "${CI:-}" = true ]; then echo "simlab: needs root, and CI must not skip it" >&2; exit 1; fi
    echo "simlab: SKIPPED (needs root: sudo tests/simlab/run.sh)"; exit 0
fi
cargo build --workspace --all-targets --locked
bin=$target/debug/peddlenet-simlab
report=$target/simlab-report.json
if [ -n "${SIMLAB_TRACE:-}" ]; then
    trace=$SIMLAB_TRACE
elif [ "$size" = full ]; then
    trace=$(mktemp --suffix=.json)
    trap 'rm -f "$trace"' EXIT
    "$bin" gen --nodes 50 --duration-s 600 --places 8 --dwell-s 90 --rooms 8 --messages 120 --seed 2 --out "$trace"
else
    trace=tests/simlab/sample-30.json
fi
exec "$bin" run --trace "$trace" --out "$report" --check
