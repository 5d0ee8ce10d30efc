"""Discriminator-guided sampling (genlab.guided): each sampler against a toy whose answer is known in closed form,
the calibration against a known logistic model, seeding, refusals, and the CLI on a tiny trained GAN."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from cli_helpers import invoke, succeeded, user_error
from genlab import guided
from genlab.data import load_dataset
from genlab.explore import picture_of
from genlab.guided import SamplingConfig, sampling_config
from genlab.metrics import CollapseWarning, mixture_coverage
from genlab.models.gan import GAN, GANConfig, with_what_d_knows

# 1-D toy: p_data = N(1, 0.5^2) and the generator x = G(z) = 2z, z ~ N(0, 1), so p_g = N(0, 2^2). The optimal D is
# D*(x) = p_data / (p_data + p_g), whose logit is the exact log ratio log p_data(x) - log p_g(x).
DATA_MEAN, DATA_STD, G_SCALE = 1.0, 0.5, 2.0


def log_normal(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))


def exact_log_ratio(x: torch.Tensor) -> torch.Tensor:
    return log_normal(x, DATA_MEAN, DATA_STD) - log_normal(x, 0.0, G_SCALE)


def propose_from(generator: torch.Generator):
    return lambda k: G_SCALE * torch.randn(k, generator=generator, dtype=torch.float64)  # float64: no ties by chance


def is_data_distribution(x: torch.Tensor) -> float:
    """The KS test's p-value of x against N(DATA_MEAN, DATA_STD^2)."""
    return stats.kstest(x.double().numpy(), "norm", args=(DATA_MEAN, DATA_STD)).pvalue


def test_rejection_with_the_optimal_discriminator_recovers_the_data_distribution():
    generator = torch.Generator().manual_seed(0)
    config = SamplingConfig(method="rejection", gamma=0.0, epsilon=1e-9, burn_in=20_000)
    samples, acceptance = guided.rejection_sample(propose_from(generator), exact_log_ratio, 4000, config, generator)
    assert len(samples) == 4000
    assert is_data_distribution(samples) > 0.01
    # plain rejection sampling keeps 1/M of the proposals, M = max p_data/p_g = 4 exp(1/6) at x = 4/3
    assert acceptance == pytest.approx(1 / (4 * math.exp(1 / 6)), rel=0.05)
    # and the proposals themselves are far from p_data: the test can fail
    assert is_data_distribution(propose_from(generator)(4000)) < 1e-6


def test_a_higher_percentile_keeps_fewer_likelier_samples():
    def draw(percentile):
        generator = torch.Generator().manual_seed(0)
        config = SamplingConfig(method="rejection", percentile=percentile, burn_in=5000)
        return guided.rejection_sample(propose_from(generator), exact_log_ratio, 2000, config, generator)

    (low, low_rate), (high, high_rate) = draw(20.0), draw(95.0)
    assert high_rate < low_rate
    assert exact_log_ratio(high).mean() > exact_log_ratio(low).mean()


def test_rejection_gives_up_with_advice_when_it_keeps_too_few():
    generator = torch.Generator().manual_seed(0)
    config = SamplingConfig(method="rejection", percentile=100.0, max_proposals=1, burn_in=100)
    with pytest.raises(ValueError, match="lower percentile"):
        guided.rejection_sample(propose_from(generator), exact_log_ratio, 500, config, generator)


def test_mh_chains_keep_the_target_invariant_on_a_discrete_toy():
    target, proposal = torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0.4, 0.3, 0.2, 0.1])
    generator = torch.Generator().manual_seed(0)

    def propose(k):
        return torch.multinomial(proposal, k, replacement=True, generator=generator)

    def log_ratio(x):
        return (target / proposal).log()[x]

    n = 20_000
    start = torch.multinomial(target, n, replacement=True, generator=generator)  # chains started in the target
    after, moves = guided.independence_chains(start, propose, log_ratio, 5, generator)
    assert 0 < moves.sum() < 5 * n
    expected = (target * n).numpy()
    assert stats.chisquare(torch.bincount(after, minlength=4).numpy(), expected).pvalue > 0.01
    # started from the proposal instead, the chains reach the target; the proposal itself is far from it
    from_proposal = propose(n)
    assert stats.chisquare(torch.bincount(from_proposal, minlength=4).numpy(), expected).pvalue < 1e-6
    reached, _ = guided.independence_chains(from_proposal, propose, log_ratio, 30, generator)
    assert stats.chisquare(torch.bincount(reached, minlength=4).numpy(), expected).pvalue > 0.01


def test_mh_sample_starts_from_real_samples_and_returns_none_of_them():
    generator = torch.Generator().manual_seed(0)
    real = DATA_MEAN + DATA_STD * torch.randn(500, generator=generator, dtype=torch.float64)
    samples, proposals, moves = guided.mh_sample(propose_from(generator), exact_log_ratio, real, 3000, 20, generator)
    assert proposals >= 3000 * 20 and 0 < moves <= proposals
    assert not torch.isin(samples, real).any()
    assert is_data_distribution(samples) > 0.01


def test_langevin_in_z_moves_samples_to_higher_d_and_to_the_data():
    generator = torch.Generator().manual_seed(0)

    def energy(z):  # (B, 1): E(z) = ||z||^2 / 2 - d(G(z))
        return 0.5 * z.square().sum(dim=1) - exact_log_ratio(G_SCALE * z[:, 0])

    z = torch.randn(3000, 1, generator=generator)
    moved = guided.langevin(z, energy, step_size=0.01, steps=300, generator=generator)
    before, after = G_SCALE * z[:, 0], G_SCALE * moved[:, 0]
    assert exact_log_ratio(after).mean() > exact_log_ratio(before).mean() + 1
    # N(z) exp(d(G(z))) is p_data(2z) up to a constant: x = 2z ~ N(1, 0.5^2), up to Langevin's step error
    assert after.mean().item() == pytest.approx(DATA_MEAN, abs=0.05)
    assert after.std().item() == pytest.approx(DATA_STD, abs=0.05)


def test_the_calibration_recovers_a_known_logistic_model():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(20_000, generator=generator)
    labels = torch.bernoulli(torch.sigmoid(2.0 * scores - 0.5), generator=generator)
    scale, shift, log_loss = guided.fit_logistic(scores, labels)
    assert scale == pytest.approx(2.0, abs=0.1) and shift == pytest.approx(-0.5, abs=0.06)
    assert log_loss < math.log(2)


@pytest.fixture
def tiny_gan():
    torch.manual_seed(0)
    return GAN(GANConfig(data_shape=(2,), latent_dim=2, hidden_dims=(16,), loss="hinge")).eval()


def calibration_of(model):
    real = torch.randn(300, 2, generator=torch.Generator().manual_seed(1)) + 3
    return guided.calibrate(model, real), real


@pytest.mark.parametrize("method", guided.METHODS)
def test_every_method_is_seeded_and_reports_its_cost(tiny_gan, method):
    calibration, real = calibration_of(tiny_gan)
    settings = {"rejection": {"burn_in": 200}, "mh": {"chain_length": 3}, "latent-mcmc": {"langevin_steps": 3}}
    config = sampling_config(method, settings.get(method))

    def draw(seed):
        return guided.guided_sample(tiny_gan, 64, config, generator=torch.Generator().manual_seed(seed),
                                    calibration=calibration, real=real)

    first, again, other = draw(0), draw(0), draw(1)
    assert first.samples.shape == (64, 2)
    assert torch.equal(first.samples, again.samples) and not torch.equal(first.samples, other.samples)
    cost = first.cost()
    assert 0 < cost["acceptance_rate"] <= 1 and cost["passes_per_sample"] >= 1
    if method == "direct":
        assert cost["passes_per_sample"] == 1
    else:
        assert cost["passes_per_sample"] > 2  # every D-guided sample costs D passes as well as G's


def test_score_each_does_not_depend_on_the_batch():
    torch.manual_seed(0)
    model = GAN(GANConfig(data_shape=(2,), latent_dim=2, hidden_dims=(16,), minibatch_stddev=True)).eval()
    with torch.no_grad():
        model.discriminator.stddev.weight.fill_(1.0)
        x = torch.randn(10, 2)
        assert torch.allclose(model.score_each(x)[:3], model.score_each(x[:3]))
        assert not torch.allclose(model.discriminate(x)[:3], model.discriminate(x[:3]))


@pytest.mark.parametrize(("method", "settings", "message"), [
    ("best", {}, "unknown sampling method 'best': choose one of direct, rejection, mh, latent-mcmc"),
    ("rejection", {"percentile": "101"}, "percentile=101.0 is out of range"),
    ("rejection", {"percentile": "high"}, "percentile='high' is not a number"),
    ("rejection", {"chain_length": "5"}, "--method rejection does not use chain_length"),
    ("mh", {"chain_length": "0"}, "chain_length=0 is out of range"),
    ("latent-mcmc", {"step_size": "0"}, "step_size must be positive"),
    ("latent-mcmc", {"step_size": "nan"}, "not a finite number"),
    ("direct", {"gamma": "1"}, "--method direct does not use gamma: its settings are none"),
])
def test_bad_settings_are_refused_in_one_line(method, settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as refused:
        sampling_config(method, settings)
    assert "\n" not in str(refused.value)


def test_packed_discriminators_and_missing_inputs_are_refused():
    torch.manual_seed(0)
    packed = GAN(GANConfig(data_shape=(2,), latent_dim=2, hidden_dims=(16,), pack=2)).eval()
    with pytest.raises(ValueError, match="pack=1"):
        guided.calibrate(packed, torch.randn(10, 2))
    model = GAN(GANConfig(data_shape=(2,), latent_dim=2, hidden_dims=(16,))).eval()
    with pytest.raises(ValueError, match="calibration"):
        guided.guided_sample(model, 4, SamplingConfig(method="rejection"), generator=torch.Generator())
    calibration, _ = calibration_of(model)
    with pytest.raises(ValueError, match="starts each chain from a real sample"):
        guided.guided_sample(model, 4, SamplingConfig(method="mh"), generator=torch.Generator(),
                             calibration=calibration)


# --- the CLI on a tiny trained ring GAN -----------------------------------------------------------------


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("guided") / "gan-ring"
    succeeded(invoke("train", "gan", "--data", "ring", "--steps", "40", "--run", run, "--set", "latent_dim=2",
                     "--set", "hidden_dims=32,32", "--set", "log_every=20", "--set", "checkpoint_every=20"))
    return run


def test_cli_samples_with_rejection_and_stores_the_calibration(gan_run):
    output = succeeded(invoke("sample", gan_run, "--n", "200", "--method", "rejection", "--set", "burn_in=500"))
    out = gan_run / "sample-step40-seed0-n200-rejection-burn_in500.png"  # other settings, another file
    assert "acceptance" in output and "passes a sample" in output
    assert "rejection, acceptance" in Image.open(out).info["Title"]
    succeeded(invoke("sample", gan_run, "--n", "200", "--method", "rejection", "--set", "burn_in=500",
                     "--set", "percentile=95"))
    assert (gan_run / "sample-step40-seed0-n200-rejection-percentile95-burn_in500.png").exists() and out.exists()
    stored = json.loads((gan_run / guided.CALIBRATION_FILE).read_text())
    assert list(stored) == ["step-00000040.safetensors"]  # the latest checkpoint's D, which sampled
    assert stored["step-00000040.safetensors"]["num_real"] == 2000
    assert stored["step-00000040.safetensors"]["split"] == "train"  # never the test split eval scores
    before = (gan_run / guided.CALIBRATION_FILE).read_bytes()
    succeeded(invoke("sample", gan_run, "--n", "50", "--method", "mh", "--set", "chain_length=3"))
    assert (gan_run / guided.CALIBRATION_FILE).read_bytes() == before  # fitted once per checkpoint, then read
    assert "beside them: guided-calibration.json" in succeeded(invoke("info", gan_run))


def test_a_damaged_calibration_file_is_fitted_again(gan_run):
    path = gan_run / guided.CALIBRATION_FILE
    succeeded(invoke("sample", gan_run, "--n", "20", "--method", "latent-mcmc", "--set", "langevin_steps=2"))
    stored = json.loads(path.read_text())
    before_split = json.dumps({name: {key: number for key, number in value.items() if key != "split"}
                               for name, value in stored.items()})  # written before the split was recorded
    for damage in ('{"step-00000040.safetensors": {"scale": 1', json.dumps(
            {name: {**value, "scale": "x"} for name, value in stored.items()}), before_split):
        path.write_text(damage)
        succeeded(invoke("sample", gan_run, "--n", "20", "--method", "latent-mcmc", "--set", "langevin_steps=2"))
        assert json.loads(path.read_text()) == stored


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "best"], "unknown sampling method 'best'"),
    (["--method", "rejection", "--set", "percentile=150"], "percentile=150.0 is out of range"),
    (["--method", "mh", "--set", "step_size=0.1"], "--method mh does not use step_size"),
    (["--method", "rejection", "--set", "burn_in"], "is not key=value"),
    (["--method", "rejection", "--truncation", "1"], "--truncation and --method rejection do not combine"),
])
def test_cli_refuses_bad_sampling_options_in_one_line(gan_run, args, message):
    assert message in user_error(invoke("sample", gan_run, *args))


def test_cli_eval_scores_d_guided_samples_beside_the_models_own(gan_run):
    output = succeeded(invoke("eval", gan_run, "--samples", "300", "--method", "rejection", "--set", "burn_in=500"))
    assert "rejection sampling" in output
    report = json.loads((gan_run / "eval-rejection.json").read_text())
    assert report["sampling_method"] == "rejection"
    cost = report["results"]["sampling"]
    assert 0 < cost["scores"]["acceptance_rate"] < 1 and cost["scores"]["passes_per_sample"] > 2
    assert cost["protocol"]["settings"]["burn_in"] == 500
    assert cost["protocol"]["calibration"]["checkpoint"] == "step-00000040.safetensors"
    assert cost["protocol"]["reference"].startswith("ring/train (D's calibration")
    # 300 samples for sample quality, then 2,500 for mode coverage, both D-guided
    assert cost["protocol"]["num_fake"] == 300 + 2500
    assert report["results"]["mode_coverage"]["protocol"]["num_fake"] == 2500
    succeeded(invoke("eval", gan_run, "--samples", "300"))
    direct = json.loads((gan_run / "eval.json").read_text())
    assert direct["sampling_method"] == "direct" and "sampling" not in direct["results"]
    assert direct["results"]["sample_quality"] != report["results"]["sample_quality"]


def test_cli_compare_adds_a_d_guided_gan_row(tmp_path):
    runs = tmp_path / "runs"
    succeeded(invoke("train", "gan", "--data", "digits", "--steps", "20", "--run", runs / "gan-seed0",
                     "--set", "log_every=20", "--set", "conv_channels=8,16", "--set", "ema_decay=0.9"))
    succeeded(invoke("compare", "--data", "digits", "--runs-from", runs, "--seeds", 1, "--samples", 200,
                     "--gan-method", "rejection", "--set", "burn_in=300", "--out", tmp_path / "report"))
    summary = json.loads((tmp_path / "report" / "compare.json").read_text())
    direct, guided_row = summary["table"]
    assert guided_row["model"] == direct["model"] + " + rejection"
    assert 0 < float(guided_row["acceptance_rate"]) < 1
    assert guided_row["fid"] != direct["fid"]  # scored on other samples
    notes = (tmp_path / "report" / "compare.md").read_text()
    assert "+ rejection: the GAN's samples guided by its discriminator" in notes


def test_a_gans_point_preview_shows_d_guided_samples_beside_its_own():
    torch.manual_seed(0)
    model = GAN(GANConfig(data_shape=(2,), latent_dim=2, hidden_dims=(16,))).eval()
    ring = load_dataset("ring", "test")
    image = Image.open(io.BytesIO(picture_of(model, ring, n=500, seed=3)))
    drawn = guided.beside_direct(model, ring.x, 500, seed=3)  # what the right-hand panel draws
    assert "D-guided samples: green, in the right panel" in image.info["Description"]
    pixels = torch.from_numpy(np.asarray(image.convert("RGB")).astype(np.int64))  # (height, width, 3)
    green = (pixels[..., 1] - pixels[..., 0] > 40) & (pixels[..., 1] - pixels[..., 2] > 40)
    third = image.width // 3
    assert green[:, 2 * third:].sum() > 20 and green[:, :2 * third].sum() == 0  # only in the third panel
    assert 0 < drawn.acceptance_rate < 1
    packed = GAN(GANConfig(data_shape=(2,), latent_dim=2, hidden_dims=(16,), pack=2)).eval()
    assert "D-guided" not in Image.open(io.BytesIO(picture_of(packed, ring, n=500))).info["Description"]


def test_a_mode_collapse_warning_says_what_d_guided_samples_cover():
    torch.manual_seed(0)
    model = GAN(GANConfig(data_shape=(2,), latent_dim=2, hidden_dims=(16,))).eval()
    grid = load_dataset("grid", "train")
    found = CollapseWarning("modes", "mode collapse: 3 of 25 modes covered", "try --set pack=2")
    record = {"step": 40, "modes_covered": 3}
    told = with_what_d_knows(found, model, grid, record)
    drawn = guided.beside_direct(model, grid.x, 2500, seed=40)
    coverage = mixture_coverage(drawn.samples, "grid")
    assert told.kind == "modes" and told.fix == found.fix
    assert told.message.startswith("mode collapse: 3 of 25 modes covered; D-guided samples cover "
                                   f"{coverage.modes_covered} of 25 modes, "
                                   f"{100 * coverage.high_quality_fraction:.1f}% near a mode (")
    assert record["guided_modes_covered"] == coverage.modes_covered
    assert ("D still sees modes G lost" in told.message) == (coverage.modes_covered > 3)


def test_guided_draws_read_the_training_split_once(gan_run, tmp_path, monkeypatch):
    import genlab.run
    from genlab.evaluate import evaluate
    from genlab.run import open_run

    loads = []
    load_dataset = genlab.run.load_dataset
    monkeypatch.setattr(genlab.run, "load_dataset", lambda name, split, **kw: loads.append(split)
                        or load_dataset(name, split, **kw))
    opened = open_run(gan_run)
    loads.clear()
    (gan_run / guided.CALIBRATION_FILE).unlink(missing_ok=True)  # fitted now: the calibration reads the split too
    guided.sample_run(opened, 20, sampling_config("mh", {"chain_length": 2}))
    assert loads == ["train"]  # the calibration's fit and MH's starts share one load
    loads.clear()
    guided.sample_run(opened, 20, sampling_config("rejection", {"burn_in": 100}))
    assert loads == []  # a stored calibration and no chains: the split is not read at all
    evaluate(opened, samples=100, sampling=sampling_config("mh", {"chain_length": 2}))
    assert loads == ["train"]  # two D-guided draws (sample quality, mode coverage), one load
