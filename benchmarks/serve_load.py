"""`genlab serve` under load: requests/s, images/s, p50/p99 latency and errors with 1, 10 and 50 concurrent
clients against a DCGAN on MNIST (digits when MNIST is absent) and a VAE, with dynamic batching on (--batch 8,
the default) and off (--batch 1: every request's rows one at a time), beside the plain way: a loop in one process
calling the model one request at a time (sample, then PNG), no HTTP.

Both models are trained briefly here in a temporary folder (their speed, not their quality, is measured). The
server is `genlab serve` in its own process, bound to 127.0.0.1; the load generator is this process (httpx on
asyncio): each client sends its next request when its last answer has come, for --seconds after a short warm-up,
so every round is bounded in time. Client and server share the machine's cores, as they would on one box.

    python benchmarks/serve_load.py [--seconds 3] [--rounds 3] [--n 1] [--steps 100] [--device cpu]
                                    [--data-dir ../shared/data]

Targets (issue 16, on a 2-core machine): 0 errors at 50 clients; p99 <= 100 ms for single-image GAN samples at
10 clients (batching on); batching at least doubling images/s at 50 clients over one-by-one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from genlab.data import default_data_dir
from genlab.run import create_run, open_run
from genlab.train import TrainConfig, train
from genlab.web.serve import answer

CLIENTS = (1, 10, 50)
WARM_S = 0.5  # before each timed round: connections opened, first batches run
MODES = {"batched": 8, "one-by-one": 1}  # --batch of the server


def train_models(folder: Path, data_dir: Path, steps: int) -> dict[str, Path]:
    """A DCGAN and a VAE trained for a few steps, on MNIST when it is in data_dir, else on digits."""
    mnist = (data_dir / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    data = "mnist" if mnist else "digits"
    runs = {}
    for family in ("gan", "vae"):
        config = TrainConfig(data=data, data_dir=str(data_dir) if mnist else None, steps=steps, batch_size=64,
                             log_every=steps, sample_every=steps, checkpoint_every=steps)
        run = folder / f"{family}-{data}"
        create_run(run, family, config, {}, data_dir=data_dir if mnist else None)
        train(run)
        runs[family] = run
    shape = open_run(runs["gan"], splits=()).model.config.data_shape
    print(f"trained a {steps}-step DCGAN and VAE on {data}, images {shape}")
    return runs


def start_server(runs: dict[str, Path], batch: int, device: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "genlab", "serve", *map(str, runs.values()), "--port", "0",
                                "--batch", str(batch), "--device", device], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env)
    line = process.stdout.readline()
    match = re.search(r"http://(127\.0\.0\.1:\d+)", line)
    if not match:
        process.kill()
        raise RuntimeError(f"genlab serve did not start: {line}")
    return process, match.group(1)


class Connection:
    """One keep-alive HTTP/1.1 connection, written out on asyncio streams: the load generator shares the CPU with
    the server, and a full client library (httpx) spends ~1 ms of CPU a request, more than the server's own work."""

    def __init__(self, address: str):
        self.host, self.port = address.rsplit(":", 1)
        self.reader = self.writer = None

    async def get(self, path: str) -> tuple[int, str, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, int(self.port))
        try:
            self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
            body = await self.reader.readexactly(int(headers["content-length"]))
            return int(head[0].split()[1]), headers.get("content-type", ""), body
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()  # the next request opens a new connection
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(address: str, path: str, clients: int, seconds: float, n: int, server_pid: int) -> dict:
    """`clients` clients, each asking for its next sample as soon as its last one came, for `seconds`."""
    latencies, errors, seeds = [], 0, iter(range(10**9))
    connections = [Connection(address) for _ in range(clients)]

    async def client(connection: Connection, until: float, timed: bool):
        nonlocal errors
        while time.perf_counter() < until:
            start = time.perf_counter()
            try:
                status, kind, _ = await connection.get(f"{path}?n={n}&seed={next(seeds)}")
                ok = status == 200 and kind == "image/png"
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
            if timed:
                if ok:
                    latencies.append(time.perf_counter() - start)
                errors += not ok

    await asyncio.gather(*(client(c, time.perf_counter() + WARM_S, False) for c in connections))
    start, server_cpu = time.perf_counter(), cpu_seconds(server_pid)
    await asyncio.gather(*(client(c, start + seconds, True) for c in connections))
    elapsed, server_cpu = time.perf_counter() - start, cpu_seconds(server_pid) - server_cpu
    for connection in connections:
        connection.close()
    latencies.sort()
    done = max(1, len(latencies))
    return {"rps": len(latencies) / elapsed, "ips": n * len(latencies) / elapsed, "errors": errors,
            "p50": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "p99": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
            "server_cpu_ms": 1000 * server_cpu / done}


def cpu_seconds(pid: int) -> float:
    """CPU seconds process `pid` has used (Linux: /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plain_loop(run: Path, seconds: float, n: int, device: str) -> dict:
    """The plain way: one process, one request at a time: sample(n) from the request's seed, then its PNG."""
    model = open_run(run, device=device, splits=()).model
    latencies, seed, cpu = [], 0, time.process_time()
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        start = time.perf_counter()
        answer(model.sample(n, torch.Generator(device).manual_seed(seed)).cpu(), "png")
        latencies.append(time.perf_counter() - start)
        seed += 1
    cpu = time.process_time() - cpu
    latencies.sort()
    total = sum(latencies)
    return {"rps": len(latencies) / total, "ips": n * len(latencies) / total, "errors": 0,
            "p50": 1000 * statistics.median(latencies), "p99": 1000 * latencies[int(0.99 * len(latencies))],
            "server_cpu_ms": 1000 * cpu / len(latencies)}  # the loop's own CPU


def median_round(rounds: list[dict]) -> dict:
    """Each figure's median over the rounds; errors summed."""
    return {key: sum(r[key] for r in rounds) if key == "errors" else statistics.median(r[key] for r in rounds)
            for key in rounds[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds of each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each setting, batched and one-by-one "
                                                              "taking turns, so that the machine's load falls on both")
    parser.add_argument("--n", type=int, default=1, help="images in each request")
    parser.add_argument("--steps", type=int, default=100, help="training steps of each model")
    parser.add_argument("--device", default="cpu", help="where the server and the plain loop run the models")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("GENLAB_DATA_DIR", default_data_dir())))
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the server's inference threads
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        runs = train_models(Path(folder), args.data_dir, args.steps)
        servers = {mode: start_server(runs, batch, args.device) for mode, batch in MODES.items()}
        try:
            for family, run in runs.items():
                plain = [plain_loop(run, args.seconds, args.n, args.device) for _ in range(args.rounds)]
                rows.append((family, "plain loop", 1, median_round(plain)))
                for clients in CLIENTS:
                    rounds = {mode: [] for mode in MODES}
                    for _ in range(args.rounds):
                        for mode, (process, address) in servers.items():
                            rounds[mode].append(asyncio.run(load(address, f"/models/{run.name}/sample", clients,
                                                                 args.seconds, args.n, process.pid)))
                    for mode, figures in rounds.items():
                        rows.append((family, mode, clients, median_round(figures)))
                        print(f"{family} {mode} {clients} clients: "
                              + ", ".join(f"{f['ips']:.0f}" for f in figures) + " images/s", flush=True)
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=20)

    print(f"\n| model | serving | clients | requests/s | images/s | p50 ms | p99 ms | errors | server CPU ms/request |"
          f"  (n={args.n}, median of {args.rounds} rounds of {args.seconds:g} s, {args.device})")
    print("|---|---|---|---|---|---|---|---|---|")
    for family, mode, clients, f in rows:
        print(f"| {family} | {mode} | {clients} | {f['rps']:.0f} | {f['ips']:.0f} | {f['p50']:.1f} | {f['p99']:.1f} "
              f"| {f['errors']} | {f['server_cpu_ms']:.2f} |")
    by = {(family, mode, clients): f for family, mode, clients, f in rows}
    figures = {}
    for family in runs:
        figures[f"{family}_batched_ips_50"] = by[family, "batched", 50]["ips"]
        figures[f"{family}_one_by_one_ips_50"] = by[family, "one-by-one", 50]["ips"]
        figures[f"{family}_batching_speedup_50"] = figures[f"{family}_batched_ips_50"] / figures[
            f"{family}_one_by_one_ips_50"]
        figures[f"{family}_plain_loop_ips"] = by[family, "plain loop", 1]["ips"]
    figures["gan_p99_ms_10"] = by["gan", "batched", 10]["p99"]
    figures["errors_50"] = sum(f["errors"] for (_, _, clients), f in by.items() if clients == 50)
    met = {"zero_errors_50": figures["errors_50"] == 0, "gan_p99_10_le_100ms": figures["gan_p99_ms_10"] <= 100,
           "gan_speedup_ge_2": figures["gan_batching_speedup_50"] >= 2}
    print("RESULT " + " ".join(f"{key}={value:.3g}" for key, value in figures.items()) + f" n={args.n} "
          + " ".join(f"{key}={int(value)}" for key, value in met.items()))


if __name__ == "__main__":
    main()
