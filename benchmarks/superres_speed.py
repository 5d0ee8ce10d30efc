"""Milliseconds per 256x256 -> 1024x1024 x4 upscale (one tile) of genlab's SRResNet-style generator, on the CPU (one
thread and all) and, when there is one, on a CUDA GPU in float32 and with bf16 autocast. Untrained weights: the
time does not depend on them.

    python benchmarks/superres_speed.py
"""

from __future__ import annotations

import statistics
import time

import torch

from genlab.models.superres import SuperRes, SuperResConfig

SIZES = {"benchmark's G (32 x 8)": (32, 8), "SRResNet's G (64 x 16)": (64, 16)}


def milliseconds(model: SuperRes, x: torch.Tensor, autocast: bool, rounds: int) -> float:
    times = []
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        for i in range(rounds + 1):
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model.upscale(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            if i:  # the first is a warm-up
                times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    figures = {}
    for name, (channels, blocks) in SIZES.items():
        model = SuperRes(SuperResConfig(scale=4, channels=channels, blocks=blocks)).eval()
        x = torch.rand(1, 3, 256, 256)
        key = f"{channels}x{blocks}"
        for threads in (1, torch.get_num_threads()):
            torch.set_num_threads(threads)
            figures[f"cpu{threads}_{key}_ms"] = milliseconds(model, x, False, 3)
            print(f"{name}, CPU {threads} thread(s): {figures[f'cpu{threads}_{key}_ms']:9.1f} ms", flush=True)
        if torch.cuda.is_available():
            model, x = model.cuda(), x.cuda()
            for autocast, what in ((False, "fp32"), (True, "bf16")):
                figures[f"cuda_{what}_{key}_ms"] = milliseconds(model, x, autocast, 20)
                print(f"{name}, {torch.cuda.get_device_name()} {what}: {figures[f'cuda_{what}_{key}_ms']:9.2f} ms",
                      flush=True)
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
