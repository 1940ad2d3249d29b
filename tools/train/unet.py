"""The convolutional U-Net score model on the 8x8 digits (`digits_unet`), trained and exported by train.py.

A scaled-down DDPM / Song-ScoreNet U-Net for x [B, 1, 8, 8] in [0, 1], with c1 / c2 channels at 8x8 / 4x4
(train.py's digits_unet config: 16 / 32, E = 64, sized to train in minutes on a shared 2-core CPU):
    Gaussian Fourier features of t (fixed W, scale 16) -> Linear -> SiLU -> Linear: the time embedding e (E)
    c_in(t) = 1 / sqrt(std(t)^2 + 0.25) scales the input (so the first convolution sees data of size about 1 at
              every noise level; the ve-song std reaches 9.8 at t = 1)
    8x8, c1 channels:  conv 3x3 (1 -> c1), residual block
    4x4, c2 channels:  conv 3x3 stride 2 (c1 -> c2), residual block, residual block, self-attention (16 tokens,
                       one head), residual block
    up:                residual block on concat(h, skip 4x4) (2 c2 -> c2), nearest 2x upsampling + conv 3x3
                       (c2 -> c1), residual block on concat(h, skip 8x8) (2 c1 -> c1), GroupNorm, SiLU, conv 3x3 (c1 -> 1)
    residual block:    GroupNorm(8) -> SiLU -> conv 3x3 -> + Linear(e) per channel -> GroupNorm(8) -> SiLU -> conv 3x3,
                       plus the input (through a 1x1 conv where the channel count changes)
The network outputs the noise estimate eps_hat (parameterization = epsilon): score(x, t) = -eps_hat(x, t) / std(t),
trained by denoising score matching with the ve-song schedule (sigma = 25) as the MLPs are, which is the same loss:
|eps_hat(x0 + std z, t) - z|^2 = |score * std + z|^2.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SIGMA = 25.0
SIGMA_DATA = 0.5  # the size c_in assumes for the clean data (pixel std of the digits is 0.37 about a mean of 0.31)


def marginal_std(t):
    """std(t) = sqrt((sigma^(2t) - 1) / (2 ln sigma)) of the ve-song schedule."""
    return torch.sqrt((SIGMA ** (2 * t) - 1) / (2 * math.log(SIGMA)))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, embed_dim, groups=8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(embed_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """One-head self-attention over the pixels (DDPM's AttnBlock)."""

    def __init__(self, channels, groups=8):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, c, h * w)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        attn = torch.softmax(torch.matmul(q.transpose(1, 2), k) / math.sqrt(c), dim=-1)  # [b, hw, hw]
        out = torch.matmul(v, attn.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj(out)


class DigitsUNet(nn.Module):
    def __init__(self, c1=32, c2=64, embed_dim=128, fourier_scale=16.0):
        super().__init__()
        self.fourier_W = nn.Parameter(torch.randn(embed_dim // 2) * fourier_scale, requires_grad=False)
        self.embed = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.conv_in = nn.Conv2d(1, c1, 3, padding=1)
        self.down1 = ResBlock(c1, c1, embed_dim)
        self.downsample = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.down2 = ResBlock(c2, c2, embed_dim)
        self.mid1 = ResBlock(c2, c2, embed_dim)
        self.attn = SelfAttention(c2)
        self.mid2 = ResBlock(c2, c2, embed_dim)
        self.up2 = ResBlock(2 * c2, c2, embed_dim)
        self.upconv = nn.Conv2d(c2, c1, 3, padding=1)
        self.up1 = ResBlock(2 * c1, c1, embed_dim)
        self.norm_out = nn.GroupNorm(8, c1)
        self.conv_out = nn.Conv2d(c1, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # the network starts at eps_hat = 0 (DDPM's zero-initialised last layer)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, t):
        """eps_hat(x, t) for x [B, 1, 8, 8], t [B]."""
        proj = 2 * math.pi * t[:, None] * self.fourier_W[None, :]
        e = self.embed(torch.cat([torch.sin(proj), torch.cos(proj)], dim=1))
        c_in = 1.0 / torch.sqrt(marginal_std(t) ** 2 + SIGMA_DATA ** 2)
        h = self.conv_in(x * c_in[:, None, None, None])
        h1 = self.down1(h, e)
        h2 = self.down2(self.downsample(h1), e)
        h = self.mid2(self.attn(self.mid1(h2, e)), e)
        h = self.up2(torch.cat([h, h2], dim=1), e)
        h = self.upconv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up1(torch.cat([h, h1], dim=1), e)
        return self.conv_out(F.silu(self.norm_out(h)))


class ScoreOf(nn.Module):
    """score(x, t) = -eps_hat(x, t) / std(t) of an epsilon network, on flattened x [B, 64] (for the samplers and
    the Jacobians)."""

    def __init__(self, eps_net):
        super().__init__()
        self.eps_net = eps_net

    def forward(self, x, t):
        eps = self.eps_net(x.reshape(-1, 1, 8, 8), t).reshape(x.shape[0], -1)
        return -eps / marginal_std(t)[:, None]
