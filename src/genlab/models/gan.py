"""Generative adversarial networks: a generator G maps noise z ~ N(0, I) to data, a discriminator (or
critic) D scores data, and the two are trained against each other (Goodfellow et al., 2014).

Architectures: MLPs for the 1-D and 2-D toys, DCGAN-style convs for images (Radford et al., 2016).
Losses: minimax and non-saturating (Goodfellow et al.), least-squares (Mao et al., 2017), hinge
(Lim & Ye, 2017; Miyato et al., 2018), Wasserstein with weight clipping (Arjovsky et al., 2017) or
with a gradient penalty (Gulrajani et al., 2017), optional R1 on real data (Mescheder et al., 2018).
Stabilisers: spectral normalisation (Miyato et al., 2018), packing (PacGAN, Lin et al., 2018),
minibatch stddev and an EMA generator (Karras et al., 2018), n_critic D steps per G step and
separate learning rates for G and D (TTUR, Heusel et al., 2017). Small data: DiffAugment (Zhao et al., 2020)
and ADA's adaptive augmentation strength (Karras et al., 2020), genlab.models.augment.

The model owns the math; the training recipe at the end of this file owns the order of updates (train.py's
loop decides only when a step runs), and the web playground runs the same two phases one at a time:
  (1) D: n_critic times  discriminator_loss(x, generate(z).detach()) -> step D -> clip_weights() for wgan
                                                                      -> adapt_augmentation() for ada
  (2) G: generator_loss(generate(z)) -> step G -> update_ema() when there is an EMA generator
With augmentation on, both losses augment every image before D sees it (and the penalties use those images).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from genlab.config import MAX_ITEMS, check_fields
from genlab.metrics import (
    MIXTURES,
    NUM_SAMPLES,
    CollapseWarning,
    check_discriminator,
    check_diversity,
    check_memorization,
    check_modes,
    mixture_coverage,
    sample_diversity,
)
from genlab.metrics.memorization import memorization
from genlab.models.augment import ADA_TARGET, adapted_probability, augment
from genlab.models.layers import (
    MAX_CHANNELS,
    MAX_DATA_SIZE,
    MAX_WIDTH,
    accumulated_update,
    adam,
    check_conv_shape,
    conv_channels_for,
    ema_update,
    interpolate_latents,
    kept_for_generator,
    micro_batches,
    mlp,
    normal_latents,
    resolve_architecture,
)

# --- the losses --------------------------------------------------------------------------------------
# Each takes D's raw outputs (logits, or critic values for the Wasserstein losses), averaged over the
# batch: r = D(x) on real data, f = D(G(z)) on generated data.


def sigmoid_cross_entropy_d(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    # Goodfellow et al. eq. 1: D maximises log D(x) + log(1 - D(G(z))) with D = sigmoid(logit).
    # -log sigmoid(a) = softplus(-a) and -log(1 - sigmoid(a)) = softplus(a): stable for any logit.
    return F.softplus(-r).mean() + F.softplus(f).mean()


def minimax_g(f: torch.Tensor) -> torch.Tensor:
    # G minimises log(1 - D(G(z))) = -softplus(f). Its gradient vanishes when D confidently rejects
    # the samples (f << 0), i.e. early in training: the lesson's reason for the non-saturating loss.
    return -F.softplus(f).mean()


def non_saturating_g(f: torch.Tensor) -> torch.Tensor:
    # G maximises log D(G(z)) instead: -log sigmoid(f) = softplus(-f), steep exactly where minimax is flat.
    return F.softplus(-f).mean()


def least_squares_d(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    # Mao et al. eq. 2 with targets a = 0 (fake), b = 1 (real): 0.5 (D(x) - 1)^2 + 0.5 D(G(z))^2.
    return 0.5 * (r - 1).pow(2).mean() + 0.5 * f.pow(2).mean()


def least_squares_g(f: torch.Tensor) -> torch.Tensor:
    # Mao et al. eq. 2 with c = 1: G wants D to call its samples real, 0.5 (D(G(z)) - 1)^2.
    return 0.5 * (f - 1).pow(2).mean()


def hinge_d(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    # relu(1 - D(x)) + relu(1 + D(G(z))): no reward for scores already beyond the margin.
    return F.relu(1 - r).mean() + F.relu(1 + f).mean()


def wasserstein_d(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    # The critic maximises E D(x) - E D(G(z)), the dual form of the Wasserstein-1 distance when D is
    # 1-Lipschitz (kept so by clipping or by the gradient penalty).
    return f.mean() - r.mean()


def wasserstein_g(f: torch.Tensor) -> torch.Tensor:
    # -D(G(z)): the generator's side of both the Wasserstein and the hinge losses.
    return -f.mean()


LOSSES = {  # name -> (discriminator loss, generator loss)
    "minimax": (sigmoid_cross_entropy_d, minimax_g),
    "non-saturating": (sigmoid_cross_entropy_d, non_saturating_g),
    "least-squares": (least_squares_d, least_squares_g),
    "hinge": (hinge_d, wasserstein_g),
    "wgan": (wasserstein_d, wasserstein_g),
    "wgan-gp": (wasserstein_d, wasserstein_g),
}
PROBABILITY_LOSSES = ("minimax", "non-saturating")  # D's output is a logit: sigmoid(logit) = D(x) in [0, 1]
# Where D's raw output divides "real" from "fake", for ADA's sign(D(real)): a logit's 0, hinge's margin centre,
# least-squares' midpoint between its targets 0 and 1. A Wasserstein critic has no such point.
DECISION_POINTS = {"minimax": 0.0, "non-saturating": 0.0, "hinge": 0.0, "least-squares": 0.5}
AUGMENT_POLICIES = ("color,translation,cutout", "translation,cutout", "translation", "color,translation")
ADA_INTERVAL = 4  # D updates between ADA's adjustments of p (StyleGAN2-ADA's)
OUTPUTS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "linear": nn.Identity}  # generator output layers
SPECTRAL_NORM = {"none": (), "d": ("discriminator",), "g": ("generator",), "both": ("generator", "discriminator")}


@dataclass
class GANConfig:
    data_shape: tuple[int, ...] = (2,)  # one example, set from the data
    architecture: Literal["auto", "mlp", "conv"] = "auto"  # auto: conv for images it can halve, else mlp
    latent_dim: int = 64  # DCGAN used 100 for images; the 1-D and 2-D toys need only 2-8
    hidden_dims: tuple[int, ...] = (128, 128, 128)  # mlp widths of G and of D (D uses LeakyReLU(0.2))
    conv_channels: tuple[int, ...] = ()  # D's stride-2 convs, G mirrors them; (): from the size, conv_channels_for
    output: Literal["auto", "sigmoid", "tanh", "linear"] = "auto"  # auto: sigmoid for images (in [0, 1]), else linear
    loss: Literal["minimax", "non-saturating", "least-squares", "hinge", "wgan", "wgan-gp"] = "non-saturating"
    gp_weight: float = 10.0  # wgan-gp's lambda, the value Gulrajani et al. use for every data set
    r1_weight: float = 0.0  # > 0: adds r1_weight/2 E||grad D(x)||^2 on real data to D's loss (10 is common)
    clip_value: float = 0.01  # wgan: every D parameter is clamped to [-c, c] after each D step (Arjovsky et al.)
    spectral_norm: Literal["none", "d", "g", "both"] = "none"  # normalise every linear/conv weight of D and/or G
    pack: int = 1  # PacGAN: D judges groups of `pack` samples, which exposes a G that covers few modes
    minibatch_stddev: bool = False  # D also sees the batch's spread, so a collapsed G is easy to spot
    # Small data (models/augment.py): the same random differentiable transforms on every image D sees;
    # "ada" applies them with a probability p tuned while training so that E[sign(D(real))] stays at ada_target.
    augment: Literal["none", "diffaugment", "ada"] = "none"
    augment_policy: Literal[AUGMENT_POLICIES] = "color,translation,cutout"  # DiffAugment's for 100-shot data
    ada_target: float = ADA_TARGET
    ada_images: int = 20_000  # images for ADA's p to go from 0 to 1 (StyleGAN2-ADA: 500k, for far longer runs)
    ema_decay: float = 0.0  # 0: off; e.g. 0.999 samples from an exponential moving average of G's weights
    n_critic: int = 1  # D steps per G step; WGAN and WGAN-GP used 5
    lr_d: float | None = None  # D's learning rate; None: the training lr. TTUR uses a larger one for D
    betas: tuple[float, float] = (0.5, 0.999)  # Adam's; beta1 = 0.5 is DCGAN's, steadier than 0.9 for GANs
    # FreezeD (Mo et al. 2020): D's first k blocks (conv or mlp layers) keep their weights; fine-tuning from
    # another run (--init-from) then adapts only D's upper layers, which overfit less on a small data set
    freeze_d: int = 0

    def __post_init__(self):
        check_fields(self, {"data_shape": (1, MAX_DATA_SIZE), "latent_dim": (1, MAX_WIDTH),
                            "hidden_dims": (1, MAX_WIDTH),
                            "conv_channels": (1, MAX_CHANNELS), "gp_weight": (0, 1e4), "r1_weight": (0, 1e4),
                            "clip_value": (0, 100), "pack": (1, 64), "ema_decay": (0, 1), "n_critic": (1, 100),
                            "lr_d": (0, 1e6), "betas": (0, 1), "ada_target": (0, 1), "ada_images": (1, 10**9),
                            "freeze_d": (0, MAX_ITEMS)})
        self.data_shape = tuple(self.data_shape)
        self.hidden_dims = tuple(self.hidden_dims)
        self.conv_channels = tuple(self.conv_channels) or conv_channels_for(self.data_shape, deepest=128)
        self.betas = tuple(self.betas)
        self.architecture = resolve_architecture(self.architecture, self.data_shape, self.conv_channels)
        if self.output == "auto":
            self.output = "sigmoid" if len(self.data_shape) == 3 else "linear"
        if not self.clip_value > 0:
            raise ValueError(f"clip_value must be positive, got {self.clip_value}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 turns the EMA generator off), got {self.ema_decay}")
        if self.lr_d is not None and not self.lr_d > 0:
            raise ValueError(f"lr_d must be positive, or None to use the training lr; got {self.lr_d}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), e.g. 0.5,0.999; got {self.betas}")
        if self.augment != "none" and len(self.data_shape) != 3:
            raise ValueError(f"augment={self.augment} transforms images; this data is points: use augment=none")
        if self.augment == "ada" and self.loss not in DECISION_POINTS:
            raise ValueError(f"augment=ada reads the sign of D's verdict on real data, which a {self.loss} critic does "
                             "not have: use augment=diffaugment, or another loss")
        blocks, widths = ((len(self.conv_channels), "conv_channels") if self.architecture == "conv"
                          else (len(self.hidden_dims), "hidden_dims"))
        if self.freeze_d > blocks:  # D's head stays trainable: a D frozen whole could not adapt at all
            raise ValueError(f"freeze_d={self.freeze_d} is more than D's {blocks} blocks (one per entry of "
                             f"{widths}): use 0..{blocks}")


# --- the networks ------------------------------------------------------------------------------------


class MinibatchStddev(nn.Module):
    """One number per sample for D's last layer: the spread of D's features over the sample's group of the
    batch (all real or all fake), averaged over features (Karras et al. 2018, sec. 3). Real batches are
    varied; a generator that collapsed to a few outputs makes it small, and D sees it.

    Karras et al. append the number as a constant feature map before the last, linear layer; through a
    linear layer that is exactly one learned weight times the number, which is what this returns, so D
    adds it to its score instead of concatenating (the concatenation was a quarter of a 2-D GAN's step)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # starts as a plain D; its gradient is nonzero at once

    def forward(self, features: torch.Tensor, groups: int = 1) -> torch.Tensor:
        grouped = features.reshape(groups, len(features) // groups, -1)  # (groups, B/groups, F)
        centred = grouped - grouped.mean(dim=1, keepdim=True)
        spread = (centred.square().mean(dim=1) + 1e-8).sqrt().mean(dim=1)  # (groups,); 1e-8: finite gradient
        return self.weight * spread.repeat_interleave(len(features) // groups)


class Generator(nn.Module):
    """(B, latent_dim) -> (B, *data_shape) in data space.

    mlp: latent -> hidden_dims (ReLU) -> data. conv (DCGAN): a linear layer to (C_last, H/f, W/f),
    f = 2^len(conv_channels), then ConvTranspose2d(4, 2, 1) + BatchNorm + ReLU doubling H and W each
    time, the last straight to the image's channels. Output: sigmoid keeps images in genlab's [0, 1]
    range; it is DCGAN's tanh rescaled, since sigmoid(a) = (tanh(a/2) + 1) / 2.
    """

    def __init__(self, config: GANConfig):
        super().__init__()
        if config.architecture == "conv":
            check_conv_shape(config.data_shape, config.conv_channels)
            channels, height, width = config.data_shape
            factor = 2 ** len(config.conv_channels)
            start_shape = (config.conv_channels[-1], height // factor, width // factor)
            layers: list[nn.Module] = [nn.Linear(config.latent_dim, math.prod(start_shape)),
                                       nn.Unflatten(1, start_shape), nn.BatchNorm2d(start_shape[0]), nn.ReLU()]
            widths = [*reversed(config.conv_channels), channels]
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
                layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1))
                if i < len(widths) - 2:  # DCGAN: no BatchNorm on G's output layer
                    layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
        else:
            layers = [mlp([config.latent_dim, *config.hidden_dims, math.prod(config.data_shape)]),
                      nn.Unflatten(1, config.data_shape)]
        self.net = nn.Sequential(*layers, OUTPUTS[config.output]())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """(B/pack, pack * C, H, W) or (B/pack, pack, *data_shape) packed groups -> (B/pack,) raw scores.

    mlp: flatten -> hidden_dims (LeakyReLU(0.2)) -> linear to 1. conv (DCGAN): Conv2d(4, 2, 1) +
    [BatchNorm] + LeakyReLU(0.2) halving H and W per entry of conv_channels -> linear to 1. Plus the
    minibatch stddev term when it is on. BatchNorm follows DCGAN (none on the input layer); the caller
    turns it off where it would be wrong (see GAN.__init__).
    """

    def __init__(self, config: GANConfig, *, batch_norm: bool):
        super().__init__()
        self.batch_norm = batch_norm and config.architecture == "conv" and len(config.conv_channels) > 1
        if config.architecture == "conv":
            channels, height, width = config.data_shape
            channels *= config.pack  # packed samples arrive side by side as channels
            layers: list[nn.Module] = []
            for i, c_out in enumerate(config.conv_channels):
                layers.append(nn.Conv2d(channels, c_out, kernel_size=4, stride=2, padding=1))
                if batch_norm and i > 0:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.LeakyReLU(0.2))
                channels = c_out
            factor = 2 ** len(config.conv_channels)
            head_in = channels * (height // factor) * (width // factor)
        else:
            layers = [nn.Flatten()]
            n_in = config.pack * math.prod(config.data_shape)  # packed samples arrive concatenated
            for hidden in config.hidden_dims:
                layers += [nn.Linear(n_in, hidden), nn.LeakyReLU(0.2)]
                n_in = hidden
            head_in = n_in
        self.features = nn.Sequential(*layers)
        self.stddev = MinibatchStddev() if config.minibatch_stddev else None
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(head_in, 1))

    def forward(self, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """`groups`: x is that many equal batches (say real, then fake) that batch statistics keep apart."""
        features = self.features(x)
        score = self.head(features).squeeze(1)
        return score if self.stddev is None else score + self.stddev(features, groups)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN (sec. 4): conv weights ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02) and shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def add_spectral_norm(net: nn.Module) -> None:
    """Divide every linear/conv weight by its largest singular value, estimated by one power iteration
    per training forward pass (Miyato et al. 2018); each layer, and so the net, is then ~1-Lipschitz."""
    for module in list(net.modules()):
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            spectral_norm(module)


class GAN(nn.Module):
    # What it can do, declared for every caller (previews, eval, compare, the CLI and the lab) instead of probed:
    # sample(n), reconstruct(x), interpolate(a, b), log_likelihood(x).
    can_sample, can_reconstruct, can_interpolate, has_likelihood = True, False, False, False
    # Samples are G(z) with z ~ N(0, I): sample(n, truncation=t) and interpolate_seeds(a, b) work in z.
    can_walk_latents = True
    can_upscale = False  # upscale(lr): super-resolution models only (models/superres.py)
    fits_sampler = False  # a sampler fitted after training: the autoencoder only (models/autoencoder.py)

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        # BatchNorm mixes the examples of a batch, so D(x_i) would depend on the other x_j and a
        # per-sample gradient (WGAN-GP, R1) would no longer be one; spectral norm replaces it as D's
        # stabiliser (Miyato et al. use none in D).
        batch_norm = not ("discriminator" in SPECTRAL_NORM[config.spectral_norm]
                          or config.loss == "wgan-gp" or config.r1_weight > 0)
        self.discriminator = Discriminator(config, batch_norm=batch_norm)
        if config.architecture == "conv":
            self.apply(dcgan_init)
        for name in SPECTRAL_NORM[config.spectral_norm]:
            add_spectral_norm(getattr(self, name))
        self.freeze_discriminator_blocks(config.freeze_d)
        # A frozen copy that trails G (update_ema); sample() uses it. None when ema_decay = 0.
        self.ema = copy.deepcopy(self.generator).requires_grad_(False) if config.ema_decay > 0 else None
        # How many EMA updates so far, for the warm-up in update_ema; saved with the weights so resume is exact.
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        if config.augment == "ada":  # p and what D said since p last moved: saved with the weights, resumed exactly
            self.register_buffer("augment_p", torch.zeros((), dtype=torch.float64))
            self.register_buffer("ada_real_signs", torch.zeros((), dtype=torch.float64))  # sum of batch means
            self.register_buffer("ada_batches", torch.zeros((), dtype=torch.long))

    @property
    def can_guide(self) -> bool:
        """D-guided sampling (genlab.guided) reads D's score of one sample (score_each): a packed D judges
        groups."""
        return self.config.pack == 1

    def latents(self, n: int, generator: torch.Generator | None = None,
                truncation: float | None = None) -> torch.Tensor:
        """n draws of z ~ N(0, I), (n, latent_dim), on the model's device; truncated to [-truncation, truncation]
        when given (layers.normal_latents)."""
        device = next(self.generator.parameters()).device
        return normal_latents(n, self.config.latent_dim, generator=generator, device=device, truncation=truncation)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, *data_shape) from the generator being trained (never the EMA copy)."""
        return self.generator(z)

    def sampling_network(self) -> nn.Module:
        """The generator sample() draws from: the EMA copy when there is one, else G (genlab.guided's Langevin
        steps differentiate through it)."""
        return self.ema if self.ema is not None else self.generator

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, *data_shape): what sample() draws, from the EMA generator when there is one."""
        return self.sampling_network()(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               truncation: float | None = None) -> torch.Tensor:
        """n samples in data space: decode(latents(n)). `truncation` t: BigGAN's truncation trick, each number of z
        drawn from the normal truncated to [-t, t] (layers.normal_latents), typical samples for less variety."""
        return self.decode(self.latents(n, generator, truncation))

    def discriminate(self, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """(B, *data_shape) -> (B/pack,) logits or critic values, one per group of `pack` consecutive samples.
        `groups`: x is that many equal batches whose minibatch statistics are kept apart."""
        pack = self.config.pack
        if (len(x) // groups) % pack:
            raise ValueError(f"batch of {len(x) // groups} is not divisible by pack={pack}: "
                             f"use a batch size that is a multiple of {pack}")
        # (B, C, H, W) -> (B/pack, pack*C, H, W); (B, D) -> (B/pack, pack*D): a group's samples side by side
        return self.discriminator(x.reshape(len(x) // pack, pack * x.shape[1], *x.shape[2:]), groups)

    def score_each(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *data_shape) -> (B,) D's raw output for each sample on its own, for D-guided sampling (genlab.guided).
        The minibatch-stddev term is left out: it adds one constant to a whole batch, so without it a sample's score
        does not depend on which samples share its batch (the calibration's shift absorbs the constant)."""
        if not self.can_guide:
            raise ValueError(f"this D judges packs of {self.config.pack} samples together, not one sample: "
                             "D-guided sampling needs a run trained with pack=1")
        return self.discriminator.head(self.discriminator.features(x)).squeeze(1)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """x as D sees it in training: augmented when augment is on (ADA: with its current probability p)."""
        if self.config.augment == "none":
            return x
        probability = float(self.augment_p) if self.config.augment == "ada" else 1.0
        return augment(x, tuple(self.config.augment_policy.split(",")), probability)

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """D's loss on a real batch and a generated one (already detached, the same size), plus its terms for
        logging: d_real, d_fake (mean raw outputs: logits or critic values) and the penalties that are on;
        with ADA also real_sign (mean sign of D's verdicts on the reals, ADA's r_t) and augment_p."""
        if len(real) != len(fake):
            raise ValueError(f"D compares equal batches: got {len(real)} real and {len(fake)} fake samples")
        real, fake = self.augment(real), self.augment(fake)
        if self.discriminator.batch_norm:  # two passes, as DCGAN does: BatchNorm's statistics are all real or all fake
            r, f = self.discriminate(real), self.discriminate(fake)
        else:  # one pass over both, as two groups (minibatch stddev keeps them apart): half the calls of two passes
            r, f = self.discriminate(torch.cat([real, fake]), groups=2).chunk(2)
        d_loss, _ = LOSSES[self.config.loss]
        terms = {"loss": d_loss(r, f), "d_real": r.mean().detach(), "d_fake": f.mean().detach()}
        if self.config.augment == "ada":
            terms["real_sign"] = torch.sign(r.detach().float() - DECISION_POINTS[self.config.loss]).mean()
            terms["augment_p"] = self.augment_p.float().clone()
        if self.config.loss == "wgan-gp":
            terms["gp"] = self.gradient_penalty(real, fake)
            terms["loss"] = terms["loss"] + terms["gp"]
        if self.config.r1_weight > 0:
            terms["r1"] = self.r1_penalty(real)
            terms["loss"] = terms["loss"] + terms["r1"]
        return terms

    def generator_loss(self, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """G's loss on generated samples (not detached). It also leaves gradients in D, which D's
        zero_grad clears before D's next step."""
        f = self.discriminate(self.augment(fake))
        _, g_loss = LOSSES[self.config.loss]
        return {"loss": g_loss(f), "d_fake": f.mean().detach()}

    def _input_gradient_norms(self, x: torch.Tensor) -> torch.Tensor:
        """||grad_x D(x)||_2 for each of D's inputs, (B/pack,), kept in the graph so a penalty on it trains D.

        With packing D is a function of a whole group, so the norm runs over the group's samples
        together: its Lipschitz constant as the function it is. pack = 1: over one sample's dims."""
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.discriminate(x).sum(), x, create_graph=True)
        return grad.reshape(len(x) // self.config.pack, -1).norm(dim=1)  # consecutive samples form a group

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """WGAN-GP (Gulrajani et al. 2017, eq. 3): gp_weight E[(||grad D(x_hat)||_2 - 1)^2] at
        x_hat = eps x + (1 - eps) G(z), eps ~ U(0, 1), on the segment between each real and fake pair.

        One eps per sample, shape (B, 1, ...) broadcast over all its pixels: an eps per pixel would
        put x_hat off the segment and penalise the gradient at points the paper never meant."""
        eps = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device, dtype=real.dtype)
        x_hat = eps * real + (1 - eps) * fake
        return self.config.gp_weight * (self._input_gradient_norms(x_hat) - 1).pow(2).mean()

    def r1_penalty(self, real: torch.Tensor) -> torch.Tensor:
        """R1 (Mescheder et al. 2018, eq. 9): r1_weight/2 E||grad D(x)||^2 on real data only, which
        pushes D to be flat on the data and damps its oscillation around the equilibrium."""
        return self.config.r1_weight / 2 * self._input_gradient_norms(real).pow(2).mean()

    @torch.no_grad()
    def clip_weights(self) -> None:
        """WGAN: clamp every D parameter to [-clip_value, clip_value], a crude way to keep D K-Lipschitz.
        The step calls it after each D update when loss = wgan."""
        for p in self.discriminator.parameters():
            if p.requires_grad:  # FreezeD's frozen layers keep their weights
                p.clamp_(-self.config.clip_value, self.config.clip_value)

    @torch.no_grad()
    def adapt_augmentation(self, real_sign: torch.Tensor, batch_size: int) -> None:
        """ADA: record D's mean sign on a real batch; every ADA_INTERVAL D updates move p by the images seen over
        ada_images, up if D was surer of the reals than ada_target, down if not (augment.adapted_probability)."""
        self.ada_real_signs += float(real_sign)
        self.ada_batches += 1
        if int(self.ada_batches) == ADA_INTERVAL:
            self.augment_p.fill_(adapted_probability(float(self.augment_p), float(self.ada_real_signs) / ADA_INTERVAL,
                                                     ADA_INTERVAL * batch_size, self.config.ada_images,
                                                     self.config.ada_target))
            self.ada_real_signs.zero_()
            self.ada_batches.zero_()

    def update_ema(self) -> None:
        """Move the EMA generator towards G (layers.ema_update, with its warm-up). The step calls it after each
        G update."""
        if self.ema is None:
            raise ValueError("update_ema needs an EMA generator: set ema_decay > 0 (e.g. 0.999)")
        ema_update(self.ema, self.generator, self.config.ema_decay, self.ema_updates)

    def freeze_discriminator_blocks(self, k: int) -> None:
        """FreezeD: D's first k blocks (a conv or linear layer with the BatchNorm after it) get no gradient, so
        the optimizer leaves them as they are (their BatchNorm statistics still follow the data)."""
        blocks = 0
        for module in self.discriminator.features:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                blocks += 1
            if blocks > k:
                break
            module.requires_grad_(False)

    @torch.no_grad()
    def interpolate_seeds(self, seed_a: int, seed_b: int, steps: int = 10,
                          method: Literal["lerp", "slerp"] = "lerp") -> torch.Tensor:
        """(steps, *data_shape): the path between the latents seeds a and b draw, decoded, ends included: a seed's
        end is the one sample that sample(1, generator) draws with a generator seeded with it."""
        device = self.ema_updates.device
        z_a, z_b = (self.latents(1, torch.Generator(device).manual_seed(seed))[0] for seed in (seed_a, seed_b))
        return self.decode(interpolate_latents(z_a, z_b, steps, method))


# --- the training recipe: optimizers and one step; train.py's loop decides when a step runs ------------


def configure_optimizers(model: GAN, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam for G (lr) and D (the model's lr_d, or lr), both with the model's betas."""
    config = model.config
    lr_d = config.lr_d if config.lr_d is not None else lr
    return {"generator": adam(model.generator.parameters(), lr, config.betas),
            "discriminator": adam(model.discriminator.parameters(), lr_d, config.betas)}


def batches_per_step(config: GANConfig) -> int:
    """n_critic D updates per step, each on its own real batch: a step's x holds n_critic batches."""
    return config.n_critic


def check_batch_size(config: GANConfig, batch_size: int) -> None:
    """PacGAN's D judges packs of `pack` samples, so a batch must hold whole packs."""
    if batch_size % config.pack:
        raise ValueError(f"batch_size {batch_size} is not divisible by pack={config.pack}: "
                         f"use a multiple of {config.pack}")


def discriminator_update(model: GAN, optimizer, real: torch.Tensor, autocast=contextlib.nullcontext,
                         accumulate: int = 1) -> tuple[dict[str, torch.Tensor], tuple[Callable, ...]]:
    """One D update on `real` and as many fresh fakes, its gradient summed over `accumulate` micro-batches
    (layers.accumulated_update); returns D's terms (means over the batch) and, for G's update, each micro-batch's
    fakes as layers.kept_for_generator keeps them. D sees the fakes detached: no gradient reaches G."""
    fakes = []

    def loss_of(part: torch.Tensor) -> dict[str, torch.Tensor]:
        # cached(): spectral norm's weights are computed once for D's passes on real, fake and the GP points of
        # this micro-batch (each micro-batch computes its own: one cached graph cannot go backward twice)
        with parametrize.cached():
            z = model.latents(len(part))
            fake = model.generate(z)
            fakes.append(kept_for_generator(fake, functools.partial(model.generate, z), accumulate))
            return model.discriminator_loss(part, fake.detach())

    terms = accumulated_update(optimizer, loss_of, micro_batches(real, accumulate), autocast)
    if model.config.loss == "wgan":
        model.clip_weights()  # keeps the critic K-Lipschitz for some K (Arjovsky et al. 2017)
    if model.config.augment == "ada":
        model.adapt_augmentation(terms["real_sign"], len(real))  # the whole batch's mean sign: one ADA reading
    return terms, tuple(fakes)


def generator_update(model: GAN, optimizer, fakes: tuple[Callable[[], torch.Tensor], ...],
                     autocast=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """One G update: make D call G's fakes real (`fakes`: one function per micro-batch giving its fake batch with
    G's graph), their gradients summed into one step; then the EMA copy follows G. G needs gradients through D but
    not D's own: freezing D skips them."""
    trainable = [p for p in model.discriminator.parameters() if p.requires_grad]  # not FreezeD's frozen layers
    for p in trainable:
        p.requires_grad_(False)
    try:
        terms = accumulated_update(optimizer, lambda fake: model.generator_loss(fake()), fakes, autocast)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    if model.ema is not None:
        model.update_ema()
    return terms


def training_step(model: GAN, optimizers, x: torch.Tensor, autocast=contextlib.nullcontext,
                  accumulate: int = 1) -> dict[str, torch.Tensor]:
    """n_critic D updates, one real batch each (x holds n_critic batches), then one G update on the last fakes;
    each update's gradient summed over `accumulate` micro-batches of its batch. `autocast`: the context the
    forward passes run in (autocast for bf16-mixed)."""
    for real in x.chunk(model.config.n_critic):
        # (1) Update D: maximise log D(x) + log(1 - D(G(z))) (or the chosen loss's equivalent)
        d_terms, fakes = discriminator_update(model, optimizers["discriminator"], real, autocast, accumulate)
    # (2) Update G: the updated D judges the last fakes
    g_terms = generator_update(model, optimizers["generator"], fakes, autocast)
    return {"d_loss": d_terms.pop("loss"), "g_loss": g_terms.pop("loss"), **d_terms}


# --- the collapse diagnostics train.py runs at log steps ------------------------------------------------


def d_probability(logit: float) -> float:
    """D(x) from a logit of a probability loss: the logistic sigmoid, without exp's overflow at |logit| > 709."""
    return 0.5 * (1 + math.tanh(logit / 2))


@torch.no_grad()
def collapse_fixes(config: GANConfig) -> tuple[str, str, str]:
    """(fix for mode collapse, for a won discriminator, for memorization): the remedies collapse.py names, as --set
    overrides, but only those this run does not use already (a WGAN-GP run is not told to try loss=wgan-gp)."""
    uses_sn = config.spectral_norm in ("d", "both")
    collapse = [fix for fix, used in (("--set minibatch_stddev=true", config.minibatch_stddev),
                                      ("--set pack=2", config.pack > 1), ("--set spectral_norm=d", uses_sn),
                                      ("--set loss=wgan-gp", config.loss == "wgan-gp")) if not used]
    won = [fix for fix, used in (("--set spectral_norm=d", uses_sn), ("a lower --set lr_d=...", False),
                                 ("--set loss=non-saturating", config.loss != "minimax")) if not used]
    copying = {"none": ["--set augment=diffaugment", "--set augment=ada"], "diffaugment": ["--set augment=ada"],
               "ada": []}[config.augment] + ["an earlier checkpoint (stop sooner)"]
    return (try_one_of(collapse) if collapse else "every usual fix is on already: try more steps, a lower lr or a "
            "wider G (hidden_dims, conv_channels)", try_one_of(won), try_one_of(copying))


def try_one_of(fixes: list[str]) -> str:
    """'try a, b or c': advice from the fixes a run does not use yet (the CLI's --set flags, the lab's controls)."""
    return "try " + (", ".join(fixes[:-1]) + " or " + fixes[-1] if len(fixes) > 1 else fixes[0])


# A run still learning may change its step count on resume (genlab.run.RESUMABLE), so the advice can be followed.
FIX_LEARNING = "give it more steps before judging collapse: resume with --set steps=... (more than now)"


# Copying is a small-data failure (100 faces, 1,500 digits); in pixels against every training image it costs ~2 GFLOP
# here, and against MNIST's 60,000 it would cost more than the training between two checks (eval still measures it).
MEMORIZATION_MAX_IMAGES = 2000


def with_what_d_knows(found: CollapseWarning, model: GAN, train_data, record: dict) -> CollapseWarning:
    """A mode-collapse warning with what D-guided samples (genlab.guided.beside_direct, rejection sampling) cover
    beside G's own: when D still sees modes G has lost, `genlab sample --method rejection` draws them after
    training, though only retraining makes G draw them itself. The figures go into `record` too."""
    from genlab.guided import beside_direct  # guided reads runs, which read the model families

    try:
        drawn = beside_direct(model, train_data.x, NUM_SAMPLES, seed=record["step"])
    except ValueError:  # too few proposals kept: nothing to show
        return found
    guided = mixture_coverage(drawn.samples.cpu(), train_data.name)
    record.update(guided_modes_covered=guided.modes_covered, guided_high_quality=guided.high_quality_fraction)
    sees_more = guided.modes_covered > record["modes_covered"]
    return CollapseWarning(found.kind, (
        f"{found.message}; D-guided samples cover {guided.modes_covered} of {guided.num_modes} modes, "
        f"{100 * guided.high_quality_fraction:.1f}% near a mode ("
        + ("D still sees modes G lost: genlab sample --method rejection draws them" if sees_more
           else "D does not bring the lost modes back either") + ")"), found.fix)


def collapse_evidence(model: GAN, train_data, record: dict) -> list:
    """The collapse checks at a log step (for a CollapseDetector); adds what they measured to `record`.

    2-D mixtures: mode coverage of NUM_SAMPLES samples, "still learning" while most are near no mode. Images: the
    spread of 256 samples against 256 real images, and on small image sets their copy rate (in pixels).
    Probability losses: whether D has won (its mean outputs, logits, through a sigmoid).
    Samples come from their own generator, in eval mode, so checking never changes training.
    """
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator(model.ema_updates.device).manual_seed(record["step"])
        fix_collapse, fix_discriminator, fix_memorization = collapse_fixes(model.config)
        checks = []
        if train_data.name in MIXTURES:
            coverage = mixture_coverage(model.sample(NUM_SAMPLES, generator=generator).cpu(), train_data.name)
            record.update(modes_covered=coverage.modes_covered, high_quality=coverage.high_quality_fraction,
                          reverse_kl=coverage.reverse_kl)
            found = check_modes(coverage, fix=fix_collapse, learning_fix=FIX_LEARNING)
            if found is not None and found.kind == "modes" and model.can_guide:
                found = with_what_d_knows(found, model, train_data, record)
            checks.append(found)
        elif train_data.kind == "image":
            samples = model.sample(256, generator=generator).cpu()
            fake, real = sample_diversity(samples), sample_diversity(train_data.x[:256].cpu())
            record["diversity_ratio"] = fake / real
            checks.append(check_diversity(fake, real, fix=fix_collapse))
            if len(train_data) <= MEMORIZATION_MAX_IMAGES:
                found = memorization(samples.clamp(0, 1), train_data.x.cpu())
                record["copy_rate"] = found.copy_rate
                checks.append(check_memorization(found, fix=fix_memorization))
        if model.config.loss in PROBABILITY_LOSSES:
            checks.append(check_discriminator(d_probability(record["d_real"]), d_probability(record["d_fake"]),
                                              fix=fix_discriminator))
        return checks
    finally:
        model.train(was_training)
