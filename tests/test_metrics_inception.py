"""genlab.metrics.inception against the reference (torchvision's Inception3 with pytorch-fid's FID patches; see
tests/fixtures/fid_inception_reference.py), and loading pytorch-fid's weights file safely."""

import json
import pickle

import pytest
import safetensors
import safetensors.torch
import torch

from fixtures.fid_inception_reference import FIXTURE, fixed_images, fixed_weights
from genlab.metrics.features import load_feature_network
from genlab.metrics.inception import FIDInception


@pytest.fixture(scope="module")
def reference():
    with safetensors.safe_open(str(FIXTURE), framework="pt") as f:
        shapes = {key: tuple(shape) for key, shape in json.loads(f.metadata()["state_dict_shapes"]).items()}
    return shapes, safetensors.torch.load_file(str(FIXTURE))


@pytest.fixture(scope="module")
def weights(reference):
    return fixed_weights(reference[0])


def test_parameter_names_and_shapes_are_pytorch_fids(reference):
    shapes, _ = reference
    assert {key: tuple(value.shape) for key, value in FIDInception().state_dict().items()} == shapes


def test_pool3_features_and_logits_equal_the_reference(weights, reference):
    _, expected = reference
    net = FIDInception().eval()
    net.load_state_dict(weights)
    with torch.no_grad():
        features = net.features(fixed_images())
        logits = net(fixed_images())
    assert features.shape == (2, 2048)
    torch.testing.assert_close(features, expected["features"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, expected["logits"], rtol=1e-4, atol=1e-5)


def test_pytorch_fids_pth_and_safetensors_load_as_the_same_network(weights, reference, tmp_path):
    pth, converted = tmp_path / "pt_inception-2015-12-05-6726825d.pth", tmp_path / "inception.safetensors"
    torch.save(weights, pth)  # what pytorch-fid's weights file is: a state dict saved by torch.save
    safetensors.torch.save_file(weights, str(converted))
    from_pth, from_safetensors = load_feature_network(pth), load_feature_network(converted)
    assert from_pth.name == "pytorch-fid-inception:pt_inception-2015-12-05-6726825d.pth"
    assert from_pth.num_features == 2048 and from_pth.sha256 != from_safetensors.sha256
    images = fixed_images()
    torch.testing.assert_close(from_pth.features(images), reference[1]["features"], rtol=1e-4, atol=1e-5)
    assert torch.equal(from_pth.features(images), from_safetensors.features(images))
    # grey images are read as RGB with three equal channels
    grey = images[:, :1]
    assert torch.equal(from_pth.features(grey), from_pth.features(grey.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match=r"takes \(N, 3, H, W\) or \(N, 1, H, W\) images"):
        from_pth.features(torch.rand(1, 2, 8, 8))


class Payload:
    """Unpickling this would create a file: what a hostile weights file could do with plain torch.load."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the hostile file's protocol
def test_a_pth_that_carries_code_is_refused_without_running_it(tmp_path):
    target = tmp_path / "pwned"
    hostile = tmp_path / "inception.pth"
    with hostile.open("wb") as f:
        pickle.dump({"Conv2d_1a_3x3.conv.weight": Payload(target)}, f)
    with pytest.raises(ValueError, match="never pickled code"):
        load_feature_network(hostile)
    assert not target.exists()


def test_tensors_of_another_network_are_refused(weights, tmp_path):
    partial = tmp_path / "partial.pth"
    torch.save({key: value for key, value in weights.items() if not key.startswith("Mixed_7c")}, partial)
    with pytest.raises(ValueError, match=r"neither a FeatureCNN .* nor pytorch-fid's Inception weights \(\d+ of"):
        load_feature_network(partial)
    wrong_shape = tmp_path / "wrong.pth"
    torch.save({**weights, "fc.weight": torch.zeros(1000, 2048)}, wrong_shape)
    with pytest.raises(ValueError, match="does not hold pytorch-fid's Inception weights"):
        load_feature_network(wrong_shape)
