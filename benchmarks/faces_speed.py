"""Training speed of the faces recipe at 64 px: images/s of genlab's DCGAN + DiffAugment on the 100 faces, on the CPU
(one thread) and, when there is one, on a CUDA GPU in float32 and with bf16 autocast.

    python benchmarks/faces_speed.py                 # CPU, and the GPU when torch sees one
    python benchmarks/faces_speed.py --gpu-steps 400 --cpu-steps 20

Each figure is genlab's own: train() on a fresh run (`--data faces --set image_size=64 --set augment=diffaugment`,
batch 64, EMA on), images/s of the last logging window, so the first window (start-up, cuDNN's autotuning, lazy
CUDA set-up) is left out. The networks are derived from the size: G and D of 4 stride-2 blocks, 16-32-64-128 wide.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch

from genlab.run import create_run, read_metrics
from genlab.train import TrainConfig, train

RECIPE = {"augment": "diffaugment", "ema_decay": 0.999, "latent_dim": 128}


def images_per_s(folder: Path, device: str, precision: str, steps: int) -> float:
    config = TrainConfig(data="faces", image_size=64, steps=steps, batch_size=64, lr=2e-4, precision=precision,
                         log_every=steps // 2, sample_every=steps, checkpoint_every=steps, keep_checkpoints=1)
    run = create_run(folder / f"{device}-{precision}", "gan", config, RECIPE)
    train(run, device=device)
    return read_metrics(run / "metrics.jsonl")[-1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-steps", type=int, default=20)
    parser.add_argument("--gpu-steps", type=int, default=400)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(1)
        figures["cpu_fp32"] = images_per_s(Path(tmp), "cpu", "fp32", args.cpu_steps)
        print(f"cpu, 1 thread, float32   {figures['cpu_fp32']:10.1f} images/s", flush=True)
        if torch.cuda.is_available():
            print(f"GPU: {torch.cuda.get_device_name()}")
            for precision, name in (("fp32", "cuda_fp32"), ("bf16-mixed", "cuda_bf16")):
                figures[name] = images_per_s(Path(tmp), "cuda", precision, args.gpu_steps)
                print(f"cuda, {precision:15s}  {figures[name]:10.1f} images/s", flush=True)
        else:
            print("no CUDA GPU here: the GPU rows are skipped")
    ratios = {f"{name}_over_cpu": value / figures["cpu_fp32"] for name, value in figures.items() if name != "cpu_fp32"}
    print("RESULT " + " ".join(f"{k}={v:.1f}" for k, v in {**figures, **ratios}.items()))


if __name__ == "__main__":
    main()
