#!/usr/bin/env bash
# Soaks the cross-shard call path (issue 10 item 1): runs tests/cross_shard_calls.rs RUNS times
# (default 5) at TIDELOG_XSHARD_ROUNDS (default 72, 3x the CI size) and prints, per
# run, the outcome and how long it took. The broker has no periodic re-check, so a lost wake-up
# hangs a test until its watchdog fails it; a call declared dropped ends the test binary with
# exit 70.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
export TIDELOG_XSHARD_ROUNDS=${TIDELOG_XSHARD_ROUNDS:-72}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
BIN=$(cargo test --test cross_shard_calls --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*cross_shard_calls[^"]*\)".*/\1/p' | tail -1)
[ -x "$BIN" ] || { echo "cannot build tests/cross_shard_calls.rs" >&2; exit 1; }
failed=0
for i in $(seq "$RUNS"); do
    start=$(date +%s.%N)
    out=$("$BIN" --test-threads 2 --nocapture 2>&1)
    rc=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    printf 'run %d: rc=%d, %.1f s\n' "$i" "$rc" "$secs"
    if [ $rc != 0 ]; then
        failed=1
        echo "$out" | grep -aE "fatal|panicked|hung" | head -5
    fi
done
exit $failed
