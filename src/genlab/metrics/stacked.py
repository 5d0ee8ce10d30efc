"""Stacked-MNIST mode coverage, the 1000-mode GAN collapse test of Metz et al. 2017, VEEGAN and PacGAN.

A Stacked-MNIST image holds three MNIST digits as its R, G and B channels, so it has 10^3 = 1000 modes, the
triples of digit labels. Each channel of a generated image is labelled by the shipped MNIST classifier
(genlab.metrics.features.classify, 99.4% on MNIST's test split); its mode is 100 * r + 10 * g + b. A mode is
*covered* when at least one sample lands on it. The KL is KL(p_gen || uniform over the 1000 modes), as
PacGAN's table 2 reports it: its code (stacked_MNIST_experiments/VEEGAN_experiment/model.py, log_metrics)
computes sum_i p_i log(p_i / q_i) with p the generated histogram and q = 1/1000 (the same "reverse KL" as
genlab.metrics.modes). Every sample counts: unlike the 2-D mixtures there is no quality threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlab.metrics.features import classify  # the shipped weights load on first use, not at import

# VEEGAN and PacGAN count modes over 26,000 generated samples: 26 per mode if the generator were uniform,
# enough that a uniform generator misses a mode with probability about 1000 * e^-26, never in practice. Even a
# perfect generator's KL is not 0 on a finite sample: about (1000 - 1) / (2 N) = 0.019 nats at N = 26,000.
NUM_SAMPLES = 26_000
NUM_MODES = 1000


@dataclass(frozen=True)
class StackedModes:
    modes_covered: int  # of the 1000 digit triples, those with at least one sample
    reverse_kl: float  # KL(p_gen || uniform over 1000) in nats: 0 when even, log(1000/k) when even over k modes
    num_samples: int
    histogram: list[int]  # samples per mode, index 100 * r + 10 * g + b

    def __str__(self) -> str:
        return (f"{self.modes_covered}/{NUM_MODES} modes, reverse KL {self.reverse_kl:.3f} "
                f"({self.num_samples} samples)")


def mode_histogram_coverage(modes: torch.Tensor) -> StackedModes:
    """Coverage and reverse KL of (N,) mode indices in 0..999:

        KL(p || u) = sum_{i: p_i > 0} p_i log(p_i * 1000),   p_i = count_i / N.
    """
    if modes.dim() != 1 or len(modes) == 0:
        raise ValueError(f"modes must be a non-empty (N,) tensor of indices, got shape {tuple(modes.shape)}")
    if modes.dtype.is_floating_point or modes.min() < 0 or modes.max() >= NUM_MODES:
        raise ValueError(f"modes must be integers in 0..{NUM_MODES - 1} (100 * r + 10 * g + b)")
    histogram = torch.bincount(modes.cpu(), minlength=NUM_MODES)
    n = len(modes)
    reverse_kl = sum(count / n * math.log(count / n * NUM_MODES) for count in histogram.tolist() if count > 0)
    return StackedModes(modes_covered=int((histogram > 0).sum()), reverse_kl=reverse_kl, num_samples=n,
                        histogram=histogram.tolist())


def stacked_modes(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, 28, 28) in [0, 1] -> (N,) mode indices 100 * r + 10 * g + b, each channel's digit by classify()."""
    if images.dim() != 4 or images.shape[1:] != (3, 28, 28):
        raise ValueError(f"Stacked-MNIST images are (N, 3, 28, 28), got shape {tuple(images.shape)}")
    r, g, b = (classify(images[:, c : c + 1]) for c in range(3))  # each (N,), a 1-channel MNIST batch
    return r * 100 + g * 10 + b


def stacked_mnist_coverage(images: torch.Tensor) -> StackedModes:
    """Modes covered and reverse KL of generated Stacked-MNIST images (N, 3, 28, 28) in [0, 1]; use
    NUM_SAMPLES = 26,000 of them to compare with VEEGAN and PacGAN."""
    return mode_histogram_coverage(stacked_modes(images))
