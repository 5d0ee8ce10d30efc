"""The GPU path, measured: genlab's training loop against plain PyTorch loops on the same GPU, for the DCGAN, the
VAE and the DDPM UNet on MNIST, in fp32, bf16 and bf16 + torch.compile; and one training step on the GPU checked
against the same step on the CPU. One prepared script of at most ~5 minutes, for when a GPU is at hand.

    python benchmarks/gpu_check.py                    # on a CUDA machine: the whole check
    python benchmarks/gpu_check.py --steps 20         # anywhere: runs on the CPU, skipping what needs CUDA

Contenders, each training the same networks (genlab's, built from the same seed) with the same batch (128),
losses and Adam settings:
  plain            the loop one writes by hand (pytorch/examples' dcgan and vae): DataLoader(TensorDataset(x),
                   shuffle=True) over the data on the CPU, each batch moved to the GPU, float32, the model's
                   own loss for the VAE and the DDPM, BCE written out for the DCGAN as pytorch/examples does.
  genlab-fp32      genlab.train.train on a fresh run: the data on the device in one tensor, TF32 matmuls,
                   channels_last convolutions (genlab.train._prepare_model)
  genlab-bf16      the same with precision=bf16-mixed (autocast to bfloat16 for the forward passes)
  genlab-bf16-compile  and compile=true (each network through torch.compile; its compile time is excluded,
                   as the loop's last log window is timed)
images/s of genlab is its last log record's (its own timing of the last window); the plain loop is timed after
a warm-up of the same length. Ratios are genlab / plain. "peak" is the model FLOPs per second (forward and
backward, counted once by torch.utils.flop_counter) over the GPU's dense bf16 peak (a table of known GPUs).
Targets: genlab-fp32 >= 1.0x plain, the best genlab setting >= 1.5x plain.
The check: one autoencoder (conv) step, fp32 with TF32 off, from the same weights and batch on the CPU and the GPU:
the autoencoder draws no random numbers, so the two may differ only by float rounding (max relative change).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from genlab.data import load_dataset
from genlab.models import family
from genlab.run import create_run
from genlab.train import TrainConfig, train

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH_SIZE = 128
# model -> (family, model settings, lr)
MODELS = {
    "dcgan": ("gan", {"architecture": "conv", "loss": "non-saturating"}, 2e-4),
    "vae": ("vae", {"architecture": "conv"}, 1e-3),
    "ddpm-unet": ("ddpm", {"architecture": "unet"}, 2e-4),
}
SETTINGS = {"genlab-fp32": {}, "genlab-bf16": {"precision": "bf16-mixed"},
            "genlab-bf16-compile": {"precision": "bf16-mixed", "compile": True}}
# dense bfloat16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by a part of the device's name
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "RTX 4090": 165e12}
TARGET_FP32, TARGET_BEST = 1.0, 1.5


def mnist(data_dir: Path) -> torch.Tensor:
    return load_dataset("mnist", "train", data_dir=data_dir).x


def build(model: str, device: str):
    family_name, settings, _ = MODELS[model]
    record = family(family_name)
    torch.manual_seed(0)
    return record.model(record.config(data_shape=(1, 28, 28), **settings)).to(device)


def plain_loop(model: str, x: torch.Tensor, device: str, steps: int) -> float:
    """images/s of the hand-written loop over `steps` steps, after as many warm-up steps."""
    net = build(model, device)
    lr = MODELS[model][2]
    loader = DataLoader(TensorDataset(x), batch_size=BATCH_SIZE, shuffle=True, drop_last=True,
                        pin_memory=device == "cuda")
    if model == "dcgan":
        optimizer_d = torch.optim.Adam(net.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
        optimizer_g = torch.optim.Adam(net.generator.parameters(), lr=lr, betas=(0.5, 0.999))
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    done, start = 0, 0.0
    while done < 2 * steps:
        for (real,) in loader:
            if done == steps:
                synchronize(device)
                start = time.perf_counter()
            real = real.to(device, non_blocking=True)
            if model == "dcgan":
                # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
                net.discriminator.zero_grad()
                output = net.discriminator(real).view(-1)
                F.binary_cross_entropy_with_logits(output, torch.ones_like(output)).backward()
                fake = net.generator(torch.randn(BATCH_SIZE, net.config.latent_dim, device=device))
                output = net.discriminator(fake.detach()).view(-1)
                F.binary_cross_entropy_with_logits(output, torch.zeros_like(output)).backward()
                optimizer_d.step()
                # (2) Update G network: maximize log(D(G(z)))
                net.generator.zero_grad()
                output = net.discriminator(fake).view(-1)
                F.binary_cross_entropy_with_logits(output, torch.ones_like(output)).backward()
                optimizer_g.step()
            else:
                optimizer.zero_grad()
                net.loss(real)["loss"].backward()
                optimizer.step()
            done += 1
            if done == 2 * steps:
                break
    synchronize(device)
    return steps * BATCH_SIZE / (time.perf_counter() - start)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def genlab_loop(model: str, setting: dict, data_dir: Path, device: str, steps: int, folder: Path) -> float:
    family_name, settings, lr = MODELS[model]
    records = []
    config = TrainConfig(data="mnist", steps=2 * steps, batch_size=BATCH_SIZE, lr=lr, log_every=steps,
                         sample_every=10**9, checkpoint_every=10**9, **setting)
    run = create_run(folder / f"{model}-{time.monotonic_ns()}", family_name, config, settings, data_dir=data_dir)
    train(run, device=device, data_dir=data_dir, on_log=records.append)
    return records[-1]["images_per_s"]


def flops_per_image(model: str, x: torch.Tensor, device: str) -> float:
    """Model FLOPs (forward and backward) of one genlab training step, per image."""
    from torch.utils.flop_counter import FlopCounterMode

    net = build(model, device)
    record = family(MODELS[model][0])
    optimizers = record.optimizers(net, MODELS[model][2])
    with FlopCounterMode(display=False) as counter:
        record.step(net, optimizers, x[:BATCH_SIZE].to(device))
    return counter.get_total_flops() / BATCH_SIZE


def cpu_gpu_step_difference(x: torch.Tensor) -> float:
    """Largest relative difference between the weights after one fp32 autoencoder step on the CPU and on CUDA."""
    record = family("ae")
    after = {}
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for device in ("cpu", "cuda"):
            torch.manual_seed(0)
            net = record.model(record.config(data_shape=(1, 28, 28), architecture="conv")).to(device)
            record.step(net, record.optimizers(net, 1e-3), x[:BATCH_SIZE].to(device))
            after[device] = {name: p.detach().cpu() for name, p in net.named_parameters()}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    return max(((after["cuda"][n] - after["cpu"][n]).abs().max() / after["cpu"][n].abs().max()).item()
               for n in after["cpu"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 300 on CUDA, 10 on CPU)")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    if not (args.data_dir / "mnist").is_dir():
        print(f"skipped: no MNIST at {args.data_dir / 'mnist'} (pass --data-dir)")
        return
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    steps = args.steps or (300 if cuda else 10)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    peak = next((value for part, value in BF16_PEAK.items() if part in name), None)
    print(f"device: {name}; torch {torch.__version__}; batch {BATCH_SIZE}; {steps} timed steps")
    x = mnist(args.data_dir)
    settings = SETTINGS if cuda else {k: v for k, v in SETTINGS.items() if not v.get("compile")}
    started = time.perf_counter()
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            plain = plain_loop(model, x, device, steps)
            flops = flops_per_image(model, x, device)
            line = [f"{model:10s} plain {plain:9.0f} img/s"]
            for setting_name, setting in settings.items():
                speed = genlab_loop(model, setting, args.data_dir, device, steps, Path(tmp))
                ratios[(model, setting_name)] = speed / plain
                share = f" ({speed * flops / peak:.2%} of peak)" if peak else ""
                line.append(f"{setting_name} {speed:9.0f} img/s {speed / plain:5.2f}x{share}")
            print("  ".join(line), flush=True)
    print(f"timings took {time.perf_counter() - started:.0f} s")
    if cuda:
        difference = cpu_gpu_step_difference(x)
        print(f"one fp32 autoencoder step, CUDA against CPU: largest relative weight difference {difference:.2e} "
              f"({'within' if difference < 1e-4 else 'OUTSIDE'} 1e-4)")
    fp32 = statistics.median(ratios[(m, "genlab-fp32")] for m in MODELS)
    best = statistics.median(max(ratios[(m, s)] for s in settings) for m in MODELS)
    print(f"targets: genlab-fp32 >= {TARGET_FP32}x plain (median over models {fp32:.2f}x), best setting >= "
          f"{TARGET_BEST}x ({best:.2f}x)")
    if not cuda:
        print("note: no CUDA device here, so this ran on the CPU without compile and without the CPU/GPU step check; "
              "run it on a GPU machine for the figures the GPU path is judged by")
    print("RESULT " + " ".join(f"{m}_{s.removeprefix('genlab-')}={r:.2f}" for (m, s), r in ratios.items())
          + f" device={name.replace(' ', '_')}")


if __name__ == "__main__":
    main()
