"""GAN: each loss against a hand computation, the WGAN-GP interpolates (one eps per sample), the gradient
penalty and R1 on functions whose gradient norm is known, spectral norm's singular values, packing,
minibatch stddev, the EMA generator, DCGAN shapes, settings, and a short 1-D training run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.data import toys
from genlab.models.gan import GAN, GANConfig, MinibatchStddev
from genlab.models.gan import configure_optimizers as gan_optimizers


def small(**settings) -> GANConfig:
    """A tiny config; settings override."""
    return GANConfig(**{"data_shape": (2,), "latent_dim": 3, "hidden_dims": (8,), "conv_channels": (4, 8),
                        **settings})


def sigmoid(a: float) -> float:
    return 1 / (1 + math.exp(-a))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# --- the losses on a hand-computed case --------------------------------------------------------------------
# D is replaced by D(x) = 2 x (1-D data), so the raw outputs are known: r = 2 * REAL, f = 2 * FAKE.

REAL = [0.5, -1.0, 2.0]
FAKE = [1.5, 0.3, -0.7]
R = [2 * v for v in REAL]
F = [2 * v for v in FAKE]

HAND = {  # loss -> (D loss, G loss), from the papers' formulas in plain floats
    "minimax": (mean(-math.log(sigmoid(r)) for r in R) + mean(-math.log(1 - sigmoid(f)) for f in F),
                mean(math.log(1 - sigmoid(f)) for f in F)),
    "non-saturating": (mean(-math.log(sigmoid(r)) for r in R) + mean(-math.log(1 - sigmoid(f)) for f in F),
                       mean(-math.log(sigmoid(f)) for f in F)),
    "least-squares": (mean(0.5 * (r - 1) ** 2 for r in R) + mean(0.5 * f**2 for f in F),
                      mean(0.5 * (f - 1) ** 2 for f in F)),
    "hinge": (mean(max(0.0, 1 - r) for r in R) + mean(max(0.0, 1 + f) for f in F), -mean(F)),
    "wgan": (mean(F) - mean(R), -mean(F)),
    # |dD/dx| = 2 everywhere, so the penalty is gp_weight * (2 - 1)^2 = 10
    "wgan-gp": (mean(F) - mean(R) + 10.0, -mean(F)),
}


def doubling_gan(**settings) -> GAN:
    model = GAN(small(data_shape=(1,), **settings)).double()
    model.discriminate = lambda x, groups=1: 2 * x.flatten(1).sum(1)
    return model


@pytest.mark.parametrize("loss", list(HAND))
def test_each_loss_matches_hand_computation(loss):
    model = doubling_gan(loss=loss)
    real = torch.tensor(REAL, dtype=torch.float64)[:, None]
    fake = torch.tensor(FAKE, dtype=torch.float64)[:, None]
    d_terms = model.discriminator_loss(real, fake)
    want_d, want_g = HAND[loss]
    assert d_terms["loss"].item() == pytest.approx(want_d, abs=1e-12)
    assert d_terms["d_real"].item() == pytest.approx(mean(R), abs=1e-12)
    assert d_terms["d_fake"].item() == pytest.approx(mean(F), abs=1e-12)
    assert ("gp" in d_terms) == (loss == "wgan-gp")
    assert model.generator_loss(fake)["loss"].item() == pytest.approx(want_g, abs=1e-12)


def test_r1_is_added_to_the_discriminator_loss():
    # D(x) = 2x has |grad| = 2: R1 = r1_weight / 2 * 4 = 6 for r1_weight = 3
    model = doubling_gan(loss="hinge", r1_weight=3.0)
    real = torch.tensor(REAL, dtype=torch.float64)[:, None]
    fake = torch.tensor(FAKE, dtype=torch.float64)[:, None]
    terms = model.discriminator_loss(real, fake)
    assert terms["r1"].item() == pytest.approx(6.0, abs=1e-12)
    assert terms["loss"].item() == pytest.approx(HAND["hinge"][0] + 6.0, abs=1e-12)


def test_minimax_generator_saturates_where_non_saturating_does_not():
    """Against a confident D (logit -8 on fakes), minimax's gradient is sigmoid(-8) ~ 3e-4; the
    non-saturating loss's is 1 - sigmoid(-8) ~ 1 (Goodfellow et al., sec. 3)."""
    grads = {}
    for loss in ("minimax", "non-saturating"):
        model = GAN(small(data_shape=(1,), loss=loss))
        model.discriminate = lambda x, groups=1: x.flatten(1).sum(1)
        fake = torch.full((4, 1), -8.0, requires_grad=True)
        model.generator_loss(fake)["loss"].backward()
        grads[loss] = fake.grad.abs().sum().item()  # mean over 4: the sum is the per-logit gradient
    assert grads["minimax"] == pytest.approx(sigmoid(-8), rel=1e-4)
    assert grads["non-saturating"] == pytest.approx(1 - sigmoid(-8), rel=1e-4)


# --- WGAN-GP and R1 ----------------------------------------------------------------------------------------


def one_coefficient_per_sample(x_hat: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
    """The eps with x_hat = eps * real + (1 - eps) * fake, (B,), if every pixel of a sample shares it; else None."""
    coefficient = ((x_hat - fake) / (real - fake)).flatten(1)  # (B, pixels)
    spread = coefficient.max(1).values - coefficient.min(1).values
    if (spread > 1e-4).any():
        return None
    return coefficient[:, 0]


def test_wgan_gp_draws_one_eps_per_sample():
    torch.manual_seed(0)
    model = GAN(small(data_shape=(2, 4, 4), architecture="mlp", loss="wgan-gp"))
    seen = []
    discriminate = model.discriminate
    model.discriminate = lambda x, groups=1: seen.append(x.detach().clone()) or discriminate(x, groups)
    real, fake = torch.rand(6, 2, 4, 4), torch.rand(6, 2, 4, 4)
    model.gradient_penalty(real, fake)
    (x_hat,) = seen
    eps = one_coefficient_per_sample(x_hat, real, fake)
    assert eps is not None
    assert ((eps >= 0) & (eps <= 1)).all()
    assert eps.max() - eps.min() > 0.1  # a different eps for each sample, not one for the batch

    # The counter-case: an eps per pixel, the bug seen elsewhere, fails the same check.
    eps_per_pixel = torch.rand(6, 2, 4, 4)
    assert one_coefficient_per_sample(eps_per_pixel * real + (1 - eps_per_pixel) * fake, real, fake) is None


def linear_discriminator(data_dim: int, weight: list[float], **settings) -> GAN:
    """A GAN whose D is the single linear layer x -> w.x + b (hidden_dims = ()), so |grad D| = |w|."""
    model = GAN(small(data_shape=(data_dim,), hidden_dims=(), loss="wgan-gp", **settings)).double()
    (layer,) = [m for m in model.discriminator.modules() if isinstance(m, nn.Linear)]
    assert layer.in_features == len(weight)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.fill_(0.7)
    return model


def test_gradient_penalty_of_a_linear_function_is_lambda_times_norm_minus_one_squared():
    model = linear_discriminator(3, [1.0, 2.0, 2.0])  # |w| = 3
    real, fake = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    assert model.gradient_penalty(real, fake).item() == pytest.approx(10 * (3 - 1) ** 2, abs=1e-10)
    terms = model.discriminator_loss(real, fake)
    assert terms["gp"].item() == pytest.approx(40.0, abs=1e-10)
    assert terms["loss"].item() == pytest.approx(40.0 + terms["d_fake"].item() - terms["d_real"].item(), abs=1e-10)


def test_gradient_penalty_with_packing_takes_the_norm_over_the_group():
    # pack=2 on 2-D points: D sees 4 numbers, w = (1, 2, 2, 4), |w| = 5. Per sample the norms would be
    # |(1, 2)| and |(2, 4)|, whose penalty is another number.
    model = linear_discriminator(2, [1.0, 2.0, 2.0, 4.0], pack=2)
    real, fake = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    assert model.gradient_penalty(real, fake).item() == pytest.approx(10 * (5 - 1) ** 2, abs=1e-9)
    per_sample = 10 * mean([(math.sqrt(5) - 1) ** 2, (math.sqrt(20) - 1) ** 2])
    assert abs(160 - per_sample) > 1


def test_gradient_penalty_and_r1_of_a_quadratic_match_its_known_gradient():
    """D(x) = c |x|^2 has grad 2 c x, so |grad| = 2 c |x| at each point. With real = fake, x_hat = x."""
    c = 0.3
    model = GAN(small(data_shape=(3,), loss="wgan-gp", gp_weight=7.0, r1_weight=5.0)).double()
    model.discriminate = lambda x: c * x.pow(2).sum(1)
    points = [[1.0, 2.0, 2.0], [0.0, 3.0, 4.0], [-1.0, 0.5, 0.0]]
    x = torch.tensor(points, dtype=torch.float64)
    norms = [2 * c * math.sqrt(sum(v * v for v in p)) for p in points]
    assert model.gradient_penalty(x, x.clone()).item() == pytest.approx(7 * mean((n - 1) ** 2 for n in norms),
                                                                        abs=1e-10)
    assert model.r1_penalty(x).item() == pytest.approx(5 / 2 * mean(n**2 for n in norms), abs=1e-10)


def test_penalties_train_the_discriminator():
    """The penalties stay in the graph (create_graph): their backward reaches D's weights."""
    torch.manual_seed(0)
    model = GAN(small(loss="wgan-gp", r1_weight=1.0))
    x = torch.randn(4, 2)
    for penalty in (model.gradient_penalty(x, torch.randn(4, 2)), model.r1_penalty(x)):
        model.zero_grad()
        penalty.backward()
        first = next(m for m in model.discriminator.modules() if isinstance(m, nn.Linear))
        assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


# --- stabilisers -------------------------------------------------------------------------------------------


def weight_matrices(net: nn.Module) -> list[torch.Tensor]:
    """Each linear/conv weight as (out, -1); a transposed conv's output channels are its dim 1."""
    matrices = []
    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d):
            matrices.append(m.weight.transpose(0, 1).reshape(m.weight.shape[1], -1))
        elif isinstance(m, (nn.Linear, nn.Conv2d)):
            matrices.append(m.weight.reshape(len(m.weight), -1))
    return matrices


@pytest.mark.parametrize("data_shape", [(2,), (1, 8, 8)])
def test_spectral_norm_makes_largest_singular_value_one(data_shape):
    torch.manual_seed(0)
    model = GAN(small(data_shape=data_shape, spectral_norm="both"))
    plain = GAN(small(data_shape=data_shape))
    model.train()
    for _ in range(3):  # each training forward runs one power iteration
        model.discriminate(torch.rand(4, *data_shape))
        model.generate(model.latents(4))
    for net in (model.discriminator, model.generator):
        sigmas = [torch.linalg.matrix_norm(w.detach(), 2).item() for w in weight_matrices(net)]
        assert len(sigmas) >= 2
        assert sigmas == pytest.approx([1.0] * len(sigmas), rel=0.05)
    # without it they are not: the check above can fail
    sigmas = [torch.linalg.matrix_norm(w.detach(), 2).item() for w in weight_matrices(plain.discriminator)]
    assert any(abs(s - 1) > 0.2 for s in sigmas)


def test_spectral_norm_only_where_asked():
    def normalised(net):
        return any(hasattr(m, "parametrizations") for m in net.modules())

    for setting, d, g in [("none", False, False), ("d", True, False), ("g", False, True), ("both", True, True)]:
        model = GAN(small(spectral_norm=setting))
        assert (normalised(model.discriminator), normalised(model.generator)) == (d, g), setting


@pytest.mark.parametrize("data_shape", [(2,), (3, 8, 8)])
def test_packing_widens_the_discriminator_and_groups_consecutive_samples(data_shape):
    torch.manual_seed(0)
    model = GAN(small(data_shape=data_shape, pack=2))
    first = next(m for m in model.discriminator.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    assert (first.in_features if isinstance(first, nn.Linear) else first.in_channels) == 2 * data_shape[0]
    model.eval()  # BatchNorm off: a group's score depends on its own samples only
    x = torch.rand(6, *data_shape)
    out = model.discriminate(x)
    assert out.shape == (3,)
    y = x.clone()
    y[3] += 1  # a member of the second group
    changed = model.discriminate(y) != out
    assert changed.tolist() == [False, True, False]


def test_batch_not_divisible_by_pack_is_a_one_line_error():
    model = GAN(small(pack=2))
    with pytest.raises(ValueError, match=r"batch of 5 is not divisible by pack=2") as error:
        model.discriminate(torch.rand(5, 2))
    assert "\n" not in str(error.value)


def test_minibatch_stddev_feature_by_hand_and_in_the_discriminator():
    x = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]], dtype=torch.float64)
    std_0 = math.sqrt(mean([4.0, 0.0, 4.0]) + 1e-8)  # feature 0: mean 2, population variance 8/3
    std_1 = math.sqrt(mean([1.0, 1.0, 4.0]) + 1e-8)  # feature 1: mean 2, population variance 2
    stddev = MinibatchStddev().double()
    with torch.no_grad():
        stddev.weight.fill_(2.0)  # D's last layer weighs the number
    out = stddev(x)
    assert torch.allclose(out, torch.full((3,), 2.0 * (std_0 + std_1) / 2, dtype=torch.float64))
    # two groups (real, then fake) each get their own spread: here a varied one and a collapsed one
    grouped = stddev(torch.cat([x, x[:1].expand(3, 2)]), groups=2)
    assert torch.allclose(grouped, torch.tensor([out[0].item()] * 3 + [2.0 * 1e-4] * 3, dtype=torch.float64))
    assert stddev(torch.rand(4, 3, 5, 5, dtype=torch.float64)).shape == (4,)

    torch.manual_seed(0)
    x = torch.randn(4, 2)
    y = x.clone()
    y[3] = torch.tensor([5.0, -5.0])
    for on in (True, False):
        model = GAN(small(minibatch_stddev=on))
        if on:
            nn.init.ones_(model.discriminator.stddev.weight)  # zero at first: D starts as a plain D
        changed = (model.discriminate(x)[0] - model.discriminate(y)[0]).abs().item() > 1e-6
        assert changed == on  # example 0's score depends on example 3 only through the batch statistic


@pytest.mark.parametrize("settings", [{"minibatch_stddev": True, "pack": 2}, {"architecture": "conv",
                                      "data_shape": (1, 8, 8), "minibatch_stddev": True, "conv_channels": (4, 8)}])
def test_discriminator_loss_scores_real_and_fake_as_two_separate_batches(settings):
    """Without BatchNorm D scores real and fake in one pass of two groups; with it, in two passes. Either
    way each score equals D on its own batch alone, minibatch statistics included."""
    torch.manual_seed(0)
    model = GAN(small(**settings)).double()
    nn.init.ones_(model.discriminator.stddev.weight)
    real = torch.rand(8, *model.config.data_shape, dtype=torch.float64)
    fake = torch.rand(8, *model.config.data_shape, dtype=torch.float64)
    terms = model.discriminator_loss(real, fake)
    assert model.discriminator.batch_norm == (model.config.architecture == "conv")
    assert terms["d_real"].item() == pytest.approx(model.discriminate(real).mean().item(), abs=1e-12)
    assert terms["d_fake"].item() == pytest.approx(model.discriminate(fake).mean().item(), abs=1e-12)
    with pytest.raises(ValueError, match="D compares equal batches: got 8 real and 6 fake"):
        model.discriminator_loss(real, fake[:6])


def test_ema_update_and_sampling_from_the_ema_generator():
    torch.manual_seed(0)
    decay = 0.9
    model = GAN(small(data_shape=(1, 8, 8), ema_decay=decay))
    assert GAN(small()).ema is None
    assert not any(p.requires_grad for p in model.ema.parameters())
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p))
    model.generate(model.latents(4))  # train mode: BatchNorm's running statistics move
    old = [p.clone() for p in model.ema.parameters()]
    model.update_ema()  # warm-up: decay = min(0.9, 1/10), the first update takes 90% of the new weights
    for ema_p, before, p in zip(model.ema.parameters(), old, model.generator.parameters(), strict=True):
        assert torch.allclose(ema_p, 0.1 * before + 0.9 * p, atol=1e-6)
    assert model.ema_updates.item() == 1
    model.ema_updates.fill_(1000)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p))
    old = [p.clone() for p in model.ema.parameters()]
    model.update_ema()  # warmed up: decay = ema_decay
    for ema_p, before, p in zip(model.ema.parameters(), old, model.generator.parameters(), strict=True):
        assert torch.allclose(ema_p, decay * before + (1 - decay) * p, atol=1e-6)
        assert not torch.allclose(ema_p, p)
    for ema_b, b in zip(model.ema.buffers(), model.generator.buffers(), strict=True):
        assert torch.equal(ema_b, b)

    model.eval()
    z = model.latents(3, torch.Generator().manual_seed(5))
    samples = model.sample(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(samples, model.ema(z))
    assert not torch.allclose(samples, model.generate(z))
    optimised = {id(p) for opt in gan_optimizers(model, 1e-3).values() for group in opt.param_groups
                 for p in group["params"]}
    assert not optimised & {id(p) for p in model.ema.parameters()}


def test_update_ema_without_ema_says_how_to_turn_it_on():
    with pytest.raises(ValueError, match="ema_decay > 0"):
        GAN(small()).update_ema()


def test_clip_weights_clamps_every_discriminator_parameter():
    torch.manual_seed(0)
    model = GAN(small(data_shape=(1, 8, 8), loss="wgan", clip_value=0.05))
    generator_before = [p.clone() for p in model.generator.parameters()]
    with torch.no_grad():
        for p in model.discriminator.parameters():
            p.normal_(0, 1)
    model.clip_weights()
    values = torch.cat([p.flatten() for p in model.discriminator.parameters()])
    assert values.abs().max() <= 0.05
    assert (values.abs() == 0.05).float().mean() > 0.5  # most were outside and now sit on the bound
    assert all(torch.equal(a, b) for a, b in zip(generator_before, model.generator.parameters(), strict=True))


def test_optimizers_use_separate_learning_rates_and_betas():
    model = GAN(small(lr_d=4e-4, betas=(0.0, 0.9)))
    optimizers = gan_optimizers(model, 1e-4)
    g, d = optimizers["generator"].param_groups[0], optimizers["discriminator"].param_groups[0]
    assert (g["lr"], d["lr"], g["betas"], d["betas"]) == (1e-4, 4e-4, (0.0, 0.9), (0.0, 0.9))
    assert {id(p) for p in g["params"]} == {id(p) for p in model.generator.parameters()}
    assert {id(p) for p in d["params"]} == {id(p) for p in model.discriminator.parameters()}
    assert gan_optimizers(GAN(small()), 1e-4)["discriminator"].param_groups[0]["lr"] == 1e-4  # None: the lr


def test_state_dict_round_trip_with_spectral_norm_and_ema():
    torch.manual_seed(0)
    config = small(data_shape=(1, 8, 8), spectral_norm="both", ema_decay=0.5)
    model = GAN(config)
    model.generate(model.latents(4))
    model.update_ema()
    restored = GAN(config)
    restored.load_state_dict(model.state_dict())
    model.eval()
    restored.eval()
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model.discriminate(x), restored.discriminate(x))
    seed = torch.Generator().manual_seed
    assert torch.equal(model.sample(3, seed(1)), restored.sample(3, seed(1)))


# --- architectures and settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("data_shape,conv_channels", [((1, 28, 28), (64, 128)), ((1, 8, 8), (4, 8)),
                                                      ((3, 32, 32), (4, 8, 16))])
def test_dcgan_shapes_and_sample_range(data_shape, conv_channels):
    torch.manual_seed(0)
    model = GAN(small(data_shape=data_shape, conv_channels=conv_channels))
    assert model.config.architecture == "conv"
    assert model.config.output == "sigmoid"
    z = model.latents(2)
    assert model.generate(z).shape == (2, *data_shape)
    assert model.discriminate(torch.rand(2, *data_shape)).shape == (2,)
    samples = model.sample(16)
    assert samples.shape == (16, *data_shape)
    assert ((samples >= 0) & (samples <= 1)).all()
    convs = [m for m in model.discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == list(conv_channels)


def test_batch_norm_leaves_the_discriminator_where_it_breaks_per_sample_gradients():
    def has_batch_norm(**settings):
        model = GAN(small(data_shape=(1, 8, 8), **settings))
        return any(isinstance(m, nn.BatchNorm2d) for m in model.discriminator.modules())

    assert has_batch_norm()
    assert not has_batch_norm(loss="wgan-gp")
    assert not has_batch_norm(r1_weight=1.0)
    assert not has_batch_norm(spectral_norm="d")


def test_auto_choices():
    assert GANConfig(data_shape=(2,)).architecture == "mlp"
    assert GANConfig(data_shape=(1,)).architecture == "mlp"
    assert GANConfig(data_shape=(1, 28, 28)).architecture == "conv"
    assert GANConfig(data_shape=(1, 3, 3)).architecture == "mlp"
    assert GANConfig(data_shape=(2,)).output == "linear"
    assert GANConfig(data_shape=(1, 28, 28)).output == "sigmoid"


@pytest.mark.parametrize("settings,match", [
    ({"loss": "wasserstein"}, "loss='wasserstein' is not one of minimax, non-saturating, least-squares, "
                              "hinge, wgan, wgan-gp"),
    ({"n_critic": 0}, "n_critic=0 is out of range: use 1..100"),
    ({"pack": 0}, "pack=0 is out of range: use 1..64"),
    ({"latent_dim": 0}, "latent_dim=0 is out of range"),
    ({"spectral_norm": "x"}, "spectral_norm='x' is not one of none, d, g, both"),
    ({"output": "relu"}, "output='relu' is not one of auto, sigmoid, tanh, linear"),
    ({"gp_weight": -1.0}, "gp_weight=-1.0 is out of range"),
    ({"r1_weight": -0.5}, "r1_weight=-0.5 is out of range"),
    ({"clip_value": 0.0}, "clip_value must be positive"),
    ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\)"),
    ({"lr_d": 0.0}, "lr_d must be positive"),
    ({"betas": (0.5, 1.0)}, "betas must be two numbers"),
    ({"architecture": "conv", "data_shape": (1, 30, 30)}, "30x30"),
    ({"architecture": "transformer"}, "architecture=.transformer. is not one of"),
])
def test_bad_settings_are_one_line_errors(settings, match):
    with pytest.raises(ValueError, match=match) as error:
        small(**settings)
    assert "\n" not in str(error.value)


# --- a short duel on the lesson's 1-D Gaussian -------------------------------------------------------------


def test_training_moves_the_generated_mean_toward_the_data():
    """The two-phase update written out: (1) D on real vs detached fakes, (2) G through D."""
    torch.manual_seed(0)
    data, _ = toys.gaussian1d(seed=0, n=4096)  # N(4, 1.25^2)
    model = GAN(GANConfig(data_shape=(1,), latent_dim=2, hidden_dims=(32, 32)))
    optimizers = gan_optimizers(model, 2e-3)
    start = abs(model.sample(2000, torch.Generator().manual_seed(1)).mean().item() - 4)
    for _ in range(300):
        x = data[torch.randint(len(data), (64,))]
        d_terms = model.discriminator_loss(x, model.generate(model.latents(64)).detach())
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_terms["loss"].backward()
        optimizers["discriminator"].step()
        g_terms = model.generator_loss(model.generate(model.latents(64)))
        optimizers["generator"].zero_grad(set_to_none=True)
        g_terms["loss"].backward()
        optimizers["generator"].step()
    end = abs(model.sample(2000, torch.Generator().manual_seed(1)).mean().item() - 4)
    assert start > 3
    assert end < start / 4, (start, end)


@pytest.mark.parametrize("settings, collapse_fix, won_fix", [
    ({}, "try --set minibatch_stddev=true, --set pack=2, --set spectral_norm=d or --set loss=wgan-gp",
     "try --set spectral_norm=d or a lower --set lr_d=..."),
    ({"loss": "wgan-gp", "n_critic": 5}, "try --set minibatch_stddev=true, --set pack=2 or --set spectral_norm=d",
     "try --set spectral_norm=d or a lower --set lr_d=..."),
    ({"loss": "minimax", "minibatch_stddev": True, "pack": 2, "spectral_norm": "both"}, "try --set loss=wgan-gp",
     "try a lower --set lr_d=... or --set loss=non-saturating"),
    ({"loss": "wgan-gp", "minibatch_stddev": True, "pack": 2, "spectral_norm": "d"},
     "every usual fix is on already", "try a lower --set lr_d=..."),
])
def test_collapse_advice_never_names_a_fix_the_run_already_uses(settings, collapse_fix, won_fix):
    from genlab.models.gan import collapse_fixes

    collapse, won, _ = collapse_fixes(GANConfig(**settings))
    assert collapse.startswith(collapse_fix) and won == won_fix


def one_point_generator(config: GANConfig, point: torch.Tensor) -> GAN:
    """A GAN whose G maps every z to `point`: its output layer's weights are zero and its bias is the point."""
    model = GAN(config)
    output_layer = [module for module in model.generator.modules() if isinstance(module, nn.Linear)][-1]
    with torch.no_grad():
        output_layer.weight.zero_()
        output_layer.bias.copy_(point)
    return model


def test_a_wgan_gp_run_that_collapses_is_not_told_to_try_wgan_gp():
    from genlab.data import load_dataset
    from genlab.models.gan import collapse_evidence

    torch.manual_seed(0)
    collapsed = one_point_generator(GANConfig(data_shape=(2,), latent_dim=2, hidden_dims=(8,), loss="wgan-gp"),
                                    toys.ring_centres()[0])
    record = {"step": 100}
    checks = collapse_evidence(collapsed, load_dataset("ring", "train"), record)
    warnings = [check for check in checks if check is not None]
    assert warnings and warnings[0].kind == "modes" and record["modes_covered"] == 1
    assert "wgan-gp" not in warnings[0].fix and "--set minibatch_stddev=true" in warnings[0].fix


def test_an_untrained_generator_is_told_it_is_still_learning_in_cli_flags():
    from genlab.data import load_dataset
    from genlab.models.gan import collapse_evidence

    torch.manual_seed(0)
    record = {"step": 60, "d_real": 0.5, "d_fake": -0.3}
    checks = collapse_evidence(GAN(GANConfig(data_shape=(2,))), load_dataset("ring", "train"), record)
    warnings = [check for check in checks if check is not None]
    assert [w.kind for w in warnings] == ["learning"] and record["high_quality"] < 0.5
    assert "--set steps=" in warnings[0].fix and "mode collapse" not in str(warnings[0])


def test_the_conv_depth_follows_the_image_size_down_to_a_4x4_map():
    config = GANConfig(data_shape=(3, 64, 64))  # an RGB folder at image_size 64
    assert config.architecture == "conv" and config.conv_channels == (16, 32, 64, 128)  # 64 -> 32 -> 16 -> 8 -> 4
    model = GAN(config)
    assert model.discriminator.head[1].in_features == 128 * 4 * 4  # was 128 * 16 * 16 = 32,768 with (64, 128)
    assert model.generator.net[0].out_features == 128 * 4 * 4
    z = model.latents(4)
    assert model.generate(z).shape == (4, 3, 64, 64) and model.discriminate(model.generate(z)).shape == (4,)
    assert GANConfig(data_shape=(3, 32, 32)).conv_channels == (32, 64, 128)
    assert GANConfig(data_shape=(3, 64, 64), conv_channels=(64, 128)).conv_channels == (64, 128)  # given: kept


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (2,)])
def test_existing_shapes_keep_the_nets_their_checkpoints_were_saved_from(shape):
    """MNIST (28x28 -> 7x7), digits (8x8 -> 2x2) and the toys get what the old default (64, 128) built, so the
    checkpoints saved before the depth followed the size load into the same state dict."""
    derived, before = GAN(GANConfig(data_shape=shape)), GAN(GANConfig(data_shape=shape, conv_channels=(64, 128)))
    assert derived.config.conv_channels == (64, 128)
    assert {k: v.shape for k, v in derived.state_dict().items()} == {k: v.shape for k, v in before.state_dict().items()}
