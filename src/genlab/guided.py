"""Discriminator-guided sampling: after training, a GAN's discriminator still knows where the data is, and these
samplers use it to move the generator's mass back where it belongs (the thin "bridges" between grid-25's modes, the
uneven digit frequencies of Stacked-MNIST).

Every method reads D through one number per sample, d(x) ~ log p_data(x) / p_g(x), the log density ratio. For the
sigmoid losses D's logit is that ratio at D's optimum (Goodfellow et al. 2014, prop. 1); hinge, least-squares and
Wasserstein critics score on other scales. So D's raw score s(x) is calibrated first, d(x) = scale * s(x) + shift,
by logistic regression on real against generated samples, as MH-GAN does (Turner et al. 2019, sec. 3.2); the
calibration is stored with the run, one per checkpoint (CALIBRATION_FILE). The real samples come from the run's
training split (REAL_SPLIT), never the test split that `genlab eval` scores.

  direct       x = G(z), z ~ N(0, I).
  rejection    Discriminator rejection sampling (DRS, Azadi et al. 2019): keep a proposal x ~ p_g with probability
               sigmoid(F(x)), F(x) = d(x) - M - log(1 - exp(d(x) - M - epsilon)) - gamma, M the largest d seen
               (over a burn-in, raised whenever a proposal beats it). gamma = 0 is plain rejection sampling,
               accepting p_data / (e^M p_g): exact when d is. gamma (a percentile of F over the burn-in) keeps fewer,
               likelier samples.
  mh           MH-GAN (Turner et al. 2019): an independence Metropolis-Hastings chain with proposals x' ~ p_g, moving
               with probability min(1, exp(d(x') - d(x))); its stationary distribution is p_data when d is exact.
               Each chain starts from a real training sample, as the paper starts from a real one (the target's own
               draw needs no burn-in); a chain that accepts none of its chain_length proposals is run again from a
               generated sample, so a real sample is never returned.
  latent-mcmc  Discriminator-driven latent sampling (DDLS, Che et al. 2020): Langevin dynamics in z on the energy
               E(z) = ||z||^2 / 2 - d(G(z)), z <- z - step_size / 2 grad E(z) + sqrt(step_size) noise. The density
               it samples, N(z) exp(d(G(z))), pushed through G is p_data when d is exact.

Each draw reports its acceptance rate and its cost (G and D passes, CPU seconds) per returned sample: a sampler
that keeps 1 proposal in 100 costs 100 times direct sampling, whatever quality it buys.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import torch

from genlab.checkpoint import atomic_write_bytes
from genlab.config import check_fields, split_settings
from genlab.run import OpenRun, load_run_data, loading_once

METHODS = ("direct", "rejection", "mh", "latent-mcmc")
# The settings each method reads; any other is refused, so no setting is silently ignored.
METHOD_SETTINGS = {"direct": (), "rejection": ("percentile", "gamma", "epsilon", "burn_in", "max_proposals"),
                   "mh": ("chain_length",), "latent-mcmc": ("step_size", "langevin_steps")}
BATCH = 1000  # samples per G or D pass: bounds memory for images, and fixes the order of random draws
CALIBRATION_FILE = "guided-calibration.json"  # in the run folder: checkpoint name -> Calibration
CALIBRATION_SAMPLES = 2000  # real samples (at most; the split may hold fewer) and as many generated
# D's calibration and MH's chain starts read the training split: eval scores the test split, and a calibration fitted
# on it would be tuned on the samples it is then judged against. D has seen the training samples, which could make
# it surer of them than of new ones; on grid-25 (seed 7) the calibrated log loss is 0.662 on the training split
# against 0.663 on the test split, and the samples drawn score alike (rejection 96.3 / 96.1% high quality).
REAL_SPLIT = "train"
CALIBRATION_SEED = 0  # the calibration is one per checkpoint, whatever seed a draw uses
MAX_SAMPLES = 50_000  # as evaluate.MAX_SAMPLES: the largest protocol, every sample held in memory at once


@dataclass
class SamplingConfig:
    method: Literal["direct", "rejection", "mh", "latent-mcmc"] = "direct"
    # rejection: gamma is this percentile of F over the burn-in; a proposal whose F sits there is kept half the
    # time, so a higher percentile keeps fewer, likelier samples (and costs more passes per sample)
    percentile: float = 80.0
    gamma: float | None = None  # rejection: a fixed gamma instead of the percentile's; 0: plain rejection sampling
    epsilon: float = 1e-6  # rejection: keeps log(1 - exp(d - M - epsilon)) finite at d = M (DRS's epsilon)
    burn_in: int = 5000  # rejection: proposals scored first, for M and gamma; not themselves returned
    max_proposals: int = 1000  # rejection: proposals per requested sample before giving up (with advice)
    chain_length: int = 100  # mh: proposals per chain, K (more: closer to p_data, proportionally dearer)
    # latent-mcmc: Langevin's step in z. On grid-25 0.01 walked samples off the data, up D's slope where D never saw
    # data (benchmarks/mode_coverage_results.md); 0.001 removes the bridges without leaving the modes
    step_size: float = 0.001
    langevin_steps: int = 100  # latent-mcmc: Langevin steps per sample, each a G and D pass forward and back

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown sampling method {self.method!r}: choose one of {', '.join(METHODS)}")
        check_fields(self, {"percentile": (0, 100), "gamma": (-1000, 1000), "epsilon": (0, 1), "burn_in": (1, 10**6),
                            "max_proposals": (1, 10**5), "chain_length": (1, 10**4), "step_size": (0, 10),
                            "langevin_steps": (1, 10**4)})
        if not self.step_size > 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}")

    @property
    def label(self) -> str:
        """The method and the settings given other values than their defaults, for file names: samples drawn with
        other settings never overwrite each other (rejection, rejection-percentile95)."""
        changed = [f"{f.name}{getattr(self, f.name):g}" for f in fields(self)
                   if f.name != "method" and getattr(self, f.name) != f.default]
        return "-".join([self.method, *changed])


def sampling_config(method: str, settings: dict | None = None) -> SamplingConfig:
    """A SamplingConfig from a method and its settings (text as `--set key=value` gives it, or values), refusing
    settings the method does not read."""
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}: choose one of {', '.join(METHODS)}")
    settings = dict(settings or {})
    if unused := [key for key in settings if key not in METHOD_SETTINGS[method]]:
        valid = ", ".join(METHOD_SETTINGS[method]) or "none"
        raise ValueError(f"--method {method} does not use {', '.join(unused)}: its settings are {valid}")
    (values,) = split_settings(settings, [SamplingConfig])
    return SamplingConfig(method=method, **values)


@dataclass
class GuidedSamples:
    samples: torch.Tensor  # (n, *data_shape), on the CPU
    method: str
    acceptance_rate: float  # rejection: kept / proposed; mh: moves / proposals; direct and latent-mcmc: 1
    generator_passes: int  # one sample through G (a backward pass counts as one more)
    discriminator_passes: int  # one sample through D (likewise)
    cpu_seconds: float  # process CPU time of the draw (the stored calibration's excluded)

    def cost(self) -> dict[str, float]:
        """What a returned sample costs, beside its acceptance rate: network passes and CPU seconds."""
        n = len(self.samples)
        return {"acceptance_rate": self.acceptance_rate,
                "passes_per_sample": (self.generator_passes + self.discriminator_passes) / n,
                "cpu_ms_per_sample": 1000 * self.cpu_seconds / n}


# --- the samplers, on any proposal and log ratio (the tests give them exact ones) -----------------------
# propose(k) -> k samples of p_g; log_ratio(x) -> (len(x),) d(x) ~ log p_data(x) / p_g(x).


def uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device)


def drs_logit(d: torch.Tensor, max_log_ratio: float, epsilon: float, gamma: float) -> torch.Tensor:
    """F(x) of Azadi et al. (eq. 8): sigmoid(F) = r / (1 - r e^-epsilon) with r = e^(d - M) when gamma = 0, ~ r."""
    shifted = d - max_log_ratio  # <= 0: M is the largest d seen, this batch's included
    return shifted - torch.log(-torch.expm1(shifted - epsilon)) - gamma


def rejection_sample(propose: Callable, log_ratio: Callable, n: int, config: SamplingConfig,
                     generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """n samples kept by DRS, and the acceptance rate after the burn-in (whose proposals are scored, not kept)."""
    d = log_ratio(propose(config.burn_in))
    max_log_ratio = d.max().item()
    gamma = config.gamma
    if gamma is None:
        gamma = torch.quantile(drs_logit(d, max_log_ratio, config.epsilon, 0.0).double(),
                               config.percentile / 100).item()
    kept, count, proposed = [], 0, 0
    while count < n:
        if proposed >= n * config.max_proposals:
            raise ValueError(f"rejection sampling kept {count} of {n} samples in {proposed} proposals (acceptance "
                             f"{count / proposed:.2g}): lower percentile (now {config.percentile:g}) or gamma, "
                             "or raise max_proposals")
        x = propose(BATCH)
        d = log_ratio(x)
        proposed += BATCH
        max_log_ratio = max(max_log_ratio, d.max().item())  # as DRS does: a larger ratio raises M from now on
        keep = uniform(BATCH, generator) < torch.sigmoid(drs_logit(d, max_log_ratio, config.epsilon, gamma))
        kept.append(x[keep])
        count += int(keep.sum())
    return torch.cat(kept)[:n], count / proposed


def independence_chains(start: torch.Tensor, propose: Callable, log_ratio: Callable, steps: int,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """len(start) Metropolis-Hastings chains with independent proposals x' ~ p_g, `steps` proposals each: the
    final states and how many moves each chain made. Target p_data = p_g e^d, so the acceptance ratio
    p_data(x') p_g(x) / (p_data(x) p_g(x')) is exp(d(x') - d(x)) (Turner et al., eq. 4)."""
    x, d = start.clone(), log_ratio(start)
    moves = torch.zeros(len(x), dtype=torch.long, device=d.device)
    for _ in range(steps):
        x_new = propose(len(x))
        d_new = log_ratio(x_new)
        move = uniform(len(x), generator).log() < d_new - d  # accept with min(1, exp(d' - d))
        x[move], d[move] = x_new[move], d_new[move]
        moves += move
    return x, moves


def mh_sample(propose: Callable, log_ratio: Callable, real: torch.Tensor, n: int, chain_length: int,
              generator: torch.Generator) -> tuple[torch.Tensor, int, int]:
    """n MH-GAN samples, each a chain started at a random real sample: (samples, proposals, moves)."""
    start = real[torch.randint(len(real), (n,), generator=generator, device=generator.device).to(real.device)]
    x, moves = independence_chains(start.to(generator.device), propose, log_ratio, chain_length, generator)
    proposals, stuck = n * chain_length, moves == 0
    if stuck.any():  # still on its real start: run that chain again from a generated sample
        again, more = independence_chains(propose(int(stuck.sum())), propose, log_ratio, chain_length, generator)
        x[stuck] = again
        proposals, moves = proposals + int(stuck.sum()) * (chain_length + 1), torch.cat([moves, more])
    return x, proposals, int(moves.sum())


def langevin(z: torch.Tensor, energy: Callable, step_size: float, steps: int,
             generator: torch.Generator) -> torch.Tensor:
    """`steps` Langevin steps on energy(z) -> (B,) energies: z <- z - step_size/2 grad E + sqrt(step_size) noise."""
    for _ in range(steps):
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(energy(z).sum(), z)
        noise = torch.randn(z.shape, generator=generator, device=generator.device)
        z = z.detach() - step_size / 2 * grad + math.sqrt(step_size) * noise
    return z


# --- D's calibration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    scale: float  # d(x) = scale * s(x) + shift, s = D's raw score (GAN.score_each)
    shift: float
    checkpoint: str  # the checkpoint whose D it calibrates
    split: str  # the run's split the real samples came from (REAL_SPLIT); "" for samples given directly
    num_real: int
    num_fake: int
    seed: int
    log_loss: float  # the fit's mean log loss on its samples; log 2 = 0.693: D tells them apart by chance only

    def log_ratio(self, scores: torch.Tensor) -> torch.Tensor:
        return self.scale * scores + self.shift


def fit_logistic(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """Logistic regression of labels (1 real, 0 generated) on one score: (scale, shift, mean log loss), by
    scikit-learn; a tiny ridge (1e-6 per sample) keeps separable data finite."""
    from sklearn.linear_model import LogisticRegression

    x, y = scores.double().numpy()[:, None], labels.double().numpy()
    fitted = LogisticRegression(C=1e6 / len(y), tol=1e-10, max_iter=1000).fit(x, y)
    scale, shift = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    logits = scores.double() * scale + shift
    log_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.double()).item()
    return scale, shift, log_loss


def _scores(model, x: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model.score_each(chunk.to(device)) for chunk in x.split(BATCH)])


def calibrate(model, real: torch.Tensor, checkpoint: str = "", seed: int = CALIBRATION_SEED,
              split: str = "") -> Calibration:
    """Fit d = scale * s + shift on real samples against as many generated ones (MH-GAN's calibration)."""
    real = real[:CALIBRATION_SAMPLES]
    device = next(model.parameters()).device
    fake = _decoded(model, model.latents(len(real), torch.Generator(device).manual_seed(seed)))
    scores = torch.cat([_scores(model, real), _scores(model, fake)]).cpu()
    labels = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))])
    scale, shift, log_loss = fit_logistic(scores, labels)
    return Calibration(scale, shift, checkpoint, split, len(real), len(fake), seed, log_loss)


def real_samples(opened: OpenRun, data_dir: str | Path | None = None) -> torch.Tensor:
    """The run's REAL_SPLIT samples, as training loaded them (opened.data's when opened with it)."""
    return (opened.data.get(REAL_SPLIT) or load_run_data(opened.record.train, REAL_SPLIT, data_dir)).x


def run_calibration(opened: OpenRun, data_dir: str | Path | None = None) -> Calibration:
    """The run's calibration of this checkpoint's D: read from CALIBRATION_FILE, or fitted on real_samples and
    stored there (a file from before a field was added is fitted again)."""
    path = opened.folder / CALIBRATION_FILE
    stored = _read_calibrations(path)
    name = opened.path.name
    if name in stored:
        return stored[name]
    calibration = calibrate(opened.model, real_samples(opened, data_dir), checkpoint=name, split=REAL_SPLIT)
    stored[name] = calibration
    atomic_write_bytes(path, (json.dumps({key: asdict(value) for key, value in stored.items()}, indent=2) + "\n")
                       .encode())
    return calibration


def _read_calibrations(path: Path) -> dict[str, Calibration]:
    """The stored calibrations; a damaged file is refitted over rather than trusted."""
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_bytes())
        names = {field.name for field in fields(Calibration)}
        return {key: Calibration(**value) for key, value in stored.items()
                if set(value) == names and all(isinstance(value[number], (int, float)) and math.isfinite(value[number])
                                               for number in ("scale", "shift"))}
    except (ValueError, TypeError, AttributeError, RecursionError):
        return {}


# --- a GAN's draws ---------------------------------------------------------------------------------------


def _decoded(model, z: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.decode(chunk) for chunk in z.split(BATCH)])


def guided_sample(model, n: int, config: SamplingConfig, *, generator: torch.Generator,
                  calibration: Calibration | None = None, real: torch.Tensor | None = None) -> GuidedSamples:
    """n samples of a GAN by `config.method`, with their cost. Every random draw comes from `generator` (on the
    model's device), so the same seed gives the same samples. D-guided methods need the calibration; mh also needs
    real samples to start its chains."""
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"n must be between 1 and {MAX_SAMPLES}, got {n}")
    if config.method != "direct" and calibration is None:
        raise ValueError(f"--method {config.method} needs D's calibration (guided.run_calibration)")
    if config.method == "mh" and (real is None or not len(real)):
        raise ValueError("--method mh starts each chain from a real sample: give the run's training split")
    passes = {"g": 0, "d": 0}

    def propose(k: int) -> torch.Tensor:
        passes["g"] += k
        return _decoded(model, model.latents(k, generator))

    def log_ratio(x: torch.Tensor) -> torch.Tensor:
        passes["d"] += len(x)
        return calibration.log_ratio(_scores(model, x))

    start = time.process_time()
    acceptance = 1.0
    if config.method == "direct":
        samples = propose(n)
    elif config.method == "rejection":
        samples, acceptance = rejection_sample(propose, log_ratio, n, config, generator)
    elif config.method == "mh":
        samples, proposed, moves = mh_sample(propose, log_ratio, real, n, config.chain_length, generator)
        acceptance = moves / proposed
    else:
        samples = _latent_mcmc(model, n, config, calibration, generator)
        passes["g"] = passes["d"] = n * (2 * config.langevin_steps + 1)  # forward and back each step, then decode
    return GuidedSamples(samples.detach().cpu(), config.method, acceptance, passes["g"], passes["d"],
                         time.process_time() - start)


def _latent_mcmc(model, n: int, config: SamplingConfig, calibration: Calibration,
                 generator: torch.Generator) -> torch.Tensor:
    network = model.sampling_network()

    def energy(z: torch.Tensor) -> torch.Tensor:  # (B,) E(z) = ||z||^2 / 2 - d(G(z)), Che et al. eq. 9
        return 0.5 * z.square().sum(dim=1) - calibration.log_ratio(model.score_each(network(z)))

    z = model.latents(n, generator)
    moved = [langevin(chunk, energy, config.step_size, config.langevin_steps, generator) for chunk in z.split(BATCH)]
    return _decoded(model, torch.cat(moved))


def beside_direct(model, real: torch.Tensor, n: int, seed: int) -> GuidedSamples:
    """n samples kept by rejection sampling (default settings), D calibrated on `real` against G's samples, every
    draw from `seed`: the D-guided sample the collapse check, the training previews of 2-D data and the lab's
    playground show beside G's own, so a person sees what D still knows (the modes G half-forgot, the bridges it
    should not draw). Raises ValueError when none can be drawn (a packed D, GAN.score_each; too few proposals
    kept)."""
    calibration = calibrate(model, real, seed=seed)
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    return guided_sample(model, n, SamplingConfig(method="rejection"), generator=generator, calibration=calibration)


def sample_run(opened: OpenRun, n: int, config: SamplingConfig, seed: int = 0,
               data_dir: str | Path | None = None) -> GuidedSamples:
    """n samples of an opened run by `config.method`: the run's stored calibration (fitted on its training split,
    real_samples, on first use), and for mh that split's samples as the chains' starts."""
    model, family = opened.model, opened.record.family
    if family != "gan":
        raise ValueError(f"--method {config.method} is for gan runs (it reads their generator and discriminator); "
                         f"this is a {family}")
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    if config.method == "direct":
        return guided_sample(model, n, config, generator=generator)
    with loading_once():  # the training split, read for a calibration fitted now and for MH's starts, once
        calibration = run_calibration(opened, data_dir)
        real = real_samples(opened, data_dir) if config.method == "mh" else None
    return guided_sample(model, n, config, generator=generator, calibration=calibration, real=real)
