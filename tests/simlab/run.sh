#!/usr/bin/env bash
# Replays a contact trace on real daemons, each in its own network namespace,
# and checks them against the simulator's prediction for the same trace
# (docs/simulation.md, "Validation against real daemons"). Needs root and
# iproute2; in CI a skip is a failure.
#
#   tests/simlab/run.sh          small (about 3 minutes): 2 daemons replay
#                                tests/simlab/recontact-5s.json (35 s), then
#                                30 daemons replay tests/simlab/sample-30.json
#                                (150 s) with the simulator's prediction for it
#   tests/simlab/run.sh full     on demand (about 11 minutes): the simulator's
#                                festival of 50 nodes over 10 minutes, replayed
#                                in real time
#   SIMLAB_TRACE=FILE tests/simlab/run.sh    any trace in the export format
#
# Prints the comparison table and writes it as JSON to
# $CARGO_TARGET_DIR/simlab-report.json (target/ by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-small}
target=${CARGO_TARGET_DIR:-target}
if [ "$(id -u)" != 0 ]; then
    if [ "${CI:-}" = true ]; then echo "simlab: needs root, and CI must not skip it" >&2; exit 1; fi
    echo "simlab: SKIPPED (needs root: sudo tests/simlab/run.sh)"
    exit 0
fi
cargo build --workspace --all-targets --locked
simlab=$target/debug/peddlenet-simlab
sim=$target/debug/peddlenet-sim
report=$target/simlab-report.json
trace=$(mktemp --suffix=.json)
trap 'rm -f "$trace"' EXIT
if [ -n "${SIMLAB_TRACE:-}" ]; then
    cp "$SIMLAB_TRACE" "$trace"
elif [ ! -d crates/sim ]; then
    # No simulator in this tree: the generator's own prediction (the trace's
    # time-respecting paths) stands in for it.
    if [ "$size" = full ]; then
        "$simlab" gen --nodes 50 --duration-s 600 --places 8 --dwell-s 90 --rooms 8 --messages 120 --seed 2 --out "$trace"
    else
        cp tests/simlab/sample-30.json "$trace"
    fi
elif [ "$size" = full ]; then
    "$sim" --nodes 50 --minutes 10 --seed 1 --export-trace "$trace"
else
    "$sim" --trace tests/simlab/sample-30.json --export-trace "$trace"
fi
if [ "$size" = small ] && [ -z "${SIMLAB_TRACE:-}" ]; then
    # Two daemons whose contact is cut and made again 5 s later, before the
    # mesh noticed the cut: the messages of the gap must still arrive (35 s).
    "$simlab" run --trace tests/simlab/recontact-5s.json --out "$target/simlab-recontact-report.json" --check
fi
exec "$simlab" run --trace "$trace" --out "$report" --check
