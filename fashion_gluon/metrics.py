"""The normalized error (NE) and PCK: a functional core and a thin accumulator.

NE is pooled over every (image, keypoint) pair whose ground truth is visible
(``v == 1``) and belongs to the image's category::

    NE = 100 * sum(d / s) / count

``d`` is the Euclidean distance between prediction and truth in original image
pixels; ``s`` normalizes it: the ground-truth distance between the category's
normalizing pair of the schema (FashionAI: armpits for blouse, outwear and dress;
waistband ends for skirt and trousers), or, for a category whose schema names no pair,
the diagonal of the box around the image's annotated (v ≥ 0) ground-truth keypoints.
``normalization`` in the result says which was used per category. PCK@t is the percentage
of the same pairs with ``d / s ≤ t`` (t = 0.05 and 0.1), for users coming from mmpose.

Decisions, in one place:

* ``v == 0`` (occluded) and ``v == -1`` (absent) keypoints never count. The
  seed's local evaluator counted ``v == 0`` keypoints; this one does not.
* The normalizer uses the truth coordinates of ``v == 0`` points too: an
  occluded point is still annotated.
* An image whose normalizing pair is not annotated (either point ``v == -1``)
  or coincides (``s == 0``) cannot be normalized: it is left out of every
  figure and counted in ``skipped_images``; one ``warnings.warn`` per summary
  reports the count.
* Prediction columns outside the row's category are ignored (whatever they hold).
"""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from .data.annotations import file_order, read_annotations, require_rows
from .data.submission import match_problems, submission_problems
from .errors import raise_problems
from .schema import KeypointSchema, load_schema

PCK_THRESHOLDS: tuple[float, ...] = (0.05, 0.1)


def _check_inputs(pred: np.ndarray, truth: np.ndarray, categories: Sequence[str], schema: KeypointSchema
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes and categories; return float arrays and the categories as an array."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    k = schema.num_keypoints
    if truth.ndim != 3 or truth.shape[1:] != (k, 3):
        raise ValueError(f"truth must have shape (N, {k}, 3), got {truth.shape}")
    n = truth.shape[0]
    if pred.shape != (n, k, 2):
        raise ValueError(f"pred must have shape ({n}, {k}, 2) to match truth {truth.shape}, got {pred.shape}")
    if len(categories) != n:
        raise ValueError(f"got {len(categories)} categories for {n} images")
    for category in categories:
        schema.check_category(category, allow_all=False)
    return pred, truth, np.asarray(categories, dtype=object)


def normalizing_distance(truth: np.ndarray, categories: Sequence[str],
                         schema: "KeypointSchema | None" = None) -> np.ndarray:
    """The normalizer ``s`` of each row, shape (N,): the distance between the category's
    normalizing pair, or the annotated keypoints' box diagonal where the schema names no pair.
    NaN where the pair is not annotated (either point ``v == -1``) or ``s == 0``."""
    schema = load_schema(schema)
    truth = np.asarray(truth, dtype=np.float64)
    s = np.full(len(truth), np.nan)
    for row, category in enumerate(categories):
        pair = schema.norm_pairs.get(category)
        if pair is not None:
            a, b = truth[row, pair[0]], truth[row, pair[1]]
            if a[2] >= 0 and b[2] >= 0:
                s[row] = np.hypot(*(a[:2] - b[:2]))
        else:
            annotated = truth[row, truth[row, :, 2] >= 0, :2]
            if len(annotated):
                s[row] = np.hypot(*(annotated.max(axis=0) - annotated.min(axis=0)))
    return np.where(s > 0, s, np.nan)


def _error_matrix(pred: np.ndarray, truth: np.ndarray, categories: Sequence[str], schema: KeypointSchema
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (N, K) matrix of d / s, the (N, K) mask of pairs that count, and the (N,)
    mask of skipped images. Entries outside the mask are 0."""
    pred, truth, categories = _check_inputs(pred, truth, categories, schema)
    s = normalizing_distance(truth, categories, schema)
    skipped = np.isnan(s)
    mask = schema.category_mask(categories) & (truth[..., 2] == 1) & ~skipped[:, None]
    bad = mask & ~np.isfinite(pred).all(axis=-1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"prediction of image {row}, keypoint {schema.keypoints[col]} is not finite")
    d = np.hypot(*np.moveaxis(pred - truth[..., :2], -1, 0))
    ratio = np.where(mask, d / np.where(skipped, 1.0, s)[:, None], 0.0)
    return ratio, mask, skipped


def _percent(ratio: np.ndarray, mask: np.ndarray) -> float:
    """100 * mean of ``ratio`` over ``mask`` (NaN when the mask is empty)."""
    count = int(mask.sum())
    return 100.0 * float(ratio[mask].sum()) / count if count else float("nan")


def _summarize(ratio: np.ndarray, mask: np.ndarray, skipped: np.ndarray, categories: np.ndarray,
               schema: KeypointSchema) -> dict:
    """The result dict of :func:`normalized_error` from the error matrix and masks."""
    n_skipped = int(skipped.sum())
    if n_skipped:
        warnings.warn(f"normalized error: {n_skipped} image(s) skipped because their "
                      f"normalizing keypoint pair is not annotated or has zero length",
                      stacklevel=3)
    present = [c for c in schema.category_names if mask[categories == c].any()]
    count = int(mask.sum())
    pck = {f"pck@{t:g}": (100.0 * float((ratio[mask] <= t).sum()) / count if count else float("nan"))
           for t in PCK_THRESHOLDS}
    return {"ne": _percent(ratio, mask), **pck,
            "per_category": {c: _percent(ratio[categories == c], mask[categories == c]) for c in present},
            "per_keypoint": {name: _percent(ratio[:, k], mask[:, k])
                             for k, name in enumerate(schema.keypoints) if mask[:, k].any()},
            "normalization": {c: "pair " + "-".join(schema.keypoints[i] for i in schema.norm_pairs[c])
                              if schema.norm_pairs.get(c) else "bbox diagonal" for c in present},
            "count": count, "skipped_images": n_skipped}


def normalized_error(pred: np.ndarray, truth: np.ndarray, categories: Sequence[str],
                     schema: "KeypointSchema | None" = None) -> dict:
    """Pooled normalized error of predictions ``pred`` (N, K, 2) against ``truth`` (N, K, 3)
    under ``schema`` (default FashionAI's).

    Returns ``{"ne": percent, "pck@0.05": percent, "pck@0.1": percent, "per_category":
    {category: percent}, "per_keypoint": {name: percent}, "normalization": {category: how},
    "count": pairs used, "skipped_images": n}``. ``per_category`` and ``per_keypoint`` list only
    entries with at least one counted pair; ``ne`` is NaN when nothing counts. Images whose
    normalizing pair is missing are skipped with a warning (see the module docstring).
    """
    schema = load_schema(schema)
    ratio, mask, skipped = _error_matrix(pred, truth, categories, schema)
    return _summarize(ratio, mask, skipped, np.asarray(categories, dtype=object), schema)


def per_image_error(pred: np.ndarray, truth: np.ndarray, categories: Sequence[str],
                    schema: "KeypointSchema | None" = None) -> np.ndarray:
    """Mean d / s in percent over each image's counted keypoints, shape (N,); NaN where
    nothing counts (skipped image, or no visible keypoint). For worst-K galleries."""
    ratio, mask, _ = _error_matrix(pred, truth, categories, load_schema(schema))
    count = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, 100.0 * ratio.sum(axis=1) / count, np.nan)


class NEMeter:
    """Accumulates per-(image, keypoint) errors over batches; :meth:`result` equals
    :func:`normalized_error` on the concatenation of every update."""

    def __init__(self, schema: "KeypointSchema | None" = None) -> None:
        self.schema = load_schema(schema)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._ratios: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._skipped: list[np.ndarray] = []
        self._categories: list[str] = []

    def update(self, pred: np.ndarray, truth: np.ndarray, categories: Sequence[str]) -> None:
        """Add a batch: ``pred`` (B, K, 2), ``truth`` (B, K, 3), ``categories`` (B,)."""
        ratio, mask, skipped = _error_matrix(pred, truth, categories, self.schema)
        self._ratios.append(ratio)
        self._masks.append(mask)
        self._skipped.append(skipped)
        self._categories.extend(categories)

    def result(self) -> dict:
        """The :func:`normalized_error` dict over everything accumulated."""
        if not self._ratios:
            empty = np.zeros((0, self.schema.num_keypoints))
            return _summarize(empty, empty.astype(bool), np.zeros(0, dtype=bool), np.zeros(0, dtype=object),
                              self.schema)
        return _summarize(np.concatenate(self._ratios), np.concatenate(self._masks),
                          np.concatenate(self._skipped), np.asarray(self._categories, dtype=object), self.schema)


def evaluate_csv(truth_csv: "str | os.PathLike", pred_csv: "str | os.PathLike",
                 schema: "KeypointSchema | str | None" = None) -> dict:
    """:func:`normalized_error` of a submission CSV against an annotation CSV.

    Rows are matched by ``image_id`` (order is free; extra predicted images are
    ignored). Both files get the readers' checks (:func:`read_annotations`, which reads a
    category keypoint written ``-1_-1_-1`` as absent and so unscored, raising the first
    problem of the truth; :func:`~.data.submission.read_submission`'s checks of
    the prediction, which reject duplicate images). A file with no data rows is a
    DataError ("no rows to score"). Every problem of the prediction, including
    images of the truth it lacks and images it gives another category, is reported
    at once: one as a DataError, several as one DataProblems listing them.
    """
    schema = load_schema(schema)
    truth = require_rows(read_annotations(truth_csv, schema=schema), truth_csv, "score")
    pred, problems = submission_problems(pred_csv, schema)
    if not len(pred) and not problems:
        require_rows(pred, pred_csv, "score")
    _, rows, matching = match_problems(truth, pred, truth_csv, pred_csv)
    raise_problems(sorted(problems + matching, key=lambda problem: file_order(problem, schema.columns)), pred_csv)
    return normalized_error(pred.keypoints[rows, :, :2], truth.keypoints, truth.categories, schema)


def format_table(result: dict) -> str:
    """A plain-text table of a :func:`normalized_error` result: overall, PCK, per category,
    per keypoint."""
    width = max([len(name) for name in result["per_keypoint"]] + [10])
    pck = ", ".join(f"{key.upper()} {result[key]:.1f} %" for key in result if key.startswith("pck@"))
    lines = [f"{'overall':<{width}}  {result['ne']:7.3f} %   "
             f"({result['count']} keypoints, {result['skipped_images']} images skipped; {pck})", ""]
    for title, table in (("category", result["per_category"]), ("keypoint", result["per_keypoint"])):
        lines.append(f"{title:<{width}}  NE (%)")
        lines += [f"{name:<{width}}  {value:7.3f}" for name, value in table.items()]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["normalized_error", "per_image_error", "normalizing_distance", "NEMeter", "PCK_THRESHOLDS",
           "evaluate_csv", "format_table"]
