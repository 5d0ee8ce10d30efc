"""The lesson's examples, runnable, on the same API as everything else: each makes a run folder with
`create_run`, trains it with `train`, then shows what the model learned."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table
from torch import nn

from genlab.checkpoint import atomic_write_bytes
from genlab.data import Batches, default_data_dir, load_dataset
from genlab.data.images import MNIST_SHA256
from genlab.data.toys import PATTERNS, gaussian1d
from genlab.explore import (
    TEXT_SIZE,
    _figure,
    _font,
    _save_figure,
    decoded_latent_grid,
    labelled_rows,
    save_interpolation,
    save_latent_grid,
    save_latent_map,
    titled_png,
)
from genlab.models import progan
from genlab.models.gan import GAN, LOSSES, GANConfig, configure_optimizers, training_step
from genlab.run import create_run, open_run
from genlab.train import TrainConfig, limited_threads, train


def _fresh_run(folder: Path, family: str, config: TrainConfig, model_settings: dict, data_dir) -> Path:
    """Lessons always start over, so each run folder is replaced."""
    if (folder / "config.json").exists():
        shutil.rmtree(folder)
    return create_run(folder, family, config, model_settings, data_dir)


# One convention for a 3x3 pattern in the terminal, the PNG and the lab's bench: a cell that is on (1) is ink,
# dark; off (0) is paper, light; every cell has a border, so an off cell is still a cell.
ON, OFF, UNSURE = "■", "□", "▒"  # the terminal's glyphs; UNSURE: a reconstructed value between 0.25 and 0.75
CONVENTION = f"{ON} = on (dark ink), {OFF} = off (light), {UNSURE} = unsure (between 0.25 and 0.75)"


def _cells(pattern: torch.Tensor) -> str:
    """A 3x3 pattern as three rows of glyphs; a grey that is neither near 0 nor near 1 shows as unsure."""
    def glyph(v: float) -> str:
        return ON if v > 0.75 else OFF if v < 0.25 else UNSURE
    return "\n".join("".join(map(glyph, row)) for row in pattern.view(3, 3).tolist())


# The pattern sheet (autoencoder.png): per pattern, a column of its name, the input, its 3-number code and the
# reconstruction, PATTERNS_PER_BAND columns a band, the row names at the left.
SHEET_CELL = 24  # pixels per pattern cell
SHEET_COLUMN = 150  # pixels per pattern: room for the longest name and the code
SHEET_LABELS = 130  # pixels for the row names, "reconstruction" the longest
PATTERNS_PER_BAND = 5
SHEET_ROWS = {"name": TEXT_SIZE + 10, "input": 3 * SHEET_CELL + 10, "code": TEXT_SIZE + 10,
              "reconstruction": 3 * SHEET_CELL + 10}  # row -> height in pixels
SHEET_BAND = sum(SHEET_ROWS.values()) + 16  # a band's height, with the gap under it
INK, BORDER = (0, 0, 0), (150, 150, 150)


def pattern_box(index: int, row: str) -> tuple[int, int]:
    """(left, top) in the sheet (under its title band) of pattern `index`'s `row`: its 3x3 cells for "input" and
    "reconstruction", its text for "name" and "code"."""
    band, column = divmod(index, PATTERNS_PER_BAND)
    rows = list(SHEET_ROWS)
    above = sum(SHEET_ROWS[name] for name in rows[:rows.index(row)])
    return SHEET_LABELS + column * SHEET_COLUMN + 10, band * SHEET_BAND + above + 5


def pattern_sheet(names: list[str], inputs: torch.Tensor, codes: torch.Tensor, reconstructions: torch.Tensor,
                  title: str) -> bytes:
    """The autoencoder lesson's picture as PNG bytes: for each pattern its name, the input, the code and the
    reconstruction, each cell grey by its value (on = dark) with a border, so an unsure cell looks unsure."""
    bands = math.ceil(len(names) / PATTERNS_PER_BAND)
    sheet = Image.new("RGB", (SHEET_LABELS + PATTERNS_PER_BAND * SHEET_COLUMN, bands * SHEET_BAND), "white")
    draw, font = ImageDraw.Draw(sheet), _font()
    for band in range(bands):
        for row in ("input", "code", "reconstruction"):
            _, top = pattern_box(band * PATTERNS_PER_BAND, row)
            middle = top + (3 * SHEET_CELL if row != "code" else TEXT_SIZE) / 2
            draw.text((10, middle), row, fill=INK, font=font, anchor="lm")
    for index, (name, pattern, code, rec) in enumerate(zip(names, inputs, codes, reconstructions, strict=True)):
        draw.text(pattern_box(index, "name"), name, fill=INK, font=font)
        draw.text(pattern_box(index, "code"), " ".join(f"{v:+.2f}" for v in code.tolist()), fill=INK, font=font)
        for row, values in (("input", pattern), ("reconstruction", rec)):
            left, top = pattern_box(index, row)
            for cell, value in enumerate(values.reshape(9).clamp(0, 1).tolist()):
                paper = round(255 * (1 - value))  # on (1) = ink (0, black), off (0) = paper (255, white)
                x, y = left + (cell % 3) * SHEET_CELL, top + (cell // 3) * SHEET_CELL
                draw.rectangle((x, y, x + SHEET_CELL, y + SHEET_CELL), fill=(paper,) * 3, outline=BORDER)
    return titled_png(sheet, title, "rows for each pattern: name, input, code (its 3 numbers), reconstruction; "
                                    "a dark cell is on (1), a light cell off (0), greys in between")


def autoencoder(out: Path, console: Console, data_dir=None) -> Path:
    """Squeeze the 3x3 patterns into 3 numbers (tanh code) and back; print and save every pattern."""
    console.print("[bold]Lesson: an autoencoder squeezes 3x3 patterns into 3 numbers and back.[/]")
    config = TrainConfig(data="patterns", steps=3000, batch_size=len(PATTERNS), lr=3e-3, log_every=500,
                         sample_every=3000, checkpoint_every=3000, keep_checkpoints=1)
    run = _fresh_run(out / "autoencoder", "ae", config,
                     {"latent_dim": 3, "code_activation": "tanh", "hidden_dims": (32,)}, data_dir)
    train(run, device="cpu", on_log=lambda r: console.print(f"step {r['step']:5d}  reconstruction loss "
                                                            f"{r['reconstruction']:.4f}"))
    model = open_run(run, splits=()).model
    x = load_dataset("patterns").x
    with torch.no_grad():
        codes, reconstructions = model.encode(x), model.reconstruct(x)
    table = Table("pattern", "name", "reconstruction", "cells right", caption=CONVENTION)
    table.add_column("3-number code", no_wrap=True)
    for name, pattern, code, rec in zip(PATTERNS, x, codes, reconstructions, strict=True):
        right = int(((rec > 0.5) == (pattern > 0.5)).sum())
        table.add_row(_cells(pattern), name, _cells(rec), f"{right}/9", " ".join(f"{v:+.2f}" for v in code.tolist()))
    console.print(table)
    exact = int(((reconstructions > 0.5) == (x > 0.5)).flatten(1).all(1).sum())
    console.print(f"{exact} of {len(x)} patterns come back exactly from 3 numbers.")
    picture = out / "autoencoder.png"
    atomic_write_bytes(picture, pattern_sheet(list(PATTERNS), x, codes, reconstructions,
                                              f"autoencoder lesson, step {config.steps}: 15 patterns, each squeezed "
                                              "into 3 numbers and back"))
    console.print(f"saved {picture} (each pattern: its name, the input, the 3-number code, the reconstruction; "
                  "dark = on)")
    return picture


def _mnist_present(data_dir) -> bool:
    folder = Path(data_dir or default_data_dir()) / "mnist"
    return all((folder / f"{name}.gz").is_file() for name in MNIST_SHA256)


LATENT_SPAN = 2.5  # the decoded grid covers z in [-2.5, 2.5]^2: where the prior N(0, I) puts 98.8% of its mass


def vae(out: Path, console: Console, data_dir=None) -> Path:
    """A VAE with a 2-D latent on digits (MNIST when present): watch the terms, then map the latent space."""
    data = "mnist" if _mnist_present(data_dir) else "digits"
    console.print(f"[bold]Lesson: a VAE with a 2-D latent space on {data}.[/] The loss is reconstruction "
                  "(-log p(x|z)) plus KL(q(z|x) || N(0, I)), which keeps the codes near the prior.")
    steps = 3000 if data == "mnist" else 2000
    config = TrainConfig(data=data, steps=steps, batch_size=128, lr=1e-3, log_every=200,
                         sample_every=steps, checkpoint_every=steps, keep_checkpoints=1)
    run = _fresh_run(out / "vae", "vae", config, {"latent_dim": 2, "architecture": "mlp", "hidden_dims": (256,)},
                     data_dir)
    train(run, device="cpu", data_dir=data_dir,
          on_log=lambda r: console.print(f"step {r['step']:5d}  reconstruction {r['reconstruction']:8.3f}  "
                                         f"KL {r['kl']:6.3f}  (nats per image)"))
    model = open_run(run, splits=()).model
    test = load_dataset(data, "test", data_dir=data_dir)
    with torch.no_grad():
        mu, _ = model.encode(test.x)
    map_path = save_latent_map(mu, test.labels, out / "vae-latent-map.png",
                               f"VAE lesson, step {steps}: the {data} test set's codes (posterior means)")
    grid_path = save_latent_grid(decoded_latent_grid(model.decode, span=LATENT_SPAN), LATENT_SPAN,
                                 out / "vae-latent-grid.png", f"VAE lesson, step {steps}: decodings of a grid of z")
    first, second = (int(torch.nonzero(test.labels == digit)[0]) for digit in (1, 7))
    pair = test.x[[first, second]]
    strip_path = save_interpolation(pair, {m: model.interpolate(pair[0], pair[1], 10, m) for m in ("lerp", "slerp")},
                                    out / "vae-interpolation.png",
                                    f"VAE lesson on {data}, step {steps}: a 1 turning into a 7")
    console.print(f"saved {map_path} (codes of the test set, coloured by digit), {grid_path} (decoded grid "
                  f"over z in [-{LATENT_SPAN:g}, {LATENT_SPAN:g}]^2) and {strip_path} (a 1 turning into a 7: "
                  "lerp row, slerp row)")
    return map_path


# --- GAN, part 1: the duel of G(z) = w z + b and a logistic D on 1-D Gaussian data ---------------------

DATA_MEAN, DATA_STD = 4.0, 1.25  # genlab.data.toys.gaussian1d's N(4, 1.25^2)
DUEL_STEPS, DUEL_BATCH = 3000, 256
DUEL_LR_G, DUEL_LR_D = 0.02, 0.1  # Adam; D learns faster so that G always faces a D that is nearly optimal
DUEL_FRAMES = (0, 100, 300, 700, 1500, 3000)  # steps drawn in gan-duel.png
D_LOSS, G_LOSS = LOSSES["non-saturating"]  # G maximises log D(G(z)): strong gradients while D rejects its samples


class LinearGenerator(nn.Module):
    """G(z) = w z + b with z ~ N(0, 1), so G's samples follow N(b, w^2) exactly. z is symmetric, so w and
    -w give the same distribution: |w| is the generated std and b the mean."""

    def __init__(self, w: float = 0.3, b: float = 0.0):  # starts narrow at 0, far from N(4, 1.25^2)
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.w * z + self.b


class QuadraticDiscriminator(nn.Module):
    """D(x) = sigmoid(a x^2 + c x + d): logistic regression on the features (x, x^2); forward returns the logit.

    Why x^2: a linear logit c x + d can only say "real data lie further right (or left)", i.e. compare means; against
    fakes with the right mean and the wrong spread it has nothing to say, so w would never learn the std.
    The quadratic is the exact form of the optimal D between two Gaussians: D*(x) = p_data / (p_data + p_G),
    whose logit log p_data(x) - log p_G(x) is a quadratic in x (Goodfellow et al. 2014, prop. 1)."""

    def __init__(self):
        super().__init__()
        self.a, self.c, self.d = (nn.Parameter(torch.tensor(0.0)) for _ in range(3))  # D = 1/2 everywhere

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x.pow(2) + self.c * x + self.d


def duel_d_loss(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))] averaged over the batch; fake must come detached."""
    return D_LOSS(discriminator(real), discriminator(fake))


def duel_g_loss(discriminator: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss, -log D(G(z)) averaged over the batch."""
    return G_LOSS(discriminator(fake))


@dataclass(frozen=True)
class DuelResult:
    w: float  # |w| after training: the generated std (the sign of w does not matter, z is symmetric)
    b: float  # the generated mean
    picture: Path


def _normal_pdf(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def _frozen_copy(discriminator: QuadraticDiscriminator) -> QuadraticDiscriminator:
    """A snapshot of D for the frames."""
    copy = QuadraticDiscriminator().requires_grad_(False)
    copy.load_state_dict(discriminator.state_dict())
    return copy


def _save_duel_frames(frames: list[tuple[int, float, float, QuadraticDiscriminator]], path: Path) -> Path:
    """One panel per frame: the data's density, G's density N(b, w^2) (both exact) and D's curve (right axis)."""
    plt = _figure()
    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames), 3), sharey=True)
    x = torch.linspace(-2, 9, 400)
    for ax, (step, w, b, discriminator) in zip(axes, frames, strict=True):
        ax.plot(x, _normal_pdf(x, DATA_MEAN, DATA_STD), color="0.4", label="data")
        ax.plot(x, _normal_pdf(x, b, max(w, 1e-3)), color="tab:blue", label="G")
        ax.set_ylim(0, 1)
        ax.set_title(f"step {step}: |w| {w:.2f}, b {b:.2f}", fontsize=9)
        ax.set_xlabel("x")
        d_axis = ax.twinx()
        with torch.no_grad():
            d_axis.plot(x, torch.sigmoid(discriminator(x)), color="tab:red", linestyle="--", label="D(x)")
        d_axis.set_ylim(0, 1.02)
        if ax is not axes[-1]:
            d_axis.set_yticklabels([])
    axes[0].set_ylabel("density")
    d_axis.set_ylabel("D(x)", color="tab:red")
    axes[0].legend(loc="upper left", fontsize=8)
    d_axis.legend(loc="upper right", fontsize=8)
    return _save_figure(fig, path, f"GAN lesson, the duel: G(z) = w z + b against D on N({DATA_MEAN:g}, {DATA_STD:g}²)",
                        f"panels at steps {', '.join(str(frame[0]) for frame in frames)}; data density: grey line; "
                        "G's density: blue line; D(x): red dashed line, right axis")


def gan_duel(out: Path, console: Console, seed: int = 0) -> DuelResult:
    """Train G(z) = w z + b against D(x) = sigmoid(a x^2 + c x + d) on N(4, 1.25^2); print the duel, save frames."""
    console.print("[bold]Part 1: the duel.[/] G(z) = w·z + b with z ~ N(0, 1) makes N(b, w²); "
                  "D(x) = sigmoid(a·x² + c·x + d) says how real x looks. "
                  f"The data: N({DATA_MEAN:g}, {DATA_STD:g}²).")
    data, _ = gaussian1d(seed=seed, mean=DATA_MEAN, std=DATA_STD)  # (10000, 1)
    data = data[:, 0]
    rng = torch.Generator().manual_seed(seed)
    generator, discriminator = LinearGenerator(), QuadraticDiscriminator()
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=DUEL_LR_G, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=DUEL_LR_D, betas=(0.5, 0.999))
    # With constant rates the two players keep circling the equilibrium and w, b jitter by ~0.1 around
    # the answer; decaying both rates linearly to 0 lets the circles shrink onto it.
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1 - s / DUEL_STEPS) for o in (g_optimizer, d_optimizer)]
    table = Table("step", "D(real)", "D(fake)", "D loss", "G loss", "|w|", "b", title="G against D, batch of 256")
    frames = [(0, abs(generator.w.item()), generator.b.item(), _frozen_copy(discriminator))]
    for step in range(1, DUEL_STEPS + 1):
        real = data[torch.randint(len(data), (DUEL_BATCH,), generator=rng)]
        # (1) update D on real and detached fakes: maximise log D(x) + log(1 - D(G(z))); no gradient reaches G
        fake = generator(torch.randn(DUEL_BATCH, generator=rng))
        d_loss = duel_d_loss(discriminator, real, fake.detach())
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()
        # (2) update G: make the updated D call its samples real (non-saturating: minimise -log D(G(z)))
        g_loss = duel_g_loss(discriminator, fake)
        g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()  # also leaves gradients in D, which D's zero_grad clears before its next step
        g_optimizer.step()
        for schedule in schedules:
            schedule.step()
        if step == 1 or step % 300 == 0:
            with torch.no_grad():
                d_real, d_fake = torch.sigmoid(discriminator(real)).mean(), torch.sigmoid(discriminator(fake)).mean()
            table.add_row(str(step), f"{d_real:.3f}", f"{d_fake:.3f}", f"{d_loss:.4f}", f"{g_loss:.4f}",
                          f"{abs(generator.w.item()):.3f}", f"{generator.b.item():.3f}")
        if step in DUEL_FRAMES:
            frames.append((step, abs(generator.w.item()), generator.b.item(), _frozen_copy(discriminator)))
    console.print(table)
    w, b = abs(generator.w.item()), generator.b.item()
    console.print(f"G(z) = {generator.w.item():.3f}·z + {b:.3f}: |w| = {w:.3f} against the data's std {DATA_STD:.2f} "
                  f"({w - DATA_STD:+.3f}), b = {b:.3f} against its mean {DATA_MEAN:.2f} ({b - DATA_MEAN:+.3f}). "
                  "At the equilibrium D(x) = 1/2 everywhere: it can no longer tell, so G's loss is log 2 ≈ 0.693.")
    picture = _save_duel_frames(frames, out / "gan-duel.png")
    console.print(f"saved {picture} (data density grey, G's density blue, D's curve red, at steps "
                  f"{', '.join(map(str, DUEL_FRAMES))})")
    return DuelResult(w=w, b=b, picture=picture)


# --- GAN, part 2: a two-peaked target; the vanilla GAN loses a peak, spectral norm and PacGAN keep both -----

PEAK_CENTRES = (-4.0, 4.0)  # 0.5 N(-4, 0.25^2) + 0.5 N(4, 0.25^2): far enough apart that a vanilla GAN settles on one
PEAK_STD = 0.25
PEAK_WINDOW = 1.0  # a sample belongs to a peak when it lies within +-1 (4 stds) of its centre
KEPT_SHARE = 0.2  # a peak is kept when it holds at least 20% of the samples (its due is 50%)
PEAKS_STEPS, PEAKS_BATCH, PEAKS_LR, PEAKS_LR_D = 2000, 256, 1e-3, 4e-3
PEAKS_SAMPLES = 10_000
# All models: latent_dim 1, G and D MLPs of widths (16, 16), non-saturating loss, Adam (betas 0.5, 0.999) with
# D's rate 4x G's (the two time-scale rule of Heusel et al. 2017). They differ only in the named fix:
# - spectral normalisation of D (Miyato et al. 2018), the lesson's fix, bounds how sharply D can change, so
#   it cannot build the cliff between the peaks that lets G's gradients herd every sample onto one of them;
# - PacGAN (Lin et al. 2018) packs 4 samples into each of D's inputs: packs that never split between the
#   peaks, as real packs usually do, give a G on one peak away.
# Measured over seeds 0-9 (a peak kept = at least 20% of the samples): the vanilla GAN lost a peak 9 times;
# spectral norm kept both 10 times; PacGAN 10 times.
# - WGAN-GP (Gulrajani et al. 2017; lambda = 10 and their 5 critic steps per G step), the third fix the lesson names,
#   is shown as it does here, not as it does in the papers: within 2,000 steps it missed both peaks (seed 0: every
#   sample between them), kept both once in 3 seeds with latent_dim 4. Its critic estimates the earth mover's
#   distance, and with two equal peaks every point between them is on average equally far from the data
#   (E|X - c| = 4 for any c in [-4, 4]), so a G gathered between the peaks gets almost no push to split.
PEAK_MODELS = {
    "vanilla GAN": {},
    "spectral norm (D)": {"spectral_norm": "d"},
    "PacGAN (pack=4)": {"pack": 4},
    "WGAN-GP (n_critic=5)": {"loss": "wgan-gp", "n_critic": 5},
}


def two_peaks(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n samples, (n, 1), of the mixture 0.5 N(-4, 0.25^2) + 0.5 N(4, 0.25^2)."""
    centres = torch.tensor(PEAK_CENTRES)[torch.randint(len(PEAK_CENTRES), (n,), generator=generator)]
    return (centres + PEAK_STD * torch.randn(n, generator=generator)).unsqueeze(1)


def two_peaks_pdf(x: torch.Tensor) -> torch.Tensor:
    return sum(_normal_pdf(x, centre, PEAK_STD) for centre in PEAK_CENTRES) / len(PEAK_CENTRES)


def peak_shares(samples: torch.Tensor) -> tuple[float, float]:
    """(N, 1) samples -> the fraction within PEAK_WINDOW of the left centre and of the right one."""
    x = samples.reshape(-1)
    left, right = (float(((x - centre).abs() <= PEAK_WINDOW).float().mean()) for centre in PEAK_CENTRES)
    return left, right


def peak_verdict(shares: tuple[float, float]) -> str:
    kept = sum(share >= KEPT_SHARE for share in shares)
    return {2: "keeps both peaks", 1: "lost a peak (mode collapse)", 0: "lost both peaks (it missed the target)"}[kept]


@dataclass(frozen=True)
class PeaksResult:
    name: str
    shares: tuple[float, float]  # of PEAKS_SAMPLES generated samples, near the left and the right centre
    verdict: str
    samples: torch.Tensor  # (PEAKS_SAMPLES, 1)


def train_two_peaks(name: str, settings: dict, console: Console, seed: int = 0) -> PeaksResult:
    """genlab's GAN trained by genlab's two-phase step (gan.training_step) on the two peaks; prints the shares."""
    torch.manual_seed(seed)  # G's and D's initial weights and the latents z that training_step draws
    data_rng = torch.Generator().manual_seed(seed + 1)
    model = GAN(GANConfig(data_shape=(1,), architecture="mlp",
                          **{"latent_dim": 1, "hidden_dims": (16, 16), "loss": "non-saturating", "lr_d": PEAKS_LR_D,
                             **settings}))
    optimizers = configure_optimizers(model, PEAKS_LR)  # G's rate; D's is lr_d, set above
    for step in range(1, PEAKS_STEPS + 1):
        terms = training_step(model, optimizers, two_peaks(PEAKS_BATCH, data_rng))
        if step % 500 == 0:
            left, right = peak_shares(model.sample(PEAKS_SAMPLES, torch.Generator().manual_seed(0)))
            console.print(f"  {name:15s} step {step:4d}  losses D {terms['d_loss']:.3f} G {terms['g_loss']:.3f}  "
                          f"left {100 * left:5.1f}%  right {100 * right:5.1f}%")
    samples = model.sample(PEAKS_SAMPLES, torch.Generator().manual_seed(0))
    shares = peak_shares(samples)
    return PeaksResult(name=name, shares=shares, verdict=peak_verdict(shares), samples=samples)


@dataclass(frozen=True)
class TwoPeaksResult:
    models: list[PeaksResult]
    picture: Path


def _save_two_peaks(results: list[PeaksResult], path: Path) -> Path:
    plt = _figure()
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3), sharey=True)
    x = torch.linspace(-7, 7, 600)
    for ax, result in zip(axes, results, strict=True):
        ax.plot(x, two_peaks_pdf(x), color="0.3", label="target", zorder=3)  # over the histogram: always seen
        ax.hist(result.samples[:, 0].clamp(-7, 7).numpy(), bins=140, range=(-7, 7), density=True,
                color="tab:blue", alpha=0.6, label="G's samples")
        left, right = result.shares
        ax.set_title(f"{result.name}: left {100 * left:.1f}%, right {100 * right:.1f}%", fontsize=10)
        ax.set_xlabel("x")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)
    return _save_figure(fig, path, f"GAN lesson, two peaks: {PEAKS_STEPS} steps of each model, "
                                   f"{PEAKS_SAMPLES:,} samples",
                        f"panels: {', '.join(result.name for result in results)}; target density: grey line; "
                        "G's samples: blue histogram; each title gives the share of samples near each peak")


def gan_two_peaks(out: Path, console: Console, seed: int = 0) -> TwoPeaksResult:
    """The vanilla GAN and three fixes on a two-peaked target; the verdicts come from the measured peak shares."""
    console.print(f"\n[bold]Part 2: two peaks.[/] Target 0.5 N({PEAK_CENTRES[0]:g}, {PEAK_STD:g}²) + "
                  f"0.5 N({PEAK_CENTRES[1]:g}, {PEAK_STD:g}²). genlab's GAN (G and D: MLPs of widths 16, 16; "
                  f"latent_dim 1; non-saturating loss), {PEAKS_STEPS} steps of batch {PEAKS_BATCH}. The fixes: "
                  "spectral normalisation of D, which keeps D from building the cliff that herds every sample onto "
                  "one peak; PacGAN, where D judges packs of 4 samples, so a G on one peak is easy to spot; and "
                  "WGAN-GP, whose critic scores distance to the data instead of a probability. Between two equal "
                  "peaks every point is on average equally far from the data, so watch whether its G splits in "
                  "time. "
                  "A peak's share: "
                  f"samples within ±{PEAK_WINDOW:g} of its centre, of {PEAKS_SAMPLES:,}; each is due 50%.")
    results = [train_two_peaks(name, settings, console, seed) for name, settings in PEAK_MODELS.items()]
    for result in results:
        left, right = result.shares
        console.print(f"{result.name}: left peak {100 * left:.1f}%, right peak {100 * right:.1f}% -> {result.verdict}")
    picture = _save_two_peaks(results, out / "gan-two-peaks.png")
    console.print(f"saved {picture} (target density and each model's samples)")
    return TwoPeaksResult(models=results, picture=picture)


def gan(out: Path, console: Console, data_dir=None) -> Path:
    """G(z) = w z + b against a logistic D on N(4, 1.25^2), then the vanilla GAN and three fixes on two peaks.
    data_dir is unused: both data sets are generated."""
    console.print("[bold]Lesson: a GAN is a duel.[/] D learns to tell real from generated samples; G learns "
                  "to make samples D calls real. Each step: (1) update D on real and detached fakes, (2) update G.")
    out.mkdir(parents=True, exist_ok=True)
    with limited_threads(1):  # two-parameter G, tiny D: see SMALL_MODEL_PARAMETERS
        duel = gan_duel(out, console)
        gan_two_peaks(out, console)
    return duel.picture


# --- faces: progressive growing on the 100 LFW faces, 4x4 -> 8x8 -> 16x16 ----------------------------------

FACES_SIZE = 16  # progan.resolutions(16, 16): stages 4, 8 and 16 px
# A small net so the lesson fits in 30 CPU-s on one thread: widths 16 at every stage (progan.widths). Stage 0
# trains stable_steps; stages 8 and 16 fade in over fade_steps, then train stable_steps at alpha 1. Measured with
# one thread: about 0.007 / 0.013 / 0.028 CPU-s a step at 4 / 8 / 16 px (batch 16). 300 stable steps, not 200: the
# 4x4 samples were further from the real faces' contrast after 200 (2.65x their detail against 2.04x after 300)
FACES_MODEL = {"max_channels": 16, "fade_steps": 100, "stable_steps": 300}
FACES_BATCH, FACES_LR = 16, 1e-3  # lr: the paper's, progan's default
FACES_SHOWN = 8  # samples and real faces a row in faces.png
FACES_TILE = 5  # each 16 px tile drawn 5x larger
# G's detail against the real faces' (see `detail`): under 0.7x the samples look blurry, over 1.4x noisy
BLURRY_BELOW, NOISY_ABOVE = 0.7, 1.4


@dataclass(frozen=True)
class FacesStage:
    resolution: tuple[int, int]  # (h, w) this stage trained at
    first_step: int  # steps are counted from 1
    last_step: int
    fade_steps: int  # the first fade_steps of the stage faded it in (0 for the first stage)
    alpha: float  # training_step's alpha at the stage's last step: 1 once the fade is over
    cpu_seconds: float  # measured: CPU time of this process over the stage's steps
    samples: torch.Tensor  # (FACES_SHOWN, 1, 16, 16) in [0, 1]: the EMA G at the stage's end, upsampled (nearest)
    reals: torch.Tensor  # (FACES_SHOWN, 1, 16, 16): the first real faces average-pooled to the stage's size, upsampled
    sample_detail: float  # `detail` of 64 samples at the stage's resolution
    real_detail: float  # `detail` of the 100 real faces at that resolution


def detail(images: torch.Tensor, below: tuple[int, int] | None) -> float:
    """What a resolution adds over the one below: the mean |x - upsample(downsample(x))| of (N, C, h, w) images,
    downsampled to `below`; for the first stage (below None) the mean distance from each image's mean grey."""
    coarse = images.mean(dim=(2, 3), keepdim=True) if below is None else progan.upsample(
        progan.downsample(images, below), tuple(images.shape[2:]))
    return float((images - coarse).abs().mean())


def _stage_images(model: progan.ProGAN, stage: int, n: int) -> torch.Tensor:
    """n samples of the EMA G at `stage`, alpha 1, clamped to [-1, 1] (G's output is linear) at the stage's size;
    the same z at every stage, so a row can be followed from one resolution to the next."""
    z = model.latents(n, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return (model.ema if model.ema is not None else model.generator)(z, stage, 1.0).clamp(-1, 1)


def grow_faces(console: Console, seed: int = 0) -> list[FacesStage]:
    """Train progan (genlab's model and its training_step) on the 100 faces at 16 px, stage by stage; after each
    stage keep G's samples and the real faces at that resolution, and print the stage's steps and CPU seconds."""
    x = load_dataset("faces", "train", image_size=FACES_SIZE).x  # (100, 1, 16, 16)
    torch.manual_seed(seed)  # G's and D's initial weights and the z that training_step draws
    model = progan.ProGAN(progan.ProGANConfig(data_shape=tuple(x.shape[1:]), **FACES_MODEL))
    optimizers = progan.configure_optimizers(model, FACES_LR)
    batches = Batches(x, FACES_BATCH, seed=seed)
    fade, stable = model.config.fade_steps, model.config.stable_steps
    full_size = tuple(x.shape[2:])
    stages = []
    for stage, size in enumerate(model.sizes):
        first = int(model.steps_trained) + 1
        end = stable + stage * (fade + stable)  # progan.growth: the step count at which stage + 1 starts fading in
        start = time.process_time()
        while int(model.steps_trained) < end:
            terms = progan.training_step(model, optimizers, batches.batch(int(model.steps_trained)))
            done = int(model.steps_trained)
            if done % 100 == 0:
                console.print(f"  step {done:4d}  {int(terms['resolution'])} px  alpha {float(terms['alpha']):.2f}  "
                              f"critic's W1 estimate {float(terms['wasserstein']):6.3f}")
        cpu = time.process_time() - start
        images = _stage_images(model, stage, 64)
        below = model.sizes[stage - 1] if stage else None
        reals = model.reals_at(x, stage, 1.0)
        stages.append(FacesStage(
            resolution=tuple(int(v) for v in size), first_step=first, last_step=end,
            fade_steps=fade if stage else 0, alpha=float(terms["alpha"]), cpu_seconds=cpu,
            samples=(progan.upsample(images[:FACES_SHOWN], full_size) + 1) / 2,
            reals=(progan.upsample(reals[:FACES_SHOWN], full_size) + 1) / 2,
            sample_detail=detail(images, below), real_detail=detail(reals, below)))
        steps = end - first + 1
        how = f"faded in over {fade}, then {steps - fade} at alpha 1" if stage else "no fade: the first stage"
        console.print(f"[bold]{size[0]}x{size[1]}[/]: steps {first}-{end} ({how}), {cpu:.1f} CPU-s, "
                      f"{cpu / steps:.3f} CPU-s a step")
    return stages


def detail_verdict(stage: FacesStage) -> str:
    ratio = stage.sample_detail / stage.real_detail
    if ratio < BLURRY_BELOW:
        return f"blurrier than the real faces ({ratio:.2f}x their detail)"
    if ratio > NOISY_ABOVE:
        return f"noisier than the real faces ({ratio:.2f}x their detail)"
    return f"about as detailed as the real faces ({ratio:.2f}x their detail)"


def faces_sheet(stages: list[FacesStage]) -> bytes:
    """faces.png: for each stage, a row of G's samples at its end and a row of real faces at its resolution."""
    rows = {}
    for stage in stages:
        h, w = stage.resolution
        rows[f"G {h}x{w}, steps {stage.first_step}-{stage.last_step}, alpha {stage.alpha:g}"] = stage.samples
        rows[f"real faces at {h}x{w}"] = stage.reals
    picture = labelled_rows(rows, per_row=FACES_SHOWN, scale=FACES_TILE)
    sizes = " -> ".join(f"{h}x{w}" for h, w in (stage.resolution for stage in stages))
    return titled_png(picture, f"faces lesson: progressive growing {sizes} on the 100 LFW faces, "
                               f"{stages[-1].last_step} steps",
                      "row pairs, one per stage: G's samples at the stage's end (the same z in every stage), then "
                      "real faces average-pooled to that resolution; all drawn at 16x16 (nearest), so a 4x4 "
                      "image shows as 4x4 blocks")


def faces(out: Path, console: Console, data_dir=None) -> Path:
    """Progressive growing on the 100 faces: 4x4, then 8x8 and 16x16 fade in; save G's samples at the end of each
    stage beside the real faces at that size. data_dir is unused: the faces ship inside scikit-image."""
    console.print("[bold]Lesson: progressive growing (Karras et al. 2018) on the 100 faces of Labeled Faces in the "
                  f"Wild, at {FACES_SIZE}x{FACES_SIZE}.[/] G and D start at 4x4, where a step is cheap and "
                  "only the coarse layout exists: where a face is light and where it is dark. Then each larger "
                  "resolution fades in: G's output is (1 - alpha) x the old layer's image, upsampled, + alpha x the "
                  "new block's, alpha rising 0 -> 1, so the new layers start by adding detail to a layout already "
                  "learned instead of learning everything at once. Follow one column (the same z) down the "
                  "stages: does its layout stay while detail is added?")
    out.mkdir(parents=True, exist_ok=True)
    with limited_threads(1):  # a 56k-parameter model: see SMALL_MODEL_PARAMETERS
        stages = grow_faces(console)
    for stage in stages:
        h, w = stage.resolution
        below = "the resolution below" if stage.fade_steps else "the mean grey"
        console.print(f"{h}x{w}: detail over {below}, samples {stage.sample_detail:.3f}, real faces "
                      f"{stage.real_detail:.3f}: G's faces are {detail_verdict(stage)}")
    picture = out / "faces.png"
    atomic_write_bytes(picture, faces_sheet(stages))
    console.print("Judge the faces by eye in the picture: the detail figure counts how much the pixels change over "
                  "the resolution below, not whether they make a face.")
    console.print(f"saved {picture} (per stage: G's samples, then real faces at that size). This is a lesson about "
                  f"growing, not a faces benchmark: {stages[-1].last_step} steps of a small net leave rough faces; "
                  "for quality (KID, copy rate) see benchmarks/faces.py.")
    return picture


LESSONS = {"autoencoder": autoencoder, "vae": vae, "gan": gan, "faces": faces}
