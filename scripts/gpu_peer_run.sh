#!/usr/bin/env bash
# The GPU side of issue 10, on a lent NVIDIA machine (the `device` tool of this workplace): makes the carried
# Vulkan loader usable (.gl/*.deb, see the device tool's README), checks that wgpu sees the NVIDIA adapter, then
# runs `scorelens bench` and its PyTorch peers on that same GPU and leaves the logs in $OUT (or ./gpu-run).
#
#   here:   cargo build --release; echo /.gl/ >> .git/info/exclude; (fetch the loader .debs into .gl as the README says)
#   device: run(command="bash scripts/gpu_peer_run.sh", carry=[".gl", "target/release/scorelens"])
#   ONLY="unet jacobian,unet top32" bash scripts/gpu_peer_run.sh     # a subset (passed to bench --only)
#
# Written without a GPU to try it on (none was lent to the sessions that wrote it): check its first lines' output.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-run}"
mkdir -p "$out"
if compgen -G ".gl/*.deb" >/dev/null; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
bin="${SCORELENS:-target/release/scorelens}"
if ! "$bin" info >"$out/info.txt" 2>&1 || ! grep -qi nvidia "$out/info.txt"; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    "$bin" info >"$out/info.txt" 2>&1
fi
cat "$out/info.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv | tee "$out/nvidia-smi.csv" || true
args=(--device cuda --scorelens "$bin")
if [ -n "${ONLY:-}" ]; then args+=(--only "$ONLY"); fi
PYTHONUNBUFFERED=1 python3 benches/peers/torch_peer.py "${args[@]}" 2>&1 | tee "$out/peer.log"
