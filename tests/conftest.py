"""Test configuration: offline data directory, headless plotting, quiet logs, one torch thread."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("MULTIOMIX_DATA_DIR", str(DATA_DIR))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", module="lightning")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder with the real public test data (../shared/data beside the repository)."""
    path = Path(os.environ["MULTIOMIX_DATA_DIR"])
    if not path.exists():
        pytest.fail(f"Real test data not found at {path}; set MULTIOMIX_DATA_DIR.")
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Keep every test on one torch thread (some libraries reset the process's OpenMP thread count)."""
    torch.set_num_threads(1)
    yield


@pytest.fixture
def neighbors_reset_threads(monkeypatch):
    """scanpy's neighbour graph as numba's OpenMP layer makes it behave the first time it runs in a process: it
    sets torch's thread count to 2. Functions that build the graph must give the user's count back."""
    import scanpy as sc

    neighbors = sc.pp.neighbors

    def resetting_neighbors(*args, **kwargs):
        torch.set_num_threads(2)
        return neighbors(*args, **kwargs)

    monkeypatch.setattr(sc.pp, "neighbors", resetting_neighbors)
    torch.set_num_threads(1)
    yield
    monkeypatch.undo()
