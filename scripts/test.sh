#!/usr/bin/env bash
# The test command: installs what is missing, then builds and runs every test in the `ci` profile (optimised,
# with debug assertions and overflow checks), checks that the benchmarks still compile, and prints one closing
# line with the totals of every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --profile ci --locked "$@" 2>&1 | tee "$log"
cargo build --profile ci --locked --benches
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
