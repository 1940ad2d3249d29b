"""train.py --model digits_unet: train the U-Net of unet.py on 1500 of the 8x8 digits, export it to ONNX, check the
file with the scorelens binary against float64 PyTorch (scores, J·v, full Jacobians), sample it, measure the
samples against held-out images and write the card, the sample grids and the results.

Files written:
    assets/data/digits_unet_heldout_idx.npy     the 297 held-out image indices into assets/data/digits.npy (int64)
    assets/models/digits_unet.onnx              the EMA weights, TorchScript exporter, with scorelens metadata
    assets/models/digits_unet.md                the card
    assets/models/digits_unet_samples.png       64 Euler-Maruyama samples (PyTorch), then 16 samples over their
                                                nearest training images
    assets/models/digits_unet_scorelens_samples.png   64 samples drawn by `scorelens sample` on the ONNX file
    tools/train/results/digits_unet.json
    tools/train/reference/digits_unet_{x,t,score}.npy, _{x,score}_t0.5.npy, _jac_{x,t,v,jvp,jacobian}.npy
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
import torch

import train as T
from unet import DigitsUNet, ScoreOf, marginal_std, SIGMA

sys.path.insert(0, os.path.join(T.ROOT, "tools"))
import export_onnx  # noqa: E402  (tools/export_onnx.py)

N_SAMPLES = 300  # about as many as the held-out images (297); the U-Net sampler is the slow part of the run
NEAR_COPY = 0.5  # a sample closer than this (Euclidean, pixels in [0, 1], D = 64) to a training image is a near-copy
ENGINE_SAMPLES = 0  # samples drawn by `scorelens sample` on the ONNX file (train.py --engine-samples N); 0: skipped
ENGINE_STEPS = 500
ENGINE_TIMEOUT_S = 3600
# Measured while the file was made (2 shared cores, load about 15, lavapipe): 20 Euler-Maruyama steps of 64
# samples of this network took 521 s in `scorelens sample`, so 500 steps were out of reach there.


# ------------------------------------------------------------------------------------------------- PNG output
def write_png_gray(path, img):
    """An 8-bit greyscale PNG from a uint8 array [H, W] (NumPy and zlib; no imaging library needed)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(kind, data):
        return (len(data).to_bytes(4, "big") + kind + data
                + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big"))

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
                + chunk(b"IEND", b""))


def tile(images, cols, scale=4, gap=4):
    """Images [N, 64] in [0, 1] as a uint8 grid, ink dark on white (pixel 0 -> 255, 1 -> 0), each pixel scale x
    scale, grey gaps between the images."""
    n = len(images)
    rows = (n + cols - 1) // cols
    cell = 8 * scale
    out = np.full((rows * (cell + gap) + gap, cols * (cell + gap) + gap), 190, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        im = np.clip(np.asarray(images[k], np.float64).reshape(8, 8), 0, 1)
        im = np.kron(255 * (1 - im), np.ones((scale, scale)))
        y, x = gap + r * (cell + gap), gap + c * (cell + gap)
        out[y:y + cell, x:x + cell] = np.round(im).astype(np.uint8)
    return out


def stack_blocks(blocks, sep=12):
    width = max(b.shape[1] for b in blocks)
    parts = []
    for i, b in enumerate(blocks):
        pad = np.full((b.shape[0], width), 255, np.uint8)
        pad[:, :b.shape[1]] = b
        parts.append(pad)
        if i < len(blocks) - 1:
            parts.append(np.full((sep, width), 255, np.uint8))
    return np.vstack(parts)


# ------------------------------------------------------------------------------------------------------ checks
def rel_norm(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def rel_max(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def run_binary(binary, args, timeout=600):
    done = subprocess.run([binary] + args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"scorelens {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done


def engine_checks(binary, path, ref):
    """scorelens (float32, GPU adapter) against the float64 PyTorch references: score, J·v, Jacobian (forward and
    reverse mode). Relative errors ‖got − want‖ / ‖want‖ (and max |Δ| / max |want|)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        def npy(name, a):
            p = os.path.join(tmp, name)
            np.save(p, a)
            return p

        o = os.path.join(tmp, "out.npy")
        run_binary(binary, ["score", path, "--x", npy("x.npy", ref["x"]), "--t", npy("t.npy", ref["t"]), "-o", o])
        got = np.load(o).reshape(ref["score"].shape)
        out["score_random_t"] = {"rel_norm": rel_norm(got, ref["score"]), "rel_max": rel_max(got, ref["score"])}
        run_binary(binary, ["score", path, "--x", npy("xh.npy", ref["x_half"]), "--t", "0.5", "-o", o])
        got = np.load(o).reshape(ref["score_half"].shape)
        out["score_t0.5"] = {"rel_norm": rel_norm(got, ref["score_half"]), "rel_max": rel_max(got, ref["score_half"])}
        xj, tj = npy("xj.npy", ref["jac_x"]), npy("tj.npy", ref["jac_t"])
        run_binary(binary, ["jvp", path, "--x", xj, "--t", tj, "--v", npy("v.npy", ref["jac_v"]), "-o", o])
        got = np.load(o).reshape(ref["jvp"].shape)
        out["jvp"] = {"rel_norm": rel_norm(got, ref["jvp"]), "rel_max": rel_max(got, ref["jvp"])}
        for method in ("forward", "reverse"):
            run_binary(binary, ["jacobian", path, "--x", xj, "--t", tj, "--method", method, "-o", o])
            got = np.load(o).reshape(ref["jacobian"].shape)
            out[f"jacobian_{method}"] = {"rel_norm": rel_norm(got, ref["jacobian"]),
                                         "rel_max": rel_max(got, ref["jacobian"])}
    return out


def references(ema, x_train, path_prefix):
    """Inputs and float64 PyTorch outputs of the exported network: scores at 64 noised training images (random t
    in [0.001, 1]) and at 64 clean ones (t = 0.5); J·v and the full 64 x 64 Jacobians at 3 points."""
    net64 = ScoreOf(DigitsUNet(*T.CONFIGS["digits_unet"]["channels"], T.CONFIGS["digits_unet"]["embed_dim"]).double())
    net64.eps_net.load_state_dict({k: v.double() for k, v in ema.state_dict().items()})
    net64.eval()
    gen = torch.Generator().manual_seed(777)
    rows = 64
    xr = torch.from_numpy(x_train[torch.randint(len(x_train), (rows,), generator=gen).numpy()])
    tr = (torch.rand(rows, generator=gen) * 0.999 + 0.001).to(torch.float32)
    xr = (xr + torch.randn(xr.shape, generator=gen) * marginal_std(tr)[:, None]).to(torch.float32)
    xh = torch.from_numpy(x_train[:rows])
    tj = torch.tensor([0.01, 0.1, 0.5], dtype=torch.float32)
    xj = torch.from_numpy(x_train[[3, 50, 700]])
    xj = (xj + torch.randn(xj.shape, generator=gen) * marginal_std(tj)[:, None]).to(torch.float32)
    vj = torch.randn(xj.shape, generator=gen).to(torch.float32)
    with torch.no_grad():
        s = net64(xr.double(), tr.double())
        sh = net64(xh.double(), torch.full((rows,), 0.5, dtype=torch.float64))
    jac = torch.stack([torch.autograd.functional.jacobian(
        lambda v, i=i: net64(v[None], tj[i:i + 1].double())[0], xj[i].double()) for i in range(len(xj))])
    jvp = torch.einsum("bij,bj->bi", jac, vj.double())
    img = (-1, 1, 8, 8)
    ref = {"x": xr.reshape(img).numpy(), "t": tr.numpy(), "score": s.reshape(img).numpy(),
           "x_half": xh.reshape(img).numpy(), "score_half": sh.reshape(img).numpy(),
           "jac_x": xj.reshape(img).numpy(), "jac_t": tj.numpy(), "jac_v": vj.reshape(img).numpy(),
           "jvp": jvp.reshape(img).numpy(), "jacobian": jac.numpy()}
    files = {"x": "x", "t": "t", "score": "score", "x_half": "x_t0.5", "score_half": "score_t0.5",
             "jac_x": "jac_x", "jac_t": "jac_t", "jac_v": "jac_v", "jvp": "jac_jvp", "jacobian": "jacobian"}
    for k, f in files.items():
        np.save(f"{path_prefix}_{f}.npy", ref[k])
    return ref


# ------------------------------------------------------------------------------------------------------ driver
def run_unet(name, cfg, cache_dir=None):
    threads = cfg["threads"]
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    for d in (T.DATA_DIR, T.MODEL_DIR, T.RESULT_DIR, T.REF_DIR):
        os.makedirs(d, exist_ok=True)
    wall0 = time.time()
    x, held, extras = T.make_data(name, cfg["n_train"])
    assert x.shape == (cfg["n_train"], 64) and held.shape == (cfg["n_heldout"], 64)
    np.save(os.path.join(T.DATA_DIR, "digits_unet_heldout_idx.npy"), extras["digits_unet_heldout_idx"])
    print(f"[{name}] {len(x)} training images, {len(held)} held out; {cfg['steps']} steps of batch {cfg['batch']}",
          flush=True)

    net, ema, losses, train_seconds = T.train(name, cfg, x, cache_dir)
    steps_per_epoch = len(x) // cfg["batch"]
    last = 500
    final_loss = float(np.mean(losses[-last:]))

    # fixed-noise DSM loss (the same draws for both weight sets) on the held-out images and on as many training ones
    def fixed_loss(module, data):
        gen = torch.Generator().manual_seed(12345)
        xs = torch.from_numpy(data).repeat(10, 1)
        t = torch.rand(xs.shape[0], generator=gen) * (1.0 - T.EPS_TRAIN) + T.EPS_TRAIN
        z = torch.randn(xs.shape, generator=gen)
        with torch.no_grad():
            return float(sum(T.batch_loss(cfg, module, xs[i:i + 1000], t[i:i + 1000], z[i:i + 1000]).item()
                             * len(xs[i:i + 1000]) for i in range(0, len(xs), 1000)) / len(xs))

    eval_ema, eval_raw = fixed_loss(ema, held), fixed_loss(net, held)
    train_fixed = fixed_loss(ema, x[:len(held)])
    print(f"[{name}] final loss {final_loss:.4f}, held-out loss EMA {eval_ema:.4f} raw {eval_raw:.4f}, "
          f"training images (EMA) {train_fixed:.4f}", flush=True)

    # export through ONNX; export_onnx checks the raw output against the module with the scorelens binary
    path = os.path.join(T.MODEL_DIR, f"{name}.onnx")
    example = torch.from_numpy(x[:2]).reshape(2, 1, 8, 8)
    export_onnx.export(ema, example, torch.tensor([0.3, 0.7]), path, parameterization="epsilon",
                       schedule="ve-song", time_input="t", tolerance=1e-5, opset=17, sigma=repr(SIGMA))
    binary = export_onnx._scorelens_binary()

    ref = references(ema, x, os.path.join(T.REF_DIR, name))
    checks = engine_checks(binary, path, ref) if binary else None
    if checks:
        worst = max(v["rel_norm"] for v in checks.values())
        print(f"[{name}] scorelens vs float64 torch: {json.dumps(checks)}", flush=True)
        assert worst <= 1e-5, f"{name}: scorelens differs from float64 PyTorch by {worst:.2e}"

    # samples: Song's Euler-Maruyama sampler (as the MLPs' cards), the trained module and the memorising baseline
    sample_start = time.time()
    score = ScoreOf(ema).eval()
    samples = T.euler_maruyama(score, N_SAMPLES, 64, seed=4242)
    sample_seconds = time.time() - sample_start
    baseline = T.euler_maruyama(T.EmpiricalScore(x), N_SAMPLES, 64, seed=4242)
    quality = image_quality(samples, x, held)
    quality["empirical_score_baseline"] = image_quality(baseline, x, held)
    errors = T.score_error_by_t(score, x)

    # the same sampler inside scorelens, on the ONNX file
    engine = None
    if binary and ENGINE_SAMPLES > 0:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            try:
                run_binary(binary, ["sample", path, "--n", str(ENGINE_SAMPLES), "--steps", str(ENGINE_STEPS), "--sampler", "em",
                                    "--seed", "7", "-o", tmp], timeout=ENGINE_TIMEOUT_S)
                found = [f for f in os.listdir(tmp) if f.endswith(".npy") and "sample" in f]
                engine_samples = np.load(os.path.join(tmp, sorted(found)[0])).reshape(-1, 64).astype(np.float64)
                engine = image_quality(engine_samples, x, held)
                engine["seconds"] = time.time() - t0
                engine["n"] = len(engine_samples)
                engine["steps"] = ENGINE_STEPS
                write_png_gray(os.path.join(T.MODEL_DIR, f"{name}_scorelens_samples.png"), tile(engine_samples, 16))
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                engine = {"error": str(err)[:300], "seconds": time.time() - t0}
        print(f"[{name}] scorelens sample: {engine}", flush=True)

    # the grid: 64 samples, then 16 samples over their nearest training images
    nearest = torch.cdist(torch.from_numpy(samples[:16]), torch.from_numpy(x.astype(np.float64))).argmin(1).numpy()
    grid = stack_blocks([tile(samples[:64], 16), tile(np.concatenate([samples[:16], x[nearest]]), 16)])
    write_png_gray(os.path.join(T.MODEL_DIR, f"{name}_samples.png"), grid)

    import onnx
    model = onnx.load(path)
    ops = sorted({n.op_type for n in model.graph.node})
    result = {
        "name": name, "kind": "unet", "config": cfg, "n_train": int(len(x)), "n_heldout": int(len(held)),
        "steps_per_epoch": steps_per_epoch, "n_samples": N_SAMPLES, "final_loss": final_loss, "final_loss_steps": last,
        "eval_loss_ema": eval_ema, "eval_loss_raw": eval_raw, "eval_on": "held-out images",
        "eval_points": int(len(held)), "eval_repeats": 10, "train_fixed_noise_loss_ema": train_fixed,
        "train_seconds": train_seconds, "sample_seconds": sample_seconds, "total_seconds": time.time() - wall0,
        "engine_checks": checks, "load_average_15min": os.getloadavg()[2], "engine_samples": engine, "quality": quality, "score_error_by_t": errors,
        "file_bytes": os.path.getsize(path), "params": int(sum(p.numel() for p in ema.parameters())),
        "onnx_opset": int(model.opset_import[0].version), "onnx_ops": ops, "onnx_nodes": len(model.graph.node),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "machine": f"{platform.machine()}, {threads} torch thread, torch {torch.__version__}",
        "loss_curve_every_250": [float(np.mean(losses[i:i + 250])) for i in range(0, len(losses), 250)],
    }
    with open(os.path.join(T.RESULT_DIR, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    write_unet_card(result)
    T.write_readme()
    print(f"[{name}] done in {time.time() - wall0:.0f}s: quality {json.dumps(quality)}", flush=True)
    return result


def image_quality(samples, x, held):
    d = T.nn_dist(samples, x)
    dh = T.nn_dist(held, x)
    dt = T.nn_dist(x, x, exclude_self=True)
    return {
        "sample_nn_mean": float(d.mean()), "sample_nn_median": float(np.median(d)),
        "sample_near_copy_frac": float((d < NEAR_COPY).mean()),
        "heldout_nn_mean": float(dh.mean()), "heldout_nn_median": float(np.median(dh)),
        "heldout_near_copy_frac": float((dh < NEAR_COPY).mean()),
        "train_loo_nn_mean": float(dt.mean()), "train_loo_nn_median": float(np.median(dt)),
        "frac_pixels_outside_minus0.1_1.1": float(((samples < -0.1) | (samples > 1.1)).mean()),
        "mean_ink": float(np.clip(samples, 0, 1).mean()), "heldout_mean_ink": float(held.mean()),
    }


def write_unet_card(r):
    from unet_card import card_text
    with open(os.path.join(T.MODEL_DIR, f"{r['name']}.md"), "w") as f:
        f.write(card_text(r))
