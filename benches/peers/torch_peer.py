#!/usr/bin/env python3
"""PyTorch peer of `scorelens bench`: the same workloads (matmul, MLP forward, Song U-Net forward, MLP Jacobians,
U-Net J·v) in PyTorch on the same device, in the same run, with the ratio of the two.

    python3 benches/peers/torch_peer.py [--scorelens target/release/scorelens] [--device cuda|cpu] [--quick]

Jacobians use torch.func (functorch on PyTorch 1.x): vmap over jacfwd and over jacrev, the better of the two
reported for each of scorelens' modes' rows; the U-Net J·v uses torch.func.jvp (exact forward mode), beside
scorelens' finite differences until its exact U-Net products land.

Shapes follow `scorelens bench` (src/cli/bench.rs); the U-Net is the tutorial's ScoreNet (analyses.md §6) with the
fixture's weights when --model is given. Times are medians of repeats after a warm-up, wall clock, with
torch.cuda.synchronize() on GPUs. ratio = PyTorch time / scorelens time (above 1: scorelens is faster).
"""
import argparse
import json
import math
import os
import struct
import subprocess
import time

import numpy as np
import torch
import torch.nn as nn

try:
    from torch.func import jacfwd, jacrev, jvp, vmap
except ImportError:  # PyTorch 1.13: the same API as functorch
    from functorch import jacfwd, jacrev, jvp, vmap


class GaussianFourierProjection(nn.Module):
    def __init__(self, embed_dim, scale=30.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embed_dim // 2) * scale, requires_grad=False)

    def forward(self, x):
        x_proj = x[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(x_proj), torch.cos(x_proj)], dim=-1)


class Dense(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.dense = nn.Linear(input_dim, output_dim)

    def forward(self, x):
        return self.dense(x)[..., None, None]


class ScoreNet(nn.Module):
    """Song et al.'s tutorial ScoreNet, as analyses.md §6 describes it."""

    def __init__(self, sigma=25.0, channels=(32, 64, 128, 256), embed_dim=256):
        super().__init__()
        self.sigma = sigma
        self.embed = nn.Sequential(GaussianFourierProjection(embed_dim), nn.Linear(embed_dim, embed_dim))
        self.conv1 = nn.Conv2d(1, channels[0], 3, stride=1, bias=False)
        self.dense1 = Dense(embed_dim, channels[0])
        self.gnorm1 = nn.GroupNorm(4, num_channels=channels[0])
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3, stride=2, bias=False)
        self.dense2 = Dense(embed_dim, channels[1])
        self.gnorm2 = nn.GroupNorm(32, num_channels=channels[1])
        self.conv3 = nn.Conv2d(channels[1], channels[2], 3, stride=2, bias=False)
        self.dense3 = Dense(embed_dim, channels[2])
        self.gnorm3 = nn.GroupNorm(32, num_channels=channels[2])
        self.conv4 = nn.Conv2d(channels[2], channels[3], 3, stride=2, bias=False)
        self.dense4 = Dense(embed_dim, channels[3])
        self.gnorm4 = nn.GroupNorm(32, num_channels=channels[3])
        self.tconv4 = nn.ConvTranspose2d(channels[3], channels[2], 3, stride=2, bias=False)
        self.dense5 = Dense(embed_dim, channels[2])
        self.tgnorm4 = nn.GroupNorm(32, num_channels=channels[2])
        self.tconv3 = nn.ConvTranspose2d(channels[2] + channels[2], channels[1], 3, stride=2, bias=False, output_padding=1)
        self.dense6 = Dense(embed_dim, channels[1])
        self.tgnorm3 = nn.GroupNorm(32, num_channels=channels[1])
        self.tconv2 = nn.ConvTranspose2d(channels[1] + channels[1], channels[0], 3, stride=2, bias=False, output_padding=1)
        self.dense7 = Dense(embed_dim, channels[0])
        self.tgnorm2 = nn.GroupNorm(32, num_channels=channels[0])
        self.tconv1 = nn.ConvTranspose2d(channels[0] + channels[0], 1, 3, stride=1)
        self.act = lambda x: x * torch.sigmoid(x)

    def marginal_prob_std(self, t):
        return torch.sqrt((self.sigma ** (2 * t) - 1.0) / 2.0 / math.log(self.sigma))

    def forward(self, x, t):
        embed = self.act(self.embed(t))
        h1 = self.act(self.gnorm1(self.conv1(x) + self.dense1(embed)))
        h2 = self.act(self.gnorm2(self.conv2(h1) + self.dense2(embed)))
        h3 = self.act(self.gnorm3(self.conv3(h2) + self.dense3(embed)))
        h4 = self.act(self.gnorm4(self.conv4(h3) + self.dense4(embed)))
        h = self.act(self.tgnorm4(self.tconv4(h4) + self.dense5(embed)))
        h = self.act(self.tgnorm3(self.tconv3(torch.cat([h, h3], dim=1)) + self.dense6(embed)))
        h = self.act(self.tgnorm2(self.tconv2(torch.cat([h, h2], dim=1)) + self.dense7(embed)))
        h = self.tconv1(torch.cat([h, h1], dim=1))
        return h / self.marginal_prob_std(t)[:, None, None, None]


def read_safetensors(path):
    """A minimal safetensors reader (float32 only), so the peer needs no extra package."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(data[8 + n + start:8 + n + end], dtype=np.float32).reshape(info["shape"])
        tensors[name.removeprefix("module.")] = torch.from_numpy(array.copy())
    return tensors


def chunk_sizes(transform):
    """The chunk sizes to try: torch.func's jacfwd/jacrev take one from PyTorch 2.0 on."""
    import inspect

    if "chunk_size" in inspect.signature(transform).parameters:
        return [None, 16, 64, 196]
    return [None]


def unet(model_path, device):
    net = ScoreNet()
    if os.path.exists(model_path):
        net.load_state_dict(read_safetensors(model_path))
    return net.to(device).eval()


def median_seconds(fn, sync, budget):
    fn()
    sync()
    times = []
    started = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - started < budget and len(times) < 100):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "..", "..")
    parser.add_argument("--scorelens", default=os.path.join(root, "target", "release", "scorelens"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default=os.path.join(root, "tests", "fixtures", "song_unet", "model.safetensors"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", default="", help="passed to `scorelens bench --only` (comma-separated)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    budget = 0.3 if args.quick else 2.0

    command = [args.scorelens, "bench", "--json"] + (["--quick"] if args.quick else []) + (["--only", args.only] if args.only else [])
    ours = {item["name"]: item for item in json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["items"]}

    widths = [128, 512, 512, 512, 64]
    mlp_layers = []
    for i, o in zip(widths[:-1], widths[1:]):
        mlp_layers += [nn.Linear(i, o), nn.SiLU()]
    mlp = nn.Sequential(*mlp_layers[:-1]).to(device)
    embedding = torch.randn(64, device=device)

    def mlp_score(x):
        return mlp(torch.cat([x, embedding]))

    results = []
    with torch.no_grad():
        for name in ours:
            if name.startswith("matmul"):
                m, n, k = (int(v) for v in name.split()[1].split("x"))
                a = torch.randn(m, k, device=device)
                w = torch.randn(n, k, device=device)
                results.append((name, median_seconds(lambda: a @ w.T, sync, budget)))
            elif name.startswith("scms sweep"):
                # One SCMS sweep in PyTorch on the same noisy circle (for timing: above D = 8 it forms the
                # covariance as E[yyᵀ] − mmᵀ, cheaper and less accurate than scorelens' centred pass).
                d, n, b = (int(p[1:]) for p in name.split()[2:5])
                def circle(count, phase):
                    a = torch.arange(count, dtype=torch.float32) * 2.399 + phase
                    i = torch.arange(count, dtype=torch.float32)
                    rows = torch.zeros(count, d)
                    rows[:, 0] = torch.cos(a) * (1 + 0.02 * torch.sin(i * 0.7))
                    rows[:, 1] = torch.sin(a) * (1 + 0.02 * torch.cos(i * 1.3))
                    return rows.to(device)
                data, x = circle(n, 0.0), circle(b, 0.5) * 1.1
                var = 0.1 ** 2

                def sweep():
                    out = []
                    for block in torch.split(x, 256):
                        w = torch.softmax(-torch.cdist(block, data) ** 2 / (2 * var), dim=1)
                        m = w @ data
                        centred = data[None, :, :] - m[:, None, :] if d <= 8 else None
                        if centred is not None:
                            cov = torch.einsum("bn,bni,bnj->bij", w, centred, centred)
                        else:
                            cov = torch.einsum("bn,ni,nj->bij", w, data, data) - m[:, :, None] * m[:, None, :]
                        h = cov / var ** 2 - torch.eye(d, device=device) / var
                        _, vectors = torch.linalg.eigh(h)
                        e = vectors[:, :, : d - 1]
                        step = torch.einsum("bij,bkj,bk->bi", e, e, m - block)
                        out.append(block + step)
                    return torch.cat(out)

                results.append((name, median_seconds(sweep, sync, budget)))
            elif " spectrum dense" in name or " top32 rsvd" in name:
                # PyTorch's best route to the same values: the Jacobians by vmap(jacrev) (jacfwd too for the MLP),
                # then torch.linalg.svdvals (dense) or torch.svd_lowrank(q = 40, niter = 4) (top 32).
                points = int(name.split("b")[-1])
                if name.startswith("mlp"):
                    x = torch.randn(points, 64, device=device)
                    jac = lambda: vmap(jacrev(mlp_score))(x)
                else:
                    net = unet(args.model, device)
                    x = torch.rand(points, 1, 28, 28, device=device)
                    t = torch.full((1,), 0.5, device=device)
                    one = lambda image: net(image[None], t)[0].reshape(-1)
                    # vmap(jacrev) over all points at once holds points × 784 backward passes: in chunks of 8
                    # points (a whole batch of 128 does not fit a GPU's memory).
                    per_chunk = vmap(jacrev(lambda image: one(image)))
                    jac = lambda: torch.cat([per_chunk(c) for c in torch.split(x, 8)]).reshape(points, 784, 784)
                if "dense" in name:
                    work = lambda: torch.linalg.svdvals(jac())
                else:
                    work = lambda: [torch.svd_lowrank(j, q=40, niter=4) for j in jac()]
                results.append((name, median_seconds(work, sync, budget)))
            elif name.startswith("lyapunov step"):
                # The same step: score, J·Q by vmap over torch.func.jvp, the ODE-Euler update, torch.linalg.qr.
                parts = name.split()
                trajectories, k = int(parts[3][1:]), int(parts[4][1:])
                if parts[2] == "mlp":
                    x = torch.randn(trajectories, 64, device=device)
                    score = lambda y: vmap(mlp_score)(y)
                else:
                    net = unet(args.model, device)
                    x = torch.rand(trajectories, 1, 28, 28, device=device)
                    t = torch.full((trajectories,), 0.5, device=device)
                    score = lambda y: net(y, t)
                q = torch.linalg.qr(torch.randn(trajectories, x[0].numel(), k, device=device))[0]
                dt = 0.01

                def lyapunov_step():
                    s = score(x)
                    tangents = q.transpose(1, 2).reshape(trajectories, k, *x.shape[1:])
                    jq = vmap(lambda v: jvp(score, (x,), (v,))[1], in_dims=1, out_dims=1)(tangents)
                    new_q = tangents + dt * jq
                    x_next = x + dt * s
                    qr = torch.linalg.qr(new_q.reshape(trajectories, k, -1).transpose(1, 2))
                    return x_next, qr[0], torch.log(torch.abs(torch.diagonal(qr[1], dim1=1, dim2=2)))

                results.append((name, median_seconds(lyapunov_step, sync, budget)))
            elif name.startswith("mlp jacobian"):
                points = int(name.split("b")[-1])
                x = torch.randn(points, 64, device=device)
                best = min(
                    median_seconds(lambda: vmap(jacfwd(mlp_score))(x), sync, budget),
                    median_seconds(lambda: vmap(jacrev(mlp_score))(x), sync, budget),
                )
                results.append((name, best))
            elif name.startswith("mlp"):
                rows = int(name.split("b")[-1])
                h0 = torch.randn(rows, 128, device=device)
                results.append((name, median_seconds(lambda: mlp(h0), sync, budget)))
            elif name.startswith("unet jacobian"):
                net = unet(args.model, device)
                x = torch.rand(1, 1, 28, 28, device=device)
                t = torch.full((1,), 0.5, device=device)

                def one(image):
                    return net(image[None], t)[0]

                candidates = []
                for transform in (jacfwd, jacrev):
                    for chunk in chunk_sizes(transform):
                        jac = transform(one, chunk_size=chunk) if chunk else transform(one)
                        candidates.append(median_seconds(lambda: vmap(jac)(x), sync, budget))
                results.append((name, min(candidates)))
            elif name.startswith("unet jvp exact"):
                # K exact J·v per image: vmap over the tangents of torch.func.jvp (one batched forward-mode pass).
                images = int(name.split("b")[-1])
                k = int(name.split()[3][1:])
                net = unet(args.model, device)
                x = torch.rand(images, 1, 28, 28, device=device)
                v = torch.randn(k, images, 1, 28, 28, device=device)
                t = torch.full((images,), 0.5, device=device)
                work = lambda: vmap(lambda w: jvp(lambda y: net(y, t), (x,), (w,))[1])(v)
                results.append((name, median_seconds(work, sync, budget)))
            elif name.startswith("unet jvp"):
                images = int(name.split("b")[-1])
                net = unet(args.model, device)
                x = torch.rand(images, 1, 28, 28, device=device)
                v = torch.randn_like(x)
                t = torch.full((images,), 0.5, device=device)
                results.append((name, median_seconds(lambda: jvp(lambda y: net(y, t), (x,), (v,)), sync, budget)))
            elif name.startswith("unet"):
                images = int(name.split("b")[-1])
                net = unet(args.model, device)
                x = torch.rand(images, 1, 28, 28, device=device)
                t = torch.full((images,), 0.5, device=device)
                results.append((name, median_seconds(lambda: net(x, t), sync, budget)))

    print(f"PyTorch {torch.__version__} on {args.device} ({torch.get_num_threads()} threads) vs scorelens on its adapter")
    print(f"{'item':<32} {'scorelens ms':>13} {'PyTorch ms':>11} {'scorelens GFLOP/s':>18} {'PyTorch GFLOP/s':>16} {'ratio':>7}")
    for name, seconds in results:
        mine = ours[name]
        torch_gflops = mine["gflop"] / seconds
        print(f"{name:<32} {mine['seconds'] * 1e3:13.3f} {seconds * 1e3:11.3f} {mine['gflops_per_s']:18.2f} {torch_gflops:16.2f} {seconds / mine['seconds']:7.3f}")


if __name__ == "__main__":
    main()
