"""Submissions: writing (validated), reading, validating against a test list, matching rows.

A submission has the train.csv header; each keypoint of the row's category is written
``x_y_1`` in original image pixels (integers), every other keypoint ``-1_-1_-1``. Files of
two sources (truth and prediction, or the submissions of an ensemble) are always paired by
``image_id`` with :func:`match_rows`, never by order.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError, FashionGluonError, problem_list, quoted, raise_problems, shorten
from ..fileio import atomic_path
from ..schema import KeypointSchema, load_schema
from .annotations import (
    TEST_LIST_COLUMNS,
    Annotations,
    Table,
    cell_codes,
    cell_problems,
    duplicate_problems,
    file_order,
    identity_problems,
    keypoint_values,
    read_image_list,
    read_table,
    write_annotations,
)
from .images import image_size, outside_image


def write_submission(path: "str | os.PathLike", image_ids: "list[str]", categories: "list[str]",
                     keypoints_xy: np.ndarray, schema: "KeypointSchema | str | None" = None) -> None:
    """Write a submission atomically: each keypoint of the row's category as ``x_y_1``
    (coordinates rounded to integers), every other keypoint ``-1_-1_-1``.

    ``keypoints_xy`` is (N, K, 2) in original image pixels, K = ``schema.num_keypoints``
    (default: FashionAI's schema). Raises ValueError
    for mismatched lengths, an unknown category, or a category keypoint that
    is not finite or rounds to a negative coordinate.
    """
    schema = load_schema(schema)
    xy = np.asarray(keypoints_xy, dtype=np.float64)
    if len(categories) != len(image_ids) or xy.shape != (len(image_ids), schema.num_keypoints, 2):
        raise ValueError(f"need {len(image_ids)} categories and keypoints of shape ({len(image_ids)}, "
                         f"{schema.num_keypoints}, 2), got {len(categories)} categories and {xy.shape}")
    for category in categories:
        schema.check_category(category, allow_all=False)
    mask = schema.category_mask(categories)
    bad = mask & ~(np.isfinite(xy) & (np.round(xy) >= 0)).all(axis=-1)
    if bad.any():
        n, k = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"image {image_ids[n]!r} (index {n}): keypoint {schema.keypoints[k]} is {tuple(xy[n, k])}; "
                         f"a submission needs finite, non-negative coordinates")
    visible = np.ones(xy.shape[:-1] + (1,))
    write_annotations(path, Annotations(list(image_ids), list(categories), np.concatenate([xy, visible], axis=-1),
                                        schema))


def submission_problems(path: "str | os.PathLike", schema: "KeypointSchema | str | None" = None
                        ) -> tuple[Annotations, list[DataError]]:
    """(the rows of a submission with the right field count, every problem of the file on its
    own in file order). Rows of an unknown category get NaN keypoints. Raises a DataError for
    an unreadable or empty file or a wrong header."""
    schema = load_schema(schema)
    table, problems = read_table(path, schema.columns, schema, {
        TEST_LIST_COLUMNS: "this is a test list (image_id,image_category), not a submission"})
    problems += identity_problems(table)
    known = np.array([category in schema.categories for category in table.categories], dtype=bool)
    checked = Table(table.path, table.cells[known], table.rows[known], schema)
    values = np.full((len(table.cells), schema.num_keypoints, 3), np.nan)
    values[known] = keypoint_values(checked)
    problems += cell_problems(checked, cell_codes(values[known], schema.category_mask(checked.categories), True),
                              checked.categories)
    rows = Annotations(table.image_ids, table.categories, values.astype(np.float32), schema, table.rows)
    return rows, sorted(problems, key=lambda problem: file_order(problem, schema.columns))


def read_submission(path: "str | os.PathLike", schema: "KeypointSchema | str | None" = None) -> Annotations:
    """Read a submission into :class:`Annotations` (keypoints float32 (N, K, 3), v = 1).

    Same checks as :func:`read_annotations`, except that every keypoint of
    the row's category must be ``x_y_1``, and that every problem is reported: one as a
    DataError located by row and column, several as one
    :class:`~fashion_gluon.errors.DataProblems` listing them in file order.
    """
    rows, problems = submission_problems(path, schema)
    raise_problems(problems, path)
    return rows


def _matching_problems(table: Table, test: Annotations, test_csv: Path) -> tuple[list[DataError], np.ndarray]:
    """Extra, duplicate and missing images and differing categories; returns the problems and
    each submission row's index into ``test`` (-1 for an extra image)."""
    position = {image_id: i for i, image_id in enumerate(test.image_ids)}
    index = np.array([position.get(image_id, -1) for image_id in table.image_ids], dtype=np.int64)
    problems = [DataError(f"image_id {quoted(table.cells[n, 0])} is not in {test_csv}", table.path,
                          int(table.rows[n]), "image_id") for n in np.flatnonzero(index < 0)]
    problems += duplicate_problems(table)
    absent = np.setdiff1d(np.arange(len(test)), index)
    problems += [DataError(f"image {quoted(test.image_ids[i])} ({test_csv} row {i + 2}) is missing from the submission",
                           table.path, None, "image_id") for i in absent]
    problems += [DataError(f"image_category {quoted(table.cells[n, 1])} differs from {quoted(test.categories[index[n]])} "
                           f"in {test_csv}", table.path, int(table.rows[n]), "image_category")
                 for n in np.flatnonzero(index >= 0) if table.cells[n, 1] != test.categories[index[n]]]
    return problems, index


def _outside_problems(table: Table, values: np.ndarray, codes: np.ndarray, image_root: Path) -> list[DataError]:
    """A DataError for every well-formed category keypoint outside its image (sizes read from headers)."""
    sizes = np.array([image_size(image_root / image_id) for image_id in table.image_ids],
                     dtype=np.int64).reshape(-1, 2)
    outside = (values[..., 2] == 1) & (codes == 0) & outside_image(values[..., :2], sizes[:, None, :])
    return [DataError(f"({values[n, k, 0]:.0f}, {values[n, k, 1]:.0f}) lies outside the image of "
                      f"{sizes[n, 0]}×{sizes[n, 1]} (H×W) pixels", table.path, int(table.rows[n]),
                      table.schema.keypoints[k])
            for n, k in zip(*np.nonzero(outside))]


def validate_submission(test_csv: "str | os.PathLike", submission_csv: "str | os.PathLike",
                        image_root: "str | os.PathLike | None" = None,
                        schema: "KeypointSchema | str | None" = None) -> list[str]:
    """Every problem of ``submission_csv`` against the test list ``test_csv``, one line each
    naming the submission file, row and column, in file order; [] means valid.

    Checks the header, field counts, extra, missing and duplicate images,
    categories against ``test_csv``, category keypoints ``x_y_1`` with
    non-negative coordinates, other keypoints ``-1_-1_-1`` and, when
    ``image_root`` (the test split folder) is given, that coordinates lie
    inside each image. A broken ``test_csv`` or unreadable image under
    ``image_root`` raises DataError (that is local data, not the submission).
    """
    test_csv, schema = Path(test_csv), load_schema(schema)
    test = read_image_list(test_csv, schema)
    try:
        table, problems = read_table(submission_csv, schema.columns, schema)
    except DataError as exc:
        return [str(exc)]
    matching, index = _matching_problems(table, test, test_csv)
    known = index >= 0
    table = Table(table.path, table.cells[known], table.rows[known], schema)
    categories = [test.categories[i] for i in index[known]]
    values = keypoint_values(table)
    codes = cell_codes(values, schema.category_mask(categories), visible_only=True)
    problems += matching + cell_problems(table, codes, categories)
    if image_root is not None:
        problems += _outside_problems(table, values, codes, Path(image_root))
    return [str(problem) for problem in sorted(problems, key=lambda problem: file_order(problem, schema.columns))]


def save_submission(path: "str | os.PathLike", rows: Annotations, keypoints: np.ndarray,
                    test_csv: "str | os.PathLike | None" = None,
                    image_root: "str | os.PathLike | None" = None) -> None:
    """Write the predicted ``keypoints`` (N, K, 2) of ``rows`` (under ``rows.schema``) as a submission at ``path`` only
    if it passes :func:`validate_submission` against ``test_csv`` (default: ``rows`` as a test
    list) and, with ``image_root``, the image sizes; otherwise raise a FashionGluonError listing
    the problems, leaving ``path`` untouched."""
    with atomic_path(path) as tmp:
        try:
            write_submission(tmp, rows.image_ids, rows.categories, keypoints, rows.schema)
        except ValueError as error:
            raise FashionGluonError(f"refusing to write {path}: {error}") from None
        problems = [p.replace(str(tmp), str(path)) for p in _validate(tmp, rows, test_csv, image_root)]
        if problems:
            raise FashionGluonError(problem_list(f"refusing to write {path}", problems))


def _validate(submission: Path, rows: Annotations, test_csv: "str | os.PathLike | None",
              image_root: "str | os.PathLike | None") -> list[str]:
    """:func:`validate_submission` of ``submission`` against ``test_csv``, or against ``rows``
    written as a temporary test list."""
    if test_csv is not None:
        return validate_submission(test_csv, submission, image_root, rows.schema)
    with tempfile.TemporaryDirectory() as folder:
        test_list = Path(folder) / "test.csv"
        write_annotations(test_list, Annotations(rows.image_ids, rows.categories, None, rows.schema))
        return validate_submission(test_list, submission, image_root, rows.schema)


def _shown(ids: Sequence[str], limit: int = 5) -> str:
    return ", ".join(shorten(i) for i in ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def match_problems(reference: Annotations, other: Annotations, reference_path, other_path, *,
                   missing_ok: bool = False, extra_ok: bool = True) -> tuple[np.ndarray, np.ndarray, list[DataError]]:
    """(rows of ``reference``, rows of ``other``) holding the same images, in ``reference``'s
    order, and the problems of the pairing, each a DataError naming ``other_path``: images of
    ``reference`` that ``other`` lacks (unless ``missing_ok``) and images only ``other`` has
    (unless ``extra_ok``), summed up in one problem; no shared image at all; an image whose
    category differs (located by its spreadsheet row). Rows of ``other`` with an unknown
    category are left to the reader's problems."""
    position = {image_id: row for row, image_id in enumerate(other.image_ids)}
    lacking = [i for i in reference.image_ids if i not in position]
    extra = [] if extra_ok else sorted(set(other.image_ids) - set(reference.image_ids))
    parts = [f"{len(ids)} image(s) {what} {reference_path}: {_shown(ids)}"
             for ids, what in (([] if missing_ok else lacking, "missing, listed in"), (extra, "not in")) if ids]
    problems = [DataError("; ".join(parts), other_path)] if parts else []
    ref_rows = np.array([r for r, i in enumerate(reference.image_ids) if i in position], dtype=np.int64)
    if not len(ref_rows) and not problems:
        problems.append(DataError(f"no image is also in {reference_path}", other_path))
    rows = np.array([position[reference.image_ids[r]] for r in ref_rows], dtype=np.int64)
    problems += [DataError(f"image {quoted(other.image_ids[row])} is {quoted(other.categories[row])} here but "
                           f"{quoted(reference.categories[ref_row])} in {reference_path}",
                           other_path, other.file_row(row), "image_category")
                 for ref_row, row in zip(ref_rows, rows)
                 if other.categories[row] != reference.categories[ref_row] and other.categories[row] in other.schema.categories]
    return ref_rows, rows, problems


def match_rows(reference: Annotations, other: Annotations, reference_path, other_path, *,
               missing_ok: bool = False, extra_ok: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``reference``, rows of ``other``) holding the same images, in ``reference``'s
    order; the first problem of :func:`match_problems` (missing or extra images first) is raised."""
    ref_rows, rows, problems = match_problems(reference, other, reference_path, other_path,
                                              missing_ok=missing_ok, extra_ok=extra_ok)
    if problems:
        raise problems[0]
    return ref_rows, rows


__all__ = ["write_submission", "read_submission", "submission_problems", "validate_submission",
           "save_submission", "problem_list", "match_rows", "match_problems"]
