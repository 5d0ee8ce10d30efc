"""Autoencoder: squeeze data into a few numbers and back.

Encoder x -> z (optionally tanh-bounded, as in the lesson's 3x3 patterns -> 3 numbers), decoder
z -> x. With noise_std > 0 it is a denoising autoencoder: it sees x + noise and must return x.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import check_fields
from genlab.models.layers import (
    MAX_CHANNELS,
    MAX_DATA_SIZE,
    MAX_WIDTH,
    adam,
    conv_channels_for,
    encoder_decoder,
    interpolate_latents,
    loss_step,
    resolve_architecture,
)


@dataclass
class AutoencoderConfig:
    data_shape: tuple[int, ...] = (1, 28, 28)  # one example, set from the data
    architecture: Literal["auto", "mlp", "conv"] = "auto"  # auto: conv for images it can halve, else mlp
    latent_dim: int = 16
    hidden_dims: tuple[int, ...] = (256,)  # mlp widths, encoder side; the decoder mirrors them
    conv_channels: tuple[int, ...] = ()  # one stride-2 conv per entry; () derives them: layers.conv_channels_for
    code_activation: Literal["none", "tanh"] = "none"  # tanh bounds the code to (-1, 1), as in the lesson
    reconstruction: Literal["auto", "bce", "mse"] = "auto"  # auto: bce for images in [0, 1], mse for points
    noise_std: float = 0.0  # > 0: denoising autoencoder, Gaussian noise on the input while training

    def __post_init__(self):
        check_fields(self, {"data_shape": (1, MAX_DATA_SIZE), "latent_dim": (1, MAX_WIDTH),
                            "hidden_dims": (1, MAX_WIDTH),
                            "conv_channels": (1, MAX_CHANNELS), "noise_std": (0, 10)})
        self.data_shape = tuple(self.data_shape)
        self.hidden_dims = tuple(self.hidden_dims)
        self.conv_channels = tuple(self.conv_channels) or conv_channels_for(self.data_shape, deepest=64)
        self.architecture = resolve_architecture(self.architecture, self.data_shape, self.conv_channels)
        if self.reconstruction == "auto":
            self.reconstruction = "bce" if len(self.data_shape) == 3 else "mse"


class Autoencoder(nn.Module):
    # What it can do, declared for every caller (previews, eval, compare, the CLI and the lab) instead of probed:
    # sample(n), reconstruct(x), interpolate(a, b), log_likelihood(x).
    can_sample, can_reconstruct, can_interpolate, has_likelihood = False, True, True, False
    can_upscale = False  # upscale(lr): super-resolution models only (models/superres.py)

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = encoder_decoder(
            config.architecture, config.data_shape, config.hidden_dims, config.conv_channels,
            code_features=config.latent_dim, latent_dim=config.latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *data_shape) -> (B, latent_dim)"""
        code = self.encoder(x)
        return torch.tanh(code) if self.config.code_activation == "tanh" else code

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output before the output nonlinearity: logits for bce, values for mse."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, *data_shape) in data space."""
        out = self.decode_raw(z)
        return torch.sigmoid(out) if self.config.reconstruction == "bce" else out

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """The denoising autoencoder's input: x plus Gaussian noise of std noise_std."""
        return x + self.config.noise_std * torch.randn_like(x) if self.config.noise_std > 0 else x

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean per-example reconstruction loss (summed over dimensions); noise only while training."""
        x_in = self.corrupt(x) if self.training else x
        out = self.decode_raw(self.encode(x_in))
        if self.config.reconstruction == "bce":
            per_dim = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            per_dim = (out - x) ** 2
        reconstruction = per_dim.flatten(1).sum(1).mean()
        return {"loss": reconstruction, "reconstruction": reconstruction}

    @torch.no_grad()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int = 10,
                    method: Literal["lerp", "slerp"] = "lerp") -> torch.Tensor:
        """Decode `steps` codes between the codes of examples a and b (each (*data_shape,))."""
        codes = self.encode(torch.stack([a, b]))
        return self.decode(interpolate_latents(codes[0], codes[1], steps, method))


# --- the training recipe (train.py's loop decides when it runs) ---------------------------------------


def configure_optimizers(model, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam on every weight, as in pytorch/examples' VAE."""
    return {"model": adam(model.parameters(), lr)}


def training_step(model, optimizers, x: torch.Tensor, autocast=contextlib.nullcontext,
                  accumulate: int = 1) -> dict[str, torch.Tensor]:
    """One gradient step on the mean reconstruction loss (on noisy inputs for a denoising autoencoder)."""
    return loss_step(model, optimizers["model"], x, autocast, accumulate)
