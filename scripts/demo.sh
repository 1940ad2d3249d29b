#!/usr/bin/env bash
# The main job on its built-in default: installs what is missing, builds, and runs `scorelens demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --release --locked -- demo -o "${1:-scorelens-demo}"
