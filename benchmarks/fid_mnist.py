"""Anchors for the sample-quality metrics on MNIST: real against real, then real against degraded real.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/fid_mnist.py --data-dir /work/shared/data

Reference: the 10,000 test images. "Generated": the first 10,000 training images, as they are (the floor a
perfect model reaches at this sample count), with Gaussian noise, and with 20% of them replaced by copies
of one image (a partial collapse). Features: the shipped MNIST network. Prints one row per case.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from genlab.data import load_dataset
from genlab.metrics.features import mnist_feature_network
from genlab.metrics.quality import sample_quality


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    network = mnist_feature_network()
    test = load_dataset("mnist", "test", data_dir=args.data_dir).x[: args.samples]
    train = load_dataset("mnist", "train", data_dir=args.data_dir).x[: args.samples]
    generator = torch.Generator().manual_seed(0)
    collapsed = train.clone()
    collapsed[: len(train) // 5] = train[0]
    cases = {
        "train (real)": train,
        "train + noise 0.1": (train + 0.1 * torch.randn(train.shape, generator=generator)).clamp(0, 1),
        "train + noise 0.3": (train + 0.3 * torch.randn(train.shape, generator=generator)).clamp(0, 1),
        "20% one image": collapsed,
    }
    start = time.perf_counter()
    real = network.features(test)
    print(f"features: {network.name} sha256 {network.sha256[:12]}..., reference mnist/test[:{len(test)}]")
    print(f"{'case':20s} {'FID':>8s} {'KID':>9s} {'prec':>6s} {'recall':>6s} {'dens':>6s} {'cover':>6s}")
    for name, images in cases.items():
        scores = sample_quality(real, network.features(images), reference=f"mnist/test[:{len(test)}]",
                                feature_network=network.name, feature_network_sha256=network.sha256).values
        print(f"{name:20s} {scores['fid']:8.3f} {scores['kid']:9.5f} {scores['precision']:6.3f} "
              f"{scores['recall']:6.3f} {scores['density']:6.3f} {scores['coverage']:6.3f}", flush=True)
    print(f"RESULT {len(cases)} cases of {len(test)} vs {len(train)} images in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
