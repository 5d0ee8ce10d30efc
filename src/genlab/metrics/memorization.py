"""Does a generator copy its training images? Nearest neighbours, the copy rate, and what real data scores.

On 100 training faces a GAN can learn to draw the faces it was shown, which every distribution metric
rewards (the samples look exactly like the data). The check finds each sample's nearest training image
and calls the sample a copy when that image is much nearer than the second nearest: d1 < COPY_RATIO * d2
(Yoon et al. 2023 use 1/3). A ratio, not a distance threshold, so it holds in any feature space and at
any image size, and a sample halfway between two faces is not a copy of either.

Real images that were never trained on are the yardstick: their own copy rate against the training set
(held-out images, or each training image against the others when there are none) is what an honest
generator should score, since near-duplicates in the data make a few reals "copies" too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

COPY_RATIO = 1 / 3
YARDSTICK_IMAGES = 1000  # training images judged against the others when no held-out images are given
DISTANCE_BUDGET = 2**24  # distances held at once (128 MB of float64): 280 samples against MNIST's 60,000


@dataclass(frozen=True)
class Nearest:
    """For each sample: its nearest training image (index), the distance to it and to the second nearest."""

    index: torch.Tensor  # (N,) int64
    first: torch.Tensor  # (N,)
    second: torch.Tensor  # (N,)

    @property
    def copies(self) -> torch.Tensor:
        """(N,) bool: the samples whose nearest training image is over 1/COPY_RATIO times nearer than the next."""
        return self.first < COPY_RATIO * self.second

    @property
    def copy_rate(self) -> float:
        return self.copies.double().mean().item()


def nearest_training(samples: torch.Tensor, train: torch.Tensor, *, leave_one_out: bool = False) -> Nearest:
    """Nearest and second-nearest training rows of each sample row (features or flattened pixels), by
    Euclidean distance. leave_one_out: `samples` are the first rows of `train` itself, and each skips its own."""
    samples, train = samples.flatten(1).double(), train.flatten(1).double()
    if samples.shape[1] != train.shape[1]:
        raise ValueError(f"samples have {samples.shape[1]} features but the training data {train.shape[1]}")
    if len(train) < 2 + leave_one_out:
        raise ValueError(f"the memorization check needs at least {2 + leave_one_out} training images, got {len(train)}")
    if leave_one_out and not torch.equal(samples, train[:len(samples)]):
        raise ValueError("leave_one_out compares training images with the others: pass the first rows of train")
    index, first, second = [], [], []
    chunk = max(1, DISTANCE_BUDGET // len(train))
    for start in range(0, len(samples), chunk):
        distances = torch.cdist(samples[start:start + chunk], train)
        if leave_one_out:
            rows = torch.arange(len(distances))
            distances[rows, rows + start] = float("inf")
        two = distances.topk(2, dim=1, largest=False)
        index.append(two.indices[:, 0])
        first.append(two.values[:, 0])
        second.append(two.values[:, 1])
    return Nearest(torch.cat(index), torch.cat(first), torch.cat(second))


@dataclass(frozen=True)
class Memorization:
    copy_rate: float  # share of samples that copy a training image
    real_copy_rate: float  # the same test on real images never trained on: what no copying scores
    distance_to_train: float  # median distance from a sample to its nearest training image
    real_distance_to_train: float  # the same for the real images
    real: str  # which real images were the yardstick

    def to_dict(self) -> dict:
        return {"copy_rate": self.copy_rate, "real_copy_rate": self.real_copy_rate,
                "distance_to_train": self.distance_to_train, "real_distance_to_train": self.real_distance_to_train,
                "yardstick": self.real}

    @property
    def copying(self) -> bool:
        """Copies clearly more often than real images do: over twice their rate, and over 5% of samples."""
        return self.copy_rate > max(2 * self.real_copy_rate, 0.05)


def memorization(samples: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor | None = None) -> Memorization:
    """The copy rate of `samples` against `train`, beside that of real images: `held_out` when given (and not
    the training images themselves), else each of the first YARDSTICK_IMAGES training images against the others."""
    found = nearest_training(samples, train)
    if held_out is not None and not (held_out.shape == train.shape and torch.equal(held_out, train)):
        real, yardstick = nearest_training(held_out, train), f"{len(held_out)} held-out real images"
    else:
        judged = train[:YARDSTICK_IMAGES]
        real = nearest_training(judged, train, leave_one_out=True)
        yardstick = (f"each of the {len(train)} training images against the others" if len(judged) == len(train)
                     else f"{len(judged)} training images, each against the other {len(train) - 1}")
    return Memorization(found.copy_rate, real.copy_rate, found.first.median().item(), real.first.median().item(),
                        yardstick)


def beside_nearest(samples: torch.Tensor, train: torch.Tensor, features_of_samples: torch.Tensor | None = None,
                   features_of_train: torch.Tensor | None = None) -> torch.Tensor:
    """(2N, C, H, W): each sample followed by its nearest training image (found in the given feature space,
    else in pixels), for a picture of samples beside what they may have copied."""
    found = nearest_training(samples if features_of_samples is None else features_of_samples,
                             train if features_of_train is None else features_of_train)
    return torch.stack([samples, train[found.index]], dim=1).flatten(0, 1)
