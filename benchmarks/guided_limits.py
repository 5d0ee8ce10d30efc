"""What D-guided sampling can and cannot correct on grid-25: one genlab-best run, per-mode histograms before and
after each method, and D's calibrated log ratio by distance from the nearest mode centre beside the log ratio an
exact D would have there.

    python benchmarks/guided_limits.py --seed 0                     # train one seed (58 CPU-s) in a temporary folder
    python benchmarks/guided_limits.py --run runs/gan-grid           # an existing run on grid-25

Per method (direct, rejection, mh; default settings, D calibrated on the run's training split): the high-quality
samples per mode (within 3 std of its centre; 100 is a fair share of 2,500) and the others by distance to the
nearest centre. Then, over 20,000 of G's samples and 20,000 training points, each distance band's share of G's
samples and of the data, D's mean calibrated log ratio d in the band, and log(data share / G share), what an exact
d would average there. A sampler reading d can only move mass between bands where d differs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the budget is one core's time, as in mode_coverage.py
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
from itertools import pairwise  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from genlab.guided import real_samples, run_calibration, sample_run, sampling_config  # noqa: E402
from genlab.metrics import NUM_SAMPLES, mixture_coverage  # noqa: E402
from genlab.metrics.modes import MIXTURES  # noqa: E402
from genlab.run import create_run, open_run  # noqa: E402
from genlab.train import TrainConfig, train  # noqa: E402
from mode_coverage import BUDGET_S, RECIPES  # noqa: E402

torch.set_num_threads(1)
BANDS = (0, 1, 2, 3, 4, 6, 10, 20, math.inf)  # distance to the nearest centre, in the mixture's std
PROFILE_SAMPLES = 20_000


def train_seed(folder: Path, seed: int) -> Path:
    model_settings, train_settings = RECIPES["genlab-best"]
    steps = train_settings["steps"]
    config = TrainConfig(data="grid", seed=seed, log_every=steps // 10, sample_every=steps, checkpoint_every=steps,
                         keep_checkpoints=1, **train_settings)
    run = create_run(folder / "run", "gan", config, model_settings)
    train(run, device="cpu", cpu_budget=BUDGET_S["genlab-best"])
    return run


def distances(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's distance to the nearest grid centre, in the mixture's std, and that centre's index."""
    centres, std = MIXTURES["grid"]
    nearest, which = torch.cdist(x.double(), centres().double()).min(1)
    return nearest / std, which


def report(run: Path, seed: int) -> None:
    opened = open_run(run, splits=("train",))
    if opened.record.train.data != "grid":
        raise SystemExit(f"{run} was trained on {opened.record.train.data}: this measures grid-25 runs")
    model = opened.model
    calibration = run_calibration(opened)
    print(f"{run}: step {opened.step}, D's calibrated log loss {calibration.log_loss:.4f} (chance 0.6931)")
    figures = {}
    for method in ("direct", "rejection", "mh"):
        drawn = sample_run(opened, NUM_SAMPLES, sampling_config(method), seed=seed)
        coverage = mixture_coverage(drawn.samples, "grid")
        figures[f"{method}_hq"] = 100 * coverage.high_quality_fraction
        r, which = distances(drawn.samples)
        per_mode = torch.bincount(which[r < 3], minlength=25).tolist()
        others = [int(((r >= lo) & (r < hi)).sum()) for lo, hi in pairwise(BANDS[3:])]
        print(f"{method:<9} {coverage.modes_covered}/25 modes, {100 * coverage.high_quality_fraction:.1f}% high "
              f"quality, reverse KL {coverage.reverse_kl:.3f}; high-quality samples per mode: {per_mode}")
        print(f"{'':<9} the others at 3-4, 4-6, 6-10, 10-20, >20 std: {others}")
    with torch.no_grad():
        fake = model.sample(PROFILE_SAMPLES, generator=torch.Generator().manual_seed(seed + 1))
        d = calibration.log_ratio(model.score_each(fake)).double()
    r_fake, _ = distances(fake)
    r_real, _ = distances(real_samples(opened)[:PROFILE_SAMPLES])
    print(f"\n{'std from a centre':<18} {'data share':>10} {'G share':>8} {'mean d':>7} {'exact':>7}")
    inside = {"d": [], "exact": []}  # the bands within 4 std, where most of the data is
    for lo, hi in pairwise(BANDS):
        in_fake, in_real = (r_fake >= lo) & (r_fake < hi), (r_real >= lo) & (r_real < hi)
        g_share, data_share = in_fake.double().mean().item(), in_real.double().mean().item()
        mean_d = d[in_fake].mean().item() if in_fake.any() else math.nan
        exact = math.log(data_share / g_share) if data_share > 0 and g_share > 0 else -math.inf
        print(f"{f'{lo:g}-{hi:g}':<18} {100 * data_share:>9.1f}% {100 * g_share:>7.1f}% {mean_d:>7.2f} {exact:>7.2f}")
        if hi <= 4:
            inside["d"].append(mean_d)
            inside["exact"].append(exact)
    figures.update(d_range_inside_4std=max(inside["d"]) - min(inside["d"]),
                   exact_range_inside_4std=max(inside["exact"]) - min(inside["exact"]))
    print("RESULT " + " ".join(f"{key}={value:.4g}" for key, value in figures.items()) + f" steps={opened.step}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="the seed trained, and the draws' seed")
    parser.add_argument("--run", type=Path, default=None, help="an existing grid-25 GAN run instead of training one")
    args = parser.parse_args()
    logging.getLogger("genlab").setLevel(logging.ERROR)
    if args.run is not None:
        report(args.run, args.seed)
        return
    with tempfile.TemporaryDirectory(prefix="guided_limits-") as folder:
        report(train_seed(Path(folder), args.seed), args.seed)


if __name__ == "__main__":
    main()
