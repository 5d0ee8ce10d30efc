"""The small models the autoencoder bench and the latent explorer show, trained on demand in seconds.

Each is trained in memory with the library's own step (the family's training_step) the first time a
page asks for it, once, behind a lock; the lesson's settings where there is a lesson. None is trained at
import or at server start unless the server is asked to warm up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from genlab.data import Batches, load_dataset
from genlab.models import VAE, Autoencoder, AutoencoderConfig, VAEConfig, autoencoder

DIGITS_STEPS = 1500  # batches of 128 digits: ~1.5 s each for the 2-D AE and VAE on one CPU thread


@dataclass(frozen=True)
class Recipe:
    build: Callable[[], torch.nn.Module]
    data: str  # a bundled data set name
    steps: int
    batch_size: int
    lr: float


RECIPES = {
    # genlab lesson autoencoder: 15 patterns -> 3 tanh numbers -> 15 patterns, all 15 come back exactly
    "patterns": Recipe(lambda: Autoencoder(AutoencoderConfig(data_shape=(1, 3, 3), latent_dim=3, code_activation="tanh",
                                                             hidden_dims=(32,))), "patterns", 3000, 15, 3e-3),
    # a denoising autoencoder on 8x8 digits: it sees x + N(0, 0.3^2) noise and must return x
    "denoiser": Recipe(lambda: Autoencoder(AutoencoderConfig(data_shape=(1, 8, 8), architecture="mlp", latent_dim=16,
                                                             hidden_dims=(256,), noise_std=0.3)),
                       "digits", DIGITS_STEPS, 128, 1e-3),
    # the explorer's pair: the same 64-256-2 MLP shape, one with the VAE's KL term and one without
    "vae": Recipe(lambda: VAE(VAEConfig(data_shape=(1, 8, 8), architecture="mlp", latent_dim=2, hidden_dims=(256,))),
                  "digits", DIGITS_STEPS, 128, 1e-3),
    "ae": Recipe(lambda: Autoencoder(AutoencoderConfig(data_shape=(1, 8, 8), architecture="mlp", latent_dim=2,
                                                       hidden_dims=(256,))), "digits", DIGITS_STEPS, 128, 1e-3),
}


def train_recipe(recipe: Recipe, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = recipe.build()
    optimizers = autoencoder.configure_optimizers(model, recipe.lr)
    batches = Batches(load_dataset(recipe.data, "train").x, recipe.batch_size, seed=seed)
    model.train()
    for step in range(recipe.steps):
        autoencoder.training_step(model, optimizers, batches.batch(step))  # the VAE's is the same
    return model.eval().requires_grad_(False)


class LabModels:
    """name -> trained model, each trained the first time it is asked for; thread-safe."""

    def __init__(self):
        self._models: dict[str, torch.nn.Module] = {}
        self._locks = {name: threading.Lock() for name in RECIPES}

    def get(self, name: str) -> torch.nn.Module:
        if name not in RECIPES:
            raise ValueError(f"unknown lab model {name!r}: choose one of {', '.join(RECIPES)}")
        with self._locks[name]:  # a second request waits for the first one's training instead of repeating it
            if name not in self._models:
                self._models[name] = train_recipe(RECIPES[name])
            return self._models[name]

    def warm_up(self) -> None:
        """Train every model now (the CLI does it in a background thread so pages open ready)."""
        for name in RECIPES:
            self.get(name)
