#!/usr/bin/env bash
# Runs the whole test suite (README's test command) many times in a row,
# every other run with every CPU kept busy by spin loops, to find tests
# that fail only now and then. A test that fails once is a bug, in the code
# or in the test: this prints which runs failed, and which tests.
#
#   scripts/soak-tests.sh            20 runs, half of them loaded
#   SOAK_RUNS=6 scripts/soak-tests.sh
#
# Logs go to $SOAK_LOGS (default: a new directory under /tmp), one file per
# run. Exits non-zero when any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."

runs="${SOAK_RUNS:-20}"
logs="${SOAK_LOGS:-$(mktemp -d /tmp/vigie-soak.XXXXXX)}"
mkdir -p "$logs"
cpus="$(nproc)"

# Build once, so that every run measures the tests, not the compiler.
./scripts/test.sh --no-run >"$logs/build.log" 2>&1 || {
    echo "soak: the build failed, see $logs/build.log" >&2
    exit 2
}

spinners=()
stop_load() {
    for pid in "${spinners[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${spinners[@]}"; do wait "$pid" 2>/dev/null; done
    spinners=()
}
trap stop_load EXIT

failed=0
for run in $(seq 1 "$runs"); do
    loaded=no
    if [ $((run % 2)) -eq 0 ]; then
        loaded=yes
        for _ in $(seq 1 "$cpus"); do
            (while :; do :; done) &
            spinners+=("$!")
        done
    fi
    started=$(date +%s)
    if ./scripts/test.sh >"$logs/run-$run.log" 2>&1; then
        result=passed
    else
        result=FAILED
        failed=$((failed + 1))
    fi
    stop_load
    echo "soak: run $run/$runs (loaded: $loaded) $result in $(($(date +%s) - started)) s"
    if [ "$result" = FAILED ]; then
        grep -E '^test .* FAILED$|^---- .* stdout ----$' "$logs/run-$run.log" | sed 's/^/    /'
    fi
done

echo "soak: $((runs - failed)) of $runs runs passed; logs in $logs"
[ "$failed" -eq 0 ]
