"""Stacked-MNIST mode coverage: closed-form KL on synthetic mode sets, the channel-to-mode arithmetic, and real
Stacked-MNIST test images (about 1000 modes, KL near 0)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from genlab.data import load_dataset
from genlab.metrics.stacked import NUM_MODES, mode_histogram_coverage, stacked_mnist_coverage, stacked_modes

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"


def test_uniform_over_all_modes_has_zero_kl():
    result = mode_histogram_coverage(torch.arange(NUM_MODES).repeat(26))
    assert result.modes_covered == 1000 and result.num_samples == 26_000
    assert result.reverse_kl == pytest.approx(0, abs=1e-12) and set(result.histogram) == {26}


@pytest.mark.parametrize("k", [1, 10, 99, 500])
def test_even_over_k_modes_has_kl_log_1000_over_k(k):
    modes = (torch.arange(k) * 7 % NUM_MODES).repeat(13)  # k distinct modes (7 is prime to 1000), 13 each
    result = mode_histogram_coverage(modes)
    assert result.modes_covered == k and result.reverse_kl == pytest.approx(math.log(NUM_MODES / k), rel=1e-12)


def test_uneven_histogram_against_the_sum():
    # Three quarters on mode 5, one quarter on mode 999: p log(1000 p) summed over the two.
    modes = torch.tensor([5, 5, 5, 999])
    expected = 0.75 * math.log(750) + 0.25 * math.log(250)
    result = mode_histogram_coverage(modes)
    assert result.modes_covered == 2 and result.reverse_kl == pytest.approx(expected, rel=1e-12)
    assert result.histogram[5] == 3 and result.histogram[999] == 1 and sum(result.histogram) == 4


@pytest.mark.parametrize("bad", [torch.tensor([1000]), torch.tensor([-1]), torch.tensor([0.5]),
                                 torch.zeros(0, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long)])
def test_bad_modes_are_refused(bad):
    with pytest.raises(ValueError, match="modes must"):
        mode_histogram_coverage(bad)


def test_images_must_be_stacked_mnist():
    with pytest.raises(ValueError, match=r"\(N, 3, 28, 28\)"):
        stacked_modes(torch.zeros(2, 1, 28, 28))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"reason: ../shared/data/mnist not found (looked in {SHARED_DATA / 'mnist'})")
    return SHARED_DATA


def test_channels_map_to_r_g_b_digits(shared_data):
    # Stack real digits in a known order: the mode must read 100 * r + 10 * g + b, not some other order.
    digits = load_dataset("mnist", "test", data_dir=shared_data)
    first = {d: int((digits.labels == d).nonzero()[0]) for d in range(10)}  # a test image of each digit
    images = torch.stack([torch.cat([digits.x[first[r]], digits.x[first[g]], digits.x[first[b]]])
                          for r, g, b in [(1, 2, 3), (9, 0, 7), (4, 4, 4)]])
    assert stacked_modes(images).tolist() == [123, 907, 444]


@pytest.mark.slow
def test_real_stacked_mnist_covers_about_every_mode(shared_data):
    # 10,000 real test triples: the classifier (99.4% a digit, ~98.3% a triple) should find the modes
    # the data holds and a KL close to that of the true labels (both ~0.05: 10 samples a mode is noisy).
    data = load_dataset("stacked-mnist", "test", data_dir=shared_data)
    truth = mode_histogram_coverage(data.labels)
    measured = stacked_mnist_coverage(data.x)
    assert measured.modes_covered >= truth.modes_covered - 5 and truth.modes_covered >= 995
    assert abs(measured.reverse_kl - truth.reverse_kl) < 0.01 and measured.reverse_kl < 0.07
    print(f"true labels: {truth}; classified: {measured}")
