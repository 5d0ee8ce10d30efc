"""Stacked-MNIST (1000 modes): vanilla DCGAN and genlab's best GAN recipe under a CPU budget, beside VEEGAN's
and PacGAN's table 2.

    python benchmarks/stacked_mnist.py                          # 2 recipes x 3 seeds x 20 CPU-min, ~2 CPU-hours
    python benchmarks/stacked_mnist.py --budget 360 --seeds 1   # a quick look: 6 CPU-min a recipe
    python benchmarks/stacked_mnist.py --recipes genlab-best --out benchmarks/out/stacked_mnist
    python benchmarks/stacked_mnist.py --recipes genlab-best --methods direct,rejection,mh   # D-guided rows too

Each (recipe, seed) is a real genlab run on data "stacked-mnist" (60,000 triples of MNIST train digits as
R, G, B, drawn with the seed): create_run + train(cpu_budget=--budget) in a temporary folder, then
open_run and genlab.metrics.stacked.stacked_mnist_coverage on NUM_SAMPLES = 26,000 samples drawn with
torch.Generator().manual_seed(seed). "train CPU-s" is the process CPU time (time.process_time) of train() on
one thread, data loading, collapse checks, previews and the checkpoint included; "eval CPU-s" is sampling
and classifying the 78,000 channels. The KL is KL(p_gen || uniform over 1000), the direction of PacGAN's
code; even a perfect generator scores about 0.019 on 26,000 samples.

--methods samples each trained run again with the discriminator's help (genlab.guided.sample_run, default settings,
D calibrated on training triples): one row per recipe and method ("genlab-best + mh"), with its acceptance
rate and "sample CPU-s", the CPU time of drawing the 26,000 samples (the calibration, once a run, excluded).
Each row also prints its three channels' digit frequencies, and with D-guided methods the direct row prints D's
mean calibrated log ratio per (channel, digit) and its correlation with log(10% / frequency), what an exact D would
give for the frequencies alone: whether D can even the digits out at all.

Both recipes use genlab's DCGAN for 28x28 (D: conv 64 -> 128 stride 2 + BatchNorm + LeakyReLU(0.2);
G mirrors it; sigmoid output, i.e. DCGAN's tanh rescaled to [0, 1]), latent_dim 100, batch 64, Adam with
betas 0.5/0.999, the non-saturating loss (DCGAN's), z ~ N(0, I), and precision bf16-mixed (1.8x more
steps per CPU-second on this CPU; both recipes get it, so the comparison is of recipes, not arithmetic).
The papers' nets are larger (4 conv layers, 64x64 in VEEGAN's and PacGAN's code) and trained far longer.
  dcgan        lr 2e-4, as the papers' DCGAN baseline.
  genlab-best  an EMA generator (0.999, with its warm-up) and lr 2e-3, ten times DCGAN's. Found by a search at
               300 CPU-s a run (benchmarks/stacked_mnist_search.md): most of the KL above a finite sample's 0.019 is the
               three channels' digit frequencies being uneven (the sum of the per-channel KLs), which falls as
               the digits get sharper; at a fixed CPU budget that is bought by a faster learning rate (KL 0.36 at
               2e-4, 0.16 at 4e-4, 0.11 at 8e-4, 0.08 at 1.6e-3 and 3.2e-3; a cosine decay lost), while PacGAN's
               packing, minibatch stddev and larger batches cost steps and lost (KL 0.8 or worse).

  progan       progressive growing (models/progan.py: 7 -> 14 -> 28 px, WGAN-GP, EMA) with faces.py's schedule.

Anchors (table 2 of each paper; modes of 1000, KL): VEEGAN: DCGAN 99 / 3.4; VEEGAN 150 / 2.95.
PacGAN: DCGAN 99 / 3.4 (VEEGAN's figures); PacDCGAN2 1000 / 0.06. Target: 1000 modes, KL <= 0.05.
"""

from __future__ import annotations

import os

# One thread (the budget is one core's time); idle OpenMP threads must not spin. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from genlab.explore import save_image_grid  # noqa: E402
from genlab.guided import METHODS, run_calibration, sample_run, sampling_config  # noqa: E402
from genlab.metrics.stacked import NUM_SAMPLES, mode_histogram_coverage, stacked_modes  # noqa: E402
from genlab.run import create_run, open_run  # noqa: E402
from genlab.train import TrainConfig, train  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BUDGET_S = 1200.0  # 20 CPU-minutes a run: the 10-minute compare budget doubled for 1000 modes

BASE_MODEL = {"architecture": "conv", "conv_channels": (64, 128), "latent_dim": 100, "loss": "non-saturating",
              "betas": (0.5, 0.999)}
# steps is an upper bound: train(cpu_budget=...) ends each run where its budget runs out.
BASE_TRAIN = {"batch_size": 64, "lr": 2e-4, "precision": "bf16-mixed", "steps": 1_000_000}

RECIPES = {  # name -> (family, its config's settings, TrainConfig settings); see the docstring for why
    "dcgan": ("gan", BASE_MODEL, BASE_TRAIN),
    "genlab-best": ("gan", {**BASE_MODEL, "ema_decay": 0.999}, {**BASE_TRAIN, "lr": 2e-3}),
    # progressive growing (its own nets, WGAN-GP, EMA) as benchmarks/faces.py runs it: grown by step 900, lr 1e-3
    "progan": ("progan", {"fade_steps": 150, "stable_steps": 150}, {**BASE_TRAIN, "lr": 1e-3}),
}

# name -> (modes of 1000, KL), table 2 of each paper
PUBLISHED = {
    "VEEGAN table 2: DCGAN": (99, 3.4),
    "VEEGAN table 2: VEEGAN": (150, 2.95),
    "PacGAN table 2: PacDCGAN2": (1000, 0.06),
}
TARGET_MODES, TARGET_KL = 1000, 0.05


def run_seed(name: str, seed: int, budget: float, data_dir: Path, out: Path | None,
             methods: tuple[str, ...] = ("direct",)) -> list[dict]:
    """Train one recipe for `budget` CPU-s in a temporary run folder and measure its Stacked-MNIST coverage, sampled
    by each method; `out`: a folder for a 10x10 sample grid per method."""
    family, model_settings, train_settings = RECIPES[name]
    config = TrainConfig(data="stacked-mnist", seed=seed, log_every=200, sample_every=train_settings["steps"],
                         checkpoint_every=train_settings["steps"], keep_checkpoints=1, **train_settings)
    records = []
    with tempfile.TemporaryDirectory(prefix="stacked_mnist-") as folder:
        start = time.process_time()
        run = create_run(Path(folder) / "run", family, config, model_settings, data_dir=data_dir)
        train(run, device="cpu", data_dir=data_dir, cpu_budget=budget)
        train_cpu_s = time.process_time() - start
        # the D-guided methods read the training split (D's calibration, MH's chain starts)
        opened = open_run(run, splits=("train",) if methods != ("direct",) else (), data_dir=data_dir)
        for method in methods:
            start = time.process_time()
            if method == "direct":  # exactly the draw the table always measured
                samples = opened.model.sample(NUM_SAMPLES, generator=torch.Generator().manual_seed(seed)).float()
                acceptance = 1.0
            else:
                drawn = sample_run(opened, NUM_SAMPLES, sampling_config(method), seed=seed)
                samples, acceptance = drawn.samples.float(), drawn.acceptance_rate
            sample_cpu_s = time.process_time() - start
            modes = stacked_modes(samples)
            coverage = mode_histogram_coverage(modes)
            eval_cpu_s = time.process_time() - start
            label = row_name(name, method)
            if out is not None:
                save_image_grid(samples[:100], out / f"{label.replace(' + ', '-')}.png",
                                f"stacked MNIST, {label}, seed {seed}: 100 samples", nrow=10)
            records.append({"recipe": name, "method": method, "seed": seed, "modes": coverage.modes_covered,
                            "kl": coverage.reverse_kl, "steps": opened.meta["step"], "train_cpu_s": train_cpu_s,
                            "eval_cpu_s": eval_cpu_s, "sample_cpu_s": sample_cpu_s, "acceptance_rate": acceptance,
                            "budget_s": budget, "digit_percent": digit_percent(modes)})
            if method == "direct" and len(methods) > 1:  # what D says of each digit, for the D-guided rows
                records[-1]["d_by_digit"] = d_by_digit(opened, samples, modes, data_dir)
    return records


def digit_percent(modes: torch.Tensor) -> list[list[float]]:
    """Each channel's digit frequencies (red, green, blue rows; digits 0-9), in percent: the per-channel
    histograms whose unevenness is most of the KL above a finite sample's 0.019."""
    digits = torch.stack([modes // 100, modes // 10 % 10, modes % 10])
    return [[round(100 * (digits[c] == k).double().mean().item(), 2) for k in range(10)] for c in range(3)]


@torch.no_grad()
def d_by_digit(opened, samples: torch.Tensor, modes: torch.Tensor, data_dir: Path) -> dict:
    """D's mean calibrated log ratio d over G's samples whose channel shows each digit, and its correlation over
    the 30 (channel, digit) pairs with log(10% / the digit's frequency), the mean log ratio an exact D would give
    them for the frequencies alone: near 1 when D can even out the digits, near 0 when what it scores is not them."""
    calibration = run_calibration(opened, data_dir)
    d = calibration.log_ratio(torch.cat([opened.model.score_each(chunk) for chunk in samples.split(1000)]))
    digits = torch.stack([modes // 100, modes // 10 % 10, modes % 10])
    means = torch.tensor([[d[digits[c] == k].mean().item() for k in range(10)] for c in range(3)])
    wanted = torch.tensor(digit_percent(modes)).reciprocal().mul(10).log()
    correlation = torch.corrcoef(torch.stack([means.flatten(), wanted.flatten()]))[0, 1].item()
    return {"mean_d": [[round(value, 3) for value in row] for row in means.tolist()],
            "correlation_with_frequency_ratio": round(correlation, 3)}


def row_name(recipe: str, method: str) -> str:
    return recipe if method == "direct" else f"{recipe} + {method}"


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n)); the error is nan for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def table(rows: dict[str, list[dict]]) -> str:
    header = (f"{'recipe':<28} {'seeds':>5}  {'modes (of 1000)':>15}  {'KL':>15}  {'steps':>6}  "
              f"{'train CPU-s':>11}  {'eval CPU-s':>10}  {'sample CPU-s':>12}  {'accept':>6}")
    lines = [f"Stacked-MNIST ({NUM_SAMPLES} samples a seed; mean ± standard error over seeds)", header,
             "-" * len(header)]
    for name, (modes, kl) in PUBLISHED.items():
        lines.append(f"{name:<28} {'':>5}  {modes:>15}  {kl:>15.2f}")
    for name, results in rows.items():
        if not results:
            continue
        (m, m_se), (k, k_se) = (mean_se([r[key] for r in results]) for key in ("modes", "kl"))
        lines.append(f"{name:<28} {len(results):>5}  {m:>7.1f} ± {m_se:<5.1f}  {k:>6.3f} ± {k_se:<6.3f}  "
                     f"{min(r['steps'] for r in results):>6}  {max(r['train_cpu_s'] for r in results):>11.0f}  "
                     f"{max(r['eval_cpu_s'] for r in results):>10.0f}  "
                     # sampling's own cost; "-" for records measured before it was
                     + (f"{max(r['sample_cpu_s'] for r in results):>12.0f}  "
                        f"{mean_se([r['acceptance_rate'] for r in results])[0]:>6.3f}"
                        if all("sample_cpu_s" in r for r in results) else f"{'-':>12}  {'-':>6}"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="CPU seconds of train() per recipe and seed")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per recipe")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of {', '.join(RECIPES)}")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA, help="folder that holds mnist/")
    parser.add_argument("--out", type=Path, default=None, help="folder for a 10x10 sample grid per recipe (seed 0)")
    parser.add_argument("--results", type=Path, default=None,
                        help="JSON-lines file of per-seed figures: appended to, and seeds already there are skipped")
    parser.add_argument("--methods", default="direct",
                        help=f"comma list of sampling methods, each a row per recipe: {', '.join(METHODS)}")
    args = parser.parse_args()
    recipes, methods = args.recipes.split(","), tuple(args.methods.split(","))
    for method in methods:
        if method not in METHODS:
            parser.error(f"unknown sampling method {method!r}: choose from {', '.join(METHODS)}")
    for name in recipes:
        if name not in RECIPES:
            parser.error(f"unknown recipe {name!r}: choose from {', '.join(RECIPES)}")
        if RECIPES[name][0] != "gan" and methods != ("direct",):
            parser.error(f"--methods {args.methods} reads a gan's discriminator; recipe {name} is a "
                         f"{RECIPES[name][0]}: run it with --methods direct")
    if not args.budget > 0:
        parser.error("--budget must be positive (CPU seconds)")
    if not (args.data_dir / "mnist").is_dir():
        parser.error(f"no MNIST at {args.data_dir / 'mnist'}: pass --data-dir or run `genlab data download mnist`")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)

    done: dict[tuple[str, int], dict] = {}
    if args.results is not None and args.results.exists():
        for line in args.results.read_text().splitlines():
            record = json.loads(line)
            done[row_name(record["recipe"], record.get("method", "direct")), record["seed"]] = record
    logging.getLogger("genlab").setLevel(logging.ERROR)  # collapse warnings would interleave with the table
    # One-off imports that train() and its preview PNG would otherwise bill to the first run's CPU time.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    row_names = [row_name(name, method) for name in recipes for method in methods]
    for name in recipes:
        for seed in range(args.seeds):
            if all((row_name(name, method), seed) in done for method in methods):
                continue
            out = args.out if args.out is not None and seed == 0 else None
            for record in run_seed(name, seed, args.budget, args.data_dir, out, methods):
                label = row_name(name, record["method"])
                done[label, seed] = record
                print(f"{label:<24} seed {seed}: {record['modes']}/1000 modes, KL {record['kl']:.3f}, "
                      f"{record['steps']} steps in {record['train_cpu_s']:.0f} train CPU-s "
                      f"(+{record['eval_cpu_s']:.0f} eval, of which {record['sample_cpu_s']:.0f} sampling; "
                      f"acceptance {record['acceptance_rate']:.3f})", flush=True)
                for channel, percents in zip("RGB", record["digit_percent"], strict=True):
                    print(f"    {channel} digits 0-9 %: {' '.join(f'{p:4.1f}' for p in percents)}")
                if "d_by_digit" in record:
                    found = record["d_by_digit"]
                    print(f"    D's mean log ratio by digit (R, G, B): {found['mean_d']}; correlation with "
                          f"log(10% / frequency): {found['correlation_with_frequency_ratio']:.2f}")
                if args.results is not None:
                    with args.results.open("a") as f:
                        f.write(json.dumps(record) + "\n")

    rows = {label: [done[label, s] for s in range(args.seeds) if (label, s) in done] for label in row_names}
    print()
    print(table(rows))
    figures = {}
    for name in [*RECIPES, *(label for label in row_names if label not in RECIPES)]:
        results = rows.get(name, [])
        key = name.replace(" + ", "_").replace("-", "_")
        figures[f"{key}_modes"] = mean_se([r["modes"] for r in results])[0] if results else math.nan
        figures[f"{key}_kl"] = mean_se([r["kl"] for r in results])[0] if results else math.nan
        figures[f"{key}_train_cpu_s"] = max((r["train_cpu_s"] for r in results), default=math.nan)
    for label in [label for label in row_names if label.startswith("genlab-best")]:
        if best := rows.get(label, []):
            met = all(r["modes"] >= TARGET_MODES and r["kl"] <= TARGET_KL for r in best)
            print(f"\n{label} vs target ({TARGET_MODES} modes, KL <= {TARGET_KL}) in every seed: "
                  f"{'met' if met else 'MISSED'}; budget {args.budget:.0f} CPU-s a run")
    print("RESULT " + " ".join(f"{key}={value:.4g}" for key, value in figures.items())
          + f" budget_s={args.budget:.0f} seeds={args.seeds}")


if __name__ == "__main__":
    main()
