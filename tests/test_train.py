"""The training loop: bit-identical resume (in process and after a real SIGKILL), the NaN guard,
checkpoint pruning, logging cadence, run-folder bookkeeping, and that a VAE actually learns."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import genlab.models
import genlab.train
from conftest import set_step
from genlab import checkpoint as ckpt
from genlab.cli import app
from genlab.models import AutoencoderConfig, VAEConfig
from genlab.run import create_run, open_run, read_run_record
from genlab.train import TrainConfig, TrainingDiverged, train

TINY = {"hidden_dims": (32,), "latent_dim": 2, "architecture": "mlp"}


def make_run(run_dir: Path, family: str = "vae", model_settings: dict | None = None, **train_settings) -> Path:
    """A tiny run on scikit-learn digits (1500 8x8 images)."""
    settings = {"data": "digits", "steps": 40, "batch_size": 32, "checkpoint_every": 10, "log_every": 10,
                "sample_every": 1000, "keep_checkpoints": 10, **train_settings}
    return create_run(run_dir, family, TrainConfig(**settings), {**TINY, **(model_settings or {})})


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_speed(records: list[dict]) -> list[dict]:
    """Metric lines minus images_per_s, the one value that depends on the wall clock."""
    return [{k: v for k, v in record.items() if k != "images_per_s"} for record in records]


def assert_same_checkpoint(a: Path, b: Path) -> None:
    first, second = ckpt.load_checkpoint(a), ckpt.load_checkpoint(b)
    assert first.meta == second.meta
    assert first.tensors.keys() == second.tensors.keys()
    for prefix in ("model.", "optimizer.", "rng."):
        assert any(name.startswith(prefix) for name in first.tensors), f"no {prefix}* tensors in {a}"
    unequal = [name for name in first.tensors if not torch.equal(first.tensors[name], second.tensors[name])]
    assert not unequal, f"tensors differ between {a.name} and {b.name}: {unequal}"


# ----------------------------------------------------------------------------- resume


FAMILIES = {  # case -> (family, model settings, train settings)
    "vae": ("vae", None, {}),
    "vae-kl-warmup": ("vae", {"kl_warmup": 30}, {}),  # the ramp is in mid-course at the step-20 checkpoint
    "ae": ("ae", {"noise_std": 0.3}, {}),  # a denoising AE draws noise from the global RNG at every step
    "vqvae": ("vqvae", {"num_codes": 16}, {}),  # the codebook and its Adam state
    "vqvae-conv": ("vqvae", {"architecture": "conv", "conv_channels": (8, 16)}, {}),
    # both networks, both optimizers, the EMA copy, spectral norm's power-iteration vectors, two D steps per G
    "gan": ("gan", {"loss": "wgan-gp", "n_critic": 2, "ema_decay": 0.9, "spectral_norm": "both"}, {}),
    "dcgan": ("gan", {"architecture": "conv", "conv_channels": (8, 16), "minibatch_stddev": True,
                      "ema_decay": 0.9}, {}),
    "dcgan-bf16": ("gan", {"architecture": "conv", "conv_channels": (8, 16)}, {"precision": "bf16-mixed"}),
    # DiffAugment's random transforms; ADA's p and the D verdicts gathered since p last moved: 3 D updates a step,
    # so the step-20 checkpoint falls mid-interval (60 % 4 = 0, but 25 steps' 75 updates do not), and p moves fast
    "dcgan-diffaugment": ("gan", {"architecture": "conv", "conv_channels": (8, 16), "augment": "diffaugment"}, {}),
    "dcgan-ada": ("gan", {"architecture": "conv", "conv_channels": (8, 16), "augment": "ada", "ada_images": 300,
                          "n_critic": 3}, {}),
}


@pytest.mark.parametrize("case", list(FAMILIES))
def test_resume_is_bit_identical(tmp_path, case):
    family, settings, train_settings = FAMILIES[case]
    straight = make_run(tmp_path / "straight", family, settings, binarize=True, lr_schedule="cosine",
                        **train_settings)
    interrupted = make_run(tmp_path / "interrupted", family, settings, binarize=True, lr_schedule="cosine",
                           **train_settings)
    final = train(straight, device="cpu")
    assert final == ckpt.checkpoint_path(straight, 40)

    stopped_at = train(interrupted, device="cpu", stop_after=25)
    assert stopped_at == ckpt.checkpoint_path(interrupted, 20)  # step 25 was not a checkpoint step
    assert [p.name for p in ckpt.list_checkpoints(interrupted)] == ["step-00000010.safetensors",
                                                                   "step-00000020.safetensors"]
    assert metrics(interrupted)[-1]["step"] == 20  # an interruption, like a kill, logs nothing of its own
    assert train(interrupted, device="cpu") == ckpt.checkpoint_path(interrupted, 40)

    assert [p.name for p in ckpt.list_checkpoints(straight)] == [p.name for p in ckpt.list_checkpoints(interrupted)]
    for a, b in zip(ckpt.list_checkpoints(straight), ckpt.list_checkpoints(interrupted), strict=True):
        assert_same_checkpoint(a, b)
    assert [r["step"] for r in metrics(straight)] == [10, 20, 30, 40]
    assert without_speed(metrics(straight)) == without_speed(metrics(interrupted))


def test_the_kl_warmup_weight_in_effect_is_logged_and_continues_across_a_resume(tmp_path):
    run = make_run(tmp_path / "warmup", model_settings={"kl_warmup": 20, "beta": 2.0})
    train(run, device="cpu", stop_after=20)
    train(run, device="cpu")
    # steps 0-9 use weights 2 * (0..9) / 20, steps 10-19 2 * (10..19) / 20, then beta = 2: each line the mean
    assert [r["kl_weight"] for r in metrics(run)] == pytest.approx([0.45, 1.45, 2.0, 2.0])


def test_a_run_whose_first_preview_is_far_off_writes_an_early_one_at_its_first_log_step(tmp_path):
    early = make_run(tmp_path / "early", steps=60)  # logs every 10, previews every 1000: the first at step 60
    train(early, device="cpu", stop_after=30)
    assert {p.name for p in (early / "samples").iterdir()} == {"step-00000010-samples.png",
                                                               "step-00000010-reconstructions.png"}
    train(early, device="cpu")  # a resumed run past its first log step writes no second early preview
    assert {p.name for p in (early / "samples").iterdir()} == {
        f"step-{s:08d}-{kind}.png" for s in (10, 60) for kind in ("samples", "reconstructions")}
    soon = make_run(tmp_path / "soon", steps=60, sample_every=40)  # the first regular one is 4 log lines away
    train(soon, device="cpu")
    assert {p.name for p in (soon / "samples").iterdir()} == {
        f"step-{s:08d}-{kind}.png" for s in (40, 60) for kind in ("samples", "reconstructions")}


def test_resume_comparison_would_catch_a_lost_rng_state(tmp_path, monkeypatch):
    """The test above is not vacuous: resuming without the saved RNG state gives different weights."""
    straight = make_run(tmp_path / "straight", binarize=True)
    resumed = make_run(tmp_path / "resumed", binarize=True)
    train(straight, device="cpu")
    train(resumed, device="cpu", stop_after=20)
    real_restore = ckpt.restore
    monkeypatch.setattr(ckpt, "restore", lambda c, m, o=None, restore_rng=False: real_restore(c, m, o, False))
    train(resumed, device="cpu")
    a = ckpt.load_checkpoint(ckpt.checkpoint_path(straight, 40)).prefixed("model.")
    b = ckpt.load_checkpoint(ckpt.checkpoint_path(resumed, 40)).prefixed("model.")
    assert not all(torch.equal(a[name], b[name]) for name in a)


def poll_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    steps = 500  # ~4 s of training after the first checkpoint at step 5: the kill lands long before the end
    args = ["train", "vae", "--data", "digits", "--steps", str(steps), "--set", "checkpoint_every=5",
            "--set", "log_every=10", "--set", "batch_size=32", "--set", "binarize=true",
            "--set", "hidden_dims=32", "--set", "latent_dim=2", "--set", "architecture=mlp"]
    killed_run = tmp_path / "killed"
    # PYTHONPATH: the genlab under test, whatever the venv has installed and whatever the working folder
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(genlab.train.__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "genlab", *args, "--run", str(killed_run)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        poll_for(lambda: ckpt.list_checkpoints(killed_run) or process.poll() is not None, 120, "a first checkpoint")
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=60)
    on_disk = ckpt.list_checkpoints(killed_run)
    assert process.returncode == -signal.SIGKILL, f"training ended before the kill: {stderr.decode()[-2000:]}"
    assert on_disk, "killed before any checkpoint"
    final = ckpt.checkpoint_path(killed_run, steps)
    assert final not in on_disk and not final.exists(), "the run had already finished: raise `steps`"
    killed_at = int(ckpt.CHECKPOINT_NAME.search(on_disk[-1].name).group(1))
    assert 5 <= killed_at < steps

    resumed = subprocess.run([sys.executable, "-m", "genlab", "train", "--resume", str(killed_run)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {killed_run} from step {killed_at}" in resumed.stderr

    straight_run = tmp_path / "straight"
    result = CliRunner().invoke(app, [*args, "--run", str(straight_run)])
    assert result.exit_code == 0, result.output
    assert_same_checkpoint(ckpt.checkpoint_path(straight_run, steps), final)
    assert [r["step"] for r in metrics(killed_run)] == list(range(10, steps + 1, 10))
    assert without_speed(metrics(straight_run)) == without_speed(metrics(killed_run))


def test_resumed_metrics_match_when_checkpoints_fall_between_log_steps(tmp_path):
    straight = make_run(tmp_path / "straight", steps=30, checkpoint_every=5, log_every=10)
    resumed = make_run(tmp_path / "resumed", steps=30, checkpoint_every=5, log_every=10)
    train(straight, device="cpu")
    train(resumed, device="cpu", stop_after=17)  # as a kill at step 17 would: the last checkpoint is step 15
    train(resumed, device="cpu")
    assert_same_checkpoint(ckpt.checkpoint_path(straight, 30), ckpt.checkpoint_path(resumed, 30))
    assert [r["step"] for r in metrics(resumed)] == [10, 20, 30]
    assert without_speed(metrics(straight)) == without_speed(metrics(resumed))


def test_resume_survives_a_partial_last_metrics_line(tmp_path):
    run = make_run(tmp_path / "run", steps=40)
    train(run, device="cpu", stop_after=20)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 30, "epoch": 0, "loss": 12')  # a crash in the middle of a write
    train(run, device="cpu")
    assert [r["step"] for r in metrics(run)] == [10, 20, 30, 40]


# ----------------------------------------------------------------------------- the NaN guard


def poisoned_step(after: int):
    """The real AE/VAE step, whose reported loss turns NaN from call number `after` on."""
    calls = []

    def step(model, optimizers, x, forward, accumulate):
        terms = genlab.models.vae.training_step(model, optimizers, x, forward, accumulate)
        calls.append(1)
        if len(calls) >= after:
            terms["loss"] = torch.tensor(float("nan"))
        return terms

    return step


def test_nan_loss_stops_training_and_keeps_good_checkpoints(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    set_step(monkeypatch, "vae", poisoned_step(after=23))
    with pytest.raises(TrainingDiverged) as error:
        train(run, device="cpu")
    message = str(error.value)
    good = ckpt.checkpoint_path(run, 20)
    assert "nan" in message and "step 23" in message and str(good) in message
    assert ckpt.list_checkpoints(run) == [ckpt.checkpoint_path(run, 10), good]
    for path in ckpt.list_checkpoints(run):
        model, meta = (o := open_run(path, splits=())).model, o.meta
        assert all(torch.isfinite(p).all() for p in model.parameters())
        assert meta["step"] == int(path.stem.removeprefix("step-"))
    assert [r["step"] for r in metrics(run)] == [10, 20]
    assert not list(run.glob("checkpoints/.*.tmp"))


def test_nan_on_the_first_step_says_no_checkpoint_was_written(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    set_step(monkeypatch, "vae", poisoned_step(after=1))
    with pytest.raises(TrainingDiverged, match="at step 1; no checkpoint was written"):
        train(run, device="cpu")
    assert ckpt.list_checkpoints(run) == []


# ----------------------------------------------------------------------------- CPU budget


@pytest.mark.parametrize("budget, expected_steps", [(25.0, 24), (1000.0, 40), (3.0, 5)])
def test_cpu_budget_ends_the_run_at_the_steps_it_affords(tmp_path, monkeypatch, budget, expected_steps):
    """A fake process clock that advances one CPU second per training step and not otherwise: 2% of the
    budget is kept for the end, a budget never lengthens a run, and one already spent stops at the next
    log step. The run still ends properly: last checkpoint, config.json and previews at that step."""
    spent = {"cpu": 0.0}
    real_step = genlab.models.FAMILIES["vae"].step

    def step_costing_one_second(*args):
        spent["cpu"] += 1.0
        return real_step(*args)

    set_step(monkeypatch, "vae", step_costing_one_second)
    monkeypatch.setattr(genlab.train.time, "process_time", lambda: spent["cpu"])
    run = make_run(tmp_path / "run", log_every=5, checkpoint_every=100, sample_every=100)
    last = train(run, device="cpu", cpu_budget=budget)
    assert last == ckpt.checkpoint_path(run, expected_steps)
    assert read_run_record(run).train.steps == 40  # the user's config is never rewritten: the plan is loop state
    assert ckpt.load_checkpoint(last, "cpu").meta["planned_steps"] == expected_steps
    assert train(run, device="cpu") == last  # resumed, the run ends where the plan ended it
    assert (run / "samples" / f"step-{expected_steps:08d}-samples.png").exists()
    assert metrics(run)[-1]["step"] == expected_steps


def test_cpu_budget_plan_that_grows_still_ends_with_a_checkpoint(tmp_path, monkeypatch):
    """Steps that get cheaper (a busy machine frees up) make the plan grow between log steps: 19 after
    step 5, 35 after step 10, then the run's own 40. The run must follow the plan to its end and write
    its checkpoint there, not stop at the first plan's step 19 with none."""
    spent = {"cpu": 0.0, "steps": 0}
    real_step = genlab.models.FAMILIES["vae"].step

    def step_getting_cheaper(*args):
        spent["steps"] += 1
        spent["cpu"] += 1.0 if spent["steps"] <= 5 else 0.1
        return real_step(*args)

    set_step(monkeypatch, "vae", step_getting_cheaper)
    monkeypatch.setattr(genlab.train.time, "process_time", lambda: spent["cpu"])
    run = make_run(tmp_path / "run", log_every=5, checkpoint_every=100, sample_every=100)
    assert train(run, device="cpu", cpu_budget=20.0) == ckpt.checkpoint_path(run, 40)
    assert metrics(run)[-1]["step"] == 40


def test_bf16_mixed_runs_forward_passes_in_bfloat16_and_keeps_weights_float32(tmp_path, monkeypatch):
    seen = []
    linear = torch.nn.functional.linear

    def recording_linear(*args, **kwargs):
        out = linear(*args, **kwargs)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.functional, "linear", recording_linear)
    run = make_run(tmp_path / "run", "vae", precision="bf16-mixed", steps=3, log_every=1)
    train(run, device="cpu")
    assert torch.bfloat16 in seen
    model = open_run(run, splits=()).model
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(math.isfinite(r["loss"]) for r in metrics(run))
    with pytest.raises(ValueError, match="precision='fp16' is not one of fp32, bf16-mixed"):
        TrainConfig(precision="fp16")


def test_cli_budget_is_a_readable_duration(tmp_path):
    result = CliRunner().invoke(app, ["train", "vae", "--data", "digits", "--budget", "ten minutes",
                                      "--run", str(tmp_path / "run")])
    assert result.exit_code == 1 and "write e.g. 90s, 10m or 1h" in result.output
    from genlab.cli import parse_duration

    assert [parse_duration(text) for text in ("90", "90s", "10m", "1.5h")] == [90, 90, 600, 5400]


# ----------------------------------------------------------------------------- run-folder bookkeeping


def test_pruning_logging_samples_tensorboard_and_config(tmp_path):
    settings = {**TINY, "beta": 0.5}
    config = TrainConfig(data="digits", steps=30, batch_size=32, checkpoint_every=5, keep_checkpoints=2,
                         log_every=7, sample_every=10)
    run = create_run(tmp_path / "run", "vae", config, settings)
    train(run, device="cpu")

    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000025.safetensors", "step-00000030.safetensors"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000025.safetensors",
                                                                      "step-00000030.safetensors"]

    records = metrics(run)
    assert [r["step"] for r in records] == [7, 14, 21, 28, 30]  # every log_every, plus the last step
    for record in records:
        assert set(record) == {"step", "epoch", "loss", "reconstruction", "kl", "images_per_s"}
        assert record["epoch"] == 0  # 30 batches of 32 < 1500 images
        assert record["loss"] == pytest.approx(record["reconstruction"] + 0.5 * record["kl"], rel=1e-5)
        assert record["kl"] >= 0 and record["images_per_s"] > 0

    expected = {f"step-{s:08d}-{kind}.png" for s in (10, 20, 30) for kind in ("samples", "reconstructions")}
    assert {p.name for p in (run / "samples").iterdir()} == expected
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    record = read_run_record(run)
    family, model_config, train_config = record.family, record.model, record.train
    assert family == "vae"
    assert model_config == VAEConfig(data_shape=(1, 8, 8), **settings)
    assert train_config == config


def test_read_run_record_of_an_ae(tmp_path):
    run = make_run(tmp_path / "run", "ae", {"noise_std": 0.1, "code_activation": "tanh"})
    record = read_run_record(run)
    family, model_config = record.family, record.model
    assert family == "ae"
    assert model_config == AutoencoderConfig(data_shape=(1, 8, 8), noise_std=0.1, code_activation="tanh", **TINY)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        read_run_record(tmp_path)


def test_create_run_refuses_an_existing_run(tmp_path):
    run = make_run(tmp_path / "run")
    train(run, device="cpu", stop_after=10)  # a run that trained; one that never did is replaced (test_run_safety)
    before = (run / "config.json").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        make_run(run, steps=99)
    assert (run / "config.json").read_bytes() == before


def test_resume_truncates_metrics_logged_after_the_last_checkpoint(tmp_path):
    run = make_run(tmp_path / "run", log_every=5)
    train(run, device="cpu", stop_after=20)
    fake = {"step": 30, "epoch": 0, "loss": 12345.0, "reconstruction": 12345.0, "kl": 0.0, "images_per_s": 1.0}
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(fake) + "\n")
    train(run, device="cpu")
    records = metrics(run)
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert all(r["loss"] != 12345.0 for r in records)


def test_train_config_rejects_nonsense():
    with pytest.raises(ValueError, match="steps=0 is out of range"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr must be positive"):
        TrainConfig(lr=0.0)


def test_vae_on_digits_learns(tmp_path):
    run = make_run(tmp_path / "run", steps=150, batch_size=64, checkpoint_every=150)
    train(run, device="cpu")
    losses = [r["loss"] for r in metrics(run)]
    assert len(losses) == 15
    # A fresh VAE scores about 44 nats (8x8 Bernoulli at p = 0.5, ~64 ln 2); 150 steps must beat that clearly.
    assert losses[-1] < 0.8 * losses[0], losses
    assert min(losses[-3:]) < min(losses[:3])


# ----------------------------------------------------------------------------- GAN collapse detector


def ring_gan_run(tmp_path: Path) -> Path:
    return create_run(tmp_path / "gan", "gan", TrainConfig(data="ring", steps=60, batch_size=64, log_every=10,
                                                           checkpoint_every=60, sample_every=1000),
                      {**TINY, "latent_dim": 2})


def test_collapse_detector_warns_in_metrics_and_info_when_samples_collapse(tmp_path, monkeypatch):
    from genlab.data.toys import RING_STD, ring_centres
    from genlab.models.gan import GAN

    centres = ring_centres()

    def two_modes(self, n, generator=None):  # every sample on one of two of the eight centres
        return centres[torch.arange(n) % 2] + RING_STD * torch.randn(n, 2, generator=generator)

    monkeypatch.setattr(GAN, "sample", two_modes)
    run = ring_gan_run(tmp_path)
    train(run, device="cpu")
    records = metrics(run)
    checked = [r for r in records if "modes_covered" in r]
    assert [r["step"] for r in checked] == [20, 30, 40, 50, 60]  # after the warm-up of steps // 5
    assert all(r["modes_covered"] == 2 for r in checked)
    # patience 2: the first check alone does not warn, every later one does
    assert ["warning" in r for r in checked] == [False, True, True, True, True]
    assert "2 of 8 modes covered" in checked[-1]["warning"] and "spectral_norm" in checked[-1]["warning"]
    result = CliRunner().invoke(app, ["info", str(run)])
    assert result.exit_code == 0 and "collapse warning" in result.output and "2 of 8 modes" in result.output


def test_a_run_whose_samples_are_not_yet_near_the_modes_is_told_still_learning_not_collapse(tmp_path, monkeypatch):
    from genlab.data.toys import ring_centres
    from genlab.models.gan import GAN

    def early_blob(self, n, generator=None):  # a 300-step ring run's samples: a blob short of mode 7, few near it
        return 0.6 * ring_centres()[7] + 0.16 * torch.randn(n, 2, generator=generator)

    monkeypatch.setattr(GAN, "sample", early_blob)
    run = ring_gan_run(tmp_path)
    train(run, device="cpu")
    checked = [r for r in metrics(run) if "modes_covered" in r]
    assert len(checked) == 5 and all(r["high_quality"] < 0.05 for r in checked)
    assert ["warning" in r for r in checked] == [False, True, True, True, True]
    assert all(r["warning"].startswith("still learning, not collapse") and "--set steps=" in r["warning"]
               for r in checked[1:])


def test_collapse_detector_stays_quiet_when_samples_cover_every_mode(tmp_path, monkeypatch):
    from genlab.data.toys import ring
    from genlab.models.gan import GAN

    monkeypatch.setattr(GAN, "sample", lambda self, n, generator=None: ring(seed=7, n=n)[0])
    run = ring_gan_run(tmp_path)
    train(run, device="cpu")
    checked = [r for r in metrics(run) if "modes_covered" in r]
    assert len(checked) == 5 and all(r["modes_covered"] == 8 and "warning" not in r for r in checked)


def test_small_models_train_on_one_thread_and_the_count_is_restored(tmp_path, monkeypatch):
    """A toy's ops are too small to share: a second OpenMP thread only spins (SMALL_MODEL_PARAMETERS)."""
    seen = []
    real_step = genlab.models.FAMILIES["vae"].step

    def counting(*args):
        seen.append(torch.get_num_threads())
        return real_step(*args)

    set_step(monkeypatch, "vae", counting)
    run = create_run(tmp_path / "run", "vae", TrainConfig(data="ring", steps=3, batch_size=16),
                     {"latent_dim": 2, "hidden_dims": (8,)})
    original = torch.get_num_threads()
    torch.set_num_threads(2)  # as torch starts on a 2-core machine
    try:
        train(run, device="cpu")
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)
