"""Package settings: how much multiomix prints while it works, and how many CPU threads torch uses."""

from __future__ import annotations

import logging

import numpy as np

from ._logging import logger


class _Settings:
    """Verbosity and progress bars of multiomix, in the spirit of :obj:`scanpy.settings`.

    ``verbosity``: 0 errors, 1 warnings, 2 info (one line per output written, the baseline line of a fit; the
    default), 3 debug. When it is ``None`` the level follows ``scanpy.settings.verbosity``.
    ``progress_bar``: show one progress bar per fit (a notebook widget where ipywidgets is installed).
    ``num_threads``: CPU threads torch uses (:func:`torch.set_num_threads`, process-wide, as
    ``scvi.settings.num_threads``); reading it returns torch's current count. The models here are small, so on
    a shared or busy machine one thread is often as fast as several.

    Examples
    --------
    >>> import multiomix as mx
    >>> mx.settings.verbosity = 1  # warnings only
    >>> mx.settings.progress_bar = False
    >>> mx.settings.num_threads = 1
    """

    _levels = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}

    def __init__(self) -> None:
        self._verbosity: int | None = 2
        self._progress_bar = True
        self._apply()

    def __repr__(self) -> str:
        return (f"multiomix settings: verbosity={self._verbosity!r}, progress_bar={self._progress_bar!r}, "
                f"num_threads={self.num_threads!r}")

    @property
    def num_threads(self) -> int:
        """CPU threads torch uses for its operations (process-wide)."""
        import torch

        return int(torch.get_num_threads())

    @num_threads.setter
    def num_threads(self, value: int) -> None:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"num_threads must be a whole number >= 1, got {value!r}.")
        import torch

        torch.set_num_threads(int(value))

    @property
    def progress_bar(self) -> bool:
        """Show one progress bar per fit."""
        return self._progress_bar

    @progress_bar.setter
    def progress_bar(self, value: bool) -> None:
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"progress_bar must be True or False, got {value!r}.")
        self._progress_bar = bool(value)

    @property
    def verbosity(self) -> int | None:
        """0 errors, 1 warnings, 2 info, 3 debug; ``None`` follows scanpy."""
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer)
                                  or value not in self._levels):
            raise ValueError(f"verbosity must be 0, 1, 2, 3 or None (follow scanpy), got {value!r}.")
        self._verbosity = None if value is None else int(value)
        self._apply()

    def effective_verbosity(self) -> int:
        """Return the level in force (scanpy's when ``verbosity`` is ``None``)."""
        if self._verbosity is not None:
            return self._verbosity
        import scanpy as sc

        return int(min(max(int(sc.settings.verbosity), 0), 3))

    def _apply(self) -> None:
        if self._verbosity is None:  # scanpy's level is read at each message (it may change later)
            logger.setLevel(logging.DEBUG)
            if _follow_scanpy not in logger.filters:
                logger.addFilter(_follow_scanpy)
        else:
            logger.removeFilter(_follow_scanpy)
            logger.setLevel(self._levels[self._verbosity])


def _follow_scanpy(record: logging.LogRecord) -> bool:
    """Let a message through when scanpy's verbosity in force admits its level (``verbosity=None``)."""
    return record.levelno >= _Settings._levels[settings.effective_verbosity()]


settings = _Settings()

__all__ = ["settings"]
