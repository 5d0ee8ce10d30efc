"""Denoising diffusion (Ho et al., "Denoising Diffusion Probabilistic Models", 2020): the yardstick.

The forward process adds Gaussian noise over T steps until x_T is pure noise; a network eps(x_t, t) learns
to predict the noise in x_t, and sampling runs the process backwards from x_T ~ N(0, I).

  training (Ho alg. 1)  t ~ U{0..T-1}, noise ~ N(0, I), x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise,
                        loss = ||noise - eps(x_t, t)||^2, the "simple" loss of Ho eq. 14
  sampling              x = x_T; for each t: eps = eps(x, t); x = schedule step (DDPM, Ho alg. 2, or DDIM,
                        Song et al. 2021) -- the schedule's math lives in noise_schedule.py

Networks: an MLP with the timestep added at every layer for the 1-D and 2-D toys, a small UNet (unet.py)
for images. Images are moved from genlab's [0, 1] to [-1, 1] (Ho sec. 3.3) and back when sampled.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import check_fields
from genlab.models.layers import MAX_CHANNELS, MAX_DATA_SIZE, MAX_WIDTH, adam, ema_update, loss_step
from genlab.models.noise_schedule import NoiseSchedule
from genlab.models.unet import UNet, check_unet_shape, time_mlp, timestep_embedding, unet_fits

SAMPLERS = ("ddpm", "ddim")


@dataclass
class DDPMConfig:
    data_shape: tuple[int, ...] = (2,)  # one example, set from the data
    num_timesteps: int = 1000  # T; Ho et al.'s 1000
    schedule: Literal["linear", "cosine"] = "linear"  # linear: Ho et al.; cosine: Nichol & Dhariwal, gentler near t=0
    architecture: Literal["auto", "mlp", "unet"] = "auto"  # auto: unet for images it can halve, else mlp
    hidden_dims: tuple[int, ...] = (128, 128, 128)  # mlp widths; the toys need no more
    unet_channels: tuple[int, ...] = (16, 32, 32)  # one level per entry, halved between: 28 -> 14 -> 7; CPU-sized
    ema_decay: float = 0.999  # sample() uses an EMA of the weights (Ho et al. used 0.9999 over 800k steps); 0: off
    sampler: Literal["ddpm", "ddim"] = "ddpm"  # default for sample(): ancestral DDPM, or deterministic DDIM
    sampling_steps: int | None = None  # default for sample(); None: all num_timesteps (DDIM needs ~50-100)

    def __post_init__(self):
        # T sizes the schedule's tables and a full sampling loop; 1e9 once grew the lab's server to 22 GB
        check_fields(self, {"data_shape": (1, MAX_DATA_SIZE), "num_timesteps": (1, 100_000),
                            "hidden_dims": (1, MAX_WIDTH), "unet_channels": (1, MAX_CHANNELS), "ema_decay": (0, 1),
                            "sampling_steps": (1, 100_000)})
        self.data_shape = tuple(self.data_shape)
        self.hidden_dims = tuple(self.hidden_dims)
        self.unet_channels = tuple(self.unet_channels)
        if self.architecture == "auto":
            self.architecture = "unet" if unet_fits(self.data_shape, self.unet_channels) and min(
                self.data_shape[1:]) >= 8 else "mlp"
        if self.architecture == "unet":
            check_unet_shape(self.data_shape, self.unet_channels)
        if self.sampling_steps is not None and not 1 <= self.sampling_steps <= self.num_timesteps:
            raise ValueError(f"sampling_steps must be between 1 and num_timesteps={self.num_timesteps}, "
                             f"got {self.sampling_steps}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 turns the EMA off), got {self.ema_decay}")
        if not self.hidden_dims:
            raise ValueError("hidden_dims needs at least one width, e.g. hidden_dims=128,128")


class MLPDenoiser(nn.Module):
    """(B, *data_shape) noisy points and (B,) timesteps -> (B, *data_shape) predicted noise.

    The input goes to the first width and the timestep embedding is added to every hidden layer, so each
    layer knows how noisy its input is; SiLU between layers.
    """

    def __init__(self, data_shape: tuple[int, ...], hidden_dims: tuple[int, ...]):
        super().__init__()
        data_dim = math.prod(data_shape)
        self.data_shape = data_shape
        self.embedding_dim = hidden_dims[0]
        self.time = time_mlp(self.embedding_dim, hidden_dims[0])
        self.input = nn.Linear(data_dim, hidden_dims[0])
        widths = zip(hidden_dims[:-1], hidden_dims[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in widths)
        self.time_projections = nn.ModuleList(nn.Linear(hidden_dims[0], n_out) for n_out in hidden_dims[1:])
        self.output = nn.Linear(hidden_dims[-1], data_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = self.time(timestep_embedding(t, self.embedding_dim))  # (B, hidden_dims[0])
        h = self.input(x.flatten(1)) + time
        for layer, projection in zip(self.layers, self.time_projections, strict=True):
            h = layer(F.silu(h)) + projection(F.silu(time))
        return self.output(F.silu(h)).view(len(x), *self.data_shape)


class DDPM(nn.Module):
    # What it can do, declared for every caller (previews, eval, compare, the CLI and the lab) instead of probed:
    # sample(n), reconstruct(x), interpolate(a, b), log_likelihood(x).
    can_sample, can_reconstruct, can_interpolate, has_likelihood = True, False, False, False
    can_upscale = False  # upscale(lr): super-resolution models only (models/superres.py)
    fits_sampler = False  # a sampler fitted after training: the autoencoder only (models/autoencoder.py)
    can_guide = False  # D-guided sampling (genlab.guided): GANs whose D scores one sample (models/gan.py)

    def __init__(self, config: DDPMConfig):
        super().__init__()
        self.config = config
        self.schedule = NoiseSchedule(config.num_timesteps, config.schedule)
        if config.architecture == "unet":
            self.network = UNet(config.data_shape, config.unet_channels)
        else:
            self.network = MLPDenoiser(config.data_shape, config.hidden_dims)
        # A frozen copy that trails the network (update_ema); sample() uses it. None when ema_decay = 0.
        self.ema = copy.deepcopy(self.network).requires_grad_(False) if config.ema_decay > 0 else None
        # How many EMA updates so far, for the warm-up in update_ema; saved with the weights so resume is exact.
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    @property
    def is_image(self) -> bool:
        return len(self.config.data_shape) == 3

    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Data as the diffusion sees it: images from [0, 1] to [-1, 1] (Ho sec. 3.3), points unchanged."""
        return 2 * x - 1 if self.is_image else x

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.is_image else x

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Ho et al. alg. 1 with the simple loss (eq. 14): mean squared error of the predicted noise, over a
        uniformly drawn timestep per example. Draws t and the noise from the global RNG."""
        x0 = self.to_model_space(x)
        t = torch.randint(self.config.num_timesteps, (len(x0),), device=x0.device)  # (B,)
        noise = torch.randn_like(x0)
        predicted = self.network(self.schedule.q_sample(x0, t, noise), t)
        return {"loss": F.mse_loss(predicted, noise)}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int | None = None,
               sampler: str | None = None, eta: float = 0.0) -> torch.Tensor:
        """n samples in data space, from the EMA network when there is one.

        sampler: "ddpm" (ancestral, Ho alg. 2) or "ddim" (Song et al.; eta = 0 deterministic, eta = 1 the
        DDPM step); steps: how many of the T timesteps to visit, evenly spaced. Both default to the config's.
        """
        sampler = sampler or self.config.sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if sampler == "ddpm" and eta != 0:
            raise ValueError("eta applies to the ddim sampler only (ddpm is ddim with eta = 1): "
                             "use sampler='ddim' or leave eta at 0")
        network = self.ema if self.ema is not None else self.network
        timesteps = self.schedule.timesteps(steps if steps is not None else self.config.sampling_steps)
        device = self.ema_updates.device
        clip = 1.0 if self.is_image else None  # images live in [-1, 1]: keep each predicted x_0 there (Ho et al.)
        x = torch.randn(n, *self.config.data_shape, generator=generator, device=device)  # x_T ~ N(0, I)
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1  # -1: this step lands on x_0
            eps = network(x, torch.full((n,), t, device=device))  # predict the noise in x_t ...
            # ... then step. A fresh draw for each step that adds noise (not the last, nor any of DDIM with eta = 0),
            # so DDPM and DDIM with eta = 1 consume the same draws from the generator.
            adds_noise = t_prev >= 0 and (sampler == "ddpm" or eta > 0)
            noise = torch.randn(x.shape, generator=generator, device=device) if adds_noise else None
            if sampler == "ddpm":
                x = self.schedule.ddpm_step(eps, x, t, t_prev, noise=noise, clip=clip)
            else:
                x = self.schedule.ddim_step(eps, x, t, t_prev, eta=eta, noise=noise, clip=clip)
        return self.to_data_space(x)

    def update_ema(self) -> None:
        """Move the EMA network towards the trained one (layers.ema_update, with its warm-up). The training
        step calls this after each update."""
        if self.ema is None:
            raise ValueError("update_ema needs an EMA network: set ema_decay > 0 (e.g. 0.999)")
        ema_update(self.ema, self.network, self.config.ema_decay, self.ema_updates)


# --- the training recipe (train.py's loop decides when it runs) ---------------------------------------


def configure_optimizers(model: DDPM, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam on the network being trained; the EMA copy and the schedule have nothing to optimise."""
    return {"model": adam(model.network.parameters(), lr)}


def training_step(model: DDPM, optimizers, x: torch.Tensor, autocast=contextlib.nullcontext,
                  accumulate: int = 1) -> dict[str, torch.Tensor]:
    """One gradient step on model.loss(x) (the noise-prediction MSE at a random timestep per example, Ho et al.
    alg. 1), then the EMA copy moves towards the new weights."""
    terms = loss_step(model, optimizers["model"], x, autocast, accumulate)
    if model.ema is not None:
        model.update_ema()
    return terms
