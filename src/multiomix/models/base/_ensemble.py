"""Seed ensembles: models of one class trained on the same rows from different seeds, predicting together."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from ..._docs import fill_doc
from ._model import ENSEMBLE_MANIFEST, MultiomixModel, adata_alias, most_probable

_MANIFEST = ENSEMBLE_MANIFEST


class SeedEnsemble:
    """Models of one class, trained on the same rows from different seeds, that predict and embed together.

    A deep ensemble (Lakshminarayanan et al., NeurIPS 2017): each member is an ordinary multiomix model.

    * **Classifiers** (CrossAttOmics, UnitedNet, Med-CrossViT): the ensemble predicts the mean of the members'
      class probabilities, which is usually more accurate and better calibrated than one member, at ``n`` times
      the cost. Their embedding is the first member's (the members' latent spaces are not aligned).
    * **Embedding models** (:class:`~multiomix.models.MultimodalAE`, no classes): the ensemble's embedding is the
      concatenation of the members' latents, each divided by its standard deviation over its training rows, so
      that each member weighs alike in the distances between cells (``n x latent_dim`` columns). Seeds disagree
      on where a cell lies; the concatenation keeps what they agree on and averages the rest out in the
      neighbour graph.

    The ``tl.fit_*`` functions build one with ``n_models > 1``. :func:`multiomix.tl.feature_relevance` explains
    the ensemble as a whole and :func:`multiomix.tl.predict_modality` averages the members' translations;
    functions that read one network's internals (attention maps, interaction importance) take a member
    (``ensemble.members[0]``).

    Parameters
    ----------
    members
        Trained models of one class, with the same modalities, features and classes (if any).

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.tcga_brca()
    >>> ensemble = mx.tl.fit_crossattomics(mdata, n_models=3)  # doctest: +SKIP
    >>> ensemble.predict_proba().head()  # doctest: +SKIP
    >>> [m.random_state for m in ensemble]  # doctest: +SKIP
    [0, 1, 2]
    """

    def __init__(self, members: Sequence[MultiomixModel]):
        members = list(members)
        if not members:
            raise ValueError("A SeedEnsemble needs at least one trained model.")
        first = members[0]
        for i, other in enumerate(members[1:], 1):
            if type(other) is not type(first):
                raise TypeError(f"Member {i} is a {type(other).__name__}, member 0 a {type(first).__name__}; "
                                "an ensemble holds models of one class.")
            if other.modalities != first.modalities or list(other.classes) != list(first.classes):
                raise ValueError(f"Member {i} reads other modalities or predicts other classes than member 0 "
                                 f"({other.modalities} / {list(other.classes)} vs {first.modalities} / "
                                 f"{list(first.classes)}).")
            if {m: list(v) for m, v in other.feature_names_.items()} != {
                    m: list(v) for m, v in first.feature_names_.items()}:
                raise ValueError(f"Member {i} reads other features than member 0; an ensemble's members are trained "
                                 "on the same features.")
        if getattr(first, "_latent_output", None) is None:
            raise TypeError(f"A SeedEnsemble holds classifiers or embedding models; a {type(first).__name__} is "
                            "neither.")
        if not first.classes and getattr(first, "_logits_output", None) is not None:
            raise ValueError(f"A SeedEnsemble of classifiers averages class probabilities; this "
                             f"{type(first).__name__} was trained without labels (fit with a label column, or "
                             "ensemble embedding models such as MultimodalAE).")
        untrained = [i for i, m in enumerate(members) if not m.is_trained]
        if untrained:
            raise ValueError(f"Members {untrained} are not trained; an ensemble averages trained models.")
        self.members = members

    def _data_for(self, member: MultiomixModel, mdata: MuData | None) -> MuData | None:
        """Return what ``member`` scores: ``mdata``, else member 0's data (members may be set up on other objects)."""
        data = self.adata if mdata is None else mdata
        return None if data is member.adata else data

    # the members' shared description -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[MultiomixModel]:
        return iter(self.members)

    def __getitem__(self, i: int) -> MultiomixModel:
        return self.members[i]

    def __repr__(self) -> str:
        seeds = [m.random_state for m in self.members]
        return f"SeedEnsemble of {len(self)} {type(self.members[0]).__name__} models (seeds {seeds})"

    @property
    def embeds(self) -> bool:
        """Whether the members are embedding models without classes, whose latents the ensemble joins."""
        return getattr(self.members[0], "_logits_output", None) is None

    @property
    def classes(self) -> list[str]:
        """Class names, shared by the members (empty for embedding models)."""
        return list(self.members[0].classes)

    @property
    def modalities(self) -> list[str]:
        """Modalities the members read."""
        return list(self.members[0].modalities)

    @property
    def layers(self) -> dict[str, str | None]:
        """Layer of each modality."""
        return dict(self.members[0].layers)

    @property
    def feature_names_(self) -> dict[str, list[str]]:
        """Feature names per modality, shared by the members (new data are matched to them by name)."""
        return self.members[0].feature_names_

    @property
    def label_key(self) -> str | None:
        """Label column the members were trained on."""
        return self.members[0].label_key

    @property
    def adata(self) -> MuData:
        """The data the members were set up on."""
        return self.members[0].adata

    @property
    def history(self) -> dict[str, pd.DataFrame] | None:
        """Training history of the first member."""
        return self.members[0].history

    # prediction --------------------------------------------------------------------------------------------------
    @fill_doc
    @adata_alias
    def predict_proba(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256
    ) -> pd.DataFrame:
        """Mean of the members' class probabilities (observations x classes).

        Parameters
        ----------
        %(score_data)s

        Returns
        -------
        %(returns_proba)s

        Examples
        --------
        >>> proba = ensemble.predict_proba(new_mdata)  # doctest: +SKIP
        """
        if self.embeds:
            raise ValueError(f"This ensemble of {type(self.members[0]).__name__} models embeds cells; it predicts no "
                             "classes.")
        first = self.members[0].predict_proba(mdata, indices=indices, batch_size=batch_size)
        total = first.to_numpy(dtype=np.float64)
        for member in self.members[1:]:
            proba = member.predict_proba(self._data_for(member, mdata), indices=indices, batch_size=batch_size)
            total += proba.to_numpy(dtype=np.float64)
        return pd.DataFrame((total / len(self)).astype(np.float32), index=first.index, columns=first.columns)

    @fill_doc
    @adata_alias
    def predict(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256
    ) -> pd.Series:
        """Most probable class under the mean probabilities, as a categorical with the classes.

        Parameters
        ----------
        %(score_data)s

        Returns
        -------
        %(returns_prediction)s

        Examples
        --------
        >>> ensemble.predict(new_mdata).value_counts()  # doctest: +SKIP
        """
        return most_probable(self.predict_proba(mdata, indices=indices, batch_size=batch_size))

    @fill_doc
    @adata_alias
    def get_latent_representation(
        self,
        mdata: MuData | None = None,
        *,
        indices: Sequence[int] | None = None,
        batch_size: int = 256,
        members: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embedding of each observation: the first member's, or all members' joined.

        Parameters
        ----------
        %(score_data)s
        members
            ``"first"``: the first member's latent; ``"all"``: the members' latents side by side, each divided by
            its ``latent_scale_`` (its standard deviation over its training rows, set by the fit; 1 when unset).
            Default: ``"all"`` for embedding models (MultimodalAE), ``"first"`` for classifiers.
        **kwargs
            Passed to each member's ``get_latent_representation`` (e.g. ``modalities=`` of a MultimodalAE).

        Returns
        -------
        latent : numpy.ndarray
            ``n_obs x latent_dim`` (``"first"``) or ``n_obs x (n_members * latent_dim)`` (``"all"``).

        Examples
        --------
        >>> z = ensemble.get_latent_representation()  # doctest: +SKIP
        """
        members = members or ("all" if self.embeds else "first")
        if members not in ("first", "all"):
            raise ValueError(f"members must be 'first' or 'all', got {members!r}.")
        chosen = self.members if members == "all" else self.members[:1]
        latents = []
        for member in chosen:
            data = mdata if member is self.members[0] else self._data_for(member, mdata)
            latent = member.get_latent_representation(data, indices=indices, batch_size=batch_size, **kwargs)
            scale = float(getattr(member, "latent_scale_", None) or 1.0) if members == "all" else 1.0
            latents.append(np.asarray(latent, dtype=np.float32) / scale)
        return latents[0] if len(latents) == 1 else np.concatenate(latents, axis=1)

    def translate(
        self, mdata: MuData | AnnData, *, source: str, target: str, batch_size: int = 256
    ) -> np.ndarray:
        """Mean of the members' predictions of modality ``target`` from modality ``source`` alone.

        For members that translate (:class:`~multiomix.models.MultimodalAE`, UnitedNet); see their ``translate``.

        Parameters
        ----------
        mdata
            Data holding the source modality, its features matched to the members' by name.
        source
            Modality to encode.
        target
            Modality to decode.
        batch_size
            Cells per minibatch.

        Returns
        -------
        translated : numpy.ndarray
            ``n_obs x n_target_features``, float32, on the scale of the target's training data.

        Examples
        --------
        >>> atac = ensemble.translate(mdata, source="rna", target="atac")  # doctest: +SKIP
        """
        first = self.members[0]
        if not hasattr(first, "translate"):
            raise TypeError(f"{type(first).__name__} models do not translate one modality into another.")
        total = np.asarray(first.translate(mdata, source=source, target=target, batch_size=batch_size),
                           dtype=np.float64)
        for member in self.members[1:]:
            total += member.translate(mdata, source=source, target=target, batch_size=batch_size)
        return (total / len(self)).astype(np.float32)

    def modality_var(self, target: str) -> pd.DataFrame:
        """Return the ``var`` of a modality the members were trained on (shared by the members).

        Parameters
        ----------
        target
            A modality the members were trained on.

        Returns
        -------
        var : pandas.DataFrame
            Its features, in training order.

        Examples
        --------
        >>> ensemble.modality_var("atac").index[:3]  # doctest: +SKIP
        """
        first = self.members[0]
        if not hasattr(first, "modality_var"):
            raise TypeError(f"{type(first).__name__} models do not translate one modality into another.")
        return first.modality_var(target)

    # save / load -------------------------------------------------------------------------------------------------
    def save(self, dir_path: str, *, overwrite: bool = False, save_anndata: bool = False, **kwargs: Any) -> None:
        """Save every member to ``dir_path/member_<i>`` and a manifest naming the model class.

        Parameters
        ----------
        dir_path
            Directory to write.
        overwrite
            Replace an existing directory.
        save_anndata
            Also save the data each member was set up with (then ``load`` needs no ``adata``).
        **kwargs
            Passed to each member's ``save``.

        Examples
        --------
        >>> ensemble.save("ensemble_dir")  # doctest: +SKIP
        """
        path = Path(dir_path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise ValueError(f"{dir_path} already exists and is not empty; pass overwrite=True to replace it.")
        path.mkdir(parents=True, exist_ok=True)
        for i, member in enumerate(self.members):
            member.save(str(path / f"member_{i}"), overwrite=overwrite, save_anndata=save_anndata and i == 0,
                        **kwargs)
        manifest = {"model_class": type(self.members[0]).__name__, "n_members": len(self)}
        (path / _MANIFEST).write_text(json.dumps(manifest))

    @classmethod
    def load(cls, dir_path: str, adata: MuData | None = None, **kwargs: Any) -> SeedEnsemble:
        """Load an ensemble saved by :meth:`save`; ``adata`` is matched to the saved features by name.

        Parameters
        ----------
        dir_path
            Directory the ensemble was saved to.
        adata
            Data to attach the members to (needed unless they were saved with ``save_anndata=True``).
        **kwargs
            Passed to each member's ``load``.

        Returns
        -------
        ensemble : SeedEnsemble
            The ensemble, ready to predict.

        Examples
        --------
        >>> ensemble = mx.models.SeedEnsemble.load("ensemble_dir", adata=new_mdata)  # doctest: +SKIP
        """
        from .. import CrossAttOmics, MedCrossViT, MultimodalAE, UnitedNet

        path = Path(dir_path)
        if not (path / _MANIFEST).exists():
            raise FileNotFoundError(f"No {_MANIFEST} in {dir_path}: not a directory written by SeedEnsemble.save.")
        manifest = json.loads((path / _MANIFEST).read_text())
        classes = {c.__name__: c for c in (CrossAttOmics, MedCrossViT, MultimodalAE, UnitedNet)}
        if manifest["model_class"] not in classes:
            raise ValueError(f"Unknown model class {manifest['model_class']!r} in {_MANIFEST}.")
        model_cls = classes[manifest["model_class"]]
        first = model_cls.load(str(path / "member_0"), adata=adata, **kwargs)
        others = [model_cls.load(str(path / f"member_{i}"), adata=first.adata, **kwargs)
                  for i in range(1, manifest["n_members"])]
        return cls([first, *others])


def check_n_models(n_models: int) -> int:
    """``n_models`` checked: a positive integer.

    Examples
    --------
    >>> check_n_models(3)
    3
    """
    if isinstance(n_models, bool) or not isinstance(n_models, int | np.integer) or n_models < 1:
        raise ValueError(f"n_models must be a positive integer, got {n_models!r}.")
    return int(n_models)
