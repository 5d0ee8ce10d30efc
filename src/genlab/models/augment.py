"""Differentiable augmentation for a GAN's discriminator on small data: DiffAugment and ADA's adaptive strength.

With 100 training images D memorises them within a few thousand steps; its verdicts on them stop carrying
anything G can learn from, and G's samples degrade or copy. Augmenting only the real images would teach G
to draw the augmentations, so DiffAugment (Zhao et al. 2020) applies the same random, differentiable
transformations to every image D sees, real or generated, in D's update and in G's (G's gradient flows
back through them). ADA (Karras et al. 2020) applies each transformation with a probability p and tunes p
while training from how sure D is of the reals: r_t = E[sign(D(real))] above a target (0.6) means D is
overfitting, so p rises; below, p falls.

Written here from the papers' descriptions for images in genlab's [0, 1] range: brightness shifts by up to
+-0.25 (DiffAugment's +-0.5 on a [-1, 1] range), saturation and contrast scale around the image's own
mean, translation moves by up to 1/8 of the side with zero fill, cutout blanks a square of half the side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TRANSFORMS = ("color", "translation", "cutout")
TRANSLATION_RATIO, CUTOUT_RATIO = 1 / 8, 1 / 2  # DiffAugment's defaults, as fractions of the image side
ADA_TARGET = 0.6  # the r_t that ADA keeps: sign(D(real)) positive for 80% of the reals


def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One draw per image, shaped to broadcast over (B, C, H, W)."""
    return torch.empty(len(x), 1, 1, 1, device=x.device, dtype=x.dtype).uniform_(low, high)


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness, saturation (a no-op on grey images) and contrast, each image its own."""
    x = x + _uniform(x, -0.25, 0.25)
    x = (x - x.mean(1, keepdim=True)) * _uniform(x, 0, 2) + x.mean(1, keepdim=True)
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by whole pixels, up to `ratio` of its side each way; what comes in is 0."""
    batch, _, height, width = x.shape
    reach_y, reach_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    shift_y = torch.randint(-reach_y, reach_y + 1, (batch, 1, 1), device=x.device)
    shift_x = torch.randint(-reach_x, reach_x + 1, (batch, 1, 1), device=x.device)
    rows = torch.arange(height, device=x.device).view(1, height, 1) + shift_y  # source row of each output row
    columns = torch.arange(width, device=x.device).view(1, 1, width) + shift_x
    # One pixel of zero padding: sources outside the image read it (clamped to the padding's row or column).
    padded = F.pad(x, (1, 1, 1, 1))
    rows, columns = (rows + 1).clamp(0, height + 1), (columns + 1).clamp(0, width + 1)
    picked = padded.permute(0, 2, 3, 1)[torch.arange(batch, device=x.device).view(batch, 1, 1), rows, columns]
    return picked.permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Blank (set to 0) a square of `ratio` of the side at a random place in each image; it may overhang."""
    batch, _, height, width = x.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    # the square's centre anywhere in the image (so at least a quarter of it is inside), as DiffAugment draws it
    top = torch.randint(0, height, (batch, 1, 1), device=x.device) - size_y // 2
    left = torch.randint(0, width, (batch, 1, 1), device=x.device) - size_x // 2
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    columns = torch.arange(width, device=x.device).view(1, 1, width)
    inside = (rows >= top) & (rows < top + size_y) & (columns >= left) & (columns < left + size_x)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPERATIONS = {"color": color, "translation": translation, "cutout": cutout}


def augment(x: torch.Tensor, transforms: tuple[str, ...] = TRANSFORMS, probability: float = 1.0) -> torch.Tensor:
    """Apply each of `transforms` in turn, each to every image with probability `probability` (DiffAugment: 1;
    ADA: its adapted p). Differentiable in x; the random draws come from torch's global generator, which
    genlab's checkpoints save, so a resumed run draws the same augmentations."""
    if x.dim() != 4:
        raise ValueError(f"augmentation works on (B, C, H, W) images, got shape {tuple(x.shape)}")
    for name in transforms:
        if name not in OPERATIONS:
            raise ValueError(f"unknown augmentation {name!r}: use some of {', '.join(TRANSFORMS)}")
        if probability <= 0:
            break
        changed = OPERATIONS[name](x)
        if probability < 1:
            chosen = torch.rand(len(x), 1, 1, 1, device=x.device) < probability
            changed = torch.where(chosen, changed, x)
        x = changed
    return x


def adapted_probability(probability: float, real_sign: float, images: int, speed_images: int,
                        target: float = ADA_TARGET) -> float:
    """ADA's update: p moves by images / speed_images towards more augmentation when D is surer of the reals
    than `target` (real_sign = mean sign of D's outputs on the reals seen since the last update), towards less
    when it is not; clamped to [0, 1]. speed_images: how many images it takes p to travel from 0 to 1."""
    step = images / speed_images
    direction = 1.0 if real_sign > target else -1.0
    return min(1.0, max(0.0, probability + direction * step))
