"""Locating, downloading and checksumming dataset files."""

from __future__ import annotations

import os
from pathlib import Path

import pooch
import requests

DATA_DIR_ENV = "MULTIOMIX_DATA_DIR"


def default_cache_dir() -> Path:
    """Cache directory for downloads (``$XDG_CACHE_HOME/multiomix`` or ``~/.cache/multiomix``).

    An empty or relative ``$XDG_CACHE_HOME`` is ignored, as the XDG specification asks.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute() else Path.home() / ".cache"
    return base / "multiomix"


def _data_roots(data_dir: str | os.PathLike | None) -> list[Path]:
    """``data_dir`` and ``$MULTIOMIX_DATA_DIR`` (``~`` expanded; an empty variable ignored), in that order.

    A ``data_dir`` that is not a folder is an error (a mistyped path would otherwise fall back silently).
    """
    if data_dir is not None and str(data_dir) != "" and not Path(data_dir).expanduser().is_dir():
        raise FileNotFoundError(f"data_dir={str(data_dir)!r} is not a folder; pass the folder that holds the data "
                                f"set's files, or leave data_dir out to use ${DATA_DIR_ENV} or the download cache.")
    roots = [data_dir, os.environ.get(DATA_DIR_ENV) or None]
    return [Path(root).expanduser() for root in roots if root is not None and str(root) != ""]


def fetch(relative_path: str, *, url: str, sha256: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Return a local copy of a dataset file, verified against its sha256.

    The file is looked up, in order, in ``data_dir``, in ``$MULTIOMIX_DATA_DIR`` and in the download cache;
    if it is in none of them it is downloaded from ``url`` into the cache.

    Parameters
    ----------
    relative_path
        Path of the file below the data directory (e.g. ``"unitednet_patchseq/adata_RNA_TEM.h5ad"``).
    url
        Public address of the original file.
    sha256
        Expected checksum.
    data_dir
        Local directory holding the files (offline use).

    Returns
    -------
    Path to the verified file.
    """
    for root in _data_roots(data_dir):
        candidate = root / relative_path
        if candidate.exists():
            if pooch.file_hash(str(candidate)) != sha256:
                raise ValueError(f"Checksum mismatch for {candidate}: the file differs from the published original.")
            return candidate
    return download(url, sha256=sha256, target=default_cache_dir() / relative_path, wanted=relative_path,
                    data_dir=data_dir)


def download(url: str, *, sha256: str, target: Path, wanted: str, data_dir: str | os.PathLike | None) -> Path:
    """Download ``url`` to ``target`` (checked against ``sha256``); a failure names ``wanted`` and the local paths.

    ``wanted`` is the dataset file's path below a data directory, which the message tells the user to provide.
    """
    if target.exists() and pooch.file_hash(str(target)) != sha256:
        raise ValueError(f"The cached copy {target} fails its sha256 check (a partial or altered file): delete it to "
                         f"download it again, or put a good copy at <data directory>/{wanted} and pass `data_dir=` or "
                         f"set ${DATA_DIR_ENV}.")
    try:
        path = pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=target.name, path=target.parent,
                              progressbar=False)
    except (OSError, requests.RequestException) as error:  # offline, proxy, server down, unwritable cache
        searched = [str(root / wanted) for root in _data_roots(data_dir)]
        raise OSError(
            f"Could not download {wanted!r} from {url} ({type(error).__name__}: {error}). "
            f"Looked for a local copy in {searched or 'no data directory'} and {target}. Offline, put the file at "
            f"<data directory>/{wanted} and pass `data_dir=` or set ${DATA_DIR_ENV}."
        ) from error
    return Path(path)
