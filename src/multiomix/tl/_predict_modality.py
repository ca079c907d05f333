"""Cross-modal prediction written back into a MuData as a new modality."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from multiomix._utils import added


class Translator(Protocol):
    """Any model with ``translate`` and ``modality_var`` (e.g. UnitedNet, MultimodalAE)."""

    def translate(self, mdata: MuData, *, source: str, target: str, batch_size: int = 256) -> np.ndarray: ...

    def modality_var(self, target: str) -> pd.DataFrame: ...


def predict_modality(
    mdata: MuData,
    model: Translator,
    *,
    source: str,
    target: str,
    key_added: str | None = None,
    batch_size: int = 256,
) -> None:
    """Predict modality ``target`` from modality ``source`` and add it as a new modality.

    Works when ``mdata`` holds only the source modality (e.g. a query measured with RNA only). The new
    modality ``mdata.mod['<target>_from_<source>']`` has the source's cells and the target's ``var``;
    ``mdata.update()`` is called afterwards.

    Parameters
    ----------
    mdata
        MuData holding at least ``source`` (its features matched to the model's).
    model
        A trained model with ``translate(mdata, source=, target=)`` and ``modality_var(target)``, e.g.
        :class:`~multiomix.models.UnitedNet` or :class:`~multiomix.models.MultimodalAE`.
    source, target
        Modality names the model was trained on.
    key_added
        Name of the new modality (default ``'<target>_from_<source>'``).
    batch_size
        Cells per minibatch.

    Examples
    --------
    >>> import multiomix as mx
    >>> query = mudata.MuData({"rna": rna_only})
    >>> mx.tl.predict_modality(query, model, source="rna", target="ephys")
    >>> query.mod["ephys_from_rna"]
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"Expected a MuData object, got {type(mdata).__name__}.")
    if source not in mdata.mod:
        raise KeyError(f"Source modality {source!r} not found in the MuData; it has {list(mdata.mod)}.")
    key = key_added or f"{target}_from_{source}"
    values = model.translate(mdata, source=source, target=target, batch_size=batch_size)
    var = model.modality_var(target)
    obs = pd.DataFrame(index=mdata.mod[source].obs_names.copy())
    if values.shape != (len(obs), len(var)):
        raise ValueError(f"translate returned shape {values.shape}, expected {(len(obs), len(var))}.")
    new = AnnData(X=np.asarray(values, dtype=np.float32), obs=obs, var=var)
    others = [n for m, a in mdata.mod.items() if m != key for n in a.var_names]
    if pd.Index(var.index).isin(others).any():
        # mudata cannot add a modality whose feature names overlap existing ones in one update (it reads this as
        # "renamed and filtered"); add it under unique names first, then restore the names (a pure rename)
        new.var_names = [f"{key}:{name}" for name in var.index]
        mdata.mod[key] = new
        mdata.update()
        mdata.mod[key].var_names = var.index
    else:
        mdata.mod[key] = new
    mdata.update()
    added("mod", key)


__all__ = ["predict_modality"]
