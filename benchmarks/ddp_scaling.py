"""Data-parallel scaling: images/s of `genlab train` at 1 and 2 torchrun processes (one thread each), for the
VAE (MLP) and the DCGAN on MNIST, the scaling efficiency, and the measured cost of the gradient all-reduce that
explains what is lost.

    python benchmarks/ddp_scaling.py                     # VAE and DCGAN, 1 and 2 processes, MNIST
    python benchmarks/ddp_scaling.py --rounds 3          # median of 3 launches per setting

Each setting is a real launch, `python -m torch.distributed.run --nproc_per_node P -m genlab -- train ...`, with
the same global batch (128) and OMP_NUM_THREADS=1; images/s is the last log record's (the loop's own timing of its
last window, so process start-up, data loading and the first steps' warm-up are not counted).
The all-reduce probe launches two processes that all-reduce a float32 tensor of each model's parameter count, as
genlab.distributed.average_gradients does once per optimizer step (the DCGAN: one for D, one for G), and reports
its median time; 2-process time per step is then about (1-process time per step) / 2 + all-reduce time.
On a machine with several GPUs, --device cuda compares 1 GPU with all of them.
Target: 2 processes >= 1.6x one process's images/s on the DCGAN. The machine's load average is printed before and
after: other work on a 2-core machine takes cores away from the 2-process runs first.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH_SIZE = 128
TARGET = 1.6
# family -> (settings, steps, log_every): enough steps that the last log window is a few seconds
SETTINGS = {
    "vae": ((), 600, 300),
    "dcgan": (("--set", "architecture=conv", "--set", "loss=non-saturating", "--set", "lr=2e-4"), 60, 30),
}
FAMILY = {"vae": "vae", "dcgan": "gan"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")  # this checkout's genlab, not an installed one
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])])}


def images_per_s(model: str, processes: int, data_dir: Path, device: str) -> float:
    settings, steps, log_every = SETTINGS[model]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_port", str(free_port()), "-m", "genlab", "--", "train", FAMILY[model], "--data", "mnist",
                   "--data-dir", str(data_dir), "--steps", str(steps), "--device", device, "--run", str(run),
                   "--set", f"batch_size={BATCH_SIZE}", "--set", f"log_every={log_every}",
                   "--set", "sample_every=100000", "--set", "checkpoint_every=100000", *settings]
        result = subprocess.run(command, capture_output=True, text=True, env=environment())
        if result.returncode != 0:
            raise SystemExit(f"{model} at {processes} processes failed:\n{result.stderr[-3000:]}")
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return records[-1]["images_per_s"]


def parameter_counts(model: str) -> list[int]:
    """The sizes of one step's all-reduces: one per optimizer, of the parameters it steps."""
    from genlab.models import family

    record = family(FAMILY[model])
    model_settings = dict(item.split("=") for item in SETTINGS[model][0][1::2])  # the --set values
    model_settings.pop("lr", None)  # a training setting
    net = record.model(record.config(data_shape=(1, 28, 28), **model_settings))  # MNIST's shape
    return [sum(p.numel() for group in optimizer.param_groups for p in group["params"])
            for optimizer in record.optimizers(net, 1e-3).values()]


def probe_all_reduce(sizes: list[int], repeats: int = 200) -> None:
    """Run under torchrun: time all-reducing float32 tensors of `sizes` (one step's), print the median in ms."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    tensors = [torch.randn(size) for size in sizes]
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        for t in tensors:
            dist.all_reduce(t)
        times.append(time.perf_counter() - start)
    if dist.get_rank() == 0:
        print(json.dumps({"all_reduce_ms": 1000 * statistics.median(times)}))
    dist.destroy_process_group()


def all_reduce_ms(model: str) -> float:
    sizes = ",".join(map(str, parameter_counts(model)))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), __file__, "--", "--probe", sizes]
    result = subprocess.run(command, capture_output=True, text=True, env=environment())
    if result.returncode != 0:
        raise SystemExit(f"the all-reduce probe failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["all_reduce_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: the all-reduce probe under torchrun
    args = parser.parse_args()
    if args.probe:
        probe_all_reduce([int(size) for size in args.probe.split(",")])
        return
    if not (args.data_dir / "mnist").is_dir():
        print(f"skipped: no MNIST at {args.data_dir / 'mnist'} (pass --data-dir)")
        return
    if args.device == "cuda":
        import torch

        counts = [1, torch.cuda.device_count()] if torch.cuda.device_count() > 1 else [1]
    else:
        counts = [1, 2]
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} ({os.cpu_count()} cores); batch {BATCH_SIZE} (global), "
          f"one thread a process, {args.rounds} round(s), device {args.device}")
    results = {}
    for model in SETTINGS:
        measured = {n: statistics.median(images_per_s(model, n, args.data_dir, args.device)
                                         for _ in range(args.rounds)) for n in counts}
        probe = all_reduce_ms(model) if args.device == "cpu" else float("nan")
        speedup = measured[counts[-1]] / measured[1]
        step_1 = 1000 * BATCH_SIZE / measured[1]  # ms per step, one process
        predicted = BATCH_SIZE / ((step_1 / counts[-1] + probe) / 1000)
        results[model] = speedup
        print(f"{model:6s} " + "  ".join(f"{n} proc {measured[n]:8.0f} img/s" for n in counts)
              + f"  speedup {speedup:.2f}x  efficiency {speedup / counts[-1]:.0%}  step {step_1:.1f} ms at 1 proc,"
              f" all-reduce {probe:.2f} ms -> predicted {predicted:.0f} img/s at {counts[-1]} proc")
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f}")
    verdict = "met" if results.get("dcgan", 0) >= TARGET else "missed"
    print(f"target: DCGAN >= {TARGET}x at 2 processes: {verdict}")
    print("RESULT " + " ".join(f"{model}_speedup={speedup:.2f}" for model, speedup in results.items())
          + f" load_before={load_before[0]:.2f} load_after={load_after[0]:.2f}")


if __name__ == "__main__":
    main()
