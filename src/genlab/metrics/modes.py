"""Mode coverage of a 2-D Gaussian mixture, the GAN mode-collapse metric of VEEGAN and PacGAN.

Srivastava et al. 2017 (VEEGAN) and Lin et al. 2018 (PacGAN) draw 2,500 samples from the generator and
assign each to its nearest mixture centre. A sample is *high quality* when it lies within 3 standard
deviations of that centre; a mode is *covered* when at least one high-quality sample falls on it. PacGAN adds
the *reverse KL* between the generated distribution over modes and the true one, which is uniform here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlab.data import toys

# VEEGAN and PacGAN evaluate every 2-D model on 2,500 generated samples; use the same count so figures compare.
NUM_SAMPLES = 2_500

# name -> (centres, std) of the mixtures in genlab.data.toys, which follow PacGAN's code. Centres are built
# on use, not at import.
MIXTURES = {
    "ring": (toys.ring_centres, toys.RING_STD),
    "grid": (toys.grid_centres, toys.GRID_STD),
}


@dataclass(frozen=True)
class ModeCoverage:
    modes_covered: int  # centres with at least one high-quality sample
    num_modes: int
    high_quality_fraction: float  # of all samples, in [0, 1]
    reverse_kl: float  # KL(p_gen || uniform) in nats; inf when no sample is high quality
    num_samples: int
    histogram: list[int]  # high-quality samples per centre, in the centres' order
    spread: float  # root-mean-square distance of the samples from their mean, in the data's units
    mode_std: float  # the std of each mixture component, the scale `spread` is read against

    def __str__(self) -> str:
        return (f"{self.modes_covered}/{self.num_modes} modes, {100 * self.high_quality_fraction:.1f}% high quality, "
                f"reverse KL {self.reverse_kl:.3f} ({self.num_samples} samples)")


def mode_coverage(
    samples: torch.Tensor, centres: torch.Tensor, std: float, threshold_stds: float = 3.0
) -> ModeCoverage:
    """Mode coverage of `samples` (N, 2) against a mixture of isotropic Gaussians at `centres` (M, 2).

    Each sample goes to its nearest centre (Euclidean distance) and is high quality when that distance is at
    most `threshold_stds * std` (PacGAN's code uses `<`; the two differ only on a set of probability zero).
    Only high-quality samples enter the histogram, as in PacGAN's released code
    (synthetic_data_experiments/PacGAN/pacgan/extensions.py, MetricLogger). The reverse KL is

        KL(p || u) = sum_{i: p_i > 0} p_i log(p_i / (1/M)),   p_i = histogram_i / sum(histogram),

    i.e. log M minus the entropy of p: 0 when the high-quality samples are spread evenly over all M modes,
    log(M/k) when they are spread evenly over k modes. With no high-quality sample p is undefined and the
    reverse KL is reported as inf, the worst value, so thresholds on it still fire. Samples holding NaN (a
    diverged generator) are never high quality.
    """
    if samples.dim() != 2 or samples.shape[1] != 2 or len(samples) == 0:
        raise ValueError(f"samples must be (N, 2) points with N >= 1, got shape {tuple(samples.shape)}")
    if centres.dim() != 2 or centres.shape[1] != 2 or len(centres) == 0:
        raise ValueError(f"centres must be (M, 2) points with M >= 1, got shape {tuple(centres.shape)}")
    if not std > 0 or not threshold_stds > 0:
        raise ValueError(f"std and threshold_stds must be positive, got std={std}, threshold_stds={threshold_stds}")
    # float64 on the CPU: a few thousand points, and distances of a few std must not round at the threshold.
    points = samples.detach().to("cpu", torch.float64)
    centres = centres.detach().to("cpu", torch.float64)
    distances = (points[:, None, :] - centres[None, :, :]).norm(dim=-1)  # (N, M)
    nearest_distance, nearest = distances.min(dim=1)  # (N,), (N,)
    high_quality = nearest_distance <= threshold_stds * std  # NaN compares False
    histogram = torch.bincount(nearest[high_quality], minlength=len(centres))  # (M,)

    spread = (points - points.mean(dim=0)).square().sum(dim=1).mean().sqrt().item()
    num_high_quality = int(histogram.sum())
    num_modes = len(centres)
    if num_high_quality == 0:
        reverse_kl = math.inf
    else:
        probabilities = [count / num_high_quality for count in histogram.tolist()]
        reverse_kl = sum(p * math.log(p * num_modes) for p in probabilities if p > 0)
    return ModeCoverage(
        modes_covered=int((histogram > 0).sum()),
        num_modes=num_modes,
        high_quality_fraction=num_high_quality / len(samples),
        reverse_kl=reverse_kl,
        num_samples=len(samples),
        histogram=histogram.tolist(),
        spread=spread,
        mode_std=std,
    )


def mixture_coverage(samples: torch.Tensor, name: str) -> ModeCoverage:
    """`mode_coverage` against one of the named toy mixtures ("ring" or "grid") with its own std."""
    if name not in MIXTURES:
        raise ValueError(f"mode coverage needs a mixture with known centres: choose one of {', '.join(MIXTURES)}, "
                         f"not {name!r}")
    centres, std = MIXTURES[name]
    return mode_coverage(samples, centres(), std)
