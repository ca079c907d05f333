"""The tutorials as stored (what the docs render): no warning text, no tracebacks, no errors in their outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

TUTORIALS = Path(__file__).parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


def _executor():
    spec = importlib.util.spec_from_file_location("tutorial_execute", TUTORIALS / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_tutorial_is_found():
    assert len(NOTEBOOKS) >= 7


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_are_quiet(path):
    notebook = nbformat.read(path, as_version=4)
    assert all(c.get("execution_count") for c in notebook.cells if c.cell_type == "code" and c.source.strip()), (
        f"{path.name} has code cells that were not executed"
    )
    assert _executor().noisy_outputs(notebook) == []


def test_noise_check_catches_a_warning_and_an_error():
    noisy = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stderr", text="/x/site-packages/m.py:3: UserWarning: careful\n"),
        nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[]),
        nbformat.v4.new_output("stream", name="stderr", text="INFO File /tmp/tmpab/model.pt already downloaded\n"),
    ])])
    assert len(_executor().noisy_outputs(noisy)) == 3
