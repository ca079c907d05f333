"""Check at build time that ``docs/api.md`` lists every public name of the package.

Every name in the ``__all__`` of the public namespaces below must appear in an ``autosummary`` (or ``autodata``)
of ``api.md``, under that name or any other name of the same object (``mx.models.base.MultiomixModel`` is
listed as ``mx.models.MultiomixModel``). A missing name is a Sphinx warning, so ``make docs`` (``-W``) fails
until the new function is added to the API page.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from sphinx.util import logging

NAMESPACES = ["datasets", "io", "pp", "tl", "pl", "models", "models.base", "explain", "nn", "train"]
_ENTRY = re.compile(r"^\s+(?:\.\. autodata:: )?([A-Za-z_][\w.]*)\s*$")

logger = logging.getLogger(__name__)


def _listed(api: Path) -> set[str]:
    names, in_block = set(), False
    for line in api.read_text(encoding="utf-8").splitlines():
        if line.startswith(".. autosummary::"):
            in_block = True
            continue
        if line.startswith(".. autodata::"):
            names.add(line.split("::", 1)[1].strip())
            continue
        if in_block and line and not line.startswith(" "):
            in_block = False
        match = _ENTRY.match(line) if in_block else None
        if match and not match[1].startswith(":"):
            names.add(match[1])
    return names


def missing_names(api: Path, package: str = "multiomix") -> list[str]:
    """Public names (``package.namespace.name``) that ``api`` does not list."""
    listed = _listed(api)
    listed_ids = set()
    for name in listed:
        module, _, attr = f"{package}.{name}".rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            listed_ids.add(id(obj))
    missing = []
    for namespace in NAMESPACES:
        module = importlib.import_module(f"{package}.{namespace}")
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if inspect.ismodule(obj) or f"{namespace}.{attr}" in listed:
                continue
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) in listed_ids:
                continue
            missing.append(f"{package}.{namespace}.{attr}")
    return missing


def check(app) -> None:
    """``builder-inited``: warn once per public name missing from ``api.md``."""
    api = Path(app.srcdir) / "api.md"
    for name in missing_names(api):
        logger.warning(f"api.md does not list the public name {name}", location="api")
