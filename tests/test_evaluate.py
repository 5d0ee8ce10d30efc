"""`genlab eval` and evaluate_run on tiny trained runs: every metric that applies, each with its protocol."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cli_helpers import invoke, succeeded
from genlab.evaluate import evaluate_run
from genlab.metrics.features import MNIST_RECORD

TINY = ["--set", "hidden_dims=32", "--set", "latent_dim=2", "--set", "architecture=mlp",
        "--set", "batch_size=32", "--set", "checkpoint_every=20", "--set", "sample_every=1000"]




@pytest.fixture(scope="module")
def vae_digits(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("eval") / "vae-digits"
    succeeded(invoke("train", "vae", "--data", "digits", "--steps", 20, "--run", run, *TINY))
    return run


def test_eval_writes_every_vae_score_with_its_protocol(vae_digits):
    output = succeeded(invoke("eval", vae_digits, "--samples", 200, "--nll-k", 5, "--seed", 1))
    assert "fid" in output and "nll" in output and f"wrote {vae_digits / 'eval.json'}" in output
    report = json.loads((vae_digits / "eval.json").read_text())
    assert (report["family"], report["data"], report["step"]) == ("vae", "digits", 20)
    results = report["results"]
    assert set(results) == {"reconstruction", "nll", "sample_quality", "memorization"}
    copies = results["memorization"]
    assert copies["protocol"]["yardstick"] == "297 held-out real images"  # digits' test split
    assert copies["protocol"]["feature_network"] == json.loads(MNIST_RECORD.read_text())["name"]
    assert 0 <= copies["scores"]["copy_rate"] <= 1 and "copying" in copies["scores"]

    quality = results["sample_quality"]
    record = json.loads(MNIST_RECORD.read_text())
    protocol = quality["protocol"]
    assert protocol["feature_network"] == record["name"]
    assert protocol["feature_network_sha256"] == record["weights_sha256"]
    assert (protocol["reference"], protocol["num_real"], protocol["num_fake"], protocol["seed"]) == \
        ("digits/test[:200]", 200, 200, 1)
    assert protocol["fake_pixels_clamped_to_0_1"] == 0  # a Bernoulli VAE's means are in [0, 1]
    scores = quality["scores"]
    assert scores["fid"] > 0 and 0 <= scores["precision"] <= 1 and 0 <= scores["coverage"] <= 1

    assert set(results["reconstruction"]["scores"]) == {"mse", "psnr", "ssim"}
    assert results["reconstruction"]["protocol"]["ssim_window"] == 7  # 8x8 images
    nll = results["nll"]
    assert nll["protocol"]["k"] == 5 and nll["protocol"]["num_examples"] == 200
    assert nll["scores"]["bits_per_dim"] == pytest.approx(nll["scores"]["nll"] / (64 * math.log(2)))


def test_binarized_runs_are_scored_on_binarized_test_images(vae_digits):
    from genlab.data import load_dataset
    from genlab.evaluate import _nll
    from genlab.run import open_run

    model = open_run(vae_digits, splits=()).model
    test = load_dataset("digits", "test")
    grey = _nll(model, test, "digits", 50, k=2, seed=0, binarize=False)
    binary = _nll(model, test, "digits", 50, k=2, seed=0, binarize=True)
    assert binary["protocol"]["binarized"] and not grey["protocol"]["binarized"]
    assert binary["scores"]["nll"] != grey["scores"]["nll"]
    assert _nll(model, test, "digits", 50, k=2, seed=0, binarize=True) == binary  # one fixed binarisation


def test_eval_is_reproducible_with_its_seed(vae_digits, tmp_path):
    first = evaluate_run(vae_digits, samples=150, seed=3, nll_k=2)
    again = evaluate_run(vae_digits, samples=150, seed=3, nll_k=2)
    assert first == again


def test_eval_of_a_gan_on_ring_reports_mode_coverage(tmp_path):
    run = tmp_path / "gan-ring"
    succeeded(invoke("train", "gan", "--data", "ring", "--steps", 20, "--run", run, "--set", "latent_dim=2",
                     "--set", "hidden_dims=16,16", "--set", "checkpoint_every=20", "--set", "sample_every=1000"))
    report = evaluate_run(run, samples=500)
    assert set(report["results"]) == {"sample_quality", "mode_coverage"}
    coverage = report["results"]["mode_coverage"]
    assert coverage["scores"]["num_modes"] == 8 and coverage["protocol"]["num_fake"] == 2500  # VEEGAN's count
    protocol = report["results"]["sample_quality"]["protocol"]
    assert protocol["feature_network"] == "identity (raw coordinates)" and protocol["num_fake"] == 500


def test_eval_skips_sample_quality_without_a_feature_network(tmp_path):
    run = tmp_path / "vae-patterns"
    succeeded(invoke("train", "vae", "--data", "patterns", "--steps", 5, "--run", run, "--set", "hidden_dims=8",
                     "--set", "latent_dim=2", "--set", "batch_size=4", "--set", "sample_every=1000"))
    report = evaluate_run(run, samples=8, nll_k=2)
    assert "pass --features PATH" in report["results"]["sample_quality"]["skipped"]
    assert "reconstruction" in report["results"]


def test_eval_errors_are_one_line(vae_digits, tmp_path):
    result = invoke("eval", vae_digits, "--samples", 100)  # fewer than the 128 features FID needs... plus one
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: FID with 128 features needs more than 128 samples in each set, "
                                     "got 100 real and 100 generated: draw more samples")
    result = invoke("eval", tmp_path / "nothing")
    assert result.exit_code == 1 and "does not exist" in result.stderr


@pytest.mark.slow
def test_eval_of_a_stacked_mnist_gan_counts_its_1000_modes(tmp_path, monkeypatch):
    """On fake MNIST files (ten digits a split), a 3-step DCGAN: eval reports the modes and KL of its samples
    (26,000 in the real protocol; 2,000 here for speed), the same figures stacked_mnist_coverage gives for
    the very samples eval drew."""
    import genlab.evaluate
    from genlab.evaluate import _draw
    from genlab.metrics.stacked import NUM_SAMPLES, stacked_mnist_coverage
    from genlab.run import open_run
    from test_data_images import write_mnist

    assert genlab.evaluate.STACKED_SAMPLES == NUM_SAMPLES == 26_000
    monkeypatch.setattr(genlab.evaluate, "STACKED_SAMPLES", 2_000)

    for split in ("train", "test"):
        write_mnist(tmp_path / "data" / "mnist", split, n_images=10, n_labels=10)
    run = tmp_path / "gan-stacked"
    succeeded(invoke("train", "gan", "--data", "stacked-mnist", "--data-dir", tmp_path / "data", "--steps", 3,
                     "--run", run, "--set", "conv_channels=4,8", "--set", "batch_size=8", "--set", "sample_every=1000"))
    report = evaluate_run(run, samples=200, data_dir=tmp_path / "data", seed=1)
    result = report["results"]["stacked_mnist_modes"]
    model = open_run(run, splits=()).model
    expected = stacked_mnist_coverage(_draw(model, 2_000, 1).clamp(0, 1))
    assert result["scores"] == {"modes_covered": expected.modes_covered, "num_modes": 1000,
                                "reverse_kl": expected.reverse_kl}
    assert result["protocol"]["num_fake"] == 2_000 and result["protocol"]["feature_network_sha256"]
    assert "pass --features PATH" in report["results"]["sample_quality"]["skipped"]  # 3-channel images
