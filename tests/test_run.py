"""The run record: one layout in config.json and checkpoints, old checkpoints still open, open_run's parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

import genlab
from genlab import checkpoint as ckpt
from genlab.models import VAEConfig
from genlab.run import RunRecord, create_run, open_run, read_run_record
from genlab.train import TrainConfig, train

TINY = {"hidden_dims": (32,), "latent_dim": 3, "architecture": "mlp"}


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    run = create_run(tmp_path_factory.mktemp("run") / "vae", "vae", TrainConfig(steps=4, batch_size=16, log_every=2,
                     sample_every=4, checkpoint_every=2), TINY)
    train(run, device="cpu")
    return run


def test_record_round_trip():
    record = RunRecord("vae", VAEConfig(data_shape=(1, 8, 8), **TINY), TrainConfig(lr=3e-4))
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


@pytest.mark.parametrize("values, words", [([1], "the run record is not a JSON object"),
                                           ({"family": "vae", "model": {}}, "no train"),
                                           ({"family": "vae", "model": {"latent_dim": 0}, "train": {}}, "latent_dim")])
def test_record_refuses_what_does_not_fit(values, words):
    with pytest.raises(ValueError, match=words):
        RunRecord.from_json(values)


def test_config_json_and_checkpoint_hold_the_same_record(vae_run):
    meta = ckpt.read_meta(ckpt.resolve_checkpoint(vae_run))
    assert meta["run"] == json.loads((vae_run / "config.json").read_text())
    assert RunRecord.from_json(meta["run"]) == read_run_record(vae_run)


def test_a_checkpoint_in_the_old_layout_still_opens(vae_run, tmp_path):
    """Checkpoints written before the record had the keys family, model_config and train_config."""
    path = ckpt.resolve_checkpoint(vae_run)
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["genlab"])
    record = meta.pop("run")
    del record["model"]["beta"]  # older still: a setting added since gets its default
    old = {**meta, "family": record["family"], "model_config": record["model"], "train_config": record["train"]}
    old_path = tmp_path / "old.safetensors"
    safetensors.torch.save_file(safetensors.torch.load_file(str(path)), str(old_path),
                                metadata={"genlab": json.dumps(old)})
    opened = open_run(old_path, splits=())
    new = open_run(path, splits=())
    assert opened.record == new.record and opened.step == new.step == 4
    assert ckpt.read_meta(old_path) == ckpt.read_meta(path)
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(opened.model.reconstruct(x), new.model.reconstruct(x))


def test_open_run_gives_model_record_and_the_runs_own_splits(vae_run):
    opened = open_run(vae_run, splits=("train", "test"))
    assert not opened.model.training and opened.folder == vae_run and opened.step == 4
    assert opened.record.model.latent_dim == 3 and opened.record.train.data == "digits"
    assert set(opened.data) == {"train", "test"} and opened.data["test"].shape == (1, 8, 8)


def test_genlab_train_loads_each_split_once_and_keeps_nothing_after(tmp_path, monkeypatch):
    """create_run loads the data to refuse a bad start, train() trains on it: inside loading_once (as
    `genlab train` runs them) each split is read once; outside, nothing is kept between calls."""
    import genlab.run
    from cli_helpers import invoke, succeeded

    loads = []
    real = genlab.run.load_dataset

    def counted(name, split, **options):
        loads.append(split)
        return real(name, split, **options)

    monkeypatch.setattr(genlab.run, "load_dataset", counted)
    succeeded(invoke("train", "vae", "--data", "digits", "--steps", "2", "--run", tmp_path / "run",
                     "--set", "hidden_dims=8", "--set", "architecture=mlp"))
    assert sorted(loads) == ["test", "train"]
    loads.clear()
    config = genlab.run.read_run_record(tmp_path / "run").train
    genlab.run.load_run_data(config, "train")
    genlab.run.load_run_data(config, "train")
    assert loads == ["train", "train"]  # no block: no memory between calls
    with genlab.run.loading_once():
        first, second = genlab.run.load_run_data(config, "test"), genlab.run.load_run_data(config, "test")
    assert first is second and loads == ["train", "train", "test"]


def test_the_top_level_save_and_load_round_trip_any_genlab_model(tmp_path):
    from genlab.models import GAN, VAE, GANConfig, VAEConfig

    for model in (VAE(VAEConfig(data_shape=(2,), latent_dim=2, hidden_dims=(8,))),
                  GAN(GANConfig(data_shape=(2,), latent_dim=2, hidden_dims=(8,), ema_decay=0.9))):
        path = genlab.save(model, tmp_path / f"{type(model).__name__}.safetensors")
        loaded = genlab.load(path)
        assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(),
                                                     strict=True))
    with pytest.raises(ValueError, match="Linear is not a genlab model: save one of Autoencoder, VAE"):
        genlab.save(torch.nn.Linear(2, 2), tmp_path / "linear.safetensors")
    run = create_run(tmp_path / "run", "vae", TrainConfig(data="ring", steps=2, batch_size=16),
                     {"latent_dim": 2, "hidden_dims": (8,)})
    train(run, device="cpu")
    assert genlab.load(run).can_sample  # a run folder: its latest checkpoint


def test_importing_genlab_imports_no_torch():
    code = "import sys, genlab; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(genlab.__file__).parents[1])}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout.strip() == "False"
