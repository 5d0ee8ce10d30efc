"""Image data sets: scikit-learn's 8x8 digits, MNIST from its IDX files, scikit-image's 100 faces, and
folders of PNG/JPEG.

Each loader returns a whole split as (x, labels): x is (N, C, H, W) float32 in [0, 1], labels is
(N,) int64 or None. MNIST is parsed from the original gzip IDX files with numpy, and
`download_mnist` fetches them, checked against the SHA-256 of their uncompressed bytes. A folder's decoded
split is cached in the folder, so the next load of an unchanged folder decodes nothing (see `_read_cache`).

Every file is untrusted: a damaged, hostile or surprising file is refused with one ValueError (or
FileNotFoundError) that names it and says what to do, before it can cost much memory or time.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import logging
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zlib
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from sklearn.datasets import load_digits

log = logging.getLogger(__name__)


def shown(path: Path | str) -> str:
    """A path for a one-line message: control characters (a newline in a file name) and bytes that are
    not UTF-8 are escaped, so the message stays one printable line."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(path))


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")


def digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 handwritten digits as (N, 1, 8, 8) in [0, 1]: 1500 train, 297 test."""
    _check_split(split)
    data = load_digits()
    x = torch.from_numpy(data.images).float().div(16).unsqueeze(1)  # pixels are counts 0..16
    labels = torch.from_numpy(data.target).long()
    # The data set has no official split, so fix one with a seeded shuffle.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    rows = order[:1500] if split == "train" else order[1500:]
    return x[rows], labels[rows]


# ----------------------------------------------------------------------------- faces

FACES = 100  # lfw_subset() holds 100 faces of Labeled Faces in the Wild, then 100 non-face patches
FACE_SIDE = 25


def faces(split: str, image_size: int | None = None) -> tuple[torch.Tensor, None]:
    """The 100 real face photos scikit-image ships in its wheel (25x25 grey crops of Labeled Faces in the
    Wild; no download) as (100, 1, S, S) in [0, 1], S = image_size (bicubic), else 25.

    Both splits are the same 100 faces: this is the 100-shot setting of DiffAugment's benchmarks, where
    there are no other faces, so quality is measured against the training faces (their protocol) and
    copying is caught by the memorization check, not by a held-out split."""
    _check_split(split)
    if image_size is not None and (type(image_size) is not int or not 4 <= image_size <= MAX_IMAGE_SIZE):
        raise ValueError(f"image_size must be a whole number of pixels from 4 to {MAX_IMAGE_SIZE}, got {image_size!r}")
    from skimage.data import lfw_subset  # imported here: scikit-image takes a second to import

    pixels = lfw_subset()[:FACES]  # float64 in [0, 1]
    if image_size is not None and image_size != FACE_SIDE:
        pixels = np.stack([
            np.asarray(Image.fromarray(face.astype(np.float32), mode="F").resize(
                (image_size, image_size), Image.Resampling.BICUBIC))
            for face in pixels
        ])
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).clamp_(0, 1).unsqueeze(1), None


# ----------------------------------------------------------------------------- MNIST

# SHA-256 of the uncompressed files: gzip output varies with the compressor, the content does not.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# PyTorch's mirror (the one torchvision tries first): yann.lecun.com now refuses downloads.
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# IDX magic numbers: two zero bytes, a type byte (0x08 = unsigned byte), then the dimension count.
IMAGES_MAGIC = 0x0803  # 2051: uint8, 3 dimensions (count, rows, columns)
LABELS_MAGIC = 0x0801  # 2049: uint8, 1 dimension (count)
MNIST_SIDE = 28
# The largest MNIST file holds 60,000 * 28 * 28 + 16 = 47,040,016 bytes: reading stops past this
# bound, so a small gzip that inflates to gigabytes costs nothing.
MAX_IDX_BYTES = 64 * 2**20
# The largest MNIST .gz is 9.9 MB: a server that sends more is not serving MNIST.
MAX_DOWNLOAD_BYTES = 64 * 2**20
GET_MNIST = "run `genlab data download mnist`"
REPLACE_MNIST = f"{GET_MNIST}, which replaces any file whose SHA-256 is wrong"


def _read_idx(file: Path, magic: int) -> np.ndarray:
    """The uint8 array in a gzip IDX file, after checking all of its header against `magic`, 28x28
    images for the images magic, and its length against the header."""
    ndim = magic & 0xFF
    header_bytes = 4 + 4 * ndim  # the magic number, then one big-endian uint32 per dimension
    if not file.is_file():
        raise FileNotFoundError(f"{shown(file)} not found: {GET_MNIST}")
    if file.stat().st_size == 0:  # gzip reads an empty file as an empty stream, without complaint
        raise ValueError(f"{shown(file)} is empty (0 bytes): {REPLACE_MNIST}")
    try:
        # Reading to the end of the stream also checks gzip's CRC and length.
        with gzip.open(file, "rb") as stream:
            data = stream.read(MAX_IDX_BYTES + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:  # BadGzipFile is an OSError: catch it first
        raise ValueError(f"{shown(file)} is not a complete gzip file ({error}): {REPLACE_MNIST}") from None
    except OSError as error:
        raise ValueError(f"{shown(file)} cannot be read ({error.strerror}): check its permissions") from None
    damaged = f"{shown(file)} is not an MNIST IDX file"
    if len(data) > MAX_IDX_BYTES:
        raise ValueError(f"{damaged}: it holds over {MAX_IDX_BYTES} bytes uncompressed; {REPLACE_MNIST}")
    found = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and found != magic:
        what = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
        raise ValueError(
            f"{damaged}: magic number {found}, expected {magic} ({what[magic]}"
            + (f"; it holds {what[found]}" if found in what else "")
            + f"); {REPLACE_MNIST}"
        )
    if len(data) < header_bytes:
        raise ValueError(
            f"{damaged}: it holds {len(data)} bytes, less than the {header_bytes}-byte header; {REPLACE_MNIST}"
        )
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    if ndim == 3 and shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise ValueError(
            f"{damaged}: its images are {shape[1]}x{shape[2]}, MNIST's are {MNIST_SIDE}x{MNIST_SIDE}; {REPLACE_MNIST}"
        )
    if shape[0] == 0:
        raise ValueError(f"{damaged}: its header says it holds 0 examples; {REPLACE_MNIST}")
    payload = len(data) - header_bytes
    if payload != np.prod(shape):
        raise ValueError(
            f"{shown(file)} holds {payload} bytes after its header, which says {shape} = "
            f"{np.prod(shape)}: it is damaged; {REPLACE_MNIST}"
        )
    return np.frombuffer(data, np.uint8, offset=header_bytes).reshape(shape)


def mnist(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST from the four gzip IDX files in `folder`: (N, 1, 28, 28) in [0, 1] and int64 labels."""
    _check_split(split)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MNIST folder {shown(folder)} not found: {GET_MNIST}, or set --data-dir / GENLAB_DATA_DIR "
            "to a folder that holds mnist/"
        )
    prefix = "train" if split == "train" else "t10k"
    images_file = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_file = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = _read_idx(images_file, IMAGES_MAGIC)
    labels = _read_idx(labels_file, LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"{shown(images_file)} holds {len(images)} images but {shown(labels_file)} holds {len(labels)} "
            f"labels: {REPLACE_MNIST}"
        )
    if labels.max() > 9:  # a wrong label would pass silently into Stacked-MNIST's mode counts
        raise ValueError(f"{shown(labels_file)} holds the label {labels.max()}, but digits are 0..9: {REPLACE_MNIST}")
    # astype copies into writable memory; torch warns on (and may not write to) numpy's read-only view.
    x = torch.from_numpy(images.astype(np.float32)).div_(255).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


# Stacked-MNIST examples per split: 60,000 for train and 10,000 for test, the sizes of the MNIST splits
# they are drawn from (VEEGAN and PacGAN draw their training triples the same way, at random with replacement).
STACKED_SIZES = {"train": 60_000, "test": 10_000}


def stacked_mnist(folder: Path, split: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked-MNIST (Metz et al. 2017; VEEGAN; PacGAN): three MNIST digits of `split` as the R, G, B channels.

    (N, 3, 28, 28) in [0, 1] with N = STACKED_SIZES[split], and int64 labels 100 * r + 10 * g + b in
    0..999, the mode index of the triple of digit labels. Each example's three indices into the MNIST split
    are drawn uniformly with replacement from a generator seeded with `seed`, so a (split, seed) is always
    the same data set; every one of the 1000 modes has probability close to 1/1000 under it (MNIST's
    classes are not quite balanced: KL of the train split's modes to uniform 0.004).
    """
    digits_x, digits_labels = mnist(folder, split)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(digits_x), (STACKED_SIZES[split], 3), generator=generator)  # (N, 3)
    x = digits_x[:, 0][rows]  # (N, 3, 28, 28): channel c is the digit at rows[:, c]
    triples = digits_labels[rows]  # (N, 3)
    return x, triples[:, 0] * 100 + triples[:, 1] * 10 + triples[:, 2]


def _gunzip_sha256(file: Path) -> str | None:
    """SHA-256 of the uncompressed content of `file`, or None if it is not a complete gzip file."""
    try:
        with gzip.open(file, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except (gzip.BadGzipFile, EOFError, zlib.error):
        return None


def verify_mnist(folder: Path) -> None:
    """Raise unless `folder` holds the four MNIST files with their published content."""
    for name, expected in MNIST_SHA256.items():
        file = Path(folder) / f"{name}.gz"
        if not file.is_file():
            raise FileNotFoundError(f"{shown(file)} not found: {GET_MNIST}")
        got = _gunzip_sha256(file)
        if got != expected:
            raise ValueError(
                f"{shown(file)} is damaged: uncompressed SHA-256 {got or '(not a complete gzip file)'}, "
                f"expected {expected}; {REPLACE_MNIST}"
            )


def _chunks(url: str, folder: Path, opener):
    """The body of `url` in 1 MiB pieces; a network failure at any point becomes one ValueError. Errors
    writing them (a full disk) happen in the caller, so they stay OSErrors that say what they are."""
    by_hand = (
        f"no partial file was kept. Check the connection and run it again, or put "
        f"{', '.join(f'{name}.gz' for name in MNIST_SHA256)} from {MNIST_URL} into {shown(folder)} by hand "
        "and run it again to check their SHA-256"
    )
    received = 0
    try:
        with opener(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                received += len(chunk)
                if received > MAX_DOWNLOAD_BYTES:
                    raise ValueError(f"{url} sent over {MAX_DOWNLOAD_BYTES} bytes, more than MNIST; {by_hand}")
                yield chunk
    # urllib's URLError and HTTPError, timeouts and resets are OSErrors; a cut-short body is an HTTPException.
    except (OSError, http.client.HTTPException) as error:
        detail = error if isinstance(error, urllib.error.HTTPError) else getattr(error, "reason", error)
        raise ValueError(f"could not download {url} ({detail}); {by_hand}") from None


def _download(url: str, file: Path, expected: str, opener) -> None:
    """Fetch `url` to `file` through a temporary file, renamed into place only once its hash is right.
    The temporary name starts with a dot and ends in .part, so even one left by a killed process is
    never read as data."""
    descriptor, temp_name = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(descriptor, "wb") as out:
            for chunk in _chunks(url, file.parent, opener):
                out.write(chunk)
        got = _gunzip_sha256(temp)
        if got != expected:
            raise ValueError(
                f"downloaded {url} does not match {file.name}: uncompressed SHA-256 "
                f"{got or '(not a complete gzip file)'}, expected {expected}; no file was kept. The server "
                f"may have sent an error page: run it again later, or put the file into {shown(file.parent)} by hand"
            )
        os.replace(temp, file)  # atomic: the final name only ever holds a verified file
    finally:
        temp.unlink(missing_ok=True)


def download_mnist(folder: Path, base_url: str = MNIST_URL, opener=urllib.request.urlopen) -> list[Path]:
    """Fetch the four MNIST gzip files into `folder` and return their paths.

    Files already there with the right content are kept. `opener(url, timeout=...)` returns a
    readable response, like urllib's urlopen (which also serves the file:// URLs the tests use).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, expected in MNIST_SHA256.items():
        file = folder / f"{name}.gz"
        if not (file.is_file() and _gunzip_sha256(file) == expected):
            _download(f"{base_url.rstrip('/')}/{name}.gz", file, expected, opener)
        files.append(file)
    return files


# ----------------------------------------------------------------------------- image folders

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Only these decoders ever see a folder's bytes, whatever a file's suffix says (a .jpg that is really a
# PNG still loads). Pillow's rarer decoders have had more security bugs, and no one means a GIF by .png.
# (The multi-picture JPEGs that some cameras write open as JPEG too; Pillow then names them MPO.)
IMAGE_FORMATS = ("PNG", "JPEG")
# Decoding is refused above 8192x8192 = 67 Mpx (a 64 Mpx phone photo fits), judged from the header
# alone: a small file can claim 20000x20000 and would take 1.2 GB to decode. Pillow's own check warns
# from 89 Mpx and raises from 179 Mpx; this bound is below both, so one line decides.
MAX_IMAGE_PIXELS = 8192 * 8192
# Without image_size the images are the training size: the models take at most 1024 (TrainConfig).
MAX_IMAGE_SIZE = 1024
# A split is one float32 tensor in memory: refuse before decoding rather than swap or be killed.
# 16 GiB holds 350,000 RGB images of 64x64. (Decoding holds the split's uint8 pixels beside it: a quarter more.)
MAX_DATA_BYTES = 16 * 2**30
# Transparent pixels show white, as an image viewer shows them on a page; dropping alpha would
# show whatever colour the editor left under them, often black, sometimes noise.
BACKGROUND = "white"
# EXIF orientations 5..8 turn the picture a quarter turn, swapping its width and height.
QUARTER_TURNS = (5, 6, 7, 8)


@contextlib.contextmanager
def _readable(file: Path):
    """Turn any error Pillow raises about a file into one line that names it and says what to do."""
    try:
        yield
    except UnidentifiedImageError:
        what = "is empty (0 bytes)" if file.stat().st_size == 0 else "is not a readable PNG or JPEG image"
        raise ValueError(f"{shown(file)} {what}: remove or replace it") from None
    except Image.DecompressionBombError:
        raise ValueError(_too_many_pixels(file)) from None
    except OSError as error:
        if error.filename is None:  # a decoder error: the file opened, its bytes are bad
            raise ValueError(f"{shown(file)} is damaged ({error}): remove or replace it") from None
        raise ValueError(f"{shown(file)} cannot be read ({error.strerror}): check its permissions") from None
    # A malformed file makes Pillow's parsers raise almost anything (SyntaxError for a bad PNG chunk,
    # struct.error or ValueError in EXIF, EOFError...); within these few calls each means the file is bad.
    except Exception as error:
        raise ValueError(f"{shown(file)} is damaged ({type(error).__name__}: {error}): remove or replace it") from None


def _too_many_pixels(file: Path, size: tuple[int, int] | None = None) -> str:
    claimed = f" is {size[0]}x{size[1]}," if size else " is"
    return (f"{shown(file)}{claimed} over the {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels genlab decodes: "
            "downscale it first, or remove it")


@contextlib.contextmanager
def _open(file: Path):
    """An open PNG/JPEG whose pixels are not yet decoded, refused if its header claims too many."""
    with _readable(file), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the bound below decides
        image = Image.open(file, formats=IMAGE_FORMATS)
    with image:
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise ValueError(_too_many_pixels(file, image.size))
        yield image


def _header(file: Path, image_size: int | None) -> tuple[bool, tuple[int, int]]:
    """Whether an image is grayscale, and its (width, height) as displayed, from its header.

    Without an image_size the image is the training size, so it is refused over MAX_IMAGE_SIZE, and its
    size is turned as its EXIF orientation will turn it (a PNG's EXIF may follow its pixels, so finding it
    decodes a PNG: only after the size check). With an image_size the size does not matter here.
    """
    with _open(file) as image:
        if image_size is None and max(image.size) > MAX_IMAGE_SIZE:
            raise ValueError(
                f"{shown(file)} is {image.width}x{image.height}, over the {MAX_IMAGE_SIZE} pixels a side genlab "
                "trains on: pass an image size, e.g. --set image_size=64"
            )
        with _readable(file):
            gray = Image.getmodebase(image.mode) == "L"  # 1, L, LA and 16-bit I modes; P (palette) is colour
            turned = image_size is None and image.getexif().get(ExifTags.Base.Orientation) in QUARTER_TURNS
        return gray, image.size[::-1] if turned else image.size


# How an image that is not square meets image_size (TrainConfig.crop), by name.
CROPS = {
    # Scale the shorter side to image_size and keep the centred square, as pytorch/examples' DCGAN does on CelebA,
    # and lightweight-gan, DiffAugment and StyleGAN's dataset_tool (--transform=center-crop) do.
    "centre": lambda image, size: ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC),
    # Scale the longer side to image_size and fill the rest with BACKGROUND: nothing of the picture is cut off
    # (a full-length portrait keeps its head and feet), at the price of bands the model learns to draw too.
    "pad": lambda image, size: ImageOps.pad(image, (size, size), Image.Resampling.BICUBIC, color=BACKGROUND),
}


def _pixels(file: Path, channels: int, image_size: int | None, crop: str) -> np.ndarray:
    """One image file as a (C, H, W) uint8 array (image_array)."""
    with _open(file) as image, _readable(file):
        image.load()
        return image_array(image, channels, image_size, crop)


def image_array(image: Image.Image, channels: int, image_size: int | None, crop: str) -> np.ndarray:
    """An opened image's pixels as a (C, H, W) uint8 array: its first frame if it is animated, turned upright by
    its EXIF orientation, transparency over white, then fitted to image_size as CROPS[crop] says. The caller
    has checked its size and turns Pillow's errors into its own message (genlab serve decodes uploads with it)."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them; 65535 / 257 = 255.
        image = Image.fromarray(np.rint(np.asarray(image) / 257).astype(np.uint8))
    if image.has_transparency_data:
        image = Image.alpha_composite(Image.new("RGBA", image.size, BACKGROUND), image.convert("RGBA"))
    image = image.convert("L" if channels == 1 else "RGB")
    if image_size is not None:
        image = CROPS[crop](image, image_size)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _image_files(path: Path) -> list[Path]:
    """Every PNG/JPEG under `path`, by relative path. Hidden files and folders (.DS_Store, macOS's ._*
    AppleDouble files, .git) are skipped. Linked folders are followed, each real folder once, so a
    link loop ends; anything that is not a regular file (a FIFO, a broken link) is skipped."""
    def refuse(error: OSError):  # os.walk would skip an unreadable folder silently: fewer images than meant
        raise ValueError(f"cannot read folder {shown(error.filename)} ({error.strerror}): check its permissions")

    files, seen = [], set()
    for root, folders, names in os.walk(path, onerror=refuse, followlinks=True):
        status = os.stat(root)
        if (status.st_dev, status.st_ino) in seen:
            folders.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        folders[:] = [name for name in folders if not name.startswith(".")]
        files += [
            Path(root, name) for name in names
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(Path(root, name))
        ]
    return sorted(files, key=lambda file: file.relative_to(path).as_posix())


def folder_files(path: Path, data: str = "folder:PATH") -> list[Path]:
    """The images of an existing folder (`_image_files`), refused in one line when it is missing, a file or holds
    none; `data` names the data source in the message."""
    if not path.exists():
        raise FileNotFoundError(f"image folder '{shown(path)}' not found: pass {data} with an existing folder")
    if not path.is_dir():
        raise ValueError(f"'{shown(path)}' is a file, not a folder: pass {data} with the folder of images")
    files = _image_files(path)
    if not files:
        raise ValueError(
            f"no images in '{shown(path)}': genlab reads {', '.join(IMAGE_SUFFIXES)} files (any case) in it "
            "and its subfolders, skipping hidden ones"
        )
    return files


def _split_files(files: list[Path], split: str) -> list[Path]:
    """Every 10th file (index % 10 == 9) is the test split; a folder of fewer than 10 gives all to both."""
    if len(files) < 10:
        return files
    return [file for index, file in enumerate(files) if (index % 10 == 9) == (split == "test")]


def _check_fits(path: Path, split: str, shape: tuple[int, ...]) -> None:
    size = math.prod(shape) * 4  # float32
    if size > MAX_DATA_BYTES:
        count, channels, height, width = shape
        raise ValueError(
            f"the {split} split of '{shown(path)}' would take {size / 2**30:.1f} GiB as {count} images of "
            f"{channels}x{height}x{width}, over genlab's {MAX_DATA_BYTES / 2**30:.0f} GiB: pass a smaller image "
            "size (--set image_size=64) or use fewer images"
        )


def _decode(
    path: Path, files: list[Path], split: str, image_size: int | None, channels: int | None, crop: str
) -> np.ndarray:
    """The split's images as one (N, C, H, W) uint8 array, every header checked before any pixels are decoded."""
    # Decide channels and check sizes over the whole folder so that train and test always agree. One bad
    # file refuses the folder rather than being skipped: a warning scrolls past, and the run would
    # quietly train on fewer images than its folder holds.
    headers = [_header(file, image_size) for file in files]
    if channels is None:
        channels = 1 if all(gray for gray, _ in headers) else 3
    if image_size is None:
        first_size = headers[0][1]
        for file, (_, size) in zip(files, headers, strict=True):
            if size != first_size:
                raise ValueError(
                    f"{shown(files[0])} is {first_size[0]}x{first_size[1]} but {shown(file)} is {size[0]}x{size[1]} "
                    "(as displayed, after EXIF orientation): pass an image size, e.g. --set image_size=32"
                )
        width, height = first_size
    else:
        width = height = image_size

    files = _split_files(files, split)
    shape = (len(files), channels, height, width)
    _check_fits(path, split, shape)
    pixels = np.empty(shape, dtype=np.uint8)
    for row, file in zip(pixels, files, strict=True):
        image = _pixels(file, channels, image_size, crop)
        if image.shape != row.shape:  # the file was replaced between reading its header and now
            raise ValueError(f"{shown(file)} changed while it was being read: run again")
        row[...] = image
    return pixels


def image_folder(
    path: Path, split: str, image_size: int | None, channels: int | None, crop: str = "centre"
) -> tuple[torch.Tensor, None]:
    """Every PNG/JPEG under `path` (recursively, see `_image_files`) as (N, C, H, W) in [0, 1], no labels.

    Files are ordered by relative path and every 10th (index % 10 == 9) is the test split; a folder
    of fewer than 10 images gives all of them to both splits. `channels` None means 1 if every image
    is grayscale, else 3. `image_size` None needs every image the same size, at most MAX_IMAGE_SIZE;
    an int fits each image to image_size x image_size as CROPS[crop] says. Each image is read as
    `_pixels` says. Every header is checked before any pixels are decoded.

    The decoded split is cached in the folder (see `_read_cache`): a second load of an unchanged folder
    with the same settings reads it back instead of decoding a single image.
    """
    _check_split(split)
    # type(...) is int: True and 3.0 compare equal to 1 and 3 but would build a wrong-typed tensor.
    if channels is not None and (type(channels) is not int or channels not in (1, 3)):
        raise ValueError(f"channels must be 1 (grayscale), 3 (RGB) or unset, got {channels!r}")
    if image_size is not None and (type(image_size) is not int or not 1 <= image_size <= MAX_IMAGE_SIZE):
        raise ValueError(f"image_size must be a whole number of pixels from 1 to {MAX_IMAGE_SIZE}, got {image_size!r}")
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}: use one of {', '.join(CROPS)}")
    if crop != "centre" and image_size is None:
        raise ValueError(f"crop={crop} fits images to an image size: pass one, e.g. --set image_size=64")
    path = Path(path)
    files = folder_files(path)
    cache = path / CACHE_FOLDER / f"{split}-{image_size or 'native'}-{channels or 'auto'}-{crop}{CACHE_SUFFIX}"
    key = _cache_key(path, files, split, image_size, channels, crop)
    pixels = _read_cache(cache, key, len(_split_files(files, split)))
    if pixels is None:
        pixels = _decode(path, files, split, image_size, channels, crop)
        _write_cache(cache, key, pixels)
    else:
        _check_fits(path, split, pixels.shape)
    x = torch.empty(pixels.shape, dtype=torch.float32)
    x.numpy()[...] = pixels  # uint8 to float32 in one pass, straight from the memory map on a cache hit
    return x.div_(255), None


# ----------------------------------------------------------------------------- the decoded cache of a folder

# Decoding is the slow part of loading a folder, so each split is kept decoded, as raw uint8, in
# <folder>/.genlab-cache/: a hidden folder, so never read as images; it moves, and is deleted, with its images.
# A folder that cannot be written (a read-only mount of a data set) just has no cache.
CACHE_FOLDER = ".genlab-cache"
CACHE_SUFFIX = ".uint8"
CACHE_MAGIC = b"genlab decoded image folder, version 1\n"
CACHE_HEADER_BYTES = 4096  # the magic, then a JSON header padded with spaces; the pixels start here
# A temporary file this old belongs to a process killed while writing it (a writer takes seconds, not an hour).
ABANDONED_SECONDS = 3600


def _cache_key(
    path: Path, files: list[Path], split: str, image_size: int | None, channels: int | None, crop: str
) -> str:
    """SHA-256 of everything a split's pixels depend on: every file of the folder (all of them decide the
    channels and the sizes) by relative path, size and modification time, the settings, and the Pillow that
    decodes them. A file rewritten with the same size within the file system's timestamp resolution (a
    nanosecond on ext4, two seconds on FAT) goes unnoticed; any other change makes a new key."""
    try:
        listing = [(file.relative_to(path).as_posix(), status.st_size, status.st_mtime_ns)
                   for file, status in ((file, file.stat()) for file in files)]
    except OSError as error:  # removed since the folder was listed
        raise ValueError(f"{shown(error.filename)} cannot be read ({error.strerror}): check it and run again") from None
    settings = {"split": split, "image_size": image_size, "channels": channels, "crop": crop,
                "pillow": PIL.__version__, "files": listing}
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()


def _read_cache(file: Path, key: str, count: int) -> np.ndarray | None:
    """The split cached at `file`, memory-mapped read-only as (N, C, H, W) uint8, or None when there is none,
    when it was made for other files or settings, or when it is damaged (cut short, bytes changed: the
    checksum of its pixels is checked on every read), so that it is rebuilt, never trusted."""
    try:
        with open(file, "rb") as stream:
            head = stream.read(CACHE_HEADER_BYTES)
            size = os.fstat(stream.fileno()).st_size
        header = json.loads(head.removeprefix(CACHE_MAGIC)) if head.startswith(CACHE_MAGIC) else None
    except FileNotFoundError:
        return None
    # Unreadable, or its header is not JSON: ValueError (UnicodeError too), or RecursionError for [[[[...
    except (OSError, ValueError, RecursionError) as error:
        log.info("rebuilding %s: %s", shown(file), error)
        return None
    shape = header.get("shape") if isinstance(header, dict) else None
    if not (isinstance(shape, list) and len(shape) == 4 and all(type(n) is int and n > 0 for n in shape)):
        log.info("rebuilding %s: its header is damaged", shown(file))
        return None
    if header.get("key") != key or shape[0] != count:
        log.info("rebuilding %s: the folder's files or the settings changed", shown(file))
        return None
    if size != CACHE_HEADER_BYTES + math.prod(shape):
        log.info("rebuilding %s: it holds %d bytes, its header says %d", shown(file), size,
                 CACHE_HEADER_BYTES + math.prod(shape))
        return None
    pixels = np.memmap(file, np.uint8, "r", offset=CACHE_HEADER_BYTES, shape=tuple(shape))
    if hashlib.sha256(pixels).hexdigest() != header.get("sha256"):
        log.info("rebuilding %s: its pixels do not match their checksum", shown(file))
        return None
    return pixels


def _write_cache(file: Path, key: str, pixels: np.ndarray) -> None:
    """Keep `pixels` at `file` for the next load: written to a temporary file and renamed into place, so a
    reader finds a whole cache or none, and two processes that build it at once each rename a whole file
    over the other's. A folder that cannot be written, or a full disk, just means no cache."""
    header = json.dumps({"key": key, "shape": list(pixels.shape), "sha256": hashlib.sha256(pixels).hexdigest()})
    try:
        file.parent.mkdir(exist_ok=True)
        for part in file.parent.glob(".*.part"):
            with contextlib.suppress(OSError):
                if time.time() - part.stat().st_mtime > ABANDONED_SECONDS:
                    part.unlink()
        descriptor, temp_name = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".part")
        try:
            # No fsync: a cache cut short by a crash fails its size or checksum test and is rebuilt.
            with os.fdopen(descriptor, "wb") as out:
                out.write(CACHE_MAGIC + header.encode().ljust(CACHE_HEADER_BYTES - len(CACHE_MAGIC)))
                out.write(pixels.data)
            os.replace(temp_name, file)
        finally:
            Path(temp_name).unlink(missing_ok=True)
    except OSError as error:
        log.info("not caching the decoded images of %s: %s", shown(file.parent.parent), error)
        return
    log.info("cached the decoded images of %s in %s (%.1f MB)", shown(file.parent.parent), shown(file),
             pixels.nbytes / 1e6)


# ----------------------------------------------------------------------------- one picture, as it is


def read_picture(file: Path) -> np.ndarray:
    """One PNG/JPEG for a command that changes a user's picture (`genlab upscale`): (H, W, C) uint8, C = 1 (grey),
    2 (grey + transparency), 3 (RGB) or 4 (RGBA); its first frame if animated, upright by its EXIF orientation.
    Refused in one line as a folder's images are: not PNG/JPEG, over MAX_IMAGE_PIXELS, empty or damaged."""
    file = Path(file)
    with _open(file) as image, _readable(file):
        image.load()
        return picture_array(image)


def picture_array(image: Image.Image) -> np.ndarray:
    """An opened picture's pixels as read_picture gives them (genlab serve's upscale reads its uploads with it); the
    caller has checked its size and turns Pillow's errors into its own message."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # 16-bit grey: scaled, not clipped (see _pixels)
        image = Image.fromarray(np.rint(np.asarray(image) / 257).astype(np.uint8))
    colour = "L" if Image.getmodebase(image.mode) == "L" else "RGB"
    image = image.convert(colour + ("A" if image.has_transparency_data else ""))
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array
