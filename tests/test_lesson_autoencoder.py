"""The autoencoder lesson's one convention for a 3x3 pattern (on = dark ink, off = light, every cell bordered)
in the terminal and in autoencoder.png, whose title and labels are also in its metadata; and the whole lesson."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from genlab import lessons
from genlab.data import load_dataset
from genlab.data.toys import PATTERNS
from genlab.explore import TITLE_BAND


def cell_value(picture: np.ndarray, index: int, row: str, cell: int) -> int:
    """The grey at the middle of `cell` (0-8, row by row) of pattern `index`'s input or reconstruction."""
    left, top = lessons.pattern_box(index, row)
    x = left + (cell % 3) * lessons.SHEET_CELL + lessons.SHEET_CELL // 2
    y = TITLE_BAND + top + (cell // 3) * lessons.SHEET_CELL + lessons.SHEET_CELL // 2
    return int(picture[y, x, 0])


def sheet(reconstructions: torch.Tensor) -> Image.Image:
    x = load_dataset("patterns").x
    codes = torch.linspace(-1, 1, 45).view(15, 3)
    return Image.open(io.BytesIO(lessons.pattern_sheet(list(PATTERNS), x, codes, reconstructions, "the title")))


def test_the_terminal_shows_on_as_ink_off_as_paper_and_greys_as_unsure():
    pattern = torch.tensor([1.0, 0.0, 0.5, 0.9, 0.1, 0.74, 0.26, 0.76, 0.24])
    assert lessons._cells(pattern) == "■□▒\n■□▒\n▒■□"
    assert lessons.CONVENTION.startswith("■ = on (dark ink), □ = off (light)")


def test_the_sheet_draws_on_cells_dark_off_cells_light_and_greys_as_they_are():
    x = load_dataset("patterns").x
    image = sheet(torch.full_like(x, 0.5))
    assert image.info["Title"] == "the title"
    assert image.info["Description"].startswith("rows for each pattern: name, input, code (its 3 numbers), "
                                                "reconstruction; a dark cell is on (1)")
    picture = np.asarray(image.convert("RGB"))
    for index, pattern in enumerate(x.view(15, 9)):
        for cell, value in enumerate(pattern.tolist()):
            shown = cell_value(picture, index, "input", cell)
            assert shown == (0 if value == 1 else 255), (list(PATTERNS)[index], cell)
            assert abs(cell_value(picture, index, "reconstruction", cell) - 128) <= 1  # an unsure cell looks unsure
    # every cell has a border: an off cell's edge is grey, not the white of the paper around it
    left, top = lessons.pattern_box(0, "input")
    assert tuple(picture[TITLE_BAND + top + 2 * lessons.SHEET_CELL + 5, left]) == lessons.BORDER
    # the row names and each pattern's name and code are written (ink where the text goes)
    for index in (0, 14):
        for row in ("name", "code"):
            left, top = lessons.pattern_box(index, row)
            assert (picture[TITLE_BAND + top:TITLE_BAND + top + 16, left:left + 100] < 100).any(), (index, row)
    assert (picture[TITLE_BAND:, :lessons.SHEET_LABELS] < 100).any()


@pytest.mark.slow
def test_the_autoencoder_lesson_prints_and_draws_every_pattern_in_one_convention(tmp_path):
    console = Console(record=True, width=120)
    picture = lessons.autoencoder(tmp_path, console)  # ~6 CPU-s: 3000 steps of a 9-32-3 autoencoder
    text = console.export_text()
    assert lessons.CONVENTION in text
    assert "15 of 15 patterns come back exactly from 3 numbers." in text
    with Image.open(picture) as image:
        assert image.info["Title"] == ("autoencoder lesson, step 3000: 15 patterns, each squeezed into 3 numbers "
                                       "and back")
        pixels = np.asarray(image.convert("RGB"))
    for index, pattern in enumerate(load_dataset("patterns").x.view(15, 9)):
        for cell, value in enumerate(pattern.tolist()):
            assert cell_value(pixels, index, "input", cell) == (0 if value == 1 else 255)
            reconstructed = cell_value(pixels, index, "reconstruction", cell)
            assert reconstructed < 128 if value == 1 else reconstructed > 128  # each comes back on the right side
