"""Self-describing checkpoints: one safetensors file per checkpoint, nothing unpickled on load.

Tensors: `model.<name>` (weights), `optimizer.<opt>.<param index>.<key>` (optimizer state),
`rng.torch` / `rng.cuda.<i>` (generator states). Metadata key "genlab": JSON with the format
version, model family, model and train configs, step, data position and optimizer hyperparameters.
Files are written to a temp file, fsynced and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

import genlab
from genlab.config import from_json_dict
from genlab.models import family_classes

FORMAT_VERSION = 1
CHECKPOINT_NAME = re.compile(r"step-(\d+)\.safetensors$")


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]  # format_version, genlab_version, family, model_config, train_config, step, ...
    tensors: dict[str, torch.Tensor]

    @property
    def step(self) -> int:
        return self.meta["step"]

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        return {name[len(prefix):]: t for name, t in self.tensors.items() if name.startswith(prefix)}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, rename: readers see the old file or the new one."""
    if path.is_dir():  # else the rename fails naming the temp file, which tells the user nothing
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make every run file private to its writer
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    """Save weights, optimizer states and RNG states with `meta` (family, configs, step...) atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    groups = {}
    for name, optimizer in optimizers.items():
        optimizer_tensors, groups[name] = _optimizer_tensors(name, optimizer)
        tensors.update(optimizer_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    full_meta = {"format_version": FORMAT_VERSION, "genlab_version": genlab.__version__, **meta,
                 "optimizer_param_groups": groups}
    data = safetensors.torch.save(tensors, metadata={"genlab": json.dumps(full_meta)})
    atomic_write_bytes(path, data)


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON description of a checkpoint, without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for every kind of damage
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({error}): "
                         "it may be truncated; use an earlier checkpoint") from None
    if "genlab" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a genlab checkpoint (no 'genlab' metadata)")
    try:
        meta = json.loads(metadata["genlab"])
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} has damaged genlab metadata ({error}): use an earlier checkpoint") from None
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {meta['format_version']}, newer than this genlab "
                         f"reads ({FORMAT_VERSION}): upgrade genlab")
    return meta


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> Checkpoint:
    meta = read_meta(path)
    tensors = safetensors.torch.load_file(str(path), device=str(device))
    return Checkpoint(Path(path), meta, tensors)


def restore(checkpoint: Checkpoint, model: torch.nn.Module,
            optimizers: dict[str, torch.optim.Optimizer] | None = None, restore_rng: bool = False) -> None:
    """Load weights (strictly), and optionally optimizer and RNG states, from a checkpoint."""
    model.load_state_dict(checkpoint.prefixed("model."), strict=True)
    for name, optimizer in (optimizers or {}).items():
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in checkpoint.prefixed(f"optimizer.{name}.").items():
            index, _, field = key.partition(".")
            state.setdefault(int(index), {})[field] = tensor
        optimizer.load_state_dict({"state": state, "param_groups": checkpoint.meta["optimizer_param_groups"][name]})
    if restore_rng:
        torch.set_rng_state(checkpoint.tensors["rng.torch"].cpu())
        cuda_states = [t.cpu() for name, t in sorted(checkpoint.tensors.items()) if name.startswith("rng.cuda.")]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.safetensors") if (m := CHECKPOINT_NAME.search(p.name))]
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
    found = list_checkpoints(path)
    if not found:
        raise FileNotFoundError(f"{path} holds no checkpoints yet (looked in {path / 'checkpoints'})")
    return found[-1]


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def load_model(run_or_file: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, checkpoint meta) from a run folder (its latest checkpoint) or a checkpoint file."""
    path = resolve_checkpoint(run_or_file)
    checkpoint = load_checkpoint(path, device)
    model_class, config_class = family_classes(checkpoint.meta["family"])
    model = model_class(from_json_dict(config_class, checkpoint.meta["model_config"])).to(device)
    restore(checkpoint, model)
    return model.eval(), checkpoint.meta
