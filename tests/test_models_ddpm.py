"""Diffusion: the schedule's math against closed forms derived independently (Ho et al. eq. 4, 6-7, and Bayes'
rule), DDIM's determinism and its eta = 1 equivalence with DDPM, the networks' shapes, the EMA, a model that
learns the ring, checkpoints, bit-identical resume and the CLI."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genlab import checkpoint as ckpt
from genlab.cli import app
from genlab.config import to_json_dict
from genlab.data.toys import RING_STD, ring_centres
from genlab.metrics import mixture_coverage, mode_coverage
from genlab.models import DDPM, DDPMConfig
from genlab.models.noise_schedule import NoiseSchedule, cosine_betas
from genlab.models.unet import UNet, timestep_embedding
from genlab.run import create_run, open_run
from genlab.train import TrainConfig, train

# ----------------------------------------------------------------------------- the schedule


def test_linear_schedule_is_ho_et_al():
    schedule = NoiseSchedule()
    assert schedule.num_timesteps == 1000 and schedule.name == "linear"
    assert schedule.betas[0].item() == pytest.approx(1e-4) and schedule.betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(schedule.betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))
    product = 1.0
    for t in (0, 1, 499, 999):
        product = math.prod(1 - b for b in schedule.betas[: t + 1].tolist())
        assert schedule.alpha_bar[t].item() == pytest.approx(product, rel=1e-10)
    assert product < 1e-4  # alpha_bar_T ~ 4e-5: x_T is as good as pure noise
    # for other T both ends scale by 1000 / T, so 100 steps still end in noise
    assert NoiseSchedule(100).betas[[0, -1]].tolist() == pytest.approx([1e-3, 0.2])
    assert NoiseSchedule(100).alpha_bar[-1] < 1e-4


def test_cosine_schedule_is_nichol_and_dhariwal():
    schedule = NoiseSchedule(1000, "cosine")
    t = torch.arange(1, 1001, dtype=torch.float64)
    f = torch.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # eq. 17
    f0 = math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    unclipped = cosine_betas(1000) < 0.999
    assert unclipped[:-1].all()  # only the very last beta hits the clip
    assert torch.allclose(schedule.alpha_bar[unclipped], (f / f0)[unclipped], rtol=1e-9)
    assert schedule.betas.max() <= 0.999


def test_schedule_and_config_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="unknown noise schedule 'quadratic': choose one of linear, cosine"):
        NoiseSchedule(100, "quadratic")
    with pytest.raises(ValueError, match="schedule='sigmoid' is not one of linear, cosine"):
        DDPMConfig(schedule="sigmoid")
    with pytest.raises(ValueError, match="num_timesteps > 20.*schedule=cosine"):
        NoiseSchedule(10, "linear")
    assert NoiseSchedule(10, "cosine").alpha_bar[-1] < 1e-4
    with pytest.raises(ValueError, match="sampler='euler' is not one of ddpm, ddim"):
        DDPMConfig(sampler="euler")
    with pytest.raises(ValueError, match="sampling_steps must be between 1 and num_timesteps=100"):
        DDPMConfig(num_timesteps=100, sampling_steps=101)
    with pytest.raises(ValueError, match="architecture=.conv. is not one of auto, mlp, unet"):
        DDPMConfig(architecture="conv")


def test_q_sample_is_the_closed_form_of_the_forward_chain():
    """q(x_t|x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho eq. 4): exactly, and empirically against
    running the chain q(x_t|x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) (eq. 2) one step at a time."""
    schedule = NoiseSchedule(100)
    x0 = torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    t = 40
    alpha_bar = schedule.alpha_bar[t].item()
    assert torch.allclose(schedule.q_sample(x0, t, torch.zeros_like(x0)), math.sqrt(alpha_bar) * x0)
    noise_part = schedule.q_sample(x0, t, torch.ones_like(x0)) - schedule.q_sample(x0, t, torch.zeros_like(x0))
    assert torch.allclose(noise_part, torch.full_like(x0, math.sqrt(1 - alpha_bar)))

    generator = torch.Generator().manual_seed(0)
    n = 40_000
    x = x0.expand(n, 2).clone()
    for beta in schedule.betas[: t + 1].tolist():
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    direct = schedule.q_sample(x0.expand(n, 2), torch.full((n,), t), torch.randn(n, 2, generator=generator,
                                                                                   dtype=torch.float64))
    for samples in (x, direct):
        # the standard error of a mean over n draws of variance ~0.9 is 0.005; of the variance ~0.006
        assert torch.allclose(samples.mean(0), math.sqrt(alpha_bar) * x0[0], atol=0.02)
        assert torch.allclose(samples.var(0), torch.full((2,), 1 - alpha_bar, dtype=torch.float64), atol=0.03)


def bayes_posterior(schedule: NoiseSchedule, x0, x_t, t: int, t_prev: int):
    """q(x_{t_prev}|x_t, x_0) by Bayes' rule: q(x_t|x_{t_prev}) q(x_{t_prev}|x_0) is a product of two Gaussians in
    x_{t_prev}, so precisions add and the mean is the precision-weighted average."""
    alpha_bar_t = schedule.alpha_bar[t].item()
    alpha_bar_prev = schedule.alpha_bar[t_prev].item() if t_prev >= 0 else 1.0
    a = alpha_bar_t / alpha_bar_prev  # x_t = sqrt(a) x_prev + sqrt(1 - a) z
    precision = a / (1 - a) + 1 / (1 - alpha_bar_prev)
    mean = (math.sqrt(a) * x_t / (1 - a) + math.sqrt(alpha_bar_prev) * x0 / (1 - alpha_bar_prev)) / precision
    return mean, 1 / precision


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_posterior_matches_ho_eq_7_and_bayes_rule(name):
    schedule = NoiseSchedule(1000, name)
    generator = torch.Generator().manual_seed(1)
    x0, x_t = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    for t in (1, 2, 10, 500, 999):
        mean, variance = schedule.posterior_mean_variance(x0, x_t, t)
        # Ho eq. 7, term by term from the betas
        beta = schedule.betas[t].item()
        alpha_bar = math.prod(1 - b for b in schedule.betas[: t + 1].tolist())
        alpha_bar_prev = alpha_bar / (1 - beta)
        ho_mean = (math.sqrt(alpha_bar_prev) * beta / (1 - alpha_bar) * x0
                   + math.sqrt(1 - beta) * (1 - alpha_bar_prev) / (1 - alpha_bar) * x_t)
        ho_variance = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta
        assert torch.allclose(mean, ho_mean, rtol=1e-8, atol=1e-12)
        assert variance.item() == pytest.approx(ho_variance, rel=1e-8)
        bayes_mean, bayes_variance = bayes_posterior(schedule, x0, x_t, t, t - 1)
        assert torch.allclose(mean, bayes_mean, rtol=1e-6, atol=1e-9)
        assert variance.item() == pytest.approx(bayes_variance, rel=1e-6)
    # a respaced step from t to an earlier t_prev (Nichol & Dhariwal) is the same Bayes computation
    for t, t_prev in ((999, 899), (500, 0), (100, 37)):
        mean, variance = schedule.posterior_mean_variance(x0, x_t, t, t_prev)
        bayes_mean, bayes_variance = bayes_posterior(schedule, x0, x_t, t, t_prev)
        assert torch.allclose(mean, bayes_mean, rtol=1e-6, atol=1e-9)
        assert variance.item() == pytest.approx(bayes_variance, rel=1e-6)
    # from t = 0 the posterior is x_0 itself; per-example timesteps broadcast
    mean, variance = schedule.posterior_mean_variance(x0, x_t, 0)
    assert torch.allclose(mean, x0) and variance.item() == 0
    mean, variance = schedule.posterior_mean_variance(x0, x_t, torch.tensor([3, 3, 700, 700, 10]))
    assert variance.shape == (5,)
    assert torch.allclose(mean[2], schedule.posterior_mean_variance(x0[2:3], x_t[2:3], 700)[0][0])


def test_predict_x0_inverts_q_sample_and_ddpm_step_is_ho_algorithm_2():
    schedule = NoiseSchedule(200)
    generator = torch.Generator().manual_seed(2)
    x0, eps, z = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64)
    t = torch.tensor([0, 5, 100, 199])
    assert torch.allclose(schedule.predict_x0(schedule.q_sample(x0, t, eps), t, eps), x0)
    # alg. 2: x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) + sigma_t z, sigma_t^2 = beta_tilde
    x_t = x0
    for step in (150, 1):
        alpha, beta, alpha_bar = (schedule.alphas[step].item(), schedule.betas[step].item(),
                                  schedule.alpha_bar[step].item())
        sigma = math.sqrt((1 - schedule.alpha_bar[step - 1].item()) / (1 - alpha_bar) * beta)
        expected = (x_t - beta / math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha) + sigma * z
        assert torch.allclose(schedule.ddpm_step(eps, x_t, step, step - 1, noise=z), expected)


def test_timesteps_are_evenly_spaced_from_noise_to_data():
    schedule = NoiseSchedule(1000)
    assert schedule.timesteps() == list(range(999, -1, -1))
    assert schedule.timesteps(4) == [999, 666, 333, 0]
    steps = schedule.timesteps(50)
    assert len(set(steps)) == 50 and steps[0] == 999 and steps[-1] == 0
    with pytest.raises(ValueError, match="between 1 and num_timesteps=1000"):
        schedule.timesteps(1001)


# ----------------------------------------------------------------------------- the samplers


def tiny(data_shape=(2,), **settings) -> DDPM:
    torch.manual_seed(0)
    config = {"num_timesteps": 50, "hidden_dims": (16, 16), "unet_channels": (8, 8), **settings}
    return DDPM(DDPMConfig(data_shape=data_shape, **config)).eval()


def test_ddim_with_eta_0_is_deterministic():
    schedule = NoiseSchedule(100)
    x_t, eps, z1, z2 = torch.randn(4, 3, 2)
    assert torch.equal(schedule.ddim_step(eps, x_t, 50, 40, eta=0, noise=z1),
                       schedule.ddim_step(eps, x_t, 50, 40, eta=0, noise=z2))
    model = tiny()
    first = model.sample(64, generator=torch.Generator().manual_seed(3), sampler="ddim", steps=10)
    assert torch.equal(first, model.sample(64, generator=torch.Generator().manual_seed(3), sampler="ddim", steps=10))
    # The only draw is x_T: the generator ends where one randn of the samples' shape leaves it.
    used, reference = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    model.sample(64, generator=used, sampler="ddim", steps=10)
    torch.randn(64, 2, generator=reference)
    assert torch.equal(used.get_state(), reference.get_state())
    # ... whereas DDPM draws fresh noise at every step but the last
    assert not torch.equal(model.sample(64, generator=torch.Generator().manual_seed(3), sampler="ddpm", steps=10),
                           first)


@pytest.mark.parametrize("data_shape", [(2,), (1, 8, 8)])
@pytest.mark.parametrize("steps", [None, 7])
def test_ddim_with_eta_1_is_the_ddpm_step(data_shape, steps):
    """Song et al.: eta = 1 gives sigma_t^2 = beta_tilde_t, and the mean then equals mu_tilde, over all T steps
    and over any subsequence. For images x0_hat is clamped to [-1, 1] in both, so that path is checked too."""
    model = tiny(data_shape)
    ddpm = model.sample(32, generator=torch.Generator().manual_seed(5), sampler="ddpm", steps=steps)
    ddim = model.sample(32, generator=torch.Generator().manual_seed(5), sampler="ddim", steps=steps, eta=1.0)
    assert torch.allclose(ddpm, ddim, atol=1e-4)
    half = model.sample(32, generator=torch.Generator().manual_seed(5), sampler="ddim", steps=steps, eta=0.5)
    assert not torch.allclose(ddpm, half, atol=1e-2)


def test_sample_checks_its_arguments_and_uses_the_config_defaults():
    model = tiny(sampler="ddim", sampling_steps=5)
    generator = torch.Generator().manual_seed(0)
    default = model.sample(16, generator=generator)
    assert torch.equal(default, model.sample(16, generator=torch.Generator().manual_seed(0), sampler="ddim", steps=5))
    with pytest.raises(ValueError, match="eta applies to the ddim sampler only"):
        model.sample(4, sampler="ddpm", eta=0.5)
    with pytest.raises(ValueError, match="unknown sampler 'heun': choose one of ddpm, ddim"):
        model.sample(4, sampler="heun")
    with pytest.raises(ValueError, match="between 1 and num_timesteps=50"):
        model.sample(4, steps=51)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        model.sample(4, sampler="ddim", eta=-1.0)


# ----------------------------------------------------------------------------- the networks


@pytest.mark.parametrize("data_shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_unet_keeps_the_image_shape(data_shape):
    torch.manual_seed(0)
    net = UNet(data_shape, (8, 16, 16))
    x = torch.randn(3, *data_shape)
    out = net(x, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out[0], net(x[:1], torch.tensor([500]))[0])  # the timestep changes the prediction


def test_unet_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="halves the image 3 times.*multiples of 8, but the images are 28x28"):
        UNet((1, 28, 28), (8, 16, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8, but the images are 28x28"):
        DDPMConfig(data_shape=(1, 28, 28), architecture="unet", unet_channels=(8, 16, 16, 16))
    with pytest.raises(ValueError, match="needs images.*use architecture=mlp"):
        DDPMConfig(data_shape=(2,), architecture="unet")


def test_architecture_auto_follows_the_data():
    assert DDPMConfig(data_shape=(1, 28, 28)).architecture == "unet"
    assert DDPMConfig(data_shape=(1, 8, 8)).architecture == "unet"
    assert DDPMConfig(data_shape=(1, 3, 3)).architecture == "mlp"  # the lesson's 3x3 patterns
    assert DDPMConfig(data_shape=(1, 28, 28), unet_channels=(8, 8, 8, 8)).architecture == "mlp"
    for shape in ((2,), (1,)):
        model = DDPM(DDPMConfig(data_shape=shape, hidden_dims=(16,)))
        assert model.network(torch.randn(5, *shape), torch.arange(5)).shape == (5, *shape)
    patterns = DDPM(DDPMConfig(data_shape=(1, 3, 3), hidden_dims=(16,)))
    assert patterns.sample(4, steps=3).shape == (4, 1, 3, 3)


def test_timestep_embedding_is_sinusoidal():
    t = torch.tensor([0, 1, 250])
    embedding = timestep_embedding(t, 8)  # frequencies 1, 0.1, 0.01, 0.001
    assert embedding.shape == (3, 8)
    assert torch.allclose(embedding[:, 0], torch.sin(t.float()))
    assert torch.allclose(embedding[:, 4], torch.cos(t.float()))
    assert torch.allclose(embedding[:, 1], torch.sin(t.float() / 10), atol=1e-5)
    assert timestep_embedding(t, 7).shape == (3, 7)


# ----------------------------------------------------------------------------- loss and EMA


@pytest.mark.parametrize("data_shape", [(2,), (1, 8, 8)])
def test_loss_is_the_simple_noise_prediction_mse(data_shape):
    model = tiny(data_shape).train()
    x = torch.rand(6, *data_shape)
    torch.manual_seed(7)
    terms = model.loss(x)
    torch.manual_seed(7)
    t = torch.randint(50, (6,))
    noise = torch.randn(6, *data_shape)
    x0 = 2 * x - 1 if len(data_shape) == 3 else x  # images in [-1, 1]
    alpha_bar = model.schedule.alpha_bar[t].float().view(-1, *[1] * len(data_shape))
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
    assert list(terms) == ["loss"]
    assert torch.allclose(terms["loss"], (model.network(x_t, t) - noise).pow(2).mean())


def test_ema_warms_up_then_trails_and_sample_uses_it():
    model = tiny()
    ema_before = copy.deepcopy(model.ema.state_dict())
    with torch.no_grad():
        for p in model.network.parameters():
            p.add_(1.0)
    model.update_ema()  # decay = min(0.999, 1/10): the first update takes 90% of the new weights
    for name, p in model.network.named_parameters():
        assert torch.allclose(model.ema.get_parameter(name), 0.1 * ema_before[name] + 0.9 * p)
    assert model.ema_updates.item() == 1
    model.ema_updates.fill_(10_000)
    before = {name: p.clone() for name, p in model.ema.named_parameters()}
    model.update_ema()  # warmed up: decay = ema_decay
    for name, p in model.network.named_parameters():
        assert torch.allclose(model.ema.get_parameter(name), 0.999 * before[name] + 0.001 * p)

    plain = tiny(ema_decay=0.0)
    assert plain.ema is None
    with pytest.raises(ValueError, match="set ema_decay > 0"):
        plain.update_ema()
    plain.network.load_state_dict(model.ema.state_dict())
    assert torch.equal(plain.sample(8, generator=torch.Generator().manual_seed(0), steps=5),
                       model.sample(8, generator=torch.Generator().manual_seed(0), steps=5))


# ----------------------------------------------------------------------------- it learns, it saves, it resumes


@pytest.mark.slow
def test_a_ddpm_trained_on_the_ring_puts_its_samples_on_the_modes(tmp_path):
    """~6 s: 1200 steps of batch 512 through the training loop (the loss is noisy; large batches help most)."""
    config = TrainConfig(data="ring", steps=1200, batch_size=512, lr=1e-2, lr_schedule="cosine",
                         log_every=100, sample_every=10_000, checkpoint_every=10_000)
    run = create_run(tmp_path / "ring", "ddpm", config, {"num_timesteps": 100, "schedule": "cosine"})
    model = open_run(train(run, device="cpu"), splits=()).model
    samples = model.sample(2500, generator=torch.Generator().manual_seed(0))
    strict = mixture_coverage(samples, "ring")  # within 3 std (0.03) of a centre, PacGAN's criterion
    near = mode_coverage(samples, ring_centres(), RING_STD, threshold_stds=10)  # 0.1, centres are 0.77 apart
    assert near.modes_covered == 8 and near.high_quality_fraction >= 0.8, near
    assert strict.modes_covered == 8 and strict.high_quality_fraction >= 0.3 and strict.reverse_kl < 0.1, strict
    untrained = DDPM(model.config).sample(2500, generator=torch.Generator().manual_seed(0))
    assert mode_coverage(untrained, ring_centres(), RING_STD, threshold_stds=10).high_quality_fraction < 0.2


def test_checkpoint_round_trip(tmp_path):
    model = tiny((1, 8, 8))
    model.update_ema()
    path = tmp_path / "ddpm.safetensors"
    meta = {"family": "ddpm", "model_config": {**vars(model.config), "data_shape": [1, 8, 8]}, "step": 1,
            "train_config": to_json_dict(TrainConfig()), "data_position": {"epoch": 0, "batch": 1}}
    ckpt.save_checkpoint(path, meta=meta, model=model, optimizers={})
    loaded, loaded_meta = (o := open_run(path, splits=())).model, o.meta
    assert loaded.config == model.config and loaded_meta["step"] == 1
    assert loaded.ema_updates.item() == 1
    assert not any(name.startswith("model.schedule") for name in ckpt.load_checkpoint(path).tensors)
    assert torch.equal(loaded.sample(4, generator=torch.Generator().manual_seed(0), steps=5),
                       model.sample(4, generator=torch.Generator().manual_seed(0), steps=5))


def same_checkpoints(a: Path, b: Path) -> bool:
    first, second = ckpt.load_checkpoint(a), ckpt.load_checkpoint(b)
    return first.meta == second.meta and first.tensors.keys() == second.tensors.keys() and all(
        torch.equal(first.tensors[name], second.tensors[name]) for name in first.tensors)


@pytest.mark.parametrize(("data", "settings"), [
    ("ring", {"hidden_dims": (16, 16), "ema_decay": 0.9, "num_timesteps": 100}),
    ("digits", {"unet_channels": (8, 8), "num_timesteps": 100, "sampler": "ddim", "sampling_steps": 3}),
])
def test_resume_is_bit_identical(tmp_path, data, settings):
    def run(name):
        # previews of points are matplotlib plots, ~1 s each: the ring run draws only its last
        config = TrainConfig(data=data, steps=30, batch_size=32, lr_schedule="cosine", log_every=10,
                             checkpoint_every=10, sample_every=20 if data == "digits" else 30, keep_checkpoints=10)
        return create_run(tmp_path / name, "ddpm", config, settings)

    straight, interrupted = run("straight"), run("interrupted")
    train(straight, device="cpu")
    assert train(interrupted, device="cpu", stop_after=15) == ckpt.checkpoint_path(interrupted, 10)
    train(interrupted, device="cpu")
    names = [p.name for p in ckpt.list_checkpoints(straight)]
    assert names == [p.name for p in ckpt.list_checkpoints(interrupted)] == [f"step-{s:08d}.safetensors"
                                                                               for s in (10, 20, 30)]
    for a, b in zip(ckpt.list_checkpoints(straight), ckpt.list_checkpoints(interrupted), strict=True):
        assert same_checkpoints(a, b), f"{a.name} differs after resuming"
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(straight, 30)).tensors["model.ema_updates"].item() == 30
    lines = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [10, 20, 30] and set(lines[0]) == {"step", "epoch", "loss", "images_per_s"}
    previews = {"step-00000020-samples.png", "step-00000030-samples.png"} if data == "digits" else {
        "step-00000030-samples.png"}
    assert {p.name for p in (straight / "samples").iterdir()} == previews


# ----------------------------------------------------------------------------- the command line


def test_cli_trains_and_samples_a_ddpm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["train", "ddpm", "--data", "ring", "--steps", "20", "--set", "hidden_dims=16",
                                 "--set", "num_timesteps=50", "--set", "checkpoint_every=10"])
    assert result.exit_code == 0, result.output
    run = Path("runs/ddpm-ring")
    assert "ddpm at step 20 of 20" in runner.invoke(app, ["info", str(run)]).output
    for args, name in ((["--sampler", "ddim", "--timesteps", "10"], "ddim.png"), ([], "default.png")):
        result = runner.invoke(app, ["sample", str(run), "--n", "300", *args, "--out", name])
        assert result.exit_code == 0, result.output
        assert Image.open(name).size[0] > 100
    result = runner.invoke(app, ["sample", str(run), "--sampler", "ddpm", "--timesteps", "51"])
    assert result.exit_code == 1 and "between 1 and num_timesteps=50" in result.stderr
    # without --out each sampler (and timestep count) has its own file: comparing them overwrites nothing
    for args in ([], ["--sampler", "ddim"], ["--sampler", "ddim", "--timesteps", "10"], ["--sampler", "ddpm"]):
        assert runner.invoke(app, ["sample", str(run), "--n", "50", *args]).exit_code == 0
    assert sorted(p.name for p in run.glob("sample-*.png")) == [
        "sample-step20-seed0-n50-ddim-t10.png", "sample-step20-seed0-n50-ddim.png",
        "sample-step20-seed0-n50-ddpm.png", "sample-step20-seed0-n50.png"]

    result = runner.invoke(app, ["train", "vae", "--data", "ring", "--steps", "2", "--set", "hidden_dims=8",
                                 "--set", "latent_dim=2", "--run", "vae"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["sample", "vae", "--timesteps", "10", "--sampler", "ddim"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == "error: --timesteps and --sampler only apply to ddpm models; this is a vae"
