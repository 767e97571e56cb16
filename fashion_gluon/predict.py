"""Inference: heatmaps from a network, decoded and mapped back to original image pixels."""
from __future__ import annotations

from typing import Sequence

import mxnet as mx
import numpy as np
from mxnet import gluon
from tqdm import tqdm

from .codec import HeatmapCodec
from .data.transforms import inverse_transform_points
from .keypoints import local_to_global


def final_heatmaps(outputs) -> mx.nd.NDArray:
    """The heatmaps a model predicts with: CPN's RefineNet output, the hourglass' last stack."""
    return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


def forward(net: gluon.Block, data: mx.nd.NDArray, flip_perm: "np.ndarray | None" = None) -> mx.nd.NDArray:
    """Final heatmaps (N, K, h, w) of ``data``; with ``flip_perm`` averaged with those of the
    mirrored input, mirrored back and left/right channels swapped."""
    heatmaps = final_heatmaps(net(data))
    if flip_perm is not None:
        flipped = final_heatmaps(net(mx.nd.flip(data, axis=3)))
        perm = mx.nd.array(flip_perm, ctx=data.context, dtype="int64")
        heatmaps = (heatmaps + mx.nd.take(mx.nd.flip(flipped, axis=3), perm, axis=1)) / 2
    return heatmaps


def predict_dataset(net: gluon.Block, dataset, codec: HeatmapCodec, ctx: Sequence[mx.Context],
                    batch_size: int = 16, flip: bool = False, num_workers: int = 0,
                    progress: bool = False) -> np.ndarray:
    """Keypoints (N, 24, 2) in original pixels for every row of an evaluation ``dataset``
    (items ``(image, matrix, row)``); keypoints outside the dataset's category are −1."""
    loader = gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                   num_workers=num_workers, last_batch="keep")
    flip_perm = dataset.flip_perm if flip else None
    local = np.zeros((len(dataset), len(dataset.channels), 2))
    for data, matrices, rows in tqdm(loader, desc="predict", disable=not progress, leave=False):
        parts = gluon.utils.split_and_load(data, ctx, even_split=False)
        heatmaps = np.concatenate([forward(net, part, flip_perm).asnumpy() for part in parts])
        points, _ = codec.decode(heatmaps)
        local[rows.asnumpy().astype(np.int64)] = inverse_transform_points(points, matrices.asnumpy())
    return local_to_global(dataset.category, local)
