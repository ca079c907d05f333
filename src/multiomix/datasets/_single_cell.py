"""Loaders of the public single-cell multi-omics datasets used in tutorials, tests and benchmarks."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import anndata as ad
import pandas as pd
from mudata import MuData

from .._utils import new_mudata
from ._cache import fetch

_OP_MULTIOME = (
    "https://raw.githubusercontent.com/openproblems-bio/neurips2021_multimodal_viash/"
    "edaa879332ce91af98f9a6eac3b3606b6fd860b2/resources_test/common/openproblems_bmmc_multiome_starter/"
)
_OP_CITE = (
    "https://raw.githubusercontent.com/openproblems-bio/neurips2021_multimodal_viash/"
    "main/resources_test/common/openproblems_bmmc_cite_starter/"
)
_UNITEDNET = (
    "https://raw.githubusercontent.com/LiuLab-Bioelectronics-Harvard/UnitedNet/"
    "7e9ad2b4b4e29f853e9a42519a9b2159730a9b48/data/patchseq/"
)

_FILES = {
    "multiome_rna": (
        "openproblems_bmmc_starter/multiome_edaa879/openproblems_bmmc_multiome_starter.output_rna.h5ad",
        _OP_MULTIOME + "openproblems_bmmc_multiome_starter.output_rna.h5ad",
        "53efc0c9c9fb205587d18087e9010846c7532d8de23daea26ff5a410b029cea6",
    ),
    "multiome_atac": (
        "openproblems_bmmc_starter/multiome_edaa879/openproblems_bmmc_multiome_starter.output_mod2.h5ad",
        _OP_MULTIOME + "openproblems_bmmc_multiome_starter.output_mod2.h5ad",
        "f6d6368518a7e5ed0e19eb67f87370b017a1d98d735b9aedbad78dd93c84a068",
    ),
    "cite_rna": (
        "openproblems_bmmc_starter/cite/openproblems_bmmc_cite_starter.output_rna.h5ad",
        _OP_CITE + "openproblems_bmmc_cite_starter.output_rna.h5ad",
        "e111b6ad48f7236b9291dab56d0aa2ebcc1a5f8d1d402fa232d9bfe3d1af6f61",
    ),
    "cite_adt": (
        "openproblems_bmmc_starter/cite/openproblems_bmmc_cite_starter.output_mod2.h5ad",
        _OP_CITE + "openproblems_bmmc_cite_starter.output_mod2.h5ad",
        "ad4df05778c27c930bdb9764452af0fa381cbd9b3fb8de669420148f20fb1fed",
    ),
    "patchseq_rna": (
        "unitednet_patchseq/adata_RNA_TEM.h5ad",
        _UNITEDNET + "adata_RNA_TEM.h5ad",
        "3a13710273c41c6609d3604398aa936969a10e864563d49529bd49e3500d7cee",
    ),
    "patchseq_ephys": (
        "unitednet_patchseq/adata_Ephys_TEM.h5ad",
        _UNITEDNET + "adata_Ephys_TEM.h5ad",
        "c7f3da2912f54861746b6bd30dd1824e65739ede64bfddb4df3d51c90ac6dae3",
    ),
    "patchseq_morph": (
        "unitednet_patchseq/adata_Morph_TEM.h5ad",
        _UNITEDNET + "adata_Morph_TEM.h5ad",
        "14e54310a9f55bbb4b860d30681c060557346a305b9728f8b5400cd60cbfae22",
    ),
}


def _load(source: str, modalities: Sequence[str], shared_obs: Sequence[str],
          data_dir: str | os.PathLike | None) -> MuData:
    """Read the file ``_FILES['<source>_<modality>']`` of every modality and pair them into one MuData.

    The modalities must hold the same cells in the same order; the ``shared_obs`` columns of the first one
    (those it has) become ``mdata.obs`` columns, object columns as categoricals.
    """
    mods = {}
    for m in modalities:
        relative, url, sha = _FILES[f"{source}_{m}"]
        path = fetch(relative, url=url, sha256=sha, data_dir=data_dir)
        with warnings.catch_warnings():  # the public files predate anndata's encoding metadata; they read fine
            warnings.filterwarnings("ignore", category=ad.OldFormatWarning)
            mods[m] = ad.read_h5ad(path)
    first = mods[modalities[0]]
    for name, adata in mods.items():
        if not adata.obs_names.equals(first.obs_names):
            raise ValueError(f"Modality {name!r} is not paired cell-for-cell with the others in the source files.")
    mdata = new_mudata(mods)
    for col in shared_obs:
        if col in first.obs.columns:
            values = first.obs[col]
            mdata.obs[col] = values.astype("category") if values.dtype == object else values.values
    return mdata


def bmmc_multiome(*, data_dir: str | os.PathLike | None = None) -> MuData:
    """10x Multiome bone marrow mononuclear cells (NeurIPS 2021 multimodal challenge starter subset).

    500 cells from two samples (``s1d1``, ``s1d2``); ``rna``: 600 genes (X log-normalised, ``layers['counts']``);
    ``atac``: 600 peaks (X binarised, ``layers['counts']``). ``obs`` holds ``cell_type`` (21 types), ``batch``,
    ``is_train`` and the pseudotime orders. Source: openproblems-bio/neurips2021_multimodal_viash (MIT),
    Luecken et al., NeurIPS Datasets and Benchmarks 2021.

    Parameters
    ----------
    data_dir
        Local folder holding ``openproblems_bmmc_starter/...`` (default: ``$MULTIOMIX_DATA_DIR``, then download).

    Returns
    -------
    MuData with modalities ``rna`` and ``atac``.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.bmmc_multiome()
    >>> mdata.mod["atac"].shape
    (500, 600)
    """
    shared_obs = ["cell_type", "batch", "is_train", "pseudotime_order_GEX", "pseudotime_order_ATAC", "phase"]
    return _load("multiome", ["rna", "atac"], shared_obs, data_dir)


def bmmc_cite(*, data_dir: str | os.PathLike | None = None) -> MuData:
    """CITE-seq bone marrow mononuclear cells (NeurIPS 2021 multimodal challenge starter subset).

    600 cells; ``rna``: 1000 genes, ``adt``: 134 antibody-derived tags (X normalised, raw counts in
    ``layers['counts']``). ``obs`` holds ``cell_type`` (41 types), ``batch``, ``is_train``, ``phase``.
    Source: openproblems-bio/neurips2021_multimodal_viash (MIT), Luecken et al. 2021.

    Parameters
    ----------
    data_dir
        Local folder holding ``openproblems_bmmc_starter/...`` (default: ``$MULTIOMIX_DATA_DIR``, then download).

    Returns
    -------
    MuData with modalities ``rna`` and ``adt``.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.bmmc_cite()
    >>> mdata.mod["adt"].shape
    (600, 134)
    """
    shared_obs = ["cell_type", "batch", "is_train", "phase", "pseudotime_order_GEX", "pseudotime_order_ADT"]
    return _load("cite", ["rna", "adt"], shared_obs, data_dir)


def patchseq(*, data_dir: str | os.PathLike | None = None) -> MuData:
    """Patch-seq GABAergic interneurons of mouse visual cortex (Gouwens et al., Cell 2020), as used by UnitedNet.

    448 cells; ``rna``: 1252 genes, ``ephys``: 68 electrophysiology features, ``morph``: 514 morphology features
    (dense). ``obs['cell_type_TEM']`` holds the 27 MET types, ``obs['cell_type_T']`` the 52 transcriptomic types.
    Source: LiuLab-Bioelectronics-Harvard/UnitedNet (GPL-3.0), Tang et al., Nat Commun 2023.

    Parameters
    ----------
    data_dir
        Local folder holding ``unitednet_patchseq/...`` (default: ``$MULTIOMIX_DATA_DIR``, then download).

    Returns
    -------
    MuData with modalities ``rna``, ``ephys`` and ``morph``.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.patchseq()
    >>> mdata.obs["cell_type_TEM"].nunique()
    27
    """
    mdata = _load("patchseq", ["rna", "ephys", "morph"], ["cell_type_TEM", "cell_type_T"], data_dir)
    for col in ("cell_type_TEM", "cell_type_T"):
        mdata.obs[col] = pd.Categorical(mdata.obs[col].astype(str))
    return mdata
