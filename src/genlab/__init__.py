"""genlab: autoencoders, VAEs, GANs and diffusion, from classroom toys to real images.

Quickstart (the same steps as `genlab train vae --data digits --set latent_dim=2`):

    import genlab
    from genlab.run import create_run
    from genlab.train import TrainConfig, train

    run = create_run("runs/vae-digits", "vae", TrainConfig(data="digits", steps=2000), {"latent_dim": 2})
    train(run)                              # checkpoints, metrics.jsonl and previews land in the run folder
    vae = genlab.load(run)                  # its latest checkpoint, in eval mode
    images = vae.sample(16)                 # (16, 1, 8, 8) in [0, 1]

A model built or trained outside `train` saves and loads the same way, with no genlab metadata to write:

    from genlab.models import VAE, VAEConfig
    model = VAE(VAEConfig(data_shape=(2,), latent_dim=2))
    genlab.save(model, "my-vae.safetensors")
    same = genlab.load("my-vae.safetensors")

Importing genlab imports nothing heavy: torch loads when a function needs it.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def load(run_or_checkpoint: str | Path, device: str = "cpu"):
    """The model of a run folder (its latest checkpoint) or of a checkpoint file, in eval mode on `device`."""
    from genlab.run import open_run

    return open_run(run_or_checkpoint, device=device, splits=()).model


def save(model, path: str | Path) -> Path:
    """Save any genlab model (one of genlab.models.FAMILIES) as a checkpoint that `load` reads."""
    from genlab.run import save_model

    return save_model(model, Path(path))
