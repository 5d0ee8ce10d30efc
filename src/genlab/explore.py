"""Pictures of what a model learned: image grids, point clouds, latent maps, interpolation strips.

The one home of a model's pictures: `picture_of` (samples or reconstructions, as PNG bytes) and
`save_picture` (the same, written to a file) serve the CLI, training previews, compare and the lab.
Every picture says what it shows: a title (what, which run, which step, which sampler) and labels, drawn on
the picture and also written into the PNG's metadata (Title, Description) by `titled_png` for Pillow
pictures and `_figure_png` for matplotlib ones, so a test or a script can read them back.
Grids use Pillow (fast enough to call every few hundred training steps); plots that need axes use
matplotlib's Agg backend, imported only when used.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from genlab.checkpoint import atomic_write_bytes

if TYPE_CHECKING:
    from genlab.data import Dataset

Shows = Literal["samples", "reconstructions", "upscales"]
EXAMPLES_PER_ROW = 8  # reconstructions: 8 examples across, their rows (original, reconstruction) one under another
PREVIEW_COUNTS = {"image": {"samples": 64, "reconstructions": 32, "upscales": 8},
                  "points": {"samples": 2000, "reconstructions": 2000}}
REFERENCE_POINTS = 2000  # the data drawn with a scatter of points
TEXT_SIZE = 14  # pixels; Pillow's default font (bundled, so the same on every machine)
LABEL_GAP = 8  # pixels between a row label and its row, and between groups of rows
TITLE_BAND = TEXT_SIZE + 2 * LABEL_GAP  # pixels: the white band over a Pillow picture that holds its title


@functools.cache  # loaded once: a preview writes a dozen labels
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=TEXT_SIZE)


def _text_width(text: str) -> int:
    return math.ceil(_font().getlength(text))


def _png_info(title: str, description: str) -> dict[str, str]:
    return {"Title": title, "Description": description} if description else {"Title": title}


def titled_png(picture: Image.Image, title: str, description: str = "") -> bytes:
    """PNG bytes of `picture` under a white band holding `title` (the canvas widens when the title is longer);
    the title and `description` (what the labels mean) also go into the PNG's metadata."""
    width = max(picture.width, _text_width(title) + 2 * LABEL_GAP)
    canvas = Image.new(picture.mode, (width, picture.height + TITLE_BAND), "white")
    canvas.paste(picture, (0, TITLE_BAND))
    ImageDraw.Draw(canvas).text((LABEL_GAP, LABEL_GAP), title, fill="black", font=_font())
    info = PngInfo()
    for key, value in _png_info(title, description).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, scale: int = 1) -> Image.Image:
    """(N, C, H, W) values in [0, 1] -> one Pillow image, rows of `nrow` (default: square-ish)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"an image grid needs (N, 1 or 3, H, W) images, got shape {tuple(images.shape)}")
    n, channels, height, width = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.ones(channels, rows * (height + padding) + padding, nrow * (width + padding) + padding)
    for i, image in enumerate(images.detach().float().cpu().clamp(0, 1)):
        top, left = padding + (i // nrow) * (height + padding), padding + (i % nrow) * (width + padding)
        canvas[:, top:top + height, left:left + width] = image
    array = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if channels == 1 else array)
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def labelled_rows(rows: dict[str, torch.Tensor], per_row: int = EXAMPLES_PER_ROW, scale: int = 1) -> Image.Image:
    """Named rows of the same examples (e.g. original, reconstruction) as one picture: `per_row` examples
    across, each name written left of its row, one group of rows under another with a gap between groups,
    so example i's images stand in one column."""
    names, stacks = list(rows), list(rows.values())

    def filled(images: torch.Tensor) -> torch.Tensor:  # a short last group: blank (white) tiles keep the columns
        blank = torch.ones(per_row - len(images), *images.shape[1:], device=images.device)
        return torch.cat([images, blank])

    groups = [image_grid(torch.cat([filled(stack[start:start + per_row]) for stack in stacks]), per_row, scale=scale)
              for start in range(0, len(stacks[0]), per_row)]
    label_width = max(map(_text_width, names)) + 2 * LABEL_GAP
    width = label_width + max(group.width for group in groups)
    height = sum(group.height for group in groups) + LABEL_GAP * (len(groups) - 1)
    canvas = Image.new(groups[0].mode, (width, height), "white")
    draw, top = ImageDraw.Draw(canvas), 0
    for group in groups:
        canvas.paste(group, (label_width, top))
        row_height = group.height / len(names)  # the grid's rows: one per name
        for i, name in enumerate(names):
            draw.text((LABEL_GAP, top + (i + 0.5) * row_height), name, fill="black", font=_font(), anchor="lm")
        top += group.height + LABEL_GAP
    return canvas


def image_grid_png(images: torch.Tensor, title: str, nrow: int | None = None, tile_pixels: int = 112) -> bytes:
    """A titled grid of images as PNG bytes, enlarged so that small images (3x3, 8x8) are about `tile_pixels`
    across."""
    nrow = nrow or math.ceil(math.sqrt(len(images)))
    picture = image_grid(images, nrow, scale=max(1, tile_pixels // images.shape[-1]))
    return titled_png(picture, title, f"{len(images)} images, {nrow} a row")


def save_image_grid(images: torch.Tensor, path: str | Path, title: str, nrow: int | None = None) -> Path:
    """Save a titled grid of images, enlarged so that small images (3x3, 8x8) stay visible."""
    atomic_write_bytes(Path(path), image_grid_png(images, title, nrow))
    return Path(path)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure_png(fig, title: str, description: str = "") -> bytes:
    """A matplotlib figure as PNG bytes, `title` over it and in the metadata with `description`."""
    fig.suptitle(title, y=1.0, va="bottom")  # above the figure's top edge, clear of the axes' own titles; the
    # tight bounding box below takes it in
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata=_png_info(title, description))
    _figure().close(fig)
    return buffer.getvalue()


def _save_figure(fig, path: str | Path, title: str, description: str = "") -> Path:
    atomic_write_bytes(Path(path), _figure_png(fig, title, description))
    return Path(path)


def save_points(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None, title: str,
                data_name: str = "", label: str = "model samples") -> Path:
    """Scatter plot of (N, 2) points (or a histogram of (N, 1)) with the real data, see points_png."""
    atomic_write_bytes(Path(path), points_png(points, reference, title, data_name, label))
    return Path(path)


def _view(reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plotted range per dimension: the data's, widened by a quarter on each side."""
    low, high = reference.min(0).values, reference.max(0).values
    margin = 0.25 * (high - low).clamp(min=1e-3)
    return low - margin, high + margin


def points_png(points: torch.Tensor, reference: torch.Tensor | None, title: str, data_name: str = "",
               label: str = "model samples", guided: tuple[torch.Tensor | None, str] | None = None) -> bytes:
    """PNG bytes of (N, 2) points as a scatter (or (N, 1) as a histogram), with a legend, drawn so that the
    data's modes stay visible however the model's points fall: 2-D data gets a panel of its own beside the
    model's (the same view, the data also faint under the model's points), 1-D data an outlined histogram over
    the model's. The view is the data's range; points beyond it are drawn at its edge and counted. When
    `data_name` is a mixture with known centres (genlab.metrics.modes) the centres are ringed in red and the
    modes the points cover are printed. `guided`: 2-D samples drawn with D's help and their caption (or None and
    why none could be drawn), in a third panel beside the model's own (genlab.guided.beside_direct)."""
    from genlab.metrics.modes import MIXTURES, mixture_coverage

    plt = _figure()
    points = points.detach().float().cpu()
    reference = None if reference is None else reference.detach().float().cpu()[:REFERENCE_POINTS]
    finite = points[torch.isfinite(points).all(1)]
    if reference is None and len(finite) == 0:  # a diverged model and no data: a view around the origin
        finite = torch.zeros(1, points.shape[1])
    low, high = _view(reference if reference is not None else finite)
    outside = int(((points < low) | (points > high)).any(1).sum())
    shown = torch.maximum(torch.minimum(points, high), low)  # NaN stays NaN, and matplotlib skips it
    notes, legend = [], [f"{label}: blue"]
    if points.shape[1] == 1:
        fig, model_ax = plt.subplots(figsize=(4.5, 4))
        bins = torch.linspace(float(low[0]), float(high[0]), 61).numpy()
        model_ax.hist(shown[:, 0].numpy(), bins=bins, density=True, color="tab:blue", alpha=0.6, label=label)
        if reference is not None:
            model_ax.hist(reference[:, 0].numpy(), bins=bins, density=True, histtype="step", color="black",
                          linewidth=1.2, label="data")
            legend.append("data: black outline")
        model_ax.set_xlabel("x")
        model_ax.set_ylabel("density")
    else:
        panels = (1 if reference is None else 2) + (guided is not None)
        fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.4), sharex=True, sharey=True, squeeze=False)
        model_ax = axes[0, -2 if guided is not None else -1]
        if reference is not None:
            data_ax = axes[0, 0]
            data_ax.scatter(*reference[:, :2].T.numpy(), s=3, c="black", linewidths=0, label="data")
            data_ax.set_title("data", fontsize=9)
            model_ax.scatter(*reference[:, :2].T.numpy(), s=3, c="0.85", linewidths=0, label="data")
            legend.append("data: black in its own panel, light grey under the model's points")
        model_ax.scatter(*shown[:, :2].T.numpy(), s=3, c="tab:blue", alpha=0.6, linewidths=0, label=label,
                         clip_on=False)  # the points held at the edge show whole
        if guided is not None:
            legend.append(_guided_panel(axes[0, -1], guided, reference, low, high, data_name))
        if data_name in MIXTURES:
            centres, _ = MIXTURES[data_name]
            for ax in axes[0]:
                ax.scatter(*centres().T.numpy(), s=90, facecolors="none", edgecolors="tab:red", linewidths=1,
                           label="mode centres")
            legend.append("mode centres: red rings")
            coverage = mixture_coverage(points[:, :2], data_name)
            notes.append(f"modes covered {coverage.modes_covered}/{coverage.num_modes}, "
                         f"{100 * coverage.high_quality_fraction:.0f}% near a mode")
        for ax in axes[0]:
            ax.set_xlim(float(low[0]), float(high[0]))
            ax.set_ylim(float(low[1]), float(high[1]))
            ax.set_aspect("equal")
            ax.set_xlabel("x[0]")
        axes[0, 0].set_ylabel("x[1]")
    if outside:
        notes.append(f"{outside} of {len(points)} beyond the view, drawn at its edge")
    model_ax.set_title("\n".join([label, *notes]), fontsize=9)
    model_ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    return _figure_png(fig, title, "; ".join(legend + notes))


def _guided_panel(ax, guided: tuple[torch.Tensor | None, str], reference: torch.Tensor | None, low: torch.Tensor,
                  high: torch.Tensor, data_name: str) -> str:
    """Draw D-guided samples (or the reason there are none) on `ax`, as the model's panel draws its own; returns
    the legend's words for it."""
    from genlab.metrics.modes import MIXTURES, mixture_coverage

    points, caption = guided
    if reference is not None:
        ax.scatter(*reference[:, :2].T.numpy(), s=3, c="0.85", linewidths=0)
    lines = [caption]
    if points is not None:
        points = points.detach().float().cpu()
        shown = torch.maximum(torch.minimum(points, high), low)
        ax.scatter(*shown[:, :2].T.numpy(), s=3, c="tab:green", alpha=0.6, linewidths=0, clip_on=False)
        if data_name in MIXTURES:
            coverage = mixture_coverage(points[:, :2], data_name)
            lines.append(f"modes covered {coverage.modes_covered}/{coverage.num_modes}, "
                         f"{100 * coverage.high_quality_fraction:.0f}% near a mode")
    ax.set_title("\n".join(lines), fontsize=9)
    return "D-guided samples: green, in the right panel"


@torch.no_grad()
def reconstruction_rows(model, x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """What a reconstruction picture shows, by row name: the originals, for a denoising autoencoder the noisy
    input it is given (noise drawn from `seed`, not the global generator, so training is not disturbed), and
    the reconstructions."""
    noise_std = getattr(model.config, "noise_std", 0.0)  # only autoencoders have the setting
    if noise_std == 0:
        return {"original": x, "reconstruction": model.reconstruct(x)}
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x.device)
    noisy = x + noise_std * noise
    return {"original": x, f"noisy input (std {noise_std:g})": noisy, "reconstruction": model.reconstruct(noisy)}


@torch.no_grad()
def nearest_png(model, train: Dataset, *, n: int = 16, seed: int = 0, title: str, tile_pixels: int = 64) -> bytes:
    """PNG bytes: n samples (seeded) over their nearest training images (in pixels), each column a pair, and in the
    title how many samples copy their neighbour (genlab.metrics.memorization's ratio test)."""
    from genlab.metrics.memorization import COPY_RATIO, nearest_training

    samples = model.sample(n, generator=torch.Generator(next(model.parameters()).device).manual_seed(seed))
    samples = samples.detach().cpu().float().clamp(0, 1)
    found = nearest_training(samples, train.x)
    copies = int(found.copies.sum())
    rows = {"sample": samples, "nearest training image": train.x[found.index]}
    words = (f"{title}: {n} samples (seed {seed}) over their nearest of {len(train)} training images; {copies} of "
             f"{n} copy it (nearer than {COPY_RATIO:.2g} x the second nearest)")
    picture = labelled_rows(rows, scale=max(1, tile_pixels // samples.shape[-1]))
    return titled_png(picture, words, "rows: sample, nearest training image (pixel distance)")


def upscale_rows(model, hr: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """What a super-resolution picture shows, by row name, all at the HR size: the bicubic upscale of the
    low-resolution input, the model's upscale of it, and the HR original the input was made from (its
    degradation's random draws, if any, from `seed`)."""
    from genlab.models.superres import bicubic_upscale

    lr = model.degrade(hr, torch.Generator().manual_seed(seed))
    scale = model.config.scale
    return {f"bicubic x{scale}": bicubic_upscale(lr, scale), f"model x{scale}": model.upscale(lr), "original": hr}


def _sampling_words(model, sample_options: dict) -> str:
    """", ddim sampler, 50 timesteps" for a diffusion model (the options given, else its config's defaults);
    "" for models whose config names no sampler."""
    sampler = sample_options.get("sampler") or getattr(model.config, "sampler", None)
    if sampler is None:
        return ""
    steps = sample_options.get("steps") or model.config.sampling_steps or model.config.num_timesteps
    return f", {sampler} sampler, {steps} timesteps"


@torch.no_grad()
def picture_of(model, data: Dataset | None, *, shows: Shows | None = None, n: int | None = None, seed: int = 0,
               title: str | None = None, tile_pixels: int = 112, sample_options: dict | None = None) -> bytes:
    """PNG bytes of what `model` makes: `shows` "samples" (n draws from a generator seeded with `seed`, so the
    same seed shows the same z at every step) or "reconstructions" (of data's first n examples); by default
    samples when the model samples, reconstructions otherwise. Images make a grid (reconstructions as labelled
    rows: original, noisy input for a denoising autoencoder, reconstruction), points a scatter with the data.
    `title` names the source, e.g. "ring-gan, step 3000"; the picture's title adds what it shows (how many,
    seed, sampler). `n` defaults to PREVIEW_COUNTS of the data's kind; `sample_options` go to model.sample
    (ddpm: steps, sampler)."""
    shows = shows or ("samples" if model.can_sample else "upscales" if model.can_upscale else "reconstructions")
    able = {"samples": model.can_sample, "reconstructions": model.can_reconstruct, "upscales": model.can_upscale}
    if shows not in able:
        raise ValueError(f"a picture shows samples, reconstructions or upscales, not {shows!r}")
    if not able[shows]:
        raise ValueError(f"this {type(model).__name__} model cannot draw {shows}")
    if data is None and (shows != "samples" or n is None):
        raise ValueError(f"a picture of {shows} needs the data (to reconstruct or upscale, or to count a preview by "
                         "its kind)")
    n = PREVIEW_COUNTS[data.kind][shows] if n is None else n
    device = next(model.parameters()).device
    reference = None if data is None else data.x[:REFERENCE_POINTS]
    data_name = "" if data is None else data.name
    if shows == "samples":
        options = sample_options or {}
        full_title = _joined(title, f"{n} samples (seed {seed}{_sampling_words(model, options)})")
        samples = model.sample(n, generator=torch.Generator(device).manual_seed(seed), **options)
        if samples.dim() == 4:
            return image_grid_png(samples, full_title, tile_pixels=tile_pixels)
        guided = _guided_beside(model, data, n, seed) if samples.shape[1] == 2 and not options else None
        return points_png(samples, reference, full_title, data_name, "model samples", guided)
    x = data.x[:n].to(device)
    if shows == "upscales":
        rows = upscale_rows(model, x, seed)
        full_title = _joined(title, f"{len(x)} test crops, their low-resolution inputs upscaled")
        return titled_png(labelled_rows(rows, per_row=4), full_title,
                          f"rows, top to bottom in each group: {', '.join(rows)}; one column per test crop")
    rows = reconstruction_rows(model, x, seed)
    full_title = _joined(title, f"{n} test examples and their reconstructions")
    if x.dim() == 4:
        return titled_png(labelled_rows(rows, scale=max(1, tile_pixels // x.shape[-1])), full_title,
                          f"rows, top to bottom in each group: {', '.join(rows)}; one column per test example")
    return points_png(rows["reconstruction"], reference, full_title, data_name, "reconstructions")


def _guided_beside(model, data: Dataset | None, n: int, seed: int) -> tuple[torch.Tensor | None, str] | None:
    """A GAN's D-guided samples for the panel beside its own (genlab.guided.beside_direct, D calibrated on `data`),
    or why there are none; None for models without a D to ask."""
    if not model.can_guide or data is None:
        return None
    from genlab.guided import beside_direct

    try:
        drawn = beside_direct(model, data.x, n, seed)
    except ValueError as refused:  # an untrained D may keep almost no proposals
        return None, f"no D-guided samples: {refused}"
    return drawn.samples, f"D-guided (rejection sampling): {100 * drawn.acceptance_rate:.0f}% of proposals kept"


def _joined(source: str | None, what: str) -> str:
    return f"{source}: {what}" if source else what


def save_picture(path: str | Path, model, data: Dataset | None, **options) -> Path:
    """Write picture_of(model, data, **options) to `path` (atomically); returns the path."""
    atomic_write_bytes(Path(path), picture_of(model, data, **options))
    return Path(path)


def save_interpolation(originals: torch.Tensor, rows: dict[str, torch.Tensor], path: str | Path, title: str,
                       ends: str = "input") -> Path:
    """Interpolation strips between two images, one labelled row per method: the two chosen images themselves at
    the ends (framed, so they read as inputs, not decodings), the decoded path between them. `ends` names them:
    input (test images an encoder placed), or a GAN's "seed's sample". The title and row labels are also in the
    PNG's metadata (Title, Description)."""
    plt = _figure()
    first, last = originals[0].detach().cpu(), originals[1].detach().cpu()
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.0 + 0.6 * (next(iter(rows.values())).shape[0] + 2),
                                                    0.9 * len(rows) + 0.6), squeeze=False)
    for ax, (name, strip) in zip(axes[:, 0], rows.items(), strict=True):
        images = torch.cat([first[None], strip.detach().cpu(), last[None]])
        ax.imshow(image_grid(images, nrow=len(images), padding=2), cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        height, width = originals.shape[-2:]
        for column in (0, len(images) - 1):  # frame the inputs: their pixels span [left - 0.5, left + width - 0.5]
            left = 2 + column * (width + 2)
            ax.add_patch(plt.Rectangle((left - 1.5, 0.5), width + 2, height + 2, fill=False, edgecolor="tab:red"))
    axes[-1, 0].set_xlabel(f"{ends}, then decodings of the path through the latent space, then {ends} (framed red)")
    description = f"rows: {', '.join(rows)}; each row starts and ends with the chosen {ends} images"
    atomic_write_bytes(Path(path), _figure_png(fig, title, description))
    return Path(path)


def save_latent_map(codes: torch.Tensor, labels: torch.Tensor | None, path: str | Path, title: str) -> Path:
    """Scatter the first two latent coordinates of encoded data, coloured by label (a colorbar names them)."""
    if codes.shape[1] < 2:
        raise ValueError(f"a latent map needs at least 2 latent dimensions, the model has {codes.shape[1]}")
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 5))
    points = codes[:, :2].detach().cpu().T.numpy()
    if labels is None:
        ax.scatter(*points, s=4)
    else:
        top = int(labels.max())
        # the colour range runs half a label past each end, so each colorbar tick sits in the middle of its colour
        scatter = ax.scatter(*points, c=labels.cpu().numpy(), cmap="tab10", s=4, vmin=-0.5, vmax=top + 0.5)
        fig.colorbar(scatter, ax=ax, ticks=range(top + 1), label="label (digit)")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    coloured = "coloured by label, colorbar on the right" if labels is not None else "one colour"
    return _save_figure(fig, path, title, f"axes: z[0], z[1]; {len(codes)} codes, {coloured}")


def save_latent_grid(images: torch.Tensor, span: float, path: str | Path, title: str) -> Path:
    """A decoded_latent_grid (size x size images over [-span, span]^2) with z[0] and z[1] on labelled axes,
    ticks at the decoded points, so one reads which code made which image."""
    plt = _figure()
    size = math.isqrt(len(images))
    height, width = images.shape[-2:]
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(image_grid(images, nrow=size, padding=2), cmap="gray", vmin=0, vmax=255)
    values = torch.linspace(-span, span, size).tolist()
    every = max(1, size // 7)  # about 7 ticks an axis, always the ends and the middle for odd sizes
    columns = list(range(0, size, every))
    ax.set_xticks([2 + c * (width + 2) + (width - 1) / 2 for c in columns], [f"{values[c]:+.1f}" for c in columns])
    ax.set_yticks([2 + r * (height + 2) + (height - 1) / 2 for r in columns],
                  [f"{values[size - 1 - r]:+.1f}" for r in columns])
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    return _save_figure(fig, path, title, f"axes: z[0] and z[1] from {-span:g} to {span:g}, {size} x {size} "
                                          "decodings, top row = highest z[1]; other latent dimensions 0")


@torch.no_grad()
def decoded_latent_grid(decode, span: float = 2.5, size: int = 15, latent_dim: int = 2,
                        device: str | torch.device = "cpu") -> torch.Tensor:
    """Decode an evenly spaced size x size grid over the first two latent dimensions (others 0);
    (size*size, C, H, W), top row = highest z[1], like a map."""
    values = torch.linspace(-span, span, size, device=device)
    z = torch.zeros(size * size, latent_dim, device=device)
    z[:, 0] = values.repeat(size)
    z[:, 1] = values.flip(0).repeat_interleave(size)
    return decode(z)
