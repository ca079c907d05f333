"""Read bags of whole-slide-image tile embeddings (one h5 file per slide) into AnnData."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .._logging import logger
from .._utils import check_whole, label_text

__all__ = ["read_tile_bags", "sample_tile_bags", "tile_bags_from_table"]

_H5_SUFFIXES = (".h5", ".hdf5")
#: numeric table columns that are bookkeeping, not embedding values (compared in lower case)
_NOT_EMBEDDING_NAMES = frozenset({"tile", "tile_id", "tile_index", "tile_idx", "x", "y", "row", "col", "column",
                                  "level", "index"})


def _list_files(paths_or_folder: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(paths_or_folder, str | os.PathLike):
        path = Path(paths_or_folder)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _H5_SUFFIXES and p.is_file())
            if not files:
                raise FileNotFoundError(f"No .h5/.hdf5 files in folder {str(path)!r}.")
            return files
        files = [path]
    else:
        files = [Path(p) for p in paths_or_folder]
    if not files:
        raise ValueError("No tile-bag files given.")
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Tile-bag files not found: {missing}.")
    return files


def read_tile_bags(
    paths_or_folder: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    dataset: str = "features",
    coords_dataset: str | None = "coords",
    max_tiles: int | None = None,
    random_state: int | None = 0,
    empty: str = "raise",
) -> AnnData:
    """Read one h5 file of tile embeddings per slide into an AnnData of bags.

    The layout is the one slide pipelines (e.g. CLAM-style feature extraction) write: per slide a file
    ``<slide>.h5`` with a ``(n_tiles, dim)`` dataset of tile embeddings from a pathology foundation model
    and an ``(n_tiles, 2)`` dataset of tile coordinates. A leading singleton axis (``(1, n_tiles, dim)``)
    is accepted.

    Parameters
    ----------
    paths_or_folder
        A folder (every ``*.h5``/``*.hdf5`` file in it, sorted by name), one file, or a list of files.
    dataset
        Name of the embedding dataset in each file.
    coords_dataset
        Name of the coordinate dataset, or ``None`` to skip coordinates. When given, every file must
        have it.
    max_tiles
        Keep at most this many tiles per slide (a random subset, in file order); ``None`` keeps all.
    random_state
        Seed for the ``max_tiles`` subset.
    empty
        What to do with a slide whose file holds no tiles (e.g. tissue detection found none): ``"raise"`` an
        error naming it, or ``"skip"`` it (a warning names the slides left out).

    Returns
    -------
    AnnData with one observation per slide (``obs_names`` = file stems; ``obs['path']``,
    ``obs['n_tiles']``), ``X`` = mean tile embedding, ``obsm['tiles']`` ``(n, n_tiles, dim)`` zero-padded
    to the largest bag, ``obsm['tile_mask']`` ``(n, n_tiles)`` boolean (``True`` = real tile), and
    ``obsm['coords']`` ``(n, n_tiles, 2)`` when coordinates are read. Place it beside an ``rna``
    modality in a MuData whose observations are the same slides/patients.

    Examples
    --------
    >>> import multiomix as mx
    >>> wsi = mx.io.read_tile_bags("features/", max_tiles=500)  # doctest: +SKIP
    >>> wsi.obsm["tiles"].shape  # doctest: +SKIP
    (120, 500, 1024)
    """
    import h5py

    if max_tiles is not None and max_tiles < 1:
        raise ValueError(f"max_tiles must be a positive integer or None, got {max_tiles}.")
    if empty not in ("raise", "skip"):
        raise ValueError(f"empty must be 'raise' or 'skip', got {empty!r}.")
    files = _list_files(paths_or_folder)
    names = [p.stem for p in files]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"Several files share the slide names {dupes}; slide names (file stems) must be unique.")
    rng = np.random.default_rng(random_state)
    bags, coords, width, kept, skipped = [], [], None, [], []
    for path in files:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise KeyError(f"Dataset {dataset!r} not found in {path.name!r}; it has {sorted(f.keys())}.")
            feats = np.asarray(f[dataset][()])
            xy = None
            if coords_dataset is not None:
                if coords_dataset not in f:
                    raise KeyError(
                        f"Dataset {coords_dataset!r} not found in {path.name!r}; it has {sorted(f.keys())}. "
                        "Pass coords_dataset=None to read the embeddings only."
                    )
                xy = np.asarray(f[coords_dataset][()])
        if feats.ndim == 3 and feats.shape[0] == 1:
            feats = feats[0]
        if feats.ndim != 2:
            raise ValueError(f"{path.name!r}: dataset {dataset!r} must be (n_tiles, dim), got shape {feats.shape}.")
        if feats.shape[0] == 0:
            if empty == "skip":
                skipped.append(path.stem)
                continue
            raise ValueError(f"{path.name!r}: dataset {dataset!r} has no tiles; pass empty='skip' to leave such "
                             "slides out.")
        if not np.issubdtype(feats.dtype, np.number) or not np.isfinite(feats).all():
            raise ValueError(f"{path.name!r}: dataset {dataset!r} must be finite numbers.")
        if width is None:
            width, first = feats.shape[1], path.name
        elif feats.shape[1] != width:
            raise ValueError(
                f"{path.name!r}: tile embeddings are {feats.shape[1]} wide but {first!r} has {width}; all slides "
                "must come from the same feature extractor."
            )
        if xy is not None:
            if xy.ndim == 3 and xy.shape[0] == 1:
                xy = xy[0]
            if xy.ndim != 2 or xy.shape != (feats.shape[0], 2):
                raise ValueError(
                    f"{path.name!r}: dataset {coords_dataset!r} has shape {xy.shape}; expected ({feats.shape[0]}, 2) "
                    f"to match {feats.shape[0]} tiles."
                )
        if max_tiles is not None and feats.shape[0] > max_tiles:
            keep = np.sort(rng.choice(feats.shape[0], size=max_tiles, replace=False))
            feats = feats[keep]
            xy = xy[keep] if xy is not None else None
        bags.append(feats.astype(np.float32))
        coords.append(xy)
        kept.append(path)
    if skipped:
        if not bags:
            raise ValueError(f"No slide has tiles (all {len(skipped)} files hold an empty {dataset!r}).")
        logger.warning(f"left out {len(skipped)} slide(s) without tiles: {skipped}")
    files, names = kept, [p.stem for p in kept]

    obs = pd.DataFrame({"path": [str(p) for p in files]}, index=pd.Index(names, name="slide"))
    var_names = [f"{dataset}_{j}" for j in range(width)]
    uns = {"dataset": dataset, "coords_dataset": coords_dataset or "", "max_tiles": max_tiles or 0}
    return _bags_to_anndata(bags, coords if coords_dataset is not None else None, obs=obs, var_names=var_names,
                            uns=uns)


def _bags_to_anndata(bags: list[np.ndarray], coords: list[np.ndarray] | None, *, obs: pd.DataFrame,
                     var_names: list[str], uns: dict) -> AnnData:
    """One observation per bag: X = mean tile, obsm 'tiles' zero-padded, 'tile_mask', and 'coords' when given."""
    n_tiles = np.array([b.shape[0] for b in bags])
    tiles = np.zeros((len(bags), int(n_tiles.max()), len(var_names)), dtype=np.float32)
    mask = np.zeros(tiles.shape[:2], dtype=bool)
    for i, bag in enumerate(bags):
        tiles[i, : len(bag)] = bag
        mask[i, : len(bag)] = True
    obs = obs.assign(n_tiles=n_tiles)
    adata = AnnData(X=tiles.sum(1) / n_tiles[:, None], obs=obs, var=pd.DataFrame(index=var_names))
    adata.obsm["tiles"] = tiles
    adata.obsm["tile_mask"] = mask
    if coords is not None:
        xy_all = np.zeros((*tiles.shape[:2], coords[0].shape[1]), dtype=np.float32)
        for i, xy in enumerate(coords):
            xy_all[i, : len(xy)] = xy
        adata.obsm["coords"] = xy_all
    adata.uns["tile_bags"] = uns
    return adata


def tile_bags_from_table(
    table: pd.DataFrame,
    *,
    patient_key: str,
    feature_columns: Sequence[str] | None = None,
    coords_columns: Sequence[str] | None = None,
    max_tiles: int | None = None,
    random_state: int | None = 0,
) -> AnnData:
    """Build the AnnData of bags that :func:`~multiomix.io.read_tile_bags` reads, from a table with one row per tile.

    For tile embeddings kept as a table (CSV, parquet: ``patient, tile, f0 ... f1023``) rather than one h5 file
    per slide. By default every numeric column is an embedding feature except the patient, the coordinates and
    columns named like a tile id or a coordinate (``tile``, ``tile_id``, ``x``, ``y``...; left out with a warning).
    Patients come in the order of their first tile; their ids become ``obs_names`` as text (an integer id ``7`` is
    ``'7'``, also from a float column holding whole numbers). The table is not modified.

    Parameters
    ----------
    table
        One row per tile.
    patient_key
        Column naming the patient (or slide) of each tile; every tile of a bag shares it. Rows without a
        patient are an error.
    feature_columns
        Columns of the embedding, in order (default: every numeric column but ``patient_key`` and
        ``coords_columns``).
    coords_columns
        Two columns of tile coordinates (e.g. ``["x", "y"]``) for ``obsm['coords']``; ``None`` reads none.
    max_tiles
        Keep at most this many tiles per patient (a random subset, in table order); ``None`` keeps all.
    random_state
        Seed for the ``max_tiles`` subset.

    Returns
    -------
    AnnData with one observation per patient (``obs['n_tiles']``), ``X`` = mean tile embedding, ``var_names``
    = the feature columns, ``obsm['tiles']`` zero-padded to the largest bag, ``obsm['tile_mask']`` and, with
    ``coords_columns``, ``obsm['coords']``: the layout of :func:`read_tile_bags`.

    Examples
    --------
    >>> table = pd.DataFrame({"patient": [7, 7, 3], "f0": [1.0, 3.0, 5.0], "f1": [0.0, 2.0, 4.0]})
    >>> wsi = tile_bags_from_table(table, patient_key="patient")
    >>> wsi.obs_names.tolist(), wsi.obs["n_tiles"].tolist(), wsi.obsm["tiles"].shape
    (['7', '3'], [2, 1], (2, 2, 2))
    >>> wsi.X.tolist()
    [[2.0, 1.0], [5.0, 4.0]]
    """
    if patient_key not in table.columns:
        raise KeyError(f"patient_key {patient_key!r} is not a column of the table; it has {list(table.columns)}.")
    if max_tiles is not None and max_tiles < 1:
        raise ValueError(f"max_tiles must be a positive integer or None, got {max_tiles}.")
    coords_columns = list(coords_columns) if coords_columns is not None else None
    if coords_columns is not None and len(coords_columns) != 2:
        raise ValueError(f"coords_columns must name two columns (x and y), got {coords_columns}.")
    not_features = {patient_key, *(coords_columns or [])}
    if feature_columns is None:
        feature_columns = [c for c in table.columns if c not in not_features
                           and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
        # a tile number or a coordinate is not an embedding value: left out by name, and said so
        bookkeeping = [c for c in feature_columns if str(c).lower() in _NOT_EMBEDDING_NAMES]
        if bookkeeping:
            logger.warning(f"tile_bags_from_table: columns {bookkeeping} look like tile ids or coordinates and are "
                           "not used as embedding features; pass feature_columns= to choose the columns yourself "
                           "(and coords_columns= for coordinates).")
            feature_columns = [c for c in feature_columns if c not in bookkeeping]
    feature_columns = list(feature_columns)
    absent = [c for c in feature_columns + (coords_columns or []) if c not in table.columns]
    if absent:
        raise KeyError(f"Columns {absent} are not in the table; it has {list(table.columns)}.")
    if not feature_columns:
        raise ValueError("The table has no numeric feature columns besides patient_key and coords_columns; pass "
                         "feature_columns=.")
    for column in feature_columns + (coords_columns or []):
        values = table[column]
        if not pd.api.types.is_numeric_dtype(values) or not np.isfinite(values.to_numpy(dtype=float)).all():
            raise ValueError(f"Column {column!r} must hold finite numbers (one value per tile).")
    if len(table) == 0:
        raise ValueError("The table has no rows (tiles).")
    patients = table[patient_key]
    if patients.isna().any():
        raise ValueError(f"{int(patients.isna().sum())} tiles have no {patient_key!r}; every tile needs its patient.")
    order, uniques = pd.factorize(patients)  # patients in the order of their first tile
    names = label_text(pd.Series(uniques))
    if names.duplicated().any():
        raise ValueError(f"Values of {patient_key!r} of different types read as the same id "
                         f"({sorted(set(names[names.duplicated()]))[:5]}, e.g. 1 and '1'); convert the column to one "
                         "type.")
    names = list(names)
    features = table[feature_columns].to_numpy(dtype=np.float32)
    xy = table[coords_columns].to_numpy(dtype=np.float32) if coords_columns is not None else None
    rng = np.random.default_rng(random_state)
    bags, coords = [], []
    for i in range(len(names)):
        rows = np.flatnonzero(order == i)
        if max_tiles is not None and len(rows) > max_tiles:
            rows = np.sort(rng.choice(rows, size=max_tiles, replace=False))
        bags.append(features[rows])
        coords.append(xy[rows] if xy is not None else None)
    obs = pd.DataFrame(index=pd.Index(names, name=patient_key))
    uns = {"table_columns": feature_columns, "coords_columns": coords_columns or [], "max_tiles": max_tiles or 0}
    return _bags_to_anndata(bags, coords if xy is not None else None, obs=obs,
                            var_names=[str(c) for c in feature_columns], uns=uns)


def sample_tile_bags(
    adata: AnnData,
    *,
    bag_size: int,
    tiles_key: str = "tiles",
    mask_key: str = "tile_mask",
    per_tile_keys: Sequence[str] = (),
    random_state: int | None = 0,
) -> AnnData:
    """Return a copy whose bags all have ``bag_size`` slots (a random subset of each slide's real tiles).

    Slides with more real tiles than ``bag_size`` keep a random subset; smaller slides keep all their
    tiles (the rest of the slots stay masked). ``X`` is recomputed as the mean of the kept tiles, and
    every other ``obsm`` array of shape ``(n, n_tiles, ...)`` (e.g. ``coords``), and the 2-D ``(n, n_tiles)``
    arrays named in ``per_tile_keys`` (e.g. per-tile scores), are subset the same way, so that their slots keep
    matching the tiles' (an empty slot holds 0, or ``False``); the keys subset are logged. Other ``obsm`` arrays
    are copied as they are; a 2-D one exactly ``n_tiles`` wide that is not named gets a warning (it may be per
    tile, or an embedding that happens to have that width).
    :class:`multiomix.models.MedCrossViT` also redraws bags of a fixed size at every training step
    (``bag_size=``); this function fixes one draw in the data, e.g. to bound memory.

    Parameters
    ----------
    adata
        Output of :func:`read_tile_bags` (or any AnnData with the two ``obsm`` arrays).
    bag_size
        Slots per bag (a whole number >= 1).
    tiles_key, mask_key
        ``obsm`` keys of the tiles and the mask.
    per_tile_keys
        2-D ``obsm`` arrays ``(n, n_tiles)`` that hold one value per tile slot, to subset with the tiles.
    random_state
        Seed of the draw.

    Returns
    -------
    A new AnnData; ``adata`` is not modified.

    Examples
    --------
    >>> import multiomix as mx
    >>> wsi = mx.io.read_tile_bags("features/")  # doctest: +SKIP
    >>> small = mx.io.sample_tile_bags(wsi, bag_size=64)  # doctest: +SKIP
    """
    bag_size = check_whole("bag_size", bag_size, 1)
    for key in (tiles_key, mask_key):
        if key not in adata.obsm:
            raise KeyError(f"obsm[{key!r}] not found; obsm has {list(adata.obsm.keys())}.")
    tiles, mask = np.asarray(adata.obsm[tiles_key]), np.asarray(adata.obsm[mask_key]).astype(bool)
    if tiles.ndim != 3 or mask.shape != tiles.shape[:2]:
        raise ValueError(f"obsm[{tiles_key!r}] must be (n, n_tiles, dim) and obsm[{mask_key!r}] (n, n_tiles).")
    rng = np.random.default_rng(random_state)
    index = np.zeros((adata.n_obs, bag_size), dtype=np.int64)
    new_mask = np.zeros((adata.n_obs, bag_size), dtype=bool)
    for i in range(adata.n_obs):
        real = np.flatnonzero(mask[i])
        pick = np.sort(rng.choice(real, size=min(bag_size, len(real)), replace=False))
        index[i, : len(pick)] = pick
        new_mask[i, : len(pick)] = True
    out = adata.copy()
    unknown = [k for k in per_tile_keys if k not in adata.obsm or np.shape(adata.obsm[k])[:2] != mask.shape]
    if unknown:
        raise ValueError(f"per_tile_keys {unknown} are not obsm arrays of shape {mask.shape} (n, n_tiles).")
    per_tile = _resample_per_tile(adata, index, new_mask, n_tiles=tiles.shape[1], skip=(mask_key,),
                                  flat=tuple(per_tile_keys))
    unnamed = [k for k, v in adata.obsm.items() if k not in per_tile and k != mask_key and not isinstance(
        v, pd.DataFrame) and np.ndim(v) == 2 and np.shape(v)[1] == tiles.shape[1]]
    if unnamed:
        logger.warning(f"sample_tile_bags: obsm {unnamed} are {tiles.shape[1]} wide, as the tile slots, and were kept "
                       "as they are; name them in per_tile_keys if they hold one value per tile")
    for key, picked in per_tile.items():
        out.obsm[key] = picked
    others = [k for k in per_tile if k != tiles_key]
    if others:
        logger.info(f"sample_tile_bags: subset the per-tile obsm {others} with the tiles")
    out.obsm[mask_key] = new_mask
    kept = out.obsm[tiles_key]
    out.X = (kept * new_mask[..., None]).sum(1) / np.maximum(new_mask.sum(1, keepdims=True), 1)
    if "n_tiles" in out.obs:
        out.obs["n_tiles"] = new_mask.sum(1)
    return out


def _resample_per_tile(adata: AnnData, index: np.ndarray, mask: np.ndarray, *, n_tiles: int,
                       skip: Sequence[str] = (), flat: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Take the slots ``index`` (n, bag_size) of every ``obsm`` array with one entry per tile slot.

    An array of shape ``(n, n_tiles, ...)`` is per tile, and so is a 2-D one named in ``flat``; slots outside
    ``mask`` are zeroed.
    """
    rows = np.arange(adata.n_obs)[:, None]
    out = {}
    for key, value in adata.obsm.items():
        value = np.asarray(value) if not isinstance(value, pd.DataFrame) else None
        if key in skip or value is None or value.ndim < 2 or value.shape[1] != n_tiles:
            continue
        if value.ndim == 2 and key not in flat:
            continue
        picked = value[rows, index]
        picked[~mask] = 0
        out[key] = picked
    return out
