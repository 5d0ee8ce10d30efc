"""Autoencoder: shapes for both architectures, the bounded tanh code, the loss against a hand-written
BCE/MSE, denoising only while training, and a short training run on the lesson's 15 patterns."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data import toys
from genlab.models.autoencoder import Autoencoder, AutoencoderConfig


def hand_bce_with_logits(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-[x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))] summed over dims, mean over the batch, per element
    in plain Python floats (the stable form max(l, 0) - l x + log(1 + exp(-|l|)))."""
    totals = []
    for row_l, row_x in zip(logits.flatten(1).tolist(), x.flatten(1).tolist(), strict=True):
        totals.append(sum(max(li, 0) - li * xi + math.log1p(math.exp(-abs(li)))
                          for li, xi in zip(row_l, row_x, strict=True)))
    return torch.tensor(sum(totals) / len(totals))


@pytest.mark.parametrize("data_shape,architecture", [((1, 28, 28), "conv"), ((1, 28, 28), "mlp"),
                                                     ((1, 8, 8), "conv"), ((2,), "mlp"), ((1, 3, 3), "mlp")])
def test_shapes(data_shape, architecture):
    torch.manual_seed(0)
    config = AutoencoderConfig(data_shape=data_shape, architecture=architecture, latent_dim=5,
                               hidden_dims=(16,), conv_channels=(4, 8))
    model = Autoencoder(config)
    x = torch.rand(3, *data_shape)
    code = model.encode(x)
    assert code.shape == (3, 5)
    assert model.decode(code).shape == (3, *data_shape)
    assert model.reconstruct(x).shape == (3, *data_shape)
    assert model.interpolate(x[0], x[1], steps=4).shape == (4, *data_shape)
    assert torch.isfinite(model.loss(x)["loss"])


def test_auto_architecture_and_reconstruction():
    assert AutoencoderConfig(data_shape=(1, 28, 28)).architecture == "conv"
    assert AutoencoderConfig(data_shape=(1, 3, 3)).architecture == "mlp"
    assert AutoencoderConfig(data_shape=(2,)).architecture == "mlp"
    assert AutoencoderConfig(data_shape=(1, 28, 28)).reconstruction == "bce"
    assert AutoencoderConfig(data_shape=(2,)).reconstruction == "mse"
    assert AutoencoderConfig(data_shape=(2,), reconstruction="bce").reconstruction == "bce"


@pytest.mark.parametrize("settings,match", [
    ({"reconstruction": "l1"}, "reconstruction='l1' is not one of"),
    ({"code_activation": "relu"}, "code_activation='relu' is not one of"),
    ({"latent_dim": 0}, "latent_dim=0 is out of range"),
    ({"noise_std": -0.1}, "noise_std=-0.1 is out of range"),
    ({"architecture": "conv", "data_shape": (1, 30, 30)}, "30x30"),
])
def test_bad_settings_raise(settings, match):
    with pytest.raises(ValueError, match=match):
        AutoencoderConfig(**{"data_shape": (2,), **settings})


def test_tanh_code_is_bounded_and_decode_of_bce_is_a_probability():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(data_shape=(1, 3, 3), latent_dim=3, hidden_dims=(16,),
                                          code_activation="tanh"))
    x = 50 * torch.randn(64, 1, 3, 3)  # large inputs push the pre-activation far out
    code = model.encode(x)
    assert (code.abs() <= 1).all()  # (-1, 1) in exact arithmetic; float32 tanh may round to +-1 when saturated
    assert code.abs().max() > 0.9  # the inputs really did reach the saturated region
    assert torch.allclose(code, torch.tanh(model.encoder(x)))
    assert (model.encode(toys.patterns()[0]).abs() < 1).all()  # ordinary inputs: strictly inside
    out = model.decode(50 * torch.randn(64, 3))
    assert ((out >= 0) & (out <= 1)).all()
    z = torch.randn(8, 3)
    assert torch.equal(model.decode(z), torch.sigmoid(model.decode_raw(z)))


def test_loss_matches_hand_computation_bce_and_mse():
    torch.manual_seed(0)
    bce_model = Autoencoder(AutoencoderConfig(data_shape=(1, 3, 3), latent_dim=2, hidden_dims=(8,)))
    x = toys.patterns()[0][:5]
    logits = bce_model.decode_raw(bce_model.encode(x))
    assert torch.allclose(bce_model.loss(x)["loss"], hand_bce_with_logits(logits, x), atol=1e-5)

    mse_model = Autoencoder(AutoencoderConfig(data_shape=(3,), latent_dim=2, hidden_dims=(8,)))
    points = torch.randn(4, 3)
    out = mse_model.decode_raw(mse_model.encode(points)).tolist()
    want = sum(sum((o - p) ** 2 for o, p in zip(row_o, row_p, strict=True))
               for row_o, row_p in zip(out, points.tolist(), strict=True)) / 4
    assert mse_model.loss(points)["loss"].item() == pytest.approx(want, rel=1e-5)


def test_denoising_is_stochastic_in_training_and_clean_in_eval():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(data_shape=(1, 3, 3), latent_dim=3, hidden_dims=(16,), noise_std=0.5))
    x = toys.patterns()[0]
    model.train()
    first, second = model.loss(x)["loss"], model.loss(x)["loss"]
    assert first.item() != second.item()
    corrupted = model.corrupt(x)
    assert (corrupted - x).std().item() == pytest.approx(0.5, rel=0.25)  # 135 draws of N(0, 0.5^2)

    model.eval()
    clean_a, clean_b = model.loss(x)["loss"], model.loss(x)["loss"]
    assert torch.equal(clean_a, clean_b)
    with torch.no_grad():
        logits = model.decode_raw(model.encode(x))  # no noise: the clean reconstruction
    assert torch.allclose(clean_a, hand_bce_with_logits(logits, x), atol=1e-5)
    # the training loss scores the noisy input's reconstruction against the clean x, not the noisy one
    assert first.item() != pytest.approx(clean_a.item(), abs=1e-4)


def test_interpolate_endpoints_are_reconstructions():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(data_shape=(1, 3, 3), latent_dim=3, hidden_dims=(16,)))
    x = toys.patterns()[0][:2]
    with torch.no_grad():
        ends = model.reconstruct(x)
    for method in ("lerp", "slerp"):
        path = model.interpolate(x[0], x[1], steps=5, method=method)
        assert torch.allclose(path[0], ends[0], atol=1e-5) and torch.allclose(path[-1], ends[1], atol=1e-5)


def test_training_on_the_patterns_learns_them():
    torch.manual_seed(0)
    x = toys.patterns()[0]  # (15, 1, 3, 3)
    model = Autoencoder(AutoencoderConfig(data_shape=(1, 3, 3), latent_dim=3, hidden_dims=(32,),
                                          code_activation="tanh"))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        initial = model.loss(x)["loss"].item()
    for _ in range(200):
        loss = model.loss(x)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        final = model.loss(x)["loss"].item()
        reconstruction = model.reconstruct(x)
    # seen: 6.25 (9 pixels x log 2, a coin flip per pixel) -> 0.14 after 200 steps
    assert initial == pytest.approx(9 * math.log(2), rel=0.1)
    assert final < 0.1 * initial
    assert torch.equal((reconstruction > 0.5).float(), x)  # every pixel of every pattern on the right side
