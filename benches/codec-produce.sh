#!/usr/bin/env bash
# Produce throughput per codec through the whole broker (issue 9): Kafka's own ProducerPerformance
# (kafka-producer-perf-test) with `compression.type` set on the producer, against one or more
# tidelog release binaries side by side, alternating binaries for each codec so that a machine
# whose load drifts hurts every binary alike. Prints one line per (codec, binary) and a TSV.
#
#   benches/codec-produce.sh BIN_A [BIN_B ...]
#
# Needs a JDK and Kafka's jars in benches/kafka/lib (benches/run.sh --peer kafka fetches them:
# mvn -f benches/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=benches/kafka/lib).
# The payloads are 2,000 distinct JSON-like records of about RECORD bytes (an order event with
# ids, names, a timestamp and free text; 3-5x compressible, as application records are), written
# to a payload file that ProducerPerformance picks from at random. Its default payload, random
# uppercase letters, has no repeats, so LZ codecs store it as literals and decompress it at
# memcpy speed: it would hide what validation costs.
# Settings: RECORDS (300000), RECORD (1024), PARTITIONS (16), BROKER_CPUS (0), CLIENT_CPUS (1),
# CODECS ("none gzip snappy lz4 zstd"), ROUNDS (1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RECORDS=${RECORDS:-300000}
RECORD=${RECORD:-1024}
PARTITIONS=${PARTITIONS:-16}
BROKER_CPUS=${BROKER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
CODECS=${CODECS:-"none gzip snappy lz4 zstd"}
ROUNDS=${ROUNDS:-1}
LIB=$ROOT/benches/kafka/lib
[[ $# -ge 1 ]] || { echo "usage: $0 TIDELOG_BIN [TIDELOG_BIN ...]" >&2; exit 2; }
command -v java >/dev/null || { echo "SKIP: codec-produce: no JDK"; exit 0; }
ls "$LIB"/kafka-tools-*.jar >/dev/null 2>&1 || { echo "SKIP: codec-produce: no Kafka jars in $LIB"; exit 0; }
WORK=$(mktemp -d)
PID=""
trap '[[ -n $PID ]] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

python3 - "$WORK/payloads" "$RECORD" <<'PY'
import json, random, sys
rnd = random.Random(7)
words = ("order shipped delayed customer warehouse express standard return refund invoice "
         "paid pending cancelled priority fragile gift berlin paris lisbon oslo madrid").split()
with open(sys.argv[1], "w") as f:
    for i in range(2000):
        rec = {"event": rnd.choice(["created", "paid", "shipped", "delivered"]),
               "order_id": f"ord-{rnd.randrange(10**9):09d}", "customer": f"cust-{rnd.randrange(10**6)}",
               "ts": 1_700_000_000_000 + rnd.randrange(10**9), "items": [], "note": ""}
        while len(json.dumps(rec)) < int(sys.argv[2]) - 120:
            rec["items"].append({"sku": f"SKU-{rnd.randrange(10**5):05d}", "qty": rnd.randrange(1, 9),
                                 "price": round(rnd.uniform(1, 500), 2)})
        rec["note"] = " ".join(rnd.choice(words) for _ in range(12))
        f.write(json.dumps(rec)[: int(sys.argv[2])] + "\n")
PY
echo -e "codec\tbinary\trecords_per_s\tMB_per_s\tp99_ms\tbroker_cpu_s" > "$WORK/results.tsv"
for round in $(seq "$ROUNDS"); do
for codec in $CODECS; do
    for bin in "$@"; do
        data=$WORK/data
        rm -rf "$data"
        taskset -c "$BROKER_CPUS" "$bin" serve --listen 127.0.0.1:0 --data-dir "$data" --shards 1 \
            >"$WORK/out" 2>"$WORK/broker.log" &
        PID=$!
        for _ in $(seq 600); do grep -q "listening on" "$WORK/out" 2>/dev/null && break; sleep 0.1; done
        addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$WORK/out" | head -1)
        [[ -n $addr ]] || { echo "broker $bin did not start" >&2; cat "$WORK/broker.log" >&2; exit 1; }
        "$bin" topic create pperf --partitions "$PARTITIONS" --bootstrap-server "$addr" >/dev/null
        cpu0=$(awk '{print $14+$15}' "/proc/$PID/stat")
        taskset -c "$CLIENT_CPUS" java -Xmx512M -XX:+UseG1GC -cp "$LIB/*" \
            -Dlog4j2.configurationFile="$ROOT/benches/kafka/log4j2.properties" -Dkafka.logs.dir="$WORK" \
            org.apache.kafka.tools.ProducerPerformance --topic pperf --num-records "$RECORDS" \
            --payload-file "$WORK/payloads" --throughput -1 --producer-props bootstrap.servers="$addr" \
            acks=1 linger.ms=5 batch.size=1048576 compression.type="$codec" >"$WORK/perf.txt" 2>&1
        cpu1=$(awk '{print $14+$15}' "/proc/$PID/stat")
        kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
        line=$(grep "99.9th" "$WORK/perf.txt" | tail -1)
        rps=$(sed -n 's/.* \([0-9.]*\) records\/sec.*/\1/p' <<<"$line")
        mbs=$(sed -n 's/.*(\([0-9.]*\) MB\/sec).*/\1/p' <<<"$line")
        p99=$(sed -n 's/.* \([0-9.]*\) ms 99th.*/\1/p' <<<"$line")
        cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz}')
        name=$(basename "$bin")
        echo "round $round codec $codec $name: $rps records/s, $mbs MB/s, p99 $p99 ms, broker CPU $cpu s"
        echo -e "$codec\t$name\t$rps\t$mbs\t$p99\t$cpu" >> "$WORK/results.tsv"
    done
done
done
cat "$WORK/results.tsv"
