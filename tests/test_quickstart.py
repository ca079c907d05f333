"""The quick-start notebook runs on a fresh kernel and shows no warning text (what a new user sees)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tutorials"))
from execute import noisy_outputs  # noqa: E402


@pytest.mark.slow
def test_quickstart_notebook_executes_quietly(tmp_path):
    from nbclient import NotebookClient

    path = tmp_path / "quickstart.ipynb"
    shutil.copy(ROOT / "tutorials" / "quickstart.ipynb", path)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   ).execute()
    assert noisy_outputs(notebook) == []
    texts = "".join(str(o.get("text", "")) for c in notebook.cells for o in c.get("outputs", []))
    assert "crossattomics vs baseline" in texts and "added .obs['split']" in texts
