#!/usr/bin/env bash
# librdkafka's own test suite (its tests/ directory, shipped inside the
# @confluentinc/kafka-javascript npm package) against a tidelog broker this script starts.
#
#   scripts/peers/librdkafka.sh          the CI subset (CI_TESTS below, a few minutes)
#   scripts/peers/librdkafka.sh --all    every test that needs a broker (-L), not in CI
#
# The package is downloaded with `npm pack` and built under target/peers/npm (needs a C
# toolchain, libssl-dev, zlib1g-dev and libzstd-dev; Debian: apt-get install build-essential
# libssl-dev zlib1g-dev libzstd-dev).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
SUITE=librdkafka
MODE=${1:-bounded}
PKG_VERSION=${KAFKA_JS_VERSION:-1.10.1}
# The Kafka version the tests assume of the broker: tidelog's reference is Kafka 4.1.
export TEST_KAFKA_VERSION=${TEST_KAFKA_VERSION:-4.1.0}
export TEST_CONSUMER_GROUP_PROTOCOL=classic

# Tests that apply to a single broker but need something tidelog has not built. test-runner
# also skips, by itself, tests that need KAFKA_PATH (Kafka's shell tools), SSL or SASL
# configuration, or a newer broker version than TEST_KAFKA_VERSION.
SKIPS=(
    "0098|consumer transactions through Kafka's Java tools (KAFKA_PATH)"
    "0103|creates its topics with replication factor 3, which needs three brokers (this run has one)"
    "0077|creates its topics with Kafka's kafka-topics.sh (KAFKA_PATH)"
    "0052|creates its topics with Kafka's kafka-topics.sh (KAFKA_PATH)"
    "0101|fetch from follower needs several brokers with racks"
    "0115|ACLs are not built (producer authorization errors)"
    "0119|ACLs are not built (consumer authorization errors)"
    "0142|SASL reauthentication: SASL is not built"
    "0081|its ACL sub-tests need the ACL admin APIs (KIP-140), which are not built (security issue)"
    "0109|its second half creates topics with Kafka's kafka-topics.sh (KAFKA_PATH)"
)
# The CI subset: produce/consume, codecs, offsets, groups, admin, idempotence, fetch sizes,
# aborted transactions under read_committed (0129).
CI_TESTS=0001,0002,0005,0008,0011,0012,0013,0017,0022,0029,0030,0031,0040,0052,0081,0082,0090,0121,0129

command -v npm >/dev/null || peers_skip $SUITE "no npm (apt-get install npm) to fetch @confluentinc/kafka-javascript"
{ command -v cc && command -v make; } >/dev/null || peers_skip $SUITE "no C toolchain (apt-get install build-essential)"
for h in openssl/ssl.h zlib.h zstd.h; do
    echo "#include <$h>" | cc -E - >/dev/null 2>&1 ||
        peers_skip $SUITE "missing C header $h (apt-get install libssl-dev zlib1g-dev libzstd-dev)"
done

SRC=$PEERS_WORK/npm/kafka-javascript-$PKG_VERSION
RDK=$SRC/package/deps/librdkafka
if [ ! -x "$RDK/tests/test-runner" ]; then
    echo "librdkafka: fetching @confluentinc/kafka-javascript@$PKG_VERSION and building librdkafka's test-runner"
    mkdir -p "$SRC"
    (cd "$SRC" && npm pack --silent "@confluentinc/kafka-javascript@$PKG_VERSION" >/dev/null &&
        tar xzf confluentinc-kafka-javascript-"$PKG_VERSION".tgz) ||
        peers_skip $SUITE "npm registry unreachable (npm pack @confluentinc/kafka-javascript@$PKG_VERSION)"
    (cd "$RDK" && ./configure --disable-gssapi --disable-curl --disable-sasl && make libs && make -C tests build) \
        >"$PEERS_LOGS/peers-librdkafka-build.log" 2>&1 ||
        { echo "librdkafka: build failed, see $PEERS_LOGS/peers-librdkafka-build.log"; exit 1; }
fi
echo "librdkafka: $(grep -m1 'define RD_KAFKA_VERSION' "$RDK/src/rdkafka.h") (from kafka-javascript $PKG_VERSION), TEST_KAFKA_VERSION=$TEST_KAFKA_VERSION"

skip_ids=""
for s in "${SKIPS[@]}"; do
    echo "librdkafka: skipping ${s%%|*}: ${s#*|}"
    skip_ids+="${skip_ids:+,}${s%%|*}"
done

start=$SECONDS
# librdkafka's tests assume its default scenario's broker (tests/scenarios/default.json):
# auto-created topics with 4 partitions.
start_broker librdkafka --set num.partitions=4 --set auto.create.topics.enable=true || exit 1
cd "$RDK/tests"
# test-runner links the freshly built shared libraries, as tests/Makefile runs it.
export LD_LIBRARY_PATH=$RDK/src:$RDK/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
conf=$PEERS_WORK/librdkafka-test.conf
printf 'bootstrap.servers=%s\n' "$BROKER_ADDR" >"$conf"
log=$PEERS_LOGS/peers-librdkafka-$MODE.log
echo "librdkafka: running ($MODE) against $BROKER_ADDR, log $log"
case $MODE in
bounded) env TESTS=$CI_TESTS TESTS_SKIP=$skip_ids RDKAFKA_TEST_CONF=$conf ./test-runner -L -p2 >"$log" 2>&1 ;;
--all) env TESTS_SKIP=$skip_ids RDKAFKA_TEST_CONF=$conf ./test-runner -L -p2 >"$log" 2>&1 ;;
*) echo "usage: $0 [--all]"; exit 2 ;;
esac
rc=$?
brc=0
stop_broker || brc=$?
# test-runner colours its output and aborts (no summary table) when a test failed, so the
# outcome is read from its per-test lines.
plain=$PEERS_LOGS/peers-librdkafka-$MODE.txt
sed 's/\x1b\[[0-9;]*m//g' "$log" >"$plain"
passed=$(grep -oE 'Test [0-9]{4}[A-Za-z0-9_-]* PASSED' "$plain" | awk '{print $2}' | sort -u)
failed=$(grep -oE '^### Test "[0-9]{4}[A-Za-z0-9_-]*' "$plain" | cut -d'"' -f2 | sort -u)
skipped=$(grep -E 'SKIPPING TEST' "$plain" | grep -oE '^\[[0-9]{4}[A-Za-z0-9_-]*' | tr -d '[' | sort -u)
for t in $failed; do
    why=$(grep -m1 -A1 "^### Test \"$t" "$plain" | tail -1 | cut -c1-150)
    # Issue 10 item 5: the broker closes the connection on bytes after a request body.
    if grep -q "trailing bytes.*client_id=${t%%_*}" <(sed 's/\x1b\[[0-9;]*m//g' "$BROKER_LOG"); then
        why="$why [broker closed a connection: trailing bytes after the request body, issue 10 item 5]"
    fi
    echo "  FAILED $t: $why"
done
npass=$(printf '%s\n' $passed | grep -c .); nfail=$(printf '%s\n' $failed | grep -c .)
nskip=$(printf '%s\n' $skipped | grep -c .)
echo "librdkafka ($MODE): $npass passed, $nfail failed, $nskip skipped (by the runner's flags); runner exit $rc, broker exit $brc"
ok=$([ "$rc" = 0 ] && [ "$nfail" = 0 ] && [ "$brc" = 0 ] && echo 1 || echo 0)
echo "librdkafka: $([ "$ok" = 1 ] && echo PASSED || echo FAILED) in $((SECONDS - start)) s"
[ "$ok" = 1 ]
