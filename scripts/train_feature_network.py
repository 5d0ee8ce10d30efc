"""Train the MNIST feature network that genlab ships for FID/KID/precision-recall and digit labels.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/train_feature_network.py --data-dir /work/shared/data

On one CPU thread: a ~130k-parameter CNN (genlab.metrics.features.FeatureCNN), Adam with a one-cycle
schedule, random shifts of up to 2 pixels and rotations of up to 10 degrees, 8 epochs. It writes
src/genlab/metrics/mnist_features.safetensors and, beside it, mnist_features.json: the SHA-256 of the
MNIST files it saw, test accuracy, script, seed, CPU time and the weights' own SHA-256 (checked on load).
It refuses to write weights below --min-accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.data import Batches, load_dataset
from genlab.data.images import MNIST_SHA256, verify_mnist
from genlab.metrics.features import (
    MNIST_RECORD,
    MNIST_WEIGHTS,
    FeatureCNN,
    FeatureCNNConfig,
    save_feature_cnn,
    sha256_file,
)

NAME = "genlab-mnist-cnn-v1"


def augment(x: torch.Tensor, generator: torch.Generator, shift: float = 2.0, degrees: float = 10.0) -> torch.Tensor:
    """Random translations (up to `shift` pixels) and rotations (up to `degrees`) per image, by grid_sample."""
    n, size = len(x), x.shape[-1]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    offset = (torch.rand(n, 2, generator=generator) * 2 - 1) * shift * 2 / size  # pixels -> [-1, 1] grid units
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def accuracy(net: FeatureCNN, x: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    predicted = torch.cat([net(chunk).argmax(1) for chunk in x.split(1000)])
    net.train()
    return (predicted == labels).float().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)  # one-cycle peak for Adam
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-accuracy", type=float, default=0.993)
    parser.add_argument("--out", type=Path, default=MNIST_WEIGHTS)
    args = parser.parse_args()

    torch.set_num_threads(1)  # the published CPU time is for one thread
    torch.manual_seed(args.seed)
    verify_mnist(args.data_dir / "mnist")  # the hashes recorded below are then the files' true ones
    train = load_dataset("mnist", "train", data_dir=args.data_dir)
    test = load_dataset("mnist", "test", data_dir=args.data_dir)
    config = FeatureCNNConfig()
    net = FeatureCNN(config)
    batches = Batches(torch.arange(len(train)), args.batch_size, seed=args.seed)  # rows of images and labels
    steps = args.epochs * batches.batches_per_epoch
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(args.seed)

    start = time.process_time()
    for step in range(steps):
        rows = batches.batch(step)
        loss = F.cross_entropy(net(augment(train.x[rows], generator)), train.labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % batches.batches_per_epoch == 0:
            epoch = (step + 1) // batches.batches_per_epoch
            print(f"epoch {epoch}: loss {loss.item():.4f}, test accuracy {accuracy(net, test.x, test.labels):.4f}, "
                  f"{time.process_time() - start:.0f} s CPU", flush=True)
    cpu_seconds = time.process_time() - start
    test_accuracy = accuracy(net, test.x, test.labels)
    if test_accuracy < args.min_accuracy:
        raise SystemExit(f"test accuracy {test_accuracy:.4f} is below {args.min_accuracy}: weights not written")

    net.eval()
    save_feature_cnn(net, args.out)
    record = {
        "name": NAME,
        "weights_file": args.out.name,
        "weights_sha256": sha256_file(args.out),
        "architecture": "genlab.metrics.features.FeatureCNN",
        "config": {**config.__dict__, "widths": list(config.widths)},
        "num_parameters": sum(p.numel() for p in net.parameters()),
        "test_accuracy": test_accuracy,
        "train_data": "MNIST train split (60,000 images); accuracy on the t10k split (10,000)",
        "data_sha256": MNIST_SHA256,  # of the uncompressed IDX files
        "script": "scripts/train_feature_network.py",
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "cpu_seconds_one_thread": round(cpu_seconds, 1),
        "torch_version": torch.__version__,
    }
    record_path = args.out.with_suffix(".json") if args.out != MNIST_WEIGHTS else MNIST_RECORD
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {record_path}: "
          f"test accuracy {test_accuracy:.4f}, {cpu_seconds:.0f} s CPU")


if __name__ == "__main__":
    main()
