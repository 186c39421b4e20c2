#!/usr/bin/env bash
# The benchmark suite: the machine's physical limits, then tidelog driven by tidelog-loadgen,
# then librdkafka on the same workloads, every figure printed with its ratio to its limit.
#
#   benches/run.sh [--quick] [--out DIR] [--peer kafka [--only peer]]
#
# --quick runs each step for seconds with small sizes (a smoke test of the suite); the default
# full mode uses the sizes tuning.md's goals are stated for (2 GiB bursts, 60 s sustained).
#
# --peer kafka adds Apache Kafka 4.1 side by side (benches/kafka/peer.sh says how): its jars from
# Maven Central, a KRaft single node pinned to BROKER_CPUS with Kafka's own JVM settings, driven
# by the same loadgen workloads (burst produce, consume, e2e latency at PEER_RATES msg/s) and by
# Kafka's ProducerPerformance/ConsumerPerformance, which also run against tidelog; each figure is
# printed with its ratio tidelog/Kafka. Without a JDK or Maven it prints "SKIP: peer kafka: ...".
# --only peer runs just that step (no physical limits, no tidelog-only scenarios).
#
# Layout on a 2-core machine: the broker is pinned to CPU 0 (--shards 1) and every client
# (loadgen, librdkafka, iperf3 client) to CPU 1, so each goal is a ratio measured in one run on
# one machine. On more cores, set BROKER_CPUS / CLIENT_CPUS (taskset lists).
#
# It installs what it needs (iperf3, fio), builds the release binaries, stops the broker it
# started and deletes its data, whatever happens. Results: $OUT/results.json, $OUT/summary.md.
# BENCH_PROFILE=dev runs it on debug binaries, only to smoke-test the script itself.
set -euo pipefail

MODE=full
OUT=""
PEER=""
ONLY=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) MODE=quick ;;
        --out) OUT="$2"; shift ;;
        --peer) PEER="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ -z $PEER || $PEER == kafka ]] || { echo "run.sh: unknown peer $PEER (only kafka)" >&2; exit 2; }
[[ -z $ONLY || $ONLY == peer ]] || { echo "run.sh: --only takes peer" >&2; exit 2; }
[[ $ONLY != peer || -n $PEER ]] || { echo "run.sh: --only peer needs --peer kafka" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/target/bench-results/$(date +%Y%m%d-%H%M%S)-$MODE}
mkdir -p "$OUT"
WORK=${BENCH_DIR:-$(mktemp -d /tmp/tidelog-bench.XXXXXX)}
BROKER_CPUS=${BROKER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
if [[ $(nproc) -lt 2 ]]; then CLIENT_CPUS=0; fi

if [[ $MODE == quick ]]; then
    BURST_MIB=256; SUSTAIN_S=5; FSYNC_S=4; LAT_S=5; WARM_S=1; IPERF_S=2; FIO_MIB=256; FIO_S=3; FIO_BUF_MIB=512
    SCALE_S=3; TOPICS=10; PARTS_PER_TOPIC=100; RDK_LINGERS="100"
    PEER_RECORDS=65536; PEER_RATES_DEFAULT="20000"
else
    BURST_MIB=2048; SUSTAIN_S=60; FSYNC_S=20; LAT_S=30; WARM_S=3; IPERF_S=10; FIO_MIB=4096; FIO_S=20; FIO_BUF_MIB=12288
    SCALE_S=10; TOPICS=10; PARTS_PER_TOPIC=1000; RDK_LINGERS="5 20 100"
    # 20 and 100 MB/s of 1 KiB records: rates issue 15 quotes; step 4's half load is added.
    PEER_RECORDS=$((BURST_MIB * 1024)); PEER_RATES_DEFAULT="20000 100000"
fi
RECORD=1024
BURST_RECORDS=$((BURST_MIB * 1024 * 1024 / RECORD))

# BENCH_PROFILE=dev only smoke-tests the script itself (a debug build's figures mean nothing).
PROFILE=${BENCH_PROFILE:-release}
if [[ $PROFILE == dev ]]; then BIN=$ROOT/target/debug; else BIN=$ROOT/target/$PROFILE; fi
BROKER_PID=""
IPERF_PID=""
cleanup() {
    declare -F kafka_stop >/dev/null && kafka_stop
    [[ -n $BROKER_PID ]] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    [[ -n $IPERF_PID ]] && kill "$IPERF_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '\n== %s\n' "$*" >&2; }

need() {
    local missing=()
    for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Records one figure: name, value, unit, limit name, limit value, goal ratio (or "-").
FIGURES=$OUT/figures.tsv
: > "$FIGURES"
figure() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$FIGURES"; }
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d'+sys.argv[2]))" "$@"; }

if [[ $ONLY == peer ]]; then need python3; else need iperf3 fio python3; fi
[[ -n $PEER ]] && source "$ROOT/benches/kafka/peer.sh"
log "building $PROFILE binaries"
(cd "$ROOT" && cargo build --profile "$PROFILE" --workspace -q)

machine() {
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r)"
    echo "disk: $(df -h "$WORK" | awk 'NR==2 {print $1}') ($(lsblk -dno ROTA,MODEL "$(df "$WORK" | awk 'NR==2 {print $1}')" 2>/dev/null | xargs))"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "mode: $MODE; broker CPUs $BROKER_CPUS, client CPUs $CLIENT_CPUS"
}
machine | tee "$OUT/machine.txt" >&2

if [[ $ONLY != peer ]]; then

# ---------------------------------------------------------------- physical limits
log "loopback TCP: iperf3 single stream, then -Z (sendfile)"
iperf() {
    taskset -c "$BROKER_CPUS" iperf3 -s -p 5299 -1 >/dev/null 2>&1 &
    IPERF_PID=$!
    sleep 0.5
    taskset -c "$CLIENT_CPUS" iperf3 -c 127.0.0.1 -p 5299 -t "$IPERF_S" -J "$@" > "$OUT/iperf$*.json"
    wait "$IPERF_PID" 2>/dev/null || true
    IPERF_PID=""
    jget "$OUT/iperf$*.json" "['end']['sum_received']['bits_per_second']/8"
}
IPERF=$(iperf)
IPERF_Z=$(iperf -Z)
figure "iperf3 loopback, 1 stream" "$IPERF" B/s - - -
figure "iperf3 loopback -Z (sendfile)" "$IPERF_Z" B/s - - -

log "disk: fio sequential 1 MiB writes (O_DIRECT; buffered + fdatasync=1; buffered)"
fio_bw() { # name, extra args...
    local name=$1; shift
    fio --name="$name" --filename="$WORK/fio.dat" --rw=write --bs=1M --size="${FIO_MIB}M" \
        --ioengine=psync --runtime="$FIO_S" --output-format=json "$@" > "$OUT/fio-$name.json"
    rm -f "$WORK/fio.dat"
    jget "$OUT/fio-$name.json" "['jobs'][0]['write']['bw_bytes']"
}
FIO_DIRECT=$(fio_bw direct --direct=1)
FIO_SYNC=$(fio_bw fdatasync --direct=0 --fdatasync=1)
FIO_SYNC64=$(fio_bw fdatasync64k --direct=0 --fdatasync=1 --bs=64k)
# Buffered writes well past the dirty limits, so the figure is what writeback sustains.
FIO_BUF=$(FIO_MIB=$FIO_BUF_MIB FIO_S=$((FIO_S * 3 / 2)) fio_bw buffered --direct=0 --end_fsync=1)
figure "fio O_DIRECT 1 MiB" "$FIO_DIRECT" B/s - - -
figure "fio buffered + fdatasync=1, 1 MiB" "$FIO_SYNC" B/s - - -
figure "fio buffered + fdatasync=1, 64 KiB" "$FIO_SYNC64" B/s - - -
figure "fio buffered (end_fsync), ${FIO_BUF_MIB} MiB" "$FIO_BUF" B/s - - -

fi # ONLY != peer

# ---------------------------------------------------------------- tidelog + loadgen
start_broker() { # shards, cpus
    mkdir -p "$WORK/broker"
    taskset -c "$2" "$BIN/tidelog" serve --listen 127.0.0.1:0 --data-dir "$WORK/broker" \
        --shards "$1" --set log.retention.check.interval.ms=1000 \
        > "$WORK/broker.out" 2> "$OUT/broker-$1.log" &
    BROKER_PID=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$WORK/broker.out" 2>/dev/null && break
        sleep 0.1
    done
    ADDR=$(sed -n 's/^listening on //p' "$WORK/broker.out")
    [[ -n $ADDR ]] || { echo "run.sh: the broker did not start" >&2; exit 1; }
}
stop_broker() {
    kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=""
    rm -rf "$WORK/broker"
}
# Each measured scenario starts with the previous one's dirty pages written back, so that
# writeback throttling from one scenario does not land in the next.
settle() { sync; sleep 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$BROKER_PID/status"; }
lg() { # output name, loadgen args...
    local name=$1; shift
    # Exit status 2 means the broker rejected records: the JSON says how many; keep going.
    taskset -c "$CLIENT_CPUS" "$BIN/tidelog-loadgen" --bootstrap-server "$ADDR" --json --quiet \
        --cpus "$CLIENT_CPUS" "$@" > "$OUT/$name.json" || [[ $? == 2 ]]
}
rdk() { # output name, rdkafka-perf args...
    local name=$1; shift
    taskset -c "$CLIENT_CPUS" "$BIN/rdkafka-perf" "$@" --bootstrap-server "$ADDR" --json \
        > "$OUT/$name.json"
}
# Topics that a sustained run fills are bounded so the disk never fills: 64 MiB segments,
# 256 MiB per partition (4 GiB for 16 partitions), checked every second.
BOUNDED=(--topic-config segment.bytes=67108864 --topic-config retention.bytes=268435456)

if [[ $ONLY != peer ]]; then

start_broker 1 "$BROKER_CPUS"
settle
log "1a. produce burst: $BURST_MIB MiB, acks=1, 16 partitions"
lg s1-burst --topic burst --create-topic --partitions 16 --acks 1 --records "$BURST_RECORDS"
BURST=$(jget "$OUT/s1-burst.json" "['produce_bytes_per_sec']")
BURST_MSGS=$(jget "$OUT/s1-burst.json" "['produce_msgs_per_sec']")
figure "1a produce burst (acks=1)" "$BURST" B/s "iperf3 1 stream" "$IPERF" 0.5

log "2. consume the burst topic from the beginning"
sync; sleep 1
lg s2-consume --topic burst --producers 0 --consumers 1 --consume-from earliest --duration 300s
CONSUME=$(jget "$OUT/s2-consume.json" "['consume_bytes_per_sec']")
figure "2 consume from start" "$CONSUME" B/s "iperf3 -Z" "$IPERF_Z" 0.6

log "librdkafka on the same workloads (tuned linger.ms: $RDK_LINGERS; batch.size 1 MB)"
RDK_BEST=0
"$BIN/tidelog" topic create rdk --partitions 16 --config segment.bytes=67108864 \
    --config retention.bytes=268435456 --bootstrap-server "$ADDR" >/dev/null
for linger in $RDK_LINGERS; do
    rdk "rdk-produce-l$linger" produce --topic rdk --records "$BURST_RECORDS" --acks 1 \
        --record-size $RECORD --linger-ms "$linger" --batch-size 1000000
    v=$(jget "$OUT/rdk-produce-l$linger.json" "['produce_msgs_per_sec']")
    RDK_BEST=$(python3 -c "print(max($RDK_BEST, $v))")
done
figure "librdkafka produce burst, best linger (msgs/s)" "$RDK_BEST" msg/s "loadgen 1a (msgs/s)" "$BURST_MSGS" -
rdk rdk-consume consume --topic burst --records $((BURST_RECORDS))
RDK_CONSUME=$(jget "$OUT/rdk-consume.json" "['consume_bytes_per_sec']")
figure "librdkafka consume from start" "$RDK_CONSUME" B/s "loadgen 2" "$CONSUME" -

settle
log "loadgen vs librdkafka, same minute: 1 KiB and 100 B records, acks=1"
for size in 1024 100; do
    n=$(( (BURST_MIB / 4) * 1024 * 1024 / size ))
    lg "vs-lg-$size" --topic vs$size --create-topic --partitions 16 --record-size $size \
        --records "$n" "${BOUNDED[@]}"
    rdk "vs-rdk-$size" produce --topic vs$size --records "$n" --record-size $size \
        --linger-ms 100 --batch-size 1000000
    a=$(jget "$OUT/vs-lg-$size.json" "['produce_msgs_per_sec']")
    b=$(jget "$OUT/vs-rdk-$size.json" "['produce_msgs_per_sec']")
    figure "loadgen produce, $size B records (msgs/s)" "$a" msg/s "librdkafka, same workload" "$b" 1.5
done

settle
log "1b. sustained produce: ${SUSTAIN_S}s, acks=1, 16 partitions (retention-bounded topic)"
lg s1-sustained --topic sustained --create-topic --partitions 16 --acks 1 \
    --duration "${SUSTAIN_S}s" "${BOUNDED[@]}" --plot "$OUT/s1-sustained.svg"
SUSTAINED=$(jget "$OUT/s1-sustained.json" "['produce_bytes_per_sec']")
SUSTAINED_MSGS=$(jget "$OUT/s1-sustained.json" "['produce_msgs_per_sec']")
figure "1b produce sustained (acks=1)" "$SUSTAINED" B/s "fio buffered" "$FIO_BUF" 0.8

settle
log "3. acks=-1 (fsync, group commit): 16 partitions, 32 producers, 64 KiB batches"
lg s3-fsync --topic fsync --create-topic --partitions 16 --acks all --producers 32 \
    --batch-size 65536 --duration "${FSYNC_S}s" "${BOUNDED[@]}"
FSYNC=$(jget "$OUT/s3-fsync.json" "['produce_bytes_per_sec']")
figure "3 produce acks=-1, 32 producers" "$FSYNC" B/s "fio fdatasync=1 64 KiB" "$FIO_SYNC64" 0.8

settle
log "4. produce + consume at 50% of the sustained rate"
RATE=$(python3 -c "print(int($SUSTAINED_MSGS * 0.5))")
lg s4-latency --topic latency --create-topic --partitions 16 --acks 1 --rate "$RATE" \
    --consumers 1 --linger-ms 0.2 --warmup "${WARM_S}s" --duration "${LAT_S}s" \
    --fetch-max-wait-ms 100 "${BOUNDED[@]}" --plot "$OUT/s4-latency.svg"
P99=$(jget "$OUT/s4-latency.json" "['e2e_latency_us']['p99']")
P999=$(jget "$OUT/s4-latency.json" "['e2e_latency_us']['p999']")
figure "4 e2e p99 at 50% rate ($RATE msg/s)" "$P99" us "goal" 1000 "<=1"
figure "4 e2e p99.9 at 50% rate" "$P999" us "goal" 5000 "<=1"

# Every partition holds open files (segment and index); a broker cannot outgrow RLIMIT_NOFILE
# (containers often cap it at 20,000 and refuse to raise it), so the count is bounded by it.
NOFILE=$(ulimit -n)
if [[ $NOFILE != unlimited && $((TOPICS * PARTS_PER_TOPIC * 2 + 1000)) -gt $NOFILE ]]; then
    PARTS_PER_TOPIC=$(( (NOFILE - 1000) / 2 / TOPICS ))
    echo "note: RLIMIT_NOFILE $NOFILE allows $((TOPICS * PARTS_PER_TOPIC)) partitions" >> "$OUT/machine.txt"
fi
stop_broker
start_broker 1 "$BROKER_CPUS"
log "5. $((TOPICS * PARTS_PER_TOPIC)) partitions ($TOPICS topics x $PARTS_PER_TOPIC), fresh broker"
RSS0=$(rss_kib)
FD0=$(ls "/proc/$BROKER_PID/fd" | wc -l)
for t in $(seq 0 $((TOPICS - 1))); do
    "$BIN/tidelog" topic create "many-$t" --partitions "$PARTS_PER_TOPIC" \
        --config segment.bytes=16777216 --bootstrap-server "$ADDR" >/dev/null
done
sleep 3
RSS1=$(rss_kib)
FD1=$(ls "/proc/$BROKER_PID/fd" | wc -l)
PER_PART=$(python3 -c "print(($RSS1 - $RSS0) * 1024 / ($TOPICS * $PARTS_PER_TOPIC))")
figure "5 broker RSS per idle partition" "$PER_PART" B "goal" 51200 "<=1"
figure "5 open files per partition" "$(python3 -c "print(($FD1 - $FD0) / ($TOPICS * $PARTS_PER_TOPIC))")" n - - -
settle
lg s5-many --topic many --topics "$TOPICS" --partitions "$PARTS_PER_TOPIC" --acks 1 \
    --records "$BURST_RECORDS"
MANY=$(jget "$OUT/s5-many.json" "['produce_bytes_per_sec']")
figure "5 produce over $((TOPICS * PARTS_PER_TOPIC)) partitions" "$MANY" B/s "1a burst" "$BURST" 0.5
# Memory once every partition has been written to, idle again.
sleep 3
RSS2=$(rss_kib)
PER_USED=$(python3 -c "print(($RSS2 - $RSS0) * 1024 / ($TOPICS * $PARTS_PER_TOPIC))")
figure "5 broker RSS per partition, after each was written" "$PER_USED" B "goal" 51200 "<=1"
stop_broker

log "6. shard scaling: the same produce workload with 1 and 2 shards"
for shards in 1 2; do
    cpus=$BROKER_CPUS
    [[ $shards == 2 ]] && cpus="$BROKER_CPUS,$CLIENT_CPUS"
    start_broker "$shards" "$cpus"
    lg "s6-shards$shards" --topic scale --create-topic --partitions 16 --acks 1 \
        --duration "${SCALE_S}s" "${BOUNDED[@]}"
    stop_broker
done
S6_1=$(jget "$OUT/s6-shards1.json" "['produce_bytes_per_sec']")
S6_2=$(jget "$OUT/s6-shards2.json" "['produce_bytes_per_sec']")
figure "6 produce with 2 shards (sharing the client's core)" "$S6_2" B/s "1 shard" "$S6_1" -
fi # ONLY != peer

if [[ -n $PEER ]]; then
    # The full suite's half load (step 4) joins the fixed rates, so Kafka is measured there too.
    [[ -n ${RATE:-} ]] && PEER_RATES_DEFAULT="$PEER_RATES_DEFAULT $RATE"
    log "peer: Apache Kafka side by side"
    peer_kafka
fi

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"

# ---------------------------------------------------------------- report
python3 - "$FIGURES" "$OUT" <<'EOF'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
out = []
def fmt(v, unit):
    v = float(v)
    if unit == "B/s": return f"{v / 2**20:,.1f} MiB/s"
    if unit == "msg/s": return f"{v:,.0f} msg/s"
    if unit == "us": return f"{v / 1000:.3f} ms"
    if unit == "B": return f"{v / 1024:,.1f} KiB"
    return v
lines = ["| figure | value | against | limit | ratio | goal | met |", "|---|---|---|---|---|---|---|"]
for name, value, unit, lname, lvalue, goal in rows:
    rec = {"figure": name, "value": float(value), "unit": unit}
    if lname == "-":
        lines.append(f"| {name} | {fmt(value, unit)} | | | | | |")
    else:
        ratio = float(value) / float(lvalue) if float(lvalue) else 0.0
        lunit = unit
        met = ""
        if goal.startswith("<="):
            met = "yes" if ratio <= float(goal[2:]) else "NO"
        elif goal != "-":
            met = "yes" if ratio >= float(goal) else "NO"
        rec.update(limit=lname, limit_value=float(lvalue), ratio=ratio, goal=goal, met=met)
        lines.append(f"| {name} | {fmt(value, unit)} | {lname} | {fmt(lvalue, lunit)} | {ratio:.2f} | {goal} | {met} |")
    out.append(rec)
json.dump(out, open(sys.argv[2] + "/results.json", "w"), indent=1)
text = "\n".join(lines)
open(sys.argv[2] + "/summary.md", "w").write(text + "\n")
print(text)
EOF
cat "$OUT/machine.txt"
echo "results: $OUT" >&2
