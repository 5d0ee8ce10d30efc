"""Checkpoints: exact save/load round trips, a plain safetensors file that is never unpickled,
clear errors for damaged files, atomic writes, and picking the newest checkpoint by step."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

import genlab.models
from genlab import checkpoint as ckpt
from genlab.data import load_dataset
from genlab.run import create_run, open_run
from genlab.train import TrainConfig, train


def train_tiny(run_dir: Path, family: str, architecture: str, steps: int = 6):
    """Train a tiny digits model and return (run folder, the very model object train() ended with)."""
    models = []
    original = genlab.models.FAMILIES[family]

    def step(model, optimizers, x, forward, accumulate):
        models.append(model)
        return original.step(model, optimizers, x, forward, accumulate)  # the family's own (the VAE counts warm-up)

    settings = {"hidden_dims": (16,), "conv_channels": (4, 8), "latent_dim": 3, "architecture": architecture}
    config = TrainConfig(data="digits", steps=steps, batch_size=16, checkpoint_every=3, log_every=3, sample_every=100)
    run = create_run(run_dir, family, config, settings)
    genlab.models.FAMILIES[family] = dataclasses.replace(original, step=step)
    try:
        train(run, device="cpu")
    finally:
        genlab.models.FAMILIES[family] = original
    assert all(model is models[0] for model in models)
    return run, models[0]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    run, _ = train_tiny(tmp_path_factory.mktemp("ckpt") / "vae", "vae", "mlp")
    return run


@pytest.mark.parametrize("family", ["ae", "vae"])
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_load_model_reproduces_the_trained_model_exactly(tmp_path, family, architecture):
    run, trained = train_tiny(tmp_path / "run", family, architecture)
    trained.eval()
    loaded, meta = (o := open_run(run, splits=())).model, o.meta
    assert type(loaded) is type(trained) and not loaded.training
    assert loaded.config == trained.config and loaded.config.architecture == architecture
    assert meta["run"]["family"] == family and meta["step"] == 6
    assert trained.state_dict().keys() == loaded.state_dict().keys()
    for name, tensor in trained.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name

    x = load_dataset("digits", "test").x[:20]
    z = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(trained.reconstruct(x), loaded.reconstruct(x))
        assert torch.equal(trained.decode(z), loaded.decode(z))
    if family == "vae":
        first = trained.sample(5, generator=torch.Generator().manual_seed(3))
        assert torch.equal(first, loaded.sample(5, generator=torch.Generator().manual_seed(3)))
    # A model that learned nothing would also round-trip; make sure these weights left their init.
    torch.manual_seed(0)
    fresh = type(trained)(trained.config)
    assert not all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values(),
                                                       strict=True))


def test_a_checkpoint_file_loads_the_same_as_its_run(vae_run):
    first = open_run(ckpt.checkpoint_path(vae_run, 3), splits=()).model
    latest, meta = (o := open_run(vae_run, splits=())).model, o.meta
    assert meta["step"] == 6
    assert open_run(ckpt.checkpoint_path(vae_run, 6), splits=()).meta == meta
    assert not torch.equal(first.decoder[0][0].weight, latest.decoder[0][0].weight)


def test_the_file_is_plain_safetensors_with_genlab_metadata(vae_run):
    path = ckpt.checkpoint_path(vae_run, 6)
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["genlab"])
        names = set(f.keys())
    assert {"format_version", "genlab_version", "run", "step", "data_position", "optimizer_param_groups"} <= set(meta)
    assert meta["run"] == json.loads((vae_run / "config.json").read_text())  # one layout, in both files
    assert meta["format_version"] == ckpt.FORMAT_VERSION and meta["run"]["family"] == "vae" and meta["step"] == 6
    assert meta["run"]["model"]["data_shape"] == [1, 8, 8] and meta["run"]["model"]["latent_dim"] == 3
    assert meta["run"]["train"]["batch_size"] == 16
    assert meta["data_position"] == {"epoch": 0, "batch": 6}  # 1500 // 16 = 93 batches per epoch
    assert "rng.torch" in names
    weights = open_run(path, splits=()).model.state_dict()
    assert {n for n in names if n.startswith("model.")} == {f"model.{k}" for k in weights}
    assert any(n.startswith("optimizer.model.") and n.endswith(".exp_avg") for n in names)
    assert ckpt.read_meta(path) == meta


def test_loading_never_unpickles(vae_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load must not unpickle")

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model, meta = (o := open_run(vae_run, splits=())).model, o.meta
    assert meta["step"] == 6 and sum(p.numel() for p in model.parameters()) > 0
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(vae_run, 3)).step == 3


# ----------------------------------------------------------------------------- damaged files


def assert_names_file(error: pytest.ExceptionInfo, path: Path, *words: str):
    message = str(error.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("keep", [0.5, 0.99, 20], ids=["half", "all-but-the-end", "header-only"])
def test_truncated_checkpoint(vae_run, tmp_path, keep):
    data = ckpt.checkpoint_path(vae_run, 6).read_bytes()
    path = tmp_path / "step-00000006.safetensors"
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    for load in (ckpt.read_meta, ckpt.load_checkpoint, open_run):
        with pytest.raises(ValueError) as error:
            load(path)
        assert_names_file(error, path, "truncated")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(5000))
    for load in (ckpt.read_meta, open_run):
        with pytest.raises(ValueError) as error:
            load(path)
        assert_names_file(error, path, "not a readable safetensors")


def test_safetensors_without_genlab_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"weight": torch.zeros(3)}, str(path), metadata={"other": "tool"})
    with pytest.raises(ValueError) as error:
        open_run(path)
    assert_names_file(error, path, "not a genlab checkpoint")
    safetensors.torch.save_file({"weight": torch.zeros(3)}, str(path))  # no metadata at all
    with pytest.raises(ValueError, match="not a genlab checkpoint"):
        ckpt.read_meta(path)


def rewrite_meta(source: Path, target: Path, change) -> None:
    """Copy a checkpoint with its tensors intact and its "genlab" metadata passed through `change`."""
    checkpoint = ckpt.load_checkpoint(source)
    metadata = change(json.dumps(checkpoint.meta))
    safetensors.torch.save_file(checkpoint.tensors, str(target), metadata={"genlab": metadata})


def test_newer_format_version(vae_run, tmp_path):
    path = tmp_path / "future.safetensors"
    rewrite_meta(ckpt.checkpoint_path(vae_run, 6), path,
                 lambda text: json.dumps({**json.loads(text), "format_version": ckpt.FORMAT_VERSION + 1}))
    for load in (ckpt.read_meta, open_run):
        with pytest.raises(ValueError) as error:
            load(path)
        assert_names_file(error, path, f"format {ckpt.FORMAT_VERSION + 1}", "upgrade genlab")


def test_rewritten_metadata_still_loads(vae_run, tmp_path):
    """rewrite_meta itself keeps a checkpoint loadable: the failures above come from the change alone."""
    path = tmp_path / "same.safetensors"
    rewrite_meta(ckpt.checkpoint_path(vae_run, 6), path, lambda text: text)
    assert open_run(path, splits=()).meta["step"] == 6


def test_garbled_genlab_metadata_names_the_file(vae_run, tmp_path):
    path = tmp_path / "garbled.safetensors"
    rewrite_meta(ckpt.checkpoint_path(vae_run, 6), path, lambda text: text[: len(text) // 2])
    with pytest.raises(ValueError) as error:
        ckpt.read_meta(path)
    assert_names_file(error, path)


def test_missing_paths(tmp_path):
    missing = tmp_path / "nowhere" / "step-00000001.safetensors"
    for load in (ckpt.read_meta, ckpt.load_checkpoint, open_run):
        with pytest.raises(FileNotFoundError) as error:
            load(missing)
        assert str(missing) in str(error.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_run(tmp_path / "no-such-run")


def test_run_folder_without_checkpoints(tmp_path):
    run = create_run(tmp_path / "run", "vae", TrainConfig(data="digits"), {"hidden_dims": (16,)})
    with pytest.raises(FileNotFoundError, match="holds no checkpoints yet") as error:
        open_run(run)
    assert str(run / "checkpoints") in str(error.value)


# ----------------------------------------------------------------------------- atomic writes and naming


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_atomic_write_failure_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, failing):
    path = tmp_path / "step-00000001.safetensors"
    path.write_bytes(b"old contents")

    def fail(*args, **kwargs):
        raise OSError(f"simulated {failing} failure")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match=f"simulated {failing}"):
        ckpt.atomic_write_bytes(path, b"new contents " * 1000)
    monkeypatch.undo()
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_atomic_write_replaces_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "file.bin"
    ckpt.atomic_write_bytes(path, b"first")
    ckpt.atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]


def test_save_checkpoint_failure_keeps_the_previous_checkpoint(vae_run, tmp_path, monkeypatch):
    path = tmp_path / "step-00000006.safetensors"
    path.write_bytes(ckpt.checkpoint_path(vae_run, 6).read_bytes())
    model, meta = (o := open_run(path, splits=())).model, o.meta
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError, match="disk gone"):
        ckpt.save_checkpoint(path, meta={**meta, "step": 7}, model=model, optimizers={})
    monkeypatch.undo()
    assert ckpt.read_meta(path)["step"] == 6
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_resolve_checkpoint_picks_the_highest_step(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("step-00000009.safetensors", "step-00000010.safetensors", "step-00000002.safetensors",
                 ".step-00000011.safetensors.abc.tmp", "notes.txt", "step-x.safetensors"):
        (folder / name).write_bytes(b"")
    assert ckpt.resolve_checkpoint(tmp_path / "run") == folder / "step-00000010.safetensors"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == [
        "step-00000002.safetensors", "step-00000009.safetensors", "step-00000010.safetensors"]
    # By number, not by name: unpadded step-10 is newer than step-9 although "1" < "9".
    (folder / "step-123.safetensors").write_bytes(b"")
    (folder / "step-99.safetensors").write_bytes(b"")
    assert ckpt.resolve_checkpoint(tmp_path / "run") == folder / "step-123.safetensors"
    # A file is taken as given.
    given = folder / "step-00000009.safetensors"
    assert ckpt.resolve_checkpoint(given) == given


def test_prune_keeps_the_newest(tmp_path):
    for step in (1, 5, 10, 20):
        ckpt.checkpoint_path(tmp_path, step).parent.mkdir(exist_ok=True)
        ckpt.checkpoint_path(tmp_path, step).write_bytes(b"")
    ckpt.prune_checkpoints(tmp_path, 2)
    assert ckpt.list_checkpoints(tmp_path) == [ckpt.checkpoint_path(tmp_path, 10), ckpt.checkpoint_path(tmp_path, 20)]


@pytest.mark.parametrize("family, settings, old_name", [
    ("gan", {"hidden_dims": (16,), "latent_dim": 2, "ema_decay": 0.9}, "ema_generator"),
    ("ddpm", {"hidden_dims": (16,), "num_timesteps": 50, "ema_decay": 0.9}, "ema_network"),
])
def test_a_checkpoint_with_the_old_ema_names_still_loads_and_resumes(tmp_path, family, settings, old_name):
    """Checkpoints written before the EMA copies were both named `ema` call them ema_generator / ema_network:
    rewrite one with the old names, as genlab then wrote it, and it loads and resumes bit-identically."""
    config = TrainConfig(data="ring", steps=4, batch_size=32, checkpoint_every=2, log_every=2, sample_every=100)
    run = create_run(tmp_path / "old", family, config, settings)
    train(run, device="cpu", stop_after=2)
    path = ckpt.checkpoint_path(run, 2)
    raw = safetensors.safe_open(str(path), "pt")
    metadata = raw.metadata()
    tensors = {name.replace("model.ema.", f"model.{old_name}.", 1): raw.get_tensor(name).clone()
               for name in raw.keys()}
    assert any(name.startswith(f"model.{old_name}.") for name in tensors)
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))
    model = open_run(path).model
    assert torch.equal(model.ema.state_dict()[next(iter(model.ema.state_dict()))],
                       tensors[f"model.{old_name}.{next(iter(model.ema.state_dict()))}"])
    train(run, device="cpu")  # resumes from the old-format checkpoint
    fresh = create_run(tmp_path / "new", family, config, settings)
    train(fresh, device="cpu")
    resumed = open_run(ckpt.checkpoint_path(run, 4)).model
    straight = open_run(ckpt.checkpoint_path(fresh, 4)).model
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values(), strict=True):
        assert torch.equal(a, b)
