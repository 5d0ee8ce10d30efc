"""The one record of a run, and open_run(): what every command, the lab and eval start from.

A run is a folder:  config.json  metrics.jsonl  checkpoints/step-*.safetensors  samples/*.png  tensorboard/
Its record (RunRecord: family, model config, train config; the train config names the data; for a fine-tuned run
the checkpoint its weights started from) is stored in one layout, `{"family", "model", "train"[, "init_from"]}`,
in config.json and under the key "run" of every checkpoint's metadata, and read back through RunRecord.from_json,
which checks every setting once (check_fields, via the configs).

config.json is written once by create_run and changed only by genlab: a resume may change the settings in
RESUMABLE (learning rates, steps, how often it logs, previews and saves) through change_run_settings.
Resuming compares config.json with the record in the latest checkpoint and refuses, naming the settings,
when any other setting differs (RunRecord.edits_since): config.json was edited by hand.

A run folder is locked (flock on train.lock) while one trainer writes into it: a second trainer, another
process or another thread of the lab, gets RunInUse. The kernel drops the lock when its process dies,
so a killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genlab import checkpoint as ckpt
from genlab.config import check_fields, parse_config, to_json_dict
from genlab.data import Dataset, load_dataset
from genlab.models import Family, family_classes
from genlab.models import family as family_record

if TYPE_CHECKING:
    from genlab.train import TrainConfig

log = logging.getLogger(__name__)

RECORD_KEYS = ("family", "model", "train")  # and "init_from", in the records of fine-tuned runs only
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Source:
    """The checkpoint a fine-tuned run's weights started from (`genlab train --init-from`)."""

    path: str  # the checkpoint file, absolute, as it was when the run was made
    step: int  # the step its run had reached
    sha256: str  # of the file: a run that starts (again) before its first checkpoint refuses a source that changed

    def __post_init__(self):
        check_fields(self, {"step": (0, 10**9)})
        if not SHA256_HEX.fullmatch(self.sha256):
            raise ValueError(f"sha256={self.sha256!r} is not a SHA-256 in hex")


@dataclass(frozen=True)
class RunRecord:
    """What a run is: its model family, the family's config (data_shape included) and the train config; for a
    fine-tuned run, the checkpoint its weights started from."""

    family: str
    model: Any  # the family's config dataclass, e.g. VAEConfig
    train: TrainConfig
    init_from: Source | None = None  # None: the weights started from the family's own initialisation

    def to_json(self) -> dict[str, Any]:
        values = {"family": self.family, "model": to_json_dict(self.model), "train": to_json_dict(self.train)}
        if self.init_from is not None:
            values["init_from"] = dataclasses.asdict(self.init_from)
        return values

    @classmethod
    def from_json(cls, values: Any, where: str = "") -> RunRecord:
        """The record from its JSON object; ValueError naming the part that does not fit (`where` prefixes the
        part's name: "run." in a checkpoint's metadata, nothing in config.json)."""
        from genlab.train import TrainConfig  # train.py imports this module: TrainConfig is read when called

        if not isinstance(values, dict):
            raise ValueError(f"{where.rstrip('.') or 'the run record'} is not a JSON object")
        if missing := [key for key in RECORD_KEYS if key not in values]:
            raise ValueError(f"no {', '.join(where + key for key in missing)}")
        _, config_class = family_classes(str(values["family"]))
        init_from = values.get("init_from")
        return cls(str(values["family"]), parse_config(config_class, values["model"], f"{where}model"),
                   parse_config(TrainConfig, values["train"], f"{where}train"),
                   None if init_from is None else parse_config(Source, init_from, f"{where}init_from"))

    def build_model(self) -> torch.nn.Module:
        model_class, _ = family_classes(self.family)
        return model_class(self.model)

    def edits_since(self, saved: RunRecord) -> list[tuple[str, object, object]]:
        """(key, saved, now) for each setting that differs from `saved`, but those a resume may change."""
        if saved.family != self.family:
            return [("family", saved.family, self.family)]
        if saved.init_from != self.init_from:  # the weights came from the saved source, whatever config.json says
            return [("init_from", saved.init_from, self.init_from)]
        before = {**to_json_dict(saved.model), **to_json_dict(saved.train)}
        now = {**to_json_dict(self.model), **to_json_dict(self.train)}
        return [(key, before[key], now[key]) for key in now if key not in RESUMABLE and before[key] != now[key]]


def load_run_data(config: TrainConfig, split: str, data_dir: str | Path | None = None) -> Dataset:
    """A split of the run's data, as training saw it: its image_size, channels, crop and seed, from `data_dir` when
    given, else from where the run found it (loaded once inside a `loading_once()` block)."""
    data_dir = data_dir if data_dir is not None else config.data_dir
    key = (config.data, split, str(data_dir), config.image_size, config.channels, config.crop, config.seed)
    loaded = _loaded.get()
    if loaded is not None and key in loaded:
        return loaded[key]
    data = load_dataset(config.data, split, data_dir=data_dir, image_size=config.image_size,
                        channels=config.channels, crop=config.crop, seed=config.seed)
    if loaded is not None:
        loaded[key] = data
    return data


_loaded: contextvars.ContextVar[dict | None] = contextvars.ContextVar("loaded_run_data", default=None)


@contextlib.contextmanager
def loading_once():
    """Within the block, each split of a run's data is loaded once: `create_run` loads it to refuse a bad start
    before writing anything, and the `train()` that follows trains on the same tensors (a folder of images is
    decoded once, not twice). Outside any block nothing is kept, so a long-lived process (the lab) holds no
    data between runs and sees a folder's new images. A block inside another shares the outer one's data."""
    if _loaded.get() is not None:
        yield
        return
    token = _loaded.set({})
    try:
        yield
    finally:
        _loaded.reset(token)


# --- the run folder ----------------------------------------------------------------------------------


class RunInUse(RuntimeError):
    """Another trainer (process, or thread of this process) holds the run folder's lock."""


LOCK_FILE = "train.lock"
LOCK_ATTEMPTS = 3  # tries, 10 ms apart, before a held lock is RunInUse


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold `run_dir`'s lock while writing into it; RunInUse at once when another trainer holds it.

    flock belongs to an open file description: the kernel releases it when the process dies however it dies
    (a stale lock never blocks), and two descriptions conflict even within one process, so two threads of
    the lab exclude each other as two processes do. The lock file stays: deleting it would let a third
    trainer lock a new file while the first still holds the old one.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        for attempt in range(LOCK_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == LOCK_ATTEMPTS - 1:
                    raise RunInUse(f"{run_dir} is being trained by another genlab (process or lab run): wait "
                                   f"for it to end or stop it, then resume with `genlab train --resume {run_dir}`"
                                   ) from None
                time.sleep(0.01)  # a run_is_training probe holds the lock for microseconds: not a trainer
        yield
    finally:
        os.close(fd)  # releases the lock


def run_is_training(run_dir: str | Path) -> bool:
    """Whether some process (a `genlab train`, or a lab's run) holds `run_dir`'s lock now, i.e. trains it.

    A non-blocking shared flock probe, released at once: it never waits, and it fails exactly while a trainer
    holds the exclusive lock. (run_lock retries briefly, so a trainer starting during a probe is not refused.)"""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: nothing ever trained here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock


def create_run(run_dir: str | Path, family: str, train_config: TrainConfig, model_settings: dict,
               data_dir: str | Path | None = None, *, init_from: str | Path | None = None) -> Path:
    """Make a new run folder with its config.json; the model config takes its data shape from the data.

    `init_from` (a run folder: its latest checkpoint; or a checkpoint file) fine-tunes: the new run starts at
    step 0 with fresh optimizers from that checkpoint's weights, its model settings are the source's but those
    `model_settings` may change (fine_tuning_settings), and its data must have the source's shape.

    Everything a first step needs is checked before anything is written (the data loads, the model builds,
    a step's batches fit in the data, a source's weights fit), so a refused command leaves no folder behind.
    A folder whose run never got going (config.json, but no checkpoint and no metrics: its first steps failed
    or were interrupted) is replaced, so the corrected command just works; one that trained is refused.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run {run_dir} is a file: choose a folder name")
    _, config_class = family_classes(family)
    if "data_shape" in model_settings:
        raise ValueError("data_shape is read from the data, not set: drop it (image_size and channels resize "
                         "image folders)")
    source = None
    if init_from is not None:
        source, source_record = read_source(init_from)
        model_settings = fine_tuning_settings(source_record, family, model_settings)
    train_data = load_run_data(train_config, "train", data_dir)
    test_data = load_run_data(train_config, "test", data_dir)
    if source is not None and train_data.shape != tuple(source_record.model.data_shape):
        raise ValueError(f"{train_config.data} has examples of shape {train_data.shape}, but {source.path} was "
                         f"trained on {tuple(source_record.model.data_shape)}: fine-tuning needs data of the same "
                         "shape (image folders: --set image_size=... --set channels=...)")
    record = RunRecord(family, config_class(**{**model_settings, "data_shape": train_data.shape}), train_config,
                       source)
    check_batches(family_record(family), record.model, train_config, train_data)
    if len(test_data) == 0:
        raise ValueError(f"{train_config.data} has no test examples, which previews and eval need: add data")
    model = record.build_model()  # a network the config describes but torch cannot build fails here, not at step 1
    if source is not None:
        load_source_weights(model, source)  # the source's weights fit this network (and the file is unchanged)
    with run_lock(run_dir):
        if (run_dir / "config.json").exists() and has_trained(run_dir):
            raise FileExistsError(f"{run_dir} already holds a run: resume it with --resume {run_dir} "
                                  "or pick another --run")
        write_run_record(run_dir, record)
    return run_dir


# --- fine-tuning: a new run from another run's weights ------------------------------------------------

# Model settings that shape a network or what its outputs mean (every family's): a fine-tuned run keeps the
# source's. Every other model setting (a loss, its weights, an EMA decay, FreezeD's freeze_d...) may change;
# whether the network still fits the source's weights is then checked on the weights themselves.
ARCHITECTURE = frozenset({"data_shape", "architecture", "latent_dim", "hidden_dims", "conv_channels", "output",
                          "spectral_norm", "pack", "minibatch_stddev", "likelihood", "code_activation",
                          "num_timesteps", "unet_channels", "num_codes", "mlp_codes"})


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_source(run_or_checkpoint: str | Path) -> tuple[Source, RunRecord]:
    """(Source, its run's record) for a run folder (its latest checkpoint) or a checkpoint file; the metadata is
    checked, the weights are not read."""
    path = ckpt.resolve_checkpoint(run_or_checkpoint).resolve()
    meta, record = ckpt.read_meta_and_record(path)
    return Source(str(path), meta["step"], sha256_of(path)), record


def fine_tuning_settings(source: RunRecord, family: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The model settings of a run fine-tuned from `source`: the source's, with `changes` to those that do not
    shape the network; ValueError naming what may change otherwise."""
    if family != source.family:
        raise ValueError(f"--init-from holds a {source.family} model, not a {family}: fine-tune it as a "
                         f"{source.family} (`genlab train {source.family} --init-from ...`)")
    settings = {key: value for key, value in to_json_dict(source.model).items() if key != "data_shape"}
    if refused := sorted(set(changes) & ARCHITECTURE):
        may = sorted(set(settings) - ARCHITECTURE)
        raise ValueError(f"a fine-tuned run keeps its source's network: it cannot change {', '.join(refused)}; "
                         f"it may change {', '.join(may) or 'no model setting'} and every training setting")
    return {**settings, **changes}


def load_source_weights(model: torch.nn.Module, source: Source) -> None:
    """Load a fine-tuned run's starting weights (its source checkpoint's, through genlab.checkpoint: safetensors,
    no pickle) into `model`; ValueError when the file changed since the run was made or its weights do not fit
    the network (a setting that adds or drops weights, such as an EMA copy or D's BatchNorm). A family with a
    `start_from` hook chooses the weights itself (superres: a GAN stage takes a PSNR run's generator, D fresh)."""
    path = Path(source.path)
    if not path.is_file():
        raise FileNotFoundError(f"the source checkpoint {path} of this fine-tuned run is gone: put it back, or "
                                "start a new run")
    if sha256_of(path) != source.sha256:
        raise ValueError(f"the source checkpoint {path} changed since this fine-tuned run was made (its SHA-256 "
                         "differs): put the original back, or start a new run from the new one")
    checkpoint = ckpt.load_checkpoint(path)
    if (start_from := family_record(checkpoint.record.family).start_from) is not None:
        start_from(model, checkpoint)  # the family says which of the source's weights this network takes
        return
    # Buffers are state, not learned weights (ADA's augmentation strength and its tallies, say): one this network
    # has and the source's lacks keeps its initial value, one only the source's has is dropped, so a fine-tuned
    # run may switch such a setting on or off. Every learned weight must be there, with its shape.
    source_buffers = {name for name, _ in checkpoint.record.build_model().named_buffers()}
    own_buffers = dict(model.named_buffers())
    tensors = {name: tensor for name, tensor in checkpoint.tensors.items()
               if name.removeprefix("model.") not in source_buffers - own_buffers.keys()}
    tensors.update({f"model.{name}": own_buffers[name].detach().cpu() for name in own_buffers.keys() - source_buffers})
    try:
        ckpt.restore(dataclasses.replace(checkpoint, tensors=tensors), model)
    except ckpt.DamagedCheckpoint as error:
        raise ValueError(f"the weights of {path} do not fit this run's network ({error.problem.split('(', 1)[-1]}"
                         ": keep the source's settings for what adds or drops weights") from None


def batches_per_step(recipe: Family, model_config) -> int:
    """How many real batches one step of the family takes (a GAN's n_critic D updates take one each)."""
    return recipe.batches_per_step(model_config) if recipe.batches_per_step is not None else 1


def check_batches(recipe: Family, model_config, train_config: TrainConfig, data: Dataset) -> None:
    """The family can take the batch size, and a step's batches fit in the training split."""
    if recipe.check_batch_size is not None:
        recipe.check_batch_size(model_config, train_config.batch_size)
    per_step = batches_per_step(recipe, model_config)
    if train_config.batch_size * per_step > len(data):
        most = len(data) // per_step
        times = f" x {per_step} batches a step" if per_step > 1 else ""
        raise ValueError(f"batch_size {train_config.batch_size}{times} "
                         f"is more than the {len(data)} training examples of {train_config.data}: "
                         f"use --set batch_size={most} or less")


def has_trained(run_dir: Path) -> bool:
    """Whether a run folder holds anything of a training session: a checkpoint or a metrics line."""
    metrics = run_dir / "metrics.jsonl"
    return bool(ckpt.list_checkpoints(run_dir)) or (metrics.exists() and metrics.stat().st_size > 0)


def write_run_record(run_dir: Path, record: RunRecord) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_bytes(run_dir / "config.json", (json.dumps(record.to_json(), indent=2) + "\n").encode())


MAX_CONFIG_BYTES = 1_000_000  # genlab writes ~2 kB; a bigger config.json is not one of ours, so it is not read


def run_config_path(run_dir: str | Path) -> Path:
    """The config.json of a run folder; FileNotFoundError when `run_dir` is no run (nothing is read)."""
    path = Path(run_dir) / "config.json"
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a run's config file")
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json)")
    return path


def read_run_record(run_dir: str | Path) -> RunRecord:
    """A run folder's record from its config.json; ValueError naming config.json when it is damaged."""
    path = run_config_path(run_dir)
    advice = "put back the file genlab wrote (`genlab info RUN` shows the configuration its checkpoints hold)"
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, too large for a run's configuration: {advice}")
    try:
        values = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, or nested deeper than json recurses
        raise ValueError(f"{path} is not valid JSON ({error}): {advice}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} is not a JSON object: {advice}")
    try:
        return RunRecord.from_json(values)
    except ValueError as error:
        text = str(error)
        raise ValueError(f"{path} has {text}: {advice}" if text.startswith("no ") else
                         f"{path}: {text}; {advice}") from None


# What a resumed run may change (`genlab train --resume RUN --set lr=...`): how fast it learns, how long it
# runs and how often it reports. None of them changes what the weights or the optimizer's state mean; every
# other setting does (a new latent_dim no longer fits the weights), so changing it is a new run.
# (data_dir too: data sets move, and the run checks the data's shape on every start.)
RESUMABLE = frozenset({"steps", "lr", "lr_d", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                       "data_dir"})


def change_run_settings(run_dir: str | Path, settings: dict[str, Any]) -> RunRecord:
    """Change settings of a run that a resume may change (RESUMABLE), e.g. a lower lr after a divergence or
    more steps; checked, then written to config.json. Any other setting is refused with the list."""
    if refused := sorted(set(settings) - RESUMABLE):
        raise ValueError(f"a resumed run cannot change {', '.join(refused)}: its weights were trained with them; "
                         f"start a new run instead. A resume may change {', '.join(sorted(RESUMABLE))}")
    with run_lock(Path(run_dir)):
        record = read_run_record(run_dir)
        train_fields = {field.name for field in dataclasses.fields(record.train)}
        changed = dataclasses.replace(
            record,
            model=dataclasses.replace(record.model, **{k: v for k, v in settings.items() if k not in train_fields}),
            train=dataclasses.replace(record.train, **{k: v for k, v in settings.items() if k in train_fields}))
        write_run_record(Path(run_dir), changed)
    return changed


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl, in order. A line that is not a JSON object with an integer step (one
    torn by a crash, or edited) is skipped with a warning naming the file and line."""
    records = []
    if not path.is_file():
        return records
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()  # a line without its newline is being written now (the lab reads while a run trains)
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            records.append(record)
        elif line.strip():
            log.warning("%s line %d is not a metrics record (torn by a crash, or edited): skipped", path, number)
    return records


# --- open_run: a trained model with its record and its data -------------------------------------------


@dataclass(frozen=True)
class OpenRun:
    """A checkpoint opened for use: the model (eval mode), the run's record, the checkpoint's metadata (step,
    data_position, versions...) and the run's own data splits, loaded once each."""

    path: Path  # the checkpoint file
    record: RunRecord
    model: torch.nn.Module
    meta: dict[str, Any]
    data: dict[str, Dataset]

    @property
    def step(self) -> int:
        return self.meta["step"]

    @property
    def folder(self) -> Path:
        """The run folder the checkpoint belongs to (where eval.json and pictures go)."""
        return self.path.parent.parent


def save_model(model: torch.nn.Module, path: Path) -> Path:
    """Save a model built or trained outside `train()` as a checkpoint `open_run` reads: its family is found
    from its class, its record holds its config and the default training settings (nothing was trained through
    genlab, so there is nothing to resume: the checkpoint has no optimizer state)."""
    from genlab.models import FAMILIES
    from genlab.train import TrainConfig  # train.py imports this module

    names = [name for name, family in FAMILIES.items() if type(model) is family.model]
    if not names:
        raise ValueError(f"{type(model).__name__} is not a genlab model: save one of "
                         f"{', '.join(family.model.__name__ for family in FAMILIES.values())}")
    record = RunRecord(names[0], model.config, TrainConfig())
    meta = {"run": record.to_json(), "step": 0, "data_position": {"epoch": 0, "batch": 0}}
    ckpt.save_checkpoint(path, meta=meta, model=model, optimizers={})
    return path


def open_run(run_or_checkpoint: str | Path, *, device: str | torch.device = "cpu",
             data_dir: str | Path | None = None, splits: tuple[str, ...] = ("test",)) -> OpenRun:
    """Open a run folder (its latest checkpoint) or a checkpoint file: the model with its weights, in eval
    mode on `device`, and `splits` of the run's data loaded as training loaded them."""
    path = ckpt.resolve_checkpoint(run_or_checkpoint)
    checkpoint = ckpt.load_checkpoint(path, device)
    record = checkpoint.record
    model = record.build_model().to(device)
    ckpt.restore(checkpoint, model)
    if (load_run_files := family_record(record.family).load_run_files) is not None:
        load_run_files(model, path, checkpoint.step)  # what the family keeps beside the checkpoints (the AE's sampler)
    data = {split: load_run_data(record.train, split, data_dir) for split in splits}
    return OpenRun(path, record, model.eval(), checkpoint.meta, data)
