#!/usr/bin/env bash
# Replication's cost: a three-node cluster on 127.0.0.1-3 (issue 12's command line, one shard
# each) and tidelog-loadgen producing the same workload to an RF=1 and an RF=3 topic
# (min.insync.replicas=2) in alternation, so the two are compared within one run.
#
#   benches/replication.sh [--rounds N] [--duration 10s] [--acks all|1]
#
# Layout: the brokers are pinned to BROKER_CPUS (default: CPU 0), loadgen to CLIENT_CPUS
# (default: CPU 1). On a 2-core machine the three brokers share one core, so RF=3 pays for its
# three copies on the same core that RF=1's single copy uses: the ratio is the CPU cost of
# replication, not what three machines would see. It builds the release binaries, and stops the
# brokers and deletes their data whatever happens.
set -euo pipefail

ROUNDS=2
DURATION=10s
ACKS=all
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --acks) ACKS="$2"; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "replication.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
BROKER_CPUS=${BROKER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
cargo build --release --quiet -p tidelog -p tidelog-loadgen
BIN=target/release/tidelog
LOADGEN=target/release/tidelog-loadgen
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n "${KEEP:-}" ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    try:
        for i in (2, 3):
            t = socket.socket(); t.bind((f"127.0.0.{i}", p)); t.close()
        print(p); break
    except OSError:
        pass'
}
P=$(free_port)
C=$(free_port)
for i in 1 2 3; do
    taskset -c "$BROKER_CPUS" "$BIN" serve --data-dir "$WORK/node$i" --shards 1 \
        --set node.id=$i --set process.roles=broker,controller \
        --set cluster.id=MkU3OEVBNTcwNTJENDM2Qk \
        --set controller.quorum.voters=1@127.0.0.1:$C,2@127.0.0.2:$C,3@127.0.0.3:$C \
        --set listeners=PLAINTEXT://127.0.0.$i:$P,CONTROLLER://127.0.0.$i:$C \
        --set controller.listener.names=CONTROLLER >"$WORK/node$i.out" 2>"$WORK/node$i.log" &
    PIDS+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 300); do
        grep -q "listening on" "$WORK/node$i.out" && break
        sleep 0.1
    done
done
until "$BIN" cluster status --bootstrap-server 127.0.0.1:$P 2>/dev/null | grep -q "CurrentVoters"; do
    sleep 0.2
done

run() {
    local rf=$1 round=$2
    taskset -c "$CLIENT_CPUS" "$LOADGEN" --bootstrap-server 127.0.0.1:$P \
        --topic "rf$rf" --create-topic --partitions 16 --replication-factor "$rf" \
        --topic-config min.insync.replicas=$(( rf > 1 ? 2 : 1 )) \
        --producers 1 --record-size 1024 --acks "$ACKS" --duration "$DURATION" \
        >"$WORK/loadgen-rf$rf-$round.txt" 2>&1 || { cat "$WORK/loadgen-rf$rf-$round.txt"; return 1; }
    grep -E "^produce: |p50" "$WORK/loadgen-rf$rf-$round.txt" | sed "s/^/RF=$rf round $round: /"
}
echo "replication.sh: acks=$ACKS, 1 KiB records, 16 partitions, 1 producer, $DURATION per run"
for round in $(seq "$ROUNDS"); do
    run 1 "$round"
    run 3 "$round"
done
