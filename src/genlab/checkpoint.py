"""Self-describing checkpoints: one safetensors file per checkpoint, nothing unpickled on load.

Tensors: `model.<name>` (weights), `optimizer.<opt>.<param index>.<key>` (optimizer state),
`rng.torch` / `rng.cuda.<i>` (generator states). Metadata key "genlab": JSON with the format
version, model family, model and train configs, step, data position and optimizer hyperparameters.
Files are written to a temp file, fsynced and renamed, so a crash never leaves half a checkpoint.

Every file is checked as it is read: a damaged or edited checkpoint raises DamagedCheckpoint (a ValueError)
naming the file and what is wrong with it, never an error from deep inside safetensors, json or
load_state_dict. A checkpoint holding a non-finite number is neither written nor loaded: only a diverged
run makes one, and resuming or sampling from it would silently give NaNs.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

import genlab
from genlab.config import one_line

FORMAT_VERSION = 1
CHECKPOINT_NAME = re.compile(r"step-(\d+)\.safetensors$")


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]  # format_version, genlab_version, run, step, data_position, ...
    tensors: dict[str, torch.Tensor]
    record: Any  # the run's RunRecord, parsed from meta["run"] as the file was read

    @property
    def step(self) -> int:
        return self.meta["step"]

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        return {name[len(prefix):]: t for name, t in self.tensors.items() if name.startswith(prefix)}


class DamagedCheckpoint(ValueError):
    """A checkpoint file that cannot be used as it is; `problem` says why (without the file's name), `advice`
    what to do. Resuming replaces the advice with the name of the checkpoint before it."""

    def __init__(self, path: Path, problem: str, advice: str = "use an earlier checkpoint"):
        super().__init__(f"{path} {problem}: {advice}")
        self.path, self.problem = Path(path), problem


class NonFiniteTensors(ValueError):
    """save_checkpoint was given a state holding NaN or infinity; nothing was written."""


def nonfinite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, rename: readers see the old file or the new one.
    An OSError names `path`, not the temp file (a full disk fails in write() or fsync(), which name none)."""
    try:
        _write_then_rename(Path(path), data)
    except OSError as error:
        if not error.strerror:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from None  # OSError picks the errno's subclass


def _write_then_rename(path: Path, data: bytes) -> None:
    if path.is_dir():  # else the rename fails naming the temp file, which tells the user nothing
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if path.exists() and not path.is_file():  # a device or a FIFO: the rename would replace it with our file
        raise ValueError(f"{path} is not a regular file (a device, a pipe or a socket): give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


TEMP_NAME_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # as mkstemp's; train.STALE_TEMP_FILES matches them


def _create_temp_file(path: Path) -> tuple[int, Path]:
    """A new `.<name>.<8 characters>.tmp` beside `path`, as mkstemp makes them, but created with mode 0666 so the
    process's umask decides who may read it (mkstemp's 0600 made every run file private to its writer; reading
    the umask means setting it, which is not safe while the lab's threads create files)."""
    while True:
        tmp = path.parent / f".{path.name}.{''.join(secrets.choice(TEMP_NAME_CHARACTERS) for _ in range(8))}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue  # 37^8 names: another writer's, in practice never


def _optimizer_tensors(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    state = optimizer.state_dict()
    tensors = {}
    for index, param_state in state["state"].items():
        for key, value in param_state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optimizer.{name}.{index}.{key}"] = tensor.detach().cpu().contiguous()
    return tensors, state["param_groups"]


def save_checkpoint(path: Path, *, meta: dict[str, Any], model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Save weights, optimizer states and RNG states with `meta` (the run record, step...) atomically.
    NonFiniteTensors, and nothing written, when a weight or optimizer state holds NaN or infinity."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    groups = {}
    for name, optimizer in optimizers.items():
        optimizer_tensors, groups[name] = _optimizer_tensors(name, optimizer)
        tensors.update(optimizer_tensors)
    if bad := nonfinite(tensors):
        raise NonFiniteTensors(f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} hold non-finite values")
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    full_meta = {"format_version": FORMAT_VERSION, "genlab_version": genlab.__version__, **meta,
                 "optimizer_param_groups": groups}
    data = safetensors.torch.save(tensors, metadata={"genlab": json.dumps(full_meta)})
    atomic_write_bytes(path, data)


# What every reader needs; resuming needs more (log_window, RNG and optimizer state), checked when it resumes.
REQUIRED_META = ("run", "step", "data_position", "optimizer_param_groups")


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON description of a checkpoint (see read_meta_and_record)."""
    return read_meta_and_record(path)[0]


def read_meta_and_record(path: Path) -> tuple[dict[str, Any], Any]:
    """(meta, RunRecord): the JSON description of a checkpoint, without reading its tensors; checked, so that
    its record and step are usable as they are (DamagedCheckpoint otherwise), with every setting of the configs
    present (a checkpoint older than a setting gets its default)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a checkpoint file: give a run folder or a .safetensors file")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for every kind of damage
        raise DamagedCheckpoint(path, f"is not a readable safetensors checkpoint ({one_line(error)}); "
                                      "it may be truncated") from None
    if "genlab" not in metadata:
        raise DamagedCheckpoint(path, "is a safetensors file but not a genlab checkpoint (no 'genlab' metadata)",
                                "give a checkpoint genlab wrote")
    try:
        meta = json.loads(metadata["genlab"])
    except (json.JSONDecodeError, RecursionError) as error:
        raise DamagedCheckpoint(path, f"has damaged genlab metadata ({error})") from None
    return meta, _check_meta(path, meta)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_meta(path: Path, meta: Any):
    """The run's RunRecord, once the metadata is checked; DamagedCheckpoint otherwise."""
    def damaged(what: str) -> DamagedCheckpoint:
        return DamagedCheckpoint(path, f"has damaged genlab metadata ({what})")

    if not isinstance(meta, dict):
        raise damaged("not a JSON object")
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise damaged(f"format_version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {version}, newer than this genlab reads "
                         f"({FORMAT_VERSION}): upgrade genlab")
    # Checkpoints written before the run record had one (genlab 0.x, format 1 all the same) hold its three
    # parts as top-level keys: this is the one place that reads them, as the record they are.
    if "run" not in meta and "family" in meta:
        old = {"family": "family", "model": "model_config", "train": "train_config"}
        meta["run"] = {new: meta.pop(key) for new, key in old.items() if key in meta}
    if missing := [key for key in REQUIRED_META if key not in meta]:
        raise damaged(f"no {', '.join(missing)}")
    if not _is_int(meta["step"]) or meta["step"] < 0:
        raise damaged(f"step {meta['step']!r} is not a step number")
    for key in ("data_position", "optimizer_param_groups"):
        if not isinstance(meta[key], dict):
            raise damaged(f"{key} is not an object")
    from genlab.run import RunRecord  # run.py imports this module

    try:
        record = RunRecord.from_json(meta["run"], "run.")
    except ValueError as error:
        raise damaged(str(error)) from None
    if meta["step"] > record.train.steps:
        raise damaged(f"step {meta['step']} is past the run's {record.train.steps} steps")
    meta["run"] = record.to_json()  # every setting present: one older than a setting gets its default
    return record


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> Checkpoint:
    meta, record = read_meta_and_record(path)
    try:
        tensors = safetensors.torch.load_file(str(path), device=str(device))
    except Exception as error:  # as in read_meta: safetensors' own error types
        raise DamagedCheckpoint(path, f"is not a readable safetensors checkpoint ({one_line(error)}); "
                                      "it may be truncated") from None
    if bad := nonfinite(tensors):
        raise DamagedCheckpoint(path, f"holds non-finite values ({', '.join(bad[:3])}); a diverged run saved it")
    return Checkpoint(Path(path), meta, tensors, record)


def restore(checkpoint: Checkpoint, model: torch.nn.Module,
            optimizers: dict[str, torch.optim.Optimizer] | None = None, restore_rng: bool = False) -> None:
    """Load weights, and optionally optimizer and RNG states (what resuming needs), from a checkpoint.

    Everything is checked before it is loaded: a missing, extra or misshapen tensor, optimizer state that
    does not fit the optimizer (or is absent: a checkpoint without it can be sampled from, not resumed), or
    an unusable RNG state raises DamagedCheckpoint."""
    _restore_weights(checkpoint, model)
    for name, optimizer in (optimizers or {}).items():
        _restore_optimizer(checkpoint, name, optimizer)
    if restore_rng:
        _restore_rng(checkpoint)


def _listed(names, limit: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# Weight names that changed since checkpoints were first written: old prefix -> new. The GAN's EMA generator
# and the DDPM's EMA network were `ema_generator` and `ema_network` until both became `ema` (one name for an
# EMA copy); checkpoints written before that still load. This is the one place old names are read.
RENAMED_WEIGHTS = {"ema_generator.": "ema.", "ema_network.": "ema."}


def _current_names(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for name, tensor in weights.items():
        old = next((prefix for prefix in RENAMED_WEIGHTS if name.startswith(prefix)), None)
        renamed[RENAMED_WEIGHTS[old] + name.removeprefix(old) if old else name] = tensor
    return renamed


def _restore_weights(checkpoint: Checkpoint, model: torch.nn.Module) -> None:
    expected, given = model.state_dict(), _current_names(checkpoint.prefixed("model."))
    problems = []
    if missing := expected.keys() - given.keys():
        problems.append(f"missing {_listed(f'model.{name}' for name in missing)}")
    if extra := given.keys() - expected.keys():
        problems.append(f"unexpected {_listed(f'model.{name}' for name in extra)}")
    for name in sorted(expected.keys() & given.keys()):
        want, got = expected[name], given[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            problems.append(f"model.{name} is {tuple(got.shape)} {got.dtype}, the model's "
                            f"{tuple(want.shape)} {want.dtype}")
    if problems:
        raise DamagedCheckpoint(checkpoint.path, f"has weights that do not fit its own model config "
                                                 f"({'; '.join(problems[:3])})")
    model.load_state_dict(given, strict=True)


def _restore_optimizer(checkpoint: Checkpoint, name: str, optimizer: torch.optim.Optimizer) -> None:
    def damaged(what: str) -> DamagedCheckpoint:
        return DamagedCheckpoint(checkpoint.path, f"has {name} optimizer state that does not fit ({what})")

    groups = checkpoint.meta["optimizer_param_groups"].get(name)
    tensors = checkpoint.prefixed(f"optimizer.{name}.")
    if groups is None or not tensors:
        raise DamagedCheckpoint(checkpoint.path, f"holds no {name} optimizer state, so training cannot resume "
                                                 "from it (sampling from it works)")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        index, _, field = key.partition(".")
        if not index.isdigit() or int(index) >= len(params):
            raise damaged(f"optimizer.{name}.{key} names no parameter")
        if field != "step" and tensor.shape != params[int(index)].shape:
            raise damaged(f"optimizer.{name}.{key} is {tuple(tensor.shape)}, its parameter "
                          f"{tuple(params[int(index)].shape)}")
        state.setdefault(int(index), {})[field] = tensor
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise damaged("param_groups")
    indices = []
    for saved, live in zip(groups, optimizer.param_groups, strict=True):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), list):
            raise damaged("param_groups")
        indices += saved["params"]
        for key, value in live.items():
            if key != "params" and not _same_kind(saved.get(key, _MISSING), value):
                raise damaged(f"param_groups {key}={saved.get(key, 'missing')!r}")
        if "base_lr" in saved and not _same_kind(saved["base_lr"], 1.0):  # the cosine schedule's base rate
            raise damaged(f"param_groups base_lr={saved['base_lr']!r}")
    # torch numbers the parameters 0, 1, ... in group order; other numbers would drop the state silently
    if indices != list(range(len(params))):
        raise damaged("param_groups params")
    optimizer.load_state_dict({"state": state, "param_groups": groups})


_MISSING = object()


def _same_kind(saved: Any, live: Any) -> bool:
    """Whether a saved optimizer hyperparameter can stand where the live optimizer has `live`."""
    if isinstance(live, bool) or live is None:
        return saved is None or isinstance(saved, bool)
    if isinstance(live, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved)
    if isinstance(live, (tuple, list)):
        return (isinstance(saved, (tuple, list)) and len(saved) == len(live)
                and all(_same_kind(a, b) for a, b in zip(saved, live, strict=True)))
    return type(saved) is type(live)


def _restore_rng(checkpoint: Checkpoint) -> None:
    """The generators' states, so that a resumed run draws what an uninterrupted one would."""
    expected = torch.get_rng_state()
    states = [("rng.torch", checkpoint.tensors.get("rng.torch"), expected)]
    if torch.cuda.is_available():
        live = torch.cuda.get_rng_state_all()
        states += [(name, t, live[0]) for name, t in sorted(checkpoint.tensors.items()) if name.startswith("rng.cuda.")]
    for name, tensor, like in states:
        if tensor is None or tensor.dtype != torch.uint8 or tensor.shape != like.shape:
            raise DamagedCheckpoint(checkpoint.path, f"holds no usable RNG state ({name}), so training cannot "
                                                     "resume from it exactly (sampling from it works)")
    try:
        torch.set_rng_state(checkpoint.tensors["rng.torch"].cpu())
        cuda_states = [t.cpu() for name, t, _ in states[1:]]
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    except RuntimeError as error:  # bytes of the right size that are no generator state
        raise DamagedCheckpoint(checkpoint.path, f"holds a damaged RNG state ({one_line(error)})") from None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first (files only: genlab never makes a folder of that name)."""
    folder = Path(run_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.safetensors")
             if (m := CHECKPOINT_NAME.fullmatch(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}.safetensors"


def resolve_checkpoint(run_or_file: str | Path) -> Path:
    """A checkpoint file as given, or the latest checkpoint of a run folder."""
    path = Path(run_or_file)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a run folder (runs/...) or a .safetensors checkpoint")
    if not path.is_dir():
        raise ValueError(f"{path} is neither a file nor a folder: give a run folder or a .safetensors checkpoint")
    found = list_checkpoints(path)
    if not found:
        raise FileNotFoundError(f"{path} holds no checkpoints yet (looked in {path / 'checkpoints'})")
    return found[-1]


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
