"""``MultimodalAE``: per-modality encoders, a joint latent, per-modality decoders, on the multiomix base."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from .._docs import fill_doc
from .._logging import logger
from .._utils import all_binary, check_nonnegative_rows, new_mudata, row_chunks, seeded
from ..module import MultimodalAEModule
from ..nn.autoencoder import LIKELIHOODS
from ..train import MultimodalAETrainingPlan
from .base import (
    MultimodalInputMixin,
    MultiomixModel,
    adata_alias,
    modality_key,
    register_mudata_fields,
    translate_blocks,
)
from .base._data import row_sums_and_feature_means

__all__ = ["MultimodalAE"]


def _whole_numbers(matrix, max_values: int = 1_000_000) -> bool:
    """Whether the (first ``max_values``) stored values of an in-memory matrix are whole numbers (backed: True)."""
    if sparse.issparse(matrix):
        values = matrix.data[:max_values]
    elif isinstance(matrix, np.ndarray):
        values = matrix.ravel()[:max_values]
    else:  # a backed matrix is not read for a check
        return True
    return bool(np.all(values == np.round(values)))


class MultimodalAE(MultimodalInputMixin, MultiomixModel):
    """Multimodal autoencoder: per-modality encoders into one joint latent, decoders read the joint latent.

    The architecture is the bimodal autoencoder of Ngiam et al. (ICML 2011; see ``multiomix.nn.autoencoder``).
    Each modality has its own reconstruction loss (``"mse"`` for continuous data such as log-normalised RNA,
    TF-IDF or CLR protein; ``"bce"`` for binary ATAC peaks; ``"nb"`` for raw counts) and a loss weight.
    With ``modality_dropout > 0`` some training cells are encoded from one modality only while all modalities
    are reconstructed, so that a cell can later be placed from one modality alone and one modality translated
    into another (:meth:`translate`). A ``"bce"`` decoder adds each cell's log depth (its number of ones over the
    training rows' median) to its logits, so the latent need not encode depth (as the library factor of PeakVI).
    The model is unsupervised: it has no classes, so :meth:`predict_proba`
    and :meth:`predict` raise.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`.
    losses
        Loss per modality (``"mse"``, ``"bce"``, ``"nb"``). Default: ``"bce"`` for binary modalities, ``"mse"``
        otherwise.
    loss_weights
        Weight per modality (default 1; each loss is a mean over features).
    latent_dim
        Width of the joint latent.
    hidden_dim
        Width of the hidden layers (default 128).
    n_layers
        Blocks per encoder/decoder (at least 1).
    dropout
        Dropout in hidden layers.
    input_dropout
        Dropout on input features (default 0.2, a denoising autoencoder).
    modality_dropout
        Probability that a training cell is encoded from a single random modality.
    random_state
        Seed of the weight initialisation and of training.

    Examples
    --------
    >>> import multiomix as mx
    >>> mdata = mx.datasets.bmmc_multiome()
    >>> mx.models.MultimodalAE.setup_mudata(mdata, modalities=["rna", "atac"])
    >>> model = mx.models.MultimodalAE(mdata, latent_dim=16)
    >>> model.train(max_epochs=20)
    >>> z = model.get_latent_representation()
    >>> atac_from_rna = model.translate(mdata, source="rna", target="atac")
    """

    _module_cls = MultimodalAEModule
    _training_plan_cls = MultimodalAETrainingPlan
    #: training defaults: the weights of the epoch with the lowest validation loss are kept, and training stops
    #: 30 epochs after it (chosen with the width and input dropout on Patch-seq, ``benchmarks/mmae_defaults.py``)
    _train_defaults: ClassVar[dict[str, Any]] = {
        "max_epochs": 200,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "batch_size": 128,
        "early_stopping_patience": 30,
    }
    _logits_output = None
    _latent_output = "z"
    _default_key = "mmae"

    def __init__(
        self,
        mdata: MuData | None = None,
        *,
        losses: Mapping[str, str] | None = None,
        loss_weights: Mapping[str, float] | None = None,
        latent_dim: int = 20,
        hidden_dim: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        input_dropout: float = 0.2,
        modality_dropout: float = 0.0,
        random_state: int = 0,
    ):
        if mdata is None:
            raise ValueError("MultimodalAE needs a MuData registered with MultimodalAE.setup_mudata.")
        super().__init__(mdata, random_state=random_state)
        modalities = self.modalities
        losses = dict(losses or {})
        unknown = sorted(set(losses) - set(modalities))
        if unknown:
            raise KeyError(f"`losses` names modalities {unknown} that are not registered ({modalities}).")
        unknown = sorted(set(loss_weights or {}) - set(modalities))
        if unknown:
            raise KeyError(f"`loss_weights` names modalities {unknown} that are not registered ({modalities}).")
        negative = {m: w for m, w in (loss_weights or {}).items() if not float(w) >= 0}
        if negative:
            raise ValueError(f"`loss_weights` must be >= 0 (0 leaves a modality's reconstruction out), got {negative}.")
        for name, value, least in (("latent_dim", latent_dim, 1), ("hidden_dim", hidden_dim, 1),
                                   ("n_layers", n_layers, 1)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
                raise ValueError(f"`{name}` must be an integer >= {least}, got {value!r}.")
        likelihoods, dims = {}, {}
        for m in modalities:
            matrix = self._matrix(m)  # backed: the value checks read every row, a block at a time
            dims[m] = matrix.shape[1]
            binary = all_binary(matrix)
            lik = losses.get(m) or ("bce" if binary else "mse")
            if lik not in LIKELIHOODS:
                raise ValueError(f"Unknown loss {lik!r} for modality {m!r}; expected one of {LIKELIHOODS}.")
            if lik in ("bce", "nb"):
                check_nonnegative_rows(matrix, f"Modality {m!r} (loss {lik!r})")
            sample = next(row_chunks(matrix), matrix)  # whole-number hints: the first block of a backed matrix
            if lik == "nb" and not _whole_numbers(sample):
                logger.warning(f"modality {m!r}: loss 'nb' models raw counts, but its values are not whole numbers "
                               "(normalised data?); pass the counts layer (layer=) or use loss 'mse'")
            if lik == "bce" and not binary:
                raise ValueError(f"Modality {m!r} has non-binary values but loss 'bce' needs 0/1; use mx.pp.binarize.")
            if lik == "mse" and m not in losses and _whole_numbers(sample):
                logger.warning(f"modality {m!r} holds whole numbers (raw counts?) and gets the default loss 'mse' on "
                               f"them as they are; for counts pass losses={{{m!r}: 'nb'}}, binarise peaks "
                               "(mx.pp.binarize) for 'bce', or give normalised values (e.g. mx.pp.normalize into a "
                               "layer)")
            likelihoods[m] = lik
        self.modality_vars_ = {m: mdata.mod[m].var.copy() for m in modalities}
        with seeded(random_state):  # the user's global random state is kept
            self.module = self._module_cls(
                dims=dims,
                likelihoods=likelihoods,
                loss_weights=loss_weights,
                dim_latent=latent_dim,
                dim_hidden=hidden_dim,
                depth=n_layers,
                dropout=dropout,
                input_dropout=input_dropout,
                modality_dropout=modality_dropout,
            )
        self.likelihoods_ = likelihoods
        self._encode_from: list[str] | None = None
        self._model_summary_string = (
            f"MultimodalAE over {modalities} (losses {likelihoods}), latent_dim={latent_dim}, "
            f"hidden_dim={hidden_dim}, n_layers={n_layers}, modality_dropout={modality_dropout}"
        )
        self.init_params_ = self._get_init_params(locals())
        # the losses as resolved: a loaded model rebuilds the same decoders (not re-inferred from the new data,
        # whose values may look otherwise) and does not repeat the choice's warnings
        self.init_params_["non_kwargs"]["losses"] = dict(likelihoods)

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        *,
        modalities: Sequence[str] | None = None,
        layer: str | Mapping[str, str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Register ``mdata``: one field per modality (the layer to read, ``None`` = ``.X``); no labels.

        Parameters
        ----------
        mdata
            Paired MuData (every modality has the same observations, in the same order).
        modalities
            Modalities to model (default: all).
        layer
            Layer for every modality, or a dict modality -> layer.
        **kwargs
            Internal (used by :meth:`~scvi.model.base.BaseModelClass.load`).

        Examples
        --------
        >>> mx.models.MultimodalAE.setup_mudata(mdata, modalities=["rna", "atac"], layer={"atac": "counts"})
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        register_mudata_fields(
            cls, mdata, modalities=modalities, layer=layer, label_key=None, setup_method_args=setup_method_args,
            **kwargs,
        )

    # training ---------------------------------------------------------------------------------------------------
    def _plan_kwargs(self, *, lr: float, weight_decay: float) -> dict[str, Any]:
        # scvi-tools' TrainingPlan defaults to eps=0.01, which stalls an autoencoder's small gradients
        return {"lr": lr, "weight_decay": weight_decay, "optimizer": "AdamW", "eps": 1e-8}

    def _on_train_start(self, rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Set what comes from the training rows: library sizes, depths and the decoders' output bias.

        The median library size of ``"nb"`` modalities, the median number of ones per cell of ``"bce"`` ones (the
        depth their logit offsets are relative to) and each decoder's per-feature output bias.
        """
        train = np.sort(rows[0])
        library = []
        for m in self.module.modalities:
            sums, means = row_sums_and_feature_means(self._matrix(m), train)  # a block of rows at a time
            library.append(float(np.median(sums)) if self.likelihoods_[m] in ("nb", "bce") else 1.0)
            self.module.net.decoders[m].init_output(torch.as_tensor(means))
        self.module.library_median.copy_(torch.tensor(library, dtype=torch.float32))

    # inference --------------------------------------------------------------------------------------------------
    def _check_modalities(self, modalities: Sequence[str] | None) -> list[str]:
        use = list(self.modalities) if modalities is None else list(modalities)
        unknown = sorted(set(use) - set(self.modalities))
        if unknown or not use:
            raise KeyError(f"Modalities {unknown or use} are not among the model's modalities {self.modalities}.")
        return use

    def _inference_outputs(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        use = self._encode_from or self.module.modalities
        return self.module.inference({m: tensors[modality_key(m)] for m in use})

    @adata_alias
    def get_latent_representation(
        self,
        mdata: MuData | None = None,
        *,
        indices: Sequence[int] | None = None,
        modalities: Sequence[str] | None = None,
        batch_size: int = 256,
    ) -> np.ndarray:
        """Joint latent of each cell (``n_obs x latent_dim``).

        Parameters
        ----------
        mdata
            New data (default: the training data). Features are matched to the training features by name, per
            modality; labels are not needed.
        indices
            Cells to embed (default all).
        modalities
            Encode from these modalities only (default all registered ones); ``mdata`` then needs only these
            (e.g. cells measured in RNA alone, with ``modalities=["rna"]``).
        batch_size
            Minibatch size.

        Examples
        --------
        >>> z = model.get_latent_representation()
        >>> z_rna_only = model.get_latent_representation(modalities=["rna"])
        """
        self._check_if_trained(warn=False)
        self._encode_from = self._check_modalities(modalities)
        if modalities is not None and isinstance(mdata, MuData):
            mdata = self._pad_unread_modalities(mdata, self._encode_from)
        try:
            return super().get_latent_representation(mdata, indices=indices, batch_size=batch_size)
        finally:
            self._encode_from = None

    def _pad_unread_modalities(self, mdata: MuData, read: Sequence[str]) -> MuData:
        """Return ``mdata`` with empty (sparse zero) stand-ins for the modalities it lacks and the encoder won't read.

        A cell measured in one modality can then be embedded from it (``modalities=["rna"]``); the user's object
        is not changed.
        """
        lacking = [m for m in self.modalities if m not in mdata.mod and m not in read]
        if not lacking:
            return mdata
        mods = {m: mdata.mod[m] for m in mdata.mod}
        for m in lacking:
            names = pd.Index(self.feature_names_[m])
            zeros = sparse.csr_matrix((mdata.n_obs, len(names)), dtype=np.float32)
            mods[m] = AnnData(X=zeros, obs=pd.DataFrame(index=mdata.obs_names), var=pd.DataFrame(index=names))
            if self.layers.get(m) is not None:  # where the model reads the modality
                mods[m].layers[self.layers[m]] = zeros
        return new_mudata(mods)

    def modality_var(self, target: str) -> pd.DataFrame:
        """Return the ``var`` of a modality the model was trained on (e.g. to build a translated modality).

        Examples
        --------
        >>> model.modality_var("atac").index[:3]
        """
        if target not in self.modalities:
            raise KeyError(f"Modality {target!r} is not among the model's modalities {self.modalities}.")
        return self.modality_vars_[target].copy()

    @torch.inference_mode()
    @fill_doc
    @adata_alias
    def translate(
        self, mdata: MuData | AnnData, *, source: str, target: str, batch_size: int = 256
    ) -> np.ndarray:
        """Predict modality ``target`` from modality ``source`` alone (encode ``source``, decode ``target``).

        ``mdata`` needs only the source modality (a MuData holding it, or the source AnnData itself), with the
        features the model was trained on, matched by name (any order; extra features are ignored). Values are on
        the scale of the target's training data: means for ``"mse"``, probabilities at the median depth (ones per
        cell) of the training rows for ``"bce"``, expected counts at their median library size for ``"nb"``.

        Parameters
        ----------
        mdata
            Data holding the source modality.
        source
            Modality to encode.
        target
            Modality to decode.
        %(translate_end)s

        Examples
        --------
        >>> atac = model.translate(mdata, source="rna", target="atac")
        """

        def decode(x: torch.Tensor) -> torch.Tensor:
            pred = self.module.generative(self.module.inference({source: x})["z"], [target])["outputs"][target]["mean"]
            if self.likelihoods_[target] == "nb":
                pred = pred * self.module.library_median[self.module.modalities.index(target)]
            return pred

        return translate_blocks(self, mdata, source=source, target=target, batch_size=batch_size, predict=decode)

    def relevance_adapter(self):
        """Return what :mod:`multiomix.explain` needs: a translator (encode the source, decode the target).

        Examples
        --------
        >>> adapter = model.relevance_adapter()  # doctest: +SKIP
        """
        from torch import nn

        from multiomix.explain._adapter import FunctionModule, RelevanceAdapter

        module = self.module
        module.eval()
        net = module.net
        mods = list(self.modalities)

        def translator(source: str, target: str) -> nn.Module:
            j = mods.index(target)
            nb = self.likelihoods_[target] == "nb"

            def translate(x: torch.Tensor) -> torch.Tensor:
                pred = net.decoders[target](net.encode({source: x}))["mean"]
                return pred * module.library_median[j] if nb else pred

            parts = {"encoder": net.encoders[source], "to_joint": net.to_joint[source], "decoder": net.decoders[target]}
            return FunctionModule(translate, parts)

        return RelevanceAdapter(
            modalities=mods,
            feature_names={m: pd.Index(self.feature_names_[m]) for m in mods},
            layers=self.layers,
            translator=translator,
            device=module.device,
            name="MultimodalAE",
        )
