"""Normalized error of a model on an annotated split, through the same :class:`Predictor`
that writes submissions (one inference path for validation, ``evaluate`` and ``predict``)."""
from __future__ import annotations

import os
from typing import Sequence

import mxnet as mx

from ..build import build_eval_dataset
from ..data.dataset import KeypointDataset
from ..data.layout import TEST_TRUTH
from ..errors import DataError
from ..metrics import normalized_error
from ..runs import run_data_root
from .model import KeypointModel
from .predictor import Predictor


def evaluate_dataset(model: KeypointModel, dataset: KeypointDataset, ctx: Sequence[mx.Context] = (mx.cpu(),),
                     batch_size: int = 16, flip: bool = False, scales: Sequence[float] = (1.0,),
                     cascade: bool = False) -> dict:
    """:func:`~fashion_gluon.metrics.normalized_error` of ``model`` on the images of an annotated
    ``dataset``, predicted as :class:`Predictor` does with ``flip``, ``scales`` and ``cascade``."""
    annotations = dataset.annotations
    if annotations.keypoints is None:
        raise DataError("these rows have no ground truth (a test list; a data-root folder keeps it in "
                        f"{TEST_TRUTH})", annotations.file_of(0))
    predictor = Predictor([model], flip=flip, scales=scales, cascade=cascade, ctx=ctx, batch_size=batch_size)
    images = [dataset.image_input(row) for row in range(len(dataset))]
    points = predictor.predict(images, annotations.categories, dataset.boxes())  # ground-truth boxes of crop models
    return normalized_error(points, annotations.keypoints, annotations.categories, annotations.schema)


def evaluate_model(model: KeypointModel, data_root: "str | os.PathLike", split: str = "val",
                   ctx: Sequence[mx.Context] = (mx.cpu(),), batch_size: int = 8, flip: bool = False,
                   scales: Sequence[float] = (1.0,), cascade: bool = False) -> dict:
    """NE of ``model`` on ``split`` of ``data_root``, as its run's configuration splits it."""
    dataset = build_eval_dataset(model.config, data_root, model.category, split)
    return evaluate_dataset(model, dataset, ctx, batch_size, flip, scales, cascade)


def evaluate_run(run_dir: "str | os.PathLike", data_root: "str | os.PathLike | None" = None,
                 split: str = "val", flip: bool = False, ctx: Sequence[mx.Context] = (mx.cpu(),),
                 batch_size: int = 16, scales: Sequence[float] = (1.0,), cascade: bool = False) -> dict:
    """NE (keys ``ne``, ``per_category``, ``per_keypoint``, ``count``, ...) of the run's best
    weights on ``split`` of ``data_root`` (default: the data the run was trained on)."""
    model = KeypointModel.from_run(run_dir, list(ctx))
    return evaluate_model(model, data_root or run_data_root(run_dir), split, list(ctx), batch_size, flip, scales,
                          cascade)


__all__ = ["evaluate_dataset", "evaluate_model", "evaluate_run"]
