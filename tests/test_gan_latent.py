"""The GAN's latent tools: the truncation trick (BigGAN's cut normal) in sample(), paths between the latents two
seeds draw, and the `genlab sample --truncation` and `genlab interpolate --seeds` commands that show them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from cli_helpers import invoke, succeeded, user_error
from genlab.models import GAN, GANConfig
from genlab.models.layers import interpolate_latents, normal_latents


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def points_gan(**settings) -> GAN:
    torch.manual_seed(0)
    return GAN(GANConfig(data_shape=(2,), latent_dim=4, hidden_dims=(16,), **settings)).eval()


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_truncation_draws_z_from_the_cut_normal_before_the_generator(ema_decay):
    model = points_gan(ema_decay=ema_decay)
    if model.ema is not None:  # an EMA copy that differs from G: sample() must decode with it
        with torch.no_grad():
            for p in model.ema.parameters():
                p.add_(0.1)
    sampler = model.ema if model.ema is not None else model.generator
    z = normal_latents(8, 4, generator=seeded(5), truncation=0.7)
    assert z.abs().max() <= 0.7
    with torch.no_grad():
        expected = sampler(z)
    torch.testing.assert_close(model.sample(8, seeded(5), truncation=0.7), expected, rtol=0, atol=0)
    # as t -> 0 every sample becomes G(0), the prior mean's image
    with torch.no_grad():
        centre = sampler(torch.zeros(1, 4))
    assert (model.sample(8, seeded(5), truncation=1e-6) - centre).abs().max() < 1e-4


@pytest.mark.parametrize("t", [0.0, -0.5, 10.5, float("nan")])
def test_truncation_outside_zero_to_ten_is_refused(t):
    with pytest.raises(ValueError, match=r"truncation must be above 0 and at most 10"):
        points_gan().sample(4, truncation=t)


def test_seed_paths_start_and_end_at_the_seeds_first_samples():
    model = points_gan()
    for method in ("lerp", "slerp"):
        path = model.interpolate_seeds(3, 7, steps=6, method=method)
        assert path.shape == (6, 2)
        # a seed's end is the sample `genlab sample --n 1 --seed` draws with it
        torch.testing.assert_close(path[0], model.sample(1, seeded(3))[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(path[-1], model.sample(1, seeded(7))[0], rtol=0, atol=1e-6)
    z_a, z_b = torch.randn(1, 4, generator=seeded(3))[0], torch.randn(1, 4, generator=seeded(7))[0]
    with torch.no_grad():
        for method in ("lerp", "slerp"):
            expected = model.generator(interpolate_latents(z_a, z_b, 6, method))
            torch.testing.assert_close(model.interpolate_seeds(3, 7, 6, method), expected, rtol=0, atol=0)
    lerp, slerp = model.interpolate_seeds(3, 7, 6, "lerp"), model.interpolate_seeds(3, 7, 6, "slerp")
    assert not torch.allclose(lerp[1:-1], slerp[1:-1])  # the great circle is another path than the chord


# ----------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("latent") / "gan-digits"
    succeeded(invoke("train", "gan", "--data", "digits", "--steps", 4, "--run", run, "--set", "latent_dim=8",
                     "--set", "conv_channels=8,16", "--set", "batch_size=16", "--set", "checkpoint_every=4"))
    return run


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("latent") / "vae-digits"
    succeeded(invoke("train", "vae", "--data", "digits", "--steps", 2, "--run", run, "--set", "architecture=mlp",
                     "--set", "hidden_dims=16", "--set", "latent_dim=2", "--set", "batch_size=16"))
    return run


def test_sample_with_truncation_names_it_in_the_file_and_the_title(gan_run):
    succeeded(invoke("sample", gan_run, "--n", 4, "--seed", 2, "--truncation", 0.7))
    path = gan_run / "sample-step4-seed2-n4-trunc0.7.png"
    with Image.open(path) as picture:
        assert picture.info["Title"] == "gan-digits, step 4, truncation 0.7: 4 samples (seed 2)"


@pytest.mark.parametrize("t", [0, 10.5, -1, "nan"])
def test_sample_refuses_a_truncation_outside_zero_to_ten(gan_run, t):
    assert "--truncation must be above 0 and at most 10" in user_error(invoke("sample", gan_run, "--truncation", t))


def test_sample_refuses_truncation_for_a_family_without_it(vae_run):
    line = user_error(invoke("sample", vae_run, "--truncation", 0.7))
    assert "--truncation applies to gan models" in line and "a vae has none" in line


def test_interpolate_between_two_seeds_draws_one_row_per_method(gan_run):
    output = succeeded(invoke("interpolate", gan_run, "--seeds", 3, 7, "--frames", 5))
    assert "rows: lerp, slerp" in " ".join(output.split())
    path = gan_run / "interpolate-step4-seeds3-7-both-5frames.png"
    with Image.open(path) as picture:
        assert picture.info["Title"] == "gan-digits, step 4: seeds 3 -> 7"
        assert picture.info["Description"] == "rows: lerp, slerp; each row starts and ends with the chosen " \
                                              "seed's sample images"


def test_interpolate_routes_by_what_the_model_can_do(gan_run, vae_run):
    assert "use --seeds A B" in user_error(invoke("interpolate", gan_run))
    line = user_error(invoke("interpolate", vae_run, "--seeds", 1, 2))
    assert "a vae interpolates between test images: use --from and --to" in line
    assert "give one" in user_error(invoke("interpolate", gan_run, "--seeds", 1, 2, "--from", 0))
    assert "--seed must be between" in user_error(invoke("interpolate", gan_run, "--seeds", -1, 2))
    assert "choose lerp, slerp or both" in user_error(invoke("interpolate", gan_run, "--seeds", 1, 2,
                                                                        "--method", "cubic"))


def test_interpolate_refuses_seeds_on_points(tmp_path):
    run = tmp_path / "gan-ring"
    succeeded(invoke("train", "gan", "--data", "ring", "--steps", 2, "--run", run, "--set", "hidden_dims=8",
                     "--set", "latent_dim=2", "--set", "batch_size=16"))
    assert "this run's data are points" in user_error(invoke("interpolate", run, "--seeds", 1, 2))
