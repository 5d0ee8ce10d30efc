"""The lab in a real browser: headless Debian Chromium driven by Playwright against a uvicorn server.

Each test does what a person would (press play, click cells, hover the map, move a slider, start a run) and
checks what they would see change: canvas pixels, numbers, images. Screenshots of every page go to
tests/artifacts/ (git-ignored). Skipped when /usr/bin/chromium or the playwright package is missing.
"""

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from genlab.web import benches
from genlab.web.app import create_app
from web_server import running_server

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
# --disable-background-networking and friends: Chromium must not try to reach Google on this closed network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not shutil.which(CHROMIUM):
    pytest.skip(f"reason: no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@contextlib.contextmanager
def lab_page(app, path: str, viewport: dict, screenshot: str):
    """A real Chromium on `path` of `app` served by a real uvicorn: yields the page, then keeps its screenshot in
    ARTIFACTS and fails on any JavaScript error it raised."""
    with running_server(app) as address, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=viewport)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://{address}{path}")
        yield page
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        for name in ("denoiser", "vae", "ae"):  # models, not good ones: fewer steps than the lab trains
            patch.setitem(benches.RECIPES, name, dataclasses.replace(benches.RECIPES[name], steps=300))
        with running_server(create_app(tmp_path_factory.mktemp("runs"))) as address:
            yield f"http://{address}"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    shot = ARTIFACTS / f"{request.node.name}.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def pixels(page, selector: str) -> str:
    """The canvas as a PNG data URL: equal strings mean the same picture."""
    return page.eval_on_selector(selector, "c => c.toDataURL()")


def wait_for_new_pixels(page, selector: str, before: str) -> None:
    """Wait (up to Playwright's 30 s) until the canvas shows another picture than `before`: a busy machine
    may take a while to fetch and draw, and a fixed pause would make the test flaky."""
    page.wait_for_function("([selector, before]) => document.querySelector(selector).toDataURL() !== before",
                           arg=[selector, before])


WHITE_SHARE = """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) n += d[i] === 255 && d[i + 1] === 255 && d[i + 2] === 255;
  return n / (d.length / 4); }"""


def white_share(page, selector: str) -> float:
    """The share of a canvas's pixels that are pure white."""
    return page.eval_on_selector(selector, WHITE_SHARE)


def pixel(page, selector: str, x: int, y: int) -> list[int]:
    return page.eval_on_selector(selector, f"c => Array.from(c.getContext('2d').getImageData({x}, {y}, 1, 1).data)")


def number(page, selector: str) -> int:
    return int(page.inner_text(selector))


def test_the_index_links_every_page(page, lab):
    page.goto(lab)
    for heading, path in (("GAN playground", "/playground"), ("Training dashboard", "/dashboard"),
                          ("Autoencoder bench", "/bench"), ("Latent explorer", "/explorer")):
        assert page.locator(f".cards a[href='{path}']").inner_text().startswith(heading)
    page.click(".cards a[href='/bench']")
    page.wait_for_url(f"{lab}/bench")
    page.go_back()


def test_playground_trains_when_play_is_pressed(page, lab):
    page.goto(f"{lab}/playground")
    page.wait_for_function("document.getElementById('coverage').textContent.includes('modes')")
    before = pixels(page, "#view")
    page.click("#play")
    page.wait_for_function("Number(document.getElementById('step').textContent) > 100")
    assert page.inner_text("#play") == "Pause"
    page.click("#play")
    page.wait_for_function("document.getElementById('play').textContent === 'Play'")
    assert pixels(page, "#view") != before  # the fakes moved and D's colours changed
    assert float(page.inner_text("#d-loss")) > 0
    # step D only: D's count goes up by one, G's stays
    d, g = number(page, "#d-steps"), number(page, "#g-steps")
    page.click("#step-d")
    page.wait_for_function(f"Number(document.getElementById('d-steps').textContent) === {d + 1}")
    assert number(page, "#g-steps") == g
    page.click("#step-g")
    page.wait_for_function(f"Number(document.getElementById('g-steps').textContent) === {g + 1}")
    # hiding D's decision leaves the background white: D's shades cover the view (pure white only where D says
    # exactly 1/2); the marks cover a small part of it (a corner can hold samples drawn at its edge: CI saw it)
    assert white_share(page, "#view") < 0.5
    page.uncheck("#show-heatmap")
    page.wait_for_function(f"({WHITE_SHARE})(document.getElementById('view')) > 0.5")
    page.check("#show-heatmap")
    # a live setting: the loss changes without a reset, a structural one rebuilds D
    steps = number(page, "#step")
    page.select_option("#loss", "hinge")
    page.check("#spectral_norm")
    page.wait_for_function("document.getElementById('changed').textContent.includes('rebuilt D')")
    assert number(page, "#step") == steps


def test_playground_trains_on_drawn_points(page, lab):
    page.goto(f"{lab}/playground")
    page.wait_for_function("document.getElementById('coverage').textContent.includes('modes')")
    page.click("#draw")
    box = page.locator("#view").bounding_box()
    for i in range(12):  # a short stroke
        page.mouse.click(box["x"] + 150 + 15 * i, box["y"] + 200 + 5 * i)
    page.click("#use-drawing")
    page.wait_for_function("document.getElementById('data').value === 'drawn'")
    page.click("#play")
    page.wait_for_function("Number(document.getElementById('step').textContent) > 30")
    page.click("#play")


def test_bench_cells_and_sliders(page, lab):
    page.goto(f"{lab}/bench")
    page.wait_for_function("document.querySelectorAll('#gallery .panel').length === 15", timeout=60_000)
    page.wait_for_function("document.getElementById('code').textContent.includes('.')")
    code = page.inner_text("#code")
    box = page.locator("#pattern").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # the centre cell
    page.wait_for_function(f"document.getElementById('code').textContent !== {code!r}")
    # The reconstruction shown is the model's for the new pattern (a barely trained AE may give the old picture)
    assert page.evaluate("""async () => {
        const shown = document.getElementById("reconstruction");
        const { reconstruction } = await lab.json("/api/bench/encode", { cells });
        const expected = document.createElement("canvas");
        expected.width = shown.width; expected.height = shown.height;
        lab.drawPixels(expected, reconstruction, 3);
        return expected.toDataURL() === shown.toDataURL();
    }""")
    assert pixel(page, "#pattern", 75, 75)[:3] == [0, 0, 0]  # the clicked cell is now ink
    decoded = pixels(page, "#decoded")
    slider = page.locator("#z0").bounding_box()
    page.mouse.click(slider["x"] + 0.1 * slider["width"], slider["y"] + slider["height"] / 2)  # drag z[0] low
    page.wait_for_function("document.getElementById('z-values').textContent.startsWith('-0.')")
    wait_for_new_pixels(page, "#decoded", decoded)
    noisy = pixels(page, "#noisy")
    slider = page.locator("#noise").bounding_box()
    page.mouse.click(slider["x"] + 0.9 * slider["width"], slider["y"] + slider["height"] / 2)
    page.wait_for_function("document.getElementById('noise-value').textContent.startsWith('0.9')")
    wait_for_new_pixels(page, "#noisy", noisy)


def test_explorer_decodes_under_the_pointer(page, lab):
    page.goto(f"{lab}/explorer")
    page.wait_for_function("document.getElementById('z-text').textContent.includes('.')", timeout=60_000)
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.wait_for_timeout(300)
    first, first_z = pixels(page, "#decoded"), page.inner_text("#z-text")
    page.mouse.move(box["x"] + 340, box["y"] + 330)
    page.wait_for_function(f"document.getElementById('z-text').textContent !== {first_z!r}")
    wait_for_new_pixels(page, "#decoded", first)
    decoded = pixels(page, "#decoded")
    slider = page.locator("#zs-1").bounding_box()
    page.mouse.click(slider["x"] + 0.15 * slider["width"], slider["y"] + slider["height"] / 2)
    wait_for_new_pixels(page, "#decoded", decoded)
    page.mouse.click(box["x"] + 220, box["y"] + 220)  # pick A
    page.click("#interpolate")
    page.wait_for_function("document.querySelectorAll('#lerp canvas').length === 8")
    assert page.locator("#slerp canvas").count() == 8
    blank = pixels(page, "#holes-vae")
    page.click("#holes")
    page.wait_for_function("document.getElementById('box-vae').textContent.length > 0")
    own_boxes = pixels(page, "#holes-ae")
    assert pixels(page, "#holes-vae") != blank and own_boxes != blank
    page.select_option("#holes-grid", "3")  # the same z for both models
    page.click("#holes")
    page.wait_for_function("document.getElementById('box-ae').textContent === 'z[0] in [-3, 3], z[1] in [-3, 3]'")
    assert pixels(page, "#holes-ae") != own_boxes


def test_dashboard_starts_a_run_and_generates(page, lab):
    page.goto(f"{lab}/dashboard")
    page.wait_for_function("document.getElementById('family').options.length > 0")
    page.select_option("#family", "vae")
    page.select_option("#data", "digits")
    page.fill("#steps", "40")
    page.fill("#set-hidden_dims", "32")
    page.fill("#set-latent_dim", "4")
    page.click("#start")
    page.wait_for_function("document.getElementById('run-status').textContent === 'finished'", timeout=60_000)
    assert page.inner_text("#run-step") == "40 / 40"
    assert int(page.inner_text("#images-per-s")) > 0
    page.wait_for_function("document.getElementById('run-sample').naturalWidth > 0")
    page.click("#generate")
    page.wait_for_function("document.getElementById('generated').naturalWidth > 0")
    assert "vae-digits" in page.inner_text("#runs")
    assert page.get_attribute("#download", "href").endswith("download=true")
    # the explorer opens the new run: one slider per latent dimension (in a second tab, as a person would)
    name = page.inner_text("#run-name")
    explorer = page.context.browser.new_page()
    errors = []
    explorer.on("pageerror", lambda error: errors.append(str(error)))
    explorer.goto(f"{lab}/explorer")
    explorer.wait_for_function(f"[...document.getElementById('map-model').options].some(o => o.value === 'run:{name}')")
    explorer.select_option("#map-model", f"run:{name}")
    explorer.wait_for_function("document.querySelectorAll('#sliders input').length === 4")
    explorer.wait_for_function("document.getElementById('z-text').textContent.split(',').length === 4")
    explorer.screenshot(path=str(ARTIFACTS / "explorer_on_a_run.png"))
    explorer.close()
    assert not errors, errors
    # a second run: the first one's pictures go at once, and the runs table follows it while it trains
    page.fill("#steps", "20000")
    page.fill("#set-hidden_dims", "16")
    page.fill("#set-log_every", "5")
    page.click("#start")
    page.wait_for_function(f"document.getElementById('run-name').textContent !== {name!r}")
    assert not page.locator("#run-sample").is_visible() and not page.locator("#generated").is_visible()
    page.wait_for_function("""name => {
        const row = [...document.querySelectorAll("#runs tbody tr")].find(r => r.dataset.name === name);
        return row && row.cells[4].textContent === "running" && parseInt(row.cells[3].textContent) > 0;
    }""", arg=page.inner_text("#run-name"))
    page.click("#stop")
    page.wait_for_function("document.getElementById('run-status').textContent === 'stopped'")


def test_hostile_configs_show_as_text_and_lost_connections_are_said(page, browser, tmp_path):
    """A run folder whose config.json holds markup is shown as text and runs nothing; a playground over the
    server's limit keeps the server's reason on screen; when the server goes, every open page says so."""
    run = tmp_path / "evil-run"
    run.mkdir()
    # the family must be a real one (the lab reads config.json through the library's checks); free text goes in data
    family, data = "vae", '<img src=x onerror="window.pwned = 1"><script>window.pwned = 2</script>'
    (run / "config.json").write_text(json.dumps({"family": family, "model": {}, "train": {"data": data, "steps": 10}}))
    others = [browser.new_page() for _ in range(2)]
    errors = []
    for other in others:
        other.on("pageerror", lambda error: errors.append(str(error)))
    first, second = others
    with running_server(create_app(tmp_path, max_playgrounds=1)) as address:
        page.goto(f"http://{address}/dashboard")
        page.wait_for_function("document.querySelectorAll('#runs tbody td').length > 0")
        cells = page.locator("#runs tbody td").all_inner_texts()
        assert cells[:3] == ["evil-run", family, data]
        assert page.locator("#runs img, #runs script").count() == 0
        assert page.evaluate("window.pwned") is None
        first.goto(f"http://{address}/playground")
        first.wait_for_function("document.getElementById('coverage').textContent.includes('modes')")
        second.goto(f"http://{address}/playground")  # over max_playgrounds: the server says why, and it stays said
        second.wait_for_function("document.getElementById('lost')?.textContent.includes('the most this server runs')")
    first.wait_for_function("document.getElementById('lost')?.textContent.includes('Lost connection to the lab')")
    assert first.locator("#lost").is_visible()
    page.click("#runs button.open")  # a socket that cannot connect at all
    page.wait_for_function("document.getElementById('lost')?.textContent.includes('Lost connection to the lab')")
    assert "the most this server runs" in second.inner_text("#lost") and page.evaluate("window.pwned") is None
    for other in others:
        other.close()
    assert not errors, errors
