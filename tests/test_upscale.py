"""Super-resolution in use: the GAN stage started from a PSNR run (`genlab train superres --init-from`), tiled
upscaling of pictures of any size and mode (genlab.upscale), `genlab upscale` with ESRGAN's network interpolation,
and bad pictures refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import invoke, succeeded, user_error
from genlab import upscale as upscaling
from genlab.models import VAE, VAEConfig
from genlab.models.superres import SuperRes, SuperResConfig, bicubic_upscale
from genlab.run import create_run, load_source_weights, open_run, read_run_record, save_model
from genlab.train import TrainConfig, train
from genlab.upscale import colour_upscaler, tiled, upscale_picture

SMALL = {"g_channels": 8, "blocks": 1, "scale": 2}
GAN_STAGE = {"stage": "gan", "d_layers": 2, "d_channels": 4}


def quick(**settings) -> TrainConfig:
    return TrainConfig(**{"data": "digits", "steps": 4, "batch_size": 8, "lr": 3e-3, "log_every": 2,
                          "checkpoint_every": 4, "sample_every": 1000, **settings})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A PSNR run on digits (x2) and the GAN stage started from it, each trained a few steps."""
    folder = tmp_path_factory.mktemp("sr")
    psnr = create_run(folder / "psnr", "superres", quick(), SMALL)
    train(psnr)
    gan = create_run(folder / "gan", "superres", quick(steps=2), GAN_STAGE, init_from=psnr)
    train(gan)
    return psnr, gan


def detailed(**settings) -> SuperRes:
    """A model whose G adds real detail to bicubic (its last conv is not zero, as after training)."""
    torch.manual_seed(0)
    model = SuperRes(SuperResConfig(**{"data_shape": (3, 16, 16), **SMALL, "ema_decay": 0, **settings})).eval()
    torch.nn.init.normal_(model.generator.tail.weight, std=0.1)
    return model


# --- the GAN stage from a PSNR run ------------------------------------------------------------------------


def test_the_gan_stage_starts_from_the_psnr_generator_through_init_from(runs, tmp_path):
    psnr, _ = runs
    psnr_model = open_run(psnr, splits=()).model
    # through the command line, a learning rate so small that one step leaves G where it started
    gan = tmp_path / "gan"
    succeeded(invoke("train", "superres", "--data", "digits", "--init-from", psnr, "--run", gan, "--steps", 1,
                     *[part for key, value in {**GAN_STAGE, "lr": 1e-12, "batch_size": 8}.items()
                       for part in ("--set", f"{key}={value}")]))
    record = read_run_record(gan)
    assert record.model.stage == "gan" and record.model.g_channels == 8 and record.model.scale == 2  # the source's
    assert json.loads((gan / "config.json").read_text())["init_from"]["path"].endswith("step-00000004.safetensors")
    # at step 0 exactly: G and its EMA copy are the PSNR run's EMA generator (the one its upscale() used)
    start = record.build_model()
    load_source_weights(start, record.init_from)
    for net in (start.generator, start.ema):
        for a, b in zip(net.state_dict().values(), psnr_model.ema.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert start.discriminator is not None  # D is new: it starts from its own initialisation
    trained = open_run(gan, splits=()).model
    for a, b in zip(trained.generator.parameters(), psnr_model.ema.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_gan_run_fine_tuned_keeps_its_discriminator_and_refuses_another(runs, tmp_path):
    _, gan = runs
    tuned = create_run(tmp_path / "tuned", "superres", quick(steps=1), {"degradation": "realistic"}, init_from=gan)
    model = read_run_record(tuned).build_model()
    load_source_weights(model, read_run_record(tuned).init_from)
    source = open_run(gan, splits=()).model
    for a, b in zip(model.discriminator.state_dict().values(), source.discriminator.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"\(d_channels 4 vs 8\): keep the source's d_channels"):
        create_run(tmp_path / "wider", "superres", quick(), {"d_channels": 8}, init_from=gan)
    with pytest.raises(ValueError, match="channels 8 vs 16"):
        create_run(tmp_path / "other", "superres", quick(), {"g_channels": 16}, init_from=gan)


# --- tiles -------------------------------------------------------------------------------------------------


def test_a_tiled_upscale_equals_one_pass_and_each_pass_sees_one_tile():
    model = detailed()
    image = torch.rand(3, 50, 37)
    whole = tiled(colour_upscaler(model, 3), image, 2, tile=1000)
    seen = []

    def recorded(x):
        seen.append(tuple(x.shape[1:]))
        return colour_upscaler(model, 3)(x)

    pieces = tiled(recorded, image, 2, tile=16, overlap=8)
    assert (pieces.int() - whole.int()).abs().max() <= 1  # float rounding only: the overlap covers G's view
    assert len(seen) == 4 * 3 and max(h * w for h, w in seen) <= (16 + 2 * 8) ** 2
    # without context, the seams show: the test can tell
    seams = tiled(colour_upscaler(model, 3), image, 2, tile=16, overlap=0)
    assert (seams.int() - whole.int()).abs().max() > 3


def test_grey_rgb_and_transparency_each_keep_their_mode():
    rgb_model, grey_model = detailed(), detailed(data_shape=(1, 16, 16))
    rgba = np.random.default_rng(0).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    out = upscale_picture(rgb_model, rgba, tile=4)
    assert out.shape == (18, 22, 4)
    image = torch.from_numpy(rgba).permute(2, 0, 1).float() / 255
    colour = (rgb_model.upscale(image[None, :3])[0] * 255).round().permute(1, 2, 0).numpy()
    transparency = (bicubic_upscale(image[None, 3:], 2)[0, 0] * 255).round().numpy()
    assert np.abs(out[:, :, :3] - colour).max() <= 1 and np.abs(out[:, :, 3] - transparency).max() <= 1
    # a grey picture through an RGB model stays grey; an RGB one through a grey model, channel by channel
    assert upscale_picture(rgb_model, rgba[:, :, :1]).shape == (18, 22, 1)
    by_channel = upscale_picture(grey_model, rgba[:, :, :3])
    red = upscale_picture(grey_model, rgba[:, :, :1])
    assert np.array_equal(by_channel[:, :, :1], red)


# --- genlab upscale ----------------------------------------------------------------------------------------


def picture(path, mode="RGB", size=(13, 10)):
    values = np.random.default_rng(1).integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    Image.fromarray(values[:, :, 0] if len(mode) == 1 else values, mode).save(path)
    return path


def test_upscale_writes_a_png_of_the_same_mode_at_scale(runs, tmp_path):
    psnr, _ = runs
    for mode in ("RGB", "RGBA", "L", "LA"):
        out = tmp_path / f"big-{mode}.png"
        succeeded(invoke("upscale", psnr, picture(tmp_path / f"small-{mode}.png", mode), "--out", out))
        with Image.open(out) as big:
            assert big.size == (26, 20) and big.mode == mode
    shown = succeeded(invoke("upscale", psnr, tmp_path / "small-RGB.png"))  # default: in the run folder
    assert "wrote" in shown and list(psnr.glob("upscale-small-RGB-step4.png"))


def test_alpha_blends_the_psnr_run_the_gan_run_started_from(runs, tmp_path):
    psnr, gan = runs
    source = picture(tmp_path / "in.png")

    def upscaled(run, *options):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.png"
        succeeded(invoke("upscale", run, source, "--out", out, *options))
        return np.asarray(Image.open(out)).astype(int)

    smooth, sharp = upscaled(psnr), upscaled(gan)
    assert np.abs(smooth - sharp).max() > 0  # two steps of the GAN stage moved G
    assert np.abs(upscaled(gan, "--alpha", 0) - smooth).max() <= 1  # the PSNR end, found from the GAN run's record
    assert np.abs(upscaled(gan, "--alpha", 1) - sharp).max() <= 1
    assert np.abs(upscaled(gan, "--alpha", 0, "--psnr-run", psnr) - smooth).max() <= 1
    halfway = upscaled(gan, "--alpha", 0.5)
    assert np.abs(halfway - smooth).max() > 0 and np.abs(halfway - sharp).max() > 0
    assert "--psnr-run" in user_error(invoke("upscale", psnr, source, "--alpha", 0.5))  # no source recorded
    assert "give --alpha too" in user_error(invoke("upscale", gan, source, "--psnr-run", psnr))
    assert "between 0 (PSNR model) and 1" in user_error(invoke("upscale", gan, source, "--alpha", 2))


def test_bad_pictures_and_outputs_are_refused_in_one_line(runs, tmp_path, monkeypatch):
    psnr, _ = runs
    (tmp_path / "text.png").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    good = picture(tmp_path / "good.png")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    Image.new("RGB", (8, 8)).save(tmp_path / "anim.gif")
    for name, expected in [("text.png", "not a readable PNG or JPEG"), ("empty.png", "is empty"),
                           ("cut.png", "damaged"), ("anim.gif", "not a readable PNG or JPEG"),
                           ("missing.png", "no picture at")]:
        assert expected in user_error(invoke("upscale", psnr, tmp_path / name, "--out", tmp_path / "o.png")), name
    assert "is the picture being upscaled" in user_error(invoke("upscale", psnr, good, "--out", good))
    assert "does not end in .png" in user_error(invoke("upscale", psnr, good, "--out", tmp_path / "o.jpg"))
    assert "between 16 and 1024" in user_error(invoke("upscale", psnr, good, "--tile", 4))
    monkeypatch.setattr(upscaling, "MAX_IMAGE_PIXELS", 400)
    assert "megapixels genlab writes" in user_error(invoke("upscale", psnr, good))
    vae = tmp_path / "vae.safetensors"
    save_model(VAE(VAEConfig()), vae)
    assert "a vae model does not upscale" in user_error(invoke("upscale", vae, good))
    rgb = tmp_path / "rgb.safetensors"
    save_model(detailed(), rgb)  # a checkpoint file works as well as a run folder
    monkeypatch.undo()
    succeeded(invoke("upscale", rgb, good, "--out", tmp_path / "ok.png"))
