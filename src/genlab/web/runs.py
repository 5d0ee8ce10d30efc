"""The training dashboard's side of the server: start and stop runs in a worker thread, and read past runs.

A run started here is an ordinary run folder (genlab.train.create_run + train), so `genlab info`,
`genlab sample` and `genlab train --resume` work on it afterwards. Runs live in one folder chosen when the
server starts; the client names a run by its folder name only, which is checked against NAME and must
already exist in that folder: no path from a client ever reaches the file system.

Runs here share the process's global torch RNG with any playground that plays at the same time, so such a
run is not bit-reproducible; train from the command line when that matters.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from genlab.checkpoint import list_checkpoints
from genlab.config import parse_overrides
from genlab.models import FAMILIES, family_classes
from genlab.train import TrainConfig, create_run, train

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SAMPLE_FILE = re.compile(r"^step-\d{8}-(samples|reconstructions)\.png$")
BUNDLED_DATA = ("digits", "patterns", "ring", "grid", "moons", "gaussian1d", "swissroll")  # nothing to download
MAX_STEPS = 20_000
# settings a client may pass, with the largest value each may take: a model that fits the CPU in minutes
LIMITS = {"latent_dim": 256, "batch_size": 1024, "n_critic": 10, "pack": 8, "log_every": MAX_STEPS,
          "sample_every": MAX_STEPS, "checkpoint_every": MAX_STEPS, "keep_checkpoints": 10}
WIDTH_LIMITS = {"hidden_dims": (4, 1024), "conv_channels": (3, 256)}  # (most layers, widest layer)
REFUSED = {"data", "steps", "image_size", "channels"}  # chosen by their own fields, or only for image folders


SettingName = Annotated[str, Field(max_length=40)]
SettingValue = Annotated[str, Field(max_length=200)] | int | float | bool | Annotated[list[int], Field(max_length=8)]


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: str
    data: str = "digits"
    steps: int = Field(300, ge=1, le=MAX_STEPS)
    settings: dict[SettingName, SettingValue] = Field(default_factory=dict, max_length=30)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"{name[:40]!r} is not a run name: letters, digits, '_', '.' and '-' only")
    return name


def finite(value):
    """JSON-safe: metrics may hold inf (reverse KL with no high-quality sample), which JSON cannot carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(v) for key, v in value.items()}
    return value


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def parse_request(request: RunRequest, data_names: tuple[str, ...]) -> tuple[TrainConfig, dict]:
    """(train config, model settings) of a request, every value typed and bounded; ValueError otherwise."""
    if request.family not in FAMILIES:
        raise ValueError(f"unknown model family {request.family!r}: choose one of {', '.join(FAMILIES)}")
    if request.data not in data_names:
        raise ValueError(f"unknown data {request.data!r}: choose one of {', '.join(data_names)}")
    refused = REFUSED & set(request.settings)
    if refused:
        raise ValueError(f"setting(s) {', '.join(sorted(refused))} cannot be set here: use the data and steps fields")
    _, config_class = family_classes(request.family)
    pairs = [f"{key}={_text(value)}" for key, value in request.settings.items()]
    train_settings, model_settings = parse_overrides(pairs, [TrainConfig, config_class])
    for key, value in {**train_settings, **model_settings}.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}={value} is not a finite number")
        if key in LIMITS and isinstance(value, int) and value > LIMITS[key]:
            raise ValueError(f"{key}={value} is too large for the lab: at most {LIMITS[key]}")
        if key in WIDTH_LIMITS:
            layers, widest = WIDTH_LIMITS[key]
            if not 1 <= len(value) <= layers or max(value) > widest:
                raise ValueError(f"{key} takes 1 to {layers} layers of at most {widest}, got {list(value)}")
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
        return [job for job in self.jobs.values() if job.status in ("starting", "running", "stopping")]

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
        folder = self.run_dir(name)
        config = json.loads((folder / "config.json").read_text())
        metrics_path = folder / "metrics.jsonl"
        records = []
        if metrics_path.exists():
            for line in metrics_path.read_text().splitlines():
                try:
                    records.append(finite(json.loads(line)))
                except json.JSONDecodeError:
                    continue  # a line being written right now
        job = self.jobs.get(name)
        checkpoints = list_checkpoints(folder)
        samples = sorted(p.name for p in (folder / "samples").glob("step-*.png") if SAMPLE_FILE.match(p.name))
        done = records[-1]["step"] if records else 0
        return {"name": name, "family": config["family"], "data": config["train"]["data"],
                "steps": config["train"]["steps"], "step": done,
                "status": job.status if job else ("finished" if done >= config["train"]["steps"] else "stopped"),
                "error": job.error if job else None, "model": config["model"], "train": config["train"],
                "records": records, "checkpoints": [p.name for p in checkpoints], "samples": samples}

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
            except (ValueError, KeyError, json.JSONDecodeError):
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
