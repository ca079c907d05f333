"""Gene-set (GMT) files, for knowledge-based feature groups."""

from __future__ import annotations

import os

__all__ = ["read_gmt"]


def read_gmt(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a GMT gene-set file into ``{set name: [genes]}``.

    Each line holds a set's name, a description and its genes, separated by tabs (the MSigDB format). Empty
    fields are dropped and a gene listed twice in a set is kept once.

    Parameters
    ----------
    path
        The ``.gmt`` file.

    Returns
    -------
    gene_sets : dict
        Set name to genes, in file order; pass it as ``groups`` to :func:`multiomix.tl.fit_crossattomics`.

    Examples
    --------
    >>> import multiomix as mx
    >>> sets = mx.io.read_gmt("h.all.v2024.1.Hs.symbols.gmt")  # doctest: +SKIP
    >>> mx.tl.fit_crossattomics(mdata, groups={"rna": sets, "methylation": 10})  # doctest: +SKIP
    """
    gene_sets: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip():
                continue
            if len(fields) < 3:
                raise ValueError(f"{os.fspath(path)!r} line {number}: a GMT line needs a name, a description and at "
                                 f"least one gene, separated by tabs; got {len(fields)} field(s).")
            name = fields[0].strip()
            if name in gene_sets:
                raise ValueError(f"{os.fspath(path)!r} line {number}: gene set {name!r} appears twice.")
            genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
            if not genes:
                raise ValueError(f"{os.fspath(path)!r} line {number}: gene set {name!r} lists no gene.")
            gene_sets[name] = genes
    if not gene_sets:
        raise ValueError(f"{os.fspath(path)!r} holds no gene set.")
    return gene_sets
