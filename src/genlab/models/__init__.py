"""Model families, one file each. `FAMILIES` is the one place that maps names to classes."""

from __future__ import annotations

from genlab.models.autoencoder import Autoencoder, AutoencoderConfig
from genlab.models.ddpm import DDPM, DDPMConfig
from genlab.models.gan import GAN, GANConfig
from genlab.models.vae import VAE, VAEConfig

FAMILIES = {
    "ae": (Autoencoder, AutoencoderConfig),
    "vae": (VAE, VAEConfig),
    "gan": (GAN, GANConfig),
    "ddpm": (DDPM, DDPMConfig),
}


def family_classes(family: str):
    """(model class, config class) of a family name, with the valid names in the error."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


__all__ = ["FAMILIES", "family_classes", "Autoencoder", "AutoencoderConfig", "VAE", "VAEConfig", "GAN", "GANConfig",
           "DDPM", "DDPMConfig"]
