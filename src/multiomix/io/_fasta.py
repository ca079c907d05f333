"""Reading FASTA files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

__all__ = ["read_fasta"]


def read_fasta(path: str | os.PathLike) -> dict[str, str]:
    r"""Read a (optionally gzipped) FASTA file into an ordered ``{record name: sequence}`` dict.

    The record name is the header up to the first whitespace. Sequences are upper-cased; line breaks inside
    a record are joined. Letters are not validated here (:func:`multiomix.pp.one_hot_sequences` does that).

    Parameters
    ----------
    path
        FASTA file (``.gz`` is read transparently).

    Returns
    -------
    Records in file order.

    Raises
    ------
    ValueError
        If the file has sequence lines before the first header, a record without a name, or a duplicate name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.fa"
    >>> _ = path.write_text(">chr1:0-4 peak\\nACGT\\n>chr1:10-16\\nacg\\nNNT\\n")
    >>> read_fasta(path)
    {'chr1:0-4': 'ACGT', 'chr1:10-16': 'ACGNNT'}
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"FASTA file {str(path)!r} does not exist.")
    opener = gzip.open if path.suffix == ".gz" else open
    records: dict[str, list[str]] = {}
    name = None
    with opener(path, "rt") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith(">"):
                parts = line[1:].split()
                if not parts:
                    raise ValueError(f"{path.name}, line {line_no}: FASTA header without a record name.")
                name = parts[0]
                if name in records:
                    raise ValueError(f"{path.name}, line {line_no}: duplicate FASTA record {name!r}.")
                records[name] = []
            elif name is None:
                raise ValueError(f"{path.name}, line {line_no}: sequence before the first '>' header.")
            else:
                records[name].append(line.upper())
    return {key: "".join(parts) for key, parts in records.items()}
