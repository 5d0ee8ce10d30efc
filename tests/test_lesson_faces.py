"""The faces lesson (progressive growing on the 100 LFW faces): `detail` on images whose answer is known; with a
tiny schedule, the stages grow 4 -> 8 -> 16, each ends at alpha 1 and the picture has a labelled row pair per
stage; the real lesson (slow) within its budget of steps, with its printed figures."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from rich.console import Console

from genlab import lessons

pytest.importorskip("skimage", reason="the faces ship inside scikit-image: pip install scikit-image")


def test_detail_by_hand():
    flat = torch.full((2, 1, 4, 4), 0.3)
    assert lessons.detail(flat, None) == pytest.approx(0.0, abs=1e-6)
    assert lessons.detail(flat, (2, 2)) == pytest.approx(0.0, abs=1e-6)
    checker = (torch.arange(4)[:, None] + torch.arange(4)[None, :]).remainder(2).float().expand(1, 1, 4, 4)
    # each 2x2 block averages 0.5, so every pixel is 0.5 away from its coarse version
    assert lessons.detail(checker, (2, 2)) == pytest.approx(0.5)
    blocks = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)[None, None]
    assert lessons.detail(blocks, (2, 2)) == pytest.approx(0.0, abs=1e-6)  # nothing finer than 2x2
    assert lessons.detail(blocks, None) == pytest.approx(0.5)


def run_lesson(tmp_path, monkeypatch):
    stages = {}

    def recorded(console, seed=0):
        stages["all"] = grow(console, seed)
        return stages["all"]

    grow = lessons.grow_faces
    monkeypatch.setattr(lessons, "grow_faces", recorded)
    console = Console(record=True, width=200)
    picture = lessons.faces(tmp_path, console)
    return picture, stages["all"], console.export_text()


def test_stages_grow_and_picture(tmp_path, monkeypatch):
    monkeypatch.setattr(lessons, "FACES_MODEL", {"max_channels": 16, "fade_steps": 3, "stable_steps": 2})
    picture, stages, text = run_lesson(tmp_path, monkeypatch)
    assert [stage.resolution for stage in stages] == [(4, 4), (8, 8), (16, 16)]
    assert [(stage.first_step, stage.last_step, stage.fade_steps) for stage in stages] == [(1, 2, 0), (3, 7, 3),
                                                                                          (8, 12, 3)]
    for stage in stages:
        assert stage.alpha == 1.0  # training_step's own alpha at the stage's last step
        assert stage.samples.shape == stage.reals.shape == (lessons.FACES_SHOWN, 1, 16, 16)
        assert 0 <= float(stage.samples.min()) and float(stage.samples.max()) <= 1
        assert stage.cpu_seconds > 0 and stage.sample_detail >= 0 and stage.real_detail > 0
        h, w = stage.resolution
        # a 4x4 stage drawn at 16x16 is 4x4 blocks: nothing finer than its own resolution
        if h < 16:
            assert lessons.detail(stage.reals, (h, w)) == pytest.approx(0.0, abs=1e-6)
            assert lessons.detail(stage.samples, (h, w)) == pytest.approx(0.0, abs=1e-6)
        assert (f"{h}x{w}: steps {stage.first_step}-{stage.last_step}" in text), text
        assert f"G's faces are {lessons.detail_verdict(stage)}" in text
    assert picture == tmp_path / "faces.png"
    with Image.open(picture) as image:
        image.verify()
    with Image.open(picture) as image:
        assert image.format == "PNG"
        assert image.info["Title"] == ("faces lesson: progressive growing 4x4 -> 8x8 -> 16x16 on the 100 LFW faces, "
                                       "12 steps")
        # 8 tiles of 16 px drawn 5x larger across; 6 rows (G and real for each stage) under the title band
        assert image.width > 8 * 16 * lessons.FACES_TILE and image.height > 6 * 16 * lessons.FACES_TILE
    assert "benchmarks/faces.py" in text


def test_verdicts():
    def stage(ratio):
        return lessons.FacesStage((16, 16), 1, 2, 0, 1.0, 0.1, torch.zeros(1), torch.zeros(1), ratio * 0.1, 0.1)
    assert lessons.detail_verdict(stage(0.5)).startswith("blurrier")
    assert lessons.detail_verdict(stage(1.0)).startswith("about as detailed")
    assert lessons.detail_verdict(stage(2.0)).startswith("noisier")


def test_registered():
    assert lessons.LESSONS["faces"] is lessons.faces


@pytest.mark.slow
def test_faces_lesson(tmp_path, monkeypatch):
    picture, stages, text = run_lesson(tmp_path, monkeypatch)
    fade, stable = lessons.FACES_MODEL["fade_steps"], lessons.FACES_MODEL["stable_steps"]
    assert [stage.last_step for stage in stages] == [stable, 2 * stable + fade, 3 * stable + 2 * fade]
    assert all(stage.alpha == 1.0 for stage in stages)
    # growing pays: a 16 px step costs more than a 4 px one
    per_step = [stage.cpu_seconds / (stage.last_step - stage.first_step + 1) for stage in stages]
    assert per_step[0] < per_step[2], per_step
    # the samples at 16 px are not all one image (the lesson's z differ)
    assert float(stages[-1].samples.std(0).mean()) > 0.01
    assert picture.is_file() and "detail over the resolution below" in text
