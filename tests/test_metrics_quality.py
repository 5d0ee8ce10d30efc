"""FID, KID, precision/recall, density/coverage and reconstruction scores against references and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from genlab.metrics.quality import (
    density_coverage,
    frechet_distance,
    kernel_distance,
    precision_recall,
    reconstruction_scores,
    sample_quality,
    ssim_window,
)


def gaussian_features(n: int, dim: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """Correlated Gaussian features: a fixed random mixing matrix, so the covariance is not diagonal."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=torch.Generator().manual_seed(1234), dtype=torch.float64)
    return torch.randn(n, dim, generator=generator, dtype=torch.float64) @ mixing + shift


def scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """The textbook FID (pytorch-fid's formula) with scipy's matrix square root."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    sigma1, sigma2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean))


# ----------------------------------------------------------------------------- FID


def test_fid_matches_scipy():
    real, fake = gaussian_features(600, 16, seed=0), gaussian_features(500, 16, seed=1, shift=0.3) * 1.2
    expected = scipy_fid(real.numpy(), fake.numpy())
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-5)


def test_fid_of_a_set_with_itself_is_zero():
    real = gaussian_features(300, 16, seed=0)
    scale = real.var(0).sum().item()  # the size of a typical FID between different sets
    assert abs(frechet_distance(real, real)) < 1e-9 * scale


def test_fid_of_a_shifted_copy_is_the_squared_shift():
    # Same covariance, means apart by c: FID = |c|^2 exactly.
    real = gaussian_features(300, 8, seed=0)
    shift = torch.arange(8, dtype=torch.float64) / 4
    assert frechet_distance(real, real + shift) == pytest.approx(shift.pow(2).sum().item(), rel=1e-7)


def test_fid_needs_more_samples_than_features():
    with pytest.raises(ValueError, match="FID with 16 features needs more than 16 samples in each set"):
        frechet_distance(gaussian_features(100, 16, 0), gaussian_features(16, 16, 1))


def test_features_must_match_and_be_finite():
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(torch.zeros(10, 3), torch.zeros(10, 4))
    bad = gaussian_features(50, 4, 0)
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(gaussian_features(50, 4, 1), bad)


# ----------------------------------------------------------------------------- KID


def unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al.'s unbiased MMD^2 with the kernel (x.y/d + 1)^3, by hand."""
    d, m = x.shape[1], len(x)

    def k(a, b):
        return (a @ b.T / d + 1) ** 3

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def test_kid_with_whole_sets_is_the_unbiased_mmd():
    # A subset as large as the set is the whole set (in some order), so every subset gives the same MMD^2.
    real, fake = gaussian_features(120, 6, seed=0), gaussian_features(120, 6, seed=1, shift=0.5)
    kid, std = kernel_distance(real, fake, subset_size=120, subsets=3)
    assert kid == pytest.approx(unbiased_mmd2(real.numpy(), fake.numpy()), rel=1e-9)
    assert std == pytest.approx(0, abs=1e-9)


def test_kid_is_about_zero_for_one_distribution_and_positive_for_two():
    def normal(seed: int, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(1000, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift

    same, same_std = kernel_distance(normal(0), normal(1), subset_size=500, subsets=20)
    apart, _ = kernel_distance(normal(0), normal(2, shift=0.5), subset_size=500, subsets=20)
    assert abs(same) < 2 * same_std  # unbiased: the estimate straddles 0
    assert abs(same) < 0.01 * apart


def test_kid_is_seeded():
    a, b = gaussian_features(300, 4, seed=0), gaussian_features(300, 4, seed=1, shift=0.2)
    assert kernel_distance(a, b, subset_size=100, seed=5) == kernel_distance(a, b, subset_size=100, seed=5)
    assert kernel_distance(a, b, subset_size=100, seed=5) != kernel_distance(a, b, subset_size=100, seed=6)


def test_kid_subset_size_must_fit():
    with pytest.raises(ValueError, match=r"KID subset size must be between 2 and the smaller set's size \(50\)"):
        kernel_distance(gaussian_features(100, 4, 0), gaussian_features(50, 4, 1), subset_size=60)


# ----------------------------------------------------------------------------- precision/recall, density/coverage


def brute_force_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> tuple[float, ...]:
    """Both papers' definitions with explicit loops over points."""

    def radius(points, i, k):
        distances = sorted(np.linalg.norm(points - points[i], axis=1))
        return distances[k]  # distances[0] is the point itself

    def dist(a, b):
        return float(np.linalg.norm(a - b))

    real_r = [radius(real, i, k_pr) for i in range(len(real))]
    fake_r = [radius(fake, j, k_pr) for j in range(len(fake))]
    precision = np.mean([any(dist(f, r) <= real_r[i] for i, r in enumerate(real)) for f in fake])
    recall = np.mean([any(dist(r, f) <= fake_r[j] for j, f in enumerate(fake)) for r in real])
    real_r5 = [radius(real, i, k_dc) for i in range(len(real))]
    density = sum(dist(f, r) <= real_r5[i] for f in fake for i, r in enumerate(real)) / (k_dc * len(fake))
    coverage = np.mean([any(dist(r, f) <= real_r5[i] for f in fake) for i, r in enumerate(real)])
    return float(precision), float(recall), float(density), float(coverage)


def test_prdc_match_a_brute_force_computation():
    real, fake = gaussian_features(40, 3, seed=0), gaussian_features(35, 3, seed=1, shift=0.7)
    got = (*precision_recall(real, fake, k=3), *density_coverage(real, fake, k=5))
    assert got == pytest.approx(brute_force_prdc(real.numpy(), fake.numpy(), 3, 5), abs=1e-12)


def test_identical_sets_have_full_precision_recall_and_coverage():
    real = gaussian_features(200, 5, seed=0)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    density, coverage = density_coverage(real, real.clone())
    assert coverage == 1.0
    assert density >= 1.0  # every fake sits in its twin's ball, whose radius reaches k more real points


def test_far_apart_sets_score_zero():
    real = gaussian_features(100, 5, seed=0)
    fake = gaussian_features(100, 5, seed=1, shift=1e3)
    assert precision_recall(real, fake) == (0.0, 0.0)
    assert density_coverage(real, fake) == (0.0, 0.0)


def test_half_the_fakes_off_the_manifold_halve_precision():
    real = gaussian_features(100, 5, seed=0)
    fake = torch.cat([real[:50], gaussian_features(50, 5, seed=1, shift=1e3)])
    precision, _ = precision_recall(real, fake)
    assert precision == 0.5


def test_prdc_need_more_than_k_samples():
    with pytest.raises(ValueError, match="precision/recall with k=3 needs more than 3 samples in each set"):
        precision_recall(gaussian_features(50, 2, 0), gaussian_features(3, 2, 1))
    with pytest.raises(ValueError, match="density/coverage with k=5 needs more than 5 samples"):
        density_coverage(gaussian_features(5, 2, 0), gaussian_features(50, 2, 1))


def test_sample_quality_returns_every_score_with_its_protocol():
    real, fake = gaussian_features(300, 8, seed=0), gaussian_features(200, 8, seed=1)
    result = sample_quality(real, fake, reference="toy/test", feature_network="identity",
                            feature_network_sha256=None, seed=3).to_dict()
    assert set(result["scores"]) == {"fid", "kid", "kid_std", "precision", "recall", "density", "coverage"}
    protocol = result["protocol"]
    assert (protocol["reference"], protocol["num_real"], protocol["num_fake"], protocol["seed"]) == \
        ("toy/test", 300, 200, 3)
    assert protocol["settings"]["kid_subset_size"] == 200  # the smaller set, below the default 1000
    assert (protocol["settings"]["pr_k"], protocol["settings"]["dc_k"]) == (3, 5)


# ----------------------------------------------------------------------------- reconstruction


def test_reconstruction_scores_against_hand_values():
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.8
    scores = reconstruction_scores(x, x + 0.1)
    assert scores["mse"] == pytest.approx(0.01)
    assert scores["psnr"] == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    perfect = reconstruction_scores(x, x.clone())
    assert perfect["mse"] == 0 and perfect["ssim"] == pytest.approx(1.0)
    assert reconstruction_scores(x, 1 - x)["ssim"] < 0.1


def test_reconstruction_scores_do_not_depend_on_the_batch_size():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(10, 1, 12, 12, generator=generator)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    whole, batched = reconstruction_scores(x, noisy, batch_size=10), reconstruction_scores(x, noisy, batch_size=3)
    assert batched == pytest.approx(whole, rel=1e-12)


def test_reconstruction_of_points_is_mse_only():
    x = torch.zeros(10, 2)
    assert reconstruction_scores(x, x + 2) == {"mse": 4.0}


def test_ssim_window_fits_small_images():
    assert [ssim_window(size) for size in (28, 11, 8, 3)] == [11, 11, 7, 3]
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert reconstruction_scores(x, x.clone())["ssim"] == pytest.approx(1.0)


def test_fid_is_left_out_with_its_reason_when_the_real_data_is_smaller_than_the_features():
    generator = torch.Generator().manual_seed(0)
    real, fake = torch.randn(20, 32, generator=generator), torch.randn(200, 32, generator=generator)
    scores = sample_quality(real, fake, reference="faces/test", feature_network="x", feature_network_sha256=None,
                            all_real_data=True)
    assert "fid" not in scores.values and scores.values["kid"] == pytest.approx(0, abs=0.05)
    assert scores.protocol.settings["fid"] == "left out: 20 real examples, not more than the 32 features FID needs"
    with pytest.raises(ValueError, match="FID with 32 features needs more than 32 samples"):  # more can be drawn
        sample_quality(real, fake, reference="x", feature_network="x", feature_network_sha256=None)
