"""One visible training loop for every family, and one explicit step per family.

A run is a folder:  config.json  metrics.jsonl  checkpoints/step-*.safetensors  samples/*.png  tensorboard/
Batch `s` is a pure function of (seed, s) and every checkpoint holds the RNG states, so a run
resumed from its latest checkpoint ends bit-identical (on CPU) to one never interrupted.

The run's record (genlab.run: family, model and train configs) is its config.json. Resuming compares it with
the record saved in the latest checkpoint and refuses, naming the settings, when they differ: an edited lr
would otherwise be ignored (Adam's saved state carries the old one) while an edited batch_size would be
honoured, and an edited latent_dim would no longer fit the weights. A change of setting is a new run
(`genlab train ... --set key=value`). The folder is locked (genlab.run.run_lock) while a trainer writes in it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from rich.markup import escape
from torch.nn.utils import parametrize

from genlab import checkpoint as ckpt
from genlab.config import check_fields
from genlab.data import Batches, Dataset
from genlab.explore import save_image_grid, save_points
from genlab.metrics import (
    MIXTURES,
    NUM_SAMPLES,
    CollapseDetector,
    check_discriminator,
    check_diversity,
    check_modes,
    mixture_coverage,
    sample_diversity,
)
from genlab.models import family_classes
from genlab.run import RunRecord, load_run_data, read_metrics, read_run_record, run_lock, write_run_record

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str = "digits"  # a name from genlab.data.NAMES, or folder:PATH
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3  # Adam, as in pytorch/examples' VAE
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 at the last step
    seed: int = 0
    binarize: bool = False  # dynamic binarisation: each time an image is seen, pixels ~ Bernoulli(value)
    image_size: int | None = None  # image folders: resize and centre-crop to this size
    channels: int | None = None  # image folders: 1 or 3; None keeps what the files are
    # bf16-mixed: forward passes under torch.autocast in bfloat16 (weights, gradients and Adam stay float32).
    # 1.8x faster DCGAN steps on a CPU with AMX (benchmarks/gan_throughput.py); fp32 is exact and the default.
    precision: Literal["fp32", "bf16-mixed"] = "fp32"
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3  # the newest K stay on disk

    def __post_init__(self):
        every = (1, 10**9)
        check_fields(self, {"steps": every, "batch_size": (1, 65536), "lr": (0, 1e6), "seed": (0, 2**63 - 1),
                            "image_size": (4, 1024), "channels": (1, 3), "log_every": every, "sample_every": every,
                            "checkpoint_every": every, "keep_checkpoints": (1, 1000)})
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


PRECISIONS = {"fp32": None, "bf16-mixed": torch.bfloat16}  # name -> autocast dtype


def forward_precision(config: TrainConfig, device: str) -> Callable[[], contextlib.AbstractContextManager]:
    """What a step wraps its forward passes in: autocast for bf16-mixed (never the backward pass, which
    runs in the dtypes the forward chose), nothing for fp32."""
    dtype = PRECISIONS[config.precision]
    if dtype is None:
        return contextlib.nullcontext
    return functools.partial(torch.autocast, torch.device(device).type, dtype=dtype)


def learning_rate_factor(config: TrainConfig, step: int) -> float:
    """Each optimizer's base rate is multiplied by this at batch `step`: a pure function of the step, so
    resuming needs no scheduler state."""
    if config.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / config.steps))
    return 1.0


class TrainingDiverged(RuntimeError):
    """The loss became NaN, infinite or larger than MAX_LOSS, or a checkpoint was about to hold a non-finite
    weight or optimizer state; the run folder keeps its last good checkpoint, which the message names."""


# A loss this large means the run has diverged even while it is still finite: a diverging GAN's losses pass
# 1e27 on their way to overflow (lr=1e6 on ring), and by then no weight is worth keeping. No healthy genlab
# loss comes near: the largest is a per-example reconstruction sum over at most 3x1024x1024 values, a few
# nats each (~1e7; 100 nats each would still be 3e8); critic scores and MSEs of data in [0, 1] stay smaller.
# Weights that overflow while the loss is still finite are caught when a checkpoint would hold them.
MAX_LOSS = 1e12


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: a KeyboardInterrupt whose message says where the run stopped and how to resume."""


# --- the steps: one explicit update per family -------------------------------------------------------


def autoencoder_step(model, optimizers, x: torch.Tensor, forward=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """AE and VAE: one gradient step on model.loss(x) (reconstruction, plus beta * KL for the VAE).
    `forward`: the context the forward pass runs in (see forward_precision)."""
    with forward():
        terms = model.loss(x)
    optimizer = optimizers["model"]
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    return terms


def adam(parameters, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with the fused kernel: one pass over all parameters instead of a handful of ops per tensor,
    which on CPU was a third of a small model's step (benchmarks/vae_throughput.py)."""
    return torch.optim.Adam(parameters, lr=lr, betas=betas, fused=True)


def autoencoder_optimizers(model, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    return {"model": adam(model.parameters(), config.lr)}


def gan_step(model, optimizers, x: torch.Tensor, forward=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """GAN: n_critic discriminator updates, one real batch each (x holds n_critic batches), then one
    generator update; with the EMA copy of G moved after it. `forward`: as in autoencoder_step."""
    config = model.config
    d_optimizer, g_optimizer = optimizers["discriminator"], optimizers["generator"]
    for real in x.chunk(config.n_critic):
        # (1) Update D: tell real from fake. D sees the fakes detached, so no gradient reaches G here.
        # cached(): spectral norm's weights are computed once for D's passes on real, fake and the GP points.
        with parametrize.cached():
            with forward():
                fake = model.generate(model.latents(len(real)))
                d_terms = model.discriminator_loss(real, fake.detach())
            d_optimizer.zero_grad(set_to_none=True)
            d_terms["loss"].backward()
        d_optimizer.step()
        if config.loss == "wgan":
            model.clip_weights()  # keeps the critic K-Lipschitz for some K (Arjovsky et al. 2017)
    # (2) Update G: make the updated D call the last fakes real (reusing them, as pytorch/examples' DCGAN
    # does, saves a generator pass). G needs gradients through D but not D's own: freezing D skips them.
    model.discriminator.requires_grad_(False)
    try:
        with forward():
            g_terms = model.generator_loss(fake)
        g_optimizer.zero_grad(set_to_none=True)
        g_terms["loss"].backward()
    finally:
        model.discriminator.requires_grad_(True)
    g_optimizer.step()
    if model.ema_generator is not None:
        model.update_ema()
    return {"d_loss": d_terms.pop("loss"), "g_loss": g_terms.pop("loss"), **d_terms}


def gan_optimizers(model, lr: float) -> dict[str, torch.optim.Optimizer]:
    """Adam for G (lr) and D (the model's lr_d, or lr), both with the model's betas."""
    config = model.config
    lr_d = config.lr_d if config.lr_d is not None else lr
    return {"generator": adam(model.generator.parameters(), lr, config.betas),
            "discriminator": adam(model.discriminator.parameters(), lr_d, config.betas)}


def ddpm_step(model, optimizers, x: torch.Tensor, forward=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """Diffusion: the same gradient step on model.loss(x) (the noise-prediction MSE at a random timestep per
    example, Ho et al. alg. 1), then the EMA copy moves towards the new weights."""
    terms = autoencoder_step(model, optimizers, x, forward)
    if model.ema_network is not None:
        model.update_ema()
    return terms


def ddpm_optimizers(model, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam on the network being trained; the EMA copy and the schedule have nothing to optimise."""
    return {"model": adam(model.network.parameters(), config.lr)}


STEPS = {"ae": autoencoder_step, "vae": autoencoder_step, "gan": gan_step, "ddpm": ddpm_step}
OPTIMIZERS = {
    "ae": autoencoder_optimizers,
    "vae": autoencoder_optimizers,
    "gan": lambda model, config: gan_optimizers(model, config.lr),
    "ddpm": ddpm_optimizers,
}


def real_batches_per_step(model_config) -> int:
    """How many batches one step consumes: a GAN's n_critic discriminator updates each take their own."""
    return getattr(model_config, "n_critic", 1)


# --- runs --------------------------------------------------------------------------------------------


def check_batches(model_config, train_config: TrainConfig, data: Dataset) -> None:
    """A step's batches must fit in the training split, and PacGAN's packs in a batch."""
    pack = getattr(model_config, "pack", 1)  # PacGAN's D judges `pack` samples at a time
    if train_config.batch_size % pack:
        raise ValueError(f"batch_size {train_config.batch_size} is not divisible by pack={pack}: "
                         f"use a multiple of {pack}")
    per_step = real_batches_per_step(model_config)
    if train_config.batch_size * per_step > len(data):
        most = len(data) // per_step
        raise ValueError(f"batch_size {train_config.batch_size}{f' x n_critic {per_step}' if per_step > 1 else ''} "
                         f"is more than the {len(data)} training examples of {train_config.data}: "
                         f"use --set batch_size={most} or less")


def resolve_device(name: str | None) -> str:
    """The device every command runs on: `name` checked against this machine, or cuda when present, else cpu."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} is not available on this machine: use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name} is not available on this machine ({torch.cuda.device_count()} GPUs: "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return name
    if device.type == "mps" and torch.backends.mps.is_available():
        return name
    raise ValueError(f"{name} is not available on this machine: use --device cpu"
                     + (" or cuda" if torch.cuda.is_available() else ""))


def _truncate_metrics(path: Path, after_step: int) -> None:
    """Drop metric lines a crashed run logged after its last checkpoint (and torn ones); the resumed run logs
    them again."""
    if not path.exists():
        return
    kept = [record for record in read_metrics(path) if record["step"] <= after_step]
    ckpt.atomic_write_bytes(path, "".join(json.dumps(record) + "\n" for record in kept).encode())


# The temp files of atomic writes a killed trainer never finished: `.<name>.<mkstemp's 8 characters>.tmp`,
# for the files only a trainer (holding the run lock) writes. eval.json's and others' are left alone.
STALE_TEMP_FILES = {".": re.compile(r"\.(config\.json|metrics\.jsonl)\.[a-z0-9_]{8}\.tmp"),
                    "checkpoints": re.compile(r"\.step-\d+\.safetensors\.[a-z0-9_]{8}\.tmp")}


def _remove_stale_temp_files(run_dir: Path) -> None:
    for folder, pattern in STALE_TEMP_FILES.items():
        for path in (run_dir / folder).glob(".*.tmp"):
            if pattern.fullmatch(path.name) and path.is_file():
                log.info("removing %s, left by an interrupted write", path)
                path.unlink(missing_ok=True)


@torch.no_grad()
def save_previews(model, run_dir: Path, step: int, test: Dataset) -> None:
    """Samples (models that sample) and reconstructions of fixed test examples, as PNGs under samples/."""
    was_training = model.training
    model.eval()
    folder = run_dir / "samples"
    device = next(model.parameters()).device
    if test.kind == "image":
        if hasattr(model, "reconstruct"):
            x = test.x[:32].to(device)
            pairs = torch.stack([x, model.reconstruct(x)], dim=1).flatten(0, 1)  # original, reconstruction, ...
            save_image_grid(pairs, folder / f"step-{step:08d}-reconstructions.png", nrow=8)
        if hasattr(model, "sample"):
            generator = torch.Generator(device).manual_seed(0)  # the same z at every step: watch one sample evolve
            save_image_grid(model.sample(64, generator=generator), folder / f"step-{step:08d}-samples.png", nrow=8)
    else:
        reference = test.x[:2000]
        if hasattr(model, "sample"):
            generator = torch.Generator(device).manual_seed(0)
            save_points(model.sample(2000, generator=generator), folder / f"step-{step:08d}-samples.png",
                        reference, f"samples, step {step}")
        if hasattr(model, "reconstruct"):
            save_points(model.reconstruct(reference.to(device)), folder / f"step-{step:08d}-reconstructions.png",
                        reference, f"reconstructions, step {step}")
    model.train(was_training)


def train(run_dir: str | Path, *, device: str | None = None, data_dir: str | Path | None = None,
          progress: bool = False, stop_after: int | None = None, cpu_budget: float | None = None,
          on_log: Callable[[dict], None] | None = None) -> Path | None:
    """Train the run in `run_dir` from its latest checkpoint (or from scratch) up to config.steps.

    `stop_after` ends this call after that many steps, as an interruption would (the last
    checkpoint is what survives). `cpu_budget` (seconds of this process's CPU time, setup included)
    lowers config.steps to what the budget affords, re-planned at every log step from the cost measured
    so far, so the run still ends properly: a final checkpoint, previews, a cosine schedule that reaches 0.
    Returns the path of the last checkpoint written.

    The run folder is locked for the whole call (RunInUse when another trainer has it). Resuming checks the
    latest checkpoint against config.json (see the module docstring) and refuses a damaged one, naming the
    checkpoint before it; Ctrl-C raises TrainingInterrupted saying where the run stopped.
    """
    cpu_start = time.process_time()
    if cpu_budget is not None and not (cpu_budget > 0 and math.isfinite(cpu_budget)):
        raise ValueError(f"the CPU budget must be a positive number of seconds, got {cpu_budget}")
    run_dir = Path(run_dir)
    device = resolve_device(device)
    read_run_record(run_dir)  # a folder that is no run is refused before the lock file is made in it
    with run_lock(run_dir):
        _remove_stale_temp_files(run_dir)
        return _train(run_dir, device, data_dir, progress, stop_after, cpu_budget, on_log, cpu_start)


def _train(run_dir: Path, device: str, data_dir, progress: bool, stop_after: int | None,
           cpu_budget: float | None, on_log, cpu_start: float) -> Path | None:
    run = read_run_record(run_dir)  # again, now that no other trainer can change it
    family, model_config, config = run.family, run.model, run.train
    model_class, _ = family_classes(family)
    train_data = load_run_data(config, "train", data_dir)
    test_data = load_run_data(config, "test", data_dir)
    if train_data.shape != tuple(model_config.data_shape):
        raise ValueError(f"the data now has shape {train_data.shape} but the run was made for "
                         f"{tuple(model_config.data_shape)}: was {config.data} changed?")
    check_batches(model_config, config, train_data)

    torch.manual_seed(config.seed)
    model = model_class(model_config).to(device)
    optimizers = OPTIMIZERS[family](model, config)
    step_fn = STEPS[family]
    forward = forward_precision(config, device)
    start = 0
    detector = CollapseDetector()  # GANs only; quiet for the first fifth of a run, before G has learned anything
    sums: dict[str, float] = {}  # loss terms summed over the current logging window
    count = 0
    existing = ckpt.list_checkpoints(run_dir)
    if existing:
        checkpoint = _resume(run_dir, existing, device, family, model_config, config, model, optimizers)
        start = checkpoint.step
        # a checkpoint between two log lines carries the half-filled window, so the next line is unchanged
        sums, count = checkpoint.meta["log_window"]["sums"], checkpoint.meta["log_window"]["count"]
        detector.streaks = checkpoint.meta.get("collapse_streaks", {})
        log.info("resuming %s from step %d", run_dir, start)
    metrics_path = run_dir / "metrics.jsonl"
    _truncate_metrics(metrics_path, start)
    last_checkpoint = existing[-1] if existing else None
    if start >= config.steps:
        return last_checkpoint

    from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

    writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start or None)
    batches = Batches(train_data.x.to(device), config.batch_size * real_batches_per_step(model_config),
                      seed=config.seed)
    stop = config.steps if stop_after is None else start + stop_after  # where this call stops at the latest
    end = min(config.steps, stop)
    window_start = time.perf_counter()
    bar = _progress_bar(progress, family, config.data)
    task = bar.add_task("train", total=config.steps, completed=start, terms="") if bar else None
    model.train()
    budget = _CPUBudget(cpu_budget, cpu_start, start, config.steps) if cpu_budget is not None else None
    step = start

    def diverged(what: str) -> TrainingDiverged:
        kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
        return TrainingDiverged(f"{what} at step {step + 1}; {kept}. "
                                "Start a new run with a lower learning rate (--set lr=...)")

    try:
        for step in range(start, end):
            x = batches.batch(step)
            if config.binarize:
                x = torch.bernoulli(x)
            if config.lr_schedule != "constant":
                for optimizer in optimizers.values():
                    for group in optimizer.param_groups:
                        group["lr"] = group.setdefault("base_lr", group["lr"]) * learning_rate_factor(config, step)
            terms = step_fn(model, optimizers, x, forward)
            values = {name: value.item() for name, value in terms.items()}
            if exploded := [f"{name} = {value:.4g}" for name, value in values.items()
                            if not (math.isfinite(value) and abs(value) <= MAX_LOSS)]:
                raise diverged(", ".join(exploded))
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                elapsed = time.perf_counter() - window_start
                record = {"step": done, "epoch": batches.position(step)[0],
                          **{name: total / count for name, total in sums.items()},
                          "images_per_s": count * config.batch_size / max(elapsed, 1e-9)}
                if family == "gan" and done >= config.steps // 5:
                    _check_collapse(detector, model, train_data, record)
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                for name, value in record.items():
                    if name not in ("step", "epoch", "warning"):
                        writer.add_scalar(name, value, done)
                if on_log:
                    on_log(record)
                if bar:
                    shown = "  ".join(f"{k} {v:.4g}" for k, v in record.items()
                                      if k not in ("step", "epoch", "warning"))
                    if "warning" in record:
                        shown += f"  [red]{escape(record['warning'])}[/]"
                    bar.update(task, completed=done, terms=shown)
                sums, count, window_start = {}, 0, time.perf_counter()
                if budget is not None and done < config.steps:
                    # A plan may grow as well as shrink (the first steps cost the most), so the end follows it.
                    config.steps = budget.affordable_steps(done)
                    end = min(stop, config.steps)
                    if bar:
                        bar.update(task, total=config.steps)
            if done % config.sample_every == 0 or done == config.steps:
                save_previews(model, run_dir, done, test_data)
            if done % config.checkpoint_every == 0 or done == config.steps:
                epoch, batch_index = batches.position(done)
                meta = {"run": run.to_json(), "step": done,
                        "data_position": {"epoch": epoch, "batch": batch_index},
                        "log_window": {"sums": sums, "count": count}, "collapse_streaks": detector.streaks}
                try:
                    ckpt.save_checkpoint(ckpt.checkpoint_path(run_dir, done), meta=meta, model=model,
                                         optimizers=optimizers)
                except ckpt.NonFiniteTensors as error:  # finite losses, but the last update overflowed
                    raise diverged(f"the weights diverged ({error})") from None
                last_checkpoint = ckpt.checkpoint_path(run_dir, done)
                ckpt.prune_checkpoints(run_dir, config.keep_checkpoints)
                if budget is not None:  # a resumed run ends where the budget's latest plan ended it
                    write_run_record(run_dir, run)
            if done >= end:  # the budget moved the end closer
                break
    except KeyboardInterrupt:
        kept = f"the last checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
        raise TrainingInterrupted(f"interrupted at step {step}; {kept}; resume with "
                                  f"`genlab train --resume {run_dir}`") from None
    finally:
        writer.close()
        if bar:
            bar.stop()
    return last_checkpoint


def _resume(run_dir: Path, existing: list[Path], device: str, family: str, model_config, config: TrainConfig,
            model, optimizers) -> ckpt.Checkpoint:
    """Load the latest checkpoint into the model and optimizers, after checking that config.json still says
    what it was saved with. A damaged checkpoint is refused, never skipped silently: the message names the
    one before it, which the user can resume from by moving the damaged one aside."""
    latest = existing[-1]
    try:
        checkpoint = ckpt.load_checkpoint(latest, device)
    except ckpt.DamagedCheckpoint as error:
        raise _damaged_latest(error, existing) from None
    if edits := RunRecord(family, model_config, config).edits_since(checkpoint.record):
        wanted = " ".join(f"--set {key}={_as_setting(now)}" for key, _, now in edits if key != "family")
        raise ValueError(f"{run_dir / 'config.json'} was edited since {latest.name} was saved: "
                         f"{', '.join(f'{key} {saved} -> {now}' for key, saved, now in edits)}; resume uses the "
                         f"run's configuration: put the values back, or start a new run with {wanted or 'the family'}")
    try:
        ckpt.restore(checkpoint, model, optimizers, restore_rng=True)
        window, streaks = checkpoint.meta.get("log_window"), checkpoint.meta.get("collapse_streaks", {})
        if not _is_log_window(window) or not isinstance(streaks, dict) or not all(
                isinstance(v, int) for v in streaks.values()):
            raise ckpt.DamagedCheckpoint(latest, "has damaged genlab metadata (log_window or collapse_streaks)")
    except ckpt.DamagedCheckpoint as error:
        raise _damaged_latest(error, existing) from None
    return checkpoint


def _damaged_latest(error: ckpt.DamagedCheckpoint, existing: list[Path]) -> ValueError:
    if len(existing) == 1:
        return ValueError(f"the run's only checkpoint {error.path} {error.problem}: start the run again "
                          "(a new --run) or restore the file")
    return ValueError(f"the latest checkpoint {error.path} {error.problem}: to resume from the one before, "
                      f"{existing[-2].name}, move {error.path.name} out of {error.path.parent}")


def _is_log_window(window) -> bool:
    return (isinstance(window, dict) and isinstance(window.get("sums"), dict)
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in window["sums"].values())
            and isinstance(window.get("count"), int) and window["count"] >= 0)


def _as_setting(value) -> str:
    """A config value as --set writes it: 128,64 for a list."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _check_collapse(detector: CollapseDetector, model, train_data: Dataset, record: dict) -> None:
    """Run the collapse checks into `record`. A diagnostic never ends a run: if one fails, that is logged."""
    try:
        warning = detector.update(*collapse_evidence(model, train_data, record))
    except Exception as error:  # noqa: BLE001 (any failure of a diagnostic, by design)
        log.warning("step %d: the collapse check failed (%s: %s); training goes on", record["step"],
                    type(error).__name__, error)
        return
    if warning:
        record["warning"] = str(warning)
        log.warning("step %d: %s", record["step"], warning)


@dataclass
class _CPUBudget:
    """Plans how many steps a CPU-time budget affords, from the cost per step measured in this call."""

    seconds: float
    cpu_start: float  # process time when train() was called: loading data and building the model count
    first_step: int
    max_steps: int  # the run's own step count: a budget never lengthens a run
    loop_start: float = -1.0

    def __post_init__(self):
        self.loop_start = time.process_time()

    def affordable_steps(self, done: int) -> int:
        now = time.process_time()
        per_step = (now - self.loop_start) / max(done - self.first_step, 1)
        # 2% is kept for the last checkpoint and previews; a budget already spent ends the run at this step
        left = self.seconds * 0.98 - (now - self.cpu_start)
        return max(done, min(self.max_steps, done + int(left / per_step)))


@torch.no_grad()
def collapse_evidence(model, train_data: Dataset, record: dict) -> list:
    """A GAN's collapse checks at a log step; adds what they measured to `record`.

    2-D mixtures: mode coverage of NUM_SAMPLES samples. Images: the spread of 256 samples against 256
    real images. Probability losses: whether D has won (its mean outputs, logits, through a sigmoid).
    Samples come from their own generator, in eval mode, so checking never changes training.
    """
    was_training = model.training
    model.eval()
    try:
        return _collapse_checks(model, train_data, record)
    finally:
        model.train(was_training)


def _collapse_checks(model, train_data: Dataset, record: dict) -> list:
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(record["step"])
    checks = []
    if train_data.name in MIXTURES:
        coverage = mixture_coverage(model.sample(NUM_SAMPLES, generator=generator).cpu(), train_data.name)
        record.update(modes_covered=coverage.modes_covered, high_quality=coverage.high_quality_fraction,
                      reverse_kl=coverage.reverse_kl)
        checks.append(check_modes(coverage))
    elif train_data.kind == "image":
        fake = sample_diversity(model.sample(256, generator=generator).cpu())
        real = sample_diversity(train_data.x[:256].cpu())
        record["diversity_ratio"] = fake / real
        checks.append(check_diversity(fake, real))
    if model.config.loss in ("minimax", "non-saturating"):
        def probability(logit: float) -> float:
            return 0.5 * (1 + math.tanh(logit / 2))  # the logistic sigmoid, without exp's overflow at |logit| > 709

        checks.append(check_discriminator(probability(record["d_real"]), probability(record["d_fake"])))
    return checks


def _progress_bar(enabled: bool, family: str, data: str):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(f"[bold]{family}[/] on {data}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[terms]}"))
    bar.start()
    return bar
