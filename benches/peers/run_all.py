#!/usr/bin/env python3
"""scorelens beside its peers on the same machine, in one run: writes DIR/peers.md (tables) and DIR/peers.json.

    python3 benches/peers/run_all.py [-o DIR] [--quick] [--skip networks,spectrum-unet,spectrum-mlp]
                                     [--networks scorenet_tutorial,...] [--step-timeout S]

Run from anywhere, with a Python that has onnxruntime and numpy (the pyenv `python3`); PyTorch runs in a second
Python (--torch-python, default Debian's /usr/bin/python3 with torch 1.13 + functorch, numpy and onnx). Build the
binary first: `cargo build --profile ci --bin scorelens` (--scorelens picks another).

1. Networks: every ONNX fixture network (tests/fixtures/onnx21/*, tests/fixtures/torch_onnx/*: Song's tutorial
   ScoreNet, the DDPM U-Net with attention, the DiT with adaLN, the EDM denoiser, the residual LayerNorm/GELU MLP).
   scorelens: `scorelens bench --json --only "graph NAME " --onnx FILE`, one per network (forward b1 and b64, J·V
   with 8 tangents at 4 points, the whole Jacobian of one point by forward and by reverse mode). onnxruntime (CPU provider): forward on
   the same file, batches and inputs (ort_forward.py). PyTorch (torch_networks.py): forward, vmap over the tangents
   of jvp, vmap(jacfwd) and vmap(jacrev), on the module rebuilt from its definition where this repository has one,
   else on the ONNX graph evaluated op by op in PyTorch (onnx_torch.py); each route is checked against the
   fixture's float64 references before it is timed.
2. Spectra (issue 17): the top 32 singular triplets of the score Jacobian at the song-unet fixture's first point
   (D = 784) and at a D = 2048 MLP (defined in torch_spectrum.py, exported to ONNX here). scorelens: `scorelens
   spectrum MODEL --x X --t T --k 32 --vectors --method auto`, then dense and krylov where auto took the other;
   PyTorch (torch_spectrum.py): the Jacobian by vmap(jacfwd|jacrev) + torch.linalg.svd, and + torch.svd_lowrank.
   Accuracy of every route against the float64 SVD of the float64 Jacobian: singular values and both residuals.

Ratios are peer time / scorelens time: above 1, scorelens is faster. Times are medians of repeats after a warm-up
(2 s of repeats, at least 3) except the scorelens spectrum runs, which are one command each and report the
analysis' own seconds (summary.json; the process start and shader compilation are in the wall column). Each step
has a timeout (--step-timeout); a step that fails or times out leaves its error in the tables, never a number.
--quick: batches b1 and b16, no Jacobians above D = 256, the spectrum of a D = 256 MLP (k = 8) instead of the
song-unet point and the D = 2048 MLP: a smoke run of a few minutes.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
NETWORKS = [
    ("scorenet_tutorial", "tests/fixtures/onnx21/scorenet_tutorial/model.onnx", "Song's tutorial ScoreNet, score, 1×28×28"),
    ("unet_attention_epsilon", "tests/fixtures/onnx21/unet_attention_epsilon/model.onnx",
     "DDPM U-Net, ResNet blocks + attention, ε, 1×8×8"),
    ("dit_v", "tests/fixtures/onnx21/dit_v/model.onnx", "DiT with adaLN, v, 1×8×8"),
    ("edm_denoiser", "tests/fixtures/torch_onnx/edm_denoiser/model.onnx", "EDM denoiser fed σ, 1×8×8"),
    ("residual_mlp", "tests/fixtures/torch_onnx/residual_mlp/model.onnx", "residual MLP, LayerNorm + GELU, D = 10"),
]
STEPS = ("networks", "spectrum-unet", "spectrum-mlp")


def log(message):
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_json(command, timeout, env=None):
    """Runs `command`, returns (its stdout parsed as JSON, None) or (None, the error in one line)."""
    log("$ " + " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, f"exit {done.returncode}: {tail[:300]}"
    try:
        return json.loads(done.stdout), None
    except json.JSONDecodeError as e:
        return None, f"output is not JSON ({e})"


def gpu_env():
    env = dict(os.environ)
    if not env.get("XDG_RUNTIME_DIR"):
        path = f"/tmp/xdg-peers-{os.getpid()}"
        os.makedirs(path, mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = path
    return env


def machine(args, adapter):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as f:
            memory = f"{int(f.readline().split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=ROOT).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(), "os": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "memory": memory,
        "load_average_at_start": os.getloadavg(), "adapter": adapter.get("adapter"), "backend": adapter.get("backend"),
        "driver": adapter.get("driver"), "lavapipe_threads": os.environ.get("LP_NUM_THREADS", "default (all CPUs)"),
        "peer_threads": args.threads, "scorelens": os.path.relpath(args.scorelens, ROOT),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""), "quick": args.quick,
    }


def fmt_ms(seconds):
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms < 1000 else f"{seconds:.3g} s" if seconds < 100 else f"{seconds:.0f} s"


def fmt_ratio(peer, ours):
    if peer is None or not ours:
        return "—"
    r = peer / ours
    return f"{r:.3g}×"


def network_rows(ours, ort, torch_result, quick, networks=NETWORKS):
    """One row per (network, item): seconds of scorelens, onnxruntime and PyTorch, with notes."""
    big = "b16" if quick else "b64"
    rows = []
    for stem, path, label in networks:
        o = {k.split(f"graph {stem} ", 1)[1]: v["seconds"] for k, v in ours.items() if k.startswith(f"graph {stem} ")}
        r = next((n for n in ort.get("networks", []) if n["network"] == stem), {"items": {}, "errors": {}})
        t = next((n for n in torch_result.get("networks", []) if n["network"] == stem), {"items": {}, "errors": {}})
        ti = {k: v["seconds"] for k, v in t.get("items", {}).items()}
        for item, title in ((f"forward b1", "forward, 1 row"), (f"forward {big}", f"forward, {big[1:]} rows"),
                            ("jvp k8 b4", "J·V, 8 tangents × 4 rows")):
            rows.append({"network": stem, "label": label, "item": title, "scorelens": o.get(item),
                         "onnxruntime": r["items"].get(item, {}).get("seconds") if item.startswith("forward") else None,
                         "torch": ti.get(item), "notes": t.get("errors", {}).get(item, "")})
        jac = {m: o.get(f"jacobian {m} b1") for m in ("forward", "reverse")}
        jac = {m: s for m, s in jac.items() if s is not None}
        tj = {m: ti.get(f"jacobian {m} b1") for m in ("jacfwd", "jacrev")}
        tj = {m: s for m, s in tj.items() if s is not None}
        ours_best = min(jac, key=jac.get) if jac else None
        torch_best = min(tj, key=tj.get) if tj else None
        notes = [f"scorelens {m} {fmt_ms(s)}" for m, s in jac.items()] + [f"{m} {fmt_ms(s)}" for m, s in tj.items()]
        notes += [f"{m}: {e}" for m, e in t.get("errors", {}).items() if m.startswith("jacobian")]
        if jac or tj or not quick:
            rows.append({"network": stem, "label": label, "item": "whole Jacobian, 1 row (best mode each)",
                         "scorelens": jac.get(ours_best), "onnxruntime": None, "torch": tj.get(torch_best),
                         "notes": "; ".join(notes)})
    return rows


def networks_markdown(rows, torch_result):
    lines = ["| network | item | scorelens | onnxruntime | PyTorch | onnxruntime / scorelens | PyTorch / scorelens | notes |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        lines.append(f"| {row['label']} | {row['item']} | {fmt_ms(row['scorelens'])} | {fmt_ms(row['onnxruntime'])} | "
                     f"{fmt_ms(row['torch'])} | {fmt_ratio(row['onnxruntime'], row['scorelens'])} | "
                     f"{fmt_ratio(row['torch'], row['scorelens'])} | {row['notes']} |")
    lines.append("")
    lines.append("PyTorch routes and their check against the fixture's float64 references (relative error, float32):")
    lines.append("")
    for n in torch_result.get("networks", []):
        check = n.get("check") or {}
        checked = ", ".join(f"{k} {v:.1e}" for k, v in check.items()) or "not checked"
        errors = "; ".join(f"{k}: {v}" for k, v in n.get("errors", {}).items() if not k.startswith(("forward", "jvp", "jacobian")))
        lines.append(f"- {n['network']}: {n.get('route') or 'no route'} ({checked}){' — ' + errors if errors else ''}")
    return "\n".join(lines)


def spectrum_step(name, args, env, out):
    """scorelens spectrum by auto, then dense and krylov where auto took another; PyTorch's routes; accuracy."""
    folder = os.path.join(out, "spectrum", name)
    os.makedirs(folder, exist_ok=True)
    k = 8 if args.quick else 32
    if name == "song-unet":
        import numpy as np

        fixture = os.path.join(ROOT, "tests", "fixtures", "song_unet")
        np.save(os.path.join(folder, "x.npy"), np.load(os.path.join(fixture, "x.npy"))[:1])
        model, x, t = os.path.join(fixture, "model.safetensors"), os.path.join(folder, "x.npy"), \
            repr(float(np.load(os.path.join(fixture, "t.npy"))[0]))
        torch_args = ["song-unet"]
    else:
        size = ["--dim", "256", "--width", "128"] if args.quick else []
        exported, error = run_json([args.torch_python, os.path.join(HERE, "torch_spectrum.py"), "wide-mlp", "--export",
                                    os.path.join(folder, "model")] + size, args.step_timeout, env)
        if error:
            return {"errors": {"export": error}}
        model, x, t = exported["model"], exported["x"], "0.5"
        torch_args = ["wide-mlp", "--model", model]
    runs, errors = {}, {}
    for method in ("auto", "dense", "krylov"):
        if method != "auto" and runs.get("auto", {}).get("method") == method:
            continue  # auto's own run is this method's run
        target = os.path.join(folder, f"scorelens_{method}")
        command = [args.scorelens, "spectrum", model, "--x", x, "--t", t, "--k", str(k), "--vectors", "--method",
                   method, "-o", target]
        log("$ " + " ".join(command))
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.step_timeout, env=env, cwd=ROOT)
        except subprocess.TimeoutExpired:
            errors[method] = f"timed out after {args.step_timeout} s"
            continue
        wall = time.perf_counter() - started
        if done.returncode != 0:
            errors[method] = f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:300]}"
            continue
        with open(os.path.join(target, "summary.json")) as f:
            summary = json.load(f)
        runs[method] = {"dir": target, "wall": wall, "method": summary.get("method")}
    command = [args.torch_python, os.path.join(HERE, "torch_spectrum.py")] + torch_args + ["--k", str(k), "--threads",
                                                                                          str(args.threads)]
    if args.quick:
        command.append("--quick")
    for method, run in runs.items():
        label = f"scorelens {method}" + (f" (took {run['method']})" if method == "auto" else "")
        command += ["--scorelens-run", f"{label}={run['dir']}"]
    result, error = run_json(command, args.step_timeout, env)
    if error:
        return {"errors": {**errors, "torch": error}, "scorelens_runs": runs}
    result["errors"].update(errors)
    for method, run in runs.items():
        for key, route in result["routes"].items():
            if key.startswith(f"scorelens {method}"):
                route["wall"] = run["wall"]
    return result


def spectrum_markdown(result):
    if "routes" not in result:
        return "Not measured: " + "; ".join(f"{k}: {v}" for k, v in result.get("errors", {}).items())
    routes = result["routes"]
    accurate = {k: v for k, v in routes.items() if k.startswith("torch") and
                max(v["max_residual"], v["max_transpose_residual"]) <= 1e-4}
    reference = min(accurate, key=lambda k: accurate[k]["seconds"]) if accurate else None
    lines = [f"{result.get('network')}, D = {result.get('dim')}, t = {result.get('t'):.4g}, top {result['k']}; "
             f"gap ratio s{result['k'] + 1}/s{result['k']} = {result['gap_ratio']:.4f}. PyTorch's Jacobian: "
             + ", ".join(f"{m} {fmt_ms(s)}" for m, s in result.get("jacobian", {}).get("seconds", {}).items())
             + f"; ratio column: {reference or 'no accurate PyTorch route'} / route.", "",
             "| route | products | seconds | wall (process) | PyTorch / route | max \\|sᵢ − sᵢ(f64)\\|/s₁ | "
             "max ‖J v − s u‖/s₁ | max ‖Jᵀu − s v‖/s₁ | converged |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in routes.items():
        ratio = fmt_ratio(routes[reference]["seconds"], r["seconds"]) if reference else "—"
        wall = fmt_ms(r.get("wall")) if r.get("wall") else "—"
        converged = {True: "yes", False: "**no**"}.get(r.get("converged"), "—")
        lines.append(f"| {name} | {r.get('products', '—')} | {fmt_ms(r['seconds'])} | {wall} | {ratio} | "
                     f"{r['max_value_error']:.1e} | {r['max_residual']:.1e} | {r['max_transpose_residual']:.1e} | "
                     f"{converged} |")
    auto = next((r for k, r in routes.items() if k.startswith("scorelens auto")), None)
    if auto:
        lines += ["", f"auto's reason: {auto.get('method_reason')}"]
    if result.get("errors"):
        lines += ["", "Errors: " + "; ".join(f"{k}: {v}" for k, v in result["errors"].items())]
    return "\n".join(lines)


def write_report(report, args, adapter, spectra, out, started, final):
    """DIR/peers.json and DIR/peers.md from the steps done so far (after every step, so a run cut short leaves its
    finished steps behind); the last call prints the tables."""
    report["machine"] = machine(args, adapter)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["complete"] = final
    report["seconds"] = time.perf_counter() - started
    versions = report["steps"].get("networks", {})
    m = report["machine"]
    torch_info = versions.get("torch") or next(
        ({"torch": r["torch"], "threads": r["threads"]} for r in report["steps"].values() if "torch" in r and
         isinstance(r["torch"], str)), {})
    ort_info = (versions.get("onnxruntime") or {})
    md = [f"Run {m['date']} on {m['host']}: {m['cpu']}, {m['cpus']} CPUs, {m['memory']}; load average "
          f"{m['load_average_at_start'][0]:.1f} at the start, {m['load_average_at_end'][0]:.1f} at the end; "
          f"{report['seconds']:.0f} s in all{' (--quick)' if args.quick else ''}"
          f"{'' if final else ' so far (unfinished: the steps below are those done)'}.",
          f"scorelens {m['commit']} ({m['scorelens']}) on {m['adapter']} ({m['backend']}, driver {m['driver']}; "
          f"lavapipe threads: {m['lavapipe_threads']}). PyTorch {torch_info.get('torch', '?')} "
          f"({torch_info.get('threads', '?')} threads), onnxruntime {ort_info.get('onnxruntime', '?')} "
          f"({ort_info.get('threads', '?')} threads), both on the CPU. Ratios: peer time / scorelens time "
          "(above 1: scorelens is faster).", ""]
    if "networks" in report["steps"]:
        step = report["steps"]["networks"]
        md += ["### Fixture networks: forward, J·V, whole Jacobian", "", networks_markdown(step["rows"], torch_info)]
        if step["errors"]:
            md += ["", "Errors: " + "; ".join(f"{k}: {v}" for k, v in step["errors"].items())]
        md.append("")
    for step, name in spectra:
        if step in report["steps"]:
            md += [f"### Spectrum: {name}", "", spectrum_markdown(report["steps"][step]), ""]
    text = "\n".join(md)
    with open(os.path.join(out, "peers.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out, "peers.md"), "w") as f:
        f.write(text)
    if final:
        print(text)
    log(f"wrote {os.path.join(out, 'peers.md')} and peers.json ({report['seconds']:.0f} s{'' if final else ', so far'})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", default=os.path.join(ROOT, "target", "peers"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", default="", help=f"comma-separated steps to leave out: {', '.join(STEPS)}")
    parser.add_argument("--scorelens", default=os.path.join(ROOT, "target", "ci", "scorelens"))
    parser.add_argument("--torch-python", default="/usr/bin/python3")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch and onnxruntime threads")
    parser.add_argument("--step-timeout", type=int, default=1800, help="seconds one step (one command) may take")
    parser.add_argument("--networks", default="", help="comma-separated fixture networks to time (default: all of "
                        + ", ".join(n for n, _, _ in NETWORKS) + ")")
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(STEPS):
        parser.error(f"--skip: unknown steps {sorted(skip - set(STEPS))}; expected some of {', '.join(STEPS)}")
    chosen = [n for n in args.networks.split(",") if n]
    unknown = set(chosen) - {n for n, _, _ in NETWORKS}
    if unknown:
        parser.error(f"--networks: unknown {sorted(unknown)}; expected some of {', '.join(n for n, _, _ in NETWORKS)}")
    networks = [n for n in NETWORKS if not chosen or n[0] in chosen]
    args.scorelens = os.path.abspath(args.scorelens)
    if not os.access(args.scorelens, os.X_OK):
        parser.error(f"--scorelens: {args.scorelens} is not an executable; build it with "
                     "`cargo build --profile ci --bin scorelens`")
    if not shutil.which(args.torch_python):
        parser.error(f"--torch-python: {args.torch_python} not found")
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    env = gpu_env()
    started = time.perf_counter()
    report = {"steps": {}}
    adapter = {}

    if "networks" not in skip:
        files = [os.path.join(ROOT, path) for _, path, _ in networks]
        # One `scorelens bench` per network, so a network that fails or runs out of time loses only its own items.
        ours, ours_errors = {"items": []}, []
        for (stem, _, _), f in zip(networks, files):
            command = [args.scorelens, "bench", "--json", "--only", f"graph {stem} "] + (["--quick"] if args.quick else [])
            one, error = run_json(command + ["--onnx", f], args.step_timeout, env)
            if error:
                ours_errors.append(f"{stem}: {error}")
                continue
            adapter = {k: v for k, v in one.items() if k != "items"}
            ours["items"] += one["items"]
        ours.update(adapter)
        ours_error = "; ".join(ours_errors) or None
        ort, ort_error = run_json([sys.executable, os.path.join(HERE, "ort_forward.py"), "--threads", str(args.threads)]
                                  + (["--quick"] if args.quick else []) + files, args.step_timeout, env)
        torch_result, torch_error = run_json([args.torch_python, os.path.join(HERE, "torch_networks.py"), "--threads",
                                              str(args.threads)] + (["--quick"] if args.quick else []) + files,
                                             args.step_timeout, env)
        ours_items = {i["name"]: i for i in (ours or {}).get("items", [])}
        rows = network_rows(ours_items, ort or {}, torch_result or {}, args.quick, networks)
        report["steps"]["networks"] = {
            "rows": rows, "scorelens": ours, "onnxruntime": ort, "torch": torch_result,
            "errors": {k: v for k, v in (("scorelens", ours_error), ("onnxruntime", ort_error),
                                          ("torch", torch_error)) if v}}
        write_report(report, args, adapter, [], out, started, final=False)
    spectra = [] if args.quick else [("spectrum-unet", "song-unet")]
    spectra.append(("spectrum-mlp", "wide-mlp"))
    for step, name in spectra:
        if step not in skip:
            report["steps"][step] = spectrum_step(name, args, env, out)
            write_report(report, args, adapter, spectra, out, started, final=False)
    if not adapter:
        info, _ = run_json([args.scorelens, "bench", "--json", "--only", "none-such-item"], 120, env)
        adapter = {k: v for k, v in (info or {}).items() if k != "items"}

    write_report(report, args, adapter, spectra, out, started, final=True)



if __name__ == "__main__":
    main()
