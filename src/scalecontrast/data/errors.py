"""Exceptions raised for bad or missing data.

Every error names the offending path, stem or value so that a user can fix the data set without
reading the loader's code.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DataError", "MissingDataError", "preview"]


class DataError(ValueError):
    """The data set on disk is malformed (bad file, mismatched sizes, unexpected label values...)."""


class MissingDataError(DataError, FileNotFoundError):
    """A root folder, split or file that the data set needs does not exist (or is empty)."""


def preview(items: Iterable[object], limit: int = 5) -> str:
    """Short, readable listing of at most ``limit`` items for error messages."""
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{shown}{more}"
