"""`--data faces`: the 100 real faces inside scikit-image's wheel, no download."""

import pytest
import torch

from genlab.data import NAMES, load_dataset
from genlab.data.images import FACE_SIDE, FACES


def test_faces_are_the_hundred_lfw_faces_at_their_own_size():
    from skimage.data import lfw_subset

    data = load_dataset("faces")
    assert data.kind == "image" and data.shape == (1, FACE_SIDE, FACE_SIDE) and len(data) == FACES == 100
    assert torch.equal(data.x[:, 0], torch.from_numpy(lfw_subset()[:100]).float())  # the faces, not the non-faces
    assert "faces" in NAMES


def test_both_splits_are_the_same_hundred_faces():
    # 100-shot: there are no other faces, so quality is measured against the training faces (DiffAugment's protocol)
    assert torch.equal(load_dataset("faces", "train").x, load_dataset("faces", "test").x)


def test_faces_are_served_at_a_chosen_size_without_changing_what_they_show():
    native, resized = load_dataset("faces").x, load_dataset("faces", image_size=32).x
    assert resized.shape == (100, 1, 32, 32) and 0 <= resized.min() and resized.max() <= 1
    back = torch.nn.functional.interpolate(resized, size=FACE_SIDE, mode="bilinear", antialias=True)
    assert (back - native).abs().mean() < 0.05  # the same faces, resampled
    assert (native[1:] - native[:-1]).abs().mean() > 0.1  # ... and the faces differ from one another by far more


@pytest.mark.parametrize("image_size", [0, 3, 1025, 32.0, True, "32"])
def test_impossible_face_sizes_are_refused(image_size):
    with pytest.raises(ValueError, match="image_size must be a whole number of pixels from 4 to 1024"):
        load_dataset("faces", image_size=image_size)
