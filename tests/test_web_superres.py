"""The lab's super-resolution page over HTTP (FastAPI's TestClient), and in a real browser (Playwright): held-out
photo crops upscaled by bicubic, a PSNR run and a GAN run started from it, ESRGAN's alpha blend computed by the
server through the library. The runs are tiny (digits, x2, a few steps): the page upscales the photos with them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from genlab.data import load_dataset
from genlab.models.superres import bicubic_upscale, downsample
from genlab.run import create_run
from genlab.train import TrainConfig, train
from genlab.upscale import to_uint8
from genlab.web.app import create_app

SMALL = {"g_channels": 8, "blocks": 1, "scale": 2}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A PSNR run and the GAN stage started from it (--init-from), in a lab's runs folder, plus a vae run."""
    folder = tmp_path_factory.mktemp("runs")

    def quick(steps, lr):
        return TrainConfig(data="digits", steps=steps, batch_size=8, lr=lr, log_every=2, checkpoint_every=steps,
                           sample_every=1000)

    train(create_run(folder / "sr-psnr", "superres", quick(4, 3e-3), SMALL))
    # a large learning rate: the GAN's G must move visibly from the PSNR model's in a few steps
    train(create_run(folder / "sr-gan", "superres", quick(4, 2e-2), {"stage": "gan", "d_layers": 2, "d_channels": 4},
                     init_from=folder / "sr-psnr"))
    train(create_run(folder / "a-vae", "vae", quick(2, 1e-3), {"latent_dim": 2}))
    return folder


@pytest.fixture(scope="module")
def client(runs_dir):
    with TestClient(create_app(runs_dir, allowed_hosts=("testserver",))) as client:
        yield client


def png(response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text
    return np.asarray(Image.open(io.BytesIO(response.content))).astype(int)


def picture(client, **query) -> np.ndarray:
    return png(client.get("/api/superres/picture.png", params=query))


def test_options_list_the_held_out_crops_and_the_runs_that_upscale(client):
    options = client.get("/api/superres/options").json()
    assert len(options["crops"]) == 20 and options["crops"][0] == "chelsea 1"
    assert {run["name"]: run["started_from"] for run in options["runs"]} == {"sr-gan": "sr-psnr", "sr-psnr": None}
    assert {run["name"]: run["stage"] for run in options["runs"]} == {"sr-gan": "gan", "sr-psnr": "psnr"}


def test_pictures_are_the_library_s_upscales_and_alpha_blends(client):
    hr = load_dataset("photos", "test").x[3:4]
    assert np.array_equal(picture(client, crop=3, view="original"), to_uint8(hr[0]).permute(1, 2, 0).numpy())
    bicubic = to_uint8(bicubic_upscale(downsample(hr, 4), 4)[0]).permute(1, 2, 0).numpy()
    assert np.array_equal(picture(client, crop=3, view="bicubic", scale=4), bicubic)
    psnr = picture(client, crop=3, view="model", run="sr-psnr")
    gan = picture(client, crop=3, view="model", run="sr-gan")
    assert psnr.shape == (192, 192, 3) and np.abs(psnr - gan).max() > 0
    assert np.abs(picture(client, crop=3, view="model", run="sr-gan", psnr="sr-psnr", alpha=0) - psnr).max() <= 1
    assert np.abs(picture(client, crop=3, view="model", run="sr-gan", psnr="sr-psnr", alpha=1) - gan).max() <= 1


@pytest.mark.parametrize("query, status, says", [
    ({"crop": 20, "view": "original"}, 422, "not one of the 20 held-out crops"),
    ({"crop": 0, "view": "model"}, 422, "needs a run"),
    ({"crop": 0, "view": "model", "run": "a-vae"}, 422, "does not upscale"),
    ({"crop": 0, "view": "model", "run": "../etc"}, 422, "not a run name"),
    ({"crop": 0, "view": "model", "run": "nothing"}, 404, "no run named"),
    ({"crop": 0, "view": "bicubic", "scale": 3}, 422, "not one of 2, 4"),
    ({"crop": 0, "view": "model", "run": "sr-gan", "psnr": "sr-psnr", "alpha": 1.5}, 422, "alpha"),
    ({"crop": 0, "view": "<b>"}, 422, "view"),
])
def test_bad_requests_get_one_line(client, query, status, says):
    response = client.get("/api/superres/picture.png", params=query)
    assert response.status_code == status and says in response.json()["detail"], response.text
    assert "<b>" not in response.text  # the input is never echoed back


# --- in a browser ------------------------------------------------------------------------------------------


def test_the_page_shows_three_upscales_and_the_slider_moves_the_gan_panel(runs_dir):
    from test_web_e2e import lab_page  # skips this test where there is no Chromium or playwright

    loaded = "id => { const i = document.getElementById(id); return i.complete && i.naturalWidth === 192; }"
    with lab_page(create_app(runs_dir), "/superres", {"width": 1300, "height": 900}, "superres_page.png") as page:
        for panel in ("view-bicubic", "view-psnr", "view-gan"):
            page.wait_for_function(loaded, arg=panel, timeout=60_000)
        assert page.input_value("#gan-run") == "sr-gan" and page.input_value("#psnr-run") == "sr-psnr"
        panel_png = "id => { const i = document.getElementById(id), c = document.createElement('canvas'); " \
                    "c.width = i.naturalWidth; c.height = i.naturalHeight; c.getContext('2d').drawImage(i, 0, 0); " \
                    "return c.toDataURL(); }"
        gan, psnr = page.evaluate(panel_png, "view-gan"), page.evaluate(panel_png, "view-psnr")
        assert gan != psnr
        page.fill("#alpha", "0")  # a range input: fill sets it and fires input and change
        page.wait_for_function(f"() => ({loaded})('view-gan') && ({panel_png})('view-gan') !== {gan!r}")
        assert "alpha 0" in page.inner_text("#gan-caption")
        assert page.evaluate(panel_png, "view-psnr") == psnr  # only the GAN panel changed
        page.hover("#view-gan", position={"x": 100, "y": 100})  # the lens magnifies the same spot of each
        lens = page.evaluate("() => [...document.querySelectorAll('#lenses canvas')].map(c => c.toDataURL())")
        blank = page.evaluate("() => { const c = document.createElement('canvas'); c.width = c.height = 160; "
                              "return c.toDataURL(); }")
        assert len(lens) == 4 and blank not in lens
