"""Sphinx configuration for multiomix."""

from __future__ import annotations

import shutil
from importlib.metadata import version as _package_version
from pathlib import Path

HERE = Path(__file__).parent

project = "multiomix"
author = "multiomix developers"
release = _package_version("multiomix")
version = release
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",
]
autosummary_generate = True
templates_path = ["_templates"]
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
typehints_defaults = "braces"
always_document_param_types = False
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath"]
html_theme = "sphinx_book_theme"
html_title = "multiomix"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_templates"]
nitpicky = True
# The build runs offline (no intersphinx inventories): references to other libraries' types are not
# resolved into links; they are listed here instead of silently failing.
nitpick_ignore_regex = [
    (
        "py:class",
        r"(torch|anndata|mudata|numpy|np|pandas|pd|scvi|matplotlib|lightning|pl|collections|typing|os|pathlib|h5py"
        r"|sklearn|shap|captum)(\..*)?",
    ),
    (
        "py:class",
        r"(AnnData|MuData|Tensor|DataFrame|Series|Figure|Axes|Path|PathLike|ndarray|Module|Generator|Any|optional"
        r"|callable|array-like|array_like|dict|list|tuple|float|int|str|bool|None)(\[.*\])?",
    ),
    ("py:class", r".*(_base|_crossattomics|_utils|_lrp)\..*"),
    ("py:class", r".*\s.*|\.|.*\.$"),  # free-text descriptions in numpydoc "Returns" sections
    ("py:class", r".*\._[A-Za-z].*"),  # private base classes
    ("py:mod", r"multiomix(\..*)?"),
    ("py:class", r"RelevanceAdapter"),  # forward reference in a return annotation
    ("py:class", r"multiomix\.nn\.swin1d\.WindowAttentionWeights"),  # internal record type in annotations
    ("py:obj", r".*"),
    ("py:data", r".*"),
    ("py:func", r"(scanpy|muon|scvi|sklearn|torch|numpy)\..*"),
    ("py:meth", r"(scanpy|muon|scvi|sklearn|torch|numpy|mudata|anndata)\..*"),
]
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header", "config.cache"]


def _copy_tutorials(app) -> None:
    """Executed notebooks live in ../tutorials; copy them in so the site renders their stored outputs."""
    target = HERE / "tutorials"
    target.mkdir(exist_ok=True)
    for notebook in sorted((HERE.parent / "tutorials").glob("*.ipynb")):
        shutil.copy2(notebook, target / notebook.name)


def setup(app) -> None:
    app.connect("builder-inited", _copy_tutorials)
