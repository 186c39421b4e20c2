# Shared by scripts/peers/*.sh: start and stop a tidelog broker for a peer suite, and the
# SKIP / closing lines every suite prints. Sourced, not run.
#
# A suite that cannot run (toolchain missing, registry unreachable) prints one loud
# `SKIP: <suite>: <reason>` line and exits 0; it never passes silently with nothing run.

PEERS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TIDELOG_BIN=${TIDELOG_BIN:-$PEERS_ROOT/target/debug/tidelog}
PEERS_WORK=$PEERS_ROOT/target/peers
PEERS_LOGS=$PEERS_ROOT/target/test-logs
mkdir -p "$PEERS_WORK" "$PEERS_LOGS"

peers_skip() { # suite reason
    echo "SKIP: $1: $2"
    exit 0
}

# Starts `tidelog serve` on a free port with a fresh data directory; sets BROKER_PID,
# BROKER_ADDR, BROKER_DATA and BROKER_LOG. Extra arguments go to `serve`.
start_broker() { # log-name [serve args...]
    local name=$1
    shift
    [ -x "$TIDELOG_BIN" ] || { echo "tidelog binary not found at $TIDELOG_BIN (cargo build first)"; return 1; }
    BROKER_DATA=$(mktemp -d "${TMPDIR:-/tmp}/tidelog-peers-XXXXXX")
    BROKER_LOG=$PEERS_LOGS/peers-$name-broker.log
    local out=$BROKER_DATA.out
    "$TIDELOG_BIN" serve --listen 127.0.0.1:0 --data-dir "$BROKER_DATA" "$@" >"$out" 2>"$BROKER_LOG" &
    BROKER_PID=$!
    # The broker prints exactly one stdout line when it accepts connections; stdout goes to a
    # file (not a pipe this shell would close) and is checked every 100 ms for up to 30 s.
    local line="" i
    for i in $(seq 300); do
        line=$(head -1 "$out" 2>/dev/null)
        [[ $line == "listening on "* ]] && break
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $line != "listening on "* ]]; then
        echo "tidelog did not start: ${line:-no output}"; tail -20 "$BROKER_LOG"
        kill "$BROKER_PID" 2>/dev/null
        return 1
    fi
    BROKER_ADDR=${line#listening on }
    echo "tidelog $BROKER_PID listening on $BROKER_ADDR (log: $BROKER_LOG)"
}

# SIGTERM and wait; reports an exit that was not clean (a crash during the suite is a failure
# of the broker even when the suite's own tests passed).
stop_broker() {
    [ -n "${BROKER_PID:-}" ] || return 0
    local rc=0
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID"
        wait "$BROKER_PID" || rc=$?
    else
        wait "$BROKER_PID" || rc=$?
        echo "tidelog exited during the suite with status $rc:"; tail -5 "$BROKER_LOG"
        rc=${rc:-1}; [ "$rc" = 0 ] && rc=1
    fi
    rm -rf "$BROKER_DATA" "$BROKER_DATA.out"
    BROKER_PID=
    return $rc
}

# Starts a 3-node cluster (every node process.roles=broker,controller) on 127.0.0.1, .2 and .3
# with the same free client and controller ports on each, as README's "Run a 3-node cluster on
# one machine"; sets CLUSTER_PIDS, CLUSTER_DATA and BROKER_ADDR (the three client addresses).
start_cluster() { # log-name
    local name=$1 i
    [ -x "$TIDELOG_BIN" ] || { echo "tidelog binary not found at $TIDELOG_BIN (cargo build first)"; return 1; }
    CLUSTER_DATA=$(mktemp -d "${TMPDIR:-/tmp}/tidelog-peers-cluster-XXXXXX")
    local ports
    ports=$(python3 - <<'PY'
import socket
def free():
    while True:
        s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
        try:
            for i in (2, 3):
                t = socket.socket(); t.bind((f"127.0.0.{i}", p)); t.close()
            return p
        except OSError:
            continue
a = free(); b = free()
while b == a: b = free()
print(a, b)
PY
) || return 1
    local p=${ports% *} c=${ports#* }
    CLUSTER_PIDS=()
    for i in 1 2 3; do
        "$TIDELOG_BIN" serve --data-dir "$CLUSTER_DATA/$i" --shards 1 \
            --set node.id=$i --set process.roles=broker,controller \
            --set cluster.id=MkU3OEVBNTcwNTJENDM2Qk \
            --set "controller.quorum.voters=1@127.0.0.1:$c,2@127.0.0.2:$c,3@127.0.0.3:$c" \
            --set "listeners=PLAINTEXT://127.0.0.$i:$p,CONTROLLER://127.0.0.$i:$c" \
            --set controller.listener.names=CONTROLLER \
            >"$CLUSTER_DATA/$i.out" 2>"$PEERS_LOGS/peers-$name-node$i.log" &
        CLUSTER_PIDS+=($!)
    done
    for i in 1 2 3; do
        local line="" n
        for n in $(seq 300); do
            line=$(head -1 "$CLUSTER_DATA/$i.out" 2>/dev/null)
            [[ $line == "listening on "* ]] && break
            sleep 0.1
        done
        if [[ $line != "listening on "* ]]; then
            echo "tidelog node $i did not start"; tail -20 "$PEERS_LOGS/peers-$name-node$i.log"
            stop_cluster
            return 1
        fi
    done
    BROKER_ADDR="127.0.0.1:$p,127.0.0.2:$p,127.0.0.3:$p"
    echo "tidelog cluster ${CLUSTER_PIDS[*]} listening on $BROKER_ADDR (logs: $PEERS_LOGS/peers-$name-node*.log)"
}

# SIGTERM every node and wait; a node that exited early or uncleanly is a failure.
stop_cluster() {
    local rc=0 pid
    for pid in "${CLUSTER_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; else echo "tidelog node $pid exited during the suite"; rc=1; fi
    done
    for pid in "${CLUSTER_PIDS[@]}"; do
        wait "$pid" || rc=1
    done
    rm -rf "$CLUSTER_DATA"
    CLUSTER_PIDS=()
    return $rc
}
