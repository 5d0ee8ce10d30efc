"""The lesson's toy data: 3x3 patterns, a 1-D Gaussian, and 2-D shapes for watching GANs.

Each function returns (x, labels) and is a pure function of its seed. The 2-D mixtures follow
the PacGAN code so mode-coverage numbers compare with the papers: ring = 8 centres on the unit
circle with std 0.01; grid = 25 centres on {-4,-2,0,2,4}^2 with std 0.05.
"""

from __future__ import annotations

import math

import torch

# The lesson's small fixed set of 3x3 binary patterns, row by row.
PATTERNS = {
    "top bar": "111 000 000",
    "middle bar": "000 111 000",
    "bottom bar": "000 000 111",
    "left bar": "100 100 100",
    "centre bar": "010 010 010",
    "right bar": "001 001 001",
    "plus": "010 111 010",
    "x-cross (checker)": "101 010 101",
    "top-left corner": "111 100 100",
    "top-right corner": "111 001 001",
    "bottom-left corner": "100 100 111",
    "bottom-right corner": "001 001 111",
    "diagonal": "100 010 001",
    "anti-diagonal": "001 010 100",
    "inverse checker": "010 101 010",
}


def patterns(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3x3 patterns as (15, 1, 3, 3) images in {0, 1}; the label is the pattern's index."""
    del seed  # a fixed set: both splits are the same patterns
    rows = [[float(c) for c in spec.replace(" ", "")] for spec in PATTERNS.values()]
    x = torch.tensor(rows).view(-1, 1, 3, 3)
    return x, torch.arange(len(x))


# 10 million 2-D points are 80 MB: far more than a toy run needs, and refused before allocating.
MAX_SAMPLES = 10_000_000


def _generator(seed: int, n: int, **scales: float) -> torch.Generator:
    """A generator seeded with `seed`, once the sample count, the seed and any noise scales can work."""
    if not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"n must be a whole number of samples from 1 to {MAX_SAMPLES}, got {n!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2**64:  # the range torch's generator takes
        raise ValueError(f"seed must be a whole number from 0 to 2**64 - 1, got {seed!r}")
    for name, value in scales.items():
        if not (math.isfinite(value) and value >= 0):  # NaN would make every sample NaN
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return torch.Generator().manual_seed(seed)


def gaussian1d(seed: int = 0, n: int = 10_000, mean: float = 4.0, std: float = 1.25):
    """Samples of N(mean, std^2) as (n, 1): the data of the lesson's 1-D GAN duel."""
    if not math.isfinite(mean):
        raise ValueError(f"mean must be a finite number, got {mean!r}")
    generator = _generator(seed, n, std=std)
    return mean + std * torch.randn(n, 1, generator=generator), None


def _mixture(centres: torch.Tensor, std: float, n: int, seed: int):
    generator = _generator(seed, n)
    labels = torch.randint(len(centres), (n,), generator=generator)
    return centres[labels] + std * torch.randn(n, 2, generator=generator), labels


def ring_centres() -> torch.Tensor:
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return torch.stack([angles.cos(), angles.sin()], dim=1).float()


def grid_centres() -> torch.Tensor:
    values = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    return torch.cartesian_prod(values, values)


RING_STD = 0.01
GRID_STD = 0.05


def ring(seed: int = 0, n: int = 50_000):
    """8 Gaussians on the unit circle, std 0.01 (PacGAN); the label is the centre's index."""
    return _mixture(ring_centres(), RING_STD, n, seed)


def grid(seed: int = 0, n: int = 50_000):
    """25 Gaussians on {-4,-2,0,2,4}^2, std 0.05 (PacGAN); the label is the centre's index."""
    return _mixture(grid_centres(), GRID_STD, n, seed)


def moons(seed: int = 0, n: int = 50_000, noise: float = 0.05):
    """Two interleaving half circles, as scikit-learn's make_moons; the label is the moon."""
    generator = _generator(seed, n, noise=noise)
    labels = torch.randint(2, (n,), generator=generator)
    t = torch.rand(n, generator=generator) * math.pi
    upper = torch.stack([t.cos(), t.sin()], dim=1)
    lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=1)
    x = torch.where(labels[:, None] == 0, upper, lower)
    return x + noise * torch.randn(n, 2, generator=generator), labels


def swiss_roll(seed: int = 0, n: int = 50_000, noise: float = 0.05):
    """A 2-D swiss roll scaled to about [-1, 1]^2; unlabelled."""
    generator = _generator(seed, n, noise=noise)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1) / 10
    return x + noise * torch.randn(n, 2, generator=generator), None
