#!/usr/bin/env bash
# Bounded smoke run of the fuzz targets in fuzz/ (see fuzz/README.md): builds them with
# `cargo +nightly fuzz` (installing cargo-fuzz when missing) and runs each for N seconds on a
# scratch copy of its seed corpus, one process (one core) at a time. Exits non-zero on any
# crash, leak, timeout or out-of-memory report, naming the input under fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz-smoke.sh [seconds-per-target]   (default: $FUZZ_SECONDS or 20)
#        FUZZ_TARGETS="request_decoder" scripts/fuzz-smoke.sh 5
#
# Without a nightly toolchain (libFuzzer and the sanitizers need it) it prints one SKIP line
# and exits 0, so the test command still runs everywhere else.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECS=${1:-${FUZZ_SECONDS:-20}}
TARGETS=${FUZZ_TARGETS:-"request_decoder batch_validator segment_recovery"}
# Builds use every core unless CARGO_BUILD_JOBS says otherwise; the runs use one.

skip() {
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "SKIP fuzz smoke: $*" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "fuzz smoke: SKIPPED ($*)"
    exit 0
}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    skip "no nightly toolchain (rustup toolchain install nightly)"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked >/dev/null 2>&1 || cargo install cargo-fuzz ||
        skip "cargo-fuzz is missing and could not be installed"
fi

echo "==> cargo +nightly fuzz build"
(cd fuzz && cargo +nightly fuzz build) || { echo "fuzz smoke: FAILED (build)"; exit 1; }

# segment_recovery writes its partition directory under here (TIDELOG_FUZZ_SCRATCH).
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
FAILED=()
SUMMARY=()
for t in $TARGETS; do
    work="$SCRATCH/corpus-$t"
    mkdir -p "$work" "$SCRATCH/recovery-$t"
    echo "==> fuzz $t for ${SECS}s"
    # The scratch corpus comes first: libFuzzer adds what it finds there, never to the seeds.
    (cd fuzz && TIDELOG_FUZZ_SCRATCH="$SCRATCH/recovery-$t" cargo +nightly fuzz run "$t" \
        "$work" "corpus/$t" -- -max_total_time="$SECS" -timeout=10 \
        -print_final_stats=1) >"$SCRATCH/$t.log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$SCRATCH/$t.log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$SCRATCH/$t.log" | tail -1 | grep -o '[0-9]*$')
    if [ "$rc" = 0 ]; then
        SUMMARY+=("$t ok (${execs:-?} execs, cov ${cov:-?})")
    else
        tail -40 "$SCRATCH/$t.log"
        SUMMARY+=("$t FAILED (exit $rc; input in fuzz/artifacts/$t/)")
        FAILED+=("$t")
    fi
done
line=$(IFS=';'; echo "${SUMMARY[*]}" | sed 's/;/; /g')
if [ "${#FAILED[@]}" = 0 ]; then
    echo "fuzz smoke: ok — $line"
else
    echo "fuzz smoke: FAILED — $line"
    exit 1
fi
