#!/usr/bin/env bash
# Transactions' cost (issue 14): librdkafka (rdkafka-perf) producing 1 KiB records to a
# 16-partition topic as a plain idempotent producer, and as a transactional one committing every
# 100 ms and every 1,000 records, in alternation, so the three compare within one run.
#
#   benches/transactions.sh [--rounds N] [--duration 10]
#
# The broker is pinned to BROKER_CPUS (default: CPU 0), the producer to CLIENT_CPUS (default:
# CPU 1). It builds the release binaries, and stops the broker and deletes its data whatever
# happens. Each line is rdkafka-perf's summary: msgs/s, MB/s, delivery latency, and for the
# transactional runs the transactions committed.
set -euo pipefail

ROUNDS=2
DURATION=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "transactions.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
BROKER_CPUS=${BROKER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
cargo build --release --quiet -p tidelog -p tidelog-loadgen
BIN=target/release/tidelog
PERF=target/release/rdkafka-perf
WORK=$(mktemp -d)
PID=
cleanup() {
    [[ -n "$PID" ]] && kill "$PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

taskset -c "$BROKER_CPUS" "$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --shards 1 \
    >"$WORK/out" 2>"$WORK/log" &
PID=$!
for _ in $(seq 300); do
    grep -q "listening on" "$WORK/out" && break
    sleep 0.1
done
ADDR=$(sed -n 's/^listening on //p' "$WORK/out" | head -1)
"$BIN" topic create txn-bench --partitions 16 --bootstrap-server "$ADDR" >/dev/null

run() { # label, rdkafka-perf flags...
    local label=$1
    shift
    taskset -c "$CLIENT_CPUS" "$PERF" produce --bootstrap-server "$ADDR" --topic txn-bench \
        --record-size 1024 --acks all --duration-s "$DURATION" --json "$@" >"$WORK/$label.json" \
        2>"$WORK/$label.err" || { cat "$WORK/$label.err"; return 1; }
    python3 - "$label" "$WORK/$label.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[2]))
lat = r["produce_latency_us"]
print(f"{sys.argv[1]:<24} {r['produce_msgs_per_sec']:>10.0f} msgs/s {r['produce_bytes_per_sec'] / 1e6:>7.1f} MB/s"
      f"  p50 {lat['p50'] / 1000:.1f} ms p99 {lat['p99'] / 1000:.1f} ms"
      f"  transactions {r.get('transactions_committed', 0)}")
EOF
}
echo "transactions.sh: acks=all, 1 KiB records, 16 partitions, 1 librdkafka producer, ${DURATION} s per run"
for round in $(seq "$ROUNDS"); do
    run "idempotent-$round" --idempotent
    run "txn-100ms-$round" --txn-ms 100
    run "txn-1000rec-$round" --txn-records 1000
done
