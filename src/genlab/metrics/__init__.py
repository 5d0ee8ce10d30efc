"""Measures of generative models: mode coverage of the 2-D toy mixtures and GAN collapse checks.

Sample quality (FID, KID, precision/recall, density/coverage) and reconstruction scores are in
genlab.metrics.quality, the shipped MNIST feature network and digit classifier in genlab.metrics.features;
import them from there (they load torchmetrics, which training does not need). Stacked-MNIST's 1000-mode
coverage, which labels each channel with that classifier, is in genlab.metrics.stacked.
"""

from __future__ import annotations

from genlab.metrics.collapse import (
    CollapseDetector,
    CollapseWarning,
    check_discriminator,
    check_diversity,
    check_memorization,
    check_modes,
    check_posterior,
    sample_diversity,
)
from genlab.metrics.modes import MIXTURES, NUM_SAMPLES, ModeCoverage, mixture_coverage, mode_coverage

__all__ = [
    "MIXTURES",
    "NUM_SAMPLES",
    "ModeCoverage",
    "mode_coverage",
    "mixture_coverage",
    "CollapseWarning",
    "CollapseDetector",
    "check_modes",
    "check_posterior",
    "check_diversity",
    "check_discriminator",
    "check_memorization",
    "sample_diversity",
]
