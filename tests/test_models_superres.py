"""The super-resolution family: shapes, the bicubic start, ESRGAN's RRDB by hand, the relativistic loss by hand,
learning, the two stages (load_generator, interpolate_weights), eval's Y-channel scores, previews and bit-identical
resume."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from genlab import checkpoint as ckpt
from genlab.evaluate import evaluate, luma, sharpness, y_scores
from genlab.models import superres
from genlab.models.superres import (
    RRDB,
    DenseBlock,
    SuperRes,
    SuperResConfig,
    bicubic_upscale,
    configure_optimizers,
    downsample,
    interpolate_weights,
    load_generator,
    relativistic_loss,
    training_step,
)
from genlab.run import create_run, loading_once, open_run
from genlab.train import TrainConfig, train
from test_train import assert_same_checkpoint, metrics, without_speed

SMALL = {"g_channels": 8, "blocks": 1}


def small(**settings) -> SuperRes:
    torch.manual_seed(0)
    return SuperRes(SuperResConfig(**{"data_shape": (3, 16, 16), **SMALL, **settings}))


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_takes_any_size_and_stays_in_range(scale):
    model = small(scale=scale)
    out = model.upscale(torch.rand(2, 3, 7, 9))
    assert out.shape == (2, 3, 7 * scale, 9 * scale)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_a_fresh_model_is_the_bicubic_baseline():
    lr = torch.rand(2, 3, 8, 8)
    assert torch.allclose(small().upscale(lr), bicubic_upscale(lr, 4), atol=1e-6)


@pytest.mark.parametrize(("scale", "channels"), [(2, 3), (4, 3), (4, 1)])
def test_an_rrdb_generator_takes_any_size_and_starts_as_bicubic(scale, channels):
    model = small(block="rrdb", scale=scale, data_shape=(channels, 16, 16))
    lr = torch.rand(2, channels, 7, 9)
    out = model.upscale(lr)
    assert out.shape == (2, channels, 7 * scale, 9 * scale)
    assert torch.allclose(out, bicubic_upscale(lr, scale), atol=1e-6)
    assert sum(isinstance(m, RRDB) for m in model.generator.modules()) == SMALL["blocks"]


def test_a_dense_block_matches_its_equation_by_hand():
    torch.manual_seed(0)
    block, x = DenseBlock(4, 2), torch.rand(1, 4, 5, 5)
    c1, c2, c3, c4 = block.convs

    def act(t):
        return torch.where(t > 0, t, 0.2 * t)

    f1 = act(c1(x))
    f2 = act(c2(torch.cat([x, f1], 1)))
    f3 = act(c3(torch.cat([x, f1, f2], 1)))
    f4 = act(c4(torch.cat([x, f1, f2, f3], 1)))
    assert torch.allclose(block(x), x + 0.2 * block.fuse(torch.cat([x, f1, f2, f3, f4], 1)), atol=1e-6)


def test_rrdb_scales_each_residual_by_0_2():
    block, x = RRDB(4), torch.rand(1, 4, 5, 5)
    with torch.no_grad():
        for dense in block.body:  # each dense block now adds exactly 0.2 * 1 to its input
            dense.fuse.weight.zero_()
            dense.fuse.bias.fill_(1.0)
    # three dense blocks: x + 0.6; the outer skip: x + 0.2 * (x + 0.6)
    assert torch.allclose(block(x), 1.2 * x + 0.12, atol=1e-6)


def test_downsample_keeps_flat_colour_and_refuses_sizes_the_scale_does_not_divide():
    assert torch.allclose(downsample(torch.full((1, 3, 16, 16), 0.3), 4), torch.full((1, 3, 4, 4), 0.3), atol=1e-6)
    with pytest.raises(ValueError, match="do not divide by the scale 4"):
        downsample(torch.rand(1, 3, 10, 16), 4)


def test_the_config_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="scale=3 is not one of 2, 4"):
        SuperResConfig(scale=3)
    with pytest.raises(ValueError, match="grey or RGB images"):
        SuperResConfig(data_shape=(2,))
    with pytest.raises(ValueError, match="do not divide by scale=4"):
        SuperResConfig(data_shape=(3, 18, 18))
    with pytest.raises(ValueError, match="lower d_layers"):
        SuperResConfig(data_shape=(3, 8, 8), stage="gan", d_layers=3)
    with pytest.raises(ValueError, match="block='dense' is not one of residual, rrdb"):
        SuperResConfig(block="dense")
    with pytest.raises(ValueError, match=r"upscale takes \(B, 3, h, w\)"):
        small().upscale(torch.rand(1, 1, 8, 8))


def test_the_relativistic_loss_matches_a_hand_computation():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])  # means 1 and 0

    def bce(logit, target):  # -[t log s(x) + (1 - t) log(1 - s(x))]
        s = 1 / (1 + math.exp(-logit))
        return -(target * math.log(s) + (1 - target) * math.log(1 - s))

    # D: reals minus the fakes' mean should read real (1); fakes minus the reals' mean, fake (0)
    d = 0.5 * ((bce(2, 1) + bce(0, 1)) / 2 + (bce(-2, 0) + bce(0, 0)) / 2)
    g = 0.5 * ((bce(2, 0) + bce(0, 0)) / 2 + (bce(-2, 1) + bce(0, 1)) / 2)
    assert relativistic_loss(real, fake, fake_is_real=False).item() == pytest.approx(d, rel=1e-6)
    assert relativistic_loss(real, fake, fake_is_real=True).item() == pytest.approx(g, rel=1e-6)


def test_the_psnr_stage_learns_and_only_g_has_an_optimizer():
    model = small(ema_decay=0.0)
    optimizers = configure_optimizers(model, 3e-3)
    assert list(optimizers) == ["generator"] and model.discriminator is None
    # a striped texture bicubic cannot recover from a 4x smaller input; the same batch every step
    x = (torch.sin(torch.arange(16.0) * 1.7)[None, None, None, :] * 0.4 + 0.5).expand(4, 3, 16, 16).clone()
    losses = [training_step(model, optimizers, x)["loss"].item() for _ in range(60)]
    assert losses[-1] < 0.7 * losses[0]


def test_a_gan_step_updates_d_then_g_and_logs_every_term():
    model = small(stage="gan", d_layers=2, d_channels=4)
    optimizers = configure_optimizers(model, 1e-3)
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    g_before = [p.detach().clone() for p in model.generator.parameters()]
    terms = training_step(model, optimizers, torch.rand(2, 3, 16, 16))
    assert set(terms) == {"d_loss", "g_loss", "d_real", "d_fake", "l1", "feature", "adversarial"}
    assert all(math.isfinite(value.item()) for value in terms.values())
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters(), strict=True))
    assert all(p.requires_grad for p in model.discriminator.parameters())  # unfrozen after G's update
    assert int(model.ema_updates) == 1


def test_realistic_degradation_is_seeded_and_not_plain_bicubic():
    model = small(degradation="realistic")
    hr = torch.rand(3, 3, 16, 16)
    first = model.degrade(hr, torch.Generator().manual_seed(5))
    assert first.shape == (3, 3, 4, 4)
    assert torch.equal(first, model.degrade(hr, torch.Generator().manual_seed(5)))
    assert not torch.allclose(first, downsample(hr, 4), atol=1e-3)


def test_load_generator_starts_a_gan_model_from_a_psnr_checkpoint(tmp_path):
    psnr = small()
    with torch.no_grad():
        for p in psnr.ema.parameters():
            p.add_(0.01)  # the EMA copy differs from G: the one upscale() uses must be the one taken
    path = tmp_path / "psnr.safetensors"
    from genlab.run import save_model

    save_model(psnr, path)
    gan = load_generator(small(stage="gan", d_layers=2), path)
    for net in (gan.generator, gan.ema):
        for a, b in zip(net.parameters(), psnr.ema.parameters(), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="channels 8 vs 16"):
        load_generator(small(g_channels=16), path)
    with pytest.raises(ValueError, match="block residual vs rrdb"):
        load_generator(small(block="rrdb"), path)


def test_interpolate_weights_blends_the_two_generators():
    psnr, gan = small(), small(stage="gan", d_layers=2)
    with torch.no_grad():
        for p in gan.ema.parameters():
            p.add_(1.0)
    lr = torch.rand(1, 3, 8, 8)
    assert torch.allclose(interpolate_weights(psnr, gan, 0).upscale(lr), psnr.upscale(lr))
    assert torch.allclose(interpolate_weights(psnr, gan, 1).upscale(lr), gan.upscale(lr))
    halfway = interpolate_weights(psnr, gan, 0.5)
    for mixed, a, b in zip(halfway.ema.parameters(), psnr.ema.parameters(), gan.ema.parameters(), strict=True):
        assert torch.allclose(mixed, (a + b) / 2)
    with pytest.raises(ValueError, match="alpha must be a number from 0"):
        interpolate_weights(psnr, gan, 1.5)
    with pytest.raises(ValueError, match="the same generator"):
        interpolate_weights(psnr, small(scale=2), 0.5)


def test_luma_and_y_psnr_by_hand():
    white, black = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    assert luma(white).flatten()[0].item() == pytest.approx(235 / 255)
    assert luma(black).flatten()[0].item() == pytest.approx(16 / 255)
    hr = torch.full((2, 3, 28, 28), 102 / 255)  # 8-bit values: quantising changes nothing
    sr = hr.clone()
    sr[:, :, 4:24, 4:24] += 10 / 255  # every Y the border crop keeps rises by 219/255 * 10/255
    sr[:, :, 0, :] = 0  # in the cropped border: no effect
    dy = 219 * 10 / 255 / 255
    assert y_scores(hr, sr, border=4)["psnr"] == pytest.approx(10 * math.log10(1 / dy ** 2), abs=0.05)
    assert sharpness(torch.zeros(1, 3, 8, 8)) == 0 and sharpness(torch.rand(1, 3, 8, 8)) > 0.1


def photos_run(tmp_path, name="run", **settings):
    config = TrainConfig(data="photos", steps=4, batch_size=4, lr=1e-3, log_every=2, sample_every=4,
                         checkpoint_every=4)
    return create_run(tmp_path / name, "superres", config, {**SMALL, **settings})


@pytest.mark.slow  # loads the 1,600 training crops, trains 4 steps, scores 20 crops of 192x192
def test_eval_scores_the_model_against_bicubic_on_the_held_out_photos(tmp_path):
    with loading_once():  # the 1,600 training crops are cut once for create_run and train
        run = photos_run(tmp_path)
        train(run, device="cpu")
    result = evaluate(open_run(run))["results"]["super_resolution"]  # eval of SR needs only the test split
    scores, protocol = result["scores"], result["protocol"]
    assert protocol["num_examples"] == 20 and protocol["scale"] == 4
    # the baseline by hand, from the same held-out crops
    from genlab.data import load_dataset

    hr = load_dataset("photos", "test").x
    expected = y_scores(hr, bicubic_upscale(downsample(hr, 4), 4), 4)
    assert scores["bicubic_psnr_y"] == pytest.approx(expected["psnr"])
    assert scores["bicubic_ssim_y"] == pytest.approx(expected["ssim"])
    assert 20 < scores["bicubic_psnr_y"] < 40
    assert scores["psnr_gain_db"] == pytest.approx(scores["psnr_y"] - scores["bicubic_psnr_y"])
    assert scores["bicubic_sharpness"] < scores["hr_sharpness"]  # bicubic blurs
    preview = Image.open(run / "samples" / "step-00000004-upscales.png")
    assert preview.info["Description"].startswith("rows, top to bottom in each group: bicubic x4, model x4, original")


RESUME_CASES = {
    "psnr": {"scale": 2},
    "psnr-rrdb": {"scale": 2, "block": "rrdb"},
    "gan-realistic": {"scale": 2, "stage": "gan", "d_layers": 2, "d_channels": 4, "degradation": "realistic"},
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_is_bit_identical(tmp_path, case):
    """As tests/test_train.py's, on 8x8 digits at x2: G, D, their Adam states, the EMA copy, spectral norm's
    vectors and the realistic degradation's draws from the global RNG."""
    def make(name):
        config = TrainConfig(data="digits", steps=12, batch_size=8, checkpoint_every=4, log_every=4,
                             sample_every=1000, keep_checkpoints=10, lr_schedule="cosine")
        return create_run(tmp_path / name, "superres", config, {**SMALL, **RESUME_CASES[case]})

    straight, interrupted = make("straight"), make("interrupted")
    train(straight, device="cpu")
    assert train(interrupted, device="cpu", stop_after=6) == ckpt.checkpoint_path(interrupted, 4)
    train(interrupted, device="cpu")
    for a, b in zip(ckpt.list_checkpoints(straight), ckpt.list_checkpoints(interrupted), strict=True):
        assert_same_checkpoint(a, b)
    assert without_speed(metrics(straight)) == without_speed(metrics(interrupted))


def test_superres_is_a_family_every_caller_sees():
    from genlab.models import FAMILIES

    assert FAMILIES["superres"].model is SuperRes and superres.SuperRes.can_upscale
    assert not any(FAMILIES[name].model.can_upscale for name in FAMILIES if name != "superres")
