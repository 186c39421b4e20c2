#!/usr/bin/env bash
# Soaks the cross-shard call path (issue 10 item 1): runs tests/cross_shard_calls.rs RUNS times
# (default 5) at TIDELOG_XSHARD_ROUNDS (default 40, about 3x the CI size) and prints, per run, the
# outcome and how many replies the in-flight re-check found (lost or late wake-ups). A call
# declared dropped ends the test binary with exit 70; a hang fails it after its watchdog.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
export TIDELOG_XSHARD_ROUNDS=${TIDELOG_XSHARD_ROUNDS:-40}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
BIN=$(cargo test --test cross_shard_calls --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*cross_shard_calls[^"]*\)".*/\1/p' | tail -1)
[ -x "$BIN" ] || { echo "cannot build tests/cross_shard_calls.rs" >&2; exit 1; }
failed=0
for i in $(seq "$RUNS"); do
    out=$("$BIN" --include-ignored --test-threads 2 --nocapture 2>&1)
    rc=$?
    found=$(echo "$out" | sed -n 's/.*found by re-check so far: \([0-9]*\).*/\1/p' | tail -1)
    echo "run $i: rc=$rc, replies found by re-check: ${found:-?}"
    if [ $rc != 0 ]; then
        failed=1
        echo "$out" | grep -aE "fatal|panicked|hung" | head -5
    fi
done
exit $failed
