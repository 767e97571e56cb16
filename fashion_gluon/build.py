"""Builders: a config (see :mod:`.config`) → the model, codec, loss and datasets of a run.

Training, SWA, evaluation, prediction, export, the benchmarks and the demo all build
through these functions, so one config always means one network, one target encoding
and one evaluation split. The model's family (:mod:`.families`) decides the codec, the
loss and the final output.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import mxnet as mx
from mxnet import gluon

from .codec import HeatmapCodec
from .data.dataset import SplitDataset
from .data.sources import training_data
from .data.transforms import test_transform, train_transform
from .errors import FashionGluonError
from .families import ModelFamily, family_of
from .losses import LossOptions
from .models import get_model
from .runs import load_run_weights, load_state, run_config
from .schema import KeypointSchema, load_schema


def build_schema(config: dict) -> KeypointSchema:
    """The keypoint schema of the config (``data.schema``: a shipped name or a file)."""
    return load_schema(config["data"]["schema"])


def build_family(config: dict) -> ModelFamily:
    """The family of the config's model."""
    return family_of(config["model"]["name"])


def build_codec(config: dict) -> HeatmapCodec:
    """The target codec of the config's model family."""
    data = config["data"]
    return build_family(config).codec(data["input_size"], int(data["stride"]), float(data["sigma"]),
                                      config["codec"]["decode"])


def build_model(config: dict, category: str, ctx: Sequence[mx.Context]) -> gluon.HybridBlock:
    """The config's model for ``category``, initialized on ``ctx`` and hybridized."""
    model = config["model"]
    net = get_model(model["name"], build_schema(config).category_size(category), pretrained=model["pretrained"],
                    ctx=list(ctx), **model["kwargs"])
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def build_loss(config: dict) -> gluon.HybridBlock:
    """The hybridized training loss of the config's model family."""
    loss_fn = build_family(config).loss(LossOptions.from_config(config["loss"]))
    loss_fn.hybridize(static_alloc=True, static_shape=True)
    return loss_fn


def build_train_dataset(config: dict, data_root: "str | os.PathLike | None", category: str) -> SplitDataset:
    """The augmented training split with the codec's targets (of ``data.train_files``, else
    ``data_root``; no flips for a schema that is not flippable)."""
    data = config["data"]
    augment = train_transform(tuple(data["input_size"]), rotate_p=data["rotate_p"], max_rotate=data["max_rotate"],
                              flip_p=data["flip_p"] if build_schema(config).flippable else 0.0,
                              crop_area=tuple(data["crop_area"]), crop_aspect=tuple(data["crop_aspect"]),
                              crop_margin=data["crop_margin"], color=data["color"])
    return SplitDataset(training_data(data["train_files"], data_root), category, "train", augment,
                        build_codec(config), seed=config["train"]["seed"], **_split_options(config))


def build_eval_dataset(config: dict, data_root: "str | os.PathLike | None", category: str,
                       split: str = "val") -> SplitDataset:
    """``split`` without augmentation (items ``(image, matrix, row)``), as a run with ``config``
    splits it; ``test`` is ``data_root``'s (a data-root folder or a test source FILE[:IMAGE_DIR])."""
    data = config["data"]
    source = data_root if split == "test" else training_data(data["train_files"], data_root)
    if source is None:
        raise FashionGluonError("the test split needs --data-root ROOT or --test FILE[:IMAGE_DIR]")
    return SplitDataset(source, category, split, test_transform(tuple(data["input_size"])), **_split_options(config))


def _split_options(config: dict) -> dict:
    """The SplitDataset arguments every split of a run shares."""
    data = config["data"]
    size = data["input_size"]
    return {"val_fraction": data["val_fraction"], "split_seed": data["split_seed"], "schema": build_schema(config),
            "box_margin": data["box_margin"], "box_aspect": size[1] / size[0], "box_crop_p": data["box_crop_p"],
            "box_jitter": data["box_jitter"]}


def load_run(run_dir: "str | os.PathLike", ctx: Sequence[mx.Context] = (mx.cpu(),)):
    """(net with the run's best weights, config, state) of a run directory; a damaged file of
    the run is a one-line error naming it (see :func:`~fashion_gluon.runs.load_run_weights`)."""
    run_dir = Path(run_dir)
    state, config = load_state(run_dir), run_config(run_dir)
    net = build_model(config, state["category"], list(ctx))
    load_run_weights(net, run_dir, list(ctx))
    return net, config, state


__all__ = ["build_schema", "build_family", "build_codec", "build_model", "build_loss", "build_train_dataset",
           "build_eval_dataset", "load_run"]
