"""What the lab refuses at the door, on a real uvicorn server: other host names (DNS rebinding), other origins,
bodies over the cap (by Content-Length and while a chunked body streams), binary WebSocket frames, and a flood of
pictures that must neither queue without end nor stall the cheap requests."""

import asyncio
import json
import socket
import time

import httpx
import pytest
import websockets

from genlab.web.app import create_app
from genlab.web.guard import MAX_BODY, host_allowed, origin_allowed, served_hosts
from web_server import running_server


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_server(create_app(tmp_path_factory.mktemp("runs"))) as address:
        yield address


def test_served_hosts_are_the_loopback_names_and_the_bound_address():
    local = served_hosts("127.0.0.1", 8000)
    assert set(local) == {"127.0.0.1:8000", "localhost:8000", "[::1]:8000"}
    assert host_allowed("LocalHost:8000", local) and host_allowed("[::1]:8000", local)
    for rebound in ("evil.example:8000", "localhost:8001", "localhost", "127.0.0.1.evil.example:8000", ""):
        assert not host_allowed(rebound, local)
    lan = served_hosts("192.0.2.7", 8000)
    assert "192.0.2.7:8000" in lan and f"{socket.gethostname().lower()}:8000" in lan and "localhost:8000" in lan
    everywhere = served_hosts("0.0.0.0", 8000)
    assert "0.0.0.0:8000" in everywhere and f"{socket.gethostname().lower()}:8000" in everywhere
    assert origin_allowed("http://localhost:8000", local) and not origin_allowed("null", local)
    assert not origin_allowed("http://evil.example:8000", local) and not origin_allowed("file:///x", local)


def test_dns_rebinding_is_refused(lab):
    port = lab.rsplit(":", 1)[1]
    url = f"http://{lab}/api/options"
    assert httpx.get(url).status_code == 200
    assert httpx.get(url, headers={"host": f"localhost:{port}"}).status_code == 200
    # an attacker's name re-pointed at 127.0.0.1: Host and Origin agree with each other, but not with the lab
    rebound = {"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}"}
    for response in (httpx.get(url, headers=rebound), httpx.post(f"http://{lab}/api/runs/x/stop", headers=rebound),
                     httpx.get(f"http://{lab}/dashboard", headers={"host": "evil.example"})):
        assert response.status_code == 400 and "answers only to" in response.json()["detail"]
    cross = httpx.post(f"http://{lab}/api/bench/decode", json={"code": [0, 0, 0]},
                       headers={"origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-origin" in cross.json()["detail"]


def test_a_lab_answers_only_on_its_own_port(tmp_path):
    with running_server(create_app(tmp_path, allowed_hosts=served_hosts("127.0.0.1", 1))) as address:
        response = httpx.get(f"http://{address}/api/options")  # the right name, another port
    assert response.status_code == 400


def test_websockets_under_a_rebound_name_are_refused(lab):
    port = int(lab.rsplit(":", 1)[1])

    async def connect(name):
        async with websockets.connect(f"ws://{name}:{port}/ws/playground", host="127.0.0.1", port=port,
                                      origin=f"http://{name}:{port}") as ws:
            return json.loads(await ws.recv())["type"]

    assert asyncio.run(connect("localhost")) == "data"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        asyncio.run(connect("evil.example"))
    assert refused.value.response.status_code == 400
    assert "answers only to" in json.loads(refused.value.response.body)["detail"]


def raw_request(address: str, data: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def test_bodies_over_the_cap_are_413(lab):
    # announced: refused before a byte of it is read (this client never sends it)
    head = f"POST /api/runs HTTP/1.1\r\nHost: {lab}\r\nContent-Type: application/json\r\n"
    answer = raw_request(lab, head.encode() + b"Content-Length: 10000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"send less" in answer
    # chunked, with no length announced: refused once it passes the cap
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 2)) + b"0\r\n\r\n"
    answer = raw_request(lab, head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 413") and b"send less" in answer
    assert httpx.post(f"http://{lab}/api/runs", content=b"[" + b"0," * 400_000 + b"0]", timeout=60,
                      headers={"content-type": "application/json"}).status_code == 422  # under the cap: read, refused


def test_binary_and_malformed_frames_get_an_error_and_the_session_goes_on(lab):
    async def session():
        async with websockets.connect(f"ws://{lab}/ws/playground") as ws:
            await ws.send(b"\x00\x01binary")
            await ws.send("{not json")
            await ws.send('{"type": "step", "which": "d"}')
            errors, stepped = [], False
            async for text in ws:
                message = json.loads(text)
                if message["type"] == "error":
                    errors.append(message["message"])
                stepped = stepped or (message["type"] == "frame" and message["d_steps"] == 1)
                if stepped and len(errors) == 2:
                    return errors

    errors = asyncio.run(asyncio.wait_for(session(), 60))
    assert "not binary frames" in errors[0] and "messages are JSON objects" in errors[1]


@pytest.mark.slow
def test_a_flood_of_pictures_is_bounded_and_cheap_requests_still_answer(lab):
    run = httpx.post(f"http://{lab}/api/runs", json={"family": "gan", "data": "ring", "steps": 20, "settings": {
        "latent_dim": 2, "hidden_dims": [16]}}, timeout=60).json()["name"]
    deadline = time.time() + 60
    while httpx.get(f"http://{lab}/api/runs/{run}", timeout=60).json()["status"] != "finished":
        assert time.time() < deadline
        time.sleep(0.1)

    async def flood():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
            pictures = [client.get(f"http://{lab}/api/runs/{run}/generate.png?n=256&seed={i}") for i in range(40)]
            flooding = asyncio.gather(*pictures)
            await asyncio.sleep(0.05)
            cheap = await asyncio.wait_for(client.get(f"http://{lab}/api/options"), 10)  # did not hang
            return cheap, await flooding

    cheap, pictures = asyncio.run(flood())
    assert cheap.status_code == 200
    drawn = [p for p in pictures if p.status_code == 200]
    refused = [p for p in pictures if p.status_code == 503]
    assert len(drawn) + len(refused) == len(pictures) and drawn and refused
    assert all(p.content.startswith(b"\x89PNG") for p in drawn)
    assert all(p.headers["retry-after"] == "1" and "try again" in p.json()["detail"] for p in refused)
