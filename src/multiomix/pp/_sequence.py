"""One-hot encoding of DNA sequences and reverse-complement augmentation."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from anndata import AnnData

from .._utils import write_obsm

__all__ = ["one_hot_encode", "one_hot_sequences", "reverse_complement"]

ALPHABET = "ACGT"
_LOOKUP = np.full(256, -2, dtype=np.int8)  # -2: not allowed
for _i, _base in enumerate(ALPHABET):
    _LOOKUP[ord(_base)] = _i
    _LOOKUP[ord(_base.lower())] = _i
_LOOKUP[ord("N")] = _LOOKUP[ord("n")] = -1  # -1: unknown base, all-zero row


def one_hot_encode(
    sequences: Sequence[str] | Mapping[str, str], *, names: Sequence[str] | None = None, dtype=np.uint8
) -> np.ndarray:
    """One-hot encode equal-length DNA sequences to ``(n, L, 4)`` in A, C, G, T order.

    ``N`` (either case) becomes an all-zero row; any other letter raises an error naming the record.

    Parameters
    ----------
    sequences
        Sequences, or a ``{name: sequence}`` mapping (e.g. from :func:`multiomix.io.read_fasta`).
    names
        Record names used in error messages (default: the mapping's keys or the positions).
    dtype
        Output dtype (``uint8`` saves memory; ``float32`` feeds a network directly).

    Returns
    -------
    ``(n, L, 4)`` array.

    Examples
    --------
    >>> one_hot_encode(["ACGN"])[0]
    array([[1, 0, 0, 0],
           [0, 1, 0, 0],
           [0, 0, 1, 0],
           [0, 0, 0, 0]], dtype=uint8)
    """
    if isinstance(sequences, Mapping):
        names = list(sequences.keys()) if names is None else list(names)
        sequences = list(sequences.values())
    sequences = list(sequences)
    names = [str(i) for i in range(len(sequences))] if names is None else [str(n) for n in names]
    if len(sequences) == 0:
        raise ValueError("No sequences to encode.")
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        first = len(sequences[0])
        bad = next(i for i, s in enumerate(sequences) if len(s) != first)
        raise ValueError(
            f"Sequences must all have the same length: record {names[0]!r} has {first} bp but record "
            f"{names[bad]!r} has {len(sequences[bad])} bp. Resize the intervals to a common width first."
        )
    length = lengths.pop()
    out = np.zeros((len(sequences), length, 4), dtype=dtype)
    eye = np.eye(4, dtype=dtype)
    for i, seq in enumerate(sequences):
        try:
            raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError as err:
            raise ValueError(
                f"Record {names[i]!r} contains non-ASCII characters; expected only A, C, G, T, N."
            ) from err
        codes = _LOOKUP[raw]
        if (codes == -2).any():
            pos = int(np.flatnonzero(codes == -2)[0])
            letters = sorted({chr(c) for c in raw[codes == -2]})
            raise ValueError(
                f"Record {names[i]!r} contains letters {letters} (first at position {pos}); only A, C, G, T and N "
                "(unknown base) are allowed."
            )
        known = codes >= 0
        out[i, known] = eye[codes[known]]
    return out


def reverse_complement(onehot):
    """Reverse complement one-hot DNA ``(..., L, 4)`` in A, C, G, T order (numpy array or torch tensor).

    Complementing swaps A<->T and C<->G, which in A, C, G, T order is reversing the channel axis.

    Examples
    --------
    >>> x = one_hot_encode(["AACG"])
    >>> (reverse_complement(x) == one_hot_encode(["CGTT"])).all()
    np.True_
    """
    if isinstance(onehot, np.ndarray):
        return onehot[..., ::-1, ::-1].copy()
    return onehot.flip(-2).flip(-1)


def _sequences_from_fasta(
    adata: AnnData, fasta: str | os.PathLike | Mapping[str, str], chrom_key: str, start_key: str, end_key: str
) -> list[str]:
    from ..io._fasta import read_fasta

    genome = fasta if isinstance(fasta, Mapping) else read_fasta(fasta)
    for key in (chrom_key, start_key, end_key):
        if key not in adata.obs.columns:
            raise KeyError(f"Interval column {key!r} not found in .obs; columns: {list(adata.obs.columns)}.")
    out = []
    for name, chrom, start, end in zip(
        adata.obs_names, adata.obs[chrom_key].astype(str), adata.obs[start_key], adata.obs[end_key]
    ):
        if chrom not in genome:
            raise KeyError(
                f"Region {name!r}: chromosome {chrom!r} is not in the FASTA (records: {list(genome)[:5]}...)."
            )
        start, end = int(start), int(end)
        if not 0 <= start < end <= len(genome[chrom]):
            raise ValueError(
                f"Region {name!r}: interval {chrom}:{start}-{end} is outside the chromosome (length "
                f"{len(genome[chrom])}) or empty; intervals are 0-based, end-exclusive."
            )
        out.append(genome[chrom][start:end])
    return out


def one_hot_sequences(
    adata: AnnData,
    *,
    sequence_key: str | None = "sequence",
    fasta: str | os.PathLike | Mapping[str, str] | None = None,
    chrom_key: str = "chrom",
    start_key: str = "start",
    end_key: str = "end",
    key_added: str = "dna_onehot",
    dtype=np.uint8,
    copy: bool = False,
) -> AnnData | None:
    """One-hot encode each region's DNA into ``.obsm[key_added]`` ``(n_regions, L, 4)``.

    The sequences come either from a column of ``.obs`` (``sequence_key``) or from a genome FASTA sliced at
    the regions' intervals (``fasta`` with ``.obs[chrom_key, start_key, end_key]``, 0-based end-exclusive).
    ``N`` becomes an all-zero row; any other letter than A, C, G, T, N raises a ``ValueError`` naming the
    region. The AnnData is left unchanged on error.

    Parameters
    ----------
    adata
        Regions as observations.
    sequence_key
        Column of ``.obs`` holding the sequences (used when ``fasta`` is ``None``).
    fasta
        Genome FASTA path, or a ``{chrom: sequence}`` mapping.
    chrom_key, start_key, end_key
        Interval columns of ``.obs`` (with ``fasta``).
    key_added
        ``.obsm`` key to write.
    dtype
        ``uint8`` (default, compact) or ``float32``.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The AnnData copy when ``copy=True``, else ``None``.

    Examples
    --------
    >>> import anndata as ad, pandas as pd
    >>> adata = ad.AnnData(obs=pd.DataFrame({"sequence": ["ACGT", "NNAT"]}, index=["r1", "r2"]))
    >>> one_hot_sequences(adata)
    >>> adata.obsm["dna_onehot"].shape
    (2, 4, 4)
    """
    if fasta is not None:
        sequences = _sequences_from_fasta(adata, fasta, chrom_key, start_key, end_key)
    else:
        if sequence_key is None or sequence_key not in adata.obs.columns:
            raise KeyError(
                f"Sequence column {sequence_key!r} not found in .obs (columns: {list(adata.obs.columns)}); pass "
                "`sequence_key=` or `fasta=` with interval columns."
            )
        sequences = adata.obs[sequence_key].astype(str).tolist()
    onehot = one_hot_encode(sequences, names=list(adata.obs_names), dtype=dtype)
    adata = adata.copy() if copy else adata
    write_obsm(adata, key_added, onehot)
    return adata if copy else None
