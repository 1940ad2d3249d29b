#!/usr/bin/env python3
"""Train small MLP score models on real data by denoising score matching and export them as scorelens files.

Denoising score matching with the VE schedule of Song's tutorial (sigma = 25):
    std(t) = sqrt((sigma^(2t) - 1) / (2 ln sigma)),  g(t) = sigma^t,  t ~ U(eps, 1), eps = 1e-5,
    loss   = mean over the batch of sum over dims of (score(x + std z, t) * std + z)^2,  score = net(x, t) / std(t).
The network is the `arch = mlp` of /work/shared/spec/model-format.md: fixed Gaussian Fourier embedding `embed.W`,
h0 = concat(x, sin(2 pi W t), cos(2 pi W t)), SiLU hidden layers `layers.l`, a last linear layer, output / std(t).
During training x enters multiplied by a constant input gain (4 or 8, a power of two), folded exactly into the x columns
of layers.0.weight on export: with data of size about 1 and weights of the default init, the first layer otherwise
sees x at small t as a small perturbation of the embedding and the net stays almost linear in x there (the circle's
radius and the moons' shape are then not learned in a few minutes; the gain changes nothing but the parametrisation).

Models: moons (D = 2), circle16 (a noisy circle in a random 2-plane of R^16), digits (sklearn 8x8 digits, D = 64),
and, for the papers' claims (issue 18): moons_relu (the moons MLP with ReLU units: piecewise linear in x),
sphere16 (a noisy unit 2-sphere in a random 3-space of R^16, tangent spaces known) and digits_unet (a convolutional
U-Net on the 8x8 digits as [1, 8, 8] images, 297 held out, exported to ONNX; unet.py, unet_pipeline.py).
For each MLP it writes
    assets/data/<name>.npy (+ circle16_frame/_theta.npy, sphere16_frame/_angles.npy)   the training data, float32
                                                                         (moons_relu reuses moons.npy, unchanged)
    assets/models/<name>.safetensors                                     float32 weights of the EMA model + metadata
    assets/models/<name>.md                                              the model card
    tools/train/results/<name>.json                                      the figures the cards and README are made from
    tools/train/reference/<name>_{x,t,score}.npy                         inputs and float64 PyTorch scores of the export
and rewrites assets/models/README.md from every results/*.json present. After the export the file is re-read by
an independent reader (read_safetensors) into a fresh module, which must reproduce the trained module in float64.
digits_unet writes the files listed in unet_pipeline.py (assets/models/digits_unet.onnx, its card and sample grids).

Run with Debian's python (torch 1.13 CPU, numpy, onnx; sklearn only for `digits`, optional matplotlib):
    /usr/bin/python3 tools/train/train.py --model moons|circle16|digits|moons_relu|sphere16|digits_unet|all
    /usr/bin/python3 tools/train/train.py --model all --cards-only     # rewrite cards + README from results/*.json
The original three models train with 2 torch threads, the new ones with 1 (`threads` in CONFIGS).
Everything is seeded; on the same machine and thread count the files are reproduced bit for bit.
"""
import argparse
import json
import math
import os
import platform
import struct
import time

# OpenMP threads that spin while waiting make a 2-thread run 10-20x slower whenever another process holds a core
# (measured here: 270 ms/step against 16 ms/step for the digits net); sleeping waiters change no result.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA_DIR = os.path.join(ROOT, "assets", "data")
MODEL_DIR = os.path.join(ROOT, "assets", "models")
RESULT_DIR = os.path.join(ROOT, "tools", "train", "results")
REF_DIR = os.path.join(ROOT, "tools", "train", "reference")

SIGMA = 25.0
EPS_TRAIN = 1e-5  # lower end of t in training (Song's loss_fn)
EPS_SAMPLE = 1e-3  # last time of the Euler-Maruyama sampler (Song's sampler)
THREADS = 2

# Per-model settings. steps = optimiser steps; batches are drawn by reshuffling the data every epoch.
CONFIGS = {
    "moons": dict(
        dim=2, hidden=[128, 128, 128], embed_dim=32, fourier_scale=16.0, in_gain=4.0, act="silu",
        n_train=10000, batch=512, steps=12000, lr=2e-3, ema=0.999, seed=0,
    ),
    "circle16": dict(
        dim=16, hidden=[256, 256, 256], embed_dim=64, fourier_scale=30.0, in_gain=4.0, act="silu",
        n_train=10000, batch=512, steps=12000, lr=2e-3, ema=0.999, seed=1,
    ),
    "digits": dict(
        dim=64, hidden=[512, 512, 512], embed_dim=64, fourier_scale=16.0, in_gain=8.0, act="silu",
        n_train=1797, batch=256, steps=12000, lr=3e-3, ema=0.999, seed=2,
    ),
    # The models added for the papers' claims (issue 18), trained with one torch thread.
    "moons_relu": dict(
        dim=2, hidden=[128, 128, 128], embed_dim=32, fourier_scale=16.0, in_gain=4.0, act="relu", data="moons",
        n_train=10000, batch=512, steps=6000, lr=2e-3, ema=0.999, seed=4, threads=1,
    ),
    "sphere16": dict(
        dim=16, hidden=[256, 256, 256], embed_dim=64, fourier_scale=30.0, in_gain=4.0, act="silu",
        n_train=20000, batch=512, steps=12000, lr=2e-3, ema=0.999, seed=5, threads=1,
    ),
    "digits_unet": dict(
        kind="unet", dim=64, channels=[16, 32], embed_dim=64, fourier_scale=16.0, data="digits",
        n_train=1500, n_heldout=297, batch=256, steps=1500, lr=2e-3, grad_clip=1.0, ema=0.995, seed=3, threads=1,
    ),
}
ACTS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}


# ----------------------------------------------------------------------------------------------------- schedule
def marginal_std(t):
    """std(t) = sqrt((sigma^(2t) - 1) / (2 ln sigma)) of the ve-song schedule."""
    return torch.sqrt((SIGMA ** (2 * t) - 1) / (2 * math.log(SIGMA)))


def diffusion_coeff(t):
    """g(t) = sigma^t."""
    return SIGMA ** t


# ------------------------------------------------------------------------------------------------------- model
class MlpScore(nn.Module):
    """The `arch = mlp` network of model-format.md; state_dict names match the file's tensor names except
    `embed_W`, stored as `embed.W`."""

    def __init__(self, dim, hidden, embed_dim, act, fourier_scale=16.0, in_gain=1.0):
        super().__init__()
        self.dim = dim
        self.in_gain = in_gain  # training-time input gain: h0 = concat(in_gain x, e); folded into layers.0 on export
        self.embed_W = nn.Parameter(torch.randn(embed_dim // 2) * fourier_scale, requires_grad=False)
        widths = [dim + embed_dim] + list(hidden) + [dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:]))
        self.act = ACTS[act]()

    def forward(self, x, t):
        proj = 2 * math.pi * t[:, None] * self.embed_W[None, :]
        h = torch.cat([x * self.in_gain if self.in_gain != 1.0 else x, torch.sin(proj), torch.cos(proj)], dim=1)
        for layer in self.layers[:-1]:
            h = self.act(layer(h))
        return self.layers[-1](h) / marginal_std(t)[:, None]


def dsm_loss(net, x, t, z):
    """Song's loss_fn with given t and z: mean_b sum_d (score * std + z)^2."""
    std = marginal_std(t)
    score = net(x + z * std[:, None], t)
    return torch.mean(torch.sum((score * std[:, None] + z) ** 2, dim=1))


# ------------------------------------------------------------------------------------------------- file format
def export_tensors(net):
    """The file's tensors; the input gain is folded into the x columns of layers.0.weight (rounded to float32)."""
    tensors = {"embed.W": net.embed_W.detach().clone()}
    for i, layer in enumerate(net.layers):
        w = layer.weight.detach().clone()
        if i == 0:
            w[:, :net.dim] *= net.in_gain
        tensors[f"layers.{i}.weight"] = w
        tensors[f"layers.{i}.bias"] = layer.bias.detach().clone()
    return tensors


def export_metadata(cfg):
    return {
        "format": "scorelens", "arch": "mlp", "schedule": "ve-song", "sigma": repr(SIGMA),
        "output_scale": "inv_std", "act": cfg["act"], "dim": str(cfg["dim"]),
        "hidden": json.dumps(cfg["hidden"]), "embed_dim": str(cfg["embed_dim"]),
    }


def save_safetensors(path, tensors, metadata):
    """safetensors writer (float32, little-endian), as tools/fixtures/make_torch_mlp_fixtures.py."""
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name, tensor in tensors.items():
        data = tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    """Independent reader: parses the header and byte ranges itself; returns (metadata, {name: float64 array})."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode())
    body = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        tensors[name] = np.frombuffer(body[a:b], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return metadata, tensors


def module_from_file(path):
    """A fresh float64 MlpScore built from the metadata and tensors of an exported file."""
    meta, tensors = read_safetensors(path)
    assert meta["format"] == "scorelens" and meta["arch"] == "mlp" and meta["schedule"] == "ve-song"
    assert float(meta["sigma"]) == SIGMA and meta.get("output_scale", "inv_std") == "inv_std"
    n_layers = sum(1 for k in tensors if k.endswith(".weight"))
    hidden = [tensors[f"layers.{i}.weight"].shape[0] for i in range(n_layers - 1)]
    assert hidden == json.loads(meta["hidden"]), (hidden, meta["hidden"])
    net = MlpScore(int(meta["dim"]), hidden, int(meta["embed_dim"]), meta["act"]).double()
    state = {"embed_W": torch.from_numpy(tensors.pop("embed.W"))}
    state.update({k: torch.from_numpy(v) for k, v in tensors.items()})
    net.load_state_dict(state, strict=True)
    return net.eval()


# --------------------------------------------------------------------------------------------------------- data
def make_moons(n, noise, seed):
    """sklearn.datasets.make_moons(n_samples=n, noise=noise, random_state=seed) re-written in NumPy (sklearn is
    not in Debian's python here); the same draws in the same order, so the same arrays. Returns (x, label)."""
    gen = np.random.RandomState(seed)
    n_out, n_in = n // 2, n - n // 2
    outer = np.linspace(0, np.pi, n_out)
    inner = np.linspace(0, np.pi, n_in)
    x = np.vstack([np.append(np.cos(outer), 1 - np.cos(inner)),
                   np.append(np.sin(outer), 1 - np.sin(inner) - 0.5)]).T
    y = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    order = np.arange(n)
    gen.shuffle(order)  # sklearn.utils.shuffle -> resample(replace=False)
    x, y = x[order], y[order]
    x += gen.normal(scale=noise, size=x.shape)
    return x, y


def sphere_frame():
    """The orthonormal 16x3 frame Q of sphere16 (columns signed so that diag(R) > 0)."""
    rng = np.random.default_rng(1603)
    q, r = np.linalg.qr(rng.standard_normal((16, 3)))
    return q * np.sign(np.diag(r))[None, :]


def sphere_points(m, gen, q):
    """m points of sphere16: u uniform on the unit 2-sphere (polar angle theta, azimuth phi), p = u + N(0, 0.01^2 I_3),
    x = Q p. Returns (x float32, (theta, phi) float32)."""
    u = gen.standard_normal((m, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    theta = np.arccos(np.clip(u[:, 2], -1.0, 1.0))
    phi = np.arctan2(u[:, 1], u[:, 0])
    p = u + 0.01 * gen.standard_normal((m, 3))
    return (p @ q.T).astype(np.float32), np.stack([theta, phi], axis=1).astype(np.float32)


def sphere_tangent_basis(x, q):
    """Orthonormal tangent bases [B, 16, 2] of sphere16 at the points nearest to x [B, 16]: u = Q^T x / |Q^T x|,
    columns Q e_theta and Q e_phi with e_theta = (cos th cos ph, cos th sin ph, -sin th), e_phi = (-sin ph, cos ph, 0).
    (At the poles e_phi is still defined by phi = atan2(u_y, u_x); the projector Q (I - u u^T) Q^T needs no angles.)"""
    u = np.asarray(x, np.float64) @ q
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    th, ph = np.arccos(np.clip(u[:, 2], -1, 1)), np.arctan2(u[:, 1], u[:, 0])
    e_th = np.stack([np.cos(th) * np.cos(ph), np.cos(th) * np.sin(ph), -np.sin(th)], axis=1)
    e_ph = np.stack([-np.sin(ph), np.cos(ph), np.zeros_like(ph)], axis=1)
    return np.einsum("dk,bkj->bdj", q, np.stack([e_th, e_ph], axis=2))


def digits_split():
    """The fixed held-out set of digits_unet: 297 of the 1797 images, by a default_rng(1797) permutation (sorted
    indices into digits.npy); the other 1500 are the training set."""
    perm = np.random.default_rng(1797).permutation(1797)
    return np.sort(perm[297:]), np.sort(perm[:297])


def make_data(name, n):
    """Training data (float32) and a held-out set from the same distribution (None for digits), plus extras."""
    if name in ("moons", "moons_relu"):
        x, _ = make_moons(n, 0.05, 0)
        held, _ = make_moons(2000, 0.05, 1)
        return x.astype(np.float32), held.astype(np.float32), {}
    if name == "circle16":
        rng = np.random.default_rng(16)
        q, r = np.linalg.qr(rng.standard_normal((16, 2)))
        q = q * np.sign(np.diag(r))[None, :]  # a fixed orientation of the frame

        def circle(m, gen):
            theta = gen.uniform(0.0, 2 * np.pi, m)
            plane = np.stack([np.cos(theta), np.sin(theta)], axis=1) + 0.01 * gen.standard_normal((m, 2))
            return (plane @ q.T).astype(np.float32), theta.astype(np.float32)

        x, theta = circle(n, rng)
        held, _ = circle(2000, np.random.default_rng(17))
        return x, held, {"circle16_frame": q.astype(np.float32), "circle16_theta": theta}
    if name == "sphere16":
        q = sphere_frame()
        x, angles = sphere_points(n, np.random.default_rng(160), q)
        held, _ = sphere_points(2000, np.random.default_rng(161), q)
        return x, held, {"sphere16_frame": q.astype(np.float32), "sphere16_angles": angles}
    if name == "digits":
        from sklearn import datasets
        x = datasets.load_digits().data / 16.0
        return x.astype(np.float32), None, {}
    if name == "digits_unet":
        images = np.load(os.path.join(DATA_DIR, "digits.npy"))
        train_idx, held_idx = digits_split()
        return images[train_idx], images[held_idx], {"digits_unet_heldout_idx": held_idx.astype(np.int64)}
    raise ValueError(name)


def fixed_noise_eval(net, x, repeats, seed):
    """DSM loss on x with seeded t ~ U(eps, 1) and z ~ N(0, I), `repeats` draws per point (the same draws for any
    model, so losses are comparable)."""
    gen = torch.Generator().manual_seed(seed)
    xs = torch.from_numpy(x).repeat(repeats, 1)
    t = torch.rand(xs.shape[0], generator=gen) * (1.0 - EPS_TRAIN) + EPS_TRAIN
    z = torch.randn(xs.shape, generator=gen)
    total = 0.0
    with torch.no_grad():
        for i in range(0, xs.shape[0], 4096):
            sl = slice(i, i + 4096)
            total += dsm_loss(net, xs[sl], t[sl], z[sl]).item() * xs[sl].shape[0]
    return total / xs.shape[0]


# ---------------------------------------------------------------------------------------------------- training
def build(cfg):
    """A fresh network for the config (float32)."""
    if cfg.get("kind", "mlp") == "unet":
        from unet import DigitsUNet
        c1, c2 = cfg["channels"]
        return DigitsUNet(c1, c2, cfg["embed_dim"], cfg["fourier_scale"])
    return MlpScore(cfg["dim"], cfg["hidden"], cfg["embed_dim"], cfg["act"], cfg["fourier_scale"],
                    cfg.get("in_gain", 1.0))


def batch_loss(cfg, net, x, t, z):
    """The DSM loss of a batch: Song's loss for the score MLPs, |eps_hat - z|^2 (the same loss) for the U-Net."""
    if cfg.get("kind", "mlp") == "unet":
        from unet import marginal_std as unet_std
        xi, zi = x.reshape(-1, 1, 8, 8), z.reshape(-1, 1, 8, 8)
        eps = net(xi + zi * unet_std(t)[:, None, None, None], t)
        return torch.mean(torch.sum((eps - zi) ** 2, dim=(1, 2, 3)))
    return dsm_loss(net, x, t, z)


def train(name, cfg, x, cache_dir=None):
    """Adam on the DSM loss with an EMA of the weights; returns (raw net, EMA net, losses, seconds). With
    cache_dir, the trained state is saved there and reused by a later run of the same config (the run is
    deterministic, so this only skips recomputing it)."""
    cache = os.path.join(cache_dir, f"{name}.pt") if cache_dir else None
    if cache and os.path.exists(cache):
        saved = torch.load(cache)
        if saved["config"] == cfg:
            net, ema = build(cfg), build(cfg)
            net.load_state_dict(saved["net"])
            ema.load_state_dict(saved["ema"])
            print(f"  [{name}] trained state from {cache}", flush=True)
            return net, ema.eval(), saved["losses"], saved["seconds"]
    torch.manual_seed(cfg["seed"])
    net = build(cfg)
    ema = build(cfg)
    ema.load_state_dict(net.state_dict())
    ema.eval()
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    steps, batch = cfg["steps"], cfg["batch"]
    warmup = 200
    # linear warm-up, then cosine decay to 5% of lr
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    data = torch.from_numpy(x)
    gen = torch.Generator().manual_seed(cfg["seed"] + 1000)
    perm, pos = torch.randperm(len(data), generator=gen), 0
    losses = []
    start = time.time()
    for step in range(steps):
        if pos + batch > len(data):
            perm, pos = torch.randperm(len(data), generator=gen), 0
        xb = data[perm[pos:pos + batch]]
        pos += batch
        t = torch.rand(batch, generator=gen) * (1.0 - EPS_TRAIN) + EPS_TRAIN
        z = torch.randn(xb.shape, generator=gen)
        loss = batch_loss(cfg, net, xb, t, z)
        opt.zero_grad()
        loss.backward()
        if cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["grad_clip"])
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(cfg["ema"], (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(d).add_(p, alpha=1 - d)
        losses.append(loss.item())
        if (step + 1) % 500 == 0:
            print(f"  [{name}] step {step + 1}/{steps}  loss(last 500) {np.mean(losses[-500:]):.4f}"
                  f"  lr {sched.get_last_lr()[0]:.2e}  {time.time() - start:.0f}s", flush=True)
    seconds = time.time() - start
    if cache:
        os.makedirs(cache_dir, exist_ok=True)
        torch.save({"config": cfg, "net": net.state_dict(), "ema": ema.state_dict(), "losses": losses,
                    "seconds": seconds}, cache)
    return net, ema, losses, seconds


# ----------------------------------------------------------------------------------------------------- sampling
def euler_maruyama(net, n, dim, seed, num_steps=500, eps=EPS_SAMPLE):
    """Song's Euler_Maruyama_sampler: x_1 = std(1) z, t from 1 to eps in num_steps, returns the last mean."""
    gen = torch.Generator().manual_seed(seed)
    t1 = torch.ones(n)
    x = torch.randn(n, dim, generator=gen) * marginal_std(t1)[:, None]
    time_steps = torch.linspace(1.0, eps, num_steps)
    step = time_steps[0] - time_steps[1]
    mean_x = x
    with torch.no_grad():
        for ts in time_steps:
            bt = torch.ones(n) * ts
            g = diffusion_coeff(bt)
            mean_x = x + (g ** 2)[:, None] * net(x, bt) * step
            x = mean_x + torch.sqrt(step) * g[:, None] * torch.randn(x.shape, generator=gen)
    return mean_x.numpy().astype(np.float64)


class EmpiricalScore(nn.Module):
    """The exact score of the training set smoothed by the forward process, p_t = mean_i N(x_i, std(t)^2 I):
    s(x, t) = (sum_i w_i x_i - x) / std^2 with w = softmax(-|x - x_i|^2 / (2 std^2)). Driving the sampler with it
    shows what the sampler itself does to a perfect (memorising) model."""

    def __init__(self, data):
        super().__init__()
        self.data = torch.from_numpy(np.asarray(data, np.float32))

    def forward(self, x, t):
        var = marginal_std(t)[:, None] ** 2
        logits = -torch.cdist(x, self.data) ** 2 / (2 * var)
        w = torch.softmax(logits, dim=1)
        return (w @ self.data - x) / var


ERROR_TIMES = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]


def score_error_by_t(net, x, frame=None, n=500, seed=99):
    """For each t in ERROR_TIMES: training points noised to time t, the RMS over points of
    |s_model - s_exact| std(t) and of |s_exact| std(t), where s_exact is the EmpiricalScore of the training set
    (both in units of the noise z, so 1 is the size of the whole target). With the frame Q of a circle or sphere, the
    error is also split into its out-of-subspace, radial and tangential parts."""
    gen = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(x)
    emp = EmpiricalScore(x)
    rows = []
    for t in ERROR_TIMES:
        idx = torch.randint(len(data), (n,), generator=gen)
        tt = torch.full((n,), t)
        std = marginal_std(tt)[:, None]
        xt = data[idx] + std * torch.randn(data[idx].shape, generator=gen)
        with torch.no_grad():
            a = net(xt, tt) * std
            b = emp(xt, tt) * std
        e = a - b
        row = {"t": t, "std": float(std[0, 0]), "err_rms": float(e.norm(dim=1).pow(2).mean().sqrt()),
               "target_rms": float(b.norm(dim=1).pow(2).mean().sqrt())}
        if frame is not None:
            q = torch.from_numpy(frame)
            ein = e @ q
            p = xt @ q
            rhat = p / p.norm(dim=1, keepdim=True)
            radial = (ein * rhat).sum(1)
            row["out_of_plane_err_rms"] = float((e - ein @ q.T).norm(dim=1).pow(2).mean().sqrt())
            row["radial_err_rms"] = float(radial.pow(2).mean().sqrt())
            row["radial_target_rms"] = float(((b @ q) * rhat).sum(1).pow(2).mean().sqrt())
            # the in-subspace part orthogonal to the radius: the tangent space of the circle (1-d) or sphere (2-d)
            row["tangential_err_rms"] = float((ein - radial[:, None] * rhat).norm(dim=1).pow(2).mean().sqrt())
        rows.append(row)
    return rows


def nn_dist(a, b, exclude_self=False):
    """Distance from each row of a to its nearest row of b (excluding the same index when a is b)."""
    a = torch.from_numpy(np.asarray(a, np.float64))
    b = torch.from_numpy(np.asarray(b, np.float64))
    out = []
    for i in range(0, len(a), 1024):
        d = torch.cdist(a[i:i + 1024], b)
        if exclude_self:
            d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")
        out.append(d.min(dim=1).values)
    return torch.cat(out).numpy()


def sample_quality(name, samples, x, held, extras):
    """Figures comparing Euler-Maruyama samples with the data (and the same figures for real held-out points)."""
    q = {}
    if name in ("moons", "moons_relu"):
        d = nn_dist(samples, x)
        q["sample_nn_mean"] = float(d.mean())
        q["sample_nn_median"] = float(np.median(d))
        q["sample_nn_frac_gt_0.1"] = float((d > 0.1).mean())
        dh = nn_dist(held[:500], x)
        q["heldout_nn_mean"] = float(dh.mean())
        q["heldout_nn_frac_gt_0.1"] = float((dh > 0.1).mean())
        # balance between the two moons: the upper moon has its points at y > 0.25 - ... ; use the label of the
        # nearest training point
        _, lab = make_moons(len(x), 0.05, 0)
        idx = torch.cdist(torch.from_numpy(samples), torch.from_numpy(x.astype(np.float64))).argmin(dim=1).numpy()
        q["frac_upper_moon"] = float((lab[idx] == 0).mean())
    elif name == "circle16":
        frame = extras["circle16_frame"].astype(np.float64)
        inplane = samples @ frame
        out = samples - inplane @ frame.T
        r = np.linalg.norm(inplane, axis=1)
        q["mean_abs_radius_minus_1"] = float(np.abs(r - 1).mean())
        q["mean_out_of_plane_norm"] = float(np.linalg.norm(out, axis=1).mean())
        q["max_out_of_plane_norm"] = float(np.linalg.norm(out, axis=1).max())
        hp = held.astype(np.float64) @ frame
        q["heldout_mean_abs_radius_minus_1"] = float(np.abs(np.linalg.norm(hp, axis=1) - 1).mean())
        ang = np.arctan2(inplane[:, 1], inplane[:, 0])
        q["angle_mean_resultant_length"] = float(np.abs(np.exp(1j * ang).mean()))
        hist, _ = np.histogram(ang, bins=8, range=(-np.pi, np.pi))
        q["angle_histogram_8_bins"] = hist.tolist()
    elif name == "sphere16":
        frame = extras["sphere16_frame"].astype(np.float64)
        inspace = samples @ frame
        out = samples - inspace @ frame.T
        r = np.linalg.norm(inspace, axis=1)
        q["mean_abs_radius_minus_1"] = float(np.abs(r - 1).mean())
        q["max_abs_radius_minus_1"] = float(np.abs(r - 1).max())
        q["mean_out_of_subspace_norm"] = float(np.linalg.norm(out, axis=1).mean())
        q["max_out_of_subspace_norm"] = float(np.linalg.norm(out, axis=1).max())
        hp = held.astype(np.float64) @ frame
        q["heldout_mean_abs_radius_minus_1"] = float(np.abs(np.linalg.norm(hp, axis=1) - 1).mean())
        u = inspace / r[:, None]
        q["mean_direction_length"] = float(np.linalg.norm(u.mean(axis=0)))  # 0 for uniform on the sphere
        # uniformity: counts in the 8 octants of the sphere's own coordinates (equal areas)
        octant = (u[:, 0] > 0) * 4 + (u[:, 1] > 0) * 2 + (u[:, 2] > 0)
        q["octant_counts"] = np.bincount(octant, minlength=8).tolist()
        q["mean_cos_theta"] = float(u[:, 2].mean())  # uniform: 0; cos(theta) ~ U(-1, 1)
        q["var_cos_theta"] = float(u[:, 2].var())  # uniform: 1/3
    elif name == "digits":
        d = nn_dist(samples, x)
        dt = nn_dist(x, x, exclude_self=True)
        q["sample_nn_mean"] = float(d.mean())
        q["sample_nn_median"] = float(np.median(d))
        q["train_loo_nn_mean"] = float(dt.mean())
        q["train_loo_nn_median"] = float(np.median(dt))
        q["frac_samples_closer_than_0.5"] = float((d < 0.5).mean())
        q["frac_samples_outside_minus0.1_1.1"] = float(((samples < -0.1) | (samples > 1.1)).mean())
    return q


def save_plot(name, samples, x):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = os.path.join(MODEL_DIR, f"{name}_samples.png")
    if name == "moons":
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.scatter(x[:2000, 0], x[:2000, 1], s=2, c="0.7", label="training data (first 2000)")
        ax.scatter(samples[:, 0], samples[:, 1], s=4, c="C3", label=f"{len(samples)} Euler-Maruyama samples")
        ax.set_aspect("equal")
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title("moons: samples of the exported model vs data")
    elif name == "digits":
        fig, axes = plt.subplots(4, 16, figsize=(8, 2.2), dpi=100)
        for k, ax in enumerate(axes.flat):
            ax.imshow(np.clip(samples[k].reshape(8, 8), 0, 1), cmap="gray_r", vmin=0, vmax=1)
            ax.axis("off")
        fig.suptitle("digits: 64 Euler-Maruyama samples of the exported model", fontsize=9)
    else:
        return None
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return os.path.relpath(path, ROOT)


# ------------------------------------------------------------------------------------------------------ driver
def run(name, cache_dir=None):
    cfg = CONFIGS[name]
    if cfg.get("kind", "mlp") == "unet":
        from unet_pipeline import run_unet
        return run_unet(name, cfg, cache_dir)
    threads = cfg.get("threads", THREADS)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    os.makedirs(DATA_DIR, exist_ok=True)
    os.makedirs(MODEL_DIR, exist_ok=True)
    os.makedirs(RESULT_DIR, exist_ok=True)
    os.makedirs(REF_DIR, exist_ok=True)
    wall0 = time.time()

    x, held, extras = make_data(name, cfg["n_train"])
    data_name = cfg.get("data", name)
    data_path = os.path.join(DATA_DIR, f"{data_name}.npy")
    if data_name != name and os.path.exists(data_path):
        # a second model on an existing data set: the data made here must be that file, which stays untouched
        assert np.array_equal(np.load(data_path), x), f"{name}: the data differ from {data_path}"
    else:
        np.save(data_path, x)
    for k, v in extras.items():
        np.save(os.path.join(DATA_DIR, f"{k}.npy"), v)
    print(f"[{name}] data {x.shape}, training {cfg['steps']} steps of batch {cfg['batch']}", flush=True)

    net, ema, losses, train_seconds = train(name, cfg, x, cache_dir)
    steps_per_epoch = len(x) // cfg["batch"]
    last = max(1000, steps_per_epoch)
    final_loss = float(np.mean(losses[-last:]))

    # fixed-noise evaluation (held-out points for moons and circle16; the training images for digits)
    eval_x = held if held is not None else x
    repeats = 10
    eval_ema = fixed_noise_eval(ema, eval_x, repeats, seed=12345)
    eval_raw = fixed_noise_eval(net, eval_x, repeats, seed=12345)
    train_fixed = fixed_noise_eval(ema, x[:len(eval_x)], repeats, seed=12345)

    # export the EMA weights and check the file with the independent reader, in float64
    path = os.path.join(MODEL_DIR, f"{name}.safetensors")
    save_safetensors(path, export_tensors(ema), export_metadata(cfg))
    reloaded = module_from_file(path)
    ema64 = MlpScore(cfg["dim"], cfg["hidden"], cfg["embed_dim"], cfg["act"], in_gain=cfg.get("in_gain", 1.0)).double()
    ema64.load_state_dict({k: v.double() for k, v in ema.state_dict().items()})
    gen = torch.Generator().manual_seed(777)
    rows = 64
    xr = torch.from_numpy(x[torch.randint(len(x), (rows,), generator=gen).numpy()])
    tr = (torch.rand(rows, generator=gen) * 0.999 + 0.001).to(torch.float32)
    xr = (xr + torch.randn(xr.shape, generator=gen) * marginal_std(tr)[:, None]).to(torch.float32)
    with torch.no_grad():
        s_trained = ema64(xr.double(), tr.double())
        s_file = reloaded(xr.double(), tr.double())
    reload_err = float(((s_file - s_trained).abs() / (1 + s_trained.abs())).max())
    assert reload_err < 1e-6, f"{name}: reloaded module differs from the trained one by {reload_err}"
    np.save(os.path.join(REF_DIR, f"{name}_x.npy"), xr.numpy())
    np.save(os.path.join(REF_DIR, f"{name}_t.npy"), tr.numpy())
    np.save(os.path.join(REF_DIR, f"{name}_score.npy"), s_file.numpy())
    xh = torch.from_numpy(x[:rows])
    with torch.no_grad():
        s_half = reloaded(xh.double(), torch.full((rows,), 0.5, dtype=torch.float64))
    np.save(os.path.join(REF_DIR, f"{name}_x_t0.5.npy"), xh.numpy())
    np.save(os.path.join(REF_DIR, f"{name}_score_t0.5.npy"), s_half.numpy())

    # sample quality from the float32 module rebuilt from the file
    sample_start = time.time()
    sampler_net = reloaded.float()
    samples = euler_maruyama(sampler_net, 500, cfg["dim"], seed=4242)
    quality = sample_quality(name, samples, x, held, extras)
    # the exact-score baseline depends on the data and the seed only; --cache keeps it too (slow for 20000 points)
    baseline_cache = os.path.join(cache_dir, f"{name}_baseline.json") if cache_dir else None
    if baseline_cache and os.path.exists(baseline_cache):
        with open(baseline_cache) as f:
            quality["empirical_score_baseline"] = json.load(f)
    else:
        baseline = euler_maruyama(EmpiricalScore(x), 500, cfg["dim"], seed=4242)
        quality["empirical_score_baseline"] = sample_quality(name, baseline, x, held, extras)
        if baseline_cache:
            with open(baseline_cache, "w") as f:
                json.dump(quality["empirical_score_baseline"], f)
    errors = score_error_by_t(sampler_net, x, extras.get("circle16_frame", extras.get("sphere16_frame")))
    plot = save_plot(name, samples, x)
    sample_seconds = time.time() - sample_start

    result = {
        "name": name, "config": cfg, "n_train": int(len(x)), "steps_per_epoch": steps_per_epoch,
        "final_loss": final_loss, "final_loss_steps": last, "eval_loss_ema": eval_ema, "eval_loss_raw": eval_raw,
        "eval_on": "held-out" if held is not None else "training images", "eval_points": int(len(eval_x)),
        "eval_repeats": repeats, "train_fixed_noise_loss_ema": train_fixed,
        "train_seconds": train_seconds, "sample_seconds": sample_seconds, "total_seconds": time.time() - wall0,
        "reload_max_rel_err": reload_err, "load_average_15min": os.getloadavg()[2], "quality": quality, "score_error_by_t": errors, "plot": plot,
        "file_bytes": os.path.getsize(path), "params": int(sum(p.numel() for p in ema.parameters())),
        "machine": f"{platform.machine()}, {threads} torch thread{'s' if threads > 1 else ''}, torch {torch.__version__}",
        "loss_curve_every_500": [float(np.mean(losses[i:i + 500])) for i in range(0, len(losses), 500)],
    }
    with open(os.path.join(RESULT_DIR, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    write_card(result)
    write_readme()
    print(f"[{name}] final loss {final_loss:.4f}  eval (EMA) {eval_ema:.4f}  eval (raw) {eval_raw:.4f}  "
          f"train {train_seconds:.0f}s  reload err {reload_err:.1e}  quality {quality}", flush=True)
    return result


DATA_TEXT = {
    "moons": ("`sklearn.datasets.make_moons(n_samples=10000, noise=0.05, random_state=0)`, **not standardised** "
              "(x in about [-1.1, 2.1], y in about [-0.6, 1.1]). Saved in full as `assets/data/moons.npy` "
              "[10000, 2] float32. Held-out set for the evaluation: `make_moons(2000, noise=0.05, random_state=1)` "
              "(not saved)."),
    "circle16": ("Points on a circle of radius 1 in a fixed random 2-plane of R^16: Q = the orthonormal 16x2 "
                 "frame from the QR decomposition of a `numpy.random.default_rng(16)` Gaussian 16x2 matrix (columns "
                 "signed so that diag(R) > 0); theta ~ U(0, 2 pi); p = (cos theta, sin theta) + N(0, 0.01^2 I_2) "
                 "in the plane; x = Q p. So the data lie exactly in the plane (out-of-plane part zero up to float32 "
                 "rounding), with radial and tangential jitter of 0.01, and the true tangent of the circle at the "
                 "point generated from theta is Q (-sin theta, cos theta). Saved in full: `assets/data/circle16.npy` "
                 "[10000, 16], `circle16_frame.npy` [16, 2] (Q), `circle16_theta.npy` [10000] (the generating "
                 "angles), float32. Held-out set for the evaluation: 2000 points drawn the same way with "
                 "`default_rng(17)` (not saved)."),
    "moons_relu": ("The data of `moons`: `assets/data/moons.npy` [10000, 2] (`make_moons(n_samples=10000, noise=0.05, "
                   "random_state=0)`, re-made by `make_moons` in train.py, a NumPy copy of sklearn's that gives the "
                   "same array, checked against the file). Held-out set: `make_moons(2000, noise=0.05, "
                   "random_state=1)` (not saved)."),
    "sphere16": ("Points on the unit 2-sphere in a fixed random 3-dimensional subspace of R^16: Q = the orthonormal "
                 "16x3 frame from the QR decomposition of a `numpy.random.default_rng(1603)` Gaussian 16x3 matrix "
                 "(columns signed so that diag(R) > 0); u uniform on S² (a normalised Gaussian 3-vector from "
                 "`default_rng(160)`), with polar angle θ = arccos u₃ and azimuth φ = atan2(u₂, u₁); p = u + "
                 "N(0, 0.01² I₃) in the subspace; x = Q p. So the data lie exactly in the 3-space (out-of-subspace "
                 "part zero up to float32 rounding), with radial and tangential jitter of 0.01. Saved in full: "
                 "`assets/data/sphere16.npy` [20000, 16], `sphere16_frame.npy` [16, 3] (Q), `sphere16_angles.npy` "
                 "[20000, 2] (θ, φ of the generating u), float32. Held-out set for the evaluation: 2000 points "
                 "drawn the same way with `default_rng(161)` (not saved)."),
    "digits": ("`sklearn.datasets.load_digits()`: 1797 8x8 images, flattened row-major to D = 64, pixel values "
               "divided by 16 so they lie in **[0, 1]** (0 = white background, 1 = full ink). Saved as "
               "`assets/data/digits.npy` [1797, 64] float32. All 1797 images are used for training; there is no "
               "held-out image set, so the evaluation uses held-out (fixed, seeded) noise on the training images."),
}


def fmt_quality(name, q):
    b = q["empirical_score_baseline"]
    if name in ("moons", "moons_relu"):
        return [
            f"  - mean distance of a sample to its nearest training point: **{q['sample_nn_mean']:.4f}** "
            f"(median {q['sample_nn_median']:.4f}); fraction farther than 0.1: {q['sample_nn_frac_gt_0.1']:.3f}",
            f"  - the same for 500 real held-out points: mean {q['heldout_nn_mean']:.4f}, fraction farther than 0.1: "
            f"{q['heldout_nn_frac_gt_0.1']:.3f}",
            f"  - the same sampler driven by the exact score of the smoothed training set (a perfect, memorising "
            f"model; this measures the sampler): mean {b['sample_nn_mean']:.4f} (median {b['sample_nn_median']:.4f}), "
            f"fraction farther than 0.1: {b['sample_nn_frac_gt_0.1']:.3f}",
            f"  - fraction of samples whose nearest training point is on the upper moon: {q['frac_upper_moon']:.3f} "
            f"(data: 0.5; exact-score sampler: {b['frac_upper_moon']:.3f})",
        ]
    if name == "circle16":
        return [
            f"  - mean |‖Qᵀx‖ − 1| (radius error in the plane): **{q['mean_abs_radius_minus_1']:.4f}** "
            f"(held-out data: {q['heldout_mean_abs_radius_minus_1']:.4f})",
            f"  - mean norm of the out-of-plane part ‖x − QQᵀx‖: **{q['mean_out_of_plane_norm']:.4f}** "
            f"(max {q['max_out_of_plane_norm']:.4f}; data: 0)",
            f"  - angles: mean resultant length {q['angle_mean_resultant_length']:.3f} (0 for uniform; about "
            f"{1 / math.sqrt(500):.3f} expected from 500 uniform draws); counts in 8 equal bins: "
            f"{q['angle_histogram_8_bins']}",
            f"  - the same sampler driven by the exact score of the smoothed training set (a perfect, memorising "
            f"model; this measures the sampler): mean |‖Qᵀx‖ − 1| {b['mean_abs_radius_minus_1']:.4f}, "
            f"out-of-plane norm {b['mean_out_of_plane_norm']:.4f}",
        ]
    if name == "sphere16":
        return [
            f"  - mean |‖Qᵀx‖ − 1| (radius error in the 3-space): **{q['mean_abs_radius_minus_1']:.4f}** "
            f"(max {q['max_abs_radius_minus_1']:.4f}; held-out data: {q['heldout_mean_abs_radius_minus_1']:.4f})",
            f"  - mean norm of the out-of-subspace part ‖x − QQᵀx‖: **{q['mean_out_of_subspace_norm']:.4f}** "
            f"(max {q['max_out_of_subspace_norm']:.4f}; data: 0)",
            f"  - coverage of the sphere (u = Qᵀx / ‖Qᵀx‖): |mean u| = {q['mean_direction_length']:.3f} (0 for "
            f"uniform; RMS {math.sqrt(1 / 500):.3f} expected from 500 uniform draws), mean cos θ "
            f"{q['mean_cos_theta']:.3f} (0), var cos θ {q['var_cos_theta']:.3f} (1/3), counts in the 8 octants "
            f"(equal areas): {q['octant_counts']}",
            f"  - the same sampler driven by the exact score of the smoothed training set (a perfect, memorising "
            f"model; this measures the sampler): mean |‖Qᵀx‖ − 1| {b['mean_abs_radius_minus_1']:.4f}, "
            f"out-of-subspace norm {b['mean_out_of_subspace_norm']:.4f}",
        ]
    return [
        f"  - mean distance of a sample to its nearest training image: **{q['sample_nn_mean']:.3f}** "
        f"(median {q['sample_nn_median']:.3f})",
        f"  - mean distance of a training image to its nearest other training image: **{q['train_loo_nn_mean']:.3f}** "
        f"(median {q['train_loo_nn_median']:.3f})",
        f"  - fraction of samples within 0.5 of a training image (near-copies): {q['frac_samples_closer_than_0.5']:.3f}",
        f"  - fraction of sample pixels outside [-0.1, 1.1]: {q['frac_samples_outside_minus0.1_1.1']:.4f}",
        f"  - the same sampler driven by the exact score of the smoothed training set (a perfect, memorising "
        f"model; this measures the sampler): nearest-training-image distance mean {b['sample_nn_mean']:.3f} "
        f"(median {b['sample_nn_median']:.3f})",
    ]


ERROR_NOTE = {
    "moons": "With 10000 points and noise 0.05 the smoothed empirical score is close to that of the data "
             "distribution at every t listed.",
    "moons_relu": "With 10000 points and noise 0.05 the smoothed empirical score is close to that of the data "
                  "distribution at every t listed.",
    "sphere16": "With 20000 points on a sphere of area 4π (spacing about 0.025) and jitter 0.01 the smoothed "
                "empirical score is close to that of the data distribution for std(t) above about 0.03 (t ≳ 0.003); "
                "below, it starts to resolve single points. The error is split into the 13 out-of-subspace "
                "directions, the radial direction in the 3-space (whose target, the pull back to radius 1, makes "
                "the data a sphere rather than a 3-space) and the 2 tangential ones.",
    "circle16": "With 10000 points on a circle of length 2π (spacing about 0.0006) and jitter 0.01 the smoothed "
                "empirical score is close to that of the data distribution at every t listed. The error is split "
                "into the 14 out-of-plane directions, the radial direction in the plane (whose target, the pull "
                "back to radius 1, is the part that makes the data a circle rather than a plane) and the "
                "tangential one.",
    "digits": "With only 1797 images in 64 dimensions the smoothed empirical score is that of a memorising "
              "model at small t (each noised image is pulled back to its own training image), so the error there "
              "measures distance from memorisation, not inaccuracy; above t of about 0.1 it is a fair reference.",
}


def error_table(rows, outside="out-of-plane"):
    split = "radial_err_rms" in rows[0]
    head = "| t | std(t) | error RMS | target RMS |"
    sep = "| --- | --- | --- | --- |"
    if split:
        head += f" {outside} error | radial error (target) | tangential error |"
        sep += " --- | --- | --- |"
    out = [head, sep]
    for w in rows:
        line = f"| {w['t']:g} | {w['std']:.3f} | {w['err_rms']:.3f} | {w['target_rms']:.3f} |"
        if split:
            line += (f" {w['out_of_plane_err_rms']:.3f} | {w['radial_err_rms']:.3f} ({w['radial_target_rms']:.3f}) |"
                     f" {w['tangential_err_rms']:.3f} |")
        out.append(line)
    return out


EXTRA_TEXT = {
    "moons_relu": [
        "## Piecewise linear in x",
        "For a fixed t the network is a continuous piecewise-linear map of x (ReLU hidden layers; the time embedding "
        "only shifts the biases), so its linear regions are those of arXiv 2408.08307's local complexity: a region "
        "boundary is where one of the 3 × 128 hidden units' pre-activation changes sign. The score is out / std(t), "
        "which scales each region's affine map and moves no boundary. scorelens reads `act = relu` natively "
        "(`arch = mlp`); the same network as `moons` apart from the activation and the seed.",
        "",
    ],
    "sphere16": [
        "## Tangent spaces",
        "The manifold is M = {Q u : u ∈ S²} (radius 1, in the span of the columns of Q = `sphere16_frame.npy`). At "
        "x ∈ M with u = Qᵀx, the tangent space is T_x M = Q (I₃ − u uᵀ) Qᵀ R^16 (2-dimensional), the normal "
        "space its complement in R^16: the radial direction Q u and the 13 directions orthogonal to the columns "
        "of Q. For a point x near M, use u = Qᵀx / ‖Qᵀx‖ (the nearest point of M is Q u). An orthonormal tangent "
        "basis is Q e_θ, Q e_φ with e_θ = (cos θ cos φ, cos θ sin φ, −sin θ), e_φ = (−sin φ, cos φ, 0), θ = "
        "arccos u₃, φ = atan2(u₂, u₁); `sphere_tangent_basis(x, Q)` in `tools/train/train.py` computes it "
        "([B, 16, 2]), and in NumPy the projector is",
        "",
        "    Q = np.load('assets/data/sphere16_frame.npy').astype(np.float64)   # [16, 3]",
        "    u = x @ Q; u /= np.linalg.norm(u, axis=-1, keepdims=True)        # nearest point of M is Q u",
        "    P_tangent = Q @ (np.eye(3) - np.outer(u, u)) @ Q.T                # [16, 16], rank 2",
        "",
    ],
}


def write_card(r):
    name, cfg, q = r["name"], r["config"], r["quality"]
    D, E = cfg["dim"], cfg["embed_dim"]
    widths = [D + E] + cfg["hidden"] + [D]
    lines = [
        f"# `{name}` — MLP score model ({'ReLU, ' if cfg['act'] == 'relu' else ''}ve-song, sigma = 25)",
        "",
        f"File: `assets/models/{name}.safetensors` ({r['file_bytes']:,} bytes, {r['params']:,} float32 values, "
        "the EMA weights). Format: `arch = mlp` of `/work/shared/spec/model-format.md`.",
        "",
        "Retrain (rewrites this card, the file, the data and the reference outputs):",
        "",
        f"    /usr/bin/python3 tools/train/train.py --model {name}",
        "",
        "## Data",
        DATA_TEXT[name],
        "",
        "## Architecture",
        f"- D = {D}; Gaussian Fourier embedding `embed.W` [{E // 2}] = {cfg['fourier_scale']:g} × N(0, 1) (fixed, "
        f"not trained), e = [sin(2π W t), cos(2π W t)], E = {E}",
        f"- h0 = concat(x, e) ∈ R^{D + E}; linear layers {' → '.join(map(str, widths))}, "
        f"{ {'silu': 'SiLU', 'relu': 'ReLU', 'gelu': 'GELU', 'tanh': 'tanh'}[cfg['act']]} after every layer but the last",
        "- score(x, t) = out / std(t), std(t) = sqrt((25^(2t) − 1) / (2 ln 25))",
        f"- metadata: format=scorelens, arch=mlp, schedule=ve-song, sigma=25.0, output_scale=inv_std, act={cfg['act']}, "
        f"dim={D}, hidden={json.dumps(cfg['hidden'])}, embed_dim={E}",
        *([f"- trained with the input gain g = {cfg['in_gain']:g} (h0 = concat(g x, e)) so that the first layer "
           "sees the data (scale about 1) at a size comparable with the embedding; g is a power of two and is "
           "folded exactly into the x columns of `layers.0.weight` on export, so the file is the plain network "
           "above"] if cfg.get("in_gain", 1.0) != 1.0 else []),
        "",
        *EXTRA_TEXT.get(name, []),
        "## Training",
        "- denoising score matching (Song's `loss_fn`): t ~ U(1e-5, 1), z ~ N(0, I), "
        "loss = mean_batch sum_dims (score(x + std(t) z, t) · std(t) + z)²",
        f"- Adam, lr {cfg['lr']:g} (linear warm-up over 200 steps, cosine decay to 5 %), batch {cfg['batch']}, "
        f"{cfg['steps']} steps (data reshuffled every epoch of {r['steps_per_epoch']} steps, "
        f"{cfg['steps'] / r['steps_per_epoch']:.0f} epochs), EMA of the weights with decay {cfg['ema']} (exported)",
        f"- seed {cfg['seed']} (torch) — `torch.set_num_threads({cfg.get('threads', THREADS)})`, deterministic algorithms",
        f"- training time on this machine ({r['machine']}"
        + (f"; 15-minute load average {r['load_average_15min']:.1f} on {os.cpu_count()} cores at the end of the run"
           if "load_average_15min" in r else "") + f"): **{r['train_seconds']:.0f} s** "
        f"(whole run with evaluation, export checks and sampling: {r['total_seconds']:.0f} s)",
        "",
        "## Losses",
        f"- final training loss (mean over the last {r['final_loss_steps']} steps, raw weights): "
        f"**{r['final_loss']:.4f}**",
        f"- evaluation DSM loss with fixed noise (seed 12345: {r['eval_repeats']} draws of (t, z) per point) on the "
        f"{r['eval_points']} {'held-out points' if r['eval_on'] == 'held-out' else 'training images (held-out noise only)'}: "
        f"**{r['eval_loss_ema']:.4f}** (exported EMA weights), {r['eval_loss_raw']:.4f} (raw weights)",
        *([f"- the same fixed-noise loss of the EMA weights on the first {r['eval_points']} training points: "
           f"{r['train_fixed_noise_loss_ema']:.4f}"] if r["eval_on"] == "held-out" else []),
        "- the loss is the sum over the D dimensions, so it is not 0 at the optimum (the noise is not recoverable "
        "at large t); compare losses of the same model family, not across data sets.",
        "",
        "## Checks",
        f"- export: the file, parsed by the script's own safetensors reader into a fresh float64 PyTorch module, "
        f"reproduces the trained module in float64 on 64 noised points with max |Δ| / (1 + |s|) = "
        f"{r['reload_max_rel_err']:.1e} (tolerance 1e-6). Inputs and float64 scores: "
        f"`tools/train/reference/{name}_{{x,t,score}}.npy` and `{name}_{{x,score}}_t0.5.npy` (t = 0.5); "
        f"`tools/train/check_export.py` re-checks them with the `safetensors` package and NumPy, and with the "
        f"scorelens binary when present.",
        f"- samples: 500 points from Song's Euler–Maruyama sampler (t from 1 to 1e-3 in 500 steps, "
        f"x_1 = std(1) z, the last mean returned, seed 4242) with the float32 module rebuilt from the file:",
        *fmt_quality(name, q),
        "",
        "## Accuracy by diffusion time",
        "Error of the exported model against the exact score of the training set smoothed by the forward process "
        "(the score of mean_i N(x_i, std(t)² I)), at 500 training points noised to time t, in units of the "
        "noise (RMS over points of |s_model − s_exact| · std(t), next to the RMS of |s_exact| · std(t) itself). " + ERROR_NOTE[name],
        "",
        *error_table(r["score_error_by_t"], "out-of-subspace" if name == "sphere16" else "out-of-plane"),
    ]
    if name == "sphere16" and q["mean_abs_radius_minus_1"] > 5 * q["heldout_mean_abs_radius_minus_1"]:
        small = [w for w in r["score_error_by_t"] if w["t"] <= 0.03]
        tiny = [w for w in r["score_error_by_t"] if w["t"] <= 0.003]
        lines += ["", "**Known limit.** The samples are far less sharp than the data (mean |radius − 1| "
                  f"{q['mean_abs_radius_minus_1']:.3f} against {q['heldout_mean_abs_radius_minus_1']:.3f}): at "
                  f"t ≤ 0.03 the model's radial error is {min(w['radial_err_rms'] for w in small):.2f}–"
                  f"{max(w['radial_err_rms'] for w in small):.2f} of a radial target of about 1, i.e. it has learned "
                  "little of the pull back to the sphere at small noise, and at t ≤ 0.003 its out-of-subspace error "
                  f"is {min(w['out_of_plane_err_rms'] / w['target_rms'] for w in tiny):.0%}–"
                  f"{max(w['out_of_plane_err_rms'] / w['target_rms'] for w in tiny):.0%} of the whole target "
                  f"(after {r['config']['steps']} steps). Its tangential error is small at every t and the samples "
                  "cover the sphere evenly (above)."]
    if r["plot"]:
        lines += ["", f"![samples]({os.path.basename(r['plot'])})"]
    with open(os.path.join(MODEL_DIR, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def sample_summary(name, q):
    if name == "sphere16":
        return (f"mean abs(radius − 1) {q['mean_abs_radius_minus_1']:.4f} (data: "
                f"{q['heldout_mean_abs_radius_minus_1']:.4f}), out-of-subspace norm "
                f"{q['mean_out_of_subspace_norm']:.3f}")
    if name == "digits_unet":
        return (f"distance to nearest training image {q['sample_nn_mean']:.2f} (held-out images: "
                f"{q['heldout_nn_mean']:.2f}), near-copies (< 0.5) {q['sample_near_copy_frac']:.3f} "
                f"(held-out: {q['heldout_near_copy_frac']:.3f})")
    if name in ("moons", "moons_relu"):
        return f"distance to nearest training point {q['sample_nn_mean']:.4f} (held-out data: {q['heldout_nn_mean']:.4f})"
    if name == "circle16":
        return (f"mean abs(radius − 1) {q['mean_abs_radius_minus_1']:.4f} (data: "
                f"{q['heldout_mean_abs_radius_minus_1']:.4f}), out-of-plane norm {q['mean_out_of_plane_norm']:.3f}")
    return (f"distance to nearest training image {q['sample_nn_mean']:.2f} (between training images: "
            f"{q['train_loo_nn_mean']:.2f}), no near-copies")


def readme_row(name, r):
    c = r["config"]
    if r.get("kind") == "unet":
        layers = (f"U-Net 1×8×8, channels {c['channels'][0]}/{c['channels'][1]} at 8×8/4×4, GroupNorm + SiLU "
                  f"residual blocks, attention at 4×4; ε output")
        data = f"`digits.npy` [{r['n_train']} + {r['n_heldout']} held out, 64]"
        file = f"{name}.onnx"
    else:
        layers = (f"{c['dim']}+{c['embed_dim']} → {' → '.join(map(str, c['hidden']))} → {c['dim']}, "
                  f"{'ReLU' if c['act'] == 'relu' else 'SiLU'}")
        data = f"`{c.get('data', name)}.npy` [{r['n_train']}, {c['dim']}]"
        file = f"{name}.safetensors"
    threads = c.get("threads", THREADS)
    return (f"| [`{name}`]({name}.md) | {c['dim']} | {data} | {layers} | {r['params']:,} | {r['final_loss']:.4f} | "
            f"{r['eval_loss_ema']:.4f} ({r['eval_on']}) | {r['train_seconds']:.0f} s ({threads}) | `{file}` "
            f"{r['file_bytes'] / 1e6:.2f} MB | {sample_summary(name, r['quality'])} |")


def write_readme():
    rows = []
    for name in CONFIGS:
        p = os.path.join(RESULT_DIR, f"{name}.json")
        if not os.path.exists(p):
            continue
        with open(p) as f:
            rows.append(readme_row(name, json.load(f)))
    text = """# Trained score models

Small score models trained by denoising score matching on real data, for trying scorelens on something that
is not random weights. All use Song's VE schedule with sigma = 25 (`schedule = ve-song`). Each model has a card
(`<name>.md`) with the data, the settings, the losses, the time it took and sample-quality figures; the training
data are in `assets/data/`. Everything is made by one seeded script, one command per model:

    /usr/bin/python3 tools/train/train.py --model moons|circle16|digits|moons_relu|sphere16|digits_unet

| model | D | data (`assets/data/`) | network | params | final train loss | eval loss | train time (torch threads) | file | Euler–Maruyama samples (500; 300 for the U-Net) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
""" + "\n".join(rows) + """

The train times of `moons_relu`, `sphere16` and `digits_unet` were measured with one torch thread while the
2-core machine ran other jobs (15-minute load average about 14), so they are several times the unloaded times
(`moons_relu`, the `moons` network with ReLU, took 1968 s there against 32 s for `moons` on an idle machine).

Losses are Song's DSM loss (sum over dimensions, mean over points, t ~ U(1e-5, 1); for the U-Net the same loss
written as |ε̂ − z|²); the eval loss is that of the exported EMA weights with fixed, seeded noise. Each card also
tabulates the model's error against the exact score of the smoothed training set at t = 0.001 … 1: moons and
circle16 are accurate (error ≲ 0.25 of the noise) from t ≈ 0.003 up; below that, and for digits below t ≈ 0.1,
the models are much less sharp than the data (for digits the reference there is a memorising score, so part of
that gap is by design).

Which model for what:
- `moons`, `circle16`, `sphere16`: known manifolds (a 2-d data set; a circle in a 2-plane of R^16; a 2-sphere in
  a 3-space of R^16), with the frame and the generating coordinates in `assets/data/`, so tangent and normal
  spaces are known at every point (`sphere16.md` says how to compute them).
- `moons_relu`: the moons network with ReLU units, a piecewise-linear map of x at each t (linear regions).
- `digits` (MLP on the flattened images) and `digits_unet` (a convolutional U-Net on [1, 8, 8] images, ONNX,
  with 297 images held out for the nearest-training-image distances and a sample grid `digits_unet_samples.png`).

## Format

Each `<name>.safetensors` is a plain safetensors file (8-byte little-endian header length, JSON header, raw
little-endian float32 tensors) in the `arch = mlp` layout of `/work/shared/spec/model-format.md`: `embed.W` [E/2]
(the fixed Gaussian Fourier frequencies), `layers.0.weight` [H, D+E] and `layers.0.bias` [H], ..., and the last
`layers.L.weight` [D, H], `layers.L.bias` [D], weights stored [out, in] as `torch.nn.Linear` does. The network
computes e = [sin(2π W t), cos(2π W t)], h = concat(x, e), the activation (`act`: SiLU, or ReLU for
`moons_relu`) after every layer but the last, and score(x, t) = out / std(t) with
std(t) = sqrt((25^(2t) − 1) / (2 ln 25)). The `__metadata__` map says so in strings: `format=scorelens`,
`arch=mlp`, `schedule=ve-song`, `sigma=25.0`, `output_scale=inv_std`, `act`, `dim`, `hidden` (a JSON list),
`embed_dim`.

`digits_unet.onnx` is an ONNX graph (PyTorch's TorchScript exporter, opset 17) read by scorelens's graph engine
(`docs/networks.md`): inputs x [B, 1, 8, 8] and t [B], output ε̂ [B, 1, 8, 8], metadata
`scorelens.parameterization=epsilon`, `scorelens.time_input=t`, `scorelens.schedule=ve-song`,
`scorelens.sigma=25.0`, so score = −ε̂ / std(t).

`tools/train/reference/` holds inputs and float64 PyTorch outputs for each file (for the U-Net also J·v and
full Jacobians), `tools/train/check_export.py` compares them with a NumPy forward pass over the safetensors
files and with the scorelens binary (`--engine`), and `tests/assets.rs` checks the new models' files with the
library on every test run.
"""
    with open(os.path.join(MODEL_DIR, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=list(CONFIGS) + ["all"])
    ap.add_argument("--steps", type=int, default=None, help="override the number of steps (for quick trials)")
    ap.add_argument("--cache", default=None, metavar="DIR",
                    help="keep the trained state in DIR/<name>.pt and reuse it when the config is unchanged (the "
                         "training is deterministic, so this skips recomputing it, e.g. after a failed export)")
    ap.add_argument("--engine-samples", type=int, default=0, metavar="N",
                    help="digits_unet: also draw N samples with `scorelens sample` on the ONNX file (slow on a "
                         "software Vulkan driver)")
    ap.add_argument("--cards-only", action="store_true",
                    help="rewrite the cards and README from tools/train/results/*.json without training")
    args = ap.parse_args()
    names = list(CONFIGS) if args.model == "all" else [args.model]
    if args.cards_only:
        for name in names:
            with open(os.path.join(RESULT_DIR, f"{name}.json")) as f:
                r = json.load(f)
            if r.get("kind") == "unet":
                from unet_pipeline import write_unet_card
                write_unet_card(r)
            else:
                write_card(r)
        write_readme()
        return
    for name in names:
        if args.steps is not None:
            CONFIGS[name]["steps"] = args.steps
        if args.engine_samples and CONFIGS[name].get("kind") == "unet":
            import unet_pipeline
            unet_pipeline.ENGINE_SAMPLES = args.engine_samples
        run(name, args.cache)


if __name__ == "__main__":
    main()
