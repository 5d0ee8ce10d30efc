"""Every command against a corpus of hostile and tired-user input: each answer is a clean refusal (one
`error:` line and status 1, or Click's usage error, status 2), never a traceback, and nothing already
saved changes. The corpus is by class (huge, negative, zero, NaN/inf, empty, wrong type, hostile paths,
damaged files), crossed with every option of every command that takes one."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from cli_helpers import clean_refusal, invoke

TINY = ["--steps", "4", "--set", "hidden_dims=16", "--set", "architecture=mlp", "--set", "latent_dim=2"]
HUGE = str(10**30)
NUMBERS = ["-1", HUGE, "nan", "inf", "-inf", "abc", "", "1e999", "0x10"]  # refused by every numeric option
STARTS_AT_ZERO = {"--seed", "--from", "--to"}  # options for which 0 is valid: the others refuse it too
PATHS = ["", "/", "/dev/null", "/proc/self/mem", "nonexistent/deeper/x", "a\x00b", "x" * 5000]




def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "tensorboard" not in p.parts}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained run of each family that the read-only commands are pointed at."""
    folder = tmp_path_factory.mktemp("hostile")
    made = {}
    ddpm = ["--steps", "4", "--set", "hidden_dims=16", "--set", "num_timesteps=50"]
    for family, data, settings in (("vae", "digits", TINY), ("gan", "ring", TINY), ("ddpm", "ring", ddpm)):
        run = folder / family
        result = invoke("train", family, "--data", data, "--run", run, *settings)
        assert result.exit_code == 0, result.output
        made[family] = run
    return made


# --- numeric options of the commands that read a run -----------------------------------------------------

READ_COMMANDS = {
    "sample": ["--n", "--seed", "--timesteps"],
    "reconstruct": ["--n"],
    "interpolate": ["--from", "--to", "--frames"],
    "eval": ["--samples", "--seed", "--nll-k"],
}


@pytest.mark.parametrize("command,option,value", [
    (command, option, value) for command, options in READ_COMMANDS.items() for option in options
    for value in [*NUMBERS, *(["0"] if option not in STARTS_AT_ZERO else [])]])
def test_numeric_options_out_of_their_range(runs, command, option, value):
    family = "ddpm" if (command, option) == ("sample", "--timesteps") else "vae"
    before = fingerprint(runs[family])
    clean_refusal(invoke(command, runs[family], option, value))
    assert fingerprint(runs[family]) == before


@pytest.mark.parametrize("value", [*NUMBERS, "0"])
@pytest.mark.parametrize("option", ["--steps", "--budget"])
def test_train_numbers(value, option):
    clean_refusal(invoke("train", "vae", "--data", "digits", "--run", "r", *TINY, option, value))
    assert not Path("r").exists() or not (Path("r") / "config.json").exists(), "a refused start left a run behind"


@pytest.mark.parametrize("setting", [
    "lr=nan", "lr=inf", "lr=-1", "lr=1e999", "batch_size=0", f"batch_size={HUGE}", "seed=-1", f"seed={HUGE}",
    "latent_dim=0", f"latent_dim={HUGE}", "hidden_dims=-5", "hidden_dims=a,b", "conv_channels=0",
    "image_size=20000", "image_size=0", "channels=2", "steps=0", "log_every=0", "keep_checkpoints=0",
    "beta=nan", "beta=-1", "noise_std=inf", "data_shape=1,2", "precision=fp8", "lr_schedule=<script>",
    "nonsense=1", "=1", "lr", "lr==1", "binarize=maybe", "architecture=unet", "batch_size=100000", "data=ring",
    "data_dir=/tmp",
])
def test_train_settings(setting):
    result = invoke("train", "vae", "--data", "digits", "--run", "r", *TINY, "--set", setting)
    clean_refusal(result)
    assert not (Path("r") / "config.json").exists(), "a refused start left a config.json behind"


@pytest.mark.parametrize("family", ["", "VAE", "banana", "../ae", "gan; rm -rf /"])
def test_train_family_names(family):
    clean_refusal(invoke("train", family, "--data", "digits", "--run", "r", *TINY))


@pytest.mark.parametrize("data", ["", "nonsense", "folder:", "folder:/nonexistent", "folder:/dev/null",
                                  "folder:" + "x" * 5000, "folder:a\x00b", "mnist"])
def test_train_data_names(data, tmp_path):
    result = invoke("train", "vae", "--data", data, "--run", "r", "--data-dir", tmp_path / "empty", *TINY)
    clean_refusal(result)
    assert not (Path("r") / "config.json").exists()


@pytest.mark.parametrize("device", ["banana", "cuda:99", "", "meta", "cpu:1; ls"])
def test_devices(runs, device):
    clean_refusal(invoke("train", "vae", "--data", "digits", "--run", "r", *TINY, "--device", device))
    assert not (Path("r") / "config.json").exists()
    clean_refusal(invoke("sample", runs["vae"], "--device", device))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("command", ["sample", "reconstruct", "interpolate", "info", "eval"])
def test_run_paths(command, path):
    clean_refusal(invoke(command, path))


@pytest.mark.parametrize("path", PATHS)
def test_resume_paths(path):
    clean_refusal(invoke("train", "--resume", path))


@pytest.mark.parametrize("out", ["/", "/proc/version", "a\x00b.png", "x" * 5000 + ".png", "FIFO"])
def test_out_paths(runs, out, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # a special file: the atomic rename must not replace it (as root it once replaced /dev/full)
    clean_refusal(invoke("sample", runs["gan"], "--out", fifo if out == "FIFO" else out))
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.parametrize("command", [["sample", "--sampler", "euler"], ["sample", "--sampler", ""],
                                     ["interpolate", "--method", "cubic"], ["reconstruct"], ["interpolate"]])
def test_options_that_do_not_apply(runs, command):
    # the gan cannot reconstruct or interpolate; the sampler is unknown
    clean_refusal(invoke(command[0], runs["gan"], *command[1:]))


@pytest.mark.parametrize("args", [["--data", "ring"], ["--budget", "0"], ["--budget", "nan"], ["--seeds", "0"],
                                  ["--seeds", HUGE], ["--samples", "0"], ["--samples", HUGE],
                                  ["--runs-from", "/nonexistent"], ["--data", ""]])
def test_compare_options(args):
    clean_refusal(invoke("compare", *args))


@pytest.mark.parametrize("name", ["", "banana", "../autoencoder"])
def test_lesson_names(name):
    clean_refusal(invoke("lesson", name))


@pytest.mark.parametrize("args", [["--port", "-1"], ["--port", "70000"], ["--port", "abc"],
                                  ["--host", "256.1.1.1"], ["--host", ""], ["--host", "not a host"]])
def test_lab_options(args, monkeypatch):
    import uvicorn

    def serve(self, sockets):  # an accepted option would serve forever: fail instead of hanging the suite
        raise AssertionError(f"the lab started on {sockets[0].getsockname()}")

    monkeypatch.setattr(uvicorn.Server, "run", serve)
    clean_refusal(invoke("lab", *args))


@pytest.mark.parametrize("name", ["", "MNIST", "cifar10", "../mnist"])
def test_download_names(name):
    clean_refusal(invoke("data", "download", name))


# --- damaged files of a run ------------------------------------------------------------------------------

def damaged_copies(run: Path, tmp_path: Path):
    """(what, run folder) for each way a run's files can be damaged on disk."""
    latest = sorted((run / "checkpoints").glob("*.safetensors"))[-1].name
    ways = {
        "checkpoint truncated": lambda r: (p := r / "checkpoints" / latest).write_bytes(p.read_bytes()[:1000]),
        "checkpoint empty": lambda r: (r / "checkpoints" / latest).write_bytes(b""),
        "checkpoint random bytes": lambda r: (r / "checkpoints" / latest).write_bytes(bytes(range(256)) * 40),
        "checkpoint is a folder": lambda r: ((r / "checkpoints" / latest).unlink(),
                                             (r / "checkpoints" / latest).mkdir()),
        "config.json not json": lambda r: (r / "config.json").write_text("{not json"),
        "config.json a list": lambda r: (r / "config.json").write_text("[]"),
        "config.json empty": lambda r: (r / "config.json").write_text(""),
        "config.json wrong family": lambda r: (r / "config.json").write_text(
            (r / "config.json").read_text().replace('"vae"', '"banana"', 1)),
        "config.json latent_dim edited": lambda r: (r / "config.json").write_text(
            (r / "config.json").read_text().replace('"latent_dim": 2', '"latent_dim": 7')),
        "config.json mistyped": lambda r: (r / "config.json").write_text(
            (r / "config.json").read_text().replace('"latent_dim": 2', '"latent_dim": "two"')),
        "metrics.jsonl torn": lambda r: (r / "metrics.jsonl").write_text('{"step": 4, "loss": 1.0}\n{"st'),
        "metrics.jsonl not objects": lambda r: (r / "metrics.jsonl").write_text('[1, 2]\n"x"\n'),
    }
    for what, damage in ways.items():
        copy = tmp_path / what.replace(" ", "-")
        shutil.copytree(run, copy)
        damage(copy)
        yield what, copy


@pytest.mark.parametrize("command", [["info"], ["sample"], ["reconstruct"], ["eval", "--samples", "100"],
                                     ["train", "--resume"]])
def test_damaged_runs(runs, tmp_path, command):
    for what, run in damaged_copies(runs["vae"], tmp_path):
        result = invoke(*command, run)
        if result.exit_code == 0:  # a damage the command does not read (e.g. metrics for sample) is fine
            continue
        try:
            clean_refusal(result)
        except AssertionError as error:
            raise AssertionError(f"{' '.join(command)} on a run with {what}: {error}") from None
