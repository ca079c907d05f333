"""Helpers shared by ``pp``/``tl``: input validation and writing results into AnnData/MuData."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from ._logging import logger

SPLIT_KEY = "split"
SPLIT_VALUES = ("train", "validation", "test")


def new_mudata(mods: dict[str, AnnData]) -> MuData:
    """Build a MuData from modalities with mudata's upcoming defaults (no pulled columns, no FutureWarning).

    Examples
    --------
    >>> new_mudata({"rna": AnnData(np.zeros((2, 3)))}).n_obs
    2
    """
    import warnings

    import mudata

    with mudata.set_options(pull_on_update=False), warnings.catch_warnings():
        # the same feature name in two modalities (a gene and its protein) is expected in a MuData
        warnings.filterwarnings("ignore", message="var_names are not unique")
        return MuData(mods)


def added(where: str, key: str, *, replaced: bool = False) -> None:
    """Log that ``key`` was written to ``where`` (e.g. ``obsm``), saying so when it replaced an entry."""
    logger.info(f"{'replaced' if replaced else 'added'} .{where}[{key!r}]")


def write_obs(obj: AnnData | MuData, key: str, values: Any) -> None:
    """Write a column to ``obj.obs`` (and log it)."""
    replaced = key in obj.obs.columns
    obj.obs[key] = values
    added("obs", key, replaced=replaced)


def write_obsm(obj: AnnData | MuData, key: str, values: np.ndarray) -> None:
    """Write an array to ``obj.obsm`` (and log it).

    Replacing an embedding removes what :func:`~multiomix.tl.benchmark_embeddings` wrote about the old one:
    ``obsm['<key>_umap']`` (its UMAP, which would otherwise be drawn for the new embedding) and the embedding's
    row of every benchmark table in ``uns`` (a table left empty is removed), each logged.
    """
    replaced = key in obj.obsm
    obj.obsm[key] = values
    added("obsm", key, replaced=replaced)
    if replaced:
        _drop_benchmark_of(obj, key)


def _drop_benchmark_of(obj: AnnData | MuData, key: str) -> None:
    """Remove the UMAP and the benchmark-table rows of the replaced embedding ``obsm[key]``."""
    from .tl._results import record_kind

    rerun = "rerun mx.tl.benchmark_embeddings for the new one"
    stale = f"{key}_umap"
    if stale in obj.obsm:
        del obj.obsm[stale]
        logger.info(f"removed .obsm[{stale!r}] (the UMAP of the replaced {key!r}; {rerun} with umap=True)")
    for name in list(obj.uns):
        table = obj.uns[name]
        if record_kind(table) != "embedding_benchmark" or key not in table.index:
            continue
        rest = table.drop(index=key)
        if len(rest):
            obj.uns[name] = rest
            logger.info(f"removed the row of {key!r} from .uns[{name!r}] (it scored the replaced embedding; {rerun})")
        else:
            del obj.uns[name]
            logger.info(f"removed .uns[{name!r}] (it scored only the replaced {key!r}; {rerun})")


def write_uns(obj: AnnData | MuData, key: str, values: Any) -> None:
    """Write an entry to ``obj.uns`` (and log it)."""
    replaced = key in obj.uns
    obj.uns[key] = values
    added("uns", key, replaced=replaced)


def check_output_columns(obj: AnnData | MuData, key: str, columns: Sequence[str], obsm: Sequence[str] = ()) -> None:
    """Refuse to overwrite ``obs`` columns (and ``obsm`` entries) that no earlier run under ``key`` wrote.

    A run that records itself in ``uns[key]`` may replace its own columns; a column that exists while
    ``uns[key]`` does not is the user's (e.g. ``key_added`` named after the query's own labels). A record counts
    as multiomix's when ``record_kind`` (``multiomix.tl._results``) recognises it: scanpy's ``sc.tl.leiden``
    writes ``obs['leiden']`` with ``uns['leiden'] = {'params': ...}``, which is the user's clustering, not an
    earlier run.

    Examples
    --------
    >>> import anndata as ad, pandas as pd
    >>> adata = ad.AnnData(obs=pd.DataFrame({"cell_type": ["a", "b"]}, index=["c1", "c2"]))
    >>> check_output_columns(adata, "cell_type", ["cell_type", "cell_type_confidence"])
    Traceback (most recent call last):
    ...
    ValueError: .obs already has ['cell_type'], which key_added='cell_type' would overwrite, ...
    """
    from .tl._results import record_kind  # the one definition of what each function records

    if record_kind(obj.uns.get(key)) is not None:
        return
    taken = [c for c in columns if c in obj.obs.columns]
    if taken:
        raise ValueError(f".obs already has {taken}, which key_added={key!r} would overwrite, and .uns has no "
                         f"{key!r} record of an earlier run that wrote them. Pass another key_added, or drop "
                         "those columns first.")
    taken = [k for k in obsm if k in obj.obsm]
    if taken:
        raise ValueError(f".obsm already has {taken}, which key_added={key!r} would overwrite, and .uns has no "
                         f"{key!r} record of an earlier run that wrote them. Pass another key_added, or drop "
                         "those entries first.")


#: ``.uns`` key of a modality written by :func:`multiomix.tl.predict_modality` (its source, target and models)
PREDICTED_KEY = "predict_modality"


def measured_modalities(mdata: MuData) -> list[str]:
    """Return the modalities of ``mdata`` that predict_modality did not write (all, if it wrote every one)."""
    measured = [m for m, a in mdata.mod.items() if PREDICTED_KEY not in a.uns]
    return measured or list(mdata.mod)


def check_modalities(mdata: MuData, modalities: Sequence[str] | None) -> list[str]:
    """Return the requested modalities, checking that each exists in ``mdata``.

    ``None`` means every measured modality: one that :func:`~multiomix.tl.predict_modality` wrote is left out
    (logged), so that a prediction never becomes an input of a later fit unless it is named.
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"Expected a MuData object, got {type(mdata).__name__}.")
    if modalities is None:
        measured = measured_modalities(mdata)
        predicted = [m for m in mdata.mod if m not in measured]
        if predicted:
            logger.info(f"leaving out {predicted}, written by predict_modality; name it in `modalities=` to use it")
        return measured
    modalities = [modalities] if isinstance(modalities, str) else list(modalities)
    missing = [m for m in modalities if m not in mdata.mod]
    if missing:
        raise KeyError(f"Modalities {missing} not found in the MuData; it has {list(mdata.mod.keys())}.")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"Modalities must be unique, got {modalities}.")
    return modalities


def check_aligned(mdata: MuData, modalities: Iterable[str]) -> None:
    """Check that every modality has exactly the MuData's observations, in the same order."""
    for mod in modalities:
        names = mdata.mod[mod].obs_names
        if len(names) == mdata.n_obs and np.array_equal(names.values, mdata.obs_names.values):
            continue
        reorder = f"mdata.mod[{mod!r}] = mdata[{mod!r}][mdata.obs_names].copy(); mdata.update()"
        if len(names) == mdata.n_obs and set(names) == set(mdata.obs_names):
            raise ValueError(f"Modality {mod!r} holds the MuData's {mdata.n_obs} observations in another order. Paired "
                             f"models read every modality row by row; put them in the MuData's order: `{reorder}`.")
        raise ValueError(
            f"Modality {mod!r} has {len(names)} observations that are not aligned with the MuData's "
            f"{mdata.n_obs} observations. Paired models need every cell/sample in every modality in the same "
            "order: keep the shared ones with `muon.pp.intersect_obs(mdata)`, then put each modality in the "
            "MuData's order (`mdata.mod[m] = mdata[m][mdata.obs_names].copy()` for every modality m, then "
            "`mdata.update()`)."
        )


def check_not_views(mdata: MuData, modalities: Iterable[str]) -> None:
    """Refuse modalities that are views (``rna[cells]``): scvi-tools registers only actual objects.

    Examples
    --------
    >>> mdata = MuData({"rna": AnnData(np.ones((3, 2), dtype=np.float32))})
    >>> check_not_views(mdata, ["rna"])
    """
    if getattr(mdata, "is_view", False):
        raise ValueError("The MuData is a view (e.g. `mdata[cells]`); set up a copy: `mdata = mdata[cells].copy()`.")
    views = [m for m in modalities if mdata.mod[m].is_view]
    if views:
        fixes = "; ".join(f"mdata.mod[{m!r}] = mdata[{m!r}].copy()" for m in views)
        raise ValueError(f"Modalities {views} are views of other AnnData objects (e.g. built from `rna[cells]`); "
                         f"scvi-tools registers only actual objects: build the MuData from copies, or run `{fixes}`.")


def get_matrix(adata: AnnData, layer: str | None = None, *, modality: str | None = None):
    """Return ``adata.X`` or a layer, with a clear error (naming ``modality`` when given) when the layer is missing.

    A dense matrix comes back as a plain :class:`numpy.ndarray` (the view AnnData hands out for ``adata[:100]``,
    or a ``numpy.matrix``, is unwrapped without a copy), so that the models' data loaders turn it into tensors.

    Examples
    --------
    >>> adata = AnnData(np.ones((4, 2), dtype=np.float32))
    >>> type(get_matrix(adata[:2])).__name__
    'ndarray'
    """
    if layer is None:
        matrix = adata.X
    elif layer not in adata.layers:
        where = f"Modality {modality!r}: layer" if modality is not None else "Layer"
        raise KeyError(f"{where} {layer!r} not found; available layers: {list(adata.layers.keys())} "
                       "(layer=None reads .X).")
    else:
        matrix = adata.layers[layer]
    return plain_array(matrix)


def check_has_obs(data: AnnData | MuData, *, needs: str = "there is nothing to fit or score") -> None:
    """Raise a ``ValueError`` when ``data`` has no observations (``needs`` says what they are needed for).

    Examples
    --------
    >>> check_has_obs(AnnData(np.zeros((0, 2))))
    Traceback (most recent call last):
    ...
    ValueError: The AnnData has no observations (0 rows): there is nothing to fit or score. ...
    """
    if getattr(data, "n_obs", None) == 0:  # another type gets its own error where it is read
        raise ValueError(f"The {type(data).__name__} has no observations (0 rows): {needs}. Check the selection "
                         "that built it (e.g. a filter that matched no cell).")


def modality_matrix(adata: AnnData, layer: str | None, *, modality: str):
    """Return what :func:`get_matrix` returns, refusing a modality with 0 features or without a matrix.

    A model reads every feature of the modalities it is given: a modality with no features (``rna[:, []]``) or
    whose ``.X`` is ``None`` (an AnnData built from ``obs`` / ``var`` alone, or with the data in a layer) is an
    error that names it and what to pass instead.

    Examples
    --------
    >>> modality_matrix(AnnData(np.ones((2, 3))), None, modality="rna").shape
    (2, 3)
    >>> modality_matrix(AnnData(np.ones((2, 0))), None, modality="mirna")
    Traceback (most recent call last):
    ...
    ValueError: Modality 'mirna' has 0 features; ...
    """
    if adata.n_vars == 0:
        raise ValueError(f"Modality {modality!r} has 0 features; a model needs at least one per modality. Leave it "
                         "out with `modalities=`, or remove it from the MuData.")
    matrix = get_matrix(adata, layer, modality=modality)
    if matrix is None:
        names = list(adata.layers.keys())
        where = (f"pass `layer=` naming the layer that holds its matrix, e.g. layer={{{modality!r}: {names[0]!r}}} "
                 f"(its layers: {names})" if names else "it has no layers either: set its .X to the matrix")
        raise ValueError(f"Modality {modality!r} has no data: its .X is empty (None); {where}.")
    return matrix


def in_memory(matrix):
    """Read a backed matrix (an h5py dataset, or AnnData's on-disk sparse dataset) into memory; others unchanged.

    A sparse matrix stays sparse.

    Examples
    --------
    >>> in_memory(np.ones((2, 2))).shape
    (2, 2)
    """
    if hasattr(matrix, "to_memory"):  # anndata's backed CSR/CSC datasets
        return matrix.to_memory()
    if type(matrix).__module__.startswith("h5py"):
        return matrix[()]
    return matrix


def row_chunks(matrix, rows: int = 2_000):
    """Yield an in-memory matrix whole, and a backed one in blocks of ``rows`` rows read into memory.

    For checks on the values (binary? non-negative?) of a matrix that may lie on disk: every row is checked, one
    block at a time, and a whole on-disk matrix is never read at once.

    Examples
    --------
    >>> [block.shape for block in row_chunks(np.ones((5, 2)))]
    [(5, 2)]
    """
    if isinstance(matrix, np.ndarray) or sparse.issparse(matrix):
        yield matrix
        return
    for start in range(0, matrix.shape[0], rows):
        yield in_memory(matrix[start:start + rows])


def all_binary(matrix) -> bool:
    """:func:`is_binary` of a matrix that may lie on disk (read a block of rows at a time).

    Examples
    --------
    >>> all_binary(np.array([[0, 1], [1, 0]])), all_binary(np.array([[0, 2]]))
    (True, False)
    """
    stored = False
    for block in row_chunks(matrix):
        values = block.data if sparse.issparse(block) else np.asarray(block)
        if values.size and not np.isin(values, (0, 1)).all():
            return False
        stored = stored or bool(values.size)
    return stored


def check_nonnegative_rows(matrix, name: str, **kwargs) -> None:
    """:func:`check_nonnegative` of a matrix that may lie on disk (read a block of rows at a time)."""
    for block in row_chunks(matrix):
        check_nonnegative(block, name, **kwargs)


def plain_array(values):
    """Return a dense array of a subclass of :class:`numpy.ndarray` as a plain one, without a copy.

    An AnnData view hands out such arrays (``adata[:100].X``, its ``obsm``), as does ``numpy.matrix``;
    scvi-tools' loaders only turn plain arrays into tensors. Anything else comes back unchanged.

    Examples
    --------
    >>> adata = AnnData(np.ones((4, 2), dtype=np.float32), obsm={"tiles": np.ones((4, 3, 2))})
    >>> type(plain_array(adata[:2].obsm["tiles"])).__name__
    'ndarray'
    """
    if isinstance(values, np.ndarray) and type(values) is not np.ndarray:
        return np.asarray(values)
    return values


def is_binary(matrix) -> bool:
    """Whether a non-empty matrix (dense or sparse) holds only zeros and ones (e.g. binarised ATAC peaks).

    Models use it to pick a Bernoulli (BCE) rather than a Gaussian (MSE) reconstruction loss. A sparse matrix
    without stored values is not called binary.

    Examples
    --------
    >>> is_binary(np.array([[0, 1], [1, 1]])), is_binary(np.array([[0.5, 1.0]])), is_binary(np.zeros((0, 2)))
    (True, False, False)
    """
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    return bool(values.size) and bool(np.isin(values, (0, 1)).all())


def check_finite(matrix, name: str) -> None:
    """Raise if a dense or sparse matrix holds NaN or infinite values (checked without densifying).

    A boolean matrix (e.g. peaks called present / absent) counts as numeric 0/1.
    """
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    if values.dtype == bool:
        return
    if not np.issubdtype(values.dtype, np.number):
        raise TypeError(f"{name} must be numeric (or boolean), got dtype {values.dtype}.")
    if not np.isfinite(values).all():
        n_bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN or infinite values; impute or remove them first.")


def check_nonnegative(
    matrix, name: str, *, needs: str = "the chosen loss expects non-negative counts or binary data"
) -> None:
    """Raise if a matrix has negative entries (needed for count or binary losses); ``needs`` says what needs them.

    Examples
    --------
    >>> check_nonnegative(np.array([[1.0, -1.0]]), "Modality 'rna' (X)", needs="log1p needs counts")
    Traceback (most recent call last):
    ...
    ValueError: Modality 'rna' (X) has negative values, but log1p needs counts.
    """
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    if values.size and values.min() < 0:
        raise ValueError(f"{name} has negative values, but {needs}.")


def label_text(labels: pd.Series) -> pd.Series:
    """Return labels as strings; whole numbers stored as floats (integer labels with gaps) read ``'1'``, not ``'1.0'``.

    Missing values read ``'nan'``, as with ``astype(str)``; callers keep them apart with ``notna()``.

    Examples
    --------
    >>> label_text(pd.Series([0, 1, None])).tolist()
    ['0', '1', 'nan']
    >>> label_text(pd.Series(["a", "b"])).tolist()
    ['a', 'b']
    """
    labels = labels if isinstance(labels, pd.Series) else pd.Series(labels)
    categorical = isinstance(labels.dtype, pd.CategoricalDtype)
    values = labels.cat.categories if categorical else labels.dropna()
    if not pd.api.types.is_float_dtype(values.dtype) or not len(values):
        return labels.astype(str)
    numbers = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(numbers) & (numbers == np.round(numbers))):
        return labels.astype(str)
    return labels.astype(object).map(lambda v: "nan" if pd.isna(v) else str(int(v))).astype(str)


def warn_merged_labels(labels: pd.Series, label_key: str) -> None:
    """Warn when distinct values of a label column read as the same class (``1`` and ``'1'``, ``True`` and ``'True'``).

    Labels are compared as their text (:func:`label_text`), so such values become one class; a column that mixes
    types is usually a data-entry slip, so the merge is said rather than done silently.

    Examples
    --------
    >>> warn_merged_labels(pd.Series([1, "1", "a"], dtype=object), "group")  # logs a warning
    """
    if isinstance(labels.dtype, pd.CategoricalDtype):
        values = pd.Series(labels.cat.categories)
    else:
        values = pd.Series(labels.dropna().unique())
    if not len(values) or not pd.api.types.is_object_dtype(values.dtype):
        return
    text = label_text(values)
    merged = {t: [repr(v) for v in values[text == t]] for t in text[text.duplicated()].unique()}
    if merged:
        shown = "; ".join(f"{' and '.join(vs)} -> {t!r}" for t, vs in list(merged.items())[:5])
        logger.warning(f".obs[{label_key!r}] holds values of different types that read as the same class, so they are "
                       f"one class: {shown}. Convert the column to one type to keep them apart.")


def check_labels(obs: pd.DataFrame, label_key: str, *, rows: np.ndarray | None = None) -> pd.Categorical:
    """Return ``obs[label_key]`` as a categorical, checking it exists and has at least two classes."""
    if label_key not in obs.columns:
        raise KeyError(f"Label key {label_key!r} not found in .obs; available columns: {list(obs.columns)}.")
    labels = obs[label_key]
    subset = labels if rows is None else labels.iloc[rows]
    if len(labels) and labels.isna().all():
        raise ValueError(f"Every one of the {len(labels)} rows of .obs[{label_key!r}] is missing (a Series assigned to "
                         ".obs is aligned by its index: labels indexed by anything but obs_names all become NaN).")
    if subset.isna().any():
        raise ValueError(f".obs[{label_key!r}] has {int(subset.isna().sum())} missing labels in the training rows.")
    if subset.nunique() < 2:
        raise ValueError(f".obs[{label_key!r}] has a single class ({subset.unique().tolist()}); need at least two.")
    return pd.Categorical(labels)


def split_indices(obs: pd.DataFrame, split_key: str = SPLIT_KEY) -> dict[str, np.ndarray] | None:
    """Return integer row indices per split value when ``obs[split_key]`` exists, else ``None``."""
    if split_key not in obs.columns:
        return None
    column = obs[split_key]
    split = column.astype(object).where(column.notna(), None).astype(str)  # unassigned rows read "None"
    unknown = sorted(set(split[column.notna().to_numpy()].unique()) - set(SPLIT_VALUES))
    if unknown:
        raise ValueError(f".obs[{split_key!r}] has values {unknown}; expected only {list(SPLIT_VALUES)}.")
    out = {name: np.flatnonzero((split == name).to_numpy()) for name in SPLIT_VALUES}
    if len(out["train"]) == 0:
        raise ValueError(f".obs[{split_key!r}] has no 'train' rows.")
    return out


def _snapshot(obj: AnnData) -> dict[str, set]:
    attrs = ("obs", "obsm", "uns", "varm", "layers", "var")
    return {a: set(getattr(obj, a).keys()) for a in attrs if getattr(obj, a, None) is not None}


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Silence a logger's info messages inside the block (chatter the user cannot act on).

    For example the package's own "added ..." lines when preprocessing is applied to an internal copy.

    Examples
    --------
    >>> with quiet_logger("multiomix"):
    ...     pass
    """
    import logging

    quieted = logging.getLogger(name)
    level = quieted.level
    quieted.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        quieted.setLevel(level)


def quiet_scvi():
    """Silence scvi-tools' info messages inside the block (chatter the user cannot act on).

    For example "attempting to transfer AnnData setup" when new data are matched, or "File ... already
    downloaded" (with a temporary path) when a saved model is read.

    Examples
    --------
    >>> with quiet_scvi():
    ...     pass
    """
    return quiet_logger("scvi")


@contextmanager
def seeded(random_state: int) -> Iterator[None]:
    """Seed torch's and NumPy's global generators for the block, and give the user's states back afterwards.

    The models draw their initial weights, dropout masks and minibatch orders from the global generators (as
    scvi-tools' do); seeding them makes a fit reproducible, restoring them keeps the user's own random draws after
    a fit what they would have been without it. CUDA generators are kept too when CUDA is available.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(5); expected = torch.rand(1)
    >>> _ = torch.manual_seed(5)
    >>> with seeded(0):
    ...     inside = torch.rand(1)
    >>> bool(torch.rand(1) == expected)
    True
    """
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(random_state)
        np.random.seed(random_state)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


@contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count on exit.

    scanpy's neighbour graph (through numba's OpenMP layer) resets the OpenMP thread count of the process, which
    silently undoes a user's ``torch.set_num_threads``; training afterwards then runs oversubscribed.

    Examples
    --------
    >>> with keep_torch_threads():
    ...     pass
    """
    import torch

    n_threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n_threads:
            torch.set_num_threads(n_threads)


class restore_on_error:
    """Context manager: if the block raises, drop every ``obs``/``obsm``/``uns``/``var``/... key it added.

    Values of existing keys are not expected to change before the error (functions validate first and
    write last); this undoes side effects such as scvi-tools' registration columns.
    """

    def __init__(self, obj: AnnData | MuData):
        self.obj = obj
        self.mods = dict(obj.mod) if isinstance(obj, MuData) else {}

    def __enter__(self):
        self.before = _snapshot(self.obj)
        self.before_mods = {name: _snapshot(mod) for name, mod in self.mods.items()}
        self.mod_names = list(self.mods)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            return False
        self._drop(self.obj, self.before)
        for name, snapshot in self.before_mods.items():
            self._drop(self.mods[name], snapshot)
        if isinstance(self.obj, MuData):
            for name in list(self.obj.mod):
                if name not in self.mod_names:
                    del self.obj.mod[name]
        return False

    @staticmethod
    def _drop(obj: AnnData, snapshot: dict[str, set]) -> None:
        for attr, keys in snapshot.items():
            container = getattr(obj, attr)
            for key in set(container.keys()) - keys:
                if attr in ("obs", "var"):
                    container.drop(columns=key, inplace=True)
                else:
                    del container[key]


def check_whole(name: str, value: Any, least: int) -> int:
    """Return ``value`` if it is a whole number >= ``least`` (not a bool), else raise a ``ValueError`` naming it.

    Examples
    --------
    >>> check_whole("n_neighbors", 15, 2)
    15
    >>> check_whole("batch_size", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a whole number >= 1, got 0.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}.")
    return int(value)


def to_uns(value: Any) -> Any:
    """Convert a value into something ``write_h5mu`` can store (tuples -> arrays).

    An entry of a dict whose value is ``None`` is left out (read it back with ``params.get(name)``), as scanpy
    records only the options that were given; anndata before 0.12 cannot store ``None``. A ``None`` elsewhere
    (an item of a list) reads ``"None"``.

    Examples
    --------
    >>> to_uns({"source": None, "n_top": 5, "modalities": ("rna", "atac")})
    {'n_top': 5, 'modalities': array(['rna', 'atac'], dtype='<U4')}
    """
    if value is None:
        return "None"
    if isinstance(value, dict):
        return {str(k): to_uns(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        if all(isinstance(v, int | float | str | bool | np.number) for v in value) and len(value) > 0:
            kinds = {type(v) for v in value}
            return np.asarray(value) if len(kinds) == 1 or kinds <= {int, float} else [str(v) for v in value]
        return {str(i): to_uns(v) for i, v in enumerate(value)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def history_frame(history: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """scvi-tools ``model.history`` (one frame per metric, indexed by epoch) as one frame indexed by epoch.

    Each metric stays at the epochs it was logged at: one logged from a later epoch on (e.g. a loss that starts
    after a warm-up) is missing (NaN) before it.

    Examples
    --------
    >>> late = pd.DataFrame({"b": [0.5, 0.4]}, index=pd.Index([2, 3], name="epoch"))
    >>> history_frame({"a": pd.DataFrame({"a": [1.0, 0.9, 0.8, 0.7]}), "b": late})["b"].tolist()
    [nan, nan, 0.5, 0.4]
    """
    columns = {}
    for name, frame in history.items():
        if not len(frame):
            continue
        values = frame.iloc[:, 0].astype(float)
        if not pd.api.types.is_integer_dtype(values.index):  # not indexed by epoch: in logging order from 0
            values = values.reset_index(drop=True)
        columns[name] = values
    if not columns:
        return pd.DataFrame(index=pd.RangeIndex(0, name="epoch"))
    epochs = pd.RangeIndex(0, max(int(v.index.max()) for v in columns.values()) + 1, name="epoch")
    out = pd.DataFrame(index=epochs)
    for name, values in columns.items():
        out[name] = values.groupby(level=0).last().reindex(epochs).to_numpy()
    return out
