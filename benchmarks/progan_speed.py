"""Progressive growing's training cost: CPU seconds per step of progan.training_step on the 100 LFW faces at
32x32 (--data faces --set image_size=32), batch 32, one torch thread, at each stage of growth (4, 8, 16 and
32 px; mid-fade where a stage fades in), the last stage also at max_channels=128 (the default is 64), beside
genlab's DCGAN (gan.training_step, its size-derived widths) at 32x32 on the same batches for scale.

    python benchmarks/progan_speed.py                 # 3 alternating rounds of 10 steps per contender

Each contender is built once from seed 0 and trained --steps steps per round after one warm-up step, timed with
time.process_time (CPU seconds of this process: one thread, so the same as wall time on an idle core); rounds
alternate the contenders and the figure is the median round. The last line is `RESULT ...` with the final
stage's figure (the cost of a grown run's every remaining step) as progan_cpu_s_per_step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from genlab.data import Batches, load_dataset
from genlab.models import gan, progan

BATCH_SIZE, LR = 32, 1e-3


def progan_at(stage: int, fading: bool, **settings):
    """A ProGAN for 32x32 faces (the defaults, but for `settings`) whose schedule stands at `stage` (mid-fade,
    alpha 0.5, when `fading`)."""
    torch.manual_seed(0)
    model = progan.ProGAN(progan.ProGANConfig(data_shape=(1, 32, 32), **settings))
    config = model.config
    if stage > 0:  # stage k starts fading in after stage 0's stable steps and k - 1 fades and stable stretches
        start = config.stable_steps + (stage - 1) * (config.fade_steps + config.stable_steps)
        with torch.no_grad():
            model.steps_trained.fill_(start + (config.fade_steps // 2 - 1 if fading else config.fade_steps))
    assert model.growth() == (stage, 0.5 if fading else 1.0), model.growth()
    return model, progan.configure_optimizers(model, LR), progan.training_step


def dcgan():
    torch.manual_seed(0)
    model = gan.GAN(gan.GANConfig(data_shape=(1, 32, 32), ema_decay=0.999))
    return model, gan.configure_optimizers(model, 2e-4), gan.training_step


def cpu_seconds_per_step(contender, batches: Batches, steps: int) -> float:
    model, optimizers, step = contender
    step(model, optimizers, batches.batch(0))  # warm-up: first-call allocations
    start = time.process_time()
    for i in range(1, steps + 1):
        step(model, optimizers, batches.batch(i))
    return (time.process_time() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    faces = load_dataset("faces", "train", image_size=32)
    batches = Batches(faces.x, BATCH_SIZE, seed=0)
    contenders = {"progan 4px": progan_at(0, False), "progan 8px fading": progan_at(1, True),
                  "progan 16px fading": progan_at(2, True), "progan 32px fading": progan_at(3, True),
                  "progan 32px": progan_at(3, False), "progan 32px, 128 ch": progan_at(3, False, max_channels=128),
                  "dcgan 32px": dcgan()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_index in range(args.rounds):
        order = list(contenders) if round_index % 2 == 0 else list(reversed(contenders))
        for name in order:
            times[name].append(cpu_seconds_per_step(contenders[name], batches, args.steps))
    print(f"faces 32x32, batch {BATCH_SIZE}, 1 thread, median of {args.rounds} rounds of {args.steps} steps")
    for name, values in times.items():
        parameters = sum(p.numel() for p in contenders[name][0].parameters() if p.requires_grad)
        print(f"  {name:20s} {statistics.median(values):.4f} CPU-s/step   ({parameters:,} trainable parameters)")
    final, reference = statistics.median(times["progan 32px"]), statistics.median(times["dcgan 32px"])
    print(f"RESULT progan_cpu_s_per_step={final:.4f} dcgan_cpu_s_per_step={reference:.4f} "
          f"ratio={final / reference:.2f} batch={BATCH_SIZE} size=32 threads=1")


if __name__ == "__main__":
    main()
