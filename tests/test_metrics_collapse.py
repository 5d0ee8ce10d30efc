"""Collapse checks fire on forced failures (2 of 8 ring modes, near-identical images, a discriminator at
(0.99, 0.01)) and stay quiet on real data; the detector needs consecutive checks, so one noisy check never
fires; sample_diversity agrees with the all-pairs distance it stands for."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data import load_dataset, toys
from genlab.metrics import (
    CollapseDetector,
    CollapseWarning,
    check_discriminator,
    check_diversity,
    check_modes,
    mixture_coverage,
    sample_diversity,
)


def collapsed_ring(seed: int):
    """2,500 samples from a generator that found only modes 2 and 5 of the ring."""
    generator = torch.Generator().manual_seed(seed)
    modes = torch.tensor([2, 5])[torch.randint(2, (2500,), generator=generator)]
    return toys.ring_centres()[modes] + toys.RING_STD * torch.randn(2500, 2, generator=generator)


def uneven_ring(weights: list[int]):
    """Samples exactly on the ring's centres, weights[i] of them on centre i."""
    return toys.ring_centres().repeat_interleave(torch.tensor(weights), dim=0)


# --- toys: modes ----------------------------------------------------------------------------------------


def test_check_modes_fires_on_two_of_eight_modes_and_names_the_fixes():
    coverage = mixture_coverage(collapsed_ring(seed=0), "ring")
    warning = check_modes(coverage)
    assert isinstance(warning, CollapseWarning) and warning.kind == "modes"
    assert warning.message.startswith("mode collapse: 2 of 8 modes covered (reverse KL 1.")  # ~log 4 = 1.39
    for fix in ("spectral_norm=d", "loss=wgan-gp", "pack=2"):
        assert fix in warning.fix
    assert str(warning) == f"{warning.message}; {warning.fix}"


def test_check_modes_fires_when_every_mode_is_hit_but_the_mass_sits_on_one():
    # p = (0.65, 0.05 x 7): reverse KL = 0.65 log 5.2 + 0.35 log 0.4 = 0.75 > log(4/3)
    coverage = mixture_coverage(uneven_ring([65, 5, 5, 5, 5, 5, 5, 5]), "ring")
    assert coverage.reverse_kl == pytest.approx(0.65 * math.log(5.2) + 0.35 * math.log(0.4))
    warning = check_modes(coverage)
    assert warning is not None
    assert warning.message == "mode collapse: 8 of 8 modes covered but unevenly (reverse KL 0.75, as if 3.8 modes)"
    # mildly uneven (p = 0.15, 0.10 alternating, reverse KL 0.02) is not collapse
    assert check_modes(mixture_coverage(uneven_ring([15, 10] * 4), "ring")) is None


def test_check_modes_thresholds_are_settings():
    seven = mixture_coverage(uneven_ring([10] * 7 + [0]), "ring")  # reverse KL log(8/7) = 0.13
    assert check_modes(seven) is not None
    assert check_modes(seven, min_covered_fraction=7 / 8) is None
    assert check_modes(seven, min_covered_fraction=7 / 8, max_reverse_kl=0.1) is not None


def test_check_modes_fires_when_every_sample_is_one_point_even_far_from_every_mode():
    warning = check_modes(mixture_coverage(torch.full((100, 2), 3.0), "ring"))
    assert warning is not None and warning.kind == "modes"
    assert warning.message == ("mode collapse: every sample is the same point (spread 0, a mode's std is 0.01); "
                               "0 of 8 modes covered, 0.0% of samples near a mode")


def early_ring(seed: int):
    """2,500 samples like a 300-step ring GAN's: a blob of spread ~0.2 between the origin and mode 7, nine or so of
    them by chance within 3 std of that mode (measured: 0.3% high quality, all on mode 7)."""
    generator = torch.Generator().manual_seed(seed)
    return 0.6 * toys.ring_centres()[7] + 0.16 * torch.randn(2500, 2, generator=generator)


def test_an_untrained_or_early_generator_is_still_learning_not_collapsed():
    from genlab.models.gan import GAN, GANConfig

    torch.manual_seed(0)
    untrained = GAN(GANConfig(data_shape=(2,))).sample(2500)
    for samples in (untrained, early_ring(seed=0)):
        coverage = mixture_coverage(samples, "ring")
        assert coverage.high_quality_fraction < 0.05 and coverage.modes_covered <= 1  # the old check said collapse
        warning = check_modes(coverage)
        assert warning.kind == "learning" and warning.fix == "give it more steps before judging collapse"
        assert warning.message.startswith(f"still learning, not collapse: only "
                                          f"{100 * coverage.high_quality_fraction:.1f}% of samples near a mode")
        assert f"{coverage.modes_covered} of 8 modes reached so far" in warning.message
    detector = CollapseDetector()
    reported = [detector.update(check_modes(mixture_coverage(early_ring(seed), "ring"))) for seed in range(3)]
    assert reported[0] is None and all(w.kind == "learning" and "mode collapse" not in str(w) for w in reported[1:])


def test_a_generator_on_one_or_two_modes_is_collapsed_and_one_still_learning_is_judged_once_most_samples_are_good():
    one_mode = toys.ring_centres()[3] + toys.RING_STD * torch.randn(2500, 2, generator=torch.Generator().manual_seed(0))
    for samples, covered in ((one_mode, 1), (collapsed_ring(seed=0), 2)):
        warning = check_modes(mixture_coverage(samples, "ring"))
        assert warning.kind == "modes" and warning.message.startswith(f"mode collapse: {covered} of 8 modes covered")
    # 40% of the samples on two modes, the rest in an early blob: not yet judged; the bar is a setting
    mixed = torch.cat([collapsed_ring(seed=0)[:1000], early_ring(seed=0)[:1500]])
    coverage = mixture_coverage(mixed, "ring")
    assert coverage.high_quality_fraction == pytest.approx(0.4, abs=0.01)
    assert check_modes(coverage).kind == "learning"
    assert check_modes(coverage, min_high_quality=0.3).kind == "modes"


@pytest.mark.parametrize("name,draw", [("ring", toys.ring), ("grid", toys.grid)])
def test_real_samples_never_warn(name, draw):
    detector = CollapseDetector()
    for seed in range(3):
        coverage = mixture_coverage(draw(seed=seed, n=2500)[0], name)
        assert check_modes(coverage) is None
        assert detector.update(check_modes(coverage)) is None


def test_detector_fires_on_a_forced_collapse_from_the_second_consecutive_check():
    detector = CollapseDetector()
    first = detector.update(check_modes(mixture_coverage(collapsed_ring(seed=0), "ring")))
    second = detector.update(check_modes(mixture_coverage(collapsed_ring(seed=1), "ring")))
    third = detector.update(check_modes(mixture_coverage(collapsed_ring(seed=2), "ring")))
    assert first is None
    assert second is not None and second.kind == "modes" and "pack=2" in second.fix
    assert third is not None and third.kind == "modes"  # still reported while it lasts
    healthy = detector.update(check_modes(mixture_coverage(toys.ring(seed=0, n=2500)[0], "ring")))
    assert healthy is None


# --- images: sample diversity ---------------------------------------------------------------------------


def test_sample_diversity_is_the_root_mean_square_distance_over_all_pairs():
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    all_pairs = torch.pdist(x.flatten(1).double()).pow(2).mean().sqrt().item()
    assert sample_diversity(x) == pytest.approx(all_pairs, rel=1e-10)
    assert sample_diversity(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    assert sample_diversity(x[:1].expand(10, 1, 8, 8)) == 0.0


def test_diversity_check_fires_on_near_identical_images_and_not_on_real_digits():
    train, test = load_dataset("digits", "train").x, load_dataset("digits", "test").x
    real = sample_diversity(train[:256])
    assert check_diversity(sample_diversity(test), real) is None  # two splits of the same data: ratio ~1
    noise = 0.02 * torch.randn(256, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    collapsed = train[:1].expand(256, 1, 8, 8) + noise  # one digit with pixel noise
    ratio = sample_diversity(collapsed) / real
    warning = check_diversity(sample_diversity(collapsed), real)
    assert ratio < 0.1
    assert warning is not None and warning.kind == "diversity"
    assert warning.message == f"mode collapse: samples are {ratio:.2f}x as varied as the data"
    assert "pack=2" in warning.fix


def test_diversity_check_threshold_is_the_ratio():
    assert check_diversity(0.49, 1.0) is not None
    assert check_diversity(0.51, 1.0) is None
    assert check_diversity(0.51, 1.0, ratio=0.6) is not None


def test_diversity_rejects_a_single_sample_and_zero_real_diversity():
    with pytest.raises(ValueError, match="N >= 2"):
        sample_diversity(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="real_diversity must be positive"):
        check_diversity(0.5, 0.0)


# --- the discriminator has won --------------------------------------------------------------------------


def test_discriminator_check_fires_on_a_confident_discriminator_and_not_on_a_balanced_one():
    warning = check_discriminator(0.99, 0.01)
    assert warning is not None and warning.kind == "discriminator"
    assert warning.message == "the discriminator has won (D(real) 0.99, D(fake) 0.01): G gets vanishing gradients"
    for fix in ("spectral_norm=d", "lr_d=", "loss=non-saturating"):
        assert fix in warning.fix
    assert check_discriminator(0.6, 0.4) is None
    assert check_discriminator(0.99, 0.2) is None  # D is sure about real data only: not yet won
    assert check_discriminator(0.9, 0.01) is None


def test_detector_reports_a_won_discriminator_only_on_consecutive_checks():
    detector = CollapseDetector()
    assert detector.update(check_discriminator(0.99, 0.01)) is None
    warning = detector.update(check_discriminator(0.99, 0.01))
    assert warning is not None and warning.kind == "discriminator"
    balanced = CollapseDetector()
    assert [balanced.update(check_discriminator(0.6, 0.4)) for _ in range(4)] == [None] * 4


def test_discriminator_check_rejects_logits():
    with pytest.raises(ValueError, match="not logits"):
        check_discriminator(3.2, -1.0)


# --- the detector's memory ------------------------------------------------------------------------------


def test_one_noisy_check_does_not_fire_when_two_consecutive_are_required():
    detector = CollapseDetector(patience=2)
    won = check_discriminator(0.99, 0.01)
    rounds = [won, None, won, None, won]  # noisy: never twice in a row
    assert [detector.update(check) for check in rounds] == [None] * 5
    assert CollapseDetector(patience=1).update(won) == won


def test_detector_counts_each_kind_separately():
    detector = CollapseDetector()
    modes = check_modes(mixture_coverage(collapsed_ring(seed=0), "ring"))
    won = check_discriminator(0.99, 0.01)
    assert detector.update(modes) is None
    assert detector.update(won) is None  # a different kind: neither has shown twice in a row
    assert detector.update(modes, won) == won  # won has now shown twice; modes restarted at one
    assert detector.update(modes, won) == modes  # both persist: the first passed is reported


def test_detector_patience_must_be_positive():
    with pytest.raises(ValueError, match="patience"):
        CollapseDetector(patience=0)


def test_posterior_collapse_fires_below_its_line_and_names_a_smaller_beta():
    from genlab.metrics import check_posterior

    warning = check_posterior(0.001, beta=4.0)
    assert warning.kind == "posterior" and "KL 0.001 nats" in str(warning)
    assert "smaller beta (now 4), e.g. --set beta=1" in str(warning)
    assert check_posterior(0.05, beta=4.0) is None  # a slow start (the ring's 2-D VAE passes 0.015-0.1 nats)
    assert check_posterior(3.7, beta=1.0) is None
