"""The lab's HTTP API with FastAPI's TestClient: pages, the training dashboard, the autoencoder bench and the
latent explorer; every bad request is a 4xx with a message, and no client input becomes a path."""

import dataclasses
import io
import shutil
import time
import typing

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from genlab.data import load_dataset
from genlab.models import FAMILIES
from genlab.train import TrainConfig
from genlab.web import benches
from genlab.web.app import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # the digits models train for fewer steps than the lab's (they only need to be models, not good ones)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("denoiser", "vae", "ae"):
            patch.setitem(benches.RECIPES, name, dataclasses.replace(benches.RECIPES[name], steps=300))
        # TestClient calls itself "testserver"; a real lab answers only to its own names (tests/test_web_guard.py)
        with TestClient(create_app(tmp_path_factory.mktemp("runs"), allowed_hosts=("testserver",))) as client:
            yield client


def wait_for(client, name, statuses=("finished", "stopped", "failed"), timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = client.get(f"/api/runs/{name}").json()
        if info["status"] in statuses:
            return info
        time.sleep(0.1)
    raise AssertionError(f"run {name} still {info['status']}")


def png(response) -> Image.Image:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


@pytest.mark.parametrize("path", ["/", "/playground", "/dashboard", "/bench", "/explorer"])
def test_pages_are_served(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "genlab lab" in response.text


def test_page_assets_are_local(client):
    for page in ("playground", "dashboard", "bench", "explorer"):
        html = client.get(f"/{page}").text
        assert "http://" not in html and "https://" not in html  # nothing from a CDN: the lab works offline
        assert client.get(f"/static/{page}.js").status_code == 200


def test_options_list_every_family(client):
    options = client.get("/api/options").json()
    assert options["families"] == list(FAMILIES) and "digits" in options["data"] and "ring" in options["data"]
    assert set(options["settings"]) == set(FAMILIES)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_dashboards_fields_are_what_a_run_accepts(client, family):
    """One field per setting the lab takes: each at its bounds is accepted, just past them refused, every choice
    accepted; what the lab refuses (data, steps, paths, the data's shape) has no field."""
    from genlab.web.runs import REFUSED, RunRequest, parse_request

    fields = client.get("/api/options").json()["settings"][family]
    names = [f["name"] for f in fields]
    assert len(names) == len(set(names)) and not REFUSED & set(names) and {"lr", "batch_size", "seed"} <= set(names)

    def accepted(name, value) -> bool:
        try:
            parse_request(RunRequest(family=family, settings={name: value}), ("digits",))
            return True
        except ValueError:
            return False

    for field in fields:
        name, kind = field["name"], field["kind"]
        if kind in ("int", "float"):
            assert accepted(name, str(field["min"])) and accepted(name, str(field["max"])), name
            past = field["max"] + 1 if kind == "int" else field["max"] * 1.5 + 1
            assert not accepted(name, str(past)), name
        elif kind == "list":
            fewest, most = field["entries"]
            assert accepted(name, ",".join([str(field["max"])] * most)), name
            assert not accepted(name, ",".join([str(field["max"])] * (most + 1))), name
        elif kind == "choice":
            assert field["default"] in field["choices"] and all(accepted(name, c) for c in field["choices"]), name
        else:
            assert kind == "bool" and accepted(name, "true") and isinstance(field["default"], bool), name


def one_line(response, status: int) -> str:
    """The refusal's message, after checking it is the status and one short line."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 500 and "Traceback" not in detail
    return detail


@pytest.mark.parametrize("body, message", [
    ({"family": "flow", "data": "digits"},  # the registry's names, as pydantic lists them
     f"family: Input should be {', '.join(map(repr, list(FAMILIES)[:-1]))} or {list(FAMILIES)[-1]!r}"),
    ({"family": 5}, "family: Input should be"),
    ({"family": "ae", "data": "folder:/etc"}, "data: Input should be"),
    ({"family": "ae", "data": "digits", "steps": 10**6}, "less than or equal to 20000"),
    ({"family": "ae", "data": "digits", "steps": 0}, "greater than or equal to 1"),
    ({"family": "ae", "data": "digits", "steps": 1.5}, "steps: Input should be a valid integer"),
    ({"family": "ae", "data": "digits", "settings": {"latent_dim": 100_000}}, "latent_dim must be between 1 and 256"),
    ({"family": "ae", "data": "digits", "settings": {"latent_dim": 0}}, "latent_dim must be between 1 and 256"),
    ({"family": "ae", "data": "digits", "settings": {"hidden_dims": [4096]}}, "each entry of hidden_dims"),
    ({"family": "ae", "data": "digits", "settings": {"hidden_dims": [0, 8]}}, "each entry of hidden_dims"),
    ({"family": "ae", "data": "digits", "settings": {"hidden_dims": [8] * 5}}, "hidden_dims takes 1 to 4 entries"),
    ({"family": "ae", "data": "digits", "settings": {"hidden_dims": [8] * 100}}, "list of at most 8"),
    ({"family": "ddpm", "data": "ring", "settings": {"num_timesteps": 1_000_000_000}},
     "num_timesteps must be between 1 and 4,000"),
    ({"family": "ddpm", "data": "ring", "settings": {"unet_channels": [10**6]}}, "each entry of unet_channels"),
    ({"family": "gan", "data": "ring", "settings": {"betas": [0.5]}}, "betas takes 2 entries"),
    ({"family": "gan", "data": "ring", "settings": {"pack": 10**9}}, "pack must be between 1 and 8"),
    ({"family": "ae", "data": "digits", "settings": {"seed": 2**70}}, "seed must be between 0 and"),
    ({"family": "ae", "data": "digits", "settings": {"seed": -1}}, "seed must be between 0 and"),
    ({"family": "ae", "data": "digits", "settings": {"batch_size": 10**6}}, "batch_size must be between 1 and 512"),
    ({"family": "ae", "data": "digits", "settings": {"data": "mnist"}}, "cannot be set here"),
    ({"family": "ae", "data": "digits", "settings": {"data_shape": [1, 4096, 4096]}}, "cannot be set here"),
    ({"family": "ae", "data": "digits", "settings": {"image_size": 4096}}, "cannot be set here"),
    ({"family": "ae", "data": "digits", "settings": {"warp": 9}}, "unknown setting 'warp'"),
    ({"family": "ae", "data": "digits", "settings": {"../x": 9}}, "settings.(a key): String should match"),
    ({"family": "ae", "data": "digits", "settings": {"lr": "fast"}}, "is not a number"),
    ({"family": "ae", "data": "digits", "settings": {"lr": {"a": [1]}}}, "settings.lr: Value error, a setting is"),
    ({"family": "ae", "data": "digits", "settings": {"lr": None}}, "settings.lr: Value error, a setting is"),
    ({"family": "ae", "data": "digits", "run_dir": "/tmp/x"}, "run_dir: not a field of this request"),
    ({"family": "ae", "data": "digits", "settings": {"loss": "x" * 10_000}}, "text of at most 40 characters"),
    ({"family": "ae", "data": "digits", "settings": {"lr": "inf"}}, "lr must be between"),
    ({"family": "ae", "data": "digits", "settings": {"lr": "nan"}}, "lr must be between"),
    ({"family": "ae", "data": "digits", "settings": {f"k{i}": 1 for i in range(31)}}, "at most 30 items"),
])
def test_bad_run_requests_are_422_with_one_line(client, body, message):
    assert message in one_line(client.post("/api/runs", json=body), 422)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_no_setting_takes_a_huge_number(client, family):
    """Every number or tuple of numbers a run's configs have is bounded by the lab or refused: setting any of them
    to 2**64 is a 422, so a setting added to a config later cannot slip through unbounded."""
    tried = 0
    for config_class in (TrainConfig, FAMILIES[family].config):
        for field in dataclasses.fields(config_class):
            hint = str(typing.get_type_hints(config_class)[field.name])
            if "int" not in hint and "float" not in hint:
                continue  # a choice or a flag
            value = [2**64, 2**64] if "tuple" in hint else 2**64
            body = {"family": family, "data": "ring", "settings": {field.name: value}}
            response = client.post("/api/runs", json=body)
            assert response.status_code == 422, (field.name, response.text)
            tried += 1
    assert tried >= 10


@pytest.mark.parametrize("content, message", [
    (b'{"family": "ae", "steps": NaN}', "not a number JSON has"),
    (b'{"family": "ae", "steps": Infinity}', "not a number JSON has"),
    (b'{"family": "ae", "settings": {"lr": 1e999}}', "too large to be finite"),
    (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    (b'{"family": "ae", "settings": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}", "nested more than"),
    (b'{"family": [' + b"0," * 50_000 + b"0]}", "more than 10,000 values"),
    (b'{"family": "ae", ' + b"".join(b'"k%d": 1, ' % i for i in range(20_000)) + b'"z": 1}', "more than 10,000"),
    (b"{not json", "not JSON the lab reads"),
    (b'{"family": "\xff\xfe"}'.decode("unicode_escape").encode("latin-1"), "not UTF-8"),
])
def test_hostile_json_bodies_are_4xx_with_one_line(client, content, message):
    response = client.post("/api/runs", content=content, headers={"content-type": "application/json"})
    detail = one_line(response, 422)
    assert message in detail and "k19999" not in detail


def test_the_schema_lists_the_families():
    schema = create_app(allowed_hosts=("testserver",)).openapi()
    body = schema["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    run_request = schema["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert run_request["properties"]["family"]["enum"] == list(FAMILIES)
    assert "data_shape" not in run_request["properties"]


@pytest.mark.parametrize("path", ["/api/runs/..%2F..%2Fetc", "/api/runs/.hidden", "/api/runs/nope",
                                  "/api/runs/%00evil", "/api/runs/%2Fetc%2Fevil", "/api/runs/evil%5C..%5Cx",
                                  "/api/runs/" + "e" * 5000, "/api/runs/nope/samples/step-00000001-samples.png",
                                  "/api/runs/nope/samples/..%2Fconfig.json", "/api/runs/nope/generate.png",
                                  "/api/runs/..%2F..%2Fetc/generate.png"])
def test_unknown_or_malformed_run_names_are_4xx(client, path):
    response = client.get(path)
    assert response.status_code in (404, 422)
    detail = one_line(response, response.status_code)
    assert "evil" not in detail and "eeee" not in detail  # never the client's path back


def test_cross_origin_posts_are_refused(client):
    response = client.post("/api/bench/decode", json={"code": [0, 0, 0]}, headers={"origin": "http://evil.example"})
    assert "cross-origin" in one_line(response, 403)
    response = client.post("/api/bench/decode", json={"code": [0, 0, 0]}, headers={"origin": "null"})
    assert "cross-origin" in one_line(response, 403)


@pytest.mark.slow
def test_a_run_trains_streams_and_generates(client):
    response = client.post("/api/runs", json={"family": "gan", "data": "ring", "steps": 40,
                                              "settings": {"latent_dim": 2, "hidden_dims": [16, 16]}})
    assert response.status_code == 201, response.text
    name = response.json()["name"]
    busy = client.post("/api/runs", json={"family": "ae", "data": "digits"})
    if client.get(f"/api/runs/{name}").json()["status"] in ("starting", "running"):
        assert busy.status_code == 409 and "one run at a time" in busy.json()["detail"]
    info = wait_for(client, name)
    assert info["status"] == "finished" and info["step"] == 40 and info["family"] == "gan"
    assert info["records"] and "d_loss" in info["records"][-1] and info["checkpoints"]
    with client.websocket_connect(f"/ws/runs/{name}") as ws:  # a finished run streams its history and ends
        message = ws.receive_json()
        assert message["status"] == "finished" and len(message["records"]) == len(info["records"])
    assert name in [run["name"] for run in client.get("/api/runs").json()["runs"]]
    sample = info["samples"][-1]
    assert png(client.get(f"/api/runs/{name}/samples/{sample}")).size[0] > 100
    download = client.get(f"/api/runs/{name}/samples/{sample}?download=true")
    assert "attachment" in download.headers["content-disposition"]
    assert png(client.get(f"/api/runs/{name}/generate.png?n=16&seed=1")).size[0] > 100
    assert client.get(f"/api/runs/{name}/generate.png?n=100000").status_code == 422
    assert client.get(f"/api/runs/{name}/samples/..%2Fconfig.json").status_code in (404, 422)
    assert client.get(f"/api/runs/{name}/samples/config.json").status_code == 422


def test_a_run_stops_when_asked(client):
    response = client.post("/api/runs", json={"family": "ae", "data": "digits", "steps": 20_000,
                                              "settings": {"log_every": 5, "hidden_dims": [16]}})
    name = response.json()["name"]
    wait_for(client, name, statuses=("running",))
    assert client.post(f"/api/runs/{name}/stop").json()["status"] == "stopping"
    info = wait_for(client, name)
    assert info["status"] == "stopped" and info["step"] < 20_000
    assert client.post(f"/api/runs/{name}/stop").status_code == 404  # no longer training


def test_a_faces_gan_shows_its_samples_over_their_nearest_training_faces(client):
    response = client.post("/api/runs", json={"family": "gan", "data": "faces", "steps": 4,
                                              "settings": {"batch_size": 20, "conv_channels": [8, 16]}})
    assert response.status_code == 201, response.text
    name = response.json()["name"]
    assert wait_for(client, name)["status"] == "finished"
    picture = png(client.get(f"/api/runs/{name}/nearest.png?n=8&seed=3"))
    assert picture.info["Title"].startswith(f"{name}, step 4: 8 samples (seed 3) over their nearest of 100 training")
    assert picture.info["Description"] == "rows: sample, nearest training image (pixel distance)"
    assert client.get(f"/api/runs/{name}/nearest.png?n=100000").status_code == 422
    ae = client.post("/api/runs", json={"family": "ae", "data": "ring", "steps": 4}).json()["name"]
    wait_for(client, ae)
    assert "does not sample images" in one_line(client.get(f"/api/runs/{ae}/nearest.png"), 422)


def test_generate_from_an_autoencoder_shows_reconstructions(client):
    name = client.post("/api/runs", json={"family": "ae", "data": "digits", "steps": 10}).json()["name"]
    wait_for(client, name)
    picture = png(client.get(f"/api/runs/{name}/generate.png?n=4"))
    assert picture.size[0] > 8  # 4 test digits beside their reconstructions


# --- autoencoder bench -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_lesson_autoencoder_brings_every_pattern_back(client):
    patterns = client.get("/api/bench/patterns").json()["patterns"]
    assert len(patterns) == 15
    for p in patterns:
        assert [round(v) for v in p["reconstruction"]] == p["cells"]
        assert all(-1 <= v <= 1 for v in p["code"])  # the tanh code (rounded to 3 digits)


def test_encode_then_decode_is_the_reconstruction(client):
    cells = [0, 1, 0, 1, 1, 1, 0, 1, 0]
    encoded = client.post("/api/bench/encode", json={"cells": cells}).json()
    decoded = client.post("/api/bench/decode", json={"code": encoded["code"]}).json()
    assert len(encoded["code"]) == 3
    assert decoded["pattern"] == pytest.approx(encoded["reconstruction"], abs=2e-3)


@pytest.mark.parametrize("path, body", [
    ("/api/bench/encode", {"cells": [0] * 8}), ("/api/bench/encode", {"cells": [2] + [0] * 8}),
    ("/api/bench/decode", {"code": [0, 0, 1.5]}), ("/api/bench/decode", {"code": [0, 0]}),
    ("/api/bench/denoise", {"index": 297, "noise": 0.1}), ("/api/bench/denoise", {"index": 0, "noise": 3}),
    ("/api/explorer/decode", {"z": [0, 0, 0]}), ("/api/explorer/decode", {"z": [0, 1e9]}),
    ("/api/explorer/decode", {"model": "gan", "z": [0, 0]}),
    ("/api/explorer/interpolate", {"a": 0, "b": 1, "frames": 1000}),
])
def test_bad_bench_requests_are_422(client, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 422 and response.json()["detail"]


def test_denoising_brings_noisy_digits_closer_to_the_clean_ones(client):
    errors = []
    for index in range(8):
        r = client.post("/api/bench/denoise", json={"index": index, "noise": 0.5, "seed": index}).json()
        clean, noisy, denoised = (torch.tensor(r[k]) for k in ("clean", "noisy", "denoised"))
        errors.append(((denoised - clean).pow(2).mean() < (noisy - clean).pow(2).mean()).item())
    assert sum(errors) >= 7
    r = client.post("/api/bench/denoise", json={"index": 3, "noise": 0.0}).json()
    assert r["noisy"] == r["clean"] and r["label"] == int(load_dataset("digits", "test").labels[3])


# --- latent explorer ---------------------------------------------------------------------------------


def test_the_map_is_the_vaes_posteriors(client):
    lab = client.app.state.lab
    data = client.get("/api/explorer/map").json()
    test = load_dataset("digits", "test")
    assert len(data["codes"]) == len(test) == len(data["labels"]) and data["labels"] == test.labels.tolist()
    with torch.no_grad():
        mu, logvar = lab.models.get("vae").encode(test.x)
    torch.testing.assert_close(torch.tensor(data["codes"]), mu, atol=1e-3, rtol=0)
    # each point's spread: q(z|x) = N(mu, sigma^2) with sigma = exp(logvar / 2), all positive
    sigma = torch.tensor(data["sigmas"])
    torch.testing.assert_close(sigma, torch.exp(0.5 * logvar), atol=1e-3, rtol=0)
    assert sigma.shape == mu.shape and (sigma > 0).all()
    assert client.get("/api/explorer/map?model=ae").json()["sigmas"] is None  # an AE's code is a point


def test_decode_and_interpolate_follow_the_model(client):
    lab = client.app.state.lab
    vae = lab.models.get("vae")
    image = client.post("/api/explorer/decode", json={"model": "vae", "z": [0.5, -1.0]}).json()["image"]
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(image), vae.decode(torch.tensor([[0.5, -1.0]])).flatten(), atol=1e-3,
                                   rtol=0)
    r = client.post("/api/explorer/interpolate", json={"model": "vae", "a": 0, "b": 5, "frames": 6}).json()
    assert len(r["lerp"]) == len(r["slerp"]) == 6
    # both paths start at A's code and end at B's
    assert r["lerp"][0] == pytest.approx(r["slerp"][0], abs=1e-3)
    assert r["lerp"][-1] == pytest.approx(r["slerp"][-1], abs=1e-3)
    assert r["lerp"][2] != pytest.approx(r["slerp"][2], abs=1e-3)


def test_the_explorer_opens_vae_runs_on_digits(client):
    name = client.post("/api/runs", json={"family": "vae", "data": "digits", "steps": 10,
                                          "settings": {"latent_dim": 3, "hidden_dims": [16]}}).json()["name"]
    wait_for(client, name)
    assert f"run:{name}" in client.get("/api/explorer/models").json()["models"]
    data = client.get(f"/api/explorer/map?model=run:{name}").json()
    assert data["latent_dim"] == 3 and len(data["codes"][0]) == 3
    image = client.post("/api/explorer/decode", json={"model": f"run:{name}", "z": [0, 0, 0]}).json()["image"]
    assert len(image) == 64
    wrong = client.post("/api/explorer/decode", json={"model": f"run:{name}", "z": [0, 0]})
    assert wrong.status_code == 422 and "one per dimension" in wrong.json()["detail"]
    gan = client.post("/api/runs", json={"family": "gan", "data": "ring", "steps": 5}).json()["name"]
    wait_for(client, gan)
    refused = client.get(f"/api/explorer/map?model=run:{gan}")
    assert refused.status_code == 422 and "pick a vae or ae run on digits" in refused.json()["detail"]
    assert client.get("/api/explorer/map?model=run:../../etc").status_code == 422
    assert client.get("/api/explorer/map?model=run:nothing").status_code == 404


def test_holes_decodes_a_grid_from_both_models(client):
    r = client.get("/api/explorer/holes?size=5").json()
    assert len(r["ae"]) == len(r["vae"]) == 25 and len(r["ae"][0]) == 64
    train = load_dataset("digits", "train")
    for name in ("ae", "vae"):  # the grid spans every training code with room around: each is counted once
        assert sum(r[f"{name}_codes"]) == len(train) and len(r[f"{name}_codes"]) == 25
        x0, x1, y0, y1 = r[f"{name}_box"]
        with torch.no_grad():
            code = client.app.state.lab.models.get(name).encode(train.x)
        codes = code[0] if isinstance(code, tuple) else code
        assert x0 < codes[:, 0].min() - 0.2 * (x1 - x0) / 1.5 and codes[:, 1].max() + 0.2 * (y1 - y0) / 1.5 < y1
        assert r[f"{name}_codes"][0] == 0  # the top left corner is beyond every code
    assert client.get("/api/explorer/holes?size=500").status_code == 422
    same = client.get("/api/explorer/holes?size=3&span=2").json()
    assert same["ae_box"] == same["vae_box"] == [-2, 2, -2, 2]
    vae = client.app.state.lab.models.get("vae")
    with torch.no_grad():  # the middle of a 3 x 3 grid over [-2, 2]^2 is z = 0
        torch.testing.assert_close(torch.tensor(same["vae"][4]), vae.decode(torch.zeros(1, 2)).flatten(), atol=1e-3,
                                   rtol=0)


def test_an_autoencoders_latent_space_has_holes(tmp_path, monkeypatch):
    """The explorer's AE (trained as the lab trains it) decodes grid points far from every training code to
    images further from every training digit than its decodings at codes are: the holes the page points at."""
    monkeypatch.setitem(benches.RECIPES, "ae", dataclasses.replace(benches.RECIPES["ae"], steps=benches.DIGITS_STEPS))
    monkeypatch.setitem(benches.RECIPES, "vae", dataclasses.replace(benches.RECIPES["vae"], steps=10))  # not looked at
    with TestClient(create_app(tmp_path, allowed_hosts=("testserver",))) as lab_client:
        r = lab_client.get("/api/explorer/holes?size=15").json()
        ae = lab_client.app.state.lab.models.get("ae")
    train, test = load_dataset("digits", "train").x.flatten(1), load_dataset("digits", "test").x
    counts = torch.tensor(r["ae_codes"]).view(15, 15)
    # far: a grid point with no training code nearest it, nor nearest any of its 8 neighbours
    near = torch.nn.functional.max_pool2d(counts[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    far = ~near.flatten()
    assert 20 < far.sum() < 200  # holes are in view, and so are the codes
    to_digits = torch.cdist(torch.tensor(r["ae"]), train).min(1).values  # distance to the nearest training digit
    with torch.no_grad():
        at_codes = torch.cdist(ae.reconstruct(test).flatten(1), train).min(1).values
    print(f"median distance to the nearest training digit: far from codes {to_digits[far].median():.3f}, "
          f"at codes {at_codes.median():.3f}")
    assert to_digits[far].median() > 1.25 * at_codes.median()


def test_a_run_trained_by_another_process_shows_as_running(client):
    """A run that `genlab train` trains (it holds the run's lock) is "running" on the dashboard while it does."""
    import threading

    from genlab.run import create_run, run_is_training, run_lock

    runs_dir = client.app.state.lab.runs.runs_dir
    folder = create_run(runs_dir / "from-the-cli", "gan", TrainConfig(data="ring", steps=100), {})
    try:
        assert not run_is_training(folder)
        assert client.get("/api/runs/from-the-cli").json()["status"] == "stopped"
        holding, release = threading.Event(), threading.Event()

        def trainer():  # another open file description of the lock file: as another process would hold it
            with run_lock(folder):
                holding.set()
                release.wait(10)

        thread = threading.Thread(target=trainer)
        thread.start()
        holding.wait(10)
        info = client.get("/api/runs/from-the-cli").json()
        assert run_is_training(folder) and info["status"] == "running" and not info["trained_here"]
        listed = {run["name"]: run["status"] for run in client.get("/api/runs").json()["runs"]}
        assert listed["from-the-cli"] == "running"
        release.set()
        thread.join()
        assert client.get("/api/runs/from-the-cli").json()["status"] == "stopped" and not run_is_training(folder)
    finally:
        shutil.rmtree(folder)


def test_unreadable_run_folders_are_4xx_never_500(client):
    runs_dir = client.app.state.lab.runs.runs_dir
    folders = {"bad-json": "{", "bad-list": "[1, 2]", "bad-train": '{"family": "ae", "model": {}, "train": 5}',
               "bad-steps": '{"family": "vae", "model": {"latent_dim": "x"}, "train": {"steps": "9"}}'}
    try:
        for name, text in folders.items():
            (runs_dir / name).mkdir()
            (runs_dir / name / "config.json").write_text(text)
        (runs_dir / "odd-metrics").mkdir()
        (runs_dir / "odd-metrics" / "config.json").write_text('{"family": "ae", "model": {}, "train": {"steps": 9}}')
        (runs_dir / "odd-metrics" / "metrics.jsonl").write_text('[1]\n{"step": "x"}\n{"step": 2}\n')
        assert [r["step"] for r in client.get("/api/runs/odd-metrics").json()["records"]] == [2]
        listed = client.get("/api/runs")
        assert listed.status_code == 200 and not set(folders) & {run["name"] for run in listed.json()["runs"]}
        for name in folders:
            assert "not a genlab run's" in one_line(client.get(f"/api/runs/{name}"), 422)
        assert client.get("/api/explorer/models").status_code == 200
    finally:
        for name in (*folders, "odd-metrics"):
            shutil.rmtree(runs_dir / name)


def test_typed_json_settings_and_the_dashboards_text_build_the_same_run():
    """Scripts send typed JSON, the dashboard's box sends --set's text: both reach the same config, checked
    by the same bounds; a typed value of the wrong type is one line, not a parse of its string form."""
    from genlab.web.runs import RunRequest, parse_request

    typed = RunRequest(family="gan", steps=50, settings={"hidden_dims": [16, 8], "lr": 0.002, "minibatch_stddev": True,
                                                          "loss": "hinge", "seed": 3})
    text = RunRequest(family="gan", steps=50, settings={"hidden_dims": "16,8", "lr": "0.002",
                                                         "minibatch_stddev": "true", "loss": "hinge", "seed": "3"})
    assert parse_request(typed, ("digits",)) == parse_request(text, ("digits",))
    train_config, model_settings = parse_request(typed, ("digits",))
    assert model_settings == {"hidden_dims": (16, 8), "minibatch_stddev": True, "loss": "hinge"}
    assert (train_config.lr, train_config.seed) == (0.002, 3)
    with pytest.raises(ValueError, match="seed=3.5 is not an integer"):
        parse_request(RunRequest(family="gan", settings={"seed": 3.5}), ("digits",))
