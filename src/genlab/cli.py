"""The `genlab` command: thin Typer commands over library functions.

A user error (bad name, missing file, bad setting, diverged training, a run another trainer holds)
prints one line to stderr and exits with status 1; Ctrl-C prints one line and exits with status 130
(128 + SIGINT, as a shell reports it); tracebacks are for bugs.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import genlab

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Autoencoders, VAEs, GANs and diffusion: train, sample, explore.")


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"genlab {genlab.__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="Print genlab's version and exit.")] = False):
    """Autoencoders, VAEs, GANs and diffusion: train, sample, explore."""
data_app = typer.Typer(no_args_is_help=True, help="Data sets: download and check.")
app.add_typer(data_app, name="data")
console = Console()

RunArg = Annotated[Path, typer.Argument(help="A run folder (its latest checkpoint) or a .safetensors checkpoint.")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto (the default: CUDA, then Apple's MPS, then the CPU), "
                                                    "cpu, cuda, cuda:1... or mps.")]
DataDirOpt = Annotated[Path | None, typer.Option(envvar="GENLAB_DATA_DIR",
                                                 help="Folder of downloaded data sets (default ~/.cache/genlab/data).")]


def user_errors(command):
    """Turn the errors a user can fix into one line on stderr and exit status 1; Ctrl-C into one line and 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        # imported when a command runs, not when the CLI is built: they bring torch, and `genlab --help` need not
        from genlab.run import RunInUse
        from genlab.train import TrainingDiverged

        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as interrupt:  # training's TrainingInterrupted says where the run stopped
            typer.echo(str(interrupt) or "interrupted", err=True)
            raise typer.Exit(130) from None
        except (ValueError, TrainingDiverged, RunInUse) as error:
            message = str(error)
        except OSError as error:
            # genlab's own (FileNotFoundError("no checkpoint at ...")) carry their message; the system's (a full
            # disk, a read-only folder, --out naming a folder) carry an errno, and get a line that says what to do
            message = describe_os_error(error) if error.errno is not None else str(error)
        # Plain text, not Rich markup: paths and values in the message may hold brackets.
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None

    return wrapper


OS_ERROR_ADVICE = {
    errno.ENOSPC: "free some space (what was saved before is intact) and run the command again",
    errno.EDQUOT: "free some space (what was saved before is intact) and run the command again",
    errno.EACCES: "choose a folder you can write to (--run, --out)",
    errno.EPERM: "choose a folder you can write to (--run, --out)",
    errno.EROFS: "the file system is read-only: choose another folder (--run, --out)",
    errno.EISDIR: "that names a folder: give a file name, e.g. --out picture.png",
    errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EEXIST: "a file is in the way of a folder genlab needs: choose another path",
}


def describe_os_error(error: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and what to do about it."""
    what = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    advice = OS_ERROR_ADVICE.get(error.errno, "check the path and try again")
    return f"{what}{where}: {advice}"


def _new_run_dir(family: str, data: str) -> Path:
    stem = f"runs/{family}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', data.removeprefix('folder:')).strip('_')}"
    candidate, n = Path(stem), 2
    while candidate.exists():
        candidate, n = Path(f"{stem}-{n}"), n + 1
    return candidate


# The --set keys of each config, written out so that `genlab train --help` needs no torch (the configs live beside
# their networks); tests/test_cli_start.py checks this against the dataclasses, so it cannot drift.
SETTING_NAMES = {
    "training": "steps batch_size accumulate lr lr_schedule seed binarize image_size channels crop precision compile "
                "log_every sample_every checkpoint_every keep_checkpoints",
    "ae": "architecture latent_dim hidden_dims conv_channels code_activation reconstruction noise_std",
    "vae": "architecture latent_dim hidden_dims conv_channels likelihood beta kl_warmup",
    "gan": "architecture latent_dim hidden_dims conv_channels output loss gp_weight r1_weight clip_value "
           "spectral_norm pack minibatch_stddev augment augment_policy ada_target ada_images ema_decay n_critic lr_d "
           "betas freeze_d",
    "ddpm": "num_timesteps schedule architecture hidden_dims unet_channels ema_decay sampler sampling_steps",
    "vqvae": "architecture num_codes latent_dim hidden_dims conv_channels mlp_codes commitment reconstruction",
    "progan": "latent_dim max_channels fade_steps stable_steps gp_weight drift_weight ema_decay betas",
    "superres": "scale g_channels blocks block stage degradation feature_weight adversarial_weight d_channels d_layers "
                "spectral_norm ema_decay betas",
}
FAMILY_NAMES = [name for name in SETTING_NAMES if name != "training"]
SETTINGS_HELP = "Settings: " + "; ".join(f"{what}: {names}" for what, names in SETTING_NAMES.items()) + "."


@app.command()
@user_errors
def train(
    family: Annotated[str | None, typer.Argument(help=f"{', '.join(FAMILY_NAMES)} (not needed with --resume).")] = None,
    data: Annotated[str, typer.Option(help="digits, mnist, stacked-mnist, patterns, gaussian1d, ring, grid, moons, "
                                           "swissroll, faces, photos, folder:PATH, or photos:PATH (super-resolution: "
                                           "your photos, cropped as photos).")] = "digits",
    steps: Annotated[int | None, typer.Option(help="Total training steps (default 3000).")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="key=value, model or training setting; "
                                                       "repeat it. E.g. --set latent_dim=2 --set lr=3e-4. "
                                                       + SETTINGS_HELP)] = None,
    run: Annotated[Path | None, typer.Option(help="Run folder to create (default runs/FAMILY-DATA).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue this run folder from its latest checkpoint; --set may "
                                                     "change lr, lr_d and the log/sample/checkpoint cadence.")] = None,
    init_from: Annotated[Path | None, typer.Option(help="Fine-tune: a new run that starts from this run's latest "
                                                        "checkpoint (or a .safetensors file) with its model "
                                                        "settings; --data may differ but not its shape.")] = None,
    budget: Annotated[str | None, typer.Option(help="CPU time to spend, e.g. 90s, 10m, 1h: the run ends at the "
                                                     "step count it affords (at most --steps).")] = None,
    device: DeviceOpt = None,
    data_dir: DataDirOpt = None,
):
    """Train a model; the run folder gets config.json, metrics.jsonl, checkpoints/ and samples/. Under torchrun
    (`torchrun --nproc_per_node 2 -m genlab train ...`) every process trains its share of each batch."""
    from genlab import distributed
    from genlab.models import family as family_record
    from genlab.run import loading_once, read_run_record
    from genlab.train import resolve_device
    from genlab.train import train as train_run

    # Everything that can be refused is checked before a run folder is made or changed.
    cpu_budget = parse_duration(budget) if budget is not None else None
    with distributed.process_group(resolve_device(device)) as device, loading_once():
        # loading_once: create_run checks the data and train() trains on it, so each split is loaded once.
        # Under torchrun rank 0 alone creates or changes the run folder; the others are told its path.
        run_dir = distributed.shared(functools.partial(_prepare_run, family, data, steps, settings, run, resume,
                                                       init_from, data_dir))
        if distributed.current().is_main:
            console.print(f"run folder: {run_dir}", markup=False)
        last = train_run(run_dir, device=device, data_dir=data_dir, progress=True, cpu_budget=cpu_budget)
        main = distributed.current().is_main
        if main:
            console.print(f"done: {last}", markup=False)
    # Once the ranks have parted, one process fits what the family fits on a trained model (the AE's sampler).
    if main and (finish := family_record(read_run_record(run_dir).family).after_training) is not None:
        console.print(finish(run_dir, device=device, data_dir=data_dir), markup=False)


def _prepare_run(family, data, steps, settings, run, resume, init_from, data_dir) -> Path:
    """The run folder `genlab train` trains: created, or resumed with the settings the command changes."""
    from genlab.config import parse_overrides
    from genlab.models import family_classes
    from genlab.run import change_run_settings, create_run, read_run_record
    from genlab.train import TrainConfig

    if resume is not None:
        if family is not None:
            raise ValueError("--resume continues a run of the family it was made with: drop FAMILY")
        if init_from is not None:
            raise ValueError("--init-from starts a new run; --resume continues one: give one of them")
        run_dir = resume
        record = read_run_record(run_dir)
        changes = {key: value for part in parse_overrides(settings or [], [TrainConfig, type(record.model)])
                   for key, value in part.items()}
        if steps is not None:
            changes["steps"] = steps
        if changes:
            change_run_settings(run_dir, changes)
    else:
        if family is None:
            raise ValueError("name a model family, e.g. `genlab train vae --data digits`, or pass --resume RUN")
        _, config_class = family_classes(family)
        train_settings, model_settings = parse_overrides(settings or [], [TrainConfig, config_class])
        if own := sorted({"data", "data_dir"} & set(train_settings)):  # else --set would quietly beat the option
            raise ValueError(f"{own[0]} is not a --set setting: use --{own[0].replace('_', '-')}")
        step_setting = {"steps": steps} if steps is not None else {}
        found_in = {"data_dir": str(data_dir)} if data_dir is not None else {}  # remembered for later commands
        train_config = TrainConfig(**{"data": data, **found_in, **step_setting, **train_settings})
        run_dir = create_run(run or _new_run_dir(family, data), family, train_config, model_settings, data_dir,
                             init_from=init_from)
    return run_dir


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '10m' or '1.5h'."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in DURATION_UNITS else (text, "s")
    try:
        seconds = float(number) * DURATION_UNITS[unit]
    except ValueError:
        raise ValueError(f"cannot read the duration {text!r}: write e.g. 90s, 10m or 1h") from None
    if not 0 < seconds <= MAX_DURATION:
        raise ValueError(f"the duration {text!r} must be positive and at most 1000h")
    return seconds


MAX_DURATION = 1000 * 3600  # a budget is CPU time for one run: six weeks is past any run of this lab


def _open(run: Path, device: str | None, data_dir: Path | None = None, splits: tuple[str, ...] = ()):
    """The run or checkpoint opened on the chosen device, with the data splits the command uses."""
    from genlab.run import open_run
    from genlab.train import resolve_device

    return open_run(run, device=resolve_device(device), data_dir=data_dir, splits=splits)


def check_seed(seed: int) -> None:
    from genlab.data import MAX_SEED  # the seeds every generator in genlab takes

    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed must be between 0 and {MAX_SEED}, got {seed}")


def _output_folder(run: Path) -> Path:
    return run if run.is_dir() else run.parent.parent


def _source(run: Path, step: int) -> str:
    """What a picture is of, for its title: "vae-digits, step 3000"."""
    return f"{_output_folder(run).name}, step {step}"


MethodOpt = Annotated[str, typer.Option(help="gan: direct (G(z)), or guided by the discriminator: rejection (DRS), "
                                             "mh (MH-GAN) or latent-mcmc (DDLS); see README 'Sampling with the "
                                             "discriminator'.")]
MethodSettingsOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="key=value, a setting of --method; repeat it. rejection: percentile gamma epsilon burn_in "
                  "max_proposals; mh: chain_length; latent-mcmc: step_size langevin_steps.")]


def _method_settings(pairs: list[str] | None) -> dict[str, str]:
    from genlab.config import key_values

    return key_values(pairs or [], example="percentile=90")


@app.command()
@user_errors
def sample(run: RunArg, n: Annotated[int, typer.Option(help="How many samples.")] = 64,
           seed: int = 0, out: Annotated[Path | None, typer.Option(help="PNG to write.")] = None,
           timesteps: Annotated[int | None, typer.Option(help="ddpm: how many of the T timesteps to visit "
                                                               "(default: the model's).")] = None,
           sampler: Annotated[str | None, typer.Option(help="ddpm: ddpm (ancestral) or ddim (deterministic).")] = None,
           truncation: Annotated[float | None, typer.Option(help="gan: the truncation trick, t in (0, 10]: each "
                                                                 "number of z drawn from N(0, 1) cut to [-t, t], "
                                                                 "typical samples for less variety.")] = None,
           method: MethodOpt = "direct", method_settings: MethodSettingsOpt = None,
           device: DeviceOpt = None, data_dir: DataDirOpt = None):
    """Draw samples from a trained model and save them as a PNG grid (or a scatter plot for points)."""
    from genlab.data import TOYS
    from genlab.explore import save_picture
    from genlab.guided import sampling_config
    from genlab.models.layers import MAX_TRUNCATION
    from genlab.run import load_run_data

    if not 1 <= n <= 10_000:
        raise ValueError(f"--n must be between 1 and 10000, got {n}")
    check_seed(seed)
    sampling = sampling_config(method, _method_settings(method_settings))
    if method != "direct" and truncation is not None:
        raise ValueError(f"--truncation and --method {method} do not combine: D guides samples of the untruncated z")
    opened = _open(run, device)
    if method != "direct":
        _write_guided_samples(opened, run, sampling, n, seed, out, data_dir)
        return
    model, family = opened.model, opened.record.family
    if not model.can_sample:
        if model.fits_sampler:  # an autoencoder, whose sampler is fitted after training
            from genlab.models.autoencoder import NO_SAMPLER

            raise ValueError(NO_SAMPLER.format(run=_output_folder(run)))
        raise ValueError(f"a {family} model does not sample: try `genlab reconstruct` or train a vae")
    given = [option for option, value in (("--timesteps", timesteps), ("--sampler", sampler)) if value is not None]
    if given and family != "ddpm":
        raise ValueError(f"{' and '.join(given)} only apply to ddpm models; this is a {family}")
    options = {"steps": timesteps, "sampler": sampler} if given else {}  # None: the model's default
    if truncation is not None:
        if not _walks_latents(model):
            raise ValueError(f"--truncation applies to gan models (the truncation trick in z); a {family} has none")
        if not 0 < truncation <= MAX_TRUNCATION:  # also refuses NaN
            raise ValueError(f"--truncation must be above 0 and at most {MAX_TRUNCATION:g}, got {truncation}")
        options["truncation"] = truncation
    # each count, sampler, number of timesteps and truncation gets its own default file: comparing them never
    # overwrites
    how = "".join(f"-{name}{value}" for name, value in (("", sampler), ("t", timesteps), ("trunc", truncation))
                  if value is not None)
    out = out or _output_folder(run) / f"sample-step{opened.step}-seed{seed}-n{n}{how}.png"
    shown = _source(run, opened.step) + (f", truncation {truncation:g}" if truncation is not None else "")
    # toys are generated, so their test split is at hand: points are drawn with the data they should match
    data = load_run_data(opened.record.train, "test") if opened.record.train.data in TOYS else None
    save_picture(out, model, data, shows="samples", n=n, seed=seed, sample_options=options, title=shown)
    console.print(f"wrote {out}", markup=False)


def _write_guided_samples(opened, run: Path, sampling, n: int, seed: int, out: Path | None,
                          data_dir: Path | None) -> None:
    """`genlab sample --method ...`: D-guided samples as a picture, and what they cost beside direct sampling."""
    from genlab.checkpoint import atomic_write_bytes
    from genlab.data import TOYS
    from genlab.explore import image_grid_png, points_png
    from genlab.guided import sample_run
    from genlab.run import load_run_data

    drawn = sample_run(opened, n, sampling, seed=seed, data_dir=data_dir)
    cost = drawn.cost()
    words = (f"{sampling.method}, acceptance {cost['acceptance_rate']:.3g}, {cost['passes_per_sample']:.3g} G+D "
             "passes a sample")
    title = f"{_source(run, opened.step)}: {n} samples (seed {seed}, {words})"
    out = out or _output_folder(run) / f"sample-step{opened.step}-seed{seed}-n{n}-{sampling.label}.png"
    if drawn.samples.dim() == 4:
        picture = image_grid_png(drawn.samples, title)
    else:
        data = load_run_data(opened.record.train, "test") if opened.record.train.data in TOYS else None
        picture = points_png(drawn.samples, None if data is None else data.x, title, opened.record.train.data,
                             f"{sampling.method} samples")
    atomic_write_bytes(out, picture)
    console.print(f"wrote {out}", markup=False)
    console.print(f"{words}, {cost['cpu_ms_per_sample']:.3g} CPU-ms a sample (direct sampling: 1 pass)",
                  markup=False)


@app.command("fit-sampler")
@user_errors
def fit_sampler(run: RunArg,
                components: Annotated[int, typer.Option(help="Gaussians in the mixture (1..100).")] = 10,
                seed: Annotated[int, typer.Option(help="Seeds the k-means start of EM: the same seed, the same "
                                                       "mixture.")] = 0,
                device: DeviceOpt = None, data_dir: DataDirOpt = None):
    """Fit an autoencoder's sampler: a Gaussian mixture on the codes of its training data (full covariances), kept
    in the run folder as sampler.safetensors; then `genlab sample`, serve and compare draw from it. `genlab train
    ae` fits one with the defaults when training ends."""
    from genlab.models.autoencoder import fit_sampler as fit
    from genlab.train import resolve_device

    fitted = fit(run, components=components, seed=seed, device=resolve_device(device), data_dir=data_dir)
    console.print(f"wrote {fitted.path} ({len(fitted.mixture.weights)} components, fitted on {fitted.codes:,} "
                  f"training codes of step {fitted.mixture.step})", markup=False)


@app.command()
@user_errors
def reconstruct(run: RunArg, n: Annotated[int, typer.Option(help="How many test examples.")] = 16,
                out: Annotated[Path | None, typer.Option(help="PNG to write.")] = None,
                device: DeviceOpt = None, data_dir: DataDirOpt = None):
    """Reconstruct test examples: originals and reconstructions side by side (points: over the test data)."""
    from genlab.explore import save_picture

    opened = _open(run, device, data_dir, splits=("test",))
    model, test = opened.model, opened.data["test"]
    if not model.can_reconstruct:
        raise ValueError(f"a {opened.record.family} model has no encoder to reconstruct with: try `genlab sample`")
    if not 1 <= n <= len(test):
        raise ValueError(f"--n must be between 1 and {len(test)} (the test split's size), got {n}")
    out = out or _output_folder(run) / f"reconstruct-step{opened.step}-n{n}.png"
    save_picture(out, model, test, shows="reconstructions", n=n, title=_source(run, opened.step))
    console.print(f"wrote {out}", markup=False)


def _walks_latents(model) -> bool:
    """Whether the model declares latent tools on its prior z (truncation, paths between seeds): the GAN does;
    a family that does not declare it has none."""
    return getattr(model, "can_walk_latents", False)


@app.command()
@user_errors
def interpolate(run: RunArg,
                start: Annotated[int | None, typer.Option("--from", help="ae/vae: test example index (default 0).")]
                = None,
                end: Annotated[int | None, typer.Option("--to", help="ae/vae: test example index (default 1).")] = None,
                seeds: Annotated[tuple[int, int] | None, typer.Option(help="gan: two seeds, e.g. --seeds 3 7: the "
                                                                          "path between the latents they draw.")]
                = None,
                frames: Annotated[int, typer.Option(help="Images in each strip, ends included.")] = 10,
                method: Annotated[str, typer.Option(help="lerp, slerp or both.")] = "both",
                out: Annotated[Path | None, typer.Option(help="PNG to write.")] = None,
                device: DeviceOpt = None, data_dir: DataDirOpt = None):
    """Decode a path through latent space: between two test images (ae, vae) or two seeds' draws (gan)."""

    from genlab.explore import save_interpolation

    if method not in ("lerp", "slerp", "both"):
        raise ValueError(f"unknown interpolation method {method!r}: choose lerp, slerp or both")
    methods = ["lerp", "slerp"] if method == "both" else [method]
    if not 2 <= frames <= 100:
        raise ValueError(f"--frames must be between 2 and 100, got {frames}")
    if seeds is not None:
        if start is not None or end is not None:
            raise ValueError("--seeds chooses the ends as latent draws; --from and --to as test images: give one")
        for seed in seeds:
            check_seed(seed)
        opened = _open(run, device)
        model, family = opened.model, opened.record.family
        if not _walks_latents(model):
            raise ValueError(f"--seeds interpolates between latent draws of a gan; a {family} interpolates between "
                             "test images: use --from and --to")
        if len(opened.record.model.data_shape) != 3:
            raise ValueError("interpolate draws image strips; this run's data are points")
        rows = {m: model.interpolate_seeds(*seeds, frames, m) for m in methods}
        ends = next(iter(rows.values()))[[0, -1]]  # every method starts and ends at the two seeds' samples
        rows = {m: strip[1:-1] for m, strip in rows.items()}
        out = out or _output_folder(run) / f"interpolate-step{opened.step}-seeds{seeds[0]}-{seeds[1]}-{method}-" \
                                           f"{frames}frames.png"
        save_interpolation(ends, rows, out, f"{_source(run, opened.step)}: seeds {seeds[0]} -> {seeds[1]}",
                           ends="seed's sample")
        console.print(f"wrote {out} (rows: {', '.join(methods)})", markup=False)
        return
    start, end = (0 if start is None else start), (1 if end is None else end)
    opened = _open(run, device, data_dir, splits=("test",))
    model, test = opened.model, opened.data["test"]
    if not model.can_interpolate:
        hint = ": use --seeds A B to interpolate between two latent draws" if _walks_latents(model) else ""
        raise ValueError(f"a {opened.record.family} model has no encoder to place images in its latent space{hint}")
    if test.kind != "image":
        raise ValueError("interpolate draws image strips; this run's data are points")
    for index in (start, end):
        if not 0 <= index < len(test):
            raise ValueError(f"example index {index} is outside the test split (0..{len(test) - 1})")
    x = test.x[[start, end]].to(next(model.parameters()).device)
    rows = {m: model.interpolate(x[0], x[1], frames, m) for m in methods}
    # the step and frame count in the name: strips from two checkpoints, or of two lengths, never overwrite
    out = out or _output_folder(run) / f"interpolate-step{opened.step}-{start}-{end}-{method}-{frames}frames.png"
    save_interpolation(x, rows, out, f"{_source(run, opened.step)}: test images {start} -> {end}")
    console.print(f"wrote {out} (rows: {', '.join(methods)})", markup=False)


@app.command()
@user_errors
def upscale(run: Annotated[Path, typer.Argument(help="A super-resolution run (its latest checkpoint) or checkpoint: "
                                                     "the GAN model, with --alpha.")],
            image: Annotated[Path, typer.Argument(help="The PNG or JPEG to upscale: any size, grey, RGB or with "
                                                       "transparency.")],
            out: Annotated[Path | None, typer.Option(help="PNG to write (default: in the run folder).")] = None,
            alpha: Annotated[float | None, typer.Option(help="ESRGAN's network interpolation, 0 (the PSNR model: "
                                                             "smooth) to 1 (RUN: sharp detail); the PSNR model is "
                                                             "--psnr-run, else the run RUN was started from.")]
            = None,
            psnr_run: Annotated[Path | None, typer.Option(help="With --alpha: the PSNR model (run or checkpoint), "
                                                               "when RUN was not started from it.")] = None,
            tile: Annotated[int, typer.Option(help="Low-resolution pixels a side per pass: memory is one tile's.")]
            = 128,
            device: DeviceOpt = None):
    """Upscale a picture with a super-resolution model, tile by tile; --alpha blends the PSNR and GAN models."""
    from genlab.models.superres import interpolate_weights
    from genlab.upscale import psnr_source, upscale_file

    if not 16 <= tile <= 1024:
        raise ValueError(f"--tile must be between 16 and 1024 pixels, got {tile}")
    if psnr_run is not None and alpha is None:
        raise ValueError("--psnr-run is the PSNR end of --alpha: give --alpha too, e.g. --alpha 0.8")
    opened = _open(run, device)
    model = opened.model
    if not getattr(model, "can_upscale", False):
        raise ValueError(f"a {opened.record.family} model does not upscale: give a superres run")
    if alpha is not None:
        if not 0 <= alpha <= 1:
            raise ValueError(f"--alpha must be between 0 (PSNR model) and 1 (GAN model), got {alpha}")
        psnr = _open(psnr_source(opened.record, psnr_run), device)
        if psnr.record.family != "superres":
            raise ValueError(f"--psnr-run is a {psnr.record.family} run: give a superres run")
        model = interpolate_weights(psnr.model, model, alpha)
    blend = f"-alpha{alpha:g}" if alpha is not None else ""
    out = out or _output_folder(run) / f"upscale-{image.stem}-step{opened.step}{blend}.png"
    width, height = upscale_file(model, image, out, tile=tile)
    console.print(f"wrote {out} ({width}x{height}, x{opened.record.model.scale}"
                  f"{f', alpha {alpha:g}' if alpha is not None else ''})", markup=False)


@app.command()
@user_errors
def info(run: RunArg):
    """What a run or checkpoint is: family, configs, step, checkpoints and the latest metrics."""
    from genlab.checkpoint import list_checkpoints, read_meta_and_record, resolve_checkpoint
    from genlab.run import read_metrics

    meta, record = read_meta_and_record(resolve_checkpoint(run))  # not the weights: info works on damaged ones
    saved = record.to_json()
    console.print(f"[bold]{record.family}[/] at step {meta['step']} of {record.train.steps} "
                  f"(genlab {meta.get('genlab_version', 'unknown')}, checkpoint format {meta['format_version']})")
    console.print(f"data: {record.train.data}, position {meta['data_position']}")
    if record.init_from is not None:
        source = record.init_from
        console.print(f"fine-tuned from: {source.path} (step {source.step}, sha256 {source.sha256})", markup=False)
    console.print("model: " + ", ".join(f"{k}={v}" for k, v in saved["model"].items()))
    console.print("train: " + ", ".join(f"{k}={v}" for k, v in saved["train"].items()))
    if run.is_dir():
        console.print("checkpoints: " + ", ".join(p.name for p in list_checkpoints(run)))
        _print_run_files(run, record)
        if records := read_metrics(run / "metrics.jsonl"):
            last = records[-1]
            if "warning" in last:
                console.print(f"[red]collapse warning[/] at step {last['step']}: ", end="")
                console.print(last["warning"], markup=False)
            console.print("latest metrics: " + ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}"
                                                         for k, v in last.items() if k != "warning"), markup=False)


def _print_run_files(run: Path, record) -> None:
    """What `genlab info` says of the files made after training beside the checkpoints (a fitted sampler, D's
    calibration for guided sampling, evaluations), and of a sampler a family needs and the run has not fitted."""
    from genlab.guided import CALIBRATION_FILE
    from genlab.models import family
    from genlab.models.autoencoder import SAMPLER_FILE

    made = sorted(path.name for path in run.iterdir() if path.is_file() and (
        path.name in (SAMPLER_FILE, CALIBRATION_FILE) or (path.name.startswith("eval") and path.suffix == ".json")))
    if made:
        console.print("beside them: " + ", ".join(made), markup=False)
    if family(record.family).model.fits_sampler and SAMPLER_FILE not in made:
        console.print(f"no sampler fitted yet: it samples once `genlab fit-sampler {run}` has fitted one",
                      markup=False)


SamplesOpt = Annotated[int | None, typer.Option(help="Generated samples, and test examples used (default 10000; "
                                                   "ring/grid mode coverage always draws 2500).")]
FeaturesOpt = Annotated[Path | None, typer.Option(help="Feature network for images other than MNIST and digits: "
                                                       "pytorch-fid's Inception weights (.pth) or a FeatureCNN "
                                                       "(.safetensors), or hog (histograms of oriented gradients, "
                                                       "the default for faces).")]


@app.command("eval")
@user_errors
def evaluate(run: RunArg, samples: SamplesOpt = None, seed: int = 0,
             nll_k: Annotated[int, typer.Option(help="Importance samples per example for the VAE's NLL.")] = 100,
             features: FeaturesOpt = None, method: MethodOpt = "direct", method_settings: MethodSettingsOpt = None,
             device: DeviceOpt = None, data_dir: DataDirOpt = None):
    """Measure a run (reconstruction, NLL, FID/KID/precision/recall/density/coverage, modes); writes eval.json
    (eval-METHOD.json for D-guided samples)."""
    from rich.table import Table

    from genlab.evaluate import eval_file, evaluate_run, rows
    from genlab.guided import sampling_config
    from genlab.train import resolve_device

    check_seed(seed)
    sampling = sampling_config(method, _method_settings(method_settings))
    report = evaluate_run(run, samples=samples, seed=seed, nll_k=nll_k, features=features, data_dir=data_dir,
                          device=resolve_device(device), sampling=sampling)
    guided = f", {report['sampling_method']} sampling" if report["sampling_method"] != "direct" else ""
    table = Table(title=f"{report['family']} on {report['data']}, step {report['step']}{guided}")
    for column in ("group", "metric", "value", "protocol"):
        table.add_column(column)
    for row in rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"wrote {_output_folder(run) / eval_file(sampling)} (scores with their protocols)", markup=False)


@app.command("compare")
@user_errors
def compare_command(
    data: Annotated[str, typer.Option(help="digits or mnist (the feature network's images).")] = "mnist",
    budget: Annotated[str, typer.Option(help="CPU time each run trains for, e.g. 90s, 10m.")] = "10m",
    seeds: Annotated[int, typer.Option(help="Runs per family (1..10); the table shows their spread.")] = 3,
    out: Annotated[Path | None, typer.Option(help="Folder for the runs and the report (default runs/compare-DATA).")]
    = None,
    runs_from: Annotated[Path | None, typer.Option(help="Evaluate the FAMILY-seedN runs in this folder instead "
                                                        "of training.")] = None,
    samples: Annotated[int, typer.Option(help="Samples (and test images) per FID/precision/recall.")] = 2000,
    gan_method: Annotated[str, typer.Option(help="A second GAN row sampled with D's help: rejection, mh or "
                                                 "latent-mcmc (direct: none).")] = "direct",
    method_settings: MethodSettingsOpt = None,
    data_dir: DataDirOpt = None,
):
    """Train AE, VAE, GAN and DDPM under one CPU budget each, evaluate them alike, write the lesson's table
    measured (compare.md, compare.html, compare.png)."""
    from genlab.compare import compare, markdown_table
    from genlab.guided import sampling_config

    out = out or Path(f"runs/compare-{data}")
    cpu_budget = parse_duration(budget) if runs_from is None else None
    sampling = sampling_config(gan_method, _method_settings(method_settings))
    summary = compare(out, data=data, budget=cpu_budget, seeds=seeds, runs_from=runs_from, samples=samples,
                      data_dir=data_dir, gan_method=sampling,
                      on_run=lambda family, seed: console.print(f"training {family} seed {seed}", markup=False))
    typer.echo(markdown_table(summary["table"]))
    console.print(f"wrote {out / 'compare.md'}, {out / 'compare.html'}, {out / 'compare.png'}", markup=False)


@app.command()
@user_errors
def lesson(name: Annotated[str, typer.Argument(help="autoencoder, vae, gan or faces.")],
           out: Annotated[Path, typer.Option(help="Folder for the lesson's pictures.")] = Path("runs/lessons"),
           data_dir: DataDirOpt = None):
    """The lesson's examples: `autoencoder` (3x3 patterns in 3 numbers), `vae` (a 2-D latent), `gan` (the 1-D duel),
    `faces` (progressive growing on 100 faces)."""
    from genlab import lessons

    if name not in lessons.LESSONS:
        raise ValueError(f"unknown lesson {name!r}: choose one of {', '.join(lessons.LESSONS)}")
    lessons.LESSONS[name](out, console, data_dir=data_dir)


def _listen(host: str, port: int):
    """A socket bound to host:port and listening, for uvicorn; ValueError with what to change when it cannot be."""
    import socket

    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {port}")
    if not host.strip():  # the socket would take "" for every interface: the opposite of what a slip means
        raise ValueError("--host is empty: give an address, e.g. 127.0.0.1 (0.0.0.0 listens on every interface)")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait out TIME_WAIT
    try:
        sock.bind((host, port))
        sock.listen(2048)  # from now on a client that comes early waits in the backlog instead of being refused
    except OSError as error:
        sock.close()
        advice = "pick another --port" if error.errno in (errno.EADDRINUSE, errno.EACCES) else \
            "give an address of this machine as --host, e.g. 127.0.0.1"
        raise ValueError(f"cannot listen on {host}:{port} ({error.strerror}): {advice}") from None
    return sock


@app.command()
@user_errors
def lab(port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
        host: Annotated[str, typer.Option(help="Address to bind; other machines reach the lab only if you "
                                               "change it from 127.0.0.1.")] = "127.0.0.1",
        runs: Annotated[Path, typer.Option(help="Folder the dashboard lists and starts runs in.")] = Path("runs"),
        data_dir: DataDirOpt = None):
    """Start the live web lab: GAN playground, training dashboard, autoencoder bench, latent explorer."""
    import uvicorn

    from genlab.web.app import MAX_MESSAGE, create_app
    from genlab.web.guard import served_hosts

    sock = _listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"genlab lab on http://{shown}:{sock.getsockname()[1]}/  (runs in {runs}; Ctrl-C stops it)",
                  markup=False)
    lab_app = create_app(runs, data_dir=data_dir, warm_up=True, allowed_hosts=served_hosts(host, sock.getsockname()[1]))
    # ws_max_size: a message the lab refuses is not read into memory first (UTF-8: at most 4 bytes a character)
    config = uvicorn.Config(lab_app, log_level="warning", ws_max_size=4 * MAX_MESSAGE)
    uvicorn.Server(config).run(sockets=[sock])


@data_app.command("download")
@user_errors
def download(name: Annotated[str, typer.Argument(help="mnist")], data_dir: DataDirOpt = None):
    """Download a data set into the data folder and check its SHA-256."""
    from genlab.data import default_data_dir
    from genlab.data.images import download_mnist

    if name != "mnist":
        raise ValueError(f"unknown data set {name!r} to download: only mnist is downloaded "
                         "(digits ships with scikit-learn; toys are generated)")
    folder = (data_dir or default_data_dir()) / "mnist"
    for path in download_mnist(folder):
        console.print(f"ok {path}", markup=False)


def main():
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from genlab import distributed

        distributed.defer_termination()
    try:
        app()
    except SystemExit as done:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Under torchrun a process whose run has ended (saved, the process group destroyed) was sometimes
            # aborted while the interpreter finalized ("terminate called without an active exception", SIGABRT, 1
            # launch in ~10 in the suite on a loaded machine; gloo's threads at finalization, pytorch/pytorch#179291),
            # and torchrun then reports the whole run failed. Everything is written by now: leave without finalizing.
            code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(code)
        raise


@app.command()
@user_errors
def serve(runs: Annotated[list[Path], typer.Argument(help="Run folders or checkpoints; each is served under its "
                                                           "folder's name.")],
          port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
          host: Annotated[str, typer.Option(help="Address to bind; off loopback a --token is required.")] = "127.0.0.1",
          token: Annotated[str | None, typer.Option(envvar="GENLAB_SERVE_TOKEN", show_default=False,
                                                    help="API key clients send as `Authorization: Bearer TOKEN` "
                                                         "(better from the environment: a command line is visible "
                                                         "to every user of the machine).")] = None,
          batch: Annotated[int, typer.Option(help="Rows in every forward pass; requests share them. 1: no "
                                                  "batching.")] = 8,
          device: DeviceOpt = None):
    """Serve trained runs over HTTP: sample, interpolate, reconstruct, encode (see the README's curl lines)."""
    import ipaddress

    import uvicorn

    from genlab.web.guard import served_hosts
    from genlab.web.serve import check_batch_size, create_server

    names = [_output_folder(run).name for run in runs]
    if len(set(names)) < len(names):
        raise ValueError("two runs have the same folder name, which is what the server calls them: "
                         "serve runs from differently named folders")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token:
        raise ValueError(f"--host {host} lets other machines in: set a token (--token, or GENLAB_SERVE_TOKEN in "
                         "the environment) that clients send as `Authorization: Bearer TOKEN`")
    check_batch_size(batch)
    models = {name: _open(run, device) for name, run in zip(names, runs, strict=True)}  # a bad run: one line
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    server_app = create_server(models, batch_size=batch, token=token or None, allowed_hosts=served_hosts(host, port))
    shown = f"[{host}]" if ":" in host else host
    console.print(f"genlab serve on http://{shown}:{port}/  ({', '.join(names)}; GET /models lists what each "
                  "does; Ctrl-C stops it)", markup=False)
    uvicorn.Server(uvicorn.Config(server_app, log_level="warning")).run(sockets=[sock])
