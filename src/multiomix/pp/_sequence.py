"""One-hot encoding of DNA sequences and reverse-complement augmentation."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyfaidx
from anndata import AnnData

from .._utils import write_obsm

__all__ = ["one_hot_encode", "one_hot_sequences", "reverse_complement", "sequences_from_genome"]

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
    if isinstance(sequences, str | bytes):
        raise TypeError("sequences must be a list of sequences or a {name: sequence} mapping, got a single "
                        f"{type(sequences).__name__} of length {len(sequences)}: wrap one sequence in a list, "
                        "one_hot_encode([sequence]).")
    if isinstance(sequences, Mapping):
        names = list(sequences.keys()) if names is None else list(names)
        sequences = list(sequences.values())
    sequences = list(sequences)
    names = [str(i) for i in range(len(sequences))] if names is None else [str(n) for n in names]
    if len(sequences) == 0:
        raise ValueError("No sequences to encode.")
    if len(names) != len(sequences):
        raise ValueError(f"names has {len(names)} entries for {len(sequences)} sequences; give one name per sequence.")
    for name, seq in zip(names, sequences):
        if not isinstance(seq, str):
            raise TypeError(f"Record {name!r} is a {type(seq).__name__}, not a str; decode bytes first "
                            "(seq.decode('ascii')).")
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        first = len(sequences[0])
        bad = next(i for i, s in enumerate(sequences) if len(s) != first)
        raise ValueError(
            f"Sequences must all have the same length: record {names[0]!r} has {first} bp but record "
            f"{names[bad]!r} has {len(sequences[bad])} bp. Resize the intervals to a common width first."
        )
    length = lengths.pop()
    if length == 0:
        raise ValueError("The sequences are empty (0 bp).")
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

    Parameters
    ----------
    onehot
        One-hot DNA, positions on the second-last axis and A, C, G, T on the last.

    Returns
    -------
    reversed : numpy.ndarray or torch.Tensor
        The reverse complement, of the input's type (a numpy input is copied).

    Examples
    --------
    >>> x = one_hot_encode(["AACG"])
    >>> (reverse_complement(x) == one_hot_encode(["CGTT"])).all()
    np.True_
    """
    if not hasattr(onehot, "shape") or not hasattr(onehot, "ndim"):
        raise TypeError(f"reverse_complement takes a numpy array or a torch tensor, got {type(onehot).__name__}.")
    if onehot.ndim < 2 or onehot.shape[-1] != 4:
        raise ValueError(f"reverse_complement expects one-hot DNA of shape (..., length, 4), got {tuple(onehot.shape)}"
                         " (a channels-first (n, 4, length) array: swap its last two axes first).")
    if isinstance(onehot, np.ndarray):
        return onehot[..., ::-1, ::-1].copy()
    return onehot.flip(-2).flip(-1)


def _fetch_intervals(
    genome: str | os.PathLike | Mapping[str, str] | pyfaidx.Fasta,
    names: Sequence[str],
    chroms: Sequence[str],
    starts: Sequence[int],
    ends: Sequence[int],
) -> list[str]:
    """Read each 0-based, end-exclusive interval from a genome (indexed FASTA, open pyfaidx file or dict)."""
    from ..io._fasta import open_fasta

    if isinstance(genome, Mapping):
        fetch = {str(k): v for k, v in genome.items()}  # chromosome names compared as text (obs may hold 1 or "1")
        lengths = {k: len(v) for k, v in fetch.items()}
    else:
        fasta = genome if isinstance(genome, pyfaidx.Fasta) else open_fasta(genome)
        lengths = {k: int(v.rlen) for k, v in fasta.faidx.index.items()}
        fetch = fasta
    out = []
    for name, chrom, start, end in zip(names, chroms, starts, ends):
        if any(pd.isna(v) for v in (start, end)):
            raise ValueError(f"Region {name!r}: the start or end coordinate is missing ({start}, {end}).")
        chrom = str(chrom)
        if chrom not in lengths:
            known = list(lengths)
            raise KeyError(
                f"Region {name!r}: chromosome {chrom!r} is not in the genome FASTA ({len(known)} records: "
                f"{known[:5]}{'...' if len(known) > 5 else ''})."
            )
        if any(float(v) != int(float(v)) for v in (start, end)):
            raise ValueError(f"Region {name!r}: interval {chrom}:{start}-{end} has non-whole coordinates; "
                             "intervals are 0-based, end-exclusive whole numbers.")
        start, end = int(start), int(end)
        if not 0 <= start < end <= lengths[chrom]:
            raise ValueError(
                f"Region {name!r}: interval {chrom}:{start}-{end} is outside the chromosome (length "
                f"{lengths[chrom]}) or empty; intervals are 0-based, end-exclusive."
            )
        out.append(str(fetch[chrom][start:end]))
    return out


def _minus_strand(adata: AnnData, strand_key: str | None) -> np.ndarray:
    """Boolean mask of the regions on the ``-`` strand (all ``False`` without a strand column)."""
    if strand_key is None or strand_key not in adata.obs.columns:
        return np.zeros(adata.n_obs, dtype=bool)
    strand = adata.obs[strand_key].astype(str).to_numpy()
    bad = ~np.isin(strand, ("+", "-", "."))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Region {adata.obs_names[i]!r}: strand {strand[i]!r} in .obs[{strand_key!r}]; expected '+', '-' or '.'."
        )
    return strand == "-"


def one_hot_sequences(
    adata: AnnData,
    *,
    sequence_key: str | None = "sequence",
    fasta: str | os.PathLike | Mapping[str, str] | None = None,
    chrom_key: str = "chrom",
    start_key: str = "start",
    end_key: str = "end",
    strand_key: str | None = "strand",
    key_added: str = "dna_onehot",
    dtype=np.uint8,
    copy: bool = False,
) -> AnnData | None:
    """One-hot encode each region's DNA into ``.obsm[key_added]`` ``(n_regions, L, 4)``.

    The sequences come either from a column of ``.obs`` (``sequence_key``) or from a genome FASTA read at
    the regions' intervals (``fasta`` with ``.obs[chrom_key, start_key, end_key]``, 0-based end-exclusive as in
    BED). A genome file is read by interval through its index (:func:`multiomix.io.open_fasta`), never whole.
    Regions on the ``-`` strand (``.obs[strand_key]``, when that column exists) are reverse-complemented.
    ``N`` becomes an all-zero row; any other letter than A, C, G, T, N raises a ``ValueError`` naming the
    region. All regions must have the same length. The AnnData is left unchanged on error. To build the
    AnnData from a genome FASTA and a BED file, see :func:`multiomix.pp.sequences_from_genome`.

    Parameters
    ----------
    adata
        Regions as observations.
    sequence_key
        Column of ``.obs`` holding the sequences (used when ``fasta`` is ``None``).
    fasta
        Genome FASTA path (uncompressed or bgzip), an open :class:`pyfaidx.Fasta`, or a ``{chrom: sequence}``
        mapping.
    chrom_key, start_key, end_key
        Interval columns of ``.obs`` (with ``fasta``).
    strand_key
        Column of ``.obs`` with ``+``, ``-`` or ``.`` (unstranded, read as ``+``); ignored when absent or ``None``.
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
        for key in (chrom_key, start_key, end_key):
            if key not in adata.obs.columns:
                raise KeyError(f"Interval column {key!r} not found in .obs; columns: {list(adata.obs.columns)}.")
        sequences = _fetch_intervals(
            fasta, list(adata.obs_names), adata.obs[chrom_key].astype(str).tolist(), adata.obs[start_key].tolist(),
            adata.obs[end_key].tolist(),
        )
    else:
        if sequence_key is None or sequence_key not in adata.obs.columns:
            raise KeyError(
                f"Sequence column {sequence_key!r} not found in .obs (columns: {list(adata.obs.columns)}); pass "
                "`sequence_key=` or `fasta=` with interval columns."
            )
        missing = adata.obs[sequence_key].isna().to_numpy()
        if missing.any():
            raise ValueError(f".obs[{sequence_key!r}] has {int(missing.sum())} missing sequences (e.g. "
                             f"{adata.obs_names[missing][0]!r}); remove those rows or fill them with N.")
        sequences = adata.obs[sequence_key].astype(str).tolist()
    minus = _minus_strand(adata, strand_key)
    onehot = one_hot_encode(sequences, names=list(adata.obs_names), dtype=dtype)
    if minus.any():
        onehot[minus] = reverse_complement(onehot[minus])
    adata = adata.copy() if copy else adata
    write_obsm(adata, key_added, onehot)
    return adata if copy else None


def sequences_from_genome(
    fasta: str | os.PathLike | pyfaidx.Fasta,
    bed: str | os.PathLike | pd.DataFrame,
    *,
    length: int | None = None,
    key_added: str = "dna_onehot",
    dtype=np.uint8,
) -> AnnData:
    r"""Read the DNA of BED regions from a genome FASTA into a sequence AnnData (regions x one-hot DNA).

    The result has one observation per region, with ``.obs['chrom', 'start', 'end']`` (and ``'strand'``, ``'score'``
    and a data frame's other columns when the BED has them), named by the BED ``name`` column when its names are
    unique, else ``chrom:start-end``; and ``.obsm[key_added]`` ``(n_regions, L, 4)`` in A, C, G, T order, as
    :func:`multiomix.pp.one_hot_sequences` writes it and :meth:`multiomix.models.GenomicInterpreter.setup_anndata`
    reads it. The genome is read by interval through its ``.fai`` index (:func:`multiomix.io.open_fasta`), so only
    the regions are loaded. Regions on the ``-`` strand are reverse-complemented. ``N`` becomes an all-zero row.
    ``.X`` is empty: add the targets to ``.obsm`` (profiles) or build the AnnData with them as ``.X``.

    Parameters
    ----------
    fasta
        Genome FASTA (uncompressed or bgzip), or an open :class:`pyfaidx.Fasta` to reuse between calls.
    bed
        BED file (BED3 to BED6, 0-based end-exclusive), or a data frame with ``chrom``, ``start``, ``end`` and
        optional ``name``, ``score``, ``strand`` columns (e.g. from :func:`multiomix.io.read_bed`).
    length
        Required width of every region; ``None`` only requires that all regions have the same width.
    key_added
        ``.obsm`` key of the one-hot DNA.
    dtype
        ``uint8`` (default, compact) or ``float32``.

    Returns
    -------
    The sequence :class:`~anndata.AnnData`.

    Raises
    ------
    KeyError
        If a region's chromosome is not in the FASTA.
    ValueError
        If a region lies outside its chromosome, widths differ (or differ from ``length``), a strand is not
        ``+``, ``-`` or ``.``, or a sequence has letters other than A, C, G, T, N (either case). The message
        names the region.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "genome.fa").write_text(">chr1\nNNACGTTT\nGCAN\n")
    >>> _ = (folder / "peaks.bed").write_text("chr1\t2\t6\tp1\t0\t+\nchr1\t6\t10\tp2\t0\t-\n")
    >>> adata = sequences_from_genome(folder / "genome.fa", folder / "peaks.bed", length=4)
    >>> adata.obs_names.tolist(), adata.obsm["dna_onehot"].shape
    (['p1', 'p2'], (2, 4, 4))
    >>> "".join("ACGT"[i] for i in adata.obsm["dna_onehot"][1].argmax(1))  # chr1:6-10 is TTGC, reverse complement
    'GCAA'

    With targets, e.g. one value per region, then train the Genomic Interpreter:

    >>> import anndata as ad, numpy as np, multiomix as mx
    >>> targets = np.array([1.0, 0.0], dtype="float32")[:, None]
    >>> adata = ad.AnnData(X=targets, obs=adata.obs, obsm=adata.obsm)
    >>> mx.models.GenomicInterpreter.setup_anndata(adata, sequence_key="dna_onehot")  # doctest: +SKIP
    """
    from ..io._fasta import BED_COLUMNS, read_bed

    if isinstance(bed, pd.DataFrame):
        regions = bed.copy()
        missing = [c for c in ("chrom", "start", "end") if c not in regions.columns]
        if missing:
            raise KeyError(f"The BED data frame lacks columns {missing}; it has {list(regions.columns)}.")
        # the BED columns first, then the user's own (labels kept beside the intervals stay with them)
        columns = [c for c in BED_COLUMNS if c in regions.columns]
        regions = regions[columns + [c for c in regions.columns if c not in columns]].reset_index(drop=True)
    else:
        regions = read_bed(bed)
    if len(regions) == 0:
        raise ValueError("No regions in the BED.")
    regions["chrom"] = regions["chrom"].astype(str)
    for column in ("start", "end"):
        values = pd.to_numeric(regions[column], errors="coerce")
        bad = np.flatnonzero((values.isna() | (values != values.round())).to_numpy())
        if len(bad):
            raise ValueError(f"Region row {int(bad[0])}: {column} {regions[column].iloc[bad[0]]} is not an integer "
                             f"({len(bad)} such rows); BED coordinates are whole, 0-based positions.")
        regions[column] = values.astype(np.int64)
    coords = regions["chrom"] + ":" + regions["start"].astype(str) + "-" + regions["end"].astype(str)
    if "name" in regions.columns and regions["name"].astype(str).is_unique and (regions["name"] != ".").all():
        index = regions.pop("name").astype(str)
    else:
        regions = regions.drop(columns="name", errors="ignore")
        index = coords
    regions.index = pd.Index(index.to_numpy(), name="region")
    widths = (regions["end"] - regions["start"]).to_numpy()
    expected = int(widths[0]) if length is None else int(length)
    bad = np.flatnonzero(widths != expected)
    if bad.size:
        i = int(bad[0])
        what = "the first region's" if length is None else "the required length"
        raise ValueError(
            f"Region {regions.index[i]!r} ({coords.iloc[i]}) is {widths[i]} bp but {what} is {expected} bp; "
            f"{bad.size} region(s) differ. One-hot DNA needs one width: resize the intervals first (e.g. around "
            "their centres)."
        )
    adata = AnnData(obs=regions)
    one_hot_sequences(adata, sequence_key=None, fasta=fasta, key_added=key_added, dtype=dtype)
    return adata
