"""Mode coverage against answers known by hand: points exactly on centres, all on one mode, spread over k
of M modes, either side of the 3-std threshold, and real draws of the ring and grid, whose high-quality
fraction is the 2-D Gaussian's mass within radius 3 std."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data import toys
from genlab.metrics import MIXTURES, NUM_SAMPLES, mixture_coverage, mode_coverage

RING = (toys.ring_centres(), toys.RING_STD)
GRID = (toys.grid_centres(), toys.GRID_STD)


def test_the_named_mixtures_are_the_toy_data_and_the_papers_sample_count():
    assert NUM_SAMPLES == 2500
    assert set(MIXTURES) == {"ring", "grid"}
    assert torch.equal(MIXTURES["ring"][0](), toys.ring_centres()) and MIXTURES["ring"][1] == 0.01
    assert torch.equal(MIXTURES["grid"][0](), toys.grid_centres()) and MIXTURES["grid"][1] == 0.05


@pytest.mark.parametrize("centres,std", [RING, GRID], ids=["ring", "grid"])
def test_samples_exactly_on_every_centre_cover_all_modes_with_zero_reverse_kl(centres, std):
    samples = centres.repeat(10, 1)  # each centre 10 times
    coverage = mode_coverage(samples, centres, std)
    assert coverage.modes_covered == coverage.num_modes == len(centres)
    assert coverage.high_quality_fraction == 1.0
    assert coverage.histogram == [10] * len(centres)
    assert coverage.num_samples == 10 * len(centres)
    assert coverage.reverse_kl == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("centres,std", [RING, GRID], ids=["ring", "grid"])
def test_all_samples_on_one_mode_give_reverse_kl_log_m(centres, std):
    samples = centres[3].expand(100, 2) + std * torch.randn(100, 2, generator=torch.Generator().manual_seed(0)) / 10
    coverage = mode_coverage(samples, centres, std)
    assert coverage.modes_covered == 1
    assert coverage.histogram[3] == 100 and sum(coverage.histogram) == 100
    assert coverage.reverse_kl == pytest.approx(math.log(len(centres)), rel=1e-12)


@pytest.mark.parametrize("centres,std,k", [(*RING, 2), (*RING, 5), (*GRID, 1), (*GRID, 10), (*GRID, 24)])
def test_samples_split_equally_over_k_modes_give_reverse_kl_log_m_over_k(centres, std, k):
    chosen = torch.randperm(len(centres), generator=torch.Generator().manual_seed(k))[:k]
    samples = centres[chosen].repeat(7, 1)
    coverage = mode_coverage(samples, centres, std)
    assert coverage.modes_covered == k
    assert [i for i, count in enumerate(coverage.histogram) if count] == sorted(chosen.tolist())
    assert coverage.reverse_kl == pytest.approx(math.log(len(centres) / k), rel=1e-12)


def test_reverse_kl_of_an_uneven_histogram_matches_the_hand_computation():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.tensor([[0.0, 0.0]] * 3 + [[10.0, 0.0]])  # p = (3/4, 1/4, 0) against uniform 1/3
    coverage = mode_coverage(samples, centres, 1.0)
    want = 0.75 * math.log(0.75 * 3) + 0.25 * math.log(0.25 * 3)
    assert coverage.histogram == [3, 1, 0]
    assert coverage.modes_covered == 2
    assert coverage.reverse_kl == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("centres,std", [RING, GRID], ids=["ring", "grid"])
def test_the_threshold_is_3_std_from_the_nearest_centre_in_any_direction(centres, std):
    angles = torch.linspace(0, 2 * math.pi, 9)[:-1]
    directions = torch.stack([angles.cos(), angles.sin()], dim=1)  # (8, 2) unit vectors
    inside = mode_coverage(centres[0] + 2.99 * std * directions, centres, std)
    outside = mode_coverage(centres[0] + 3.01 * std * directions, centres, std)
    assert inside.high_quality_fraction == 1.0 and inside.histogram[0] == 8 and inside.modes_covered == 1
    assert outside.high_quality_fraction == 0.0 and outside.modes_covered == 0
    wider = mode_coverage(centres[0] + 3.01 * std * directions, centres, std, threshold_stds=3.02)
    assert wider.high_quality_fraction == 1.0


def test_each_sample_counts_for_its_nearest_centre():
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    samples = torch.tensor([[0.4, 0.0], [0.6, 0.0], [0.7, 0.0]])
    coverage = mode_coverage(samples, centres, std=0.2)  # threshold 0.6: all three are high quality
    assert coverage.histogram == [1, 2]


def test_far_away_and_nan_samples_are_not_high_quality_and_give_infinite_reverse_kl():
    centres, std = RING
    samples = torch.tensor([[5.0, 5.0], [0.0, 0.0], [float("nan"), 0.0], [1.0, float("nan")]])
    coverage = mode_coverage(samples, centres, std)
    assert coverage.high_quality_fraction == 0.0
    assert coverage.modes_covered == 0
    assert coverage.histogram == [0] * 8
    assert coverage.reverse_kl == math.inf
    half = mode_coverage(torch.cat([samples, centres[:4]]), centres, std)
    assert half.high_quality_fraction == 0.5 and half.modes_covered == 4


@pytest.mark.parametrize("name,draw,num_modes", [("ring", toys.ring, 8), ("grid", toys.grid, 25)])
@pytest.mark.parametrize("seed", [0, 1])
def test_real_draws_cover_every_mode_with_the_2d_gaussian_mass_within_3_std(name, draw, num_modes, seed):
    samples, labels = draw(seed=seed, n=NUM_SAMPLES)
    coverage = mixture_coverage(samples, name)
    assert coverage.modes_covered == coverage.num_modes == num_modes
    # The squared radius of a 2-D standard normal is chi-square(2), P(r <= 3) = 1 - exp(-9/2) ~ 0.9889, not the
    # 1-D 99.7%. The binomial std at n = 2500 is ~0.0021; allow 3.
    expected = 1 - math.exp(-9 / 2)
    assert coverage.high_quality_fraction == pytest.approx(expected, abs=0.0063)
    # The modes are far apart, so each high-quality sample is counted at the centre it was drawn from.
    centres, std = MIXTURES[name]
    own = (samples - centres()[labels]).norm(dim=1) <= 3 * std
    assert coverage.histogram == torch.bincount(labels[own], minlength=num_modes).tolist()
    # Multinomial noise alone: E[KL] ~ (M - 1) / (2n) = 0.0014 (ring), 0.0049 (grid).
    assert coverage.reverse_kl < 4 * (num_modes - 1) / (2 * NUM_SAMPLES)


def test_str_reads_as_one_line_summary():
    coverage = mode_coverage(toys.ring_centres().repeat(2, 1), *RING)
    assert str(coverage) == "8/8 modes, 100.0% high quality, reverse KL 0.000 (16 samples)"


@pytest.mark.parametrize("shape", [(10,), (10, 3), (10, 2, 1), (0, 2)])
def test_samples_that_are_not_n_by_2_points_are_rejected(shape):
    with pytest.raises(ValueError, match=r"samples must be \(N, 2\)"):
        mode_coverage(torch.zeros(shape), *RING)


def test_bad_centres_std_and_mixture_names_are_rejected():
    with pytest.raises(ValueError, match="centres must be"):
        mode_coverage(torch.zeros(4, 2), torch.zeros(8, 3), 0.01)
    with pytest.raises(ValueError, match="must be positive"):
        mode_coverage(torch.zeros(4, 2), toys.ring_centres(), 0.0)
    with pytest.raises(ValueError, match="choose one of ring, grid"):
        mixture_coverage(torch.zeros(4, 2), "moons")
