"""Read what the ``tl`` functions stored in ``.uns``: one public reader with errors that say what to run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["get_result"]

# kind -> (the tl function that writes it, entries the stored dict must hold, its default key)
_KINDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "relevance": ("feature_relevance", ("groups", "params"), "relevance"),
    "interaction_importance": ("interaction_importance", ("share", "mean"), "crossattomics_interactions"),
    "embedding_benchmark": ("benchmark_embeddings", (), "embedding_benchmark"),
    "genomic_interpreter": ("fit_genomic_interpreter", ("params",), "genomic_interpreter"),
    "attention_maps": ("attention_maps", ("attention",), "genomic_interpreter"),
    "med_crossvit": ("fit_med_crossvit", ("params",), "medcrossvit"),
    "crossattomics": ("fit_crossattomics", ("params",), "crossattomics"),
    "multimodal_ae": ("fit_multimodal_ae", ("params",), "mmae"),
    "unitednet": ("fit_unitednet", ("params",), "unitednet"),
    "history": ("fit_* function", ("history",), ""),
}


def _producer(key: str, kind: str | None) -> str:
    """Name the tl function that writes ``uns[key]`` (from ``kind``, else guessed from the default keys)."""
    if kind is not None:
        return _KINDS[kind][0]
    if key.startswith("relevance"):
        return "feature_relevance"
    for name, (function, _, default) in _KINDS.items():
        if default and key == default and name != "attention_maps":
            return function
    return ""


def _lookup(data: Any, key: str, kind: str | None) -> Any:
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"Unknown result kind {kind!r}; known kinds: {sorted(_KINDS)}.")
    uns = getattr(data, "uns", None)
    if uns is None:
        raise TypeError(f"Expected an AnnData or MuData (an object with .uns), got {type(data).__name__}.")
    function = _producer(key, kind)
    run = f"run mx.tl.{function} first" if function else "run the mx.tl function that writes it first"
    if key not in uns:
        stored = _stored_of(uns, kind) if kind is not None else []
        hint = f"results of that kind are stored under {stored}; " if stored else ""
        raise KeyError(f"No results under .uns[{key!r}]; {hint}{run} (or pass the `key_added` you used).")
    value = uns[key]
    if kind is not None:
        missing = [part for part in _KINDS[kind][1] if not isinstance(value, dict) or part not in value]
        if missing:
            raise KeyError(f".uns[{key!r}] lacks {missing}; it does not hold mx.tl.{function} results ({run}).")
    return value


def _stored_of(uns: Mapping, kind: str) -> list[str]:
    """Keys of ``uns`` that hold results of ``kind`` (to name in an error about a wrong key)."""
    if kind == "embedding_benchmark":
        return [k for k, v in uns.items() if record_kind(v) == "embedding_benchmark"]
    parts = _KINDS[kind][1]
    return [k for k, v in uns.items() if parts and isinstance(v, Mapping) and all(p in v for p in parts)]


def _entry(mdata: Any, key: str) -> dict:
    """Return the relevance results in ``uns[key]`` (errors name :func:`multiomix.tl.feature_relevance`)."""
    uns = getattr(mdata, "uns", {})
    if key not in uns:
        stored = _stored_of(uns, "relevance")
        hint = f"relevance results are stored under {stored}; or " if stored else ""
        raise KeyError(f"No relevance results under mdata.uns[{key!r}]; {hint}run mx.tl.feature_relevance first.")
    entry = uns[key]
    if not isinstance(entry, dict) or "groups" not in entry or "params" not in entry:
        raise ValueError(f"mdata.uns[{key!r}] does not hold feature_relevance results.")
    return entry


#: entries that identify whose results a ``.uns`` record holds (a rerun may replace only its own kind)
_OWNERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "relevance": ("mx.tl.feature_relevance", ("groups", "params", "summary")),
    "interaction_importance": ("mx.tl.interaction_importance", ("share", "mean", "per_sample")),
    "transfer": ("mx.tl.transfer_labels", ("temperature", "classes")),
    "consensus": ("mx.tl.consensus_clusters", ("keys", "n_clusters", "method")),
    "scored": ("mx.tl.predict", ("scored",)),
    "pca_concat": ("mx.tl.pca_concat", ("kinds", "widths")),
    "fit": ("a mx.tl.fit_* function", ("params", "history")),
    # last: a fit's record that attention maps were added to is the fit's
    "attention_maps": ("mx.tl.attention_maps", ("attention", "attention_resolution", "attention_regions")),
}
#: columns of a :func:`~multiomix.tl.benchmark_embeddings` table (stored in ``uns`` as a DataFrame)
_BENCHMARK_METRICS = ("nmi", "ari", "ari_best", "resolution", "n_clusters", "asw_label", "asw_batch",
                      "graph_connectivity")
#: the settings :func:`~multiomix.tl.benchmark_embeddings` records beside its metrics, one column each
_BENCHMARK_SETTINGS = ("label_key", "batch_key", "n_neighbors", "neighbors_method", "resolutions", "random_state")
#: which kinds of record a function may replace under its key_added (its own; a fit and predict write the same
#: outputs, and predict under a fit's key is allowed with a warning)
_MAY_REPLACE = {"fit": {"fit", "scored", "attention_maps"}, "scored": {"fit", "scored", "attention_maps"},
                "attention_maps": {"fit", "scored", "attention_maps"}}


def record_kind(entry: Any) -> str | None:
    """Which multiomix function wrote ``entry`` (a ``uns`` value), or ``None`` (not a multiomix record).

    Examples
    --------
    >>> record_kind({"params": {}, "history": None}), record_kind({"params": {"resolution": 1.0}})
    ('fit', None)
    """
    if isinstance(entry, pd.DataFrame):
        columns = set(entry.columns)
        known = columns & set(_BENCHMARK_METRICS) and columns <= {*_BENCHMARK_METRICS, *_BENCHMARK_SETTINGS}
        return "embedding_benchmark" if known else None
    if not isinstance(entry, Mapping):
        return None
    return next((owner for owner, (_, entries) in _OWNERS.items() if all(e in entry for e in entries)), None)


def check_replaceable(data: Any, key: str, kind: str) -> None:
    """Raise before ``kind`` results are written to ``data.uns[key]`` unless that entry is absent or replaceable.

    A rerun under the same key replaces its own results (also after a ``write_h5mu`` / ``read_h5mu`` round trip:
    records are recognised by their entries, :func:`record_kind`). Refused, with a ``ValueError`` that says to pass
    another ``key_added``: another function's record (a ``key_added`` that names a fit's record would otherwise
    replace its history and test metrics with relevance tables), and an entry that is not a multiomix record at
    all, which is the user's (e.g. scanpy's ``uns['leiden']``).

    Examples
    --------
    >>> import anndata as ad
    >>> adata = ad.AnnData(uns={"leiden": {"params": {"resolution": 1.0}}})
    >>> check_replaceable(adata, "leiden", "fit")
    Traceback (most recent call last):
    ...
    ValueError: .uns['leiden'] holds an entry that no multiomix function wrote (the user's, or another ...
    """
    uns = getattr(data, "uns", {})
    if key not in uns:
        return
    other = record_kind(uns[key])
    if other is None:  # scanpy's clusterings come with an obs column of the same name: name both
        obs = getattr(data, "obs", None)
        column = (f".obs already has [{key!r}], which key_added={key!r} would overwrite, and "
                  if obs is not None and key in obs.columns else "")
        raise ValueError(f"{column}.uns[{key!r}] holds an entry that no multiomix function wrote (the user's, or "
                         f"another tool's, e.g. scanpy's uns['leiden']), which key_added={key!r} would replace. Pass "
                         "another key_added, or remove that entry first.")
    if other != kind and other not in _MAY_REPLACE.get(kind, ()):
        function = _OWNERS[other][0] if other in _OWNERS else "mx.tl.benchmark_embeddings"
        raise ValueError(f".uns[{key!r}] holds the results of {function}, which key_added={key!r} would "
                         "replace; pass another key_added.")


def group_text(group: Any) -> str:
    """Return a group as the label text it is stored under: ``1.0`` (from a float column) reads ``'1'``.

    Examples
    --------
    >>> group_text(1.0), group_text(2), group_text("B cell")
    ('1', '2', 'B cell')
    """
    if isinstance(group, float | np.floating) and np.isfinite(group) and float(group).is_integer():
        return str(int(group))
    return str(group)


def _group_key(entry: dict, group: str) -> str:
    """Return the dict key under which a group's relevance is stored; a stored key is accepted too.

    The keys are in ``params['group_keys']``: ``/`` in group names is stored as ``_``, made unique. A whole
    number given as a float (the value of a float label column) finds the group stored under its integer text.
    """
    params = entry.get("params", {})
    names, keys = params.get("groups"), params.get("group_keys")
    for text in dict.fromkeys([str(group), group_text(group)]):  # '1.0' in a column of fractions, else '1'
        key = text.replace("/", "_")  # results stored before the keys were recorded
        if names is not None and keys is not None:
            key = dict(zip(map(str, np.atleast_1d(names)), map(str, np.atleast_1d(keys)))).get(text, text)
        if key in entry["groups"]:
            return key
    listed = [str(g) for g in np.atleast_1d(names)] if names is not None else list(entry["groups"])
    raise KeyError(f"Group {group!r} not found in the relevance results; groups: {listed}.")


def _group_name(entry: dict, key: str) -> str:
    """Return the group's name as labelled (the inverse of :func:`_group_key`)."""
    params = entry.get("params", {})
    names, keys = params.get("groups"), params.get("group_keys")
    if names is None or keys is None:
        return key
    return dict(zip(map(str, np.atleast_1d(keys)), map(str, np.atleast_1d(names)))).get(key, key)


def get_result(data: Any, key: str, *, kind: str | None = None, group: str | None = None) -> Any:
    """Return what a ``mx.tl`` function stored in ``data.uns[key]``, with an error that says what to run.

    This is the public way for plots and user code to read results: it checks that the results exist (and,
    with ``kind``, that they are the right kind of results) and, for relevance results, resolves group names.

    Parameters
    ----------
    data
        AnnData or MuData the ``mx.tl`` function wrote into.
    key
        Key in ``data.uns`` (the function's ``key_added``).
    kind
        What the results must be, which also names the function to run in the error when they are absent:
        ``"relevance"`` (:func:`~multiomix.tl.feature_relevance`), ``"interaction_importance"``,
        ``"embedding_benchmark"`` (:func:`~multiomix.tl.benchmark_embeddings`), ``"attention_maps"``,
        ``"genomic_interpreter"``, ``"med_crossvit"``, ``"crossattomics"``, ``"multimodal_ae"``,
        ``"unitednet"`` or ``"history"`` (any result with training curves). ``None`` returns whatever is stored.
    group
        Relevance results only: return the results of this group (cell type) instead of the whole dict.
        Group names are matched as given to :func:`~multiomix.tl.feature_relevance` (a ``/`` in a name is stored
        as ``_``; both spellings are accepted).

    Returns
    -------
    The stored object, unchanged (for most kinds a dict; a DataFrame for ``"embedding_benchmark"``). With
    ``group``: a dict with ``"features"`` (the group's DataFrame over features: ``modality``, ``mean_abs``,
    ``mean``, ``rank``; most relevant first), ``"key"`` (the group's key in the stored dicts) and, for
    cross-modal results, ``"matrix"`` (target x source DataFrame of mean absolute relevance).

    Raises
    ------
    KeyError
        When ``uns[key]`` is absent (naming the ``mx.tl`` function to run), lacks what ``kind`` needs, or the
        group is unknown (listing the groups).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.patchseq()
    >>> model = mx.tl.fit_unitednet(mdata, label_key="cell_type_TEM")
    >>> mx.tl.feature_relevance(mdata, model, groupby="cell_type_TEM")
    >>> entry = mx.tl.get_result(mdata, "relevance", kind="relevance")
    >>> entry["params"]["groupby"]
    'cell_type_TEM'
    >>> mx.tl.get_result(mdata, "relevance", group="Sst-MET-1")["features"].head(3)  # doctest: +SKIP
    """
    if group is not None:
        if kind not in (None, "relevance"):
            raise ValueError("`group` is only used with relevance results (kind='relevance').")
        entry = _entry(data, key)
        gkey = _group_key(entry, group)
        features = entry["groups"][gkey]
        if "rank" in features.columns:  # stored in feature order; read most relevant first
            features = features.sort_values("rank", kind="stable")
        out: dict[str, Any] = {"key": gkey, "features": features}
        if "matrices" in entry:
            out["matrix"] = entry["matrices"][gkey]
        return out
    if kind == "relevance":
        return _entry(data, key)
    return _lookup(data, key, kind)
