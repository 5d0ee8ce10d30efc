"""How much the decoded cache of an image folder saves: the first load of a folder (every header checked, every
image decoded, the split cached in <folder>/.genlab-cache/) against the second (the cache's checksum checked,
then read back memory-mapped), for the train split of a folder of generated PNGs.

    python benchmarks/folder_cache.py                          # 2000 RGB PNGs of 64x64, 3 rounds
    python benchmarks/folder_cache.py --count 5000 --side 128 --image-size 64 --rounds 1

The images are smooth colour gradients with noise on top, so that PNG's compression and decoding work about as
hard as on photos. The files were just written, so both loads read them from the page cache: the figures are
the cost of decoding against the cost of reading back, not of the disk. Each round deletes the cache first;
figures are medians over the rounds, wall-clock seconds (time.perf_counter).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab.data import images


def make_folder(folder: Path, count: int, side: int) -> None:
    generator = np.random.default_rng(0)
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    for i in range(count):
        colours = generator.uniform(0, 255, (2, 3)).astype(np.float32)  # the gradient's two ends, (2, RGB)
        mix = (ramp[:, None] + ramp[None, :])[..., None] / 2  # (side, side, 1)
        pixels = colours[0] * (1 - mix) + colours[1] * mix + generator.normal(0, 12, (side, side, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.png")


def timed_load(folder: Path, image_size: int | None) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    x, _ = images.image_folder(folder, "train", image_size, None)
    return time.perf_counter() - start, x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="images in the folder")
    parser.add_argument("--side", type=int, default=64, help="each image's width and height")
    parser.add_argument("--image-size", type=int, default=None, help="image_size to load at (default: as stored)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="genlab-folder-cache-"))
    try:
        make_folder(folder, args.count, args.side)
        first, second = [], []
        for _ in range(args.rounds):
            shutil.rmtree(folder / images.CACHE_FOLDER, ignore_errors=True)
            seconds, decoded = timed_load(folder, args.image_size)
            first.append(seconds)
            seconds, cached = timed_load(folder, args.image_size)
            second.append(seconds)
            if not torch.equal(decoded, cached):
                raise SystemExit("the cached split differs from the decoded one")
        cache_bytes = sum(file.stat().st_size for file in (folder / images.CACHE_FOLDER).iterdir())
        print(f"folder: {args.count} PNGs of {args.side}x{args.side} RGB; train split {tuple(decoded.shape)}; "
              f"cache {cache_bytes / 1e6:.1f} MB")
        print(f"first load (decode + write cache): {', '.join(f'{s:.3f}' for s in first)} s")
        print(f"second load (read cache):          {', '.join(f'{s:.3f}' for s in second)} s")
        first_s, second_s = statistics.median(first), statistics.median(second)
        print(f"RESULT first_load_s={first_s:.3f} second_load_s={second_s:.3f} speedup={first_s / second_s:.1f} "
              f"images={args.count} side={args.side}")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
