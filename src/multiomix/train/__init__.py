"""Training plans, callbacks and the one row-aware training path shared by every model."""

from ._multimodal_ae import MultimodalAETrainingPlan
from ._plans import SupervisedTrainingPlan
from ._runner import (
    BestStateCallback,
    adamw_foreach,
    check_train_options,
    quiet_engine,
    resolve_rows,
    train_on_rows,
)

__all__ = ["BestStateCallback", "SupervisedTrainingPlan", "adamw_foreach", "check_train_options", "quiet_engine",
           "resolve_rows", "train_on_rows"]
__all__ += ["MultimodalAETrainingPlan"]
from ._unitednet import PHASES, UnitedNetTrainingPlan  # noqa: E402

__all__ += ["PHASES", "UnitedNetTrainingPlan"]
from ._genomic_interpreter import GenomicInterpreterTrainingPlan, lr_factor  # noqa: E402

__all__ += ["GenomicInterpreterTrainingPlan", "lr_factor"]
