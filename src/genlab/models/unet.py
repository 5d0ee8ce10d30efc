"""A small UNet noise predictor eps(x_t, t) for images, after Ho et al. 2020 (appendix B) without attention.

  x (B, C, H, W) -> 3x3 conv -> per level: ResBlock (+ skip saved), halve (all but the last level)
                 -> ResBlock in the middle
                 -> per level, deepest first: ResBlock on [h, skip] concatenated, double (all but the top)
                 -> GroupNorm, SiLU, 3x3 conv -> (B, C, H, W)
The timestep enters every ResBlock through a sinusoidal embedding (Vaswani et al. 2017, as in Ho et al.)
and an MLP. One entry of `channels` per level: the image is halved len(channels) - 1 times, so its height
and width must be multiples of 2^(len(channels) - 1); other sizes are rejected when the net is built.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer timesteps -> (B, dim) sinusoids at geometric frequencies 1 .. 1/10000 (Vaswani et al. sec. 3.5);
    an odd dim gets a last column of zeros."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / max(half, 1))  # (half,)
    angles = t.float()[:, None] * frequencies[None, :]  # (B, half)
    return F.pad(torch.cat([angles.sin(), angles.cos()], dim=1), (0, dim % 2))


def time_mlp(embedding_dim: int, out_dim: int) -> nn.Sequential:
    """The sinusoids of t turned into a learned embedding (Ho et al.'s two dense layers)."""
    return nn.Sequential(nn.Linear(embedding_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))


def group_norm(channels: int) -> nn.GroupNorm:
    # Ho et al. use 32 groups on 128+ channels; a small net gets up to 8, always a divisor of the channels.
    return nn.GroupNorm(math.gcd(8, channels), channels)


def check_unet_shape(data_shape: tuple[int, ...], channels: tuple[int, ...]) -> None:
    if len(data_shape) != 3:
        raise ValueError(f"architecture=unet needs images (C, H, W), but the data has shape {data_shape}: "
                         "use architecture=mlp")
    if not channels:
        raise ValueError("unet_channels needs at least one entry (one per resolution level)")
    if not unet_fits(data_shape, channels):
        factor = 2 ** (len(channels) - 1)
        raise ValueError(
            f"the unet halves the image {len(channels) - 1} times (one fewer than the {len(channels)} entries of "
            f"unet_channels), so height and width must be multiples of {factor}, but the images are "
            f"{data_shape[1]}x{data_shape[2]}: drop a level from unet_channels, resize the images "
            f"(--set image_size=...), or use architecture=mlp")


def unet_fits(data_shape: tuple[int, ...], channels: tuple[int, ...]) -> bool:
    if len(data_shape) != 3 or not channels:
        return False
    factor = 2 ** (len(channels) - 1)
    return data_shape[1] % factor == 0 and data_shape[2] % factor == 0 and min(data_shape[1:]) >= factor


class ResBlock(nn.Module):
    """norm, SiLU, conv, + time embedding (one shift per channel), norm, SiLU, conv; plus the input
    (through a 1x1 conv when the width changes). Ho et al.'s block, without dropout."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int):
        super().__init__()
        self.conv1 = nn.Sequential(group_norm(in_channels), nn.SiLU(),
                                   nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.time = nn.Linear(time_dim, out_channels)
        self.conv2 = nn.Sequential(group_norm(out_channels), nn.SiLU(),
                                   nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x) + self.time(F.silu(time))[:, :, None, None]  # (B, C_out, H, W)
        return self.skip(x) + self.conv2(h)


class UNet(nn.Module):
    """(B, C, H, W) noisy images and (B,) timesteps -> (B, C, H, W) predicted noise."""

    def __init__(self, data_shape: tuple[int, ...], channels: tuple[int, ...]):
        super().__init__()
        check_unet_shape(data_shape, channels)
        image_channels = data_shape[0]
        self.embedding_dim = channels[0]
        time_dim = 4 * channels[0]  # Ho et al.: 4x the base width
        self.time = time_mlp(self.embedding_dim, time_dim)
        self.input = nn.Conv2d(image_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()  # stride-2 convs, one between each pair of levels
        width = channels[0]
        for i, c in enumerate(channels):
            self.down.append(ResBlock(width, c, time_dim))
            width = c
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.middle = ResBlock(width, width, time_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()  # nearest-neighbour doubling and a 3x3 conv, deepest level first
        for i in reversed(range(len(channels))):
            self.up.append(ResBlock(width + channels[i], channels[i], time_dim))  # input: [h, skip of level i]
            width = channels[i]
            if i > 0:
                self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                   nn.Conv2d(width, width, 3, padding=1)))
        self.output = nn.Sequential(group_norm(width), nn.SiLU(), nn.Conv2d(width, image_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = self.time(timestep_embedding(t, self.embedding_dim))  # (B, time_dim)
        h = self.input(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, time)
            skips.append(h)  # (B, channels[i], H / 2^i, W / 2^i)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle(h, time)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), time)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.output(h)
