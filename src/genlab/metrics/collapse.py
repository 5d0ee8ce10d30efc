"""Signs that training has collapsed, checked every few hundred steps, each with the fix to try: a GAN's
(below) and a VAE's posterior collapse (`check_posterior`, a KL that fell to nothing).

Three checks, one per signal the training loop can measure:
  toys    `check_modes`: few mixture modes covered, or the mass piled on some of them (see `modes.py`), told apart
          from a generator still learning (most samples not yet near any mode), which it reports as such;
  images  `check_diversity`: generated images much less varied than real ones (`sample_diversity`);
  any GAN `check_discriminator`: D tells real from fake almost perfectly, so G learns little.
And beside them, for small image sets, `check_memorization`: samples that copy training images.
Each returns a `CollapseWarning` or None; `CollapseDetector` reports a warning only once it shows on several
consecutive checks, so a single noisy measurement does not raise an alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from genlab.metrics.memorization import Memorization
from genlab.metrics.modes import ModeCoverage

# The remedies named in the GAN literature for each failure, as `genlab train --set` overrides of GANConfig.
# Minibatch stddev: Karras et al. 2018 (it fixed grid-25 coverage in benchmarks/mode_coverage.py); packing m samples
# into D: PacGAN; spectral norm on D: Miyato et al. 2018; WGAN-GP: Gulrajani et al. 2017.
FIX_COLLAPSE = "try --set minibatch_stddev=true, --set pack=2, --set spectral_norm=d or --set loss=wgan-gp"
# A won discriminator: spectral norm and a slower D keep D from winning outright; the non-saturating loss
# (Goodfellow et al. 2014, section 3) keeps G's gradient alive when D(G(z)) ~ 0, if the run uses minimax.
FIX_DISCRIMINATOR = "try --set spectral_norm=d, a lower --set lr_d=..., or --set loss=non-saturating if on minimax"


@dataclass(frozen=True)
class CollapseWarning:
    kind: Literal["modes", "learning", "diversity", "discriminator", "posterior", "memorization"]
    message: str  # one line a person understands, with the numbers behind it
    fix: str  # what to try

    def __str__(self) -> str:
        return f"{self.message}; {self.fix}"


# Collapse is a claim about where the *good* samples sit, so it is judged only once most samples are good (near a
# mode). Before that the generator is still learning: a 300-step ring run had 0.3% of its samples within 3 std of
# a mode, all nine of them on one mode, and was told "mode collapse"; the converged recipes of
# benchmarks/mode_coverage.py reach 88-96%.
MIN_HIGH_QUALITY = 0.5
# Samples closer together than a tenth of one mode's std: G maps every z to one point, collapse at any quality.
# An untrained ring G spreads 2-4 stds (0.023-0.044 for std 0.01, five seeds, latent_dim 2 and 64).
POINT_SPREAD_STDS = 0.1
FIX_LEARNING = "give it more steps before judging collapse"  # the words fit the CLI and the lab alike


def check_modes(
    coverage: ModeCoverage, *, min_covered_fraction: float = 1.0, max_reverse_kl: float = math.log(4 / 3),
    min_high_quality: float = MIN_HIGH_QUALITY, fix: str = FIX_COLLAPSE, learning_fix: str = FIX_LEARNING,
) -> CollapseWarning | None:
    """Mode collapse on a toy mixture, told apart from a generator that is still learning.

    Collapse: the high-quality samples (most of all samples, min_high_quality) cover too few modes or are weighted
    very unevenly over them, or every sample is the same point (spread below POINT_SPREAD_STDS of a mode's std).
    Still learning (kind "learning", `learning_fix`): fewer than min_high_quality of the samples are near any
    mode, so the few that are say nothing yet about which modes G will find.

    min_covered_fraction = 1: every mode must be hit. With NUM_SAMPLES = 2,500 a generator that matched a
    25-mode grid would miss a given mode with probability (24/25)^2500 ~ 5e-45, so a missing mode is the
    generator, not chance. (With only a few samples per mode, lower it.)
    max_reverse_kl = log(4/3) ~ 0.29: the reverse KL is log M - H(p) = log(M / e^H), and e^H is the effective
    number of modes, so this fires when the mass is spread as if over fewer than 3/4 of the modes (e.g. evenly
    over 6 of the ring's 8). Sampling noise alone gives about (M - 1) / (2n) ~ 0.005 for 25 modes, n = 2,500.
    """
    covered, num_modes = coverage.modes_covered, coverage.num_modes
    quality = f"{100 * coverage.high_quality_fraction:.1f}% of samples near a mode"
    if coverage.spread < POINT_SPREAD_STDS * coverage.mode_std:
        message = (f"mode collapse: every sample is the same point (spread {coverage.spread:.2g}, a mode's std is "
                   f"{coverage.mode_std:g}); {covered} of {num_modes} modes covered, {quality}")
    elif coverage.high_quality_fraction < min_high_quality:
        return CollapseWarning("learning", f"still learning, not collapse: only {quality} (collapse is judged from "
                                           f"{100 * min_high_quality:.0f}%), {covered} of {num_modes} modes reached "
                                           "so far", learning_fix)
    elif covered < min_covered_fraction * num_modes:
        message = f"mode collapse: {covered} of {num_modes} modes covered (reverse KL {coverage.reverse_kl:.2f})"
    elif coverage.reverse_kl > max_reverse_kl:
        effective_modes = num_modes * math.exp(-coverage.reverse_kl)
        message = (f"mode collapse: {covered} of {num_modes} modes covered but unevenly "
                   f"(reverse KL {coverage.reverse_kl:.2f}, as if {effective_modes:.1f} modes)")
    else:
        return None
    return CollapseWarning("modes", message, fix)


def sample_diversity(samples: torch.Tensor) -> float:
    """Root-mean-square L2 distance between two different samples of a batch (N, ...), N >= 2.

    Over all pairs i != j, mean ||x_i - x_j||^2 = 2 * sum_d var_d, with the unbiased (N - 1) variance of each
    coordinate d, so the all-pairs figure costs one pass over the batch instead of N^2 distances.
    A batch of copies scores 0; it is in the units of the data, so compare it only with the same data.
    """
    if samples.dim() < 2 or len(samples) < 2:
        raise ValueError(f"sample_diversity needs a batch (N, ...) with N >= 2, got shape {tuple(samples.shape)}")
    flat = samples.detach().flatten(1).double()  # (N, D)
    return math.sqrt(2 * flat.var(dim=0).sum().item())


def check_diversity(fake_diversity: float, real_diversity: float, *, ratio: float = 0.5,
                    fix: str = FIX_COLLAPSE) -> CollapseWarning | None:
    """Collapse on images: generated samples much less varied than the data (`sample_diversity` of each).

    ratio = 0.5: a mean squared distance a quarter of the data's. Two splits of the same data score ~1, and
    a collapsed generator, whose samples differ only by small noise, scores near 0. A partial collapse onto a
    few distinct images can keep the ratio above 0.5; on toys, `check_modes` sees that.
    """
    if not real_diversity > 0:
        raise ValueError(f"real_diversity must be positive, got {real_diversity}: measure it on a batch of real data")
    if fake_diversity >= ratio * real_diversity:
        return None
    return CollapseWarning(
        "diversity",
        f"mode collapse: samples are {fake_diversity / real_diversity:.2f}x as varied as the data",
        fix,
    )


# D memorises a small training set and G follows it to copies: augmentation (DiffAugment, Zhao et al. 2020; ADA,
# Karras et al. 2020) takes away D's certainty about the exact images; stopping earlier keeps the last good state.
FIX_MEMORIZATION = "try --set augment=diffaugment (or augment=ada), or stop earlier (an earlier checkpoint)"


def check_memorization(found: Memorization, *, fix: str = FIX_MEMORIZATION) -> CollapseWarning | None:
    """Samples that copy training images (`metrics.memorization`): clearly more often than real images never
    trained on do (Memorization.copying)."""
    if not found.copying:
        return None
    return CollapseWarning(
        "memorization",
        f"memorization: {100 * found.copy_rate:.1f}% of samples copy a training image (real images not trained on: "
        f"{100 * found.real_copy_rate:.1f}%)",
        fix,
    )


def check_discriminator(
    d_real: float, d_fake: float, *, real_above: float = 0.95, fake_below: float = 0.05,
    fix: str = FIX_DISCRIMINATOR,
) -> CollapseWarning | None:
    """A discriminator that has won: mean D(x) on real data near 1 and mean D(G(z)) near 0.

    Only for losses where D outputs a probability (minimax, non-saturating), not a critic's score (wgan, hinge).
    The minimax G loss log(1 - D(G(z))) has gradient -D(G(z)) with respect to D's logit: below 0.05, a tenth
    of its value at D = 1/2, so G barely learns (Goodfellow et al. 2014, section 3; Arjovsky & Bottou 2017).
    Pass means over the steps since the last check, not one batch.
    """
    for name, value in (("d_real", d_real), ("d_fake", d_fake)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be a mean probability in [0, 1], got {value}: pass sigmoid(D), not logits")
    if d_real > real_above and d_fake < fake_below:
        return CollapseWarning(
            "discriminator",
            f"the discriminator has won (D(real) {d_real:.2f}, D(fake) {d_fake:.2f}): G gets vanishing gradients",
            fix,
        )
    return None


class CollapseDetector:
    """Remembers the last checks and reports a warning once its kind has shown on `patience` in a row.

    Each call takes the results of one round of checks, e.g.
        detector.update(check_modes(coverage), check_discriminator(d_real, d_fake))
    A kind absent from a round (its check returned None) starts counting again from zero. While a kind keeps
    showing, every later round reports it again, so a progress bar can keep it on screen.
    """

    def __init__(self, *, patience: int = 2):
        if patience < 1:
            raise ValueError(f"patience must be at least 1 check, got {patience}")
        self.patience = patience  # 2: one noisy check (a bad batch, a D spike) never fires alone
        self.streaks: dict[str, int] = {}  # kind -> consecutive rounds it has shown

    def update(self, *checks: CollapseWarning | None) -> CollapseWarning | None:
        """The first of this round's warnings that has now shown on `patience` consecutive rounds, else None."""
        warnings = [check for check in checks if check is not None]
        self.streaks = {warning.kind: self.streaks.get(warning.kind, 0) + 1 for warning in warnings}
        for warning in warnings:
            if self.streaks[warning.kind] >= self.patience:
                return warning
        return None


# Posterior collapse (Bowman et al. 2016): the decoder learns to do without z, and the KL term, the information
# the code carries about x (in nats), falls to ~0. Measured: digits at beta=1 ends near 3.7 nats, at beta=4 (the
# README's example, 64 identical blobs) at 0.001; the ring's 2-D VAE starts below 0.1 and climbs to 1 nat as it
# learns (0.015-0.1 between steps 400 and 1100 of 2000), so the line sits below that slow start.
POSTERIOR_COLLAPSE_NATS = 0.01


def check_posterior(kl: float, beta: float, kl_warmup: int = 0) -> CollapseWarning | None:
    """A VAE whose mean KL (nats per example, over the logging window) is below POSTERIOR_COLLAPSE_NATS; the fixes
    named are a smaller beta and a KL warm-up (a longer one when the run has one, `kl_warmup` steps)."""
    if not kl < POSTERIOR_COLLAPSE_NATS:
        return None
    # beta weighs the KL against reconstruction: lowering it is the direct remedy (beta-VAE's trade-off, reversed).
    # A KL warm-up lets the decoder learn to use z before the KL term weighs in (Bowman et al. 2016).
    warmup = (f"a longer KL warm-up (now {kl_warmup} steps), e.g. --set kl_warmup={2 * kl_warmup}" if kl_warmup
              else "a KL warm-up, e.g. --set kl_warmup=1000 (steps over which the KL weight ramps up to beta)")
    return CollapseWarning("posterior", f"posterior collapse: KL {kl:.3g} nats, so the code says almost nothing "
                                        "about its input and samples all look alike",
                           f"try a new run with a smaller beta (now {beta:g}), e.g. --set beta={beta / 4:.3g}, "
                           f"or {warmup}")
