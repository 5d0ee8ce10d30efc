"""Vector-quantised VAE (van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning", 2017).

The encoder's output z_e(x) is cut into code vectors of size latent_dim (D); each is replaced by its nearest
entry e_k of a learned codebook of num_codes (K) vectors, and the decoder sees only those entries. Images get
one code vector per cell of a downsampled grid (28x28 -> 7x7), points and MLP images `mlp_codes` vectors.
argmin has no gradient, so the straight-through estimator copies the decoder's gradient from z_q to z_e.

Training minimises eq. 3 of the paper (per example; with several code vectors, the last two terms are
averaged over them, as the paper does for its grid of latents):
    L = -log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta * ||z_e(x) - sg[e]||^2
where sg stops gradients: the codebook term moves the codes towards the encoder's outputs, the commitment
term keeps the encoder's outputs near their codes (beta = 0.25 in the paper).

It reconstructs, and interpolates (a path between two encodings, each point snapped to its nearest codes:
the decoded path moves in jumps). It does not sample: the prior over codes is uniform while training, and
samples need a prior learned afterwards over the codes (the paper's PixelCNN), which genlab does not have.
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
    check_conv_shape,
    encoder_decoder,
    interpolate_latents,
    loss_step,
    resolve_architecture,
)


@dataclass
class VQVAEConfig:
    data_shape: tuple[int, ...] = (1, 28, 28)  # one example, set from the data
    architecture: Literal["auto", "mlp", "conv"] = "auto"  # auto: conv for images it can halve, else mlp
    num_codes: int = 512  # K, the codebook's size: 512 as in the paper's image models
    latent_dim: int = 4  # D, the size of each code vector: on digits 4 kept more codes in use than 8 or 16
    hidden_dims: tuple[int, ...] = (256,)  # mlp widths, encoder side; the decoder mirrors them
    conv_channels: tuple[int, ...] = (32, 64)  # one stride-2 conv per entry: 28x28 -> a 7x7 grid of codes
    mlp_codes: int = 1  # mlp: code vectors per example (1: each point becomes one of K prototypes, as k-means)
    commitment: float = 0.25  # beta of eq. 3: the paper saw the same results for 0.1..2.0 and used 0.25
    reconstruction: Literal["auto", "bce", "mse"] = "auto"  # auto: bce for images in [0, 1], mse for points

    def __post_init__(self):
        check_fields(self, {"data_shape": (1, MAX_DATA_SIZE), "num_codes": (1, MAX_WIDTH),
                            "latent_dim": (1, MAX_WIDTH), "hidden_dims": (1, MAX_WIDTH),
                            "conv_channels": (1, MAX_CHANNELS), "mlp_codes": (1, MAX_WIDTH),
                            "commitment": (0, 100)})
        self.data_shape = tuple(self.data_shape)
        self.hidden_dims = tuple(self.hidden_dims)
        self.conv_channels = tuple(self.conv_channels)
        self.architecture = resolve_architecture(self.architecture, self.data_shape, self.conv_channels)
        if self.architecture == "mlp" and self.mlp_codes * self.latent_dim > MAX_WIDTH:
            raise ValueError(f"mlp_codes x latent_dim = {self.mlp_codes * self.latent_dim} numbers per example is "
                             f"more than {MAX_WIDTH}: lower mlp_codes or latent_dim")
        if self.reconstruction == "auto":
            self.reconstruction = "bce" if len(self.data_shape) == 3 else "mse"


# What the lab (a shared server) lets a client set, tighter than the checks above; its BOUNDS hold the shared names
LAB_BOUNDS = {"num_codes": (1, 1024), "mlp_codes": (1, 64), "commitment": (0.0, 10.0)}


def conv_grid(config: VQVAEConfig) -> tuple[int, int]:
    """(h, w) of the conv encoder's grid of code vectors: the image halved once per conv."""
    factor = 2 ** len(config.conv_channels)
    return config.data_shape[1] // factor, config.data_shape[2] // factor


def grid_encoder(config: VQVAEConfig) -> nn.Sequential:
    """(B, C, H, W) -> (B, D, h, w): stride-2 4x4 convs (as layers.ConvEncoder), then a 1x1 conv to D numbers
    per cell instead of ConvEncoder's flattening linear layer: the code keeps its grid. (The paper adds
    residual blocks; these small images do without.)"""
    check_conv_shape(config.data_shape, config.conv_channels)
    layers: list[nn.Module] = []
    channels = config.data_shape[0]
    for c in config.conv_channels:
        layers += [nn.Conv2d(channels, c, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        channels = c
    return nn.Sequential(*layers, nn.Conv2d(channels, config.latent_dim, kernel_size=1))


def grid_decoder(config: VQVAEConfig) -> nn.Sequential:
    """(B, D, h, w) -> (B, C, H, W): a 3x3 conv, then transposed convs mirroring the encoder; no output activation."""
    widths = [*reversed(config.conv_channels), config.data_shape[0]]
    layers: list[nn.Module] = [nn.Conv2d(config.latent_dim, widths[0], kernel_size=3, padding=1)]
    for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.ReLU(), nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1)]
    return nn.Sequential(*layers)


class VQVAE(nn.Module):
    # What it can do, declared for every caller (previews, eval, compare, the CLI and the lab) instead of probed:
    # sample(n), reconstruct(x), interpolate(a, b), log_likelihood(x).
    can_sample, can_reconstruct, can_interpolate, has_likelihood = False, True, True, False
    can_upscale = False  # upscale(lr): super-resolution models only (models/superres.py)
    fits_sampler = False  # a sampler fitted after training: the autoencoder only (models/autoencoder.py)
    can_guide = False  # D-guided sampling (genlab.guided): GANs whose D scores one sample (models/gan.py)

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        if config.architecture == "conv":
            self.encoder, self.decoder = grid_encoder(config), grid_decoder(config)
        else:
            width = config.mlp_codes * config.latent_dim
            self.encoder, self.decoder = encoder_decoder("mlp", config.data_shape, config.hidden_dims,
                                                         config.conv_channels, code_features=width, latent_dim=width)
        # (K, D), N(0, 1) at first: on digits the +-1/K start of many PyTorch ports left 1-3 codes in use after
        # 400 steps (perplexity), N(0, 1) ~9 at D=16 and ~90 at D=4, with a lower reconstruction loss
        self.codebook = nn.Embedding(config.num_codes, config.latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *data_shape) -> z_e, (B, N, D): N code vectors of D numbers each (N = h*w, or mlp_codes)."""
        z = self.encoder(x)
        if self.config.architecture == "conv":
            return z.flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, h*w, D)
        return z.view(len(x), self.config.mlp_codes, self.config.latent_dim)

    def nearest_codes(self, z_e: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (...) the index of the nearest codebook vector to each, in squared Euclidean distance:
        ||z||^2 - 2 z.e + ||e||^2, one matrix product instead of a (..., K, D) difference tensor."""
        weight = self.codebook.weight  # (K, D)
        distances = z_e.pow(2).sum(-1, keepdim=True) - 2 * z_e @ weight.T + weight.pow(2).sum(-1)  # (..., K)
        return distances.argmin(-1)

    def decode_raw(self, z_q: torch.Tensor) -> torch.Tensor:
        """Decoder output for (B, N, D) code vectors before the output nonlinearity: logits for bce, values for mse."""
        if self.config.architecture == "conv":
            h, w = conv_grid(self.config)
            return self.decoder(z_q.transpose(1, 2).reshape(len(z_q), self.config.latent_dim, h, w))
        return self.decoder(z_q.flatten(1))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, *data_shape) in data space."""
        out = self.decode_raw(z_q)
        return torch.sigmoid(out) if self.config.reconstruction == "bce" else out

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, N) code indices -> (B, *data_shape): what a prior over codes would decode its samples with."""
        return self.decode(self.codebook(codes))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 3 of the paper, mean over the batch, with its three terms and the codebook's perplexity."""
        z_e = self.encode(x)  # (B, N, D)
        codes = self.nearest_codes(z_e.detach())  # (B, N)
        e = self.codebook(codes)  # (B, N, D)
        z_q = z_e + (e - z_e).detach()  # straight-through: the value of e, the gradient of z_e
        out = self.decode_raw(z_q)
        if self.config.reconstruction == "bce":
            per_dim = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            per_dim = (out - x) ** 2
        reconstruction = per_dim.flatten(1).sum(1).mean()  # -log p(x|z_q) up to a constant for mse
        codebook = (z_e.detach() - e).pow(2).sum(-1).mean()  # ||sg[z_e] - e||^2: moves only the codes
        commitment = (z_e - e.detach()).pow(2).sum(-1).mean()  # ||z_e - sg[e]||^2: moves only the encoder
        # perplexity of the codes this batch used: K when all are used equally, 1 when one code takes everything
        usage = torch.bincount(codes.flatten(), minlength=self.config.num_codes).float() / codes.numel()
        perplexity = torch.exp(-torch.special.xlogy(usage, usage).sum())
        return {"loss": reconstruction + codebook + self.config.commitment * commitment,
                "reconstruction": reconstruction, "codebook": codebook, "commitment": commitment,
                "perplexity": perplexity}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode each example's nearest codes."""
        return self.decode_codes(self.nearest_codes(self.encode(x)))

    @torch.no_grad()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int = 10,
                    method: Literal["lerp", "slerp"] = "lerp") -> torch.Tensor:
        """Decode `steps` points between the encodings of examples a and b (each (*data_shape,)), each point
        snapped to its nearest codes: the decoder only knows codebook vectors, so the path moves in jumps."""
        z = self.encode(torch.stack([a, b]))  # (2, N, D)
        path = interpolate_latents(z[0].flatten(), z[1].flatten(), steps, method).view(steps, *z.shape[1:])
        return self.decode_codes(self.nearest_codes(path))


# --- the training recipe (train.py's loop decides when it runs) ---------------------------------------


def configure_optimizers(model, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam on every weight, codebook included (the paper: Adam, lr 2e-4)."""
    return {"model": adam(model.parameters(), lr)}


def training_step(model, optimizers, x: torch.Tensor, autocast=contextlib.nullcontext,
                  accumulate: int = 1) -> dict[str, torch.Tensor]:
    """One gradient step on eq. 3: reconstruction + codebook + commitment * beta."""
    return loss_step(model, optimizers["model"], x, autocast, accumulate)

