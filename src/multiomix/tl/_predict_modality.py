"""Cross-modal prediction written back into a MuData as a new modality."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from multiomix._utils import PREDICTED_KEY, added

from ..models.base import SeedEnsemble


class Translator(Protocol):
    """Any model with ``translate`` and ``modality_var`` (e.g. UnitedNet, MultimodalAE)."""

    def translate(self, mdata: MuData, *, source: str, target: str, batch_size: int = 256) -> np.ndarray: ...

    def modality_var(self, target: str) -> pd.DataFrame: ...


def predict_modality(
    mdata: MuData,
    model: Translator | Sequence[Translator],
    *,
    source: str,
    target: str,
    key_added: str | None = None,
    batch_size: int = 256,
) -> None:
    """Predict modality ``target`` from modality ``source`` and add it as a new modality.

    Works when ``mdata`` holds only the source modality (e.g. a query measured with RNA only). The new
    modality ``mdata.mod['<target>_from_<source>']`` has the source's cells and the target's ``var``;
    ``mdata.update()`` is called afterwards. Its ``.uns['predict_modality']`` records the source, the target and
    the number of models; a later fit with ``modalities=None`` leaves it out (logged), since it is not a
    measurement: name it in ``modalities=[...]`` to use it as an input.

    Several models (e.g. the same model fitted with different seeds) form an ensemble: the new modality holds
    the mean of their predictions, which is usually closer to the truth than any single member (a deep
    ensemble; Lakshminarayanan et al., 2017). All members must predict the same target features.

    Parameters
    ----------
    mdata
        MuData holding at least ``source`` (its features matched to the model's).
    model
        A trained model with ``translate(mdata, source=, target=)`` and ``modality_var(target)``, e.g.
        :class:`~multiomix.models.UnitedNet` or :class:`~multiomix.models.MultimodalAE`; or a sequence of such
        models, whose predictions are averaged.
    source, target
        Modality names the model was trained on.
    key_added
        Name of the new modality (default ``'<target>_from_<source>'``). A modality of that name is replaced only if an
        earlier ``predict_modality`` wrote it; the user's own modalities are never replaced.
    batch_size
        Cells per minibatch.

    Examples
    --------
    >>> import mudata
    >>> import multiomix as mx
    >>> mdata = mx.datasets.patchseq()
    >>> model = mx.tl.fit_unitednet(mdata, mode="translation")
    >>> query = mudata.MuData({"rna": mdata["rna"][:50].copy()})  # cells with RNA only
    >>> mx.tl.predict_modality(query, model, source="rna", target="ephys")
    >>> query.mod["ephys_from_rna"]

    An ensemble of five seeds:

    >>> models = [mx.tl.fit_unitednet(mdata.copy(), mode="translation", random_state=s) for s in range(5)]
    >>> mx.tl.predict_modality(query, models, source="rna", target="ephys")
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"Expected a MuData object, got {type(mdata).__name__}.")
    if mdata.is_view:
        raise ValueError("`mdata` is a view (e.g. `mdata[:100]`), to which no modality can be added; pass a copy "
                         "(`mdata[:100].copy()`).")
    if source not in mdata.mod:
        raise KeyError(f"Source modality {source!r} not found in the MuData; it has {list(mdata.mod)}.")
    key = key_added or f"{target}_from_{source}"
    if key in mdata.mod and PREDICTED_KEY not in mdata.mod[key].uns:
        raise ValueError(f"Modality {key!r} is the user's own (not written by predict_modality): it is never replaced. "
                         f"Pass another key_added (default {target + '_from_' + source!r}).")
    models = list(model) if isinstance(model, Sequence | SeedEnsemble) else [model]
    # an ensemble inside a list contributes its members, as it does alone
    models = [m for item in models for m in (list(item) if isinstance(item, SeedEnsemble) else [item])]
    if not models:
        raise ValueError("Expected a trained model or a non-empty sequence of models, got an empty sequence.")
    for member in models:
        if not (hasattr(member, "translate") and hasattr(member, "modality_var")):
            raise TypeError(f"Expected a model with `translate` and `modality_var` (e.g. UnitedNet, MultimodalAE) or "
                            f"a list of them, got {type(member).__name__}.")
    var = models[0].modality_var(target)
    for i, member in enumerate(models[1:], start=1):
        if not member.modality_var(target).index.equals(var.index):
            raise ValueError(f"Model {i} predicts other {target!r} features than model 0; an ensemble needs the "
                             "same target features in the same order.")
    values = np.asarray(models[0].translate(mdata, source=source, target=target, batch_size=batch_size),
                        dtype=np.float32)
    for member in models[1:]:  # in place: the peak stays at the output and one member's prediction
        values += member.translate(mdata, source=source, target=target, batch_size=batch_size)
    if len(models) > 1:
        values /= len(models)
    obs = pd.DataFrame(index=mdata.mod[source].obs_names.copy())
    if values.shape != (len(obs), len(var)):
        raise ValueError(f"translate returned shape {values.shape}, expected {(len(obs), len(var))}.")
    record = {"source": source, "target": target, "n_models": len(models)}
    new = AnnData(X=values, obs=obs, var=var, uns={PREDICTED_KEY: record})
    replaced = key in mdata.mod
    with warnings.catch_warnings():  # mudata's notices on updating; the shared names are the point (same features)
        warnings.filterwarnings("ignore", message=r"From 0\.4 \.update\(\)", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*var_names are intersecting", category=UserWarning)
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        previous = mdata.mod[key] if replaced else None
        try:
            _add_modality(mdata, key, new)
        except Exception:  # mudata failed half-way: the MuData as it was
            if previous is None:
                mdata.mod.pop(key, None)
            else:
                mdata.mod[key] = previous
            mdata.update()
            raise
    added("mod", key, replaced=replaced)


def _add_modality(mdata: MuData, key: str, new: AnnData) -> None:
    """Put ``new`` into ``mdata.mod[key]`` and update ``mdata``, even where its feature names overlap others'."""
    others = [n for m, a in mdata.mod.items() if m != key for n in a.var_names]
    if not pd.Index(new.var_names).isin(others).any():
        mdata.mod[key] = new
        mdata.update()
        return
    # mudata cannot add a modality whose feature names overlap existing ones in one update (it reads this as
    # "renamed and filtered"); add it under unique names first, then restore the names (a pure rename)
    names = new.var_names.copy()
    new.var_names = [f"{key}:{name}" for name in names]
    mdata.mod[key] = new
    mdata.update()
    mdata.mod[key].var_names = names
    mdata.update()


__all__ = ["predict_modality"]
