"""Mode coverage of genlab GANs on ring-8 and grid-25, beside VEEGAN's and PacGAN's table 1.

    python benchmarks/mode_coverage.py                   # everything: 2 data x 6 recipes x 10 seeds, ~65 CPU-min
    python benchmarks/mode_coverage.py --recipes genlab-best --out benchmarks/out/mode_coverage
    python benchmarks/mode_coverage.py --recipes minimax,pack2 --seeds 3 --data ring   # a quick look
    python benchmarks/mode_coverage.py --results runs.jsonl ...      # keep each seed's figures; reruns skip them
    python benchmarks/mode_coverage.py --results runs.jsonl --table-only   # print the table of what is there
    python benchmarks/mode_coverage.py --recipes genlab-best --data grid --seeds 3 \
        --methods direct,rejection,mh,latent-mcmc      # each trained seed also sampled with D's help (genlab.guided)

Each (data, recipe, seed) is a real genlab run: create_run + train in a temporary run folder, then
open_run and mixture_coverage on NUM_SAMPLES = 2,500 samples drawn with torch.Generator().manual_seed(seed).
"CPU-s" is the process CPU time (time.process_time) of train() on one thread, logging, collapse checks, the
last preview PNG and the checkpoint included. Every recipe's step count keeps a seed within 60 CPU-s here.

--methods samples each trained seed again with the discriminator's help (genlab.guided.sample_run, default
settings; D calibrated on the run's training split): the same NUM_SAMPLES, the same seed, one row per recipe
and method ("genlab-best + rejection"). Beside the quality, each row has what it cost: the acceptance rate, the G
and D passes per returned sample ("passes"), and the CPU milliseconds per sample (the calibration, fitted once per
run, excluded). "direct" is plain model.sample, as without --methods.

The baselines follow PacGAN's synthetic experiments (fjxmlzn/PacGAN, synthetic_data_experiments/*/config.py)
as closely as genlab's MLP and one CPU-minute allow: latent_dim 2 (z ~ N(0, I)), batch 100, Adam with
beta1 0.8, non-saturating loss. PacGAN's G is 4 x 400 ReLU with BatchNorm and its D 3 x 200 maxout-5;
genlab's G and D share hidden_dims and have no BatchNorm or maxout, so both are 3 x 256 (ReLU in G,
LeakyReLU(0.2) in D). PacGAN trains 400 epochs of 100,000 points (400,000 steps) at lr 1e-4; here 5,000
steps (24-34 CPU-s) at lr 1e-3 (at 1e-4 and 4,000 steps a 3 x 400 GAN had not reached one
mode: 0% high quality on ring and grid, seed 0). The baselines are far less trained than the papers':
the comparison is "what one CPU-minute buys". The five differ only in their named ingredient (wgan-gp
keeps n_critic = 1 and the same Adam); pack2 feeds D 100 groups of 2 (batch 200), as PacGAN does.
genlab-best is the combination found by search (see benchmarks/mode_coverage_results.md).

Anchors (table 1 of each paper; modes, % high quality, reverse KL):
VEEGAN: GAN ring 1 / 99.3%, grid 3.3 / 0.5%; VEEGAN ring 8 / 52.9%, grid 24.6 / 40%.
PacGAN: GAN ring 6.3 / 98.2% / 0.45, grid 17.3 / 94.8% / 0.70;
        PacGAN4 ring 7.8 / 95.9% / 0.07, grid 24.8 / 93.6% / 0.04.
Target for genlab-best: 8/8 and 25/25 in every seed, >= 95% high quality, reverse KL <= 0.02, <= 60 CPU-s a seed.
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

from genlab.explore import save_points  # noqa: E402
from genlab.guided import METHODS, sample_run, sampling_config  # noqa: E402
from genlab.metrics import NUM_SAMPLES, mixture_coverage  # noqa: E402
from genlab.run import create_run, open_run  # noqa: E402
from genlab.train import TrainConfig, train  # noqa: E402

torch.set_num_threads(1)

CPU_LIMIT_S = 60.0
DATA = {"ring": "ring-8", "grid": "grid-25"}

# PacGAN's synthetic setup in genlab's terms (see the docstring); every baseline starts from these.
BASE_MODEL = {"latent_dim": 2, "hidden_dims": (256, 256, 256), "betas": (0.8, 0.999)}
BASE_TRAIN = {"batch_size": 100, "lr": 1e-3, "steps": 5000}

RECIPES = {  # name -> (GANConfig settings, TrainConfig settings)
    "minimax": ({**BASE_MODEL, "loss": "minimax"}, BASE_TRAIN),
    "non-saturating": ({**BASE_MODEL, "loss": "non-saturating"}, BASE_TRAIN),
    "wgan-gp": ({**BASE_MODEL, "loss": "wgan-gp"}, BASE_TRAIN),
    "spectral-norm": ({**BASE_MODEL, "loss": "non-saturating", "spectral_norm": "d"}, BASE_TRAIN),
    "pack2": ({**BASE_MODEL, "loss": "non-saturating", "pack": 2}, {**BASE_TRAIN, "batch_size": 200}),
    # Found by search (benchmarks/mode_coverage_results.md): minibatch stddev lets D see a missing mode
    # (25/25 where the plain recipe lost a row or a column of the grid), the EMA generator and the cosine
    # decay sharpen the modes, D at twice G's rate keeps up, and a 3 x 128 net buys ~16,000 steps (grid-25's
    # "bridges" between modes thin out with steps: 12,000 gave 89% high quality, 16,000 about 94%).
    # It trains up to 16,000 steps within BUDGET_S: train(cpu_budget=...) plans the step count from the
    # measured cost, so a seed never passes 60 CPU-s and a busy machine buys fewer steps.
    "genlab-best": ({"latent_dim": 2, "hidden_dims": (128, 128, 128), "loss": "non-saturating", "betas": (0.5, 0.999),
                     "minibatch_stddev": True, "ema_decay": 0.999, "lr_d": 2e-3},
                    {"batch_size": 256, "lr": 1e-3, "lr_schedule": "cosine", "steps": 16000}),
}
BUDGET_S = {"genlab-best": 58.0}  # recipe -> CPU seconds for train(); 2 s under the limit for the last checkpoint

# name -> {data: (modes, high quality %, reverse KL or None)}, table 1 of each paper
PUBLISHED = {
    "VEEGAN table 1: GAN": {"ring": (1.0, 99.3, None), "grid": (3.3, 0.5, None)},
    "VEEGAN table 1: VEEGAN": {"ring": (8.0, 52.9, None), "grid": (24.6, 40.0, None)},
    "PacGAN table 1: GAN": {"ring": (6.3, 98.2, 0.45), "grid": (17.3, 94.8, 0.70)},
    "PacGAN table 1: PacGAN4": {"ring": (7.8, 95.9, 0.07), "grid": (24.8, 93.6, 0.04)},
}


def run_seed(data: str, model_settings: dict, train_settings: dict, seed: int, out: Path | None = None,
             label: str = "", cpu_budget: float | None = None, methods: tuple[str, ...] = ("direct",)) -> dict:
    """Train one genlab GAN in a temporary run folder and measure its mode coverage, sampled by each method:
    {method: figures}; `out`: a folder for one scatter plot per method."""
    steps = train_settings["steps"]
    config = TrainConfig(data=data, seed=seed, log_every=max(1, steps // 10), sample_every=steps,
                         checkpoint_every=steps, keep_checkpoints=1, **train_settings)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mode_coverage-") as folder:
        run = create_run(Path(folder) / "run", "gan", config, model_settings)
        start = time.process_time()
        train(run, device="cpu", cpu_budget=cpu_budget)
        cpu_s = time.process_time() - start
        opened = open_run(run, splits=("test",))
        steps = opened.meta["step"]
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for method in methods:
            start = time.process_time()
            if method == "direct":  # exactly the draw the table always measured
                samples = opened.model.sample(NUM_SAMPLES, generator=torch.Generator().manual_seed(seed))
                cost = {"acceptance_rate": 1.0, "passes_per_sample": 1.0,
                        "cpu_ms_per_sample": 1000 * (time.process_time() - start) / NUM_SAMPLES}
            else:
                drawn = sample_run(opened, NUM_SAMPLES, sampling_config(method), seed=seed)
                samples, cost = drawn.samples, drawn.cost()
            coverage = mixture_coverage(samples, data)
            if out is not None:
                name = label if method == "direct" else f"{label} + {method}"
                save_points(samples, out / f"{data}-{name.replace(' + ', '-')}.png", opened.data["test"].x,
                            f"{DATA[data]}, {name}, seed {seed}: {coverage.modes_covered}/{coverage.num_modes}, "
                            f"{100 * coverage.high_quality_fraction:.1f}%")
            results[method] = {"modes": coverage.modes_covered, "num_modes": coverage.num_modes,
                               "high_quality": 100 * coverage.high_quality_fraction,
                               "reverse_kl": coverage.reverse_kl, "cpu_s": cpu_s, "steps": steps,
                               "warned": "warning" in records[-1], **cost}  # the detector's verdict at the end
    return results


def row_name(recipe: str, method: str) -> str:
    return recipe if method == "direct" else f"{recipe} + {method}"


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n)); the error is nan for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2 or not math.isfinite(mean):
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def table(data: str, rows: dict[str, list[dict]]) -> str:
    """Our recipes (mean ± s.e. over seeds) under the published rows, as monospaced text."""
    header = (f"{'recipe':<26} {'seeds':>5}  {'modes':>12}  {'high quality %':>14}  {'reverse KL':>15}  "
              f"{'worst':>5}  {'CPU-s mean':>10}  {'max':>5}  {'steps':>5}  {'warned':>6}  {'accept':>6}  "
              f"{'passes':>6}  {'ms/sample':>9}")
    lines = [f"{DATA[data]} ({NUM_SAMPLES} samples a seed; mean ± standard error over seeds)", header,
             "-" * len(header)]
    for name, published in PUBLISHED.items():
        modes, hq, rkl = published[data]
        lines.append(f"{name:<26} {'':>5}  {modes:>12.1f}  {hq:>14.1f}  {'-' if rkl is None else f'{rkl:.2f}':>15}")
    for name, results in rows.items():
        if not results:
            continue
        (m, m_se), (h, h_se), (k, k_se) = (mean_se([r[key] for r in results])
                                           for key in ("modes", "high_quality", "reverse_kl"))
        cpu = [r["cpu_s"] for r in results]
        # sampling cost, mean over seeds; "-" for records measured before the cost was
        accept, passes, ms = (f"{mean_se([r[key] for r in results])[0]:>{width}.{digits}f}"
                              if all(key in r for r in results) else f"{'-':>{width}}"
                              for key, width, digits in (("acceptance_rate", 6, 3), ("passes_per_sample", 6, 1),
                                                         ("cpu_ms_per_sample", 9, 3)))
        lines.append(f"{name:<26} {len(results):>5}  {m:>5.1f} ± {m_se:<4.1f}  {h:>6.1f} ± {h_se:<5.1f}  "
                     f"{k:>6.3f} ± {k_se:<6.3f}  {min(r['modes'] for r in results):>5}  {sum(cpu) / len(cpu):>10.1f}  "
                     f"{max(cpu):>5.1f}  {min(r['steps'] for r in results):>5}  {sum(r['warned'] for r in results):>6}"
                     f"  {accept}  {passes}  {ms}")
    return "\n".join(lines)


def target_check(data: str, results: list[dict], name: str = "genlab-best") -> str:
    """genlab-best against the target: every mode in every seed, >= 95% high quality, reverse KL <= 0.02, <= 60 s
    of training; high quality and reverse KL judged on the mean and in every seed (issue 17's target for the
    D-guided rows)."""
    full = sum(r["modes"] == r["num_modes"] for r in results)
    hq, rkl, cpu = ([r[key] for r in results] for key in ("high_quality", "reverse_kl", "cpu_s"))
    hq_mean, rkl_mean = sum(hq) / len(hq), sum(rkl) / len(rkl)
    hq_seeds, rkl_seeds = sum(h >= 95 for h in hq), sum(k <= 0.02 for k in rkl)
    verdict = {True: "met", False: "MISSED"}
    return (f"{name} on {DATA[data]} vs target: all modes in {full}/{len(results)} seeds "
            f"({verdict[full == len(results)]}); high quality {hq_mean:.1f}% (worst seed {min(hq):.1f}%) >= 95 "
            f"on the mean ({verdict[hq_mean >= 95]}), in {hq_seeds}/{len(hq)} seeds "
            f"({verdict[hq_seeds == len(hq)]}); reverse KL {rkl_mean:.3f} (worst {max(rkl):.3f}) <= 0.02 on the "
            f"mean ({verdict[rkl_mean <= 0.02]}), in {rkl_seeds}/{len(rkl)} seeds ({verdict[rkl_seeds == len(rkl)]}); "
            f"CPU-s max {max(cpu):.1f} <= {CPU_LIMIT_S:.0f} ({verdict[max(cpu) <= CPU_LIMIT_S]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 per data set and recipe")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of {', '.join(RECIPES)}")
    parser.add_argument("--data", default="ring,grid", help="comma list of ring, grid")
    parser.add_argument("--out", type=Path, default=None, help="folder for one sample scatter PNG per data and recipe")
    parser.add_argument("--results", type=Path, default=None,
                        help="JSON-lines file of per-seed figures: appended to, and seeds already there are skipped")
    parser.add_argument("--table-only", action="store_true", help="print the table from --results, train nothing")
    parser.add_argument("--methods", default="direct",
                        help=f"comma list of sampling methods, each a row per recipe: {', '.join(METHODS)}")
    args = parser.parse_args()
    recipes, datas, methods = args.recipes.split(","), args.data.split(","), tuple(args.methods.split(","))
    for method in methods:
        if method not in METHODS:
            parser.error(f"unknown sampling method {method!r}: choose from {', '.join(METHODS)}")
    for name in recipes:
        if name not in RECIPES:
            parser.error(f"unknown recipe {name!r}: choose from {', '.join(RECIPES)}")
    for data in datas:
        if data not in DATA:
            parser.error(f"unknown data {data!r}: choose ring or grid")
    if args.table_only and args.results is None:
        parser.error("--table-only needs --results")

    done: dict[tuple[str, str, int], dict] = {}  # (data, row name, seed) -> figures
    if args.results is not None and args.results.exists():
        for line in args.results.read_text().splitlines():
            record = json.loads(line)
            done[record["data"], row_name(record["recipe"], record.get("method", "direct")), record["seed"]] = record
    # genlab.train logs each collapse warning; the table's "warned" column counts the seeds whose last
    # log step (the trained model) still had one.
    logging.getLogger("genlab").setLevel(logging.ERROR)
    if not args.table_only:
        # One-off imports that train() and the preview PNG would otherwise bill to the first seed's CPU time.
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    rows_names = [row_name(name, method) for name in recipes for method in methods]
    for data in datas:
        for name in recipes:
            model_settings, train_settings = RECIPES[name]
            for seed in range(args.seeds):
                if all((data, row_name(name, m), seed) in done for m in methods) or args.table_only:
                    continue
                out = args.out if args.out is not None and seed == 0 else None
                figures = run_seed(data, model_settings, train_settings, seed, out, name, BUDGET_S.get(name), methods)
                for method, result in figures.items():
                    record = {"data": data, "recipe": name, "method": method, "seed": seed, **result}
                    done[data, row_name(name, method), seed] = record
                    print(f"{data:<4} {row_name(name, method):<26} seed {seed}: {record['modes']}/"
                          f"{record['num_modes']} modes, {record['high_quality']:.1f}% high quality, reverse KL "
                          f"{record['reverse_kl']:.3f}, {record['cpu_s']:.1f} CPU-s, acceptance "
                          f"{record['acceptance_rate']:.3f}, {record['passes_per_sample']:.1f} passes and "
                          f"{record['cpu_ms_per_sample']:.3f} CPU-ms a sample"
                          f"{'  [collapse warning]' if record['warned'] else ''}", flush=True)
                    if args.results is not None:
                        with args.results.open("a") as f:
                            f.write(json.dumps(record) + "\n")

    rows = {data: {name: [done[data, name, s] for s in range(args.seeds) if (data, name, s) in done]
                   for name in rows_names} for data in datas}
    for data in datas:
        print()
        print(table(data, rows[data]))
    best = {data: rows.get(data, {}).get("genlab-best", []) for data in DATA}
    figures = {f"{data}_best_{key}": (mean_se([r[field] for r in best[data]])[0] if best[data] else math.nan)
               for data in DATA for key, field in (("modes", "modes"), ("hq", "high_quality"), ("rkl", "reverse_kl"))}
    for data in datas:  # the D-guided rows of genlab-best, as high quality % and reverse KL
        for method in methods:
            guided_rows = rows[data].get(row_name("genlab-best", method), []) if method != "direct" else []
            if guided_rows:
                tag = f"{data}_{method.replace('-', '_')}"
                figures[f"{tag}_hq"] = mean_se([r["high_quality"] for r in guided_rows])[0]
                figures[f"{tag}_rkl"] = mean_se([r["reverse_kl"] for r in guided_rows])[0]
                figures[f"{tag}_passes"] = mean_se([r["passes_per_sample"] for r in guided_rows])[0]
    over = [r["cpu_s"] for data in DATA for r in best[data]] or [math.nan]
    slow = [f"{r['data']} {r['recipe']} seed {r['seed']} ({r['cpu_s']:.0f} s)"
            for data in datas for results in rows[data].values() for r in results if r["cpu_s"] > CPU_LIMIT_S]
    print()
    if slow:
        print(f"over the {CPU_LIMIT_S:.0f} CPU-s budget: {', '.join(slow)}")
    for data in DATA:
        for name in [name for name in rows_names if name.startswith("genlab-best")]:
            if rows.get(data, {}).get(name):
                print(target_check(data, rows[data][name], name))
    print("RESULT " + " ".join(f"{key}={value:.4g}" for key, value in figures.items())
          + f" best_max_cpu_s={max(over):.1f}")


if __name__ == "__main__":
    main()
