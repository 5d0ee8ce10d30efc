"""The command line answers --help and --version without importing the heavy libraries (torch, scikit-learn),
which commands import when they run (benchmarks/cli_start.py measures the time this saves)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import genlab
from cli_helpers import invoke, succeeded

SRC = str(Path(genlab.__file__).parents[1])


def test_building_the_cli_imports_neither_torch_nor_sklearn():
    code = "import sys, genlab.cli; print(sorted({'torch', 'sklearn'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": SRC}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


def test_version():
    assert succeeded(invoke("--version")).strip() == f"genlab {genlab.__version__}"
