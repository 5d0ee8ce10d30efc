"""HOG features: genlab's offline feature space for faces, and what eval does with it."""

import pytest
import torch

from genlab.data import load_dataset
from genlab.evaluate import evaluate_run
from genlab.metrics.features import HOGFeatures, load_feature_network
from genlab.metrics.quality import kernel_distance
from genlab.run import create_run
from genlab.train import TrainConfig, train


@pytest.fixture(scope="module")
def faces():
    return load_dataset("faces", image_size=32).x


def test_hog_features_are_fixed_size_deterministic_and_see_grey_and_rgb_alike(faces):
    network = load_feature_network("hog")
    first = network.features(faces[:4])
    assert first.shape == (4, HOGFeatures().num_features) == (4, 1764)
    assert torch.equal(first, network.features(faces[:4]))
    assert torch.allclose(network.features(faces[:4].expand(-1, 3, -1, -1)), first, atol=1e-5)
    assert network.name == "genlab-hog-32px-v1" and len(network.sha256) == 64


def test_kid_on_hog_features_puts_other_faces_closer_than_copies_and_copies_closer_than_non_faces(faces):
    from skimage.data import lfw_subset

    network = load_feature_network("hog")
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    reference, held_out = network.features(faces[order[:50]]), faces[order[50:]]
    non_faces = torch.nn.functional.interpolate(torch.from_numpy(lfw_subset()[100:150]).float()[:, None], size=32,
                                                mode="bicubic").clamp(0, 1)

    def kid(x):
        return kernel_distance(reference, network.features(x), subset_size=50)[0]

    copies = held_out[torch.arange(50) % 5]
    assert kid(held_out) < kid(copies) < kid(non_faces)
    assert kid(held_out) < kid((held_out + 0.1 * torch.randn(held_out.shape)).clamp(0, 1))


def test_hog_refuses_what_is_not_an_image():
    with pytest.raises(ValueError, match=r"takes \(N, 1 or 3, H, W\) images"):
        load_feature_network("hog").features(torch.rand(4, 2, 8, 8))


def test_eval_of_a_faces_run_scores_kid_on_hog_features_and_says_why_fid_is_left_out(tmp_path):
    config = TrainConfig(data="faces", steps=2, batch_size=20, image_size=32, log_every=1, sample_every=2,
                         checkpoint_every=2)
    run = create_run(tmp_path / "faces", "gan", config, {"conv_channels": (8, 16)})
    train(run, device="cpu")
    quality = evaluate_run(run, samples=200)["results"]["sample_quality"]
    assert quality["protocol"]["feature_network"] == "genlab-hog-32px-v1"
    assert "kid" in quality["scores"] and "fid" not in quality["scores"]
    assert quality["protocol"]["settings"]["fid"].startswith("left out: 100 real examples")
    copies = evaluate_run(run, samples=200)["results"]["memorization"]
    assert copies["protocol"]["feature_network"] == "genlab-hog-32px-v1"
    assert copies["protocol"]["yardstick"] == "each of the 100 training images against the others"
    assert 0 <= copies["scores"]["copy_rate"] <= 1 and copies["scores"]["real_copy_rate"] == 0.0
