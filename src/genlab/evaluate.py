"""Evaluate a trained run: every metric that applies to its family and data, with the protocol of each.

- ae, vae: reconstruction of test examples (MSE; PSNR and SSIM for images).
- vae: importance-weighted NLL of test examples (Burda et al.), k samples each.
- models that sample (vae, gan): FID, KID, precision/recall, density/coverage of N samples against the
  test split, in the shipped MNIST feature space for 28x28 and 8x8 grey images, in a user's feature
  network (`features=PATH`) for other images, in raw coordinates for points; and for the 2-D ring and
  grid mixtures, mode coverage (VEEGAN/PacGAN protocol, 2,500 samples); for Stacked-MNIST, the 1000 modes
  and KL of 26,000 samples (genlab.metrics.stacked); for images, memorization: how many samples copy a
  training image, beside held-out images' own rate (genlab.metrics.memorization).
- models that upscale (superres): PSNR and SSIM on the Y channel of the held-out crops, model and bicubic
  baseline on the same inputs, and a no-reference sharpness figure (see _super_resolution).

`evaluate_run` opens a run, writes eval.json into its folder (atomically) and returns the same dict;
`evaluate` measures a run already opened (genlab.run.open_run with its test split). With a D-guided sampling method
(genlab.guided: a GAN's rejection, mh or latent-mcmc) every sample metric scores those samples instead, the report
adds what they cost (acceptance rate, passes and CPU time a sample), and it goes to eval-METHOD.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

import genlab
from genlab.checkpoint import atomic_write_bytes
from genlab.data import Dataset
from genlab.guided import METHOD_SETTINGS, REAL_SPLIT, SamplingConfig, run_calibration, sample_run
from genlab.metrics.features import FeatureNetwork, load_feature_network, mnist_feature_network
from genlab.metrics.memorization import COPY_RATIO, memorization
from genlab.metrics.modes import MIXTURES, NUM_SAMPLES, mixture_coverage
from genlab.metrics.quality import nats_to_bits_per_dim, reconstruction_scores, sample_quality, ssim_window
from genlab.metrics.stacked import NUM_MODES as STACKED_MODES
from genlab.metrics.stacked import NUM_SAMPLES as STACKED_SAMPLES
from genlab.metrics.stacked import stacked_mnist_coverage
from genlab.models.superres import bicubic_upscale
from genlab.run import OpenRun, loading_once, open_run

DEFAULT_SAMPLES = 10_000  # the size of MNIST's test split: FID "10k" compares with the literature's MNIST figures
DEFAULT_NLL_K = 100  # importance samples per example; 1000 (Burda et al.) is tighter but 10x slower on a CPU
MAX_SAMPLES = 50_000  # FID-50k, the largest protocol in the literature; every sample is held in memory at once
MAX_NLL_K = 5000  # Burda et al.'s largest k; its cost grows linearly in k
EVAL_FILE = "eval.json"


def _batched(fn, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    return torch.cat([fn(chunk.to(device)).cpu() for chunk in x.split(batch_size)])


@torch.no_grad()
def _draw(model, n: int, seed: int, batch_size: int = 500) -> torch.Tensor:
    """n samples from the model, in batches, from one seeded generator."""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    return torch.cat([model.sample(min(batch_size, n - start), generator=generator).cpu()
                      for start in range(0, n, batch_size)])


def _feature_space(test: Dataset, features: str | Path | None) -> tuple[FeatureNetwork | None, str | None]:
    """(network or None for raw coordinates, None) or (None, why sample quality is skipped)."""
    if features is not None:
        return load_feature_network(features), None
    if test.kind == "points":
        return None, None
    if test.name == "faces":  # HOG: the offline face features that rank faces right (benchmarks/faces_quality.py)
        return load_feature_network("hog"), None
    if test.shape in ((1, 28, 28), (1, 8, 8)):
        return load_feature_network(), None
    return None, (f"no feature network for {'x'.join(map(str, test.shape))} images: the shipped one takes "
                  "1x28x28 and 1x8x8; pass --features PATH (pytorch-fid's Inception weights .pth, or a FeatureCNN) "
                  "or --features hog")


def _samples(draw, test: Dataset, samples: int) -> tuple[torch.Tensor, float]:
    """The samples every sample metric scores, and the share of their pixels clamped into [0, 1] (images)."""
    fake = draw(samples)
    if test.kind != "image":
        return fake, 0.0
    # Sigmoid outputs are in [0, 1] already; a linear output can overshoot. Clamp, and record how much.
    return fake.clamp(0, 1), ((fake < 0) | (fake > 1)).double().mean().item()


def _sample_quality(fake: torch.Tensor, clamped: float, test: Dataset, data_name: str, samples: int, seed: int,
                    network: FeatureNetwork | None) -> dict:
    real = test.x[:samples]
    if network is None:
        real_features, fake_features = real.flatten(1), fake.flatten(1)
        name, digest = "identity (raw coordinates)", None
    else:
        real_features, fake_features = network.features(real), network.features(fake)
        name, digest = network.name, network.sha256
    result = sample_quality(real_features, fake_features, reference=f"{data_name}/test[:{len(real)}]",
                            feature_network=name, feature_network_sha256=digest, seed=seed,
                            all_real_data=len(real) < samples).to_dict()
    if test.kind == "image":
        result["protocol"]["fake_pixels_clamped_to_0_1"] = clamped
    return result


def _memorization(fake: torch.Tensor, train: Dataset, test: Dataset, data_name: str, seed: int,
                  network: FeatureNetwork | None) -> dict:
    """Copy rate of the samples against the training images, beside held-out images' own (metrics.memorization),
    in the feature space of sample quality, or in pixels where there is none."""
    def embed(x):
        return x.flatten(1) if network is None else network.features(x)

    found = memorization(embed(fake), embed(train.x), embed(test.x))
    protocol = {"reference": f"{data_name}/train ({len(train)} images)", "num_fake": len(fake), "seed": seed,
                "feature_network": "pixels" if network is None else network.name,
                "feature_network_sha256": None if network is None else network.sha256,
                "copy": f"nearest training image under {COPY_RATIO:.3g} x the second nearest's distance",
                "yardstick": found.real}
    scores = {key: value for key, value in found.to_dict().items() if key != "yardstick"}
    return {"scores": {**scores, "copying": found.copying}, "protocol": protocol}


def _reconstruction(model, test: Dataset, data_name: str, samples: int) -> dict:
    x = test.x[:samples]
    device = next(model.parameters()).device
    scores = reconstruction_scores(x, _batched(model.reconstruct, x, 500, device))
    protocol = {"reference": f"{data_name}/test[:{len(x)}]", "num_examples": len(x),
                "code": "posterior mean" if model.has_likelihood else "encoder output"}
    if "ssim" in scores:
        protocol.update(psnr="over the whole set, data range 1", ssim_window=ssim_window(min(x.shape[-2:])))
    return {"scores": scores, "protocol": protocol}


def _nll(model, test: Dataset, data_name: str, samples: int, k: int, seed: int, binarize: bool) -> dict:
    x = test.x[:samples]
    if binarize:
        # A run trained on binarised images is scored on one fixed binarisation of the test images, the
        # usual protocol for binarised MNIST NLLs (Burda et al.).
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        log_px = _batched(lambda chunk: model.log_likelihood(chunk, k), x, 100, device)
    nll = -log_px.double().mean().item()
    dims = math.prod(test.shape)
    likelihood = model.config.likelihood
    return {"scores": {"nll": nll, "bits_per_dim": nats_to_bits_per_dim(nll, dims)},
            "protocol": {"reference": f"{data_name}/test[:{len(x)}]", "num_examples": len(x), "k": k,
                         "seed": seed, "likelihood": likelihood, "binarized": binarize, "units": "nats per example",
                         "note": "compare only runs with the same likelihood and data; a Bernoulli likelihood "
                                 "of grey values is a surrogate, not a probability of the data"}}


def _stacked_modes(draw, seed: int) -> dict:
    """Stacked-MNIST's 1000 modes over 26,000 samples (VEEGAN/PacGAN), each channel labelled by the shipped net."""
    samples = draw(STACKED_SAMPLES)
    clamped = ((samples < 0) | (samples > 1)).double().mean().item()
    coverage = stacked_mnist_coverage(samples.clamp(0, 1))
    network = mnist_feature_network()  # the one classify() used, loaded and checked once
    return {"scores": {"modes_covered": coverage.modes_covered, "num_modes": STACKED_MODES,
                       "reverse_kl": coverage.reverse_kl},
            "protocol": {"reference": "the 1000 digit triples", "num_fake": coverage.num_samples, "seed": seed,
                         "feature_network": network.name, "feature_network_sha256": network.sha256,
                         "kl": "KL(p_gen || uniform), as PacGAN's table 2", "fake_pixels_clamped_to_0_1": clamped}}


def luma(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) Y of ITU-R BT.601 (MATLAB's rgb2ycbcr, which SR tables use),
    rescaled to [0, 1]: Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255. A grey image is its own Y."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=images.dtype, device=images.device)
    return (16 + torch.einsum("bchw,c->bhw", images, weights)[:, None]) / 255


def sharpness(images: torch.Tensor) -> float:
    """Mean gradient magnitude of images' Y channel (finite differences, per pixel, in [0, 1] units): a
    no-reference figure, high for crisp edges and texture, low for blur. Compare with the HR images' own."""
    y = luma(images.double())
    dx, dy = y[..., :, 1:] - y[..., :, :-1], y[..., 1:, :] - y[..., :-1, :]
    return (dx[..., :-1, :] ** 2 + dy[..., :, :-1] ** 2).sqrt().mean().item()


def y_scores(hr: torch.Tensor, sr: torch.Tensor, border: int) -> dict[str, float]:
    """PSNR (dB, mean over images) and SSIM (Gaussian 11x11 window, sigma 1.5, when it fits) of the Y channel, the outer
    `border` pixels cropped: the usual SR protocol (e.g. EDSR's, BasicSR's). Both 8-bit quantised first, as
    the saved PNGs the tables are measured on."""
    def prepared(images):
        quantised = (images.detach().cpu().double().clamp(0, 1) * 255).round() / 255
        return luma(quantised)[..., border:-border, border:-border]

    hr, sr = prepared(hr), prepared(sr)
    psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
    window = ssim_window(min(hr.shape[-2:]))  # 11, or what fits a smaller image (8x8 digits)
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0, kernel_size=window, sigma=1.5 * window / 11)
    return {"psnr": float(psnr(sr, hr)), "ssim": float(ssim(sr, hr))}


def _super_resolution(model, test: Dataset, data_name: str, samples: int, seed: int) -> dict:
    """The model and the bicubic baseline on the same low-resolution inputs, made from the held-out HR crops
    by the model's own degradation (its random draws, if realistic, from `seed`)."""
    hr = test.x[:samples]
    scale = model.config.scale
    lr = model.degrade(hr, torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    sr = _batched(model.upscale, lr, 16, device)
    bicubic = bicubic_upscale(lr, scale)
    model_scores, baseline = y_scores(hr, sr, scale), y_scores(hr, bicubic, scale)
    scores = {"psnr_y": model_scores["psnr"], "ssim_y": model_scores["ssim"],
              "bicubic_psnr_y": baseline["psnr"], "bicubic_ssim_y": baseline["ssim"],
              "psnr_gain_db": model_scores["psnr"] - baseline["psnr"],
              "sharpness": sharpness(sr), "bicubic_sharpness": sharpness(bicubic), "hr_sharpness": sharpness(hr)}
    protocol = {"reference": f"{data_name}/test[:{len(hr)}]", "num_examples": len(hr), "scale": scale,
                "hr_size": list(hr.shape[-2:]), "degradation": model.config.degradation, "seed": seed,
                "resize": "torch bicubic, antialiased (genlab.models.superres.resize)",
                "psnr_ssim": f"Y of ITU-R BT.601, 8-bit quantised, {scale}-pixel border cropped; PSNR averaged "
                             "over images; SSIM Gaussian 11x11, sigma 1.5",
                "sharpness": "mean gradient magnitude of Y; the HR crops' own is hr_sharpness"}
    return {"scores": scores, "protocol": protocol}


def check_evaluation(samples: int | None, nll_k: int) -> None:
    if samples is not None and not 2 <= samples <= MAX_SAMPLES:
        raise ValueError(f"--samples must be between 2 and {MAX_SAMPLES}, got {samples}")
    if not 1 <= nll_k <= MAX_NLL_K:
        raise ValueError(f"the NLL's k (--nll-k) must be between 1 and {MAX_NLL_K}, got {nll_k}")


def evaluate_run(run: str | Path, *, samples: int | None = None, seed: int = 0, nll_k: int = DEFAULT_NLL_K,
                 features: str | Path | None = None, data_dir: str | Path | None = None,
                 device: str | None = None, sampling: SamplingConfig | None = None) -> dict:
    """Evaluate a run's latest checkpoint (or a checkpoint file) and write eval.json beside its checkpoints.

    `samples`: generated samples, and the number of test examples used (default 10,000). Mode coverage of
    the 2-D mixtures always draws 2,500, as VEEGAN and PacGAN do, so its figures compare with theirs.
    """
    check_evaluation(samples, nll_k)
    opened = open_run(run, device=device or "cpu", data_dir=data_dir, splits=("train", "test"))
    return evaluate(opened, samples=samples, seed=seed, nll_k=nll_k, features=features, sampling=sampling)


def eval_file(sampling: SamplingConfig | None) -> str:
    """eval.json, or eval-METHOD.json for D-guided samples (the model's own evaluation stays beside it)."""
    return EVAL_FILE if sampling is None or sampling.method == "direct" else f"eval-{sampling.method}.json"


@loading_once()  # D-guided draws read the training split: once for the whole evaluation
def evaluate(opened: OpenRun, *, samples: int | None = None, seed: int = 0, nll_k: int = DEFAULT_NLL_K,
             features: str | Path | None = None, sampling: SamplingConfig | None = None) -> dict:
    """evaluate_run for a run already opened with its test split; writes eval.json (eval_file) into its folder."""
    check_evaluation(samples, nll_k)
    model, config, test = opened.model, opened.record.train, opened.data["test"]
    n = samples or DEFAULT_SAMPLES
    results: dict = {}
    guided = sampling is not None and sampling.method != "direct"
    costs = []  # each D-guided draw's GuidedSamples

    def draw(count: int) -> torch.Tensor:
        """`count` samples for a metric: the model's own, or D-guided ones (genlab.guided), all from `seed`."""
        if not guided:
            return _draw(model, count, seed)
        costs.append(sample_run(opened, count, sampling, seed))
        return costs[-1].samples

    if model.can_reconstruct:
        results["reconstruction"] = _reconstruction(model, test, config.data, n)
    if model.can_upscale:
        results["super_resolution"] = _super_resolution(model, test, config.data, n, seed)
    if model.has_likelihood:
        results["nll"] = _nll(model, test, config.data, n, nll_k, seed, config.binarize)
    if model.can_sample:
        network, skipped = _feature_space(test, features)
        fake, clamped = _samples(draw, test, n)
        results["sample_quality"] = ({"skipped": skipped} if skipped else
                                     _sample_quality(fake, clamped, test, config.data, n, seed, network))
        if test.kind == "image":
            train = opened.data.get("train")
            results["memorization"] = (
                _memorization(fake, train, test, config.data, seed, network) if train is not None
                else {"skipped": "needs the run's training images: open the run with splits=('train', 'test')"})
        if config.data in MIXTURES:
            coverage = mixture_coverage(draw(NUM_SAMPLES), config.data)
            results["mode_coverage"] = {
                "scores": {"modes_covered": coverage.modes_covered, "num_modes": coverage.num_modes,
                           "high_quality_fraction": coverage.high_quality_fraction,
                           "reverse_kl": coverage.reverse_kl},
                "protocol": {"reference": f"{config.data} mixture centres", "num_fake": coverage.num_samples,
                             "seed": seed, "threshold": "3 std of the mixture"}}
        if config.data == "stacked-mnist":
            results["stacked_mnist_modes"] = _stacked_modes(draw, seed)
    if costs:
        results["sampling"] = _sampling_cost(costs, sampling, opened, config.data)
    report = {"checkpoint": opened.path.name, "step": opened.step, "family": opened.record.family,
              "data": config.data, "genlab_version": genlab.__version__,
              "sampling_method": sampling.method if sampling is not None else "direct", "results": results}
    # A reverse KL with no high-quality sample is inf: json writes it as Infinity, and reads that back.
    atomic_write_bytes(opened.folder / eval_file(sampling), (json.dumps(report, indent=2) + "\n").encode())
    return report


def _sampling_cost(costs: list, sampling: SamplingConfig, opened: OpenRun, data_name: str) -> dict:
    """What the D-guided samples cost over every draw of the evaluation, beside direct sampling's 1 pass."""
    n = sum(len(drawn.samples) for drawn in costs)
    calibration = run_calibration(opened)  # the stored one the draws used
    return {"scores": {"acceptance_rate": sum(d.acceptance_rate * len(d.samples) for d in costs) / n,
                       "passes_per_sample": sum(d.generator_passes + d.discriminator_passes for d in costs) / n,
                       "cpu_ms_per_sample": 1000 * sum(d.cpu_seconds for d in costs) / n},
            "protocol": {"reference": f"{data_name}/{REAL_SPLIT} (D's calibration"
                                      + (", the chains' starts)" if sampling.method == "mh" else ")"),
                         "num_fake": n, "method": sampling.method,
                         "settings": {key: getattr(sampling, key) for key in METHOD_SETTINGS[sampling.method]},
                         "calibration": dataclasses.asdict(calibration),
                         "passes": "one sample through G or D, a backward pass counted as one more; direct: 1"}}


def _protocol_summary(protocol: dict) -> str:
    parts = [protocol["reference"]]
    if "num_fake" in protocol:
        parts.append(f"{protocol['num_fake']} samples")
    if protocol.get("feature_network_sha256"):
        parts.append(f"{protocol['feature_network']} ({protocol['feature_network_sha256'][:8]})")
    if "k" in protocol:
        parts.append(f"k={protocol['k']}")
    if "seed" in protocol:
        parts.append(f"seed {protocol['seed']}")
    return ", ".join(parts)


def rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(group, metric, value, protocol) rows of a report for a printed table; the protocol on a group's first row."""
    table = []
    for group, result in report["results"].items():
        if "skipped" in result:
            table.append((group, "skipped", "", result["skipped"]))
            continue
        summary = _protocol_summary(result["protocol"])
        for index, (name, value) in enumerate(result["scores"].items()):
            shown = f"{value:.5g}" if isinstance(value, float) else str(value)
            table.append((group if index == 0 else "", name, shown, summary if index == 0 else ""))
    return table
