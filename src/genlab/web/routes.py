"""The lab's JSON API: one plain function per endpoint, each a thin call into the library.

Bodies and queries are pydantic models with bounds, so a bad request is a 422 naming the field. Bodies are read
by guard.parse_json in a worker thread (LabRoute), and plain `def` endpoints run in FastAPI's thread pool: neither a
large body nor training a bench model on first use blocks the event loop. Pictures are drawn in at most
DRAWING_SLOTS threads at once; a request beyond that is a 503 to retry, not a queue that grows with a flood.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import torch
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from genlab.checkpoint import resolve_checkpoint
from genlab.data import load_dataset
from genlab.explore import nearest_png, picture_of
from genlab.models import FAMILIES
from genlab.models.layers import interpolate_latents
from genlab.run import OpenRun, load_run_data, open_run, read_run_record
from genlab.web.guard import describe, describe_errors, parse_json
from genlab.web.runs import MAX_STEPS, NotFound, RunRequest, setting_fields


class OffLoopJSON(Request):
    """A request whose JSON body is read in a worker thread by the lab's strict reader."""

    async def json(self):
        if not hasattr(self, "_json"):
            self._json = await run_in_threadpool(parse_json, await self.body())
        return self._json


class LabRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()

        async def off_loop_handler(request: Request):
            return await handler(OffLoopJSON(request.scope, request.receive))

        return off_loop_handler


class Saturated(Exception):
    """Every drawing slot is taken: a 503 with Retry-After."""


def answer_errors(app: FastAPI) -> None:
    """The one-line JSON answers the lab and the server give alike: a refused request (422, its fields named), a
    ValueError from the library (422), an unknown name (404), too many pictures or requests at once (503, retry)."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        return JSONResponse({"detail": describe_errors(error.errors())}, status_code=422)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, error: ValueError):
        return JSONResponse({"detail": describe(error)}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound):
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(Saturated)
    async def saturated(request: Request, error: Saturated):
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})


router = APIRouter(prefix="/api", route_class=LabRoute)
MAX_GENERATE = 256  # samples in one generated picture
MAX_NEAREST = 64  # samples searched against every training image in one picture
LOADED_MODELS = 4  # trained models kept in memory for generate
DRAWING_SLOTS = 2  # pictures drawn at once: the lab's CPU is small, and a third would only slow the other two
Cell = Annotated[float, Field(ge=0, le=1)]
Code = Annotated[float, Field(ge=-1, le=1)]  # the lesson's tanh code
Latent = Annotated[float, Field(ge=-10, le=10)]  # far beyond anything a prior N(0, I) puts mass on


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _lab(request: Request):
    return request.app.state.lab


def _pixels(images: torch.Tensor) -> list[list[float]]:
    """(N, 1, H, W) in [0, 1] -> N flat lists rounded to 3 digits, drawn by the page on a canvas."""
    return [[round(v, 3) for v in image.flatten().tolist()] for image in images.clamp(0, 1)]


@functools.cache
def digits_test():
    return load_dataset("digits", "test")


# --- training dashboard ------------------------------------------------------------------------------


@router.get("/options")
def options(request: Request):
    """What a new run may be: families, data, steps, and each family's settings as the dashboard's fields."""
    return {"families": list(FAMILIES), "data": list(_lab(request).data_names()), "max_steps": MAX_STEPS,
            "settings": {family: setting_fields(family) for family in FAMILIES}}


@router.get("/runs")
def list_runs(request: Request):
    lab = _lab(request)
    return {"runs": lab.runs.list(), "active": [job.summary() for job in lab.runs.active()]}


@router.post("/runs", status_code=201)
def start_run(body: RunRequest, request: Request):
    lab = _lab(request)
    return lab.runs.start(body, lab.data_names()).summary()


@router.get("/runs/{name}")
def run_info(name: str, request: Request):
    return _lab(request).runs.describe(name)


@router.post("/runs/{name}/stop")
def stop_run(name: str, request: Request):
    return _lab(request).runs.stop(name).summary()


@router.get("/runs/{name}/samples/{file}")
def sample_picture(name: str, file: str, request: Request, download: bool = False):
    path = _lab(request).runs.sample_file(name, file)
    return FileResponse(path, media_type="image/png", filename=f"{name}-{file}" if download else None)


def _trained_model(lab, name: str) -> OpenRun:
    """The run's latest checkpoint opened, with its test split; the last LOADED_MODELS stay in memory."""
    checkpoint = resolve_checkpoint(lab.runs.run_dir(name))  # FileNotFoundError when no checkpoint is written yet
    key = (name, checkpoint.name)
    with lab.loaded_lock:
        if key not in lab.loaded:
            lab.loaded[key] = open_run(checkpoint, data_dir=lab.data_dir, splits=("test",))
            while len(lab.loaded) > LOADED_MODELS:
                lab.loaded.popitem(last=False)
        lab.loaded.move_to_end(key)
        return lab.loaded[key]


@router.get("/runs/{name}/generate.png")
async def generate(name: str, request: Request, n: Annotated[int, Query(ge=1, le=MAX_GENERATE)] = 64,
                   seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0, download: bool = False):
    """Samples from the run's latest checkpoint (reconstructions of test examples for an autoencoder)."""
    lab = _lab(request)
    if lab.drawing.locked():
        raise Saturated(f"{DRAWING_SLOTS} pictures are being drawn, the most this lab draws at once: "
                        "try again in a moment")
    async with lab.drawing:
        picture, step = await run_in_threadpool(_draw_samples, lab, name, n, seed)
    headers = {"Content-Disposition": f'attachment; filename="{name}-step{step}-seed{seed}.png"'} if download else {}
    return Response(picture, media_type="image/png", headers=headers)


def _draw_samples(lab, name: str, n: int, seed: int) -> tuple[bytes, int]:
    """(PNG bytes, checkpoint step): sampling and encoding, in a worker thread."""
    try:
        opened = _trained_model(lab, name)
    except FileNotFoundError:
        raise NotFound(f"run {name!r} has no checkpoint yet: let it train to its first one") from None
    # reconstructions come from the run's own test split: its image_size, channels and seed
    picture = picture_of(opened.model, opened.data["test"], n=n, seed=seed, title=f"{name}, step {opened.step}",
                         tile_pixels=64)
    return picture, opened.step


@router.get("/runs/{name}/nearest.png")
async def nearest(name: str, request: Request, n: Annotated[int, Query(ge=1, le=MAX_NEAREST)] = 16,
                  seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0):
    """Samples of a run that samples images, each over its nearest training image: does it copy its data?"""
    lab = _lab(request)
    if lab.drawing.locked():
        raise Saturated(f"{DRAWING_SLOTS} pictures are being drawn, the most this lab draws at once: "
                        "try again in a moment")
    async with lab.drawing:
        picture = await run_in_threadpool(_draw_nearest, lab, name, n, seed)
    return Response(picture, media_type="image/png")


def _draw_nearest(lab, name: str, n: int, seed: int) -> bytes:
    try:
        opened = _trained_model(lab, name)
    except FileNotFoundError:
        raise NotFound(f"run {name!r} has no checkpoint yet: let it train to its first one") from None
    if not (opened.model.can_sample and opened.data["test"].kind == "image"):
        raise ValueError(f"run {name!r} does not sample images: nearest training images are for image generators")
    train = load_run_data(opened.record.train, "train", lab.data_dir)
    return nearest_png(opened.model, train, n=n, seed=seed, title=f"{name}, step {opened.step}")


# --- autoencoder bench -------------------------------------------------------------------------------


class Cells(Strict):
    cells: list[Cell] = Field(min_length=9, max_length=9)  # row by row


class CodeBody(Strict):
    code: list[Code] = Field(min_length=3, max_length=3)


class DenoiseBody(Strict):
    index: int = Field(ge=0, lt=297)  # the digits test split has 297 images
    noise: float = Field(ge=0, le=1)  # std of the Gaussian noise added to pixels in [0, 1]
    seed: int = Field(0, ge=0, le=2**31 - 1)


@router.get("/bench/patterns")
def patterns(request: Request):
    from genlab.data.toys import PATTERNS

    model = _lab(request).models.get("patterns")
    x = load_dataset("patterns").x
    with torch.no_grad():
        codes, reconstructions = model.encode(x), model.reconstruct(x)
    return {"patterns": [{"name": name, "cells": cells, "code": [round(v, 3) for v in code], "reconstruction": rec}
                         for name, cells, code, rec in zip(PATTERNS, _pixels(x), codes.tolist(),
                                                           _pixels(reconstructions), strict=True)]}


@router.post("/bench/encode")
def encode_pattern(body: Cells, request: Request):
    model = _lab(request).models.get("patterns")
    x = torch.tensor(body.cells).view(1, 1, 3, 3)
    with torch.no_grad():
        code = model.encode(x)
        return {"code": [round(v, 4) for v in code[0].tolist()], "reconstruction": _pixels(model.decode(code))[0]}


@router.post("/bench/decode")
def decode_pattern(body: CodeBody, request: Request):
    model = _lab(request).models.get("patterns")
    with torch.no_grad():
        return {"pattern": _pixels(model.decode(torch.tensor([body.code])))[0]}


@router.post("/bench/denoise")
def denoise(body: DenoiseBody, request: Request):
    model = _lab(request).models.get("denoiser")
    test = digits_test()
    clean = test.x[body.index:body.index + 1]
    noisy = (clean + body.noise * torch.randn(clean.shape, generator=torch.Generator().manual_seed(body.seed)))
    with torch.no_grad():
        out = model.reconstruct(noisy)
    return {"label": int(test.labels[body.index]), "clean": _pixels(clean)[0], "noisy": _pixels(noisy)[0],
            "denoised": _pixels(out)[0]}


# --- VAE latent explorer -----------------------------------------------------------------------------

# A model is "vae" or "ae" (trained here on first use) or "run:NAME": a vae or ae run on digits in the runs folder.
MODEL_KEY = r"^(vae|ae|run:[A-Za-z0-9][A-Za-z0-9_.-]{0,99})$"
ModelKey = Annotated[str, Field(pattern=MODEL_KEY)]
MAX_LATENT = 64  # sliders on one page


def _codes(model, x: torch.Tensor) -> torch.Tensor:
    """The codes of x: an AE's, or the means of a VAE's posteriors."""
    with torch.no_grad():
        code = model.encode(x)
    return code[0] if isinstance(code, tuple) else code  # the VAE's posterior means


def _explorer_model(lab, key: str):
    if not key.startswith("run:"):
        return lab.models.get(key)
    name = key.removeprefix("run:")
    try:
        opened = _trained_model(lab, name)
    except FileNotFoundError:
        raise NotFound(f"run {name!r} has no checkpoint yet: let it train to its first one") from None
    model, family, data = opened.model, opened.record.family, opened.record.train.data
    if family not in ("vae", "ae") or data != "digits":
        raise ValueError(f"the explorer maps digits through an encoder: run {name!r} is a {family} "
                         f"on {data}; pick a vae or ae run on digits")
    if model.config.latent_dim > MAX_LATENT:
        raise ValueError(f"run {name!r} has {model.config.latent_dim} latent dimensions: the explorer shows "
                         f"at most {MAX_LATENT}")
    return model


class DecodeBody(Strict):
    model: ModelKey = "vae"
    z: list[Latent] = Field(min_length=1, max_length=MAX_LATENT)


class InterpolateBody(Strict):
    model: ModelKey = "vae"
    a: int = Field(ge=0, lt=297)
    b: int = Field(ge=0, lt=297)
    frames: int = Field(8, ge=2, le=16)  # images on each path, ends included


@router.get("/explorer/models")
def explorer_models(request: Request):
    """The two models trained here, then every vae or ae run on digits with a checkpoint, newest first."""
    runs = [f"run:{run['name']}" for run in _lab(request).runs.list()
            if run["family"] in ("vae", "ae") and run["data"] == "digits" and run["checkpoints"]
            and isinstance(run["model"].get("latent_dim"), int) and run["model"]["latent_dim"] <= MAX_LATENT]
    return {"models": ["vae", "ae", *runs]}


@router.get("/explorer/map")
def latent_map(request: Request, model: Annotated[str, Query(pattern=MODEL_KEY)] = "vae"):
    """Every digits test image's code (the first two dimensions are the map), label and pixels; for a VAE also
    each posterior's standard deviation sigma (q(z|x) = N(mu, sigma^2), mu being the code), None for an AE."""
    test, encoder = digits_test(), _explorer_model(_lab(request), model)  # trained on first use: not under no_grad
    with torch.no_grad():
        code = encoder.encode(test.x)
    codes, sigmas = (code[0], torch.exp(0.5 * code[1])) if isinstance(code, tuple) else (code, None)
    return {"latent_dim": codes.shape[1], "codes": _rounded(codes),
            "sigmas": None if sigmas is None else _rounded(sigmas),
            "labels": test.labels.tolist(), "images": _pixels(test.x)}


def _rounded(values: torch.Tensor) -> list[list[float]]:
    return [[round(v, 3) for v in row] for row in values.tolist()]


@router.post("/explorer/decode")
def decode_latent(body: DecodeBody, request: Request):
    model = _explorer_model(_lab(request), body.model)
    if len(body.z) != model.config.latent_dim:
        raise ValueError(f"z has {len(body.z)} numbers but {body.model} has {model.config.latent_dim} "
                         "latent dimensions: send one per dimension")
    with torch.no_grad():
        return {"image": _pixels(model.decode(torch.tensor([body.z])))[0]}


@router.post("/explorer/interpolate")
def interpolate(body: InterpolateBody, request: Request):
    model = _explorer_model(_lab(request), body.model)
    codes = _codes(model, digits_test().x[[body.a, body.b]])
    with torch.no_grad():
        return {method: _pixels(model.decode(interpolate_latents(codes[0], codes[1], body.frames, method)))
                for method in ("lerp", "slerp")}


HOLES_MARGIN = 0.25  # of the codes' extent, added on every side: the grid shows the empty space around them too


@functools.cache
def digits_train():
    return load_dataset("digits", "train")


@router.get("/explorer/holes")
def holes(request: Request, size: Annotated[int, Query(ge=2, le=15)] = 9,
          span: Annotated[float | None, Query(gt=0, le=20)] = None):
    """The AE and the VAE decode a size x size grid of z (top row = highest z[1]): with `span`, the same z for
    both, over [-span, span]^2; without, each over the box of its own training codes widened by HOLES_MARGIN on
    every side. `{model}_codes` counts the training codes nearest each grid point (row by row, as the images), so
    the page can mark where the model was trained. Where no code lies, the AE decodes over-inked strokes further
    from every training digit than its reconstructions (tests/test_web_api.py measures it); the VAE's KL term packs
    its codes into the prior's disc, so a z drawn from the prior decodes to a digit."""
    lab = _lab(request)
    out = {"size": size}
    for name in ("ae", "vae"):
        model = lab.models.get(name)
        codes = _codes(model, digits_train().x)[:, :2]
        if span is None:
            low, high = codes.min(0).values, codes.max(0).values
            margin = HOLES_MARGIN * (high - low)
            (x0, y0), (x1, y1) = (low - margin).tolist(), (high + margin).tolist()
        else:
            x0, y0, x1, y1 = -span, -span, span, span
        xs, ys = torch.linspace(x0, x1, size), torch.linspace(y1, y0, size)
        z = torch.stack([xs.repeat(size), ys.repeat_interleave(size)], dim=1)
        # each code goes to the grid point it is nearest, in grid steps; codes beyond the grid count nowhere
        column = ((codes[:, 0] - x0) / (x1 - x0) * (size - 1)).round()
        row = ((y1 - codes[:, 1]) / (y1 - y0) * (size - 1)).round()
        inside = (column >= 0) & (column < size) & (row >= 0) & (row < size)
        counts = torch.bincount((row * size + column)[inside].long(), minlength=size * size)
        with torch.no_grad():
            out[name] = _pixels(model.decode(z))
        out[f"{name}_box"] = [round(v, 2) for v in (x0, x1, y0, y1)]
        out[f"{name}_codes"] = counts.tolist()
    return out


# --- super-resolution --------------------------------------------------------------------------------

SR_VIEWS = ("original", "bicubic", "model")


@functools.cache
def photos_test():
    """The held-out photos' crops (`--data photos`' test split: 20 of 192x192, never seen in training)."""
    return load_dataset("photos", "test")


@router.get("/superres/options")
def superres_options(request: Request):
    """The held-out crops by name, and every run whose model upscales (it declares can_upscale) with a checkpoint,
    newest first: its stage, scale and the run it was started from when that run is in the runs folder."""
    from genlab.data.photos import TEST_PHOTOS

    lab = _lab(request)
    labels = photos_test().labels.tolist()
    crops = [f"{TEST_PHOTOS[label][1].rsplit('/', 1)[-1].split('.')[0]} {labels[:i].count(label) + 1}"
             for i, label in enumerate(labels)]
    runs = []
    for run in lab.runs.list():
        if not (FAMILIES[run["family"]].model.can_upscale and run["checkpoints"]):
            continue
        source = read_run_record(lab.runs.run_dir(run["name"])).init_from
        folder = Path(source.path).parent.parent if source is not None else None
        runs.append({"name": run["name"], "stage": run["model"]["stage"], "scale": run["model"]["scale"],
                     "started_from": folder.name if folder is not None and folder.parent == lab.runs.runs_dir.resolve()
                     else None})
    return {"crops": crops, "runs": runs}


@router.get("/superres/picture.png")
async def superres_picture(request: Request, crop: Annotated[int, Query(ge=0, lt=64)],
                           view: Annotated[str, Query(pattern="^(original|bicubic|model)$")],
                           scale: Annotated[int, Query(ge=2, le=4)] = 4,
                           run: Annotated[str | None, Query(max_length=100)] = None,
                           psnr: Annotated[str | None, Query(max_length=100)] = None,
                           alpha: Annotated[float, Query(ge=0, le=1)] = 1.0):
    """A held-out crop as a PNG: the original, its bicubic upscale from `scale` times smaller, or the upscale by
    `run` (with `psnr`: ESRGAN's network interpolation, (1 - alpha) * psnr + alpha * run, superres.interpolate_weights);
    a model's scale is its own."""
    lab = _lab(request)
    if lab.drawing.locked():
        raise Saturated(f"{DRAWING_SLOTS} pictures are being drawn, the most this lab draws at once: "
                        "try again in a moment")
    async with lab.drawing:
        picture = await run_in_threadpool(_superres_picture, lab, crop, view, scale, run, psnr, alpha)
    return Response(picture, media_type="image/png")


def _upscaler(lab, name: str):
    try:
        opened = _trained_model(lab, name)
    except FileNotFoundError:
        raise NotFound(f"run {name!r} has no checkpoint yet: let it train to its first one") from None
    if not opened.model.can_upscale:
        raise ValueError(f"run {name!r} is a {opened.record.family} run, which does not upscale: pick a superres run")
    return opened.model


def _superres_picture(lab, crop: int, view: str, scale: int, run: str | None, psnr: str | None,
                      alpha: float) -> bytes:
    from genlab.models.superres import bicubic_upscale, downsample, interpolate_weights
    from genlab.upscale import colour_upscaler, png_bytes, to_uint8

    crops = photos_test().x
    if crop >= len(crops):
        raise ValueError(f"crop {crop} is not one of the {len(crops)} held-out crops (0..{len(crops) - 1})")
    hr = crops[crop]
    if view == "original":
        out = hr
    elif view == "bicubic":
        if scale not in (2, 4):
            raise ValueError(f"scale {scale} is not one of 2, 4")
        out = bicubic_upscale(downsample(hr[None], scale), scale)[0]
    else:
        if run is None:
            raise ValueError("view=model needs a run: pick a super-resolution run")
        model = _upscaler(lab, run)
        if psnr is not None:
            model = interpolate_weights(_upscaler(lab, psnr), model, alpha)
        out = colour_upscaler(model, 3)(downsample(hr[None], model.config.scale)[0])
    return png_bytes(to_uint8(out).permute(1, 2, 0).numpy())
