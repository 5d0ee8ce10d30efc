"""CPU seconds each lesson (`genlab lesson autoencoder|vae|gan|faces`) takes, as a learner runs it: a fresh process,
torch's own thread count (genlab trains small models on one thread), with a second process keeping the other core
busy when --busy is given (the case where spinning OpenMP threads cost the most). Target: each <= 30 CPU-s.

    python benchmarks/lessons.py [--busy] [LESSON ...]   # all lessons unless named
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

LESSONS = ("autoencoder", "vae", "gan", "faces")
TARGET_CPU_S = 30.0


def spin(stop):
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def lesson_cpu_seconds(name: str, out: str) -> tuple[float, float]:
    """(CPU seconds of the lesson's process and its threads, wall seconds)."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "genlab", "lesson", name, "--out", out], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return cpu, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", action="store_true", help="keep one core busy in another process meanwhile")
    parser.add_argument("lessons", nargs="*", metavar="LESSON",
                        help=f"lessons to measure: {', '.join(LESSONS)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.lessons) - set(LESSONS))
    if unknown:
        parser.error(f"unknown lesson {', '.join(unknown)}: choose from {', '.join(LESSONS)}")
    busy, names = args.busy, args.lessons or LESSONS
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=spin, args=(stop,)) if busy else None
    if spinner:
        spinner.start()
    figures = {}
    try:
        with tempfile.TemporaryDirectory() as out:
            for name in names:
                cpu, wall = lesson_cpu_seconds(name, out)
                figures[name] = cpu
                verdict = "ok" if cpu <= TARGET_CPU_S else f"over the {TARGET_CPU_S:.0f} CPU-s target"
                print(f"lesson {name:12s} {cpu:6.1f} CPU-s  {wall:6.1f} s wall  ({verdict})")
    finally:
        stop.set()
        if spinner:
            spinner.join()
    print("RESULT " + " ".join(f"{name}_cpu_s={cpu:.1f}" for name, cpu in figures.items())
          + f" busy={int(busy)} target_cpu_s={TARGET_CPU_S:.0f}")


if __name__ == "__main__":
    main()
