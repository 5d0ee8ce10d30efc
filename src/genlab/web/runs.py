"""The training dashboard's side of the server: start and stop runs in a worker thread, and read past runs.

A run started here is an ordinary run folder (genlab.run.create_run + genlab.train.train), so `genlab info`,
`genlab sample` and `genlab train --resume` work on it afterwards. Runs live in one folder chosen when the
server starts; the client names a run by its folder name only, which is checked against NAME and must
already exist in that folder: no path from a client ever reaches the file system.

Runs here share the process's global torch RNG with any playground that plays at the same time, so such a
run is not bit-reproducible; train from the command line when that matters.
"""

from __future__ import annotations

import math
import re
import threading
import time
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from genlab.checkpoint import list_checkpoints
from genlab.config import split_settings
from genlab.data import MAX_SEED
from genlab.models import FAMILIES, family_classes
from genlab.run import create_run, read_metrics, read_run_record, run_is_training
from genlab.train import TrainConfig, train

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SAMPLE_FILE = re.compile(r"^step-\d{8}-(samples|reconstructions|upscales)\.png$")
# nothing to download
BUNDLED_DATA = ("digits", "faces", "patterns", "ring", "grid", "moons", "gaussian1d", "swissroll")
MAX_STEPS = 20_000
# Every number a client may set, with the range the lab allows it (for a tuple, each entry's range): the lab is a
# shared server, so one run stays at most a few hundred MB and minutes of CPU. These are the lab's bounds, tighter
# than the library's own checks; a family adds those of its own settings in its registry record (Family.lab_bounds).
# A number or tuple setting bounded in neither cannot be set from the lab, so a setting added to a config later is
# refused until someone bounds it.
BOUNDS = {
    # TrainConfig (steps is its own field, 1..MAX_STEPS)
    "batch_size": (1, 512), "lr": (1e-6, 1.0), "seed": (0, MAX_SEED), "log_every": (1, MAX_STEPS),
    "sample_every": (1, MAX_STEPS), "checkpoint_every": (1, MAX_STEPS), "keep_checkpoints": (1, 10),
    # model configs
    "latent_dim": (1, 256), "hidden_dims": (1, 1024), "conv_channels": (1, 128), "unet_channels": (1, 64),
    "noise_std": (0.0, 10.0), "beta": (0.0, 100.0), "gp_weight": (0.0, 100.0), "r1_weight": (0.0, 100.0),
    "clip_value": (1e-4, 1.0), "pack": (1, 8), "ema_decay": (0.0, 0.9999), "n_critic": (1, 10), "lr_d": (1e-6, 1.0),
    "betas": (0.0, 0.9999), "num_timesteps": (1, 4000), "sampling_steps": (1, 4000),
    "ada_target": (0.0, 1.0), "ada_images": (1, 10**7),
}
LENGTHS = {"hidden_dims": (1, 4), "conv_channels": (1, 3), "unet_channels": (1, 4), "betas": (2, 2)}  # entries
# chosen by their own fields, or by the data (data_shape; image_size, channels and crop are for image folders only);
# no path ever comes from a request
REFUSED = {"data", "data_dir", "steps", "data_shape", "image_size", "channels", "crop"}
CADENCE = ("log_every", "sample_every", "checkpoint_every")  # unset, the lab picks them from the run's steps
ACTIVE = ("starting", "running", "stopping")  # a job's statuses while its thread trains



def _setting_value(value):
    """A setting's value as JSON carries it; parse_overrides then reads it as its field's type."""
    number = isinstance(value, int | float)  # bool is an int too
    if number or (isinstance(value, str) and len(value) <= 40) or (isinstance(value, list) and len(value) <= 8 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        return value
    raise ValueError("a setting is a number, true or false, text of at most 40 characters or a list of at most 8 "
                     "numbers")


SettingName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")]
SettingValue = Annotated[Any, AfterValidator(_setting_value), WithJsonSchema({"anyOf": [
    {"type": "number"}, {"type": "boolean"}, {"type": "string", "maxLength": 40},
    {"type": "array", "items": {"type": "number"}, "maxItems": 8}]})]


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    family: Literal[tuple(FAMILIES)]
    data: Literal[(*BUNDLED_DATA, "mnist")] = "digits"  # mnist once it is downloaded
    steps: int = Field(300, ge=1, le=MAX_STEPS)
    settings: dict[SettingName, SettingValue] = Field(default_factory=dict, max_length=30)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError("that is not a run name: letters, digits, '_', '.' and '-' only, at most 100")
    return name


def finite(value):
    """JSON-safe: metrics may hold inf (reverse KL with no high-quality sample), which JSON cannot carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(v) for key, v in value.items()}
    return value


def check_bounds(key: str, value, family: str) -> None:
    """ValueError unless a parsed setting is within the lab's bounds (BOUNDS and the family's lab_bounds)."""
    values = value if isinstance(value, tuple) else (value,)
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers and not isinstance(value, tuple):
        return  # a choice (a Literal) or a flag: the library knows its options
    bounds = {**BOUNDS, **FAMILIES[family].lab_bounds}
    if key not in bounds:
        raise ValueError(f"{key} cannot be set from the lab: use `genlab train --set {key}=...`")
    low, high = bounds[key]
    if key in LENGTHS:
        fewest, most = LENGTHS[key]
        if not fewest <= len(values) <= most:
            count = most if fewest == most else f"{fewest} to {most}"
            raise ValueError(f"{key} takes {count} entries in the lab, got {len(values)}")
    if not all(math.isfinite(v) and low <= v <= high for v in numbers):
        raise ValueError(f"{key} must be between {low:,} and {high:,} in the lab" if key not in LENGTHS else
                         f"each entry of {key} must be between {low:,} and {high:,} in the lab")


def setting_fields(family: str) -> list[dict]:
    """The settings a lab run of `family` may set, one dashboard field each, the model's then training's: {name,
    group, kind (int, float, bool, choice or list), default, and min/max, choices or entries}. Read from the config
    dataclasses and the lab's bounds, so the form offers what parse_request accepts and nothing else."""
    _, config_class = family_classes(family)
    bounds = {**BOUNDS, **FAMILIES[family].lab_bounds}
    out = []
    for group, cls in (("model", config_class), ("train", TrainConfig)):
        hints = typing.get_type_hints(cls)
        for spec in fields(cls):
            if spec.name in REFUSED:
                continue
            annotation = hints[spec.name]
            if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None: left empty, it is None
                annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
            default = spec.default if spec.default is not MISSING else spec.default_factory()
            entry = {"name": spec.name, "group": group,
                     "default": "auto" if spec.name in CADENCE else list(default) if isinstance(default, tuple)
                     else default}
            if annotation is bool:
                entry["kind"] = "bool"
            elif typing.get_origin(annotation) is Literal:
                entry.update(kind="choice", choices=list(typing.get_args(annotation)))
            elif spec.name not in bounds:
                continue  # a number the lab does not bound cannot be set here (check_bounds refuses it)
            elif typing.get_origin(annotation) is tuple:
                item = typing.get_args(annotation)[0]
                entry.update(kind="list", item=item.__name__, entries=LENGTHS.get(spec.name))
            elif annotation in (int, float):
                entry["kind"] = annotation.__name__
            else:
                continue  # free text: nothing a lab run sets
            if spec.name in bounds:
                entry["min"], entry["max"] = bounds[spec.name]
            out.append(entry)
    return out


def parse_request(request: RunRequest, data_names: tuple[str, ...]) -> tuple[TrainConfig, dict]:
    """(train config, model settings) of a request, every value typed and bounded; ValueError otherwise."""
    if request.data not in data_names:
        raise ValueError(f"data {request.data} is not here: download it first (genlab data download {request.data})"
                         f" or choose one of {', '.join(data_names)}")
    refused = REFUSED & set(request.settings)
    if refused:
        raise ValueError(f"setting(s) {', '.join(sorted(refused))} cannot be set here: data and steps have their own "
                         "fields, and the data decides its shape")
    _, config_class = family_classes(request.family)
    # the dashboard's settings box sends --set's text (parsed by each field's type); scripts may send typed JSON
    train_settings, model_settings = split_settings(request.settings, [TrainConfig, config_class])
    for key, value in {**train_settings, **model_settings}.items():
        check_bounds(key, value, request.family)
    log_every = max(1, min(50, request.steps // 20))  # about 20 points on the loss curve, however short the run
    sample_every = max(log_every, request.steps // 5)
    defaults = {"log_every": log_every, "sample_every": sample_every, "checkpoint_every": sample_every}
    train_config = TrainConfig(**{"data": request.data, "steps": request.steps, **defaults, **train_settings})
    return train_config, model_settings


class NotFound(LookupError):
    """A run (or a file of one) the client named does not exist: a 404."""


class Busy(Exception):
    """The lab already trains as many runs as it may: a 409."""


class StopRequested(Exception):
    """Raised from train()'s on_log callback to end a run at a log step, as an interruption would."""


@dataclass
class Job:
    name: str
    family: str
    data: str
    steps: int
    status: str = "starting"  # starting, running, stopping, finished, stopped, failed
    records: list[dict] = field(default_factory=list)  # metrics.jsonl lines as they are logged
    error: str | None = None
    started: float = field(default_factory=time.time)
    stop_requested: threading.Event = field(default_factory=threading.Event)

    def summary(self) -> dict:
        return {"name": self.name, "family": self.family, "data": self.data, "steps": self.steps,
                "status": self.status, "error": self.error,
                "step": self.records[-1]["step"] if self.records else 0}


class RunManager:
    """At most `max_active` runs train at once (one by default: the lab shares a small CPU)."""

    def __init__(self, runs_dir: Path, data_dir: Path | None = None, max_active: int = 1):
        self.runs_dir = Path(runs_dir)
        self.data_dir = data_dir
        self.max_active = max_active
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def active(self) -> list[Job]:
        return [job for job in self.jobs.values() if job.status in ACTIVE]

    def start(self, request: RunRequest, data_names: tuple[str, ...]) -> Job:
        train_config, model_settings = parse_request(request, data_names)
        with self._lock:
            if len(self.active()) >= self.max_active:
                running = ", ".join(job.name for job in self.active())
                raise Busy(f"{running} is training: stop it first (the lab trains one run at a time)")
            stem = f"{request.family}-{request.data}-{time.strftime('%Y%m%d-%H%M%S')}"
            name, n = stem, 2
            while (self.runs_dir / name).exists() or name in self.jobs:
                name, n = f"{stem}-{n}", n + 1
            create_run(self.runs_dir / name, request.family, train_config, model_settings, self.data_dir)
            job = Job(name, request.family, request.data, request.steps)
            self.jobs[name] = job
        threading.Thread(target=self._train, args=(job,), name=f"genlab-run-{name}", daemon=True).start()
        return job

    def _train(self, job: Job) -> None:
        def on_log(record: dict) -> None:
            job.records.append(record)
            if job.stop_requested.is_set():
                raise StopRequested

        job.status = "running"
        try:
            train(self.runs_dir / job.name, device="cpu", data_dir=self.data_dir, on_log=on_log)
            job.status = "finished"
        except StopRequested:
            job.status = "stopped"
        except Exception as error:  # shown on the dashboard; the run folder keeps its last good checkpoint
            job.status, job.error = "failed", str(error)

    def stop(self, name: str) -> Job:
        job = self.jobs.get(check_name(name))
        if job is None or job not in self.active():
            raise NotFound(f"run {name!r} is not training here")
        job.stop_requested.set()
        job.status = "stopping"
        return job

    def stop_all(self) -> None:
        for job in self.active():
            job.stop_requested.set()

    # --- past runs -----------------------------------------------------------------------------------

    def run_dir(self, name: str) -> Path:
        """The folder of an existing run, by name; NotFound when there is none."""
        folder = self.runs_dir / check_name(name)
        if not (folder / "config.json").is_file():
            raise NotFound(f"no run named {name!r} in the runs folder")
        return folder

    def describe(self, name: str) -> dict:
        """A run as the dashboard shows it, read through the library's one reader of each file."""
        folder = self.run_dir(name)
        try:
            record = read_run_record(folder)
        except FileNotFoundError:
            raise NotFound(f"no run named {name!r} in the runs folder") from None
        except ValueError:
            raise ValueError(f"run {name!r} has a config.json that is not a genlab run's: fix or remove the "
                             "folder") from None
        records = [finite(record) for record in read_metrics(folder / "metrics.jsonl")]
        job = self.jobs.get(name)
        checkpoints = list_checkpoints(folder)
        samples = sorted(p.name for p in (folder / "samples").glob("step-*.png") if SAMPLE_FILE.match(p.name))
        done = records[-1]["step"] if records else 0
        saved, steps = record.to_json(), record.train.steps
        here = job is not None and job.status in ACTIVE
        if here:
            status = job.status
        elif run_is_training(folder):  # `genlab train` (or another lab) trains it now
            status = "running"
        else:
            status = job.status if job else ("finished" if done >= steps else "stopped")
        return {"name": name, "family": record.family, "data": record.train.data, "steps": steps, "step": done,
                "status": status, "trained_here": here,
                "error": job.error if job else None, "model": finite(saved["model"]),
                "train": finite(saved["train"]), "records": records,
                "checkpoints": [p.name for p in checkpoints], "samples": samples}

    def list(self) -> list[dict]:
        if not self.runs_dir.is_dir():
            return []
        names = sorted((p.name for p in self.runs_dir.iterdir()
                        if NAME.match(p.name) and (p / "config.json").is_file()),
                       key=lambda n: (self.runs_dir / n).stat().st_mtime, reverse=True)
        out = []
        for name in names[:200]:
            try:
                info = self.describe(name)
            except ValueError:
                continue  # a folder that is not (yet) a readable run
            info.pop("records")
            out.append(info)
        return out

    def sample_file(self, name: str, file: str) -> Path:
        if not SAMPLE_FILE.match(file):
            raise ValueError(f"{file[:40]!r} is not a sample picture name (step-NNNNNNNN-samples.png)")
        path = self.run_dir(name) / "samples" / file
        if not path.is_file():
            raise NotFound(f"run {name!r} has no {file}")
        return path
