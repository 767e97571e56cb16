"""FashionAI-layout CSV files: annotations (train.csv, test ground truth) and test lists.

In memory a CSV is an :class:`Annotations`: ``image_ids`` (paths relative to
the split folder), ``categories`` and ``keypoints`` of shape (N, K, 3) holding
``(x, y, v)`` in original image pixels, and the keypoint ``schema`` whose names are the
CSV's columns (see :mod:`fashion_gluon.schema`; FashionAI's 24 keypoints by default).

Readers validate everything and raise a :class:`~fashion_gluon.errors.DataError`
located by file, 1-based spreadsheet row (the header is row 1) and column.
A keypoint cell is ``x_y_v`` with integer x, y and v in {0, 1}, or
``-1_-1_-1`` for a keypoint absent from the row's category.
"""
from __future__ import annotations

import csv
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError, quoted, shorten
from ..fileio import atomic_write
from ..schema import ID_COLUMNS, KeypointSchema, load_schema
from .layout import Source

ABSENT_CELL = "-1_-1_-1"
TEST_LIST_COLUMNS: tuple[str, ...] = ID_COLUMNS

_CELL = r"-?\d{1,9}_-?\d{1,9}_-?\d{1,9}"
_CELL_RE = re.compile(_CELL)
_CELLS_RE = re.compile(f"{_CELL}(?:,{_CELL})*+")  # a ","-joined run of well-formed cells

# Problems of one keypoint cell, in priority order; 0 means the cell is fine.
_MALFORMED, _FOREIGN, _MISSING, _OCCLUDED, _NEGATIVE = 1, 2, 3, 4, 5
_CELL_MESSAGES = {
    _MALFORMED: "{cell} is not x_y_v with integer x, y and v in {{0, 1}}, nor -1_-1_-1",
    _FOREIGN: "{cell}: this keypoint does not belong to category {category} and must be -1_-1_-1 "
              "(is the image_category wrong?)",
    _MISSING: "keypoint of category {category} is missing (-1_-1_-1); every keypoint of the "
              "category must be annotated with v = 0 or 1",
    _OCCLUDED: "{cell}: a submitted keypoint must be written x_y_1",
    _NEGATIVE: "{cell}: negative coordinate, outside the image",
}


@dataclass
class Annotations:
    """Annotated objects (rows) of one or more files under a keypoint ``schema``.

    ``image_ids`` are image paths as the file writes them (relative to the row's image folder);
    ``keypoints`` (N, K, 3) is None for a test list (test.csv). ``boxes`` (N, 4) are each object's
    box ``(x0, y0, x1, y1)`` in original pixels (NaN: none given; None: no row has one).
    ``sources`` and ``origin`` say which :class:`~.layout.Source` each row came from (its file
    and image folder; empty: the caller knows the folder). ``file_rows`` are the rows' 1-based
    spreadsheet rows (or entry numbers) in their file, for error messages; None means the rows
    in order after a header. :meth:`subset` keeps all of them."""

    image_ids: list[str]
    categories: list[str]
    keypoints: "np.ndarray | None" = None
    schema: KeypointSchema = field(default_factory=load_schema)
    file_rows: "np.ndarray | None" = field(default=None, compare=False, repr=False)
    boxes: "np.ndarray | None" = field(default=None, compare=False, repr=False)
    sources: "tuple[Source, ...]" = field(default=(), compare=False, repr=False)
    origin: "np.ndarray | None" = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, rows: "np.ndarray | list[int]") -> "Annotations":
        """The rows ``rows`` (indices) as a new Annotations."""
        rows = np.asarray(rows, dtype=np.int64)

        def pick(values):
            return None if values is None else values[rows]
        return Annotations([self.image_ids[r] for r in rows], [self.categories[r] for r in rows],
                           pick(self.keypoints), self.schema, pick(self.file_rows), pick(self.boxes), self.sources,
                           pick(self.origin))

    def from_source(self, source: Source) -> "Annotations":
        """These rows, all read from ``source``."""
        return replace(self, sources=(source,), origin=np.zeros(len(self), dtype=np.int64))

    def source(self, index: int) -> "Source | None":
        """The source row ``index`` was read from (None when unknown)."""
        return self.sources[int(self.origin[index])] if self.sources else None

    def image_path(self, index: int, folder: "str | os.PathLike | None" = None) -> Path:
        """The image file of row ``index``: in its source's image folder, else in ``folder``."""
        source = self.source(index)
        if source is None and folder is None:
            raise ValueError("these rows know no image folder; pass folder")
        return (source.images if source is not None else Path(folder)) / self.image_ids[index]

    def file_of(self, index: int, default: "str | os.PathLike | None" = None) -> "Path | None":
        """The annotation file row ``index`` was read from (``default`` when unknown)."""
        source = self.source(index)
        return source.file if source is not None else (Path(default) if default is not None else None)

    def file_row(self, index: int) -> int:
        """The spreadsheet row of row ``index`` in the file it was read from."""
        return int(self.file_rows[index]) if self.file_rows is not None else index + 2


def concat(parts: "Sequence[Annotations]") -> Annotations:
    """The rows of ``parts`` (same schema, each with its sources) one after the other."""
    if not parts:
        raise ValueError("concat needs at least one Annotations")
    schema = parts[0].schema
    sources: list[Source] = []
    origins, boxes = [], []
    for part in parts:
        offset = len(sources)
        sources += list(part.sources)
        origins.append(part.origin + offset if part.origin is not None else np.full(len(part), -1))
        boxes.append(part.boxes if part.boxes is not None else np.full((len(part), 4), np.nan))
    if any((o < 0).any() for o in origins):
        raise ValueError("concat needs rows that know their source (Annotations.from_source)")
    known = [p.keypoints is not None for p in parts]
    if any(known) and not all(known):
        raise ValueError("concat cannot mix annotated rows with a test list")
    return Annotations(sum((p.image_ids for p in parts), []), sum((p.categories for p in parts), []),
                       np.concatenate([p.keypoints for p in parts]) if all(known) else None, schema,
                       np.concatenate([p.file_rows if p.file_rows is not None else np.arange(len(p)) + 2
                                       for p in parts]),
                       np.concatenate(boxes) if any(p.boxes is not None for p in parts) else None,
                       tuple(sources), np.concatenate(origins).astype(np.int64))


def format_cell(x: float, y: float, v: int) -> str:
    """One ``x_y_v`` cell with integer pixel coordinates."""
    if v < 0:
        return ABSENT_CELL
    return f"{int(round(x))}_{int(round(y))}_{int(v)}"


def write_annotations(path: "str | os.PathLike", annotations: Annotations) -> None:
    """Write ``annotations`` as a FashionAI CSV (train.csv layout, or test.csv when
    ``keypoints`` is None), atomically. Keypoints outside the row's category are
    written ``-1_-1_-1``."""
    if annotations.keypoints is None:
        header, rows = TEST_LIST_COLUMNS, [
            (i, c) for i, c in zip(annotations.image_ids, annotations.categories)]
    else:
        kps = np.asarray(annotations.keypoints)
        schema = annotations.schema
        if kps.shape != (len(annotations), schema.num_keypoints, 3):
            raise ValueError(f"keypoints must have shape ({len(annotations)}, {schema.num_keypoints}, 3), "
                             f"got {kps.shape}")
        mask = schema.category_mask(annotations.categories)
        header = schema.columns
        rows = [(image_id, category, *(format_cell(x, y, int(v) if m else -1)
                                       for (x, y, v), m in zip(row_kps, row_mask)))
                for image_id, category, row_kps, row_mask
                in zip(annotations.image_ids, annotations.categories, kps.tolist(), mask.tolist())]
    with atomic_write(Path(path), "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


# ----------------------------------------------------------------------------- reading


@dataclass
class Table:
    """The data rows of a CSV whose header is right and whose rows have the right field count."""

    path: Path
    cells: np.ndarray  # (N, C) object array of strings
    rows: np.ndarray  # (N,) 1-based spreadsheet rows
    schema: KeypointSchema

    @property
    def image_ids(self) -> list[str]:
        return self.cells[:, 0].tolist()

    @property
    def categories(self) -> list[str]:
        return self.cells[:, 1].tolist()


def _read_records(path: Path) -> list[list[str]]:
    """Every CSV record of ``path`` (blank lines are empty records)."""
    records: list[list[str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for record in csv.reader(handle):
                records.append(record)
    except FileNotFoundError:
        raise DataError("no such file", path) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a CSV file", path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    except csv.Error as exc:
        raise DataError(f"unreadable CSV record: {shorten(exc, 120)}", path, len(records) + 1) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path) from None
    if not any(records):
        raise DataError("empty file", path)
    return records


def _check_header(path: Path, header: list[str], columns: tuple[str, ...], hints: dict) -> None:
    """Raise a DataError naming the first wrong or missing header column (``hints`` maps a
    known wrong header to an explanation)."""
    if tuple(header) in hints:
        raise DataError(hints[tuple(header)], path, 1)
    for position, name in enumerate(columns):
        if position >= len(header):
            raise DataError(f"header lacks column {name!r} (found {len(header)} columns, "
                            f"expected {len(columns)})", path, 1, name)
        if header[position] != name:
            raise DataError(f"header column {position + 1} is {quoted(header[position])}, expected {name!r}",
                            path, 1, name)
    if len(header) > len(columns):
        raise DataError(f"unexpected extra header column {quoted(header[len(columns)])} "
                        f"(expected {len(columns)} columns)", path, 1, header[len(columns)])


def _field_count_problems(path: Path, records: list[list[str]], rows: np.ndarray,
                          columns: tuple[str, ...]) -> list[DataError]:
    """One DataError per record whose number of fields is not ``len(columns)``."""
    problems = []
    for record, row in zip(records, rows):
        if len(record) < len(columns):
            problems.append(DataError(f"row has {len(record)} fields, expected {len(columns)}",
                                      path, int(row), columns[len(record)]))
        elif len(record) > len(columns):
            problems.append(DataError(f"row has {len(record)} fields, expected {len(columns)} "
                                      f"(extra values after {columns[-1]!r})", path, int(row)))
    return problems


def read_table(path: "str | os.PathLike", columns: tuple[str, ...], schema: KeypointSchema,
               hints: "dict[tuple[str, ...], str] | None" = None) -> tuple[Table, list[DataError]]:
    """The well-formed rows of a CSV with header ``columns``, and a DataError per malformed row.

    Raises a DataError for an unreadable or empty file or a wrong header.
    """
    path = Path(path)
    records = _read_records(path)
    _check_header(path, records[0], columns, hints or {})
    numbered = [(row, record) for row, record in enumerate(records[1:], start=2) if record]  # skip blank lines
    rows = np.array([row for row, _ in numbered], dtype=np.int64)
    data = [record for _, record in numbered]
    problems = _field_count_problems(path, data, rows, columns)
    good = np.array([len(record) == len(columns) for record in data], dtype=bool)
    cells = np.array([record for record, ok in zip(data, good) if ok], dtype=object).reshape(-1, len(columns))
    return Table(path, cells, rows[good], schema), problems


def duplicate_problems(table: Table) -> list[DataError]:
    """One DataError per repeated image_id, naming the row of its first occurrence."""
    ids = table.cells[:, 0].astype(str)
    if not len(ids):
        return []
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    first_row = table.rows[first[inverse]]
    return [DataError(f"duplicate image_id {quoted(ids[i])} (first in row {first_row[i]})",
                      table.path, int(table.rows[i]), "image_id")
            for i in np.flatnonzero(first_row != table.rows)]


def identity_problems(table: Table) -> list[DataError]:
    """Empty image ids, unknown categories and duplicate image ids."""
    problems = [DataError("empty image_id", table.path, int(row), "image_id")
                for image_id, row in zip(table.cells[:, 0], table.rows) if not image_id]
    categories = table.schema.category_names
    problems += [DataError(f"unknown image_category {quoted(category)}; expected one of {', '.join(categories)}",
                           table.path, int(row), "image_category")
                 for category, row in zip(table.cells[:, 1], table.rows) if category not in categories]
    return problems + duplicate_problems(table)


def _parse_cells(cells: list[str]) -> np.ndarray:
    """``x_y_v`` cells as float64 (M, 3); NaN for a cell that is not three ``_``-separated integers."""
    if not cells:
        return np.zeros((0, 3))
    bad = np.zeros(len(cells), dtype=bool)
    text = ",".join(cells)
    if _CELLS_RE.fullmatch(text) is None:  # slow path: find the malformed cells
        bad = np.array([_CELL_RE.fullmatch(cell) is None for cell in cells], dtype=bool)
        text = ",".join("0_0_0" if b else cell for cell, b in zip(cells, bad))
    values = np.fromstring(text.replace("_", ","), dtype=np.int64, sep=",").reshape(-1, 3).astype(np.float64)
    values[bad] = np.nan
    return values


def cell_codes(values: np.ndarray, mask: np.ndarray, visible_only: bool) -> np.ndarray:
    """The problem code (0 = fine) of every keypoint cell (N, K) given parsed ``values`` (N, K, 3)
    and the category ``mask``; ``visible_only`` (submissions) also flags v = 0."""
    x, y, v = values[..., 0], values[..., 1], values[..., 2]
    absent = (x == -1) & (y == -1) & (v == -1)
    malformed = ~(absent | (v == 0) | (v == 1))
    conditions = [malformed, ~mask & ~absent, mask & absent, visible_only & mask & (v == 0),
                  ~absent & ((x < 0) | (y < 0))]
    return np.select(conditions, [_MALFORMED, _FOREIGN, _MISSING, _OCCLUDED, _NEGATIVE], 0)


def cell_problems(table: Table, codes: np.ndarray, categories: list[str]) -> list[DataError]:
    """One DataError per nonzero ``codes`` cell, located by row and keypoint column."""
    offset = len(TEST_LIST_COLUMNS)
    return [DataError(_CELL_MESSAGES[codes[n, k]].format(cell=quoted(table.cells[n, offset + k]),
                                                         category=quoted(categories[n])),
                      table.path, int(table.rows[n]), table.schema.keypoints[k])
            for n, k in zip(*np.nonzero(codes))]


def keypoint_values(table: Table) -> np.ndarray:
    """Parsed keypoint cells of ``table`` as float64 (N, K, 3), NaN where malformed."""
    cells = table.cells[:, len(TEST_LIST_COLUMNS):]
    return _parse_cells(cells.ravel().tolist()).reshape(len(cells), table.schema.num_keypoints, 3)


def raise_first(problems: list[DataError], columns: Sequence[str] = ID_COLUMNS) -> None:
    """Raise the problem that comes first in a file of ``columns`` (by row, then column), if any."""
    if problems:
        raise min(problems, key=lambda problem: file_order(problem, columns))


def file_order(problem: DataError, columns: Sequence[str] = ID_COLUMNS) -> tuple[float, int]:
    """Sort key: row (problems without one last), then column position in ``columns``."""
    column = list(columns).index(problem.column) if problem.column in columns else -1
    return (problem.row if problem.row is not None else float("inf"), column)


def require_rows(rows: Annotations, path: "str | os.PathLike", purpose: str) -> Annotations:
    """``rows`` read from ``path``, unless there are none: then a DataError naming the file says
    there are no rows to ``purpose`` (e.g. "score"), instead of a NaN or an empty result later."""
    if not len(rows):
        raise DataError(f"no rows to {purpose}: the file has a header but no data rows", path)
    return rows


def read_annotations(path: "str | os.PathLike", on_missing_keypoint: str = "absent",
                     schema: "KeypointSchema | str | None" = None) -> Annotations:
    """Read a train.csv-layout file into :class:`Annotations` (keypoints float32 (N, K, 3));
    the columns are ``schema``'s keypoint names (default: FashionAI's 24).

    Every problem is a DataError naming the file, row and column: wrong header,
    a row with the wrong number of fields, a cell that is not ``x_y_v``
    (integer x, y; v in {0, 1}) or ``-1_-1_-1``, an unknown category, a
    duplicate image_id, a keypoint of another category that is not
    ``-1_-1_-1``, or a negative coordinate.

    A keypoint of the row's own category written ``-1_-1_-1`` (the competition's "does not
    exist") is, with ``on_missing_keypoint="absent"`` (the default), read as absent: v = −1,
    weight 0 in training, not scored; one ``warnings.warn`` counts them. ``"skip"`` drops such
    rows instead (one warning), ``"error"`` raises a DataError naming the first.
    """
    if on_missing_keypoint not in ("absent", "error", "skip"):
        raise ValueError(f"on_missing_keypoint must be 'absent', 'error' or 'skip', got {on_missing_keypoint!r}")
    schema = load_schema(schema)
    table, problems = read_table(path, schema.columns, schema, {
        TEST_LIST_COLUMNS: "this is a test list (image_id,image_category) without keypoint columns; "
                           "read it with read_image_list"})
    problems += identity_problems(table)
    raise_first(problems, schema.columns)
    values = keypoint_values(table)
    codes = cell_codes(values, schema.category_mask(table.categories), visible_only=False)
    raise_first(cell_problems(table, np.where(codes == _MISSING, 0, codes), table.categories), schema.columns)
    missing = codes == _MISSING
    keep = np.ones(len(missing), dtype=bool)
    if missing.any():
        first = cell_problems(table, np.where(missing, codes, 0), table.categories)[0]
        if on_missing_keypoint == "error":
            raise first
        rows = int(missing.any(axis=1).sum())
        if on_missing_keypoint == "skip":
            keep = ~missing.any(axis=1)
            warnings.warn(f"{table.path}: dropped {rows} of {len(missing)} rows with a missing keypoint of "
                          f"their category; first: {first}", stacklevel=2)
        else:
            warnings.warn(f"{table.path}: {int(missing.sum())} keypoint(s) of their own category in {rows} row(s) "
                          f"are -1_-1_-1 and read as absent (not trained on, not scored); first: row "
                          f"{first.row}, column {first.column!r}", stacklevel=2)
    return Annotations(table.cells[keep, 0].tolist(), table.cells[keep, 1].tolist(),
                       values[keep].astype(np.float32), schema, table.rows[keep])


def read_image_list(path: "str | os.PathLike", schema: "KeypointSchema | str | None" = None) -> Annotations:
    """Read a test list (``image_id,image_category``, like test/test.csv); keypoints are None.

    Raises a DataError for a wrong header, a row with the wrong number of
    fields, an empty image_id, an unknown category or a duplicate image_id.
    """
    schema = load_schema(schema)
    table, problems = read_table(path, TEST_LIST_COLUMNS, schema, {
        schema.columns: "this file has keypoint columns (train.csv layout); read it with read_annotations"})
    raise_first(problems + identity_problems(table))
    return Annotations(table.image_ids, table.categories, None, schema, table.rows)


__all__ = ["Annotations", "concat", "ABSENT_CELL", "TEST_LIST_COLUMNS", "format_cell", "write_annotations",
           "read_annotations", "read_image_list", "read_table", "identity_problems", "keypoint_values",
           "cell_codes", "cell_problems", "raise_first", "file_order", "duplicate_problems", "Table",
           "require_rows"]
