"""Initialize a model from another run: all-category pretrain → per-category fine-tune."""
from __future__ import annotations

import os
from pathlib import Path

import mxnet as mx
import numpy as np

from ..errors import FashionGluonError
from ..schema import KeypointSchema
from ..runs import weights_path


def _source_params(source: "str | os.PathLike") -> dict[str, mx.nd.NDArray]:
    """Weights of a run directory (best, else last) or of a .params file, by structural name."""
    source = Path(source)
    path = weights_path(source) if source.is_dir() else source
    if not path.exists():
        raise FashionGluonError(f"no weights at {path}")
    return mx.nd.load(str(path))


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
        if value.shape != param.shape:
            value = _select_channels(value, param.shape, channels, name, schema.num_keypoints)
            mapped += 1
        param.set_data(mx.nd.array(value, dtype=param.dtype))
    return mapped

