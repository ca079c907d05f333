"""The one row-aware training path of every multiomix model, and what keeps it quiet.

Training goes through scvi-tools' ``UnsupervisedTrainingMixin.train`` (its ``DataSplitter``, ``TrainRunner`` and
Lightning ``Trainer``), so ``accelerator``, ``devices``, ``strategy="ddp*"``, early stopping and ``history`` come
from the engine. The rows to train and validate on are passed as ``external_indexing``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping

from .._logging import logger
from .._settings import settings
from .._utils import check_whole, seeded

#: engine messages a user cannot act on (device banners, tips, worker and logging-interval advice)
_QUIET_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                  "lightning.pytorch.accelerators.cuda", "scvi.train._progress")
_QUIET_WARNINGS = (
    r".*does not have many workers.*",
    r".*number of training batches.*",
    r".*log_every_n_steps.*",
    r".*LeafSpec.*",
    r".*has fewer than 3 cells.*",
    r".*Last batch will have a small size.*",  # a single-row batch is dropped where it matters (BatchNorm)
    r".*GPU available but not used.*",
    r".*The `srun` command is available.*",
    r".*Trying to infer the `batch_size`.*",
    r".*Checkpoint directory.*exists and is not empty.*",
    # scvi-tools' own early stopping is off under DDP; the runner's (Lightning's EarlyStopping) is not
    r".*early_stopping was automatically disabled due to the use of DDP.*",
)


@contextlib.contextmanager
def quiet_engine() -> Iterator[None]:
    """Silence Lightning's banners and tips and engine warnings for the duration of a fit.

    Examples
    --------
    >>> with quiet_engine():
    ...     pass
    """
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    quiet = logging.DEBUG if settings.effective_verbosity() >= 3 else logging.WARNING
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(quiet, levels[name]))
    try:
        with warnings.catch_warnings():
            for pattern in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def resolve_rows(
    n_obs: int,
    train_indices: Sequence[int] | None,
    validation_indices: Sequence[int] | None,
    *,
    validation_size: float,
    random_state: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and unused rows.

    Without ``validation_indices``, a random ``validation_size`` of the training rows (all rows when
    ``train_indices`` is not given either) is held out for validation (logged when ``train_indices`` is given);
    ``validation_indices`` alone trains on every other row.

    Examples
    --------
    >>> train, validation, rest = resolve_rows(10, None, None, validation_size=0.2, random_state=0)
    >>> len(train), len(validation), len(rest)
    (8, 2, 0)
    >>> train, validation, rest = resolve_rows(10, np.arange(5), None, validation_size=0.2, random_state=0)
    >>> len(train), len(validation), len(rest)
    (4, 1, 5)
    >>> train, validation, rest = resolve_rows(10, None, [0, 1], validation_size=0.2, random_state=0)
    >>> len(train), len(validation), len(rest)
    (8, 2, 0)
    """
    if validation_indices is None:
        given = train_indices is not None
        pool = row_positions(train_indices, n_obs, name="train_indices") if given else np.arange(n_obs)
        perm = np.random.default_rng(random_state).permutation(pool)
        n_val = int(round(validation_size * len(pool)))
        validation_indices, train_indices = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        if given and n_val:
            logger.info(f"no validation_indices: {n_val} of the {len(pool)} train_indices rows (validation_size="
                        f"{validation_size:g}) are held out for validation (early stopping, best epoch); pass "
                        "validation_indices= to choose them, or validation_size=0 to train on all")
    elif train_indices is None:  # validation rows given alone: train on every other row
        held = row_positions(validation_indices, n_obs, name="validation_indices")
        train_indices = np.setdiff1d(np.arange(n_obs), held)
    train = row_positions(train_indices, n_obs, name="train_indices")
    validation = row_positions([] if validation_indices is None else validation_indices, n_obs,
                               name="validation_indices")
    if len(train) == 0:
        raise ValueError("No training rows: `train_indices` is empty.")
    overlap = np.intersect1d(train, validation)
    if len(overlap):
        raise ValueError(f"{len(overlap)} rows are in both `train_indices` and `validation_indices` "
                         f"(e.g. row {overlap[0]}).")
    rest = np.setdiff1d(np.arange(n_obs), np.concatenate([train, validation]))
    return train, validation, rest


def row_positions(indices, n_obs: int, *, name: str) -> np.ndarray:
    """Sorted integer row positions from integer positions or a boolean mask of length ``n_obs``.

    Examples
    --------
    >>> row_positions(np.array([True, False, True]), 3, name="train_indices")
    array([0, 2])
    >>> row_positions([2, 0], 3, name="train_indices")
    array([0, 2])
    """
    values = np.asarray(indices)
    if values.dtype == bool:
        if values.shape != (n_obs,):
            raise ValueError(f"`{name}` is a boolean mask of shape {values.shape}; expected ({n_obs},), one per row.")
        return np.flatnonzero(values)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"`{name}` must be integer row positions or a boolean mask, got dtype {values.dtype} "
                        "(for obs names use `np.flatnonzero(mdata.obs_names.isin(names))`).")
    values = np.sort(values.astype(int).ravel())
    if values.size and (values[0] < 0 or values[-1] >= n_obs):
        raise IndexError(f"`{name}` has positions outside 0..{n_obs - 1} (min {values[0]}, max {values[-1]}).")
    if values.size != np.unique(values).size:
        raise ValueError(f"`{name}` repeats rows.")
    return values


def adamw_foreach(params, *, lr: float, weight_decay: float, eps: float) -> torch.optim.Optimizer:
    """AdamW with the multi-tensor (``foreach``) update, which PyTorch only enables by default on CUDA."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps, foreach=True)


def _adamw_plan_kwargs(plan_kwargs: dict) -> dict:
    """Swap scvi-tools' ``"AdamW"`` for the same optimiser with the vectorised update."""
    if plan_kwargs.get("optimizer") != "AdamW" or "optimizer_creator" in plan_kwargs:
        return plan_kwargs
    creator = functools.partial(
        adamw_foreach, lr=plan_kwargs["lr"], weight_decay=plan_kwargs["weight_decay"], eps=plan_kwargs.get("eps", 0.01)
    )
    return {**plan_kwargs, "optimizer": "Custom", "optimizer_creator": creator}


def has_batch_norm(module: torch.nn.Module) -> bool:
    """Whether ``module`` holds a BatchNorm layer (which cannot train on a minibatch of one row).

    Examples
    --------
    >>> has_batch_norm(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)))
    True
    """
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def single_row_last_batch(n_train: int, batch_size: int) -> bool:
    """Whether the last training minibatch of an epoch would hold a single row (and is better dropped).

    Examples
    --------
    >>> single_row_last_batch(65, 64), single_row_last_batch(64, 64), single_row_last_batch(1, 64)
    (True, False, False)
    """
    return n_train > batch_size and n_train % batch_size == 1


class BestStateCallback(pl.Callback):
    """Keep the module weights of the epoch with the best monitored metric and restore them at the end.

    Parameters
    ----------
    monitor
        Logged metric to watch (e.g. ``"validation_loss"``).
    mode
        ``"min"`` or ``"max"``.
    include_initial
        Also consider the weights before training, scored by a full validation pass run before the first epoch
        (Lightning's sanity check with ``num_sanity_val_steps=-1``); reported as epoch ``-1``.

    Examples
    --------
    >>> callback = BestStateCallback("validation_loss", "min")
    """

    def __init__(self, monitor: str = "validation_loss", mode: str = "min", *, include_initial: bool = False):
        super().__init__()
        self.monitor, self.mode, self.include_initial = monitor, mode, include_initial
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the plan's own on_validation_epoch_end has logged this epoch's metric (callbacks' epoch-end hooks
        # run before the module's, so they would read the previous epoch's value)
        if (trainer.sanity_checking and not self.include_initial) or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        better = self.best_score is None or (score < self.best_score if self.mode == "min" else score > self.best_score)
        if better:
            self.best_score = score
            self.best_epoch = -1 if trainer.sanity_checking else trainer.current_epoch
            self._best_state = copy.deepcopy(pl_module.module.state_dict())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._best_state is not None:
            pl_module.module.load_state_dict(self._best_state)


@functools.cache
def _engine_options() -> frozenset[str]:
    import inspect

    from scvi.model.base import UnsupervisedTrainingMixin
    from scvi.train import Trainer

    functions = (UnsupervisedTrainingMixin.train, Trainer.__init__, pl.Trainer.__init__)
    return frozenset(p for f in functions for p in inspect.signature(f).parameters if p not in ("self", "kwargs"))


#: scvi-tools options that :func:`train_on_rows` sets itself, so that a value given for them would have no effect
_REPLACED_ENGINE_OPTIONS = frozenset({
    "shuffle_set_split", "datamodule", "early_stopping_monitor", "early_stopping_min_delta", "early_stopping_mode",
    "early_stopping_warmup_epochs",
})


def check_engine_kwargs(kwargs: dict) -> None:
    """Raise a ``TypeError`` naming keyword arguments that neither scvi-tools' training nor Lightning's Trainer takes.

    Every fit passes its unknown keywords on to the engine, so a misspelt option (``max_epoch=``) or one the fit
    does not have would otherwise fail deep inside Lightning, or not at all.

    Examples
    --------
    >>> check_engine_kwargs({"gradient_clip_val": 1.0})
    >>> check_engine_kwargs({"max_epoch": 5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: Unexpected keyword argument(s) ['max_epoch']: not an option of this function, ...
    """
    unknown = sorted(set(kwargs) - _engine_options())
    if unknown:
        raise TypeError(f"Unexpected keyword argument(s) {unknown}: not an option of this function, and not of "
                        "scvi-tools' training or Lightning's Trainer, to which its other keywords go. Check the "
                        "spelling and the function's signature.")
    replaced = sorted(set(kwargs) & _REPLACED_ENGINE_OPTIONS)
    if replaced:
        raise TypeError(f"{replaced} would be ignored: the rows are split here (train_indices / validation_indices, "
                        "or validation_size) and early stopping watches validation_loss (early_stopping, "
                        "early_stopping_patience).")


def check_fit_kwargs(kwargs: dict, model_class: type) -> None:
    """:func:`check_engine_kwargs` for a ``tl`` function's ``**trainer_kwargs``, before any work.

    Keywords that ``model_class.train`` (or a ``train`` it inherits) takes are accepted too. Run at the top of a
    function, so that a misspelt option fails at once, also on paths that never train.

    Examples
    --------
    >>> from multiomix.models import UnitedNet
    >>> check_fit_kwargs({"classification_repeats": 2, "accumulate_grad_batches": 1}, UnitedNet)
    >>> check_fit_kwargs({"max_epoch": 5}, UnitedNet)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: Unexpected keyword argument(s) ['max_epoch']: ...
    """
    import inspect

    own = {name for cls in model_class.__mro__ if "train" in vars(cls)
           for name in inspect.signature(vars(cls)["train"]).parameters}
    check_engine_kwargs({k: v for k, v in kwargs.items() if k not in own})
    plan = getattr(model_class, "_training_plan_cls", None)
    manual = plan is not None and getattr(plan, "manual_optimization", False)
    clipping = sorted({"gradient_clip_val", "gradient_clip_algorithm"} & set(kwargs))
    if manual and clipping:  # Lightning refuses them for a plan that steps its own optimisers, after the set-up
        raise TypeError(f"{clipping}: {model_class.__name__}'s training steps its optimisers itself, so Lightning "
                        "cannot clip its gradients; pass plan_kwargs={'gradient_clip': <max norm>} instead.")


def check_train_options(
    *, max_epochs: Any = None, batch_size: Any = None, plan_kwargs: dict | None = None, strategy: Any = None
) -> None:
    """Refuse training options that would fail deep inside the engine, be misread, or go unrecorded.

    ``max_epochs`` must be a whole number >= 0 (Lightning reads -1 as "no limit"; 0 trains nothing and is logged),
    ``batch_size`` a whole number >= 1; the learning rate and weight decay go in ``lr=`` / ``weight_decay=`` (which
    the fits record), not in ``plan_kwargs``; ``strategy="ddp_spawn"`` cannot pickle scvi-tools' MuData fields.

    Examples
    --------
    >>> check_train_options(max_epochs=10, batch_size=64, plan_kwargs={"n_epochs_kl_warmup": 5}, strategy="ddp")
    >>> check_train_options(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a whole number >= 1, got 0.
    """
    for name, value, least in (("max_epochs", max_epochs, 0), ("batch_size", batch_size, 1)):
        if value is not None:
            check_whole(name, value, least)
    if max_epochs == 0:
        logger.warning("max_epochs=0: the network is not trained (its weights are kept as they are).")
    given = sorted({"lr", "weight_decay"} & set(plan_kwargs or {}))
    if given:
        raise TypeError(f"Pass {', '.join(f'{k}=' for k in given)} as the function's own argument(s), not in "
                        "plan_kwargs: they are the values recorded with the fit.")
    if isinstance(strategy, str) and strategy.startswith("ddp_spawn"):
        raise ValueError(f"strategy={strategy!r} cannot pickle scvi-tools' MuData fields: use strategy='ddp' from a "
                         "script or strategy='ddp_notebook' in Jupyter.")


def train_on_rows(
    model,
    max_epochs: int,
    *,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    batch_size: int,
    early_stopping: bool,
    early_stopping_patience: int,
    accelerator: str,
    devices: int | list[int] | str,
    random_state: int,
    progress_bar: bool | None = None,
    restore_best: bool = True,
    include_initial: bool = False,
    plan_kwargs: dict | None = None,
    datasplitter_kwargs: dict | None = None,
    **trainer_kwargs: Any,
):
    """Train ``model`` through scvi-tools on the given rows, early-stopping on ``validation_loss``.

    The rows go to scvi-tools' data splitter as ``external_indexing``; validation runs every epoch and (with
    ``restore_best``) the module weights of the epoch with the lowest validation loss are restored at the end
    (:class:`BestStateCallback`). An ``"AdamW"`` optimiser uses the vectorised update. Engine banners, tips and
    warnings the user cannot act on are silenced (:func:`quiet_engine`).

    Examples
    --------
    >>> rows = resolve_rows(model.adata.n_obs, None, None, validation_size=0.15, random_state=0)
    >>> train_on_rows(model, 10, rows=rows, batch_size=64, early_stopping=True, early_stopping_patience=5,
    ...               accelerator="cpu", devices=1, random_state=0)
    """
    from scvi.model.base import UnsupervisedTrainingMixin

    check_engine_kwargs(trainer_kwargs)
    train, validation, rest = rows
    n_train = len(train)
    datasplitter_kwargs = {"external_indexing": [train, validation, rest], **(datasplitter_kwargs or {})}
    if has_batch_norm(model.module):
        if n_train < 2:
            raise ValueError(f"{type(model).__name__} normalises minibatches (BatchNorm) and needs at least 2 "
                             f"training rows; got {n_train}.")
        if batch_size < 2:
            raise ValueError(f"{type(model).__name__} normalises minibatches (BatchNorm): batch_size must be at least "
                             f"2, got {batch_size}.")
        datasplitter_kwargs.setdefault("drop_last", single_row_last_batch(n_train, batch_size))
    plan_kwargs = _adamw_plan_kwargs(dict(plan_kwargs or {}))
    if plan_kwargs.get("reduce_lr_on_plateau"):  # scvi-tools' default metric is an ELBO these plans do not log
        plan_kwargs.setdefault("lr_scheduler_metric", "validation_loss")
    has_validation = len(validation) > 0
    callbacks = list(trainer_kwargs.pop("callbacks", []))
    if has_validation and restore_best:
        callbacks.append(BestStateCallback("validation_loss", "min", include_initial=include_initial))
        if include_initial:
            trainer_kwargs.setdefault("num_sanity_val_steps", -1)
    if early_stopping and has_validation:  # Lightning's own callback: scvi-tools' prints its reason to stdout
        callbacks.append(EarlyStopping(monitor="validation_loss", patience=early_stopping_patience, mode="min"))
    given = trainer_kwargs.get("enable_progress_bar")
    if progress_bar is not None and given is not None and bool(given) != bool(progress_bar):
        raise ValueError(f"progress_bar={progress_bar} and Lightning's enable_progress_bar={given} disagree: pass one.")
    show = settings.progress_bar if progress_bar is None else progress_bar
    trainer_kwargs.setdefault("enable_progress_bar", bool(show) and settings.effective_verbosity() >= 1)
    if has_validation:
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
    else:  # no validation rows: no validation loop (scvi-tools' splitter returns no loader)
        trainer_kwargs.setdefault("limit_val_batches", 0)
    trainer_kwargs.setdefault("enable_model_summary", False)
    trainer_kwargs.setdefault("log_every_n_steps", max(1, int(np.ceil(n_train / max(batch_size, 1)))))
    model.module.train()  # scoring (or an earlier train) leaves it in eval mode: no dropout, frozen BatchNorm
    with quiet_engine(), seeded(random_state):  # reproducible; the user's global random state is kept
        return UnsupervisedTrainingMixin.train(
            model,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            batch_size=batch_size,
            early_stopping=False,
            plan_kwargs=plan_kwargs,
            datasplitter_kwargs=datasplitter_kwargs,
            callbacks=callbacks,
            **trainer_kwargs,
        )
