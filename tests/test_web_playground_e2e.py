"""The GAN playground in a real browser, as a learner first sees it: on a 1024 x 768 screen the charts are in
view, the model overview and the legend say what is training, and samples that leave the view are drawn at its
edge and counted. Headless Chromium driven by Playwright against a uvicorn server, as in test_web_e2e.py."""

import pytest
import torch

from genlab.web.app import create_app
from genlab.web.playground import Playground, PlaygroundSettings
from test_web_e2e import lab_page  # skips this module as it skips that one


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with lab_page(create_app(tmp_path_factory.mktemp("runs")), "/playground", {"width": 1024, "height": 768},
                  "playground-1024x768.png") as page:
        page.wait_for_function("document.getElementById('coverage').textContent.includes('modes')")
        yield page


def test_charts_are_above_the_fold_and_the_overview_says_what_trains(page):
    for chart in ("#loss-chart", "#coverage-chart"):
        box = page.locator(chart).bounding_box()
        assert box["height"] > 50 and box["y"] + box["height"] <= 768, f"{chart} ends at {box['y'] + box['height']}"
    boxes = page.locator("#overview svg rect[data-box]")
    assert boxes.count() == 7 and page.locator("#overview svg path").count() >= 6
    assert page.locator("#overview li").all_inner_texts() == ["G: MLP, 2 x 64 hidden", "D: MLP, 2 x 64 hidden",
                                                              "non-saturating loss"]
    assert "probability that x is real" in page.inner_text("#legend")
    page.select_option("#loss", "wgan-gp")
    page.check("#spectral_norm")
    page.wait_for_function("document.getElementById('overview').textContent.includes('spectral norm')")
    assert "wgan-gp loss" in page.inner_text("#overview")
    legend = page.inner_text("#legend")
    assert "critic's score (not a probability)" in legend and "probability that" not in legend


def test_samples_off_the_view_are_drawn_at_its_edge_and_counted(page):
    # a real frame of a G whose every sample lies right of the ring's view, handed to the page as if the server
    # had sent it, and drawn in the same task, so that no frame from the server comes between
    playground = Playground(PlaygroundSettings(data="ring"))
    last_layer = [m for m in playground.model.generator.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last_layer.bias += torch.tensor([10.0, 0.0])
    frame = {**playground.frame(), "playing": False, "steps_per_s": 0}
    said, left, right = page.evaluate("""frame => {
      socket.onmessage({ data: JSON.stringify(frame) });
      draw();
      const c = document.getElementById('view'), g = c.getContext('2d'), orange = x0 => {
        const d = g.getImageData(x0, 0, 12, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) n += d[i] > 150 && d[i + 1] < 110 && d[i + 2] < 60;
        return n; };
      return [document.getElementById('off-view').textContent, orange(0), orange(c.width - 12)]; }""", frame)
    assert said == "480 of 480 samples are off the view: drawn as triangles at its edge"
    assert left == 0 and right > 50, f"edge triangle pixels: {left} on the left, {right} on the right"


def test_d_guided_samples_are_drawn_beside_the_direct_ones_when_asked_for(page):
    page.check("#show-guided")
    page.wait_for_function("document.getElementById('guided').textContent.includes('proposals kept')")
    assert "modes" in page.inner_text("#guided") and "D's help" in page.inner_text("#legend")
    blue = page.evaluate("""() => {
      draw();
      const c = document.getElementById('view'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) n += d[i] < 60 && d[i + 1] > 80 && d[i + 1] < 130 && d[i + 2] > 160;
      return n; }""")
    assert blue > 100, f"{blue} pixels in the D-guided samples' blue"
