"""Sampling speed on CPU: 1,000 MNIST-shaped (1x28x28) samples from the GAN, the VAE, DDPM and DDIM.

    python benchmarks/sampling.py                          # fresh default MNIST models, one thread
    python benchmarks/sampling.py --threads 2 --batch 500
    python benchmarks/sampling.py --runs runs/compare-mnist    # trained gan-seed0, vae-seed0, ddpm-seed0 runs
    python benchmarks/sampling.py --ddpm-n 250             # ancestral DDPM on 250 samples only (see below)

Contenders, each drawing --n samples --batch at a time from one seeded generator, no gradients:
  gan   genlab's DCGAN generator (conv, latent 64): one forward pass
  vae   genlab's conv VAE decoder (latent 20): one forward pass
  ddpm  genlab's UNet (16-32-32, 175k parameters), ancestral DDPM over all 1,000 timesteps
  ddim  the same UNet, deterministic DDIM over 50 of them
Freshly initialised models of the default MNIST architectures by default: a sample costs the same network
passes whatever the weights, so training does not change these figures (--runs measures trained ones).
Images/s is from CPU time (time.process_time), which on one thread is the wall time of an idle machine and is
not inflated by other processes on a shared one. DDPM-1000 on 1,000 images takes ~20 CPU-minutes on one
thread; --ddpm-n draws fewer (a multiple of --batch keeps the batches the same size: images/s is then the same).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from genlab.models.ddpm import DDPM, DDPMConfig
from genlab.models.gan import GAN, GANConfig
from genlab.models.vae import VAE, VAEConfig
from genlab.run import open_run

MNIST_SHAPE = (1, 28, 28)
CONTENDERS = {  # name -> (family, sample() options)
    "gan": ("gan", {}),
    "vae": ("vae", {}),
    "ddpm": ("ddpm", {"sampler": "ddpm", "steps": 1000}),
    "ddim": ("ddpm", {"sampler": "ddim", "steps": 50}),
}
FRESH = {"gan": lambda: GAN(GANConfig(data_shape=MNIST_SHAPE, architecture="conv")),
         "vae": lambda: VAE(VAEConfig(data_shape=MNIST_SHAPE, architecture="conv")),
         "ddpm": lambda: DDPM(DDPMConfig(data_shape=MNIST_SHAPE, architecture="unet"))}


def load_models(runs: Path | None) -> dict[str, torch.nn.Module]:
    if runs is None:
        torch.manual_seed(0)
        return {family: make().eval() for family, make in FRESH.items()}
    models = {}
    for family in FRESH:
        found = sorted(runs.glob(f"{family}-seed*"))
        if not found:
            raise SystemExit(f"{runs} has no {family}-seedN run: run `genlab compare --out {runs}` first")
        models[family] = open_run(found[0], splits=()).model
        print(f"{family}: {found[0]}")
    return models


@torch.no_grad()
def images_per_second(model, n: int, batch: int, options: dict) -> tuple[float, float]:
    """(images/s by CPU time, CPU seconds) for n samples drawn `batch` at a time."""
    generator = torch.Generator().manual_seed(0)
    model.sample(2, generator=generator, **({**options, "steps": 2} if "steps" in options else options))  # warm-up
    start = time.process_time()
    for first in range(0, n, batch):
        model.sample(min(batch, n - first), generator=generator, **options)
    seconds = time.process_time() - start
    return n / seconds, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="samples per contender")
    parser.add_argument("--ddpm-n", type=int, default=None, help="samples for ancestral DDPM (default: --n)")
    parser.add_argument("--batch", type=int, default=250, help="samples per sample() call")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--runs", type=Path, default=None, help="folder of trained FAMILY-seedN runs")
    args = parser.parse_args()
    if min(args.n, args.batch, args.threads, args.ddpm_n or 1) < 1:
        parser.error("--n, --ddpm-n, --batch and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    models = load_models(args.runs)
    source = f"trained runs in {args.runs}" if args.runs else "fresh default MNIST models"
    print(f"{source}; batch {args.batch}, {args.threads} thread(s), torch {torch.__version__}")
    figures = {}
    for name, (family, options) in CONTENDERS.items():
        n = args.ddpm_n if name == "ddpm" and args.ddpm_n else args.n
        rate, seconds = images_per_second(models[family], n, args.batch, options)
        figures[name] = rate
        print(f"{name:5s} {n:6d} samples in {seconds:8.2f} CPU-s: {rate:10.1f} images/s")
    print("RESULT " + " ".join(f"{name}_img_s={rate:.4g}" for name, rate in figures.items()))


if __name__ == "__main__":
    main()
