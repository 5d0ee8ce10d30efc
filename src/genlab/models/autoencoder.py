"""Autoencoder: squeeze data into a few numbers and back.

Encoder x -> z (optionally tanh-bounded, as in the lesson's 3x3 patterns -> 3 numbers), decoder
z -> x. With noise_std > 0 it is a denoising autoencoder: it sees x + noise and must return x.

It has no prior to sample from. After training, a Gaussian mixture is fitted on the codes of its training data
(`fit_sampler`, `genlab fit-sampler RUN`; ex-post density estimation, Ghosh et al. 2020, as pythae's
GaussianMixtureSampler) and `sample(n)` decodes draws from it. The mixture is kept beside the checkpoints, in
the run folder's sampler.safetensors, not in them: a checkpoint holds what its run trained, restoring it is strict
on its weights' names, and so every earlier run still loads.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import check_fields, one_line
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

log = logging.getLogger(__name__)


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
    # sample(n) (can_sample, below), reconstruct(x), interpolate(a, b), log_likelihood(x).
    can_reconstruct, can_interpolate, has_likelihood = True, True, False
    can_upscale = False  # upscale(lr): super-resolution models only (models/superres.py)
    fits_sampler = True  # it samples once a mixture is fitted on its codes: `genlab fit-sampler RUN` (NO_SAMPLER)
    can_guide = False  # D-guided sampling (genlab.guided): GANs whose D scores one sample (models/gan.py)

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = encoder_decoder(
            config.architecture, config.data_shape, config.hidden_dims, config.conv_channels,
            code_features=config.latent_dim, latent_dim=config.latent_dim)
        # The mixture sample() draws codes from: set by fit_sampler, or by open_run from the run folder (load_sampler).
        # A plain attribute, not a buffer: the checkpoint's weights stay what they were.
        self.latent_sampler: LatentMixture | None = None

    @property
    def can_sample(self) -> bool:
        return self.latent_sampler is not None

    def latents(self, n: int, generator: torch.Generator | None = None,
                truncation: float | None = None) -> torch.Tensor:
        """n codes drawn from the fitted mixture, (n, latent_dim), on the model's device (LatentMixture.draw)."""
        if self.latent_sampler is None:
            raise ValueError(NO_SAMPLER.format(run="RUN"))
        device = next(self.parameters()).device
        return self.latent_sampler.to(device).draw(n, generator, truncation)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               truncation: float | None = None) -> torch.Tensor:
        """n samples in data space: decode(latents(n)), codes drawn from the mixture fitted on the training codes."""
        return self.decode(self.latents(n, generator, truncation))

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


# --- the sampler: a Gaussian mixture over the training codes --------------------------------------------------

SAMPLER_FILE = "sampler.safetensors"  # in the run folder, beside checkpoints/
DEFAULT_COMPONENTS = 10  # pythae's GaussianMixtureSampler's default
MAX_COMPONENTS = 100
MAX_SAMPLER_LATENT = 512  # full covariances: k x latent_dim^2 numbers (100 x 512^2 floats: 100 MB)
CODE_BATCH = 500  # training examples encoded at once while fitting
NO_SAMPLER = ("an autoencoder samples from a Gaussian mixture fitted on its training codes, and none is fitted on "
              "this checkpoint's: run `genlab fit-sampler {run}`")


@dataclass(frozen=True)
class LatentMixture:
    """A Gaussian mixture over an autoencoder's codes: sum_k weights[k] N(means[k], L_k L_k^T)."""

    weights: torch.Tensor  # (k,), summing to 1
    means: torch.Tensor  # (k, latent_dim)
    scale_tril: torch.Tensor  # (k, latent_dim, latent_dim): lower Cholesky factors L_k of the covariances
    step: int  # the checkpoint whose codes it was fitted on: another checkpoint's codes are elsewhere

    def to(self, device: torch.device | str) -> LatentMixture:
        if self.means.device == torch.device(device):
            return self
        return LatentMixture(self.weights.to(device), self.means.to(device), self.scale_tril.to(device), self.step)

    def draw(self, n: int, generator: torch.Generator | None = None,
             truncation: float | None = None) -> torch.Tensor:
        """n codes, (n, latent_dim): a component k by its weight, then means[k] + L_k eps with eps ~ N(0, I); with
        `truncation` t each number of eps is drawn truncated to [-t, t] (layers.normal_latents), so the codes keep
        to the middle of their component, as the truncation trick keeps a GAN's z."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        eps = normal_latents(n, self.means.shape[1], generator=generator, device=self.means.device,
                             truncation=truncation)
        return self.means[component] + (self.scale_tril[component] @ eps[:, :, None])[:, :, 0]  # (n, latent_dim)


def fit_latent_mixture(codes: torch.Tensor, *, components: int = DEFAULT_COMPONENTS, seed: int = 0,
                       step: int = 0) -> LatentMixture:
    """EM for a full-covariance Gaussian mixture of `components` components on codes (N, latent_dim), from k-means
    seeded with `seed` (scikit-learn's GaussianMixture), so the same codes and seed give the same mixture."""
    from sklearn.mixture import GaussianMixture  # imported when fitting: scikit-learn takes a while to import

    if not 0 <= seed < 2**32:  # scikit-learn's seeds
        raise ValueError(f"--seed must be between 0 and {2**32 - 1} for the mixture, got {seed}")
    if not 1 <= components <= MAX_COMPONENTS:
        raise ValueError(f"--components must be between 1 and {MAX_COMPONENTS}, got {components}")
    if codes.shape[1] > MAX_SAMPLER_LATENT:
        raise ValueError(f"a full-covariance mixture over {codes.shape[1]} numbers is too large to fit here: the "
                         f"sampler takes autoencoders of latent_dim at most {MAX_SAMPLER_LATENT}")
    if len(codes) < 2 * components:
        raise ValueError(f"{len(codes)} training codes are too few for {components} components (each needs a "
                         f"few): use --components {max(1, len(codes) // 2)} or less")
    mixture = GaussianMixture(components, covariance_type="full", random_state=seed).fit(codes.double().numpy())
    weights = torch.tensor(mixture.weights_, dtype=torch.float64)
    # float64 Cholesky, then float32: what the decoder takes, and what is stored
    scale_tril = torch.linalg.cholesky(torch.tensor(mixture.covariances_, dtype=torch.float64))
    return LatentMixture((weights / weights.sum()).float(), torch.tensor(mixture.means_, dtype=torch.float32),
                         scale_tril.float(), step)


def mixture_bytes(mixture: LatentMixture, seed: int) -> bytes:
    tensors = {"weights": mixture.weights, "means": mixture.means, "scale_tril": mixture.scale_tril}
    meta = {"components": len(mixture.weights), "latent_dim": mixture.means.shape[1], "step": mixture.step,
            "seed": seed}
    return safetensors.torch.save({k: t.detach().cpu().contiguous() for k, t in tensors.items()},
                                  metadata={"genlab_sampler": json.dumps(meta)})


def read_mixture(path: Path, latent_dim: int) -> LatentMixture:
    """The mixture in a sampler file, checked as it is read; ValueError in one line saying what is wrong."""
    def damaged(what: str) -> ValueError:
        return ValueError(f"{path} is damaged ({what}): fit it again with `genlab fit-sampler {path.parent}`")

    if not path.is_file():
        raise damaged("not a file")
    most = 4 * MAX_COMPONENTS * (latent_dim + 1) ** 2 + 100_000  # every tensor at the most components, + header
    if path.stat().st_size > most:
        raise damaged(f"{path.stat().st_size:,} bytes, more than a mixture over {latent_dim} numbers takes")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["genlab_sampler"])
        tensors = safetensors.torch.load_file(str(path))
    except Exception as error:  # safetensors, json and a missing key raise their own types for every kind of damage
        raise damaged(f"not a readable sampler file: {one_line(error)}") from None
    if not isinstance(meta, dict) or not all(type(meta.get(key)) is int for key in ("components", "step")):
        raise damaged("its metadata holds no components and step")
    k, step = meta["components"], meta["step"]
    shapes = {"weights": (k,), "means": (k, latent_dim), "scale_tril": (k, latent_dim, latent_dim)}
    if set(tensors) != set(shapes):
        raise damaged(f"it holds {', '.join(sorted(tensors)) or 'nothing'}, not weights, means and scale_tril")
    for name, shape in shapes.items():
        if tensors[name].shape != shape or tensors[name].dtype != torch.float32:
            raise damaged(f"{name} is {tuple(tensors[name].shape)} {tensors[name].dtype}, not {shape} float32 for "
                          f"{k} components over latent_dim {latent_dim}")
        if not torch.isfinite(tensors[name]).all():
            raise damaged(f"{name} holds non-finite values")
    weights, scale_tril = tensors["weights"], tensors["scale_tril"]
    if k < 1 or step < 0 or (weights < 0).any() or abs(weights.double().sum().item() - 1) > 1e-4:
        raise damaged("its weights are not a distribution over at least one component")
    if scale_tril.triu(1).any() or not (scale_tril.diagonal(dim1=1, dim2=2) > 0).all():
        raise damaged("scale_tril is not a Cholesky factor: lower triangular with a positive diagonal")
    return LatentMixture(weights, tensors["means"], scale_tril, step)


def load_sampler(model: Autoencoder, checkpoint: Path, step: int) -> None:
    """Attach the run's mixture to a model opened from `checkpoint` at `step` (the Family hook open_run calls),
    when the checkpoint lies in a run folder whose sampler was fitted on its codes. A damaged file is a ValueError;
    one fitted on another checkpoint's codes is left out, with a warning (the model then does not sample)."""
    if checkpoint.parent.name != "checkpoints":  # a checkpoint file on its own: no run folder, no sampler
        return
    path = checkpoint.parent.parent / SAMPLER_FILE
    if not path.exists():
        return
    mixture = read_mixture(path, model.config.latent_dim)
    if mixture.step != step:
        log.warning("%s was fitted on the codes of step %d, not on this checkpoint's (step %d): run `genlab "
                    "fit-sampler %s` to sample from it", path, mixture.step, step, path.parent)
        return
    model.latent_sampler = mixture.to(next(model.parameters()).device)


@dataclass(frozen=True)
class FittedSampler:
    path: Path  # the sampler file written
    codes: int  # training codes it was fitted on
    mixture: LatentMixture


def fit_sampler(run: str | Path, *, components: int = DEFAULT_COMPONENTS, seed: int = 0,
                device: str | torch.device = "cpu", data_dir: str | Path | None = None) -> FittedSampler:
    """Fit the mixture on the codes of a run's training split (as training loaded it) under its latest checkpoint
    (or the checkpoint file given, in its run folder) and write it atomically as the run folder's SAMPLER_FILE."""
    # imported here: checkpoint.py and run.py import genlab.models, which imports this module
    from genlab.checkpoint import atomic_write_bytes, read_meta_and_record, resolve_checkpoint
    from genlab.run import open_run, run_is_training

    checkpoint = resolve_checkpoint(run)
    _, record = read_meta_and_record(checkpoint)
    if not isinstance(record.model, AutoencoderConfig):
        raise ValueError(f"{run} holds a {record.family} model: fit-sampler fits an autoencoder's (ae) sampler")
    if checkpoint.parent.name != "checkpoints":
        raise ValueError(f"{checkpoint} is not in a run folder (RUN/checkpoints/): give the run folder, whose "
                         "training data the sampler is fitted on")
    folder = checkpoint.parent.parent
    if run_is_training(folder):
        raise ValueError(f"{folder} is being trained: fit its sampler once training ends")
    path = folder / SAMPLER_FILE
    if path.exists():
        try:
            read_mixture(path, record.model.latent_dim)
        except ValueError:
            path.unlink()  # damaged: it is replaced below anyway, and opening the run would refuse it
    opened = open_run(checkpoint, device=device, data_dir=data_dir, splits=("train",))
    with torch.no_grad():
        codes = torch.cat([opened.model.encode(x.to(device)).cpu() for x in opened.data["train"].x.split(CODE_BATCH)])
    mixture = fit_latent_mixture(codes, components=components, seed=seed, step=opened.step)
    atomic_write_bytes(path, mixture_bytes(mixture, seed))
    return FittedSampler(path, len(codes), mixture)


def fit_after_training(run_dir: Path, *, device: str | torch.device = "cpu",
                       data_dir: str | Path | None = None) -> str:
    """The Family hook a training command calls once training ends: fit the sampler with the defaults; the line
    to show the user."""
    fitted = fit_sampler(run_dir, device=device, data_dir=data_dir)
    return (f"fitted a {len(fitted.mixture.weights)}-component Gaussian mixture on {fitted.codes:,} training codes: "
            f"{fitted.path} (`genlab sample` draws from it)")


# --- the training recipe (train.py's loop decides when it runs) ---------------------------------------


def configure_optimizers(model, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam on every weight, as in pytorch/examples' VAE."""
    return {"model": adam(model.parameters(), lr)}


def training_step(model, optimizers, x: torch.Tensor, autocast=contextlib.nullcontext,
                  accumulate: int = 1) -> dict[str, torch.Tensor]:
    """One gradient step on the mean reconstruction loss (on noisy inputs for a denoising autoencoder)."""
    return loss_step(model, optimizers["model"], x, autocast, accumulate)
