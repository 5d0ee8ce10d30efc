"""Super-resolution: a generator G maps a low-resolution image to one `scale` times larger (SRResNet, Ledig et al.
2017), trained first for PSNR (L1), then as a GAN from those weights (SRGAN; ESRGAN, Wang et al. 2018).

The data are high-resolution (HR) crops; each step makes its low-resolution (LR) inputs from them with `degrade`:
`resize`, torch's bicubic with antialiasing, down by `scale` (plus, for degradation=realistic, blur before it and
noise and JPEG after it, Real-ESRGAN's first-order model, Wang et al. 2021). The same `resize` is the bicubic
baseline and eval's degradation, everywhere in genlab. (MATLAB's imresize, which the published tables use, is
also antialiased bicubic but with the kernel's a = -0.5 where torch's is -0.75: figures are close, not equal.)

G: a conv, residual blocks without BatchNorm (EDSR, Lim et al. 2017: BatchNorm hurts SR and costs memory),
a conv with a skip over the blocks, one x2 pixel-shuffle stage (Shi et al. 2016) per factor of 2, a last conv;
its output is added to the bicubic upscale, so G learns only what bicubic misses (VDSR, Kim et al. 2016) and,
its last conv starting at zero, starts as the bicubic baseline. block=rrdb swaps the residual blocks for
ESRGAN's residual-in-residual dense blocks (RRDB): 15 convs where a residual block has 2, ~10x its compute.
D (stage gan): a patch discriminator, one logit per overlapping patch (pix2pix, Isola et al. 2017).

  stage psnr: L1(G(lr), hr) -> step G -> update_ema()
  stage gan:  (1) D: relativistic average loss on hr and G(lr).detach() -> step D
              (2) G: L1 + feature_weight * feature loss + adversarial_weight * relativistic loss -> step G
                  -> update_ema()
The feature loss compares D's own intermediate features of G(lr) and hr (feature matching, Salimans et al. 2016;
pix2pixHD): ESRGAN's perceptual loss uses VGG-19 features, whose weights cannot be had offline.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genlab import checkpoint as ckpt
from genlab.config import check_fields
from genlab.models.layers import (
    MAX_CHANNELS,
    MAX_DATA_SIZE,
    accumulated_update,
    adam,
    ema_update,
    kept_for_generator,
    micro_batches,
)

SCALES = (2, 4)
LAB_BOUNDS = {"g_channels": (4, 64), "blocks": (1, 16), "d_channels": (4, 64), "d_layers": (1, 4)}


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size): genlab's one resize for super-resolution, down and up (bicubic, antialiased
    when it shrinks: without it, downsampling aliases and the LR inputs are not what a camera would give)."""
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)


def downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/scale, W/scale), the classic bicubic degradation."""
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"{height}x{width} images do not divide by the scale {scale}: crop them to a multiple")
    return resize(hr, (height // scale, width // scale))


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The baseline every SR model is measured against: (B, C, h, w) -> (B, C, scale*h, scale*w) in [0, 1]."""
    return resize(lr, (lr.shape[-2] * scale, lr.shape[-1] * scale)).clamp(0, 1)


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor, size: int = 21) -> torch.Tensor:
    """Blur each image of (B, C, H, W) with an isotropic Gaussian of its own sigma (B,), size x size taps, edges
    reflected (Real-ESRGAN's blur kernels are 7 to 21 taps; fewer where the image is too small to reflect them)."""
    batch, channels, height, width = images.shape
    size = min(size, 2 * min(height, width) - 1)
    taps = torch.arange(size, dtype=images.dtype, device=images.device) - size // 2
    kernel_1d = torch.exp(-taps[None] ** 2 / (2 * sigmas[:, None] ** 2))  # (B, size)
    kernel = kernel_1d[:, :, None] * kernel_1d[:, None, :]
    kernel = (kernel / kernel.sum(dim=(1, 2), keepdim=True)).repeat_interleave(channels, 0)[:, None]
    padded = F.pad(images.reshape(1, batch * channels, height, width), [size // 2] * 4, mode="reflect")
    return F.conv2d(padded, kernel, groups=batch * channels).reshape(batch, channels, height, width)


def jpeg(images: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    """Each image of (B, C, H, W) in [0, 1] saved as a JPEG of its quality and read back (Pillow, 4:2:0)."""
    out = []
    for image, quality in zip(images.clamp(0, 1), qualities, strict=True):
        pixels = (image * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer), dtype=np.float32).reshape(pixels.shape) / 255
        out.append(torch.from_numpy(decoded).permute(2, 0, 1))
    return torch.stack(out).to(images.device)


@dataclass
class SuperResConfig:
    data_shape: tuple[int, ...] = (3, 96, 96)  # one high-resolution training crop, set from the data
    scale: int = 4  # 2 or 4: one x2 pixel-shuffle stage per factor of 2
    # G's width, SRResNet's 64; 32 trains ~4x faster on a CPU. (Not `channels`: that is the image channels of an
    # image folder, a training setting, and --set gives a name to one config only.)
    g_channels: int = 64
    blocks: int = 16  # SRResNet's depth (ESRGAN stacks 23 RRDBs)
    # residual: EDSR's two-conv block; rrdb: ESRGAN's residual-in-residual dense block, three dense blocks of
    # five convs each, every block's output scaled by 0.2 before its skip (RESIDUAL_SCALE)
    block: Literal["residual", "rrdb"] = "residual"
    stage: Literal["psnr", "gan"] = "psnr"  # psnr: L1 only; gan: + D (start it from a psnr run's weights)
    degradation: Literal["bicubic", "realistic"] = "bicubic"  # realistic: + random blur, noise, JPEG
    # The GAN stage's weights on its loss terms, Real-ESRGAN's (L1 1, perceptual 1, adversarial 0.1); the
    # feature loss stands where their VGG perceptual loss stood
    feature_weight: float = 1.0
    adversarial_weight: float = 0.1
    d_channels: int = 64  # D's first conv; each stride-2 conv doubles it, up to 8x
    d_layers: int = 3  # stride-2 convs of D: 3 gives pix2pix's 70x70 patches
    spectral_norm: bool = True  # on every conv of D (Miyato et al. 2018), as Real-ESRGAN's D
    ema_decay: float = 0.999  # 0: off; upscale() uses the average of G's weights (Real-ESRGAN's 0.999)
    betas: tuple[float, float] = (0.9, 0.99)  # Adam's, ESRGAN's

    def __post_init__(self):
        check_fields(self, {"data_shape": (1, MAX_DATA_SIZE), "scale": (2, 4), "g_channels": (1, MAX_CHANNELS),
                            "blocks": (1, 256), "feature_weight": (0, 1e4), "adversarial_weight": (0, 1e4),
                            "d_channels": (1, MAX_CHANNELS), "d_layers": (1, 8), "ema_decay": (0, 1),
                            "betas": (0, 1)})
        self.data_shape, self.betas = tuple(self.data_shape), tuple(self.betas)
        if len(self.data_shape) != 3 or self.data_shape[0] not in (1, 3):
            raise ValueError(f"super-resolution takes grey or RGB images, the data has shape {self.data_shape}: "
                             "use --data photos or photos:PATH")
        if self.scale not in SCALES:
            raise ValueError(f"scale={self.scale} is not one of 2, 4")
        if any(side % self.scale for side in self.data_shape[1:]):
            raise ValueError(f"{self.data_shape[1]}x{self.data_shape[2]} crops do not divide by scale={self.scale}")
        if self.stage == "gan" and min(self.data_shape[1:]) < 2 ** (self.d_layers + 1):
            raise ValueError(f"D halves the crops {self.d_layers} times: {self.data_shape[1]}x{self.data_shape[2]} "
                             "is too small; lower d_layers")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 turns the EMA generator off), got {self.ema_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), e.g. 0.9,0.99; got {self.betas}")


# --- the networks ------------------------------------------------------------------------------------


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))), no BatchNorm (EDSR's block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(), conv3x3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


RESIDUAL_SCALE = 0.2  # ESRGAN: a deep stack of unnormalised blocks trains stably when each adds a fraction


class DenseBlock(nn.Module):
    """ESRGAN's residual dense block: five 3x3 convs, each reading the block's input and every earlier conv's
    output concatenated (DenseNet; `growth` new channels a conv, LeakyReLU(0.2)); the fifth maps them back to
    `channels`: x + RESIDUAL_SCALE * conv5([x, f1, f2, f3, f4])."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.convs = nn.ModuleList(conv3x3(channels + i * growth, growth) for i in range(4))
        self.fuse = conv3x3(channels + 4 * growth, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs:
            features.append(F.leaky_relu(conv(torch.cat(features, dim=1)), 0.2))  # (B, channels + i*growth, h, w)
        return x + RESIDUAL_SCALE * self.fuse(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Residual in residual (ESRGAN, Wang et al. 2018, fig. 4): x + RESIDUAL_SCALE * (three dense blocks)(x), no
    BatchNorm. Growth is half the width, ESRGAN's 32 for 64 channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(*[DenseBlock(channels, max(1, channels // 2)) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.body(x)


BLOCKS = {"residual": ResidualBlock, "rrdb": RRDB}


class Generator(nn.Module):
    """(B, C, h, w) -> (B, C, scale*h, scale*w): bicubic upscale + the detail the net adds. Fully convolutional:
    any input size."""

    def __init__(self, config: SuperResConfig):
        super().__init__()
        channels, width = config.data_shape[0], config.g_channels
        self.scale = config.scale
        self.head = conv3x3(channels, width)
        self.body = nn.Sequential(*[BLOCKS[config.block](width) for _ in range(config.blocks)], conv3x3(width, width))
        # each stage: (B, w, h, w') -> conv to 4w channels -> pixel shuffle -> (B, w, 2h, 2w')
        self.upsample = nn.Sequential(*[layer for _ in range(int(math.log2(config.scale)))
                                        for layer in (conv3x3(width, 4 * width), nn.PixelShuffle(2), nn.ReLU())])
        self.tail = conv3x3(width, channels)
        nn.init.zeros_(self.tail.weight)  # G starts as the bicubic baseline: early steps can only improve on it
        nn.init.zeros_(self.tail.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        features = self.head(lr)
        features = features + self.body(features)  # the long skip of SRResNet
        return self.tail(self.upsample(features)) + resize(lr, (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale))


class PatchDiscriminator(nn.Module):
    """(B, C, H, W) -> logits (B, 1, H/2^d_layers, W/2^d_layers), one per patch, and the features of each layer
    (for the feature loss). LeakyReLU(0.2), no BatchNorm (spectral norm is the stabiliser)."""

    def __init__(self, config: SuperResConfig):
        super().__init__()
        widths = [config.d_channels * min(2 ** i, 8) for i in range(config.d_layers + 1)]
        layers = [nn.Sequential(conv3x3(config.data_shape[0], widths[0]), nn.LeakyReLU(0.2))]
        layers += [nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2))
                   for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)]
        self.layers = nn.ModuleList(layers)
        self.head = conv3x3(widths[-1], 1)
        if config.spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, nn.Conv2d):
                    spectral_norm(module)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.head(x), features


def relativistic_loss(real: torch.Tensor, fake: torch.Tensor, fake_is_real: bool) -> torch.Tensor:
    """ESRGAN's relativistic average loss (eq. 1-2) on patch logits: D_Ra(a, b) = sigmoid(C(a) - E[C(b)]).
    For D (fake_is_real False): real patches should look more real than fakes on average, and fakes less real
    than reals; for G (True) the targets swap. Means over the batch and every patch; the two terms averaged."""
    real_vs_fake = real - fake.mean()
    fake_vs_real = fake - real.mean()
    target = float(fake_is_real)
    return 0.5 * (F.binary_cross_entropy_with_logits(real_vs_fake, torch.full_like(real_vs_fake, 1 - target))
                  + F.binary_cross_entropy_with_logits(fake_vs_real, torch.full_like(fake_vs_real, target)))


class SuperRes(nn.Module):
    # What it can do, declared for every caller (previews, eval, compare, the CLI and the lab) instead of probed:
    # sample(n), reconstruct(x), interpolate(a, b), log_likelihood(x); upscale(lr).
    can_sample, can_reconstruct, can_interpolate, has_likelihood = False, False, False, False
    can_upscale = True
    fits_sampler = False
    can_guide = False  # D-guided sampling (genlab.guided): GANs whose D scores one sample (models/gan.py)

    def __init__(self, config: SuperResConfig):
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        self.discriminator = PatchDiscriminator(config) if config.stage == "gan" else None
        # A frozen copy that trails G (update_ema); upscale() uses it. None when ema_decay = 0.
        self.ema = copy.deepcopy(self.generator).requires_grad_(False) if config.ema_decay > 0 else None
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))  # saved: resume is exact

    def degrade(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """High-resolution images (B, C, H, W) -> the low-resolution inputs G learns from (B, C, H/s, W/s).
        realistic: blur sigma ~ U(0.2, 3) on HR, bicubic down, Gaussian noise of std ~ U(1, 30)/255, JPEG of
        quality ~ U{30..95} (Real-ESRGAN's first-order ranges), drawn from `generator` (None: torch's global
        one, saved in checkpoints, so resume is exact)."""
        if self.config.degradation == "bicubic":
            return downsample(hr, self.config.scale)
        batch = len(hr)
        draws = torch.rand(batch, 3, generator=generator)
        sigmas = 0.2 + 2.8 * draws[:, 0]
        lr = downsample(gaussian_blur(hr, sigmas.to(hr)), self.config.scale)
        noise = torch.randn(lr.shape, generator=generator).to(lr)
        lr = lr + (1 + 29 * draws[:, 1]).to(lr)[:, None, None, None] / 255 * noise
        return jpeg(lr, (30 + (66 * draws[:, 2]).floor()).int().tolist())

    def super_resolve(self, lr: torch.Tensor) -> torch.Tensor:
        """G being trained (never the EMA copy): (B, C, h, w) -> (B, C, s*h, s*w), not clamped (L1 needs the
        gradient beyond [0, 1] too)."""
        return self.generator(lr)

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) low-resolution images in [0, 1] -> (B, C, scale*h, scale*w) in [0, 1], from the EMA
        generator when there is one."""
        if lr.dim() != 4 or lr.shape[1] != self.config.data_shape[0]:
            raise ValueError(f"upscale takes (B, {self.config.data_shape[0]}, h, w) images, got {tuple(lr.shape)}")
        net = self.ema if self.ema is not None else self.generator
        return net(lr).clamp(0, 1)

    def discriminator_loss(self, hr: torch.Tensor, sr: torch.Tensor) -> dict[str, torch.Tensor]:
        """D's relativistic loss on real HR images and G's (detached) outputs, with D's mean logits to log."""
        if self.discriminator is None:
            raise ValueError("a stage=psnr model has no discriminator: use stage=gan")
        real, _ = self.discriminator(hr)
        fake, _ = self.discriminator(sr)
        return {"loss": relativistic_loss(real, fake, fake_is_real=False), "d_real": real.mean().detach(),
                "d_fake": fake.mean().detach()}

    def generator_loss(self, hr: torch.Tensor, sr: torch.Tensor) -> dict[str, torch.Tensor]:
        """G's loss: L1, and for stage gan the weighted feature and relativistic adversarial terms."""
        terms = {"l1": F.l1_loss(sr, hr)}
        if self.discriminator is None:
            return {"loss": terms["l1"]}
        with torch.no_grad():
            real, real_features = self.discriminator(hr)
        fake, fake_features = self.discriminator(sr)
        terms["feature"] = sum(F.l1_loss(f, r) for f, r in zip(fake_features, real_features, strict=True)) / len(
            fake_features)
        terms["adversarial"] = relativistic_loss(real, fake, fake_is_real=True)
        loss = (terms["l1"] + self.config.feature_weight * terms["feature"]
                + self.config.adversarial_weight * terms["adversarial"])
        return {"loss": loss, **terms}

    def update_ema(self) -> None:
        """Move the EMA generator towards G (layers.ema_update, with its warm-up); after each G update."""
        if self.ema is None:
            raise ValueError("update_ema needs an EMA generator: set ema_decay > 0 (e.g. 0.999)")
        ema_update(self.ema, self.generator, self.config.ema_decay, self.ema_updates)


# --- the two stages: PSNR weights into the GAN model, and network interpolation ---------------------------

ARCHITECTURE = ("scale", "g_channels", "blocks", "block")  # what G's weights depend on (with the image channels)


def _check_same_generator(a: SuperResConfig, b: SuperResConfig, what: str) -> None:
    if differ := [f"{key} {getattr(a, key)} vs {getattr(b, key)}" for key in ARCHITECTURE
                  if getattr(a, key) != getattr(b, key)]:
        raise ValueError(f"{what} need the same generator: {', '.join(differ)}")
    if a.data_shape[0] != b.data_shape[0]:
        raise ValueError(f"{what} need the same image channels: {a.data_shape[0]} vs {b.data_shape[0]}")


def _used_generator(model: SuperRes) -> nn.Module:
    return model.ema if model.ema is not None else model.generator


@torch.no_grad()
def start_from(model: SuperRes, source: ckpt.Checkpoint) -> None:
    """A super-resolution run's starting weights from another's checkpoint (`genlab train superres --init-from
    RUN`, through the Family hook): the generator the source's upscale() used (its EMA copy when it had one)
    goes into `model`'s G and EMA copy; D comes from the source's when both have one (a GAN run fine-tuned),
    else starts afresh (ESRGAN's second stage: a stage=gan run from a stage=psnr one). The optimizers and the
    EMA's warm-up count start afresh either way."""
    if source.record.family != "superres":
        raise ValueError(f"{source.path} is a {source.record.family} run, not a super-resolution one")
    _check_same_generator(source.record.model, model.config, "the source run and this run")
    prefix = "model.ema." if source.record.model.ema_decay > 0 else "model.generator."
    weights = source.prefixed(prefix)
    for net in (model.generator, model.ema):
        if net is not None:
            net.load_state_dict(weights, strict=True)
    if model.discriminator is not None and source.record.model.stage == "gan":
        try:
            model.discriminator.load_state_dict(source.prefixed("model.discriminator."), strict=True)
        except RuntimeError:  # torch's message lists every tensor: the settings say it in one line
            differ = [f"{key} {getattr(source.record.model, key)} vs {getattr(model.config, key)}"
                      for key in ("d_channels", "d_layers") if getattr(source.record.model, key) != getattr(
                          model.config, key)]
            raise ValueError(f"the source's discriminator does not fit this run's ({', '.join(differ) or 'shapes'}"
                             "): keep the source's d_channels and d_layers") from None


def load_generator(model: SuperRes, checkpoint: str | Path) -> SuperRes:
    """`start_from` from a run folder (its latest checkpoint) or a checkpoint file; returns `model`."""
    start_from(model, ckpt.load_checkpoint(ckpt.resolve_checkpoint(checkpoint)))
    return model


@torch.no_grad()
def interpolate_weights(psnr_model: SuperRes, gan_model: SuperRes, alpha: float) -> SuperRes:
    """ESRGAN's network interpolation: a model whose G (and EMA copy) is (1 - alpha) * PSNR + alpha * GAN, on
    the weights each model's upscale() uses. alpha 0: the PSNR model's smooth output; 1: the GAN's detail."""
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise ValueError(f"alpha must be a number from 0 (PSNR model) to 1 (GAN model), got {alpha!r}")
    _check_same_generator(psnr_model.config, gan_model.config, "interpolated models")
    blended = copy.deepcopy(gan_model).eval()
    pairs = zip(_used_generator(psnr_model).parameters(), _used_generator(gan_model).parameters(), strict=True)
    mixed = [torch.lerp(a, b, float(alpha)) for a, b in pairs]
    for net in (blended.generator, blended.ema):
        if net is not None:
            for target, value in zip(net.parameters(), mixed, strict=True):
                target.copy_(value)
    return blended


# --- the training recipe: optimizers and one step; train.py's loop decides when a step runs ------------


def configure_optimizers(model: SuperRes, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam for G, and for D at stage gan, both at lr with the model's betas."""
    optimizers = {"generator": adam(model.generator.parameters(), lr, model.config.betas)}
    if model.discriminator is not None:
        optimizers["discriminator"] = adam(model.discriminator.parameters(), lr, model.config.betas)
    return optimizers


def training_step(model: SuperRes, optimizers, x: torch.Tensor, autocast=contextlib.nullcontext,
                  accumulate: int = 1) -> dict[str, torch.Tensor]:
    """One step on a batch of HR crops x: their LR inputs, then (stage gan) one D update, then one G update, each
    gradient summed over `accumulate` micro-batches (layers.accumulated_update)."""
    with torch.no_grad():
        lr = model.degrade(x)
    pairs = list(zip(micro_batches(x, accumulate), micro_batches(lr, accumulate), strict=True))  # (HR, LR) each
    if model.discriminator is None:
        g_terms = accumulated_update(optimizers["generator"],
                                     lambda pair: model.generator_loss(pair[0], model.super_resolve(pair[1])),
                                     pairs, autocast)
        if model.ema is not None:
            model.update_ema()
        return g_terms
    srs = []  # G's outputs of each micro-batch, for G's update (layers.kept_for_generator)

    def discriminator_loss(pair: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        hr, lr = pair
        sr = model.super_resolve(lr)
        srs.append(kept_for_generator(sr, functools.partial(model.super_resolve, lr), accumulate))
        return model.discriminator_loss(hr, sr.detach())

    # (1) Update D: real HR patches should look more real than G's on average (relativistic), and G's less
    d_terms = accumulated_update(optimizers["discriminator"], discriminator_loss, pairs, autocast)
    # (2) Update G: L1 + D's features + fool the updated D; D's weights get no gradient
    model.discriminator.requires_grad_(False)
    try:
        g_terms = accumulated_update(optimizers["generator"], lambda pair: model.generator_loss(pair[0], pair[1]()),
                                     [(hr, sr) for (hr, _), sr in zip(pairs, srs, strict=True)], autocast)
    finally:
        model.discriminator.requires_grad_(True)
    if model.ema is not None:
        model.update_ema()
    return {"d_loss": d_terms.pop("loss"), "g_loss": g_terms.pop("loss"), **d_terms, **g_terms}
