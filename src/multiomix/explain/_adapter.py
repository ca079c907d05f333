"""The relevance adapter: the small, model-agnostic interface that :mod:`multiomix.explain` explains.

An adapter tells the explainers three things about a trained model:

* the modalities it reads, the feature names of each (in the order the model expects them) and the layer
  of each modality that holds its input (``None`` is ``.X``);
* a **classifier**: a :class:`torch.nn.Module` whose ``forward(*xs)`` maps one dense tensor per modality
  (cells x features, on the data scale the model reads, in ``modalities`` order) to class probabilities
  (cells x classes), with ``class_names`` naming the columns;
* a **translator** for a ``(source, target)`` pair: a module whose ``forward(x)`` maps the dense source tensor
  (cells x source features) to the predicted target (cells x target features, on the target's data scale).

Any preprocessing the model applies internally (standardisation, ``log1p``) belongs inside these modules, so
relevance is always expressed with respect to the data as stored in the MuData. Every model class provides
its own adapter through ``relevance_adapter()``; nothing here knows any model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["FunctionModule", "RelevanceAdapter"]


class FunctionModule(nn.Module):
    """Wrap a tensor function as a module, registering the submodules it uses.

    Registering the submodules lets explainers inspect (and hook) every layer the function runs through,
    e.g. :class:`shap.DeepExplainer` attaches its rules to them.

    Parameters
    ----------
    fn
        The function; it receives the positional tensors given to ``forward``.
    modules
        Submodules used by ``fn`` (a dict name -> module).

    Examples
    --------
    >>> lin = nn.Linear(3, 2)
    >>> f = FunctionModule(lambda x: lin(x).softmax(-1), {"lin": lin})
    >>> f(torch.randn(4, 3)).shape
    torch.Size([4, 2])
    """

    def __init__(self, fn: Callable[..., torch.Tensor], modules: dict[str, nn.Module]):
        super().__init__()
        self.fn = fn
        self.parts = nn.ModuleDict(modules)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


@dataclass
class RelevanceAdapter:
    """What the relevance explainers need to know about a trained model.

    Parameters
    ----------
    modalities
        Modalities the model reads, in the order the classifier takes them.
    feature_names
        Feature names per modality, in the order the model expects them.
    layers
        Layer holding each modality's input (``None`` reads ``.X``).
    class_names
        Names of the classifier's output columns (``None`` when the model has no classes).
    classifier
        Module mapping ``*xs`` (one dense tensor per modality) to class probabilities, or ``None``.
    translator
        Function ``(source, target) -> module`` mapping the source tensor to the predicted target, or ``None``.
    device
        Device the modules live on.
    name
        Short model name used in messages.
    no_classifier_reason
        Why a model that predicts classes offers no classifier to explain (said in the error).
    linear_paths
        ``(source, target)`` pairs whose translation is a linear map for every target feature (so its relevance
        is the same in every cell type); stored with the result so that plots can say so.
    path_blends
        Per ``(source, target)`` pair whose prediction blends a nonlinear and a linear path, the weight of the
        nonlinear path for each target feature (1: nonlinear only, 0: linear only); stored with cross-modal
        relevance results, so that target features explained through the linear path alone are marked.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.Softmax(-1))
    >>> adapter = RelevanceAdapter(
    ...     modalities=["rna"], feature_names={"rna": pd.Index(list("abcd"))}, layers={"rna": None},
    ...     class_names=["x", "y", "z"], classifier=FunctionModule(lambda x: net(x), {"net": net}))
    >>> adapter.classifier(torch.randn(2, 4)).shape
    torch.Size([2, 3])
    """

    modalities: list[str]
    feature_names: dict[str, pd.Index]
    layers: dict[str, str | None]
    class_names: list[str] | None = None
    classifier: nn.Module | None = None
    translator: Callable[[str, str], nn.Module] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    name: str = "model"
    linear_paths: list[tuple[str, str]] = field(default_factory=list)
    path_blends: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    no_classifier_reason: str | None = None

    def get_classifier(self) -> nn.Module:
        """Return the classifier module (a clear error when the model has none)."""
        if self.classifier is None and self.no_classifier_reason:
            raise ValueError(f"{self.name}: {self.no_classifier_reason}")
        if self.classifier is None or not self.class_names:
            raise ValueError(
                f"{self.name} does not predict classes, so kind='group' relevance is not defined for it; use "
                "kind='cross_modal' with source= and target=."
            )
        return self.classifier

    def get_translator(self, source: str, target: str) -> nn.Module:
        """Return the source -> target module, checking that both modalities are known."""
        if self.translator is None:
            raise ValueError(f"{self.name} does not predict one modality from another; use kind='group'.")
        for what, mod in (("source", source), ("target", target)):
            if mod not in self.modalities:
                raise KeyError(f"{what} modality {mod!r} is not among the model's modalities {self.modalities}.")
        if source == target:
            raise ValueError(f"source and target must differ, got {source!r} twice.")
        return self.translator(source, target)


def get_adapter(model) -> RelevanceAdapter:
    """Return the model's :class:`~multiomix.explain.RelevanceAdapter` (from its ``relevance_adapter()`` method).

    Examples
    --------
    >>> adapter = get_adapter(model)  # doctest: +SKIP
    """
    if isinstance(model, RelevanceAdapter):
        return model
    method = getattr(model, "relevance_adapter", None)
    if method is None:
        raise TypeError(
            f"No relevance adapter for {type(model).__name__}: give the model a `relevance_adapter()` method "
            "returning a multiomix.explain.RelevanceAdapter."
        )
    return method()
