"""One visible training loop for every family; each family's optimizers and step live in its own file
(genlab.models.FAMILIES), so the loop never asks which family it trains.

A run is a folder:  config.json  metrics.jsonl  checkpoints/step-*.safetensors  samples/*.png  tensorboard/
Batch `s` is a pure function of (seed, s) and every checkpoint holds the RNG states, so a run
resumed from its latest checkpoint ends bit-identical (on CPU) to one never interrupted.

The run's record (genlab.run: family, model and train configs) is its config.json, written once by create_run;
a resume may change its learning rates, steps and cadences (genlab.run.RESUMABLE) and nothing else. A CPU
budget never rewrites it: its plan (how many steps the budget affords) is loop state, saved in each
checkpoint, so a resumed run ends where the plan ended it unless `steps` was changed since.
Resuming refuses a config.json edited by hand in any other setting (an edited latent_dim no longer fits the
weights), and gives the optimizers the record's learning rates, not those saved with their state.

A run folder is locked (genlab.run.run_lock) while one trainer writes into it: a second trainer, another
process or another thread of the lab, gets RunInUse.

Under torchrun (genlab.distributed) every rank runs this loop on its share of each batch; rank 0 alone holds the
lock and writes the run folder, and the loop's decisions (stop on a bad loss or a signal, a CPU budget's plan)
are taken from values all ranks share, so they take them at the same step.

With `accumulate` = k the loop hands each family's step its share of the batch and k, and the step makes one
optimizer step of k micro-batches (genlab.models.layers.accumulated_update): batch_size stays the global batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from rich.markup import escape

from genlab import checkpoint as ckpt
from genlab import distributed
from genlab.config import check_fields
from genlab.data import MAX_SEED, Batches, Dataset
from genlab.explore import save_picture
from genlab.metrics import CollapseDetector
from genlab.models import Family, family
from genlab.run import (
    RunRecord,
    batches_per_step,
    check_batches,
    load_run_data,
    load_source_weights,
    read_metrics,
    read_run_record,
    run_config_path,
    run_lock,
)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str = "digits"  # a name from genlab.data.NAMES, or folder:PATH
    data_dir: str | None = None  # where --data-dir found downloaded data (MNIST): later commands look there too
    steps: int = 3000
    batch_size: int = 128  # the global batch of one optimizer step, however many processes and micro-batches
    # Gradient accumulation: each process's share of a batch goes forward and backward in this many equal
    # micro-batches, their gradients summed into one step on the whole batch (a larger batch than memory holds).
    # Equal to one pass to float rounding given the same random draws (each micro-batch draws its own), except
    # where a layer sees the batch: BatchNorm, minibatch stddev, relativistic losses (README, "Gradient accumulation")
    accumulate: int = 1
    lr: float = 1e-3  # Adam, as in pytorch/examples' VAE
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 at the last step
    seed: int = 0
    binarize: bool = False  # dynamic binarisation: each time an image is seen, pixels ~ Bernoulli(value)
    image_size: int | None = None  # image folders: resize and centre-crop to this size
    channels: int | None = None  # image folders: 1 or 3; None keeps what the files are
    # image folders with image_size: centre keeps the centred square (pytorch/examples' DCGAN, StyleGAN's
    # center-crop); pad keeps the whole picture, filling the rest with white
    crop: Literal["centre", "pad"] = "centre"
    # bf16-mixed: forward passes under torch.autocast in bfloat16 (weights, gradients and Adam stay float32).
    # 1.8x faster DCGAN steps on a CPU with AMX (benchmarks/gan_throughput.py); fp32 is exact and the default.
    precision: Literal["fp32", "bf16-mixed"] = "fp32"
    # torch.compile each network (in place, so checkpoints keep their names): measured, not assumed, by
    # benchmarks/gpu_check.py; the first steps pay for the compilation
    compile: bool = False
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3  # the newest K stay on disk

    def __post_init__(self):
        every = (1, 10**9)
        check_fields(self, {"steps": every, "batch_size": (1, 65536), "accumulate": (1, 65536), "lr": (0, 1e6),
                            "seed": (0, MAX_SEED), "image_size": (4, 1024), "channels": (1, 3), "log_every": every,
                            "sample_every": every, "checkpoint_every": every, "keep_checkpoints": (1, 1000)})
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.batch_size % self.accumulate:
            raise ValueError(f"batch_size {self.batch_size} does not split into accumulate={self.accumulate} equal "
                             f"micro-batches: use a batch_size that is a multiple of {self.accumulate}")


PRECISIONS = {"fp32": None, "bf16-mixed": torch.bfloat16}  # name -> autocast dtype


def autocast_for(config: TrainConfig, device: str) -> Callable[[], contextlib.AbstractContextManager]:
    """What a step wraps its forward passes in: autocast for bf16-mixed (never the backward pass, which
    runs in the dtypes the forward chose), nothing for fp32."""
    dtype = PRECISIONS[config.precision]
    if dtype is None:
        return contextlib.nullcontext
    return functools.partial(torch.autocast, torch.device(device).type, dtype=dtype)


def learning_rate_factor(config: TrainConfig, step: int, steps: int | None = None) -> float:
    """Each optimizer's base rate is multiplied by this at batch `step` of `steps` (default config.steps; a
    CPU budget's plan otherwise, so the cosine reaches 0 where the run ends): a pure function of the step, so
    resuming needs no scheduler state."""
    if config.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / (steps or config.steps)))
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


# Below this many parameters an op is too small to share: a second OpenMP thread mostly spins, and on a busy
# machine it spins for a long time (the 2-D GAN lesson: 32 CPU-s with one thread, 6 min 45 s of CPU with torch's
# two threads while the other core was busy).
SMALL_MODEL_PARAMETERS = 1_000_000


@contextlib.contextmanager
def limited_threads(threads: int):
    """At most `threads` torch threads inside the block (never more than torch or OMP_NUM_THREADS chose)."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(threads, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_for(model: torch.nn.Module):
    """The threads a model trains with: one for a small model (the toys, MLPs on points), else torch's choice."""
    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS
    return limited_threads(1) if small else contextlib.nullcontext()


@contextlib.contextmanager
def _stop_signals():
    """While the loop runs, Ctrl-C (SIGINT) and SIGTERM only ask it to stop: it finishes the step, saves a
    checkpoint of it and raises TrainingInterrupted, so nothing since the last checkpoint is lost. A second
    signal interrupts at once. Handlers belong to the main thread; elsewhere (the lab's workers, which stop
    through on_log) the event is never set."""
    requested = threading.Event()
    if distributed.termination_requested.is_set():  # torchrun asked this rank to stop before the loop began
        requested.set()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def ask_to_stop(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def resolve_device(name: str | None) -> str:
    """The device every command runs on: `name` checked against this machine; auto (or None) picks CUDA, then
    Apple's MPS, then the CPU."""
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
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


def save_previews(model, run_dir: Path, step: int, test: Dataset) -> None:
    """Reconstructions of fixed test examples, their upscales and samples (seed 0: the same z at every step, to
    watch one sample evolve), each where the model can draw it, as PNGs under samples/."""
    was_training = model.training
    model.eval()
    for shows, able in (("reconstructions", model.can_reconstruct), ("samples", model.can_sample),
                        ("upscales", model.can_upscale)):
        if able:
            save_picture(run_dir / "samples" / f"step-{step:08d}-{shows}.png", model, test, shows=shows,
                         title=f"{run_dir.name}, step {step}")
    model.train(was_training)


def train(run_dir: str | Path, *, device: str | None = None, data_dir: str | Path | None = None,
          progress: bool = False, stop_after: int | None = None, cpu_budget: float | None = None,
          on_log: Callable[[dict], None] | None = None) -> Path | None:
    """Train the run in `run_dir` from its latest checkpoint (or from scratch) up to config.steps.

    `stop_after` ends this call after that many steps, as an interruption would (the last
    checkpoint is what survives). `cpu_budget` (seconds of this process's CPU time, setup included)
    ends the run at the step count the budget affords (at most config.steps, which is left as it is),
    re-planned at every log step from the cost measured so far, so the run still ends properly: a final
    checkpoint, previews, a cosine schedule that reaches 0.
    Returns the path of the last checkpoint written.

    The run folder is locked for the whole call (RunInUse when another trainer has it). Resuming checks the
    latest checkpoint against config.json (see the module docstring) and refuses a damaged one, naming the
    checkpoint before it; Ctrl-C raises TrainingInterrupted saying where the run stopped.
    """
    cpu_start = time.process_time()
    if cpu_budget is not None and not (cpu_budget > 0 and math.isfinite(cpu_budget)):
        raise ValueError(f"the CPU budget must be a positive number of seconds, got {cpu_budget}")
    run_dir = Path(run_dir)
    run_config_path(run_dir)  # a folder that is no run is refused before the lock file is made in it
    with distributed.process_group(resolve_device(device)) as device:
        main = distributed.current().is_main
        with run_lock(run_dir) if main else contextlib.nullcontext():  # rank 0 writes for all
            if main:
                _remove_stale_temp_files(run_dir)
            return _train(run_dir, device, data_dir, progress and main, stop_after, cpu_budget, on_log, cpu_start)


def _train(run_dir: Path, device: str, data_dir, progress: bool, stop_after: int | None,
           cpu_budget: float | None, on_log, cpu_start: float) -> Path | None:
    loop = _start(run_dir, device, data_dir)
    start, config, ranks = loop.start, loop.config, loop.ranks
    if start >= loop.steps:
        return loop.last_checkpoint

    from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

    writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start or None) if ranks.is_main else None
    per_step = batches_per_step(loop.recipe, loop.model_config)
    batches = Batches(_on_device(loop.train_data.x, device), config.batch_size * per_step, seed=config.seed)
    autocast = autocast_for(config, device)
    stop = config.steps if stop_after is None else start + stop_after  # where this call stops at the latest
    budget = _CPUBudget(cpu_budget, cpu_start, start, config.steps) if cpu_budget is not None else None
    bar = _ProgressBar(progress, loop.family_name, config.data, total=loop.steps, completed=start)
    hooks = distributed.average_gradients(loop.optimizers) if ranks.parallel else []
    loop.model.train()
    loop.window_start = time.perf_counter()
    step = start
    try:
        with threads_for(loop.model), _stop_signals() as stop_requested:
            for step in range(start, min(loop.steps, stop)):
                x = _share(_batch(loop, batches, step), per_step, ranks)
                _set_learning_rate(loop, step)
                terms = loop.recipe.step(loop.model, loop.optimizers, x, autocast, config.accumulate)
                if ranks.parallel:
                    distributed.broadcast_buffers(loop.model)
                stopping = _guard(loop, terms, step, stop_requested.is_set())
                done = step + 1
                if _due(done, config.log_every, loop.steps):
                    if ranks.is_main:
                        _log(loop, done, batches.position(step)[0], writer, on_log, bar)
                    _replan(loop, budget, done, bar)
                if ranks.is_main and (_due(done, config.sample_every, loop.steps)
                                      or _early_preview_due(done, config, loop.steps)):
                    save_previews(loop.model, run_dir, done, loop.test_data)
                if _due(done, config.checkpoint_every, loop.steps) or stopping:
                    _checkpoint(loop, done, batches)
                if done >= min(loop.steps, stop):  # the budget moved the end closer
                    break
                if stopping:
                    raise TrainingInterrupted(f"stopped at step {done} and saved it, {loop.last_checkpoint}; "
                                              f"resume with `genlab train --resume {run_dir}`")
    except TrainingInterrupted:
        raise
    except distributed.RankLost as lost:  # torchrun stops the others when one rank dies: say so in one line
        kept = (f"the last checkpoint is {loop.last_checkpoint}" if loop.last_checkpoint
                else "no checkpoint was written yet")
        raise TrainingInterrupted(f"rank {ranks.rank} stopped at step {step}: {lost}; {kept}; resume with "
                                  f"`torchrun ... -m genlab train --resume {run_dir}`") from None
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread's handler: no time to save
        kept = (f"the last checkpoint is {loop.last_checkpoint}" if loop.last_checkpoint
                else "no checkpoint was written yet")
        raise TrainingInterrupted(f"interrupted at step {step}; {kept}; resume with "
                                  f"`genlab train --resume {run_dir}`") from None
    finally:
        for hook in hooks:
            hook.remove()
        if writer is not None:
            writer.close()
        bar.stop()
    return loop.last_checkpoint


def _on_device(x: torch.Tensor, device: str) -> torch.Tensor:
    """The whole data set in one tensor on the device (as on CPU: batches are index_selects, no loader); images in
    channels_last on CUDA, the layout its convolution kernels are fastest in (see _prepare_model)."""
    x = x.to(device)
    if torch.device(device).type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _share(x: torch.Tensor, per_step: int, ranks: distributed.Ranks) -> torch.Tensor:
    """This rank's share of a step's batches: x holds `per_step` global batches one after another, and each
    rank keeps its contiguous slice of every one of them, so the ranks' shares together are the global batch."""
    if not ranks.parallel:
        return x
    batches = x.unflatten(0, (per_step, -1))  # (per_step, batch_size, ...)
    share = batches.shape[1] // ranks.world
    return batches[:, ranks.rank * share : (ranks.rank + 1) * share].flatten(0, 1)


@dataclass
class _Loop:
    """What one call of train() carries from step to step. The run's own config is never changed: a CPU
    budget's plan lives in `steps`, saved in each checkpoint (planned_steps) so a resumed run ends there too."""

    run_dir: Path
    family_name: str
    recipe: Family
    model_config: object
    config: TrainConfig
    model: torch.nn.Module
    optimizers: dict
    train_data: Dataset
    test_data: Dataset
    record: RunRecord  # the run's record (family_name, model_config, config and a fine-tuned run's source)
    start: int = 0  # the step this call starts from
    steps: int = 0  # where the run ends: config.steps, or the CPU budget's latest plan
    sums: dict[str, float] = dataclasses.field(default_factory=dict)  # loss terms summed over the logging window
    count: int = 0  # steps in the logging window
    window_start: float = 0.0
    detector: CollapseDetector = dataclasses.field(default_factory=CollapseDetector)  # for a family's diagnostics
    last_checkpoint: Path | None = None
    ranks: distributed.Ranks = dataclasses.field(default_factory=distributed.Ranks)  # this process among torchrun's
    device: str = "cpu"


def _start(run_dir: Path, device: str, data_dir) -> _Loop:
    """Read the run, load its data, build the model and its optimizers, and resume from the latest checkpoint; a
    fine-tuned run without one yet starts from its source's weights (fresh optimizers, step 0)."""
    run = read_run_record(run_dir)  # again, now that no other trainer can change it
    family_name, model_config, config = run.family, run.model, run.train
    recipe = family(family_name)
    train_data = load_run_data(config, "train", data_dir)
    test_data = load_run_data(config, "test", data_dir)
    if train_data.shape != tuple(model_config.data_shape):
        raise ValueError(f"the data now has shape {train_data.shape} but the run was made for "
                         f"{tuple(model_config.data_shape)}: was {config.data} changed?")
    check_batches(recipe, model_config, config, train_data)
    ranks = distributed.current()
    _check_share(recipe, model_config, config, ranks)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = _prepare_model(recipe.model(model_config).to(device), config, device)
    _seed_rank(config.seed, 0, ranks)
    loop = _Loop(run_dir, family_name, recipe, model_config, config, model, recipe.optimizers(model, config.lr),
                 train_data, test_data, run, steps=config.steps, ranks=ranks, device=device)
    existing = ckpt.list_checkpoints(run_dir)
    if existing:
        checkpoint = _resume(run_dir, existing, device, run, model, loop.optimizers)
        _restore_rank_rng(checkpoint, ranks, device)
        loop.start, loop.last_checkpoint = checkpoint.step, existing[-1]
        # a checkpoint between two log lines carries the half-filled window, so the next line is unchanged
        loop.sums, loop.count = checkpoint.meta["log_window"]["sums"], checkpoint.meta["log_window"]["count"]
        loop.detector.streaks = checkpoint.meta.get("collapse_streaks", {})
        if checkpoint.record.train.steps == config.steps:  # a changed step count replaces the plan
            loop.steps = checkpoint.meta.get("planned_steps", config.steps)
        log.info("resuming %s from step %d", run_dir, loop.start)
    elif run.init_from is not None:  # a fine-tuned run's step 0: its source's weights, fresh optimizers
        load_source_weights(model, run.init_from)
        log.info("fine-tuning from %s (step %d)", run.init_from.path, run.init_from.step)
    if ranks.is_main:
        _truncate_metrics(run_dir / "metrics.jsonl", loop.start)
    return loop


def _check_share(recipe: Family, model_config, config: TrainConfig, ranks: distributed.Ranks) -> None:
    """Under torchrun each rank takes batch_size / world examples of every batch, and splits them into `accumulate`
    micro-batches: both must divide, and a micro-batch must be a batch the family takes (PacGAN's whole packs)."""
    parts = ranks.world * config.accumulate
    if parts == 1:
        return
    processes = f"{ranks.world} processes x " if ranks.parallel else ""
    split = (f"{ranks.world} processes" if config.accumulate == 1
             else f"{parts} micro-batches ({processes}accumulate={config.accumulate})")
    if config.batch_size % parts:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) does not split over {split}: "
                         f"use a multiple of {parts}")
    if recipe.check_batch_size is not None:
        try:
            recipe.check_batch_size(model_config, config.batch_size // parts)
        except ValueError as error:
            raise ValueError(f"each of the {split} takes {config.batch_size // parts} examples of a batch, "
                             f"and {error}") from None


def _prepare_model(model: torch.nn.Module, config: TrainConfig, device: str) -> torch.nn.Module:
    """The GPU path's settings: TF32 matmuls and convolutions and channels_last convolution nets on CUDA; each
    network compiled (in place, so its weights keep their names in checkpoints) when config.compile asks."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls on tensor cores: 10-bit mantissa products
        torch.backends.cudnn.allow_tf32 = True
        if any(isinstance(module, torch.nn.Conv2d) for module in model.modules()):
            model = model.to(memory_format=torch.channels_last)
    if config.compile:
        for network in model.children():
            if any(True for _ in network.parameters()):
                network.compile()
    return model


def _seed_rank(seed: int, step: int, ranks: distributed.Ranks) -> None:
    """Give ranks 1.. their own random streams (noise, timesteps, latents), each a pure function of (seed, step,
    rank); rank 0 keeps the stream a lone process has."""
    if ranks.rank > 0:
        torch.manual_seed((seed * 1_000_003 + step * 1009 + ranks.rank) % 2**64)


def _rng_state(device: str) -> dict[str, str]:
    state = {"torch": bytes(torch.get_rng_state().tolist()).hex()}
    if torch.device(device).type == "cuda":
        state["cuda"] = bytes(torch.cuda.get_rng_state(device).tolist()).hex()
    return state


def _restore_rank_rng(checkpoint: ckpt.Checkpoint, ranks: distributed.Ranks, device: str) -> None:
    """Rank r > 0 takes back its own random stream from the checkpoint (rank 0's is the checkpoint's own). A
    checkpoint saved by another number of processes has no stream for this rank: it gets a fresh one, so the
    run goes on exactly as far as the batches go (the same global batches) but not in its random draws."""
    if ranks.rank == 0:
        return
    saved = checkpoint.meta.get("rank_rng_states") or []
    if len(saved) != ranks.world:
        log.warning("%s was saved by %d process(es), not %d: rank %d draws fresh random numbers from here",
                    checkpoint.path.name, max(len(saved), 1), ranks.world, ranks.rank)
        _seed_rank(checkpoint.record.train.seed, checkpoint.step, ranks)
        return
    state = saved[ranks.rank]
    torch.set_rng_state(torch.tensor(list(bytes.fromhex(state["torch"])), dtype=torch.uint8))
    if "cuda" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(torch.tensor(list(bytes.fromhex(state["cuda"])), dtype=torch.uint8), device)


def _due(done: int, every: int, steps: int) -> bool:
    """Whether a logging, preview or checkpoint cadence falls on step `done`: every `every` steps, and the last."""
    return done % every == 0 or done == steps


# One early preview, at the first log step, when the regular ones start more than this many log lines later: a
# 300-step ring run (previews every 500, logs every 50) showed nothing until it ended.
EARLY_PREVIEW_LOG_LINES = 4


def _early_preview_due(done: int, config: TrainConfig, steps: int) -> bool:
    """Whether step `done` is the first log step and the first regular preview is still far off."""
    return done == config.log_every and min(config.sample_every, steps) > EARLY_PREVIEW_LOG_LINES * config.log_every


def _batch(loop: _Loop, batches: Batches, step: int) -> torch.Tensor:
    """Batch `step` of the run (a pure function of the seed and the step), binarised when the config says so."""
    x = batches.batch(step)
    return torch.bernoulli(x) if loop.config.binarize else x


def _set_learning_rate(loop: _Loop, step: int) -> None:
    if loop.config.lr_schedule == "constant":
        return
    factor = learning_rate_factor(loop.config, step, loop.steps)
    for optimizer in loop.optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * factor


def _diverged(loop: _Loop, what: str, step: int) -> TrainingDiverged:
    kept = (f"the last good checkpoint is {loop.last_checkpoint}" if loop.last_checkpoint
            else "no checkpoint was written")
    advice = (f"Lower the learning rate and resume: genlab train --resume {loop.run_dir} --set lr=..."
              if loop.last_checkpoint else "Start again with a lower learning rate (--set lr=...)")
    return TrainingDiverged(f"{what} at step {step + 1}; {kept}. {advice}")


def _guard(loop: _Loop, terms: dict[str, torch.Tensor], step: int, stop_requested: bool) -> bool:
    """Stop on a NaN, infinite or huge loss (MAX_LOSS); otherwise add the terms to the logging window. Returns
    whether the run was asked to stop (a signal). Under torchrun the terms are the mean over the ranks (the
    global batch's loss) and the stop is asked when any rank was asked, so every rank decides the same."""
    if loop.ranks.parallel:
        shared = torch.stack([value.detach().double() for value in terms.values()]
                             + [torch.tensor(float(stop_requested), dtype=torch.double, device=loop.device)])
        *means, stop_requested = distributed.mean_over_ranks(shared).tolist()
        values = dict(zip(terms, means, strict=True))
        stop_requested = stop_requested > 0
    else:
        values = {name: value.item() for name, value in terms.items()}
    if exploded := [f"{name} = {value:.4g}" for name, value in values.items()
                    if not (math.isfinite(value) and abs(value) <= MAX_LOSS)]:
        raise _diverged(loop, ", ".join(exploded), step)
    for name, value in values.items():
        loop.sums[name] = loop.sums.get(name, 0.0) + value
    loop.count += 1
    return stop_requested


def _log(loop: _Loop, done: int, epoch: int, writer, on_log, bar: _ProgressBar) -> None:
    """One metrics line (the window's mean terms, throughput, the family's diagnostics) to metrics.jsonl,
    tensorboard, on_log and the progress bar; then a new window starts."""
    elapsed = time.perf_counter() - loop.window_start
    record = {"step": done, "epoch": epoch, **{name: total / loop.count for name, total in loop.sums.items()},
              "images_per_s": loop.count * loop.config.batch_size / max(elapsed, 1e-9)}
    if loop.recipe.diagnostics is not None and done >= loop.steps // 5:  # quiet before G has learned anything
        _check_collapse(loop.detector, loop.recipe.diagnostics, loop.model, loop.train_data, record)
    with (loop.run_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    for name, value in record.items():
        if name not in ("step", "epoch", "warning"):
            writer.add_scalar(name, value, done)
    if on_log:
        on_log(record)
    bar.show(record)
    loop.sums, loop.count, loop.window_start = {}, 0, time.perf_counter()


def _replan(loop: _Loop, budget: _CPUBudget | None, done: int, bar: _ProgressBar) -> None:
    """A CPU budget re-plans the end at each log step. A plan may grow as well as shrink (the first steps cost
    the most), so the end follows it."""
    if budget is not None and done < loop.steps:
        affordable = budget.affordable_steps(done)
        # each rank measures its own CPU time: the plan of the one that can afford least holds for all
        loop.steps = distributed.min_over_ranks(affordable, loop.device) if loop.ranks.parallel else affordable
        bar.set_total(loop.steps)


def _checkpoint(loop: _Loop, done: int, batches: Batches) -> None:
    """Save the model, optimizers, RNG states and loop state at step `done`, then prune old checkpoints; a
    non-finite weight or optimizer state stops the run instead (TrainingDiverged). Under torchrun rank 0 writes
    it, with every rank's random state, and every rank learns whether it was written."""
    epoch, batch_index = batches.position(done)
    meta = {"run": loop.record.to_json(), "step": done,
            "planned_steps": loop.steps,
            "data_position": {"epoch": epoch, "batch": batch_index},
            "log_window": {"sums": loop.sums, "count": loop.count}, "collapse_streaks": loop.detector.streaks}
    if loop.ranks.parallel:
        meta["rank_rng_states"] = distributed.gather_objects(_rng_state(loop.device))
    path = ckpt.checkpoint_path(loop.run_dir, done)

    def save() -> None:
        try:
            ckpt.save_checkpoint(path, meta=meta, model=loop.model, optimizers=loop.optimizers)
        except ckpt.NonFiniteTensors as error:  # finite losses, but the last update overflowed
            raise _diverged(loop, f"the weights diverged ({error})", done - 1) from None
        ckpt.prune_checkpoints(loop.run_dir, loop.config.keep_checkpoints)

    distributed.shared(save)
    loop.last_checkpoint = path


def _resume(run_dir: Path, existing: list[Path], device: str, record: RunRecord, model,
            optimizers) -> ckpt.Checkpoint:
    """Load the latest checkpoint into the model and optimizers, after checking that config.json still says
    what it was saved with. A damaged checkpoint is refused, never skipped silently: the message names the
    one before it, which the user can resume from by moving the damaged one aside."""
    latest = existing[-1]
    try:
        checkpoint = ckpt.load_checkpoint(latest, device)
    except ckpt.DamagedCheckpoint as error:
        raise _damaged_latest(error, existing) from None
    if edits := record.edits_since(checkpoint.record):
        wanted = " ".join(f"--set {key}={_as_setting(now)}" for key, _, now in edits
                          if key not in ("family", "init_from"))
        raise ValueError(f"{run_dir / 'config.json'} was edited since {latest.name} was saved: "
                         f"{', '.join(f'{key} {saved} -> {now}' for key, saved, now in edits)}; resume uses the "
                         f"run's configuration: put the values back, or start a new run with {wanted or 'the family'}")
    try:
        # The learning rates are the record's (a resume may lower them: RESUMABLE), not those saved with the
        # optimizers' state; unchanged, they are the same numbers, so resuming stays bit-identical.
        configured = {name: [group["lr"] for group in optimizer.param_groups] for name, optimizer in optimizers.items()}
        ckpt.restore(checkpoint, model, optimizers, restore_rng=True)
        for name, optimizer in optimizers.items():
            for group, lr in zip(optimizer.param_groups, configured[name], strict=True):
                group["lr"] = lr
                group.pop("base_lr", None)  # the cosine schedule's base: taken again from lr at the next step
        window, streaks = checkpoint.meta.get("log_window"), checkpoint.meta.get("collapse_streaks", {})
        planned = checkpoint.meta.get("planned_steps", checkpoint.step)  # absent before plans were loop state
        if not _is_log_window(window) or not isinstance(streaks, dict) or not all(
                isinstance(v, int) for v in streaks.values()) or not (
                type(planned) is int and checkpoint.step <= planned <= checkpoint.record.train.steps):
            raise ckpt.DamagedCheckpoint(latest, "has damaged genlab metadata (log_window, collapse_streaks or "
                                         "planned_steps)")
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


def _check_collapse(detector: CollapseDetector, diagnostics, model, train_data: Dataset, record: dict) -> None:
    """Run the family's collapse checks into `record`. A diagnostic never ends a run: if one fails, that is
    logged."""
    try:
        warning = detector.update(*diagnostics(model, train_data, record))
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


class _ProgressBar:
    """The terminal's progress bar, or nothing when progress is off."""

    def __init__(self, enabled: bool, family_name: str, data: str, total: int, completed: int):
        self.bar = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(f"[bold]{family_name}[/] on {data}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[terms]}"))
        self.bar.start()
        self.task = self.bar.add_task("train", total=total, completed=completed, terms="")

    def show(self, record: dict) -> None:
        if self.bar is None:
            return
        shown = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "epoch", "warning"))
        if "warning" in record:
            shown += f"  [red]{escape(record['warning'])}[/]"
        self.bar.update(self.task, completed=record["step"], terms=shown)

    def set_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, total=total)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
