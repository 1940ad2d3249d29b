#!/usr/bin/env bash
# The test command: installs what is missing, then builds and runs every test in the `ci` profile (optimised,
# with debug assertions and overflow checks), and checks that the benchmarks still compile.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --profile ci --locked "$@"
cargo build --profile ci --locked --benches
