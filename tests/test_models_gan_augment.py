"""DiffAugment and ADA inside the GAN recipe: what D sees, how ADA's p moves, what is refused."""

import pytest
import torch

from genlab.models.augment import augment
from genlab.models.gan import ADA_INTERVAL, GAN, GANConfig, configure_optimizers, training_step

IMAGES = (1, 16, 16)


def gan(**settings) -> GAN:
    torch.manual_seed(0)
    return GAN(GANConfig(data_shape=IMAGES, conv_channels=(8, 16), **settings))


def batch(n=16):
    return torch.rand(n, *IMAGES, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("policy", ["color,translation,cutout", "translation"])
def test_d_judges_the_augmented_images_real_and_fake_alike(policy):
    # no BatchNorm (one pass); eval(): spectral norm's power iteration would move between the two computations
    model = gan(augment="diffaugment", augment_policy=policy, spectral_norm="d").eval()
    real, fake = batch(), batch().flip(-1)
    torch.manual_seed(5)
    terms = model.discriminator_loss(real, fake)
    torch.manual_seed(5)
    transforms = tuple(policy.split(","))
    seen_real, seen_fake = augment(real, transforms), augment(fake, transforms)
    r, f = model.discriminate(torch.cat([seen_real, seen_fake]), groups=2).chunk(2)
    assert terms["d_real"] == pytest.approx(r.mean().item()) and terms["d_fake"] == pytest.approx(f.mean().item())
    torch.manual_seed(5)
    plain = gan(spectral_norm="d").eval().discriminator_loss(real, fake)
    assert plain["d_real"] != pytest.approx(terms["d_real"])  # without augment D sees the images themselves


def test_g_learns_through_the_augmentation():
    model = gan(augment="diffaugment")
    fake = model.generate(model.latents(8))
    model.generator_loss(fake)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())


def test_ada_raises_p_while_d_is_sure_of_the_reals_and_lowers_it_when_not():
    model = gan(augment="ada", ada_images=640)
    assert float(model.augment_p) == 0.0
    for _ in range(ADA_INTERVAL):
        model.adapt_augmentation(torch.tensor(1.0), batch_size=16)
    assert float(model.augment_p) == pytest.approx(ADA_INTERVAL * 16 / 640)
    for _ in range(ADA_INTERVAL - 1):  # p moves only once an interval is complete
        model.adapt_augmentation(torch.tensor(-1.0), batch_size=16)
    assert float(model.augment_p) == pytest.approx(0.1)
    model.adapt_augmentation(torch.tensor(-1.0), batch_size=16)
    assert float(model.augment_p) == 0.0


def test_ada_raises_p_in_training_when_d_masters_the_reals_and_logs_p_and_rt():
    model = gan(augment="ada", ada_images=640)
    optimizers = configure_optimizers(model, 2e-3)
    square = torch.zeros(16, *IMAGES)
    square[:, :, 4:12, 4:12] = 1  # one real image, over and over: D is soon sure of it
    logged = [training_step(model, optimizers, square) for _ in range(16)]
    assert {"augment_p", "real_sign"} <= set(logged[-1])
    assert all(-1 <= float(t["real_sign"]) <= 1 for t in logged)
    assert float(model.augment_p) >= 0.2  # p rose by 4 x 16 / 640 = 0.1 per interval where r_t > 0.6
    assert {"augment_p", "ada_real_signs", "ada_batches"} <= set(model.state_dict())
    assert "augment_p" not in gan().state_dict()  # runs without ADA keep their checkpoints' layout


@pytest.mark.parametrize(("settings", "message"), [
    ({"augment": "diffaugment", "data_shape": (2,)}, "augment=diffaugment transforms images; this data is points"),
    ({"augment": "ada", "loss": "wgan-gp"}, "augment=ada reads the sign of D's verdict on real data"),
    ({"augment": "sometimes"}, "augment"),
    ({"augment": "ada", "ada_target": 1.5}, "ada_target"),
    ({"augment": "ada", "ada_images": 0}, "ada_images"),
    ({"augment_policy": "rotate"}, "augment_policy"),
])
def test_augmentation_settings_that_cannot_work_are_refused(settings, message):
    settings = {"data_shape": IMAGES, "conv_channels": (8, 16), **settings}
    with pytest.raises(ValueError, match=message):
        GANConfig(**settings)
