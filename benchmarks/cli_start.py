"""How long `genlab --help` and `genlab --version` take to answer, beside a bare `python -c pass` (the anchor:
the interpreter's own start). The CLI builds its commands without importing torch or scikit-learn, which are
imported when a command runs.

    python benchmarks/cli_start.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def wall_seconds(command: list[str], repeats: int) -> float:
    """Median wall time of `command` over `repeats` runs (after one warm-up run for the file cache)."""
    subprocess.run(command, check=True, capture_output=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    python = wall_seconds([sys.executable, "-c", "pass"], repeats)
    help_s = wall_seconds([sys.executable, "-m", "genlab", "--help"], repeats)
    version_s = wall_seconds([sys.executable, "-m", "genlab", "--version"], repeats)
    print(f"python -c pass     {python:.3f} s")
    print(f"genlab --help      {help_s:.3f} s  ({help_s / python:.1f}x the interpreter's start)")
    print(f"genlab --version   {version_s:.3f} s  ({version_s / python:.1f}x)")
    print(f"RESULT help_s={help_s:.3f} version_s={version_s:.3f} python_s={python:.3f} target_help_s=1.0")


if __name__ == "__main__":
    main()
