"""What the classifier modules share: no generative part, and a class-weighted cross-entropy loss."""

from __future__ import annotations

from typing import ClassVar

from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput

from ..nn.losses import cross_entropy


class ClassifierModule(BaseModuleClass):
    """Base of a discriminative classifier module: ``inference`` returns ``logits``, the loss is their cross-entropy.

    A subclass registers the buffer ``class_weight`` (``None``: unweighted; the model sets it from the training
    rows when training starts) and names its model in ``_model_name`` (for the error of :meth:`sample`).
    """

    _model_name: ClassVar[str] = "This model"

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    def generative(self) -> dict:
        """No generative part (a discriminative model)."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Class-weighted cross-entropy."""
        logits = inference_outputs["logits"]
        labels = tensors[REGISTRY_KEYS.LABELS_KEY]
        ce = cross_entropy(logits, labels, self.class_weight)
        return LossOutput(
            loss=ce, classification_loss=ce, logits=logits, true_labels=labels, n_obs_minibatch=labels.shape[0]
        )

    def sample(self, *args, **kwargs):
        """Not defined for a classifier."""
        raise NotImplementedError(f"{self._model_name} is discriminative; it has no generative sampling.")
