"""The lesson's "when to use which" table, measured: AE, VAE, GAN and DDPM on the same data, each under the
same CPU-time budget, evaluated with one protocol.

  train     out/FAMILY-seedN for every family and seed, train(cpu_budget=...): each run ends at the step count
            its budget affords; the CPU seconds it took go to out/FAMILY-seedN/compare.json
  evaluate  open_run (model and test split, loaded once per run), then evaluate(samples=N, seed=0): reconstruction
            (ae, vae), FID/precision/recall (all four: the ae through the Gaussian mixture fitted on its training
            codes when it finished training) against the same N test examples in one feature space
  sampling  CPU seconds to draw 1,000 samples from each run, 250 at a time
  guided    with gan_method (genlab.guided: rejection, mh or latent-mcmc), each GAN run is evaluated a second time on
            D-guided samples, a row of its own ("GAN ... + rejection") whose sampling time is that method's
  report    compare.json (every figure), compare.md, compare.html (self-contained, a sample grid per family),
            compare.png (FID against sampling time), samples-FAMILY.png

Or `runs_from=FOLDER` skips training and takes FOLDER/FAMILY-seedN runs made earlier (by this function or by
`genlab train --run FOLDER/FAMILY-seedN`); their training time is shown when a compare.json records it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.checkpoint import atomic_write_bytes
from genlab.evaluate import DEFAULT_NLL_K, check_evaluation, evaluate
from genlab.explore import save_picture
from genlab.guided import SamplingConfig
from genlab.models import family as family_record
from genlab.run import OpenRun, create_run, loading_once, open_run, read_run_record
from genlab.train import TrainConfig, train

log = logging.getLogger(__name__)

FAMILIES = ("ae", "vae", "gan", "ddpm")
DATA = ("digits", "mnist")  # the images the shipped feature network scores
MAX_SEEDS = 10
DEFAULT_SAMPLES = 2000  # FID at 2,000 reads higher than at 10,000, but every family is scored at the same count
SAMPLING_BATCH = 250
SAMPLING_COUNT = 1000
RECORD_FILE = "compare.json"  # in each run folder: the CPU seconds its training took

# family -> (model settings, training settings). `steps` is only a ceiling: the budget ends each run.
RECIPES = {
    "ae": ({}, {}),  # conv autoencoder, BCE reconstruction: genlab's defaults; sampled by a 10-Gaussian mixture
    "vae": ({}, {}),  # conv VAE, Bernoulli likelihood, 20-D latent: genlab's defaults
    # genlab's best image GAN: DCGAN, non-saturating loss, EMA generator (2,000 steps with ema_decay 0.999 gave
    # FID 6.0 on MNIST, README "Measuring a model"). The EMA's warm-up lets a short budget's run forget its
    # random initial G, so 0.999 suits 2 CPU-minutes (~650 steps) as well as 10.
    "gan": ({"architecture": "conv", "loss": "non-saturating", "ema_decay": 0.999}, {}),
    # The README's MNIST recipe (batch 64, lr 2e-3, cosine decay, which train() stretches to end at the budget's
    # last step). Sampled with DDIM, 50 steps, for evaluation and timing: DDPM's 1,000 steps cost 20x as much.
    "ddpm": ({"sampler": "ddim", "sampling_steps": 50}, {"batch_size": 64, "lr": 2e-3, "lr_schedule": "cosine"}),
}
STEP_CEILING = 1_000_000

# The lesson's words, beside the numbers that test them.
LESSON = {"ae": "simple, fast / blurry", "vae": "smooth latent space / blurry", "gan": "sharp / unstable",
          "ddpm": "best quality / slow"}
LABELS = {"ae": "autoencoder (+ Gaussian mixture)", "vae": "VAE", "gan": "GAN (DCGAN, EMA)",
          "ddpm": "diffusion (DDPM, DDIM-50)"}


@dataclass
class RunResult:
    family: str
    seed: int
    run: Path
    steps: int
    train_cpu_s: float | None  # None: an existing run that recorded no training time
    mse: float | None  # reconstruction MSE of test images; None for families without an encoder
    fid: float | None  # None for families that do not sample
    precision: float | None
    recall: float | None
    sampling_cpu_s: float | None  # CPU seconds per 1,000 samples
    method: str = "direct"  # how the GAN's samples were drawn (genlab.guided)
    acceptance_rate: float | None = None  # of a D-guided method


def check_options(data: str, budget: float | None, seeds: int) -> None:
    if data not in DATA:
        raise ValueError(f"compare needs images the shipped feature network reads: choose one of "
                         f"{', '.join(DATA)}, not {data!r}")
    if budget is not None and not budget > 0:
        raise ValueError(f"the budget must be positive, got {budget} s")
    if not 1 <= seeds <= MAX_SEEDS:
        raise ValueError(f"--seeds must be between 1 and {MAX_SEEDS}, got {seeds}")


def run_name(family: str, seed: int) -> str:
    return f"{family}-seed{seed}"


def train_runs(out: Path, data: str, budget: float, seeds: int, data_dir: str | Path | None = None,
               families: tuple[str, ...] = FAMILIES, on_run=None) -> list[Path]:
    """Train every family for every seed under `budget` CPU seconds each, into out/FAMILY-seedN."""
    runs = []
    for seed in range(seeds):
        for family in families:
            model_settings, train_settings = RECIPES[family]
            config = TrainConfig(data=data, seed=seed, steps=STEP_CEILING, **train_settings)
            with loading_once():  # the splits create_run checks are the ones the run trains on
                run = create_run(out / run_name(family, seed), family, config, model_settings, data_dir)
                if on_run:
                    on_run(family, seed)
                start = time.process_time()
                train(run, device="cpu", data_dir=data_dir, cpu_budget=budget)
                cpu_s = time.process_time() - start
            if (finish := family_record(family).after_training) is not None:  # the AE's sampler: not in the budget
                log.info(finish(run, device="cpu", data_dir=data_dir))
            atomic_write_bytes(run / RECORD_FILE, (json.dumps({"train_cpu_s": cpu_s, "budget_s": budget}) + "\n")
                               .encode())
            runs.append(run)
    return runs


def find_runs(folder: Path, data: str) -> list[Path]:
    """The FAMILY-seedN run folders in `folder`, checked to be trained on `data`."""
    if not folder.is_dir():
        raise NotADirectoryError(f"--runs-from {folder} is not a folder")
    pattern = re.compile(rf"({'|'.join(FAMILIES)})-seed(\d+)")
    runs = sorted(path for path in folder.iterdir() if pattern.fullmatch(path.name) and (path / "config.json").exists())
    if not runs:
        raise ValueError(f"{folder} holds no FAMILY-seedN runs (e.g. gan-seed0): train them with "
                         f"`genlab train gan --run {folder}/gan-seed0` or let compare train them")
    for run in runs:
        trained_on = read_run_record(run).train.data
        if trained_on != data:
            raise ValueError(f"{run} was trained on {trained_on}, not {data}: compare runs on one data set")
    return runs


def recorded_cpu_seconds(record: Path) -> float | None:
    """The training CPU seconds a run's compare.json records; None (with a warning, when the file is damaged)
    if it records none: the table shows the time as unknown rather than failing the whole comparison."""
    if not record.exists():
        return None
    try:
        seconds = json.loads(record.read_bytes())["train_cpu_s"]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, OSError):
        seconds = None
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds):
        return seconds
    log.warning("%s records no training time (damaged?): shown as unknown", record)
    return None


@torch.no_grad()
def sampling_seconds(model, count: int = SAMPLING_COUNT, batch: int = SAMPLING_BATCH) -> float:
    """CPU seconds to draw `count` samples, `batch` at a time, with the model's default sampler."""
    generator = torch.Generator().manual_seed(0)
    start = time.process_time()
    for first in range(0, count, batch):
        model.sample(min(batch, count - first), generator=generator)
    return time.process_time() - start


def measure(opened: OpenRun, samples: int, seed: int, nll_k: int, sampling: SamplingConfig | None = None) -> RunResult:
    """Evaluate an opened run (its test split loaded) and time its sampling; `sampling`: D-guided samples instead,
    timed by the evaluation's own draws (their CPU-ms per sample are CPU-s per 1,000)."""
    report = evaluate(opened, samples=samples, seed=seed, nll_k=nll_k, sampling=sampling)
    results = report["results"]
    quality = results.get("sample_quality", {}).get("scores", {})
    model = opened.model
    if model.fits_sampler and not model.can_sample:
        from genlab.models.autoencoder import NO_SAMPLER

        log.warning("%s has no FID: %s", opened.folder, NO_SAMPLER.format(run=opened.folder))
    guided = results.get("sampling", {}).get("scores")  # a D-guided draw's cost, timed by the evaluation itself
    return RunResult(
        family=opened.record.family, seed=opened.record.train.seed, run=opened.folder, steps=report["step"],
        train_cpu_s=recorded_cpu_seconds(opened.folder / RECORD_FILE),
        mse=results["reconstruction"]["scores"]["mse"] if "reconstruction" in results and not guided else None,
        fid=quality.get("fid"), precision=quality.get("precision"), recall=quality.get("recall"),
        sampling_cpu_s=(guided["cpu_ms_per_sample"] if guided else sampling_seconds(model) if model.can_sample
                        else None),
        method=report["sampling_method"], acceptance_rate=guided["acceptance_rate"] if guided else None)


def compare(out: str | Path, *, data: str = "mnist", budget: float | None = 600.0, seeds: int = 3,
            runs_from: str | Path | None = None, samples: int = DEFAULT_SAMPLES, eval_seed: int = 0,
            nll_k: int = DEFAULT_NLL_K, data_dir: str | Path | None = None, on_run=None,
            gan_method: SamplingConfig | None = None) -> dict:
    """Train (or take from `runs_from`), evaluate and tabulate; writes the report files into `out`, returns
    compare.json's content. `on_run(family, seed)` is called before each run trains (progress). `gan_method`: a
    D-guided sampling method, each GAN's second row."""
    check_options(data, budget if runs_from is None else None, seeds)
    check_evaluation(samples, nll_k)
    out = Path(out)
    if runs_from is not None:
        runs = find_runs(Path(runs_from), data)
    else:
        clashes = [name for family in FAMILIES for seed in range(seeds)
                   if (out / (name := run_name(family, seed)) / "config.json").exists()]
        if clashes:
            raise FileExistsError(f"{out} already holds runs ({', '.join(clashes)}): evaluate them with "
                                  f"--runs-from {out}, or pick another --out")
        runs = train_runs(out, data, budget, seeds, data_dir, on_run=on_run)
    out.mkdir(parents=True, exist_ok=True)
    results, grids = [], {}
    scored = samples  # test examples the scores compare with: the split may hold fewer than `samples` (digits: 297)
    for run in runs:
        opened = open_run(run, device="cpu", data_dir=data_dir, splits=("test",))  # once: eval, timing, grid
        scored = min(scored, len(opened.data["test"]))
        results.append(measure(opened, samples, eval_seed, nll_k))
        if opened.record.family == "gan" and gan_method is not None and gan_method.method != "direct":
            results.append(measure(opened, samples, eval_seed, nll_k, gan_method))
        if opened.record.family not in grids:  # one grid per family, from its lowest seed
            shows = "samples" if opened.model.can_sample else "test images beside reconstructions"
            grids[opened.record.family] = (sample_grid(opened, out / f"samples-{opened.record.family}.png"), shows)
        del opened
    summary = {
        "data": data, "budget_cpu_s": budget, "seeds": sorted({r.seed for r in results}),
        "protocol": {"samples": samples, "seed": eval_seed, "reference": f"{data}/test[:{scored}]",
                     "sampling": f"CPU-s per {SAMPLING_COUNT} samples, {SAMPLING_BATCH} at a time, "
                                 f"{torch.get_num_threads()} thread(s)",
                     "ddpm_sampler": "DDIM, 50 steps (eta 0)"},
        "runs": [{**{k: v for k, v in vars(r).items() if k != "run"}, "run": str(r.run)} for r in results],
        "table": table(results),
    }
    atomic_write_bytes(out / "compare.json", (json.dumps(summary, indent=2) + "\n").encode())
    write_markdown(out / "compare.md", summary)
    write_figure(out / "compare.png", results)
    write_html(out / "compare.html", summary, grids, out / "compare.png")
    return summary


def sample_grid(opened: OpenRun, path: Path) -> Path:
    """64 samples (8x8), or for an autoencoder without a fitted sampler, 32 test images beside their
    reconstructions."""
    return save_picture(path, opened.model, opened.data["test"],
                        title=f"{opened.path.parent.parent.name}, step {opened.step}")


# --- the table ---------------------------------------------------------------------------------------

COLUMNS = (("mse", "reconstruction MSE", "{:.4f}"), ("fid", "FID", "{:.2f}"), ("precision", "precision", "{:.3f}"),
           ("recall", "recall", "{:.3f}"), ("sampling_cpu_s", "sampling CPU-s / 1,000", "{:.2f}"),
           ("train_cpu_s", "training CPU-s", "{:.0f}"), ("steps", "steps", "{:.0f}"))


def spread(values: list[float | None], fmt: str) -> str:
    """mean ± sample standard deviation over seeds; one value as it is; "-" where the figure does not apply."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def label(family: str, method: str) -> str:
    return LABELS[family] if method == "direct" else f"{LABELS[family]} + {method}"


def table(results: list[RunResult]) -> list[dict]:
    rows = []
    for family in FAMILIES:
        for method in dict.fromkeys(r.method for r in results if r.family == family):  # direct first
            mine = [r for r in results if r.family == family and r.method == method]
            row = {"family": family, "model": label(family, method), "lesson": LESSON[family], "seeds": len(mine),
                   **{key: spread([getattr(r, key) for r in mine], fmt) for key, _, fmt in COLUMNS}}
            if method != "direct":
                row["acceptance_rate"] = spread([r.acceptance_rate for r in mine], "{:.3f}")
            rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    header = ["model", "the lesson says", "seeds", *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["model"], row["lesson"], str(row["seeds"]), *(row[key] for key, _, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(summary: dict) -> list[str]:
    protocol = summary["protocol"]
    budget = summary["budget_cpu_s"]
    return [
        f"Data: {summary['data']}; seeds {', '.join(map(str, summary['seeds']))}; "
        + (f"each run trained for a budget of {budget:.0f} CPU-s." if budget else "existing runs."),
        f"FID, precision, recall (k=3): {protocol['samples']} samples against {protocol['reference']}, "
        f"seed {protocol['seed']}, in genlab's MNIST feature space (compare these rows with each other, "
        "not with Inception FIDs). Reconstruction MSE: the same test images, per pixel.",
        f"Sampling: {protocol['sampling']}. Diffusion is sampled with {protocol['ddpm_sampler']} here, for "
        "evaluation and timing alike; ancestral DDPM (1,000 steps) costs about 20x the DDIM figure.",
        "Values are mean ± standard deviation over seeds; '-' where a figure does not apply (GAN and diffusion do "
        "not reconstruct). The autoencoder samples from a 10-component Gaussian mixture fitted on its training "
        "codes after training (genlab fit-sampler), which its training time leaves out.",
    ] + [f"{row['model']}: the GAN's samples guided by its discriminator (genlab.guided), acceptance rate "
         f"{row['acceptance_rate']}; its sampling time is that method's, D's calibration excluded."
         for row in summary["table"] if "acceptance_rate" in row]


def write_markdown(path: Path, summary: dict) -> None:
    text = "\n\n".join(["# Which model when, measured", markdown_table(summary["table"]),
                        "\n".join(f"- {line}" for line in notes(summary))])
    atomic_write_bytes(path, (text + "\n").encode())


def write_figure(path: Path, results: list[RunResult]) -> None:
    """FID against sampling time, one point per run: the lesson's quality-speed trade-off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for family, method in dict.fromkeys((r.family, r.method) for r in results):
        points = [(r.sampling_cpu_s, r.fid) for r in results
                  if (r.family, r.method) == (family, method) and r.fid is not None]
        if points:
            ax.scatter(*zip(*points, strict=True), label=label(family, method), s=40)
    ax.set_xscale("log")
    ax.set_xlabel("sampling CPU-s per 1,000 images (log)")
    ax.set_ylabel("FID (lower is better)")
    ax.set_title("quality against sampling cost")
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={  # what it shows, readable from the file as every picture's is
        "Title": "quality against sampling cost",
        "Description": "FID (lower is better) against sampling CPU-s per 1,000 images (log axis), one point a run, "
                       "one colour a family (legend)"})
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _embedded(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def write_html(path: Path, summary: dict, grids: dict[str, tuple[Path, str]], figure: Path) -> None:
    """One self-contained page: the table, the notes, the figure and a grid per family (family -> the picture and
    what it shows), images inlined."""
    header = ["model", "the lesson says", "seeds", *(title for _, title, _ in COLUMNS)]
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in
                                    [row["model"], row["lesson"], row["seeds"], *(row[k] for k, _, _ in COLUMNS)])
                   + "</tr>" for row in summary["table"])
    cards = "".join(
        f"<figure>{_embedded(grid, LABELS[family])}<figcaption>{html.escape(LABELS[family])}: "
        f"{html.escape(shows)}</figcaption></figure>" for family, (grid, shows) in grids.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>genlab compare: {html.escape(summary['data'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 72rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
td:nth-child(-n+2), th:nth-child(-n+2) {{ text-align: left; }}
figure {{ display: inline-block; margin: 0 1rem 1rem 0; }}
figure img {{ width: 224px; image-rendering: pixelated; }}
</style></head><body>
<h1>Which model when, measured</h1>
<table><thead><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in header)}</tr></thead><tbody>{rows}</tbody></table>
<ul>{''.join(f'<li>{html.escape(line)}</li>' for line in notes(summary))}</ul>
<h2>Quality against sampling cost</h2>
{_embedded(figure, 'FID against sampling CPU-seconds per 1,000 images')}
<h2>Samples</h2>
{cards}
</body></html>
"""
    atomic_write_bytes(path, page.encode())
