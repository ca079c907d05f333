"""The alternating UnitedNet schedule as a scvi-tools TrainingPlan (Lightning manual optimisation)."""

from __future__ import annotations

import copy
from numbers import Integral
from typing import Any, ClassVar

import torch
from scvi import REGISTRY_KEYS
from scvi.train import TrainingPlan

from ..module._unitednet import UnitedNetModule

# the phases every minibatch runs, in order, per mode (a discriminator phase follows "translation" when adversarial)
PHASES = {
    "supervised": ("translation", "classification"),
    "unsupervised": ("translation", "clustering"),
    "translation": ("translation",),
}


class UnitedNetTrainingPlan(TrainingPlan):
    """Alternating UnitedNet schedule inside a scvi-tools TrainingPlan (Lightning manual optimisation).

    Every minibatch runs the phases of the mode in turn, each with its **own Adam optimiser** and gradient
    clipping: ``translation`` (encoders, decoders, contrastive projector; reconstruction + translation +
    contrastive [+ generator]), ``discriminator`` (only with adversarial training; a separate LSGAN update),
    then ``classification`` (encoders and heads; class-weighted CE on labelled rows, repeated
    ``classification_repeats`` times) or ``clustering`` (heads only; self-entropy + DDC). The original runs the
    phases as alternating full passes over the data; alternating per minibatch is the same schedule at finer
    granularity and keeps one Lightning epoch = one pass.

    At the end of each validation epoch the head with the lowest validation group loss becomes the best head,
    and the weights with the lowest ``validation_loss`` (reconstruction + translation, + the best head's
    cross-entropy in supervised mode) are kept and restored when training ends.

    Parameters
    ----------
    module
        A ``UnitedNetModule``.
    lr
        Learning rate of every phase (a dict ``{phase: lr}`` sets them separately).
    weight_decay
        Adam weight decay.
    classification_repeats
        Updates of the classification/clustering phase per minibatch.
    gradient_clip
        Max gradient norm per phase.
    cluster_warmup
        Unsupervised mode: fraction of ``max_epochs`` trained with the translation phase only; then each head's
        prototypes are initialised by k-means on its projected training cells and the clustering phase starts
        (default 0.75).
        Checkpoints before that epoch are not candidates. ``None``: the prototypes are kept as they are and every
        epoch clusters (training that continues an earlier fit).
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan`.
    """

    #: steps its optimisers itself (Lightning's gradient clipping does not apply; ``gradient_clip`` does)
    manual_optimization: ClassVar[bool] = True

    def __init__(
        self,
        module: UnitedNetModule,
        *,
        lr: float | dict[str, float] = 1e-3,
        weight_decay: float = 0.0,
        classification_repeats: int = 1,
        gradient_clip: float = 25.0,
        cluster_warmup: float | None = 0.75,
        **kwargs: Any,
    ):
        ignored = sorted(k for k in ("reduce_lr_on_plateau", "optimizer", "optimizer_creator") if kwargs.get(k))
        if ignored:
            raise ValueError(f"UnitedNet trains each phase with its own Adam optimiser and no learning-rate scheduler; "
                             f"{ignored} would be ignored. Set the learning rates with lr= (a dict per phase).")
        phases = sorted({p for names in PHASES.values() for p in names} | {"discriminator"})
        unknown = sorted(set(lr) - set(phases)) if isinstance(lr, dict) else []
        if unknown:  # a phase of another mode is allowed (one dict for every mode); a misspelt one is not
            raise ValueError(f"lr has entries for {unknown}, which are not training phases ({phases}).")
        if isinstance(classification_repeats, bool) or not isinstance(classification_repeats, Integral) \
                or classification_repeats < 1:
            raise ValueError(f"classification_repeats must be a whole number >= 1, got {classification_repeats!r}.")
        super().__init__(module, lr=lr if isinstance(lr, float | int) else 1e-3, weight_decay=weight_decay, **kwargs)
        self.cluster_warmup = cluster_warmup
        self.automatic_optimization = False
        self.lrs = lr if isinstance(lr, dict) else {}
        self.base_lr = float(lr) if isinstance(lr, float | int) else 1e-3
        self.classification_repeats = classification_repeats
        self.gradient_clip = gradient_clip
        self.phases = list(PHASES[module.mode])
        if module.net.discriminators is not None:
            self.phases.insert(1, "discriminator")
        self._val: dict[str, Any] = {}
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    def _phase_parameters(self, phase: str) -> list[torch.nn.Parameter]:
        net = self.module.net
        groups = {
            "translation": [net.encoders, net.decoders, net.latent_projector],
            "discriminator": [net.discriminators],
            "classification": [net.encoders, net.heads],
            "clustering": [net.heads],
        }[phase]
        return [p for g in groups if g is not None for p in g.parameters()]

    def configure_optimizers(self):
        return [
            torch.optim.Adam(self._phase_parameters(p), lr=self.lrs.get(p, self.base_lr),
                             weight_decay=self.weight_decay, foreach=True)
            for p in self.phases
        ]

    def _step(self, opt, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self.clip_gradients(opt, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm")
        opt.step()

    def _inputs(self, batch):
        module = self.module
        return module.standardize({m: batch[f"X_{m}"] for m in module.modalities}), batch.get(
            REGISTRY_KEYS.LABELS_KEY
        )

    @torch.no_grad()
    def _groups(self, xs, labels) -> torch.Tensor | None:
        """Return groups for the contrastive negatives: known labels where given, else the best head's prediction.

        ``None`` (every other cell is a negative) without heads. In unsupervised mode before the k-means start the
        prototypes are random, so this drops random negatives (about 60 % of a batch's pairs on Patch-seq); keeping
        every negative there instead was measured on Patch-seq (``benchmarks/patchseq.py``, 5 folds x 3 seeds) at
        ARI 0.439 +- 0.045 against 0.447 +- 0.008 (consensus of the seeds 0.491 against 0.478): within the seed
        spread, more variable, and not kept.
        """
        module = self.module
        if module.net.heads is None:
            return None
        was_training = module.net.training
        module.net.eval()
        pred = module.net.classify(module.net.encode(xs))["logits"][module.best_head].argmax(-1)
        module.net.train(was_training)
        if labels is not None and module.mode == "supervised":
            labels = labels.view(-1).long()
            pred = torch.where(labels < module.n_classes, labels, pred)
        return pred

    @property
    def cluster_init_epoch(self) -> int:
        """Epoch at which the cluster prototypes are initialised by k-means in unsupervised mode (-1 when kept)."""
        if self.cluster_warmup is None:
            return -1
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        return int(self.cluster_warmup * max_epochs)

    def on_train_epoch_start(self) -> None:
        """In unsupervised mode, initialise the prototypes by k-means once the warm-up epochs are done."""
        if self.module.mode == "unsupervised" and self.current_epoch == self.cluster_init_epoch:
            self._kmeans_prototypes()

    @torch.no_grad()
    def _kmeans_prototypes(self) -> None:
        from sklearn.cluster import KMeans

        module = self.module
        heads = module.net.heads
        was_training = module.training
        module.eval()
        hidden = []
        for batch in self.trainer.train_dataloader:
            batch = {k: v.to(module.device) for k, v in batch.items()}
            xs, _ = self._inputs(batch)
            hidden.append(module.net.classify(module.net.encode(xs))["hidden"].cpu())
        module.train(was_training)
        hidden = torch.cat(hidden, dim=1).numpy()  # (heads, cells, projection)
        k = heads.prototypes.shape[1]
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        for h in range(hidden.shape[0] if hidden.shape[1] >= k else 0):  # fewer cells than clusters: keep them
            centers = KMeans(k, n_init=10, random_state=seed + h).fit(hidden[h]).cluster_centers_
            heads.prototypes.data[h] = torch.as_tensor(centers, dtype=heads.prototypes.dtype)
        # distributed: each process saw its own shard of the rows; every process takes the first one's prototypes
        # (every process reaches this collective call, whatever its shard)
        heads.prototypes.data.copy_(self.trainer.strategy.broadcast(heads.prototypes.data, src=0))

    def training_step(self, batch, batch_idx):
        opts = self.optimizers()
        opts = dict(zip(self.phases, opts if isinstance(opts, list) else [opts]))
        xs, labels = self._inputs(batch)
        n = next(iter(xs.values())).shape[0]
        log = {"on_step": False, "on_epoch": True, "batch_size": n, "sync_dist": self.use_sync_dist}
        out = self.module.translation_losses(xs, groups=self._groups(xs, labels),
                                             generator="discriminator" in opts)
        self._step(opts["translation"], out["loss"])
        self.log("train_loss", out["loss"].detach(), prog_bar=True, **log)
        for key in ("reconstruction", "translation", "contrastive", "generator"):
            if key in out:
                self.log(f"train_{key}", out[key].detach(), **log)
        if "discriminator" in opts:
            disc = self.module.discriminator_loss(xs, {k: v.detach() for k, v in out["decoded"].items()})
            self._step(opts["discriminator"], disc)
            self.log("train_discriminator", disc.detach(), **log)
        for phase in ("classification", "clustering"):
            if phase not in opts or (phase == "clustering" and self.current_epoch < self.cluster_init_epoch):
                continue
            for _ in range(self.classification_repeats):
                heads = self.module.head_losses(xs, labels, train_encoders=phase == "classification")
                if heads.requires_grad:  # a batch of unlabelled cells only (semi-supervised) has nothing to learn
                    self._step(opts[phase], heads.sum())
            self.log(f"train_{phase}_loss", heads.detach().min(), **log)

    # validation: epoch-level accounting of per-head losses, best head and best weights -------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = {"n": 0.0, "reconstruction": 0.0, "translation": 0.0, "heads": 0.0}

    def validation_step(self, batch, batch_idx):
        xs, labels = self._inputs(batch)
        n = next(iter(xs.values())).shape[0]
        out = self.module.translation_losses(xs)
        self._val["n"] += n
        self._val["reconstruction"] += float(out["reconstruction"]) * n
        self._val["translation"] += float(out["translation"]) * n
        if self.module.net.heads is not None:
            if self.module.mode == "supervised":
                # head_losses is the class-weighted mean CE of the batch: weighted by the batch's total class
                # weight, the epoch's sum divided by the total weight is the class-weighted mean over all rows
                codes = labels.view(-1).long()
                codes = codes[codes < self.module.n_classes]
                weight = self.module.class_weight
                batch_weight = float(weight[codes].sum()) if weight is not None else float(len(codes))
                if len(codes):
                    heads = self.module.head_losses(xs, labels).detach()
                    self._val["heads"] = self._val["heads"] + heads * batch_weight
                self._val["labelled_weight"] = self._val.get("labelled_weight", 0) + batch_weight
            else:
                self._val["heads"] = self._val["heads"] + self.module.head_losses(xs).detach() * n

    def _summed_validation(self) -> None:
        """Sum the validation accounting over processes (distributed); unchanged on one device.

        Every process then chooses the same head, best epoch and checkpoint.
        """
        if self.trainer.world_size <= 1:
            return
        heads = self._val["heads"]
        n_heads = self.module.net.heads.n_heads if self.module.net.heads is not None else 0
        heads = heads if torch.is_tensor(heads) else torch.full((n_heads,), float(heads))
        totals = torch.cat([
            torch.tensor([self._val["n"], self._val["reconstruction"], self._val["translation"],
                          self._val.get("labelled_weight", 0)], dtype=torch.float64),
            heads.detach().double().cpu(),
        ]).to(self.module.device)
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum").cpu()
        self._val.update(n=float(totals[0]), reconstruction=float(totals[1]), translation=float(totals[2]))
        if "labelled_weight" in self._val:
            self._val["labelled_weight"] = float(totals[3])
        if torch.is_tensor(self._val["heads"]) or n_heads and float(totals[4:].abs().sum()) > 0:
            self._val["heads"] = totals[4:].float()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._summed_validation()
        if not self._val.get("n"):
            return
        n = self._val["n"]
        rec, tra = self._val["reconstruction"] / n, self._val["translation"] / n
        score = rec + tra
        self.log("validation_reconstruction", rec, sync_dist=self.use_sync_dist)
        self.log("validation_translation", tra, sync_dist=self.use_sync_dist)
        heads = self._val["heads"]
        if torch.is_tensor(heads):
            denom = self._val.get("labelled_weight", n) if self.module.mode == "supervised" else n
            heads = heads / denom if denom > 0 else heads  # a sum of class weights: it may lie below 1
            best = int(heads.argmin())
            self.module.best_head.fill_(best)
            self.log("validation_group_loss", float(heads[best]), sync_dist=self.use_sync_dist)
            self.log("best_head", float(best), sync_dist=self.use_sync_dist)
            if self.module.mode == "supervised":
                score = score + float(heads[best])
        self.log("validation_loss", score, sync_dist=self.use_sync_dist, prog_bar=True)
        if self.module.mode == "unsupervised" and self.current_epoch < self.cluster_init_epoch:
            return  # prototypes are not initialised yet: not a candidate checkpoint
        if self.best_score is None or score < self.best_score:
            self.best_score, self.best_epoch = score, self.current_epoch
            self._best_state = copy.deepcopy(self.module.state_dict())

    def on_train_end(self) -> None:
        if self._best_state is not None:
            self.module.load_state_dict(self._best_state)


__all__ = ["PHASES", "UnitedNetTrainingPlan"]
