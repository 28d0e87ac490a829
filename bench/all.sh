#!/bin/sh
# Every benchmark of BENCHMARKS.md, one after the other, on one build; prints the
# Markdown (the machine, then one table per benchmark) once all have run, and keeps it
# in bench/out/. Progress goes to stderr.
#
#   ./bench/all.sh              # full size: ~10 minutes on 2 cores, ~3 GB of scratch
#   QUICK=1 ./bench/all.sh      # small sizes, to check the scripts (~1 minute)
#
# Each size can be set on its own (defaults: full / QUICK=1):
#   RECORD_SIZES   logins stored for record.sh     "0 1000000 10000000" / "0 100000"
#   RECORD_RUNS    runs per record case             1000 / 100
#   PARALLEL_EVENTS, PARALLEL_RUNS                  1000000, 2000 / 100000, 200
#   STATUS_EVENTS, STATUS_RUNS                      10000000, 100 / 1000000, 20
#   INGEST_LINES   generated Postfix log lines      1500000 / 100000
#   OWNERSHIP_RUNS record runs with and without an ASN database (fetched from npm)
#                                                   1000 / 100
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

if [ -n "${QUICK:-}" ]; then
    : "${RECORD_SIZES:=0 100000}" "${RECORD_RUNS:=100}"
    : "${PARALLEL_EVENTS:=100000}" "${PARALLEL_RUNS:=200}"
    : "${STATUS_EVENTS:=1000000}" "${STATUS_RUNS:=20}"
    : "${INGEST_LINES:=100000}"
    : "${OWNERSHIP_RUNS:=100}"
fi
: "${RECORD_SIZES:=0 1000000 10000000}" "${RECORD_RUNS:=1000}"
: "${PARALLEL_EVENTS:=1000000}" "${PARALLEL_RUNS:=2000}"
: "${STATUS_EVENTS:=10000000}" "${STATUS_RUNS:=100}"
: "${INGEST_LINES:=1500000}"
: "${OWNERSHIP_RUNS:=1000}"

mkdir -p bench/out
out=bench/out/$(date -u +%Y%m%dT%H%MZ).md
{
    machine
    echo
    echo "### record (SIZES=\"$RECORD_SIZES\" RUNS=$RECORD_RUNS ./bench/record.sh)"
    echo
    SIZES=$RECORD_SIZES RUNS=$RECORD_RUNS ./bench/record.sh
    echo
    echo "### record, ${WRITERS:-4} writers in parallel (EVENTS=$PARALLEL_EVENTS RUNS=$PARALLEL_RUNS ./bench/parallel.sh)"
    echo
    EVENTS=$PARALLEL_EVENTS RUNS=$PARALLEL_RUNS ./bench/parallel.sh
    echo
    echo "### status (EVENTS=$STATUS_EVENTS RUNS=$STATUS_RUNS ./bench/status.sh)"
    echo
    EVENTS=$STATUS_EVENTS RUNS=$STATUS_RUNS ./bench/status.sh
    echo
    echo "### ingest (LINES=$INGEST_LINES ./bench/ingest.sh)"
    echo
    LINES=$INGEST_LINES ./bench/ingest.sh
    echo
    echo "### ownership database (RUNS=$OWNERSHIP_RUNS ./bench/ownership.sh)"
    echo
    RUNS=$OWNERSHIP_RUNS ./bench/ownership.sh
} >"$out"
cat "$out"
echo "saved in $out" >&2
