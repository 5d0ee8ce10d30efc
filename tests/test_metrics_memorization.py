"""The memorization check: nearest training images, the copy rate, and the real images' own rate."""

import pytest
import torch

from genlab.data import load_dataset
from genlab.metrics.memorization import beside_nearest, memorization, nearest_training


@pytest.fixture(scope="module")
def faces():
    x = load_dataset("faces").x
    return x[:80], x[80:]  # 80 to train on, 20 never seen


def test_slightly_perturbed_training_faces_are_copies_and_new_faces_are_not(faces):
    train, held_out = faces
    copies = train[:20] + 0.03 * torch.randn(20, 1, 25, 25, generator=torch.Generator().manual_seed(0))
    found = memorization(copies, train, held_out)
    assert found.copy_rate == 1.0 and found.real_copy_rate == 0.0 and found.copying
    assert memorization(held_out, train, held_out).copy_rate == 0.0


def test_a_blend_of_two_faces_copies_neither(faces):
    train, held_out = faces
    blends = 0.5 * train[:20] + 0.5 * train[20:40]
    found = memorization(blends, train, held_out)
    assert found.copy_rate == 0.0 and not found.copying
    assert found.distance_to_train < found.real_distance_to_train  # near the data, yet no copy


def test_a_few_copies_among_many_new_faces_are_counted_as_a_rate(faces):
    train, held_out = faces
    samples = torch.cat([train[:5], held_out])  # 5 exact copies, 20 new
    assert memorization(samples, train, held_out).copy_rate == pytest.approx(5 / 25)


def test_without_held_out_images_each_training_image_is_judged_against_the_others(faces):
    train, _ = faces
    found = memorization(train[:10], train)  # exact copies
    assert found.copy_rate == 1.0 and found.real_copy_rate == 0.0 and "training images against the others" in found.real
    same = memorization(train[:10], train, held_out=train)  # a "held-out" set that is the training set is not one
    assert same.real == found.real


def test_nearest_neighbours_are_found_and_pictured_beside_their_samples(faces):
    train, _ = faces
    order = torch.tensor([7, 3, 42])
    found = nearest_training(train[order] + 0.01, train)
    assert torch.equal(found.index, order) and (found.first < found.second).all()
    pairs = beside_nearest(train[order] + 0.01, train)
    assert pairs.shape == (6, 1, 25, 25) and torch.equal(pairs[1::2], train[order])


def test_leave_one_out_skips_each_image_itself():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    found = nearest_training(points, points, leave_one_out=True)
    assert found.index.tolist() == [1, 0, 1, 2] and found.first.tolist() == [1.0, 1.0, 2.0, 4.0]


def test_mismatched_or_too_small_inputs_are_refused():
    with pytest.raises(ValueError, match="samples have 4 features but the training data 9"):
        nearest_training(torch.zeros(2, 4), torch.zeros(5, 9))
    with pytest.raises(ValueError, match="at least 2 training images"):
        nearest_training(torch.zeros(2, 4), torch.zeros(1, 4))


# --- while training: the GAN's diagnostics warn about copying, with fixes the run does not use yet ----------


def copying_gan(**settings):
    from genlab.models.gan import GAN, GANConfig

    faces = load_dataset("faces", image_size=32)
    model = GAN(GANConfig(data_shape=faces.shape, conv_channels=(8, 16), **settings))
    # G replaced by one that hands back training faces: what a memorizing G draws
    model.sample = lambda n, generator=None: faces.x[torch.arange(n) % 100] + 0.01
    return model, faces


def test_a_gan_that_draws_its_training_faces_is_warned_with_augmentation_as_the_fix():
    from genlab.models.gan import collapse_evidence

    model, faces = copying_gan()
    record = {"step": 100, "d_real": 0.0, "d_fake": 0.0}
    warnings = [check for check in collapse_evidence(model, faces, record) if check is not None]
    assert record["copy_rate"] == 1.0
    (copying,) = [w for w in warnings if w.kind == "memorization"]
    assert copying.message == ("memorization: 100.0% of samples copy a training image (real images not trained on: "
                               "0.0%)")
    assert copying.fix == "try --set augment=diffaugment, --set augment=ada or an earlier checkpoint (stop sooner)"
    model, faces = copying_gan(augment="ada")
    checks = collapse_evidence(model, faces, dict(record))
    (copying,) = [w for w in checks if w is not None and w.kind == "memorization"]
    assert copying.fix == "try an earlier checkpoint (stop sooner)"  # ADA is on already


def test_a_gan_drawing_new_images_is_not_warned_about_copying():
    from genlab.models.gan import GAN, GANConfig, collapse_evidence

    faces = load_dataset("faces", image_size=32)
    model = GAN(GANConfig(data_shape=faces.shape, conv_channels=(8, 16)))  # untrained: noise, not faces
    record = {"step": 100, "d_real": 0.0, "d_fake": 0.0}
    assert not [w for w in collapse_evidence(model, faces, record) if w is not None and w.kind == "memorization"]
    assert record["copy_rate"] == 0.0
