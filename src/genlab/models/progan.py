"""Progressive growing of GANs (Karras, Aila, Laine & Lehtinen, "Progressive Growing of GANs for Improved
Quality, Stability, and Variation", ICLR 2018).

G and D start at a 4-7 px version of the images and grow, one resolution at a time, to the data's size. Each new
block fades in: G's output is (1 - alpha) * upsample(old toRGB) + alpha * new toRGB, D's input path the mirror
image, and the real images D sees are blended the same way, alpha going 0 -> 1 over `fade_steps`; then the new
resolution trains `stable_steps` before the next one starts. The stage and alpha are a pure function of the steps
trained (a buffer saved with the weights), so a run resumed mid-fade continues bit-identical.

Resolutions: the data's size, halved (rounded up) until the next halving would go below 4 px: 32 -> 4, 8, 16, 32;
28 (MNIST) -> 7, 14, 28; 25 (the LFW faces) -> 7, 13, 25; 8 (digits) -> 4, 8. Growing to the nearest power of two
and resizing would put a resize between G and the data that no layer learned, and lose detail (28 -> 16) or
invent it (28 -> 32); halving from the data's own size ends exactly on it, with 2x steps wherever the size halves.

The paper's other three pieces: pixel norm in G (sec. 4.2), an equalized learning rate (weights ~ N(0, 1),
scaled at run time by He's constant, sec. 4.1), and minibatch stddev in D (sec. 3). Loss: the paper's,
WGAN-GP (Gulrajani et al. 2017) with one D step per G step and a drift term eps * E[D(x)^2] (eps = 0.001) that
keeps the critic's values near zero; its Adam (lr 0.001, betas 0, 0.99) and an EMA of G (decay 0.999) to sample.
Images are in [0, 1] in genlab and in [-1, 1] inside the networks, as in the paper; G's output is linear.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import check_fields
from genlab.metrics import check_diversity, sample_diversity
from genlab.models.layers import (
    MAX_CHANNELS,
    MAX_DATA_SIZE,
    MAX_WIDTH,
    accumulated_update,
    adam,
    ema_update,
    kept_for_generator,
    micro_batches,
)

MIN_SIDE = 4  # the first resolution is the data's size halved while it stays at least this
MINIBATCH_GROUP = 4  # the paper's group size for minibatch stddev
LEAKY_SLOPE = 0.2  # every LeakyReLU in G and D, as the paper


@dataclass
class ProGANConfig:
    data_shape: tuple[int, ...] = (1, 32, 32)  # one image, set from the data
    latent_dim: int = 128  # the paper's 512, scaled down with its widths
    # the two lowest resolutions' width, halved per stage above (the paper: 512). 64, not 128: at 32x32 a step
    # (batch 32, one thread) costs 0.48 CPU-s against 1.57, 3x3 convs being nearly all of it (progan_speed.py)
    max_channels: int = 64
    # steps over which each new resolution fades in, and then trains at full strength before the next one (the
    # paper: 800k images each). 250: a 32x32 run is grown by step 1,500, half the default run, and trains at full
    # size from there
    fade_steps: int = 250
    stable_steps: int = 250
    gp_weight: float = 10.0  # WGAN-GP's lambda, the paper's
    drift_weight: float = 0.001  # the paper's eps: eps * E[D(x)^2] keeps the critic's outputs near zero
    ema_decay: float = 0.999  # sample() uses an EMA of G with this decay, as the paper; 0 turns it off
    betas: tuple[float, float] = (0.0, 0.99)  # the paper's Adam betas

    def __post_init__(self):
        check_fields(self, {"data_shape": (1, MAX_DATA_SIZE), "latent_dim": (1, MAX_WIDTH),
                            "max_channels": (1, MAX_CHANNELS), "fade_steps": (0, 10**9),
                            "stable_steps": (0, 10**9), "gp_weight": (0, 1e4), "drift_weight": (0, 100),
                            "ema_decay": (0, 1), "betas": (0, 1)})
        self.data_shape = tuple(self.data_shape)
        self.betas = tuple(self.betas)
        if len(self.data_shape) != 3 or min(self.data_shape[1:]) < MIN_SIDE:
            raise ValueError(f"progan grows images of at least {MIN_SIDE}x{MIN_SIDE} pixels, but the data has shape "
                             f"{self.data_shape}: use the gan family for points and smaller images")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 turns the EMA generator off), got {self.ema_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), e.g. 0,0.99; got {self.betas}")


# What the lab (a shared server) lets a client set, tighter than the checks above; its BOUNDS hold the shared names
LAB_BOUNDS = {"max_channels": (8, 128), "fade_steps": (0, 20_000), "stable_steps": (0, 20_000),
              "drift_weight": (0.0, 1.0)}


def resolutions(height: int, width: int) -> list[tuple[int, int]]:
    """The (h, w) of each stage, lowest first: the data's size halved, rounded up, while both sides stay >= 4."""
    sizes = [(height, width)]
    while min(sizes[0]) >= 2 * MIN_SIDE:
        h, w = sizes[0]
        sizes.insert(0, (math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def widths(config: ProGANConfig) -> list[int]:
    """Conv channels at each stage: max_channels at the two lowest, halved per stage above, at least 16."""
    stages = len(resolutions(*config.data_shape[1:]))
    floor = min(16, config.max_channels)
    return [max(floor, config.max_channels >> max(0, k - 1)) for k in range(stages)]


def growth(step: int, stages: int, fade_steps: int, stable_steps: int) -> tuple[int, float]:
    """(stage, alpha) after `step` steps trained. Stage 0 trains stable_steps; each later stage fades in over
    fade_steps (alpha = (t + 1) / fade_steps at its t-th step) and then trains stable_steps at alpha 1; the last
    stage keeps training."""
    if stages == 1 or step < stable_steps:
        return 0, 1.0
    if fade_steps + stable_steps == 0:  # no schedule: the last stage from the start
        return stages - 1, 1.0
    grown, t = divmod(step - stable_steps, fade_steps + stable_steps)
    stage = grown + 1
    if stage >= stages:
        return stages - 1, 1.0
    return stage, (t + 1) / fade_steps if t < fade_steps else 1.0


# --- the layers --------------------------------------------------------------------------------------


class EqualizedConv2d(nn.Module):
    """A conv whose weights are N(0, 1) and multiplied at run time by He's constant gain / sqrt(fan_in) (sec. 4.1):
    Adam's step is the same size relative to every weight, so all layers learn at the same speed."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = gain / math.sqrt(c_in * kernel_size**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.weight.shape[-1] // 2)


class EqualizedLinear(nn.Module):
    """A linear layer with the equalized learning rate of EqualizedConv2d."""

    def __init__(self, n_in: int, n_out: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.scale = gain / math.sqrt(n_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """Each pixel's feature vector scaled to unit mean square over channels (sec. 4.2): b = a / sqrt(mean(a^2) + 1e-8).
    It replaces BatchNorm in G and stops the magnitudes of G's and D's signals escalating against each other."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C + 1, H, W): one more feature map, constant, the spread of the sample's group (sec. 3):
    the stddev of each feature at each pixel over `group` consecutive samples, averaged. gan.py adds a learned
    weight times a batch-wide spread to D's score; the paper's map enters D's last conv block instead."""
    b, _, h, w = x.shape
    grouped = x.reshape(b // group, group, *x.shape[1:])  # consecutive samples form a group
    spread = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/group,); 1e-8: finite grad
    return torch.cat([x, spread.repeat_interleave(group)[:, None, None, None].expand(b, 1, h, w)], dim=1)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="nearest")


def downsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average pooling to `size`: 2x2 pools where the size halves exactly, overlapping windows where it rounds up."""
    return F.adaptive_avg_pool2d(x, size)


def conv_block(c_in: int, c_out: int, *, pixel_norm: bool) -> list[nn.Module]:
    """Two 3x3 convs with LeakyReLU, each followed by pixel norm in G."""
    layers: list[nn.Module] = []
    for a, b in ((c_in, c_out), (c_out, c_out)):
        layers += [EqualizedConv2d(a, b, 3), nn.LeakyReLU(LEAKY_SLOPE)] + ([PixelNorm()] if pixel_norm else [])
    return layers


# --- the networks ------------------------------------------------------------------------------------


class Generator(nn.Module):
    """(B, latent_dim) -> (B, C, h, w) at a stage's resolution, in [-1, 1] (linear output).

    Stage 0: pixel-normed z -> a linear layer to the first resolution's map -> a 3x3 conv. Each later stage:
    nearest upsampling to its resolution, then two 3x3 convs. toRGB (a 1x1 conv) at every stage."""

    def __init__(self, config: ProGANConfig):
        super().__init__()
        self.sizes, channels = resolutions(*config.data_shape[1:]), widths(config)
        h, w = self.sizes[0]
        self.first = nn.Sequential(
            PixelNorm(), EqualizedLinear(config.latent_dim, channels[0] * h * w, gain=math.sqrt(2) / 4),
            nn.Unflatten(1, (channels[0], h, w)), nn.LeakyReLU(LEAKY_SLOPE), PixelNorm(),
            EqualizedConv2d(channels[0], channels[0], 3), nn.LeakyReLU(LEAKY_SLOPE), PixelNorm())
        # blocks[k] takes stage k-1's features to stage k's; blocks[0] is unused (the first block is `first`)
        self.blocks = nn.ModuleList([nn.Identity()] + [
            nn.Sequential(*conv_block(channels[k - 1], channels[k], pixel_norm=True))
            for k in range(1, len(self.sizes))])
        self.to_rgb = nn.ModuleList([EqualizedConv2d(c, config.data_shape[0], 1, gain=1) for c in channels])

    def forward(self, z: torch.Tensor, stage: int, alpha: float) -> torch.Tensor:
        h = self.first(z)
        for k in range(1, stage):
            h = self.blocks[k](upsample(h, self.sizes[k]))
        if stage == 0:
            return self.to_rgb[0](h)
        new = self.to_rgb[stage](self.blocks[stage](upsample(h, self.sizes[stage])))
        if alpha >= 1:
            return new
        old = upsample(self.to_rgb[stage - 1](h), self.sizes[stage])
        return torch.lerp(old, new, alpha)  # the fade: (1 - alpha) old + alpha new; alpha 0 gives old exactly


class Discriminator(nn.Module):
    """(B, C, h, w) at a stage's resolution -> (B,) critic values; the mirror of the generator.

    fromRGB (1x1 conv) at the stage's resolution, then each stage's two 3x3 convs and average pooling down to the
    stage below, to the last block: minibatch stddev, a 3x3 conv, and two linear layers to one number."""

    def __init__(self, config: ProGANConfig):
        super().__init__()
        self.sizes, channels = resolutions(*config.data_shape[1:]), widths(config)
        h, w = self.sizes[0]
        self.from_rgb = nn.ModuleList([nn.Sequential(EqualizedConv2d(config.data_shape[0], c, 1),
                                                     nn.LeakyReLU(LEAKY_SLOPE)) for c in channels])
        # blocks[k] takes stage k's features down to stage k-1's; blocks[0] is unused (the last block is `last`)
        self.blocks = nn.ModuleList([nn.Identity()] + [
            nn.Sequential(*conv_block(channels[k], channels[k - 1], pixel_norm=False))
            for k in range(1, len(self.sizes))])
        self.last = nn.Sequential(
            EqualizedConv2d(channels[0] + 1, channels[0], 3), nn.LeakyReLU(LEAKY_SLOPE), nn.Flatten(),
            EqualizedLinear(channels[0] * h * w, channels[0]), nn.LeakyReLU(LEAKY_SLOPE),
            EqualizedLinear(channels[0], 1, gain=1))

    def forward(self, x: torch.Tensor, stage: int, alpha: float, group: int) -> torch.Tensor:
        """`group`: minibatch stddev's group size; it must divide the batch, and a batch of real then fake images
        keeps them apart when it divides each half."""
        h = self.from_rgb[stage](x)
        if stage > 0:
            h = downsample(self.blocks[stage](h), self.sizes[stage - 1])
            if alpha < 1:  # the fade, mirrored: the old input path on the downsampled image
                h = torch.lerp(self.from_rgb[stage - 1](downsample(x, self.sizes[stage - 1])), h, alpha)
        for k in range(stage - 1, 0, -1):
            h = downsample(self.blocks[k](h), self.sizes[k - 1])
        return self.last(minibatch_stddev(h, group)).squeeze(1)


class ProGAN(nn.Module):
    # What it can do, declared for every caller (previews, eval, compare, the CLI and the lab) instead of probed:
    # sample(n), reconstruct(x), interpolate(a, b), log_likelihood(x).
    can_sample, can_reconstruct, can_interpolate, has_likelihood = True, False, False, False
    can_upscale = False  # upscale(lr): super-resolution models only (models/superres.py)
    fits_sampler = False  # a sampler fitted after training: the autoencoder only (models/autoencoder.py)
    can_guide = False  # D-guided sampling (genlab.guided): GANs whose D scores one sample (models/gan.py)

    def __init__(self, config: ProGANConfig):
        super().__init__()
        self.config = config
        self.sizes = resolutions(*config.data_shape[1:])
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        # A frozen copy that trails G (training_step updates it); sample() uses it. None when ema_decay = 0.
        self.ema = copy.deepcopy(self.generator).requires_grad_(False) if config.ema_decay > 0 else None
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        # Steps trained: the stage and the fade's alpha follow from it (growth), and it is saved with the weights,
        # so a resumed run continues the schedule exactly.
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))

    def growth(self) -> tuple[int, float]:
        """(stage, alpha) now: the resolution being trained (index into self.sizes) and how far it has faded in."""
        return growth(int(self.steps_trained), len(self.sizes), self.config.fade_steps, self.config.stable_steps)

    def latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of z ~ N(0, I), (n, latent_dim), on the model's device."""
        return torch.randn(n, self.config.latent_dim, generator=generator, device=self.steps_trained.device)

    def reals_at(self, x: torch.Tensor, stage: int, alpha: float) -> torch.Tensor:
        """Data (B, C, H, W) in [0, 1] -> what D compares G's output with: [-1, 1], average-pooled to the stage's
        resolution and, while it fades in, blended with the stage below as G's output is."""
        real = downsample(2 * x - 1, self.sizes[stage])
        if stage == 0 or alpha >= 1:
            return real
        old = upsample(downsample(real, self.sizes[stage - 1]), self.sizes[stage])
        return torch.lerp(old, real, alpha)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples at the data's full size in [0, 1], from the EMA generator when there is one. While growing
        they are drawn at the current resolution and upsampled (nearest): previews show where growth stands."""
        net = self.ema if self.ema is not None else self.generator
        stage, alpha = self.growth()
        images = upsample(net(self.latents(n, generator), stage, alpha), tuple(self.config.data_shape[1:]))
        return ((images + 1) / 2).clamp(0, 1)

    def critic(self, x: torch.Tensor, stage: int, alpha: float, halves: int = 1) -> torch.Tensor:
        """D on x; `halves` equal batches in x (real, fake) whose minibatch stddev groups stay apart."""
        return self.discriminator(x, stage, alpha, math.gcd(MINIBATCH_GROUP, len(x) // halves))

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, stage: int, alpha: float) -> torch.Tensor:
        """WGAN-GP (Gulrajani et al. 2017, eq. 3): gp_weight E[(||grad D(x_hat)||_2 - 1)^2], x_hat = eps x +
        (1 - eps) G(z) with one eps ~ U(0, 1) per sample."""
        eps = torch.rand(len(real), 1, 1, 1, device=real.device, dtype=real.dtype)
        x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic(x_hat, stage, alpha).sum(), x_hat, create_graph=True)
        return self.config.gp_weight * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


# --- the training recipe: optimizers and one step; train.py's loop decides when a step runs ------------


def configure_optimizers(model: ProGAN, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam for G and D with the paper's betas (0, 0.99); the paper's lr is 0.001, the training default. A block
    not yet grown has no gradient, and Adam leaves it untouched."""
    return {"generator": adam(model.generator.parameters(), lr, model.config.betas),
            "discriminator": adam(model.discriminator.parameters(), lr, model.config.betas)}


def training_step(model: ProGAN, optimizers, x: torch.Tensor, autocast=contextlib.nullcontext,
                  accumulate: int = 1) -> dict[str, torch.Tensor]:
    """One D update and one G update at the stage and alpha the steps trained give, each gradient summed over
    `accumulate` micro-batches (layers.accumulated_update); then the EMA follows G."""
    stage, alpha = model.growth()
    fakes = []  # each micro-batch's, for G's update (layers.kept_for_generator)

    def critic_loss(real: torch.Tensor) -> dict[str, torch.Tensor]:
        z = model.latents(len(real))
        fake = model.generator(z, stage, alpha)
        fakes.append(kept_for_generator(fake, functools.partial(model.generator, z, stage, alpha), accumulate))
        fake = fake.detach()
        r, f = model.critic(torch.cat([real, fake]), stage, alpha, halves=2).chunk(2)
        gp = model.gradient_penalty(real, fake, stage, alpha)
        drift = model.config.drift_weight * r.pow(2).mean()
        return {"loss": f.mean() - r.mean() + gp + drift, "gp": gp, "drift": drift,
                "wasserstein": (r.mean() - f.mean()).detach()}  # the critic's estimate of W1: falls as G improves

    def generator_loss(fake) -> dict[str, torch.Tensor]:
        return {"loss": -model.critic(fake(), stage, alpha).mean()}

    # (1) Update D: minimise D(G(z)) - D(x) + gradient penalty + eps * D(x)^2
    reals = micro_batches(model.reals_at(x, stage, alpha), accumulate)
    d_terms = accumulated_update(optimizers["discriminator"], critic_loss, reals, autocast)
    # (2) Update G: maximise D(G(z)) through the updated, frozen D
    model.discriminator.requires_grad_(False)
    try:
        g_terms = accumulated_update(optimizers["generator"], generator_loss, fakes, autocast)
    finally:
        model.discriminator.requires_grad_(True)
    model.steps_trained += 1
    if model.ema is not None:
        ema_update(model.ema, model.generator, model.config.ema_decay, model.ema_updates)
    return {"d_loss": d_terms.pop("loss"), "g_loss": g_terms["loss"], **d_terms,
            "resolution": torch.tensor(float(model.sizes[stage][0])), "alpha": torch.tensor(alpha)}


# --- the collapse check train.py runs at log steps -----------------------------------------------------

# Minibatch stddev is always on; what is left to change is the pace (Karras et al. grew more slowly when a stage
# went wrong) and the step size.
FIX_COLLAPSE = ("try slower growth, --set fade_steps=... --set stable_steps=... (more than now), or a lower "
                "--set lr=...")


def collapse_evidence(model: ProGAN, train_data, record: dict) -> list:
    """The image collapse check at a log step (for a CollapseDetector): the spread of 256 samples against 256 real
    images seen as D sees them now (at the current resolution and fade), so a low-resolution stage is not taken
    for collapse; adds the ratio to `record`. Samples come from their own generator: checking never changes
    training."""
    was_training = model.training
    model.eval()
    try:
        stage, alpha = model.growth()
        real = model.reals_at(train_data.x[:256].to(model.steps_trained.device), stage, alpha)
        real = (upsample(real, tuple(model.config.data_shape[1:])) + 1) / 2
        generator = torch.Generator(model.steps_trained.device).manual_seed(record["step"])
        fake_spread = sample_diversity(model.sample(256, generator=generator).cpu())
        real_spread = sample_diversity(real.cpu())
        record["diversity_ratio"] = fake_spread / real_spread
        return [check_diversity(fake_spread, real_spread, fix=FIX_COLLAPSE)]
    finally:
        model.train(was_training)
