"""explore.py: the one home of a model's pictures (samples, labelled reconstructions, points with their data,
latent grids) for every caller; every picture carries its title and labels in its PNG metadata."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from genlab.data import load_dataset
from genlab.explore import (
    decoded_latent_grid,
    picture_of,
    reconstruction_rows,
    save_latent_grid,
    save_latent_map,
    save_picture,
    titled_png,
)
from genlab.metrics.modes import mixture_coverage
from genlab.models.autoencoder import Autoencoder, AutoencoderConfig
from genlab.models.ddpm import DDPM, DDPMConfig
from genlab.models.vae import VAE, VAEConfig

SCALE, SIDE, GRID_WIDTH = 14, 8, (8 * 10 + 2) * 14  # 8x8 digits enlarged 14x, 8 tiles a row with 2 px padding


def tiny(cls, config_cls, data_shape, **settings):
    torch.manual_seed(0)
    return cls(config_cls(data_shape=data_shape, architecture="mlp", latent_dim=2, hidden_dims=(8,), **settings)).eval()


def opened(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image


def tile(picture: np.ndarray, top: int, left: int) -> np.ndarray:
    return picture[top:top + SIDE * SCALE:SCALE, left:left + SIDE * SCALE:SCALE].astype(int)


def test_a_title_band_widens_for_a_long_title_and_goes_into_the_metadata():
    picture = Image.new("L", (20, 10), 0)
    image = opened(titled_png(picture, "a title much wider than twenty pixels", "what the rows mean"))
    assert image.width > 100 and image.height > 10
    assert image.info["Title"] == "a title much wider than twenty pixels"
    assert image.info["Description"] == "what the rows mean"
    pixels = np.asarray(image)
    assert (pixels[-10:, :20] == 0).all()  # the picture itself sits under the band, unchanged
    assert (pixels[:, 20:][-10:] == 255).all()  # the widened part is white


def test_reconstructions_are_labelled_rows_originals_over_reconstructions(tmp_path):
    model, test = tiny(Autoencoder, AutoencoderConfig, (1, 8, 8)), load_dataset("digits", "test")
    png = picture_of(model, test, n=10, title="ae-digits, step 30")
    image = opened(png)
    assert image.info["Title"] == "ae-digits, step 30: 10 test examples and their reconstructions"
    assert image.info["Description"].startswith("rows, top to bottom in each group: original, reconstruction")
    picture = np.asarray(image)
    label_width = picture.shape[1] - GRID_WIDTH
    assert label_width > 50  # room for the row names
    assert (picture[:, :label_width] < 128).any()  # the names are written there
    group_height = (2 * 10 + 2) * SCALE + 8  # two rows of tiles, then the gap between groups
    top = picture.shape[0] - (2 * group_height - 8)  # the title band's height
    assert 20 <= top <= 40
    rows = reconstruction_rows(model, test.x[:10])
    for i in range(10):  # example i: its original, and under it its reconstruction, in one column
        group, column = divmod(i, 8)
        left = label_width + (2 + 10 * column) * SCALE
        for r, name in enumerate(("original", "reconstruction")):
            shown = tile(picture, top + group * group_height + (2 + 10 * r) * SCALE, left)
            assert np.abs(shown - (rows[name][i, 0] * 255).round().numpy()).max() <= 1
    # the file holds the same bytes: one drawing, returned or written
    assert save_picture(tmp_path / "r.png", model, test, n=10, title="ae-digits, step 30").read_bytes() == png


def test_a_denoising_autoencoder_shows_its_noisy_input_and_what_it_made_of_it():
    model = tiny(Autoencoder, AutoencoderConfig, (1, 8, 8), noise_std=0.3)
    x = load_dataset("digits", "test").x[:4]
    rows = reconstruction_rows(model, x, seed=3)
    assert list(rows) == ["original", "noisy input (std 0.3)", "reconstruction"]
    noisy = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(rows["noisy input (std 0.3)"], noisy)
    torch.testing.assert_close(rows["reconstruction"], model.reconstruct(noisy))  # it denoises what it was given
    state = torch.random.get_rng_state()
    image = opened(picture_of(model, load_dataset("digits", "test"), n=4))
    assert torch.equal(torch.random.get_rng_state(), state)  # a training preview leaves training's randomness alone
    assert "original, noisy input (std 0.3), reconstruction" in image.info["Description"]


def test_samples_say_how_many_which_seed_and_are_the_seeded_draws():
    model, test = tiny(VAE, VAEConfig, (1, 8, 8)), load_dataset("digits", "test")
    image = opened(picture_of(model, test, title="vae-digits, step 30"))  # the preview: 64 samples, 8x8
    assert image.info["Title"] == "vae-digits, step 30: 64 samples (seed 0)"
    assert image.info["Description"] == "64 images, 8 a row"
    picture = np.asarray(image)
    assert picture.shape[1] == GRID_WIDTH
    expected = model.sample(64, generator=torch.Generator().manual_seed(0))
    top = picture.shape[0] - GRID_WIDTH  # the title band over the 8 x 8 grid
    assert 20 <= top <= 40
    shown = tile(picture, top + (2 + 10 * 1) * SCALE, (2 + 10 * 1) * SCALE)  # sample 9: row 1, column 1
    assert np.abs(shown - (expected[9, 0] * 255).round().numpy()).max() <= 1
    assert picture_of(model, test, seed=1) != picture_of(model, test, seed=0)


def test_a_diffusion_picture_names_its_sampler_and_timesteps():
    torch.manual_seed(0)
    model = DDPM(DDPMConfig(data_shape=(2,), num_timesteps=30, hidden_dims=(8,), ema_decay=0)).eval()
    ring = load_dataset("ring", "test")
    assert opened(picture_of(model, ring, n=50)).info["Title"] == "50 samples (seed 0, ddpm sampler, 30 timesteps)"
    chosen = picture_of(model, ring, n=50, sample_options={"sampler": "ddim", "steps": 5})
    assert opened(chosen).info["Title"] == "50 samples (seed 0, ddim sampler, 5 timesteps)"


class FixedPoints(nn.Module):
    """A stand-in generator that draws the given points, to test what the plot says about them."""
    can_sample, can_reconstruct, can_upscale, can_guide = True, False, False, False
    config = SimpleNamespace()  # no settings, as a GAN has no sampler

    def __init__(self, points: torch.Tensor):
        super().__init__()
        self.points = nn.Parameter(points, requires_grad=False)

    def sample(self, n, generator=None):
        return self.points[:n]


def test_points_have_a_legend_the_data_beside_them_and_the_modes_covered():
    ring = load_dataset("ring", "test")
    on_three_modes = ring.x[torch.isin(ring.labels, torch.tensor([0, 1, 2]))][:300]
    image = opened(picture_of(FixedPoints(on_three_modes), ring, n=300, title="ring-gan, step 9"))
    assert image.info["Title"] == "ring-gan, step 9: 300 samples (seed 0)"
    assert mixture_coverage(on_three_modes, "ring").modes_covered == 3
    near = 100 * mixture_coverage(on_three_modes, "ring").high_quality_fraction
    assert image.info["Description"] == ("model samples: blue; data: black in its own panel, light grey under the "
                                         f"model's points; mode centres: red rings; modes covered 3/8, {near:.0f}% "
                                         "near a mode")
    picture = np.asarray(image.convert("RGB")).astype(int)
    half = picture.shape[1] // 2
    blue = picture[:, :, 2] - picture[:, :, 0] > 60
    # two panels: the data's (left, no sample in it) beside the model's, which holds the samples
    assert blue[:, half:].sum() > 20 and blue[:, :half].sum() == 0
    alone = opened(picture_of(FixedPoints(on_three_modes), None, n=300))  # no data: one panel, no modes to count
    assert picture.shape[1] > 1.7 * alone.width and "modes covered" not in alone.info["Description"]


def test_points_beyond_the_view_are_counted_and_drawn_at_its_edge():
    ring = load_dataset("ring", "test")
    far = torch.tensor([[50.0, 0.0]] * 40 + [[0.0, 1.0]] * 60)
    image = opened(picture_of(FixedPoints(far), ring, n=100))
    assert "40 of 100 beyond the view, drawn at its edge" in image.info["Description"]
    histogram = opened(picture_of(FixedPoints(torch.tensor([[4.0]] * 50)), load_dataset("gaussian1d", "test"), n=50))
    assert histogram.info["Description"] == "model samples: blue; data: black outline"


def test_latent_grid_and_map_say_their_axes(tmp_path):
    model = tiny(VAE, VAEConfig, (1, 8, 8))
    grid = save_latent_grid(decoded_latent_grid(model.decode, span=2.0, size=5), 2.0, tmp_path / "grid.png",
                            "vae-digits: decoded grid")
    info = Image.open(grid).info
    assert info["Title"] == "vae-digits: decoded grid"
    assert info["Description"].startswith("axes: z[0] and z[1] from -2 to 2, 5 x 5 decodings")
    test = load_dataset("digits", "test")
    with torch.no_grad():
        mu, _ = model.encode(test.x)
    info = Image.open(save_latent_map(mu, test.labels, tmp_path / "map.png", "vae-digits: codes")).info
    assert info["Description"] == f"axes: z[0], z[1]; {len(test)} codes, coloured by label, colorbar on the right"


def test_refusals_say_why():
    model, test = tiny(Autoencoder, AutoencoderConfig, (2,)), load_dataset("ring", "test")
    assert opened(picture_of(model, test, n=100)).info["Title"] == "100 test examples and their reconstructions"
    with pytest.raises(ValueError, match="cannot draw samples"):
        picture_of(model, test, shows="samples")
    with pytest.raises(ValueError, match="needs the data"):
        picture_of(model, None, shows="reconstructions", n=4)
    with pytest.raises(ValueError, match="samples, reconstructions or upscales"):
        picture_of(model, test, shows="latents")


def test_training_previews_name_their_run_and_step(tmp_path):
    from genlab.train import save_previews

    run = tmp_path / "vae-digits"
    model, test = tiny(VAE, VAEConfig, (1, 8, 8)), load_dataset("digits", "test")
    save_previews(model, run, 40, test)
    titles = {path.name: Image.open(path).info["Title"] for path in sorted((run / "samples").iterdir())}
    assert titles == {"step-00000040-reconstructions.png": "vae-digits, step 40: 32 test examples and their "
                                                           "reconstructions",
                      "step-00000040-samples.png": "vae-digits, step 40: 64 samples (seed 0)"}
