"""`genlab serve`: each endpoint by what a model can do, answers equal to the library's, the same bytes for the same
seed alone and batched with others, every bad input a 4xx with one line, a full queue a 503, Host/Origin/token."""

import asyncio
import base64
import io
import math
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cli_helpers import invoke, user_error
from genlab import checkpoint as ckpt
from genlab.models import DDPM, GAN, VAE, Autoencoder, AutoencoderConfig, DDPMConfig, GANConfig, VAEConfig
from genlab.models.autoencoder import SAMPLER_FILE, LatentMixture, mixture_bytes
from genlab.models.layers import normal_latents
from genlab.models.superres import SuperRes, SuperResConfig, interpolate_weights
from genlab.run import RunRecord, Source, open_run, save_model, sha256_of
from genlab.train import TrainConfig
from genlab.upscale import upscale_picture
from genlab.web.serve import Batcher, create_server, psnr_end
from web_server import running_server

SRC = Path(__file__).parents[1] / "src"


def tiny_models() -> dict:
    torch.manual_seed(0)
    return {"gan": GAN(GANConfig(data_shape=(1, 8, 8))), "vae": VAE(VAEConfig(data_shape=(1, 8, 8))),
            "ae": Autoencoder(AutoencoderConfig(data_shape=(1, 8, 8))),
            "ddpm": DDPM(DDPMConfig(data_shape=(1, 8, 8), num_timesteps=200, architecture="mlp", hidden_dims=(32,))),
            "ring": GAN(GANConfig(data_shape=(2,)))}  # a points model


def tiny_superres(stage: str, seed: int) -> SuperRes:
    """An untrained x2 super-resolution model; its last conv, which starts at zero (G starts as bicubic), drawn
    from `seed` so that two of them upscale differently."""
    torch.manual_seed(seed)
    model = SuperRes(SuperResConfig(data_shape=(3, 16, 16), scale=2, g_channels=4, blocks=1, stage=stage,
                                    d_channels=4, ema_decay=0)).eval()
    last = [module for module in model.generator.modules() if isinstance(module, torch.nn.Conv2d)][-1]
    torch.nn.init.normal_(last.weight, std=0.05)
    return model


def save_started_from(model: SuperRes, path: Path, source: Path) -> None:
    """A checkpoint of a super-resolution run started from `source` (as `genlab train --init-from` records it)."""
    record = RunRecord("superres", model.config, TrainConfig(), Source(str(source.resolve()), 0, sha256_of(source)))
    ckpt.save_checkpoint(path, meta={"run": record.to_json(), "step": 0, "data_position": {"epoch": 0, "batch": 0}},
                         model=model, optimizers={})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    for name, model in tiny_models().items():
        save_model(model, folder / name / "checkpoints" / "step-00000000.safetensors")
    psnr = save_model(tiny_superres("psnr", 1), folder / "sr-psnr" / "checkpoints" / "step-00000000.safetensors")
    save_started_from(tiny_superres("gan", 2), folder / "sr" / "checkpoints" / "step-00000000.safetensors", psnr)
    return folder


def opened(runs, names=("gan", "vae", "ae", "ddpm", "ring", "sr")):
    return {name: open_run(runs / name, splits=()) for name in names}


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_server(opened(runs), allowed_hosts=("testserver",))) as client:
        yield client


def png_text(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def digits_like(n: int, size: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.random((size, size)) * 255).astype(np.uint8) for _ in range(n)]


def npy(response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-npy", response.text
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def one_line_refusal(response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 300
    return detail


# --- endpoints by capability ---------------------------------------------------------------------------------

ENDPOINTS = {"gan": ["GET sample", "GET interpolate"],
             "vae": ["GET sample", "GET interpolate", "POST interpolate", "POST reconstruct", "POST encode"],
             "ae": ["POST interpolate", "POST reconstruct", "POST encode"],
             "ddpm": ["GET sample"], "ring": ["GET sample", "GET interpolate"], "sr": ["POST upscale"]}


def call(client, name: str, endpoint: str):
    image = png_text(digits_like(1)[0])
    method, path = endpoint.split()
    if method == "GET":
        return client.get(f"/models/{name}/{path}?format=npy")
    body = {"a": image, "b": image, "frames": 3} if path == "interpolate" else \
        {"image": image} if path == "upscale" else {"images": [image]}
    return client.post(f"/models/{name}/{path}" + ("" if path == "encode" else "?format=npy"), json=body)


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_each_model_offers_what_it_can_do_and_refuses_the_rest(client, name):
    info = client.get(f"/models/{name}").json()
    family = {"ring": "gan", "sr": "superres"}.get(name, name)
    assert info["endpoints"] == ENDPOINTS[name] and info["family"] == family
    every = ["GET sample", "GET interpolate", "POST interpolate", "POST reconstruct", "POST encode", "POST upscale"]
    for endpoint in every:
        response = call(client, name, endpoint)
        if endpoint in ENDPOINTS[name]:
            assert response.status_code == 200, (endpoint, response.text)
        else:
            assert "it offers" in one_line_refusal(response, 404)


def test_models_health_and_openapi(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert [m["name"] for m in client.get("/models").json()["models"]] == list(ENDPOINTS)
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/models/{name}/sample", "/models/{name}/interpolate", "/models/{name}/reconstruct",
            "/models/{name}/encode", "/models/{name}/upscale"} <= set(paths)
    assert "post" in paths["/models/{name}/interpolate"]


def test_samples_are_the_models_samples(client, runs):
    """The server's samples are model.sample(n) from the seed's generator (to float rounding: another batch shape)."""
    model = open_run(runs / "vae", splits=()).model
    served = npy(client.get("/models/vae/sample?n=5&seed=11&format=npy"))
    assert served.shape == (5, 1, 8, 8) and served.dtype == np.float32
    np.testing.assert_allclose(served, model.sample(5, torch.Generator().manual_seed(11)).numpy(), atol=1e-6)


def test_one_image_is_a_png_of_its_pixels_and_several_a_grid(client):
    array = npy(client.get("/models/gan/sample?seed=4&format=npy"))
    one = client.get("/models/gan/sample?seed=4")
    assert one.headers["content-type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(one.content)))
    assert pixels.shape == (8, 8) and np.array_equal(pixels, np.round(array[0, 0].clip(0, 1) * 255).astype(np.uint8))
    grid = Image.open(io.BytesIO(client.get("/models/gan/sample?n=4&seed=4").content))
    assert grid.size == (2 * 8 + 3 * 2, 2 * 8 + 3 * 2)  # 2 x 2 images, 2-pixel gaps
    assert one.content == client.get("/models/gan/sample?seed=4").content  # the same request, the same bytes


def test_reconstruct_and_encode_are_the_models(client, runs):
    model = open_run(runs / "vae", splits=()).model
    arrays = digits_like(3)
    body = {"images": [png_text(a) for a in arrays]}
    x = torch.tensor(np.stack(arrays)[:, None], dtype=torch.float32) / 255
    np.testing.assert_allclose(npy(client.post("/models/vae/reconstruct?format=npy", json=body)),
                               model.reconstruct(x).numpy(), atol=1e-6)
    codes = client.post("/models/vae/encode", json=body).json()["codes"]
    np.testing.assert_allclose(np.array(codes), model.encode(x)[0].detach().numpy(), atol=1e-6)  # posterior means
    assert npy(client.post("/models/vae/encode?format=npy", json=body)).shape == (3, model.config.latent_dim)


def test_an_upload_is_fitted_to_the_model_as_its_training_data_was(client):
    wide = (np.random.default_rng(1).random((12, 20)) * 255).astype(np.uint8)  # centre-cropped, then resized
    rgba = np.zeros((16, 16, 4), np.uint8)  # transparent: white, as the data loaders show it
    out = npy(client.post("/models/ae/reconstruct?format=npy", json={"images": [png_text(wide), png_text(rgba)]}))
    assert out.shape == (2, 1, 8, 8)


def test_seed_interpolation_runs_between_the_two_seeds_samples(client):
    a, b = (npy(client.get(f"/models/vae/sample?seed={seed}&format=npy"))[0] for seed in (3, 9))
    path = npy(client.get("/models/vae/interpolate?seed_a=3&seed_b=9&frames=5&method=lerp&format=npy"))
    assert path.shape == (5, 1, 8, 8) and np.array_equal(path[0], a) and np.array_equal(path[-1], b)
    arc = npy(client.get("/models/vae/interpolate?seed_a=3&seed_b=9&frames=5&format=npy"))  # slerp: sin ratios
    np.testing.assert_allclose(arc[[0, -1]], np.stack([a, b]), atol=1e-6)
    assert not np.allclose(arc[2], path[2], atol=1e-4)  # the arc keeps the norm the straight line loses


def test_diffusion_takes_its_sampler_and_steps_and_is_reproducible(client):
    first = npy(client.get("/models/ddpm/sample?n=2&seed=5&sampler=ddim&steps=4&format=npy"))
    again = npy(client.get("/models/ddpm/sample?n=2&seed=5&sampler=ddim&steps=4&format=npy"))
    assert first.shape == (2, 1, 8, 8) and np.array_equal(first, again)
    assert not np.array_equal(first, npy(client.get("/models/ddpm/sample?n=2&seed=5&sampler=ddpm&steps=4&format=npy")))
    assert "steps" in one_line_refusal(client.get("/models/ddpm/sample?steps=201"))  # T is 200
    assert "truncation" in one_line_refusal(client.get("/models/ddpm/sample?truncation=1"))


def test_a_points_model_answers_arrays_only(client):
    assert npy(client.get("/models/ring/sample?n=7&format=npy")).shape == (7, 2)
    assert "points" in one_line_refusal(client.get("/models/ring/sample?n=7"))


# --- the autoencoder's sampler --------------------------------------------------------------------------------


def test_an_autoencoder_without_a_sampler_says_how_to_get_one(client):
    detail = one_line_refusal(client.get("/models/ae/sample"), 404)
    assert "it offers POST interpolate" in detail and "genlab fit-sampler RUN" in detail


def test_an_autoencoder_with_a_fitted_sampler_samples_and_walks_between_seeds(runs, tmp_path):
    """Its run's sampler.safetensors (what `genlab fit-sampler` writes) is loaded with it: it samples as
    model.sample draws, the same bytes for the same seed, and interpolates between seeds' codes."""
    run = tmp_path / "ae-sampled"
    checkpoint = save_model(Autoencoder(AutoencoderConfig(data_shape=(1, 8, 8))),
                            run / "checkpoints" / "step-00000000.safetensors")
    torch.manual_seed(5)
    scale_tril = torch.linalg.cholesky(torch.eye(16).expand(3, 16, 16) * torch.tensor([0.5, 1.0, 2.0])[:, None, None])
    mixture = LatentMixture(torch.tensor([0.2, 0.3, 0.5]), torch.randn(3, 16), scale_tril, step=0)
    (run / SAMPLER_FILE).write_bytes(mixture_bytes(mixture, seed=0))
    with TestClient(create_server({"ae": open_run(run, splits=())}, allowed_hosts=("testserver",))) as client:
        info = client.get("/models/ae").json()
        assert info["endpoints"] == ["GET sample", "GET interpolate", *ENDPOINTS["ae"]]
        served = npy(client.get("/models/ae/sample?n=5&seed=11&format=npy"))
        model = open_run(checkpoint, splits=()).model
        np.testing.assert_allclose(served, model.sample(5, torch.Generator().manual_seed(11)).numpy(), atol=1e-6)
        assert client.get("/models/ae/sample?n=4&seed=2").content == client.get("/models/ae/sample?n=4&seed=2").content
        path = npy(client.get("/models/ae/interpolate?seed_a=3&seed_b=9&frames=4&method=lerp&format=npy"))
        assert np.array_equal(path[0], npy(client.get("/models/ae/sample?seed=3&format=npy"))[0])
        assert npy(client.get("/models/ae/sample?n=2&truncation=0.5&format=npy")).shape == (2, 1, 8, 8)


# --- reproducible: alone and batched ---------------------------------------------------------------------------


def test_a_row_in_a_fixed_shape_batch_depends_on_itself_alone():
    """Why every forward pass has one shape: the same rows computed alone and in a batch with others, at any
    position, give the same bits, for conv and MLP decoders at MNIST size (different shapes would not)."""
    torch.manual_seed(0)
    models = [GAN(GANConfig(data_shape=(1, 28, 28))).eval(), VAE(VAEConfig(data_shape=(1, 28, 28))).eval(),
              VAE(VAEConfig(data_shape=(1, 28, 28), architecture="mlp")).eval()]

    async def main(model):
        batcher = Batcher(model, batch_size=8)
        batcher.start()
        try:
            z = [model.latents(k, torch.Generator().manual_seed(k)) for k in (1, 3, 2, 1, 1)]
            together = await asyncio.gather(*(batcher.run("decode", rows) for rows in z))  # all queued at once
            assert batcher.forwards == 1  # all five requests in one pass
            alone = [await batcher.run("decode", rows) for rows in z]
            assert batcher.forwards == 6
            return together, alone
        finally:
            await batcher.stop()

    for model in models:
        together, alone = asyncio.run(main(model))
        assert all(torch.equal(a, b) for a, b in zip(together, alone, strict=True))


async def until(condition, timeout: float = 30):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_the_same_request_returns_the_same_bytes_alone_and_in_a_crowd(runs):
    app = create_server(opened(runs, ("gan", "vae")), batch_size=12)
    paths = [f"/models/gan/sample?seed={seed}" for seed in range(10)] + ["/models/gan/sample?n=2&seed=3"]
    paths += [f"/models/vae/sample?seed={seed}&truncation=0.7&format=npy" for seed in range(4)]
    with running_server(app) as address:
        gan = app.state.served["gan"]

        async def alone(path):
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as http:
                return (await http.get(path)).content

        async def crowd():
            """The first gan request holds the model's thread until the other ten wait: they make one batch."""
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as http:
                first = asyncio.create_task(http.get(paths[0]))
                await until(started.is_set)
                rest = [asyncio.create_task(http.get(path)) for path in paths[1:]]
                await until(lambda: len(gan.batcher.pending) == 10)
                release.set()
                return [response.content for response in await asyncio.gather(first, *rest)]

        answers = [asyncio.run(alone(path)) for path in paths]
        assert gan.batcher.forwards == 11  # a chunk of 12 rows each
        started, release, decode = threading.Event(), threading.Event(), gan.model.decode

        def held_decode(z):
            started.set()
            release.wait(30)
            return decode(z)

        gan.model.decode = held_decode
        crowded = asyncio.run(crowd())
        del gan.model.decode
        assert gan.batcher.forwards == 11 + 2  # the first alone, then the other ten together
    assert crowded == answers


# --- bounded and refused ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["n=0", "n=65", "n=-1", "n=2.5", "n=many", "seed=-1", f"seed={2**63}",
                                   "truncation=nan", "truncation=inf", "truncation=0", "truncation=-1",
                                   "truncation=11", "format=gif", "steps=3", "sampler=ddim", "seed=1e3"])
def test_bad_sample_queries_are_one_line(client, query):
    one_line_refusal(client.get(f"/models/gan/sample?{query}"))


@pytest.mark.parametrize("query", ["frames=1", "frames=17", "method=cubic", "seed_a=-2"])
def test_bad_interpolation_queries_are_one_line(client, query):
    one_line_refusal(client.get(f"/models/gan/interpolate?{query}"))


def test_diffusion_work_is_bounded(client):
    assert "network evaluations" in one_line_refusal(client.get("/models/ddpm/sample?n=64"))  # of all 200 steps


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels: the size is refused from the header, before a
    decompression bomb's few hundred KB of zlib could inflate to gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
            + chunk(b"IEND", b""))


NOISE = Image.fromarray((np.random.default_rng(2).random((64, 64)) * 255).astype(np.uint8))
JPEG = io.BytesIO()
Image.new("L", (8, 8)).save(JPEG, format="JPEG")


@pytest.mark.parametrize("body, says", [
    ({"images": []}, "images"),
    ({"images": "abc"}, "images"),
    ({"images": [3]}, "images"),
    ({"images": ["x"] * 17}, "images"),
    ({"images": ["x"], "path": "/etc/passwd"}, "not a field"),
    ({"images": ["not base64!"]}, "base64"),
    ({"images": [base64.b64encode(JPEG.getvalue()).decode()]}, "not a PNG"),
    ({"images": [base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 100).decode()]}, "readable PNG"),
    ({"images": [base64.b64encode(png_bytes(NOISE)[:-400]).decode()]}, "damaged"),
    ({"images": [base64.b64encode(png_claiming(20000, 20000)).decode()]}, "pixels a side"),  # past Pillow's own cap
    ({"images": [base64.b64encode(png_claiming(5000, 5000)).decode()]}, "pixels a side"),
    ({"images": [base64.b64encode(png_bytes(Image.new("L", (1025, 1)))).decode()]}, "pixels a side"),
    ({"images": [base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(1_000_001)).decode()]}, "bytes"),
])
def test_bad_uploads_are_one_line(client, body, says):
    assert says in one_line_refusal(client.post("/models/vae/reconstruct", json=body))


def test_a_body_over_the_cap_is_refused_before_it_is_read(client):
    assert "send less" in one_line_refusal(client.post("/models/vae/reconstruct", content=b"{" * 4_000_001,
                                                       headers={"content-type": "application/json"}), 413)


def test_a_points_model_takes_no_uploads(tmp_path):
    save_model(Autoencoder(AutoencoderConfig(data_shape=(2,))), tmp_path / "dots/checkpoints/step-00000000.safetensors")
    models = {"dots": open_run(tmp_path / "dots", splits=())}
    with TestClient(create_server(models, allowed_hosts=("testserver",))) as client:
        image = png_text(digits_like(1)[0])
        assert "points" in one_line_refusal(client.post("/models/dots/encode", json={"images": [image]}))


def test_unknown_model_names_are_404_without_echo(client):
    for name in ("nope", "<script>alert(1)<", "a" * 2000):  # (a name with a slash matches no route: 404 too)
        detail = one_line_refusal(client.get(f"/models/{name}/sample"), 404)
        assert "serves gan, vae, ae, ddpm, ring, sr" in detail and "script" not in detail and "aaaa" not in detail


def test_a_full_queue_is_a_503_with_retry_after(runs):
    app = create_server(opened(runs, ("gan",)), max_queue=1, allowed_hosts=("testserver",))
    release, started = threading.Event(), threading.Event()
    with TestClient(app) as client:
        served = app.state.served["gan"]
        decode = served.model.decode

        def held_decode(z):  # the first batch holds the model until the test lets it go
            started.set()
            release.wait(30)
            return decode(z)

        served.model.decode = held_decode
        answers = []
        first = threading.Thread(target=lambda: answers.append(client.get("/models/gan/sample?seed=1")))
        first.start()
        assert started.wait(30)
        second = threading.Thread(target=lambda: answers.append(client.get("/models/gan/sample?seed=2")))
        second.start()
        deadline = time.time() + 30
        while len(served.batcher.pending) < 1 and time.time() < deadline:
            time.sleep(0.01)
        refused = client.get("/models/gan/sample?seed=3")
        release.set()
        first.join(30)
        second.join(30)
        del served.model.decode
    assert "retry" in one_line_refusal(refused, 503) and refused.headers["retry-after"] == "1"
    assert [answer.status_code for answer in answers] == [200, 200]


# --- upscaling --------------------------------------------------------------------------------------------------


def picture(mode: str, size=(10, 12)) -> Image.Image:
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    array = (np.random.default_rng(7).random((size[1], size[0], channels)) * 255).astype(np.uint8)
    return Image.fromarray(array[:, :, 0] if channels == 1 else array, mode)


def upscaled(response) -> Image.Image:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text
    return Image.open(io.BytesIO(response.content))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_upscale_is_the_librarys_tiled_upscale_in_every_colour_mode(client, runs, mode):
    model = open_run(runs / "sr", splits=()).model
    source = picture(mode)
    expected = upscale_picture(model, np.asarray(source).reshape(12, 10, -1))
    body = {"image": base64.b64encode(png_bytes(source)).decode()}
    answer = upscaled(client.post("/models/sr/upscale", json=body))
    assert answer.mode == mode and answer.size == (20, 24)
    assert np.array_equal(np.asarray(answer).reshape(24, 20, -1), expected)
    assert np.array_equal(npy(client.post("/models/sr/upscale?format=npy", json=body)), expected)


def test_alpha_blends_the_run_with_the_psnr_run_it_was_started_from(client, runs):
    gan, psnr = (open_run(runs / name, splits=()).model for name in ("sr", "sr-psnr"))
    pixels = np.asarray(picture("RGB"))
    image = base64.b64encode(png_bytes(picture("RGB"))).decode()
    answers = {alpha: npy(client.post("/models/sr/upscale?format=npy", json={"image": image, "alpha": alpha}))
               for alpha in (0, 0.5, 1)}
    assert np.array_equal(answers[0], upscale_picture(psnr, pixels))
    assert np.array_equal(answers[1], upscale_picture(gan, pixels))
    assert np.array_equal(answers[0.5], upscale_picture(interpolate_weights(psnr, gan, 0.5), pixels))
    assert not np.array_equal(answers[0], answers[1])
    assert client.get("/models/sr").json()["upscale_options"] == ["alpha"]


def test_alpha_needs_a_recorded_intact_psnr_start(runs, tmp_path):
    image = base64.b64encode(png_bytes(picture("RGB"))).decode()
    source = save_model(tiny_superres("psnr", 3), tmp_path / "psnr.safetensors")
    save_started_from(tiny_superres("gan", 4), tmp_path / "moved" / "checkpoints" / "step-00000000.safetensors", source)
    source.write_bytes(source.read_bytes() + b" ")  # changed since the run was started from it
    assert psnr_end(open_run(tmp_path / "moved", splits=()))[1].endswith("is gone or changed since")
    models = {"plain": open_run(runs / "sr-psnr", splits=()), "moved": open_run(tmp_path / "moved", splits=())}
    with TestClient(create_server(models, allowed_hosts=("testserver",))) as client:
        assert "not started from a PSNR run" in one_line_refusal(
            client.post("/models/plain/upscale", json={"image": image, "alpha": 0.5}))
        assert "gone or changed" in one_line_refusal(
            client.post("/models/moved/upscale", json={"image": image, "alpha": 0.5}))
        assert client.post("/models/moved/upscale", json={"image": image}).status_code == 200  # no alpha: fine


@pytest.mark.parametrize("body, says", [
    ({"image": base64.b64encode(png_bytes(Image.new("RGB", (257, 256)))).decode()}, "65,536 pixels"),
    ({"image": base64.b64encode(png_claiming(1000, 100)).decode()}, "1000x100, over the 65,536"),  # from the header
    ({"image": base64.b64encode(png_claiming(20000, 20000)).decode()}, "pixels a side"),  # a decompression bomb
    ({"image": base64.b64encode(JPEG.getvalue()).decode()}, "not a PNG"),
    ({"image": "not base64!"}, "base64"),
    ({"image": base64.b64encode(png_bytes(NOISE)[:-400]).decode()}, "damaged"),
    ({"image": "x", "alpha": 1.5}, "alpha"),
    ({"image": "x", "alpha": "nan"}, "alpha"),
    ({"image": "x", "path": "/etc/passwd"}, "not a field"),
    ({"images": ["x"]}, "image"),
])
def test_bad_upscale_requests_are_one_line(client, body, says):
    assert says in one_line_refusal(client.post("/models/sr/upscale", json=body))


# --- who may ask ---------------------------------------------------------------------------------------------


def test_host_and_origin_are_checked(client):
    assert client.get("/models", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/models", headers={"origin": "http://evil.example"}).status_code == 403
    assert client.get("/models", headers={"origin": "http://testserver"}).status_code == 200


def test_a_token_guards_everything_but_health(runs):
    app = create_server(opened(runs, ("gan",)), token="s3cret-token", allowed_hosts=("testserver",))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret-token"},
                        {"authorization": "Bearer s3cret-token-and-more"}):
            response = client.get("/models/gan/sample", headers=headers)
            assert "token" in one_line_refusal(response, 401) and response.headers["www-authenticate"] == "Bearer"
        assert client.get("/models/gan/sample", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        assert client.get("/openapi.json").json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# --- the truncation trick ----------------------------------------------------------------------------------------


def test_truncated_latents_stay_within_t_with_the_truncated_normals_variance():
    t = 0.5
    z = normal_latents(200_000, 2, generator=torch.Generator().manual_seed(0), truncation=t).double()
    assert z.abs().max() <= t and abs(z.mean()) < 0.01
    phi, cdf = math.exp(-t * t / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(t / math.sqrt(2)))
    variance = 1 - 2 * t * phi / (2 * cdf - 1)  # of N(0, 1) truncated to [-t, t]
    assert abs(z.var().item() - variance) < 0.01 * variance
    plain = normal_latents(3, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain, torch.randn(3, 4, generator=torch.Generator().manual_seed(1)))  # untruncated: as before
    with pytest.raises(ValueError, match="truncation"):
        normal_latents(1, 2, truncation=float("nan"))


# --- the command ---------------------------------------------------------------------------------------------


def test_serve_refuses_other_machines_without_a_token(runs):
    assert "--token" in user_error(invoke("serve", runs / "gan", "--host", "0.0.0.0"))


@pytest.mark.parametrize("args, says", [(["--batch", "0"], "--batch"), (["--port", "70000"], "--port")])
def test_serve_refuses_bad_options_in_one_line(runs, args, says):
    assert says in user_error(invoke("serve", runs / "gan", *args))


def test_serve_refuses_two_runs_of_one_name_and_a_missing_run(runs, tmp_path):
    assert "same folder name" in user_error(invoke("serve", runs / "gan", runs / "gan"))
    assert "no checkpoints" in user_error(invoke("serve", tmp_path))


@pytest.mark.slow
def test_serve_answers_on_the_address_it_prints(runs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "genlab", "serve", str(runs / "gan"), str(runs / "vae"),
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + process.stderr.read()
        assert httpx.get(f"{match.group(0)}models/vae/sample?n=3", timeout=30).headers["content-type"] == "image/png"
    finally:
        process.terminate()
        process.wait(timeout=20)
