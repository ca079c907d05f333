"""multiomix: deep multi-omics integration models for the scverse ecosystem."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import datasets, explain, io, models, nn, pl, pp, tl
from ._settings import settings

try:
    __version__ = version("multiomix")
except PackageNotFoundError:  # pragma: no cover - source checkout without install
    __version__ = "0.0.0"

__all__ = ["datasets", "explain", "io", "models", "nn", "pl", "pp", "tl", "settings", "__version__"]
