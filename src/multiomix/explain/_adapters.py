"""Relevance adapters: the small, model-agnostic interface that :mod:`multiomix.explain` explains.

An adapter tells the explainers three things about a trained model:

* the modalities it reads, the feature names of each (in the order the model expects them) and the layer
  of each modality that holds its input (``None`` is ``.X``);
* a **classifier**: a :class:`torch.nn.Module` whose ``forward(*xs)`` maps one dense tensor per modality
  (cells x features, on the data scale the model reads, in ``modalities`` order) to class probabilities
  (cells x classes), with ``class_names`` naming the columns;
* a **translator** for a ``(source, target)`` pair: a module whose ``forward(x)`` maps the dense source tensor
  (cells x source features) to the predicted target (cells x target features, on the target's data scale).

Any preprocessing the model applies internally (standardisation, ``log1p``) belongs inside these modules, so
relevance is always expressed with respect to the data as stored in the MuData.

Plugging in another model: give the model class a method ``relevance_adapter()`` returning a
:class:`RelevanceAdapter`, or call :func:`register_adapter` with the class and a factory. Models without
classes set ``classifier=None``; models without cross-modal prediction set ``translator=None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

__all__ = ["FunctionModule", "RelevanceAdapter", "get_adapter", "register_adapter"]


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

    def get_classifier(self) -> nn.Module:
        """Return the classifier module (a clear error when the model has none)."""
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


_REGISTRY: dict[type, Callable[[Any], RelevanceAdapter]] = {}


def register_adapter(cls: type, factory: Callable[[Any], RelevanceAdapter]) -> None:
    """Register a factory building a :class:`RelevanceAdapter` for instances of ``cls``.

    Examples
    --------
    >>> register_adapter(MyModel, lambda model: model.make_adapter())  # doctest: +SKIP
    """
    _REGISTRY[cls] = factory


def get_adapter(model: Any) -> RelevanceAdapter:
    """Return the adapter of a trained model (its ``relevance_adapter()`` first, then the registry).

    Examples
    --------
    >>> adapter = get_adapter(model)  # doctest: +SKIP
    >>> adapter.modalities  # doctest: +SKIP
    ['rna', 'ephys', 'morph']
    """
    if isinstance(model, RelevanceAdapter):
        return model
    if hasattr(model, "relevance_adapter"):
        return model.relevance_adapter()
    _register_builtin()
    for cls, factory in _REGISTRY.items():
        if isinstance(model, cls):
            if getattr(model, "is_trained_", True) is False:
                raise ValueError(f"The {type(model).__name__} model is not trained yet; call train() first.")
            return factory(model)
    raise TypeError(
        f"No relevance adapter for {type(model).__name__}: give the model a `relevance_adapter()` method returning "
        "a multiomix.explain.RelevanceAdapter, or call multiomix.explain.register_adapter."
    )


# built-in adapters -------------------------------------------------------------------------------------------


def _unitednet_adapter(model) -> RelevanceAdapter:
    module = model.module
    module.eval()
    mods = list(model.modalities)
    net = module.net
    head = int(module.best_head)

    classifier = None
    if net.heads is not None:
        def classify(*xs: torch.Tensor) -> torch.Tensor:
            z = net.encode(module.standardize(dict(zip(mods, xs))))
            return net.classify(z)["logits"][head].softmax(-1)

        classifier = FunctionModule(classify, {"encoders": net.encoders, "heads": net.heads})

    def translator(source: str, target: str) -> nn.Module:
        enc, dec = net.encoders[source], net.decoders[target]

        def translate(x: torch.Tensor) -> torch.Tensor:
            xs = module.standardize({source: x})[source]
            # the network's own translate (which adds its linear skip path, if any) when it has one
            out = net.translate(xs, source, target) if hasattr(net, "translate") else dec(enc(xs))
            return module.to_data_scale(target, out)

        return FunctionModule(translate, {"encoder": enc, "decoder": dec})

    return RelevanceAdapter(
        modalities=mods,
        feature_names={m: pd.Index(model.modality_vars_[m].index.astype(str)) for m in mods},
        layers=model._layers(),
        class_names=list(model.classes_) if net.heads is not None else None,
        classifier=classifier,
        translator=translator,
        device=module.device,
        name="UnitedNet",
    )


def _multimodal_ae_adapter(model) -> RelevanceAdapter:
    module = model.module
    module.eval()
    net = module.net
    mods = list(model.modalities_)

    def translator(source: str, target: str) -> nn.Module:
        j = mods.index(target)
        nb = model.likelihoods_[target] == "nb"

        def translate(x: torch.Tensor) -> torch.Tensor:
            pred = net.decoders[target](net.encode({source: x}))["mean"]
            return pred * module.library_median[j] if nb else pred

        parts = {"encoder": net.encoders[source], "to_joint": net.to_joint[source], "decoder": net.decoders[target]}
        return FunctionModule(translate, parts)

    return RelevanceAdapter(
        modalities=mods,
        feature_names={m: pd.Index(model.modality_vars_[m].index.astype(str)) for m in mods},
        layers=model._layers(),
        class_names=None,
        classifier=None,
        translator=translator,
        device=module.device,
        name="MultimodalAE",
    )


def _crossattomics_adapter(model) -> RelevanceAdapter:
    from multiomix.models._base import resolve_layers

    module = model.module
    module.eval()
    mods = list(model.modalities)

    def classify(*xs: torch.Tensor) -> torch.Tensor:
        x = module.standardizer(dict(zip(mods, xs)))
        return module.net(x).softmax(-1)

    args = model.adata_manager.registry["setup_args"]
    return RelevanceAdapter(
        modalities=mods,
        feature_names={m: pd.Index(model.adata.mod[m].var_names.astype(str)) for m in mods},
        layers=resolve_layers(mods, args.get("layer")),
        class_names=list(model.classes),
        classifier=FunctionModule(classify, {"net": module.net}),
        translator=None,
        device=module.device,
        name="CrossAttOmics",
    )


def _register_builtin() -> None:
    import importlib

    for module, name, factory in (
        ("_unitednet", "UnitedNet", _unitednet_adapter),
        ("_multimodal_ae", "MultimodalAE", _multimodal_ae_adapter),
        ("_crossattomics", "CrossAttOmics", _crossattomics_adapter),
    ):
        try:
            cls = getattr(importlib.import_module(f"multiomix.models.{module}"), name)
        except (ImportError, AttributeError):  # a model missing from this installation
            continue
        _REGISTRY.setdefault(cls, factory)


def adapters_for(models: Sequence[Any]) -> list[RelevanceAdapter]:
    """Adapters of several models (convenience for comparing seeds or folds).

    Examples
    --------
    >>> adapters = adapters_for([model_a, model_b])  # doctest: +SKIP
    """
    return [get_adapter(m) for m in models]
