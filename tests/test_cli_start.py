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


def test_the_settings_listed_in_train_help_are_the_configs_fields():
    import dataclasses

    from genlab.cli import FAMILY_NAMES, SETTING_NAMES
    from genlab.models import FAMILIES
    from genlab.train import TrainConfig

    def fields(config_class, set_elsewhere):
        return [field.name for field in dataclasses.fields(config_class) if field.name not in set_elsewhere]

    expected = {"training": fields(TrainConfig, {"data", "data_dir"}),  # --data and --data-dir are options
                **{name: fields(family.config, {"data_shape"}) for name, family in FAMILIES.items()}}
    assert {what: names.split() for what, names in SETTING_NAMES.items()} == expected
    assert "n_critic" in invoke("train", "--help").output
    assert FAMILY_NAMES == list(FAMILIES)  # train's FAMILY help names every family
