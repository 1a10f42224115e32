#!/usr/bin/env bash
# Flake hunt: runs the test suite N times back to back and prints a pass count, with
# the names of the tests that failed in each failed run (their logs are kept).
#
#   tests/soak.sh [-n N] [--stress] [--logs DIR] [cargo test arguments…]
#
#   -n N       runs (default 5)
#   --stress   two busy loops and an fsync-heavy dd run beside the suite
#   --logs DIR where each run's output goes (default: a new temp dir, printed)
#
# Examples:
#   tests/soak.sh -n 5                               # the whole suite, 5 times
#   tests/soak.sh -n 3 --stress -- --skip qemu       # 3 stressed runs without the ARM e2e
#   tests/soak.sh -n 20 -p outpost-tests --test mqtt # one test binary, 20 times
#
# The machine is prepared and everything built once, before the first run, so each
# run measures the tests alone.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=5
stress=false
logs=""
while [ $# -gt 0 ]; do
    case "$1" in
    -n) runs=$2; shift 2 ;;
    --stress) stress=true; shift ;;
    --logs) logs=$2; shift 2 ;;
    *) break ;;
    esac
done
[ -n "$logs" ] || logs=$(mktemp -d /tmp/outpost-soak.XXXXXX)
mkdir -p "$logs"
args=("$@")
# No package chosen: the whole workspace (arguments after `--` go to the tests).
if [ ${#args[@]} -eq 0 ] || [ "${args[0]}" = "--" ]; then
    args=(--workspace "${args[@]}")
fi

tests/setup.sh tests
cargo test --no-run "${args[@]}" >"$logs/build.log" 2>&1 || {
    tail -30 "$logs/build.log"
    echo "soak: the build failed (log: $logs/build.log)" >&2
    exit 2
}

stressors=()
stop_stress() {
    for pid in "${stressors[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -f "$logs/dd.scratch"
}
trap stop_stress EXIT
if $stress; then
    for _ in 1 2; do
        (while :; do :; done) &
        stressors+=($!)
    done
    (while :; do
        dd if=/dev/zero of="$logs/dd.scratch" bs=4k count=2000 oflag=dsync 2>/dev/null
    done) &
    stressors+=($!)
    echo "soak: stress on (two busy loops, dd oflag=dsync)"
fi

passed=0
for i in $(seq 1 "$runs"); do
    began=$SECONDS
    if cargo test "${args[@]}" >"$logs/run-$i.log" 2>&1; then
        passed=$((passed + 1))
        echo "soak: run $i/$runs passed in $((SECONDS - began)) s"
    else
        echo "soak: run $i/$runs FAILED in $((SECONDS - began)) s (log: $logs/run-$i.log):"
        grep -E '^test .* FAILED$|^    [a-z_0-9:]+$' "$logs/run-$i.log" | sort -u | sed 's/^/  /' || true
    fi
done
echo "soak: $passed of $runs runs passed$($stress && echo ' (under stress)'); logs in $logs"
[ "$passed" -eq "$runs" ]
