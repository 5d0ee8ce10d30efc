"""Upscale a picture of any size with a super-resolution model (`genlab upscale`, the lab's super-resolution page).

The picture is cut into tiles of `tile` x `tile` low-resolution pixels; each goes through the model with `overlap`
pixels of the picture around it as context, and only its own part of the result is kept. Memory is that of one
tile, whatever the picture's size, and there are no seams: a pixel near a tile's edge sees the same neighbours as
in one pass over the whole picture, as long as the overlap covers what the network looks at (its receptive field;
Real-ESRGAN's tiling pads tiles by 10 pixels, genlab by 16).

Colour: a grey picture goes through an RGB model as three equal channels and comes back as their mean; an RGB
picture through a grey model as three grey pictures. Transparency is upscaled bicubic (superres.bicubic_upscale,
tiled alike) and put back.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab.checkpoint import atomic_write_bytes
from genlab.data.images import MAX_IMAGE_PIXELS, read_picture
from genlab.models.superres import SuperRes, bicubic_upscale
from genlab.run import RunRecord, sha256_of

TILE = 128  # low-resolution pixels a side: a 64-channel G holds ~250 MB of activations for one x4 tile
OVERLAP = 16  # context on each side of a tile
PNG_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def tiled(upscale: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scale: int, *, tile: int = TILE,
          overlap: int = OVERLAP) -> torch.Tensor:
    """(C, h, w) in [0, 1] -> (C, scale*h, scale*w) uint8, `upscale` ((C, h', w') -> (C, scale*h', scale*w')) run
    on one tile at a time: at most (tile + 2*overlap)^2 input pixels a call."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be at least 1 and overlap at least 0, got {tile} and {overlap}")
    channels, height, width = image.shape
    out = torch.empty((channels, scale * height, scale * width), dtype=torch.uint8)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            # the tile with its context, clipped to the picture (at its edges the network pads as in one pass)
            top_c, left_c = max(top - overlap, 0), max(left - overlap, 0)
            bottom_c, right_c = min(bottom + overlap, height), min(right + overlap, width)
            result = upscale(image[:, top_c:bottom_c, left_c:right_c])
            keep = result[:, scale * (top - top_c):scale * (bottom - top_c),
                          scale * (left - left_c):scale * (right - left_c)]
            out[:, scale * top:scale * bottom, scale * left:scale * right] = to_uint8(keep.cpu())
    return out


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def colour_upscaler(model: SuperRes, channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """(channels, h, w) -> (channels, s*h, s*w) through `model`, whatever its own channels (1 or 3)."""
    device = next(model.parameters()).device
    own = model.config.data_shape[0]
    if own == channels:
        return lambda x: model.upscale(x[None].to(device))[0]
    if own == 3:  # a grey picture through an RGB model
        return lambda x: model.upscale(x[None].expand(1, 3, -1, -1).to(device))[0].mean(0, keepdim=True)
    return lambda x: model.upscale(x[:, None].to(device))[:, 0]  # each colour through a grey model


def upscale_picture(model: SuperRes, pixels: np.ndarray, *, tile: int = TILE, overlap: int = OVERLAP) -> np.ndarray:
    """A picture (H, W, C) uint8 as read_picture gives it -> (scale*H, scale*W, C) uint8."""
    height, width, channels = pixels.shape
    scale = model.config.scale
    if scale * scale * height * width > MAX_IMAGE_PIXELS:
        raise ValueError(f"a {width}x{height} picture upscaled x{scale} is {scale * width}x{scale * height}, over "
                         f"the {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels genlab writes: crop it or take a smaller part")
    image = torch.tensor(pixels).permute(2, 0, 1).float() / 255  # a copy: read_picture's array is read-only
    colours = 3 if channels >= 3 else 1
    parts = [tiled(colour_upscaler(model, colours), image[:colours], scale, tile=tile, overlap=overlap)]
    if channels in (2, 4):  # transparency: bicubic, as every editor resizes it
        parts.append(tiled(lambda a: bicubic_upscale(a[None], scale)[0], image[colours:], scale, tile=tile,
                           overlap=overlap))
    return torch.cat(parts).permute(1, 2, 0).numpy()


def png_bytes(pixels: np.ndarray) -> bytes:
    """(H, W, C) uint8, C in 1..4 -> a PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, PNG_MODES[pixels.shape[2]]).save(
        buffer, "PNG")
    return buffer.getvalue()


def upscale_file(model: SuperRes, source: Path, out: Path, *, tile: int = TILE, overlap: int = OVERLAP
                 ) -> tuple[int, int]:
    """Read a PNG/JPEG (refused in one line when it is not one, damaged or too large), upscale it and write a PNG
    atomically; returns the new (width, height)."""
    source, out = Path(source), Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out} does not end in .png: genlab writes the upscaled picture as a PNG")
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ValueError(f"--out {out} is the picture being upscaled: choose another file name")
    if not source.is_file():
        raise FileNotFoundError(f"no picture at {source}")
    big = upscale_picture(model, read_picture(source), tile=tile, overlap=overlap)
    atomic_write_bytes(out, png_bytes(big))
    return big.shape[1], big.shape[0]


def psnr_source(record: RunRecord, psnr_run: Path | None) -> Path:
    """The PSNR end of network interpolation for a run with `record`: `psnr_run` when given, else the checkpoint
    the run was started from (`--init-from`, recorded with its SHA-256), refused if it is gone or changed."""
    if psnr_run is not None:
        return psnr_run
    if record.init_from is None:
        raise ValueError("--alpha blends a GAN run with the PSNR run it was started from; this run was not started "
                         "from one (--init-from): name the PSNR model with --psnr-run")
    source = Path(record.init_from.path)
    if not source.is_file() or sha256_of(source) != record.init_from.sha256:
        raise ValueError(f"the PSNR checkpoint this run was started from, {source}, is gone or changed: name the "
                         "PSNR model with --psnr-run")
    return source
