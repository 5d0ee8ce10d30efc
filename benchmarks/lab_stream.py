"""The GAN playground's speed as a person sees it: training steps/s and frames/s received by a WebSocket client.

Starts `genlab.web.app` under uvicorn in a subprocess on a free port (so the client never shares the
server's GIL), connects one client to /ws/playground, presses play and counts, for --seconds, the frames
that arrive and the steps they report. Target on the 2-core machine: >= 300 steps/s and >= 20 frames/s at once.

    OMP_NUM_THREADS=1 python benchmarks/lab_stream.py [--seconds 10] [--data ring]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

SERVER = """
import sys, uvicorn
from genlab.web.app import create_app
uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def measure(url: str, seconds: float, data: str) -> dict:
    async with websockets.connect(url, max_size=2**22) as ws:
        await ws.send(json.dumps({"type": "settings", "settings": {"data": data}}))
        await ws.send(json.dumps({"type": "play"}))
        frames, first, last, per_second = 0, None, None, []
        start = time.perf_counter()
        warm = start + 2.0  # the first seconds: model built, first coverage check, caches warm
        while time.perf_counter() - start < seconds + 2.0:
            message = json.loads(await ws.recv())
            now = time.perf_counter()
            if message["type"] != "frame" or not message.get("playing") or now < warm:
                continue
            frames += 1
            first = first or (now, message["step"])
            last = (now, message["step"])
            second = int(now - warm)
            while len(per_second) <= second:
                per_second.append([0, message["step"]])
            per_second[second][0] += 1
    elapsed = last[0] - first[0]
    return {"frames_per_s": (frames - 1) / elapsed, "steps_per_s": (last[1] - first[1]) / elapsed,
            "seconds": elapsed, "frames": frames, "per_second": per_second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--data", default="ring", choices=["ring", "grid", "moons", "gaussian1d"])
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as runs:
        server = subprocess.Popen([sys.executable, "-c", SERVER, runs, str(port)], env=env)
        try:
            for _ in range(100):  # wait for the port to open
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            result = asyncio.run(measure(f"ws://127.0.0.1:{port}/ws/playground", args.seconds, args.data))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"GAN playground on {args.data}: MLP 2x64, batch 256, non-saturating loss, torch 1 thread, 2-core CPU")
    print("second  frames  step")
    for i, (count, step) in enumerate(result["per_second"]):
        print(f"{i:6d}  {count:6d}  {step}")
    print(f"{result['frames']} frames in {result['seconds']:.1f} s: {result['frames_per_s']:.1f} frames/s received, "
          f"{result['steps_per_s']:.0f} training steps/s (targets: >= 20 frames/s and >= 300 steps/s at once)")
    print(f"RESULT steps_per_s={result['steps_per_s']:.0f} frames_per_s={result['frames_per_s']:.1f}")


if __name__ == "__main__":
    main()
