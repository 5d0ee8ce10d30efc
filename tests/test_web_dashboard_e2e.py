"""The training dashboard in a real browser, as a learner sees it: one labelled field per setting (the family's
own), labelled generate inputs, each loss term on its own chart, and a run that `genlab train` trains shown as
running while it does. Skipped when /usr/bin/chromium or the playwright package is missing."""

import threading

import pytest

from genlab.run import create_run, run_lock
from genlab.train import TrainConfig
from genlab.web.app import create_app
from test_web_e2e import lab_page  # skips this module as it skips that one


@pytest.fixture
def dashboard(tmp_path, request):
    with lab_page(create_app(tmp_path), "/dashboard", {"width": 1300, "height": 1000},
                  f"{request.node.name}.png") as page:
        page.wait_for_function("document.getElementById('family').options.length > 0")
        yield page, tmp_path


def test_settings_are_labelled_fields_and_each_loss_term_has_its_chart(dashboard):
    page, _ = dashboard
    for family in ("gan", "vae"):  # the fields follow the family, each named by a visible label
        page.select_option("#family", family)
        fields = page.evaluate(f"lab.json('/api/options').then(o => o.settings.{family})")
        assert page.locator("fieldset.settings .setting").count() == len(fields)
        for field in fields:
            control = page.locator("fieldset.settings").get_by_label(field["name"], exact=True)
            assert control.is_visible() and control.get_attribute("id") == f"set-{field['name']}"
    assert page.locator("#set-loss").count() == 0 and page.locator("#set-beta").is_visible()  # the VAE's, not a GAN's
    assert page.get_by_label("sampling seed", exact=True).get_attribute("id") == "generate-seed"
    assert page.get_by_label("images", exact=True).get_attribute("id") == "generate-n"
    page.select_option("#data", "digits")
    page.fill("#steps", "30")
    page.fill("#set-hidden_dims", "16")
    page.fill("#set-beta", "500")  # past the lab's bound: the server's one line says so, nothing starts
    page.click("#start")
    page.wait_for_function("document.getElementById('error').textContent.includes('beta')")
    page.fill("#set-beta", "2")
    page.select_option("#set-lr_schedule", "cosine")
    page.click("#start")
    page.wait_for_function("document.getElementById('run-status').textContent === 'finished'", timeout=60_000)
    name = page.inner_text("#run-name")
    train = page.evaluate(f"lab.json('/api/runs/{name}').then(r => [r.model.beta, r.model.hidden_dims, r.train])")
    assert train[0] == 2 and train[1] == [16] and train[2]["lr_schedule"] == "cosine" and train[2]["lr"] == 1e-3
    terms = page.eval_on_selector_all("#run-charts canvas", "cs => cs.map(c => c.dataset.term)")
    assert sorted(terms) == ["kl", "loss", "reconstruction"]
    for term in terms:  # each chart has drawn its line
        assert page.eval_on_selector(f"#run-charts canvas[data-term={term}]", """c => {
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let ink = 0; for (let i = 3; i < d.length; i += 4) ink += d[i] > 0; return ink; }""") > 200


def test_a_run_trained_from_the_command_line_shows_as_running(dashboard):
    page, runs_dir = dashboard
    folder = create_run(runs_dir / "cli-run", "gan", TrainConfig(data="ring", steps=100), {})
    holding, release = threading.Event(), threading.Event()

    def trainer():  # holds the run's lock as `genlab train` does while it trains
        with run_lock(folder):
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=trainer)
    thread.start()
    try:
        holding.wait(10)
        page.reload()
        page.wait_for_function("""() => [...document.querySelectorAll("#runs tbody tr")].some(
            r => r.dataset.name === "cli-run" && r.cells[4].textContent === "running, from another process")""")
        page.click("#runs tr[data-name='cli-run'] button.open")
        page.wait_for_function("document.getElementById('run-status').textContent.startsWith('running')")
        assert page.is_disabled("#stop") and not page.is_disabled("#start")  # only that process can stop it
    finally:
        release.set()
        thread.join()
    page.wait_for_function("document.getElementById('run-status').textContent === 'stopped'")
