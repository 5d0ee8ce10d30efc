"""Blocks that several model families use identically: MLPs, a conv encoder/decoder pair, the prior's latent
draws, latent-space interpolation, the EMA update, and the training pieces (Adam, gradient accumulation over
micro-batches, one gradient step on model.loss for the families trained on one loss). Architectures follow from
the data shape; a shape a net cannot honour is rejected here with a message, never left to an opaque shape error
deep inside torch."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

# Upper bounds on the settings every family shares: far beyond what a run here wants, low enough that no
# setting alone asks for more memory than a machine has (a 16384-wide linear layer is 1 GiB of float32).
MAX_WIDTH = 16384  # latent_dim and MLP widths
MAX_CHANNELS = 2048  # conv and U-Net widths
MAX_DATA_SIZE = 65536  # each entry of data_shape: channels, height, width, or a point's dimension


def mlp(sizes: list[int], *, final_activation: nn.Module | None = None) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if final_activation is not None:
        layers.append(final_activation)
    return nn.Sequential(*layers)


def conv_fits(data_shape: tuple[int, ...], conv_channels: tuple[int, ...]) -> bool:
    """Whether a stack of stride-2 convs (one per entry of conv_channels) can halve this image exactly."""
    if len(data_shape) != 3 or not conv_channels:
        return False
    factor = 2 ** len(conv_channels)
    _, height, width = data_shape
    return height % factor == 0 and width % factor == 0 and min(height, width) >= factor


MIN_CONV_WIDTH = 8  # the narrowest block conv_channels_for gives


def conv_channels_for(data_shape: tuple[int, ...], deepest: int) -> tuple[int, ...]:
    """The conv widths when a config leaves conv_channels empty: as many stride-2 blocks as take the image down to
    a feature map of about 4x4 (DCGAN's rule: 64x64 -> 32 -> 16 -> 8 -> 4, four blocks), and never fewer than two
    (28x28 -> 7x7 and 8x8 -> 2x2, as before the rule, so their nets and checkpoints are unchanged).

    The deepest block has `deepest` channels and each one above it half as many (DCGAN's doubling read from the
    bottom), at least MIN_CONV_WIDTH. Doubling from the top instead (DCGAN's 64-128-256-512) costs 2x a step of
    the old 2-block 64x64 net, whose 16x16 map fed a 32k-wide linear layer; halving keeps the wide layers where
    the maps are small: 64x64 RGB GAN, (16, 32, 64, 128), benchmarks/gan_throughput.py --size 64.
    Points and images that do not halve get the two-block default, (deepest / 2, deepest).
    """
    blocks = 2
    if len(data_shape) == 3:
        height, width = data_shape[1:]
        # one more block while the image still halves exactly and the map it leaves would stay at least 4x4
        while (height % 2 ** (blocks + 1) == 0 and width % 2 ** (blocks + 1) == 0
               and min(height, width) // 2 ** blocks > 4):
            blocks += 1
    return tuple(max(MIN_CONV_WIDTH, deepest // 2 ** (blocks - 1 - i)) for i in range(blocks))


def check_conv_shape(data_shape: tuple[int, ...], conv_channels: tuple[int, ...]) -> None:
    if len(data_shape) != 3:
        raise ValueError(f"architecture=conv needs images (C, H, W), but the data has shape {data_shape}: "
                         "use architecture=mlp")
    if not conv_fits(data_shape, conv_channels):
        factor = 2 ** len(conv_channels)
        raise ValueError(
            f"architecture=conv halves the image {len(conv_channels)} times, so height and width must be "
            f"multiples of {factor}, but the images are {data_shape[1]}x{data_shape[2]}: resize them "
            f"(--set image_size=...), change conv_channels, or use architecture=mlp")


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_features): stride-2 4x4 convs, each halving H and W, then a linear layer."""

    def __init__(self, data_shape: tuple[int, ...], conv_channels: tuple[int, ...], out_features: int):
        super().__init__()
        check_conv_shape(data_shape, conv_channels)
        channels, height, width = data_shape
        layers: list[nn.Module] = []
        for c in conv_channels:
            layers += [nn.Conv2d(channels, c, kernel_size=4, stride=2, padding=1), nn.ReLU()]
            channels = c
        factor = 2 ** len(conv_channels)
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(channels * (height // factor) * (width // factor), out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    """(B, in_features) -> (B, C, H, W): the mirror of ConvEncoder with transposed convs; no output activation."""

    def __init__(self, data_shape: tuple[int, ...], conv_channels: tuple[int, ...], in_features: int):
        super().__init__()
        check_conv_shape(data_shape, conv_channels)
        channels, height, width = data_shape
        factor = 2 ** len(conv_channels)
        self.start_shape = (conv_channels[-1], height // factor, width // factor)
        self.linear = nn.Linear(in_features, math.prod(self.start_shape))
        layers: list[nn.Module] = [nn.ReLU()]
        widths = [*reversed(conv_channels), channels]
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconvs(self.linear(z).view(-1, *self.start_shape))


def encoder_decoder(architecture: str, data_shape: tuple[int, ...], hidden_dims: tuple[int, ...],
                    conv_channels: tuple[int, ...], code_features: int, latent_dim: int):
    """An encoder (data -> code_features) and decoder (latent_dim -> data, flat or image) for an architecture."""
    if architecture == "conv":
        return (ConvEncoder(data_shape, conv_channels, code_features),
                ConvDecoder(data_shape, conv_channels, latent_dim))
    if architecture == "mlp":
        data_dim = math.prod(data_shape)
        encoder = nn.Sequential(nn.Flatten(), mlp([data_dim, *hidden_dims, code_features]))
        decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden_dims), data_dim]), nn.Unflatten(1, data_shape))
        return encoder, decoder
    raise ValueError(f"unknown architecture {architecture!r}: choose auto, mlp or conv")


def resolve_architecture(architecture: str, data_shape: tuple[int, ...], conv_channels: tuple[int, ...]) -> str:
    """'auto' -> conv for images a conv stack can halve exactly, mlp otherwise (points, tiny images)."""
    if architecture == "auto":
        return "conv" if conv_fits(data_shape, conv_channels) and min(data_shape[1:]) >= 8 else "mlp"
    if architecture == "conv":
        check_conv_shape(data_shape, conv_channels)
    elif architecture != "mlp":
        raise ValueError(f"unknown architecture {architecture!r}: choose auto, mlp or conv")
    return architecture


MAX_TRUNCATION = 10.0  # past 10 standard deviations a truncated normal is the normal itself in float32


def normal_latents(n: int, latent_dim: int, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None, truncation: float | None = None) -> torch.Tensor:
    """n draws of z ~ N(0, I), (n, latent_dim). With `truncation` t, each number is drawn from the normal truncated
    to [-t, t] instead: BigGAN's truncation trick (Brock et al. 2019, sec. 3.1), a smaller t trading variety for
    typical-looking samples. The truncated draw inverts the normal CDF on a uniform draw over [Phi(-t), Phi(t)],
    one draw per number however small t is (redrawing the numbers outside would loop longer as t shrinks)."""
    if truncation is None:
        return torch.randn(n, latent_dim, generator=generator, device=device)
    if not 0 < truncation <= MAX_TRUNCATION:  # also refuses NaN
        raise ValueError(f"truncation must be above 0 and at most {MAX_TRUNCATION:g}, got {truncation}")
    # float64: Phi(-t) for a small t is 0.5 minus a little, which float32 would round away
    low = torch.special.ndtr(torch.tensor(-truncation, dtype=torch.float64))
    u = torch.rand(n, latent_dim, generator=generator, device=device, dtype=torch.float64)
    z = torch.special.ndtri(low.to(u.device) + u * (1 - 2 * low.to(u.device)))
    return z.float().clamp(-truncation, truncation)  # float32 rounding may step just past t


def interpolate_latents(start: torch.Tensor, end: torch.Tensor, steps: int,
                        method: Literal["lerp", "slerp"] = "lerp") -> torch.Tensor:
    """(steps, D) points from start to end (both (D,)), straight (lerp) or along the great circle (slerp).

    slerp keeps the norm typical of a Gaussian latent, where a straight line passes near the origin,
    a region the prior rarely visits (White, "Sampling Generative Networks", 2016).
    """
    if steps < 2:
        raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
    t = torch.linspace(0, 1, steps, dtype=start.dtype, device=start.device)[:, None]
    if method not in ("lerp", "slerp"):
        raise ValueError(f"unknown interpolation method {method!r}: choose lerp or slerp")
    if method == "lerp" or start.numel() == 1:  # a 1-D latent has no circle to follow
        return (1 - t) * start + t * end
    cos_omega = torch.dot(start, end) / (start.norm() * end.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos_omega.clamp(-1, 1))
    if omega < 1e-4:  # nearly parallel: slerp's sin(omega) denominator vanishes, lerp is exact enough
        return (1 - t) * start + t * end
    if math.pi - omega < 1e-4:
        # Opposite points: every great circle through them is as short. Take the one through the axis
        # least aligned with start, and let the norm move linearly from |start| to |end|.
        unit = start / start.norm()
        axis = torch.zeros_like(start)
        axis[start.abs().argmin()] = 1
        side = axis - torch.dot(axis, unit) * unit
        side = side / side.norm()
        angle = t * math.pi
        radius = (1 - t) * start.norm() + t * end.norm()
        return radius * (torch.cos(angle) * unit + torch.sin(angle) * side)
    return (torch.sin((1 - t) * omega) * start + torch.sin(t * omega) * end) / torch.sin(omega)


@torch.no_grad()
def ema_update(average: nn.Module, current: nn.Module, decay: float, updates: torch.Tensor) -> None:
    """average <- d * average + (1 - d) * current for each parameter, d = min(decay, (1 + n) / (10 + n)) after
    n = `updates` earlier updates (TensorFlow's ExponentialMovingAverage warm-up: a short run's average forgets
    the random initial weights instead of keeping decay^steps of them); buffers (BatchNorm statistics, spectral
    norm's vectors) are copied; `updates` (a saved buffer, so resume is exact) goes up by one."""
    n = updates.item()
    d = min(decay, (1 + n) / (10 + n))
    # one fused op over all parameters (a loop of lerp_ cost 4x as much on a small GAN generator)
    torch._foreach_lerp_(list(average.parameters()), list(current.parameters()), 1 - d)
    for average_buffer, buffer in zip(average.buffers(), current.buffers(), strict=True):
        average_buffer.copy_(buffer)
    updates += 1


# --- training pieces: Adam, gradient accumulation, one step on model.loss (AE, VAE, VQ-VAE, DDPM) ---


def adam(parameters, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with the fused kernel: one pass over all parameters instead of a handful of ops per tensor,
    which on CPU was a third of a small model's step (benchmarks/vae_throughput.py)."""
    return torch.optim.Adam(parameters, lr=lr, betas=betas, fused=True)


def micro_batches(x: torch.Tensor, accumulate: int) -> tuple[torch.Tensor, ...]:
    """x split into `accumulate` equal micro-batches along the batch dimension, in order (x itself for 1)."""
    if accumulate < 1 or len(x) % accumulate:
        raise ValueError(f"a batch of {len(x)} does not split into accumulate={accumulate} equal micro-batches: "
                         f"use a batch_size that is a multiple of {accumulate}")
    return x.split(len(x) // accumulate)


def kept_for_generator(output: torch.Tensor, remake: Callable[[], torch.Tensor],
                       accumulate: int) -> Callable[[], torch.Tensor]:
    """What a two-player step keeps of G's output on one micro-batch, made for D's update, for G's own update
    after it: with one part the output itself, its graph reused (as pytorch/examples' DCGAN does); with several,
    `remake` (G on the same inputs), so that G's activations are held for one micro-batch at a time, which is what
    accumulating is for, at the price of one more G forward pass per micro-batch."""
    if accumulate == 1:
        return lambda: output
    return remake


def accumulated_update(optimizer: torch.optim.Optimizer, loss_of: Callable[..., dict[str, torch.Tensor]],
                       parts: Sequence, autocast=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """One optimizer step on the gradient of the whole batch's mean loss, built one micro-batch at a time.
    `parts`: the batch's equal micro-batches (micro_batches; or what a step keeps of each, a GAN's fakes).
    loss_of(part) (its mean loss under "loss", with terms to log) runs under `autocast` for each, and its loss
    scaled by 1/len(parts) goes backward into the summed gradient, so only one part's activations are held at a
    time. Returns the terms: one part's as loss_of gave them; of several, each term's mean over the parts, detached
    (the whole batch's mean for a term that is a mean over examples; a batch statistic, a codebook's perplexity,
    the mean of the parts' own)."""
    optimizer.zero_grad(set_to_none=True)
    if len(parts) == 1:  # no split: nothing to scale or sum (a toy GAN's step: 1,203 -> 1,131 us without them)
        with autocast():
            terms = loss_of(parts[0])
        terms["loss"].backward()
        optimizer.step()
        return terms
    share = 1 / len(parts)
    means: dict[str, torch.Tensor] = {}
    for part in parts:
        with autocast():
            terms = loss_of(part)
        (terms["loss"] * share).backward()
        for name, value in terms.items():
            means[name] = means.get(name, 0) + value.detach().float() * share
    optimizer.step()
    return means


def loss_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
              autocast=contextlib.nullcontext, accumulate: int = 1) -> dict[str, torch.Tensor]:
    """One gradient step on model.loss(x), its gradient summed over `accumulate` micro-batches of x
    (accumulated_update); returns its terms. `autocast`: the context the forward passes run in (autocast for
    bf16-mixed, never the backward pass, which runs in the dtypes the forward chose)."""
    return accumulated_update(optimizer, model.loss, micro_batches(x, accumulate), autocast)
