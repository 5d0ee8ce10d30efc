"""The genlab lab: a FastAPI app over the library, four pages and their JSON/WebSocket API.

  /playground   GAN playground: a small GAN trained live in a worker thread, frames over /ws/playground
  /dashboard    start and stop training runs (genlab.train), stream their logs over /ws/runs/{name}
  /bench        the lesson's 3x3 pattern autoencoder and a denoising autoencoder on digits
  /explorer     a VAE's 2-D latent space (each posterior's spread, the sampling step) beside an AE's holes
  /superres     held-out photos upscaled: bicubic, a PSNR model and a GAN model side by side, network interpolation

`create_app(runs_dir)` builds the app; nothing is loaded or trained at import. Every input is validated and
bounded (a 4xx or an error message with one line, never the input echoed back), no client ever passes a file
path, and guard.Guard refuses requests to another host name (DNS rebinding), from another origin, or with a body
over 1 MB.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from genlab.data import default_data_dir
from genlab.web.benches import LabModels
from genlab.web.guard import LOOPBACK, Guard, describe, parse_json
from genlab.web.playground import VIEWS, Playground, PlaygroundSettings, PlaygroundWorker, check_points
from genlab.web.routes import DRAWING_SLOTS, answer_errors, router
from genlab.web.runs import BUNDLED_DATA, Busy, NotFound, RunManager

STATIC = Path(__file__).parent / "static"
PAGES = ("playground", "dashboard", "bench", "explorer", "superres")
MAX_MESSAGE = 100_000  # characters in one WebSocket message: 2,000 drawn points take ~40,000
MAX_PENDING = 64  # replies waiting for a client that sends faster than it reads; more are dropped


@dataclass
class Lab:
    """What the server holds while it runs (app.state.lab), made in the lifespan."""

    runs: RunManager
    models: LabModels
    data_dir: Path | None
    max_playgrounds: int
    playgrounds: int = 0
    loaded: OrderedDict = field(default_factory=OrderedDict)  # (run, checkpoint) -> model, the newest few
    loaded_lock: threading.Lock = field(default_factory=threading.Lock)
    drawing: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(DRAWING_SLOTS))  # generate.png

    def data_names(self) -> tuple[str, ...]:
        mnist = (self.data_dir or default_data_dir()) / "mnist" / "train-images-idx3-ubyte.gz"
        return (*BUNDLED_DATA, "mnist") if mnist.is_file() else BUNDLED_DATA


def create_app(runs_dir: str | Path = "runs", *, data_dir: str | Path | None = None, max_playgrounds: int = 4,
               max_runs: int = 1, warm_up: bool = False, torch_threads: int = 1,
               allowed_hosts: Collection[str] = LOOPBACK) -> FastAPI:
    """The lab app. runs_dir: the only folder runs are read from and written to. warm_up: train the bench
    and explorer models in a background thread at start. torch_threads: the lab's workers (playgrounds, a
    training run) each want one core; more threads per op only fight over a small CPU. allowed_hosts: the
    Host values the lab answers to, name:port or a bare name for any port (guard.served_hosts(host, port)
    for a server listening on host:port; the default, the loopback names, suits a lab on 127.0.0.1)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(torch_threads)
        data = Path(data_dir) if data_dir is not None else None
        lab = Lab(RunManager(Path(runs_dir), data, max_runs), LabModels(), data, max_playgrounds)
        app.state.lab = lab
        if warm_up:
            threading.Thread(target=lab.models.warm_up, name="genlab-warm-up", daemon=True).start()
        yield
        lab.runs.stop_all()

    app = FastAPI(title="genlab lab", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)

    answer_errors(app)

    @app.exception_handler(Busy)
    async def busy(request: Request, error: Busy):
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    for page in PAGES:
        app.add_api_route(f"/{page}", lambda page=page: FileResponse(STATIC / f"{page}.html"),
                          include_in_schema=False)

    app.include_router(router)
    app.add_api_websocket_route("/ws/playground", playground_socket)
    app.add_api_websocket_route("/ws/runs/{name}", run_socket)
    return app


# --- the GAN playground over a WebSocket ------------------------------------------------------------


def parse_command(message, settings: PlaygroundSettings) -> dict:
    """A client's message -> a command for the worker; ValueError with what is wrong."""
    if not isinstance(message, dict) or message.get("type") not in (
            "play", "pause", "step", "reset", "settings", "views", "points"):
        raise ValueError("a message is {\"type\": play | pause | step | reset | settings | views | points, ...}")
    kind = message["type"]
    if kind == "step":
        if message.get("which") not in ("d", "g", "both"):
            raise ValueError("step needs \"which\": \"d\", \"g\" or \"both\"")
        return {"type": "step", "which": message["which"]}
    if kind == "settings":
        changes = message.get("settings")
        if not isinstance(changes, dict):
            raise ValueError("settings needs \"settings\": {name: value, ...}")
        PlaygroundSettings.model_validate({**settings.model_dump(), **changes})  # fail here, before the worker
        return {"type": "settings", "settings": changes}
    if kind == "views":
        views = message.get("views")
        if not isinstance(views, dict) or not set(views) <= set(VIEWS) or not all(
                isinstance(v, bool) for v in views.values()):
            raise ValueError(f"views needs \"views\": {{name: true | false}} with names from {', '.join(VIEWS)}")
        return {"type": "views", "views": views}
    if kind == "points":
        return {"type": "points", "points": check_points(message.get("points"))}
    return {"type": kind}


async def _send_frames(websocket: WebSocket, worker: PlaygroundWorker) -> None:
    """Forward the worker's messages and its newest frame; the worker makes a new frame only once this one
    has gone, so frames follow what the client can take."""
    try:
        while True:
            await worker.wake.wait()
            worker.wake.clear()
            while not worker.outbox.empty():
                await websocket.send_text(json.dumps(worker.outbox.get_nowait()))
            if worker.latest_frame is not None:
                frame, worker.latest_frame = worker.latest_frame, None
                await websocket.send_text(json.dumps(frame))
                worker.frame_taken.set()
    except (WebSocketDisconnect, RuntimeError, OSError):
        worker.stop()  # the client went away mid-send; the receiving side ends the session


def read_command(text: str, settings: PlaygroundSettings) -> dict:
    """One WebSocket text message -> a command; runs in a worker thread (a message may hold 2,000 points)."""
    try:
        message = parse_json(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"messages are JSON objects: {error.msg}") from None
    return parse_command(message, settings)


async def playground_socket(websocket: WebSocket):
    lab: Lab = websocket.app.state.lab
    await websocket.accept()
    if lab.playgrounds >= lab.max_playgrounds:
        await websocket.send_text(json.dumps({"type": "error", "message": f"{lab.max_playgrounds} playgrounds are "
                                              "open, the most this server runs at once: close one and reload"}))
        await websocket.close(code=1013)
        return
    lab.playgrounds += 1
    worker = sender = None
    try:
        playground = await asyncio.to_thread(Playground, PlaygroundSettings())
        worker = PlaygroundWorker(asyncio.get_running_loop(), playground)
        worker.start()
        sender = asyncio.create_task(_send_frames(websocket, worker))
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                text = message.get("text")
                if text is None:
                    raise ValueError("messages are JSON text, not binary frames")
                if len(text) > MAX_MESSAGE:
                    raise ValueError(f"a message of more than {MAX_MESSAGE:,} characters: send fewer points")
                worker.command(await asyncio.to_thread(read_command, text, playground.settings))
            except ValueError as error:
                if worker.outbox.qsize() < MAX_PENDING:  # a client that floods bad messages is not sent a backlog
                    worker.outbox.put_nowait({"type": "error", "message": describe(error)})
                    worker.wake.set()
    except WebSocketDisconnect:
        pass
    finally:
        lab.playgrounds -= 1
        if worker is not None:
            worker.stop()  # a client that leaves stops its training at once
        if sender is not None:
            sender.cancel()


# --- a training run's stream -------------------------------------------------------------------------

STREAM_INTERVAL = 0.25  # s between a viewer's polls of the run; losses arrive every log_every steps anyway


async def run_socket(websocket: WebSocket, name: str):
    """Stream a run to one viewer: its status, new metric records and the newest sample pictures, until
    it ends. Each viewer reads the shared job on its own, so many viewers cost the trainer nothing."""
    lab: Lab = websocket.app.state.lab
    await websocket.accept()
    try:
        try:
            lab.runs.run_dir(name)
        except (NotFound, ValueError) as error:
            await websocket.send_text(json.dumps({"type": "error", "message": str(error)}))
            await websocket.close(code=1008)
            return
        sent = 0
        while True:
            info = await asyncio.to_thread(lab.runs.describe, name)
            records = info.pop("records")
            message = {"type": "run", **info, "records": records[sent:]}
            sent = len(records)
            await websocket.send_text(json.dumps(message))
            if info["status"] not in ("starting", "running", "stopping"):
                break
            await asyncio.sleep(STREAM_INTERVAL)
        await websocket.close()
    except WebSocketDisconnect:
        pass
