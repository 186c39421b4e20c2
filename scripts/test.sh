#!/usr/bin/env bash
# The one test command (see README). Installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
