"""Toy data against its definitions (PacGAN's ring and grid, the lesson's patterns and 1-D Gaussian),
load_dataset's splits and errors, and Batches: deterministic, disjoint within an epoch, resumable."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data import NAMES, TOYS, Batches, load_dataset, toys

# --- the 2-D mixtures -----------------------------------------------------------------------------------


def test_ring_centres_are_eight_equally_spaced_points_on_the_unit_circle():
    centres = toys.ring_centres().double()
    assert centres.shape == (8, 2)
    assert torch.allclose(centres.norm(dim=1), torch.ones(8, dtype=torch.float64), atol=1e-6)
    angles = torch.atan2(centres[:, 1], centres[:, 0]) % (2 * math.pi)
    assert torch.allclose(angles, torch.arange(8, dtype=torch.float64) * math.pi / 4, atol=1e-6)


def test_grid_centres_are_exactly_the_25_points_of_minus4_to_4_in_steps_of_2():
    centres = toys.grid_centres()
    want = {(float(a), float(b)) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    assert centres.shape == (25, 2)
    assert {tuple(row) for row in centres.tolist()} == want


@pytest.mark.parametrize("name,centres,std", [("ring", toys.ring_centres(), toys.RING_STD),
                                              ("grid", toys.grid_centres(), toys.GRID_STD)])
def test_mixture_samples_sit_at_their_centres_with_the_stated_std(name, centres, std):
    assert std == {"ring": 0.01, "grid": 0.05}[name]  # the PacGAN values
    x, labels = TOYS[name](seed=0)
    assert x.shape == (50_000, 2) and labels.shape == (50_000,) and labels.dtype == torch.int64
    offsets = x - centres[labels]
    # a 2-D standard normal passes 6 std with probability exp(-18) ~ 1.5e-8 per sample
    assert offsets.norm(dim=1).max() < 6 * std
    k = len(centres)
    counts = torch.bincount(labels, minlength=k).double()
    expected = 50_000 / k
    assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all()  # uniform within 5 binomial std
    for mode in range(k):
        per_mode = offsets[labels == mode]
        assert per_mode.mean(0).abs().max() < 5 * std / math.sqrt(len(per_mode))
        # std estimates from >= 2000 samples: relative error ~1/sqrt(2n) <= 1.6%
        assert torch.allclose(per_mode.std(0), torch.full((2,), std), rtol=0.08)


@pytest.mark.parametrize("name", list(TOYS))
def test_toys_are_pure_functions_of_the_seed(name):
    size = {} if name == "patterns" else {"n": 2000}
    a, labels_a = TOYS[name](seed=3, **size)
    b, labels_b = TOYS[name](seed=3, **size)
    assert torch.equal(a, b)
    assert (labels_a is None and labels_b is None) or torch.equal(labels_a, labels_b)
    c, _ = TOYS[name](seed=4, **size)
    if name == "patterns":
        assert torch.equal(a, c)  # a fixed set: the seed is ignored by design
    else:
        assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ["gaussian1d", "ring", "grid", "moons", "swissroll"])
def test_load_dataset_train_and_test_splits_differ(name):
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert train.kind == test.kind == "points"
    assert train.shape == test.shape
    assert not torch.equal(train.x, test.x)
    assert torch.equal(load_dataset(name, "train").x, train.x)
    assert not torch.equal(load_dataset(name, "train", seed=1).x, train.x)


def test_patterns_are_15_distinct_binary_3x3_images():
    data = load_dataset("patterns")
    assert data.kind == "image" and data.shape == (1, 3, 3) and len(data) == 15
    assert ((data.x == 0) | (data.x == 1)).all()
    assert len({tuple(p.flatten().tolist()) for p in data.x}) == 15
    assert torch.equal(data.labels, torch.arange(15))
    # spot checks against the written-out definitions, row by row
    names = list(toys.PATTERNS)
    assert data.x[names.index("plus"), 0].tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert data.x[names.index("diagonal"), 0].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert torch.equal(data.x[names.index("inverse checker")], 1 - data.x[names.index("x-cross (checker)")])
    assert torch.equal(load_dataset("patterns", "test").x, data.x)  # the same fixed set in both splits


def test_gaussian1d_mean_and_std():
    x, labels = toys.gaussian1d(seed=0)
    assert x.shape == (10_000, 1) and labels is None
    # standard errors: mean 1.25/100 = 0.0125, std 1.25/sqrt(20000) ~ 0.009
    assert x.mean().item() == pytest.approx(4.0, abs=0.05)
    assert x.std().item() == pytest.approx(1.25, abs=0.04)


def test_moons_shapes_and_geometry():
    x, labels = toys.moons(seed=0, n=4000)
    assert x.shape == (4000, 2) and labels.shape == (4000,)
    assert set(labels.tolist()) == {0, 1}
    # upper moon on the unit circle round (0, 0), lower moon on the unit circle round (1, 0.5); noise 0.05
    upper = x[labels == 0].norm(dim=1)
    lower = (x[labels == 1] - torch.tensor([1.0, 0.5])).norm(dim=1)
    assert upper.mean().item() == pytest.approx(1.0, abs=0.01)
    assert lower.mean().item() == pytest.approx(1.0, abs=0.01)
    assert (x[labels == 0, 1] > -0.3).all() and (x[labels == 1, 1] < 0.8).all()


def test_swissroll_shape_and_radius_range():
    x, labels = toys.swiss_roll(seed=0, n=4000)
    assert x.shape == (4000, 2) and labels is None
    radius = x.norm(dim=1)  # t / 10 with t in [1.5 pi, 4.5 pi], plus noise 0.05 per coordinate
    assert radius.min() > 1.5 * math.pi / 10 - 0.3 and radius.max() < 4.5 * math.pi / 10 + 0.3


@pytest.mark.parametrize("name", ["rings", "MNIST", "mnist ", "", "folder", "cifar10", "../ring"])
def test_load_dataset_errors_name_the_valid_choices(name):
    with pytest.raises(ValueError, match=f"unknown data set {name!r}: choose one of") as info:
        load_dataset(name)
    for valid in NAMES:
        assert valid in str(info.value)


def test_load_dataset_refuses_an_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_dataset("ring", "valid")


# --- hostile sizes, seeds and scales --------------------------------------------------------------------

SAMPLED = ["gaussian1d", "ring", "grid", "moons", "swissroll"]


@pytest.mark.parametrize("name", SAMPLED)
@pytest.mark.parametrize("n", [0, -5, toys.MAX_SAMPLES + 1, 10**12, 2.5])
def test_toys_refuse_sample_counts_that_cannot_work(name, n):
    with pytest.raises(ValueError, match=f"n must be a whole number of samples from 1 to {toys.MAX_SAMPLES}"):
        TOYS[name](seed=0, n=n)


@pytest.mark.parametrize("name", SAMPLED)
@pytest.mark.parametrize("seed", [-1, 2**64, 1.5])
def test_toys_refuse_seeds_torch_cannot_take(name, seed):
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to 2\\*\\*64 - 1"):
        TOYS[name](seed=seed, n=10)


@pytest.mark.parametrize("call", [
    lambda: toys.gaussian1d(std=float("nan")), lambda: toys.gaussian1d(std=-1.0),
    lambda: toys.gaussian1d(mean=float("inf")), lambda: toys.moons(noise=float("nan")),
    lambda: toys.moons(noise=-0.1), lambda: toys.swiss_roll(noise=float("inf")),
], ids=["std nan", "std negative", "mean inf", "moons noise nan", "moons noise negative", "swissroll noise inf"])
def test_toys_refuse_scales_that_would_make_every_sample_wrong(call):
    with pytest.raises(ValueError, match="must be a finite number"):
        call()


@pytest.mark.parametrize("seed", [-1, 2**63, 0.5])
def test_load_dataset_refuses_seeds_out_of_range(seed):
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to 9223372036854775807"):
        load_dataset("ring", seed=seed)


def test_the_largest_seed_works_for_both_splits_and_for_batches():
    seed = 2**63 - 1
    train, test = load_dataset("moons", "train", seed=seed), load_dataset("moons", "test", seed=seed)
    assert not torch.equal(train.x, test.x)
    batches = Batches(train.x, 100, seed=seed)
    assert batches.batch(0).shape == (100, 2) and batches.batch(10**6).shape == (100, 2)


# --- Batches --------------------------------------------------------------------------------------------


def row_ids(batch: torch.Tensor) -> list[int]:
    return [int(v) for v in batch[:, 0].tolist()]


def test_batches_are_deterministic_given_the_seed():
    x = torch.arange(103, dtype=torch.float32)[:, None].repeat(1, 2)  # every row carries its own index
    a, b, c = Batches(x, 10, seed=7), Batches(x, 10, seed=7), Batches(x, 10, seed=8)
    for step in (0, 3, 11, 25):
        assert torch.equal(a.batch(step), b.batch(step))
    assert not torch.equal(a.batch(0), c.batch(0))


def test_batches_within_an_epoch_are_disjoint_and_epochs_reshuffle():
    x = torch.arange(103, dtype=torch.float32)[:, None]
    batches = Batches(x, 10, seed=0)
    assert batches.batches_per_epoch == 10  # the last partial batch (3 rows) is dropped
    for epoch in range(3):
        seen = [row_ids(batches.batch(epoch * 10 + i)) for i in range(10)]
        assert all(len(ids) == 10 for ids in seen)
        flat = [i for ids in seen for i in ids]
        assert len(set(flat)) == 100 and set(flat) <= set(range(103))
        if epoch == 0:
            first_epoch = seen
    assert seen != first_epoch
    assert batches.position(23) == (2, 3)


def test_batches_resume_at_any_step_without_replaying():
    x = torch.randn(57, 3)
    walked = Batches(x, 8, seed=1)
    history = [walked.batch(step) for step in range(30)]
    for step in (0, 6, 7, 13, 29):
        fresh = Batches(x, 8, seed=1)
        assert torch.equal(fresh.batch(step), history[step])
    # going back to an earlier epoch after walking on gives the same batch again
    assert torch.equal(walked.batch(2), history[2])


def test_batches_reject_bad_sizes():
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="larger than the data set"):
        Batches(x, 6, seed=0)
    with pytest.raises(ValueError, match="at least 1"):
        Batches(x, 0, seed=0)
    assert Batches(x, 5, seed=0).batches_per_epoch == 1
