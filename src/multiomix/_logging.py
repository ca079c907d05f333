"""Package logger; one line per output written to a data object."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("multiomix")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextmanager
def each_line_once(fragment: str) -> Iterator[None]:
    """Within the block (or the decorated function), log each message containing ``fragment`` only once.

    For checks that several steps of one call repeat on the same data (e.g. the ignored features of a query).
    """
    seen: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if fragment not in message:
            return True
        new = message not in seen
        seen.add(message)
        return new

    logger.addFilter(first_time)
    try:
        yield
    finally:
        logger.removeFilter(first_time)
