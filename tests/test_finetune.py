"""Fine-tuning (a new run from another run's weights: create_run(init_from=...), `genlab train --init-from`) and
FreezeD (freeze_d: D's first blocks keep their weights)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from cli_helpers import invoke, succeeded, user_error
from genlab import checkpoint as ckpt
from genlab.models import GAN, GANConfig
from genlab.models.gan import configure_optimizers, training_step
from genlab.run import create_run, open_run, read_run_record
from genlab.train import TrainConfig, train

GAN_SETTINGS = {"latent_dim": 3, "hidden_dims": (16, 16)}  # not the defaults: a fine-tuned run must take them over


def quick(data: str = "ring", **settings) -> TrainConfig:
    return TrainConfig(**{"data": data, "steps": 6, "batch_size": 16, "log_every": 3, "checkpoint_every": 3,
                          "sample_every": 1000, **settings})


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A GAN trained 6 steps on ring: the run others fine-tune from."""
    run = create_run(tmp_path_factory.mktemp("finetune") / "source", "gan", quick(), GAN_SETTINGS)
    train(run)
    return run


def weights(run_or_checkpoint) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in open_run(run_or_checkpoint, splits=()).model.state_dict().items()}


def test_a_fine_tuned_run_records_its_source_and_takes_its_model_settings(source, tmp_path):
    run = create_run(tmp_path / "tuned", "gan", quick("grid"), {"loss": "hinge"}, init_from=source)
    latest = ckpt.list_checkpoints(source)[-1]
    expected = {"path": str(latest.resolve()), "step": 6, "sha256": hashlib.sha256(latest.read_bytes()).hexdigest()}
    assert json.loads((run / "config.json").read_text())["init_from"] == expected
    record = read_run_record(run)
    assert record.model.latent_dim == 3 and record.model.hidden_dims == (16, 16)  # the source's
    assert record.model.loss == "hinge" and record.train.data == "grid"  # what this run chose
    train(run)
    # the checkpoint holds the same record, read by the same reader
    _, saved = ckpt.read_meta_and_record(ckpt.list_checkpoints(run)[-1])
    assert saved == record and saved.init_from.sha256 == expected["sha256"]
    assert "fine-tuned from" in succeeded(invoke("info", run))


def test_a_fine_tuned_run_starts_from_the_source_weights_with_fresh_optimizers(source, tmp_path):
    # a learning rate so small that one step leaves the weights where they started
    run = create_run(tmp_path / "tuned", "gan", quick("grid", lr=1e-12, steps=1), {}, init_from=source)
    train(run)
    start, tuned = weights(source), weights(run)
    for name, tensor in start.items():
        torch.testing.assert_close(tuned[name], tensor, rtol=0, atol=1e-9, msg=name)
    # Adam starts afresh: one step taken, not the source's seven
    checkpoint = ckpt.load_checkpoint(ckpt.list_checkpoints(run)[-1])
    assert checkpoint.step == 1 and checkpoint.tensors["optimizer.generator.0.step"].item() == 1
    # without --init-from the same run starts from its own initialisation
    fresh = create_run(tmp_path / "fresh", "gan", quick("grid", lr=1e-12, steps=1), GAN_SETTINGS)
    train(fresh)
    first = next(name for name in start if name.startswith("generator."))
    assert not torch.allclose(weights(fresh)[first], start[first])


def test_a_fine_tuned_run_resumes_bit_identically(source, tmp_path):
    whole = create_run(tmp_path / "whole", "gan", quick("grid"), {}, init_from=source)
    train(whole)
    parts = create_run(tmp_path / "parts", "gan", quick("grid"), {}, init_from=source)
    train(parts, stop_after=3)
    train(parts)  # resumes from step 3's checkpoint: the source is no longer read
    for name, tensor in weights(whole).items():
        assert torch.equal(weights(parts)[name], tensor), name
    # a resume that changes a setting keeps the record's source
    succeeded(invoke("train", "--resume", parts, "--steps", 7))
    assert read_run_record(parts).init_from == read_run_record(whole).init_from


def test_fine_tuning_refuses_what_does_not_fit_the_source(source, tmp_path):
    with pytest.raises(ValueError, match=r"cannot change latent_dim; it may change .*freeze_d.*loss"):
        create_run(tmp_path / "a", "gan", quick(), {"latent_dim": 8}, init_from=source)
    with pytest.raises(ValueError, match="holds a gan model, not a vae"):
        create_run(tmp_path / "b", "vae", quick(), {}, init_from=source)
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\), but .* was trained on \(2,\)"):
        create_run(tmp_path / "c", "gan", quick("digits"), {}, init_from=source)
    # an EMA copy the source never had: the weights say no, whatever the setting's name
    with pytest.raises(ValueError, match=r"do not fit this run's network \(missing model.ema"):
        create_run(tmp_path / "d", "gan", quick(), {"ema_decay": 0.9}, init_from=source)
    with pytest.raises(FileNotFoundError):
        create_run(tmp_path / "e", "gan", quick(), {}, init_from=tmp_path / "nowhere")
    assert not any((tmp_path / name).exists() for name in "abcde")  # nothing written


def test_augmentation_state_starts_afresh_when_fine_tuning_switches_it_on(tmp_path):
    """ADA's strength p and its tallies are buffers, not weights: a plain source fine-tunes into an ADA run."""
    plain = create_run(tmp_path / "plain", "gan", quick("digits", steps=2), {"conv_channels": (8, 16)})
    train(plain)
    run = create_run(tmp_path / "ada", "gan", quick("digits", steps=2, lr=1e-12), {"augment": "ada"},
                     init_from=plain)
    train(run)
    tuned, start = weights(run), weights(plain)
    assert tuned["augment_p"].item() == 0  # ADA starts at p = 0 and moves only every few D updates
    for name, tensor in start.items():
        if "running_" not in name and "num_batches_tracked" not in name:  # BatchNorm's statistics follow the data
            torch.testing.assert_close(tuned[name], tensor, rtol=0, atol=1e-9, msg=name)
    # and back: an ADA source fine-tunes into a run without augmentation
    back = create_run(tmp_path / "back", "gan", quick("digits", steps=2), {"augment": "none"}, init_from=run)
    train(back)
    assert "augment_p" not in weights(back)


def test_a_source_that_changed_before_the_first_step_is_refused(source, tmp_path):
    copy = tmp_path / "source-copy"
    shutil.copytree(source, copy)
    run = create_run(tmp_path / "tuned", "gan", quick("grid"), {}, init_from=copy)
    latest, earlier = ckpt.list_checkpoints(copy)[-1], ckpt.list_checkpoints(copy)[0]
    shutil.copyfile(earlier, latest)
    with pytest.raises(ValueError, match="changed since this fine-tuned run was made"):
        train(run)
    latest.unlink()
    with pytest.raises(FileNotFoundError, match="is gone"):
        train(run)


def test_an_edited_source_in_config_json_stops_the_resume(source, tmp_path):
    run = create_run(tmp_path / "tuned", "gan", quick("grid"), {}, init_from=source)
    train(run, stop_after=3)
    config = json.loads((run / "config.json").read_text())
    config["init_from"]["step"] = 3
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="was edited since .*init_from"):
        train(run)


def test_cli_fine_tunes_with_init_from(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    succeeded(invoke("train", "gan", "--init-from", source, "--data", "grid", "--steps", 3, "--run", "tuned",
                     "--set", "batch_size=16", "--set", "freeze_d=1"))
    record = read_run_record(tmp_path / "tuned")
    assert record.init_from.step == 6 and record.model.freeze_d == 1 and record.model.latent_dim == 3
    line = user_error(invoke("train", "gan", "--init-from", source, "--set", "hidden_dims=8", "--run", "no"))
    assert "cannot change hidden_dims" in line and "may change" in line
    assert "give one of them" in user_error(invoke("train", "--resume", "tuned", "--init-from", source))
    assert not (tmp_path / "no").exists()


# ----------------------------------------------------------------------------- FreezeD


def train_steps(model: GAN, x: torch.Tensor, steps: int = 3) -> None:
    optimizers = configure_optimizers(model, 1e-2)
    for _ in range(steps):
        training_step(model, optimizers, x)


@pytest.mark.parametrize(("shape", "settings", "frozen"), [
    ((1, 8, 8), {"conv_channels": (8, 16), "freeze_d": 2}, ("features.0.", "features.2.", "features.3.")),  # + BN
    ((1, 8, 8), {"conv_channels": (8, 16), "freeze_d": 1, "loss": "wgan"}, ("features.0.",)),  # clipping too
    ((2,), {"hidden_dims": (16, 16, 16), "freeze_d": 2, "spectral_norm": "d"}, ("features.1.", "features.3.")),
])
def test_freeze_d_keeps_the_first_blocks_and_trains_the_rest(shape, settings, frozen):
    torch.manual_seed(0)
    model = GAN(GANConfig(data_shape=shape, latent_dim=4, **settings))
    before = {name: p.detach().clone() for name, p in model.discriminator.named_parameters()}
    g_before = [p.detach().clone() for p in model.generator.parameters()]
    train_steps(model, torch.rand(3 * 16, *shape))
    for name, p in model.discriminator.named_parameters():
        if name.startswith(frozen):
            assert torch.equal(p, before[name]), f"{name} changed"
            assert not p.requires_grad, f"{name} is trainable again after G's update"
        else:
            assert not torch.equal(p, before[name]), f"{name} did not train"
    assert all(not torch.equal(p, b) for p, b in zip(model.generator.parameters(), g_before, strict=True))
    frozen_count = sum(name.startswith(frozen) for name in before)
    assert 0 < frozen_count < len(before)  # the head always trains


def test_freeze_d_must_fit_in_the_discriminator():
    GANConfig(data_shape=(1, 8, 8), conv_channels=(8, 16), freeze_d=2)  # every block but the head: allowed
    with pytest.raises(ValueError, match=r"freeze_d=3 is more than D's 2 blocks .*conv_channels.*: use 0..2"):
        GANConfig(data_shape=(1, 8, 8), conv_channels=(8, 16), freeze_d=3)
    with pytest.raises(ValueError, match="freeze_d=-1 is out of range"):
        GANConfig(freeze_d=-1)
