# The `--peer kafka` step of benches/run.sh (sourced by it, not run alone): Apache Kafka 4.1 on
# the same machine and the same CPUs as tidelog, driven by the same workloads, so that every
# figure is a ratio tidelog/Kafka measured in one run.
#
# What it does, in order:
#  1. Copies Kafka's jars from Maven Central into benches/kafka/lib/ (pom.xml beside this file,
#     `mvn dependency:copy-dependencies`; once, then reused; KAFKA_VERSION overrides 4.1.2).
#  2. Runs the peer workloads against a fresh tidelog (--shards 1 on BROKER_CPUS).
#  3. Formats a KRaft combined-mode single node (kafka.tools.StorageTool format, static quorum
#     of one voter), starts kafka.Kafka pinned to BROKER_CPUS with the JVM settings of Kafka's
#     kafka-server-start.sh / kafka-run-class.sh, runs the same workloads, stops it and deletes
#     its data (also on any failure: run.sh's EXIT trap calls kafka_stop).
#  4. Records each figure with Kafka's value as its "limit", so the ratio is tidelog/Kafka.
#
# The workloads, all with 1 KiB records and acks=1 on 16-partition topics:
#  - loadgen burst produce of PEER_RECORDS (1a's workload), then loadgen consume of that topic
#    from the start (2's workload);
#  - loadgen produce + consume at each fixed rate of PEER_RATES (4's workload), e2e p99/p99.9;
#  - Kafka's own ProducerPerformance (kafka-producer-perf-test) unthrottled, and again at the
#    first rate of PEER_RATES for its produce-latency p99, then ConsumerPerformance
#    (kafka-consumer-perf-test, a consumer group) reading what it produced.
#
# It needs a JDK (java) and Maven (mvn) or already-fetched jars; without them it prints
# "SKIP: peer kafka: <why>" and records nothing.

KAFKA_VERSION=${KAFKA_VERSION:-4.1.2}
KAFKA_HOME_DIR=$ROOT/benches/kafka
KAFKA_LIB=$KAFKA_HOME_DIR/lib
KAFKA_PID=""
KAFKA_DATA=""
# The JVM settings of Kafka's scripts: kafka-server-start.sh sets the 1 GiB heap,
# kafka-run-class.sh the G1 options and the GC log; the perf-test scripts give the tools 512 MiB.
KAFKA_SERVER_JVM=(-Xmx1G -Xms1G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true)
KAFKA_TOOL_JVM=(-Xmx512M -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true)
# ProducerPerformance's producer: acks=1 as every loadgen workload here; a batch large enough
# that the Java client is not held to its 16 KiB default (loadgen and librdkafka get 1 MB).
PERF_PRODUCER_PROPS=${PERF_PRODUCER_PROPS:-acks=1 linger.ms=5 batch.size=1048576}

peer_skip() { printf '\nSKIP: peer kafka: %s\n\n' "$*" | tee -a "$OUT/machine.txt" >&2; }

# Copies the jars once; a lib/ holding this version's broker jar is reused as it is.
kafka_fetch() {
    [[ -f $KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar && -f $KAFKA_LIB/kafka-tools-$KAFKA_VERSION.jar ]] && return 0
    command -v mvn >/dev/null || { peer_skip "no Maven (mvn) to fetch Kafka $KAFKA_VERSION's jars"; return 1; }
    log "fetching Apache Kafka $KAFKA_VERSION's jars from Maven Central into $KAFKA_LIB"
    rm -rf "$KAFKA_LIB"
    if ! mvn -q -B -f "$KAFKA_HOME_DIR/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIB" -DincludeScope=runtime \
        > "$OUT/kafka/mvn.log" 2>&1; then
        peer_skip "mvn could not fetch Kafka $KAFKA_VERSION (see $OUT/kafka/mvn.log)"
        rm -rf "$KAFKA_LIB"
        return 1
    fi
}

KAFKA_JAVA_COMMON=(-cp "$KAFKA_LIB/*" -Dlog4j2.configurationFile="$KAFKA_HOME_DIR/log4j2.properties")
kjava() { # cpus, jvm-args-array-name, main class, args...
    local cpus=$1 opts="$2[@]"; shift 2
    taskset -c "$cpus" java "${!opts}" "${KAFKA_JAVA_COMMON[@]}" -Dkafka.logs.dir="$OUT/kafka" "$@"
}

# Creates a topic and waits until the broker serves all its partitions: Kafka answers
# NOT_LEADER_OR_FOLLOWER for a moment after CreateTopics returns (until the broker has applied
# the new partitions' metadata), and loadgen, unlike Kafka's clients, does not retry that.
# The probe is loadgen's own start-up (ListOffsets on every partition, nothing to consume).
peer_topic() { # name, partitions, tidelog topic create args...
    local name=$1 parts=$2; shift 2
    "$BIN/tidelog" topic create "$name" --partitions "$parts" "$@" \
        --bootstrap-server "$ADDR" >/dev/null
    for _ in $(seq 60); do
        "$BIN/tidelog-loadgen" --bootstrap-server "$ADDR" --topic "$name" --producers 0 \
            --consumers 1 --consume-from earliest --quiet > /dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "run.sh: topic $name is not served by $ADDR after 30 s" >&2
    return 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

kafka_start() {
    local port cport props cluster_id
    port=$(free_port); cport=$(free_port)
    [[ $port != "$cport" ]] || cport=$(free_port)
    KAFKA_DATA=$WORK/kafka-data
    mkdir -p "$KAFKA_DATA"
    props=$OUT/kafka/server.properties
    # Kafka's shipped config/server.properties for a combined node, on loopback, with the
    # retention check interval tidelog runs with here (1 s), so bounded topics behave alike.
    cat > "$props" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=$KAFKA_DATA
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=1000
EOF
    cluster_id=$(kjava "$CLIENT_CPUS" KAFKA_TOOL_JVM kafka.tools.StorageTool random-uuid) || return 1
    kjava "$BROKER_CPUS" KAFKA_TOOL_JVM kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$props" > "$OUT/kafka/format.log" 2>&1 || return 1
    # Started directly, not through kjava: $! must be the JVM itself (taskset execs it), not a
    # subshell whose death would leave Kafka running over a data directory being deleted.
    taskset -c "$BROKER_CPUS" java "${KAFKA_SERVER_JVM[@]}" "${KAFKA_JAVA_COMMON[@]}" \
        -Dkafka.logs.dir="$OUT/kafka" \
        "-Xlog:gc*:file=$OUT/kafka/kafkaServer-gc.log:time,tags:filecount=10,filesize=100M" \
        kafka.Kafka "$props" > "$OUT/kafka/kafka.out" 2>&1 &
    KAFKA_PID=$!
    # A JVM start is slow on a loaded machine: up to two minutes for the "started" line.
    for _ in $(seq 240); do
        kill -0 "$KAFKA_PID" 2>/dev/null || return 1
        grep -q "Kafka Server started" "$OUT/kafka/server.log" 2>/dev/null && break
        sleep 0.5
    done
    grep -q "Kafka Server started" "$OUT/kafka/server.log" 2>/dev/null || return 1
    ADDR=127.0.0.1:$port
}

# Stops Kafka (controlled shutdown, then SIGKILL after 60 s) and deletes its data; safe to call
# twice and from the EXIT trap.
kafka_stop() {
    if [[ -n $KAFKA_PID ]]; then
        # Every status is ignored: this runs under set -e, in the EXIT trap too, where a
        # non-zero kill or wait would skip the deletion below.
        kill "$KAFKA_PID" 2>/dev/null || true
        for _ in $(seq 120); do kill -0 "$KAFKA_PID" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$KAFKA_PID" 2>/dev/null || true
        wait "$KAFKA_PID" 2>/dev/null || true
        KAFKA_PID=""
    fi
    if [[ -n $KAFKA_DATA ]]; then rm -rf "$KAFKA_DATA"; fi
    KAFKA_DATA=""
    return 0
}

# ProducerPerformance's last line: "N records sent, R records/sec (M MB/sec), A ms avg latency,
# X ms max latency, P ms 50th, P ms 95th, P ms 99th, P ms 99.9th." Saved as JSON.
perf_produce() { # side, name, records, throughput
    local out=$OUT/peer-$1-$2
    # shellcheck disable=SC2086 # PERF_PRODUCER_PROPS is a list of key=value words.
    kjava "$CLIENT_CPUS" KAFKA_TOOL_JVM org.apache.kafka.tools.ProducerPerformance \
        --topic pperf --num-records "$3" --record-size "$RECORD" --throughput "$4" \
        --producer-props bootstrap.servers="$ADDR" $PERF_PRODUCER_PROPS > "$out.txt" 2>&1
    python3 - "$out.txt" "$out.json" "$RECORD" <<'EOF'
import json, re, sys
last = [l for l in open(sys.argv[1]) if "99.9th" in l][-1]
n = lambda pat: float(re.search(pat, last).group(1))
rps = n(r"([\d.]+) records/sec")
json.dump({"produce_msgs_per_sec": rps, "produce_bytes_per_sec": rps * int(sys.argv[3]),
           "p99_ms": n(r"([\d.]+) ms 99th"), "p999_ms": n(r"([\d.]+) ms 99.9th")},
          open(sys.argv[2], "w"))
EOF
}

# ConsumerPerformance prints a CSV header and one line; MB there is 2^20 bytes.
perf_consume() { # side
    local out=$OUT/peer-$1-perf-consume
    kjava "$CLIENT_CPUS" KAFKA_TOOL_JVM org.apache.kafka.tools.ConsumerPerformance \
        --bootstrap-server "$ADDR" --topic pperf --messages "$PEER_RECORDS" --timeout 120000 \
        --group "perf-$1-$$" > "$out.txt" 2>&1
    python3 - "$out.txt" "$out.json" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
head = [i for i, l in enumerate(lines) if l.startswith("start.time")][-1]
# A WARNING line may come between the header and the figures.
f = [x.strip() for x in [l for l in lines[head + 1:] if l[:1].isdigit()][-1].split(",")]
if int(float(f[4])) == 0:
    sys.exit("ConsumerPerformance consumed nothing")
json.dump({"consume_bytes_per_sec": float(f[3]) * 2**20, "consume_msgs_per_sec": float(f[5])},
          open(sys.argv[2], "w"))
EOF
}

# The same workloads against whichever broker ADDR names; files peer-<side>-*.json.
peer_workloads() { # side
    local side=$1
    log "peer ($side): loadgen burst produce, $PEER_RECORDS x $RECORD B, acks=1, 16 partitions"
    # Topics are created up front (peer_topic says why), as loadgen's --create-topic would.
    peer_topic pburst 16
    lg "peer-$side-burst" --topic pburst --partitions 16 --acks 1 --records "$PEER_RECORDS"
    sync; sleep 1
    log "peer ($side): loadgen consume of that topic from the start"
    lg "peer-$side-consume" --topic pburst --producers 0 --consumers 1 \
        --consume-from earliest --duration 300s
    for rate in $PEER_RATES; do
        settle
        log "peer ($side): loadgen produce + consume at $rate msg/s"
        peer_topic "plat$rate" 16 --config segment.bytes=67108864 --config retention.bytes=268435456
        lg "peer-$side-lat$rate" --topic "plat$rate" --partitions 16 --acks 1 \
            --rate "$rate" --consumers 1 --linger-ms 0.2 --warmup "${WARM_S}s" \
            --duration "${LAT_S}s" --fetch-max-wait-ms 100 \
            --plot "$OUT/peer-$side-lat$rate.svg"
    done
    settle
    log "peer ($side): Kafka's ProducerPerformance, unthrottled, then at ${PEER_RATES%% *} msg/s"
    peer_topic pperf 16 --config segment.bytes=67108864
    perf_produce "$side" perf-produce "$PEER_RECORDS" -1
    settle
    # As long as one loadgen latency run, so the two latency figures cover the same span.
    perf_produce "$side" perf-produce-rate $(( ${PEER_RATES%% *} * LAT_S )) "${PEER_RATES%% *}"
    log "peer ($side): Kafka's ConsumerPerformance"
    perf_consume "$side"
}

# One figure from both sides' JSON: name, file suffix, python index, unit, goal.
peer_figure() {
    local t k
    t=$(jget "$OUT/peer-tidelog-$2.json" "$3")
    k=$(jget "$OUT/peer-kafka-$2.json" "$3")
    figure "peer: $1" "$t" "$4" "Kafka, same run" "$k" "$5"
}

peer_kafka() {
    mkdir -p "$OUT/kafka"
    command -v java >/dev/null || { peer_skip "no JDK (java) on PATH"; return 0; }
    kafka_fetch || return 0
    PEER_RATES=${PEER_RATES:-$PEER_RATES_DEFAULT}
    echo "peer: Apache Kafka $KAFKA_VERSION ($(java -version 2>&1 | head -1)); rates $PEER_RATES msg/s" \
        >> "$OUT/machine.txt"

    start_broker 1 "$BROKER_CPUS"
    peer_workloads tidelog
    stop_broker

    settle
    log "starting Apache Kafka $KAFKA_VERSION (KRaft combined node) on CPUs $BROKER_CPUS"
    if ! kafka_start; then
        kafka_stop
        peer_skip "Kafka did not start (see $OUT/kafka/server.log, kafka.out, format.log)"
        return 0
    fi
    peer_workloads kafka
    kafka_stop

    # Goals from issue 15: produce >= 2x Kafka's msg/s, consume >= Kafka's, p99 <= 1/5 of Kafka's.
    peer_figure "loadgen burst produce (msg/s)" burst "['produce_msgs_per_sec']" msg/s 2
    peer_figure "loadgen consume from start" consume "['consume_bytes_per_sec']" B/s 1
    for rate in $PEER_RATES; do
        peer_figure "loadgen e2e p99 at $rate msg/s" "lat$rate" "['e2e_latency_us']['p99']" us "<=0.2"
        peer_figure "loadgen e2e p99.9 at $rate msg/s" "lat$rate" "['e2e_latency_us']['p999']" us -
        peer_figure "loadgen produce p99 at $rate msg/s" "lat$rate" "['produce_latency_us']['p99']" us -
    done
    peer_figure "ProducerPerformance unthrottled (msg/s)" perf-produce "['produce_msgs_per_sec']" msg/s 2
    peer_figure "ProducerPerformance unthrottled" perf-produce "['produce_bytes_per_sec']" B/s -
    peer_figure "ProducerPerformance p99 at ${PEER_RATES%% *} msg/s" perf-produce-rate "['p99_ms']*1000" us "<=0.2"
    peer_figure "ConsumerPerformance" perf-consume "['consume_bytes_per_sec']" B/s 1
    peer_figure "ConsumerPerformance (msg/s)" perf-consume "['consume_msgs_per_sec']" msg/s -
}
