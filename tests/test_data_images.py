"""Image loaders: digits split, MNIST IDX parsing against the published statistics, checked
downloads over file:// URLs, and image folders built from small PNG/JPEG files."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from genlab.data import images, load_dataset

SHARED_MNIST = Path(__file__).parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture
def mnist_folder() -> Path:
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"reason: ../shared/data/mnist not found (looked in {SHARED_MNIST})")
    return SHARED_MNIST


# ----------------------------------------------------------------------------- digits


def rows(x: torch.Tensor, labels: torch.Tensor) -> Counter:
    return Counter(
        (tuple(image.flatten().tolist()), int(label)) for image, label in zip(x, labels, strict=True)
    )


def test_digits_shapes_range_and_split():
    train_x, train_labels = images.digits("train")
    test_x, test_labels = images.digits("test")
    assert train_x.shape == (1500, 1, 8, 8) and test_x.shape == (297, 1, 8, 8)
    assert train_x.dtype == torch.float32 and train_labels.dtype == torch.int64
    assert train_x.min() == 0 and train_x.max() == 1
    assert torch.equal(train_x * 16, (train_x * 16).round())  # the original 0..16 counts, scaled
    assert set(train_labels.tolist()) == set(range(10))
    # Together the splits are exactly the data set: no example lost, none in both.
    full = load_digits()
    assert rows(train_x, train_labels) + rows(test_x, test_labels) == rows(
        torch.from_numpy(full.images).float() / 16, torch.from_numpy(full.target)
    )
    again_x, again_labels = images.digits("train")
    assert torch.equal(again_x, train_x) and torch.equal(again_labels, train_labels)


def test_digits_rejects_unknown_split():
    with pytest.raises(ValueError, match="'valid'"):
        images.digits("valid")


# ----------------------------------------------------------------------------- MNIST, real files


def test_mnist_train_matches_published_statistics(mnist_folder):
    x, labels = images.mnist(mnist_folder, "train")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1
    assert x.mean().item() == pytest.approx(0.1307, abs=1e-3)
    assert x.std().item() == pytest.approx(0.3081, abs=1e-3)
    assert torch.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_test_split_through_the_loader(mnist_folder):
    dataset = load_dataset("mnist", "test", data_dir=mnist_folder.parent)
    assert len(dataset) == 10000 and dataset.shape == (1, 28, 28) and dataset.kind == "image"
    assert torch.bincount(dataset.labels).sum() == 10000


def test_verify_mnist_accepts_the_real_files(mnist_folder):
    images.verify_mnist(mnist_folder)


# ----------------------------------------------------------------------------- MNIST, synthetic IDX


def idx_bytes(magic: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape) + payload


def write_mnist(
    folder: Path, split: str = "train", n_images: int = 3, n_labels: int = 3
) -> tuple[Path, Path]:
    """A tiny valid pair of IDX files: image i is filled with 10 * i + its pixel index."""
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    images_file = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_file = folder / f"{prefix}-labels-idx1-ubyte.gz"
    pixels = (np.arange(n_images)[:, None] * 10 + np.arange(28 * 28)[None]) % 256
    images_file.write_bytes(
        gzip.compress(idx_bytes(2051, (n_images, 28, 28), pixels.astype(np.uint8).tobytes()))
    )
    labels_file.write_bytes(gzip.compress(idx_bytes(2049, (n_labels,), bytes(range(n_labels)))))
    return images_file, labels_file


def test_mnist_reads_idx_exactly(tmp_path):
    write_mnist(tmp_path, "test")
    x, labels = images.mnist(tmp_path, "test")
    assert x.shape == (3, 1, 28, 28) and labels.tolist() == [0, 1, 2]
    expected = (torch.arange(3)[:, None] * 10 + torch.arange(28 * 28)[None]) % 256
    assert torch.equal(x.flatten(1), expected.float() / 255)


def test_mnist_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="genlab data download mnist") as error:
        images.mnist(tmp_path / "nowhere", "train")
    assert "nowhere" in str(error.value) and "GENLAB_DATA_DIR" in str(error.value)


def test_mnist_missing_file_names_it(tmp_path):
    _, labels_file = write_mnist(tmp_path)
    labels_file.unlink()
    with pytest.raises(FileNotFoundError, match="genlab data download mnist") as error:
        images.mnist(tmp_path, "train")
    assert str(labels_file) in str(error.value)


def test_mnist_image_and_label_counts_must_agree(tmp_path):
    images_file, labels_file = write_mnist(tmp_path, n_images=3, n_labels=2)
    with pytest.raises(ValueError, match="3 images .* 2 labels") as error:
        images.mnist(tmp_path, "train")
    assert str(images_file) in str(error.value) and str(labels_file) in str(error.value)


# ----------------------------------------------------------------------------- MNIST download


def fake_mnist(folder: Path, monkeypatch) -> dict[str, bytes]:
    """Serve small stand-in files from `folder`, with MNIST_SHA256 patched to their hashes."""
    folder.mkdir()
    served = {}
    for name in images.MNIST_SHA256:
        content = f"stand-in for {name}".encode()
        monkeypatch.setitem(images.MNIST_SHA256, name, hashlib.sha256(content).hexdigest())
        served[name] = gzip.compress(content)
        (folder / f"{name}.gz").write_bytes(served[name])
    return served


def refuse(url, timeout):
    raise AssertionError(f"should not have fetched {url}")


def test_download_fetches_verifies_and_then_skips(tmp_path, monkeypatch):
    served = fake_mnist(tmp_path / "served", monkeypatch)
    destination = tmp_path / "data" / "mnist"
    files = images.download_mnist(destination, base_url=(tmp_path / "served").as_uri())
    assert [file.name for file in files] == [f"{name}.gz" for name in images.MNIST_SHA256]
    assert {file.name: file.read_bytes() for file in files} == {f"{n}.gz": data for n, data in served.items()}
    assert sorted(path.name for path in destination.iterdir()) == sorted(file.name for file in files)
    images.verify_mnist(destination)
    # Everything is in place and verified, so a second call fetches nothing.
    assert images.download_mnist(destination, opener=refuse) == files


def test_download_replaces_a_damaged_file(tmp_path, monkeypatch):
    served = fake_mnist(tmp_path / "served", monkeypatch)
    destination = tmp_path / "mnist"
    images.download_mnist(destination, base_url=(tmp_path / "served").as_uri())
    damaged = destination / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"junk")
    with pytest.raises(ValueError, match="damaged") as error:
        images.verify_mnist(destination)
    assert str(damaged) in str(error.value)
    images.download_mnist(destination, base_url=(tmp_path / "served").as_uri())
    assert damaged.read_bytes() == served["t10k-labels-idx1-ubyte"]


@pytest.mark.parametrize(
    "served_bytes", [gzip.compress(b"not mnist"), b"not even gzip"], ids=["wrong", "not-gzip"]
)
def test_download_rejects_a_corrupt_file_and_leaves_nothing(tmp_path, served_bytes):
    served = tmp_path / "served"
    served.mkdir()
    for name in images.MNIST_SHA256:
        (served / f"{name}.gz").write_bytes(served_bytes)
    destination = tmp_path / "mnist"
    with pytest.raises(ValueError) as error:
        images.download_mnist(destination, base_url=served.as_uri() + "/")
    first = next(iter(images.MNIST_SHA256))
    message = str(error.value)
    assert first in message and images.MNIST_SHA256[first] in message
    got = (
        hashlib.sha256(b"not mnist").hexdigest()
        if served_bytes.startswith(b"\x1f\x8b")
        else "not a complete gzip"
    )
    assert got in message
    assert list(destination.iterdir()) == []  # no final file, no temporary file


def test_download_of_a_missing_url_names_it_and_leaves_nothing(tmp_path):
    served = tmp_path / "empty"
    served.mkdir()
    with pytest.raises(ValueError, match="could not download") as error:
        images.download_mnist(tmp_path / "mnist", base_url=served.as_uri())
    assert "train-images-idx3-ubyte.gz" in str(error.value) and "no partial file was kept" in str(error.value)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_download_real_files_over_file_url(tmp_path, mnist_folder):
    served = tmp_path / "served"
    shutil.copytree(mnist_folder, served)
    files = images.download_mnist(tmp_path / "mnist", base_url=served.as_uri())
    for file in files:
        assert file.read_bytes() == (mnist_folder / file.name).read_bytes()
    images.verify_mnist(tmp_path / "mnist")


def test_verify_mnist_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="genlab data download mnist") as error:
        images.verify_mnist(tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(error.value)


# ----------------------------------------------------------------------------- image folders


def save(path: Path, array: np.ndarray, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)


def gray(value: int, height: int = 5, width: int = 6) -> np.ndarray:
    return np.full((height, width), value, dtype=np.uint8)


def test_grayscale_folder_loads_one_channel_exactly(tmp_path):
    arrays = [np.arange(30, dtype=np.uint8).reshape(5, 6) * (i + 1) for i in range(3)]
    for i, array in enumerate(arrays):
        save(tmp_path / f"{i}.png", array)
    x, labels = images.image_folder(tmp_path, "train", None, None)
    assert labels is None
    assert x.shape == (3, 1, 5, 6) and x.dtype == torch.float32  # (N, C, H, W)
    assert torch.equal(x, torch.from_numpy(np.stack(arrays)[:, None]).float() / 255)


def test_one_colour_image_makes_the_folder_rgb(tmp_path):
    save(tmp_path / "a.png", gray(100))
    save(tmp_path / "b.png", np.dstack([gray(10), gray(20), gray(30)]))
    x, _ = images.image_folder(tmp_path, "train", None, None)
    assert x.shape == (2, 3, 5, 6)
    assert torch.equal(x[0], torch.full((3, 5, 6), 100 / 255))  # gray repeated in each channel
    assert torch.equal(x[1, :, 0, 0], torch.tensor([10, 20, 30]) / 255)
    assert images.image_folder(tmp_path, "train", None, 1)[0].shape == (2, 1, 5, 6)
    assert images.image_folder(tmp_path, "train", None, 3)[0].shape == (2, 3, 5, 6)
    with pytest.raises(ValueError, match="channels"):
        images.image_folder(tmp_path, "train", None, 2)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    save(tmp_path / "deep.png", np.array([[0, 128 * 257, 65535]], dtype=np.uint16))
    x, _ = images.image_folder(tmp_path, "train", None, None)
    assert x.shape == (1, 1, 1, 3)
    assert torch.equal(x.flatten(), torch.tensor([0, 128, 255]) / 255)


def test_jpeg_with_upper_case_suffix(tmp_path):
    save(tmp_path / "photo.JPG", np.full((16, 16, 3), (200, 40, 90), dtype=np.uint8), quality=95)
    x, _ = images.image_folder(tmp_path, "test", None, None)
    assert x.shape == (1, 3, 16, 16)
    assert torch.allclose(x.mean(dim=(2, 3)), torch.tensor([[200, 40, 90]]) / 255, atol=0.02)


def test_image_size_scales_the_short_side_and_crops_the_centre(tmp_path):
    # 40 wide, 20 high: white outer quarters around a black middle half.
    array = np.full((20, 40), 255, dtype=np.uint8)
    array[:, 10:30] = 0
    save(tmp_path / "wide.png", array)
    save(tmp_path / "tall.jpeg", np.zeros((30, 10, 3), dtype=np.uint8))
    x, _ = images.image_folder(tmp_path, "train", 10, None)
    assert x.shape == (2, 3, 10, 10)
    assert x[0].max() == 0  # tall.jpeg sorts first: a black 10x30 cropped to its middle
    # 40x20 scales to 20x10 and the centred 10x10 is the black middle: only the edge columns can
    # pick up white from the bicubic filter.
    assert x[1, :, :, 2:8].max() < 0.02
    assert x[1, :, :, [0, 9]].min() > 0


def test_mixed_sizes_need_an_image_size(tmp_path):
    save(tmp_path / "a.png", gray(0, 5, 6))
    save(tmp_path / "b.png", gray(0, 8, 8))
    with pytest.raises(ValueError, match="image_size=32") as error:
        images.image_folder(tmp_path, "train", None, None)
    assert "a.png" in str(error.value) and "b.png" in str(error.value)
    assert images.image_folder(tmp_path, "train", 4, None)[0].shape == (2, 1, 4, 4)


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        images.image_folder(tmp_path / "nowhere", "train", None, None)
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"no images .*\.png, \.jpg, \.jpeg"):
        images.image_folder(tmp_path, "train", None, None)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        images.image_folder(tmp_path / "notes.txt", "train", None, None)


def test_every_tenth_file_by_relative_path_is_test(tmp_path):
    # 25 images in two subfolders; pixel value = position in relative-path order.
    for i in range(25):
        save(tmp_path / ("a" if i < 12 else "b") / f"{i:02d}.png", gray(i))
    train_x, _ = images.image_folder(tmp_path, "train", None, None)
    test_x, _ = images.image_folder(tmp_path, "test", None, None)
    positions = lambda x: (x[:, 0, 0, 0] * 255).round().long().tolist()  # noqa: E731
    assert positions(test_x) == [9, 19]
    assert positions(train_x) == [i for i in range(25) if i not in (9, 19)]


def test_small_folder_gives_every_image_to_both_splits(tmp_path):
    for i in range(4):
        save(tmp_path / f"{i}.png", gray(i))
    train_x, _ = images.image_folder(tmp_path, "train", None, None)
    test_x, _ = images.image_folder(tmp_path, "test", None, None)
    assert len(train_x) == len(test_x) == 4 and torch.equal(train_x, test_x)


def test_folder_through_the_loader(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", gray(50 * i, 12, 9))
    dataset = load_dataset(f"folder:{tmp_path}", image_size=8)
    assert dataset.shape == (1, 8, 8) and dataset.labels is None and dataset.kind == "image"


# ----------------------------------------------------------------------------- stacked MNIST


def test_stacked_mnist_channels_are_the_digits_its_label_names(tmp_path):
    # Ten fake digits, digit i labelled i: each channel must be the very image its label digit names.
    write_mnist(tmp_path / "mnist", "test", n_images=10, n_labels=10)
    digits_x, _ = images.mnist(tmp_path / "mnist", "test")
    data = load_dataset("stacked-mnist", "test", data_dir=tmp_path, seed=3)
    assert data.shape == (3, 28, 28) and len(data) == images.STACKED_SIZES["test"] and data.kind == "image"
    triples = torch.stack([data.labels // 100, data.labels // 10 % 10, data.labels % 10], dim=1)  # (N, 3)
    assert torch.equal(data.x, digits_x[:, 0][triples])
    # Uniform over 1000 modes: 10,000 draws leave about e^-10 of them empty, and no mode is far above 10.
    counts = torch.bincount(data.labels, minlength=1000)
    assert len(counts) == 1000 and (counts > 0).sum() >= 990 and counts.max() <= 30


def test_stacked_mnist_is_a_function_of_split_and_seed(tmp_path):
    write_mnist(tmp_path / "mnist", "train", n_images=10, n_labels=10)
    write_mnist(tmp_path / "mnist", "test", n_images=10, n_labels=10)
    first, again = (load_dataset("stacked-mnist", "train", data_dir=tmp_path, seed=1) for _ in range(2))
    assert torch.equal(first.labels, again.labels) and len(first) == 60_000
    other_seed = load_dataset("stacked-mnist", "train", data_dir=tmp_path, seed=2)
    test = load_dataset("stacked-mnist", "test", data_dir=tmp_path, seed=1)
    assert not torch.equal(first.labels[:10_000], other_seed.labels[:10_000])
    assert not torch.equal(first.labels[:10_000], test.labels)


def test_stacked_mnist_of_the_real_files(mnist_folder):
    data = load_dataset("stacked-mnist", "test", data_dir=mnist_folder.parent)
    digits = load_dataset("mnist", "test", data_dir=mnist_folder.parent)
    # Every channel of the first examples is some real test digit with the label the mode index says.
    for image, label in zip(data.x[:5], data.labels[:5].tolist(), strict=True):
        for channel, digit in zip(image, (label // 100, label // 10 % 10, label % 10), strict=True):
            same = (digits.x[:, 0] == channel).flatten(1).all(dim=1)
            assert same.any() and set(digits.labels[same].tolist()) == {digit}


# ----------------------------------------------------------------------------- crop


def test_crop_pad_keeps_the_whole_picture_between_white_bands(tmp_path):
    save(tmp_path / "a-wide.png", np.zeros((20, 40), np.uint8))  # black, 40 wide and 20 high
    save(tmp_path / "b-tall.png", np.zeros((30, 10), np.uint8))  # black, 10 wide and 30 high
    x, _ = images.image_folder(tmp_path, "train", 10, None, "pad")
    assert x.shape == (2, 1, 10, 10)
    # 40x20 scales to 10x5, pasted at row round(5 / 2) = 2; 10x30 to 3x10 (10 * 10 / 30 rounded), at column
    # round(7 / 2) = 4 (Pillow's ImageOps.pad rounds half to even).
    wide, tall = x[0, 0], x[1, 0]
    assert wide[2:7].max() == 0 and wide[:2].min() == 1 and wide[7:].min() == 1
    assert tall[:, 4:7].max() == 0 and tall[:, :4].min() == 1 and tall[:, 7:].min() == 1


def test_crop_pad_of_a_square_image_is_the_centre_crop(tmp_path):
    save(tmp_path / "a.png", np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    padded, _ = images.image_folder(tmp_path, "train", 8, None, "pad")
    centred, _ = images.image_folder(tmp_path, "train", 8, None, "centre")
    assert torch.equal(padded, centred)


def test_crop_reaches_the_folder_from_a_runs_settings(tmp_path):
    from genlab.run import load_run_data
    from genlab.train import TrainConfig

    save(tmp_path / "wide.png", np.zeros((20, 40, 3), np.uint8))
    config = TrainConfig(data=f"folder:{tmp_path}", image_size=10, crop="pad")
    x = load_run_data(config, "train").x
    assert x.shape == (1, 3, 10, 10) and x[0, :, :2].min() == 1 and x[0, :, 2:7].max() == 0
    with pytest.raises(ValueError, match="crop='square' is not one of centre, pad"):
        TrainConfig(crop="square")


def test_crops_that_cannot_work_are_refused(tmp_path):
    save(tmp_path / "a.png", gray(0))
    with pytest.raises(ValueError, match="crop=pad fits images to an image size: pass one, e.g. --set image_size=64"):
        images.image_folder(tmp_path, "train", None, None, "pad")
    with pytest.raises(ValueError, match="unknown crop 'square': use one of centre, pad"):
        images.image_folder(tmp_path, "train", 4, None, "square")
    with pytest.raises(ValueError, match="crop applies only to folder:PATH data, not 'faces'"):
        load_dataset("faces", image_size=32, crop="pad")


# ----------------------------------------------------------------------------- the decoded cache


def count_decodes(monkeypatch) -> list[str]:
    """The names of the files decoded from now on, in order."""
    decoded = []
    real_pixels = images._pixels
    monkeypatch.setattr(images, "_pixels", lambda file, *args: decoded.append(file.name) or real_pixels(file, *args))
    return decoded


def colour_folder(folder: Path, count: int = 12) -> None:
    """`count` different 6x5 RGB images: enough for a test split (every 10th file)."""
    generator = np.random.default_rng(0)
    for i in range(count):
        save(folder / f"{i:02d}.png", generator.integers(0, 256, (5, 6, 3), dtype=np.uint8))


def cache_files(folder: Path) -> list[str]:
    return sorted(file.name for file in (folder / images.CACHE_FOLDER).iterdir())


def test_a_second_load_reads_the_cache_and_decodes_nothing(tmp_path, monkeypatch):
    colour_folder(tmp_path)
    decoded = count_decodes(monkeypatch)
    first = {split: images.image_folder(tmp_path, split, None, None)[0] for split in ("train", "test")}
    assert len(decoded) == 12 and cache_files(tmp_path) == ["test-native-auto-centre.uint8",
                                                            "train-native-auto-centre.uint8"]
    monkeypatch.setattr(images, "_header", lambda *args: pytest.fail("read a header on a cache hit"))
    for split in ("train", "test"):
        again, _ = images.image_folder(tmp_path, split, None, None)
        assert again.dtype == torch.float32 and torch.equal(again, first[split])
    assert len(decoded) == 12
    # The pixels themselves, not only the same tensor twice: the files' bytes over 255.
    assert torch.equal(first["test"][0], torch.from_numpy(np.asarray(Image.open(tmp_path / "09.png"))).permute(2, 0, 1)
                       .float() / 255)


def test_a_moved_folder_keeps_its_cache(tmp_path, monkeypatch):
    colour_folder(tmp_path / "before")
    first, _ = images.image_folder(tmp_path / "before", "train", 4, None)
    (tmp_path / "before").rename(tmp_path / "after")  # the key holds relative paths, not where the folder is
    decoded = count_decodes(monkeypatch)
    assert torch.equal(images.image_folder(tmp_path / "after", "train", 4, None)[0], first) and decoded == []


def test_a_changed_added_or_removed_file_is_decoded_again(tmp_path, monkeypatch):
    for i in range(3):
        save(tmp_path / f"{i}.png", gray(i))
    load = lambda: values(images.image_folder(tmp_path, "train", None, None)[0])  # noqa: E731
    assert load() == [0, 1, 2]
    decoded = count_decodes(monkeypatch)
    save(tmp_path / "1.png", gray(7))  # the same number of bytes: its modification time gives it away
    assert load() == [0, 2, 7] and len(decoded) == 3
    save(tmp_path / "sub" / "3.png", gray(30))
    assert load() == [0, 2, 7, 30] and len(decoded) == 7
    (tmp_path / "0.png").unlink()
    assert load() == [2, 7, 30] and len(decoded) == 10
    assert load() == [2, 7, 30] and len(decoded) == 10


def values(x: torch.Tensor) -> list[int]:
    return sorted((x[:, 0, 0, 0] * 255).round().long().tolist())


@pytest.mark.parametrize("settings", [(5, None, "centre"), (4, 1, "centre"), (4, None, "pad")],
                         ids=["image_size", "channels", "crop"])
def test_each_setting_has_its_own_cache(tmp_path, monkeypatch, settings):
    save(tmp_path / "a.png", np.zeros((8, 16, 3), np.uint8))
    save(tmp_path / "b.png", np.full((8, 16, 3), (90, 20, 200), np.uint8))
    base, _ = images.image_folder(tmp_path, "train", 4, None, "centre")
    decoded = count_decodes(monkeypatch)
    image_size, channels, crop = settings
    other, _ = images.image_folder(tmp_path, "train", image_size, channels, crop)
    assert decoded == ["a.png", "b.png"] and not torch.equal(other, base)
    assert torch.equal(images.image_folder(tmp_path, "train", 4, None, "centre")[0], base)
    assert torch.equal(images.image_folder(tmp_path, "train", image_size, channels, crop)[0], other)
    assert len(decoded) == 2 and len(cache_files(tmp_path)) == 2


def test_a_cached_folder_too_big_for_memory_is_still_refused(tmp_path, monkeypatch):
    colour_folder(tmp_path)
    images.image_folder(tmp_path, "train", 8, None)
    monkeypatch.setattr(images, "MAX_DATA_BYTES", 11 * 3 * 8 * 8 * 4 - 1)
    with pytest.raises(ValueError, match=r"train split .* 11 images of 3x8x8, over genlab's .* image_size"):
        images.image_folder(tmp_path, "train", 8, None)


def test_two_loads_building_the_cache_at_once_leave_a_whole_one(tmp_path, monkeypatch):
    colour_folder(tmp_path)
    real_replace = images.os.replace
    loaded = []

    def replace_after_another_load(source, target):
        # The second load runs from start to finish between the first's writing and its renaming.
        monkeypatch.setattr(images.os, "replace", real_replace)
        loaded.append(images.image_folder(tmp_path, "train", None, None)[0])
        real_replace(source, target)

    monkeypatch.setattr(images.os, "replace", replace_after_another_load)
    first, _ = images.image_folder(tmp_path, "train", None, None)
    assert torch.equal(loaded[0], first)
    assert cache_files(tmp_path) == ["train-native-auto-centre.uint8"]  # no temporary file left
    decoded = count_decodes(monkeypatch)
    assert torch.equal(images.image_folder(tmp_path, "train", None, None)[0], first) and decoded == []


def test_abandoned_temporary_files_are_removed_and_fresh_ones_kept(tmp_path):
    colour_folder(tmp_path, 2)
    cache = tmp_path / images.CACHE_FOLDER
    cache.mkdir()
    abandoned, writing = cache / ".train-4-auto-centre.uint8.abc.part", cache / ".test-4-auto-centre.uint8.def.part"
    abandoned.write_bytes(b"half a cache")
    writing.write_bytes(b"half a cache")
    an_hour_ago = time.time() - images.ABANDONED_SECONDS - 60
    os.utime(abandoned, (an_hour_ago, an_hour_ago))
    images.image_folder(tmp_path, "train", None, None)
    assert not abandoned.exists() and writing.exists()
