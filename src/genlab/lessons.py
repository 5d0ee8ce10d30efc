"""The lesson's examples, runnable, on the same API as everything else: each makes a run folder with
`create_run`, trains it with `train`, then shows what the model learned."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from genlab.checkpoint import load_model
from genlab.data import default_data_dir, load_dataset
from genlab.data.images import MNIST_SHA256
from genlab.data.toys import PATTERNS
from genlab.explore import decoded_latent_grid, save_image_grid, save_latent_map
from genlab.train import TrainConfig, create_run, train


def _fresh_run(folder: Path, family: str, config: TrainConfig, model_settings: dict, data_dir) -> Path:
    """Lessons always start over, so each run folder is replaced."""
    if (folder / "config.json").exists():
        shutil.rmtree(folder)
    return create_run(folder, family, config, model_settings, data_dir)


def _cells(pattern: torch.Tensor) -> str:
    """A 3x3 pattern as three rows of blocks; grey levels rounded."""
    return "\n".join("".join("■" if v > 0.5 else "□" for v in row) for row in pattern.view(3, 3).tolist())


def autoencoder(out: Path, console: Console, data_dir=None) -> Path:
    """Squeeze the 3x3 patterns into 3 numbers (tanh code) and back; print and save every pattern."""
    console.print("[bold]Lesson: an autoencoder squeezes 3x3 patterns into 3 numbers and back.[/]")
    config = TrainConfig(data="patterns", steps=3000, batch_size=len(PATTERNS), lr=3e-3, log_every=500,
                         sample_every=3000, checkpoint_every=3000, keep_checkpoints=1)
    run = _fresh_run(out / "autoencoder", "ae", config,
                     {"latent_dim": 3, "code_activation": "tanh", "hidden_dims": (32,)}, data_dir)
    train(run, device="cpu", on_log=lambda r: console.print(f"step {r['step']:5d}  reconstruction loss "
                                                            f"{r['reconstruction']:.4f}"))
    model, _ = load_model(run)
    x = load_dataset("patterns").x
    with torch.no_grad():
        codes, reconstructions = model.encode(x), model.reconstruct(x)
    table = Table("pattern", "name", "reconstruction", "cells right")
    table.add_column("3-number code", no_wrap=True)
    for name, pattern, code, rec in zip(PATTERNS, x, codes, reconstructions, strict=True):
        right = int(((rec > 0.5) == (pattern > 0.5)).sum())
        table.add_row(_cells(pattern), name, _cells(rec), f"{right}/9", " ".join(f"{v:+.2f}" for v in code.tolist()))
    console.print(table)
    exact = int(((reconstructions > 0.5) == (x > 0.5)).flatten(1).all(1).sum())
    console.print(f"{exact} of {len(x)} patterns come back exactly from 3 numbers.")
    picture = save_image_grid(torch.stack([x, reconstructions], 1).flatten(0, 1), out / "autoencoder.png", nrow=6)
    console.print(f"saved {picture} (pairs: pattern, reconstruction)")
    return picture


def _mnist_present(data_dir) -> bool:
    folder = Path(data_dir or default_data_dir()) / "mnist"
    return all((folder / f"{name}.gz").is_file() for name in MNIST_SHA256)


def vae(out: Path, console: Console, data_dir=None) -> Path:
    """A VAE with a 2-D latent on digits (MNIST when present): watch the terms, then map the latent space."""
    data = "mnist" if _mnist_present(data_dir) else "digits"
    console.print(f"[bold]Lesson: a VAE with a 2-D latent space on {data}.[/] The loss is reconstruction "
                  "(-log p(x|z)) plus KL(q(z|x) || N(0, I)), which keeps the codes near the prior.")
    steps = 3000 if data == "mnist" else 2000
    config = TrainConfig(data=data, steps=steps, batch_size=128, lr=1e-3, log_every=200,
                         sample_every=steps, checkpoint_every=steps, keep_checkpoints=1)
    run = _fresh_run(out / "vae", "vae", config, {"latent_dim": 2, "architecture": "mlp", "hidden_dims": (256,)},
                     data_dir)
    train(run, device="cpu", data_dir=data_dir,
          on_log=lambda r: console.print(f"step {r['step']:5d}  reconstruction {r['reconstruction']:8.3f}  "
                                         f"KL {r['kl']:6.3f}  (nats per image)"))
    model, _ = load_model(run)
    test = load_dataset(data, "test", data_dir=data_dir)
    with torch.no_grad():
        mu, _ = model.encode(test.x)
    map_path = save_latent_map(mu, test.labels, out / "vae-latent-map.png", f"VAE latent space, {data} test set")
    grid_path = save_image_grid(decoded_latent_grid(model.decode), out / "vae-latent-grid.png", nrow=15)
    first, second = (int(torch.nonzero(test.labels == digit)[0]) for digit in (1, 7))
    strips = torch.cat([model.interpolate(test.x[first], test.x[second], 10, m) for m in ("lerp", "slerp")])
    strip_path = save_image_grid(strips, out / "vae-interpolation.png", nrow=10)
    console.print(f"saved {map_path} (codes of the test set, coloured by digit), {grid_path} (decoded grid "
                  f"over z in [-2.5, 2.5]^2) and {strip_path} (a 1 turning into a 7: lerp row, slerp row)")
    return map_path


LESSONS = {"autoencoder": autoencoder, "vae": vae}
