"""FashionAI CSV files: annotations (train.csv, test ground truth), test lists and submissions.

In memory a CSV is an :class:`Annotations`: ``image_ids`` (paths relative to
the split folder), ``categories`` and ``keypoints`` of shape (N, 24, 3) holding
``(x, y, v)`` in original image pixels (see :mod:`fashion_gluon.keypoints`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import atomic_write
from ..keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS, SUBMISSION_COLUMNS, category_mask

ABSENT_CELL = "-1_-1_-1"


@dataclass
class Annotations:
    """Rows of a FashionAI CSV. ``keypoints`` is None for a test list (test.csv)."""

    image_ids: list[str]
    categories: list[str]
    keypoints: "np.ndarray | None" = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, rows: "np.ndarray | list[int]") -> "Annotations":
        """The rows ``rows`` (indices) as a new Annotations."""
        rows = np.asarray(rows, dtype=np.int64)
        kps = None if self.keypoints is None else self.keypoints[rows]
        return Annotations([self.image_ids[r] for r in rows], [self.categories[r] for r in rows], kps)


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
        header, rows = ("image_id", "image_category"), [
            (i, c) for i, c in zip(annotations.image_ids, annotations.categories)]
    else:
        kps = np.asarray(annotations.keypoints)
        if kps.shape != (len(annotations), NUM_KEYPOINTS, 3):
            raise ValueError(f"keypoints must have shape ({len(annotations)}, 24, 3), got {kps.shape}")
        mask = category_mask(annotations.categories)
        header, rows = SUBMISSION_COLUMNS, []
        for n, (image_id, category) in enumerate(zip(annotations.image_ids, annotations.categories)):
            cells = [format_cell(*kps[n, k, :2], int(kps[n, k, 2]) if mask[n, k] else -1)
                     for k in range(NUM_KEYPOINTS)]
            rows.append((image_id, category, *cells))
    with atomic_write(Path(path), "w", newline="") as handle:
        handle.write(",".join(header) + "\n")
        for row in rows:
            handle.write(",".join(row) + "\n")


__all__ = ["Annotations", "ABSENT_CELL", "KEYPOINT_NAMES", "format_cell", "write_annotations"]
