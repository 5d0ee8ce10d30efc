"""The latent explorer in a real browser, as a learner uses it: each VAE point's spread on the map, the sampling
step z = mu + sigma * eps for image A (re-drawn on demand), and the holes grid with where training codes lie.
Skipped when /usr/bin/chromium or the playwright package is missing (see tests/test_web_e2e.py)."""

import dataclasses
import re

import pytest

from genlab.web import benches
from genlab.web.app import create_app
from test_web_e2e import lab_page, pixels, wait_for_new_pixels

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        for name in ("vae", "ae"):  # models, not good ones: fewer steps than the lab trains
            patch.setitem(benches.RECIPES, name, dataclasses.replace(benches.RECIPES[name], steps=300))
        with lab_page(create_app(tmp_path_factory.mktemp("runs")), "/explorer", {"width": 1300, "height": 1000},
                      "explorer_sampling_and_holes.png") as page:
            yield page


def sample_numbers(page) -> dict[str, list[float]]:
    """The sampling panel's mu, sigma, eps and z, as shown."""
    lines = page.inner_text("#sample-text").splitlines()
    return {line.split(" = ")[0]: [float(v) for v in re.findall(r"-?\d+\.\d+", line)] for line in lines}


def test_the_vae_map_shows_spreads_and_the_sampling_step(page):
    page.wait_for_function("document.getElementById('sample-text').textContent.includes('z =')", timeout=60_000)
    page.wait_for_function("""() => {
        const c = document.getElementById("z-decoded"), blank = document.createElement("canvas");
        blank.width = c.width; blank.height = c.height;
        return c.toDataURL() !== blank.toDataURL();
    }""")
    shown = sample_numbers(page)
    for d, (mu, sigma, eps, z) in enumerate(zip(shown["μ"], shown["σ"], shown["ε"], shown["z"], strict=True)):
        assert sigma > 0 and z == pytest.approx(mu + sigma * eps, abs=0.02), d  # what is shown adds up
    with_spread = pixels(page, "#map")
    page.uncheck("#show-spread")
    wait_for_new_pixels(page, "#map", with_spread)  # the ellipses were drawn, and go
    page.check("#show-spread")
    decoded = pixels(page, "#z-decoded")
    page.click("#resample")  # the numbers change at once, the picture once decoded
    new = sample_numbers(page)
    assert new["μ"] == shown["μ"] and new["ε"] != shown["ε"]  # same image A, another draw
    wait_for_new_pixels(page, "#z-decoded", decoded)
    page.select_option("#map-model", "ae")
    page.wait_for_function("document.getElementById('sample-text').textContent.includes('one point')")
    assert page.is_disabled("#resample")


def test_the_holes_grid_marks_where_training_codes_lie(page):
    page.select_option("#holes-grid", "")
    page.click("#holes")
    page.wait_for_function("document.getElementById('box-ae').textContent.length > 0")
    assert page.locator("#holes-hint").is_visible() and "without a frame" in page.inner_text("#holes-hint")
    # the top-left tile lies beyond every code (the grid has room around them): no frame; some tile has one
    framed = page.eval_on_selector("#holes-ae", """c => {
        const ctx = c.getContext("2d"), cell = Math.floor(c.width / 15), green = [];
        for (let i = 0; i < 225; i++) {
            const d = ctx.getImageData((i % 15) * cell + 1, Math.floor(i / 15) * cell + 1, 1, 1).data;
            green.push(d[0] === 42 && d[1] === 157 && d[2] === 92);
        }
        return green;
    }""")
    assert not framed[0] and 0 < sum(framed) < 225
