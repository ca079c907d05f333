"""Genomic Interpreter: DNA sequence -> assay tracks, as a scvi-tools model class on AnnData (regions as obs)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField, ObsmField
from scvi.model.base import BaseModelClass

from .._metrics import track_metrics
from .._utils import check_finite, get_matrix, in_memory, plain_array, quiet_scvi, seeded
from ..module._genomic_interpreter import (
    DEFAULT_BACKBONE_KWARGS,
    DNA_KEY,
    LOSSES,
    TARGET_KEY,
    GenomicInterpreterModule,
    infer_loss,
)
from ..nn.swin1d import Swin1D
from ..train._genomic_interpreter import GenomicInterpreterTrainingPlan, SequenceDataSplitter
from .base import MultiomixModel

logger = logging.getLogger("multiomix")

#: ``uns`` flag of a matched input whose targets are zeros standing in for absent ones (prediction only)
_PLACEHOLDER = "_multiomix_placeholder_targets"
_ALPHABET = "ACGT"


def check_sequences(adata: AnnData, sequence_key: str, *, length: int | None = None) -> np.ndarray:
    """Return the one-hot DNA ``adata.obsm[sequence_key]``, checked: ``(regions, length, 4)``, values in [0, 1].

    A position may be all zeros (``N``). With ``length``, the sequences must have that many bp.

    Examples
    --------
    >>> adata = AnnData(obsm={"dna": np.eye(4, dtype=np.uint8)[None]}, obs=pd.DataFrame(index=["r"]))
    >>> check_sequences(adata, "dna").shape
    (1, 4, 4)
    """
    if sequence_key not in adata.obsm:
        text = (f" .obs[{sequence_key!r}] holds the sequences as text: here sequence_key names the one-hot .obsm "
                f"entry, which mx.pp.one_hot_sequences(adata, sequence_key={sequence_key!r}) writes (to "
                "obsm['dna_onehot'] by default)." if sequence_key in adata.obs.columns else "")
        raise KeyError(
            f"One-hot DNA .obsm[{sequence_key!r}] not found (obsm keys: {list(adata.obsm.keys())}); run "
            f"mx.pp.one_hot_sequences first.{text}"
        )
    dna = plain_array(adata.obsm[sequence_key])  # a view hands out an ArrayView: a plain array, without a copy
    if not isinstance(dna, np.ndarray) or dna.ndim != 3 or dna.shape[2] != 4:
        raise ValueError(
            f".obsm[{sequence_key!r}] must be a (n_regions, length, 4) one-hot array, got "
            f"{type(dna).__name__} of shape {getattr(dna, 'shape', None)}."
        )
    if length is not None and dna.shape[1] != length:
        raise ValueError(f".obsm[{sequence_key!r}] holds sequences of {dna.shape[1]} bp; the model was trained on "
                         f"{length} bp regions (cut or pad them to {length} bp, e.g. with mx.pp.one_hot_sequences).")
    if dna.dtype.kind not in "biuf":
        raise ValueError(f".obsm[{sequence_key!r}] must be numeric one-hot, got dtype {dna.dtype}.")
    for start in range(0, len(dna), 4096):  # chunks: no copy of the whole array
        chunk = dna[start : start + 4096]
        if dna.dtype.kind == "f" and not np.isfinite(chunk).all():
            raise ValueError(f".obsm[{sequence_key!r}] contains NaN or infinite values; one-hot DNA holds 0 and 1 only "
                             "(encode sequences with mx.pp.one_hot_encode; N is a position of zeros).")
        if chunk.size and (chunk.min() < 0 or chunk.max() > 1 or chunk.sum(-1, dtype=np.float32).max() > 1 + 1e-3):
            raise ValueError(
                f".obsm[{sequence_key!r}] is not one-hot over {_ALPHABET} (values in [0, 1], at most 1 per "
                "position, all zeros for N); encode sequences with mx.pp.one_hot_encode."
            )
    return dna


def region_input(
    adata: AnnData,
    *,
    sequence_key: str,
    tracks_key: str | None = None,
    layer: str | None = None,
    length: int | None = None,
    track_names: Sequence[str] | None = None,
    n_bins: int | None = None,
    require_targets: bool = True,
) -> AnnData:
    """Build a new AnnData around ``adata``'s arrays (no copy) with the DNA and the targets where the model reads them.

    Targets in ``.X``/``layer`` are matched to ``track_names`` by name; targets in ``.obsm[tracks_key]`` must
    be ``(regions, n_bins, tracks)``. Without ``require_targets``, absent targets are replaced by zeros (and the
    result is flagged), so that sequences alone can be predicted. The user's object is never registered.

    Examples
    --------
    >>> view = region_input(adata, sequence_key="dna_onehot")  # doctest: +SKIP
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData of regions, got {type(adata).__name__}.")
    dna = check_sequences(adata, sequence_key, length=length)
    obs = pd.DataFrame(index=adata.obs_names.astype(str))
    placeholder, partial = False, None
    if tracks_key is not None:
        tracks = plain_array(adata.obsm[tracks_key]) if tracks_key in adata.obsm else None
        expected = None if track_names is None else (n_bins, len(track_names))
        if tracks is None or (not require_targets and expected is not None and tracks.shape[1:] != expected):
            if require_targets:
                raise KeyError(f"Track profiles .obsm[{tracks_key!r}] not found (obsm keys: {list(adata.obsm)}).")
            tracks, placeholder = np.zeros((adata.n_obs, *expected), dtype=np.float32), True
        elif expected is not None and tracks.shape[1:] != expected:
            raise ValueError(f".obsm[{tracks_key!r}] has shape {tracks.shape}; the model predicts {expected} "
                             "(bins, tracks) per region.")
        out = AnnData(X=np.zeros((adata.n_obs, 0), dtype=np.float32), obs=obs)
        out.obsm[tracks_key] = tracks
    else:
        names = pd.Index(adata.var_names.astype(str))
        matrix = get_matrix(adata, layer) if layer is None or layer in adata.layers else None
        if adata.isbacked and matrix is not None:  # minibatches are random rows, which h5py cannot read unsorted
            matrix = in_memory(matrix)
        if track_names is not None:
            expected = pd.Index(list(track_names)).astype(str)
            position = names.get_indexer(expected)
            if matrix is not None and (position >= 0).all():
                matrix = matrix if names.equals(expected) else matrix[:, position]
            elif require_targets:
                missing = list(expected[position < 0][:5])
                raise KeyError(f"The AnnData lacks the tracks {missing} the model was trained on "
                               f"({'.X' if layer is None else 'layer ' + repr(layer)}; tracks are matched by name).")
            else:  # sequences only (any targets present are not read): zeros stand in for the targets
                matrix, placeholder = np.zeros((adata.n_obs, len(expected)), dtype=np.float32), True
                partial = list(expected[position < 0]) if (position >= 0).any() else None
            names = expected
        elif matrix is None and layer is None:
            raise ValueError("No targets: .X is empty; pass `tracks_key=` or put one column per track in .X.")
        elif matrix is None:
            raise KeyError(f"Layer {layer!r} not found (layers: {list(adata.layers.keys())}).")
        out = AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=names))
        if layer is not None:
            out.layers[layer] = matrix
    out.obsm[sequence_key] = dna
    if placeholder:
        out.uns[_PLACEHOLDER] = True
        if partial:  # some of the tracks were there: evaluate names the others
            out.uns[_PLACEHOLDER + "_missing"] = partial
    return out


def strand_permutation(track_names: Sequence[str], strand_pairs: Sequence[Sequence[str]] | None) -> list[int]:
    """Track order on the reverse strand from pairs of stranded track names (each pair swaps).

    Examples
    --------
    >>> strand_permutation(["plus", "minus", "dnase"], [("plus", "minus")])
    [1, 0, 2]
    """
    names = [str(n) for n in track_names]
    permutation = list(range(len(names)))
    seen: set[str] = set()
    for pair in strand_pairs or ():
        pair = [str(p) for p in pair]
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"strand_pairs holds pairs of two different track names, got {pair}.")
        unknown = [p for p in pair if p not in names]
        if unknown:
            raise KeyError(f"strand_pairs names tracks {unknown} that the targets do not have ({names[:10]}).")
        twice = [p for p in pair if p in seen]
        if twice:
            raise ValueError(f"Track(s) {twice} appear in more than one of strand_pairs.")
        seen.update(pair)
        i, j = names.index(pair[0]), names.index(pair[1])
        permutation[i], permutation[j] = j, i
    return permutation


class GenomicInterpreter(MultiomixModel):
    """Genomic Interpreter: predict assay tracks from DNA with a hierarchical 1D-Swin transformer or a baseline.

    Regions are observations of an **AnnData** (not a MuData): one-hot DNA in ``.obsm[sequence_key]``
    ``(n_regions, L, 4)``; targets either in ``.X`` / a layer (``n_regions x tracks``, one value per region) or
    in ``.obsm[tracks_key]`` ``(n_regions, bins, tracks)`` (a profile per region). The same layout serves a
    single-cell ATAC dataset transposed to peaks x cells (scBasset-style accessibility prediction,
    ``loss="bce"``). Backbones: ``"swin1d"`` (Li et al. 2023), ``"full_attention"`` (same network, one window
    over the whole sequence), ``"cnn_maxpool"``, ``"cnn_attpool"``, ``"cnn_dilated"`` (Basenji-like),
    ``"enformer_like"``.

    Training is the base's :meth:`~multiomix.models.base.MultiomixModel.train` (defaults: 20 epochs, lr 1e-3,
    weight decay 1e-4, batch 64) with this model's plan (reverse-complement augmentation, one epoch of
    learning-rate warm-up, gradient norm clipped at 1, AdamW eps 1e-8). New regions (``predict``, ``evaluate``,
    ``get_attention``, ``load``) are matched by sequence length and track names; their targets are only needed
    by ``evaluate``.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    backbone
        Backbone name.
    backbone_kwargs
        Overrides of the backbone's defaults (``DEFAULT_BACKBONE_KWARGS`` in
        ``multiomix/module/_genomic_interpreter.py``).
    loss
        ``"auto"`` (BCE for 0/1, Poisson for counts, else MSE), ``"poisson"``, ``"bce"`` or ``"mse"``.
    reverse_complement
        Augment training batches with reverse complements (each region flipped with probability 0.5).
    head_pool
        For one value per region: ``"meanmax"`` concatenates the mean and the max of the backbone's tokens;
        ``"attention"`` replaces the mean by a learned softmax-weighted sum per feature (started as the mean).
    strand_pairs
        Pairs of stranded tracks, e.g. ``[("cage_plus", "cage_minus")]`` (track names, ``track<i>`` for targets
        in ``obsm``): on a reverse-complemented region the two swap, both in the training augmentation and when
        :meth:`predict` averages the strands. Unpaired tracks are taken to be the same on both strands.
    random_state
        Seed of the weight initialisation, the validation split and the augmentation.

    Examples
    --------
    >>> import multiomix as mx
    >>> adata = mx.datasets.oct4_mafk()
    >>> mx.models.GenomicInterpreter.setup_anndata(adata, sequence_key="dna_onehot")
    >>> model = mx.models.GenomicInterpreter(adata, backbone="swin1d")
    >>> model.train(max_epochs=10)  # doctest: +SKIP
    >>> pred = model.predict()  # doctest: +SKIP
    """

    _module_cls = GenomicInterpreterModule
    _training_plan_cls = GenomicInterpreterTrainingPlan
    _data_splitter_cls = SequenceDataSplitter
    # the settings of the benchmarks (docs/genomic_interpreter.md); a patience as long as the default run keeps
    # early stopping from cutting it (the backbone defaults were chosen on full 20-epoch runs); the weights of the
    # best validation epoch are restored either way
    _train_defaults: ClassVar[dict[str, Any]] = {
        "max_epochs": 20,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "batch_size": 64,
        "early_stopping_patience": 20,
    }
    _logits_output = None

    def __init__(
        self,
        adata: AnnData,
        *,
        backbone: str = "swin1d",
        backbone_kwargs: dict | None = None,
        loss: Literal["auto", "poisson", "bce", "mse"] = "auto",
        reverse_complement: bool = True,
        head_pool: Literal["meanmax", "attention"] = "meanmax",
        strand_pairs: Sequence[Sequence[str]] | None = None,
        random_state: int = 0,
    ):
        if backbone not in DEFAULT_BACKBONE_KWARGS:
            raise ValueError(f"Unknown backbone {backbone!r}; choose one of {list(DEFAULT_BACKBONE_KWARGS)}.")
        super().__init__(adata, random_state=random_state)
        targets = self.adata_manager.get_from_registry(TARGET_KEY)
        if loss == "auto":
            loss = infer_loss(targets)
        if loss not in LOSSES:
            raise ValueError(f"loss must be 'auto' or one of {LOSSES}, got {loss!r}.")
        values = targets.data if sparse.issparse(targets) else np.asarray(targets)
        if loss in ("poisson", "bce") and values.size and values.min() < 0:
            raise ValueError(f"The targets have negative values but loss={loss!r} needs non-negative targets.")
        if loss == "bce" and values.size and values.max() > 1:
            raise ValueError("loss='bce' needs targets in [0, 1].")
        n_bins, n_tracks = (targets.shape[1], targets.shape[2]) if targets.ndim == 3 else (None, targets.shape[1])
        kwargs = dict(backbone_kwargs or {})
        names = ([str(v) for v in adata.var_names] if self.setup_args.get("tracks_key") is None
                 else [f"track{i}" for i in range(n_tracks)])
        permutation = strand_permutation(names, strand_pairs)
        with seeded(random_state):  # the user's global random state is kept
            self.module = self._module_cls(backbone=backbone, backbone_kwargs=kwargs, n_tracks=n_tracks, n_bins=n_bins,
                                           loss=loss, reverse_complement=reverse_complement, head_pool=head_pool,
                                           strand_permutation=permutation)
        self._init_output_bias(targets, loss)
        self.loss_ = loss
        self.sequence_length_ = int(self.adata_manager.get_from_registry(DNA_KEY).shape[1])
        self.n_bins_ = n_bins
        if self.setup_args.get("tracks_key") is None:
            self.track_names_ = [str(v) for v in adata.var_names]
        else:
            self.track_names_ = [f"track{i}" for i in range(n_tracks)]
        n_params = sum(p.numel() for p in self.module.parameters())
        self._model_summary_string = (
            f"GenomicInterpreter ({backbone}): {n_params:,} parameters, {n_tracks} track(s)"
            f"{'' if n_bins is None else f' x {n_bins} bins'}, {loss} loss."
        )
        self.init_params_ = self._get_init_params(locals())

    @torch.no_grad()
    def _init_output_bias(self, targets, loss: str) -> None:
        """Start the head at the per-track mean target (log for Poisson, logit for BCE)."""
        values = targets.toarray() if sparse.issparse(targets) else np.asarray(targets, dtype=np.float64)
        mean = values.reshape(-1, values.shape[-1]).mean(0)
        if loss == "poisson":
            bias = np.log(np.clip(mean, 1e-3, None))
        elif loss == "bce":
            p = np.clip(mean, 1e-3, 1 - 1e-3)
            bias = np.log(p / (1 - p))
        else:
            bias = mean
        self.module.head.net[-1].bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        sequence_key: str = "dna_onehot",
        tracks_key: str | None = None,
        layer: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Register an AnnData of regions: the one-hot DNA and the targets.

        Parameters
        ----------
        adata
            Regions as observations.
        sequence_key
            ``.obsm`` key of the one-hot DNA ``(n_regions, L, 4)`` (see :func:`multiomix.pp.one_hot_sequences`).
        tracks_key
            ``.obsm`` key of profile targets ``(n_regions, bins, tracks)``; ``None`` reads ``.X``/``layer``.
        layer
            Layer with per-region targets (``None``: ``.X``), used when ``tracks_key`` is ``None``.
        **kwargs
            Internal (used by :meth:`~scvi.model.base.BaseModelClass.load`).

        Examples
        --------
        >>> mx.models.GenomicInterpreter.setup_anndata(adata, sequence_key="dna_onehot", tracks_key="tracks")
        """
        check_sequences(adata, sequence_key)
        if tracks_key is not None:
            if tracks_key not in adata.obsm:
                raise KeyError(
                    f"Track profiles .obsm[{tracks_key!r}] not found (obsm keys: {list(adata.obsm.keys())})."
                )
            tracks = adata.obsm[tracks_key]
            if not isinstance(tracks, np.ndarray) or tracks.ndim != 3:
                raise ValueError(f".obsm[{tracks_key!r}] must be a (n_regions, bins, tracks) array, got shape "
                                 f"{getattr(tracks, 'shape', None)}.")
            check_finite(tracks, f".obsm[{tracks_key!r}]")
            target_field = ObsmField(TARGET_KEY, tracks_key)
        else:
            matrix = get_matrix(adata, layer)
            if matrix is None or matrix.shape[1] == 0:
                raise ValueError("No targets: .X is empty; pass `tracks_key=` or put one column per track in .X.")
            check_finite(matrix, ".X" if layer is None else f"layer {layer!r}")
            target_field = LayerField(TARGET_KEY, layer, is_count_data=False)
        setup_method_args = cls._get_setup_method_args(**locals())
        fields = [ObsmField(DNA_KEY, sequence_key), target_field]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        with quiet_scvi():  # "Generating sequential column names" of the 3-d obsm fields
            manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    def _plan_kwargs(self, *, lr: float, weight_decay: float) -> dict[str, Any]:
        # AdamW's eps at PyTorch's 1e-8 (scvi-tools' plan default, 0.01, damps the small-gradient steps)
        return {"lr": lr, "weight_decay": weight_decay, "optimizer": "AdamW", "eps": 1e-8}

    @property
    def track_names(self) -> list[str]:
        """Names of the tracks (``var_names`` for targets in ``.X``, else ``track0``, ``track1``, ...)."""
        return list(self.track_names_)

    # new data ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _region_input(adata: AnnData, setup_args: dict, attrs: dict) -> AnnData:
        return region_input(
            adata, sequence_key=setup_args["sequence_key"], tracks_key=setup_args.get("tracks_key"),
            layer=setup_args.get("layer"), length=attrs.get("sequence_length_"),
            track_names=attrs.get("track_names_"), n_bins=attrs.get("n_bins_"), require_targets=False,
        )

    def _match(self, data: AnnData) -> AnnData:
        """Match new regions: same sequence length and alphabet, tracks matched by name (zeros when absent)."""
        attrs = {"sequence_length_": self.sequence_length_, "track_names_": self.track_names_, "n_bins_": self.n_bins_}
        return self._region_input(data, self.setup_args, attrs)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None, **kwargs: Any):
        """Load a saved model; ``adata`` (new regions) is checked and matched like new data in :meth:`predict`.

        The user's object is not registered; tracks in ``.X`` are matched by name; absent targets are fine.

        Parameters
        ----------
        dir_path
            Folder the model was saved to (with ``save``).
        adata
            Regions to attach (default: the AnnData saved with the model, if any).
        **kwargs
            Passed to scvi-tools' ``load`` (e.g. ``accelerator``, ``device``, ``prefix``).

        Returns
        -------
        model : multiomix.models.GenomicInterpreter
            The loaded model, with ``adata`` attached.

        Examples
        --------
        >>> model = mx.models.GenomicInterpreter.load("model_dir", adata=regions)  # doctest: +SKIP
        """
        cls._check_saved_dir(dir_path, adata)
        with quiet_scvi():  # scvi-tools says "File <dir>/model.pt already downloaded" on each read
            if adata is not None:
                from scvi.model.base._save_load import _load_saved_files

                attrs, _, _, _ = _load_saved_files(dir_path, load_adata=False, map_location="cpu",
                                                   prefix=kwargs.get("prefix"))
                adata = cls._region_input(adata, attrs["registry_"]["setup_args"], attrs)
            return BaseModelClass.load.__func__(cls, dir_path, adata=adata, **kwargs)

    # prediction -------------------------------------------------------------------------------------------------
    def get_latent_representation(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """Not available: the model maps each region's sequence to assay tracks and keeps no latent per region.

        Use :meth:`predict` for the tracks and :meth:`get_attention` for the attention maps.
        """
        raise NotImplementedError(f"{type(self).__name__} has no latent representation: it predicts assay tracks "
                                  "per region (model.predict) and attention maps (model.get_attention).")

    @torch.inference_mode()
    def predict(
        self, adata: AnnData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256,
        reverse_complement_average: bool = True,
    ) -> np.ndarray:
        """Predicted tracks on the target scale (Poisson rate, probability or value).

        Parameters
        ----------
        adata
            Regions to predict (default: the training AnnData): one-hot DNA under the training ``sequence_key``
            and of the training length; targets are not needed.
        indices
            Rows to predict (default: all).
        batch_size
            Minibatch size.
        reverse_complement_average
            Average the predictions of both strands (profiles are flipped back). The default, as in what
            :func:`~multiomix.tl.fit_genomic_interpreter` writes; ``False``: the forward strand only.

        Returns
        -------
        ``(n, tracks)`` or ``(n, bins, tracks)`` array.

        Examples
        --------
        >>> pred = model.predict(indices=np.arange(10))  # doctest: +SKIP
        """
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        self.module.eval()
        out = [self.module.predict_mean(tensors[DNA_KEY].to(self.device),
                                        reverse_complement_average=reverse_complement_average).cpu()
               for tensors in loader]
        return torch.cat(out).numpy()

    def observed(self, adata: AnnData | None = None, *, indices: Sequence[int] | None = None) -> np.ndarray:
        """Return the registered targets as a dense array (rows ``indices``).

        Parameters
        ----------
        adata
            Regions with their targets (default: the training AnnData).
        indices
            Rows to return (default: all).

        Returns
        -------
        ``(regions, bins * tracks)`` float32 targets as registered (``.X``, a layer or ``obsm``).
        """
        adata = self._validate_anndata(adata)
        if adata.uns.get(_PLACEHOLDER, False):
            missing = adata.uns.get(_PLACEHOLDER + "_missing")
            if missing:
                raise KeyError(f"The AnnData lacks the tracks {list(missing)[:5]} the model was trained on (tracks "
                               "are matched by name); predict() needs none.")
            key = self.setup_args.get("tracks_key")
            names = list(map(str, self.track_names_))
            where = (f".obsm[{key!r}] of shape (regions, {self.n_bins_}, {len(names)}) (bins, tracks {names[:5]})"
                     if key is not None else f"columns of .X / the layer named {names[:5]}")
            raise ValueError(f"The AnnData has no targets the model can read (expected: {where}); check the names "
                             "and shape of its targets. predict() needs none.")
        manager = self.get_anndata_manager(adata, required=True)
        targets = manager.get_from_registry(TARGET_KEY)
        rows = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        targets = targets[rows]
        targets = targets.toarray() if sparse.issparse(targets) else np.asarray(targets)
        return targets.astype(np.float32)

    def evaluate(
        self, adata: AnnData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256,
        reverse_complement_average: bool = True,
    ) -> pd.DataFrame:
        """Per-track Pearson (and AUROC/AUPRC for binary targets) of the predictions against the targets.

        A metric that is undefined on these regions (a constant target; one class only, for AUROC/AUPRC) is NaN,
        and a warning names the tracks.

        Parameters
        ----------
        adata
            Regions with their targets (default: the training AnnData).
        indices
            Rows to score (default: all).
        batch_size
            Minibatch size.
        reverse_complement_average
            Average the predictions of each sequence and its reverse complement (as :meth:`predict`).

        Returns
        -------
        One row per track: ``pearson`` (and ``auroc`` / ``auprc`` for binary targets).

        Examples
        --------
        >>> model.evaluate(indices=test_rows)  # doctest: +SKIP
        """
        obs = self.observed(adata, indices=indices)
        pred = self.predict(adata, indices=indices, batch_size=batch_size,
                            reverse_complement_average=reverse_complement_average)
        table = track_metrics(pred, obs.reshape(pred.shape), binary=self.loss_ == "bce", track_names=self.track_names)
        undefined = table.index[table.isna().any(axis=1)].tolist()
        if undefined:
            why = "one class only" if self.loss_ == "bce" else "a constant target"
            logger.warning(f"metrics undefined (NaN) for {len(undefined)} track(s) {undefined[:5]}"
                           f"{' ...' if len(undefined) > 5 else ''}: {why} among these {len(obs)} regions; "
                           "score a set of regions with both outcomes")
        return table

    @property
    def sequence_feature_names(self) -> list[str]:
        """Names of the flattened one-hot input (``"<position>_<base>"``, position-major; for the adapter)."""
        return [f"{i}_{b}" for i in range(self.sequence_length_) for b in _ALPHABET]

    def relevance_adapter(self, *, class_names: Sequence[str] = ("0", "1")):
        """Return an adapter for :func:`multiomix.tl.feature_relevance`, for one binary track per region.

        The classifier maps the flattened one-hot DNA (regions x ``length * 4``, named by
        :attr:`sequence_feature_names`) to the probabilities of the two classes of the track (0 and 1,
        strand-averaged as :meth:`predict`); group relevance is then the per-position, per-base contribution
        score (as DeepLIFT/SHAP maps of Basset-like models). Give :func:`~multiomix.tl.feature_relevance` a
        MuData with a ``"dna"`` modality holding that flattened matrix and a ``groupby`` column whose values
        are ``class_names``.

        Count, continuous, multi-track and profile targets are not classes, so there is no classifier for them;
        the attention maps (:meth:`get_attention`, :func:`multiomix.tl.attention_maps`) are what this model
        offers to see what it reads.

        Parameters
        ----------
        class_names
            Names of the negative and the positive class (e.g. ``("Mafk", "Oct4")``).

        Examples
        --------
        >>> dna = adata.obsm["dna_onehot"].reshape(adata.n_obs, -1).astype("float32")  # doctest: +SKIP
        >>> mdata = md.MuData({"dna": ad.AnnData(dna, obs=adata.obs,
        ...                    var=pd.DataFrame(index=model.sequence_feature_names))})  # doctest: +SKIP
        >>> mx.tl.feature_relevance(mdata, model, groupby="factor")  # doctest: +SKIP
        """
        if self.loss_ != "bce" or self.n_bins_ is not None or len(self.track_names_) != 1:
            raise NotImplementedError(
                "GenomicInterpreter has a relevance adapter only for one binary track per region (its classes); "
                f"this model predicts {len(self.track_names_)} {self.loss_} track(s)"
                f"{'' if self.n_bins_ is None else f' x {self.n_bins_} bins'}. Use model.get_attention / "
                "mx.tl.attention_maps to see what it attends to."
            )
        if len(class_names) != 2:
            raise ValueError(f"class_names must name 2 classes (negative, positive), got {list(class_names)}.")
        from ..explain._adapter import FunctionModule, RelevanceAdapter

        module, length = self.module, self.sequence_length_
        module.eval()

        def classify(x: torch.Tensor) -> torch.Tensor:
            p = module.predict_mean(x.reshape(x.shape[0], length, 4))
            return torch.cat([1 - p, p], dim=-1)

        return RelevanceAdapter(
            modalities=["dna"],
            feature_names={"dna": pd.Index(self.sequence_feature_names)},
            layers={"dna": None},
            class_names=[str(c) for c in class_names],
            classifier=FunctionModule(classify, {"backbone": module.backbone, "head": module.head}),
            device=module.device,
            name="GenomicInterpreter",
        )

    @torch.inference_mode()
    def get_attention(
        self, adata: AnnData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 16,
        max_tokens: int = 4096,
    ) -> dict[str, np.ndarray]:
        """Exact attention weights of every layer, as dense maps in token coordinates.

        Only for the ``swin1d``/``full_attention`` backbones. Window passes give block-diagonal maps (the
        shifted pass is rolled back to the original positions, so its blocks straddle the regular windows);
        transformer layers give full maps.

        Parameters
        ----------
        adata
            Regions (default: the training AnnData).
        indices
            Rows to return (default: all; keep it small, maps grow with the square of the length).
        batch_size
            Minibatch size.
        max_tokens
            Refuse layers with more tokens than this (a dense map is tokens x tokens per head and region).

        Returns
        -------
        ``{layer name: (n_regions, heads, tokens, tokens) float32 array}``.

        Examples
        --------
        >>> maps = model.get_attention(indices=[0, 1])
        >>> maps["stage0.layer0.regular"].shape
        """
        if not isinstance(self.module.backbone, Swin1D):
            raise ValueError(
                f"Attention maps need the 'swin1d' or 'full_attention' backbone; this model uses "
                f"{self.module.backbone_name!r}."
            )
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        length = self.sequence_length_
        if length / self.module.backbone.stem_pool > max_tokens:
            raise ValueError(f"Sequences of {length} bp give more than max_tokens={max_tokens} tokens per map.")
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        self.module.eval()
        collected: dict[str, list[np.ndarray]] = {}
        for tensors in loader:
            x = tensors[DNA_KEY].to(self.device).float()
            _, weights = self.module.backbone(x, return_attention=True)
            for name, w in weights.items():
                dense = w if isinstance(w, torch.Tensor) else w.dense()
                collected.setdefault(name, []).append(dense.float().cpu().numpy())
        return {name: np.concatenate(chunks) for name, chunks in collected.items()}

    def layer_resolutions(self) -> dict[str, int]:
        """Return the base pairs per token of each attention layer (names as in :meth:`get_attention`)."""
        backbone = self.module.backbone
        if not isinstance(backbone, Swin1D):
            raise ValueError("Layer resolutions are defined for the 'swin1d' and 'full_attention' backbones only.")
        out = {}
        for i, ((_, layers), bp) in enumerate(zip(backbone.stages, backbone.stage_resolutions())):
            for j in range(len(layers)):
                out[f"stage{i}.layer{j}.regular"] = out[f"stage{i}.layer{j}.shifted"] = bp
        if backbone.transformer is not None:
            for j in range(len(backbone.transformer.layers)):
                out[f"transformer.layer{j}"] = backbone.reduction
        return out
