#!/usr/bin/env bash
# The test command: installs what is missing, then builds and runs every test in the `ci` profile (optimised,
# with debug assertions and overflow checks), checks that the benchmarks still compile, runs the examples on small
# sizes, and prints one closing line with the totals of every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --profile ci --locked "$@" 2>&1 | tee "$log"
cargo build --profile ci --locked --benches
# The library alone (no `cli` feature: no clap, indicatif, env_logger or plotters) and the examples on it.
cargo check --profile ci --locked --no-default-features --lib --examples
# The examples run too, on small sizes.
cargo build --profile ci --locked --examples
target/ci/examples/score_batch
target/ci/examples/spectra_batch tests/fixtures/mlp_silu/model.safetensors 3
target/ci/examples/user_field
target/ci/examples/lorenz_lyapunov 2000 4
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
