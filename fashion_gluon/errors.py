"""Errors that the CLI reports as one clear line instead of a traceback."""
from __future__ import annotations

import os


class FashionGluonError(Exception):
    """Base class of the package's user-facing errors."""


class DataError(FashionGluonError, ValueError):
    """Bad input data, located by file, 1-based spreadsheet row and column."""

    def __init__(self, message: str, path: "str | os.PathLike | None" = None,
                 row: "int | None" = None, column: "str | None" = None):
        self.path, self.row, self.column, self.reason = path, row, column, message
        where = []
        if path is not None:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ConfigError(FashionGluonError, ValueError):
    """A bad configuration value or key."""
