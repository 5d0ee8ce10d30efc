"""explore.py: the one home of a model's pictures (pairs, samples-or-reconstructions) for every caller."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data import load_dataset
from genlab.explore import picture_of, reconstruction_pairs, save_picture
from genlab.models.autoencoder import Autoencoder, AutoencoderConfig
from genlab.models.vae import VAE, VAEConfig


def tiny(cls, config_cls, data_shape):
    torch.manual_seed(0)
    return cls(config_cls(data_shape=data_shape, architecture="mlp", latent_dim=2, hidden_dims=(8,))).eval()


def decoded(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def tile(picture: np.ndarray, index: int, nrow: int, side: int = 8, scale: int = 14) -> np.ndarray:
    top, left = (2 + (index // nrow) * (side + 2)) * scale, (2 + (index % nrow) * (side + 2)) * scale
    return picture[top:top + side * scale:scale, left:left + side * scale:scale].astype(int)


def test_pairs_interleave_originals_and_reconstructions():
    model = tiny(Autoencoder, AutoencoderConfig, (1, 8, 8))
    x = load_dataset("digits", "test").x[:3]
    pairs = reconstruction_pairs(model, x)
    assert pairs.shape == (6, 1, 8, 8)
    torch.testing.assert_close(pairs[0::2], x)
    torch.testing.assert_close(pairs[1::2], model.reconstruct(x))


def test_a_model_that_cannot_sample_shows_reconstruction_pairs_eight_tiles_a_row(tmp_path):
    model, test = tiny(Autoencoder, AutoencoderConfig, (1, 8, 8)), load_dataset("digits", "test")
    png = picture_of(model, test, n=5)
    picture = decoded(png)
    assert picture.shape == ((2 * 10 + 2) * 14, (8 * 10 + 2) * 14)  # 10 tiles: a row of 8, then 2
    expected = (reconstruction_pairs(model, test.x[:5])[:, 0] * 255).round().numpy()
    for i in range(10):
        assert np.abs(tile(picture, i, nrow=8) - expected[i]).max() <= 1
    # the file holds the same bytes: one drawing, returned or written
    assert save_picture(tmp_path / "pairs.png", model, test, n=5).read_bytes() == png


def test_a_model_that_samples_shows_seeded_samples_and_previews_by_the_data_kind():
    model, test = tiny(VAE, VAEConfig, (1, 8, 8)), load_dataset("digits", "test")
    picture = decoded(picture_of(model, test))  # the preview: 64 samples, 8x8
    assert picture.shape == ((8 * 10 + 2) * 14,) * 2
    expected = model.sample(64, generator=torch.Generator().manual_seed(0))
    assert np.abs(tile(picture, 9, nrow=8) - (expected[9, 0] * 255).round().numpy()).max() <= 1
    assert picture_of(model, test, seed=1) != picture_of(model, test, seed=0)
    assert decoded(picture_of(model, test, shows="reconstructions")).shape[1] == (8 * 10 + 2) * 14


def test_points_make_a_scatter_and_refusals_say_why():
    model, test = tiny(Autoencoder, AutoencoderConfig, (2,)), load_dataset("ring", "test")
    assert decoded(picture_of(model, test, n=100)).shape[0] > 100
    with pytest.raises(ValueError, match="cannot draw samples"):
        picture_of(model, test, shows="samples")
    with pytest.raises(ValueError, match="needs the data"):
        picture_of(model, None, shows="reconstructions", n=4)
    with pytest.raises(ValueError, match="samples or reconstructions"):
        picture_of(model, test, shows="latents")
