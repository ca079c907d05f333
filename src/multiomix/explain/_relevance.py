"""SHAP-style feature relevance of trained models: group-to-feature and cross-modal feature-to-feature.

Two estimators of the same quantity, the Shapley-value attribution of a model output to its input features
against a background distribution:

* ``"deep"``: :class:`shap.DeepExplainer` (DeepLIFT rules with the background as reference). Exact in
  the sense of its additivity property only when every layer has a DeepLIFT rule in shap; it has none for
  LayerNorm, attention or functional operations, and then its attributions no longer sum to the output
  difference.
* ``"expected_gradients"``: expected gradients (Erion et al., Nat Mach Intell 2021), the estimator behind
  :class:`shap.GradientExplainer` and captum's ``GradientShap``: for each explained cell ``x``,
  ``phi_j = E[(x_j - b_j) * d f(b + a (x - b)) / d x_j]`` over background rows ``b`` and ``a ~ U(0, 1)``,
  estimated with ``n_samples`` draws per cell. It needs only gradients, so it works for any differentiable
  model; its sum matches ``f(x) - E f(b)`` in expectation, up to Monte-Carlo error. It is computed here
  rather than with either library: the draws are stratified (background rows and path positions) and come
  from a seeded generator, all target features of a cross-modal map come from one batched Jacobian, and one
  background row is drawn per draw for all modalities together (captum's ``GradientShap`` draws it for each
  input tensor separately, which mixes the profiles of different background rows across modalities).
  ``tests/test_relevance.py`` checks that it agrees with :class:`shap.GradientExplainer`.

Both are computed here in batches: cells are densified one batch at a time and only the per-group sums of
``phi`` and ``|phi|`` are kept, so memory does not grow with the number of cells. ``method="auto"`` uses
DeepExplainer only when every leaf module of the explained path has a shap rule and its additivity error
on a small probe is below ``tolerance``; otherwise expected gradients. The additivity error
``max |sum_j phi_j - (f(x) - E f(b))|`` is measured and reported for whichever method ran.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy import sparse
from torch import nn

from .._utils import in_memory
from ._adapter import FunctionModule

__all__ = [
    "RelevanceResult",
    "average_results",
    "cross_modal_relevance",
    "deep_supported",
    "group_prototypes",
    "group_relevance",
]

Method = Literal["auto", "deep", "expected_gradients"]
METHODS = ("auto", "deep", "expected_gradients")
OUTPUTS = ("proba", "log_proba", "log_odds")


@dataclass
class RelevanceResult:
    """Per-group means of attributions (signed and absolute) and the additivity error of the estimator.

    ``mean_abs`` and ``mean`` are lists (one array per explained modality) for group relevance, or one
    ``(target features, source features)`` array for cross-modal relevance.
    """

    mean_abs: list[np.ndarray] | np.ndarray
    mean: list[np.ndarray] | np.ndarray
    n_cells: int
    method: str
    additivity_error: float  # max |sum phi - (f(x) - E f(b))| over explained cells (and targets)
    additivity_relative: float  # the same divided by max |f(x) - E f(b)|
    seconds: float
    notes: dict = field(default_factory=dict)


def average_results(results: Sequence[RelevanceResult]) -> RelevanceResult:
    """Average the relevance of the same cells computed with several models (an ensemble).

    ``mean_abs`` and ``mean`` are averaged over the models; the additivity errors are the largest of any
    model, the seconds their sum.

    Examples
    --------
    >>> a = RelevanceResult([np.ones(2)], [np.ones(2)], 3, "deep", 0.0, 0.0, 1.0)
    >>> b = RelevanceResult([np.zeros(2)], [-np.ones(2)], 3, "deep", 0.1, 0.2, 2.0)
    >>> average_results([a, b]).mean_abs[0]
    array([0.5, 0.5])
    """
    results = list(results)
    if not results:
        raise ValueError("No results to average.")
    if len(results) == 1:
        return results[0]

    def avg(values):
        if isinstance(values[0], list):
            return [np.mean([v[i] for v in values], 0) for i in range(len(values[0]))]
        return np.mean(values, 0)

    first = results[0]
    return RelevanceResult(
        mean_abs=avg([r.mean_abs for r in results]),
        mean=avg([r.mean for r in results]),
        n_cells=first.n_cells,
        method=", ".join(sorted({r.method for r in results})),
        additivity_error=max(r.additivity_error for r in results),
        additivity_relative=max(r.additivity_relative for r in results),
        seconds=sum(r.seconds for r in results),
        notes={**first.notes, "n_models": len(results)},
    )


# helpers -----------------------------------------------------------------------------------------------------


def _dense(matrix, rows: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    rows = np.asarray(rows)
    if isinstance(matrix, np.ndarray) or sparse.issparse(matrix):
        chunk = matrix[rows]
    else:  # on disk (h5py, backed AnnData): read increasing unique rows, then put them in the order asked for
        unique, inverse = np.unique(rows, return_inverse=True)
        chunk = matrix[unique]
        chunk = chunk[inverse]
    if columns is not None:
        chunk = chunk[:, columns]
    chunk = chunk.toarray() if sparse.issparse(chunk) else np.asarray(chunk)
    return chunk.astype(np.float32, copy=False)


def group_prototypes(matrix, codes: np.ndarray, n_groups: int, *, columns: np.ndarray | None = None) -> np.ndarray:
    """Mean profile of each group (``n_groups x features``), computed without densifying sparse input.

    Parameters
    ----------
    matrix
        Cells x features (dense, sparse or backed).
    codes
        Group code of each cell (``-1``: in no group).
    n_groups
        Number of groups.
    columns
        Optional reordering of the columns.

    Examples
    --------
    >>> group_prototypes(np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]), np.array([0, 0, 1]), 2)
    array([[1., 2.],
           [4., 5.]], dtype=float32)
    """
    matrix = in_memory(matrix)  # a backed sparse matrix is read (it stays sparse)
    codes = np.asarray(codes)
    keep = np.flatnonzero(codes >= 0)
    indicator = sparse.csr_matrix((np.ones(len(keep)), (codes[keep], keep)), shape=(n_groups, len(codes)))
    counts = np.asarray(indicator.sum(1)).ravel()
    sums = indicator @ (matrix if sparse.issparse(matrix) else np.asarray(matrix, dtype=np.float64))
    sums = sums.toarray() if sparse.issparse(sums) else np.asarray(sums)
    out = sums / np.maximum(counts, 1)[:, None]
    if columns is not None:
        out = out[:, columns]
    return out.astype(np.float32)


def _leaf_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not list(m.children()) and not isinstance(m, FunctionModule)]


#: modules shap's DeepExplainer maps to an element-wise rule though they mix their inputs
_NOT_ELEMENTWISE = frozenset({"Softmax", "LogSoftmax", "Softmin", "Softmax2d"})


def deep_supported(module: nn.Module) -> tuple[bool, list[str]]:
    """Whether shap's DeepExplainer has a rule for every leaf module; also the names of unsupported types.

    Passing this test is necessary but not sufficient: functional operations (``F.layer_norm``,
    ``softmax``, attention products) inside ``forward`` are invisible to it, which is why ``method="auto"``
    also checks additivity on a probe.

    Examples
    --------
    >>> deep_supported(nn.Sequential(nn.Linear(3, 4), nn.ReLU()))
    (True, [])
    >>> deep_supported(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)))
    (False, ['LayerNorm'])
    >>> deep_supported(nn.Sequential(nn.Linear(3, 4), nn.Softmax(-1)))
    (False, ['Softmax'])
    """
    from shap.explainers._deep.deep_pytorch import op_handler

    names = {type(m).__name__ for m in _leaf_modules(module)}
    # shap's rule for Softmax / LogSoftmax treats them element-wise (output k credited through input k only),
    # which is wrong for a normalisation over classes, though the attributions still add up
    bad = sorted(n for n in names if n not in op_handler or n in _NOT_ELEMENTWISE)
    return not bad, bad


def _budget_rows(per_row_bytes: int, memory_mb: float) -> int:
    return max(1, int(memory_mb * 2**20 // max(per_row_bytes, 1)))


def _draws(b: int, n_samples: int, n_bg: int, gen: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Background rows and path positions of the expected-gradients draws of ``b`` cells.

    Both are stratified (a variance reduction that keeps the estimator unbiased): each background row is
    used ``n_samples / n_bg`` times per cell where possible, and the path positions ``a`` take one value in
    each of ``n_samples`` equal strata of ``[0, 1]``, in random order.
    """
    reps = -(-n_samples // n_bg)
    order = torch.argsort(torch.rand(b, n_bg * reps, generator=gen), dim=1) % n_bg
    idx = order[:, :n_samples]
    strata = torch.argsort(torch.rand(b, n_samples, generator=gen), dim=1)
    alpha = (strata + torch.rand(b, n_samples, generator=gen)) / n_samples
    return idx.to(device), alpha.unsqueeze(-1).to(device)


def _transform_output(proba: nn.Module, output: str) -> nn.Module:
    """Wrap a probability module so that it returns log-probabilities or one-vs-rest log-odds.

    The log-odds of class ``k`` are ``log p_k - log sum_{j != k} p_j``, computed from the probabilities of
    the other classes (not from ``1 - p_k``), so they stay accurate for confident predictions.
    """
    if output == "log_proba":
        return FunctionModule(lambda *xs: torch.log(proba(*xs).clamp_min(1e-30)), {"classifier": proba})

    def log_odds(*xs: torch.Tensor) -> torch.Tensor:
        p = proba(*xs)
        k = p.shape[-1]
        rest = p @ (1 - torch.eye(k, dtype=p.dtype, device=p.device))  # sum of the other classes, no cancellation
        return torch.log(p.clamp_min(1e-30)) - torch.log(rest.clamp_min(1e-30))

    return FunctionModule(log_odds, {"classifier": proba})


def _choose_explainer(
    model: nn.Module, explained: nn.Module, background, *, method: str, tolerance: float,
    probe: Callable[[Any], float], notes: dict,
) -> tuple[Any, str]:
    """Return shap's DeepExplainer of ``explained`` and ``"deep"``, or ``None`` and ``"expected_gradients"``.

    DeepExplainer is used with ``method="deep"``, and with ``"auto"`` when shap has a rule for every leaf module
    of ``model`` and ``probe(explainer)``, the relative additivity error on a few cells, is within ``tolerance``.
    The unsupported module types and the probe's error are noted in ``notes``.
    """
    if method not in ("auto", "deep"):
        return None, method
    ok, bad = deep_supported(model)
    notes["deep_unsupported_modules"] = ", ".join(bad)
    if not ok and method != "deep":
        return None, "expected_gradients"
    import shap

    explainer = shap.DeepExplainer(explained, background)
    if method == "auto":
        notes["deep_probe_additivity_relative"] = relative = probe(explainer)
        if relative > tolerance:
            return None, "expected_gradients"
    return explainer, "deep"


def _result(mean_abs, mean, *, n_cells: int, method: str, max_err: float, max_delta: float, start: float,
            notes: dict) -> RelevanceResult:
    """Build the result from the means, the largest additivity gap and output change, and the start time."""
    return RelevanceResult(
        mean_abs=mean_abs,
        mean=mean,
        n_cells=n_cells,
        method=method,
        additivity_error=max_err,
        additivity_relative=max_err / max(max_delta, 1e-12),
        seconds=time.perf_counter() - start,
        notes=notes,
    )


class _Select(nn.Module):
    """Column ``k`` of a classifier's output (shap needs a module with a 2-d output)."""

    def __init__(self, classifier: nn.Module, k: int):
        super().__init__()
        self.classifier, self.k = classifier, k

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.classifier(*xs)[:, self.k : self.k + 1]


# group relevance ---------------------------------------------------------------------------------------------


def _eg_group_batch(
    fn: nn.Module, xs: list[torch.Tensor], bg: list[torch.Tensor], k: int, n_samples: int, gen: torch.Generator
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Expected-gradients attributions for class ``k`` of a batch; returns per-modality phi and the sums."""
    b = xs[0].shape[0]
    idx, alpha = _draws(b, n_samples, bg[0].shape[0], gen, xs[0].device)
    points, diffs = [], []
    for x, base in zip(xs, bg):
        ref = base[idx]  # (b, s, f)
        diff = x[:, None, :] - ref
        points.append((ref + alpha * diff).reshape(b * n_samples, -1).requires_grad_(True))
        diffs.append(diff)
    with torch.enable_grad():
        out = fn(*points)[:, k].sum()
        grads = torch.autograd.grad(out, points)
    phis = [(d * g.view(b, n_samples, -1)).mean(1) for d, g in zip(diffs, grads)]
    return phis, sum(p.sum(1) for p in phis)


def _deep_group_batch(explainer, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    values = explainer.shap_values(xs if len(xs) > 1 else xs[0], check_additivity=False)
    values = values if isinstance(values, list) else [values]
    return [torch.as_tensor(np.asarray(v)[..., 0] if np.asarray(v).ndim == 3 else np.asarray(v)) for v in values]


def _restores_training_mode(argument: str):
    """Decorate a function that puts the module passed as ``argument`` in eval mode: its mode is restored after."""

    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            module = signature.bind_partial(*args, **kwargs).arguments.get(argument)
            training = getattr(module, "training", None)
            try:
                return function(*args, **kwargs)
            finally:
                if isinstance(module, nn.Module) and training is not None:
                    module.train(training)

        return wrapper

    return decorate


@_restores_training_mode("classifier")
def group_relevance(
    classifier: nn.Module,
    matrices: Sequence,
    rows: np.ndarray,
    class_index: int,
    background: Sequence[np.ndarray],
    *,
    columns: Sequence[np.ndarray | None] | None = None,
    method: Method = "auto",
    n_samples: int = 20,
    batch_size: int | None = None,
    memory_mb: float = 512,
    tolerance: float = 0.01,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    output: Literal["proba", "log_proba", "log_odds"] = "proba",
) -> RelevanceResult:
    """Relevance of every input feature for one class probability, over a set of cells.

    Parameters
    ----------
    classifier
        Module mapping one dense tensor per modality to class probabilities.
    matrices
        Cells x features matrix per modality (dense, sparse or backed; densified one batch at a time).
    rows
        Rows to explain.
    class_index
        Output column explained.
    background
        Background rows per modality (``n_background x features``), e.g. group prototypes.
    columns
        Optional column order per modality (to match the model's feature order).
    method
        ``"auto"``, ``"deep"`` or ``"expected_gradients"``.
    n_samples
        Expected-gradients draws per cell.
    batch_size
        Cells per batch (default: as many as fit in ``memory_mb``).
    memory_mb
        Memory budget of one batch's interpolation points.
    tolerance
        Largest relative additivity error accepted from DeepExplainer under ``method="auto"``.
    device
        Device of the classifier.
    generator
        Random generator of the expected-gradients draws (seeded for reproducible results).
    output
        Explain the class probability (``"proba"``), its logarithm (``"log_proba"``) or the one-vs-rest
        log-odds ``log(p_k / (1 - p_k))`` (``"log_odds"``); the last two are less saturated for confident
        classifiers.

    Returns
    -------
    ``RelevanceResult`` with per-modality ``mean_abs`` and ``mean`` arrays.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.Softmax(-1))
    >>> x = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
    >>> res = group_relevance(net, [x], np.arange(10), 0, [x.mean(0, keepdims=True)])
    >>> res.mean_abs[0].shape
    (4,)
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    start = time.perf_counter()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    columns = list(columns) if columns is not None else [None] * len(matrices)
    bg = [torch.as_tensor(np.asarray(b, dtype=np.float32), device=device) for b in background]
    widths = [b.shape[1] for b in bg]
    n_feat = sum(widths)
    notes: dict = {}
    if output not in OUTPUTS:
        raise ValueError(f"`output` must be one of {OUTPUTS}, got {output!r}.")
    classifier.eval()
    if output != "proba":
        classifier = _transform_output(classifier, output)

    def probe(explainer) -> float:
        few = rows[: min(len(rows), 8)]
        xs = [torch.as_tensor(_dense(m, few, c), device=device) for m, c in zip(matrices, columns)]
        phis = _deep_group_batch(explainer, xs)
        return _group_additivity(classifier, xs, bg, class_index, sum(p.sum(1) for p in phis))[1]

    explainer, used = _choose_explainer(classifier, _Select(classifier, class_index), bg if len(bg) > 1 else bg[0],
                                        method=method, tolerance=tolerance, probe=probe, notes=notes)
    per_cell = n_feat * 4 * (3 * n_samples if used == "expected_gradients" else 3 * len(bg[0]))
    batch_size = batch_size or min(1024, _budget_rows(per_cell, memory_mb))
    sum_abs = [np.zeros(w, dtype=np.float64) for w in widths]
    sum_val = [np.zeros(w, dtype=np.float64) for w in widths]
    max_err, max_delta = 0.0, 0.0
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        xs = [torch.as_tensor(_dense(m, chunk, c), device=device) for m, c in zip(matrices, columns)]
        if used == "deep":
            phis = _deep_group_batch(explainer, xs)
            total = sum(p.sum(1) for p in phis)
        else:
            phis, total = _eg_group_batch(classifier, xs, bg, class_index, n_samples, gen)
        err, delta = _group_gap(classifier, xs, bg, class_index, total)
        max_err, max_delta = max(max_err, err), max(max_delta, delta)
        for i, p in enumerate(phis):
            p = p.detach().double().cpu().numpy()
            sum_abs[i] += np.abs(p).sum(0)
            sum_val[i] += p.sum(0)
    n = max(len(rows), 1)
    return _result([v / n for v in sum_abs], [v / n for v in sum_val], n_cells=len(rows), method=used,
                   max_err=max_err, max_delta=max_delta, start=start, notes=notes)


@torch.no_grad()
def _group_gap(fn, xs, bg, k, total) -> tuple[float, float]:
    delta = fn(*xs)[:, k] - fn(*bg)[:, k].mean()
    return float((total.to(delta) - delta).abs().max()), float(delta.abs().max())


def _group_additivity(fn, xs, bg, k, total) -> tuple[float, float]:
    err, delta = _group_gap(fn, xs, bg, k, total)
    return err, err / max(delta, 1e-12)


# cross-modal relevance ---------------------------------------------------------------------------------------


def _eg_cross_batch(
    fn: nn.Module, x: torch.Tensor, bg: torch.Tensor, n_samples: int, gen: torch.Generator
) -> torch.Tensor:
    """Expected-gradients attributions ``(cells, target, source)`` through the full Jacobian of ``fn``."""
    from torch.func import jacrev, vmap

    b = x.shape[0]
    idx, alpha = _draws(b, n_samples, bg.shape[0], gen, x.device)
    ref = bg[idx]
    diff = x[:, None, :] - ref  # (b, s, f_s)
    points = (ref + alpha * diff).reshape(b * n_samples, -1)
    with torch.enable_grad():
        jac = vmap(jacrev(lambda v: fn(v[None])[0]))(points)  # (b*s, f_t, f_s)
    jac = jac.view(b, n_samples, jac.shape[1], jac.shape[2])
    return torch.einsum("bsj,bstj->btj", diff, jac) / n_samples


def _deep_cross_batch(explainer, x: torch.Tensor) -> torch.Tensor:
    values = np.asarray(explainer.shap_values(x, check_additivity=False))  # (b, f_s, f_t)
    return torch.as_tensor(values).permute(0, 2, 1)


@_restores_training_mode("translator")
def cross_modal_relevance(
    translator: nn.Module,
    matrix,
    rows: np.ndarray,
    background: np.ndarray,
    *,
    columns: np.ndarray | None = None,
    method: Method = "auto",
    n_samples: int = 10,
    batch_size: int | None = None,
    memory_mb: float = 512,
    tolerance: float = 0.01,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> RelevanceResult:
    """Relevance of every source feature for every predicted target feature, over a set of cells.

    Parameters
    ----------
    translator
        Module mapping the dense source tensor to the predicted target.
    matrix
        Cells x source features (dense, sparse or backed; densified one batch at a time).
    rows
        Rows to explain.
    background
        Background rows of the source (``n_background x features``).
    columns
        Optional column order (to match the model's feature order).
    method, n_samples, batch_size, memory_mb, tolerance, device, generator
        As in :func:`group_relevance`; the batch holds ``cells x n_samples`` Jacobians.

    Returns
    -------
    ``RelevanceResult`` whose ``mean_abs`` and ``mean`` are ``(target, source)`` arrays.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    >>> x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    >>> cross_modal_relevance(net, x, np.arange(6), x[:1]).mean_abs.shape
    (2, 5)
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    start = time.perf_counter()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    translator.eval()
    bg = torch.as_tensor(np.asarray(background, dtype=np.float32), device=device)
    with torch.no_grad():
        bg_out = translator(bg)
    n_s, n_t = bg.shape[1], bg_out.shape[1]
    notes: dict = {}

    def probe(explainer) -> float:
        x = torch.as_tensor(_dense(matrix, rows[: min(len(rows), 4)], columns), device=device)
        err, delta = _cross_gap(translator, x, bg_out, _deep_cross_batch(explainer, x))
        return err / max(delta, 1e-12)

    explainer, used = _choose_explainer(translator, translator, bg, method=method, tolerance=tolerance, probe=probe,
                                        notes=notes)
    per_cell = 4 * n_t * n_s * ((n_samples + 2) if used == "expected_gradients" else 2 * len(bg))
    batch_size = batch_size or min(512, _budget_rows(per_cell, memory_mb))
    sum_abs = torch.zeros(n_t, n_s, dtype=torch.float64)
    sum_val = torch.zeros(n_t, n_s, dtype=torch.float64)
    max_err, max_delta = 0.0, 0.0
    for s in range(0, len(rows), batch_size):
        x = torch.as_tensor(_dense(matrix, rows[s : s + batch_size], columns), device=device)
        phi = _deep_cross_batch(explainer, x) if used == "deep" else _eg_cross_batch(translator, x, bg, n_samples, gen)
        err, delta = _cross_gap(translator, x, bg_out, phi)
        max_err, max_delta = max(max_err, err), max(max_delta, delta)
        phi = phi.detach().double().cpu()
        sum_abs += phi.abs().sum(0)
        sum_val += phi.sum(0)
    n = max(len(rows), 1)
    return _result((sum_abs / n).numpy(), (sum_val / n).numpy(), n_cells=len(rows), method=used, max_err=max_err,
                   max_delta=max_delta, start=start, notes=notes)


@torch.no_grad()
def _cross_gap(fn, x, bg_out, phi) -> tuple[float, float]:
    delta = fn(x) - bg_out.mean(0)
    gap = phi.sum(-1).to(delta) - delta
    return float(gap.abs().max()), float(delta.abs().max())
