"""Does KID on HOG features rank faces right? The check before trusting genlab's offline face score.

    PYTHONPATH=src python benchmarks/faces_quality.py [--halvings 3]

The 100 faces (scikit-image's lfw_subset, at 32 px as `--data faces --set image_size=32` serves them) are
split at random into 50 reference faces and 50 others, and KID against the reference is measured for: the
50 other faces (real, held out), the same with Gaussian noise (std 0.1) or blurred (sigma 1), 50 copies of 5
reference faces, 50 copies of 5 held-out faces, and 50 of lfw_subset's non-faces. A trustworthy score puts
them in that order (noise and blur in either order between held-out and copies), in every halving.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from genlab.data import load_dataset
from genlab.metrics.features import load_feature_network
from genlab.metrics.quality import kernel_distance


def non_faces(image_size: int) -> torch.Tensor:
    from skimage.data import lfw_subset

    x = torch.from_numpy(lfw_subset()[100:]).float().unsqueeze(1)
    return F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False).clamp(0, 1)


def blurred(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    radius = 3
    taps = torch.exp(-torch.arange(-radius, radius + 1).float() ** 2 / (2 * sigma**2))
    taps = taps / taps.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))


def candidates(reference: torch.Tensor, held_out: torch.Tensor, others: torch.Tensor, generator) -> dict:
    pick = torch.randint(0, 5, (len(held_out),), generator=generator)
    noise = 0.1 * torch.randn(held_out.shape, generator=generator)
    return {"held-out faces": held_out, "noisy faces": (held_out + noise).clamp(0, 1),
            "blurred faces": blurred(held_out),
            "copies of 5 reference faces": reference[pick], "copies of 5 held-out faces": held_out[pick],
            "non-faces": others[torch.randperm(len(others), generator=generator)[:len(held_out)]]}


def ranks_right(kid: dict[str, float]) -> bool:
    order = [kid["held-out faces"], max(kid["noisy faces"], kid["blurred faces"]),
             min(kid["copies of 5 reference faces"], kid["copies of 5 held-out faces"]), kid["non-faces"]]
    return all(a < b for a, b in zip(order, order[1:], strict=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--halvings", type=int, default=3)
    args = parser.parse_args()
    network = load_feature_network("hog")
    faces, others = load_dataset("faces", image_size=32).x, non_faces(32)
    every = []
    for halving in range(args.halvings):
        generator = torch.Generator().manual_seed(halving)
        order = torch.randperm(len(faces), generator=generator)
        reference, held_out = faces[order[:50]], faces[order[50:]]
        real = network.features(reference)
        kid = {name: kernel_distance(real, network.features(x), subset_size=50)[0] * 1000
               for name, x in candidates(reference, held_out, others, generator).items()}
        every.append(ranks_right(kid))
        print(f"halving {halving}: KID x 1000 against 50 reference faces ({network.name})")
        for name, value in kid.items():
            print(f"  {name:30s} {value:8.2f}")
        print(f"  ranks right: {every[-1]}")
    print(f"RESULT faces_quality_ranks_right={sum(every)}/{len(every)} feature_network={network.name}")


if __name__ == "__main__":
    main()
