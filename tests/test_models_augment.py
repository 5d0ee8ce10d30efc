"""DiffAugment's transformations and ADA's adaptive probability (genlab.models.augment)."""

import pytest
import torch

from genlab.models.augment import TRANSFORMS, adapted_probability, augment, color, cutout, translation


def images(n=64, side=16, channels=1):
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(0))


def test_translation_moves_whole_images_by_at_most_an_eighth_and_fills_with_zeros():
    torch.manual_seed(0)
    x = images(side=16) + 0.5  # no zeros of its own, so every 0 came in from outside
    moved = translation(x)
    for original, shifted in zip(x, moved, strict=True):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(torch.roll(original, (dy, dx), (1, 2))[:, max(dy, 0):16 + min(dy, 0),
                                                                      max(dx, 0):16 + min(dx, 0)],
                                shifted[:, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)])]
        assert len(found) == 1  # exactly one shift of at most 2 = 16/8 pixels explains the image
        dy, dx = found[0]
        assert int((shifted == 0).sum()) == 16 * 16 - (16 - abs(dy)) * (16 - abs(dx))
    assert (moved != x).any(dim=(1, 2, 3)).float().mean() > 0.8  # most images moved (1/25 stay put)


def test_cutout_blanks_one_square_of_half_the_side_clipped_to_the_image():
    torch.manual_seed(0)
    x = images(n=256, side=16) + 0.5
    blank = cutout(x) == 0
    counts = blank.sum((1, 2, 3))
    assert counts.max() == 64 and counts.min() >= 16  # 8x8 when inside, at least a quarter of it otherwise
    rows, columns = blank[:, 0].any(2), blank[:, 0].any(1)
    # a rectangle: the blanked cells are exactly the product of the blanked rows and columns
    assert torch.equal(blank[:, 0], rows[:, :, None] & columns[:, None, :])


def test_color_changes_each_image_differently_and_keeps_the_picture():
    torch.manual_seed(0)
    x = images(n=32, channels=3)
    changed = color(x)
    brightness_shift = (changed - x).mean((1, 2, 3))
    assert brightness_shift.std() > 0.05  # per-image draws, not one for the batch
    for original, recoloured in zip(x, changed, strict=True):  # an affine change of each pixel's value keeps
        grey_before, grey_after = original.mean(0).flatten(), recoloured.mean(0).flatten()  # its structure
        assert torch.corrcoef(torch.stack([grey_before, grey_after]))[0, 1].abs() > 0.9


def test_augment_is_differentiable_and_probability_zero_is_the_identity():
    x = images(n=8).requires_grad_(True)
    augment(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(augment(x, probability=0.0), x)


def test_probability_chooses_which_images_are_changed():
    torch.manual_seed(0)
    x = images(n=2000, side=8) + 0.5
    changed = (augment(x, ("cutout",), probability=0.3) != x).any(dim=(1, 2, 3)).float().mean()
    assert abs(changed - 0.3) < 0.04


def test_unknown_transforms_and_non_images_are_refused():
    with pytest.raises(ValueError, match="unknown augmentation 'rotate': use some of color, translation, cutout"):
        augment(images(), ("rotate",))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) images"):
        augment(torch.rand(8, 2))
    assert TRANSFORMS == ("color", "translation", "cutout")


def test_ada_raises_p_when_d_is_too_sure_of_the_reals_and_lowers_it_otherwise():
    assert adapted_probability(0.2, real_sign=0.9, images=64, speed_images=640) == pytest.approx(0.3)
    assert adapted_probability(0.2, real_sign=0.1, images=64, speed_images=640) == pytest.approx(0.1)
    assert adapted_probability(0.0, real_sign=-1.0, images=64, speed_images=640) == 0.0
    assert adapted_probability(0.99, real_sign=1.0, images=64, speed_images=640) == 1.0
