"""The autoencoder's sampler against the VAE's prior, on 8x8 digits: each trained for the same CPU budget with
compare's recipe, the AE then fitted its 10-Gaussian mixture (`genlab fit-sampler`'s defaults), both scored with
compare's protocol (genlab.compare.measure: FID/precision/recall of 2,000 samples against the test digits, seed 0).
With MNIST in --data-dir, also the CPU time of fitting a sampler on MNIST's 60,000 training codes.

    OMP_NUM_THREADS=1 python benchmarks/ae_sampler.py                       # 10 CPU-s each
    OMP_NUM_THREADS=1 python benchmarks/ae_sampler.py --budget 60 --data-dir ../shared/data

Anchor: Ghosh et al. 2020 ("From variational to deterministic autoencoders", table 1) found a deterministic
autoencoder with an ex-post mixture sampling better (lower FID) than a VAE from its prior.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from genlab.compare import RECIPES, measure
from genlab.models import family
from genlab.models.autoencoder import fit_sampler
from genlab.run import create_run, loading_once, open_run
from genlab.train import TrainConfig, train


def trained(out: Path, name: str, data: str, budget: float, data_dir: str | None, steps: int = 1_000_000) -> Path:
    model_settings, train_settings = RECIPES[name]
    config = TrainConfig(data=data, seed=0, steps=steps, **train_settings)
    with loading_once():
        run = create_run(out / f"{name}-{data}", name, config, model_settings, data_dir)
        train(run, device="cpu", data_dir=data_dir, cpu_budget=budget if steps > 1 else None)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=10.0, help="CPU seconds of training for each model")
    parser.add_argument("--data-dir", default=None, help="folder holding mnist/ (for the fitting time)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        for name in ("ae", "vae"):
            run = trained(out, name, "digits", args.budget, None)
            if (finish := family(name).after_training) is not None:
                print(finish(run))
            figures[name] = result = measure(open_run(run, splits=("test",)), samples=2000, seed=0, nll_k=1)
            print(f"{name}: {result.steps} steps, reconstruction MSE {result.mse}, FID {result.fid:.2f}, "
                  f"precision {result.precision:.3f}, recall {result.recall:.3f}")
        fit = ""
        if args.data_dir and (Path(args.data_dir) / "mnist").is_dir():
            run = trained(out, "ae", "mnist", args.budget, args.data_dir, steps=1)  # timing: the weights do not matter
            start = time.process_time()
            fitted = fit_sampler(run, data_dir=args.data_dir)
            fit = f" mnist_fit_cpu_s={time.process_time() - start:.1f} mnist_codes={fitted.codes}"
    ae, vae = figures["ae"], figures["vae"]
    print(f"RESULT ae_fid={ae.fid:.2f} vae_fid={vae.fid:.2f} ae_precision={ae.precision:.3f} "
          f"ae_recall={ae.recall:.3f} vae_precision={vae.precision:.3f} vae_recall={vae.recall:.3f} "
          f"ae_steps={ae.steps} vae_steps={vae.steps} budget_cpu_s={args.budget:g}{fit}")


if __name__ == "__main__":
    main()
