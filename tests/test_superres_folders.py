"""--data photos:PATH, a user's photos for super-resolution: whole photos of any size, random dihedral crops for
training and grid tiles for test as --data photos, split by photo; bad folders refused in one line; train and eval
through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import invoke, succeeded, user_error
from genlab.data import load_dataset, photos
from genlab.data.photos import TEST_CROP, TRAIN_CROP, TRAIN_CROPS_PER_PHOTO, grid_crops

SIZES = ((240, 200), (192, 300), (256, 256))  # (height, width): three shapes, none a multiple of the crops


def write_photos(folder, sizes=SIZES, mode="RGB"):
    """One PNG a size, photo k's pixels all within [60j, 60j + 50], j = k mod 4: a crop's values tell which of four
    photos it came from.
    Returns each photo as (C, H, W) in [0, 1], in the folder's (path) order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = []
    for k, (height, width) in enumerate(sizes):
        pixels = (60 * (k % 4) + rng.integers(0, 51, (height, width, 3 if mode == "RGB" else 1))).astype(np.uint8)
        Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(folder / f"photo{k:02}.png")
        written.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    return written


def photo_of(crop: torch.Tensor) -> int:
    return int(crop.max() * 255) // 60


def test_photos_of_any_size_give_training_crops_and_hold_out_the_last(tmp_path):
    written = write_photos(tmp_path / "mine")
    train = load_dataset(f"photos:{tmp_path / 'mine'}", "train", seed=3)
    test = load_dataset(f"photos:{tmp_path / 'mine'}", "test")
    assert train.shape == (3, TRAIN_CROP, TRAIN_CROP) and test.shape == (3, TEST_CROP, TEST_CROP)
    assert torch.bincount(train.labels).tolist() == [TRAIN_CROPS_PER_PHOTO] * 2  # photos 0 and 1, an equal share
    assert all(photo_of(crop) == label for crop, label in zip(train.x, train.labels.tolist(), strict=True))
    assert all(photo_of(crop) == 2 for crop in test.x)  # every test tile from the held-out photo, never trained on
    assert torch.equal(test.x, grid_crops(written[2], TEST_CROP))  # 256x256: one centred tile
    again = load_dataset(f"photos:{tmp_path / 'mine'}", "train", seed=3)
    other = load_dataset(f"photos:{tmp_path / 'mine'}", "train", seed=4)
    assert torch.equal(train.x, again.x) and not torch.equal(train.x, other.x)


def test_a_large_folder_holds_out_every_tenth_photo_and_takes_fewer_crops_a_photo(tmp_path, monkeypatch):
    monkeypatch.setattr(photos, "MAX_TRAIN_CROPS", 90)  # as 16,000 crops are shared by a folder of thousands
    monkeypatch.setattr(photos, "MAX_TEST_CROPS", 1)
    written = write_photos(tmp_path / "many", [(192, 192 + 8 * k) for k in range(4)] + [(200, 400)] * 7)  # 11 photos
    train = load_dataset(f"photos:{tmp_path / 'many'}", "train")
    test = load_dataset(f"photos:{tmp_path / 'many'}", "test")
    assert torch.bincount(train.labels).tolist() == [9] * 10  # 90 crops over the 10 training photos
    assert len(test.x) == 1 and torch.equal(test.x[0], grid_crops(written[9], TEST_CROP)[0])  # photo09's 1st tile


def test_grey_photos_stay_grey_unless_channels_says(tmp_path):
    write_photos(tmp_path / "grey", mode="L")
    assert load_dataset(f"photos:{tmp_path / 'grey'}", "test").shape == (1, TEST_CROP, TEST_CROP)
    assert load_dataset(f"photos:{tmp_path / 'grey'}", "test", channels=3).shape == (3, TEST_CROP, TEST_CROP)


@pytest.mark.parametrize("case", ["missing", "empty", "one photo", "too small", "not an image", "image_size"])
def test_bad_folders_are_refused_in_one_line(tmp_path, case):
    folder = tmp_path / "bad"
    if case != "missing":
        folder.mkdir()
    if case in ("one photo", "too small", "not an image"):
        write_photos(folder, SIZES[:1])
    if case == "too small":
        write_photos(tmp_path / "small", [(300, 120)])
        (tmp_path / "small" / "photo00.png").rename(folder / "tiny.png")
    if case == "not an image":
        (folder / "notes.png").write_text("not a picture")
    expected = {"missing": "image folder .* not found: pass photos:PATH with an existing folder",
                "empty": "no images in", "one photo": "holds 1 photo: photos:PATH needs at least 2",
                "too small": r"tiny.png is 120x300: photos:PATH takes photos of at least 192x192",
                "not an image": "notes.png is not a readable PNG or JPEG image",
                "image_size": "image_size applies only to faces and folder:PATH"}[case]
    with pytest.raises((ValueError, FileNotFoundError), match=expected):
        load_dataset(f"photos:{folder}", "train", image_size=96 if case == "image_size" else None)
    assert "error: " in user_error(invoke("train", "superres", "--data", f"photos:{folder}", "--steps", 1,
                                          "--run", tmp_path / "run"))


def test_a_superres_run_trains_and_evaluates_on_a_photo_folder(tmp_path):
    write_photos(tmp_path / "mine")
    run = tmp_path / "run"
    succeeded(invoke("train", "superres", "--data", f"photos:{tmp_path / 'mine'}", "--steps", 2, "--run", run,
                     "--set", "g_channels=4", "--set", "blocks=1", "--set", "batch_size=4", "--set", "block=rrdb",
                     "--set", "sample_every=2"))
    succeeded(invoke("eval", run))
    result = json.loads((run / "eval.json").read_text())["results"]["super_resolution"]
    assert result["protocol"]["num_examples"] == 1 and result["protocol"]["reference"].endswith("/test[:1]")
    assert 10 < result["scores"]["bicubic_psnr_y"] < 60
