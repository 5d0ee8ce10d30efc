"""Image data sets: scikit-learn's 8x8 digits, MNIST from its IDX files, and folders of PNG/JPEG.

Each loader returns a whole split as (x, labels): x is (N, C, H, W) float32 in [0, 1], labels is
(N,) int64 or None. MNIST is parsed from the original gzip IDX files with numpy, and
`download_mnist` fetches them, checked against the SHA-256 of their uncompressed bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from sklearn.datasets import load_digits

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
GET_MNIST = "run `genlab data download mnist`"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY_MODES = ("1", "L", "I;16", "I")  # I and I;16 are how Pillow opens 16-bit grayscale PNGs


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


def _read_idx(file: Path, magic: int) -> np.ndarray:
    """The uint8 array in a gzip IDX file, after checking its magic number and its size."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: {GET_MNIST}")
    try:
        data = gzip.decompress(file.read_bytes())
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{file} is not a complete gzip file ({error}): delete it and {GET_MNIST}") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim  # the magic number, then one big-endian uint32 per dimension
    found = int.from_bytes(data[:4], "big")
    if len(data) < header or found != magic:
        raise ValueError(
            f"{file} has magic number {found}, expected {magic}: it is not this MNIST file; "
            f"delete it and {GET_MNIST}"
        )
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    if len(data) - header != np.prod(shape):
        raise ValueError(
            f"{file} holds {len(data) - header} bytes after its header, which says {shape} = "
            f"{np.prod(shape)}: it is damaged; delete it and {GET_MNIST}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def mnist(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST from the four gzip IDX files in `folder`: (N, 1, 28, 28) in [0, 1] and int64 labels."""
    _check_split(split)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MNIST folder {folder} not found: {GET_MNIST}, or set --data-dir / GENLAB_DATA_DIR "
            "to a folder that holds mnist/"
        )
    prefix = "train" if split == "train" else "t10k"
    images_file = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_file = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = _read_idx(images_file, IMAGES_MAGIC)
    labels = _read_idx(labels_file, LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(
            f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} labels: "
            f"delete both and {GET_MNIST}"
        )
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
            raise FileNotFoundError(f"{file} not found: {GET_MNIST}")
        got = _gunzip_sha256(file)
        if got != expected:
            raise ValueError(
                f"{file} is damaged: uncompressed SHA-256 {got or '(not a complete gzip file)'}, "
                f"expected {expected}; {GET_MNIST} to replace it"
            )


def _download(url: str, file: Path, expected: str, opener) -> None:
    """Fetch `url` to `file` through a temporary file, renamed into place only once its hash is right."""
    descriptor, temp_name = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(descriptor, "wb") as out:
            try:
                with opener(url, timeout=60) as response:
                    shutil.copyfileobj(response, out, 1 << 20)
            except OSError as error:  # urllib's URLError and HTTPError are OSErrors
                raise OSError(
                    f"could not download {url} ({error}): check the connection, or copy the MNIST "
                    f"files into {file.parent} by hand"
                ) from error
        got = _gunzip_sha256(temp)
        if got != expected:
            raise ValueError(
                f"downloaded {url} does not match {file.name}: uncompressed SHA-256 "
                f"{got or '(not a complete gzip file)'}, expected {expected}; try again or another base_url"
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


@contextlib.contextmanager
def _readable(file: Path):
    """Turn Pillow's errors about a bad file into one that names it and says what to do."""
    try:
        yield
    except UnidentifiedImageError:
        raise ValueError(f"{file} is not an image Pillow can read: remove or replace it") from None
    except OSError as error:  # a truncated or garbled file fails only when its pixels are decoded
        raise ValueError(f"{file} is damaged ({error}): remove or replace it") from None


def _mode_and_size(file: Path) -> tuple[str, tuple[int, int]]:
    # Image.open reads only the header, so checking every file stays cheap.
    with _readable(file), Image.open(file) as image:
        return image.mode, image.size


def _pixels(file: Path, channels: int, image_size: int | None) -> np.ndarray:
    """One image as a (C, H, W) uint8 array."""
    with _readable(file), Image.open(file) as image:
        image.load()
        if image.mode in ("I;16", "I"):
            # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them; 65535 / 257 = 255.
            image = Image.fromarray(np.rint(np.asarray(image) / 257).astype(np.uint8))
        image = image.convert("L" if channels == 1 else "RGB")
        if image_size is not None:
            # Scale the shorter side to image_size, then take the centred square.
            image = ImageOps.fit(image, (image_size, image_size), Image.Resampling.BICUBIC)
    array = np.asarray(image)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def image_folder(
    path: Path, split: str, image_size: int | None, channels: int | None
) -> tuple[torch.Tensor, None]:
    """Every PNG/JPEG under `path` (recursively) as (N, C, H, W) in [0, 1], with no labels.

    Files are ordered by relative path and every 10th (index % 10 == 9) is the test split; a folder
    of fewer than 10 images gives all of them to both splits. `channels` None means 1 if every image
    is grayscale, else 3. `image_size` None needs every image the same size; an int scales each
    image's shorter side to it and crops the centred square.
    """
    _check_split(split)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grayscale), 3 (RGB) or unset, got {channels!r}")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"image folder {path} not found or not a folder: pass folder:PATH with a folder"
        )
    files = sorted(
        (file for file in path.rglob("*") if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file()),
        key=lambda file: file.relative_to(path).as_posix(),
    )
    if not files:
        raise ValueError(
            f"no images in {path}: looked for {', '.join(IMAGE_SUFFIXES)} files (any case) in it"
        )

    # Decide channels and check sizes over the whole folder so that train and test always agree.
    headers = [_mode_and_size(file) for file in files]
    if channels is None:
        channels = 1 if all(mode in GRAY_MODES for mode, _ in headers) else 3
    if image_size is None:
        first_size = headers[0][1]
        for file, (_, size) in zip(files, headers, strict=True):
            if size != first_size:
                raise ValueError(
                    f"{files[0]} is {first_size[0]}x{first_size[1]} but {file} is {size[0]}x{size[1]}: "
                    "pass an image size, e.g. --set image_size=32"
                )

    if len(files) >= 10:
        files = [file for index, file in enumerate(files) if (index % 10 == 9) == (split == "test")]
    pixels = np.stack([_pixels(file, channels, image_size) for file in files])
    return torch.from_numpy(pixels).float().div_(255), None
