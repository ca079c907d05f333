"""Reading FASTA files (indexed with pyfaidx) and BED interval files."""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyfaidx

__all__ = ["open_fasta", "read_bed", "read_fasta"]

BED_COLUMNS = ("chrom", "start", "end", "name", "score", "strand")
STRANDS = ("+", "-", ".")


def _check_path(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file {str(path)!r} does not exist.")
    if path.is_dir():
        raise IsADirectoryError(f"{what} path {str(path)!r} is a folder, not a file.")
    return path


def _is_plain_gzip(path: Path) -> bool:
    """Whether the file is gzip-compressed but not in the block (BGZF) format that an index can seek in."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    is_gzip = head[:2] == b"\x1f\x8b"
    is_bgzf = is_gzip and len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC"
    return bool(is_gzip and not is_bgzf)


def open_fasta(path: str | os.PathLike, *, index_beside: bool = True) -> pyfaidx.Fasta:
    r"""Open a FASTA file for random access by interval, with a pyfaidx (samtools ``.fai``) index.

    Only the requested intervals are read from disk, so a whole genome is never loaded in memory. The index is
    read from ``<fasta>.fai`` when it exists and is up to date, else built (one pass over the file): beside the
    FASTA when ``index_beside`` and the folder is writable (as ``samtools faidx`` does, and reused next time),
    otherwise in a temporary folder. Sequences are returned as stored (soft-masked lower case is kept).

    Parameters
    ----------
    path
        FASTA file, uncompressed or compressed with ``bgzip`` (reading BGZF needs Biopython). Within a record all
        lines but the last must have the same length, as in any genome FASTA.
    index_beside
        Write a missing index beside the FASTA when possible.

    Returns
    -------
    A :class:`pyfaidx.Fasta` with raw string access: ``fasta[chrom][start:end]`` (0-based, end-exclusive).

    Raises
    ------
    ValueError
        If the file is gzip- but not bgzip-compressed, has lines of unequal length inside a record, text before
        the first header, or a duplicate record name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "genome.fa"
    >>> _ = path.write_text(">chr1\nACGTACGTAC\nGTAC\n>chr2\nNNNNacgt\n")
    >>> genome = open_fasta(path)
    >>> genome["chr1"][8:12], len(genome["chr2"])
    ('ACGT', 8)
    """
    path = _check_path(path, "FASTA")
    if _is_plain_gzip(path):
        raise ValueError(
            f"{path.name} is gzip-compressed; interval access needs an uncompressed FASTA or one compressed with "
            f"bgzip (e.g. `gunzip -c {path.name} | bgzip > {path.stem}.bgz`)."
        )
    fai = Path(f"{path}.fai")
    fresh = fai.exists() and fai.stat().st_mtime >= path.stat().st_mtime
    options = {"as_raw": True, "strict_bounds": True, "duplicate_action": "stop"}
    try:
        if fresh or (index_beside and os.access(path.parent, os.W_OK)):
            return pyfaidx.Fasta(str(path), **options)
        with tempfile.TemporaryDirectory() as tmp:  # the index is read into memory when the file is opened
            index = Path(tmp) / f"{path.name}.fai"
            gzi = Path(tmp) / f"{path.name}.gzi"
            return pyfaidx.Fasta(str(path), indexname=str(index), gzi_indexname=str(gzi), **options)
    except pyfaidx.FastaIndexingError as err:
        raise ValueError(f"{path.name} cannot be indexed: {err}") from err
    except ValueError as err:
        if "Duplicate key" in str(err):
            raise ValueError(f"{path.name}: duplicate FASTA record name ({err}).") from err
        raise


def read_fasta(path: str | os.PathLike) -> dict[str, str]:
    r"""Read a (optionally gzipped) FASTA file into an ordered ``{record name: sequence}`` dict.

    The record name is the header up to the first whitespace. Sequences are upper-cased; the lines of a record
    are joined whatever their widths (blank lines and Windows line ends are ignored). Letters are not validated
    here (:func:`multiomix.pp.one_hot_sequences` does that). The whole file is read into memory; to read
    intervals of a large genome without loading it, use :func:`open_fasta` or
    :func:`multiomix.pp.sequences_from_genome`.

    Parameters
    ----------
    path
        FASTA file (``.gz``, plain gzip or bgzip, is read transparently).

    Returns
    -------
    ``{name: sequence}``, records in file order.

    Raises
    ------
    ValueError
        If the file has sequence lines before the first header, a header without a name, or a duplicate record
        name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.fa"
    >>> _ = path.write_text(">chr1:0-4 peak\nACGT\n>chr1:10-16\nacg\nNNT\n")
    >>> read_fasta(path)
    {'chr1:0-4': 'ACGT', 'chr1:10-16': 'ACGNNT'}
    """
    path = _check_path(path, "FASTA")
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    records: dict[str, str] = {}
    name, lines = None, []

    def close_record() -> None:  # each record is joined when it ends: one record's lines are held at a time
        if name is not None:
            records[name] = "".join(lines).upper()

    with opener(path, "rt") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                fields = line[1:].split(maxsplit=1)
                if not fields:
                    raise ValueError(f"{path.name}, line {number}: a header ('>') without a record name.")
                close_record()
                if fields[0] in records:
                    raise ValueError(f"{path.name}, line {number}: duplicate FASTA record name {fields[0]!r}.")
                name, lines = fields[0], []
            elif name is None:
                raise ValueError(f"{path.name}, line {number}: sequence text before the first '>' header.")
            else:
                lines.append(line)
    close_record()
    return records


def read_bed(path: str | os.PathLike) -> pd.DataFrame:
    r"""Read a BED file of regions into a data frame (0-based, end-exclusive coordinates, as BED defines them).

    Columns: ``chrom``, ``start``, ``end`` and, when present, ``name``, ``score`` and ``strand`` (BED3 to BED6;
    further columns are ignored). ``track``, ``browser`` and ``#`` lines are skipped. A ``.gz`` file is read
    transparently.

    Parameters
    ----------
    path
        BED file, tab-separated.

    Returns
    -------
    A :class:`~pandas.DataFrame` with one row per region, in file order.

    Raises
    ------
    ValueError
        If a line has fewer than 3 fields or another number of fields (up to 6) than the first region line,
        coordinates that are not integers, ``start < 0``, ``end <= start``, or a strand other than ``+``, ``-``
        or ``.``; the message gives the line.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "peaks.bed"
    >>> _ = path.write_text("chr1\t10\t14\tpeak1\t0\t-\nchr2\t0\t4\tpeak2\t0\t+\n")
    >>> read_bed(path)
      chrom  start  end   name  score strand
    0  chr1     10   14  peak1      0      -
    1  chr2      0    4  peak2      0      +
    """
    path = _check_path(path, "BED")
    rows, n_fields, line_nos = [], None, []
    # opened once (a pipe cannot be read twice); gzip or BGZF whatever the suffix (.gz, .bgz, none)
    with open(path, "rb") as raw_handle:
        compressed = raw_handle.peek(2)[:2] == b"\x1f\x8b"
        binary = gzip.GzipFile(fileobj=raw_handle) if compressed else raw_handle
        handle = io.TextIOWrapper(binary, encoding="utf-8")
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n\r")
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.split("\t")
            while len(fields) > 3 and not fields[-1].strip():  # trailing tabs add no column
                fields.pop()
            if len(fields) < 3:
                raise ValueError(f"{path.name}, line {line_no}: a BED line needs chrom, start and end (tab-separated).")
            fields = fields[: len(BED_COLUMNS)]
            if n_fields is None:
                n_fields = len(fields)
            elif len(fields) != n_fields:  # columns of one region would be read as another's (strand lost)
                raise ValueError(
                    f"{path.name}, line {line_no}: {len(fields)} fields, but line {line_nos[0]} has {n_fields} "
                    f"({', '.join(BED_COLUMNS[:n_fields])}); every line of a BED file needs the same columns."
                )
            rows.append(fields)
            line_nos.append(line_no)
    if not rows:
        raise ValueError(f"{path.name} has no regions.")
    frame = pd.DataFrame(rows, columns=list(BED_COLUMNS[:n_fields]))
    for column in ("start", "end"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values != values.round())
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path.name}, line {line_nos[i]}: {column} {frame[column].iloc[i]!r} is not an integer.")
        frame[column] = values.astype(np.int64)
    bad = (frame["start"] < 0) | (frame["end"] <= frame["start"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{path.name}, line {line_nos[i]}: interval {frame['start'].iloc[i]}-{frame['end'].iloc[i]} is empty or "
            "negative; BED intervals are 0-based and end-exclusive (start >= 0, end > start)."
        )
    if "score" in frame.columns:
        frame["score"] = pd.to_numeric(frame["score"].replace(".", np.nan), errors="coerce")
    if "strand" in frame.columns:
        bad = ~frame["strand"].isin(STRANDS)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{path.name}, line {line_nos[i]}: strand {frame['strand'].iloc[i]!r}; expected '+', '-' or '.'."
            )
    return frame
