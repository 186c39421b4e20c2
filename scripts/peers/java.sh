#!/usr/bin/env bash
# The Java client's flows (tests/java, JUnit 5) on kafka-clients 4.1.x and 3.9.x. Each test
# class starts the tidelog binary itself (-Dtidelog.bin), so this script starts no broker.
#
#   scripts/peers/java.sh               both client versions
#   KAFKA_VERSIONS="4.1.2" scripts/peers/java.sh
set -uo pipefail
. "$(dirname "$0")/lib.sh"
SUITE=java
VERSIONS=${KAFKA_VERSIONS:-"4.1.2 3.9.2"}

command -v java >/dev/null || peers_skip $SUITE "no JDK (apt-get install openjdk-17-jdk-headless)"
command -v mvn >/dev/null || peers_skip $SUITE "no Maven (apt-get install maven)"
[ -x "$TIDELOG_BIN" ] || { echo "java: tidelog binary not found at $TIDELOG_BIN"; exit 1; }

start=$SECONDS
rc=0
for v in $VERSIONS; do
    log=$PEERS_LOGS/peers-java-$v.log
    echo "java: kafka-clients $v (log $log)"
    (cd "$PEERS_ROOT/tests/java" && mvn -B -ntp test -Dkafka.version="$v" -Dtidelog.bin="$TIDELOG_BIN") >"$log" 2>&1
    vrc=$?
    if grep -q 'Could not resolve dependencies\|Could not transfer artifact' "$log"; then
        peers_skip $SUITE "Maven Central unreachable: $(grep -m1 'Could not' "$log" | cut -c1-200)"
    fi
    grep -E '^\[(ERROR|WARNING)\] +(Tests run|[A-Za-z]+Test\.)|FAILURE!' "$log" | sed 's/^/  /' | head -20
    totals=$(grep -E '^\[(INFO|WARNING|ERROR)\] Tests run:' "$log" | tail -1 | sed 's/^\[[A-Z]*\] //')
    echo "java: kafka-clients $v: ${totals:-no test totals (see $log)}; exit $vrc"
    [ "$vrc" = 0 ] || rc=1
done
echo "java: $([ "$rc" = 0 ] && echo PASSED || echo FAILED) in $((SECONDS - start)) s"
exit $rc
