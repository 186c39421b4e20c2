#!/usr/bin/env bash
# The one test command (see README; .ci/run execs it). On a fresh Debian machine with Rust and
# Python 3 it installs what the tests need (kcat, Python virtualenvs under target/py-venvs/),
# then runs: cargo fmt --check, cargo clippy -D warnings, cargo test --all-targets, the
# Python suites (tests/python) once with kafka-python 2.0.2 and once with kafka-python 3.x, and
# the peers' own suites (scripts/peers.sh: franz-go, the Java client, librdkafka's tests/).
#
# Every step runs even when an earlier one failed, so one run shows everything that is wrong;
# the script ends with one summary line and exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"
PYTHON=${PYTHON:-python3}
SUMMARY=()
FAILED=0

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        as_root apt-get update -qq && APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Records a step's outcome for the summary.
record() { # name status detail
    if [ "$2" = 0 ]; then SUMMARY+=("$1: ok${3:+ ($3)}"); else SUMMARY+=("$1: FAILED${3:+ ($3)}"); FAILED=1; fi
}

install_system_packages() {
    local rc=0
    command -v kcat >/dev/null || apt_install kcat || rc=1
    # C toolchain for the -sys crates (librdkafka, zstd, lz4) when the image lacks it.
    { command -v cc && command -v make; } >/dev/null || apt_install build-essential || rc=1
    # Debian's own python3 ships venv separately.
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv || rc=1
    # librdkafka's own test suite (scripts/peers/librdkafka.sh) builds librdkafka from source.
    dpkg -s libssl-dev zlib1g-dev libzstd-dev >/dev/null 2>&1 || apt_install libssl-dev zlib1g-dev libzstd-dev || rc=1
    return $rc
}

# Creates target/py-venvs/<name> from tests/python/requirements-<name>.txt; a copy of the
# requirements file inside the venv makes a second run a no-op until the file changes.
make_venv() { # name
    local venv="$ROOT/target/py-venvs/$1" req="$ROOT/tests/python/requirements-$1.txt"
    if cmp -s "$req" "$venv/requirements.txt" 2>/dev/null; then return 0; fi
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv" &&
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" &&
        cp "$req" "$venv/requirements.txt"
}

# Sums `test result:` lines of cargo test output into "N passed, M failed, K ignored".
cargo_totals() {
    awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d ignored", p, f, i }' "$1"
}

run_pytest() { # venv-name label [env...]
    local venv="$ROOT/target/py-venvs/$1" label=$2 log="$LOGS/pytest-$1.log"
    shift 2
    echo "==> pytest with $label"
    env TIDELOG_BIN="$ROOT/target/debug/tidelog" "$@" "$venv/bin/python" -m pytest "$ROOT/tests/python" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]} last
    last=$(grep -E '^=+ .* in [0-9.]+s' "$log" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//')
    # Exit code 5 is "no tests collected": a suite that silently tests nothing must not pass.
    if [ "$rc" = 5 ]; then last="no tests collected"; fi
    record "pytest $label" "$rc" "${last:-exit $rc}"
}

echo "==> installing test prerequisites"
install_system_packages
record "setup: packages" $?
for v in kafka-python-2 kafka-python-3; do
    make_venv "$v"
    record "setup: venv $v" $?
done

echo "==> cargo fmt --check"
cargo fmt --all -- --check
record "cargo fmt" $?

echo "==> cargo clippy"
cargo clippy --all-targets -- -D warnings
record "cargo clippy" $?

echo "==> cargo test"
cargo test --all-targets 2>&1 | tee "$LOGS/cargo-test.log"
record "cargo test" "${PIPESTATUS[0]}" "$(cargo_totals "$LOGS/cargo-test.log")"

KP2=$(cat "$ROOT/target/py-venvs/kafka-python-2/requirements.txt" 2>/dev/null | grep -o 'kafka-python==[^ ]*' || echo kafka-python-2)
KP3=$(cat "$ROOT/target/py-venvs/kafka-python-3/requirements.txt" 2>/dev/null | grep -o 'kafka-python==[^ ]*' || echo kafka-python-3)
run_pytest kafka-python-2 "$KP2"
run_pytest kafka-python-3 "$KP3" TIDELOG_KCAT=1

# The Kafka ecosystem's own suites against the broker (tests/PEERS.md): franz-go's kgo suite,
# the Java client's flows, a bounded subset of librdkafka's tests/, kafka-javascript. Each
# installs what it needs or prints a loud SKIP line.
echo "==> peers' suites"
TIDELOG_BIN="$ROOT/target/debug/tidelog" scripts/peers.sh 2>&1 | tee "$LOGS/peers.log"
record "peers" "${PIPESTATUS[0]}" "$(grep -E '^(peers |SKIP: )' "$LOGS/peers.log" | paste -sd';')"

# libFuzzer smoke run of each fuzz target (fuzz/README.md): seconds each, on its seed corpus.
echo "==> fuzz smoke"
scripts/fuzz-smoke.sh 2>&1 | tee "$LOGS/fuzz-smoke.log"
record "fuzz smoke" "${PIPESTATUS[0]}" "$(tail -1 "$LOGS/fuzz-smoke.log")"

echo
for line in "${SUMMARY[@]}"; do echo "  $line"; done
if [ "$FAILED" = 0 ]; then
    echo "SUMMARY: all passed — $(IFS=';'; echo "${SUMMARY[*]}" | sed 's/;/; /g')"
else
    echo "SUMMARY: FAILED — $(IFS=';'; echo "${SUMMARY[*]}" | sed 's/;/; /g')"
fi
exit "$FAILED"
