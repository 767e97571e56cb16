"""Evaluate a run directory on an annotated split."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import mxnet as mx

from ..config import load_config
from ..data.dataset import FashionAIDataset
from ..data.transforms import test_transform
from ..errors import DataError
from .checkpoint import load_state, weights_path
from .train import build_codec, build_model, evaluate_net


def load_run(run_dir: "str | os.PathLike", ctx: Sequence[mx.Context] = (mx.cpu(),)):
    """(net with the run's best weights, config, state) of a run directory."""
    run_dir = Path(run_dir)
    state, config = load_state(run_dir), load_config(run_dir / "config.yaml")
    net = build_model(config, state["category"], list(ctx))
    net.load_parameters(str(weights_path(run_dir)), ctx=list(ctx))
    return net, config, state


def evaluate_run(run_dir: "str | os.PathLike", data_root: "str | os.PathLike | None" = None,
                 split: str = "val", flip: bool = False, ctx: Sequence[mx.Context] = (mx.cpu(),),
                 batch_size: int = 16) -> dict:
    """NE (keys ``ne``, ``per_category``, ``per_keypoint``, ``count``, ...) of the run's best
    weights on ``split`` of ``data_root`` (default: the data the run was trained on)."""
    net, config, state = load_run(run_dir, ctx)
    data_root = data_root or state["data_root"]
    data = config["data"]
    dataset = FashionAIDataset(data_root, state["category"], split, test_transform(tuple(data["input_size"])),
                               val_fraction=data["val_fraction"], split_seed=data["split_seed"])
    if dataset.annotations.keypoints is None:
        raise DataError(f"split {split!r} of {data_root} has no ground truth (test/annotations.csv)")
    return evaluate_net(net, dataset, build_codec(config), list(ctx), batch_size, flip)
