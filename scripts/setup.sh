#!/usr/bin/env bash
# Installs what scorelens needs on a fresh Debian 12 machine that has Rust: a Vulkan loader and, when no Vulkan
# driver is present (no GPU), Mesa's software driver lavapipe; for the tests, Slurm (slurmctld, slurmd, its
# clients) and Debian's python3-torch. Safe to run again: it installs only what is missing.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        echo "setup: need root (or sudo) to run: $*" >&2; exit 1; fi
}

# grep without -q: under pipefail, -q's early exit would kill ldconfig with SIGPIPE and fail the test.
have_loader() { ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null; }
have_driver() {
    local d
    for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        compgen -G "$d/*.json" >/dev/null && return 0
    done
    [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]
}

packages=()
have_loader || packages+=(libvulkan1)
have_driver || packages+=(mesa-vulkan-drivers)
# The cluster tests (python/tests/test_cluster.py) run a one-node Slurm from Debian's slurm-wlm, with a private
# munged (scripts/slurm_local.sh); the PyTorch tests (test_torch.py) run on Debian's python3 with its python3-torch
# (CPU, with functorch), onnx (the exporter's metadata) and pytest.
command -v slurmctld >/dev/null 2>&1 || packages+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || packages+=(slurmd)
command -v sbatch >/dev/null 2>&1 || packages+=(slurm-client)
command -v munged >/dev/null 2>&1 || packages+=(munge)
if [ -x /usr/bin/python3 ]; then
    /usr/bin/python3 -c 'import torch' 2>/dev/null || packages+=(python3-torch)
    /usr/bin/python3 -c 'import onnx' 2>/dev/null || packages+=(python3-onnx)
    /usr/bin/python3 -c 'import pytest' 2>/dev/null || packages+=(python3-pytest)
else
    packages+=(python3 python3-torch python3-onnx python3-pytest)
fi
if [ ${#packages[@]} -gt 0 ]; then
    echo "setup: installing ${packages[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
fi

# Vulkan loaders complain on stderr when this is unset (headless machines, CI).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/scorelens-runtime-$(id -u)"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
