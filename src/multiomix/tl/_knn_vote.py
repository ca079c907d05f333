"""The kNN vote of annotation transfer: a label-free joint PCA of reference + query and distance-weighted votes.

:func:`knn_ensemble` averages a classifier's calibrated probabilities with the vote (and, for the 'unknown'
threshold, with the vote taken without each reference type in turn); :func:`knn_proba` is the whole classifier
for models without classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import numpy as np
from mudata import MuData
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from ._calibration import fit_temperature, nll, temperature_scale


def stack_rows(ref_matrix, query_matrix):
    """Stack reference rows over query rows: CSR when either is sparse, else a dense array."""
    if sparse.issparse(ref_matrix) or sparse.issparse(query_matrix):
        return sparse.vstack([sparse.csr_matrix(ref_matrix), sparse.csr_matrix(query_matrix)]).tocsr()
    return np.vstack([np.asarray(ref_matrix), np.asarray(query_matrix)])


def _votes(dist: np.ndarray, neighbour_codes: np.ndarray, n_classes: int, scale: float) -> np.ndarray:
    """Class probabilities from neighbour distances and classes: weights ``exp(-(d / scale) ** 2)`` + 0.5 / n."""
    weight = np.exp(-(dist / scale) ** 2)
    votes = np.zeros((len(dist), n_classes))
    np.add.at(votes, (np.repeat(np.arange(len(dist)), dist.shape[1]), neighbour_codes.ravel()), weight.ravel())
    votes += 0.5 / n_classes
    return votes / votes.sum(1, keepdims=True)


def _knn_votes(pool: np.ndarray, pool_codes: np.ndarray, n_classes: int, points: np.ndarray, *, k: int,
               scale: float | None = None, skip_self: bool = False) -> tuple[np.ndarray, float, np.ndarray]:
    """Distance-weighted kNN class probabilities of ``points`` among ``pool``, with the scale and neighbours used.

    Returns the probabilities, the distance scale and the class codes of each point's neighbours (points x
    neighbours, nearest first). Weights ``exp(-(d / scale) ** 2)`` (``scale``: by default the median distance
    to the ``k``-th neighbour), plus ``0.5 / n_classes`` per class: a cell far from every pool cell gets nearly
    flat probabilities. ``skip_self``: ``points`` are the pool itself, each scored without itself.
    """
    k = int(min(k, len(pool) - (1 if skip_self else 0)))
    nn = NearestNeighbors(n_neighbors=k).fit(pool)
    # each pool cell without itself: left out by index (a duplicate of it may come first in a distance search)
    dist, idx = nn.kneighbors() if skip_self else nn.kneighbors(points)
    if scale is None:
        scale = float(np.median(dist[:, -1]) + 1e-12)
    return _votes(dist, pool_codes[idx], n_classes, scale), scale, pool_codes[idx]


class _NeighboursWithoutType:
    """The ``k`` nearest ``pool`` cells of each point among the pool cells not of a given type, for every type.

    One search for ``3 k`` neighbours in the whole pool serves every type: a point's nearest cells of the other
    types are the first ``k`` of its list that are not of the left-out type. Only points whose list holds fewer
    than ``k`` such cells (mostly cells of that type) are searched again, among the other types' cells. Same
    neighbours as a search per type (up to the order of exactly tied distances), without a search of every
    point per type.
    """

    def __init__(self, pool: np.ndarray, pool_codes: np.ndarray, points: np.ndarray, *, k: int):
        self.pool, self.pool_codes, self.points, self.k = pool, pool_codes, points, int(k)
        wide = int(min(3 * self.k, len(pool)))
        self.dist, idx = NearestNeighbors(n_neighbors=wide).fit(pool).kneighbors(points)
        self.codes = pool_codes[idx]

    def __call__(self, without: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Distances and classes (points x k', nearest first) of the nearest cells not of type ``without``."""
        others = self.pool_codes != without
        k = int(min(self.k, others.sum()))
        if k < 1:
            return None
        keep = self.codes != without
        # the first k kept columns of each row, nearest first (stable sort keeps the distance order)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        dist = np.take_along_axis(self.dist, order, axis=1)
        codes = np.take_along_axis(self.codes, order, axis=1)
        short = np.flatnonzero(keep.sum(1) < k)
        if len(short):
            nn = NearestNeighbors(n_neighbors=k).fit(self.pool[others])
            dist[short], idx = nn.kneighbors(self.points[short])
            codes[short] = self.pool_codes[others][idx]
        return dist, codes


def neighbour_agreement(neighbour_codes: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Share of each cell's neighbours (rows of ``neighbour_codes``) whose class is the cell's ``predicted`` class.

    Examples
    --------
    >>> neighbour_agreement(np.array([[0, 0, 1], [2, 2, 2]]), np.array([0, 1]))
    array([0.66666667, 0.        ])
    """
    return (np.asarray(neighbour_codes) == np.asarray(predicted)[:, None]).mean(1)


def knn_proba(ref_latent: np.ndarray, ref_codes: np.ndarray, n_classes: int, latent: np.ndarray | None = None, *,
              k: int = 15, leave_one_out: bool = False) -> np.ndarray:
    """Class probabilities from the ``k`` nearest reference cells (distance-weighted votes, add-half smoothing).

    ``latent=None`` scores the reference cells themselves, each without itself (``leave_one_out``). The distance
    scale is always the reference's own (the median distance of a reference cell to its ``k``-th other reference
    cell): a query cell's probabilities do not depend on the other query cells, and a query far from the
    reference gets flat votes.
    """
    codes = np.asarray(ref_codes)
    loo, scale, _ = _knn_votes(ref_latent, codes, n_classes, ref_latent, k=k, skip_self=True)
    if latent is None:
        return loo
    return _knn_votes(ref_latent, codes, n_classes, latent, k=k, scale=scale)[0]


#: above this many entries (cells x features), :func:`joint_pca` neither densifies a sparse modality nor copies
#: a dense one to float64
DENSE_PCA_MAX_ENTRIES = 10_000_000


def joint_pca(reference: MuData, query: MuData, modalities: Sequence[str], *, n_components: int = 20,
              random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PCA of reference + query cells together, per modality, each modality scaled to unit mean squared norm.

    ``reference`` and ``query`` hold the matched input matrices in ``.X`` (no labels are read). Returns the
    reference and the query coordinates, modalities side by side. Up to :data:`DENSE_PCA_MAX_ENTRIES` entries a
    modality is densified in float64; above, a sparse one is decomposed sparse and a dense one in float32.
    """
    from sklearn.decomposition import PCA

    ref_parts, query_parts = [], []
    for m in modalities:
        x = stack_rows(reference.mod[m].X, query.mod[m].X)
        n = int(min(n_components, x.shape[0] - 1, x.shape[1] - 1))
        if n < 1:
            continue
        large = x.shape[0] * x.shape[1] > DENSE_PCA_MAX_ENTRIES
        if sparse.issparse(x) and not large:
            x = x.toarray()
        # a large sparse modality stays sparse (ARPACK, centred implicitly); a large dense one stays in float32
        x = x.astype(np.float32 if large and not sparse.issparse(x) else np.float64, copy=False)
        pca = PCA(n_components=n, svd_solver="arpack" if sparse.issparse(x) else "auto", random_state=random_state)
        z = pca.fit_transform(x)
        z = z / (np.sqrt(np.mean(np.sum(z**2, axis=1))) + 1e-12)
        ref_parts.append(z[: reference.n_obs])
        query_parts.append(z[reference.n_obs:])
    return np.hstack(ref_parts), np.hstack(query_parts)


#: candidate kNN weights of ``knn_weight="auto"``
KNN_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


class _LeftOutMixes(Mapping):
    """Per left-out class ``c``: the model probabilities mixed with the kNN vote taken without type ``c``.

    Each mixture (held-out cells x classes) is built when it is read, from the voting neighbours kept per class
    (distances and classes, held-out cells x k), so that the mixtures of all classes (cells x classes x classes
    values) are never held at once.
    """

    def __init__(self, model_val: np.ndarray, weight: float, *, n_classes: int, scale: float):
        self.model_val, self.weight, self.n_classes, self.scale = model_val, weight, n_classes, scale
        self._neighbours: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

    def keep(self, c: int, neighbours: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Keep the voting neighbours (per fold: distances, classes) of the held-out cells without type ``c``."""
        self._neighbours[c] = neighbours

    def __getitem__(self, c: int) -> np.ndarray:
        votes = np.concatenate([_votes(dist, codes, self.n_classes, self.scale) for dist, codes in self._neighbours[c]])
        return (1 - self.weight) * self.model_val + self.weight * votes

    def __contains__(self, c: object) -> bool:  # without building the mixture
        return c in self._neighbours

    def __iter__(self) -> Iterator[int]:
        return iter(self._neighbours)

    def __len__(self) -> int:
        return len(self._neighbours)


def knn_ensemble(val_proba: np.ndarray, val_codes: np.ndarray, query_proba: np.ndarray, ref_space: np.ndarray,
                 query_space: np.ndarray, ref_codes: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]], *,
                 weight: float | Literal["auto"] = 0.5, k: int = 15) -> dict:
    """Average the temperature-scaled model probabilities with a kNN vote of the reference cells in a shared space.

    ``p = (1 - w) * p_model ** (1 / T) / Z + w * p_kNN``: ``T`` is fitted on the held-out reference cells, the
    ``held`` rows of each ``(train, held)`` pair of ``folds`` in order (one pair for one train/held-out split,
    several for cross-fitted models); ``val_proba`` and ``val_codes`` are their model probabilities and class
    codes. A held-out cell's kNN vote is taken among the ``train`` reference cells of its fold, a query cell's
    among every reference cell, with the distance scale of the first fold's held-out cells (:func:`_knn_votes`), so
    a query cell far from every reference cell gets a flatter vote. ``weight="auto"`` picks ``w`` in
    :data:`KNN_WEIGHTS` with the lowest held-out negative log-likelihood after a second temperature scaling. Also
    returns, per class ``c`` of the held-out cells, their mixture with the kNN vote taken without the reference
    cells of type ``c`` (for :func:`leave_type_out_scores`; a read-only mapping that builds each mixture when it is
    read, from neighbours found by :class:`_NeighboursWithoutType`), and the neighbour agreement
    (:func:`neighbour_agreement` of the ``k`` voting neighbours and the mixture's most probable class) of the
    query cells (``query_agreement``), of the held-out cells taken as the query's are (``held_out_agreement``)
    and, per class ``c``, of the held-out cells with ``c`` left out of the neighbours and the prediction
    (``left_out_agreement``). The query's labels are never read.
    """
    ref_codes, val_codes = np.asarray(ref_codes), np.asarray(val_codes)
    n_classes = val_proba.shape[1]
    temperature = fit_temperature(val_proba, val_codes)
    model_val, model_query = temperature_scale(val_proba, temperature), temperature_scale(query_proba, temperature)
    scale = _knn_votes(ref_space[folds[0][0]], ref_codes[folds[0][0]], n_classes, ref_space[folds[0][1]], k=k)[1]

    held_votes = [_knn_votes(ref_space[train], ref_codes[train], n_classes, ref_space[held], k=k, scale=scale)
                  for train, held in folds]
    knn_val = np.concatenate([votes for votes, _, _ in held_votes])
    without_type = [_NeighboursWithoutType(ref_space[train], ref_codes[train], ref_space[held], k=k)
                    for train, held in folds]

    def agreement(proba: np.ndarray, codes: list[np.ndarray], without: int | None = None) -> np.ndarray:
        if without is not None:  # the most probable class among the others
            proba = proba.copy()
            proba[:, without] = -np.inf
        predicted, start = proba.argmax(1), 0
        parts = []
        for neighbours in codes:  # one block per fold (folds may give different numbers of neighbours)
            parts.append(neighbour_agreement(neighbours, predicted[start:start + len(neighbours)]))
            start += len(neighbours)
        return np.concatenate(parts)

    knn_query, _, query_neighbours = _knn_votes(ref_space, ref_codes, n_classes, query_space, k=k, scale=scale)
    held_out_nll = {}
    for w in KNN_WEIGHTS:
        mix = (1 - w) * model_val + w * knn_val
        held_out_nll[f"{w:g}"] = nll(temperature_scale(mix, fit_temperature(mix, val_codes)), val_codes)
    if weight == "auto":
        weight = min(KNN_WEIGHTS, key=lambda w: held_out_nll[f"{w:g}"])
    weight = float(weight)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"`knn_weight` must be 'auto' or in [0, 1], got {weight}.")
    val_mix = (1 - weight) * model_val + weight * knn_val
    query_mix = (1 - weight) * model_query + weight * knn_query
    left_out = _LeftOutMixes(model_val, weight, n_classes=n_classes, scale=scale)
    left_out_agreement = {}
    for c in np.unique(val_codes):
        neighbours = [search(without=int(c)) for search in without_type]
        if all(n is not None for n in neighbours):
            left_out.keep(int(c), neighbours)
            left_out_agreement[int(c)] = agreement(left_out[int(c)], [codes for _, codes in neighbours],
                                                   without=int(c))
    return {"val_proba": val_mix, "query_proba": query_mix, "left_out": left_out,
            "query_agreement": neighbour_agreement(query_neighbours, query_mix.argmax(1)),
            "held_out_agreement": agreement(val_mix, [codes for _, _, codes in held_votes]),
            "left_out_agreement": left_out_agreement,
            "info": {"knn_weight": weight, "model_temperature": temperature, "n_neighbors": int(k),
                     "distance_scale": scale, "held_out_nll_by_weight": held_out_nll}}


__all__ = ["KNN_WEIGHTS", "joint_pca", "knn_ensemble", "knn_proba", "neighbour_agreement"]
