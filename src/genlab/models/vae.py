"""Variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", 2014).

q(z|x) = N(mu(x), diag exp(logvar(x))), p(z) = N(0, I), p(x|z) Bernoulli (logits) or Gaussian.
Training maximises the ELBO  E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))  with the
reparameterisation z = mu + sigma * eps. `log_likelihood` gives the importance-weighted bound of
Burda et al. ("Importance Weighted Autoencoders", 2016), which tightens to log p(x) as k grows.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import check_fields
from genlab.metrics.collapse import check_posterior
from genlab.models.layers import (
    MAX_CHANNELS,
    MAX_DATA_SIZE,
    MAX_WIDTH,
    adam,
    conv_channels_for,
    encoder_decoder,
    interpolate_latents,
    loss_step,
    normal_latents,
    resolve_architecture,
)

LOG_2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig:
    data_shape: tuple[int, ...] = (1, 28, 28)  # one example, set from the data
    architecture: Literal["auto", "mlp", "conv"] = "auto"  # auto: conv for images it can halve, else mlp
    latent_dim: int = 20
    hidden_dims: tuple[int, ...] = (400,)  # mlp widths, encoder side; 784-400-20 is pytorch/examples' VAE
    conv_channels: tuple[int, ...] = ()  # one stride-2 conv per entry; () derives them: layers.conv_channels_for
    likelihood: Literal["auto", "bernoulli", "gaussian"] = "auto"  # auto: bernoulli for images, gaussian for points
    beta: float = 1.0  # weight of the KL term; > 1 trades reconstruction for a more disentangled code (beta-VAE)
    # KL warm-up (Bowman et al. 2016, sec. 3.1): the KL weight ramps linearly from 0 to beta over this many training
    # steps, so the decoder learns to use z before the KL term can push the code to carry nothing; 0: off.
    kl_warmup: int = 0

    def __post_init__(self):
        check_fields(self, {"data_shape": (1, MAX_DATA_SIZE), "latent_dim": (1, MAX_WIDTH),
                            "hidden_dims": (1, MAX_WIDTH),
                            "conv_channels": (1, MAX_CHANNELS), "beta": (0, 1e4), "kl_warmup": (0, 10**9)})
        self.data_shape = tuple(self.data_shape)
        self.hidden_dims = tuple(self.hidden_dims)
        self.conv_channels = tuple(self.conv_channels) or conv_channels_for(self.data_shape, deepest=64)
        self.architecture = resolve_architecture(self.architecture, self.data_shape, self.conv_channels)
        if self.likelihood == "auto":
            self.likelihood = "bernoulli" if len(self.data_shape) == 3 else "gaussian"


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example, closed form (Kingma & Welling, appendix B):
    0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(log_std)^2) summed over every dimension but the first."""
    per_dim = -0.5 * ((x - mean) * torch.exp(-log_std)).pow(2) - log_std - 0.5 * LOG_2PI
    return per_dim.flatten(1).sum(1)


class VAE(nn.Module):
    # What it can do, declared for every caller (previews, eval, compare, the CLI and the lab) instead of probed:
    # sample(n), reconstruct(x), interpolate(a, b), log_likelihood(x).
    can_sample, can_reconstruct, can_interpolate, has_likelihood = True, True, True, True
    can_upscale = False  # upscale(lr): super-resolution models only (models/superres.py)
    fits_sampler = False  # a sampler fitted after training: the autoencoder only (models/autoencoder.py)
    can_guide = False  # D-guided sampling (genlab.guided): GANs whose D scores one sample (models/gan.py)

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = encoder_decoder(
            config.architecture, config.data_shape, config.hidden_dims, config.conv_channels,
            code_features=2 * config.latent_dim, latent_dim=config.latent_dim)
        if config.likelihood == "gaussian":
            # One learned noise level per data dimension, shared by all examples.
            self.log_std = nn.Parameter(torch.zeros(config.data_shape))
        if config.kl_warmup > 0:
            # Training steps taken, which sets the warm-up's KL weight; saved with the weights, so a resumed run
            # continues the ramp exactly. Only with warm-up on: checkpoints of runs without it stay as they were.
            self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))

    def kl_weight(self) -> float:
        """The weight of the KL term now: beta * min(1, steps_trained / kl_warmup), or beta without warm-up."""
        if self.config.kl_warmup == 0:
            return self.config.beta
        return self.config.beta * min(1.0, self.steps_trained.item() / self.config.kl_warmup)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, *data_shape) -> mu, logvar, each (B, latent_dim)"""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> the mean of p(x|z), (B, *data_shape): probabilities or Gaussian means."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.config.likelihood == "bernoulli" else out

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example, (B,)."""
        out = self.decoder(z)
        if self.config.likelihood == "bernoulli":
            # Cross-entropy with logits; exact for binary x, the usual surrogate for grey values.
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(1)
        return gaussian_log_density(x, out, self.log_std)

    def elbo(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example ELBO and its two terms, each (B,), from one reparameterised sample of z."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterisation: gradients flow to mu, logvar
        reconstruction = self.log_px_given_z(x, z)
        kl = gaussian_kl(mu, logvar)
        return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean over the batch of -log p(x|z) + w * KL, w = kl_weight() (beta once any warm-up is over), with the
        terms for logging; with warm-up on, also the weight in effect."""
        terms = self.elbo(x)
        reconstruction = -terms["reconstruction"].mean()
        kl = terms["kl"].mean()
        weight = self.kl_weight()
        loss = {"loss": reconstruction + weight * kl, "reconstruction": reconstruction, "kl": kl}
        if self.config.kl_warmup > 0:
            loss["kl_weight"] = torch.tensor(weight)
        return loss

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, k: int = 1000, chunk: int = 100) -> torch.Tensor:
        """Importance-weighted estimate of log p(x) per example, (B,), with k samples from q(z|x):
        log (1/k) sum_i p(x, z_i) / q(z_i|x). Samples are drawn `chunk` at a time to bound memory."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        mu, logvar = self.encode(x)
        std = torch.exp(0.5 * logvar)
        log_weights = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            eps = torch.randn(n, *mu.shape, device=mu.device, dtype=mu.dtype)  # (n, B, D)
            z = mu + std * eps
            log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * LOG_2PI).sum(-1)  # (n, B)
            log_prior = (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(-1)
            x_rep = x.expand(n, *x.shape).reshape(n * len(x), *x.shape[1:])
            log_px = self.log_px_given_z(x_rep, z.reshape(n * len(x), -1)).view(n, len(x))
            log_weights.append(log_px + log_prior - log_q)
        return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(k)

    def latents(self, n: int, generator: torch.Generator | None = None,
                truncation: float | None = None) -> torch.Tensor:
        """n draws of z from the prior N(0, I), (n, latent_dim), on the model's device; truncated to
        [-truncation, truncation] when given (layers.normal_latents: a lower "temperature")."""
        device = next(self.parameters()).device
        return normal_latents(n, self.config.latent_dim, generator=generator, device=device, truncation=truncation)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of z ~ N(0, I), decoded to the mean of p(x|z): decode(latents(n))."""
        return self.decode(self.latents(n, generator))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of each example's code."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int = 10,
                    method: Literal["lerp", "slerp"] = "lerp") -> torch.Tensor:
        """Decode `steps` latents between the posterior means of examples a and b (each (*data_shape,))."""
        mu, _ = self.encode(torch.stack([a, b]))
        return self.decode(interpolate_latents(mu[0], mu[1], steps, method))


# --- the training recipe (train.py's loop decides when it runs) ---------------------------------------

# What the lab (a shared server) lets a client set, tighter than the checks above; its BOUNDS hold the shared names
LAB_BOUNDS = {"kl_warmup": (0, 100_000)}


def configure_optimizers(model, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam on every weight, as in pytorch/examples' VAE."""
    return {"model": adam(model.parameters(), lr)}


def training_step(model, optimizers, x: torch.Tensor, autocast=contextlib.nullcontext,
                  accumulate: int = 1) -> dict[str, torch.Tensor]:
    """One gradient step on the negative ELBO: reconstruction plus the KL weight (beta, or the warm-up's) * KL."""
    terms = loss_step(model, optimizers["model"], x, autocast, accumulate)
    if model.config.kl_warmup > 0:
        model.steps_trained += 1
    return terms


def collapse_evidence(model: VAE, train_data, record: dict) -> list:
    """The VAE's check at a log step, for the training loop's CollapseDetector: posterior collapse, read off the
    logging window's mean KL (no extra forward pass)."""
    return [check_posterior(record["kl"], model.config.beta, model.config.kl_warmup)]
