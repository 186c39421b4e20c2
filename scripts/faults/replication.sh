#!/usr/bin/env bash
# Replication under faults, repeated: runs tests/replication.rs (real brokers, a 3-node cluster
# on 127.0.0.1-3, idempotent acks=all producers logging every acknowledged record, checkers
# that read every record back and compare the replicas' segment files) RUNS times and reports,
# per fault, how many runs passed and the unavailability windows they printed.
#
#   scripts/faults/replication.sh [--runs N]     (default 10)
#
# The faults, one test each: SIGKILL of a leader (then its return and a second kill); a leader
# paused past its session (a zombie that resumes); a leader cut off the network (each node in
# a network namespace of its own, its veth link down, then up: needs root); a rolling restart
# of every broker under a producer; acks=1 writes on a leader whose followers are paused, then
# its death and return (a divergent tail to truncate); SIGTERM of a leader (controlled
# shutdown, preferred election); SIGKILL of a group's coordinator; DeleteRecords then the
# leader's loss. Each run asserts: every acknowledged record present, none twice, no record
# that was never below the high watermark served, in-sync replicas byte-identical. The test
# command runs the same tests once (`cargo test`); this is the repeated version.
set -uo pipefail
RUNS=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="$2"; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "replication.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
cd "$(dirname "$0")/../.."
cargo test --test replication --no-run --quiet || exit 1
LOG=target/test-logs/faults
rm -rf "$LOG" && mkdir -p "$LOG"
for run in $(seq "$RUNS"); do
    cargo test --test replication -- --nocapture --test-threads 1 >"$LOG/run-$run.txt" 2>&1
    echo "run $run: exit $?"
done
echo
echo "per fault (test): runs started, failed"
for t in $(grep -h -o -E "^test [a-z0-9_]+ \.\.\. " "$LOG"/run-*.txt | awk '{print $2}' | sort -u); do
    started=$(grep -h -c -E "^test $t \.\.\. " "$LOG"/run-*.txt | paste -sd+ | bc)
    failed=$(grep -h -c -E "^---- $t stdout ----" "$LOG"/run-*.txt | paste -sd+ | bc)
    echo "  $t: $started runs, $failed failed"
done
echo
echo "unavailability windows (ms): fault, runs, min, median, max"
grep -h -o "FAULT .* ms" "$LOG"/run-*.txt | python3 -c '
import re, sys, collections
w = collections.defaultdict(list)
for line in sys.stdin:
    m = re.match(r"FAULT (.*): partition 0 led again after (\d+) ms", line)
    if m:
        w[m.group(1)].append(int(m.group(2)))
for fault, v in sorted(w.items()):
    v.sort()
    print(f"  {fault}: {len(v)} runs, {v[0]}, {v[len(v)//2]}, {v[-1]}")
'
echo
echo "records per fault (idempotent acks=all producers): runs, acked, lost, duplicated, unacknowledged served"
grep -h -o "COUNTS .*" "$LOG"/run-*.txt | python3 -c '
import re, sys, collections
c = collections.defaultdict(lambda: [0, 0, 0, 0, 0])
for line in sys.stdin:
    m = re.match(r"COUNTS (.*): acked (\d+), lost (\d+), duplicated (\d+), unacknowledged (\d+)", line)
    if m:
        t = c[m.group(1)]
        t[0] += 1
        for i in range(4):
            t[i + 1] += int(m.group(i + 2))
for fault, t in sorted(c.items()):
    print(f"  {fault}: {t[0]} runs, {t[1]} acked, {t[2]} lost, {t[3]} duplicated, {t[4]} unacknowledged")
'
echo "logs: $LOG/run-N.txt"
! grep -q "FAILED" "$LOG"/run-*.txt
