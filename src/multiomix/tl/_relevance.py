"""Cell-type-specific feature relevance of trained models, written into ``mdata.uns``."""

from __future__ import annotations

import time
import zlib
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from tqdm.auto import tqdm

from .._logging import logger
from .._settings import settings
from .._utils import (
    check_aligned,
    check_finite,
    check_whole,
    get_matrix,
    in_memory,
    label_text,
    to_uns,
    write_uns,
)
from ..explain import get_adapter
from ..explain._relevance import (
    METHODS,
    OUTPUTS,
    average_results,
    cross_modal_relevance,
    group_prototypes,
    group_relevance,
)
from ..models.base import SeedEnsemble, feature_mean_std
from ._results import _entry, _group_key, _group_name, check_replaceable, group_text

__all__ = ["feature_relevance", "rank_relevant_features"]

Kind = Literal["group", "cross_modal"]


def _safe_keys(groups) -> dict:
    """Return the storage key of each group, unique and without ``/`` (a path separator in ``.h5mu``).

    ``/`` becomes ``_``; a key that would then equal another group's name or key gets `` (2)``, `` (3)``, ...
    (``'L2/3 IT'`` beside ``'L2_3 IT'``).
    """
    names = [str(g) for g in groups]
    keys, used = {}, {n for n in names if "/" not in n}
    for g, name in zip(groups, names):
        key = name
        if "/" in name:
            key = base = name.replace("/", "_")
            suffix = 2
            while key in used:
                key, suffix = f"{base} ({suffix})", suffix + 1
            used.add(key)
        keys[g] = key
    return keys


def _feature_positions(mdata: MuData, adapter, modalities: list[str]) -> dict[str, np.ndarray | None]:
    out = {}
    for m in modalities:
        if m not in mdata.mod:
            raise KeyError(f"Modality {m!r} that the model reads is not in the MuData; it has {list(mdata.mod)}.")
        names = adapter.feature_names[m]
        position = pd.Index(mdata.mod[m].var_names.astype(str)).get_indexer(names)
        if (position < 0).any():
            missing = list(names[position < 0][:5])
            raise KeyError(
                f"Modality {m!r} lacks {int((position < 0).sum())} of the {len(names)} features the model was "
                f"trained on (e.g. {missing})."
            )
        in_order = mdata.mod[m].n_vars == len(names) and np.array_equal(position, np.arange(len(names)))
        out[m] = None if in_order else position
    return out


def _group_codes(mdata: MuData, groupby: str, groups) -> tuple[list[str], np.ndarray, list[str]]:
    """All group names with cells, the code of each cell, and the groups to explain."""
    if groupby not in mdata.obs.columns:
        raise KeyError(f"`groupby` column {groupby!r} not found in mdata.obs; columns: {list(mdata.obs.columns)}.")
    labels = mdata.obs[groupby]
    cat = labels.astype("category") if not isinstance(labels.dtype, pd.CategoricalDtype) else labels
    names = label_text(pd.Series(cat.cat.categories))
    present = [names.iloc[i] for i, c in enumerate(cat.cat.categories) if (cat == c).any()]
    if len(present) < 1:
        raise ValueError(f"mdata.obs[{groupby!r}] has no labelled cells.")
    lookup = {g: i for i, g in enumerate(present)}
    text = label_text(labels).to_numpy()
    codes = np.array([lookup.get(t, -1) if pd.notna(v) else -1 for t, v in zip(text, labels)], dtype=int)
    if groups is None:
        chosen = present
    else:
        given = [groups] if isinstance(groups, str) or np.isscalar(groups) else groups
        # a number is found by its text in the column ('1.0' among fractions, '1' among whole numbers)
        chosen = [str(g) if str(g) in lookup else group_text(g) for g in given]
        unknown = [g for g in chosen if g not in lookup]
        if unknown:
            raise KeyError(f"Groups {unknown} have no cells in mdata.obs[{groupby!r}]; it has {present}.")
    return present, codes, chosen


def _index(names: list[str], mods: list[str]) -> pd.Index:
    if len(set(names)) == len(names):
        return pd.Index(names, name="feature")
    return pd.Index([f"{m}:{n}" for m, n in zip(mods, names)], name="feature")


def _frame(index: pd.Index, modality: list[str], mean_abs: np.ndarray, mean: np.ndarray) -> pd.DataFrame:
    order = np.argsort(-mean_abs, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return pd.DataFrame(
        {"modality": pd.Categorical(modality), "mean_abs": mean_abs.astype(np.float32),
         "mean": mean.astype(np.float32), "rank": rank},
        index=index,
    )


def _trained_label_key(model: Any) -> str:
    """Return the label column the (first) model was trained on: the default ``groupby``."""
    first = next(iter(model)) if isinstance(model, list | tuple | SeedEnsemble) else model
    key = getattr(first, "label_key", None)
    if not isinstance(key, str):
        raise ValueError(f"groupby= is needed: {type(first).__name__} was not trained on a label column of obs "
                         "(pass the column of obs whose groups to explain).")
    return key


def _adapters(model: Any, kind: str) -> list:
    """Adapters of one model or of an ensemble (a list of models that must read the same features)."""
    models = list(model) if isinstance(model, list | tuple | SeedEnsemble) else [model]
    if not models:
        raise ValueError("`model` is an empty list; give a trained model or a list of trained models.")
    adapters = [get_adapter(m) for m in models]
    first = adapters[0]
    for i, other in enumerate(adapters[1:], 1):
        same = other.modalities == first.modalities and all(
            other.feature_names[m].equals(first.feature_names[m]) for m in first.modalities)
        same = same and dict(other.layers or {}) == dict(first.layers or {})  # each member reads its own data
        if kind == "group":
            same = same and list(map(str, other.class_names or [])) == list(map(str, first.class_names or []))
        if not same:
            ours, theirs = set(map(str, first.class_names or [])), set(map(str, other.class_names or []))
            why = ""
            if kind == "group" and ours != theirs:
                why = (f" Classes only model 0 has: {sorted(ours - theirs)}; only model {i}: {sorted(theirs - ours)}. "
                       "Fits with their own validation share each leave rare classes out of training differently: "
                       "fit the ensemble in one call (n_models=k), or give the fits one obs['split'] with "
                       "validation rows.")
            raise ValueError(
                f"Model {i} of the ensemble reads other modalities, features, layers or classes than model 0; an "
                "ensemble "
                f"must share them (train every member on the same MuData with the same options).{why}"
            )
    return adapters


def _check_relevance_args(mdata, *, kind: str, method: str, background: str, n_background: int,
                          n_samples: int | None, source: str | None, target: str | None, output: str,
                          max_cells_per_group: int | None = None) -> None:
    """Raise a clear error for an argument of :func:`feature_relevance` outside what it accepts."""
    if not isinstance(mdata, MuData):
        raise TypeError(f"Expected a MuData, got {type(mdata).__name__}.")
    if kind not in ("group", "cross_modal"):
        raise ValueError(f"`kind` must be 'group' or 'cross_modal', got {kind!r}.")
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    if background not in ("auto", "all_groups", "own_group"):
        raise ValueError(f"`background` must be 'auto', 'all_groups' or 'own_group', got {background!r}.")
    if n_background < 0 or (n_samples is not None and n_samples < 1):
        raise ValueError("`n_background` must be >= 0 and `n_samples` >= 1.")
    if max_cells_per_group is not None and max_cells_per_group < 1:
        raise ValueError(f"`max_cells_per_group` must be >= 1 (or None for every cell), got {max_cells_per_group}.")
    if kind == "cross_modal" and (source is None or target is None):
        raise ValueError("kind='cross_modal' needs both `source` and `target` modalities.")
    if kind == "group" and (source is not None or target is not None):
        raise ValueError("`source`/`target` are only used with kind='cross_modal'.")
    if output not in OUTPUTS:
        raise ValueError(f"`output` must be one of {OUTPUTS}, got {output!r}.")
    if kind == "cross_modal" and output != "proba":
        raise ValueError(f"`output={output!r}` transforms class probabilities (kind='group'); kind='cross_modal' "
                         "explains the predicted target features themselves. Leave `output` out.")


def _model_classes_only(chosen: list[str], adapter, *, groupby: str, explicit: bool) -> list[str]:
    """Keep the groups that are model classes (group relevance explains their probability); warn or refuse others."""
    classes = [str(c) for c in adapter.class_names]
    unknown = [g for g in chosen if g not in classes]
    if unknown and not explicit and len(unknown) < len(chosen):
        # e.g. a rare type whose cells all fell into the validation or test rows of the fit
        logger.warning(f"groups {unknown} of mdata.obs[{groupby!r}] are not classes of the model; they are "
                       "not explained")
        return [g for g in chosen if g in classes]
    if unknown:
        raise ValueError(
            f"Groups {unknown} of mdata.obs[{groupby!r}] are not classes of the model ({classes[:10]}...); "
            "group relevance explains the probability of the cell's own class."
        )
    return chosen


class _Backgrounds:
    """Background samples: rows of the group prototypes, plus ``n_background`` random cells of a pool."""

    def __init__(self, matrices: dict, positions: dict, codes: np.ndarray, n_groups: int, *, n_background: int,
                 rng: np.random.Generator):
        self.matrices, self.positions, self.n_background, self.rng = matrices, positions, n_background, rng
        self.prototypes = {m: group_prototypes(x, codes, n_groups, columns=positions[m]) for m, x in matrices.items()}

    def __call__(self, pool: np.ndarray, prototype_rows: list[int], *,
                 rng: np.random.Generator | None = None) -> list[np.ndarray]:
        """One background array per modality (densified rows, in the model's feature order)."""
        rng = self.rng if rng is None else rng
        extra = (np.sort(rng.choice(pool, size=min(self.n_background, len(pool)), replace=False))
                 if self.n_background else np.zeros(0, dtype=int))
        out = []
        for m, matrix in self.matrices.items():
            parts = [self.prototypes[m][prototype_rows]]
            if len(extra):
                chunk = matrix[extra]
                chunk = chunk.toarray() if hasattr(chunk, "toarray") else np.asarray(chunk)
                parts.append((chunk if self.positions[m] is None else chunk[:, self.positions[m]]).astype(np.float32))
            out.append(np.concatenate(parts, 0))
        return out


def _relevance_tables(results: dict, adapter, mods: list[str], *, kind: str,
                      target: str | None) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Per group, the feature table (and, cross-modal, the target x source matrix) of the averaged results."""
    feature_mods = [m for m in mods for _ in adapter.feature_names[m]]
    index = _index([str(n) for m in mods for n in adapter.feature_names[m]], feature_mods)
    frames, matrices, keys = {}, {}, _safe_keys(results)
    for g, res in results.items():
        if kind == "group":
            frames[keys[g]] = _frame(index, feature_mods, np.concatenate(res.mean_abs), np.concatenate(res.mean))
        else:
            targets = pd.Index(adapter.feature_names[target].astype(str), name="target")
            matrices[keys[g]] = pd.DataFrame(res.mean_abs.astype(np.float32), index=targets, columns=list(index))
            frames[keys[g]] = _frame(index, feature_mods, res.mean_abs.sum(0), res.mean.sum(0))
    return frames, matrices


def _relevance_summary(results: dict) -> pd.DataFrame:
    """Cells, method, additivity error and seconds of each explained group."""
    return pd.DataFrame(
        {"n_cells": [r.n_cells for r in results.values()],
         "method": [r.method for r in results.values()],
         "additivity_error": [r.additivity_error for r in results.values()],
         "additivity_relative": [r.additivity_relative for r in results.values()],
         "seconds": [r.seconds for r in results.values()]},
        index=pd.Index(list(_safe_keys(results).values()), name="group"),
    )


def _target_std(mdata: MuData, adapter, target: str, position: np.ndarray | None) -> pd.DataFrame:
    """Return each target feature's standard deviation over all cells (to read the matrices in SD units)."""
    matrix = get_matrix(mdata.mod[target], adapter.layers[target], modality=target)
    std = feature_mean_std(matrix, np.arange(matrix.shape[0]))[1]
    std = std if position is None else std[position]
    return pd.DataFrame({"std": std}, index=pd.Index(adapter.feature_names[target].astype(str)))


def feature_relevance(
    mdata: MuData,
    model: Any,
    *,
    groupby: str | None = None,
    kind: Kind = "group",
    source: str | None = None,
    target: str | None = None,
    groups: str | list[str] | None = None,
    background: Literal["auto", "all_groups", "own_group"] = "auto",
    n_background: int = 0,
    n_samples: int | None = None,
    max_cells_per_group: int | None = None,
    method: Literal["auto", "deep", "expected_gradients"] = "auto",
    output: Literal["proba", "log_proba", "log_odds"] = "proba",
    batch_size: int | None = None,
    memory_mb: float = 512,
    random_state: int = 0,
    top_k_stability: int = 20,
    key_added: str | None = None,
    copy: bool = False,
    progress_bar: bool | None = None,
) -> MuData | None:
    """Cell-type-specific relevance of input features, SHAP-style, for any model with a relevance adapter.

    ``kind="group"``: for each group (cell type) ``g`` of ``groupby``, the relevance of every input feature
    of every modality for the model's probability of class ``g``, on the cells of ``g``. The background is
    the mean profile (prototype) of every group, as in UnitedNet's analysis, plus ``n_background`` random
    cells: a feature is relevant when moving it from the typical profile of the cell types to its value in a
    cell of ``g`` raises (or lowers) the probability of ``g``.

    ``kind="cross_modal"``: for each group, a (target feature x source feature) matrix of the relevance of
    each source feature for each predicted target feature along the source-encoder -> target-decoder path,
    on the cells of the group. The background is the group's own prototype (plus ``n_background`` random
    cells of the group): relevance measures which source features drive the target *within* the cell type.

    Attributions come from :class:`shap.DeepExplainer` where shap has a rule for every layer and its
    additivity check passes on a probe (``method="auto"``), else from expected gradients (the estimator of
    :class:`shap.GradientExplainer`), batched so that memory stays bounded; see ``multiomix.explain``.

    Parameters
    ----------
    mdata
        Paired MuData holding every modality the model reads (features matched by name).
    model
        A trained model with a relevance adapter (UnitedNet, MultimodalAE, CrossAttOmics, or any model with a
        ``relevance_adapter()`` method), or a list of such models or a :class:`~multiomix.models.SeedEnsemble`
        (an ensemble, e.g. the same model trained with several seeds, as ``n_models`` of a fit returns): the
        relevance is then computed with each model on the same cells and background
        and averaged, which costs one relevance computation per model but gives rankings that depend much
        less on the training seed than those of a single network.
    groupby
        Column of ``mdata.obs`` with the groups; for ``kind="group"`` its values must be the model's classes.
        Default: the label column the model was trained on (the first model's, for an ensemble).
    kind
        ``"group"`` or ``"cross_modal"``.
    source, target
        Modalities of the cross-modal path (``kind="cross_modal"`` only).
    groups
        Groups to explain (default: all with cells; for ``kind="group"``, those of them that are classes of the
        model, the others named in a warning, e.g. a rare type with no cell among the fit's training rows).
    background
        ``"all_groups"`` (prototypes of all groups), ``"own_group"`` (the group's prototype) or ``"auto"``
        (``all_groups`` for ``kind="group"``, ``own_group`` for ``kind="cross_modal"``).
    n_background
        Random cells added to the background (from all cells, or the group's cells for ``own_group``).
    n_samples
        Expected-gradients draws per explained cell (default 50 for groups, 10 for cross-modal).
    max_cells_per_group
        Explain at most this many random cells per group (default all).
    method
        ``"auto"``, ``"deep"`` or ``"expected_gradients"``.
    output
        ``kind="group"``: explain the class probability (``"proba"``, as UnitedNet does), its logarithm
        (``"log_proba"``) or the one-vs-rest log-odds ``log(p_g / (1 - p_g))`` (``"log_odds"``). The last two
        are in log units, less dominated by the steep transitions of a confident classifier and somewhat more
        stable across training seeds.
    batch_size, memory_mb
        Cells per batch (default: what fits in ``memory_mb`` of interpolation points / Jacobians).
    random_state
        Seed of the cell subsampling, random background and expected-gradients draws.
    top_k_stability
        With several models (a seed ensemble), ``health['topk_stability']`` is the mean share of the top
        ``top_k_stability`` features any two models have in common (per group, averaged).
    key_added
        Key in ``mdata.uns`` (default ``"relevance"`` or ``"relevance_<source>_to_<target>"``).
    copy
        Return a copy instead of writing into ``mdata``.
    progress_bar
        Show a progress bar over the groups (default: ``mx.settings.progress_bar``); without one, a long run logs
        its progress every 30 s.

    Returns
    -------
    ``None`` (or the copy). Writes ``mdata.uns[key_added]`` with

    * ``"groups"``: per group a DataFrame over features with ``modality``, ``mean_abs`` (mean absolute relevance
      over the group's cells), ``mean`` (signed mean) and ``rank`` (1 = largest ``mean_abs``); for
      ``kind="cross_modal"`` these are the source features, summed over target features;
    * ``"matrices"`` (``kind="cross_modal"`` only): per group a target x source DataFrame of mean absolute relevance
      (in the target's units), and ``"target_std"``, each target feature's standard deviation over all cells
      (divide by it to compare targets of different scales);
    * ``"summary"``: per group the number of cells, method, additivity error and seconds (summed over the
      models of an ensemble);
    * ``"health"``: ``additivity_error`` (largest relative error over the groups), ``n_cells`` (per group),
      ``linear_path`` (True when the explained source -> target path is linear for every target feature, so
      not group-specific), for a model whose prediction blends a nonlinear and a linear path (UnitedNet's
      ``linear_skip``) ``path_blend`` (per target feature the weight of the nonlinear path, mean over the
      models, and ``linear_only``, True where it is 0 in every model: that feature's relevance is the same
      weights in every group) and ``n_linear_features``, and, for an ensemble, ``topk_stability``; a warning
      is logged for groups under 10 cells, an error above 0.2 or a linear path, and :mod:`multiomix.pl`
      repeats it on the figure;
    * ``"params"``: the arguments, the method used, the number of models and the largest additivity error
      (of any model).

    Group names are the dict keys, with ``/`` replaced by ``_``.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.patchseq()
    >>> model = mx.tl.fit_unitednet(mdata, label_key="cell_type_TEM")
    >>> mx.tl.feature_relevance(mdata, model, groupby="cell_type_TEM")
    >>> mx.tl.rank_relevant_features(mdata, "relevance", "Sst-MET-1", n_top=5)
    >>> mx.tl.feature_relevance(mdata, model, groupby="cell_type_TEM", kind="cross_modal",
    ...                         source="rna", target="morph")
    >>> models = [mx.tl.fit_unitednet(mdata, label_key="cell_type_TEM", random_state=s) for s in range(5)]
    >>> mx.tl.feature_relevance(mdata, models, groupby="cell_type_TEM", output="log_proba", key_added="ens")
    """
    _check_relevance_args(mdata, kind=kind, method=method, background=background, n_background=n_background,
                          n_samples=n_samples, source=source, target=target, output=output,
                          max_cells_per_group=max_cells_per_group)
    key_added = key_added or ("relevance" if kind == "group" else f"relevance_{source}_to_{target}")
    check_replaceable(mdata, key_added, "relevance")
    adapters = _adapters(model, kind)
    adapter = adapters[0]
    groupby = groupby if groupby is not None else _trained_label_key(model)
    fns = [a.get_classifier() if kind == "group" else a.get_translator(source, target) for a in adapters]
    mods = list(adapter.modalities) if kind == "group" else [source]
    positions = _feature_positions(mdata, adapter, mods)
    target_position = _feature_positions(mdata, adapter, [target])[target] if kind == "cross_modal" else None
    check_aligned(mdata, mods if kind == "group" else [source, target])
    present, codes, chosen = _group_codes(mdata, groupby, groups)
    if kind == "group":
        chosen = _model_classes_only(chosen, adapter, groupby=groupby, explicit=groups is not None)
    matrices = {m: in_memory(get_matrix(mdata.mod[m], adapter.layers[m], modality=m)) for m in mods}  # backed: read
    for m, matrix in matrices.items():
        check_finite(matrix, f"Modality {m!r}")
    background = background if background != "auto" else ("all_groups" if kind == "group" else "own_group")
    n_samples = n_samples or (50 if kind == "group" else 10)
    rng = np.random.default_rng(random_state)
    backgrounds = _Backgrounds(matrices, positions, codes, len(present), n_background=n_background, rng=rng)
    shared_bg = (backgrounds(np.flatnonzero(codes >= 0), list(range(len(present))))
                 if background == "all_groups" else None)
    start = last_report = time.perf_counter()
    results, stability = {}, {}
    n_explained = sum(min(int((codes == present.index(g)).sum()), max_cells_per_group or np.inf) for g in chosen)
    logger.info(f"feature relevance ({kind}): {len(chosen)} group(s), {n_explained} cells, {len(adapters)} model(s), "
                f"method {method!r} with {n_samples} samples per cell")
    show_bar = (settings.progress_bar if progress_bar is None else bool(progress_bar)) and len(chosen) > 1
    bar = tqdm(total=len(chosen), desc="feature relevance", unit="group", disable=not show_bar, leave=False)
    for done, g in enumerate(chosen, 1):
        gi = present.index(g)
        group_rng, gen = _group_random(random_state, g)  # a group's draws do not depend on the other groups asked for
        rows = np.flatnonzero(codes == gi)
        if max_cells_per_group is not None and len(rows) > max_cells_per_group:
            rows = np.sort(group_rng.choice(rows, size=max_cells_per_group, replace=False))
        bg = shared_bg if shared_bg is not None else backgrounds(np.flatnonzero(codes == gi), [gi], rng=group_rng)
        per_model = []
        for a, fn in zip(adapters, fns):
            common = {"method": method, "n_samples": n_samples, "batch_size": batch_size, "memory_mb": memory_mb,
                      "device": a.device, "generator": gen}
            if kind == "group":
                per_model.append(group_relevance(fn, [matrices[m] for m in mods], rows, a.class_names.index(g), bg,
                                                 columns=[positions[m] for m in mods], output=output, **common))
            else:
                per_model.append(cross_modal_relevance(fn, matrices[source], rows, bg[0], columns=positions[source],
                                                       **common))
        results[g] = average_results(per_model)
        if len(per_model) > 1:
            stability[g] = _topk_overlap([_per_feature(r, kind) for r in per_model], k=top_k_stability)
        bar.update(1)
        if not show_bar and time.perf_counter() - last_report > 30 and done < len(chosen):  # a long run, every 30 s
            last_report = time.perf_counter()
            logger.info(f"  {done} of {len(chosen)} groups explained ({last_report - start:.0f} s)")
    bar.close()
    seconds = time.perf_counter() - start

    frames, mats = _relevance_tables(results, adapter, mods, kind=kind, target=target)
    summary = _relevance_summary(results)
    methods = sorted(set(summary["method"]))
    notes = next(iter(results.values())).notes if results else {}
    params = to_uns({
        "kind": kind, "groupby": groupby, "source": source, "target": target, "model": adapter.name,
        "n_models": len(adapters),
        "modalities": mods, "groups": list(results), "group_keys": list(_safe_keys(results).values()),
        "background": background, "n_background": n_background, "n_samples": n_samples,
        "max_cells_per_group": max_cells_per_group, "output": output if kind == "group" else "target",
        "method_requested": method, "method": ", ".join(methods),
        "additivity_error": float(summary["additivity_error"].max()) if len(summary) else 0.0,
        "additivity_relative": float(summary["additivity_relative"].max()) if len(summary) else 0.0,
        "deep_unsupported_modules": notes.get("deep_unsupported_modules", ""),
        "random_state": random_state, "seconds": seconds,
    })
    blend = _path_blend(adapters, source, target, adapter.feature_names[target]) if kind == "cross_modal" else None
    linear = kind == "cross_modal" and all((source, target) in a.linear_paths for a in adapters)
    health = _health(summary, stability, linear=linear, k=top_k_stability, blend=blend,
                     names=dict(zip(_safe_keys(results).values(), map(str, results))),
                     max_cells_per_group=max_cells_per_group)
    entry: dict[str, Any] = {"params": params, "groups": frames, "summary": summary, "health": health}
    if kind == "cross_modal":
        entry["matrices"] = mats
        entry["target_std"] = _target_std(mdata, adapter, target, target_position)
    logger.info(
        f"feature relevance ({kind}, {', '.join(methods)}) of {len(results)} groups in {seconds:.1f} s; "
        f"additivity error: largest absolute {params['additivity_error']:.3g} (in output units), largest relative "
        f"{health['additivity_error']:.2f}"
    )
    out = mdata.copy() if copy else mdata
    write_uns(out, key_added, entry)
    return out if copy else None




def _group_random(random_state: int, group: Any) -> tuple[np.random.Generator, torch.Generator]:
    """Return the random generators of one group's draws, seeded by ``random_state`` and the group's name alone."""
    seed = np.random.SeedSequence([random_state, zlib.crc32(str(group).encode())])
    return np.random.default_rng(seed), torch.Generator().manual_seed(int(seed.generate_state(1)[0]))


def _per_feature(result, kind: str) -> np.ndarray:
    """Mean absolute relevance per input feature of one model's result."""
    return np.concatenate(result.mean_abs) if kind == "group" else np.asarray(result.mean_abs).sum(0)


def _topk_overlap(vectors: list[np.ndarray], *, k: int) -> float:
    """Mean share of the top-``k`` features two models have in common, over all pairs of models."""
    tops = [set(np.argsort(-v)[:k]) for v in vectors]
    pairs = [(a, b) for i, a in enumerate(tops) for b in tops[i + 1:]]
    return float(np.mean([len(a & b) / max(min(k, len(a)), 1) for a, b in pairs]))


#: thresholds above/below which the stored health and the plots warn
TINY_GROUP, HIGH_ADDITIVITY_ERROR = 10, 0.2


def _path_blend(adapters, source: str, target: str, names: pd.Index) -> pd.DataFrame | None:
    """Per target feature, the weight of the nonlinear path (mean over the models) and whether it is linear only."""
    blends = [a.path_blends.get((source, target)) for a in adapters]
    if all(b is None for b in blends):
        return None
    blends = np.stack([np.ones(len(names)) if b is None else np.asarray(b, dtype=float) for b in blends])
    return pd.DataFrame({"nonlinear_weight": blends.mean(0), "linear_only": (blends <= 0.0).all(0)},
                        index=pd.Index(names.astype(str), name="target"))


def _health(summary: pd.DataFrame, stability: dict[str, float], *, linear: bool, k: int,
            blend: pd.DataFrame | None = None, names: dict[str, str] | None = None,
            max_cells_per_group: int | None = None) -> dict[str, Any]:
    """Summarise what a user should know before reading a relevance result; warn once per problem."""
    health: dict[str, Any] = {
        "additivity_error": float(summary["additivity_relative"].max()) if len(summary) else 0.0,
        "n_cells": summary[["n_cells"]].astype(int),  # a frame: survives write_h5mu
        "linear_path": bool(linear),
    }
    if blend is not None:
        health["path_blend"] = blend
        health["n_linear_features"] = int(blend["linear_only"].sum())
    if stability:
        health["topk_stability"] = float(np.mean(list(stability.values())))
        health["topk"] = int(k)
    tiny = [(names or {}).get(g, g) for g in summary.index[summary["n_cells"] < TINY_GROUP]]  # the groups' names
    if tiny:
        capped = max_cells_per_group is not None and max_cells_per_group < TINY_GROUP
        advice = (f" (max_cells_per_group={max_cells_per_group} explains at most that many cells per group: raise it)"
                  if capped else "")
        logger.warning(f"relevance of groups with fewer than {TINY_GROUP} explained cells is unreliable: {tiny}"
                       + advice)
    if health["additivity_error"] > HIGH_ADDITIVITY_ERROR:
        logger.warning(f"relative additivity error {health['additivity_error']:.2f}: the attributions do not add up "
                       "to the explained output; raise n_samples")
    if linear:
        logger.warning("the explained source -> target path is linear: its relevance is the same in every group")
    elif blend is not None and blend["linear_only"].any():
        names = list(blend.index[blend["linear_only"].to_numpy()])
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        logger.info(f"{len(names)} of {len(blend)} target features are predicted by the linear path only ({shown}): "
                    "their relevance is the same weights in every group")
    return health


def check_n_top(n_top: int | None) -> None:
    """Raise a ``ValueError`` unless ``n_top`` is ``None`` or a whole number >= 1.

    Examples
    --------
    >>> check_n_top(5)
    >>> check_n_top(0)
    Traceback (most recent call last):
    ...
    ValueError: n_top must be a whole number >= 1, got 0.
    """
    if n_top is not None:
        check_whole("n_top", n_top, 1)


def rank_relevant_features(
    mdata: MuData,
    key: str,
    group: str,
    n_top: int = 10,
    *,
    modality: str | None = None,
    target_feature: str | None = None,
    rank_by: Literal["mean_abs", "mean"] = "mean_abs",
) -> pd.DataFrame:
    """Top relevant features of one group as a tidy DataFrame.

    Parameters
    ----------
    mdata
        MuData with results of :func:`feature_relevance` in ``uns[key]``.
    key
        The ``key_added`` of :func:`feature_relevance`.
    group
        Group (cell type) to rank.
    n_top
        Number of rows.
    modality
        Keep only features of this modality.
    target_feature
        Cross-modal results only: rank the source features of this one target feature (else the source
        features summed over all targets).
    rank_by
        ``"mean_abs"``: by mean absolute relevance (features that move the output of the group's cells most,
        in either direction); ``"mean"``: by signed mean relevance, largest first (features whose values in
        the group's cells consistently raise the output, i.e. evidence *for* the group; somewhat more stable
        across training seeds). Not available with ``target_feature``.

    Returns
    -------
    DataFrame with columns ``group``, ``modality``, ``feature``, ``mean_abs``, ``mean`` (``NaN`` for a
    single target feature), ``rank``, and ``target`` for cross-modal results.

    Examples
    --------
    >>> mx.tl.rank_relevant_features(mdata, "relevance", "Sst-MET-1", n_top=5)
    >>> mx.tl.rank_relevant_features(mdata, "relevance_rna_to_morph", "Sst-MET-1",
    ...                              target_feature="axon.tip.dimension_depth")
    """
    check_n_top(n_top)
    if rank_by not in ("mean_abs", "mean"):
        raise ValueError(f"`rank_by` must be 'mean_abs' or 'mean', got {rank_by!r}.")
    if rank_by == "mean" and target_feature is not None:
        raise ValueError("rank_by='mean' is not available with `target_feature` (only mean_abs is stored per target).")
    entry = _entry(mdata, key)
    gkey = _group_key(entry, group)
    frame = entry["groups"][gkey].copy()
    if target_feature is not None:
        if "matrices" not in entry:
            raise ValueError(f"`target_feature` needs cross-modal results; uns[{key!r}] holds group relevance.")
        mat = entry["matrices"][gkey]
        if target_feature not in mat.index:
            raise KeyError(f"Target feature {target_feature!r} not in the relevance matrix of {key!r}.")
        frame = frame.assign(mean_abs=mat.loc[target_feature].reindex(frame.index).to_numpy(), mean=np.nan)
        frame["rank"] = frame["mean_abs"].rank(ascending=False, method="first").astype(int)
    if modality is not None:
        if modality not in set(frame["modality"].astype(str)):
            raise KeyError(f"Modality {modality!r} not in the relevance results; it has "
                           f"{sorted(set(frame['modality'].astype(str)))}.")
        frame = frame[frame["modality"].astype(str) == modality]
    frame = frame.sort_values(rank_by, ascending=False, kind="stable").head(n_top)
    out = pd.DataFrame({
        "group": _group_name(entry, gkey),
        "modality": frame["modality"].astype(str).to_numpy(),
        "feature": frame.index.astype(str),
        "mean_abs": frame["mean_abs"].to_numpy(),
        "mean": frame["mean"].to_numpy(),
        "rank": np.arange(1, len(frame) + 1),
    })
    if "matrices" in entry:
        out.insert(1, "target", target_feature if target_feature is not None else "all")
    return out
