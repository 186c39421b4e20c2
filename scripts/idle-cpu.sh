#!/usr/bin/env bash
# Measures an idle broker's CPU use per thread from /proc/PID/task/*/stat (utime+stime, in clock
# ticks) and /proc/PID/task/*/schedstat (run time in ns, finer), plus voluntary context switches
# (each one is a wake-up of a sleeping thread), over a window (30 s by default).
#
#   scripts/idle-cpu.sh                 # starts target/debug/tidelog with 2 shards, measures, stops it
#   scripts/idle-cpu.sh --pid PID       # measures a running broker
#   SECONDS_WINDOW=60 SHARDS=4 BIN=target/release/tidelog scripts/idle-cpu.sh
#
# Goal (issue 10 / issue 15 item 5): every shard thread below 0.1% of a core.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
WINDOW=${SECONDS_WINDOW:-30}
SHARDS=${SHARDS:-2}
BIN=${BIN:-target/debug/tidelog}
PID=""
if [ "${1:-}" = "--pid" ]; then
    PID=$2
fi

cleanup() { [ -n "${OWN_PID:-}" ] && kill "$OWN_PID" 2>/dev/null && wait "$OWN_PID" 2>/dev/null; [ -n "${DATA:-}" ] && rm -rf "$DATA"; }
trap cleanup EXIT

if [ -z "$PID" ]; then
    [ -x "$BIN" ] || { echo "no broker binary at $BIN (cargo build first)" >&2; exit 1; }
    DATA=$(mktemp -d /tmp/tidelog-idle-XXXXXX)
    "$BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA" --shards "$SHARDS" >"$DATA.out" 2>/dev/null &
    OWN_PID=$!
    for _ in $(seq 100); do grep -q "listening on" "$DATA.out" 2>/dev/null && break; sleep 0.1; done
    grep -q "listening on" "$DATA.out" || { echo "broker did not start" >&2; exit 1; }
    rm -f "$DATA.out"
    PID=$OWN_PID
    # Let start-up work (partition opening, first timers) finish before the window opens.
    sleep 2
fi

TCK=$(getconf CLK_TCK)
snapshot() { # prints: tid comm ticks ns voluntary_switches
    for t in /proc/"$PID"/task/*; do
        local tid comm ticks ns vcs
        tid=${t##*/}
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        # Fields 14 and 15 of stat are utime and stime; comm (field 2) has no spaces here.
        ticks=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null) || continue
        ns=$(awk '{print $1}' "$t/schedstat" 2>/dev/null || echo 0)
        vcs=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status" 2>/dev/null || echo 0)
        echo "$tid $comm $ticks $ns $vcs"
    done
}

before=$(snapshot)
sleep "$WINDOW"
after=$(snapshot)

echo "idle CPU of pid $PID over ${WINDOW}s (CLK_TCK=$TCK)"
printf '%-8s %-18s %12s %14s %12s\n' tid thread 'stat %core' 'schedstat %core' 'wakeups/s'
join <(echo "$before" | sort) <(echo "$after" | sort) | awk -v w="$WINDOW" -v tck="$TCK" '
    {
        tid=$1; comm=$2; dt=($7 - $3) / tck; dns=($8 - $4) / 1e9; dv=$9 - $5;
        printf "%-8s %-18s %11.3f%% %13.4f%% %12.1f\n", tid, comm, 100*dt/w, 100*dns/w, dv/w;
        # A shard is its executor thread plus its helper (blocking-pool) thread, same name.
        if (comm ~ /^tidelog-shard/) { shard[comm] += 100*dns/w; wake[comm] += dv/w }
        total += 100*dns/w
    }
    END {
        for (s in shard) {
            n++; sum += shard[s]; if (shard[s] > worst) worst = shard[s]
            printf "%s: %.4f%% of a core, %.1f wake-ups/s\n", s, shard[s], wake[s]
        }
        printf "process total: %.4f%% of a core; %d shards, mean %.4f%%, worst %.4f%% of a core per shard\n",
            total, n, (n ? sum/n : 0), worst
    }'
