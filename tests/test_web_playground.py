"""The GAN playground: its steps against genlab.train.gan_step, its views against the model's own math,
live setting changes, and the WebSocket protocol (validation, Origin, disconnect)."""

import base64
import copy
import threading
import time

import pytest
import torch
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from genlab import guided
from genlab.metrics import NUM_SAMPLES, mixture_coverage
from genlab.models.gan import training_step as gan_step
from genlab.web.app import create_app
from genlab.web.playground import MAX_DRAWN_POINTS, Playground, PlaygroundSettings, check_points


def small(**changes) -> Playground:
    return Playground(PlaygroundSettings(**{"width": 16, "batch_size": 32, **changes}))


def test_step_both_is_gan_step_on_the_same_batch():
    pg = small()
    model, optimizers = copy.deepcopy((pg.model, pg.optimizers))  # one copy: the optimizers hold its parameters
    rng_state = pg.rng.get_state()
    torch.manual_seed(5)
    pg.step("both")
    real = pg.data[torch.randint(len(pg.data), (32,), generator=torch.Generator().set_state(rng_state))]
    torch.manual_seed(5)
    gan_step(model, optimizers, real)
    for a, b in zip(pg.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert (pg.step_count, pg.d_steps, pg.g_steps) == (1, 1, 1)


@pytest.mark.parametrize("which, moved, still",
                         [("d", "discriminator", "generator"), ("g", "generator", "discriminator")])
def test_step_d_or_g_moves_only_that_player(which, moved, still):
    pg = small()
    before = copy.deepcopy(pg.model)
    pg.step(which)
    changed = lambda name: any(not torch.equal(a, b) for a, b in zip(  # noqa: E731
        getattr(pg.model, name).parameters(), getattr(before, name).parameters(), strict=True))
    assert changed(moved) and not changed(still)
    assert all(p.requires_grad for p in pg.model.discriminator.parameters())  # D unfrozen after G's step


def test_views_are_the_models_own_numbers():
    pg = small(data="ring")
    for _ in range(3):
        pg.step()
    frame = pg.frame()
    assert len(frame["fake"]) == 2 * 480 and len(frame["noise_grid"]) == 2 * 17 * 17
    # the heatmap is sigmoid(D(x)) on a 40 x 40 lattice, top row first: its top-left cell is (x0, y1)
    top_left = torch.tensor([[-1.5, 1.5]])
    expected = torch.sigmoid(pg.model.discriminate(top_left)).item()
    assert abs(base64.b64decode(frame["heatmap"])[0] / 255 - expected) <= 1 / 255
    # an arrow is minus the gradient of G's loss with respect to that fake (times the number of arrows)
    x = pg.model.generate(pg.view_z[:120]).detach().requires_grad_(True)  # the fakes the arrows start from
    torch.testing.assert_close(torch.tensor(frame["arrows"]["at"]).view(-1, 2), x.detach(), atol=6e-4, rtol=0)
    (grad,) = torch.autograd.grad(pg.model.generator_loss(x)["loss"], x)
    torch.testing.assert_close(torch.tensor(frame["arrows"]["push"]).view(-1, 2), -grad * len(x), atol=6e-5, rtol=1e-3)


def test_gaussian1d_frames_have_histograms_and_curves():
    pg = small(data="gaussian1d")
    frame = pg.frame()
    assert pg.dim == 1 and len(frame["d_curve"]) == 200 and len(frame["g_map"]) == 41 and len(frame["fake_hist"]) == 60
    message = pg.data_message()
    bin_width = 12 / 60
    assert abs(sum(message["real_hist"]) * bin_width - 1) < 0.01  # a density over the view


def test_d_guided_samples_are_the_librarys_rejection_samples_beside_the_direct_ones():
    pg = small(data="ring")
    for _ in range(3):
        pg.step()
    assert "guided" not in pg.frame()  # off until asked for: it costs a calibration and thousands of proposals
    pg.show({"guided": True})
    shown = pg.frame()["guided"]
    calibration = guided.calibrate(pg.model, pg.data, seed=pg.step_count)  # the library's own, step by step
    drawn = guided.guided_sample(pg.model, NUM_SAMPLES, guided.sampling_config("rejection"),
                                 generator=torch.Generator().manual_seed(pg.step_count), calibration=calibration)
    torch.testing.assert_close(torch.tensor(shown["points"]).view(-1, 2), drawn.samples[:500], atol=6e-4, rtol=0)
    coverage = mixture_coverage(drawn.samples, "ring")
    assert shown["acceptance"] == round(drawn.acceptance_rate, 4) and 0 < shown["acceptance"] <= 1
    assert (shown["modes"], shown["of"]) == (coverage.modes_covered, 8)
    assert shown["high_quality"] == round(coverage.high_quality_fraction, 4)
    pg.show({"guided": False})
    assert "guided" not in pg.frame()


def test_d_guided_samples_say_in_one_line_why_none_could_be_drawn():
    pg = small(data="ring", pack=2)  # a PacGAN D scores packs of samples, not one sample
    pg.show({"guided": True})
    refused = pg.frame()["guided"]["refused"]
    assert "pack" in refused and "\n" not in refused


def test_coverage_is_measured_on_mixtures():
    pg = small(data="grid")
    assert pg.coverage["of"] == 25 and pg.coverage["step"] == 0
    assert small(data="moons").coverage is None


def test_live_changes_keep_weights_and_structural_ones_rebuild():
    pg = small()
    g_before = copy.deepcopy(pg.model.generator.state_dict())
    assert pg.change(pg.settings.model_copy(update={"loss": "hinge", "lr_d": 0.004})) == "live"
    assert pg.model.config.loss == "hinge" and pg.optimizers["discriminator"].param_groups[0]["lr"] == 0.004
    d = pg.model.discriminator
    assert pg.change(pg.settings.model_copy(update={"pack": 2, "spectral_norm": True})) == "rebuilt D"
    assert pg.model.discriminator is not d and pg.model.config.pack == 2
    for name, value in pg.model.generator.state_dict().items():
        torch.testing.assert_close(value, g_before[name])
    pg.step()  # a packed, spectrally normalised D trains
    assert pg.change(pg.settings.model_copy(update={"width": 32})) == "reset"
    assert pg.step_count == 0 and pg.model.config.hidden_dims == (32, 32)


def test_settings_are_bounded():
    with pytest.raises(ValueError, match="multiple of pack"):
        PlaygroundSettings(pack=3, batch_size=256)
    for bad in ({"width": 100_000}, {"lr_g": 5.0}, {"loss": "wgan"}, {"steps_per_s": -1}, {"surprise": 1}):
        with pytest.raises(ValueError):
            PlaygroundSettings(**bad)


def test_drawn_points_are_checked():
    assert check_points([[0.1, 0.2]] * 8).shape == (8, 2)
    for bad, message in (([[0, 0]] * 3, "between 8"), ([[0, 0]] * (MAX_DRAWN_POINTS + 1), "between 8"),
                         ([[0, 0]] * 7 + [[9, 0]], r"in \[-1.5, 1.5\]"), ([[0, 0]] * 7 + [[0]], "each point")):
        with pytest.raises(ValueError, match=message):
            check_points(bad)
    with pytest.raises(ValueError, match="draw some points"):
        small(data="drawn")
    pg = small()
    with pytest.raises(ValueError, match="draw some points"):
        pg.change(pg.settings.model_copy(update={"data": "drawn"}))
    assert pg.settings.data == "ring"  # nothing changed


def last_layer(generator: torch.nn.Module) -> torch.nn.Linear:
    return [m for m in generator.modules() if isinstance(m, torch.nn.Linear)][-1]


def test_samples_off_the_view_are_counted():
    pg = small(data="ring")
    frame = pg.frame()
    fake = torch.tensor(frame["fake"]).view(-1, 2)
    inside = (fake.abs() <= 1.5).all(dim=1)
    assert frame["off_view"] == int((~inside).sum())
    with torch.no_grad():  # push every sample far to the right, as a diverging WGAN-GP does
        last_layer(pg.model.generator).bias += torch.tensor([10.0, 0.0])
    assert pg.frame()["off_view"] == 480
    pg = small(data="gaussian1d")
    with torch.no_grad():
        last_layer(pg.model.generator).bias -= 20.0  # every sample left of the axis' start, -2
    frame = pg.frame()
    assert frame["off_view"] == 4000 and frame["off_sides"] == [4000, 0] and sum(frame["fake_hist"]) == 0


@pytest.mark.parametrize("loss, says, never", [
    ("non-saturating", "probability that x is real", "critic"),
    ("minimax", "probability that x is real", "critic"),
    ("least-squares", "trained towards 1 on real and 0 on fakes", "probability that"),
    ("hinge", "critic's score (not a probability)", "probability that"),
    ("wgan-gp", "critic's score (not a probability)", "probability that"),
])
def test_the_legend_says_what_the_shade_is_for_each_loss(loss, says, never):
    pg = small(loss=loss)
    background = next(e["text"] for e in pg.data_message()["legend"] if e["mark"] == "background")
    assert says in background and never not in background
    pg1 = small(loss=loss, data="gaussian1d")
    legend = {e["mark"]: e["text"] for e in pg1.data_message()["legend"]}
    assert "background" not in legend and says in legend["curve"] and legend["real"] == "data density (histogram)"


def test_a_critics_shade_spans_the_view_and_follows_a_live_change_of_loss():
    pg = small(loss="non-saturating")
    pg.change(pg.settings.model_copy(update={"loss": "wgan-gp"}))
    assert "critic" in next(e["text"] for e in pg.description()["legend"] if e["mark"] == "background")
    shades = base64.b64decode(pg.frame()["heatmap"])
    assert min(shades) == 0 and max(shades) == 255  # the critic's lowest and highest score in the view


def test_the_overview_is_read_from_the_model():
    pg = small(depth=3, width=32, spectral_norm=True, pack=2, n_critic=5, loss="hinge", data="grid")
    model = pg.description()["model"]
    assert model["generator"] == "G: MLP, 3 x 32 hidden"
    assert model["discriminator"] == "D: MLP, 3 x 32 hidden, spectral norm, pack 2"
    assert model["loss"] == "hinge loss, 5 D steps per G step" and model["real"] == "real samples: a grid of 25"
    assert model["noise"] == "z ~ N(0, I), 2-D"
    pg.change(pg.settings.model_copy(update={"loss": "wgan-gp", "n_critic": 1, "spectral_norm": False}))
    model = pg.description()["model"]
    assert model["loss"] == "wgan-gp loss" and model["discriminator"] == "D: MLP, 3 x 32 hidden, pack 2"


def test_frames_take_a_bounded_share_of_the_workers_time():
    from genlab.web.playground import FRAME_INTERVAL, frame_interval

    assert frame_interval(0.001) == FRAME_INTERVAL  # a quick frame: as often as a screen can show
    assert frame_interval(0.01) == pytest.approx(0.2)  # a slow one: 10 ms of every 200, 5%


# --- over the WebSocket ------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path, max_playgrounds=1, allowed_hosts=("testserver",))) as client:
        yield client


def receive_until(ws, kind, predicate=lambda m: True, limit=200):
    for _ in range(limit):
        message = ws.receive_json()
        if message["type"] == kind and predicate(message):
            return message
    raise AssertionError(f"no {kind} message")


def playground_threads():
    return [t for t in threading.enumerate() if t.name == "genlab-playground" and t.is_alive()]


def test_socket_steps_and_reports(client):
    with client.websocket_connect("/ws/playground") as ws:
        data = receive_until(ws, "data")
        assert data["dim"] == 2 and len(data["real"]) == 2000 and data["settings"]["data"] == "ring"
        assert data["model"]["loss"] == "non-saturating loss" and data["legend"][0]["mark"] == "real"
        ws.send_json({"type": "settings", "settings": {"width": 16, "batch_size": 32}})
        receive_until(ws, "changed")
        ws.send_json({"type": "settings", "settings": {"loss": "wgan-gp"}})
        changed = receive_until(ws, "changed")  # a live change: the page's legend and diagram follow it
        assert changed["model"]["loss"] == "wgan-gp loss" and "critic" in changed["legend"][2]["text"]
        ws.send_json({"type": "step", "which": "d"})
        frame = receive_until(ws, "frame", lambda m: m["d_steps"] == 1)
        assert frame["g_steps"] == 0 and "d_loss" in frame["losses"]
        ws.send_json({"type": "play"})
        receive_until(ws, "frame", lambda m: m["step"] >= 20)
        ws.send_json({"type": "pause"})
        ws.send_json({"type": "views", "views": {"heatmap": False}})
        frame = receive_until(ws, "frame", lambda m: not m["playing"] and "heatmap" not in m)
        ws.send_json({"type": "reset"})
        data = receive_until(ws, "data")
        assert receive_until(ws, "frame")["step"] == 0
        ws.send_json({"type": "points", "points": [[0.5, 0.5], [-0.5, -0.5]] * 10})
        data = receive_until(ws, "data")
        assert data["data"] == "drawn" and data["settings"]["data"] == "drawn"


@pytest.mark.parametrize("message, error", [
    ({"type": "fly"}, "a message is"),
    ({"type": "step", "which": "x"}, "step needs"),
    ({"type": "settings", "settings": {"pack": 3}}, "multiple of pack"),
    ({"type": "settings", "settings": {"width": 10_000}}, "width"),
    ({"type": "views", "views": {"heatmap": "yes"}}, "views needs"),
    ({"type": "points", "points": [[0, 0]] * 3}, "between 8"),
])
def test_socket_rejects_bad_messages_with_a_message(client, message, error):
    with client.websocket_connect("/ws/playground") as ws:
        ws.send_json(message)
        assert error in receive_until(ws, "error")["message"]


@pytest.mark.parametrize("frame, error", [
    ("{not json", "messages are JSON objects"),
    ("x" * 200_000, "more than 100,000 characters"),
    ('{"type": "settings", "settings": {"lr_g": NaN}}', "not a number JSON has"),
    ('{"type": "settings", "settings": {"lr_g": 1e999}}', "too large to be finite"),
    ('{"type": "settings", "settings": {"seed": 1180591620717411303424}}', "seed: Input should be less than"),
    ('{"type": "settings", "settings": {"width": 0}}', "width: Input should be greater than"),
    ('{"type": "settings", "settings": {"<img src=x>": 1}}', "(a key): not a field"),
    ("[" * 50_000 + "]" * 50_000, "nested more than"),
    ('{"type": "points", "points": [' + "[0.1, 0.1]," * 3000 + "[0, 0]]}", "between 8 and 2000"),
    ('{"type": "points", "points": [' + "[0.1, 0.1]," * 9 + '[0.1, "<b>evil</b>"]]}', "point 9 is not"),
    ('{"type": "points", "points": [' + "[0.1, 0.1]," * 9 + "[0.1, true]]}", "point 9 is not"),
])
def test_socket_rejects_hostile_text_with_one_line(client, frame, error):
    with client.websocket_connect("/ws/playground") as ws:
        ws.send_text(frame)
        message = receive_until(ws, "error")["message"]
        assert error in message and "\n" not in message and len(message) < 300
        assert "evil" not in message and "img" not in message  # never the input back
        ws.send_json({"type": "step", "which": "d"})  # the session goes on
        receive_until(ws, "frame", lambda m: m["d_steps"] == 1)


def test_socket_answers_binary_frames_and_floods_without_falling_over(client):
    with client.websocket_connect("/ws/playground") as ws:
        receive_until(ws, "frame")
        ws.send_bytes(b"\x00\xff" * 1000)
        assert "not binary frames" in receive_until(ws, "error")["message"]
        for _ in range(500):  # faster than anyone clicks: the server answers what it can and stays up
            ws.send_text('{"type": "fly"}')
        ws.send_json({"type": "step", "which": "g"})
        receive_until(ws, "frame", lambda m: m["g_steps"] == 1, limit=1000)


def test_socket_refuses_other_origins(client):
    with pytest.raises(WebSocketDenialResponse) as refused:
        with client.websocket_connect("/ws/playground", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()
    assert refused.value.status_code == 403 and "cross-origin" in refused.value.json()["detail"]


def test_disconnect_stops_the_worker_and_frees_the_slot(client):
    with client.websocket_connect("/ws/playground") as ws:
        receive_until(ws, "frame")
        ws.send_json({"type": "play"})
        receive_until(ws, "frame", lambda m: m["playing"])
        # max_playgrounds=1: a second page is told to close one
        with client.websocket_connect("/ws/playground") as second:
            assert "the most this server runs at once" in receive_until(second, "error")["message"]
    deadline = time.time() + 5
    while playground_threads() and time.time() < deadline:
        time.sleep(0.05)
    assert not playground_threads()
    with client.websocket_connect("/ws/playground") as ws:
        receive_until(ws, "frame")


def test_the_collapse_warning_fires_on_a_collapsed_generator(monkeypatch):
    import genlab.web.playground as playground
    from genlab.data import toys

    monkeypatch.setattr(playground, "COLLAPSE_AFTER", 0)
    pg = small(data="ring")  # an untrained G is still learning, not collapsed: give it one that found two modes
    monkeypatch.setattr(pg.model, "generate", lambda z: toys.ring_centres()[torch.arange(len(z)) % 2]
                        + toys.RING_STD * torch.randn(len(z), 2))
    pg.measure()
    pg.measure()  # the detector's patience: two checks in a row
    assert pg.warning and "2 of 8 modes covered" in pg.warning
    assert pg.frame()["warning"] == pg.warning


@pytest.mark.parametrize("settings, collapse_fix, won_fix", [
    ({}, "try Minibatch stddev, Packing 2, Spectral norm on D or the wgan-gp Loss",
     "try Spectral norm on D or a lower D learning rate"),
    ({"loss": "wgan-gp", "spectral_norm": True}, "try Minibatch stddev or Packing 2", "try a lower D learning rate"),
    ({"loss": "minimax", "minibatch_stddev": True, "pack": 2, "spectral_norm": True}, "try the wgan-gp Loss",
     "try a lower D learning rate or the non-saturating Loss"),
])
def test_the_playgrounds_advice_names_its_own_controls_and_only_those_not_on(settings, collapse_fix, won_fix):
    from genlab.web.playground import PlaygroundSettings, control_fixes

    assert control_fixes(PlaygroundSettings(**settings)) == (collapse_fix, won_fix)
    assert "--set" not in collapse_fix + won_fix  # the lab's language, not the command line's
