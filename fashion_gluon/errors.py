"""Errors that the CLI reports as one clear line instead of a traceback, and the helpers
that keep those lines short: :func:`quoted` (every value an error quotes) and
:func:`problem_list` (several problems of one file in one message)."""
from __future__ import annotations

import os
from typing import Any, Sequence

#: Longest value (in characters, quotes excluded) an error message quotes; longer ones are cut with "…".
QUOTE_LIMIT = 60
#: Problems an error message lists before "... and N more".
SHOWN_PROBLEMS = 20


def shorten(text: Any, limit: int = QUOTE_LIMIT) -> str:
    """``str(text)`` cut to ``limit`` characters, the last being "…" when something was cut."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def quoted(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of a value read from a user's file, cut to about ``limit`` characters: a value of
    a binary or garbage file never floods an error line. Strings are cut before quoting
    (``'abc…'``), other values after ``repr``."""
    return repr(shorten(value, limit)) if isinstance(value, str) else shorten(repr(value), limit)


def problem_list(title: str, problems: Sequence[Any], shown: int = SHOWN_PROBLEMS) -> str:
    """``title``, the number of problems and the first ``shown`` of them, one per line."""
    more = f"\n... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{title}: {len(problems)} problem(s):\n" + "\n".join(str(p) for p in problems[:shown]) + more


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
            where.append(f"column {quoted(column)}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class DataProblems(DataError):
    """Every problem found in one file (``problems``: DataErrors or lines, in file order), reported
    at once; the message's first line names the file and the count, the first
    :data:`SHOWN_PROBLEMS` problems follow, one per line."""

    def __init__(self, path: "str | os.PathLike", problems: Sequence[Any]):
        self.problems = list(problems)
        FashionGluonError.__init__(self, problem_list(str(path), self.problems))
        self.path, self.row, self.column = path, None, None
        self.reason = f"{len(self.problems)} problem(s)"


def raise_problems(problems: Sequence[DataError], path: "str | os.PathLike") -> None:
    """Raise the only problem of ``path`` as it is, or several as one :class:`DataProblems`."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise DataProblems(path, problems)


class ConfigError(FashionGluonError, ValueError):
    """A bad configuration value or key."""


class ExportError(FashionGluonError):
    """A model cannot be exported, quantized, converted or loaded as asked."""


class FileFormatError(FashionGluonError):
    """A file the package wrote earlier (weights, trainer states, run or export metadata) is
    unreadable: truncated, corrupt or edited."""
