"""DCGAN training speed: genlab's loop against a plain hand-written PyTorch loop, and the samples a
fixed CPU budget buys.

    python benchmarks/gan_throughput.py                      # 3 alternating rounds of 40 steps, then 600 CPU-s
    python benchmarks/gan_throughput.py --rounds 5 --skip-budget --threads 1
    python benchmarks/gan_throughput.py --rounds 0 --threads 1          # only the 600 CPU-s samples run
    python benchmarks/gan_throughput.py --size 64 --threads 1           # CPU-s per step of a 64x64 RGB DCGAN

Both contenders train the same networks (genlab's DCGAN generator and discriminator for 28x28 MNIST,
built once per round from the same seed) with the same batch (128), loss (non-saturating, i.e. BCE with
the "real" label for G, as in pytorch/examples' dcgan) and optimizer (Adam 2e-4, betas 0.5/0.999):
  plain   pytorch/examples' dcgan loop written out here, over DataLoader(TensorDataset(x), shuffle=True):
          D on real, D on detached fakes, D step, then G through D on the same fakes, G step.
  genlab  genlab.train.train on a fresh run; images/s is the one log record's, which times the loop;
          twice: in float32 (the same arithmetic as plain) and with precision=bf16-mixed (autocast to
          bfloat16 for the forward passes; AMX CPUs run those convolutions ~1.8x faster).
They alternate in one process (order reversed every round); ratios are of medians. Target: >= 1.3x.
Then genlab trains the DCGAN (bf16-mixed, EMA generator) for --budget CPU seconds (time.process_time;
train()'s cpu_budget) and saves its samples to benchmarks/out/gan_budget_samples.png.

--size 64 instead times one training step (gan.training_step, batch 64, random RGB images: the cost does not
depend on the pixels) of a 64x64 RGB DCGAN in CPU seconds (time.process_time), with the widths an image folder
got before the depth followed the size, (64, 128), which leave a 16x16 map and a 32k-wide linear layer, against
those GANConfig now derives (layers.conv_channels_for), alternating, median of --rounds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from genlab.data import load_dataset
from genlab.explore import save_image_grid
from genlab.models.gan import GAN, GANConfig, configure_optimizers, training_step
from genlab.run import create_run, open_run
from genlab.train import TrainConfig, train

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "out"
BATCH_SIZE, LR = 128, 2e-4
MODEL = {"architecture": "conv", "loss": "non-saturating"}  # genlab's DCGAN defaults otherwise
TARGET = 1.3
# plain: pytorch/examples' loop in float32. genlab-fp32: the same arithmetic. genlab-bf16-mixed: genlab with
# --set precision=bf16-mixed (forward passes under torch.autocast in bfloat16; weights and Adam in float32).
CONTENDERS = ("plain", "genlab-fp32", "genlab-bf16-mixed")
BUDGET_PRECISION = "bf16-mixed"  # the budget run trains as fast as genlab can on this CPU


def plain_loop(x: torch.Tensor, steps: int, seed: int) -> float:
    """pytorch/examples' dcgan training loop; images/s over `steps` steps after one warm-up step."""
    torch.manual_seed(seed)
    gan = GAN(GANConfig(data_shape=tuple(x.shape[1:]), **MODEL))
    net_g, net_d = gan.generator, gan.discriminator
    optimizer_d = torch.optim.Adam(net_d.parameters(), lr=LR, betas=(0.5, 0.999))
    optimizer_g = torch.optim.Adam(net_g.parameters(), lr=LR, betas=(0.5, 0.999))
    loader = DataLoader(TensorDataset(x), batch_size=BATCH_SIZE, shuffle=True, drop_last=True)
    done, start = 0, 0.0
    for (real,) in loader:
        if done == 1:
            start = time.perf_counter()
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        net_d.zero_grad()
        output = net_d(real).view(-1)
        error_real = F.binary_cross_entropy_with_logits(output, torch.ones_like(output))
        error_real.backward()
        fake = net_g(torch.randn(BATCH_SIZE, gan.config.latent_dim))
        output = net_d(fake.detach()).view(-1)
        error_fake = F.binary_cross_entropy_with_logits(output, torch.zeros_like(output))
        error_fake.backward()
        optimizer_d.step()
        # (2) Update G network: maximize log(D(G(z)))
        net_g.zero_grad()
        output = net_d(fake).view(-1)
        error_g = F.binary_cross_entropy_with_logits(output, torch.ones_like(output))
        error_g.backward()
        optimizer_g.step()
        done += 1
        if done == steps + 1:
            break
    return steps * BATCH_SIZE / (time.perf_counter() - start)


def genlab_loop(data_dir: Path, steps: int, seed: int, folder: Path, precision: str = "fp32") -> float:
    """genlab's train() on a fresh run; the images/s its single log record measured over the loop."""
    records = []
    run = create_run(folder / f"run-{time.monotonic_ns()}", "gan",
                     TrainConfig(data="mnist", steps=steps, batch_size=BATCH_SIZE, lr=LR, seed=seed,
                                 log_every=steps, sample_every=10**9, checkpoint_every=10**9, precision=precision),
                     MODEL, data_dir=data_dir)
    train(run, device="cpu", data_dir=data_dir, on_log=records.append)
    return records[-1]["images_per_s"]


def budget_samples(data_dir: Path, budget: float, folder: Path) -> tuple[int, float, Path]:
    """Train genlab's DCGAN for `budget` CPU seconds (train()'s cpu_budget plans the step count from the
    measured cost, re-planned at every log step) and save 64 samples of the EMA generator."""
    cpu_start = time.process_time()
    run = create_run(folder / "budget", "gan",
                     TrainConfig(data="mnist", steps=10**6, batch_size=BATCH_SIZE, lr=LR, log_every=50,
                                 sample_every=10**9, checkpoint_every=10**9, precision=BUDGET_PRECISION),
                     {**MODEL, "ema_decay": 0.999}, data_dir=data_dir)
    train(run, device="cpu", data_dir=data_dir, cpu_budget=budget)
    spent = time.process_time() - cpu_start
    opened = open_run(run, splits=())
    model, meta = opened.model, opened.meta
    OUT.mkdir(exist_ok=True)
    picture = save_image_grid(model.sample(64, generator=torch.Generator().manual_seed(0)),
                              OUT / "gan_budget_samples.png", "GAN at its CPU budget: 64 samples (seed 0)", nrow=8)
    return meta["step"], spent, picture


RGB64_SHAPE, RGB64_BATCH = (3, 64, 64), 64
RGB64_WIDTHS = {"fixed (64, 128)": (64, 128), "derived": ()}  # () lets GANConfig derive them from the size


def rgb64_cpu_s_per_step(conv_channels: tuple[int, ...], steps: int, seed: int) -> float:
    """Mean CPU seconds of `steps` DCGAN training steps on 64x64 RGB batches, after one untimed step."""
    torch.manual_seed(seed)
    model = GAN(GANConfig(data_shape=RGB64_SHAPE, conv_channels=conv_channels, **MODEL))
    optimizers = configure_optimizers(model, LR)
    x = torch.rand(RGB64_BATCH, *RGB64_SHAPE)
    training_step(model, optimizers, x)
    start = time.process_time()
    for _ in range(steps):
        training_step(model, optimizers, x)
    return (time.process_time() - start) / steps


def rgb64(rounds: int, steps: int) -> None:
    widths = {name: GANConfig(data_shape=RGB64_SHAPE, conv_channels=given).conv_channels
              for name, given in RGB64_WIDTHS.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; DCGAN on 64x64 RGB, batch {RGB64_BATCH}; "
          + ", ".join(f"{name}: conv_channels {w}" for name, w in widths.items()))
    seconds: dict[str, list[float]] = {name: [] for name in RGB64_WIDTHS}
    for round_index in range(rounds):
        order = list(RGB64_WIDTHS) if round_index % 2 == 0 else list(RGB64_WIDTHS)[::-1]
        for name in order:
            seconds[name].append(rgb64_cpu_s_per_step(RGB64_WIDTHS[name], steps, round_index))
        print(f"round {round_index + 1}: " + ", ".join(f"{name} {seconds[name][-1]:.3f} CPU-s/step"
                                                       for name in RGB64_WIDTHS), flush=True)
    fixed, derived = (statistics.median(seconds[name]) for name in RGB64_WIDTHS)
    print(f"RESULT dcgan64_fixed_cpu_s_per_step={fixed:.3f} dcgan64_derived_cpu_s_per_step={derived:.3f} "
          f"speedup={fixed / derived:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="0: only the budget run")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per contender per round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--budget", type=float, default=600.0, help="CPU seconds for the samples run")
    parser.add_argument("--skip-budget", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--size", type=int, choices=(28, 64), default=28,
                        help="28: the MNIST comparison above; 64: CPU-s per step of a 64x64 RGB DCGAN (no data needed)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.size == 64:
        rgb64(max(args.rounds, 1), min(args.steps, 5))
        return
    if not (args.data_dir / "mnist").is_dir():
        print(f"skipped: no MNIST at {args.data_dir / 'mnist'} (pass --data-dir)")
        sys.exit(0)
    x = load_dataset("mnist", "train", data_dir=args.data_dir).x
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; DCGAN on MNIST 28x28, batch {BATCH_SIZE}")
    folder = Path(tempfile.mkdtemp(prefix="gan_throughput-"))
    try:
        speeds: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for round_index in range(args.rounds):
            order = CONTENDERS if round_index % 2 == 0 else CONTENDERS[::-1]
            for name in order:
                if name == "plain":
                    speeds[name].append(plain_loop(x, args.steps, round_index))
                else:
                    precision = name.removeprefix("genlab-")
                    speeds[name].append(genlab_loop(args.data_dir, args.steps + 1, round_index, folder, precision))
            print(f"round {round_index + 1}: " + ", ".join(f"{name} {speeds[name][-1]:.0f} img/s" for name in
                                                           CONTENDERS), flush=True)
        result = "RESULT"
        if args.rounds > 0:
            median = {name: statistics.median(values) for name, values in speeds.items()}
            ratio = {name: median[name] / median["plain"] for name in CONTENDERS[1:]}
            print("median: " + ", ".join(f"{name} {median[name]:.0f} img/s" for name in CONTENDERS))
            for name, value in ratio.items():
                print(f"{name} / plain = {value:.2f} (target >= {TARGET}: {'met' if value >= TARGET else 'missed'})")
            result += (f" plain_img_s={median['plain']:.1f} genlab_fp32_img_s={median['genlab-fp32']:.1f} "
                       f"genlab_bf16_img_s={median['genlab-bf16-mixed']:.1f} ratio_fp32={ratio['genlab-fp32']:.3f} "
                       f"ratio_bf16={ratio['genlab-bf16-mixed']:.3f}")
        if not args.skip_budget:
            steps, spent, picture = budget_samples(args.data_dir, args.budget, folder)
            print(f"budget run: {steps} steps in {spent:.0f} CPU-s -> {picture}")
            result += f" budget_steps={steps} budget_cpu_s={spent:.0f}"
        print(result)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
