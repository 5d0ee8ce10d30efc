"""Every file genlab reads as data, damaged, hostile or surprising: each is refused in one line that names
it and says what to do (or, where that is the right answer, read correctly), and never costs much first.
Files are tiny and made here; a header that claims 20000x20000 takes 70 bytes."""

from __future__ import annotations

import gzip
import http.client
import io
import os
import socket
import struct
import urllib.error
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, PngImagePlugin
from typer.testing import CliRunner

from genlab.cli import app
from genlab.data import images, load_dataset


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.isprintable(), repr(message)
    return message


# ----------------------------------------------------------------------------- image files


def encoded(array: np.ndarray, format: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format, **options)
    return out.getvalue()


def save(path: Path, array: np.ndarray, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)


def png_claiming(width: int, height: int) -> bytes:
    """A 2x2 PNG whose header (with a correct checksum) claims width x height."""
    data = bytearray(encoded(np.zeros((2, 2), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)  # IHDR's data starts at byte 16
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encoded(np.zeros((8, 8, 3), np.uint8), "JPEG"))
    start = data.index(b"\xff\xc0")  # the baseline frame header: length, precision, height, width
    data[start + 5 : start + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# Just over the bound, where Pillow warns (89 Mpx), and where Pillow raises its own error (179 Mpx).
@pytest.mark.parametrize("size", [(8193, 8192), (10_000, 10_000), (20_000, 20_000)])
@pytest.mark.parametrize("make,suffix", [(png_claiming, ".png"), (jpeg_claiming, ".jpg")], ids=["png", "jpeg"])
@pytest.mark.parametrize("image_size", [None, 64])
def test_huge_image_is_refused_from_its_header(tmp_path, monkeypatch, recwarn, size, make, suffix, image_size):
    save(tmp_path / "fine.png", np.zeros((4, 4), np.uint8))
    huge = tmp_path / f"huge{suffix}"
    huge.write_bytes(make(*size))
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size) or real_load(image))
    with pytest.raises(ValueError, match="over the 67 megapixels genlab decodes: downscale it") as error:
        images.image_folder(tmp_path, "train", image_size, None)
    assert str(huge) in one_line(error)
    assert tuple(size) not in decoded  # refused before its pixels were decoded
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_image_at_the_bound_is_not_refused_for_its_size(tmp_path):
    (tmp_path / "big.png").write_bytes(png_claiming(8192, 8192))  # exactly the bound: decoding is tried
    with pytest.raises(ValueError, match="is damaged") as error:
        images.image_folder(tmp_path, "train", 64, None)
    assert "megapixels" not in str(error.value)


def text_bomb() -> bytes:
    """A 3 KB PNG whose compressed text chunk inflates to 3 MB, past Pillow's 1 MB bound."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * (3 * 2**20), zip=True)
    out = io.BytesIO()
    Image.new("L", (4, 4)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


GOOD_PNG = encoded(np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8))
GOOD_JPEG = encoded(np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8), "JPEG")
IDAT = GOOD_PNG.index(b"IDAT")
NOT_AN_IMAGE = "is not a readable PNG or JPEG image"
DAMAGED = {
    "empty": ("x.png", b"", "is empty"),
    "text": ("x.png", b"this is not a png", NOT_AN_IMAGE),
    "gif named png": ("x.png", encoded(np.zeros((4, 4), np.uint8), "GIF"), NOT_AN_IMAGE),
    "bmp named jpeg": ("x.jpeg", encoded(np.zeros((4, 4), np.uint8), "BMP"), NOT_AN_IMAGE),
    "AppleDouble-like junk": ("x.PNG", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X", NOT_AN_IMAGE),
    "png cut short": ("x.png", GOOD_PNG[:-30], "is damaged"),
    "png without pixels": ("x.png", GOOD_PNG[: IDAT - 4], "is not a readable PNG"),
    "png garbled pixels": ("x.png", GOOD_PNG[: IDAT + 8] + bytes(b ^ 0x55 for b in GOOD_PNG[IDAT + 8 : IDAT + 40])
                           + GOOD_PNG[IDAT + 40 :], "is damaged"),
    "png text bomb": ("x.png", text_bomb(), "is damaged .ValueError: Decompressed data too large"),
    "jpeg cut short": ("x.jpg", GOOD_JPEG[: len(GOOD_JPEG) // 2], "is damaged"),
    "jpeg header only": ("x.jpg", GOOD_JPEG[:200], "is damaged"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
@pytest.mark.parametrize("image_size", [None, 8])
def test_a_damaged_image_refuses_the_folder_naming_it(tmp_path, case, image_size):
    name, data, expected = DAMAGED[case]
    for i in range(3):
        save(tmp_path / f"good{i}.png", np.full((20, 20, 3), 9, np.uint8))
    bad = tmp_path / "sub" / name
    bad.parent.mkdir()
    bad.write_bytes(data)
    with pytest.raises(ValueError, match=f"{expected}.*: remove or replace it") as error:
        images.image_folder(tmp_path, "train", image_size, None)
    assert str(bad) in one_line(error)


def test_a_jpeg_named_png_is_read_as_the_jpeg_it_is(tmp_path):
    (tmp_path / "x.png").write_bytes(encoded(np.full((8, 8, 3), (200, 40, 90), np.uint8), "JPEG", quality=95))
    x, _ = images.image_folder(tmp_path, "train", None, None)
    assert x.shape == (1, 3, 8, 8)
    assert torch.allclose(x.mean(dim=(2, 3)), torch.tensor([[200, 40, 90]]) / 255, atol=0.02)


def rgba(value: tuple[int, int, int, int]) -> np.ndarray:
    return np.full((2, 3, 4), value, np.uint8)


# Each mode a PNG or JPEG can hold, with the values genlab reads from it: transparency over white.
MODES = {
    "1 (bilevel)": (lambda: Image.fromarray(np.array([[0, 1, 1]], bool)), 1, [[0, 255, 255]]),
    "L": (lambda: Image.fromarray(np.array([[0, 7, 255]], np.uint8)), 1, [[0, 7, 255]]),
    "LA opaque and clear": (lambda: Image.merge("LA", [Image.fromarray(np.array([[100, 100]], np.uint8)),
                                                       Image.fromarray(np.array([[255, 0]], np.uint8))]), 1,
                            [[100, 255]]),
    "L with a transparent value": (lambda: with_info(Image.fromarray(np.array([[5, 6]], np.uint8)), transparency=6),
                                   1, [[5, 255]]),
    "P": (lambda: palette([200, 40, 90, 0, 0, 255]), 3, [[[200, 0]], [[40, 0]], [[90, 255]]]),
    "P with a transparent entry": (lambda: with_info(palette([10, 20, 30, 1, 2, 3]), transparency=0), 3,
                                   [[[255, 1]], [[255, 2]], [[255, 3]]]),
    "RGBA clear": (lambda: Image.fromarray(rgba((10, 20, 30, 0))), 3, np.full((3, 2, 3), 255).tolist()),
    "RGBA opaque": (lambda: Image.fromarray(rgba((10, 20, 30, 255))), 3,
                    np.broadcast_to(np.array([10, 20, 30])[:, None, None], (3, 2, 3)).tolist()),
    "RGBA half": (lambda: Image.fromarray(rgba((0, 0, 0, 128))), 3, np.full((3, 2, 3), 127).tolist()),
    "16-bit gray": (lambda: Image.fromarray(np.array([[0, 257 * 128, 65535]], np.uint16)), 1, [[0, 128, 255]]),
}


def palette(colours: list[int]) -> Image.Image:
    """A 2x1 palette image: pixel i is palette entry i."""
    image = Image.fromarray(np.array([[0, 1]], np.uint8)).convert("P")
    image.putpalette(colours)
    return image


def with_info(image: Image.Image, **info) -> Image.Image:
    image.info.update(info)
    return image


@pytest.mark.parametrize("mode", list(MODES))
def test_every_png_mode_reads_as_gray_or_rgb_with_transparency_over_white(tmp_path, mode):
    make, channels, expected = MODES[mode]
    make().save(tmp_path / "x.png")
    x, _ = images.image_folder(tmp_path, "train", None, None)
    assert x.shape[1] == channels
    assert torch.equal((x[0] * 255).round().to(torch.int64), torch.tensor(expected).reshape(x.shape[1:]))


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "x.jpg", quality=95)  # pure red in ink
    x, _ = images.image_folder(tmp_path, "train", None, None)
    assert x.shape == (1, 3, 8, 8)
    assert torch.allclose(x.mean(dim=(2, 3)), torch.tensor([[1.0, 0.0, 0.0]]), atol=0.03)


@pytest.mark.parametrize("format,suffix", [("PNG", ".png"), ("MPO", ".jpg")], ids=["apng", "mpo"])
def test_an_animated_or_multi_picture_file_gives_its_first_frame(tmp_path, format, suffix):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((250, 0, 0), (0, 0, 250), (0, 250, 0))]
    frames[0].save(tmp_path / f"x{suffix}", format, save_all=True, append_images=frames[1:])
    x, _ = images.image_folder(tmp_path, "train", None, None)
    assert x.shape == (1, 3, 8, 8)
    assert torch.allclose(x.mean(dim=(2, 3)), torch.tensor([[250, 0, 0]]) / 255, atol=0.03)


def exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value  # Orientation
    return exif


# What each EXIF orientation asks a viewer to do to the stored pixels to show the picture upright.
UPRIGHT = {1: lambda a: a, 3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1),
           2: lambda a: a[:, ::-1], 5: lambda a: a.T}


@pytest.mark.parametrize("orientation", list(UPRIGHT))
def test_exif_orientation_turns_the_picture_upright_before_sizing(tmp_path, orientation):
    stored = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40  # 3 wide, 2 high, every pixel different
    Image.fromarray(stored).save(tmp_path / "a.png", exif=exif_orientation(orientation))
    upright = UPRIGHT[orientation](stored)
    # An upright image of the turned shape beside it: the same size, so no image_size is needed.
    save(tmp_path / "b.png", np.zeros(upright.shape, np.uint8))
    x, _ = images.image_folder(tmp_path, "train", None, None)
    assert torch.equal((x[0, 0] * 255).round(), torch.from_numpy(upright.astype(np.float32)))


def test_exif_orientation_of_a_jpeg_before_the_centre_crop(tmp_path):
    # Stored 40 wide and 20 high, left half black, right half white; orientation 6 shows it turned a quarter
    # clockwise: 20 wide and 40 high, black on top. The centre crop of that keeps both halves, top black.
    stored = np.zeros((20, 40), np.uint8)
    stored[:, 20:] = 255
    Image.fromarray(stored).save(tmp_path / "x.jpg", quality=95, exif=exif_orientation(6))
    x, _ = images.image_folder(tmp_path, "train", 10, None)
    assert x.shape == (1, 1, 10, 10)
    assert x[0, 0, :4].max() < 0.1 and x[0, 0, 6:].min() > 0.9


def test_exif_orientation_before_padding(tmp_path):
    # Stored 40 wide and 20 high; orientation 6 shows it 20 wide and 40 high, so crop=pad fits it as 5x10 with
    # white bands left and right (at column round(5 / 2) = 2), not as 10x5 with bands above and below.
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(tmp_path / "x.png", exif=exif_orientation(6))
    x, _ = images.image_folder(tmp_path, "train", 10, None, "pad")
    assert x[0, 0, :, 2:7].max() == 0 and x[0, 0, :, :2].min() == 1 and x[0, 0, :, 7:].min() == 1


@pytest.mark.parametrize("shape", [(2, 1025), (1025, 2), (1100, 1100)])
def test_images_over_the_training_size_need_an_image_size(tmp_path, monkeypatch, shape):
    save(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    save(tmp_path / "big.png", np.zeros(shape, np.uint8))
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size) or real_load(image))
    with pytest.raises(ValueError, match="over the 1024 pixels a side .* e.g. --set image_size=64") as error:
        images.image_folder(tmp_path, "train", None, None)
    assert str(tmp_path / "big.png") in one_line(error)
    assert shape[::-1] not in decoded  # refused from its header, even though a PNG's EXIF may follow its pixels
    assert images.image_folder(tmp_path, "train", 4, None)[0].shape == (2, 1, 4, 4)


def test_a_folder_too_big_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    tiny = encoded(np.zeros((4, 4), np.uint8))
    for i in range(2000):  # many small files: their headers are read, never their pixels
        (tmp_path / f"{i:04d}.png").write_bytes(tiny)
    monkeypatch.setattr(images, "MAX_DATA_BYTES", 1800 * 1 * 8 * 8 * 4 - 1)  # float32 at image_size 8: 1800 too many
    monkeypatch.setattr(images, "_pixels", lambda *args: pytest.fail("decoded an image before refusing"))
    with pytest.raises(ValueError, match=r"train split .* 1800 images of 1x8x8, over genlab's .* image_size") as error:
        images.image_folder(tmp_path, "train", 8, None)
    assert str(tmp_path) in one_line(error)
    monkeypatch.undo()
    assert images.image_folder(tmp_path, "test", 8, None)[0].shape == (200, 1, 8, 8)


def test_a_file_replaced_between_header_and_pixels_is_refused(tmp_path, monkeypatch):
    save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    monkeypatch.setattr(images, "_header", lambda file, image_size: (True, (5, 4)))  # what it was a moment ago
    with pytest.raises(ValueError, match="a.png changed while it was being read: run again"):
        images.image_folder(tmp_path, "train", None, None)


@pytest.mark.parametrize("image_size", [0, -3, 1025, 2.5, True, "32"])
def test_image_size_that_cannot_work_is_refused(tmp_path, image_size):
    save(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="image_size must be a whole number of pixels from 1 to 1024"):
        images.image_folder(tmp_path, "train", image_size, None)


@pytest.mark.parametrize("channels", [0, 2, 4, "3", True, 1.0 + 2])
def test_channels_that_cannot_work_are_refused(tmp_path, channels):
    save(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="channels must be 1 .* 3 .* or unset"):
        images.image_folder(tmp_path, "train", None, channels)


@pytest.mark.parametrize("name", ["digits", "mnist", "stacked-mnist", "ring", "patterns"])
@pytest.mark.parametrize("setting", [{"image_size": 32}, {"channels": 3}])
def test_image_size_and_channels_are_refused_for_data_of_a_fixed_shape(tmp_path, name, setting):
    with pytest.raises(ValueError, match=f"applies only to .*folder:PATH data, not '{name}'"):
        load_dataset(name, data_dir=tmp_path, **setting)


def test_faces_take_an_image_size_but_not_channels():
    with pytest.raises(ValueError, match="channels applies only to photos:PATH and folder:PATH data, not 'faces'"):
        load_dataset("faces", channels=3)


# ----------------------------------------------------------------------------- folders


def gray_png(path: Path, value: int) -> None:
    save(path, np.full((3, 3), value, np.uint8))


def values(x: torch.Tensor) -> list[int]:
    return sorted((x[:, 0, 0, 0] * 255).round().long().tolist())


def test_hidden_files_and_folders_are_skipped(tmp_path):
    gray_png(tmp_path / "a.png", 1)
    gray_png(tmp_path / "sub" / "b.jpeg", 2)
    junk = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "  # an AppleDouble header, not an image
    for hidden in ["._a.png", "sub/._b.jpeg", "__MACOSX/._a.png", ".DS_Store", ".git/objects/x.png",
                   ".ipynb_checkpoints/a-checkpoint.png", ".hidden.png"]:
        (tmp_path / hidden).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / hidden).write_bytes(junk)
    (tmp_path / "notes.txt").write_text("not an image, and not named like one")
    x, _ = images.image_folder(tmp_path, "train", None, None)
    assert values(x) == [1, 2]


def test_a_folder_named_like_an_image_is_a_folder(tmp_path):
    gray_png(tmp_path / "holiday.png" / "a.png", 5)
    gray_png(tmp_path / "b.jpg.png", 6)
    assert values(images.image_folder(tmp_path, "train", None, None)[0]) == [5, 6]


def test_linked_folders_are_read_once_and_a_link_loop_ends(tmp_path):
    pictures, elsewhere = tmp_path / "pictures", tmp_path / "elsewhere"
    gray_png(pictures / "a.png", 1)
    gray_png(pictures / "sub" / "b.png", 2)
    gray_png(elsewhere / "c.png", 3)
    (pictures / "sub" / "loop").symlink_to(pictures)  # pictures/sub/loop/sub/loop/... forever
    (pictures / "again").symlink_to(pictures / "sub")  # the same folder under a second name
    (pictures / "outside").symlink_to(elsewhere)  # a folder kept elsewhere, linked in
    (pictures / "d.png").symlink_to(elsewhere / "c.png")  # a linked file is read like any other
    (pictures / "broken.png").symlink_to(tmp_path / "gone.png")  # a link to nothing is not a file
    os.mkfifo(pictures / "pipe.png")  # opening a FIFO would wait forever
    assert values(images.image_folder(pictures, "train", None, None)[0]) == [1, 2, 3, 3]


ODD_NAMES = ["with space.png", "ünïcödé.png", "new\nline.png", "tab\there.png", "quote'\".png", "-dash.png",
             "#hash%20.png", os.fsdecode(b"not-utf8-\xff.png"), "x" * 200 + ".png"]


@pytest.mark.parametrize("name", ODD_NAMES, ids=range(len(ODD_NAMES)))
def test_odd_file_names_load_and_a_damaged_one_is_named_on_one_line(tmp_path, name):
    gray_png(tmp_path / "ok" / name, 4)
    assert values(images.image_folder(tmp_path / "ok", "train", None, None)[0]) == [4]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / name).write_bytes(b"junk")
    with pytest.raises(ValueError, match="is not a readable PNG or JPEG image") as error:
        images.image_folder(tmp_path / "bad", "train", None, None)
    assert images.shown(tmp_path / "bad" / name) in one_line(error)


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    # Tests run as root, which chmod does not stop: make opening the one file fail as it would for a user.
    gray_png(tmp_path / "a.png", 1)
    gray_png(tmp_path / "locked.png", 2)
    real_open = Image.open

    def open_(file, *args, **kwargs):
        if Path(file).name == "locked.png":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(Image, "open", open_)
    with pytest.raises(ValueError, match=r"locked.png cannot be read \(Permission denied\): check its permissions"):
        images.image_folder(tmp_path, "train", None, None)


def test_an_unreadable_subfolder_is_named_not_skipped(tmp_path, monkeypatch):
    gray_png(tmp_path / "a.png", 1)
    gray_png(tmp_path / "locked" / "b.png", 2)
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ValueError, match="cannot read folder .*locked .Permission denied.: check its permissions"):
        images.image_folder(tmp_path, "train", None, None)


@pytest.mark.parametrize("name", ["folder:", "folder:   "])
def test_folder_without_a_path_is_refused_not_the_current_folder(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    gray_png(tmp_path / "a.png", 1)  # the current folder holds an image: it must still not be used
    with pytest.raises(ValueError, match="folder: needs the path of a folder of images, e.g. folder:photos"):
        load_dataset(name)


def test_folder_paths_that_are_not_folders_of_images(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder '.*nowhere' not found"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    gray_png(tmp_path / "a.png", 1)
    with pytest.raises(ValueError, match="a.png' is a file, not a folder"):
        load_dataset(f"folder:{tmp_path / 'a.png'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "._x.png").write_bytes(b"junk")
    (tmp_path / "empty" / "x.gif").write_bytes(encoded(np.zeros((2, 2), np.uint8), "GIF"))
    with pytest.raises(ValueError, match=r"no images in .*empty': genlab reads \.png, \.jpg, \.jpeg files \(any"):
        load_dataset(f"folder:{tmp_path / 'empty'}")


def test_folder_path_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    gray_png(tmp_path / "pictures" / "a.png", 8)
    assert values(load_dataset("folder:~/pictures").x) == [8]


# ----------------------------------------------------------------------------- the decoded cache of a folder


def cached_folder(folder: Path) -> tuple[torch.Tensor, Path]:
    """A folder of 12 images, loaded once: its train split and the cache file that load wrote."""
    generator = np.random.default_rng(1)
    for i in range(12):
        save(folder / f"{i:02d}.png", generator.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    x, _ = images.image_folder(folder, "train", None, None)
    return x, folder / images.CACHE_FOLDER / "train-native-auto-centre.uint8"


def no_decoding(monkeypatch) -> None:
    monkeypatch.setattr(images, "_pixels", lambda *args: pytest.fail("decoded an image on a cache hit"))


def flip_a_pixel(data: bytes) -> bytes:
    return data[:-7] + bytes([data[-7] ^ 1]) + data[-6:]


def with_header(data: bytes, **changes) -> bytes:
    """The cache with its JSON header edited, padded as genlab pads it: only what `changes` says is wrong."""
    import json

    header = json.loads(data[len(images.CACHE_MAGIC) : images.CACHE_HEADER_BYTES]) | changes
    padded = json.dumps(header).encode().ljust(images.CACHE_HEADER_BYTES - len(images.CACHE_MAGIC))
    return images.CACHE_MAGIC + padded + data[images.CACHE_HEADER_BYTES :]


DAMAGED_CACHES = {
    "empty": lambda data: b"",
    "cut short": lambda data: data[:-10],
    "cut inside its header": lambda data: data[:100],
    "longer": lambda data: data + b"\x00" * 10,
    "one pixel changed": flip_a_pixel,
    "not a cache": lambda data: GOOD_PNG,
    "header garbled": lambda data: data[:50] + b"\xff\xfe{" * 20 + data[110:],
    "header nested too deep": lambda data: images.CACHE_MAGIC + b"[" * 4000 + data[len(images.CACHE_MAGIC) + 4000 :],
    "header not an object": lambda data: images.CACHE_MAGIC + b"[1, 2]".ljust(4000) + data[images.CACHE_HEADER_BYTES:],
    "shape not a shape": lambda data: with_header(data, shape="11x3x5x6"),
    "shape of a huge split": lambda data: with_header(data, shape=[11, 3, 10**6, 10**6]),
    "shape of another split": lambda data: with_header(data, shape=[12, 3, 5, 5]),
    "checksum not a string": lambda data: with_header(data, sha256=None),
    "made for other files": lambda data: with_header(data, key="0" * 64),
}


@pytest.mark.parametrize("case", list(DAMAGED_CACHES))
def test_a_damaged_cache_is_rebuilt_never_trusted(tmp_path, monkeypatch, case):
    first, cache = cached_folder(tmp_path)
    cache.write_bytes(DAMAGED_CACHES[case](cache.read_bytes()))
    again, _ = images.image_folder(tmp_path, "train", None, None)
    assert torch.equal(again, first)
    no_decoding(monkeypatch)  # rebuilt whole: the next load reads it
    assert torch.equal(images.image_folder(tmp_path, "train", None, None)[0], first)


def test_a_cache_that_is_a_folder_means_no_cache(tmp_path):
    first, cache = cached_folder(tmp_path)
    cache.unlink()
    cache.mkdir()
    assert torch.equal(images.image_folder(tmp_path, "train", None, None)[0], first)
    assert cache.is_dir() and [file.name for file in cache.parent.iterdir()] == [cache.name]


def test_a_folder_that_cannot_be_written_loads_without_a_cache(tmp_path, monkeypatch):
    # Tests run as root, which chmod does not stop: make creating the temporary file fail as it would for a user.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / images.CACHE_FOLDER))

    monkeypatch.setattr(images.tempfile, "mkstemp", refuse)
    first, cache = cached_folder(tmp_path)
    assert not cache.exists()
    decoded = []
    real_pixels = images._pixels
    monkeypatch.setattr(images, "_pixels", lambda *args: decoded.append(args[0]) or real_pixels(*args))
    assert torch.equal(images.image_folder(tmp_path, "train", None, None)[0], first) and len(decoded) == 11


def test_a_cache_folder_name_taken_by_a_file_means_no_cache(tmp_path):
    (tmp_path / images.CACHE_FOLDER).write_bytes(b"someone's file")
    first, _ = cached_folder(tmp_path)
    assert (tmp_path / images.CACHE_FOLDER).read_bytes() == b"someone's file"
    assert torch.equal(images.image_folder(tmp_path, "train", None, None)[0], first)


def test_a_full_disk_means_no_cache_and_no_temporary_file(tmp_path, monkeypatch):
    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(images.os, "fdopen", lambda descriptor, mode: FullDisk(descriptor, mode))
    first, cache = cached_folder(tmp_path)
    assert list(cache.parent.iterdir()) == []
    monkeypatch.undo()
    assert torch.equal(images.image_folder(tmp_path, "train", None, None)[0], first) and cache.is_file()


# ----------------------------------------------------------------------------- MNIST files


def idx(magic: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape) + payload


def mnist_files(folder: Path, n: int = 3) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    images_file, labels_file = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    images_file.write_bytes(gzip.compress(idx(2051, (n, 28, 28), bytes(n * 784))))
    labels_file.write_bytes(gzip.compress(idx(2049, (n,), bytes(range(n)))))
    return images_file, labels_file


GZIPPED_IMAGES = gzip.compress(idx(2051, (3, 28, 28), bytes(range(256)) * 9 + bytes(48)))
IMAGES_DAMAGE = {
    "empty": (b"", "is empty"),
    "not gzip": (idx(2051, (3, 28, 28), bytes(3 * 784)), "not a complete gzip file"),
    "gzip cut short": (gzip.compress(idx(2051, (3, 28, 28), bytes(3 * 784)))[:-12], "not a complete gzip file"),
    "gzip garbled": (GZIPPED_IMAGES[:20] + bytes(b ^ 0xFF for b in GZIPPED_IMAGES[20:40]) + GZIPPED_IMAGES[40:],
                     "not a complete gzip file"),
    "gzip checksum wrong": (gzip.compress(idx(2051, (3, 28, 28), bytes(3 * 784)))[:-8] + bytes(8),
                            "not a complete gzip file"),
    "labels in place of images": (gzip.compress(idx(2049, (3,), bytes(3))),
                                  r"magic number 2049, expected 2051 \(images; it holds labels\)"),
    "float pixels": (gzip.compress(idx(0x0D03, (3, 28, 28), bytes(3 * 784 * 4))), "magic number 3331, expected 2051"),
    "too few bytes for a header": (gzip.compress(idx(2051, (3,), b"")), "8 bytes, less than the 16-byte header"),
    "32x32 images": (gzip.compress(idx(2051, (3, 32, 32), bytes(3 * 1024))), "images are 32x32, MNIST's are 28x28"),
    "no images": (gzip.compress(idx(2051, (0, 28, 28), b"")), "holds 0 examples"),
    "pixels cut short": (gzip.compress(idx(2051, (3, 28, 28), bytes(3 * 784 - 100))), "2252 bytes after its header"),
    "bytes left over": (gzip.compress(idx(2051, (3, 28, 28), bytes(3 * 784 + 1))), "2353 bytes after its header"),
    "more images than labels": (gzip.compress(idx(2051, (4, 28, 28), bytes(4 * 784))), "4 images but .* 3 labels"),
}


@pytest.mark.parametrize("case", list(IMAGES_DAMAGE))
def test_a_damaged_mnist_images_file_is_named_with_what_to_do(tmp_path, case):
    data, expected = IMAGES_DAMAGE[case]
    images_file, _ = mnist_files(tmp_path)
    images_file.write_bytes(data)
    with pytest.raises(ValueError, match=expected) as error:
        images.mnist(tmp_path, "test")
    message = one_line(error)
    assert str(images_file) in message and "run `genlab data download mnist`, which replaces" in message


@pytest.mark.parametrize("payload,expected", [
    (gzip.compress(idx(2051, (3, 28, 28), bytes(3 * 784))), "magic number 2051, expected 2049"),
    (gzip.compress(idx(2049, (3,), bytes([0, 1, 10]))), "holds the label 10, but digits are 0..9"),
    (gzip.compress(idx(2049, (3,), bytes(2))), "2 bytes after its header"),
], ids=["images in place of labels", "label 10", "labels cut short"])
def test_a_damaged_mnist_labels_file_is_named_with_what_to_do(tmp_path, payload, expected):
    _, labels_file = mnist_files(tmp_path)
    labels_file.write_bytes(payload)
    with pytest.raises(ValueError, match=expected) as error:
        images.mnist(tmp_path, "test")
    assert str(labels_file) in one_line(error) and "genlab data download mnist" in str(error.value)


def test_a_gzip_that_inflates_past_mnist_is_refused_unread(tmp_path, monkeypatch):
    images_file, _ = mnist_files(tmp_path, n=10)
    monkeypatch.setattr(images, "MAX_IDX_BYTES", 1000)  # 10 images take 7856 bytes
    with pytest.raises(ValueError, match="holds over 1000 bytes uncompressed") as error:
        images.mnist(tmp_path, "test")
    assert str(images_file) in one_line(error)


def test_stacked_mnist_without_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `genlab data download mnist`") as error:
        load_dataset("stacked-mnist", data_dir=tmp_path)
    assert str(tmp_path / "mnist") in one_line(error)


# ----------------------------------------------------------------------------- MNIST download


def no_network(monkeypatch):
    def getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_download_without_a_network_says_what_to_do_and_keeps_nothing(tmp_path, monkeypatch):
    no_network(monkeypatch)
    folder = tmp_path / "mnist"
    with pytest.raises(ValueError, match="could not download .*train-images-idx3-ubyte.gz .*name resolution") as error:
        images.download_mnist(folder)
    message = one_line(error)
    assert "no partial file was kept" in message and f"into {folder} by hand" in message
    assert "SHA-256" in message and images.MNIST_URL in message
    assert list(folder.iterdir()) == []


def test_cli_download_without_a_network_is_one_line(tmp_path, monkeypatch):
    no_network(monkeypatch)
    result = CliRunner().invoke(app, ["data", "download", "mnist", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download"), result.stderr
    assert list((tmp_path / "mnist").iterdir()) == []


class CutShort:
    """A response that sends one chunk, then fails as `failure` says."""

    def __init__(self, failure: BaseException):
        self.failure, self.sent = failure, False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size: int) -> bytes:
        if self.sent:
            raise self.failure
        self.sent = True
        return b"\x1f\x8b" + bytes(100)  # the start of something gzip-like


@pytest.mark.parametrize("failure", [
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("The read operation timed out"),
    http.client.IncompleteRead(b"", 9_000_000),
], ids=["reset", "timeout", "incomplete"])
def test_download_cut_short_keeps_no_partial_file(tmp_path, failure):
    folder = tmp_path / "mnist"
    with pytest.raises(ValueError, match="could not download .* no partial file was kept") as error:
        images.download_mnist(folder, opener=lambda url, timeout: CutShort(failure))
    one_line(error)
    assert list(folder.iterdir()) == []


def test_download_interrupted_by_the_user_keeps_no_partial_file(tmp_path):
    folder = tmp_path / "mnist"
    with pytest.raises(KeyboardInterrupt):
        images.download_mnist(folder, opener=lambda url, timeout: CutShort(KeyboardInterrupt()))
    assert list(folder.iterdir()) == []


def test_download_http_error_is_named(tmp_path):
    def forbidden(url, timeout):
        raise urllib.error.HTTPError(url, 403, "Forbidden", {}, None)

    with pytest.raises(ValueError, match="HTTP Error 403: Forbidden") as error:
        images.download_mnist(tmp_path / "mnist", opener=forbidden)
    one_line(error)


def test_download_that_sends_too_much_is_cut_off(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    (served / "train-images-idx3-ubyte.gz").write_bytes(bytes(5000))
    monkeypatch.setattr(images, "MAX_DOWNLOAD_BYTES", 4096)
    with pytest.raises(ValueError, match="sent over 4096 bytes, more than MNIST") as error:
        images.download_mnist(tmp_path / "mnist", base_url=served.as_uri())
    one_line(error)
    assert list((tmp_path / "mnist").iterdir()) == []
