"""`genlab lab`: it serves the lab on the address it prints, and refuses ports it cannot use in one line."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from genlab.cli import app

SRC = Path(__file__).parents[1] / "src"


@pytest.mark.slow
def test_lab_serves_on_the_address_it_prints(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "genlab", "lab", "--port", "0", "--runs", str(tmp_path / "runs")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        response = httpx.get(f"{match.group(0)}api/options", timeout=30)
        assert response.status_code == 200 and "gan" in response.json()["families"]
        assert httpx.get(f"{match.group(0)}playground", timeout=30).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.parametrize("args, message", [(["--port", "70000"], "between 0 and 65535"),
                                           (["--host", "203.0.113.7", "--port", "0"], "cannot listen on")])
def test_lab_refuses_unusable_addresses(args, message):
    result = CliRunner().invoke(app, ["lab", *args])
    assert result.exit_code == 1 and message in result.output


def test_lab_refuses_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = CliRunner().invoke(app, ["lab", "--port", str(taken.getsockname()[1])])
    assert result.exit_code == 1 and "pick another --port" in result.output
