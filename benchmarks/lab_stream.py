"""The GAN playground's speed as a person sees it: training steps/s with the views drawn and with them hidden,
side by side, and where the CPU goes (the lab's server process, the browser).

Starts `genlab.web.app` under uvicorn in a subprocess on a free port (so the client never shares the server's
GIL) and presses play. `--client browser` (the default) opens /playground in headless Chromium (Playwright) and
ticks or unticks every "Show" box, so the browser draws what a learner's would; `--client socket` is a bare
WebSocket client that turns the server's views on and off and draws nothing. Rounds alternate views on and off
so that a change in the machine's load falls on both. `--busy` keeps one core busy in another process, as the
other jobs on a shared machine do. Linux: CPU time is read from /proc.

    python benchmarks/lab_stream.py [--client browser|socket] [--seconds 5] [--rounds 3] [--busy]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = """
import sys, uvicorn
from genlab.web.app import create_app
uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHOW = ("real", "fake", "heatmap", "arrows", "grid", "coverage")  # the page's "Show" boxes
VIEWS = ("heatmap", "arrows", "grid", "coverage")  # the views the server computes
WARM_S = 1.5  # after switching views: let the frames in flight drain
TICK = os.sysconf("SC_CLK_TCK")


def spin(stop):
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(root: int, skip: int | None = None) -> float:
    """CPU seconds used so far by process `root` and its descendants, leaving out the tree under `skip`."""
    parents, cpu = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            parents[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid and child != skip]
    return total


class Round:
    """Steps, frames and CPU seconds of the server and the client over one timed stretch."""

    def __init__(self, server: int):
        self.server = server

    def start(self, step: int, frames: int) -> None:
        self.begin = (time.perf_counter(), step, frames, cpu_seconds(self.server),
                      cpu_seconds(os.getpid(), skip=self.server))

    def stop(self, step: int, frames: int) -> dict:
        end = (time.perf_counter(), step, frames, cpu_seconds(self.server), cpu_seconds(os.getpid(), skip=self.server))
        wall = end[0] - self.begin[0]
        steps, frames, server, client = (b - a for a, b in zip(self.begin[1:], end[1:], strict=True))
        return {"steps_per_s": steps / wall, "frames_per_s": frames / wall, "server_cores": server / wall,
                "client_cores": client / wall, "steps_per_server_cpu_s": steps / max(server, 1 / TICK)}


async def socket_rounds(url: str, server: int, data: str, seconds: float, rounds: int) -> list[tuple[bool, dict]]:
    import websockets

    results = []
    async with websockets.connect(url, max_size=2**22) as ws:
        await ws.send(json.dumps({"type": "settings", "settings": {"data": data}}))
        await ws.send(json.dumps({"type": "play"}))
        step = frames = 0

        async def listen(until: float):
            nonlocal step, frames
            while time.perf_counter() < until:
                message = json.loads(await ws.recv())
                if message["type"] == "frame" and message["playing"]:
                    step, frames = message["step"], frames + 1

        for views_on in (True, False) * rounds:
            await ws.send(json.dumps({"type": "views", "views": dict.fromkeys(VIEWS, views_on)}))
            await listen(time.perf_counter() + WARM_S)
            timed = Round(server)
            timed.start(step, frames)
            await listen(time.perf_counter() + seconds)
            results.append((views_on, timed.stop(step, frames)))
    return results


def browser_rounds(address: str, server: int, data: str, seconds: float, rounds: int) -> list[tuple[bool, dict]]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://{address}/playground")
        page.wait_for_function("document.getElementById('step').textContent !== ''")
        page.select_option("#data", data)
        page.wait_for_function(f"document.getElementById('data').value === '{data}'")
        page.click("#play")
        counts = "() => [Number(document.getElementById('step').textContent), state.framesDrawn]"
        for views_on in (True, False) * rounds:
            for name in SHOW:
                page.set_checked(f"#show-{name}", views_on)
            time.sleep(WARM_S)
            timed = Round(server)
            timed.start(*page.evaluate(counts))
            time.sleep(seconds)
            results.append((views_on, timed.stop(*page.evaluate(counts))))
        page.click("#play")  # paused: draw the last frame again and again, all views on
        for name in SHOW:
            page.check(f"#show-{name}")
        # getImageData makes the canvases paint now, so the time includes rasterising, not only the JS
        draw_ms = page.evaluate("""() => {
          const start = performance.now(), canvases = [...document.querySelectorAll("canvas")];
          for (let i = 0; i < 100; i++) { draw(); canvases.forEach(c => c.getContext("2d").getImageData(0, 0, 1, 1)); }
          return (performance.now() - start) / 100; }""")
        browser.close()
    return results, draw_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", default="browser", choices=["browser", "socket"])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of rounds (views on, views off)")
    parser.add_argument("--data", default="ring", choices=["ring", "grid", "moons", "gaussian1d"])
    parser.add_argument("--busy", action="store_true", help="keep one core busy in another process meanwhile")
    args = parser.parse_args()
    if args.client == "browser" and not shutil.which(CHROMIUM):
        parser.error(f"no Chromium at {CHROMIUM}: install it (apt-get install chromium) or use --client socket")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=spin, args=(stop,)) if args.busy else None
    with tempfile.TemporaryDirectory() as runs:
        server = subprocess.Popen([sys.executable, "-c", SERVER, runs, str(port)], env=env)
        try:
            for _ in range(300):  # wait for the port to open
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            if spinner:
                spinner.start()
            draw_ms = None
            if args.client == "browser":
                results, draw_ms = browser_rounds(f"127.0.0.1:{port}", server.pid, args.data, args.seconds,
                                                  args.rounds)
            else:
                results = asyncio.run(socket_rounds(f"ws://127.0.0.1:{port}/ws/playground", server.pid, args.data,
                                                    args.seconds, args.rounds))
        finally:
            stop.set()
            if spinner:
                spinner.join()
            server.terminate()
            server.wait(timeout=10)
    print(f"GAN playground on {args.data}: MLP 2x64, batch 256, non-saturating loss, {args.client} client, "
          f"{os.cpu_count()} CPUs{', one kept busy' if args.busy else ''}, {args.seconds:.0f} s rounds")
    print("views  steps/s  frames/s  server cores  client cores  steps per server CPU-s")
    for views_on, r in results:
        print(f"{'on ' if views_on else 'off'}    {r['steps_per_s']:7.0f}  {r['frames_per_s']:8.1f}  "
              f"{r['server_cores']:12.2f}  {r['client_cores']:12.2f}  {r['steps_per_server_cpu_s']:22.0f}")
    median = {on: {key: statistics.median(r[key] for o, r in results if o == on) for key in results[0][1]}
              for on in (True, False)}
    on, off = median[True], median[False]
    print(f"median: views on {on['steps_per_s']:.0f} steps/s at {on['frames_per_s']:.1f} frames/s, "
          f"views off {off['steps_per_s']:.0f} steps/s: on/off = {on['steps_per_s'] / off['steps_per_s']:.2f}; "
          f"steps per server CPU-s {on['steps_per_server_cpu_s']:.0f} on, {off['steps_per_server_cpu_s']:.0f} off; "
          f"the client uses {on['client_cores']:.2f} cores on, {off['client_cores']:.2f} off")
    if draw_ms is not None:
        print(f"the browser draws one frame (every view, charts included, painted) in {draw_ms:.2f} ms")
    print(f"RESULT client={args.client} busy={int(args.busy)} steps_per_s_views_on={on['steps_per_s']:.0f} "
          f"steps_per_s_views_off={off['steps_per_s']:.0f} on_over_off={on['steps_per_s'] / off['steps_per_s']:.2f} "
          f"frames_per_s_views_on={on['frames_per_s']:.1f} "
          f"steps_per_server_cpu_s_views_on={on['steps_per_server_cpu_s']:.0f} "
          f"steps_per_server_cpu_s_views_off={off['steps_per_server_cpu_s']:.0f} "
          f"client_cores_views_on={on['client_cores']:.2f} "
          f"client_cores_views_off={off['client_cores']:.2f}"
          + (f" draw_ms={draw_ms:.2f}" if draw_ms is not None else ""))


if __name__ == "__main__":
    main()
