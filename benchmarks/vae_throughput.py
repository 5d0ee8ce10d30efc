"""Training throughput of genlab's loop on the pytorch/examples VAE, against a plain PyTorch loop and pythae.

    python benchmarks/vae_throughput.py                    # 3 alternating rounds, then pythae in its own venv
    python benchmarks/vae_throughput.py --rounds 5 --skip-pythae

The net is pytorch/examples' VAE (MLP 784-400-20, sigmoid + BCE, Adam 1e-3, batch 128) and each
contender trains it for one epoch of the 60k MNIST training images (grey values in [0, 1], not binarised):
  plain   pytorch/examples' loop, written out here, over DataLoader(TensorDataset(x, y), shuffle=True);
          images/s = 60000 / the wall time of the epoch loop.
  genlab  genlab.train.train on a fresh run with log_every = steps, so its one log record's
          `images_per_s` times the whole epoch loop (first step to the log after the last one).
          The wall time of the whole train() call (loading data, building the model, samples, the
          checkpoint) is reported too.
  pythae  pythae 0.1.2's TrainingPipeline with the same encoder/decoder, run by vae_throughput_pythae.py
          in benchmarks/.pythae-venv (made on first use: pip install torch==2.13.0 pythae==0.1.2).
          images/s = 60000 / the wall time of the pipeline call (data checks, trainer set-up, the
          epoch, the final save): compared with genlab's whole train() call.
plain and genlab alternate in one process (order flipped every round, after an untimed warm-up),
so background load hits both; the ratios are of medians. Targets: genlab >= 1.5x plain, >= 2.5x pythae.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from genlab.data import load_dataset
from genlab.run import create_run
from genlab.train import TrainConfig, train

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HERE = Path(__file__).resolve().parent
PYTHAE_VENV = HERE / ".pythae-venv"
PYTHAE_CHILD = HERE / "vae_throughput_pythae.py"
# torch pinned in the same pip command, so pip takes the local CPU wheel (pip config: find-links) and
# never resolves an unpinned torch from the index (gigabytes of CUDA wheels).
PYTHAE_REQUIREMENTS = ("torch==2.13.0", "pythae==0.1.2")
BATCH_SIZE = 128
LR = 1e-3
MODEL = {"architecture": "mlp", "hidden_dims": (400,), "latent_dim": 20}  # genlab's spelling of 784-400-20
PLAIN_TARGET, PYTHAE_TARGET = 1.5, 2.5


# --- plain: pytorch/examples vae/main.py, as written there --------------------------------------------------


class PlainVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def plain_loss(recon_x, x, mu, logvar):
    """Reconstruction + KL summed over the batch; KL in closed form, Kingma & Welling appendix B."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def plain_epoch(x: torch.Tensor, labels: torch.Tensor, max_batches: int | None = None) -> float:
    """Images/s of one epoch of pytorch/examples' train() (every batch, the last one partial)."""
    model = PlainVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(x, labels), batch_size=BATCH_SIZE, shuffle=True)
    model.train()
    train_loss, images = 0.0, 0
    start = time.perf_counter()
    for batch_idx, (data, _) in enumerate(loader):
        if batch_idx == max_batches:
            break
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = plain_loss(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        images += len(data)
    return images / (time.perf_counter() - start)


# --- genlab -------------------------------------------------------------------------------------------------


def genlab_epoch(data_dir: Path, steps: int) -> tuple[float, float]:
    """(epoch-loop images/s from the log record, wall seconds of the whole train() call)."""
    config = TrainConfig(data="mnist", batch_size=BATCH_SIZE, lr=LR, steps=steps, log_every=steps,
                         sample_every=steps, checkpoint_every=steps)
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="vae_throughput-") as tmp:
        run = create_run(Path(tmp) / "run", "vae", config, MODEL, data_dir=data_dir)
        start = time.perf_counter()
        train(run, device="cpu", data_dir=data_dir, on_log=records.append)
        call_seconds = time.perf_counter() - start
    if len(records) != 1:
        raise RuntimeError(f"expected one log record for the epoch, got {len(records)}")
    return records[0]["images_per_s"], call_seconds


# --- pythae, in its own virtual environment -----------------------------------------------------------------


def pythae_python() -> tuple[Path | None, str]:
    """The venv's python with pythae 0.1.2 installed (made on first use), or (None, why not)."""
    python = PYTHAE_VENV / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('pythae'), m.version('torch'))"]
    if python.exists():
        found = subprocess.run(check, capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.split()[0] == "0.1.2":
            return python, f"pythae {found.stdout.split()[0]}, torch {found.stdout.split()[1]} in {PYTHAE_VENV}"
    steps = [[sys.executable, "-m", "venv", str(PYTHAE_VENV)],
             [str(python), "-m", "pip", "install", "--quiet", *PYTHAE_REQUIREMENTS]]
    print(f"pythae: installing {' '.join(PYTHAE_REQUIREMENTS)} into {PYTHAE_VENV} (first run only) ...", flush=True)
    for command in steps:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"`{' '.join(command)}` failed: {error}"
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-8:]
            return None, f"`{' '.join(command)}` exited {done.returncode}:\n    " + "\n    ".join(tail)
    found = subprocess.run(check, capture_output=True, text=True)
    if found.returncode != 0:
        return None, f"installed, but pythae does not import: {found.stderr.strip().splitlines()[-1:]}"
    return python, f"pythae {found.stdout.split()[0]}, torch {found.stdout.split()[1]} in {PYTHAE_VENV} (new)"


def pythae_epoch(python: Path, x: torch.Tensor, threads: int | None) -> tuple[dict | None, str]:
    """pythae's timings (see vae_throughput_pythae.py), or (None, why not)."""
    with tempfile.TemporaryDirectory(prefix="vae_throughput-pythae-") as tmp:
        np.save(Path(tmp) / "x.npy", x.numpy())
        command = [str(python), str(PYTHAE_CHILD), "--data", str(Path(tmp) / "x.npy"), "--out", str(Path(tmp) / "out"),
                   "--batch-size", str(BATCH_SIZE), *(["--threads", str(threads)] if threads else [])]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            return None, "the pythae run took more than 30 minutes"
    lines = [line for line in done.stdout.splitlines() if line.startswith("PYTHAE ")]
    if done.returncode != 0 or not lines:
        tail = (done.stdout + done.stderr).strip().splitlines()[-12:]
        return None, f"the pythae run exited {done.returncode}:\n    " + "\n    ".join(tail)
    return json.loads(lines[-1].removeprefix("PYTHAE ")), ""


# --- how busy the machine is --------------------------------------------------------------------------------


def load_note() -> str:
    """The 1-minute load average, with a warning when other processes want more CPUs than there are.

    With more than one torch thread a loaded machine does not slow every step down evenly: each
    parallel op waits for its slowest thread, and a thread the scheduler has parked stalls the op for a
    whole time slice, so throughput can fall 10-50x and the ratios follow the load, not the code.
    One thread per process only shares the CPU, which scales every contender alike.
    """
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    note = f"load average {load:.1f} on {cpus} CPUs"
    if load > cpus and torch.get_num_threads() > 1:
        note += "  ** busy machine: the figures measure the contention; rerun when idle, or add --threads 1 **"
    elif load > cpus:
        note += " (busy: absolute figures are shared-CPU figures; the ratios hold)"
    return note


# --- the benchmark ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating plain/genlab rounds")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--skip-pythae", action="store_true", help="do not install or run pythae")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for every contender (default: torch's own default, as the target assumes)")
    args = parser.parse_args()
    if not (args.data_dir / "mnist").is_dir():
        print(f"skipped: no MNIST at {args.data_dir / 'mnist'} (pass --data-dir)")
        sys.exit(0)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    train_set = load_dataset("mnist", "train", data_dir=args.data_dir)
    x, labels = train_set.x, train_set.labels  # (60000, 1, 28, 28) float32 in [0, 1], (60000,) int64
    steps = len(x) // BATCH_SIZE  # genlab drops the last partial batch: 468 x 128 = 59904 images
    threads = "default" if args.threads is None else "--threads"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads ({threads}); MNIST train {len(x)} images, "
          f"batch {BATCH_SIZE}, Adam {LR}; net 784-400-20 (pytorch/examples VAE)")
    print(load_note())

    # Warm-up, untimed: first-call costs (allocator, kernels, genlab's tensorboard import) hit neither side.
    plain_epoch(x, labels, max_batches=20)
    genlab_epoch(args.data_dir, steps=20)

    plain, genlab, genlab_call = [], [], []
    for round_ in range(args.rounds):
        order = ("plain", "genlab") if round_ % 2 == 0 else ("genlab", "plain")
        for name in order:
            if name == "plain":
                plain.append(plain_epoch(x, labels))
            else:
                images_per_s, call_seconds = genlab_epoch(args.data_dir, steps)
                genlab.append(images_per_s)
                genlab_call.append(call_seconds)
        print(f"round {round_ + 1}/{args.rounds} ({' then '.join(order)}): plain {plain[-1]:,.0f} img/s, "
              f"genlab {genlab[-1]:,.0f} img/s (train() call {genlab_call[-1]:.2f} s), "
              f"ratio {genlab[-1] / plain[-1]:.2f}", flush=True)
    plain_median, genlab_median = statistics.median(plain), statistics.median(genlab)
    call_median = statistics.median(genlab_call)
    images = steps * BATCH_SIZE
    genlab_call_img_s = images / call_median
    ratio_plain = genlab_median / plain_median

    pythae = None
    if args.skip_pythae:
        print("pythae: skipped (--skip-pythae)")
    else:
        python, note = pythae_python()
        print(f"pythae: {note}", flush=True)
        if python is not None:
            pythae, why = pythae_epoch(python, x, args.threads)
            if pythae is None:
                print(f"pythae: {why}\npythae: continuing without it")

    print()
    print(f"{'':32s} {'img/s':>9s}  {'vs plain':>8s}  note")
    print(f"{'plain PyTorch loop (epoch)':32s} {plain_median:9,.0f}  {1:8.2f}  median of {len(plain)}")
    print(f"{'genlab train() (epoch loop)':32s} {genlab_median:9,.0f}  {ratio_plain:8.2f}  median of {len(genlab)}; "
          f"target >= {PLAIN_TARGET}x plain")
    print(f"{'genlab train() (whole call)':32s} {genlab_call_img_s:9,.0f}  {genlab_call_img_s / plain_median:8.2f}  "
          f"{images} images / median {call_median:.2f} s (data, model, epoch, samples, checkpoint)")
    fields = f"genlab_img_s={genlab_median:.0f} plain_img_s={plain_median:.0f} ratio_plain={ratio_plain:.3f}"
    if pythae is not None:
        pythae_img_s = pythae["images"] / pythae["pipeline_s"]
        pythae_train_img_s = pythae["images"] / pythae["trainer_train_s"]
        pythae_epoch_img_s = pythae["images"] / pythae["epoch_loop_s"]
        ratio_pythae = genlab_call_img_s / pythae_img_s
        print(f"{'pythae pipeline (whole call)':32s} {pythae_img_s:9,.0f}  {pythae_img_s / plain_median:8.2f}  "
              f"{pythae['images']} images / {pythae['pipeline_s']:.2f} s; {pythae['threads']} threads")
        print(f"{'pythae trainer.train()':32s} {pythae_train_img_s:9,.0f}  {pythae_train_img_s / plain_median:8.2f}  "
              f"{pythae['trainer_train_s']:.2f} s")
        print(f"{'pythae epoch loop (train_step)':32s} {pythae_epoch_img_s:9,.0f}  "
              f"{pythae_epoch_img_s / plain_median:8.2f}  {pythae['epoch_loop_s']:.2f} s")
        print(f"genlab / pythae: whole call vs whole call {ratio_pythae:.2f} (headline, target >= {PYTHAE_TARGET}); "
              f"genlab epoch loop vs pythae whole call {genlab_median / pythae_img_s:.2f}; "
              f"epoch loop vs epoch loop {genlab_median / pythae_epoch_img_s:.2f}")
        fields += f" pythae_img_s={pythae_img_s:.0f} ratio_pythae={ratio_pythae:.3f}"
    print("per-round genlab/plain: " + " ".join(f"{g / p:.2f}" for g, p in zip(genlab, plain, strict=True)))
    print(load_note())
    print(f"RESULT {fields}")


if __name__ == "__main__":
    main()
