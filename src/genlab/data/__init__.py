"""One loader contract for every data set: a whole split as one tensor, batched by index.

`load_dataset("ring", "train")` returns a `Dataset` whose `x` holds every example at once: images as
(N, C, H, W) floats in [0, 1], points as (N, D). `Batches` walks it with a seeded permutation per
epoch, so the order is reproducible and a run can resume at any step without replaying data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from genlab.data import images, photos, toys


@dataclass(frozen=True)
class Dataset:
    name: str
    x: torch.Tensor  # (N, C, H, W) in [0, 1] for images, (N, D) for points
    labels: torch.Tensor | None  # (N,) int64 class or mode index, when the data has one
    kind: Literal["image", "points"]

    def __post_init__(self):
        if len(self.x) == 0:
            raise ValueError(f"data set {self.name!r} is empty")
        if self.labels is not None and len(self.labels) != len(self.x):
            raise ValueError(f"data set {self.name!r} has {len(self.x)} examples but {len(self.labels)} labels")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (1, 28, 28) or (2,)."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)


TOYS = {
    "patterns": toys.patterns,
    "gaussian1d": toys.gaussian1d,
    "ring": toys.ring,
    "grid": toys.grid,
    "moons": toys.moons,
    "swissroll": toys.swiss_roll,
}
IMAGES = ("digits", "mnist", "stacked-mnist", "faces", "photos", "folder:PATH", "photos:PATH")
NAMES = (*TOYS, *IMAGES)
# every seed genlab takes (TrainConfig, --seed, the lab); seed + 1_000_003 then stays below 2**64, the most torch's
# generator takes
MAX_SEED = 2**63 - 1


def default_data_dir() -> Path:
    """Where downloaded data sets live: $GENLAB_DATA_DIR, else ~/.cache/genlab/data."""
    env = os.environ.get("GENLAB_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "genlab" / "data"


def load_dataset(
    name: str,
    split: Literal["train", "test"] = "train",
    *,
    data_dir: str | Path | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    crop: str = "centre",
    seed: int = 0,
) -> Dataset:
    """Load a whole split by name; see `NAMES`. `image_size` applies to image folders and faces, `channels`
    and `crop` (how image_size fits an image that is not square: see images.CROPS) to image folders, `channels`
    to photos:PATH too; `seed` to the toys, to stacked-mnist, whose triples it draws, and to photos and
    photos:PATH, whose training crops it draws."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    is_folder = isinstance(name, str) and name.startswith("folder:")
    is_photo_folder = isinstance(name, str) and name.startswith("photos:")
    # The other data sets have a fixed shape; resizing them silently is not what a run asked for.
    if not (is_folder or is_photo_folder) and channels is not None:
        raise ValueError(f"channels applies only to photos:PATH and folder:PATH data, not {name!r}: unset it")
    if not is_folder and crop != "centre":
        raise ValueError(f"crop applies only to folder:PATH data, not {name!r}: unset it")
    if not is_folder and name != "faces" and image_size is not None:
        raise ValueError(f"image_size applies only to faces and folder:PATH data, not {name!r}: unset it")
    # Train and test draw from the same distribution with different seeds (for stacked-mnist: their triples,
    # from their own MNIST splits). The offset keeps the test seed within what torch's generator takes.
    split_seed = seed if split == "train" else seed + 1_000_003
    if name in TOYS:
        x, labels = TOYS[name](seed=split_seed)
        kind = "image" if x.dim() == 4 else "points"
        return Dataset(name, x, labels, kind)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if name == "digits":
        x, labels = images.digits(split)
    elif name == "mnist":
        x, labels = images.mnist(data_dir / "mnist", split)
    elif name == "faces":
        x, labels = images.faces(split, image_size)
    elif name == "stacked-mnist":
        x, labels = images.stacked_mnist(data_dir / "mnist", split, split_seed)
    elif name == "photos":  # train: random crops of 8 photos; test: fixed crops of 4 others (see photos.py)
        x, labels = photos.photos(split, seed)
    elif is_folder:
        folder = name.removeprefix("folder:")
        if not folder.strip():  # Path("") is the current folder: never what a run meant
            raise ValueError("folder: needs the path of a folder of images, e.g. folder:photos")
        # The shell expands ~ only at the start of a word, never after "folder:".
        x, labels = images.image_folder(Path(folder).expanduser(), split, image_size, channels, crop)
    elif is_photo_folder:  # photos of any size, cropped as --data photos' are (see photos.py)
        folder = name.removeprefix("photos:")
        if not folder.strip():
            raise ValueError("photos: needs the path of a folder of photos, e.g. photos:DIV2K_train_HR")
        x, labels = photos.photo_folder(Path(folder).expanduser(), split, seed, channels)
    else:
        raise ValueError(f"unknown data set {name!r}: choose one of {', '.join(NAMES)}")
    return Dataset(name, x, labels, "image")


class Batches:
    """Endless minibatches of a tensor, in a fresh seeded permutation each epoch.

    Batch `step` is a pure function of (seed, step): epoch = step // batches_per_epoch, and the
    epoch's permutation comes from its own generator. Resuming at step s needs nothing saved but s.
    The last partial batch of each epoch is dropped so every batch has the same size.
    """

    def __init__(self, x: torch.Tensor, batch_size: int, *, seed: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if batch_size > len(x):
            raise ValueError(f"batch_size {batch_size} is larger than the data set ({len(x)} examples): lower it")
        self.x = x
        self.batch_size = batch_size
        self.seed = seed
        self.batches_per_epoch = len(x) // batch_size
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch index within the epoch) of global batch `step`."""
        return divmod(step, self.batches_per_epoch)

    def batch(self, step: int) -> torch.Tensor:
        epoch, index = self.position(step)
        if epoch != self._epoch:
            # Modulo 2**64, the range torch's generator takes: a large seed must not overflow it.
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)
            self._order = torch.randperm(len(self.x), generator=generator).to(self.x.device)
            self._epoch = epoch
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.x.index_select(0, rows)
