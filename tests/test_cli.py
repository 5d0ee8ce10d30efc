"""The `genlab` command end to end on tiny runs: train, sample, reconstruct, interpolate, info, resume,
lessons and data download, and user errors that give one `error:` line, exit status 1 and no traceback."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genlab.models
import genlab.train
from cli_helpers import invoke, succeeded, user_error
from conftest import set_step
from genlab import checkpoint as ckpt
from genlab.data import images, load_dataset
from genlab.run import open_run

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"
SHARED_MNIST = SHARED_DATA / "mnist"
TINY = ["--set", "hidden_dims=32", "--set", "latent_dim=2", "--set", "architecture=mlp"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Commands that default to runs/... write into the test's own folder, never the repository."""
    monkeypatch.chdir(tmp_path)





def png(path: Path) -> Image.Image:
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as image:
        image.load()
    assert image.format == "PNG"
    return image


def tile(image: Image.Image, index: int, nrow: int, side: int = 8, scale: int = 14, top: int = 0,
         left: int = 0) -> np.ndarray:
    """Pixel values of grid tile `index` (images `side` px square, 2 px padding, enlarged `scale` times) of a grid
    placed at (top, left) in the picture."""
    top += (2 + (index // nrow) * (side + 2)) * scale
    left += (2 + (index % nrow) * (side + 2)) * scale
    return np.asarray(image)[top:top + side * scale:scale, left:left + side * scale:scale].astype(int)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "vae-digits"
    output = succeeded(invoke("train", "vae", "--data", "digits", "--steps", 30, "--run", run, *TINY,
                              "--set", "log_every=10", "--set", "checkpoint_every=10", "--set", "sample_every=30",
                              "--set", "batch_size=32"))
    assert f"run folder: {run}" in output and "done:" in output
    return run


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "ae-ring"
    succeeded(invoke("train", "ae", "--data", "ring", "--steps", 20, "--run", run, "--set", "hidden_dims=16",
                     "--set", "latent_dim=2", "--set", "batch_size=64", "--set", "checkpoint_every=10"))
    return run


# ----------------------------------------------------------------------------- a VAE on digits


def test_train_makes_a_complete_run_folder(digits_run):
    config = json.loads((digits_run / "config.json").read_text())
    assert config["family"] == "vae" and config["train"]["steps"] == 30
    assert config["model"]["latent_dim"] == 2 and config["model"]["hidden_dims"] == [32]
    steps = [json.loads(line)["step"] for line in (digits_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]
    assert [p.name for p in ckpt.list_checkpoints(digits_run)] == [f"step-{s:08d}.safetensors" for s in (10, 20, 30)]
    assert {p.name for p in (digits_run / "samples").iterdir()} == {"step-00000030-samples.png",
                                                                    "step-00000030-reconstructions.png"}


def test_sample_writes_a_grid(digits_run):
    output = succeeded(invoke("sample", digits_run, "--n", 16))
    picture = png(digits_run / "sample-step30-seed0-n16.png")
    assert "wrote" in output and "sample-step30-seed0-n16.png" in output
    # 4x4 tiles of 8 px + 2 px padding, enlarged 14x, under a title band that is wider than the grid
    assert picture.mode == "L" and picture.height - 588 in range(20, 41)
    assert picture.info["Title"] == f"{digits_run.name}, step 30: 16 samples (seed 0)"
    model = open_run(digits_run, splits=()).model
    expected = model.sample(16, generator=torch.Generator().manual_seed(0))
    shown = tile(picture, 5, nrow=4, top=picture.height - 588)
    assert np.abs(shown - (expected[5, 0] * 255).round().numpy()).max() <= 1

    succeeded(invoke("sample", digits_run, "--n", 16, "--seed", 1, "--out", digits_run / "other.png"))
    assert not np.array_equal(np.asarray(png(digits_run / "other.png")), np.asarray(picture))


def test_reconstruct_writes_originals_beside_reconstructions(digits_run):
    succeeded(invoke("reconstruct", digits_run, "--n", 8))
    picture = png(digits_run / "reconstruct-step30-n8.png")
    assert picture.info["Title"] == f"{digits_run.name}, step 30: 8 test examples and their reconstructions"
    # originals over reconstructions, 8 a row: a (8*10+2)*14 by (2*10+2)*14 grid beside the row names, under the title
    top, left = picture.height - 308, picture.width - 1148
    assert top in range(20, 41) and left > 50
    x = load_dataset("digits", "test").x[:8]
    model = open_run(digits_run, splits=()).model
    for i in range(8):
        assert np.abs(tile(picture, i, nrow=8, top=top, left=left) - (x[i, 0] * 255).round().numpy()).max() <= 1
        reconstruction = (model.reconstruct(x[i:i + 1])[0, 0] * 255).round().numpy()
        assert np.abs(tile(picture, 8 + i, nrow=8, top=top, left=left) - reconstruction).max() <= 1


@pytest.mark.parametrize(("method", "rows"), [("both", "lerp, slerp"), ("slerp", "slerp")])
def test_interpolate_draws_one_labelled_row_per_method_between_the_chosen_images(digits_run, method, rows):
    output = succeeded(invoke("interpolate", digits_run, "--frames", 5, "--method", method))
    assert f"rows: {rows}" in output
    picture = png(digits_run / f"interpolate-step30-0-1-{method}-5frames.png")
    # what it shows is said in the file itself (matplotlib writes Title and Description as PNG text chunks)
    assert picture.info["Title"] == f"{digits_run.name}, step 30: test images 0 -> 1"
    assert picture.info["Description"] == f"rows: {rows}; each row starts and ends with the chosen input images"


def test_info_describes_the_run(digits_run):
    output = succeeded(invoke("info", digits_run))
    assert "vae at step 30 of 30" in output
    assert "checkpoint format 1" in output and "data: digits" in output
    assert "latent_dim=2" in output
    for step in (10, 20, 30):
        assert f"step-{step:08d}.safetensors" in output
    assert "latest metrics: step=30" in output
    assert "vae at step 20 of 30" in succeeded(invoke("info", ckpt.checkpoint_path(digits_run, 20)))


def test_resume_extends_a_finished_run(digits_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(digits_run, run)
    succeeded(invoke("train", "--resume", run, "--steps", 40))
    assert ckpt.list_checkpoints(run)[-1] == ckpt.checkpoint_path(run, 40)
    assert ckpt.read_meta(ckpt.checkpoint_path(run, 40))["run"]["train"]["steps"] == 40
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40]
    assert "vae at step 40 of 40" in succeeded(invoke("info", run))
    # Resuming a finished run trains nothing and changes nothing.
    before = ckpt.checkpoint_path(run, 40).read_bytes()
    succeeded(invoke("train", "--resume", run))
    assert ckpt.checkpoint_path(run, 40).read_bytes() == before


# ----------------------------------------------------------------------------- an AE on 2-D points


def test_points_autoencoder_reconstructs_and_samples_from_its_fitted_mixture(ring_run):
    assert (ring_run / "sampler.safetensors").is_file()  # `genlab train ae` fits it once training ends
    succeeded(invoke("sample", ring_run, "--n", 100))
    assert min(png(ring_run / "sample-step20-seed0-n100.png").size) > 200  # a scatter plot over the data
    succeeded(invoke("reconstruct", ring_run, "--n", 100))
    picture = png(ring_run / "reconstruct-step20-n100.png")
    assert min(picture.size) > 200 and picture.mode == "RGBA"  # a matplotlib scatter plot, not an image grid
    assert {p.name for p in (ring_run / "samples").iterdir()} == {"step-00000020-reconstructions.png"}
    told = succeeded(invoke("info", ring_run))
    assert "ae at step 20 of 20" in told and "beside them: sampler.safetensors" in told
    (ring_run / "sampler.safetensors").rename(ring_run / "sampler.kept")
    try:
        assert f"no sampler fitted yet: it samples once `genlab fit-sampler {ring_run}`" in succeeded(
            invoke("info", ring_run)).replace("\n", "")
    finally:
        (ring_run / "sampler.kept").rename(ring_run / "sampler.safetensors")


# ----------------------------------------------------------------------------- user errors


def folder_of_30px_images(tmp_path: Path) -> str:
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((30, 30), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return f"folder:{folder}"


def new_run(tmp_path, *args):
    return ["train", *args, "--steps", 5, "--run", tmp_path / "new-run"]


ERRORS = {
    "unknown family": (lambda t, d, r: new_run(t, "flow"), "unknown model family 'flow': choose one of ae, vae, gan"),
    "unknown data": (lambda t, d, r: new_run(t, "vae", "--data", "cifar"), "unknown data set 'cifar'"),
    "unknown key": (lambda t, d, r: new_run(t, "vae", "--set", "latent=2"), "unknown setting 'latent'"),
    "mistyped value": (lambda t, d, r: new_run(t, "vae", "--set", "latent_dim=two"),
                       "latent_dim='two' is not an integer"),
    "bad key=value": (lambda t, d, r: new_run(t, "vae", "--set", "latent_dim"), "is not key=value"),
    "conv on 3x3": (lambda t, d, r: new_run(t, "ae", "--data", "patterns", "--set", "architecture=conv"),
                    "multiples of 4, but the images are 3x3"),
    "conv on 30x30": (lambda t, d, r: new_run(t, "vae", "--data", folder_of_30px_images(t),
                                              "--set", "architecture=conv"),
                      "multiples of 4, but the images are 30x30"),
    "steps below 1 by --set": (lambda t, d, r: new_run(t, "vae", "--set", "steps=-1"), "steps=-1 is out of range"),
    "unknown gan loss": (lambda t, d, r: new_run(t, "gan", "--data", "ring", "--set", "loss=wgan-xx"),
                         "hinge, wgan, wgan-gp"),
    "pack not dividing the batch": (lambda t, d, r: new_run(t, "gan", "--data", "ring", "--set", "pack=3"),
                                    "batch_size 128 is not divisible by pack=3"),
    "n_critic below 1": (lambda t, d, r: new_run(t, "gan", "--data", "ring", "--set", "n_critic=0"), "n_critic"),
    "no family, no resume": (lambda t, d, r: ["train", "--data", "digits"], "name a model family"),
    "resume changing the model": (lambda t, d, r: ["train", "--resume", d, "--set", "latent_dim=4"],
                                  "a resumed run cannot change latent_dim"),
    "resume with family": (lambda t, d, r: ["train", "vae", "--resume", d], "--resume continues a run"),
    "resume a non-run": (lambda t, d, r: ["train", "--resume", t], "is not a run folder"),
    "sample a missing run": (lambda t, d, r: ["sample", t / "nowhere"], "nowhere does not exist"),
    "sample --n 0": (lambda t, d, r: ["sample", d, "--n", 0], "--n must be between 1 and 10000"),
    "reconstruct --n 0": (lambda t, d, r: ["reconstruct", d, "--n", 0], "--n must be between 1 and 297"),
    "interpolate points": (lambda t, d, r: ["interpolate", r], "this run's data are points"),
    "interpolate index": (lambda t, d, r: ["interpolate", d, "--to", 297], "index 297 is outside the test split"),
    "interpolate method": (lambda t, d, r: ["interpolate", d, "--method", "cubic"], "unknown interpolation method"),
    "info on a non-run": (lambda t, d, r: ["info", t], "holds no checkpoints yet"),
    "download foo": (lambda t, d, r: ["data", "download", "foo"], "unknown data set 'foo' to download"),
    "lesson nope": (lambda t, d, r: ["lesson", "nope"], "unknown lesson 'nope': choose one of autoencoder, vae"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_errors_are_one_line(case, tmp_path, digits_run, ring_run):
    make_args, expected = ERRORS[case]
    line = user_error(invoke(*make_args(tmp_path, digits_run, ring_run)))
    assert expected in line
    assert not (tmp_path / "new-run").exists(), "a failed train left a run folder behind"


def test_a_diverging_run_is_a_user_error(tmp_path, monkeypatch):
    def nan_step(model, optimizers, x, forward, accumulate):
        terms = genlab.models.vae.training_step(model, optimizers, x, forward, accumulate)
        return {**terms, "loss": torch.tensor(float("nan"))}

    set_step(monkeypatch, "vae", nan_step)
    line = user_error(invoke(*new_run(tmp_path, "vae", *TINY)))
    assert "loss = nan at step 1; no checkpoint was written" in line and "--set lr=" in line


@pytest.fixture
def no_training(monkeypatch):
    """Record the runs the CLI would train instead of training them."""
    trained = []
    monkeypatch.setattr(genlab.train, "train", lambda run_dir, **kwargs: trained.append(run_dir))
    return trained


def test_steps_zero_is_rejected(tmp_path, no_training):
    result = invoke("train", "vae", "--steps", 0, "--run", tmp_path / "new-run", *TINY)
    assert no_training == [], "--steps 0 started training"
    assert "steps=0 is out of range" in user_error(result)


def test_bad_steps_on_resume_leave_the_run_intact(digits_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(digits_run, run)
    before = (run / "config.json").read_text()
    assert "steps=0 is out of range" in user_error(invoke("train", "--resume", run, "--steps", 0))
    assert (run / "config.json").read_text() == before
    succeeded(invoke("train", "--resume", run))


@pytest.mark.parametrize("name", ["exp[old]", "exp[/]x"])
def test_error_messages_keep_square_brackets(tmp_path, name):
    assert f"{name} does not exist" in user_error(invoke("sample", tmp_path / name))


# ----------------------------------------------------------------------------- subprocesses, lessons, data


def test_python_dash_m_genlab(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "genlab", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    for command in ("train", "sample", "reconstruct", "interpolate", "info", "lesson", "data"):
        assert re.search(rf"^\W*{command}\b", result.stdout, re.MULTILINE), result.stdout
    # A user error in a real process: one line on stderr, status 1, no traceback.
    result = subprocess.run([sys.executable, "-m", "genlab", "sample", "nowhere"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: nowhere does not exist: give a run folder (runs/...) or a .safetensors checkpoint"]


@pytest.mark.slow
def test_autoencoder_lesson(tmp_path):
    output = succeeded(invoke("lesson", "autoencoder", "--out", tmp_path / "lessons"))
    exact = re.search(r"(\d+) of 15 patterns come back exactly from 3 numbers", output)
    assert exact, output
    assert int(exact.group(1)) >= 13, output  # 15 of 15 on this machine; a few near-ties may round differently
    assert "step  3000  reconstruction loss" in output
    picture = png(tmp_path / "lessons" / "autoencoder.png")  # its drawing is checked in test_lesson_autoencoder.py
    assert picture.info["Title"].startswith("autoencoder lesson, step 3000: 15 patterns")
    assert ckpt.list_checkpoints(tmp_path / "lessons" / "autoencoder") == [
        ckpt.checkpoint_path(tmp_path / "lessons" / "autoencoder", 3000)]


@pytest.fixture
def shared_mnist() -> Path:
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"shared MNIST not found (looked in {SHARED_MNIST})")
    return SHARED_MNIST


def test_data_download_mnist(tmp_path, monkeypatch, shared_mnist):
    served = functools.partial(images.download_mnist, base_url=shared_mnist.as_uri())
    monkeypatch.setattr(images, "download_mnist", served)
    output = succeeded(invoke("data", "download", "mnist", "--data-dir", tmp_path / "data"))
    folder = tmp_path / "data" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{name}.gz" for name in images.MNIST_SHA256)
    for name in images.MNIST_SHA256:
        assert (folder / f"{name}.gz").read_bytes() == (shared_mnist / f"{name}.gz").read_bytes()
        assert f"ok{folder / name}.gz" in "".join(output.split())  # Rich wraps long paths at 80 columns
    # Once the files are there and verified nothing is fetched again.
    monkeypatch.setattr(images, "download_mnist", functools.partial(served, opener=None))
    succeeded(invoke("data", "download", "mnist", "--data-dir", tmp_path / "data"))


def test_train_on_mnist(tmp_path, shared_mnist, monkeypatch):
    monkeypatch.delenv("GENLAB_DATA_DIR", raising=False)
    run = tmp_path / "mnist-run"
    succeeded(invoke("train", "vae", "--data", "mnist", "--data-dir", shared_mnist.parent, "--steps", 5,
                     "--run", run, *TINY, "--set", "batch_size=32"))
    meta = ckpt.read_meta(ckpt.resolve_checkpoint(run))
    assert meta["step"] == 5 and meta["run"]["model"]["data_shape"] == [1, 28, 28]
    assert "data: mnist" in succeeded(invoke("info", run))
    # the run remembers where MNIST was: later commands need no --data-dir (nor GENLAB_DATA_DIR)
    assert meta["run"]["train"]["data_dir"] == str(shared_mnist.parent)
    succeeded(invoke("reconstruct", run, "--n", 4, "--out", tmp_path / "pairs.png"))


def test_train_on_mnist_without_the_files_says_how_to_get_them(tmp_path):
    (tmp_path / "empty").mkdir()
    line = user_error(invoke("train", "vae", "--data", "mnist", "--data-dir", tmp_path / "empty", "--steps", 5,
                             "--run", tmp_path / "new-run", *TINY))
    assert "run `genlab data download mnist`" in line
    assert not (tmp_path / "new-run").exists()


def test_gan_trains_samples_and_refuses_to_reconstruct(tmp_path):
    run = tmp_path / "gan"
    succeeded(invoke("train", "gan", "--data", "ring", "--steps", "30", "--run", run, "--set", "latent_dim=2",
                     "--set", "hidden_dims=32,32", "--set", "log_every=10", "--set", "checkpoint_every=10",
                     "--set", "pack=2", "--set", "ema_decay=0.9"))
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [10, 20, 30]
    out = tmp_path / "gan-samples.png"
    succeeded(invoke("sample", run, "--n", "200", "--out", out))
    assert Image.open(out).size[0] > 100
    assert "no encoder" in user_error(invoke("reconstruct", run))
