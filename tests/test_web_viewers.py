"""The lab on a real uvicorn server: 20 viewers of one training run at once, and the WebSocket Origin check."""

import asyncio
import json
import time

import httpx
import pytest
import websockets

from genlab.web.app import create_app
from web_server import running_server

VIEWERS = 20


async def watch(url: str) -> dict:
    """Read one run's stream to its end; what this viewer saw."""
    records, statuses = [], []
    async with websockets.connect(url) as ws:
        async for text in ws:
            message = json.loads(text)
            assert message["type"] == "run", message
            records += message["records"]
            statuses.append(message["status"])
    return {"records": records, "statuses": statuses}


@pytest.mark.slow
def test_twenty_viewers_watch_one_run(tmp_path):
    with running_server(create_app(tmp_path)) as address:
        response = httpx.post(f"http://{address}/api/runs", json={
            "family": "gan", "data": "ring", "steps": 400,
            "settings": {"latent_dim": 2, "hidden_dims": [32, 32], "log_every": 5, "sample_every": 100}})
        assert response.status_code == 201, response.text
        name = response.json()["name"]

        async def all_viewers():
            return await asyncio.gather(*[watch(f"ws://{address}/ws/runs/{name}") for _ in range(VIEWERS)])

        start = time.time()
        seen = asyncio.run(all_viewers())
        info = httpx.get(f"http://{address}/api/runs/{name}").json()
    assert info["status"] == "finished" and info["step"] == 400
    assert time.time() - start < 120
    for viewer in seen:
        # every viewer got every logged record exactly once, in order, and saw the run end
        assert [r["step"] for r in viewer["records"]] == [r["step"] for r in info["records"]]
        assert viewer["statuses"][-1] == "finished"
    assert sum("running" in viewer["statuses"] for viewer in seen) >= VIEWERS // 2  # they watched it live


def test_websockets_from_another_origin_are_refused(tmp_path):
    async def connect(address, origin):
        async with websockets.connect(f"ws://{address}/ws/playground", origin=origin) as ws:
            return json.loads(await ws.recv())["type"]

    with running_server(create_app(tmp_path)) as address:
        assert asyncio.run(connect(address, f"http://{address}")) == "data"
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            asyncio.run(connect(address, "http://evil.example"))
        assert refused.value.response.status_code == 403
