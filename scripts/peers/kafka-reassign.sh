#!/usr/bin/env bash
# Kafka's own kafka-reassign-partitions.sh (ReassignPartitionsCommand, from Kafka's jars) moving
# a partition of a 3-node tidelog cluster under a throttle, as an operator would: --generate,
# --execute --throttle, --list while it copies, --verify until it completes (which also clears
# the throttle configs), then --cancel with nothing left to cancel. Not part of the test command
# (it needs Kafka's jars); tests/reassignment.rs and the Java ClusterTest check the same APIs.
#
#   scripts/peers/kafka-reassign.sh      (fetches Kafka's jars into benches/kafka/lib/ with
#                                         Maven once, as benches/kafka/peer.sh does)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
KAFKA_VERSION=${KAFKA_VERSION:-4.1.2}
LIB=$PEERS_ROOT/benches/kafka/lib
if [[ ! -f $LIB/kafka-tools-$KAFKA_VERSION.jar ]]; then
    command -v mvn >/dev/null || peers_skip kafka-reassign "no Maven to fetch Kafka's jars"
    mvn -q -B -f "$PEERS_ROOT/benches/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$LIB" -DincludeScope=runtime ||
        peers_skip kafka-reassign "mvn could not fetch Kafka $KAFKA_VERSION"
fi
kafka() { # main class, arguments
    java -cp "$LIB/*" -Dlog4j2.configurationFile="$PEERS_ROOT/benches/kafka/log4j2.properties" "$@" 2>&1 |
        grep -v '^SLF4J'
}
reassign() { kafka org.apache.kafka.tools.reassign.ReassignPartitionsCommand --bootstrap-server "$BS" "$@"; }

start_cluster kafka-reassign || exit 1
BS=${BROKER_ADDR%%,*}
WORK=$(mktemp -d)
trap 'stop_cluster; rm -rf "$WORK"' EXIT

echo "== a topic of one partition on two brokers, 200000 records"
until kafka org.apache.kafka.tools.TopicCommand --bootstrap-server "$BS" --create --topic moving \
    --partitions 1 --replication-factor 2 | grep -q 'Created topic'; do sleep 0.5; done
seq 1 200000 | sed 's/^/a record of about forty bytes, number /' |
    "$TIDELOG_BIN" produce --bootstrap-server "$BS" moving >/dev/null
kafka org.apache.kafka.tools.TopicCommand --bootstrap-server "$BS" --describe --topic moving | tee "$WORK/before.txt"
# Move it off the broker that does not hold it yet: the target is that broker and the leader.
replicas=$(grep -o 'Replicas: [0-9,]*' "$WORK/before.txt" | head -1 | cut -d' ' -f2)
leader=$(grep -o 'Leader: [0-9]*' "$WORK/before.txt" | head -1 | cut -d' ' -f2)
fresh=$(for b in 1 2 3; do [[ ,$replicas, == *,$b,* ]] || echo "$b"; done)
echo "{\"version\":1,\"partitions\":[{\"topic\":\"moving\",\"partition\":0,\"replicas\":[$fresh,$leader]}]}" >"$WORK/plan.json"
echo "{\"topics\":[{\"topic\":\"moving\"}],\"version\":1}" >"$WORK/topics.json"

echo "== --generate"
reassign --generate --topics-to-move-json-file "$WORK/topics.json" --broker-list 1,2,3
echo "== --execute --throttle 500000 (to [$fresh,$leader])"
reassign --execute --reassignment-json-file "$WORK/plan.json" --throttle 500000
echo "== --list"
reassign --list
start=$SECONDS
echo "== --verify until it completes"
until reassign --verify --reassignment-json-file "$WORK/plan.json" | tee "$WORK/verify.txt" | grep -q 'is completed'; do
    grep 'Reassignment of partition' "$WORK/verify.txt"
    sleep 1
done
cat "$WORK/verify.txt"
echo "completed within $((SECONDS - start)) s of --execute's return"
kafka org.apache.kafka.tools.TopicCommand --bootstrap-server "$BS" --describe --topic moving
echo "== --cancel with nothing in progress"
reassign --cancel --reassignment-json-file "$WORK/plan.json"
