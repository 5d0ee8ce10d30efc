"""Sample quality in a feature space: FID, KID, precision/recall and density/coverage; and reconstruction scores.

All four sample-quality metrics compare features of real images (a reference split) with features of
generated ones. Features are computed once (genlab.metrics.features) and shared by every metric; FID and
KID are torchmetrics' implementations, fed those features through an identity "feature extractor".

- FID (Heusel et al. 2017): Frechet distance between Gaussians fitted to the two feature sets,
  |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)). Biased: it shrinks as the sample count grows, so
  scores compare only at equal counts (the protocol records them).
- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic kernel (x.y/d + 1)^3, averaged over random
  subsets; about 0 for samples of the same distribution, at any subset size.
- Precision/recall (Kynkaenniemi et al. 2019): each set's manifold is the union of balls around its points
  with radius the distance to the k-th nearest neighbour (k = 3). Precision: the share of fakes inside the
  real manifold; recall: the share of reals inside the fake manifold.
- Density/coverage (Naeem et al. 2020, k = 5): density counts how many real balls hold each fake
  (divided by k, so ~1 for matching distributions and robust to real outliers); coverage is the share of
  real points whose ball holds at least one fake.

Every result carries its protocol: reference split, sample counts, feature network name and SHA-256,
seed and the metric settings, so two scores are only compared when their protocols agree.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

# From their modules: torchmetrics.image exports these two only when torch-fidelity (Inception) is installed,
# which a custom feature network does not need.
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

PR_K = 3  # Kynkaanniemi et al.'s choice for precision/recall
DC_K = 5  # Naeem et al.'s choice for density/coverage
KID_SUBSET_SIZE = 1000  # torchmetrics' default, as in Binkowski et al.'s code
KID_SUBSETS = 100
DISTANCE_CHUNK = 1000  # rows of the distance matrix held at once: 1000 x 10,000 float64 = 80 MB


@dataclass(frozen=True)
class Protocol:
    """How a score was measured. Scores compare only when every field but the seed agrees."""

    reference: str  # the real data, e.g. "mnist/test"
    num_real: int
    num_fake: int
    feature_network: str  # e.g. "genlab-mnist-cnn-v1", or "identity" for raw 2-D points
    feature_network_sha256: str | None  # None for the identity
    seed: int
    settings: dict = field(default_factory=dict)  # metric settings: k, KID subset size...


@dataclass(frozen=True)
class Scores:
    values: dict[str, float]
    protocol: Protocol

    def to_dict(self) -> dict:
        return {"scores": self.values, "protocol": asdict(self.protocol)}


class _Identity(nn.Module):
    """Hands precomputed features to torchmetrics, which would otherwise run a network on images."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _check_features(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D) with the same D, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    if not (torch.isfinite(real).all() and torch.isfinite(fake).all()):
        raise ValueError("features hold NaN or inf: the samples are probably NaN (a diverged model)")
    return real.detach().cpu().double(), fake.detach().cpu().double()


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between feature sets (N, D) and (M, D), in float64. Needs N, M > D: the D x D covariances of
    fewer samples are singular and the score is then mostly estimation noise."""
    real, fake = _check_features(real, fake)
    dim = real.shape[1]
    if min(len(real), len(fake)) <= dim:
        raise ValueError(f"FID with {dim} features needs more than {dim} samples in each set, got {len(real)} real "
                         f"and {len(fake)} generated: draw more samples")
    metric = FrechetInceptionDistance(feature=_Identity(dim), reset_real_features=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, *, subset_size: int = KID_SUBSET_SIZE,
                    subsets: int = KID_SUBSETS, seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over `subsets` random subsets of `subset_size` from each set); seeded."""
    real, fake = _check_features(real, fake)
    if not 2 <= subset_size <= min(len(real), len(fake)):
        raise ValueError(f"KID subset size must be between 2 and the smaller set's size "
                         f"({min(len(real), len(fake))}), got {subset_size}: lower it or draw more samples")
    with warnings.catch_warnings():  # "will save all extracted features in buffer": that is the point here
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Identity(real.shape[1]), subsets=subsets, subset_size=subset_size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws its subsets from the global generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def _kth_neighbour_distance(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) distance from each row of x to its k-th nearest other row."""
    radii = []
    for chunk in x.split(DISTANCE_CHUNK):
        distances = torch.cdist(chunk, x)  # (chunk, N); each row's own distance 0 is its 0-th neighbour
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _check_k(real: torch.Tensor, fake: torch.Tensor, k: int, name: str) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"{name} with k={k} needs more than {k} samples in each set (a point's k nearest "
                         f"neighbours are the others), got {len(real)} real and {len(fake)} generated")


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019) of feature sets (N, D) and (M, D)."""
    real, fake = _check_features(real, fake)
    _check_k(real, fake, k, "precision/recall")
    real_radii, fake_radii = _kth_neighbour_distance(real, k), _kth_neighbour_distance(fake, k)
    # A point is inside a manifold when it lies within some ball: d(point, centre) <= that centre's radius.
    in_real = torch.cat([(torch.cdist(chunk, real) <= real_radii).any(1) for chunk in fake.split(DISTANCE_CHUNK)])
    in_fake = torch.cat([(torch.cdist(chunk, fake) <= fake_radii).any(1) for chunk in real.split(DISTANCE_CHUNK)])
    return in_real.double().mean().item(), in_fake.double().mean().item()


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = DC_K) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020, eqs. 3 and 4) of feature sets (N, D) and (M, D)."""
    real, fake = _check_features(real, fake)
    _check_k(real, fake, k, "density/coverage")
    radii = _kth_neighbour_distance(real, k)  # (N,)
    balls_holding = torch.zeros(len(fake), dtype=torch.float64)  # per fake: how many real balls hold it
    covered = torch.zeros(len(real), dtype=torch.bool)  # per real: does its ball hold any fake
    for start in range(0, len(fake), DISTANCE_CHUNK):
        inside = torch.cdist(fake[start:start + DISTANCE_CHUNK], real) <= radii  # (chunk, N)
        balls_holding[start:start + DISTANCE_CHUNK] = inside.sum(1)
        covered |= inside.any(0)
    density = balls_holding.sum().item() / (k * len(fake))
    return density, covered.double().mean().item()


def sample_quality(real: torch.Tensor, fake: torch.Tensor, *, reference: str, feature_network: str,
                   feature_network_sha256: str | None, seed: int = 0, all_real_data: bool = False) -> Scores:
    """FID, KID, precision/recall and density/coverage of two feature sets, with their protocol.

    The KID subset size is KID_SUBSET_SIZE, or the smaller set's size when that is smaller (KID is
    unbiased at any size; the protocol records the one used). FID is left out, saying why in the protocol,
    when `real` is `all_real_data` there is and has no more examples than features (100 faces): no number of
    samples can make its covariance full rank, and KID is the score to read. Otherwise too few samples are an
    error (draw more).
    """
    dim = real.shape[1]
    data_too_small = all_real_data and len(real) <= dim
    # first: FID needs the most samples, so too few fail before any work
    fid = {} if data_too_small else {"fid": frechet_distance(real, fake)}
    subset_size = min(KID_SUBSET_SIZE, len(real), len(fake))
    kid, kid_std = kernel_distance(real, fake, subset_size=subset_size, seed=seed)
    precision, recall = precision_recall(real, fake)
    density, coverage = density_coverage(real, fake)
    values = {**fid, "kid": kid, "kid_std": kid_std, "precision": precision, "recall": recall,
              "density": density, "coverage": coverage}
    settings = {"feature_dim": dim, "kid_subset_size": subset_size, "kid_subsets": KID_SUBSETS,
                "kid_kernel": "(x.y/d + 1)^3", "pr_k": PR_K, "dc_k": DC_K}
    if data_too_small:
        settings["fid"] = f"left out: {len(real)} real examples, not more than the {dim} features FID needs"
    return Scores(values, Protocol(reference, len(real), len(fake), feature_network, feature_network_sha256,
                                   seed, settings))


# --- reconstruction ----------------------------------------------------------------------------------


def ssim_window(image_size: int) -> int:
    """The SSIM window for images whose smaller side is `image_size`: 11 (Wang et al.), or the largest odd
    size that fits."""
    return min(11, image_size if image_size % 2 else image_size - 1)


@torch.no_grad()
def reconstruction_scores(x: torch.Tensor, reconstruction: torch.Tensor, batch_size: int = 500) -> dict[str, float]:
    """MSE per element; for images in [0, 1] also PSNR (dB, from the MSE over the whole set) and SSIM
    (mean over images, Gaussian window of 11 pixels, or the largest odd size that fits smaller images).
    SSIM and PSNR run `batch_size` images at a time: torchmetrics' SSIM holds several float64 copies of
    its input, tens of GB for all of MNIST's test split at once."""
    if x.shape != reconstruction.shape:
        raise ValueError(f"originals {tuple(x.shape)} and reconstructions {tuple(reconstruction.shape)} differ")
    x, reconstruction = x.detach().cpu().double(), reconstruction.detach().cpu().double()
    scores = {"mse": torch.mean((x - reconstruction) ** 2).item()}
    if x.dim() == 4:
        psnr = PeakSignalNoiseRatio(data_range=1.0)
        window = ssim_window(min(x.shape[-2:]))
        # sigma 1.5 for the standard 11-pixel window (Wang et al. 2004), scaled down with smaller windows
        ssim = StructuralSimilarityIndexMeasure(data_range=1.0, kernel_size=window, sigma=1.5 * window / 11)
        for original, reconstructed in zip(x.split(batch_size), reconstruction.split(batch_size), strict=True):
            psnr.update(reconstructed, original)
            ssim.update(reconstructed, original)
        scores["psnr"] = float(psnr.compute())
        scores["ssim"] = float(ssim.compute())
    return scores


def nats_to_bits_per_dim(nll: float, dims: int) -> float:
    return nll / (dims * math.log(2))
