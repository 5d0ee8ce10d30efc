"""Model families, one file each. `FAMILIES` is the one registry: a family's name -> its `Family` record,
everything the training loop and the shells need from it, answered the same way by every family."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from genlab.models import autoencoder, ddpm, gan, progan, superres, vae, vqvae
from genlab.models.autoencoder import Autoencoder, AutoencoderConfig
from genlab.models.ddpm import DDPM, DDPMConfig
from genlab.models.gan import GAN, GANConfig
from genlab.models.vae import VAE, VAEConfig


@dataclass(frozen=True)
class Family:
    model: type  # built from one config: model(config)
    config: type  # the family's config dataclass
    optimizers: Callable  # (model, lr) -> {name: optimizer}; the family's own recipe (nanoGPT's configure_optimizers)
    # (model, optimizers, x, autocast, accumulate) -> loss terms ("loss" or "*_loss" among them), one update of each
    # optimizer, its gradient summed over `accumulate` equal micro-batches of x (layers.accumulated_update)
    step: Callable
    # optional hooks: None is the common answer (one batch a step, any batch size, no diagnostics)
    batches_per_step: Callable[..., int] | None = None  # (config) -> real batches one step takes, stacked in x
    check_batch_size: Callable[..., None] | None = None  # (config, batch_size): ValueError when it cannot take it
    diagnostics: Callable | None = None  # (model, train_data, record) -> checks for a CollapseDetector, at log steps
    # (model, source checkpoint): a fine-tuned run's (--init-from) starting weights, for a family whose runs may
    # start from a source of another network (a super-resolution GAN stage from a PSNR run: + D); None: the
    # source's learned weights, every one, identical (run.load_source_weights)
    start_from: Callable[..., None] | None = None
    # (model, checkpoint path, step): what the family keeps beside a run's checkpoints, read into a model opened
    # from one (open_run); None: nothing is kept there. (The AE's latent sampler, fitted after training.)
    load_run_files: Callable[..., None] | None = None
    # (run folder, device=, data_dir=) -> one line for the user: what the family fits on a trained model once its
    # training ends (`genlab train`, compare); None: nothing. (The AE's latent sampler.)
    after_training: Callable[..., str] | None = None
    # the lab's bounds for this family's own numeric settings (the lab is a shared server: a run there stays
    # small); a numeric setting bounded neither here nor in web/runs.py's BOUNDS cannot be set from the lab
    lab_bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)


FAMILIES = {
    "ae": Family(Autoencoder, AutoencoderConfig, autoencoder.configure_optimizers, autoencoder.training_step,
                 load_run_files=autoencoder.load_sampler, after_training=autoencoder.fit_after_training),
    "vae": Family(VAE, VAEConfig, vae.configure_optimizers, vae.training_step, diagnostics=vae.collapse_evidence,
                  lab_bounds=vae.LAB_BOUNDS),
    "gan": Family(GAN, GANConfig, gan.configure_optimizers, gan.training_step, batches_per_step=gan.batches_per_step,
                  check_batch_size=gan.check_batch_size, diagnostics=gan.collapse_evidence),
    "ddpm": Family(DDPM, DDPMConfig, ddpm.configure_optimizers, ddpm.training_step),
    "vqvae": Family(vqvae.VQVAE, vqvae.VQVAEConfig, vqvae.configure_optimizers, vqvae.training_step,
                    lab_bounds=vqvae.LAB_BOUNDS),
    "progan": Family(progan.ProGAN, progan.ProGANConfig, progan.configure_optimizers, progan.training_step,
                     diagnostics=progan.collapse_evidence, lab_bounds=progan.LAB_BOUNDS),
    "superres": Family(superres.SuperRes, superres.SuperResConfig, superres.configure_optimizers,
                       superres.training_step, start_from=superres.start_from, lab_bounds=superres.LAB_BOUNDS),
}


def family(name: str) -> Family:
    """The record of a family name, with the valid names in the error."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_classes(name: str):
    """(model class, config class) of a family name, with the valid names in the error."""
    record = family(name)
    return record.model, record.config


__all__ = ["FAMILIES", "Family", "family", "family_classes", "Autoencoder", "AutoencoderConfig", "VAE", "VAEConfig",
           "GAN", "GANConfig", "DDPM", "DDPMConfig"]
