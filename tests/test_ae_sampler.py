"""The autoencoder's sampler: a Gaussian mixture fitted on its training codes (pythae's GaussianMixtureSampler).
The fit recovers a known mixture and draws from it with the right moments; the file round-trips and every kind of
damage is one line; `genlab train ae` fits it, `genlab fit-sampler` refits it reproducibly, `genlab sample`,
evaluation and compare then treat the autoencoder as a sampler; a run without one says what to run."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

import genlab
from cli_helpers import invoke, succeeded, user_error
from genlab import checkpoint as ckpt
from genlab.compare import measure
from genlab.models import VAE, Autoencoder, AutoencoderConfig, VAEConfig
from genlab.models.autoencoder import (
    SAMPLER_FILE,
    LatentMixture,
    fit_latent_mixture,
    mixture_bytes,
    read_mixture,
)
from genlab.run import open_run, save_model

# --- the mixture ---------------------------------------------------------------------------------------------

MEANS = torch.tensor([[-4.0, 0.0], [3.0, 2.0]])
COVARIANCES = torch.tensor([[[1.0, 0.6], [0.6, 0.5]], [[0.3, -0.1], [-0.1, 0.2]]])
WEIGHTS = torch.tensor([0.3, 0.7])


def known_mixture() -> LatentMixture:
    return LatentMixture(WEIGHTS, MEANS, torch.linalg.cholesky(COVARIANCES), step=0)


def test_draws_have_the_mixtures_moments():
    z = known_mixture().draw(100_000, torch.Generator().manual_seed(0)).double()
    mean = (WEIGHTS[:, None] * MEANS).sum(0).double()
    # the law of total covariance: E[Cov | k] + Cov[E | k]
    centred = (MEANS - mean.float()).double()
    covariance = (WEIGHTS[:, None, None] * (COVARIANCES.double() + centred[:, :, None] * centred[:, None, :])).sum(0)
    assert torch.allclose(z.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(z.T), covariance, atol=0.06)
    assert (z[:, 0] < -0.5).double().mean().item() == pytest.approx(0.3, abs=0.01)  # the left component's share


def test_draws_are_reproducible_and_truncation_bounds_each_components_noise():
    mixture = known_mixture()
    first = mixture.draw(50, torch.Generator().manual_seed(3))
    assert torch.equal(first, mixture.draw(50, torch.Generator().manual_seed(3)))
    one = LatentMixture(torch.ones(1), MEANS[:1], torch.linalg.cholesky(COVARIANCES[:1]), step=0)
    z = one.draw(5000, torch.Generator().manual_seed(1), truncation=0.5)
    eps = torch.linalg.solve_triangular(one.scale_tril[0], (z - MEANS[0]).T, upper=False).T  # L^-1 (z - mean)
    assert eps.abs().max() <= 0.5 + 1e-5 and eps.abs().max() > 0.45


def test_the_fit_recovers_a_known_mixture():
    codes = known_mixture().draw(20_000, torch.Generator().manual_seed(0))
    fitted = fit_latent_mixture(codes, components=2, seed=0, step=7)
    order = fitted.means[:, 0].argsort()  # components come in any order
    assert torch.allclose(fitted.weights[order], WEIGHTS, atol=0.02)
    assert torch.allclose(fitted.means[order], MEANS, atol=0.05)
    covariances = fitted.scale_tril @ fitted.scale_tril.transpose(1, 2)
    assert torch.allclose(covariances[order], COVARIANCES, atol=0.05)
    assert fitted.step == 7 and fitted.weights.sum().item() == pytest.approx(1, abs=1e-6)
    again = fit_latent_mixture(codes, components=2, seed=0, step=7)
    assert torch.equal(again.means, fitted.means)  # seeded: the same codes and seed, the same mixture


@pytest.mark.parametrize("components, seed, says", [(0, 0, "--components"), (101, 0, "--components"),
                                                    (2, -1, "--seed"), (2, 2**32, "--seed"), (60, 0, "too few")])
def test_bad_fits_are_refused_in_one_line(components, seed, says):
    with pytest.raises(ValueError, match=says):
        fit_latent_mixture(torch.randn(100, 2), components=components, seed=seed)


# --- the file ------------------------------------------------------------------------------------------------


def write(path: Path, tensors: dict, meta: str = '{"components": 2, "latent_dim": 2, "step": 0, "seed": 0}') -> Path:
    path.write_bytes(safetensors.torch.save(tensors, metadata={"genlab_sampler": meta}))
    return path


def good_tensors() -> dict:
    mixture = known_mixture()
    return {"weights": mixture.weights, "means": mixture.means, "scale_tril": mixture.scale_tril.contiguous()}


def test_the_file_round_trips(tmp_path):
    path = tmp_path / SAMPLER_FILE
    path.write_bytes(mixture_bytes(known_mixture(), seed=0))
    read = read_mixture(path, latent_dim=2)
    for name in ("weights", "means", "scale_tril"):
        assert torch.equal(getattr(read, name), getattr(known_mixture(), name))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(mixture_bytes(known_mixture(), 0)[:-20]),
    "not safetensors": lambda p: p.write_bytes(b"hello"),
    "no metadata": lambda p: p.write_bytes(safetensors.torch.save(good_tensors())),
    "metadata not JSON": lambda p: write(p, good_tensors(), "{"),
    "a tensor missing": lambda p: write(p, {k: v for k, v in good_tensors().items() if k != "means"}),
    "another latent_dim": lambda p: write(p, {**good_tensors(), "means": torch.zeros(2, 3)}),
    "float64": lambda p: write(p, {**good_tensors(), "weights": WEIGHTS.double()}),
    "NaN": lambda p: write(p, {**good_tensors(), "means": torch.tensor([[0.0, float("nan")], [0, 0]])}),
    "weights not summing to 1": lambda p: write(p, {**good_tensors(), "weights": torch.tensor([0.3, 0.3])}),
    "negative weight": lambda p: write(p, {**good_tensors(), "weights": torch.tensor([-0.5, 1.5])}),
    "not lower triangular": lambda p: write(p, {**good_tensors(), "scale_tril": torch.ones(2, 2, 2)}),
    "zero diagonal": lambda p: write(p, {**good_tensors(), "scale_tril": torch.zeros(2, 2, 2)}),
    "components not a number": lambda p: write(p, good_tensors(), '{"components": "2", "step": 0}'),
    "huge": lambda p: p.write_bytes(b"\0" * 5_000_000),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_file_is_one_line_saying_what_to_run(tmp_path, damage):
    path = tmp_path / SAMPLER_FILE
    DAMAGE[damage](path)
    with pytest.raises(ValueError) as refused:
        read_mixture(path, latent_dim=2)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path} is damaged") and "genlab fit-sampler" in message


# --- a run: trained, fitted, sampled --------------------------------------------------------------------------

TINY_AE = ["--set", "architecture=mlp", "--set", "hidden_dims=32", "--set", "latent_dim=4", "--set", "batch_size=64"]


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory) -> Path:
    """A tiny AE trained 20 steps on 8x8 digits by `genlab train`, which fits its sampler when training ends."""
    run = tmp_path_factory.mktemp("sampler") / "ae-digits"
    output = succeeded(invoke("train", "ae", "--data", "digits", "--steps", 20, "--run", run, *TINY_AE))
    assert "fitted a 10-component Gaussian mixture on 1,500 training codes" in output
    return run


@pytest.fixture
def run_copy(ae_run, tmp_path) -> Path:
    return Path(shutil.copytree(ae_run, tmp_path / "ae-digits"))


def test_train_fits_the_sampler_and_the_checkpoint_keeps_its_weights(ae_run):
    assert (ae_run / SAMPLER_FILE).is_file()
    checkpoint = ckpt.list_checkpoints(ae_run)[-1]
    model = genlab.load(ae_run)
    names = {name for name in safetensors.torch.load_file(str(checkpoint)) if name.startswith("model.")}
    assert names == {f"model.{name}" for name in model.state_dict()}  # the sampler is not among the weights
    assert model.can_sample and model.latent_sampler.step == 20 and len(model.latent_sampler.weights) == 10
    assert model.sample(5, torch.Generator().manual_seed(0)).shape == (5, 1, 8, 8)


def test_samples_decode_the_mixtures_draws(ae_run):
    model = genlab.load(ae_run)
    codes = model.latent_sampler.draw(6, torch.Generator().manual_seed(4))
    assert torch.equal(model.sample(6, torch.Generator().manual_seed(4)), model.decode(codes))


def test_fit_sampler_is_reproducible_and_takes_components_and_seed(run_copy):
    output = succeeded(invoke("fit-sampler", run_copy, "--components", 3, "--seed", 5))
    assert "3 components, fitted on 1,500 training codes of step 20" in output
    first = (run_copy / SAMPLER_FILE).read_bytes()
    succeeded(invoke("fit-sampler", run_copy, "--components", 3, "--seed", 5))
    assert (run_copy / SAMPLER_FILE).read_bytes() == first
    model = genlab.load(run_copy)
    codes = torch.cat([model.encode(x) for x in open_run(run_copy, splits=("train",)).data["train"].x.split(500)])
    expected = fit_latent_mixture(codes.detach(), components=3, seed=5, step=20)
    assert torch.allclose(model.latent_sampler.means, expected.means, atol=1e-5)


def test_sample_writes_a_grid(run_copy):
    succeeded(invoke("sample", run_copy, "--n", 16, "--seed", 2))
    with Image.open(run_copy / "sample-step20-seed2-n16.png") as picture:
        assert picture.format == "PNG" and min(picture.size) > 100


def test_an_ae_without_a_sampler_says_to_fit_one(run_copy):
    (run_copy / SAMPLER_FILE).unlink()  # as every AE run made before the sampler existed
    assert not genlab.load(run_copy).can_sample
    line = user_error(invoke("sample", run_copy))
    assert line.endswith(f"run `genlab fit-sampler {run_copy}`")
    succeeded(invoke("reconstruct", run_copy, "--n", 4))  # everything else works as before
    succeeded(invoke("fit-sampler", run_copy))
    succeeded(invoke("sample", run_copy))


def test_a_damaged_sampler_is_one_line_and_fit_sampler_replaces_it(run_copy):
    (run_copy / SAMPLER_FILE).write_bytes(b"not a sampler")
    line = user_error(invoke("sample", run_copy))
    assert f"{run_copy / SAMPLER_FILE} is damaged" in line and "genlab fit-sampler" in line
    succeeded(invoke("fit-sampler", run_copy))
    assert genlab.load(run_copy).can_sample


def test_a_sampler_fitted_on_another_checkpoint_is_left_out(run_copy, caplog):
    mixture = read_mixture(run_copy / SAMPLER_FILE, latent_dim=4)
    (run_copy / SAMPLER_FILE).write_bytes(mixture_bytes(LatentMixture(
        mixture.weights, mixture.means, mixture.scale_tril, step=10), seed=0))
    with caplog.at_level(logging.WARNING):
        assert not genlab.load(run_copy).can_sample
    assert "fitted on the codes of step 10, not on this checkpoint's (step 20)" in caplog.text


def test_fit_sampler_refuses_what_it_cannot_fit(tmp_path, ae_run):
    before = (ae_run / SAMPLER_FILE).read_bytes()
    save_model(VAE(VAEConfig(data_shape=(1, 8, 8))), tmp_path / "vae/checkpoints/step-00000000.safetensors")
    assert "fits an autoencoder's" in user_error(invoke("fit-sampler", tmp_path / "vae"))
    alone = save_model(Autoencoder(AutoencoderConfig(data_shape=(1, 8, 8))), tmp_path / "my-ae.safetensors")
    assert "not in a run folder" in user_error(invoke("fit-sampler", alone))
    assert not genlab.load(alone).can_sample  # a checkpoint on its own: no run folder, no sampler, loads as before
    assert "--components must be between 1 and 100" in user_error(invoke("fit-sampler", ae_run, "--components", 0))
    assert "--seed must be between 0" in user_error(invoke("fit-sampler", ae_run, "--seed", -1))
    assert (ae_run / SAMPLER_FILE).read_bytes() == before  # a refused fit leaves the sampler as it was
    assert "does not exist" in user_error(invoke("fit-sampler", tmp_path / "nowhere"))


def test_evaluation_and_compare_score_the_ae_samples_like_the_others(run_copy):
    result = measure(open_run(run_copy, splits=("test",)), samples=200, seed=0, nll_k=1)
    assert result.mse is not None and np.isfinite(result.fid) and result.fid > 0
    assert 0 <= result.precision <= 1 and 0 <= result.recall <= 1 and result.sampling_cpu_s > 0
