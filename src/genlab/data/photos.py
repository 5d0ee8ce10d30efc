"""Real photographs for super-resolution: those that ship inside genlab's dependencies' wheels (`--data photos`),
and a folder of a user's own (`--data photos:PATH`: DIV2K, a camera's), cropped the same way.

Nothing is downloaded: scikit-image's skimage/data folder, scikit-learn's two sample images and matplotlib's
sample data hold the shipped ones. The split is by photo, as Set5/Set14 are: the held-out photos are never seen
in training.

- train: TRAIN_PHOTOS (8 photos). A bank of TRAIN_CROPS_PER_PHOTO random TRAIN_CROP x TRAIN_CROP crops of each,
  drawn with a seeded generator, each flipped and rotated by a random multiple of 90 degrees. An equal share per
  photo, not per pixel: the 1411x1411 retina photo alone would otherwise give 40% of the crops, half of them black.
- test: TEST_PHOTOS (4 photos, Set5-like in count and variety: an animal's fur, a still life, a street, a
  portrait). Every whole TEST_CROP x TEST_CROP tile of a grid centred on each photo, fixed: 20 crops.

- photos:PATH: every PNG/JPEG under the folder, of any size from TEST_CROP pixels a side; every 10th file by path
  is held out (folder:PATH's rule), and a folder of 2 to 9 photos holds out its last. The same crops, fewer a
  photo when there are many (MAX_TRAIN_CROPS, MAX_TEST_CROPS): a bank of ~1.8 GB at most. Unlike folder:PATH,
  nothing is resized to one image_size, and nothing is cached: the photos are decoded at each load.

The Dataset contract is one tensor a split, and photos differ in size: hence crops of one size a split.
Photos are kept at their native resolution: the crops are the high-resolution targets, and a super-resolution
model makes its low-resolution inputs from them (genlab.models.superres.downsample).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab.data import images

# (package, file inside it), all real RGB photographs. Left out: skimage's colour wheel (synthetic), its grey
# photos (camera, moon...) and its downloadable ones (they would need the network).
TRAIN_PHOTOS = (
    ("skimage.data", "astronaut.png"),  # 512x512 portrait, NASA
    ("skimage.data", "motorcycle_left.png"),  # 741x500, the two views of a stereo pair: both in train, so
    ("skimage.data", "motorcycle_right.png"),  # no near-copy of a training photo sits in the test split
    ("skimage.data", "hubble_deep_field.jpg"),  # 1000x872, galaxies
    ("skimage.data", "retina.jpg"),  # 1411x1411, a fundus photograph
    ("skimage.data", "ihc.png"),  # 512x512, immunohistochemistry micrograph
    ("sklearn.datasets", "images/china.jpg"),  # 640x427, a temple
    ("sklearn.datasets", "images/flower.jpg"),  # 640x427
)
TEST_PHOTOS = (
    ("skimage.data", "chelsea.png"),  # 451x300, a cat: fine fur, the hardest texture here
    ("skimage.data", "coffee.png"),  # 600x400, a cup on a table
    ("skimage.data", "rocket.jpg"),  # 640x427, a launch pad under the sky
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),  # 512x600 portrait, softly JPEG-compressed
)
TRAIN_CROP = 96  # SRGAN's high-resolution patch size (Ledig et al. 2017): 24x24 low-resolution inputs at x4
TRAIN_CROPS_PER_PHOTO = 200  # 1,600 crops, 177 MB of float32: a bank, reshuffled each epoch by Batches
TEST_CROP = 192  # divisible by 2 and 4, so the low-resolution test inputs are 96 or 48 pixels exactly
TEST_CROPS_PER_PHOTO = 25  # at most, spread over the grid (a 2K photo has 70 tiles); a shipped photo has 6 or fewer
# photos:PATH banks of a large folder: 1.8 GB (train) and 0.9 GB (test) of float32 RGB at most; fewer crops a photo
MAX_TRAIN_CROPS = 16_000
MAX_TEST_CROPS = 2_000


def read_photo(package: str, name: str) -> torch.Tensor:
    """One shipped photo as (3, H, W) floats in [0, 1]."""
    with Image.open(files(package) / name) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def random_crops(photo: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`count` random size x size crops of a (C, H, W) photo, each flipped left-right with probability 1/2 and
    rotated by 0, 90, 180 or 270 degrees: (count, C, size, size). The 8 results are the dihedral group's, the
    augmentation SR papers use (EDSR, ESRGAN)."""
    _, height, width = photo.shape
    if min(height, width) < size:
        raise ValueError(f"a {height}x{width} photo has no {size}x{size} crop")
    tops = torch.randint(0, height - size + 1, (count,), generator=generator)
    lefts = torch.randint(0, width - size + 1, (count,), generator=generator)
    flips = torch.randint(0, 2, (count,), generator=generator)
    turns = torch.randint(0, 4, (count,), generator=generator)
    crops = []
    for top, left, flip, turn in zip(tops.tolist(), lefts.tolist(), flips.tolist(), turns.tolist(), strict=True):
        crop = photo[:, top:top + size, left:left + size]
        crop = crop.flip(-1) if flip else crop
        crops.append(crop.rot90(turn, dims=(-2, -1)))
    return torch.stack(crops)


def grid_crops(photo: torch.Tensor, size: int) -> torch.Tensor:
    """Every whole size x size tile of a grid centred on a (C, H, W) photo, row by row: (N, C, size, size)."""
    _, height, width = photo.shape
    rows, columns = height // size, width // size
    if rows == 0 or columns == 0:
        raise ValueError(f"a {height}x{width} photo has no {size}x{size} crop")
    top0, left0 = (height - rows * size) // 2, (width - columns * size) // 2
    return torch.stack([photo[:, top0 + r * size:top0 + (r + 1) * size, left0 + c * size:left0 + (c + 1) * size]
                        for r in range(rows) for c in range(columns)])


def spread(tiles: torch.Tensor, count: int) -> torch.Tensor:
    """At most `count` of the tiles (N, C, H, W), evenly spaced in their order: every tile when there are few."""
    if len(tiles) <= count:
        return tiles
    return tiles[torch.linspace(0, len(tiles) - 1, count).round().long()]


def crops_of(decoded: Iterable[torch.Tensor], split: str, seed: int, per_photo: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The split's crops of each (C, H, W) photo in turn, `per_photo` of each (train: random; test: at most,
    grid tiles), and the index of the photo each came from. Each photo can be dropped once cropped."""
    generator = torch.Generator().manual_seed(seed)
    crops = [random_crops(photo, per_photo, TRAIN_CROP, generator) if split == "train"
             else spread(grid_crops(photo, TEST_CROP), per_photo) for photo in decoded]
    labels = torch.cat([torch.full((len(c),), index, dtype=torch.long) for index, c in enumerate(crops)])
    return torch.cat(crops), labels


def photos(split: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The split's crops (N, 3, size, size) in [0, 1] and, as labels, the index of the photo each came from (in
    TRAIN_PHOTOS or TEST_PHOTOS). `seed` draws the training crops; the test crops are fixed."""
    sources = TRAIN_PHOTOS if split == "train" else TEST_PHOTOS
    per_photo = TRAIN_CROPS_PER_PHOTO if split == "train" else TEST_CROPS_PER_PHOTO
    return crops_of((read_photo(*source) for source in sources), split, seed, per_photo)


def held_out(files: list[Path], split: str) -> list[Path]:
    """photos:PATH's split by photo: every 10th file (folder:PATH's rule); of 2 to 9 files, the last is held out."""
    if len(files) >= 10:
        return images._split_files(files, split)
    return files[-1:] if split == "test" else files[:-1]


def photo_folder(path: Path, split: str, seed: int = 0, channels: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """`--data photos:PATH`: the split's crops of the folder's photos (see the module's notes), as photos()
    gives them, in [0, 1]; labels index the split's photos in path order. `channels` None: 1 if every photo
    is grey, else 3. Every header is checked (format, pixels, size) before a photo is decoded."""
    if channels is not None and (type(channels) is not int or channels not in (1, 3)):
        raise ValueError(f"channels must be 1 (grayscale), 3 (RGB) or unset, got {channels!r}")
    path = Path(path)
    every = images.folder_files(path, "photos:PATH")
    if len(every) < 2:
        raise ValueError(f"'{images.shown(path)}' holds 1 photo: photos:PATH needs at least 2, one to train on and "
                         "one to hold out")
    greys = []
    for file in every:
        with images._open(file) as image, images._readable(file):
            if min(image.size) < TEST_CROP:  # the shorter side stays the shorter one when EXIF turns it
                raise ValueError(f"{images.shown(file)} is {image.width}x{image.height}: photos:PATH takes photos "
                                 f"of at least {TEST_CROP}x{TEST_CROP} (its test crops' size): remove it")
            greys.append(Image.getmodebase(image.mode) == "L")
    channels = channels or (1 if all(greys) else 3)
    chosen = held_out(every, split)
    if split == "train":
        per_photo = max(1, min(TRAIN_CROPS_PER_PHOTO, MAX_TRAIN_CROPS // len(chosen)))
        size = TRAIN_CROP
    else:
        per_photo = max(1, min(TEST_CROPS_PER_PHOTO, MAX_TEST_CROPS // len(chosen)))
        size = TEST_CROP
    images._check_fits(path, split, (per_photo * len(chosen), channels, size, size))
    decoded = (torch.from_numpy(images._pixels(file, channels, None, "centre").astype(np.float32) / 255)
               for file in chosen)
    return crops_of(decoded, split, seed, per_photo)
