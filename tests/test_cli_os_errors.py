"""Errors of the operating system, not of genlab (a full disk, a file where a folder should be, --out naming a
folder): every command answers with one `error:` line that says what to do, and nothing saved before is lost."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from cli_helpers import invoke, user_error
from genlab import checkpoint as ckpt

TINY = ["--data", "digits", "--steps", "4", "--set", "hidden_dims=32", "--set", "architecture=mlp"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)




@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("os") / "run"
    result = invoke("train", "vae", "--run", run, *TINY)
    assert result.exit_code == 0, result.output
    return run


def test_out_naming_a_folder_says_so_and_writes_nothing(trained, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    message = user_error(invoke("sample", trained, "--out", folder))
    assert f"({folder})" in message and "give a file name" in message
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("command", [["sample", "RUN", "--out", "FILE/x.png"], ["train", "vae", "--run", "FILE/run"]])
def test_a_file_in_the_way_of_a_folder(trained, tmp_path, command):
    (tmp_path / "notes.txt").write_text("not a folder")
    args = [str(trained) if a == "RUN" else a.replace("FILE", str(tmp_path / "notes.txt")) for a in command]
    message = user_error(invoke(*args, *(TINY if args[0] == "train" else [])))
    assert "notes.txt" in message and ("not a folder" in message or "in the way" in message)
    assert (tmp_path / "notes.txt").read_text() == "not a folder"


def test_a_full_disk_keeps_what_was_saved(trained, tmp_path, monkeypatch):
    """ENOSPC while the next checkpoint is written: one line, and the run's earlier checkpoint, config.json
    and samples are byte for byte what they were (writes go through a temp file that is removed)."""
    run = tmp_path / "run"
    assert invoke("train", "vae", "--run", run, *TINY).exit_code == 0
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and "tensorboard" not in path.parts}
    real_fsync = os.fsync

    def full(fd):  # the disk fills while the step-8 checkpoint is written (config.json and previews got through)
        if ".safetensors." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    message = user_error(invoke("train", "--resume", run, "--steps", "8"))
    assert "No space left on device" in message and "free some space" in message
    monkeypatch.undo()
    for path, data in before.items():
        # metrics.jsonl: lines after the checkpoint are appended, then dropped on resume; config.json: --steps 8
        if path.name not in ("metrics.jsonl", "config.json"):
            assert path.read_bytes() == data, f"{path} changed"
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 8
    assert not [p for p in run.rglob("*.tmp")], "a temp file was left behind"
    assert ckpt.list_checkpoints(run)[-1].name == "step-00000004.safetensors"
    assert invoke("train", "--resume", run, "--steps", "8").exit_code == 0  # space freed: the run goes on


def test_files_genlab_writes_are_readable_by_others_as_the_umask_allows(trained):
    old = os.umask(0o022)
    try:
        path = Path("shared.json")
        ckpt.atomic_write_bytes(path, b"{}")
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
