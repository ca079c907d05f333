"""Score new data with a fitted model and write the same keys a fit writes."""

from __future__ import annotations

from typing import Any

import numpy as np
from mudata import MuData

from .._logging import each_line_once, logger
from .._utils import check_has_obs, check_output_columns, check_whole, restore_on_error, write_obsm, write_uns
from ..models import MedCrossViT
from ..models.base import SeedEnsemble
from ._fit import classifier_columns, classifier_obsm, drop_class_outputs, write_classifier_outputs
from ._med_crossvit import attention_record
from ._results import check_replaceable


def _model_key(model: Any) -> str:
    """Return the key prefix the model's ``tl.fit_*`` writes (e.g. ``"mmae"`` for a MultimodalAE)."""
    return getattr(model, "_default_key", None) or type(model).__name__.lower()


def _warn_if_fit_record(mdata, key: str) -> None:
    record = mdata.uns.get(key)
    if isinstance(record, dict) and "history" in record:
        logger.warning(f"uns[{key!r}] held the record of a fit (history, test metrics); it is replaced by this "
                       "scoring. Pass `key_added` to keep both.")


def _check_outputs(mdata, key: str, *, tracks: bool, classifier: bool) -> None:
    """Refuse, before scoring, a ``uns[key]`` record or ``obs`` / ``obsm`` outputs under ``key`` that are the user's.

    Outputs an earlier fit or scoring under ``key`` wrote are replaced (:func:`~multiomix._utils.check_output_columns`).
    """
    check_replaceable(mdata, key, "scored")
    if tracks:
        check_output_columns(mdata, key, [], obsm=[f"{key}_prediction"])
    elif classifier:
        check_output_columns(mdata, key, classifier_columns(key), obsm=classifier_obsm(key))
    else:
        check_output_columns(mdata, key, [], obsm=[f"X_{key}"])


@each_line_once("features the model does not use are ignored")  # probabilities and embedding
def predict(mdata: MuData, model: Any, *, key_added: str | None = None, batch_size: int = 256) -> None:
    """Score a new MuData with a fitted model: predictions, confidence, probabilities and embedding.

    The new data need no label column; their features are matched to the training features by name, per
    modality (extra features are ignored, missing ones raise a ``KeyError`` naming the modality). Writes the
    same keys as the model's ``tl.fit_*``: ``obs['<key>_prediction']``, ``obs['<key>_confidence']``,
    ``obsm['<key>_proba']`` and ``obsm['X_<key>']`` for a classifier, ``obsm['X_<key>']`` otherwise, and
    ``uns[key_added]`` with the classes and a note that these rows were scored, not fitted (for Med-CrossViT also
    its ``attention``, as :func:`fit_med_crossvit` writes it, so that :func:`multiomix.pl.tile_attention` works).

    Parameters
    ----------
    mdata
        The new data (a MuData with the model's modalities; for the Genomic Interpreter, an AnnData of regions,
        whose predicted tracks go to ``obsm['<key>_prediction']``).
    model
        A fitted multiomix model, or a :class:`~multiomix.models.SeedEnsemble` (its mean probabilities and its
        first member's embedding are written).
    key_added
        Prefix of the keys written (default: the prefix the model's ``tl.fit_*`` writes by default, e.g.
        ``"crossattomics"`` or ``"mmae"``). Scoring the object a model was fitted on under the fit's key
        replaces the fit's record in ``uns`` (history, test metrics); a warning says so. Outputs under the key
        that no earlier multiomix run wrote (a user's ``obsm['X_<key>']``, ``obs`` column or ``uns`` entry) are
        never replaced: a ``ValueError`` names them before anything is scored.
    batch_size
        Observations per minibatch.

    Returns
    -------
    Nothing; writes into ``mdata``.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga_brca()
    >>> model = mx.tl.fit_crossattomics(mdata)
    >>> new = mx.datasets.tcga_brca(); del new.obs["subtype"]
    >>> mx.tl.predict(new, model)
    >>> new.obs["crossattomics_prediction"].value_counts()  # doctest: +SKIP
    """
    first = model.members[0] if isinstance(model, SeedEnsemble) else model
    if not hasattr(first, "get_latent_representation") and not hasattr(first, "track_names"):
        raise TypeError(f"predict(mdata, model) expects a fitted multiomix model (what a mx.tl.fit_* function "
                        f"returns) as its second argument, got {type(model).__name__}.")
    check_whole("batch_size", batch_size, 1)
    name = type(first).__name__ + (f" ensemble of {len(model)}" if first is not model else "")
    key = key_added or _model_key(first)
    if hasattr(model, "track_names"):
        key = key_added or "genomic_interpreter"
    check_has_obs(mdata, needs="there is nothing to score")
    classes = list(getattr(model, "classes", []) or [])
    classifier = bool(classes) and getattr(first, "_logits_output", None) is not None
    _check_outputs(mdata, key, tracks=hasattr(model, "track_names"), classifier=classifier)
    if hasattr(model, "track_names"):  # sequence -> assay tracks (Genomic Interpreter): the tracks are the output
        tracks = np.asarray(model.predict(mdata, batch_size=batch_size), dtype=np.float32)
        _warn_if_fit_record(mdata, key)
        with restore_on_error(mdata):
            write_obsm(mdata, f"{key}_prediction", tracks)
            setup = first.setup_args  # what mx.pl.track_prediction reads to find the observed tracks, if any
            params = {"tracks_key": setup.get("tracks_key") or "", "layer": setup.get("layer") or "",
                      "backbone": first.module.backbone_name, "split_key": ""}
            write_uns(mdata, key, {"model": type(model).__name__, "track_names": np.asarray(model.track_names),
                                   "params": params,
                                   "scored": "predicted by a fitted model; no training on these rows"})
        return
    proba = model.predict_proba(mdata, batch_size=batch_size) if classifier else None
    latent = model.get_latent_representation(mdata, batch_size=batch_size)
    _warn_if_fit_record(mdata, key)
    with restore_on_error(mdata):
        if proba is not None:
            write_classifier_outputs(mdata, proba, latent, key=key, label_key=getattr(first, "label_key", None))
        else:
            drop_class_outputs(mdata, key)
            write_obsm(mdata, f"X_{key}", latent.astype("float32"))
        info = {"model": name, "scored": "predicted by a fitted model; no training on these rows"}
        if classes:
            info["classes"] = classes
        if isinstance(first, MedCrossViT):  # what mx.pl.tile_attention reads, as the fit writes it
            info["attention"] = attention_record(first.get_attention(mdata, batch_size=batch_size),
                                                 first.gene_names, mdata.obs_names)
            info["params"] = {k: first.setup_args[k] or "" for k in ("tiles_modality", "mask_key")}
            # the wide path alone was kept: the attention maps do not explain the predictions (the plot says so)
            info["params"]["wide_path_only"] = bool(first.wide_path is not None and first.best_epoch_ == -1)
        write_uns(mdata, key, info)
    logger.debug(f"scored {mdata.n_obs} observations with {name}")
