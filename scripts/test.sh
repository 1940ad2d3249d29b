#!/usr/bin/env bash
# The test command: installs what is missing, then builds and runs every test in the `ci` profile (optimised,
# with debug assertions and overflow checks), checks that the benchmarks still compile, runs the examples on small
# sizes, builds and tests the Python package (python/: with a one-node Slurm for the cluster tests, and on Debian's
# python3 with PyTorch for from_torch), and prints one closing line with the totals of every test binary and of
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
log="$(mktemp)"
pytest_log="$(mktemp)"
wheels="$(mktemp -d)"
trap 'rm -rf "$log" "$pytest_log" "$wheels"' EXIT
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
# The Python package: its extension built once in the `ci` profile (reusing the dependencies the tests compiled;
# about a minute when only the binding changed, seven from nothing on two cores), installed from the wheel, and its
# tests run against the CLI binary built above. pytest's failure fails the script after the closing line.
python3 -c 'import maturin, numpy, pytest, submitit' 2>/dev/null ||
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet maturin numpy pytest submitit
python3 -m maturin build --profile ci --locked --quiet -m python/Cargo.toml -o "$wheels"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --force-reinstall --no-deps "$wheels"/scorelens-*.whl
pytest_status=0
# SCORELENS_SLURM=required: the cluster tests start the one-node Slurm (scripts/slurm_local.sh) and fail, never
# skip, when it does not come up; they stop it again if they started it.
SCORELENS_SLURM=required SCORELENS_BIN="$PWD/target/ci/scorelens" \
    python3 -m pytest python/tests -q -p no:cacheprovider 2>&1 | tee "$pytest_log" || pytest_status=$?
# The PyTorch tests on Debian's python3 (python3-torch, from setup.sh): the same abi3 wheel, unpacked onto its
# path rather than installed into the system's Python.
torch_log="$(mktemp)"
system_site="$(mktemp -d)"
trap 'rm -rf "$log" "$pytest_log" "$wheels" "$torch_log" "$system_site"' EXIT
python3 -m zipfile -e "$(ls "$wheels"/scorelens-*.whl)" "$system_site"
SCORELENS_REQUIRE_TORCH=1 PYTHONPATH="$system_site" SCORELENS_BIN="$PWD/target/ci/scorelens" \
    /usr/bin/python3 -m pytest python/tests/test_torch.py -q -p no:cacheprovider 2>&1 | tee "$torch_log" ||
    pytest_status=$?
# cargo's `test result: ok. N passed; M failed; ...` lines and pytest's closing `N failed, M passed in S s` lines
# (errors, tests that could not run, count as failed).
awk '/^test result:/ || (FILENAME != cargo && /^=* *[0-9]+ [a-z]+.* in [0-9.]+s/) {
         for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|error)/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' cargo="$log" "$log" "$pytest_log" "$torch_log"
exit "$pytest_status"
