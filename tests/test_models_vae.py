"""VAE: the ELBO against a forward pass computed by hand, the closed-form KL against Monte Carlo and
torch.distributions, the importance-weighted bound against the exact log p(x) of a linear-Gaussian
model, plus sampling, interpolation, architectures and settings."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from genlab.models.layers import interpolate_latents
from genlab.models.vae import VAE, VAEConfig, gaussian_kl

LOG_2PI = math.log(2 * math.pi)


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def tiny_vae(likelihood: str, *, beta: float = 1.0, seed: int = 0) -> VAE:
    """data (3,), latent 2, one hidden layer of 4, in float64, with seeded random weights of size ~1."""
    torch.manual_seed(seed)
    config = VAEConfig(data_shape=(3,), architecture="mlp", latent_dim=2, hidden_dims=(4,),
                       likelihood=likelihood, beta=beta)
    model = VAE(config).double()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.8 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model


# --- a plain-Python forward pass: lists of floats and the math module, nothing from the model's code ---


def py_linear(layer: nn.Linear, v: list[float]) -> list[float]:
    w, b = layer.weight.tolist(), layer.bias.tolist()
    return [sum(w_ij * v_j for w_ij, v_j in zip(row, v, strict=True)) + b_i for row, b_i in zip(w, b, strict=True)]


def py_mlp(layers: list[nn.Linear], v: list[float]) -> list[float]:
    for i, layer in enumerate(layers):
        v = py_linear(layer, v)
        if i < len(layers) - 1:
            v = [max(0.0, a) for a in v]
    return v


def hand_elbo(model: VAE, x: list[float], eps: list[float]) -> tuple[float, float]:
    """(log p(x|z), KL(q||p)) for one example and one noise draw, written out from the formulas."""
    latent = model.config.latent_dim
    code = py_mlp(linears(model.encoder), x)
    mu, logvar = code[:latent], code[latent:]
    z = [m + math.exp(0.5 * lv) * e for m, lv, e in zip(mu, logvar, eps, strict=True)]
    out = py_mlp(linears(model.decoder), z)
    if model.config.likelihood == "bernoulli":
        probs = [1 / (1 + math.exp(-o)) for o in out]
        log_px = sum(xi * math.log(p) + (1 - xi) * math.log(1 - p) for xi, p in zip(x, probs, strict=True))
    else:
        log_px = 0.0
        for xi, mean, log_std in zip(x, out, model.log_std.tolist(), strict=True):
            sigma = math.exp(log_std)
            log_px += -0.5 * ((xi - mean) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)
    kl = 0.5 * sum(m * m + math.exp(lv) - 1 - lv for m, lv in zip(mu, logvar, strict=True))
    return log_px, kl


X_BINARY = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
X_REAL = [[0.3, -1.2, 2.0], [1.5, 0.1, -0.4], [-0.7, 0.9, 0.2]]
EPS = [[0.5, -1.1], [-0.3, 0.8], [1.7, 0.05]]


@pytest.mark.parametrize("likelihood,x_rows", [("bernoulli", X_BINARY), ("gaussian", X_REAL)])
def test_elbo_matches_hand_computation(monkeypatch, likelihood, x_rows):
    model = tiny_vae(likelihood)
    if likelihood == "gaussian":
        with torch.no_grad():
            model.log_std.copy_(torch.tensor([-0.5, 0.0, 0.3]))
    eps = torch.tensor(EPS, dtype=torch.float64)
    monkeypatch.setattr(torch, "randn_like", lambda t: eps.to(t.dtype))

    terms = model.elbo(torch.tensor(x_rows, dtype=torch.float64))

    expected = [hand_elbo(model, x, e) for x, e in zip(x_rows, EPS, strict=True)]
    log_px = torch.tensor([r for r, _ in expected], dtype=torch.float64)
    kl = torch.tensor([k for _, k in expected], dtype=torch.float64)
    assert torch.allclose(terms["reconstruction"], log_px, atol=1e-10)
    assert torch.allclose(terms["kl"], kl, atol=1e-10)
    assert torch.allclose(terms["elbo"], log_px - kl, atol=1e-10)
    assert (kl > 0).all()


@pytest.mark.parametrize("likelihood,x_rows", [("bernoulli", X_BINARY), ("gaussian", X_REAL)])
def test_loss_is_mean_of_minus_reconstruction_plus_beta_kl(monkeypatch, likelihood, x_rows):
    beta = 2.5
    model = tiny_vae(likelihood, beta=beta)
    eps = torch.tensor(EPS, dtype=torch.float64)
    monkeypatch.setattr(torch, "randn_like", lambda t: eps.to(t.dtype))

    loss = model.loss(torch.tensor(x_rows, dtype=torch.float64))

    expected = [hand_elbo(model, x, e) for x, e in zip(x_rows, EPS, strict=True)]
    n = len(expected)
    want_rec = sum(-r for r, _ in expected) / n
    want_kl = sum(k for _, k in expected) / n
    assert loss["reconstruction"].item() == pytest.approx(want_rec, abs=1e-10)
    assert loss["kl"].item() == pytest.approx(want_kl, abs=1e-10)
    assert loss["loss"].item() == pytest.approx(want_rec + beta * want_kl, abs=1e-10)
    # beta = 1 would give a different number: the weight really is applied
    assert loss["loss"].item() != pytest.approx(want_rec + want_kl, abs=1e-3)


# --- closed-form KL ----------------------------------------------------------------------------------------

MU = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.3, 0.5]], dtype=torch.float64)
LOGVAR = torch.tensor([[0.0, 0.0], [-1.0, 0.7], [-3.0, 1.5]], dtype=torch.float64)


def test_gaussian_kl_matches_torch_distributions():
    sigma = torch.exp(0.5 * LOGVAR)
    reference = kl_divergence(Normal(MU, sigma), Normal(torch.zeros_like(MU), torch.ones_like(MU))).sum(1)
    assert torch.allclose(gaussian_kl(MU, LOGVAR), reference, atol=1e-12)
    assert gaussian_kl(MU, LOGVAR)[0].item() == 0.0  # q = p


def test_gaussian_kl_matches_monte_carlo():
    n = 200_000
    generator = torch.Generator().manual_seed(0)
    sigma = torch.exp(0.5 * LOGVAR)
    z = MU + sigma * torch.randn(n, *MU.shape, generator=generator, dtype=torch.float64)  # (n, B, D)
    log_ratio = (Normal(MU, sigma).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1)  # (n, B)
    estimate = log_ratio.mean(0)
    standard_error = log_ratio.std(0) / math.sqrt(n)
    closed = gaussian_kl(MU, LOGVAR)
    assert ((closed - estimate).abs() <= 3 * standard_error + 1e-12).all(), (closed, estimate, standard_error)


# --- importance-weighted log-likelihood ----------------------------------------------------------------


def reference_iw(model: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x) for given noise eps (k, B, D), with torch.distributions."""
    mu, logvar = model.encode(x)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * eps
    log_w = []
    for z_i in z:
        log_px = model.log_px_given_z(x, z_i)
        log_w.append(log_px + Normal(0.0, 1.0).log_prob(z_i).sum(-1) - q.log_prob(z_i).sum(-1))
    return torch.logsumexp(torch.stack(log_w), 0) - math.log(len(eps))


def test_log_likelihood_matches_reference_and_chunking_does_not_change_it(monkeypatch):
    """Feed the same noise stream however it is chunked: every chunk size gives the reference numbers."""
    model = tiny_vae("bernoulli")
    x = torch.tensor(X_BINARY, dtype=torch.float64)
    k = 23
    stream = torch.randn(k, len(x), 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = reference_iw(model, x, stream)

    results = {}
    for chunk in (1, 7, 23, 100):
        position = 0

        def fake_randn(*size, device=None, dtype=None, **_):
            nonlocal position
            n = size[0]
            assert tuple(size[1:]) == (len(x), 2)
            out = stream[position : position + n].to(dtype)
            position += n
            return out

        monkeypatch.setattr(torch, "randn", fake_randn)
        results[chunk] = model.log_likelihood(x, k=k, chunk=chunk)
        assert position == k  # exactly k draws were used
        monkeypatch.undo()
    for chunk, result in results.items():
        assert torch.allclose(result, expected, atol=1e-10), chunk


def broad_q_vae() -> VAE:
    """tiny_vae with q(z|x) wider than the posterior (logvar + 1.5), so importance weights have light tails."""
    model = tiny_vae("bernoulli")
    with torch.no_grad():
        linears(model.encoder)[-1].bias[2:] += 1.5
    return model


def grid_log_px(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log integral p(x|z) p(z) dz on a 401^2 grid over [-8, 8]^2 (latent_dim 2)."""
    g = torch.linspace(-8, 8, 401, dtype=torch.float64)
    z = torch.cartesian_prod(g, g)
    log_cell = 2 * math.log(g[1] - g[0])
    with torch.no_grad():
        return torch.stack([
            torch.logsumexp(model.log_px_given_z(row.expand(len(z), -1), z) + Normal(0.0, 1.0).log_prob(z).sum(1), 0)
            + log_cell for row in x])


def test_log_likelihood_deterministic_given_seed_and_chunks_agree_statistically():
    model = broad_q_vae()
    x = torch.tensor(X_BINARY, dtype=torch.float64)
    torch.manual_seed(5)
    a = model.log_likelihood(x, k=500, chunk=7)
    torch.manual_seed(5)
    b = model.log_likelihood(x, k=500, chunk=7)
    assert torch.equal(a, b)
    # with the real generator, other chunk sizes draw other numbers; the estimates still agree
    # (40 estimates of k=700 each: over seeds 0..5 the means differed by at most 0.045)
    x_rep = x.repeat(40, 1)
    torch.manual_seed(6)
    small_chunks = model.log_likelihood(x_rep, k=700, chunk=7).view(40, 3).mean(0)
    large_chunks = model.log_likelihood(x_rep, k=700, chunk=100).view(40, 3).mean(0)
    assert torch.allclose(small_chunks, large_chunks, atol=0.12)
    with pytest.raises(ValueError, match="k must be at least 1"):
        model.log_likelihood(x, k=0)


def test_log_likelihood_k1_has_the_elbo_expectation():
    model = broad_q_vae()
    x = torch.tensor(X_BINARY, dtype=torch.float64)
    repeats = 20_000
    x_rep = x.repeat(repeats, 1)  # (repeats * 3, 3): every row an independent draw
    torch.manual_seed(0)
    iw1 = model.log_likelihood(x_rep, k=1).view(repeats, 3)
    with torch.no_grad():
        elbo = model.elbo(x_rep)["elbo"].view(repeats, 3)
    se = torch.sqrt(iw1.var(0) / repeats + elbo.var(0) / repeats)
    assert ((iw1.mean(0) - elbo.mean(0)).abs() < 4 * se).all()


def test_iw_bound_tightens_with_k_towards_log_px_by_quadrature():
    model = broad_q_vae()
    x = torch.tensor(X_BINARY, dtype=torch.float64)
    exact = grid_log_px(model, x)  # about (-3.17, -2.11, -3.88)
    means, errors = {}, {}
    torch.manual_seed(0)
    for k, repeats in ((1, 4000), (10, 1000), (100, 300), (2000, 10)):
        estimates = model.log_likelihood(x.repeat(repeats, 1), k=k).view(repeats, 3)
        means[k], errors[k] = estimates.mean(0), estimates.std(0) / math.sqrt(repeats)
    # seen: k=1 (-5.9, -7.0, -7.1), k=10 (-3.39, -2.41, -4.17), k=100 (-3.19, -2.14, -3.91),
    # k=2000 (-3.18, -2.11, -3.90); standard errors <= 0.1, 0.03, 0.013, 0.019
    assert (means[1] + 1 < means[10]).all()
    assert (means[10] < means[100]).all()
    assert (means[100] <= exact + 3 * errors[100]).all()  # a lower bound in expectation
    assert ((means[2000] - exact).abs() < 0.05).all()


def linear_gaussian_vae(latent_dim: int, w: torch.Tensor, b: torch.Tensor, log_std: torch.Tensor) -> VAE:
    """Decoder x = W z + b with noise exp(log_std): p(x) = N(b, W W^T + diag(sigma^2)) in closed form."""
    config = VAEConfig(data_shape=(len(b),), architecture="mlp", latent_dim=latent_dim, hidden_dims=(),
                       likelihood="gaussian")
    model = VAE(config).double()
    (decoder,) = linears(model.decoder)
    with torch.no_grad():
        decoder.weight.copy_(w)
        decoder.bias.copy_(b)
        model.log_std.copy_(log_std)
    return model


def exact_log_px(w, b, log_std, x):
    covariance = w @ w.T + torch.diag(torch.exp(2 * log_std))
    return MultivariateNormal(b, covariance).log_prob(x)


W1 = torch.tensor([[1.5], [-0.8]], dtype=torch.float64)
B2 = torch.tensor([0.3, -0.2], dtype=torch.float64)
LOG_STD2 = torch.tensor([-0.7, -0.3], dtype=torch.float64)
X_LIN = torch.tensor([[0.5, 0.1], [-1.0, 1.2], [2.5, -1.5]], dtype=torch.float64)


def test_exact_posterior_makes_iw_exact_and_elbo_tight():
    """latent 1: the posterior N(m(x), s) is linear in x, so a linear encoder can hold it exactly.
    S = (1 + W^T D^-1 W)^-1,  m = S W^T D^-1 (x - b).  Then p(x,z)/q(z|x) = p(x) for every z."""
    model = linear_gaussian_vae(1, W1, B2, LOG_STD2)
    d_inv = torch.exp(-2 * LOG_STD2)
    s = 1 / (1 + (W1[:, 0] ** 2 * d_inv).sum())
    a = s * W1[:, 0] * d_inv  # m = a . x + c
    (encoder,) = linears(model.encoder)
    with torch.no_grad():
        encoder.weight.copy_(torch.stack([a, torch.zeros(2, dtype=torch.float64)]))
        encoder.bias.copy_(torch.stack([-(a * B2).sum(), torch.log(s)]))
    exact = exact_log_px(W1, B2, LOG_STD2, X_LIN)

    torch.manual_seed(0)
    assert torch.allclose(model.log_likelihood(X_LIN, k=1), exact, atol=1e-10)
    assert torch.allclose(model.log_likelihood(X_LIN, k=50, chunk=7), exact, atol=1e-10)
    with torch.no_grad():
        elbo = model.elbo(X_LIN.repeat(20_000, 1))["elbo"].view(20_000, 3)
    assert ((elbo.mean(0) - exact).abs() < 4 * elbo.std(0) / math.sqrt(20_000)).all()


def test_iw_approaches_exact_log_px_for_a_rough_encoder():
    w = torch.tensor([[1.0, 0.4], [-0.5, 1.2]], dtype=torch.float64)
    model = linear_gaussian_vae(2, w, B2, LOG_STD2)
    (encoder,) = linears(model.encoder)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a poor guess of the posterior mean; q about N(., I): broader than the posterior
        encoder.weight.copy_(0.3 * torch.randn(4, 2, generator=generator, dtype=torch.float64))
        encoder.bias.copy_(torch.tensor([0.1, -0.1, 0.0, 0.0], dtype=torch.float64))
    exact = exact_log_px(w, B2, LOG_STD2, X_LIN)  # (-2.45, -3.44, -4.49)
    torch.manual_seed(1)
    repeats = 10
    iw = model.log_likelihood(X_LIN.repeat(repeats, 1), k=5000).view(repeats, 3).mean(0)
    with torch.no_grad():
        elbo = model.elbo(X_LIN.repeat(2000, 1))["elbo"].view(2000, 3).mean(0)  # (-5.3, -7.7, -15.3)
    # over sampling seeds 0..9 the error of iw stayed below 0.045
    assert ((iw - exact).abs() < 0.1).all(), (iw, exact)
    assert (elbo < exact - 2).all()  # the ELBO of this encoder is far below; the IW bound closes the gap


# --- sampling, reconstruction, interpolation -----------------------------------------------------------


def test_sample_shape_range_and_generator_reproducibility():
    model = VAE(VAEConfig(data_shape=(1, 3, 3), latent_dim=2, hidden_dims=(8,)))
    assert model.config.likelihood == "bernoulli"
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 3, 3)
    assert ((samples >= 0) & (samples <= 1)).all()
    again = model.sample(5, generator=torch.Generator().manual_seed(0))
    other = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(samples, again)
    assert not torch.equal(samples, other)


def test_reconstruct_and_interpolate_endpoints():
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_shape=(1, 3, 3), latent_dim=2, hidden_dims=(8,)))
    x = torch.rand(2, 1, 3, 3)
    assert model.reconstruct(x).shape == (2, 1, 3, 3)
    with torch.no_grad():
        mu, _ = model.encode(x)
        ends = model.decode(mu)
    for method in ("lerp", "slerp"):
        path = model.interpolate(x[0], x[1], steps=6, method=method)
        assert path.shape == (6, 1, 3, 3)
        assert torch.allclose(path[0], ends[0], atol=1e-5)
        assert torch.allclose(path[-1], ends[1], atol=1e-5)


def test_interpolate_latents_lerp_and_slerp_geometry():
    a = torch.tensor([3.0, 0.0, 4.0])
    b = torch.tensor([0.0, 5.0, 0.0])  # |a| = |b| = 5, orthogonal
    lerp = interpolate_latents(a, b, 3, "lerp")
    assert torch.allclose(lerp[1], (a + b) / 2)
    slerp = interpolate_latents(a, b, 9, "slerp")
    assert torch.allclose(slerp.norm(dim=1), torch.full((9,), 5.0), atol=1e-5)
    assert torch.allclose(slerp[0], a, atol=1e-6) and torch.allclose(slerp[-1], b, atol=1e-6)
    # equal angles between neighbours: pi/2 split into 8 steps
    cos = (slerp[:-1] * slerp[1:]).sum(1) / 25
    assert torch.allclose(cos, torch.full((8,), math.cos(math.pi / 16)), atol=1e-5)
    # the lerp midpoint of orthogonal equal-norm vectors is shorter by sqrt(2)
    assert lerp[1].norm().item() == pytest.approx(5 / math.sqrt(2), rel=1e-6)
    # nearly parallel: falls back to lerp, stays finite
    near = interpolate_latents(a, a * (1 + 1e-7), 4, "slerp")
    assert torch.isfinite(near).all()
    with pytest.raises(ValueError, match="unknown interpolation method"):
        interpolate_latents(a, b, 3, "cubic")
    with pytest.raises(ValueError, match="at least 2 steps"):
        interpolate_latents(a, b, 1)


def test_slerp_of_antipodal_latents_keeps_the_norm():
    a = torch.tensor([0.6, 0.8])
    path = interpolate_latents(a, -a, 5, "slerp")
    assert torch.allclose(path.norm(dim=1), torch.ones(5), atol=1e-4)


# --- architectures and settings ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 8])
def test_conv_vae_round_trips_shapes(size):
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_shape=(1, size, size), architecture="conv", latent_dim=4, conv_channels=(4, 8)))
    x = torch.rand(3, 1, size, size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 4)
    assert model.reconstruct(x).shape == (3, 1, size, size)
    assert model.sample(2).shape == (2, 1, size, size)
    loss = model.loss(x)
    assert torch.isfinite(loss["loss"])
    assert model.log_likelihood(x, k=5).shape == (3,)


def test_conv_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="30x30") as info:
        VAEConfig(data_shape=(1, 30, 30), architecture="conv")
    message = str(info.value)
    assert "multiples of 4" in message and "architecture=mlp" in message and "resize" in message
    with pytest.raises(ValueError, match="architecture=mlp"):
        VAEConfig(data_shape=(2,), architecture="conv")


def test_auto_architecture():
    assert VAEConfig(data_shape=(1, 28, 28)).architecture == "conv"
    assert VAEConfig(data_shape=(2,)).architecture == "mlp"
    assert VAEConfig(data_shape=(1, 3, 3)).architecture == "mlp"
    assert VAEConfig(data_shape=(2,)).likelihood == "gaussian"
    assert VAEConfig(data_shape=(1, 28, 28)).likelihood == "bernoulli"


@pytest.mark.parametrize("settings,match", [
    ({"likelihood": "poisson"}, "likelihood='poisson' is not one of"),
    ({"latent_dim": 0}, "latent_dim=0 is out of range"),
    ({"beta": -0.5}, "beta=-0.5 is out of range"),
    ({"architecture": "transformer"}, "architecture=.transformer. is not one of"),
])
def test_bad_settings_raise(settings, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(data_shape=(2,), **settings)


def test_gradient_flows_through_the_reparameterisation(monkeypatch):
    model = tiny_vae("gaussian")
    x = torch.tensor(X_REAL, dtype=torch.float64)
    eps = torch.tensor(EPS, dtype=torch.float64)
    monkeypatch.setattr(torch, "randn_like", lambda t: eps.to(t.dtype))
    model.loss(x)["loss"].backward()
    for layer in linears(model.encoder):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    last = linears(model.encoder)[-1]
    assert last.bias.grad[:2].abs().sum() > 0 and last.bias.grad[2:].abs().sum() > 0  # mu and logvar heads

    # the autograd derivative w.r.t. a logvar bias matches a central finite difference
    h = 1e-6
    grad = last.bias.grad[3].item()
    with torch.no_grad():
        last.bias[3] += h
        up = model.loss(x)["loss"].item()
        last.bias[3] -= 2 * h
        down = model.loss(x)["loss"].item()
    assert grad == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7)


def test_kl_warmup_ramps_the_weight_from_0_to_beta_by_step_and_the_loss_uses_it():
    from genlab.models.vae import configure_optimizers, training_step

    torch.manual_seed(0)
    model = VAE(VAEConfig(data_shape=(2,), hidden_dims=(8,), latent_dim=2, beta=2.0, kl_warmup=10))
    for steps, weight in ((0, 0.0), (5, 1.0), (10, 2.0), (25, 2.0)):  # start, mid, end, after
        model.steps_trained.fill_(steps)
        assert model.kl_weight() == pytest.approx(weight)
        torch.manual_seed(1)
        terms = model.loss(torch.randn(16, 2))
        assert terms["kl_weight"].item() == pytest.approx(weight) and terms["kl"].item() > 0
        assert terms["loss"].item() == pytest.approx(terms["reconstruction"].item() + weight * terms["kl"].item())
    model.steps_trained.zero_()
    optimizers = configure_optimizers(model, 1e-3)
    logged = [training_step(model, optimizers, torch.randn(16, 2))["kl_weight"].item() for _ in range(3)]
    assert logged == pytest.approx([0.0, 0.2, 0.4]) and model.steps_trained.item() == 3


def test_without_warmup_the_weight_is_beta_and_the_weights_are_those_of_older_checkpoints():
    plain = VAE(VAEConfig(data_shape=(2,), hidden_dims=(8,), latent_dim=2, beta=3.0))
    assert plain.kl_weight() == 3.0 and "kl_weight" not in plain.loss(torch.randn(4, 2))
    warm = VAE(VAEConfig(data_shape=(2,), hidden_dims=(8,), latent_dim=2, beta=3.0, kl_warmup=5))
    assert set(warm.state_dict()) - set(plain.state_dict()) == {"steps_trained"}  # a saved buffer: resume is exact
    with pytest.raises(ValueError, match="kl_warmup=-1 is out of range"):
        VAEConfig(data_shape=(2,), kl_warmup=-1)


def test_the_posterior_collapse_warning_offers_kl_warmup_and_a_longer_one_when_on():
    from genlab.metrics import check_posterior

    offered = str(check_posterior(0.001, beta=4.0))
    assert "--set beta=1" in offered and "a KL warm-up, e.g. --set kl_warmup=1000" in offered
    longer = str(check_posterior(0.001, beta=4.0, kl_warmup=500))
    assert "a longer KL warm-up (now 500 steps), e.g. --set kl_warmup=1000" in longer


def test_a_collapsed_posterior_is_reported_while_training(tmp_path):
    """beta large enough that the KL is worth more than any reconstruction it buys: the code collapses and the
    run's log says so, with the remedy; the same run at beta=1 says nothing."""
    from genlab.run import create_run
    from genlab.train import TrainConfig, train

    config = TrainConfig(data="digits", steps=100, batch_size=64, log_every=10, sample_every=1000)
    warned = {}
    for beta in (100.0, 1.0):
        run = create_run(tmp_path / f"beta{beta:g}", "vae", config, {"beta": beta, "architecture": "mlp",
                                                                         "hidden_dims": (32,), "latent_dim": 4})
        train(run, device="cpu")
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        warned[beta] = [r["warning"] for r in records if "warning" in r]
    assert warned[100.0] and "posterior collapse" in warned[100.0][-1] and "--set beta=25" in warned[100.0][-1]
    assert warned[1.0] == []


def test_a_conv_vae_on_large_images_gets_blocks_down_to_4x4_and_old_shapes_keep_their_nets():
    from genlab.models.layers import conv_channels_for

    model = VAE(VAEConfig(data_shape=(3, 64, 64), latent_dim=8))
    assert model.config.conv_channels == (8, 16, 32, 64)
    assert model.encoder.linear.in_features == 64 * 4 * 4 and model.decoder.start_shape == (64, 4, 4)
    assert model.reconstruct(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    for shape in ((1, 28, 28), (1, 8, 8), (2,)):
        assert VAEConfig(data_shape=shape).conv_channels == (32, 64) == conv_channels_for(shape, deepest=64)
