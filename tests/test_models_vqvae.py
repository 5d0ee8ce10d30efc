"""VQ-VAE: the quantizer against a hand-computed nearest code, the straight-through gradient, eq. 3's terms
against a hand computation, shapes for both architectures, settings, a short run on digits, the save/load
round trip and the CLI (train, resume, reconstruct, info, eval)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from genlab import checkpoint as ckpt
from genlab.cli import app
from genlab.data import Batches, load_dataset
from genlab.models.vqvae import VQVAE, VQVAEConfig, configure_optimizers, training_step
from genlab.run import RunRecord, open_run
from genlab.train import TrainConfig

CODES = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]  # K = 3 codes of D = 2


def tiny_vqvae(**settings) -> VQVAE:
    """Points (3,), one code of D = 2 per example, a 3-code codebook set by hand."""
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**{"data_shape": (3,), "num_codes": 3, "latent_dim": 2, "hidden_dims": (8,),
                                 **settings}))
    with torch.no_grad():
        model.codebook.weight.copy_(torch.tensor(CODES))
    return model


def test_the_quantizer_picks_the_nearest_code():
    model = tiny_vqvae()
    z = torch.tensor([[[0.4, 0.1]], [[0.6, -0.3]], [[0.2, 1.2]], [[-3.0, 0.9]], [[0.9, 1.9]]])  # (5, 1, 2)
    expected = []
    for (zx, zy), in z.tolist():  # squared distance to each code, by hand
        distances = [(zx - cx) ** 2 + (zy - cy) ** 2 for cx, cy in CODES]
        expected.append([distances.index(min(distances))])
    assert expected == [[0], [1], [2], [0], [2]]
    assert model.nearest_codes(z).tolist() == expected


def test_the_straight_through_gradient_reaches_the_encoder():
    model = tiny_vqvae()
    model.loss(torch.randn(4, 3))["reconstruction"].backward()  # argmin alone would cut the decoder off
    for name, p in model.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.codebook.weight.grad is None  # the reconstruction never moves the codes; eq. 3's second term does
    model.zero_grad()
    model.loss(torch.randn(4, 3))["codebook"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())  # sg[z_e]: the codebook term moves only codes
    model.zero_grad()
    model.loss(torch.randn(4, 3))["commitment"].backward()
    assert model.codebook.weight.grad is None  # sg[e]: the commitment term moves only the encoder
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_the_loss_terms_match_a_hand_computation():
    beta = 0.4
    model = tiny_vqvae(commitment=beta, hidden_dims=()).double()  # encoder and decoder: one linear layer each
    x = torch.tensor([[0.3, -1.0, 2.0], [1.5, 0.2, -0.4], [-0.7, 0.9, 0.1]], dtype=torch.float64)
    with torch.no_grad():  # z_e = (x0, x2) + a little: each example lands on another code
        model.encoder[-1][-1].weight.copy_(torch.tensor([[1.0, 0.1, 0.0], [0.0, -0.2, 1.0]]))
        z_e = model.encode(x)[:, 0].tolist()  # (B, D)
    terms = model.loss(x)

    reconstruction = codebook = 0.0
    chosen = []
    for row_x, row_z in zip(x.tolist(), z_e, strict=True):
        distances = [sum((z - c) ** 2 for z, c in zip(row_z, code, strict=True)) for code in CODES]
        k = distances.index(min(distances))
        chosen.append(k)
        out = model.decoder(torch.tensor([CODES[k]], dtype=torch.float64))[0].tolist()  # decoder sees e, not z_e
        reconstruction += sum((o - xi) ** 2 for o, xi in zip(out, row_x, strict=True))
        codebook += min(distances)
    n = len(x)
    assert sorted(chosen) == [0, 1, 2]
    assert terms["reconstruction"].item() == pytest.approx(reconstruction / n, rel=1e-10)
    assert terms["codebook"].item() == pytest.approx(codebook / n, rel=1e-10)
    assert terms["commitment"].item() == pytest.approx(codebook / n, rel=1e-10)  # same value, other gradient
    assert terms["loss"].item() == pytest.approx((reconstruction + codebook + beta * codebook) / n, rel=1e-10)
    usage = [chosen.count(k) / n for k in range(3)]
    perplexity = torch.exp(-torch.tensor(sum(p * torch.log(torch.tensor(p)).item() for p in usage if p)))
    assert terms["perplexity"].item() == pytest.approx(perplexity.item(), rel=1e-6)


@pytest.mark.parametrize("data_shape,architecture,grid", [((1, 28, 28), "conv", 49), ((1, 8, 8), "conv", 4),
                                                          ((1, 8, 8), "mlp", 3), ((2,), "mlp", 3)])
def test_shapes(data_shape, architecture, grid):
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(data_shape=data_shape, architecture=architecture, num_codes=16, mlp_codes=3,
                              hidden_dims=(16,), conv_channels=(4, 8)))
    x = torch.rand(5, *data_shape)
    assert model.encode(x).shape == (5, grid, model.config.latent_dim)
    assert model.reconstruct(x).shape == (5, *data_shape)
    path = model.interpolate(x[0], x[1], steps=4, method="slerp")
    assert path.shape == (4, *data_shape)
    ends = model.reconstruct(x[:2])
    assert torch.allclose(path[0], ends[0]) and torch.allclose(path[-1], ends[1])
    assert torch.isfinite(model.loss(x)["loss"])
    assert not model.can_sample and model.can_reconstruct and not model.has_likelihood


def test_auto_architecture_and_reconstruction():
    assert VQVAEConfig(data_shape=(1, 28, 28)).architecture == "conv"
    assert VQVAEConfig(data_shape=(1, 8, 8)).architecture == "conv"
    assert VQVAEConfig(data_shape=(2,)).architecture == "mlp"
    assert VQVAEConfig(data_shape=(1, 28, 28)).reconstruction == "bce"
    assert VQVAEConfig(data_shape=(2,)).reconstruction == "mse"


@pytest.mark.parametrize("settings,match", [
    ({"num_codes": 0}, "num_codes=0 is out of range"),
    ({"latent_dim": 10**6}, "latent_dim=1000000 is out of range"),
    ({"commitment": -0.1}, "commitment=-0.1 is out of range"),
    ({"commitment": float("nan")}, "commitment=nan is not a finite number"),
    ({"mlp_codes": 0}, "mlp_codes=0 is out of range"),
    ({"mlp_codes": 4096, "latent_dim": 8}, "mlp_codes x latent_dim = 32768"),
    ({"num_codes": 2.5}, "num_codes=2.5 is not an integer"),
    ({"reconstruction": "l1"}, "reconstruction='l1' is not one of"),
    ({"architecture": "conv", "data_shape": (1, 30, 30)}, "30x30"),
])
def test_bad_settings_are_one_line_errors(settings, match):
    with pytest.raises(ValueError, match=match) as error:
        VQVAEConfig(**{"data_shape": (2,), **settings})
    assert "\n" not in str(error.value)


def test_a_short_run_on_digits_lowers_the_reconstruction_error():
    torch.manual_seed(0)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    model = VQVAE(VQVAEConfig(data_shape=train.shape))  # the defaults: 2x2 codes of 4 numbers, K = 512
    optimizers = configure_optimizers(model, 1e-3)
    batches = Batches(train.x, 128, seed=0)

    def test_error() -> float:
        with torch.no_grad():
            return (model.reconstruct(test.x) - test.x).pow(2).mean().item()

    before = test_error()
    for step in range(200):
        terms = training_step(model, optimizers, batches.batch(step))
    after = test_error()
    # seen: per-pixel MSE 0.165 -> 0.027; perplexity 49 in the last batch, 137 codes used by the test split
    assert after < 0.3 * before
    assert terms["perplexity"].item() > 20  # the codebook did not collapse onto a code or two


def test_save_load_round_trip(tmp_path):
    """Through a checkpoint with its run record, opened as every command opens one: same config, same codes."""
    model = tiny_vqvae()
    with torch.no_grad():
        model.codebook.weight.add_(0.1)
    path = tmp_path / "vqvae.safetensors"
    record = RunRecord("vqvae", model.config, TrainConfig(data="ring"))
    meta = {"run": record.to_json(), "step": 1, "data_position": {"epoch": 0, "batch": 1}}
    ckpt.save_checkpoint(path, meta=meta, model=model, optimizers={})
    loaded = open_run(path, splits=()).model
    x = torch.randn(6, 3)
    assert loaded.config == model.config
    assert torch.equal(loaded.codebook.weight, model.codebook.weight)
    assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))


def test_cli_train_resume_reconstruct_info_eval(tmp_path):
    runner = CliRunner()
    run = tmp_path / "vq"
    common = ["--set", "log_every=10", "--set", "checkpoint_every=20", "--set", "sample_every=20"]
    result = runner.invoke(app, ["train", "vqvae", "--data", "digits", "--steps", "20", "--run", str(run), *common])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", "40"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert {"loss", "reconstruction", "codebook", "commitment", "perplexity"} <= set(records[-1])
    assert (run / "samples" / "step-00000040-reconstructions.png").is_file()
    assert not list((run / "samples").glob("*-samples.png"))  # it does not sample

    result = runner.invoke(app, ["reconstruct", str(run), "--n", "8"])
    assert result.exit_code == 0, result.output
    assert (run / "reconstruct-step40-n8.png").is_file()
    result = runner.invoke(app, ["info", str(run)])
    assert result.exit_code == 0 and "vqvae" in result.output and "num_codes=512" in result.output
    result = runner.invoke(app, ["sample", str(run)])
    assert result.exit_code == 1 and "does not sample" in result.output
    result = runner.invoke(app, ["eval", str(run), "--samples", "100"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval.json").read_text())
    assert set(report["results"]) == {"reconstruction"} and report["family"] == "vqvae"
    assert open_run(run).model.config.latent_dim == 4


def test_the_lab_bounds_its_settings_from_the_registry():
    from genlab.web.runs import RunRequest, parse_request

    def settings(**values):
        return parse_request(RunRequest(family="vqvae", data="digits", steps=50, settings=values), ("digits",))[1]

    assert settings(num_codes=64, commitment=0.5, latent_dim=8) == {"num_codes": 64, "commitment": 0.5,
                                                                    "latent_dim": 8}
    with pytest.raises(ValueError, match="num_codes must be between 1 and 1,024 in the lab"):
        settings(num_codes=5000)
    with pytest.raises(ValueError, match="latent_dim must be between 1 and 256 in the lab"):  # the shared BOUNDS
        settings(latent_dim=300)
