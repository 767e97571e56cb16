"""Initialize a model from another run: all-category pretrain → per-category fine-tune."""
from __future__ import annotations

import os
from pathlib import Path

import mxnet as mx
import numpy as np

from ..errors import FashionGluonError, quoted
from ..runs import BEST_PARAMS, LAST, CorruptWeights, intact_last, is_run, read_params, run_config, weights_path
from ..schema import KeypointSchema


def _source_params(source: "str | os.PathLike") -> dict[str, mx.nd.NDArray]:
    """Weights of a run directory (best, else last) or of a .params file, by structural name."""
    source = Path(source)
    if source.is_dir() and not is_run(source):
        raise FashionGluonError(f"--init-from {source}: not a training run directory (no {LAST}) "
                                "nor a .params file")
    path = weights_path(source) if source.is_dir() else source
    if not path.exists():
        raise FashionGluonError(f"no weights at {path}")
    try:
        return read_params(path)
    except CorruptWeights as error:
        other = intact_last(source) if source.is_dir() and path.name == BEST_PARAMS else None
        hint = f"; the run's last-epoch weights {other} are intact: pass that file to --init-from" if other else ""
        raise CorruptWeights(f"{error}{hint}") from None


def check_same_model(source: "str | os.PathLike", config: dict) -> None:
    """Refuse to initialize a model of ``config`` from a run trained with another model
    (``model.name`` or ``model.kwargs``); another input size is fine (the networks are
    fully convolutional, so the weights fit any size)."""
    if not is_run(source):
        return
    theirs = run_config(source)["model"]
    for key in ("name", "kwargs"):
        if theirs[key] != config["model"][key]:
            raise FashionGluonError(f"--init-from {source}: it was trained with model.{key}={quoted(theirs[key])}, "
                                    f"this run has model.{key}={quoted(config['model'][key])}; initialize from a "
                                    "run of the same model")


def _select_channels(value: np.ndarray, target_shape: tuple, channels: list[int], name: str,
                     num_keypoints: int) -> np.ndarray:
    """Slice every axis of length ``num_keypoints`` that is the category's K in the target to ``channels``
    (a target dimension of 0 is not yet inferred and matches anything)."""
    out = value
    for axis, (have, want) in enumerate(zip(value.shape, target_shape)):
        if have != want and want != 0:
            if have != num_keypoints or want != len(channels):
                raise FashionGluonError(f"cannot map parameter {name}: shape {value.shape} "
                                        f"does not fit {target_shape}")
            out = np.take(out, channels, axis=axis)
    return out


def load_matching(net, source: "str | os.PathLike", category: str, schema: KeypointSchema) -> int:
    """Load ``source``'s weights into ``net`` (a model of ``category``): equal shapes are copied,
    all-keypoint heads are reduced to the category's channels through the schema. Every parameter
    of ``net`` must be found. Returns the number of parameters whose channels were selected."""
    loaded = _source_params(source)
    channels = list(schema.category_indices(category))
    params = net._collect_params_with_prefix()
    missing = sorted(set(params) - set(loaded))
    if missing:
        raise FashionGluonError(f"{source} lacks {len(missing)} parameters of this model, e.g. "
                                f"{missing[0]}; was it trained with the same model?")
    mapped = 0
    for name, param in params.items():
        value = loaded[name].asnumpy()
        if value.shape != param.shape:  # or a dimension of param not yet inferred
            selected = _select_channels(value, param.shape, channels, name, schema.num_keypoints)
            mapped, value = mapped + (selected.shape != value.shape), selected
        param.set_data(mx.nd.array(value, dtype=param.dtype))
    return mapped

