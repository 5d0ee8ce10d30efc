"""--data photos: real photos from installed wheels, split by photo; random dihedral crops for training, a fixed
centred grid of crops for test."""

from __future__ import annotations

import pytest
import torch

from genlab.data import load_dataset
from genlab.data.photos import TEST_CROP, TEST_PHOTOS, TRAIN_CROP, TRAIN_PHOTOS, grid_crops, random_crops, read_photo


def test_the_splits_hold_crops_of_different_photos():
    train, test = load_dataset("photos", "train"), load_dataset("photos", "test")
    assert train.shape == (3, TRAIN_CROP, TRAIN_CROP) and test.shape == (3, TEST_CROP, TEST_CROP)
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)  # a held-out photo is never cropped for training
    assert sorted(set(train.labels.tolist())) == list(range(len(TRAIN_PHOTOS)))  # every photo, an equal share
    assert torch.bincount(train.labels).unique().numel() == 1
    # chelsea 451x300 -> 2x1 tiles, coffee 600x400 -> 3x2, rocket 640x427 -> 3x2, grace_hopper 512x600 -> 2x3
    assert torch.bincount(test.labels).tolist() == [2, 6, 6, 6]
    assert 0 <= float(train.x.min()) and float(train.x.max()) <= 1 and train.x.dtype == torch.float32
    assert float(train.x.std()) > 0.1  # real photographs, not blank tiles


def test_training_crops_follow_the_seed_and_test_crops_do_not():
    first, again = load_dataset("photos", "train", seed=1), load_dataset("photos", "train", seed=1)
    other = load_dataset("photos", "train", seed=2)
    assert torch.equal(first.x, again.x)
    assert not torch.equal(first.x, other.x)
    assert torch.equal(load_dataset("photos", "test", seed=1).x, load_dataset("photos", "test", seed=2).x)


def test_a_test_crop_is_a_tile_of_its_photo():
    photo = read_photo(*TEST_PHOTOS[1])  # coffee, 400x600: tiles start at (8, 12)
    test = load_dataset("photos", "test")
    assert torch.equal(test.x[2], photo[:, 8:8 + TEST_CROP, 12:12 + TEST_CROP])


def test_random_crops_are_windows_of_the_photo_flipped_and_turned():
    photo = torch.arange(11 * 13, dtype=torch.float32).reshape(1, 11, 13)  # every pixel unique
    crops = random_crops(photo, 64, 5, torch.Generator().manual_seed(0))
    seen = set()
    for crop in crops:
        matches = []
        for flip in (False, True):
            for turn in range(4):
                # undo the turn, then the flip: the window as it stood in the photo
                window = crop.rot90(-turn, dims=(-2, -1))
                window = window.flip(-1) if flip else window
                top, left = divmod(int(window[0, 0, 0]), 13)
                if top + 5 <= 11 and left + 5 <= 13 and torch.equal(window, photo[:, top:top + 5, left:left + 5]):
                    matches.append((flip, turn))
        assert matches, "a crop that is no flipped or turned window of the photo"
        seen.update(matches)
    assert len(seen) == 8  # all of the dihedral group's transforms occur


def test_grid_crops_are_centred():
    photo = torch.arange(10 * 13, dtype=torch.float32).reshape(1, 10, 13)
    crops = grid_crops(photo, 4)  # 2 rows x 3 columns, the 2 spare rows and 1 spare column split around them
    assert crops.shape == (6, 1, 4, 4)
    assert torch.equal(crops[0], photo[:, 1:5, 0:4]) and torch.equal(crops[5], photo[:, 5:9, 8:12])


def test_a_photo_smaller_than_the_crop_is_refused():
    with pytest.raises(ValueError, match="has no 8x8 crop"):
        random_crops(torch.zeros(3, 6, 20), 1, 8, torch.Generator())
    with pytest.raises(ValueError, match="has no 8x8 crop"):
        grid_crops(torch.zeros(3, 20, 6), 8)


def test_photos_take_no_image_size():
    with pytest.raises(ValueError, match="image_size applies only to faces and folder"):
        load_dataset("photos", "train", image_size=32)
