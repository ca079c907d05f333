"""``MultimodalAE``: per-modality encoders, a joint latent, per-modality decoders, on scvi-tools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.train import TrainingPlan

from .._utils import check_nonnegative, get_matrix, is_binary
from ..nn.autoencoder import LIKELIHOODS, MultimodalAutoencoder
from ._base import modality_key, register_mudata_fields, resolve_layers

__all__ = ["MultimodalAE", "MultimodalAEModule", "MultimodalAETrainingPlan"]


class MultimodalAEModule(BaseModuleClass):
    """scvi-tools module around :class:`multiomix.nn.autoencoder.MultimodalAutoencoder`.

    Parameters
    ----------
    dims
        Features per modality.
    likelihoods
        Loss per modality (``"mse"``, ``"bce"``, ``"nb"``).
    loss_weights
        Weight of each modality's reconstruction loss.
    **kwargs
        Passed to :class:`~multiomix.nn.autoencoder.MultimodalAutoencoder`.

    Examples
    --------
    >>> module = MultimodalAEModule(dims={"rna": 50, "atac": 80}, likelihoods={"rna": "mse", "atac": "bce"})
    >>> module.net.modalities
    ['rna', 'atac']
    """

    def __init__(
        self,
        *,
        dims: Mapping[str, int],
        likelihoods: Mapping[str, str],
        loss_weights: Mapping[str, float] | None = None,
        **kwargs: Any,
    ):
        super().__init__()
        self.net = MultimodalAutoencoder(dims=dims, likelihoods=likelihoods, **kwargs)
        self.modalities = list(dims)
        self.loss_weights = {m: float((loss_weights or {}).get(m, 1.0)) for m in self.modalities}
        # median library size of count modalities, used to scale translated counts
        self.register_buffer("library_median", torch.ones(len(self.modalities)))

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"inputs": {m: tensors[modality_key(m)] for m in self.modalities if modality_key(m) in tensors}}

    @auto_move_data
    def inference(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> dict[str, Any]:
        """Encode into the joint latent (modality dropout applies in training mode only)."""
        if mask is None and self.training:
            ref = next(iter(inputs.values()))
            mask = self.net.sample_mask(ref.shape[0], ref.device)
        return {"z": self.net.encode(inputs, mask)}

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict[str, Any]):
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def generative(self, z: torch.Tensor, modalities: list[str] | None = None) -> dict[str, Any]:
        """Decode modalities from the joint latent."""
        return {"outputs": self.net.decode(z, modalities)}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Weighted sum over modalities of the per-cell reconstruction losses."""
        inputs = {m: tensors[modality_key(m)] for m in self.modalities}
        per_mod = self.net.loss(inputs, generative_outputs["outputs"], self.loss_weights)
        total = torch.stack(list(per_mod.values()), 0).sum(0)
        extra = {f"loss_{m}": v.mean().detach() for m, v in per_mod.items()}
        return LossOutput(loss=total.mean(), reconstruction_loss=per_mod, extra_metrics=extra)

    def sample(self, *args, **kwargs):
        raise NotImplementedError("MultimodalAE is deterministic; use translate() or the decoder outputs.")


class MultimodalAETrainingPlan(TrainingPlan):
    """Training plan of :class:`MultimodalAE`: logs the total and per-modality losses, nothing about ELBOs.

    Logs ``train_loss``/``validation_loss`` and ``train_loss_<modality>``/``validation_loss_<modality>`` per
    epoch, which go into ``model.history``. Optimiser options (``lr``, ``weight_decay``, ``optimizer``,
    ``reduce_lr_on_plateau``) are scvi-tools' own.
    """

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        _, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        n = out.n_obs_minibatch
        sync = self.use_sync_dist
        self.log(f"{stage}_loss", out.loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=sync,
                 prog_bar=stage == "train")
        for key, value in out.extra_metrics.items():
            self.log(f"{stage}_{key}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=sync)
        return out.loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "validation")


class MultimodalAE(UnsupervisedTrainingMixin, BaseModelClass):
    """Multimodal autoencoder: per-modality encoders into one joint latent, decoders read the joint latent.

    The architecture is the bimodal autoencoder of Ngiam et al. (ICML 2011; see ``multiomix.nn.autoencoder``).
    Each modality has its own reconstruction loss (``"mse"`` for continuous data such as log-normalised RNA,
    TF-IDF or CLR protein; ``"bce"`` for binary ATAC peaks; ``"nb"`` for raw counts) and a loss weight.
    With ``modality_dropout > 0`` some training cells are encoded from one modality only while all modalities
    are reconstructed, so that a cell can later be placed from one modality alone and one modality translated
    into another (:meth:`translate`).

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
        Width of the hidden layers.
    n_layers
        Blocks per encoder/decoder.
    dropout
        Dropout in hidden layers.
    input_dropout
        Dropout on input features.
    modality_dropout
        Probability that a training cell is encoded from a single random modality.

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

    def __init__(
        self,
        mdata: MuData | None = None,
        *,
        losses: Mapping[str, str] | None = None,
        loss_weights: Mapping[str, float] | None = None,
        latent_dim: int = 20,
        hidden_dim: int = 256,
        n_layers: int = 1,
        dropout: float = 0.1,
        input_dropout: float = 0.0,
        modality_dropout: float = 0.0,
    ):
        super().__init__(mdata)
        if mdata is None:
            raise ValueError("MultimodalAE needs a MuData registered with MultimodalAE.setup_mudata.")
        self.modalities_ = self._registered_modalities()
        layers = self._layers()
        losses = dict(losses or {})
        unknown = sorted(set(losses) - set(self.modalities_))
        if unknown:
            raise KeyError(f"`losses` names modalities {unknown} that are not registered ({self.modalities_}).")
        unknown = sorted(set(loss_weights or {}) - set(self.modalities_))
        if unknown:
            raise KeyError(f"`loss_weights` names modalities {unknown} that are not registered ({self.modalities_}).")
        likelihoods, dims, library, feature_means = {}, {}, [], {}
        for m in self.modalities_:
            matrix = get_matrix(self.adata.mod[m], layers[m])
            dims[m] = matrix.shape[1]
            lik = losses.get(m) or ("bce" if is_binary(matrix) else "mse")
            if lik not in LIKELIHOODS:
                raise ValueError(f"Unknown loss {lik!r} for modality {m!r}; expected one of {LIKELIHOODS}.")
            if lik in ("bce", "nb"):
                check_nonnegative(matrix, f"Modality {m!r} (loss {lik!r})")
            if lik == "bce" and not is_binary(matrix):
                raise ValueError(f"Modality {m!r} has non-binary values but loss 'bce' needs 0/1; use mx.pp.binarize.")
            likelihoods[m] = lik
            feature_means[m] = np.asarray(matrix.mean(axis=0), dtype=np.float64).ravel()
            sums = np.asarray(matrix.sum(axis=1)).ravel()
            library.append(float(np.median(sums)) if lik == "nb" else 1.0)
        self.modality_vars_ = {m: self.adata.mod[m].var.copy() for m in self.modalities_}
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
        self.module.library_median.copy_(torch.tensor(library, dtype=torch.float32))
        for m in self.modalities_:
            self.module.net.decoders[m].init_output(torch.as_tensor(feature_means[m]))
        self.likelihoods_ = likelihoods
        self._model_summary_string = (
            f"MultimodalAE over {self.modalities_} (losses {likelihoods}), latent_dim={latent_dim}, "
            f"hidden_dim={hidden_dim}, n_layers={n_layers}, modality_dropout={modality_dropout}"
        )
        self.init_params_ = self._get_init_params(locals())

    # setup

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        *,
        modalities: Sequence[str] | None = None,
        layer: str | Mapping[str, str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Register ``mdata``: one field per modality (the layer to read, ``None`` = ``.X``).

        Parameters
        ----------
        mdata
            Paired MuData (every modality has the same observations, in the same order).
        modalities
            Modalities to model (default: all).
        layer
            Layer for every modality, or a dict modality -> layer.
        **kwargs
            Passed to scvi-tools' ``AnnDataManager.register_fields``.

        Examples
        --------
        >>> mx.models.MultimodalAE.setup_mudata(mdata, modalities=["rna", "atac"], layer={"atac": "counts"})
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        mods = modalities if modalities is None or isinstance(modalities, str) else list(modalities)
        registered = register_mudata_fields(
            cls, mdata, modalities=mods, layer=layer, label_key=None, setup_method_args=setup_method_args, **kwargs
        )
        if len(registered) < 1:
            raise ValueError("MultimodalAE needs at least one modality.")

    @classmethod
    def setup_anndata(cls, adata: AnnData, **kwargs: Any) -> None:
        """Not supported: a multimodal model needs a MuData; use :meth:`setup_mudata`."""
        raise ValueError("MultimodalAE models several modalities: build a MuData and call MultimodalAE.setup_mudata.")

    def _registered_modalities(self) -> list[str]:
        return [f.mod_key for f in self.adata_manager.fields if f.registry_key.startswith("X_")]

    def _layers(self) -> dict[str, str | None]:
        args = self.adata_manager.registry["setup_args"]
        return resolve_layers(self.modalities_, args.get("layer"))

    # training

    def train(
        self,
        max_epochs: int = 200,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        train_size: float | None = 1.0,
        validation_size: float | None = None,
        early_stopping: bool = False,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ):
        """Train through scvi-tools' TrainRunner (Lightning): accelerators, DDP, early stopping, ``history``.

        Parameters
        ----------
        max_epochs
            Number of passes over the training cells.
        lr
            Learning rate (AdamW).
        weight_decay
            Decoupled weight decay.
        batch_size
            Minibatch size.
        train_size
            Fraction of cells to train on (default all: an embedding is fitted to the data it describes).
            Ignored when ``datasplitter_kwargs["external_indexing"]`` is given.
        validation_size
            Fraction held out for validation (default ``1 - train_size``).
        early_stopping
            Stop on ``validation_loss`` (needs validation cells).
        accelerator, devices
            Lightning accelerator and devices (``strategy="ddp..."`` can go in ``trainer_kwargs``).
        datasplitter_kwargs
            Passed to scvi-tools' ``DataSplitter`` (e.g. ``external_indexing``).
        plan_kwargs
            Passed to ``MultimodalAETrainingPlan`` (overrides ``lr``/``weight_decay``).
        **trainer_kwargs
            Passed to the Lightning ``Trainer``.

        Examples
        --------
        >>> model.train(max_epochs=50, batch_size=64)
        >>> model.history["train_loss"].tail(1)
        """
        # scvi-tools' TrainingPlan defaults to eps=0.01, which stalls an autoencoder's small gradients
        plan = {"lr": lr, "weight_decay": weight_decay, "optimizer": "AdamW", "eps": 1e-8}
        plan.update(plan_kwargs or {})
        trainer_kwargs.setdefault("enable_progress_bar", False)
        external = (datasplitter_kwargs or {}).get("external_indexing")
        if external is not None:
            has_validation = len(external[1]) > 0
        else:
            has_validation = train_size is None or train_size < 1 or bool(validation_size)
        if has_validation:  # scvi-tools validates only for early stopping unless told; log validation_loss every epoch
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        return super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            train_size=train_size,
            validation_size=validation_size,
            batch_size=batch_size,
            early_stopping=early_stopping,
            datasplitter_kwargs=datasplitter_kwargs,
            plan_kwargs=plan,
            **trainer_kwargs,
        )

    # inference

    @torch.inference_mode()
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
            MuData set up like the training data (default: the training data).
        indices
            Cells to embed (default all).
        modalities
            Encode from these modalities only (default all registered ones).
        batch_size
            Minibatch size.

        Examples
        --------
        >>> z = model.get_latent_representation()
        >>> z_rna_only = model.get_latent_representation(modalities=["rna"])
        """
        self._check_if_trained(warn=False)
        use = self.modalities_ if modalities is None else list(modalities)
        unknown = sorted(set(use) - set(self.modalities_))
        if unknown or not use:
            raise KeyError(f"Modalities {unknown or use} are not among the model's modalities {self.modalities_}.")
        mdata = self._validate_anndata(mdata)
        loader = self._make_data_loader(adata=mdata, indices=indices, batch_size=batch_size)
        self.module.eval()
        out = []
        for tensors in loader:
            inputs = {m: tensors[modality_key(m)] for m in use}
            out.append(self.module.inference(inputs)["z"].cpu().numpy())
        return np.concatenate(out, 0)

    def modality_var(self, target: str) -> pd.DataFrame:
        """Return the ``var`` of a modality the model was trained on (e.g. to build a translated modality).

        Examples
        --------
        >>> model.modality_var("atac").index[:3]
        """
        if target not in self.modalities_:
            raise KeyError(f"Modality {target!r} is not among the model's modalities {self.modalities_}.")
        return self.modality_vars_[target].copy()

    @torch.inference_mode()
    def translate(
        self, mdata: MuData | AnnData, *, source: str, target: str, batch_size: int = 256
    ) -> np.ndarray:
        """Predict modality ``target`` from modality ``source`` alone (encode ``source``, decode ``target``).

        ``mdata`` needs only the source modality (a MuData holding it, or the source AnnData itself), with the
        features the model was trained on. Values are on the scale of the target's training data: means for
        ``"mse"``, probabilities for ``"bce"``, expected counts at the training median library size for ``"nb"``.

        Parameters
        ----------
        mdata
            Data holding the source modality.
        source
            Modality to encode.
        target
            Modality to decode.
        batch_size
            Cells per minibatch (sparse input is densified one minibatch at a time).

        Returns
        -------
        Array ``n_obs x n_target_vars``.

        Examples
        --------
        >>> atac = model.translate(mdata, source="rna", target="atac")
        """
        self._check_if_trained(warn=False)
        for name, what in (("source", source), ("target", target)):
            if what not in self.modalities_:
                raise KeyError(f"{name} modality {what!r} is not among the model's modalities {self.modalities_}.")
        if isinstance(mdata, MuData):
            if source not in mdata.mod:
                raise KeyError(f"Source modality {source!r} not found in the MuData; it has {list(mdata.mod)}.")
            adata = mdata.mod[source]
        elif isinstance(mdata, AnnData):
            adata = mdata
        else:
            raise TypeError(f"Expected a MuData or AnnData, got {type(mdata).__name__}.")
        expected = self.modality_vars_[source].index
        if not np.array_equal(adata.var_names.values, expected.values):
            raise ValueError(
                f"Modality {source!r} has {adata.n_vars} features that do not match the {len(expected)} features the "
                "model was trained on (same names in the same order are required)."
            )
        matrix = get_matrix(adata, self._layers()[source])
        self.module.eval()
        device = self.module.device
        j = self.modalities_.index(target)
        out = []
        for start in range(0, adata.n_obs, batch_size):
            chunk = matrix[start : start + batch_size]
            chunk = chunk.toarray() if sparse.issparse(chunk) else np.asarray(chunk)
            x = torch.as_tensor(chunk, dtype=torch.float32, device=device)
            z = self.module.inference({source: x})["z"]
            pred = self.module.generative(z, [target])["outputs"][target]["mean"]
            if self.likelihoods_[target] == "nb":
                pred = pred * self.module.library_median[j]
            out.append(pred.cpu().numpy())
        if not out:
            return np.zeros((0, len(self.modality_vars_[target])), dtype=np.float32)
        return np.concatenate(out, 0)

    def relevance_adapter(self):
        """What :mod:`multiomix.explain` needs: a translator (encode the source, decode the target).

        Examples
        --------
        >>> adapter = model.relevance_adapter()  # doctest: +SKIP
        """
        from torch import nn

        from multiomix.explain._adapter import FunctionModule, RelevanceAdapter

        module = self.module
        module.eval()
        net = module.net
        mods = list(self.modalities_)

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
            feature_names={m: pd.Index(self.modality_vars_[m].index.astype(str)) for m in mods},
            layers=self._layers(),
            translator=translator,
            device=module.device,
            name="MultimodalAE",
        )
