"""The table logic of benches/peers/run_all.py (the peers benchmark), on made-up timings: which numbers become which
ratio, which route is PyTorch's reference, and that a failed measurement shows its error, never a number. Speed
itself is never checked in tests; the script runs by hand (docs/BENCHMARKS.md, "Peers on the same machine")."""
import importlib.util
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benches", "peers", "run_all.py")
spec = importlib.util.spec_from_file_location("peers_run_all", SCRIPT)
run_all = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_all)


def ours(stem, **seconds):
    return {f"graph {stem} {k.replace('_', ' ')}": {"seconds": v} for k, v in seconds.items()}


def test_network_rows_ratios_and_best_jacobian_modes():
    scorelens = ours("dit_v", forward_b1=0.010, forward_b64=0.040, jvp_k8_b4=0.020)
    scorelens.update({"graph dit_v jacobian forward b1": {"seconds": 0.5},
                      "graph dit_v jacobian reverse b1": {"seconds": 0.25}})
    ort = {"networks": [{"network": "dit_v", "items": {"forward b1": {"seconds": 0.001}}, "errors": {}}]}
    torch = {"networks": [{"network": "dit_v", "errors": {}, "items": {
        "forward b1": {"seconds": 0.030}, "jvp k8 b4": {"seconds": 0.010},
        "jacobian jacfwd b1": {"seconds": 0.75}, "jacobian jacrev b1": {"seconds": 1.0}}}]}
    rows = [r for r in run_all.network_rows(scorelens, ort, torch, quick=False) if r["network"] == "dit_v"]
    assert [r["item"] for r in rows] == ["forward, 1 row", "forward, 64 rows", "J·V, 8 tangents × 4 rows",
                                         "whole Jacobian, 1 row (best mode each)"]
    assert rows[0]["onnxruntime"] == 0.001 and rows[0]["torch"] == 0.030
    assert rows[1]["onnxruntime"] is None and rows[1]["torch"] is None  # not measured: no number invented
    jac = rows[3]
    assert jac["scorelens"] == 0.25 and jac["torch"] == 0.75  # the faster mode of each side
    table = run_all.networks_markdown(rows, torch)
    assert "| 3× |" in table  # 0.030 / 0.010 and 0.75 / 0.25
    assert "| 0.1× |" in table  # onnxruntime 0.001 / 0.010


def test_failed_torch_transform_shows_its_error():
    torch = {"networks": [{"network": "edm_denoiser", "items": {}, "route": "module",
                           "errors": {"jvp k8 b4": "RuntimeError: no forward-mode rule"}}]}
    rows = [r for r in run_all.network_rows(ours("edm_denoiser", jvp_k8_b4=0.1), {}, torch, quick=True)
            if r["network"] == "edm_denoiser"]
    jvp = next(r for r in rows if r["item"].startswith("J·V"))
    assert jvp["torch"] is None and "no forward-mode rule" in jvp["notes"]
    line = next(l for l in run_all.networks_markdown(rows, torch).splitlines() if "J·V" in l)
    assert "| — |" in line and "no forward-mode rule" in line
    # --quick with no Jacobian measured on either side: no Jacobian row at all.
    assert not any(r["item"].startswith("whole Jacobian") for r in rows)


def test_spectrum_reference_is_the_fastest_accurate_torch_route():
    def route(seconds, residual, **extra):
        return {"seconds": seconds, "products": 784, "max_value_error": 1e-7, "max_residual": residual,
                "max_transpose_residual": residual, **extra}

    result = {"network": "net", "dim": 784, "t": 0.5, "k": 32, "gap_ratio": 0.99, "errors": {},
              "jacobian": {"seconds": {"jacrev": 1.0}},
              "routes": {"torch jacrev + linalg.svd": route(2.0, 1e-6),
                         "torch jacrev + svd_lowrank(q=40, niter=4)": route(1.0, 1e-2),  # fast but inaccurate
                         "scorelens krylov": route(4.0, 1e-6, converged=False, wall=5.0)}}
    table = run_all.spectrum_markdown(result)
    assert "ratio column: torch jacrev + linalg.svd / route" in table
    krylov = next(l for l in table.splitlines() if l.startswith("| scorelens krylov"))
    assert "| 0.5× |" in krylov and "**no**" in krylov
    assert "Not measured" in run_all.spectrum_markdown({"errors": {"torch": "timed out after 900 s"}})


def test_unknown_step_is_refused():
    done = subprocess.run([sys.executable, SCRIPT, "--skip", "networks,bogus"], capture_output=True, text=True)
    assert done.returncode == 2 and "bogus" in done.stderr
