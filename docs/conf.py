"""Sphinx configuration for multiomix."""

from __future__ import annotations

import os
import shutil
import sys
from importlib.metadata import version as _package_version
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import api_coverage  # noqa: E402
import crossrefs  # noqa: E402
from make_benchmarks_page import write_benchmarks_page  # noqa: E402

project = "multiomix"
author = "multiomix developers"
release = _package_version("multiomix")
version = release
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",
    "crossrefs",  # docs/crossrefs.py: references and class bases by public name
]
autosummary_generate = True
templates_path = ["_templates"]
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
typehints_defaults = "braces"
always_document_param_types = False
typehints_formatter = crossrefs.format_annotation
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath"]
html_theme = "sphinx_book_theme"
html_title = "multiomix"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_templates", "benchmark_notes"]
nitpicky = True

# Links to the libraries multiomix stands on. Read the Docs reaches their inventories; a machine without
# internet access cannot, so `make docs` sets MULTIOMIX_DOCS_OFFLINE=1: no inventory is fetched and
# references into these libraries (and only these) are listed in nitpick_ignore_regex below instead.
OFFLINE = os.environ.get("MULTIOMIX_DOCS_OFFLINE", "0").lower() not in ("", "0", "false", "no")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable", None),
    "muon": ("https://muon.readthedocs.io/en/latest", None),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "pandas": ("https://pandas.pydata.org/docs", None),
    "matplotlib": ("https://matplotlib.org/stable", None),
    "shap": ("https://shap.readthedocs.io/en/latest", None),
    "lightning": ("https://lightning.ai/docs/pytorch/stable", None),
}
if OFFLINE:
    intersphinx_mapping = {}

_ROLES = r"py:(class|func|meth|attr|obj|data|exc|mod)"
# pyfaidx publishes no intersphinx inventory: its names stay plain text online too.
nitpick_ignore_regex: list[tuple[str, str]] = [(_ROLES, r"pyfaidx(\..*)?")]
if OFFLINE:
    nitpick_ignore_regex += [
        (_ROLES, r"anndata(\..*)?"),
        (_ROLES, r"mudata(\..*)?"),
        (_ROLES, r"scanpy(\..*)?"),
        (_ROLES, r"muon(\..*)?"),
        (_ROLES, r"scvi(\..*)?"),
        (_ROLES, r"torch(\..*)?"),
        (_ROLES, r"numpy(\..*)?"),
        (_ROLES, r"pandas(\..*)?"),
        (_ROLES, r"matplotlib(\..*)?"),
        (_ROLES, r"shap(\..*)?"),
        (_ROLES, r"lightning(\..*)?"),
        # python: the standard-library modules the type hints use
        (_ROLES, r"(typing|collections\.abc|os|pathlib)\..*"),
        ("py:data", r"Ellipsis"),
    ]
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header", "config.cache"]


def _copy_tutorials(app) -> None:
    """Executed notebooks live in ../tutorials; copy them in so the site renders their stored outputs."""
    target = HERE / "tutorials"
    target.mkdir(exist_ok=True)
    for notebook in sorted((HERE.parent / "tutorials").glob("*.ipynb")):
        shutil.copy2(notebook, target / notebook.name)


def _benchmarks_page(app) -> None:
    """docs/benchmarks.md is generated from the current reports in ../benchmarks/results."""
    write_benchmarks_page(HERE.parent / "benchmarks" / "results", HERE / "benchmarks.md")


def setup(app) -> None:
    app.connect("builder-inited", _copy_tutorials)
    app.connect("builder-inited", _benchmarks_page)
    app.connect("builder-inited", api_coverage.check)
