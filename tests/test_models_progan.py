"""Progressive growing: the resolutions and the schedule against hand-written tables, shapes at every stage, the
fade (alpha 0 is the old path exactly, alpha 1 the new) in G, D and the real images, the equalized learning rate,
pixel norm and minibatch stddev against hand computations, a bit-identical resume from mid-fade, the save/load
round trip, the CLI, and bad settings refused in one line."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from cli_helpers import invoke, succeeded, user_error
from genlab.data import load_dataset
from genlab.metrics import sample_diversity
from genlab.models.progan import (
    EqualizedConv2d,
    EqualizedLinear,
    PixelNorm,
    ProGAN,
    ProGANConfig,
    collapse_evidence,
    configure_optimizers,
    growth,
    minibatch_stddev,
    resolutions,
    training_step,
    widths,
)
from genlab.run import create_run, open_run, save_model
from genlab.train import TrainConfig, train
from test_train import assert_same_checkpoint, metrics, without_speed


def tiny(data_shape=(1, 8, 8), **settings) -> ProGAN:
    torch.manual_seed(0)
    return ProGAN(ProGANConfig(**{"data_shape": data_shape, "latent_dim": 8, "max_channels": 16, **settings}))


@pytest.mark.parametrize("size, expected", [
    ((32, 32), [(4, 4), (8, 8), (16, 16), (32, 32)]),
    ((28, 28), [(7, 7), (14, 14), (28, 28)]),  # MNIST: exact halvings, from 7x7
    ((25, 25), [(7, 7), (13, 13), (25, 25)]),  # the LFW faces: halved, rounded up
    ((8, 8), [(4, 4), (8, 8)]),  # digits
    ((7, 7), [(7, 7)]),  # too small to halve: one stage, no growing
    ((32, 64), [(4, 8), (8, 16), (16, 32), (32, 64)]),
])
def test_resolutions_halve_the_data_size_down_to_4_to_7_pixels(size, expected):
    assert resolutions(*size) == expected


def test_widths_halve_above_the_two_lowest_resolutions():
    assert widths(ProGANConfig(data_shape=(3, 64, 64), max_channels=128)) == [128, 128, 64, 32, 16]
    assert widths(ProGANConfig(data_shape=(1, 8, 8), max_channels=8)) == [8, 8]


def test_the_schedule_fades_each_stage_in_then_holds_it():
    # 3 stages, stage 0 for 3 steps, then each stage fades in over 2 steps and holds for 3
    expected = [(0, 1.0)] * 3 + [(1, 0.5), (1, 1.0)] + [(1, 1.0)] * 3 + [(2, 0.5), (2, 1.0)] + [(2, 1.0)] * 10
    assert [growth(step, 3, fade_steps=2, stable_steps=3) for step in range(20)] == expected
    assert growth(10**6, 3, 2, 3) == (2, 1.0)  # the last stage keeps training
    assert [growth(step, 2, fade_steps=4, stable_steps=0) for step in range(5)] == [
        (1, 0.25), (1, 0.5), (1, 0.75), (1, 1.0), (1, 1.0)]
    assert growth(0, 4, fade_steps=0, stable_steps=0) == (3, 1.0)  # no schedule: full size from the start
    assert growth(5, 1, fade_steps=2, stable_steps=3) == (0, 1.0)  # one stage: nothing to grow


@pytest.mark.parametrize("data_shape", [(1, 25, 25), (3, 32, 32), (1, 8, 12)])
def test_shapes_at_every_stage(data_shape):
    model = tiny(data_shape)
    for stage, size in enumerate(model.sizes):
        for alpha in (0.0, 0.5, 1.0):
            fake = model.generator(model.latents(8), stage, alpha)
            assert fake.shape == (8, data_shape[0], *size)
            assert model.critic(fake, stage, alpha).shape == (8,)
            assert model.reals_at(torch.rand(8, *data_shape), stage, alpha).shape == fake.shape
        with torch.no_grad():
            model.steps_trained.fill_(stage * (model.config.fade_steps + model.config.stable_steps))  # stage in
        assert model.growth() == (stage, 1.0)
        samples = model.sample(5)  # always at the data's size, in [0, 1]
        assert samples.shape == (5, *data_shape) and 0 <= samples.min() and samples.max() <= 1


def test_alpha_0_is_the_old_path_exactly_and_alpha_1_the_new():
    model = tiny((1, 16, 16))
    g = model.generator
    z = model.latents(4)
    with torch.no_grad():
        for stage in (1, 2):
            size = model.sizes[stage]
            old = F.interpolate(g(z, stage - 1, 1.0), size=size, mode="nearest")
            assert torch.equal(g(z, stage, 0.0), old)
            features = g.first(z)
            for k in range(1, stage + 1):
                features = g.blocks[k](F.interpolate(features, size=model.sizes[k], mode="nearest"))
            assert torch.equal(g(z, stage, 1.0), g.to_rgb[stage](features))
            assert torch.allclose(g(z, stage, 0.25), 0.75 * old + 0.25 * g(z, stage, 1.0), atol=1e-6)

            x = torch.rand(4, 1, 16, 16) * 2 - 1
            at_stage = F.adaptive_avg_pool2d(x, size)
            below = F.avg_pool2d(at_stage, 2)  # the sizes halve exactly here
            assert torch.equal(model.critic(at_stage, stage, 0.0), model.critic(below, stage - 1, 1.0))
            new_d = model.critic(at_stage, stage, 1.0)
            model.discriminator.from_rgb[stage - 1][0].weight.add_(1.0)  # the old input path no longer counts
            assert torch.equal(model.critic(at_stage, stage, 1.0), new_d)
            assert not torch.equal(model.critic(at_stage, stage, 0.5), new_d)

            images = torch.rand(4, 1, 16, 16)
            real = F.adaptive_avg_pool2d(2 * images - 1, size)
            assert torch.equal(model.reals_at(images, stage, 1.0), real)
            blurred = F.interpolate(F.avg_pool2d(real, 2), size=size, mode="nearest")
            assert torch.equal(model.reals_at(images, stage, 0.0), blurred)
            assert torch.allclose(model.reals_at(images, stage, 0.5), (real + blurred) / 2, atol=1e-6)


def test_the_equalized_learning_rate_scales_weights_by_hes_constant_at_run_time():
    torch.manual_seed(0)
    conv, linear = EqualizedConv2d(64, 32, 3), EqualizedLinear(512, 16, gain=1)
    x = torch.randn(2, 64, 5, 5)
    he = math.sqrt(2 / (64 * 9))
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * he, conv.bias, padding=1))
    assert abs(conv.weight.std().item() - 1) < 0.05  # stored N(0, 1): Adam's steps are the same size for all
    assert linear.scale == pytest.approx(1 / math.sqrt(512))
    # one Adam step moves every stored weight by ~lr, so the weights in use move by lr times their own scale:
    # the same relative change in a layer of fan-in 576 as in one of 512 or 8
    small = EqualizedConv2d(8, 4, 1)
    layers = [conv, linear, small]
    optimizer = torch.optim.Adam([p for layer in layers for p in layer.parameters()], lr=1e-3)
    before = [layer.weight.detach().clone() for layer in layers]
    loss = conv(x).square().mean() + linear(torch.randn(3, 512)).square().mean() + small(torch.randn(1, 8, 2, 2)).sum()
    loss.backward()
    optimizer.step()
    for layer, weight in zip(layers, before, strict=True):
        moved = (layer.weight.detach() - weight).abs()  # Adam's first step: lr |g| / (|g| + eps), ~lr
        assert moved.median().item() == pytest.approx(1e-3, rel=1e-3)


def test_pixel_norm_gives_each_pixel_unit_mean_square_over_channels():
    x = torch.randn(3, 16, 4, 5) * torch.rand(3, 1, 4, 5) * 10
    y = PixelNorm()(x)
    assert torch.allclose(y.square().mean(dim=1), torch.ones(3, 4, 5), atol=1e-5)
    assert torch.allclose(PixelNorm()(7 * x), y, atol=1e-6)  # only the direction of each feature vector is kept


def test_minibatch_stddev_appends_each_groups_spread_and_keeps_real_and_fake_apart():
    x = torch.randn(8, 3, 2, 2)
    out = minibatch_stddev(x, group=4)
    assert out.shape == (8, 4, 2, 2) and torch.equal(out[:, :3], x)
    for start in (0, 4):  # consecutive samples form a group
        by_hand = x[start:start + 4].std(dim=0, unbiased=False).mean()
        assert torch.allclose(out[start:start + 4, 3], by_hand.expand(4, 2, 2), atol=1e-4)
    changed = x.clone()
    changed[4:] *= 10  # the second half (fakes) changes: the first half's statistic does not
    assert torch.equal(minibatch_stddev(changed, group=4)[:4], out[:4])


def test_a_step_trains_both_networks_and_advances_the_schedule():
    model = tiny(fade_steps=2, stable_steps=1)
    optimizers = configure_optimizers(model, 1e-3)
    x = torch.rand(8, 1, 8, 8)
    first = training_step(model, optimizers, x)
    assert first["resolution"].item() == 4 and first["alpha"].item() == 1.0
    assert model.steps_trained.item() == 1 and model.ema_updates.item() == 1
    second = training_step(model, optimizers, x)
    assert second["resolution"].item() == 8 and second["alpha"].item() == 0.5
    assert set(second) == {"d_loss", "g_loss", "gp", "drift", "wasserstein", "resolution", "alpha"}
    assert all(torch.isfinite(v) for v in second.values())
    assert model.generator.blocks[1][0].weight.grad is not None  # the fading block trains


def test_the_collapse_check_compares_samples_with_the_data_at_the_current_resolution(monkeypatch):
    digits = load_dataset("digits", "train")
    model = tiny()  # at 4x4: blurred digits are less varied than sharp ones, and samples are judged against those

    def as_varied_as_the_data_at_4x4(self, n, generator=None):
        return (F.interpolate(self.reals_at(digits.x[:n], 0, 1.0), size=(8, 8), mode="nearest") + 1) / 2

    monkeypatch.setattr(ProGAN, "sample", as_varied_as_the_data_at_4x4)
    record = {"step": 100}
    assert collapse_evidence(model, digits, record) == [None] and record["diversity_ratio"] == pytest.approx(1)
    assert sample_diversity(model.sample(256)) < 0.8 * sample_diversity(digits.x[:256])  # why: blur removes spread

    monkeypatch.setattr(ProGAN, "sample", lambda self, n, generator=None: torch.full((n, 1, 8, 8), 0.5))
    (warning,) = collapse_evidence(model, digits, record)
    assert record["diversity_ratio"] == 0 and "mode collapse" in str(warning) and "fade_steps" in str(warning)


def tiny_run(run_dir, **train_settings):
    settings = {"data": "digits", "steps": 40, "batch_size": 16, "checkpoint_every": 10, "log_every": 10,
                "sample_every": 1000, "keep_checkpoints": 10, "lr_schedule": "cosine", **train_settings}
    # stage 0 for 10 steps, then 8x8 fades in over steps 10-29: the step-20 checkpoint is mid-fade
    return create_run(run_dir, "progan", TrainConfig(**settings),
                      {"latent_dim": 8, "max_channels": 16, "fade_steps": 20, "stable_steps": 10, "ema_decay": 0.9})


def test_resume_mid_fade_is_bit_identical(tmp_path):
    straight, interrupted = tiny_run(tmp_path / "straight"), tiny_run(tmp_path / "interrupted")
    train(straight, device="cpu")
    train(interrupted, device="cpu", stop_after=25)  # stops at the step-20 checkpoint, alpha 0.55
    assert open_run(interrupted, splits=()).model.growth() == (1, 0.55)
    train(interrupted, device="cpu")
    straight_checkpoints = sorted((straight / "checkpoints").iterdir())
    assert len(straight_checkpoints) == 4
    for a, b in zip(straight_checkpoints, sorted((interrupted / "checkpoints").iterdir()), strict=True):
        assert_same_checkpoint(a, b)
    assert without_speed(metrics(straight)) == without_speed(metrics(interrupted))
    assert [(r["resolution"], r["alpha"]) for r in metrics(straight)] == [
        (4, 1.0), (8, pytest.approx(0.275)), (8, pytest.approx(0.775)), (8, 1.0)]  # means over each window


def test_save_load_round_trip(tmp_path):
    model = tiny(fade_steps=3, stable_steps=2)
    optimizers = configure_optimizers(model, 1e-3)
    for _ in range(3):
        training_step(model, optimizers, torch.rand(8, 1, 8, 8))
    loaded = open_run(save_model(model, tmp_path / "progan.safetensors"), splits=()).model
    assert loaded.config == model.config
    assert loaded.growth() == model.growth() == (1, 2 / 3)  # step 3: the second of 3 fade steps
    assert torch.equal(loaded.sample(4, torch.Generator().manual_seed(1)),
                       model.eval().sample(4, torch.Generator().manual_seed(1)))


def test_cli_trains_on_digits_resumes_samples_and_reports(tmp_path):
    run = tmp_path / "grow"
    common = ["--set", "max_channels=16", "--set", "latent_dim=16", "--set", "fade_steps=10", "--set",
              "stable_steps=10", "--set", "batch_size=16", "--set", "log_every=10", "--set", "sample_every=20",
              "--set", "checkpoint_every=20"]
    succeeded(invoke("train", "progan", "--data", "digits", "--steps", "20", "--run", run, *common))
    succeeded(invoke("train", "--resume", run, "--steps", "40"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["resolution"] for r in records] == [4, 8, 8, 8]
    assert (run / "samples" / "step-00000040-samples.png").is_file()
    assert "progan" in succeeded(invoke("info", run))
    succeeded(invoke("sample", run, "--n", "4"))


def test_cli_trains_on_an_rgb_image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    pixels = torch.Generator().manual_seed(0)
    for i in range(6):  # fewer than 10 images: both splits hold all of them
        array = (torch.rand(20, 24, 3, generator=pixels) * 255).to(torch.uint8).numpy()
        Image.fromarray(array).save(folder / f"{i}.png")
    run = tmp_path / "rgb"
    succeeded(invoke("train", "progan", "--data", f"folder:{folder}", "--steps", "4", "--run", run, "--set",
                     "image_size=16", "--set", "channels=3", "--set", "batch_size=4", "--set", "max_channels=8",
                     "--set", "fade_steps=1", "--set", "stable_steps=1"))
    model = open_run(run, splits=()).model
    assert model.sizes == [(4, 4), (8, 8), (16, 16)] and model.growth() == (2, 1.0)
    assert model.sample(3).shape == (3, 3, 16, 16)


@pytest.mark.parametrize("settings, match", [
    ({"data_shape": (2,)}, "progan grows images of at least 4x4 pixels, but the data has shape"),
    ({"data_shape": (1, 3, 3)}, "use the gan family"),
    ({"fade_steps": -1}, "fade_steps"),
    ({"ema_decay": 1.0}, "ema_decay must be in"),
    ({"betas": (0.0, 1.0)}, "betas must be two numbers"),
    ({"max_channels": 0}, "max_channels"),
])
def test_bad_settings_are_one_line_errors(settings, match):
    with pytest.raises(ValueError, match=match) as error:
        ProGANConfig(**{"data_shape": (1, 8, 8), **settings})
    assert "\n" not in str(error.value)


def test_the_cli_refuses_points_and_bad_settings_in_one_line(tmp_path):
    assert "use the gan family" in user_error(invoke("train", "progan", "--data", "ring", "--run", tmp_path / "a"))
    assert "fade_steps" in user_error(invoke("train", "progan", "--data", "digits", "--set", "fade_steps=x",
                                             "--run", tmp_path / "b"))
