#!/usr/bin/env bash
# The peers' suites, bounded for the test command: franz-go's kgo suite, the Java client's flows
# (kafka-clients 4.1.x and 3.9.x), librdkafka's own tests (CI subset) and kafka-javascript.
# Each suite installs what it needs from its registry (Go proxy, Maven Central, npm) or prints
# one loud `SKIP: <suite>: <reason>` line. Ends with one closing line per suite; exits non-zero
# if any suite failed. `scripts/peers.sh java js` runs only the named suites. Long runs: scripts/peers/franz-go.sh --long, scripts/peers/librdkafka.sh --all.
set -uo pipefail
cd "$(dirname "$0")/.."
export TIDELOG_BIN=${TIDELOG_BIN:-$(pwd)/target/debug/tidelog}
LOGS=target/test-logs
mkdir -p "$LOGS"
CLOSING=()
FAILED=0
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(franz-go java librdkafka js)
for suite in "${SUITES[@]}"; do
    [ -x "scripts/peers/$suite.sh" ] || { echo "no suite $suite"; exit 2; }
    echo "==> peers: $suite"
    start=$SECONDS
    scripts/peers/$suite.sh 2>&1 | tee "$LOGS/peers-$suite.out"
    rc=${PIPESTATUS[0]}
    took=$((SECONDS - start))
    if skip=$(grep -m1 '^SKIP: ' "$LOGS/peers-$suite.out"); then
        CLOSING+=("$skip")
    elif [ "$rc" = 0 ]; then
        CLOSING+=("peers $suite: ok in ${took} s")
    else
        CLOSING+=("peers $suite: FAILED in ${took} s (see $LOGS/peers-$suite*.log)")
        FAILED=1
    fi
done
echo
printf '%s\n' "${CLOSING[@]}"
exit $FAILED
