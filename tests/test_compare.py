"""genlab compare: the four families trained under one tiny CPU budget on 8x8 digits, evaluated alike, reported
as Markdown, self-contained HTML and a PNG; existing runs re-evaluated to the same figures; bad options refused
in one line; the spread across seeds computed right."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from cli_helpers import invoke
from genlab.compare import FAMILIES, LESSON, spread

BUDGET_S = 2



@pytest.fixture(scope="module")
def digits_comparison(tmp_path_factory) -> Path:
    """One seed of every family on digits, 2 CPU-s each; FID etc. on 200 samples (FID needs more than the
    feature network's 128 dimensions)."""
    out = tmp_path_factory.mktemp("compare") / "digits"
    result = invoke("compare", "--data", "digits", "--budget", f"{BUDGET_S}s", "--seeds", 1, "--samples", 200,
                    "--out", out)
    assert result.exit_code == 0, result.output
    return out


def table_rows(markdown: str) -> dict[str, list[str]]:
    """model label -> its cells, from compare.md's table."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


@pytest.mark.slow
def test_compare_writes_the_table_page_and_figure_with_a_row_per_family(digits_comparison):
    out = digits_comparison
    summary = json.loads((out / "compare.json").read_text())
    runs = {run["family"]: run for run in summary["runs"]}
    assert set(runs) == set(FAMILIES)
    for family, run in runs.items():
        assert (out / f"{family}-seed0" / "config.json").exists()
        assert run["steps"] >= 1 and run["train_cpu_s"] > 0
        if family in ("ae", "vae"):
            assert 0 < run["mse"] < 0.25  # pixels in [0, 1]: a reconstruction worse than 0.25 is no reconstruction
        else:
            assert run["mse"] is None
        # every family samples: the AE from the Gaussian mixture fitted on its codes after training
        assert math.isfinite(run["fid"]) and run["fid"] >= 0
        assert 0 <= run["precision"] <= 1 and 0 <= run["recall"] <= 1
        assert run["sampling_cpu_s"] > 0
        assert (out / f"{family}-seed0" / "sampler.safetensors").exists() == (family == "ae")
    rows = table_rows((out / "compare.md").read_text())
    assert len(rows) == 4
    by_family = {row["family"]: row for row in summary["table"]}
    for family, row in by_family.items():
        cells = rows[row["model"]]
        assert cells[1] == LESSON[family]
        assert cells[2] == "1"
        assert cells[-1] == str(runs[family]["steps"])  # one seed: the value itself, no spread
    assert rows[by_family["ae"]["model"]][4] != "-"  # the autoencoder has an FID, through its sampler
    assert rows[by_family["gan"]["model"]][3] == "-"  # a GAN has no reconstruction
    assert "DDIM, 50 steps" in (out / "compare.md").read_text()

    page = (out / "compare.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1 + 4  # the figure and a grid per family, all inline: the page stands alone
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data in images)
    assert "http" not in page  # nothing fetched from elsewhere
    for family in FAMILIES:
        assert LESSON[family] in page
    with Image.open(out / "compare.png") as figure:
        assert figure.size[0] >= 400


@pytest.mark.slow
def test_runs_from_re_evaluates_existing_runs_to_the_same_figures(digits_comparison, tmp_path):
    result = invoke("compare", "--data", "digits", "--runs-from", digits_comparison, "--seeds", 1,
                    "--samples", 200, "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    first = {run["family"]: run for run in json.loads((digits_comparison / "compare.json").read_text())["runs"]}
    again = {run["family"]: run for run in json.loads((tmp_path / "again" / "compare.json").read_text())["runs"]}
    for family in FAMILIES:
        for key in ("steps", "train_cpu_s", "mse", "fid", "precision", "recall"):  # one protocol, one seed
            assert again[family][key] == first[family][key], (family, key)
    assert (tmp_path / "again" / "compare.html").exists()
    assert not (tmp_path / "again" / "gan-seed0").exists()  # nothing trained


@pytest.mark.slow
def test_compare_refuses_to_train_over_existing_runs(digits_comparison):
    result = invoke("compare", "--data", "digits", "--budget", "1s", "--seeds", 1, "--out", digits_comparison)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"error: {digits_comparison} already holds runs (ae-seed0, ")
    assert f"--runs-from {digits_comparison}" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--budget", "0"], "error: the duration '0' must be positive and at most 1000h"),
    (["--budget", "soon"], "error: cannot read the duration 'soon': write e.g. 90s, 10m or 1h"),
    (["--seeds", "0"], "error: --seeds must be between 1 and 10, got 0"),
    (["--seeds", "11"], "error: --seeds must be between 1 and 10, got 11"),
    (["--data", "ring"], "error: compare needs images the shipped feature network reads: choose one of digits, "
                         "mnist, not 'ring'"),
])
def test_bad_options_give_one_line_errors(tmp_path, args, message):
    result = invoke("compare", "--out", tmp_path / "out", *args)
    assert result.exit_code == 1
    assert result.stderr.strip() == message
    assert not (tmp_path / "out").exists()


def test_runs_from_needs_a_folder_of_runs(tmp_path):
    missing = invoke("compare", "--data", "digits", "--runs-from", tmp_path / "nowhere")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"error: --runs-from {tmp_path / 'nowhere'} is not a folder"
    (tmp_path / "empty").mkdir()
    empty = invoke("compare", "--data", "digits", "--runs-from", tmp_path / "empty")
    assert empty.exit_code == 1
    assert empty.stderr.strip().startswith(f"error: {tmp_path / 'empty'} holds no FAMILY-seedN runs")


def test_spread_is_mean_and_sample_standard_deviation():
    assert spread([1.0, 2.0, 3.0], "{:.2f}") == "2.00 ± 1.00"  # stdev with n - 1: sqrt(((1)^2 + 0 + 1^2) / 2)
    assert spread([0.5, None], "{:.1f}") == "0.5"
    assert spread([None, None], "{:.1f}") == "-"
