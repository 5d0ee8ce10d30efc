"""The feature network behind FID, KID and precision/recall on MNIST-family images, and the digit classifier.

FID with ImageNet's Inception features says little about 28x28 digits, so genlab ships its own: a small
CNN trained on MNIST by scripts/train_feature_network.py. Its weights (safetensors, never pickle) sit
beside this file with a JSON record of how they were made (data hash, test accuracy, script, seed) and
their SHA-256, which is checked on every load. `features(x)` is the 128-d penultimate layer (the global
average pool, like Inception's pool3 in FID); `classify(x)` gives digit labels, e.g. for Stacked-MNIST
mode counts.

Inputs are (N, 1, 28, 28) in [0, 1]. scikit-learn's 8x8 digits are put in MNIST's framing first: MNIST
digits were size-normalised into a 20x20 box and centred in 28x28, so an 8x8 digit is scaled up (bicubic,
clamped to [0, 1]) and centred on a blank 28x28 field. Its box is 18 pixels, not 20: the 8x8 digits' strokes
are thick, and at 18 they come closest to MNIST's, by the classifier's accuracy on all 1,797 digits (95.6%;
20 pixels 91.7%, 16 pixels 93.7%; bilinear at 20 pixels 77.1%). Other sizes are rejected.

Other data (RGB folders) need another network, passed by path (`genlab eval RUN --features PATH`):
- the Inception of FID from pytorch-fid (genlab.metrics.inception; its 2048-d pool3 features, the usual FID):
  the `pt_inception-2015-12-05-6726825d.pth` weights file as pytorch-fid downloads it, or the same tensors as
  .safetensors. The .pth is read with torch.load(weights_only=True), PyTorch's restricted unpickler, which
  builds only tensors and plain containers and refuses anything else; genlab never downloads the file;
- or a .safetensors file of genlab's `FeatureCNN` trained on the data (its architecture in the file's
  "genlab_feature_net" metadata, written by `save_feature_cnn`).

Faces use `HOGFeatures` (`--features hog`, the default for `faces` data): histograms of oriented gradients
(scikit-image's `hog`, Dalal and Triggs' face and pedestrian features) of each image in grey at 32x32. No
weights can be had offline for faces, and KID on these features ranks what it must, checked on the 100 faces
by `benchmarks/faces_quality.py` (50 reference faces against 50 others, three random halvings): held-out faces
score about 0, noisy or blurred faces more, 50 copies of 5 faces more still, and non-faces far more.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from genlab.metrics.inception import FIDInception

MNIST_WEIGHTS = Path(__file__).with_name("mnist_features.safetensors")
MNIST_RECORD = MNIST_WEIGHTS.with_suffix(".json")  # how the weights were made, and their SHA-256
METADATA_KEY = "genlab_feature_net"
MNIST_SIZE = 28
DIGIT_BOX = 18  # where an 8x8 digit goes in 28x28 (MNIST's own box is 20x20; see the module docstring)


@dataclass(frozen=True)
class FeatureCNNConfig:
    in_channels: int = 1  # 1 for MNIST; 3 for an RGB network
    image_size: int = 28  # the size it was trained on; the net is convolutional, but features shift with scale
    widths: tuple[int, ...] = (32, 64, 64, 128)  # 3x3 conv + BN + ReLU each; a 2x2 max-pool after the 1st and 3rd
    num_classes: int = 10
    dropout: float = 0.3  # before the classifier only; the features are taken before it

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        if self.in_channels < 1 or self.num_classes < 2 or len(self.widths) < 3:
            raise ValueError(f"a FeatureCNN needs in_channels >= 1, num_classes >= 2 and at least 3 widths, "
                             f"got {self}")


class FeatureCNN(nn.Module):
    """Conv-BN-ReLU blocks with two max-pools (28 -> 14 -> 7), a global average pool to `widths[-1]`
    features, dropout, and a linear classifier. ~130k parameters for the MNIST widths."""

    POOL_AFTER = (0, 2)  # block indices followed by a 2x2 max-pool
    BATCH = 500  # images per forward pass when scoring: small 28x28 activations

    def __init__(self, config: FeatureCNNConfig):
        super().__init__()
        self.config = config
        layers, channels = [], config.in_channels
        for index, width in enumerate(config.widths):
            # No conv bias: the BatchNorm after it has its own shift.
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            if index in self.POOL_AFTER:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(channels, config.num_classes)

    @property
    def num_features(self) -> int:
        return self.config.widths[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, widths[-1]): the global average pool of the last block."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_classes) logits."""
        return self.head(self.dropout(self.features(x)))


class HOGFeatures(nn.Module):
    """Histograms of oriented gradients of each image, grey and resized to 32x32 (bicubic): 9 orientations in
    4x4-pixel cells, L2-Hys normalised over 2x2-cell blocks, 7 x 7 x 2 x 2 x 9 = 1764 features. 4-pixel cells
    separated copies from noisy faces best of 4, 6 and 8 (benchmarks/faces_quality.py). Nothing is learned."""

    SIZE, CELL, ORIENTATIONS = 32, 4, 9
    BATCH = 500
    NAME = "genlab-hog-32px-v1"

    @property
    def num_features(self) -> int:
        blocks = self.SIZE // self.CELL - 1
        return blocks * blocks * 2 * 2 * self.ORIENTATIONS

    def features(self, x: torch.Tensor) -> torch.Tensor:
        from skimage.feature import hog  # imported here: scikit-image takes a second to import

        grey = x.mean(1, keepdim=True) if x.shape[1] == 3 else x  # the equal-weights grey of each pixel
        grey = F.interpolate(grey.float(), size=(self.SIZE, self.SIZE), mode="bicubic", align_corners=False)
        images = grey.clamp(0, 1)[:, 0].cpu().double().numpy()
        rows = [hog(image, orientations=self.ORIENTATIONS, pixels_per_cell=(self.CELL, self.CELL),
                    cells_per_block=(2, 2)) for image in images]
        return torch.from_numpy(np.stack(rows)).float() if rows else torch.empty(0, self.num_features)

    @staticmethod
    def settings_sha256() -> str:
        """What the features depend on, hashed for each score's protocol (there are no weights to hash)."""
        import skimage

        settings = {"name": HOGFeatures.NAME, "size": HOGFeatures.SIZE, "cell": HOGFeatures.CELL,
                    "orientations": HOGFeatures.ORIENTATIONS, "scikit-image": skimage.__version__}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def save_feature_cnn(net: FeatureCNN, path: Path) -> None:
    """Write `net` as safetensors with its architecture in the metadata, for `load_feature_network(path)`."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    safetensors.torch.save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(asdict(net.config))})


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class FeatureNetwork:
    """A loaded feature network: its name and SHA-256 (for the protocol of every score) and the net."""

    name: str
    sha256: str
    net: FeatureCNN | FIDInception | HOGFeatures

    @property
    def num_features(self) -> int:
        return self.net.num_features

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Images as the net expects them (MNIST's (N, 1, 28, 28), 8x8 digits framed as MNIST; Inception: RGB or
        grey at any size, which it resizes itself); anything else is an error that says why."""
        if len(x) and not (x.min() >= 0 and x.max() <= 1):  # also catches NaN
            raise ValueError(f"images must be in [0, 1] (genlab's range), got values in "
                             f"[{x.min().item():.3g}, {x.max().item():.3g}]: clamp or rescale them first")
        if isinstance(self.net, HOGFeatures):
            if x.dim() != 4 or x.shape[1] not in (1, 3):
                raise ValueError(f"feature network {self.name} takes (N, 1 or 3, H, W) images, "
                                 f"got shape {tuple(x.shape)}")
            return x
        if isinstance(self.net, FIDInception):
            if x.dim() != 4 or x.shape[1] not in (1, 3):
                raise ValueError(f"feature network {self.name} takes (N, 3, H, W) or (N, 1, H, W) images, "
                                 f"got shape {tuple(x.shape)}")
            return x.expand(-1, 3, -1, -1)  # grey as RGB, as pytorch-fid does
        channels = self.net.config.in_channels
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f"feature network {self.name} takes (N, {channels}, H, W) images, "
                             f"got shape {tuple(x.shape)}")
        size = self.net.config.image_size
        if tuple(x.shape[2:]) != (size, size):
            mnist_like = channels == 1 and size == MNIST_SIZE
            if not (mnist_like and tuple(x.shape[2:]) == (8, 8)):
                raise ValueError(f"feature network {self.name} takes {size}x{size}"
                                 f"{' (MNIST) or 8x8 (digits)' if mnist_like else ''} images, got "
                                 f"{x.shape[2]}x{x.shape[3]}: pass a feature network trained on this data")
            margin = (MNIST_SIZE - DIGIT_BOX) // 2
            digit = F.interpolate(x, size=(DIGIT_BOX, DIGIT_BOX), mode="bicubic", align_corners=False)
            x = F.pad(digit.clamp(0, 1), [margin] * 4)  # bicubic overshoots a little at edges
        return x

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> (N, num_features) float32 features on the CPU."""
        x = self.prepare(x)
        device = next(self.net.parameters(), x).device  # HOG has no parameters: it runs where x is
        chunks = x.split(batch_size or self.net.BATCH)
        return torch.cat([self.net.features(chunk.to(device)).cpu() for chunk in chunks]
                         or [torch.empty(0, self.num_features)])

    @torch.no_grad()
    def classify(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> (N,) int64 class labels."""
        x = self.prepare(x)
        device = next(self.net.parameters()).device
        chunks = x.split(batch_size or self.net.BATCH)
        return torch.cat([self.net(chunk.to(device)).argmax(1).cpu() for chunk in chunks]
                         or [torch.empty(0, dtype=torch.long)])


def load_feature_network(path: str | Path | None = None, *, record: str | Path | None = None) -> FeatureNetwork:
    """The shipped MNIST network (path None), "hog" (HOGFeatures), or a user's file: a FeatureCNN .safetensors,
    or pytorch-fid's Inception weights (.pth, or the same tensors as .safetensors).

    The shipped weights must match the SHA-256 in their JSON record (`record`, default the one beside
    them); a user's file is hashed and the hash goes into each score's protocol.
    """
    if path is not None and str(path) == "hog":  # a name, not a file: genlab computes these features itself
        return FeatureNetwork(name=HOGFeatures.NAME, sha256=HOGFeatures.settings_sha256(), net=HOGFeatures())
    shipped = path is None
    path = Path(path) if path is not None else MNIST_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"feature network {path} not found: pass a FeatureCNN .safetensors file or "
                                "pytorch-fid's Inception weights (pt_inception-2015-12-05-6726825d.pth)"
                                if not shipped else f"shipped feature network {path} is missing: reinstall genlab")
    if path.suffix not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"feature network {path} is neither .safetensors nor pytorch-fid's .pth weights file")
    digest = sha256_file(path)
    if shipped or record is not None:
        recorded = json.loads(Path(record or MNIST_RECORD).read_text())
        if digest != recorded["weights_sha256"]:
            raise ValueError(f"{path} has SHA-256 {digest}, but its record {Path(record or MNIST_RECORD).name} says "
                             f"{recorded['weights_sha256']}: the file is damaged; reinstall genlab or rerun "
                             "scripts/train_feature_network.py")
        name = recorded["name"]
    else:
        name = f"user:{path.name}"
    metadata, tensors = _read_tensors(path)
    if METADATA_KEY in metadata:
        try:
            net = FeatureCNN(FeatureCNNConfig(**json.loads(metadata[METADATA_KEY])))
            net.load_state_dict(tensors, strict=True)
        except (TypeError, RuntimeError, json.JSONDecodeError) as error:  # unknown keys, mismatched tensors
            raise ValueError(f"{path} does not hold a FeatureCNN this genlab can build ({error})") from None
        return FeatureNetwork(name=name, sha256=digest, net=net.eval())
    net = FIDInception()
    if set(tensors) != set(net.state_dict()):
        raise ValueError(f"{path} holds neither a FeatureCNN (no {METADATA_KEY!r} metadata: write it with "
                         "genlab.metrics.features.save_feature_cnn) nor pytorch-fid's Inception weights "
                         f"({len(set(net.state_dict()) - set(tensors))} of its tensors missing, "
                         f"{len(set(tensors) - set(net.state_dict()))} unknown)")
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as error:  # a tensor of the wrong shape
        raise ValueError(f"{path} does not hold pytorch-fid's Inception weights ({error})") from None
    return FeatureNetwork(name=f"pytorch-fid-inception:{path.name}", sha256=digest, net=net.eval())


def _read_tensors(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a .safetensors file, or ({}, state dict) of a .pth through the restricted unpickler."""
    if path.suffix == ".safetensors":
        try:
            with safetensors.safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            return metadata, safetensors.torch.load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for every kind of damage
            raise ValueError(f"{path} is not a readable safetensors file ({error})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's message would suggest weights_only=False, exactly what must not be done
        raise ValueError(f"{path} is not a readable {path.suffix} weights file: PyTorch's restricted loader refused "
                         "it (damaged, or it holds pickled objects beyond tensors; genlab reads tensors only, "
                         "never pickled code)") from None
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise ValueError(f"{path} is not a state dict of tensors (pytorch-fid's weights file is one)")
    return {}, state


@functools.cache
def mnist_feature_network() -> FeatureNetwork:
    """The shipped network, loaded and checked once per process."""
    return load_feature_network()


def features(x: torch.Tensor) -> torch.Tensor:
    """Penultimate-layer features of the shipped MNIST network: (N, 1, 28, 28) or (N, 1, 8, 8) -> (N, 128)."""
    return mnist_feature_network().features(x)


def classify(x: torch.Tensor) -> torch.Tensor:
    """Digit labels (N,) from the shipped MNIST network."""
    return mnist_feature_network().classify(x)
