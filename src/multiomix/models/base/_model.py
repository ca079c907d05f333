"""``MultiomixModel``: the base class every multiomix model stands on.

A model class supplies its module (``_module_cls``), its training plan (``_training_plan_cls``), its
``setup_mudata`` and what is special to it; the base gives every model the same ``train`` (one row-aware path
through scvi-tools' Lightning engine), ``modalities``, ``classes``, ``predict`` / ``predict_proba``,
``get_latent_representation``, feature matching by name for new data and for ``load``, and the
``relevance_adapter()`` hook through which :mod:`multiomix.explain` works.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import rich.pretty  # noqa: F401  scvi-tools 1.4's view_anndata_setup uses rich.pretty without importing it
import torch
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data._constants import _SCVI_UUID_KEY
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.model.base._constants import SAVE_KEYS
from scvi.train import TrainRunner

from ..._docs import fill_doc
from ..._logging import logger
from ..._utils import quiet_scvi
from ...train import BestStateCallback, SupervisedTrainingPlan, check_train_options, resolve_rows, train_on_rows
from ._data import class_weights, feature_mean_std, matched_input, modality_key, resolve_layers

_FEATURES_ATTR = "feature_names_"
#: file that marks a folder written by :meth:`SeedEnsemble.save`
ENSEMBLE_MANIFEST = "ensemble.json"


def most_probable(proba: pd.DataFrame) -> pd.Series:
    """Most probable class of each row of a probability table, as a categorical with its columns as categories.

    Examples
    --------
    >>> most_probable(pd.DataFrame([[0.2, 0.8]], columns=["a", "b"])).tolist()
    ['b']
    """
    codes = proba.to_numpy().argmax(1)
    return pd.Series(pd.Categorical.from_codes(codes, categories=list(proba.columns)), index=proba.index)


def adata_alias(method):
    """Let a scoring method take its data as ``adata=`` too, scvi-tools' name for it (``mdata=`` here).

    Examples
    --------
    >>> model.predict(adata=new_mdata)  # doctest: +SKIP
    """

    @functools.wraps(method)
    def wrapper(self, *args: Any, adata: Any = None, **kwargs: Any):
        if adata is not None:
            if args or kwargs.get("mdata") is not None:
                raise TypeError(f"{method.__name__}() got the data twice: pass it once, as mdata= (or adata=, "
                                "scvi-tools' name).")
            kwargs["mdata"] = adata
        return method(self, *args, **kwargs)

    return wrapper


class MultimodalInputMixin:
    """Models over several modalities of a MuData: refuse ``setup_anndata`` with a pointer to ``setup_mudata``."""

    @classmethod
    def setup_anndata(cls, adata, **kwargs) -> None:
        """Not supported: the model reads several modalities; register a MuData with ``setup_mudata``."""
        raise TypeError(
            f"{cls.__name__} reads several modalities: build a MuData and call `{cls.__name__}.setup_mudata`."
        )


def _several_devices(devices: int | list[int] | str) -> bool:
    """Whether ``devices`` asks for more than one device (``2``, ``[0, 1]``, ``"2"``; not ``"auto"``)."""
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices > 1
    if isinstance(devices, list | tuple):
        return len(devices) > 1
    return isinstance(devices, str) and devices.isdigit() and int(devices) > 1


class MultiomixModel(BaseModelClass):
    """Base class of the multiomix models (scvi-tools ``BaseModelClass`` + one training and prediction path).

    Subclasses set ``_module_cls`` and ``_training_plan_cls`` and build ``self.module`` in ``__init__`` (ending
    with ``self.init_params_ = self._get_init_params(locals())``). The module's ``inference`` returns a dict;
    ``_logits_output`` and ``_latent_output`` name its class logits and its latent representation.

    Hooks a subclass may override: ``_on_train_start(rows)`` (default: fit the module's ``standardizer`` and
    ``class_weight`` on the training rows), ``_on_train_end(rows)``, ``_plan_kwargs(lr, weight_decay)``,
    ``_inference_outputs(tensors)``, ``_input_obsm()`` and ``relevance_adapter()``.

    Examples
    --------
    >>> class MyModel(MultimodalInputMixin, MultiomixModel):  # doctest: +SKIP
    ...     _module_cls = MyModule
    """

    _training_plan_cls = SupervisedTrainingPlan
    _data_splitter_cls = DataSplitter
    _train_runner_cls = TrainRunner
    #: defaults of :meth:`train`; a subclass overrides the values that suit it (chosen by CV, see the docs)
    _train_defaults: ClassVar[dict[str, Any]] = {
        "max_epochs": 200,
        "lr": 1e-3,
        "weight_decay": 1e-2,
        "batch_size": 64,
        "early_stopping_patience": 20,
    }
    _logits_output: ClassVar[str | None] = "logits"
    _latent_output: ClassVar[str] = "latent"
    #: prefix of the keys its ``tl.fit_*`` writes, and so ``tl.predict``'s default (None: the class name, lower case)
    _default_key: ClassVar[str | None] = None
    _unlabeled_arg: ClassVar[str] = "unlabeled_category"
    #: restore the weights of the best validation epoch (a plan that chooses its own best epoch sets False)
    _restore_best_epoch: ClassVar[bool] = True
    #: the weights before training are a candidate too (a model that starts from a fitted linear model)
    _initial_state_is_candidate: ClassVar[bool] = False
    #: some parameters get no gradient in some optimiser steps (separate phases, unused branches): DDP must
    #: look for unused parameters, so a plain ``strategy="ddp"`` (or ``_notebook``/``_fork``) is switched to its
    #: ``_find_unused_parameters_true`` form
    _ddp_unused_parameters: ClassVar[bool] = False

    def __init__(self, mdata: MuData | None = None, *, random_state: int = 0):
        if mdata is not None and type(self)._get_most_recent_anndata_manager(mdata) is None:
            setup = "setup_mudata" if isinstance(mdata, MuData) else "setup_anndata"
            raise ValueError(f"The data are not set up for {type(self).__name__}: call "
                             f"mx.models.{type(self).__name__}.{setup}(data, ...) first (or use the mx.tl.fit_* "
                             "function, which does it on a copy).")
        super().__init__(mdata)
        self.random_state = random_state
        if mdata is not None:
            self.feature_names_ = {m: list(map(str, self._feature_source(mdata, m))) for m in self.modalities}

    @staticmethod
    def _feature_source(mdata, modality: str):
        return mdata.mod[modality].var_names if isinstance(mdata, MuData) else mdata.var_names

    # registry ---------------------------------------------------------------------------------------------------
    @property
    def setup_args(self) -> dict[str, Any]:
        """Arguments the data were set up with."""
        return dict(self.adata_manager.registry["setup_args"])

    @property
    def modalities(self) -> list[str]:
        """Modalities the model reads, in registration order."""
        given = self.setup_args.get("modalities")
        if given:
            return [given] if isinstance(given, str) else list(given)
        registered = {k[2:] for k in self.adata_manager.data_registry if k.startswith("X_")}
        order = list(self.adata.mod.keys()) if isinstance(self.adata, MuData) else sorted(registered)
        return [m for m in order if m in registered]

    @property
    def layers(self) -> dict[str, str | None]:
        """Layer read per modality (``None``: ``.X``)."""
        return resolve_layers(self.modalities, self.setup_args.get("layer"))

    @property
    def label_key(self) -> str | None:
        """Column of ``obs`` with the labels the model was set up with, or ``None``."""
        return self.setup_args.get("label_key")

    @property
    def has_labels(self) -> bool:
        """Whether labels are registered."""
        return REGISTRY_KEYS.LABELS_KEY in self.adata_manager.data_registry

    def _registered_categories(self) -> list[str]:
        if not self.has_labels:
            return []
        mapping = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY).categorical_mapping
        return [str(c) for c in mapping]

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the logits (an unlabelled placeholder category is left out)."""
        unlabeled = self.setup_args.get(self._unlabeled_arg)
        unlabeled = None if unlabeled is None else str(unlabeled)  # the categories are compared as text
        return [c for c in self._registered_categories() if c != unlabeled]

    # training ---------------------------------------------------------------------------------------------------
    def _plan_kwargs(self, *, lr: float, weight_decay: float) -> dict[str, Any]:
        return {"lr": lr, "weight_decay": weight_decay, "optimizer": "AdamW"}

    def _matrix(self, modality: str):
        return self.adata_manager.get_from_registry(modality_key(modality))

    def _on_train_start(self, rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Fit the module's standardiser and class weights on the training rows."""
        train = rows[0]
        standardizer = getattr(self.module, "standardizer", None)
        if standardizer is not None and getattr(self, "standardize", True):
            for m in standardizer.names:
                standardizer.set(m, *feature_mean_std(self._matrix(m), train))
        weight = getattr(self.module, "class_weight", None)
        if weight is not None and self.has_labels:
            codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()[train]
            weight.copy_(class_weights(codes, len(weight)).to(weight.device))

    def _on_train_end(self, rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Run after training (e.g. to choose a head on the validation rows)."""

    def train(
        self,
        max_epochs: int | None = None,
        *,
        lr: float | None = None,
        weight_decay: float | None = None,
        batch_size: int | None = None,
        train_indices: Sequence[int] | None = None,
        validation_indices: Sequence[int] | None = None,
        validation_size: float | None = None,
        early_stopping: bool = True,
        early_stopping_patience: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        progress_bar: bool | None = None,
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **trainer_kwargs: Any,
    ):
        """Train through scvi-tools' Lightning engine on the given rows, keeping the best validation epoch.

        Parameters
        ----------
        max_epochs
            Maximum number of epochs (default: the model's ``_train_defaults``).
        lr, weight_decay
            Optimiser learning rate and weight decay (defaults: the model's).
        batch_size
            Minibatch size (default: the model's).
        train_indices, validation_indices
            Integer rows (or boolean masks) to train / validate on (e.g. from ``obs['split']``); rows in neither are
            not used. Default: all rows to train on (all but ``validation_indices`` when only those are given);
            without ``validation_indices``, a random ``validation_size`` of the training rows is held out.
        validation_size
            Fraction of the training rows held out for validation when ``validation_indices`` is not given (default
            0.15; ``0``: no validation, the last epoch is kept; scvi-tools' ``train_size=`` is taken instead:
            ``validation_size = 1 - train_size``).
        early_stopping
            Stop when the validation loss has not improved for ``early_stopping_patience`` epochs.
        early_stopping_patience
            Patience in validation checks: epochs, as validation runs every epoch unless ``check_val_every_n_epoch``
            says otherwise (default: the model's).
        accelerator, devices
            Lightning accelerator and devices. ``strategy`` goes in ``trainer_kwargs``: ``"ddp"`` from a script,
            ``"ddp_notebook"`` in Jupyter (``"ddp_spawn"`` cannot pickle scvi-tools' MuData fields); a model with
            parameters that some optimiser steps leave out (UnitedNet's training phases) switches these to their
            ``"..._find_unused_parameters_true"`` form.
        progress_bar
            Show a progress bar (default: ``mx.settings.progress_bar``).
        plan_kwargs, datasplitter_kwargs
            Extra arguments of the training plan / scvi-tools' data splitter.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``strategy``, ``callbacks``).

        Returns
        -------
        What scvi-tools' train runner returns; ``history`` is on the model.

        Examples
        --------
        >>> model.train(max_epochs=100, accelerator="gpu", devices=2, strategy="ddp_notebook")  # doctest: +SKIP
        """
        d = self._train_defaults
        check_train_options(max_epochs=max_epochs, batch_size=batch_size, plan_kwargs=plan_kwargs,
                            strategy=trainer_kwargs.get("strategy"))
        train_size = trainer_kwargs.pop("train_size", None)
        if train_size is not None:  # scvi-tools' name for the share of rows trained on
            if train_indices is not None or validation_indices is not None:
                raise ValueError("train_size cannot be combined with train_indices / validation_indices (mx.tl.fit_* "
                                 "passes them from obs[split_key]): to set the share of training rows held out for "
                                 "early stopping, pass validation_size=.")
            if not 0 < float(train_size) <= 1:
                raise ValueError(f"train_size must be in (0, 1], got {train_size}.")
            if validation_size is not None and not np.isclose(validation_size, 1.0 - float(train_size)):
                raise ValueError(f"train_size={train_size} and validation_size={validation_size} disagree on the share "
                                 "of rows held out for validation: pass one of them.")
            validation_size = 1.0 - float(train_size)
        validation_size = 0.15 if validation_size is None else validation_size
        strategy = trainer_kwargs.get("strategy")
        if _several_devices(devices) and strategy is None:
            raise ValueError(f"devices={devices!r} trains in several processes: pass strategy='ddp' (from a script) or "
                             "strategy='ddp_notebook' (in Jupyter).")
        if self._ddp_unused_parameters and strategy in ("ddp", "ddp_notebook", "ddp_fork"):
            trainer_kwargs["strategy"] = f"{strategy}_find_unused_parameters_true"
            logger.info(f"strategy={strategy!r} -> {trainer_kwargs['strategy']!r}: {type(self).__name__} leaves some "
                        "parameters without a gradient in some optimiser steps")
        rows = resolve_rows(self.adata.n_obs, train_indices, validation_indices, validation_size=validation_size,
                            random_state=self.random_state)
        # what the first fit sets from its training rows (standardiser, class weights, a fitted linear path,
        # decoder biases) is kept when a trained model trains on: training continues from its current weights
        self._first_fit = not self.is_trained_
        if self._first_fit:
            self._on_train_start(rows)
        else:
            logger.info(f"{type(self).__name__} is already trained: training continues from its current weights "
                        "(the statistics its first fit took from the training rows are kept)")
        plan = {**self._plan_kwargs(lr=d["lr"] if lr is None else lr,
                                    weight_decay=d["weight_decay"] if weight_decay is None else weight_decay),
                **(plan_kwargs or {})}
        result = train_on_rows(
            self,
            d["max_epochs"] if max_epochs is None else max_epochs,
            rows=rows,
            batch_size=d["batch_size"] if batch_size is None else batch_size,
            early_stopping=early_stopping,
            early_stopping_patience=d["early_stopping_patience"] if early_stopping_patience is None
            else early_stopping_patience,
            accelerator=accelerator,
            devices=devices,
            random_state=self.random_state,
            progress_bar=progress_bar,
            restore_best=self._restore_best_epoch,
            include_initial=self._initial_state_is_candidate,
            plan_kwargs=plan,
            datasplitter_kwargs=datasplitter_kwargs,
            **trainer_kwargs,
        )
        best = [c for c in getattr(getattr(self, "trainer", None), "callbacks", []) if isinstance(c, BestStateCallback)]
        #: epoch whose weights were restored (-1: the weights before training), or None without validation rows
        self.best_epoch_ = best[0].best_epoch if best else None
        self._on_train_end(rows)
        return result

    # new data ---------------------------------------------------------------------------------------------------
    def _input_obsm(self) -> dict[str, list[str]]:
        """Per modality, ``obsm`` keys the model reads (none by default)."""
        return {}

    def _match(self, data: MuData) -> MuData:
        classes = self._registered_categories()
        return matched_input(
            data,
            features=getattr(self, _FEATURES_ATTR),
            layers=self.layers,
            label_key=self.label_key if self.has_labels else None,
            classes=classes,
            obsm=self._input_obsm(),
        )

    def _is_registered(self, data) -> bool:
        """Whether ``data`` itself (not a copy of it) is registered with this model.

        Asked without scvi-tools' ``get_anndata_manager``, which registers a copy as a side effect.
        """
        uuid = getattr(data, "uns", {}).get(_SCVI_UUID_KEY)
        manager = type(self)._per_instance_manager_store.get(self.id, {}).get(uuid)
        return manager is not None and manager.adata is data

    def _validate_anndata(self, adata=None, copy_if_view: bool = True):
        """Pass registered data through; match new data to the training features by name first.

        A copy of registered data (``mdata[:50].copy()``) carries the registered object's scvi-tools id, which
        scvi-tools would take as the same data set up alike: it is new data here and is matched by name.
        """
        if adata is None or adata is self.adata or self._is_registered(adata):
            return super()._validate_anndata(adata, copy_if_view=copy_if_view)
        with quiet_scvi(), warnings.catch_warnings():  # "attempting to transfer AnnData setup" is expected here
            warnings.filterwarnings("ignore", message=r".*has fewer than 3 cells")  # labels are not read to score
            return super()._validate_anndata(self._match(adata), copy_if_view=copy_if_view)

    @classmethod
    def load(cls, dir_path: str, adata=None, **kwargs: Any):
        """Load a saved model; ``adata`` is matched to the saved features by name, per modality.

        Reordered features give identical predictions; a missing feature raises a ``KeyError`` naming the
        modality and the first missing names; extra features are ignored (one log line).

        Parameters
        ----------
        dir_path
            Directory the model was saved to (with ``save``).
        adata
            The MuData (AnnData for the Genomic Interpreter) to attach the model to. Needed unless the model was
            saved with its data (``save(dir_path, save_anndata=True)``).
        **kwargs
            Passed to scvi-tools' ``load`` (e.g. ``accelerator``, ``device``).

        Returns
        -------
        model : MultiomixModel
            The model, ready to predict.

        Examples
        --------
        >>> model = mx.models.CrossAttOmics.load("model_dir", adata=new_mdata)  # doctest: +SKIP
        """
        cls._check_saved_dir(dir_path, adata)
        with quiet_scvi(), warnings.catch_warnings():  # "File ... already downloaded"; scvi's MuData.mod_names
            warnings.filterwarnings("ignore", message=r".*mod_names is deprecated", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r"From 0\.4 \.update\(\)", category=FutureWarning)  # saved data
            # scvi-tools compares the saved var_names of every modality; `adata` is already matched by name to the
            # model's features (a missing one raised above), so its other modalities do not matter
            warnings.filterwarnings("ignore", message=r"`var_names` for the loaded `model` does not match")
            return super().load(dir_path, adata=cls._matched_for_load(dir_path, adata, prefix=kwargs.get("prefix")),
                                **kwargs)

    @classmethod
    def _check_saved_dir(cls, dir_path: str, adata) -> None:
        """Refuse, with the fix, what ``load`` cannot read.

        That is a folder without a saved model, a seed ensemble's folder, and (when ``adata`` is None) a model
        saved without its data.
        """
        folder = Path(dir_path)
        if (folder / ENSEMBLE_MANIFEST).is_file():
            raise ValueError(f"{str(dir_path)!r} holds a seed ensemble (a fit with n_models > 1): load it with "
                             "mx.models.SeedEnsemble.load(dir_path, adata=...).")
        if not any(p.name.endswith(SAVE_KEYS.MODEL_FNAME) for p in folder.glob("*")):  # with any save prefix
            found = "does not exist" if not folder.exists() else "holds no saved model"
            raise FileNotFoundError(f"{str(dir_path)!r} {found}: {cls.__name__}.load reads the folder that "
                                    f"model.save(dir_path) wrote (with its {SAVE_KEYS.MODEL_FNAME!r}).")
        saved_data = [p for p in folder.glob("*") if p.name.endswith((SAVE_KEYS.ADATA_FNAME, SAVE_KEYS.MDATA_FNAME))]
        if adata is None and not saved_data:
            raise ValueError(f"{cls.__name__}.load({str(dir_path)!r}) needs `adata=`: the model was saved without its "
                             "data (save(..., save_anndata=True) stores them).")

    @classmethod
    def _matched_for_load(cls, dir_path: str, adata, *, prefix: str | None = None):
        """``adata`` matched to the features saved in ``dir_path`` (``prefix``: ``save``'s; ``None`` passes)."""
        if adata is None:
            return None
        from scvi.model.base._save_load import _load_saved_files

        attr_dict, _, _, _ = _load_saved_files(dir_path, load_adata=False, map_location="cpu", prefix=prefix)
        features = attr_dict.get(_FEATURES_ATTR)
        if features is None:
            return adata
        lacking = [m for m in features if m not in getattr(adata, "mod", dict.fromkeys(features))]
        if lacking and len(features) > 1:
            raise KeyError(
                f"The saved model reads the modalities {list(features)}; `adata` lacks {lacking}. A model loads onto "
                "data with all of them: load it with the data it was trained on (or save it with "
                "save_anndata=True and load it without `adata=`), then score the other object, e.g. "
                "mx.tl.predict_modality(query, model, source=..., target=...) for a query with one modality."
            )
        args = attr_dict["registry_"]["setup_args"]
        categories = attr_dict["registry_"]["field_registries"].get(REGISTRY_KEYS.LABELS_KEY, {})
        classes = list(map(str, categories.get("state_registry", {}).get("categorical_mapping", [])))
        return matched_input(
            adata,
            features=features,
            layers=resolve_layers(list(features), args.get("layer")),
            label_key=args.get("label_key") if classes else None,
            classes=classes,
            obsm=cls._load_obsm(args),
        )

    @classmethod
    def _load_obsm(cls, setup_args: Mapping[str, Any]) -> dict[str, list[str]]:
        """``obsm`` keys to carry into the matched data on :meth:`load` (from the saved setup arguments)."""
        return {}

    # prediction -------------------------------------------------------------------------------------------------
    def _inference_outputs(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.module.inference(**self.module._get_inference_input(tensors))

    @torch.inference_mode()
    def _collect(self, data, indices, batch_size: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
        data = self._validate_anndata(data)
        loader = self._make_data_loader(adata=data, indices=indices, batch_size=batch_size)
        self.module.eval()
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        for tensors in loader:
            out = self._inference_outputs(tensors)
            for k in keys:
                parts[k].append(out[k].detach().cpu())
        return {k: torch.cat(v).numpy() for k, v in parts.items()}

    def _obs_names(self, data, indices) -> pd.Index:
        names = (data if data is not None else self.adata).obs_names
        return names if indices is None else names[np.asarray(indices)]

    @fill_doc
    @adata_alias
    def predict_proba(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256
    ) -> pd.DataFrame:
        """Class probabilities (observations x classes).

        Parameters
        ----------
        %(score_data)s

        Returns
        -------
        %(returns_proba)s

        Examples
        --------
        >>> proba = model.predict_proba(new_mdata)  # doctest: +SKIP
        """
        if self._logits_output is None or not self.classes:
            raise ValueError(f"This {type(self).__name__} does not predict classes.")
        self._check_if_trained(warn=False)
        logits = self._collect(mdata, indices, batch_size, [self._logits_output])[self._logits_output]
        proba = torch.softmax(torch.as_tensor(logits), dim=-1).numpy()
        return pd.DataFrame(proba, index=self._obs_names(mdata, indices), columns=self.classes)

    @fill_doc
    @adata_alias
    def predict(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256
    ) -> pd.Series:
        """Most probable class of each observation, as a categorical with the model's classes.

        Parameters
        ----------
        %(score_data)s

        Returns
        -------
        %(returns_prediction)s

        Examples
        --------
        >>> model.predict(new_mdata).value_counts()  # doctest: +SKIP
        """
        return most_probable(self.predict_proba(mdata, indices=indices, batch_size=batch_size))

    @fill_doc
    @adata_alias
    def get_latent_representation(
        self, mdata: MuData | None = None, *, indices: Sequence[int] | None = None, batch_size: int = 256
    ) -> np.ndarray:
        """Latent representation (observations x latent width).

        Parameters
        ----------
        %(score_data)s

        Returns
        -------
        %(returns_latent)s

        Examples
        --------
        >>> z = model.get_latent_representation(new_mdata)  # doctest: +SKIP
        """
        self._check_if_trained(warn=False)
        return self._collect(mdata, indices, batch_size, [self._latent_output])[self._latent_output]

    def relevance_adapter(self):
        """Return the :class:`~multiomix.explain.RelevanceAdapter` through which :mod:`multiomix.explain` works.

        Examples
        --------
        >>> adapter = model.relevance_adapter()  # doctest: +SKIP
        """
        raise NotImplementedError(f"{type(self).__name__} does not provide a relevance adapter.")
