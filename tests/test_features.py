"""The shipped MNIST feature network: loads without pickle, checks its hash, classifies real digits;
user FeatureCNN files round-trip; inputs it cannot take are refused with a message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch

from genlab.data import load_dataset
from genlab.data.images import MNIST_SHA256
from genlab.metrics import features as fn
from genlab.metrics.features import (
    MNIST_RECORD,
    MNIST_WEIGHTS,
    FeatureCNN,
    FeatureCNNConfig,
    load_feature_network,
    save_feature_cnn,
    sha256_file,
)

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"reason: ../shared/data/mnist not found (looked in {SHARED_DATA / 'mnist'})")
    return SHARED_DATA


def test_shipped_network_matches_its_record():
    record = json.loads(MNIST_RECORD.read_text())
    network = fn.mnist_feature_network()
    assert network.sha256 == record["weights_sha256"] == sha256_file(MNIST_WEIGHTS)
    assert network.name == record["name"]
    assert record["data_sha256"] == MNIST_SHA256
    assert record["test_accuracy"] >= 0.993
    assert MNIST_WEIGHTS.stat().st_size < 2_000_000
    assert network.num_features == 128 and not network.net.training


def test_a_damaged_weights_file_is_refused(tmp_path):
    weights = tmp_path / MNIST_WEIGHTS.name
    shutil.copy(MNIST_WEIGHTS, weights)
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="the file is damaged; reinstall genlab or rerun"):
        load_feature_network(weights, record=MNIST_RECORD)


def test_unreadable_and_unknown_files_are_refused(tmp_path):
    damaged = tmp_path / "inception.pth"
    damaged.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match=r"not a readable \.pth weights file: .*never pickled code\)$"):
        load_feature_network(damaged)
    other = tmp_path / "net.onnx"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match="neither .safetensors nor pytorch-fid's .pth"):
        load_feature_network(other)


def test_features_and_labels_shapes_and_batch_independence():
    x = torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    features = fn.features(x)
    assert features.shape == (7, 128) and features.dtype == torch.float32
    # eval mode: BatchNorm uses its running statistics, so an image's features do not depend on its batch
    assert torch.allclose(fn.mnist_feature_network().features(x, batch_size=2), features, atol=1e-5)
    assert fn.classify(x).shape == (7,)


@pytest.mark.parametrize(("shape", "match"), [
    ((2, 3, 28, 28), r"takes \(N, 1, H, W\) images"),
    ((2, 1, 32, 32), "takes 28x28 \\(MNIST\\) or 8x8 \\(digits\\) images, got 32x32"),
])
def test_inputs_it_cannot_take_are_refused(shape, match):
    with pytest.raises(ValueError, match=match):
        fn.features(torch.rand(shape))


def test_images_outside_0_1_are_refused():
    with pytest.raises(ValueError, match=r"images must be in \[0, 1\]"):
        fn.features(torch.full((2, 1, 28, 28), -0.5))


def test_digits_are_framed_as_mnist():
    # 8x8 -> an 18x18 digit in the middle of 28x28: the 5-pixel border is blank.
    x = torch.ones(1, 1, 8, 8)
    framed = fn.mnist_feature_network().prepare(x)
    assert framed.shape == (1, 1, 28, 28)
    assert torch.allclose(framed[..., 5:23, 5:23], torch.ones(18, 18))
    assert framed.sum().item() == pytest.approx(18 * 18)


def test_classifies_digits_from_scikit_learn():
    test = load_dataset("digits", "test")
    accuracy = (fn.classify(test.x) == test.labels).float().mean().item()
    assert accuracy > 0.9  # another data set entirely (8x8, 16 grey levels); chance is 0.1


def test_classifies_real_mnist(shared_data):
    test = load_dataset("mnist", "test", data_dir=shared_data)
    x, labels = test.x[:500], test.labels[:500]
    assert (fn.classify(x) == labels).float().mean().item() >= 0.99


def test_a_user_network_round_trips(tmp_path):
    torch.manual_seed(0)
    net = FeatureCNN(FeatureCNNConfig(in_channels=3, image_size=16, widths=(8, 8, 16), num_classes=4)).eval()
    path = tmp_path / "rgb.safetensors"
    save_feature_cnn(net, path)
    network = load_feature_network(path)
    assert network.name == "user:rgb.safetensors" and network.sha256 == sha256_file(path)
    x = torch.rand(5, 3, 16, 16)
    assert torch.equal(network.features(x), net.features(x))
    with pytest.raises(ValueError, match="takes 16x16 images, got 28x28"):
        network.features(torch.rand(1, 3, 28, 28))


def test_user_files_that_are_not_feature_cnns_are_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="no 'genlab_feature_net' metadata"):
        load_feature_network(plain)
    mismatched = tmp_path / "mismatched.safetensors"
    net = FeatureCNN(FeatureCNNConfig(widths=(8, 8, 16)))
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    config = json.dumps({"widths": [8, 8, 32]})  # says 32 where the tensors have 16
    safetensors.torch.save_file(tensors, str(mismatched), metadata={"genlab_feature_net": config})
    with pytest.raises(ValueError, match="does not hold a FeatureCNN this genlab can build"):
        load_feature_network(mismatched)
