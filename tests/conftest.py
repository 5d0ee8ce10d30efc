import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny models, which run fastest on one thread: on a busy 2-core machine, OpenMP workers
    contending with other processes make small ops up to ~100x slower. Subprocesses get OMP_NUM_THREADS=1."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def set_step(monkeypatch, family: str, step) -> None:
    """Train `family` with `step` instead of its own training step, for this test only."""
    import dataclasses

    from genlab.models import FAMILIES

    monkeypatch.setitem(FAMILIES, family, dataclasses.replace(FAMILIES[family], step=step))
