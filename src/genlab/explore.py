"""Pictures of what a model learned: image grids, point clouds, latent maps, interpolation strips.

The one home of a model's pictures: `picture_of` (samples or reconstructions, as PNG bytes) and
`save_picture` (the same, written to a file) serve the CLI, training previews, compare and the lab.
Grids use Pillow (fast enough to call every few hundred training steps); plots that need axes use
matplotlib's Agg backend, imported only when used.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from PIL import Image

from genlab.checkpoint import atomic_write_bytes

if TYPE_CHECKING:
    from genlab.data import Dataset

Shows = Literal["samples", "reconstructions"]
PAIRS_PER_ROW = 4  # original, reconstruction: 8 tiles a row
PREVIEW_COUNTS = {"image": {"samples": 64, "reconstructions": 32}, "points": {"samples": 2000, "reconstructions": 2000}}
REFERENCE_POINTS = 2000  # the data drawn under a scatter of points


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


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def image_grid_png(images: torch.Tensor, nrow: int | None = None, tile_pixels: int = 112) -> bytes:
    """A grid of images as PNG bytes, enlarged so that small images (3x3, 8x8) are about `tile_pixels` across."""
    return png_bytes(image_grid(images, nrow, scale=max(1, tile_pixels // images.shape[-1])))


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save a grid of images, enlarged so that small images (3x3, 8x8) stay visible."""
    atomic_write_bytes(Path(path), image_grid_png(images, nrow))
    return Path(path)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure_png(fig, metadata: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata=metadata)
    _figure().close(fig)
    return buffer.getvalue()


def _save_figure(fig, path: str | Path) -> Path:
    atomic_write_bytes(Path(path), _figure_png(fig))
    return Path(path)


def save_points(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None,
                title: str = "") -> Path:
    """Scatter plot of (N, 2) points (or a histogram of (N, 1)), over the real data when given."""
    atomic_write_bytes(Path(path), points_png(points, reference, title))
    return Path(path)


def points_png(points: torch.Tensor, reference: torch.Tensor | None = None, title: str = "") -> bytes:
    """PNG bytes of a scatter plot of (N, 2) points (or a histogram of (N, 1)), over the real data when given."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4, 4))
    points = points.detach().cpu()
    if points.shape[1] == 1:
        bins = 60
        if reference is not None:
            ax.hist(reference[:, 0].cpu().numpy(), bins=bins, density=True, alpha=0.4, label="data")
        ax.hist(points[:, 0].numpy(), bins=bins, density=True, alpha=0.6, label="model")
        ax.legend()
    else:
        if reference is not None:
            ax.scatter(*reference[:2000, :2].cpu().T.numpy(), s=2, c="0.75", label="data")
        ax.scatter(*points[:, :2].T.numpy(), s=2, c="tab:blue", label="model")
        ax.set_aspect("equal")
    ax.set_title(title)
    return _figure_png(fig)


@torch.no_grad()
def reconstruction_pairs(model, x: torch.Tensor) -> torch.Tensor:
    """(N, ...) examples -> (2N, ...): each original followed by its reconstruction, x0, r0, x1, r1, ..."""
    return torch.stack([x, model.reconstruct(x)], dim=1).flatten(0, 1)


@torch.no_grad()
def picture_of(model, data: Dataset | None, *, shows: Shows | None = None, n: int | None = None, seed: int = 0,
               title: str | None = None, tile_pixels: int = 112, sample_options: dict | None = None) -> bytes:
    """PNG bytes of what `model` makes: `shows` "samples" (n draws from a generator seeded with `seed`, so the
    same seed shows the same z at every step) or "reconstructions" (of data's first n examples); by default
    samples when the model samples, reconstructions otherwise. Images make a grid (reconstructions as
    original-reconstruction pairs, PAIRS_PER_ROW a row), points a scatter over `data` when it is given.
    `n` defaults to PREVIEW_COUNTS of the data's kind; `sample_options` go to model.sample (ddpm: steps, sampler)."""
    shows = shows or ("samples" if model.can_sample else "reconstructions")
    able = {"samples": model.can_sample, "reconstructions": model.can_reconstruct}
    if shows not in able:
        raise ValueError(f"a picture shows samples or reconstructions, not {shows!r}")
    if not able[shows]:
        raise ValueError(f"this {type(model).__name__} model cannot draw {shows}")
    if data is None and (shows == "reconstructions" or n is None):
        raise ValueError(f"a picture of {shows} needs the data (to reconstruct, or to count a preview by its kind)")
    n = PREVIEW_COUNTS[data.kind][shows] if n is None else n
    device = next(model.parameters()).device
    if shows == "samples":
        drawn = model.sample(n, generator=torch.Generator(device).manual_seed(seed), **(sample_options or {}))
    else:
        x = data.x[:n].to(device)
        drawn = reconstruction_pairs(model, x) if x.dim() == 4 else model.reconstruct(x)
    if drawn.dim() == 4:
        return image_grid_png(drawn, 2 * PAIRS_PER_ROW if shows == "reconstructions" else None, tile_pixels)
    reference = None if data is None else data.x[:REFERENCE_POINTS]
    return points_png(drawn, reference, title or (f"{n} samples" if shows == "samples" else f"{shows} over the data"))


def save_picture(path: str | Path, model, data: Dataset | None, **options) -> Path:
    """Write picture_of(model, data, **options) to `path` (atomically); returns the path."""
    atomic_write_bytes(Path(path), picture_of(model, data, **options))
    return Path(path)


def save_interpolation(originals: torch.Tensor, rows: dict[str, torch.Tensor], path: str | Path, title: str) -> Path:
    """Interpolation strips between two images, one labelled row per method: the two chosen images themselves at
    the ends (framed, so they read as inputs, not decodings), the decoded path between them. The title and row
    labels are also in the PNG's metadata (Title, Description)."""
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
    axes[-1, 0].set_xlabel("input, then decodings of the path through the latent space, then input (framed red)")
    fig.suptitle(title)
    description = f"rows: {', '.join(rows)}; each row starts and ends with the chosen input images"
    atomic_write_bytes(Path(path), _figure_png(fig, metadata={"Title": title, "Description": description}))
    return Path(path)


def save_latent_map(codes: torch.Tensor, labels: torch.Tensor | None, path: str | Path, title: str = "") -> Path:
    """Scatter the first two latent coordinates of encoded data, coloured by label."""
    if codes.shape[1] < 2:
        raise ValueError(f"a latent map needs at least 2 latent dimensions, the model has {codes.shape[1]}")
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 5))
    colours = None if labels is None else labels.cpu().numpy()
    scatter = ax.scatter(*codes[:, :2].detach().cpu().T.numpy(), c=colours, cmap="tab10", s=4)
    if labels is not None:
        fig.colorbar(scatter, ax=ax, ticks=range(int(labels.max()) + 1))
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    return _save_figure(fig, path)


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
