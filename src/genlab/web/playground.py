"""The GAN playground: a small MLP GAN on 1-D or 2-D toy data, trained step by step in a worker thread,
with everything a person watches computed as one JSON frame.

`Playground` owns the model, its optimizers and the data; it steps (D only, G only, or both: the phases
and the step of genlab.models.gan's training recipe) and draws frames. `PlaygroundWorker` runs one
Playground in its own thread for one WebSocket: commands come in through a queue, frames go out through
a one-slot mailbox (the newest frame wins, so a slow client never makes the trainer wait or pile up frames).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import math
import queue
import threading
import time
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from genlab import guided
from genlab.data import toys
from genlab.metrics import MIXTURES, NUM_SAMPLES, CollapseDetector, check_discriminator, check_modes, mixture_coverage
from genlab.models import GAN, GANConfig, gan
from genlab.web.guard import describe

# data name -> (x0, x1, y0, y1) of the view; 1-D data uses only x0, x1
BOUNDS = {
    "ring": (-1.5, 1.5, -1.5, 1.5),
    "grid": (-5.5, 5.5, -5.5, 5.5),
    "moons": (-1.25, 2.25, -1.5, 2.0),
    "drawn": (-1.5, 1.5, -1.5, 1.5),
    "gaussian1d": (-2.0, 10.0, 0.0, 1.0),
}
DATA_NAMES = {"ring": "a ring of 8", "grid": "a grid of 25", "moons": "two moons", "drawn": "your drawing",
              "gaussian1d": "N(4, 1.25²)"}
MAX_DRAWN_POINTS = 2000  # a person clicks or drags; more than this is not drawing
MIN_DRAWN_POINTS = 8
DRAWN_JITTER = 0.03  # real data = a drawn point plus this much Gaussian noise, so D cannot memorise points
FRAME_INTERVAL = 1 / 30  # s: frames are computed at most this often while playing (a screen needs no more)
FRAME_SHARE = 0.05  # and only so often that computing them takes at most this share of the worker's time
COVERAGE_EVERY = 100  # steps between mode-coverage measurements (2,500 samples each, as VEEGAN/PacGAN)
# what a client turns on and off; "guided" is off at first: it costs a calibration and some thousand proposals at
# each measurement
VIEWS = ("heatmap", "arrows", "grid", "coverage", "guided")
GUIDED_SHOWN = 500  # D-guided samples drawn on the view (their coverage is measured on NUM_SAMPLES)
COLLAPSE_AFTER = 1000  # steps before the collapse detector speaks: a GAN that has barely started covers nothing yet
VIEW_SAMPLES = 480  # fakes drawn in each frame, from fixed z; 480 is divisible by every allowed pack
HEATMAP_SIZE = 40  # D's decision is drawn on a HEATMAP_SIZE x HEATMAP_SIZE lattice
NOISE_GRID = 17  # G's warped noise grid: NOISE_GRID x NOISE_GRID points of z in [-2.5, 2.5]^2
ARROWS = 120  # fakes that carry an arrow of G's gradient


class PlaygroundSettings(BaseModel):
    """Everything a person can change; bounded so that no message can make the server slow or huge."""

    model_config = ConfigDict(extra="forbid")

    data: Literal["ring", "grid", "moons", "gaussian1d", "drawn"] = "ring"
    loss: Literal["minimax", "non-saturating", "least-squares", "hinge", "wgan-gp"] = "non-saturating"
    spectral_norm: bool = False  # on D, Miyato et al.'s fix; changing it rebuilds D (G keeps its weights)
    pack: int = Field(1, ge=1, le=4)  # PacGAN; changing it rebuilds D
    minibatch_stddev: bool = False  # changing it rebuilds D
    lr_g: float = Field(1e-3, gt=0, le=0.1)
    lr_d: float = Field(1e-3, gt=0, le=0.1)
    n_critic: int = Field(1, ge=1, le=10)  # D steps per G step
    depth: int = Field(2, ge=1, le=4)  # hidden layers of G and of D; changing depth or width starts over
    width: int = Field(64, ge=8, le=256)  # 2 x 64: ~800 steps/s on one idle CPU thread (2 x 128: ~540)
    batch_size: int = Field(256, ge=16, le=1024)
    steps_per_s: float = Field(0, ge=0, le=5000)  # 0: as fast as the CPU goes; 1-5: slow motion
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _batch_fits_pack(self):
        if self.batch_size % self.pack:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of pack {self.pack}: change one")
        return self


def control_fixes(settings: PlaygroundSettings) -> tuple[str, str]:
    """(fix for mode collapse, fix for a won discriminator) in the playground's own words, its controls, and only
    those not on yet: gan.collapse_fixes says the same to the command line."""
    collapse = [fix for fix, on in (("Minibatch stddev", settings.minibatch_stddev),
                                    ("Packing 2", settings.pack > 1),
                                    ("Spectral norm on D", settings.spectral_norm),
                                    ("the wgan-gp Loss", settings.loss == "wgan-gp")) if not on]
    won = [fix for fix, on in (("Spectral norm on D", settings.spectral_norm),
                               ("a lower D learning rate", False),
                               ("the non-saturating Loss", settings.loss != "minimax")) if not on]
    return (gan.try_one_of(collapse) if collapse else "every usual fix is on already: let it train longer or widen "
            "G (Width)", gan.try_one_of(won))


LIVE = {"loss", "lr_g", "lr_d", "n_critic", "batch_size", "steps_per_s"}  # applied to the running model
REBUILD_D = {"spectral_norm", "pack", "minibatch_stddev"}  # a new D, the same G
# everything else (data, depth, width, seed) starts over


def check_points(points) -> torch.Tensor:
    """Drawn points -> (N, 2) tensor; ValueError with what to change when they are not usable."""
    if not isinstance(points, list) or not MIN_DRAWN_POINTS <= len(points) <= MAX_DRAWN_POINTS:
        count = len(points) if isinstance(points, list) else "no list of"
        raise ValueError(f"draw between {MIN_DRAWN_POINTS} and {MAX_DRAWN_POINTS} points, got {count} points")
    lo, hi = BOUNDS["drawn"][0], BOUNDS["drawn"][1]
    for index, point in enumerate(points):
        if (not isinstance(point, list) or len(point) != 2 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
                for v in point)):
            raise ValueError(f"each point must be [x, y] with both in [{lo}, {hi}]: point {index} is not")
    return torch.tensor(points, dtype=torch.float32)


def real_data(name: str, seed: int, drawn: torch.Tensor | None) -> torch.Tensor:
    """(N, 1) or (N, 2) samples of the chosen distribution."""
    if name == "drawn":
        if drawn is None:
            raise ValueError("draw some points on the canvas first, then choose 'drawn'")
        generator = torch.Generator().manual_seed(seed)
        picks = drawn[torch.randint(len(drawn), (20_000,), generator=generator)]
        return picks + DRAWN_JITTER * torch.randn(picks.shape, generator=generator)
    functions = {"ring": toys.ring, "grid": toys.grid, "moons": toys.moons, "gaussian1d": toys.gaussian1d}
    return functions[name](seed=seed)[0]


def decision_scale(loss: str) -> str:
    """How D's output at a point becomes a shade in [0, 1]: 'probability' (a logit: the sigmoid is P(real)),
    'target' (least squares: a score trained towards 1 on real and 0 on fakes, clamped to [0, 1]) or 'critic'
    (a score with no scale of its own: hinge, WGAN-GP; shown from the view's lowest to its highest)."""
    if loss in gan.PROBABILITY_LOSSES:
        return "probability"
    return "target" if loss == "least-squares" else "critic"


DECISION_WORDS = {  # decision_scale -> what the shade (2-D) or the curve's height (1-D) means
    "probability": "D's probability that x is real: 1 = real, 0 = fake",
    "target": "D's score, trained towards 1 on real and 0 on fakes (clamped to [0, 1])",
    "critic": "the critic's score (not a probability): higher = more real; from this view's lowest to its highest",
}


def legend(loss: str, dim: int) -> list[dict]:
    """What each mark on the view means for this loss and data: [{"mark", "text"}], the page's legend."""
    words = DECISION_WORDS[decision_scale(loss)]
    if dim == 2:
        return [{"mark": "real", "text": "real data"}, {"mark": "fake", "text": "G's samples"},
                {"mark": "background", "text": f"background: {words} (green = real side, purple = fake side)"},
                {"mark": "off", "text": "a sample outside the view, drawn at its edge"},
                {"mark": "grid", "text": "grey mesh: a grid of noise z as G warps it"},
                {"mark": "arrow", "text": "arrows: where G's next update pushes its samples"},
                {"mark": "guided", "text": "blue: samples drawn with D's help (rejection sampling), when shown"}]
    return [{"mark": "real", "text": "data density (histogram)"}, {"mark": "fake", "text": "density of G's samples"},
            {"mark": "curve", "text": f"D(x) curve: {words}"},
            {"mark": "off", "text": "samples left or right of the view, counted at its edge"},
            {"mark": "grid", "text": "grey lines: where G sends each z in [-3, 3]"},
            {"mark": "arrow", "text": "arrows: where G's next update pushes its samples"}]


def overview(config: GANConfig, data: str) -> dict:
    """The labels of the model-overview diagram (noise -> G -> fakes -> D <- real, D -> both losses), read from
    the model's own config so the picture always says what is training."""
    hidden = f"MLP, {len(config.hidden_dims)} x {config.hidden_dims[0]} hidden"
    extras = [name for name, on in (("spectral norm", config.spectral_norm in ("d", "both")),
                                    (f"pack {config.pack}", config.pack > 1),
                                    ("minibatch stddev", config.minibatch_stddev)) if on]
    steps = f", {config.n_critic} D steps per G step" if config.n_critic > 1 else ""
    return {"noise": f"z ~ N(0, I), {config.latent_dim}-D", "generator": f"G: {hidden}", "fake": "fake samples",
            "real": f"real samples: {DATA_NAMES[data]}", "discriminator": f"D: {', '.join([hidden, *extras])}",
            "loss": f"{config.loss} loss{steps}"}


def _flat(t: torch.Tensor, digits: int = 3) -> list[float]:
    return np.round(t.detach().cpu().numpy().astype(np.float64), digits).ravel().tolist()


def _bytes(values: torch.Tensor) -> str:
    """Values in [0, 1] as base64 bytes 0..255: a heatmap in 1.6 KB instead of 1,600 JSON numbers."""
    return base64.b64encode((values.clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes()).decode()


class Playground:
    def __init__(self, settings: PlaygroundSettings, drawn: torch.Tensor | None = None):
        self.settings = settings
        self.drawn = drawn
        self.views = {name: name != "guided" for name in VIEWS}
        self.reset()

    # --- building ------------------------------------------------------------------------------------

    def _config(self) -> GANConfig:
        s = self.settings
        return GANConfig(data_shape=(self.dim,), architecture="mlp", latent_dim=self.dim,
                         hidden_dims=(s.width,) * s.depth, loss=s.loss,
                         spectral_norm="d" if s.spectral_norm else "none",
                         pack=s.pack, minibatch_stddev=s.minibatch_stddev, n_critic=s.n_critic, lr_d=s.lr_d)

    def reset(self) -> None:
        """Fresh data, model and history from the settings' seed: a reset with the same settings replays the run."""
        s = self.settings
        self.data = real_data(s.data, s.seed, self.drawn)
        self.dim = self.data.shape[1]
        torch.manual_seed(s.seed)
        self.model = GAN(self._config())
        self.optimizers = gan.configure_optimizers(self.model, s.lr_g)
        self.rng = torch.Generator().manual_seed(s.seed)
        view_rng = torch.Generator().manual_seed(s.seed + 1)
        # fixed noise for the views, so a person watches the same fakes move
        self.view_z = torch.randn(VIEW_SAMPLES if self.dim == 2 else 4000, self.dim, generator=view_rng)
        self.coverage_z = torch.randn(NUM_SAMPLES, self.dim, generator=view_rng)
        # where D and G are read for the views: fixed for the data's bounds, so made once here, not per frame
        x0, x1, y0, y1 = BOUNDS[s.data]
        if self.dim == 2:
            xs, ys = torch.linspace(x0, x1, HEATMAP_SIZE), torch.linspace(y1, y0, HEATMAP_SIZE)  # top row first
            self.lattice = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
            axis = torch.linspace(-2.5, 2.5, NOISE_GRID)
            self.grid_z = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
        else:
            self.lattice = torch.linspace(x0, x1, 200)[:, None]
            self.grid_z = torch.linspace(-3, 3, 41)[:, None]
        self.step_count = self.d_steps = self.g_steps = 0
        self.losses: dict[str, float] = {}
        self.detector = CollapseDetector()
        self.warning: str | None = None
        self.coverage: dict | None = None
        self.guided: dict | None = None
        self.measure()

    def change(self, new: PlaygroundSettings) -> str:
        """Apply new settings; returns what happened: 'live', 'rebuilt D' or 'reset'."""
        if new.data == "drawn" and self.drawn is None:  # checked before anything changes
            raise ValueError("draw some points on the canvas first, then choose 'drawn'")
        changed = {k for k in PlaygroundSettings.model_fields if getattr(new, k) != getattr(self.settings, k)}
        self.settings = new
        if not changed or changed <= LIVE:
            self.model.config = dataclasses.replace(self.model.config, loss=new.loss, n_critic=new.n_critic,
                                                    lr_d=new.lr_d)
            for group in self.optimizers["generator"].param_groups:
                group["lr"] = new.lr_g
            for group in self.optimizers["discriminator"].param_groups:
                group["lr"] = new.lr_d
            if "loss" in changed:
                self.detector = CollapseDetector()
            return "live"
        if changed <= LIVE | REBUILD_D:
            fresh = GAN(self._config())
            fresh.generator.load_state_dict(self.model.generator.state_dict())
            optimizers = gan.configure_optimizers(fresh, new.lr_g)
            optimizers["generator"].load_state_dict(self.optimizers["generator"].state_dict())
            for group in optimizers["generator"].param_groups:
                group["lr"] = new.lr_g
            self.model, self.optimizers, self.detector = fresh, optimizers, CollapseDetector()
            return "rebuilt D"
        self.reset()
        return "reset"

    # --- stepping ------------------------------------------------------------------------------------

    def _real(self, n: int) -> torch.Tensor:
        return self.data[torch.randint(len(self.data), (n,), generator=self.rng)]

    def step(self, which: Literal["d", "g", "both"] = "both") -> None:
        """One update: 'both' is gan.training_step (n_critic D updates, then one G update); 'd' and 'g'
        are its two phases on their own (gan.discriminator_update, gan.generator_update), so a person can
        watch each player move alone."""
        s, model = self.settings, self.model
        if which == "both":
            terms = gan.training_step(model, self.optimizers, self._real(s.batch_size * s.n_critic))
            self.d_steps += s.n_critic
            self.g_steps += 1
        elif which == "d":
            d_terms, _ = gan.discriminator_update(model, self.optimizers["discriminator"], self._real(s.batch_size))
            terms = {"d_loss": d_terms["loss"], "d_real": d_terms["d_real"], "d_fake": d_terms["d_fake"]}
            self.d_steps += 1
        else:
            z = model.latents(s.batch_size)
            g_terms = gan.generator_update(model, self.optimizers["generator"], (lambda: model.generate(z),))
            terms = {"g_loss": g_terms["loss"], "d_fake": g_terms["d_fake"]}
            self.g_steps += 1
        self.losses.update({name: value.item() for name, value in terms.items()})
        self.step_count += 1
        if self.step_count % COVERAGE_EVERY == 0:
            self.measure()

    def diverged(self) -> bool:
        return not all(math.isfinite(v) for v in self.losses.values())

    @torch.no_grad()
    def measure(self) -> None:
        """Mode coverage (ring, grid) and the collapse detector's round of checks."""
        checks = []
        self.coverage = None
        fix_collapse, fix_discriminator = control_fixes(self.settings)
        if self.settings.data in MIXTURES:
            coverage = mixture_coverage(self.model.generate(self.coverage_z), self.settings.data)
            self.coverage = {"step": self.step_count, "modes": coverage.modes_covered, "of": coverage.num_modes,
                             "high_quality": round(coverage.high_quality_fraction, 4),
                             "reverse_kl": round(coverage.reverse_kl, 4) if math.isfinite(coverage.reverse_kl)
                             else None}
            if self.step_count >= COLLAPSE_AFTER:
                checks.append(check_modes(coverage, fix=fix_collapse))
        if (self.settings.loss in gan.PROBABILITY_LOSSES and "d_real" in self.losses
                and self.step_count >= COLLAPSE_AFTER):
            checks.append(check_discriminator(gan.d_probability(self.losses["d_real"]),
                                              gan.d_probability(self.losses["d_fake"]), fix=fix_discriminator))
        warning = self.detector.update(*checks) if checks else None
        self.warning = str(warning) if warning else None
        self.guided = self._guided() if self.views["guided"] and self.dim == 2 else None

    def show(self, views: dict[str, bool]) -> None:
        """Turn views on or off; D-guided samples, turned on, are drawn at once rather than at the next measure."""
        self.views.update(views)
        if views.get("guided") and self.dim == 2:
            self.guided = self._guided()

    def _guided(self) -> dict:
        """Samples drawn with D's help (genlab.guided's discriminator rejection sampling, D calibrated on the data
        against G's samples as `genlab sample --method rejection` does), their coverage beside the direct samples',
        so a person sees D take away the bridges between modes, and what it costs; or why none could be drawn."""
        try:
            drawn = guided.beside_direct(self.model, self.data, NUM_SAMPLES, seed=self.step_count)
        except ValueError as refused:  # D scores packs, not points; too few proposals kept
            return {"step": self.step_count, "refused": str(refused)}
        guided_view = {"step": self.step_count, "points": _flat(drawn.samples[:GUIDED_SHOWN]),
                       "acceptance": round(drawn.acceptance_rate, 4)}
        if self.settings.data in MIXTURES:
            coverage = mixture_coverage(drawn.samples, self.settings.data)
            guided_view.update(modes=coverage.modes_covered, of=coverage.num_modes,
                               high_quality=round(coverage.high_quality_fraction, 4))
        return guided_view

    # --- what a person sees --------------------------------------------------------------------------

    def description(self) -> dict:
        """The settings, the legend and the model overview: sent with every reset and every change of settings."""
        return {"settings": self.settings.model_dump(), "legend": legend(self.model.config.loss, self.dim),
                "model": overview(self.model.config, self.settings.data)}

    def data_message(self) -> dict:
        """The real data and the view, sent once per reset."""
        x0, x1, y0, y1 = BOUNDS[self.settings.data]
        message = {"type": "data", "data": self.settings.data, "dim": self.dim, "bounds": [x0, x1, y0, y1],
                   **self.description()}
        if self.dim == 2:
            message["real"] = _flat(self.data[:1000])
        else:
            message["real_hist"] = _flat(self._histogram(self.data[:, 0]), 4)
        return message

    def _histogram(self, values: torch.Tensor) -> torch.Tensor:
        x0, x1 = BOUNDS[self.settings.data][:2]
        counts = torch.histc(values.float(), bins=60, min=x0, max=x1)
        return counts / (counts.sum().clamp(min=1) * (x1 - x0) / 60)  # a density

    def _decision(self, x: torch.Tensor) -> torch.Tensor:
        """D's verdict in [0, 1] at points x (N, dim), as decision_scale says for the model's loss."""
        config = self.model.config
        scores = self.model.discriminate(x.repeat_interleave(config.pack, dim=0))  # `pack` copies of each point
        scale = decision_scale(config.loss)
        if scale == "probability":
            return torch.sigmoid(scores)
        if scale == "target":
            return scores.clamp(0, 1)
        return (scores - scores.min()) / (scores.max() - scores.min()).clamp(min=1e-8)

    def frame(self) -> dict:
        model, dim = self.model, self.dim
        x0, x1, y0, y1 = BOUNDS[self.settings.data]
        frame = {"type": "frame", "step": self.step_count, "d_steps": self.d_steps, "g_steps": self.g_steps,
                 "losses": {k: round(v, 5) for k, v in self.losses.items() if math.isfinite(v)},
                 "warning": self.warning}
        if self.coverage is not None and self.views["coverage"]:
            frame["coverage"] = self.coverage
        if self.guided is not None and self.views["guided"]:
            frame["guided"] = self.guided
        with torch.no_grad():
            fake = model.generate(self.view_z)
            if self.views["heatmap"]:
                decision = self._decision(self.lattice)
                frame["heatmap" if dim == 2 else "d_curve"] = _bytes(decision) if dim == 2 else _flat(decision)
            if self.views["grid"]:
                frame["noise_grid" if dim == 2 else "g_map"] = _flat(model.generate(self.grid_z))
        # samples outside the view: the page draws them at its edge and says how many there are
        below, above = (fake[:, 0] < x0), (fake[:, 0] > x1)
        if dim == 2:
            frame["fake"] = _flat(fake)
            frame["off_view"] = int((below | above | (fake[:, 1] < y0) | (fake[:, 1] > y1)).sum())
        else:
            frame["fake_hist"] = _flat(self._histogram(fake[:, 0]), 4)
            frame["fake_stats"] = {"mean": round(fake.mean().item(), 3), "std": round(fake.std().item(), 3)}
            frame["off_view"] = int((below | above).sum())
            frame["off_sides"] = [int(below.sum()), int(above.sum())]
        if self.views["arrows"]:
            # Where G's update pushes each fake: minus the gradient of G's loss with respect to the sample
            # (what G's weights follow through the chain rule).
            points = fake[:ARROWS].detach().requires_grad_(True)
            model.discriminator.requires_grad_(False)
            try:
                (grad,) = torch.autograd.grad(model.generator_loss(points)["loss"], points)
            finally:
                model.discriminator.requires_grad_(True)
            frame["arrows"] = {"at": _flat(points), "push": _flat(-grad * len(points), 4)}
        return frame


def frame_interval(frame_seconds: float) -> float:
    """Seconds between frames while playing, for frames that take frame_seconds to compute: watching costs the
    training at most FRAME_SHARE of its time, however slow a busy CPU makes the frames."""
    return max(FRAME_INTERVAL, frame_seconds / FRAME_SHARE)


class PlaygroundWorker:
    """One Playground in its own thread. `command` is called from the event loop; frames and messages
    come back through `outbox` (an asyncio.Queue) and the one-slot frame mailbox, woken by `wake`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, playground: Playground):
        self.loop = loop
        self.playground = playground
        self.commands: queue.Queue = queue.Queue(maxsize=256)
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.wake = asyncio.Event()
        self.latest_frame: dict | None = None
        self.frame_taken = threading.Event()  # the sender has taken the last frame: making another is worth it
        self.frame_taken.set()
        self.stopped = threading.Event()
        self.playing = False
        self.rate = 0.0  # steps/s over the last second
        self.frame_seconds = 0.0  # how long the last frame took to compute
        self.thread = threading.Thread(target=self._run, name="genlab-playground", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def command(self, message: dict) -> None:
        """Queue a validated command; a client that floods commands gets an error instead of a backlog."""
        try:
            self.commands.put_nowait(message)
        except queue.Full:
            raise ValueError("too many commands at once: wait for the frames to catch up") from None

    # --- worker thread -------------------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        try:
            self.loop.call_soon_threadsafe(self._deliver, message)
        except RuntimeError:  # the event loop has closed (the server is shutting down): nobody is left to see it
            self.stopped.set()

    def _deliver(self, message: dict) -> None:  # runs on the event loop
        if message["type"] == "frame":
            self.latest_frame = message
        else:
            self.outbox.put_nowait(message)
        self.wake.set()

    def _post_frame(self) -> None:
        self.frame_taken.clear()
        start = time.perf_counter()
        frame = self.playground.frame()
        self.frame_seconds = time.perf_counter() - start
        frame["playing"] = self.playing
        frame["steps_per_s"] = round(self.rate, 1)
        self._send(frame)

    def _apply(self, message: dict) -> None:
        kind = message["type"]
        pg = self.playground
        if kind == "play":
            self.playing = True
        elif kind == "pause":
            self.playing = False
        elif kind == "step":
            self.playing = False
            pg.step(message["which"])
        elif kind == "reset":
            pg.reset()
            self._send(pg.data_message())
        elif kind == "views":
            pg.show(message["views"])
        elif kind == "points":
            pg.drawn = message["points"]
            pg.settings = pg.settings.model_copy(update={"data": "drawn"})
            pg.reset()
            self._send(pg.data_message())
        elif kind == "settings":
            # merged onto the settings as they are now, so quick successive changes all land
            new = PlaygroundSettings.model_validate({**pg.settings.model_dump(), **message["settings"]})
            how = pg.change(new)
            if how == "reset":
                self._send(pg.data_message())
            self._send({"type": "changed", "how": how, **pg.description()})

    def _run(self) -> None:
        # torch's thread count is the app's (create_app sets 1: these nets are tiny, one thread is fastest)
        try:
            self._loop()
        except Exception as error:  # a bug, not a user error: say so on the page instead of going quiet
            self._send({"type": "error", "message": f"the playground stopped ({type(error).__name__}: {error}): "
                        "reload the page"})
            raise

    def _loop(self) -> None:
        pg = self.playground
        self._send(pg.data_message())
        dirty = True  # the screen is behind the model
        last_frame = next_step = rate_start = time.perf_counter()
        rate_steps = 0
        while not self.stopped.is_set():
            pace = pg.settings.steps_per_s
            now = time.perf_counter()
            if self.playing:
                timeout = max(0.0, next_step - now) if pace else 0.0
            else:
                timeout = 0.01 if dirty else 0.1  # paused: wait for a command (or for the sender to take a frame)
            try:
                message = self.commands.get(timeout=timeout) if timeout > 0 else self.commands.get_nowait()
            except queue.Empty:
                message = None
            if message is not None:
                try:
                    self._apply(message)
                except ValueError as error:
                    self._send({"type": "error", "message": describe(error)})
                dirty = True
            elif self.playing and (not pace or time.perf_counter() >= next_step):
                pg.step("both")
                rate_steps += 1
                if pace:  # after a pause, start counting from now instead of catching up in a burst
                    next_step = max(next_step, time.perf_counter() - 0.25) + 1 / pace
                dirty = True
            if pg.diverged():
                self.playing = False
                pg.losses = {}
                self._send({"type": "error", "message": "training diverged (a loss is NaN or infinite): "
                            "lower the learning rates and press reset"})
            now = time.perf_counter()
            if now - rate_start >= 1.0:
                self.rate, rate_start, rate_steps = rate_steps / (now - rate_start), now, 0
            due = not self.playing or now - last_frame >= frame_interval(self.frame_seconds)
            if dirty and self.frame_taken.is_set() and due:
                self._post_frame()
                dirty, last_frame = False, now
