"""Coordinate ensembles of finished submission CSVs.

Rows are matched by ``image_id`` (the output follows the first file's order); every file must
list the same images with the same categories. Each keypoint of a row's category is the
weighted mean of the files' coordinates (weights normalized to sum 1), rounded to integer
pixels when written.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..data.annotations import Annotations, require_rows
from ..data.submission import match_rows, read_submission, write_submission
from ..errors import FashionGluonError


def normalized_weights(weights: "Sequence[float] | None", count: int) -> np.ndarray:
    """``weights`` (equal when None) divided by their sum; each must be ≥ 0, the sum > 0."""
    w = np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (count,):
        raise FashionGluonError(f"got {w.size} weights for {count} submissions")
    if not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise FashionGluonError(f"weights must be non-negative with a positive sum, got {w.tolist()}")
    return w / w.sum()


def ensemble_submissions(paths: Sequence["str | os.PathLike"],
                         weights: "Sequence[float] | None" = None) -> tuple[Annotations, np.ndarray]:
    """(rows of the first file, weighted mean keypoints (N, K, 2)) of the submissions ``paths``;
    columns outside each row's category are −1."""
    if not paths:
        raise FashionGluonError("ensemble needs at least one submission")
    w = normalized_weights(weights, len(paths))
    reference = require_rows(read_submission(paths[0]), paths[0], "ensemble")
    total = np.zeros((len(reference), reference.keypoints.shape[1], 2))
    for path, weight in zip(paths, w):
        other = reference if path is paths[0] else require_rows(read_submission(path), path, "ensemble")
        total += weight * other.keypoints[match_rows(reference, other, paths[0], path, extra_ok=False)[1], :, :2]
    absent = reference.keypoints[..., 2] < 0
    total[absent] = -1.0
    return Annotations(reference.image_ids, reference.categories), total


def write_ensemble(paths: Sequence["str | os.PathLike"], out: "str | os.PathLike",
                   weights: "Sequence[float] | None" = None) -> Annotations:
    """Write the coordinate ensemble of ``paths`` to ``out`` (atomically); returns its rows."""
    rows, keypoints = ensemble_submissions(paths, weights)
    write_submission(out, rows.image_ids, rows.categories, keypoints)
    return rows


__all__ = ["ensemble_submissions", "write_ensemble", "normalized_weights"]
