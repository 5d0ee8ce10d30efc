"""Hostile input to training and run files: every class of damaged or edited checkpoint and config.json,
torn metrics, two trainers on one run, Ctrl-C, a full disk, diverging weights and losses, bad devices and
failed starts. Each is one line naming the file or setting (exit status 1 from the CLI, no traceback), and
nothing already saved is lost."""

from __future__ import annotations

import copy
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

import genlab.models
import genlab.train
from cli_helpers import invoke, succeeded, user_error
from conftest import set_step
from genlab import checkpoint as ckpt
from genlab.run import LOCK_FILE, RunInUse, change_run_settings, create_run, open_run, read_run_record, run_lock
from genlab.train import TrainConfig, TrainingDiverged, TrainingInterrupted, resolve_device, train

TINY = {"hidden_dims": (32,), "latent_dim": 2, "architecture": "mlp"}
TINY_ARGS = ["--set", "hidden_dims=32", "--set", "latent_dim=2", "--set", "architecture=mlp", "--set", "batch_size=32"]





def make_run(run_dir: Path, steps: int = 4, **train_settings) -> Path:
    settings = {"data": "digits", "steps": steps, "batch_size": 32, "checkpoint_every": 2, "log_every": 2,
                "sample_every": 1000, "keep_checkpoints": 10, **train_settings}
    return create_run(run_dir, "vae", TrainConfig(**settings), dict(TINY))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny VAE run with checkpoints at steps 2 and 4, trained once; tests copy it."""
    run = make_run(tmp_path_factory.mktemp("safety") / "run")
    train(run, device="cpu")
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copied = tmp_path / "run"
    shutil.copytree(trained, copied)
    return copied


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file a run keeps, by relative path (the lock file aside)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE and "tensorboard" not in p.parts}


# ----------------------------------------------------------------------------- damaged checkpoints


def resave(path: Path, tensors: dict, meta: dict | str | None) -> None:
    text = meta if isinstance(meta, str) or meta is None else json.dumps(meta)
    safetensors.torch.save_file(tensors, str(path), metadata=None if text is None else {"genlab": text})


def meta_change(change):
    """Damage: the checkpoint's genlab metadata passed through change(meta) (which edits a copy)."""
    def damage(path: Path):
        checkpoint = ckpt.load_checkpoint(path)
        meta = copy.deepcopy(checkpoint.meta)
        resave(path, checkpoint.tensors, change(meta) or meta)
    return damage


def tensor_change(change):
    """Damage: the checkpoint's tensors passed through change(tensors), in place."""
    def damage(path: Path):
        checkpoint = ckpt.load_checkpoint(path)
        change(checkpoint.tensors)
        resave(path, checkpoint.tensors, checkpoint.meta)
    return damage


def bytes_change(change):
    return lambda path: path.write_bytes(change(path.read_bytes()))


def first(tensors: dict, prefix: str) -> str:
    return next(name for name in sorted(tensors) if name.startswith(prefix) and tensors[name].dim() > 0)


def drop(key):
    def change(meta):
        del meta[key]
    return change


def drop_from_run(key):
    def change(meta):
        del meta["run"][key]
    return change


def setting(key, value):
    def change(meta):
        meta[key] = value
    return change


# Where each damage shows: "meta" in everything (read_meta, as info uses); "tensors" in whatever loads the
# weights (sample, eval, resume), not in info; "resume" only when training resumes (sampling still works).
DAMAGES = {
    "truncated": (bytes_change(lambda b: b[: len(b) // 2]), "meta", "truncated"),
    "empty file": (bytes_change(lambda b: b""), "meta", "not a readable safetensors"),
    "header only": (bytes_change(lambda b: b[:8]), "meta", "not a readable safetensors"),
    "random bytes": (bytes_change(lambda b: os.urandom(len(b))), "meta", "not a readable safetensors"),
    "not safetensors": (bytes_change(lambda b: b'{"family": "vae"}\n'), "meta", "not a readable safetensors"),
    "no genlab metadata": (lambda p: resave(p, ckpt.load_checkpoint(p).tensors, None), "meta",
                           "not a genlab checkpoint"),
    "metadata not JSON": (lambda p: resave(p, ckpt.load_checkpoint(p).tensors, '{"family": "va'), "meta",
                          "damaged genlab metadata"),
    "metadata nested too deep": (lambda p: resave(p, ckpt.load_checkpoint(p).tensors, "[" * 100_000), "meta",
                                 "damaged genlab metadata"),
    "metadata a list": (lambda p: resave(p, ckpt.load_checkpoint(p).tensors, "[1, 2]"), "meta", "not a JSON object"),
    **{f"no {key}": (meta_change(drop(key)), "meta", f"no {key}") for key in ckpt.REQUIRED_META},
    "format_version text": (meta_change(setting("format_version", "one")), "meta", "format_version"),
    "step text": (meta_change(setting("step", "abc")), "meta", "step 'abc'"),
    "step negative": (meta_change(setting("step", -1)), "meta", "step -1"),
    "step past the run": (meta_change(setting("step", 10**12)), "meta", "past the run"),
    "unknown family": (meta_change(lambda m: m["run"].update(family="flow")), "meta", "unknown model family 'flow'"),
    "run a list": (meta_change(setting("run", [1, 2])), "meta", "run is not a JSON object"),
    "run without train": (meta_change(drop_from_run("train")), "meta", "no run.train"),
    "model a list": (meta_change(lambda m: m["run"].update(model=[1, 2])), "meta", "run.model is not a JSON object"),
    "model mistyped": (meta_change(lambda m: m["run"]["model"].update(latent_dim="two")), "meta", "latent_dim='two'"),
    "train unknown key": (meta_change(lambda m: m["run"]["train"].update(colour=1)), "meta", "colour"),
    "data_position a number": (meta_change(setting("data_position", 3)), "meta", "data_position"),
    "missing weight": (tensor_change(lambda t: t.pop(first(t, "model."))), "tensors", "missing model"),
    "extra weight": (tensor_change(lambda t: t.update({"model.extra": torch.zeros(3)})), "tensors",
                     "unexpected model.extra"),
    "weight misshapen": (tensor_change(lambda t: t.update({(n := first(t, "model.")): torch.zeros(3, *t[n].shape)})),
                         "tensors", "do not fit"),
    "weight of integers": (tensor_change(lambda t: t.update({(n := first(t, "model.")): t[n].long()})), "tensors",
                           "torch.int64"),
    "non-finite weight": (tensor_change(lambda t: t[first(t, "model.")].view(-1).__setitem__(0, float("nan"))),
                          "tensors", "non-finite values"),
    "non-finite optimizer state": (tensor_change(lambda t: t[first(t, "optimizer.")].fill_(float("inf"))),
                                   "tensors", "non-finite values"),
    "no optimizer state": (tensor_change(lambda t: [t.pop(n) for n in list(t) if n.startswith("optimizer.")]),
                           "resume", "holds no model optimizer state"),
    "optimizer state misshapen": (tensor_change(lambda t: t.update({first(t, "optimizer."): torch.zeros(5)})),
                                  "resume", "optimizer state that does not fit"),
    "optimizer state for no parameter": (
        tensor_change(lambda t: t.update({"optimizer.model.99.exp_avg": torch.ones(2)})), "resume",
        "names no parameter"),
    "optimizer lr text": (meta_change(lambda m: m["optimizer_param_groups"]["model"][0].update(lr="fast")),
                          "resume", "lr='fast'"),
    "optimizer params renumbered": (meta_change(lambda m: m["optimizer_param_groups"]["model"][0].update(
        params=[i + 100 for i in m["optimizer_param_groups"]["model"][0]["params"]])), "resume", "params"),
    "no optimizer groups": (meta_change(setting("optimizer_param_groups", {})), "resume", "no model optimizer state"),
    "no RNG state": (tensor_change(lambda t: t.pop("rng.torch")), "resume", "no usable RNG state"),
    "RNG state of floats": (tensor_change(lambda t: t.update({"rng.torch": t["rng.torch"].float()})), "resume",
                            "no usable RNG state"),
    "no log window": (meta_change(drop("log_window")), "resume", "log_window"),
    "log window mistyped": (meta_change(setting("log_window", {"sums": {"loss": "x"}, "count": 1})), "resume",
                            "log_window"),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_damaged_latest_checkpoint(run, case):
    damage, level, words = DAMAGES[case]
    latest, earlier = ckpt.checkpoint_path(run, 4), ckpt.checkpoint_path(run, 2)
    damage(latest)
    before = snapshot(run)

    # The library: a ValueError naming the file, or (resume-only damage) a model to sample from.
    if level == "resume":
        model, meta = (o := open_run(latest, splits=())).model, o.meta
        assert meta["step"] == 4 and all(torch.isfinite(p).all() for p in model.parameters())
    else:
        with pytest.raises(ValueError) as error:
            open_run(latest)
        assert str(latest) in str(error.value) and words in str(error.value)
    with pytest.raises(ValueError) as error:
        train(run, device="cpu")
    assert str(latest) in str(error.value) and words in str(error.value), error.value

    # The CLI: one line naming the file. Resuming names the checkpoint to fall back on and falls back on
    # nothing by itself.
    line = user_error(invoke("train", "--resume", run, "--steps", 4))
    assert str(latest) in line and words in line and f"to resume from the one before, {earlier.name}" in line, line
    for command in (["sample", run, "--n", 2], ["eval", run, "--samples", 2, "--nll-k", 1]):
        if level == "resume":
            continue
        line = user_error(invoke(*command))
        assert str(latest) in line and words in line, line
    if level == "meta":
        assert str(latest) in user_error(invoke("info", run))
    else:
        assert "vae at step 4 of 4" in succeeded(invoke("info", run))
    if level == "resume":
        succeeded(invoke("sample", run, "--n", 2, "--out", run.parent / "s.png"))
    assert snapshot(run) == before, "a refused command changed the run folder"

    # Moving the damaged checkpoint aside, as the message says, resumes from the one before.
    latest.rename(run.parent / latest.name)
    assert train(run, device="cpu") == latest
    assert open_run(run, splits=()).meta["step"] == 4


def test_the_only_checkpoint_damaged(run):
    ckpt.checkpoint_path(run, 2).unlink()
    latest = ckpt.checkpoint_path(run, 4)
    latest.write_bytes(b"")
    line = user_error(invoke("train", "--resume", run))
    assert f"the run's only checkpoint {latest}" in line and "start the run again" in line


def test_a_folder_where_a_checkpoint_should_be(run, tmp_path):
    folder = tmp_path / "step-00000009.safetensors"
    folder.mkdir()
    assert "holds no checkpoints yet" in user_error(invoke("sample", folder))
    with pytest.raises(ValueError, match="is a folder, not a checkpoint file"):
        ckpt.read_meta(folder)
    # genlab never makes such a folder among checkpoints, so one there is not taken for the latest
    (run / "checkpoints" / "step-00000099.safetensors").mkdir()
    assert ckpt.resolve_checkpoint(run) == ckpt.checkpoint_path(run, 4)


def test_newer_format_is_refused_on_resume(run):
    meta_change(setting("format_version", ckpt.FORMAT_VERSION + 1))(ckpt.checkpoint_path(run, 4))
    assert "upgrade genlab" in user_error(invoke("train", "--resume", run, "--steps", 6))


# ----------------------------------------------------------------------------- config.json


CONFIGS = {  # case -> (contents of config.json from the good one, words in the message)
    "not JSON": (lambda good: "{family: vae", "not valid JSON"),
    "empty": (lambda good: "", "not valid JSON"),
    "binary": (lambda good: bytes(range(256)), "not valid JSON"),
    "nested too deep": (lambda good: "[" * 200_000, "not valid JSON"),
    "huge": (lambda good: json.dumps(good) + " " * 2_000_000, "too large"),
    "a list": (lambda good: [good], "not a JSON object"),
    "no train": (lambda good: {"family": good["family"], "model": good["model"]}, "has no train"),
    "unknown family": (lambda good: {**good, "family": "flow"}, "unknown model family 'flow'"),
    "family a number": (lambda good: {**good, "family": 5}, "unknown model family '5'"),
    "model a list": (lambda good: {**good, "model": [1]}, "model is not a JSON object"),
    "mistyped value": (lambda good: {**good, "train": {**good["train"], "lr": "fast"}}, "lr='fast'"),
    "non-finite value": (lambda good: {**good, "train": {**good["train"], "lr": float("nan")}}, "not a finite number"),
    "out of range": (lambda good: {**good, "model": {**good["model"], "latent_dim": -3}}, "latent_dim"),
    "unknown key": (lambda good: {**good, "train": {**good["train"], "colour": "red"}}, "colour"),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_damaged_config_json(run, case):
    make, words = CONFIGS[case]
    path = run / "config.json"
    contents = make(json.loads(path.read_text()))
    if isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        path.write_text(contents if isinstance(contents, str) else json.dumps(contents))
    before = snapshot(run)
    with pytest.raises(ValueError) as error:
        read_run_record(run)
    assert str(path) in str(error.value) and words in str(error.value)
    line = user_error(invoke("train", "--resume", run, "--steps", 6))
    assert str(path) in line and words in line and "genlab info RUN" in line
    assert snapshot(run) == before


def test_config_json_that_is_a_folder(run):
    (run / "config.json").unlink()
    (run / "config.json").mkdir()
    assert "is a folder" in user_error(invoke("train", "--resume", run))


@pytest.mark.parametrize("key, value, shown", [("beta", 4.0, "beta 1.0 -> 4.0"),
                                               ("batch_size", 16, "batch_size 32 -> 16"),
                                               ("latent_dim", 3, "latent_dim 2 -> 3"),
                                               ("hidden_dims", [64, 16], "hidden_dims [32] -> [64, 16]")])
def test_an_edited_config_json_is_refused_on_resume(run, key, value, shown):
    path = run / "config.json"
    good = path.read_text()
    config = json.loads(good)
    section = config["model"] if key in config["model"] else config["train"]
    section[key] = value
    path.write_text(json.dumps(config))
    line = user_error(invoke("train", "--resume", run, "--steps", 6))
    assert f"{path} was edited since step-00000004.safetensors was saved: {shown}" in line
    setting = ",".join(map(str, value)) if isinstance(value, list) else value
    assert line.endswith(f"put the values back, or start a new run with --set {key}={setting}")
    assert ckpt.list_checkpoints(run)[-1] == ckpt.checkpoint_path(run, 4)
    path.write_text(good)  # put back, it resumes
    succeeded(invoke("train", "--resume", run, "--steps", 6))
    assert ckpt.list_checkpoints(run)[-1] == ckpt.checkpoint_path(run, 6)


# ----------------------------------------------------------------------------- metrics.jsonl


@pytest.mark.parametrize("bad", ['{"step": 3, "loss": 1', "[1, 2]", '{"loss": 3.0}', '{"step": "4"}', "\x00\xff",
                                 "null"])
def test_damaged_metrics_lines_are_skipped_with_a_warning(run, bad, caplog):
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], bad, lines[1]]) + "\n")
    with caplog.at_level(logging.WARNING, logger="genlab.run"):
        output = succeeded(invoke("info", run))
    assert "latest metrics: step=4" in output
    assert f"{path} line 2 is not a metrics record" in caplog.text
    train(run, device="cpu")  # resuming rewrites metrics.jsonl without the damaged line
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4]


# ----------------------------------------------------------------------------- stale temp files


def test_stale_temp_files_of_a_trainer_are_removed_and_no_others(run):
    ours = [run / "checkpoints" / ".step-00000006.safetensors.ab_cd123.tmp", run / ".config.json.zzzzzzzz.tmp",
            run / ".metrics.jsonl.0a1b2c3d.tmp"]
    others = [run / ".eval.json.abcdefgh.tmp", run / "notes.tmp", run / "checkpoints" / ".mine.tmp",
              run / "checkpoints" / ".step-00000006.safetensors.toolong99.tmp"]
    for path in ours + others:
        path.write_bytes(b"half a file")
    succeeded(invoke("train", "--resume", run, "--steps", 6))
    assert [p for p in ours if p.exists()] == []
    assert all(p.read_bytes() == b"half a file" for p in others)


# ----------------------------------------------------------------------------- the run lock


def test_a_locked_run_refuses_a_second_trainer_in_one_line(run):
    before = snapshot(run)
    with run_lock(run):
        for args in (["train", "--resume", run], ["train", "--resume", run, "--steps", 8],
                     ["train", "vae", "--run", run, "--steps", 4, *TINY_ARGS]):
            line = user_error(invoke(*args))
            assert f"{run} is being trained by another genlab" in line, line
    assert snapshot(run) == before
    succeeded(invoke("train", "--resume", run, "--steps", 6))  # released: the next trainer goes ahead


def test_the_lock_excludes_two_threads_of_one_process(tmp_path):
    holding, release = threading.Event(), threading.Event()
    outcome = {}

    def hold():
        with run_lock(tmp_path):
            holding.set()
            release.wait(10)

    def second():
        try:
            with run_lock(tmp_path):
                outcome["second"] = "locked"
        except RunInUse as error:
            outcome["second"] = str(error)

    first = threading.Thread(target=hold)
    first.start()
    assert holding.wait(10)
    other = threading.Thread(target=second)
    other.start()
    other.join(10)
    release.set()
    first.join(10)
    assert "is being trained by another genlab" in outcome["second"]
    with run_lock(tmp_path):  # released when the holder left
        pass


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_two_processes_on_one_run_then_ctrl_c(tmp_path):
    """A real second process is refused while the first trains; a real SIGINT ends the first with one line and
    status 130; the run resumes afterwards (the kernel released the lock)."""
    run = tmp_path / "run"
    # PYTHONPATH: the genlab under test, whatever the venv has installed and whatever the working folder
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(genlab.__file__).parents[1])}
    command = [sys.executable, "-m", "genlab", "train"]
    first = subprocess.Popen([*command, "vae", "--run", str(run), "--steps", "100000", *TINY_ARGS,
                              "--set", "checkpoint_every=5", "--set", "log_every=5"],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: ckpt.list_checkpoints(run) or first.poll() is not None, 120, "a first checkpoint")
        assert first.poll() is None, first.stderr.read()
        second = subprocess.run([*command, "--resume", str(run)], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120, env=env)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"error: {run} is being trained by another genlab (process or lab run): wait for it to end or stop "
            f"it, then resume with `genlab train --resume {run}`"]
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130, stderr
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    stopped_at = int(re.match(r"stopped at step (\d+) and saved it, ", last_line).group(1))
    assert last_line.endswith(f"{ckpt.checkpoint_path(run, stopped_at)}; resume with `genlab train --resume {run}`")
    assert ckpt.list_checkpoints(run)[-1] == ckpt.checkpoint_path(run, stopped_at)  # nothing since was lost
    resumed = subprocess.run([*command, "--resume", str(run), "--steps", "20"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120, env=env)
    assert resumed.returncode == 0, resumed.stderr


def test_ctrl_c_during_training_is_one_line_and_status_130(tmp_path, monkeypatch):
    calls = []
    real_step = genlab.models.FAMILIES["vae"].step

    def interrupted_at_seven(*args):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real_step(*args)

    set_step(monkeypatch, "vae", interrupted_at_seven)
    run = tmp_path / "run"
    result = invoke("train", "vae", "--run", run, "--steps", 10, *TINY_ARGS, "--set", "checkpoint_every=4")
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        f"interrupted at step 6; the last checkpoint is {ckpt.checkpoint_path(run, 4)}; "
        f"resume with `genlab train --resume {run}`"]
    monkeypatch.undo()
    succeeded(invoke("train", "--resume", run))
    assert ckpt.list_checkpoints(run)[-1] == ckpt.checkpoint_path(run, 10)


# ----------------------------------------------------------------------------- a full disk


def test_a_full_disk_keeps_the_previous_checkpoint_and_config(run, monkeypatch):
    change_run_settings(run, {"steps": 6})
    before = snapshot(run)
    real_fsync = os.fsync

    def full_for_checkpoints(fd):
        if ".safetensors." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_for_checkpoints)
    line = user_error(invoke("train", "--resume", run))
    assert line.startswith("error: No space left on device") and str(ckpt.checkpoint_path(run, 6)) in line
    assert "free some space" in line
    monkeypatch.undo()
    after = snapshot(run)
    for name in ("config.json", "checkpoints/step-00000002.safetensors", "checkpoints/step-00000004.safetensors"):
        assert after[name] == before[name], name
    assert not list(run.rglob("*.tmp"))
    succeeded(invoke("train", "--resume", run))  # space freed: the run goes on


# ----------------------------------------------------------------------------- divergence


def test_a_checkpoint_is_never_written_with_non_finite_weights(tmp_path, monkeypatch):
    """Finite losses but an update that overflowed the weights (a huge lr): the checkpoint at that step is
    refused and the run stops, naming the last good one."""
    calls = []
    real_step = genlab.models.FAMILIES["vae"].step

    def overflowing_on_three(model, optimizers, x, forward, accumulate):
        terms = real_step(model, optimizers, x, forward, accumulate)
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))
        return terms

    set_step(monkeypatch, "vae", overflowing_on_three)
    run = make_run(tmp_path / "run", steps=6, checkpoint_every=1)
    with pytest.raises(TrainingDiverged) as error:
        train(run, device="cpu")
    assert "the weights diverged" in str(error.value) and "at step 3" in str(error.value)
    assert f"the last good checkpoint is {ckpt.checkpoint_path(run, 2)}" in str(error.value)
    assert ckpt.list_checkpoints(run) == [ckpt.checkpoint_path(run, 1), ckpt.checkpoint_path(run, 2)]
    assert not list(run.rglob("*.tmp"))


def test_an_exploding_gan_stops_in_one_line(tmp_path):
    """lr=1e6 sends the losses past 1e27 while still finite: the guard stops on the size (MAX_LOSS)."""
    run = tmp_path / "gan"
    line = user_error(invoke("train", "gan", "--data", "ring", "--run", run, "--steps", 50, "--set", "lr=1e6",
                             "--set", "hidden_dims=32", "--set", "latent_dim=2", "--set", "log_every=1"))
    assert "_loss = " in line and "at step " in line and "--set lr=" in line
    assert not ckpt.list_checkpoints(run)


def test_the_collapse_check_survives_huge_logits_and_its_own_failure(tmp_path, monkeypatch, caplog):
    from genlab.data import load_dataset
    from genlab.models import gan
    from genlab.models.gan import GAN, GANConfig

    model = GAN(GANConfig(data_shape=(2,), hidden_dims=(16,), latent_dim=2, loss="non-saturating"))
    record = {"step": 10, "d_real": 1e32, "d_fake": -1e32}  # exp(1e32) overflows; the sigmoid must not
    checks = gan.collapse_evidence(model, load_dataset("ring", "train"), record)
    assert any(check is not None and check.kind == "discriminator" for check in checks)
    assert model.training

    def broken(*args):
        raise OverflowError("math range error")

    broken_gan = dataclasses.replace(genlab.models.FAMILIES["gan"], diagnostics=broken)
    monkeypatch.setitem(genlab.models.FAMILIES, "gan", broken_gan)
    run = create_run(tmp_path / "gan", "gan", TrainConfig(data="ring", steps=10, batch_size=64, log_every=5,
                                                          checkpoint_every=10, sample_every=1000),
                     {"hidden_dims": (16,), "latent_dim": 2})
    with caplog.at_level(logging.WARNING, logger="genlab.run"):
        assert train(run, device="cpu") == ckpt.checkpoint_path(run, 10)
    assert "the collapse check failed (OverflowError: math range error); training goes on" in caplog.text


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize("name, words", [("banana", "unknown device 'banana': use auto, cpu, cuda, cuda:N or mps"),
                                         ("cuda:99", "cuda:99 is not available on this machine")])
def test_bad_devices_are_refused_before_anything_is_written(tmp_path, trained, name, words):
    with pytest.raises(ValueError, match=words.split(":")[0]):
        resolve_device(name)
    new = tmp_path / "new-run"
    assert words in user_error(invoke("train", "vae", "--run", new, "--steps", 4, "--device", name, *TINY_ARGS))
    assert not new.exists()
    before = snapshot(trained)
    for command in (["train", "--resume", trained, "--steps", 8], ["sample", trained], ["reconstruct", trained],
                    ["interpolate", trained], ["eval", trained, "--samples", 2]):
        assert words in user_error(invoke(*command, "--device", name))
    assert snapshot(trained) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(tmp_path):
    assert resolve_device(None) == "cpu" and resolve_device("cpu") == "cpu"
    line = user_error(invoke("train", "vae", "--run", tmp_path / "r", "--device", "cuda", *TINY_ARGS))
    assert line == "error: cuda is not available on this machine: use --device cpu"
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- failed starts


FAILED_STARTS = {  # extra arguments -> words of the error
    "batch larger than the data": (["--set", "batch_size=2000"], "more than the 1500 training examples of digits"),
    "budget zero": (["--budget", "0"], "must be positive"),
    "budget nan": (["--budget", "nan"], "must be positive"),
    "budget huge": (["--budget", "1e9h"], "at most 1000h"),
    "budget words": (["--budget", "soon"], "write e.g. 90s"),
    "device banana": (["--device", "banana"], "unknown device"),
    "hidden_dims negative": (["--set", "hidden_dims=-5"], "hidden_dims"),
    "conv_channels zero": (["--set", "architecture=conv", "--set", "conv_channels=0"], "conv_channels"),
    "image_size huge": (["--set", "image_size=20000"], "image_size=20000 is out of range"),
    "steps huge": (["--steps", 10**10], "steps=10000000000 is out of range"),
    "missing folder": (["--data", "folder:/nonexistent/images"], "/nonexistent/images"),
}


def test_failed_starts_leave_nothing_that_blocks_the_corrected_command(tmp_path):
    new = tmp_path / "new-run"
    for args, words in FAILED_STARTS.values():
        assert words in user_error(invoke("train", "vae", "--run", new, "--steps", 4, *TINY_ARGS, *args))
        assert not new.exists(), f"{args} left a run folder"
    gan_args = ["--data", "moons", "--set", "n_critic=5", "--set", "batch_size=20000", "--set", "hidden_dims=16"]
    line = user_error(invoke("train", "gan", "--run", new, *gan_args))
    assert "batch_size 20000 x 5 batches a step is more than" in line
    assert not new.exists()
    succeeded(invoke("train", "vae", "--run", new, "--steps", 2, *TINY_ARGS))


def test_a_run_that_never_trained_is_replaced_and_one_that_did_is_kept(tmp_path, monkeypatch):
    def failing_first_step(*args):
        raise ValueError("a user error found only by the first step")

    set_step(monkeypatch, "vae", failing_first_step)
    run = tmp_path / "run"
    assert "found only by the first step" in user_error(invoke("train", "vae", "--run", run, "--steps", 4, *TINY_ARGS))
    assert (run / "config.json").exists() and not ckpt.list_checkpoints(run)
    monkeypatch.undo()
    succeeded(invoke("train", "vae", "--run", run, "--steps", 2, *TINY_ARGS, "--set", "lr=0.002"))
    assert read_run_record(run).train.lr == 0.002
    line = user_error(invoke("train", "vae", "--run", run, "--steps", 2, *TINY_ARGS))
    assert f"{run} already holds a run: resume it with --resume {run}" in line


# ----------------------------------------------------------------------------- numeric options


@pytest.mark.parametrize("args, words", [
    (["sample", "RUN", "--n", 10_001], "--n must be between 1 and 10000"),
    (["sample", "RUN", "--seed", -1], "--seed must be between 0 and"),
    (["sample", "RUN", "--seed", 2**63], "--seed must be between 0 and"),
    (["eval", "RUN", "--samples", 1], "--samples must be between 2 and 50000"),
    (["eval", "RUN", "--samples", 10**12], "--samples must be between 2 and 50000"),
    (["eval", "RUN", "--nll-k", 0], "--nll-k) must be between 1 and 5000"),
    (["eval", "RUN", "--nll-k", 10**9], "--nll-k) must be between 1 and 5000"),
    (["eval", "RUN", "--seed", -5], "--seed must be between 0 and"),
    (["reconstruct", "RUN", "--n", 10**9], "--n must be between 1 and 297"),
    (["interpolate", "RUN", "--frames", 10**6], "--frames must be between 2 and 100"),
    (["interpolate", "RUN", "--from", -1], "index -1 is outside the test split"),
    (["train", "--resume", "RUN", "--steps", 0], "steps=0 is out of range"),
    (["train", "--resume", "RUN", "--budget", "inf"], "at most 1000h"),
])
def test_numeric_options_are_bounded(trained, args, words):
    before = snapshot(trained)
    assert words in user_error(invoke(*[trained if arg == "RUN" else arg for arg in args]))
    assert snapshot(trained) == before


@pytest.mark.parametrize("contents", ["", "{", "[1]", '{"train_cpu_s": "slow"}', '{"train_cpu_s": NaN}', "{}"])
def test_a_damaged_compare_record_shows_an_unknown_time(tmp_path, contents, caplog):
    from genlab.compare import recorded_cpu_seconds

    record = tmp_path / "compare.json"
    record.write_text(contents)
    with caplog.at_level(logging.WARNING, logger="genlab.compare"):
        assert recorded_cpu_seconds(record) is None
    assert f"{record} records no training time" in caplog.text
    record.write_text('{"train_cpu_s": 12.5, "budget_s": 60}')
    assert recorded_cpu_seconds(record) == 12.5
    assert recorded_cpu_seconds(tmp_path / "none.json") is None


def test_a_resume_may_lower_the_learning_rate_and_nothing_that_the_weights_depend_on(tmp_path):
    """The advice after a divergence can be followed: --resume --set lr=... takes effect in the optimizers
    (their moments carry on), while a setting the weights were trained with is refused with the list."""
    run = make_run(tmp_path / "run", steps=4)
    train(run, device="cpu")  # its checkpoints hold Adam's state at lr 1e-3
    before = (run / "config.json").read_text()
    message = user_error(invoke("train", "--resume", run, "--set", "latent_dim=5", "--set", "lr=1e-4"))
    assert "cannot change latent_dim" in message and "A resume may change checkpoint_every" in message
    assert (run / "config.json").read_text() == before, "a refused resume changed config.json"
    succeeded(invoke("train", "--resume", run, "--steps", "8", "--set", "lr=1e-4", "--set", "log_every=2"))
    record = read_run_record(run)
    assert (record.train.lr, record.train.steps, record.train.log_every) == (1e-4, 8, 2)
    checkpoint = ckpt.load_checkpoint(ckpt.checkpoint_path(run, 8))
    assert [group["lr"] for group in checkpoint.meta["optimizer_param_groups"]["model"]] == [1e-4]


def test_sigterm_saves_the_step_it_stopped_at_and_the_run_resumes_bit_identically(tmp_path, monkeypatch):
    """SIGTERM (as a scheduler sends) mid-run: the loop finishes the step, checkpoints it between the regular
    checkpoints, and stops with one line; resumed, the run ends as one never stopped."""
    real_step = genlab.models.FAMILIES["vae"].step
    calls = []

    def terminated_at_seven(*args):
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(*args)

    set_step(monkeypatch, "vae", terminated_at_seven)
    run = make_run(tmp_path / "run", steps=10, checkpoint_every=4)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match=r"stopped at step 7 and saved it, .*step-00000007\.safetensors; "
                                                   r"resume with `genlab train --resume "):
        train(run, device="cpu")
    assert signal.getsignal(signal.SIGTERM) is handler  # the loop's handler is gone with the loop
    monkeypatch.undo()
    train(run, device="cpu")
    straight = make_run(tmp_path / "straight", steps=10, checkpoint_every=4)
    train(straight, device="cpu")
    resumed, uninterrupted = ckpt.load_checkpoint(ckpt.checkpoint_path(run, 10)), \
        ckpt.load_checkpoint(ckpt.checkpoint_path(straight, 10))
    assert resumed.tensors.keys() == uninterrupted.tensors.keys()
    assert all(torch.equal(resumed.tensors[name], uninterrupted.tensors[name]) for name in uninterrupted.tensors)
