"""Pictures of what a model learned: image grids, point clouds, latent maps, interpolation strips.

Everything here writes PNG files. Grids use Pillow (fast enough to call every few hundred training
steps); plots that need axes use matplotlib's Agg backend, imported only when used.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from PIL import Image

from genlab.checkpoint import atomic_write_bytes


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


def save_png(picture: Image.Image, path: str | Path) -> Path:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save a grid of images, enlarged so that small images (3x3, 8x8) stay visible."""
    scale = max(1, 112 // images.shape[-1])
    return save_png(image_grid(images, nrow, scale=scale), path)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _figure().close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def save_points(points: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None,
                title: str = "") -> Path:
    """Scatter plot of (N, 2) points (or a histogram of (N, 1)), over the real data when given."""
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
    return _save_figure(fig, path)


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
