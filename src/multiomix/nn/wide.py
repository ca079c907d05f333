"""Wide path of a two-modality classifier: a linear map plus a low-rank product of the two modalities.

Pure torch (and numpy for the fold assignment), no AnnData. For standardised inputs ``a`` (e.g. a bag's mean
tile) and ``b`` (e.g. the expression), class ``c`` gets the logit

``w_c . [a; b] + bias_c + sum_r (u_cr . a) (v_cr . b)``,

a logistic regression with a rank-``r`` cross-modal interaction (a factorisation-machine term). The product lets
it learn labels that depend on both modalities jointly, e.g. an XOR of a tile state and an expression state,
which neither a sum of per-modality terms nor a logistic regression of the concatenation can represent.

:func:`fit_wide_path` chooses the L2 penalty, whether to use the product, and the number of full-batch epochs
by stratified K-fold cross-validation on the rows it is given, then refits on all of them.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from torch import nn

__all__ = ["MAX_COMPONENTS", "PENALTIES", "WidePath", "fit_wide_path"]

#: logit of a class without training rows
ABSENT_CLASS_LOGIT = -30.0
#: widest input the wide path reads (wider inputs are reduced to this many principal components)
MAX_COMPONENTS = 50
#: L2 penalties tried by :func:`fit_wide_path` (on the mean cross-entropy; weights only, not the intercepts)
PENALTIES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


class WidePath(nn.Module):
    """Logits ``linear([a; b]) + sum_r (u_r a)(v_r b)`` of two standardised, reduced inputs.

    An input wider than ``max_components`` (e.g. thousands of genes) is standardised and projected on its top
    principal components (orthonormal, not whitened), set by :func:`fit_wide_path` from the rows it is fitted
    on; a narrower one is only standardised. The projection keeps the fit fast and its penalty meaningful.

    Parameters
    ----------
    a_dim, b_dim
        Widths of the two inputs.
    num_classes
        Number of classes.
    rank
        Rank of the interaction (its factors may be all zero: a plain linear model).
    max_components
        Largest width the inputs are reduced to.

    Examples
    --------
    >>> wide = WidePath(a_dim=4, b_dim=300, num_classes=2)
    >>> wide(torch.randn(5, 4), torch.randn(5, 300)).shape, wide.b_proj.shape
    (torch.Size([5, 2]), torch.Size([300, 50]))
    """

    def __init__(self, *, a_dim: int, b_dim: int, num_classes: int, rank: int = 1,
                 max_components: int = MAX_COMPONENTS):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}.")
        if max_components < 1:
            raise ValueError(f"max_components must be at least 1, got {max_components}.")
        self.rank = rank
        widths = {}
        for name, dim in (("a", a_dim), ("b", b_dim)):
            widths[name] = min(dim, max_components)
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
            self.register_buffer(f"{name}_proj", torch.eye(dim, widths[name]))
        self.linear = nn.Linear(widths["a"] + widths["b"], num_classes)
        self.a_factors = nn.Linear(widths["a"], num_classes * rank, bias=False)
        self.b_factors = nn.Linear(widths["b"], num_classes * rank, bias=False)
        for layer in (self.linear, self.a_factors, self.b_factors):
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.linear.bias)

    def reduce(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardise and project raw inputs to the widths the path reads."""
        return (a - self.a_mean) / self.a_std @ self.a_proj, (b - self.b_mean) / self.b_std @ self.b_proj

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` of raw (unstandardised) inputs."""
        a, b = self.reduce(a, b)
        product = rearrange(self.a_factors(a) * self.b_factors(b), "n (c r) -> n c r", r=self.rank).sum(-1)
        return self.linear(torch.cat((a, b), dim=-1)) + product


def _projection(x: torch.Tensor, width: int, seed: int) -> torch.Tensor:
    """``(dim, width)`` orthonormal map of standardised rows to their top principal components.

    The identity when ``width`` is the input's width; components beyond the rows' rank get a zero column.
    """
    n, dim = x.shape
    if width >= dim:
        return torch.eye(dim, width)
    k = min(width, n - 1)
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        _, _, v = torch.svd_lowrank(x, q=min(k + 10, n, dim), niter=4)
    proj = torch.zeros(dim, width)
    proj[:, :k] = v[:, :k]  # not whitened: the top components keep their larger variance, as in ridge regression
    return proj


def _folds(labels: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each row, stratified: each class's rows are shuffled and dealt round-robin."""
    fold = np.empty(len(labels), dtype=int)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        fold[rows] = (np.arange(len(rows)) + rng.integers(n_folds)) % n_folds
    return fold


def _train_batched(a, b, y, class_weight, fit_mask, penalty, use_product, *, rank, epochs, lr, seed,
                   score_mask=None):
    """Full-batch Adam on ``K`` problems at once (one per row of ``fit_mask``); returns weights and score curves."""
    k, a_dim, b_dim = len(penalty), a.shape[1], b.shape[1]
    n_classes = len(class_weight)
    generator = torch.Generator().manual_seed(seed)
    weight = torch.zeros(k, a_dim + b_dim, n_classes, requires_grad=True)
    bias = torch.zeros(k, 1, n_classes, requires_grad=True)
    # small random factors: a product of two zero factors would get no gradient
    u = (0.1 * torch.randn(a_dim, n_classes * rank, generator=generator)).expand(k, -1, -1).clone().requires_grad_()
    v = (0.1 * torch.randn(b_dim, n_classes * rank, generator=generator)).expand(k, -1, -1).clone().requires_grad_()
    x = torch.cat((a, b), dim=1)
    on = use_product.view(k, 1, 1)
    labels = y.expand(k, -1)
    row_weight = class_weight[y].expand(k, -1)
    fit_w = fit_mask * row_weight
    optimizer = torch.optim.Adam([weight, bias, u, v], lr=lr)
    curves = []

    def logits():
        product = rearrange((a @ u) * (b @ v), "k n (c r) -> k n c r", r=rank).sum(-1)
        return x @ weight + bias + on * product

    for _ in range(epochs):
        out = logits()
        loss_rows = nn.functional.cross_entropy(out.transpose(1, 2), labels, reduction="none")
        data_loss = (loss_rows * fit_w).sum(1) / fit_w.sum(1)
        l2 = weight.pow(2).sum((1, 2)) + on.view(k) * (u.pow(2).sum((1, 2)) + v.pow(2).sum((1, 2)))
        optimizer.zero_grad()
        (data_loss + penalty * l2).sum().backward()
        optimizer.step()
        if score_mask is not None:
            with torch.no_grad():
                held = nn.functional.cross_entropy(logits().transpose(1, 2), labels, reduction="none")
                sw = score_mask * row_weight
                curves.append(((held * sw).sum(1) / sw.sum(1)).numpy())
    return weight.detach(), bias.detach(), u.detach() * on, v.detach() * on, np.asarray(curves)


def fit_wide_path(
    a: np.ndarray,
    b: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    class_weight: np.ndarray | None = None,
    rank: int = 1,
    penalties: tuple[float, ...] = PENALTIES,
    n_folds: int = 5,
    max_epochs: int = 300,
    lr: float = 1e-2,
    max_components: int = MAX_COMPONENTS,
    random_state: int = 0,
) -> tuple[nn.Module, dict]:
    """Fit a :class:`~multiomix.nn.WidePath`; penalty, product and epochs are chosen by stratified K-fold CV.

    Every candidate (each penalty, with and without the product) is trained full-batch on each fold's other rows
    for ``max_epochs``; the candidate and epoch with the lowest class-weighted cross-entropy on the held-out rows,
    averaged over folds, win, and the path is refitted on all rows for that many epochs.

    Parameters
    ----------
    a, b
        ``(n, a_dim)`` and ``(n, b_dim)`` inputs (standardised here, with their mean and SD over these rows, and
        reduced to their top ``max_components`` principal components when wider).
    labels
        ``(n,)`` class codes in ``0..num_classes-1``.
    num_classes
        Number of classes (classes without rows get no weight).
    class_weight
        Per-class weight of the cross-entropy (default: 1 each).
    rank
        Rank of the product.
    penalties
        L2 penalties tried.
    n_folds
        Folds (fewer when the smallest class has fewer rows; with fewer than 2 rows in some class the middle
        penalty, the product and 100 epochs are used without cross-validation).
    max_epochs, lr
        Full-batch Adam epochs per candidate, and its learning rate.
    max_components
        Widest input read as it is; wider ones are reduced to this many principal components of these rows.
    random_state
        Seed of the folds, of the factors' initial values and of the randomised SVD.

    Returns
    -------
    path : multiomix.nn.WidePath
        The fitted path.
    choice : dict
        ``penalty``, ``product`` (bool), ``epochs``, ``cv_loss`` (of the chosen candidate), ``cv_loss_linear``
        (the best linear-only candidate) and ``n_folds``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    >>> y = ((a[:, 0] > 0) ^ (b[:, 0] > 0)).astype(int)
    >>> path, choice = fit_wide_path(a, b, y, num_classes=2, max_epochs=100)
    >>> choice["product"]
    True
    """
    labels = np.asarray(labels).astype(int)
    path = WidePath(a_dim=a.shape[1], b_dim=b.shape[1], num_classes=num_classes, rank=rank,
                    max_components=max_components)
    reduced = {}
    for name, x in (("a", a), ("b", b)):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        mean, std = x.mean(0), x.std(0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        x = (x - mean) / std
        proj = _projection(x, getattr(path, f"{name}_proj").shape[1], random_state)
        with torch.no_grad():
            getattr(path, f"{name}_mean").copy_(mean), getattr(path, f"{name}_std").copy_(std)
            getattr(path, f"{name}_proj").copy_(proj)
        reduced[name] = x @ proj
    at, bt = reduced["a"], reduced["b"]
    y = torch.as_tensor(labels, dtype=torch.long)
    cw = torch.ones(num_classes) if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
    counts = np.bincount(labels, minlength=num_classes)
    folds = int(min(n_folds, counts[counts > 0].min()))
    grid = [(p, use) for use in (False, True) for p in penalties]
    if folds >= 2:
        fold = torch.as_tensor(_folds(labels, folds, np.random.default_rng(random_state)))
        problems = [(f, p, use) for f in range(folds) for p, use in grid]
        held = torch.stack([(fold == f).float() for f, _, _ in problems])
        penalty = torch.tensor([p for _, p, _ in problems])
        use = torch.tensor([float(u) for _, _, u in problems])
        *_, curves = _train_batched(at, bt, y, cw, 1.0 - held, penalty, use, rank=rank, epochs=max_epochs, lr=lr,
                                    seed=random_state, score_mask=held)
        mean_curves = curves.reshape(max_epochs, folds, len(grid)).mean(1)  # epochs x candidates
        epoch, best = np.unravel_index(np.argmin(mean_curves), mean_curves.shape)
        linear = mean_curves[:, : len(penalties)]
        choice = {"penalty": grid[best][0], "product": bool(grid[best][1]), "epochs": int(epoch) + 1,
                  "cv_loss": float(mean_curves[epoch, best]), "cv_loss_linear": float(linear.min()),
                  "n_folds": folds}
    else:
        choice = {"penalty": penalties[len(penalties) // 2], "product": True, "epochs": 100, "cv_loss": float("nan"),
                  "cv_loss_linear": float("nan"), "n_folds": 0}
    weight, bias, u, v, _ = _train_batched(
        at, bt, y, cw, torch.ones(1, len(labels)), torch.tensor([choice["penalty"]]),
        torch.tensor([float(choice["product"])]), rank=rank, epochs=choice["epochs"], lr=lr, seed=random_state)
    with torch.no_grad():
        path.linear.weight.copy_(weight[0].T), path.linear.bias.copy_(bias[0, 0])
        path.a_factors.weight.copy_(u[0].T), path.b_factors.weight.copy_(v[0].T)
        path.linear.bias[torch.as_tensor(counts == 0)] = ABSENT_CLASS_LOGIT  # never predict a class without rows
    return path, choice
