"""The model card of digits_unet, from its results/digits_unet.json."""
import os

import train as T
from unet_pipeline import NEAR_COPY


def _checks(c):
    if not c:
        return ["- scorelens binary not found when the file was made: no engine check recorded "
                "(`tools/train/check_export.py --engine digits_unet` runs it)."]
    names = {"score_random_t": "score, 64 noised training images, t ~ U(0.001, 1)",
             "score_t0.5": "score, 64 clean training images, t = 0.5",
             "jvp": "J·v at 3 points (t = 0.01, 0.1, 0.5), one random v each",
             "jacobian_forward": "full 64 × 64 Jacobians at the same 3 points, forward mode",
             "jacobian_reverse": "the same Jacobians, reverse mode"}
    out = ["| quantity | ‖scorelens − torch‖ / ‖torch‖ | max abs diff / max abs torch |", "| --- | --- | --- |"]
    for k, label in names.items():
        out.append(f"| {label} | {c[k]['rel_norm']:.1e} | {c[k]['rel_max']:.1e} |")
    return out


def card_text(r):
    name, cfg, q = r["name"], r["config"], r["quality"]
    b, e = q["empirical_score_baseline"], r.get("engine_samples")
    c1, c2 = cfg["channels"]
    if e and "error" not in e:
        engine = [f"- the same sampler run by scorelens on the ONNX file (`scorelens sample {name}.onnx --n "
                  f"{e['n']} --steps {e['steps']} --sampler em --seed 7`, {e['seconds']:.0f} s on this machine's "
                  f"software Vulkan): {e['n']} samples, nearest-training-image distance mean "
                  f"**{e['sample_nn_mean']:.3f}** (median {e['sample_nn_median']:.3f}), near-copies "
                  f"{e['sample_near_copy_frac']:.3f}; grid `{name}_scorelens_samples.png`:",
                  "", f"![scorelens samples]({name}_scorelens_samples.png)"]
    elif e:
        engine = [f"- `scorelens sample` on the ONNX file did not finish: {e['error']} (after {e['seconds']:.0f} s)"]
    else:
        engine = ["- `scorelens sample` on the ONNX file was not run for this card (`train.py --engine-samples N` "
                  "runs it): on the machine that made the file (2 cores shared with other builds, lavapipe) 20 "
                  "Euler–Maruyama steps of 64 samples took 521 s, so the 500-step sampler was out of reach. "
                  "scorelens's score, J·v and Jacobians on the file are checked above."]
    lines = [
        f"# `{name}` — convolutional U-Net score model on the 8×8 digits (ε, ve-song, sigma = 25)",
        "",
        f"File: `assets/models/{name}.onnx` ({r['file_bytes']:,} bytes, {r['params']:,} float32 values, the EMA "
        f"weights; ONNX opset {r['onnx_opset']} from PyTorch's TorchScript exporter through `tools/export_onnx.py`, "
        f"{r['onnx_nodes']} nodes: {', '.join(r['onnx_ops'])}). scorelens reads it with its graph engine "
        "(`docs/networks.md`): `scorelens score assets/models/digits_unet.onnx --x X.npy --t 0.5 -o S.npy` with X "
        "[B, 1, 8, 8] (or any command taking MODEL).",
        "",
        "Retrain (rewrites this card, the file, the grids, the held-out index file and the reference outputs):",
        "",
        f"    /usr/bin/python3 tools/train/train.py --model {name}",
        "",
        "## Data",
        "`assets/data/digits.npy` [1797, 64] (sklearn's 8×8 digits, row-major, pixels / 16 in [0, 1], 0 = white), "
        "as images [1, 8, 8]. A fixed held-out set of **297 images** (`numpy.random.default_rng(1797)."
        "permutation(1797)[:297]`, sorted, saved as `assets/data/digits_unet_heldout_idx.npy`) is never trained on; "
        "the other 1500 are the training set.",
        "",
        "## Architecture (`tools/train/unet.py`)",
        f"- input x [B, 1, 8, 8], time t [B]; output ε̂ [B, 1, 8, 8]; score(x, t) = −ε̂(x, t) / std(t), "
        "std(t) = sqrt((25^(2t) − 1) / (2 ln 25))",
        f"- time embedding: Gaussian Fourier features [sin(2π W t), cos(2π W t)] (W [{cfg['embed_dim'] // 2}] = "
        f"{cfg['fourier_scale']:g} × N(0, 1), fixed) → Linear → SiLU → Linear, E = {cfg['embed_dim']}",
        "- input scaling inside the graph: x · c_in(t), c_in = 1 / sqrt(std(t)² + 0.5²), so the convolutions see "
        "inputs of size about 1 at every noise level",
        f"- 8×8: conv 3×3 (1 → {c1}), residual block; 4×4: conv 3×3 stride 2 ({c1} → {c2}), residual block, "
        f"residual block, self-attention (16 positions, one head, DDPM's AttnBlock), residual block; up: residual "
        f"block on concat(h, skip) ({2 * c2} → {c2}), nearest ×2 upsampling + conv 3×3 ({c2} → {c1}), residual "
        f"block on concat(h, skip) ({2 * c1} → {c1}), GroupNorm, SiLU, conv 3×3 ({c1} → 1, zero-initialised)",
        "- residual block: GroupNorm(8 groups) → SiLU → conv 3×3 → + Linear(e) per channel → GroupNorm(8) → SiLU "
        "→ conv 3×3, plus the input (a 1×1 conv where the channels change)",
        "- metadata: `scorelens.parameterization=epsilon`, `scorelens.time_input=t`, `scorelens.schedule=ve-song`, "
        "`scorelens.sigma=25.0`",
        "",
        "## Training",
        "- denoising score matching with the ve-song schedule, t ~ U(1e-5, 1), z ~ N(0, I): loss = mean_batch "
        "sum_pixels (ε̂(x + std(t) z, t) − z)², which is Song's loss |score · std + z|² of the MLP cards",
        f"- Adam, lr {cfg['lr']:g} (linear warm-up over 200 steps, cosine decay to 5 %), gradient norm clipped at "
        f"{cfg['grad_clip']:g}, batch {cfg['batch']}, {cfg['steps']} steps (the 1500 training images reshuffled "
        f"whenever fewer than a batch remain: {cfg['steps'] * cfg['batch'] / r['n_train']:.0f} passes over the data), EMA of the weights with "
        f"decay {cfg['ema']} (exported)",
        f"- seed {cfg['seed']} (torch) — `torch.set_num_threads({cfg['threads']})`, deterministic algorithms",
        f"- training time on this machine ({r['machine']}; 15-minute load average {r['load_average_15min']:.1f} on "
        f"{os.cpu_count()} cores at the end of the run, shared with other jobs): **{r['train_seconds']:.0f} s** "
        f"(whole run with export, checks and sampling: {r['total_seconds']:.0f} s)",
        "",
        "## Losses",
        f"- final training loss (mean over the last {r['final_loss_steps']} steps, raw weights): "
        f"**{r['final_loss']:.4f}**",
        f"- fixed-noise loss (seed 12345, 10 draws of (t, z) per image) on the **297 held-out images**: "
        f"**{r['eval_loss_ema']:.4f}** (exported EMA weights), {r['eval_loss_raw']:.4f} (raw weights); on 297 "
        f"training images: {r['train_fixed_noise_loss_ema']:.4f} (EMA)",
        f"- loss every 250 steps: {', '.join(f'{v:.2f}' for v in r['loss_curve_every_250'])}",
        "",
        "## Checks against float64 PyTorch",
        "Export: `tools/export_onnx.py` runs the file in scorelens (raw output) against the float32 module before "
        "returning (tolerance 1e-5). Then scorelens (float32, graph engine, this machine's adapter) against the "
        "module in float64 (`torch.autograd.functional.jacobian` for the Jacobians), inputs and outputs saved in "
        f"`tools/train/reference/{name}_*.npy` (`x, t, score`; `x_t0.5, score_t0.5`; `jac_x, jac_t, jac_v, "
        "jac_jvp, jacobian`), re-run by `tools/train/check_export.py --engine digits_unet` and `tests/assets.rs`:",
        "",
        *_checks(r.get("engine_checks")),
        "",
        "## Samples",
        f"{r['n_samples']} samples of Song's Euler–Maruyama sampler (t from 1 to 1e-3 in 500 steps, x_1 = std(1) z, the last "
        f"mean returned, seed 4242) with the exported weights in PyTorch ({r['sample_seconds']:.0f} s). Distances "
        f"are Euclidean in R^64 (pixels in [0, 1]); a near-copy is a sample within {NEAR_COPY} of a training image.",
        "",
        "| | nearest-training-image distance: mean | median | near-copies (< 0.5) |",
        "| --- | --- | --- | --- |",
        f"| {r['n_samples']} samples | **{q['sample_nn_mean']:.3f}** | {q['sample_nn_median']:.3f} | "
        f"{q['sample_near_copy_frac']:.3f} |",
        f"| 297 held-out images | **{q['heldout_nn_mean']:.3f}** | {q['heldout_nn_median']:.3f} | "
        f"{q['heldout_near_copy_frac']:.3f} |",
        f"| training images (nearest other training image) | {q['train_loo_nn_mean']:.3f} | "
        f"{q['train_loo_nn_median']:.3f} | |",
        f"| {r['n_samples']} samples of the same sampler driven by the exact score of the smoothed training set (a memorising "
        f"model) | {b['sample_nn_mean']:.3f} | {b['sample_nn_median']:.3f} | {b['sample_near_copy_frac']:.3f} |",
        "",
        f"Samples whose nearest-training distance matches the held-out images' are as far from the training set as "
        f"new digits of the same kind are; a memorising model sits far below (the exact-score row, whose distance "
        f"is the sampler's own residual noise at t = 1e-3). Also: fraction of sample pixels outside [−0.1, 1.1] "
        f"{q['frac_pixels_outside_minus0.1_1.1']:.4f}; mean ink (pixel mean clipped to [0, 1]) {q['mean_ink']:.3f} "
        f"(held-out images: {q['heldout_mean_ink']:.3f}).",
        "",
        f"Grid `{name}_samples.png`: the first 64 samples (4 rows of 16; ink dark on white, each pixel 4×4), then "
        "the first 16 samples again over their nearest training images (a row of samples, below it a row of "
        "nearest training images).",
        "",
        "Looked at when the file was made: nearly every cell is a recognisable digit (all of 0–9 occur; a few cells "
        "are thick or ambiguous strokes such as a 1 that could be a 7), and the samples differ visibly from their "
        "nearest training images (other slant, stroke widths, gaps), as the distances say.",
        "",
        f"![samples]({name}_samples.png)",
        "",
        *engine,
        "",
        "## Accuracy by diffusion time",
        "Error of the exported model against the exact score of the training set smoothed by the forward process, "
        "at 500 training images noised to time t, in units of the noise (RMS over points of |s_model − s_exact| · "
        "std(t), next to the RMS of |s_exact| · std(t)). With 1500 images in 64 dimensions the exact smoothed "
        "score is a memorising one at small t, so the error there measures distance from memorisation.",
        "",
        *T.error_table(r["score_error_by_t"]),
    ]
    return "\n".join(lines) + "\n"
