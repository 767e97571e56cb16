"""Pictures of a prediction CSV (``fashion-gluon show``): keypoint overlays (prediction vs truth,
coloured by error), a gallery of the worst images by per-image NE, a per-keypoint NE bar chart,
and a heatmap montage of one image (which needs a checkpoint to recompute its heatmaps).

Images are found under the FashionAI layout root: ``ROOT/test/<image_id>`` if the first
image exists there, else ``ROOT/train/<image_id>``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.annotations import read_annotations
from ..data.images import read_image
from ..data.layout import split_folder
from ..data.submission import match_rows, read_submission
from ..errors import DataError
from ..inference.predictor import Predictor
from ..metrics import normalized_error, per_image_error
from ..schema import KeypointSchema, load_schema
from ..visualize import draw_comparison, draw_keypoints, gallery, heatmap_montage, plot_per_keypoint, save_image


def image_folder(data_root: "str | os.PathLike", image_id: str) -> Path:
    """The split folder of the layout ``data_root`` that holds ``image_id`` (test, then train)."""
    folders = [split_folder(data_root, split) for split in ("test", "train")]
    for folder in folders:
        if (folder / image_id).is_file():
            return folder
    raise DataError(f"image {image_id!r} is in neither {folders[0]} nor {folders[1]}")


def overlay(image: np.ndarray, pred: np.ndarray, category: str, truth: "np.ndarray | None" = None,
            schema: "KeypointSchema | None" = None) -> np.ndarray:
    """``image`` with the predicted keypoints (K, ≥2) and skeleton, or, given ``truth``
    (K, 3), the prediction vs truth coloured by error."""
    if truth is None:
        return draw_keypoints(image, pred[:, :2], category, schema=schema)
    return draw_comparison(image, pred[:, :2], truth, category, schema=schema)


def _title(image_id: str, text: str = "") -> str:
    return f"{text} {Path(image_id).stem[:10]}".strip()


class _Pictures:
    """The matched prediction (and truth) rows of a ``show`` call and their images."""

    def __init__(self, pred_csv, data_root, truth_csv=None, schema: "KeypointSchema | None" = None):
        self.schema = load_schema(schema)
        self.pred = read_submission(pred_csv, self.schema)
        self.rows = np.arange(len(self.pred))
        self.truth = None
        if truth_csv is not None:
            truth = read_annotations(truth_csv, schema=self.schema)
            truth_rows, self.rows = match_rows(truth, self.pred, truth_csv, pred_csv, missing_ok=True)
            self.truth = truth.keypoints[truth_rows]
        self.folder = image_folder(data_root, self.pred.image_ids[0])

    def image_id(self, i: int) -> str:
        return self.pred.image_ids[self.rows[i]]

    def category(self, i: int) -> str:
        return self.pred.categories[self.rows[i]]

    def path(self, i: int) -> Path:
        return self.folder / self.image_id(i)

    def drawn(self, i: int) -> np.ndarray:
        truth = None if self.truth is None else self.truth[i]
        return overlay(read_image(self.path(i)), self.pred.keypoints[self.rows[i]], self.category(i), truth,
                       self.schema)

    def errors(self) -> np.ndarray:
        """Per-image NE (%) of the matched rows (needs the truth)."""
        return per_image_error(self.pred.keypoints[self.rows, :, :2], self.truth,
                               [self.category(i) for i in range(len(self.rows))], self.schema)

    def result(self) -> dict:
        return normalized_error(self.pred.keypoints[self.rows, :, :2], self.truth,
                                [self.category(i) for i in range(len(self.rows))], self.schema)


def worst_images(errors: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest finite ``errors``, largest first."""
    finite = np.flatnonzero(np.isfinite(errors))
    return finite[np.argsort(-errors[finite], kind="stable")][:count]


def show(pred_csv: "str | os.PathLike", data_root: "str | os.PathLike", out_dir: "str | os.PathLike",
         truth_csv: "str | os.PathLike | None" = None, worst: int = 8, limit: int = 16,
         checkpoints: Sequence["str | os.PathLike"] = (), image_id: "str | None" = None,
         flip: bool = True, ctx=None, schema: "KeypointSchema | str | None" = None) -> dict[str, Path]:
    """Write the pictures of a prediction CSV into ``out_dir``; returns ``{name: path}``:

    * ``overlays``: the first ``limit`` images with their keypoints (vs the truth, if given);
    * ``worst`` and ``per_keypoint`` (with ``truth_csv``): the ``worst`` images by per-image NE,
      and the per-keypoint NE bar chart;
    * ``heatmaps`` (with ``checkpoints``): the heatmap montage of ``image_id`` (default: the
      worst image, else the first), recomputed by a :class:`~fashion_gluon.inference.predictor.Predictor`.
    """
    out = Path(out_dir)
    pictures = _Pictures(pred_csv, data_root, truth_csv, schema)
    shown = range(min(limit, len(pictures.rows)))
    written = {"overlays": out / "overlays.png"}
    gallery([pictures.drawn(i) for i in shown], written["overlays"],
            titles=[_title(pictures.image_id(i)) for i in shown])
    first = 0
    if pictures.truth is not None:
        errors = pictures.errors()
        order = worst_images(errors, worst)
        if len(order):
            first = int(order[0])
            written["worst"] = out / "worst.png"
            gallery([pictures.drawn(i) for i in order], written["worst"],
                    titles=[_title(pictures.image_id(i), f"{errors[i]:.1f}%") for i in order])
        written["per_keypoint"] = out / "per_keypoint.png"
        plot_per_keypoint(pictures.result(), written["per_keypoint"])
    if checkpoints:
        written["heatmaps"] = out / "heatmaps.png"
        _heatmap_picture(pictures, image_id or pictures.image_id(first), checkpoints, flip, ctx, written["heatmaps"])
    return written


def _heatmap_picture(pictures: _Pictures, image_id: str, checkpoints, flip: bool, ctx, path: Path) -> None:
    """Recompute the heatmaps of ``image_id`` with ``checkpoints`` and save their montage."""
    if image_id not in pictures.pred.image_ids:
        raise DataError(f"image {image_id!r} is not in the prediction")
    category = pictures.pred.categories[pictures.pred.image_ids.index(image_id)]
    heatmaps, frame = Predictor(checkpoints, flip=flip, ctx=ctx).heatmaps(pictures.folder / image_id, category)
    names = [pictures.schema.keypoints[k] for k in pictures.schema.category_indices(category)]
    save_image(path, heatmap_montage(frame, heatmaps, names))


__all__ = ["show", "image_folder", "overlay", "worst_images"]
