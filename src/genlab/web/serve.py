"""`genlab serve`: trained runs as a small HTTP service (FastAPI under uvicorn), each run under its name.

Endpoints follow what a model declares it can do (GET /models/{name} lists a model's):
  GET  /health                         "ok"; the only answer given without the token
  GET  /models, /models/{name}         what is served: family, step, data shape, endpoints, options, limits
  GET  /models/{name}/sample           n samples drawn from `seed` (truncation; sampler and steps for diffusion)
  GET  /models/{name}/interpolate      frames between the samples of two seeds, lerp or slerp
  POST /models/{name}/interpolate      frames between two uploaded images (through the model's own interpolate)
  POST /models/{name}/reconstruct      uploaded images through the autoencoder
  POST /models/{name}/encode           uploaded images' codes (a VAE's posterior means)
  POST /models/{name}/upscale          an uploaded picture, any size up to MAX_UPSCALE_PIXELS, through a
                                       super-resolution model tile by tile (genlab.upscale); `alpha` blends it with
                                       the PSNR run it was started from (ESRGAN's network interpolation)
An autoencoder samples (and interpolates between seeds) once its run has a fitted latent sampler
(`genlab fit-sampler`): it then draws codes from that mixture as the VAE draws them from its prior.
Images come as base64 PNG in a JSON body; answers are PNG (one image, or a grid) or .npy (float32 in data
space), as the client's `format` asks. No path ever comes from a request: a model is looked up by its name.

Dynamic batching: each model has one queue and one inference thread. Whenever the thread is free it takes the
first waiting request and every other one for the same operation that fits its batch, runs them as one forward
pass off the event loop, and splits the answers back: the requests that arrive while one batch runs (a few
milliseconds) make the next. (Holding a lone request 2 or 4 ms for company measured slower at 1, 10 and 50
clients.) The queue holds at most max_queue requests; one more is a 503 with Retry-After, so a flood costs a
refusal, never memory.

Reproducible: every request draws its own latents from its own seeded generator before it is batched, and
every forward pass runs at one fixed shape, batch_size rows (the last chunk padded with zeros). CPU kernels
pick their blocking by batch size (a row decoded in a batch of 1 and of 7 differs in the last bit, which now
and then flips a PNG pixel), but at one fixed shape a row's result depends on that row alone, whatever shares
its batch and wherever it sits (tests/test_serve.py checks it byte for byte). On CUDA the same holds with
cuDNN's deterministic algorithms, which the server turns on (checked on an H200). So an answer depends on the
request and the server's batch size, never on other clients. Diffusion draws noise at every step, so its
requests, and interpolations between images, run alone: their shapes come from the request alone.

Bounded: n, frames, steps, seeds, image count, bytes and pixels of each upload, the body (guard.Guard), the
queue. Host and Origin are checked as in the lab; with a token, every request but /health must carry it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gc
import hmac
import io
import warnings
from collections import deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image
from pydantic import Field

from genlab.data import MAX_SEED
from genlab.data.images import MAX_IMAGE_SIZE, image_array, picture_array
from genlab.explore import image_grid
from genlab.models.ddpm import SAMPLERS
from genlab.models.layers import MAX_TRUNCATION, interpolate_latents
from genlab.models.superres import interpolate_weights
from genlab.run import OpenRun, open_run
from genlab.upscale import png_bytes, psnr_source, upscale_picture
from genlab.web.guard import LOOPBACK, Guard
from genlab.web.routes import LabRoute, Saturated, Strict, _codes, answer_errors
from genlab.web.runs import NotFound

# Rows in every forward pass. On a CPU core an MNIST DCGAN takes 2.7 ms for 1 row, 7.5 ms for 8, 14 ms for 16: 8
# is nearly as cheap a row as any batch, and a lone request pays for 8 rows, not 16.
BATCH_SIZE = 8
MAX_QUEUE = 64  # requests waiting for one model; more are a 503 (50 clients with one request each still fit)
MAX_SAMPLES = 64  # images in one answer (n, and images uploaded at once: MAX_IMAGES)
MAX_IMAGES = 16
MAX_FRAMES = 16  # images on an interpolation path, ends included
MAX_DIFFUSION_EVALUATIONS = 6400  # n x steps network evaluations in one diffusion request: 64 samples of 100 steps
MAX_UPLOAD_BYTES = 1_000_000  # one PNG; a 1024 x 1024 photo in PNG is ~0.6 MB
MAX_BODY = 4_000_000  # bytes of a request body: base64 grows 3 bytes to 4
# Pixels of one picture to upscale: a 256x256 picture x4 took 1.7 s with a 32-channel, 8-block G on one CPU thread
# (README, genlab upscale), so one request holds its model for seconds, not minutes
MAX_UPSCALE_PIXELS = 256 * 256
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
Seed = Annotated[int, Query(ge=0, le=MAX_SEED, description="the answer for a seed is the same every time")]
Truncation = Annotated[float | None, Query(gt=0, le=MAX_TRUNCATION, allow_inf_nan=False,
                                           description="latent models: draw z from N(0, I) truncated to [-t, t]")]
ImageFormat = Annotated[Literal["png", "npy"], Query(description="png: one image or a grid; npy: float32 array "
                                                                 "(n, *data_shape) in data space")]
PictureFormat = Annotated[Literal["png", "npy"], Query(description="png: the picture; npy: its pixels, uint8 "
                                                                   "(height, width, channels)")]
PNGText = Annotated[str, Field(min_length=1, description="a PNG file, base64-encoded")]  # MAX_BODY bounds it


class Unauthorized(Exception):
    """No token, or the wrong one: a 401."""


# --- the batcher: one model's queue and its inference thread ----------------------------------------------

# operation -> (model, rows) -> one output row per input row, each depending on its own input row only
BATCHED: dict[str, Callable[[Any, torch.Tensor], torch.Tensor]] = {
    "decode": lambda model, z: model.decode(z),
    "reconstruct": lambda model, x: model.reconstruct(x),
    "encode": _codes,
}


@dataclass
class Job:
    future: asyncio.Future
    operation: str | None = None  # a BATCHED operation, with its input rows...
    rows: torch.Tensor | None = None
    alone: Callable[[], Any] | None = None  # ... or work that runs on its own


@dataclass
class Batcher:
    """One model's bounded queue, emptied by one inference thread in fixed-shape batches."""

    model: torch.nn.Module
    batch_size: int = BATCH_SIZE
    max_queue: int = MAX_QUEUE
    pending: deque[Job] = field(default_factory=deque)
    forwards: int = 0  # forward passes run so far (the tests count them)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "genlab-serve"))
    _task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, operation: str, rows: torch.Tensor) -> torch.Tensor:
        """BATCHED[operation] of rows, computed in a batch with whatever else is waiting for it."""
        return await self._enqueue(Job(asyncio.get_running_loop().create_future(), operation, rows))

    async def run_alone(self, work: Callable[[], Any]) -> Any:
        """work() in the model's thread, in its turn, on its own."""
        return await self._enqueue(Job(asyncio.get_running_loop().create_future(), alone=work))

    def _enqueue(self, job: Job) -> asyncio.Future:
        if len(self.pending) >= self.max_queue:
            raise Saturated(f"{self.max_queue} requests are waiting for this model, the most it queues: "
                            "retry in a moment")
        self.pending.append(job)
        self._wake.set()
        return job.future

    def _take(self) -> list[Job]:
        """The first job, and after it every waiting job of the same operation that fits the first's chunks."""
        first = self.pending.popleft()
        if first.operation is None:
            return [first]
        jobs, rows = [first], len(first.rows)
        capacity = -(-rows // self.batch_size) * self.batch_size  # the padding of the last chunk is free room
        for job in list(self.pending):
            if job.operation == first.operation and rows + len(job.rows) <= capacity:
                self.pending.remove(job)
                jobs.append(job)
                rows += len(job.rows)
        return jobs

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.pending:
                self._wake.clear()
                await self._wake.wait()
            jobs = self._take()
            try:
                if jobs[0].operation is None:
                    results = [await loop.run_in_executor(self._executor, _inference, jobs[0].alone)]
                else:
                    results = await loop.run_in_executor(self._executor, self._forward, jobs[0].operation,
                                                         [job.rows for job in jobs])
            except Exception as error:  # the model refused (a ValueError) or failed: every waiting client hears it
                results = [error] * len(jobs)
            for job, result in zip(jobs, results, strict=True):
                if job.future.done():  # the client went away
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _forward(self, operation: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every input's output rows: the rows stacked, padded to whole chunks of batch_size and run chunk by
        chunk, so every forward pass has the same shape (the module docstring says why)."""
        rows = torch.cat(inputs)
        padded = torch.cat([rows, rows.new_zeros(-len(rows) % self.batch_size, *rows.shape[1:])])
        with torch.inference_mode():
            out = torch.cat([BATCHED[operation](self.model, chunk) for chunk in padded.split(self.batch_size)])
        self.forwards += len(padded) // self.batch_size
        return list(out[:len(rows)].cpu().split([len(x) for x in inputs]))


def _inference(work: Callable[[], Any]) -> Any:
    with torch.inference_mode():  # grad mode is per thread: set here, in the thread that runs the model
        return work()


# --- what is served ---------------------------------------------------------------------------------------


@dataclass
class Served:
    name: str
    opened: OpenRun
    batcher: Batcher
    psnr: torch.nn.Module | None = None  # a super-resolution GAN run's PSNR end, which `alpha` blends it with
    no_alpha: str = "it does not upscale"  # why there is none

    @property
    def model(self):
        return self.opened.model

    @property
    def family(self) -> str:
        return self.opened.record.family

    @property
    def from_latents(self) -> bool:
        """Whether the model samples as decode(latents(n)): then its samples are batched and seeds interpolate.
        (Diffusion draws noise at every step: no latent to batch or to interpolate.)"""
        return self.model.can_sample and hasattr(self.model, "latents") and hasattr(self.model, "decode")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.model.config.data_shape)

    def endpoints_of(self) -> list[str]:
        model, found = self.model, []
        if model.can_sample:
            found.append("GET sample")
        if self.from_latents:
            found.append("GET interpolate")
        if model.can_interpolate:
            found.append("POST interpolate")
        if model.can_reconstruct:
            found += ["POST reconstruct", "POST encode"]
        if model.can_upscale:
            found.append("POST upscale")
        return found

    def sample_options(self) -> list[str]:
        if self.from_latents:
            return ["truncation"]
        return ["sampler", "steps"] if self.family == "ddpm" else []

    def info(self) -> dict:
        config = self.model.config
        return {"name": self.name, "family": self.family, "step": self.opened.step, "data_shape": list(self.shape),
                "latent_dim": getattr(config, "latent_dim", None), "endpoints": self.endpoints_of(),
                "sample_options": self.sample_options(), "batch_size": self.batcher.batch_size,
                "upscale_options": ["alpha"] if self.psnr is not None else [],
                "limits": {"n": MAX_SAMPLES, "images": MAX_IMAGES, "frames": MAX_FRAMES,
                           "upload_bytes": MAX_UPLOAD_BYTES, "image_side": MAX_IMAGE_SIZE,
                           "upscale_pixels": MAX_UPSCALE_PIXELS, "queue": self.batcher.max_queue}}

    def needs(self, endpoint: str) -> None:
        if endpoint not in self.endpoints_of():
            offered = ", ".join(self.endpoints_of()) or "nothing"
            unfitted = self.model.fits_sampler and endpoint.startswith("GET")
            hint = ("; it samples once its run has a fitted sampler (`genlab fit-sampler RUN`, then restart the "
                    "server)") if unfitted else ""
            raise NotFound(f"{self.name} (a {self.family}) has no {endpoint}: it offers {offered}{hint}")


def psnr_end(opened: OpenRun) -> tuple[torch.nn.Module | None, str]:
    """(the PSNR model a super-resolution run was started from, opened on its device, or None; why none): what
    `alpha` blends the run with. The start is the checkpoint the run recorded, refused if gone or changed."""
    if not opened.model.can_upscale:
        return None, "it does not upscale"
    if opened.record.init_from is None:
        return None, "it was not started from a PSNR run (genlab train superres --init-from)"
    try:
        psnr = open_run(psnr_source(opened.record, None), device=next(opened.model.parameters()).device, splits=())
    except (ValueError, OSError):
        return None, "the PSNR checkpoint it was started from is gone or changed since"
    return psnr.model, ""


def _served(request: Request, name: str) -> Served:
    served: dict[str, Served] = request.app.state.served
    if name not in served:  # the name is not repeated: it may be anything a client typed
        raise NotFound(f"no model of that name: this server serves {', '.join(served)} (GET /models)")
    return served[name]


# --- images in and out --------------------------------------------------------------------------------------


def open_png(text: str) -> Image.Image:
    """One base64 PNG from a client, opened, its pixels not yet decoded: refused unless its header says it is at
    most MAX_IMAGE_SIZE a side, so a decompression bomb is never inflated."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("an image is not base64 text: send each PNG file base64-encoded") from None
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ValueError(f"an image is {len(raw):,} bytes, over the {MAX_UPLOAD_BYTES:,} this server takes: "
                         "send it smaller")
    if not raw.startswith(PNG_SIGNATURE):
        raise ValueError("an image is not a PNG file: convert it to PNG first")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the bound below decides
        try:
            image = Image.open(io.BytesIO(raw), formats=("PNG",))
        except Image.DecompressionBombError:
            image = None
        except Exception:  # Pillow's parsers raise almost anything on a bad file
            raise ValueError("an image is not a readable PNG: send a valid PNG file") from None
    if image is None or max(image.size) > MAX_IMAGE_SIZE:
        raise ValueError(f"an image is over {MAX_IMAGE_SIZE} pixels a side, the most this server decodes: "
                         "downscale it first")
    return image


def decoded(image: Image.Image, pixels: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """pixels(image) once its pixels are decoded; a damaged PNG is one line."""
    with image:
        try:
            image.load()
            return pixels(image)
        except Exception as error:
            raise ValueError(f"an image is a damaged PNG ({type(error).__name__}): send a valid PNG file") from None


def read_png(text: str, shape: tuple[int, ...], crop: str) -> torch.Tensor:
    """One base64 PNG from a client -> (C, H, W) in [0, 1], fitted to the model's shape as its training data was
    (image_array, the run's crop). Size is judged from the header, before any pixel is decoded."""
    pixels = decoded(open_png(text), lambda image: image_array(image, shape[0], shape[-1], crop))
    return torch.tensor(pixels, dtype=torch.float32) / 255


def read_picture_png(text: str) -> np.ndarray:
    """One base64 PNG to upscale -> (H, W, C) uint8 as it is (upscale.upscale_picture's input: grey, RGB, with
    transparency), refused from its header when over MAX_UPSCALE_PIXELS."""
    image = open_png(text)
    width, height = image.size
    if width * height > MAX_UPSCALE_PIXELS:
        image.close()
        raise ValueError(f"the picture is {width}x{height}, over the {MAX_UPSCALE_PIXELS:,} pixels this server "
                         "upscales at once: send a smaller part")
    return decoded(image, picture_array)


def read_pngs(texts: list[str], served: Served) -> torch.Tensor:
    if len(served.shape) != 3 or served.shape[-1] != served.shape[-2]:
        raise ValueError(f"{served.name} works on points, not images: it takes no uploads")
    crop = served.opened.record.train.crop
    device = next(served.model.parameters()).device
    return torch.stack([read_png(text, served.shape, crop) for text in texts]).to(device)


def answer(images: torch.Tensor, format: str, nrow: int | None = None) -> Response:
    """PNG (one image as it is, several as a grid with 2-pixel gaps) or .npy of (n, *data_shape) float32."""
    if format == "npy":
        buffer = io.BytesIO()
        np.save(buffer, images.float().numpy(), allow_pickle=False)
        return Response(buffer.getvalue(), media_type="application/x-npy")
    if images.dim() != 4:
        raise ValueError("this model makes points, not images: ask for format=npy")
    picture = image_grid(images, nrow=1, padding=0) if len(images) == 1 else image_grid(images, nrow=nrow)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png")


async def answer_off_loop(images: torch.Tensor, format: str, nrow: int | None = None) -> Response:
    return await asyncio.to_thread(answer, images, format, nrow)


def _generator(served: Served, seed: int) -> torch.Generator:
    return torch.Generator(next(served.model.parameters()).device).manual_seed(seed)


# --- the endpoints ----------------------------------------------------------------------------------------

router = APIRouter(route_class=LabRoute)  # JSON bodies read off the loop by the lab's strict reader


class Images(Strict):
    images: list[PNGText] = Field(min_length=1, max_length=MAX_IMAGES)


class Picture(Strict):
    image: PNGText
    alpha: float | None = Field(None, ge=0, le=1, description="network interpolation: 0 the PSNR run this run "
                                                              "was started from (smooth), 1 this run (sharp)")


class ImagePair(Strict):
    a: PNGText
    b: PNGText
    frames: int = Field(8, ge=2, le=MAX_FRAMES)
    method: Literal["lerp", "slerp"] = "slerp"


@router.get("/models")
def list_models(request: Request):
    return {"models": [served.info() for served in request.app.state.served.values()]}


@router.get("/models/{name}")
def model_info(name: str, request: Request):
    return _served(request, name).info()


@router.get("/models/{name}/sample", responses={200: {"content": {"image/png": {}, "application/x-npy": {}}}})
async def sample(name: str, request: Request, n: Annotated[int, Query(ge=1, le=MAX_SAMPLES)] = 1, seed: Seed = 0,
                 truncation: Truncation = None,
                 sampler: Annotated[Literal[SAMPLERS] | None, Query(description="diffusion only")] = None,
                 steps: Annotated[int | None, Query(ge=1, le=MAX_DIFFUSION_EVALUATIONS,
                                                    description="diffusion only")] = None,
                 format: ImageFormat = "png"):
    """n samples drawn from `seed`: the same request returns the same bytes."""
    served = _served(request, name)
    served.needs("GET sample")
    given = {"truncation": truncation, "sampler": sampler, "steps": steps}
    if refused := [option for option, value in given.items()
                   if value is not None and option not in served.sample_options()]:
        raise ValueError(f"{' and '.join(refused)} do not apply to a {served.family}: it takes "
                         f"{', '.join(served.sample_options()) or 'no sampling options'}")
    if served.from_latents:
        z = served.model.latents(n, _generator(served, seed), truncation=truncation)
        images = await served.batcher.run("decode", z)
    else:
        config = served.model.config
        evaluations = n * (steps or config.sampling_steps or config.num_timesteps)
        if evaluations > MAX_DIFFUSION_EVALUATIONS:
            raise ValueError(f"{n} samples of that many steps are {evaluations:,} network evaluations, over the "
                             f"{MAX_DIFFUSION_EVALUATIONS:,} one request may take: ask for fewer steps "
                             "(e.g. sampler=ddim&steps=50) or fewer samples")
        generator = _generator(served, seed)
        images = await served.batcher.run_alone(
            lambda: served.model.sample(n, generator=generator, steps=steps, sampler=sampler).cpu())
    return await answer_off_loop(images, format)


@router.get("/models/{name}/interpolate", responses={200: {"content": {"image/png": {}, "application/x-npy": {}}}})
async def interpolate_seeds(name: str, request: Request, seed_a: Seed = 0, seed_b: Seed = 1,
                            frames: Annotated[int, Query(ge=2, le=MAX_FRAMES)] = 8,
                            method: Literal["lerp", "slerp"] = "slerp", truncation: Truncation = None,
                            format: ImageFormat = "png"):
    """Frames from the sample of seed_a to the sample of seed_b (each as GET sample draws it with n=1)."""
    served = _served(request, name)
    served.needs("GET interpolate")
    ends = [served.model.latents(1, _generator(served, seed), truncation=truncation)[0] for seed in (seed_a, seed_b)]
    images = await served.batcher.run("decode", interpolate_latents(*ends, frames, method))
    return await answer_off_loop(images, format, nrow=frames)


@router.post("/models/{name}/interpolate", responses={200: {"content": {"image/png": {}, "application/x-npy": {}}}})
async def interpolate_images(name: str, body: ImagePair, request: Request, format: ImageFormat = "png"):
    """Frames from image a to image b, through the model's own interpolation (its codes, lerp or slerp)."""
    served = _served(request, name)
    served.needs("POST interpolate")
    a, b = await asyncio.to_thread(read_pngs, [body.a, body.b], served)
    images = await served.batcher.run_alone(
        lambda: served.model.interpolate(a, b, steps=body.frames, method=body.method).cpu())
    return await answer_off_loop(images, format, nrow=body.frames)


@router.post("/models/{name}/reconstruct", responses={200: {"content": {"image/png": {}, "application/x-npy": {}}}})
async def reconstruct(name: str, body: Images, request: Request, format: ImageFormat = "png"):
    """Each uploaded image through the model: encoded, then decoded."""
    served = _served(request, name)
    served.needs("POST reconstruct")
    x = await asyncio.to_thread(read_pngs, body.images, served)
    return await answer_off_loop(await served.batcher.run("reconstruct", x), format)


@router.post("/models/{name}/encode", responses={200: {"content": {"application/json": {}, "application/x-npy": {}}}})
async def encode(name: str, body: Images, request: Request,
                 format: Annotated[Literal["json", "npy"], Query(description="json: lists; npy: float32")] = "json"):
    """Each uploaded image's code: (n, latent_dim) numbers, a VAE's posterior means."""
    served = _served(request, name)
    served.needs("POST encode")
    x = await asyncio.to_thread(read_pngs, body.images, served)
    codes = await served.batcher.run("encode", x)
    if format == "json":
        return {"codes": codes.tolist()}
    return await answer_off_loop(codes, "npy")


@router.post("/models/{name}/upscale", responses={200: {"content": {"image/png": {}, "application/x-npy": {}}}})
async def upscale(name: str, body: Picture, request: Request, format: PictureFormat = "png"):
    """The uploaded picture `scale` times larger, through the super-resolution model tile by tile (genlab.upscale);
    grey, colour and transparency kept. `alpha` blends the model's weights with its PSNR start's (ESRGAN)."""
    served = _served(request, name)
    served.needs("POST upscale")
    if body.alpha is not None and served.psnr is None:
        raise ValueError(f"{served.name} takes no alpha: {served.no_alpha}")
    pixels = await asyncio.to_thread(read_picture_png, body.image)

    def work() -> np.ndarray:
        model = served.model if body.alpha is None else interpolate_weights(served.psnr, served.model, body.alpha)
        return upscale_picture(model, pixels)

    big = await served.batcher.run_alone(work)  # pictures differ in size: each runs on its own
    if format == "npy":
        buffer = io.BytesIO()
        np.save(buffer, big, allow_pickle=False)
        return Response(buffer.getvalue(), media_type="application/x-npy")
    return Response(await asyncio.to_thread(png_bytes, big), media_type="image/png")


BEARER = HTTPBearer(auto_error=False, description="the server's --token, when it has one")


async def check_token(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]):
    token = request.app.state.token
    if token is not None and (credentials is None or not hmac.compare_digest(
            credentials.credentials.encode(), token.encode())):
        raise Unauthorized("this server needs its token: send the header Authorization: Bearer TOKEN")


# --- the app ----------------------------------------------------------------------------------------------


def check_batch_size(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_SAMPLES:
        raise ValueError(f"--batch must be between 1 (no batching) and {MAX_SAMPLES}, got {batch_size}")


def create_server(models: Mapping[str, OpenRun], *, batch_size: int = BATCH_SIZE, max_queue: int = MAX_QUEUE,
                  token: str | None = None, allowed_hosts: Collection[str] = LOOPBACK,
                  torch_threads: int = 1) -> FastAPI:
    """The service over opened runs, each under its name. batch_size: rows in every forward pass (1: each
    request's rows one at a time, no batching). token: when set, every request but /health sends
    `Authorization: Bearer TOKEN`. allowed_hosts: the Host values it answers to (guard.served_hosts).
    torch_threads: one inference thread per model wants one core each; more threads per op fight on a small CPU."""
    if not models:
        raise ValueError("name at least one run to serve")
    check_batch_size(batch_size)
    ends = {name: psnr_end(opened) for name, opened in models.items()}  # loaded once, with the models

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(torch_threads)
        app.state.token = token
        app.state.served = {name: Served(name, opened, Batcher(opened.model, batch_size, max_queue), *ends[name])
                            for name, opened in models.items()}
        for served in app.state.served.values():
            served.batcher.start()
        # What is loaded now (torch, the models, the app) lives as long as the server: frozen out of the garbage
        # collector's passes, whose full sweeps over it otherwise stalled every request ~300 ms now and then
        # under load (p99 at 50 clients 316-363 ms, frozen 137-158: benchmarks/serve_load.py).
        gc.collect()
        gc.freeze()
        # cuDNN's default convolutions differ in the last bit from one call to the next, even on the same batch
        # (seen on an H200); its deterministic ones are exact at one shape, as the CPU's are
        deterministic, torch.backends.cudnn.deterministic = torch.backends.cudnn.deterministic, True
        yield
        torch.backends.cudnn.deterministic = deterministic
        gc.unfreeze()
        for served in app.state.served.values():
            await served.batcher.stop()

    app = FastAPI(title="genlab serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=__doc__.split("\n\n")[1])  # /openapi.json; no docs page (it would load a CDN)
    app.add_middleware(Guard, allowed_hosts=allowed_hosts, max_body=MAX_BODY)

    answer_errors(app)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, error: Unauthorized):
        return JSONResponse({"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    def health():
        return {"status": "ok"}

    app.include_router(router, dependencies=[Depends(check_token)])
    return app
