"""The decoding floor: the normalized error that encoding every ground-truth point as a perfect
Gaussian target and decoding it again costs, at given input sizes. No network can score below
it with the same input size, stride and decoder (``fashion-gluon bench codec``)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from tqdm import tqdm

from ..codec import DECODERS, HeatmapCodec, decoding_error
from ..data.annotations import Annotations
from ..data.images import image_size
from ..data.sources import load_split
from ..data.transforms import inverse_transform_points, resize_matrix
from ..metrics import normalized_error


def _annotated_rows(data_root: "str | os.PathLike") -> list[tuple[Annotations, np.ndarray]]:
    """(annotations, image sizes (N, 2) as (H, W)) of the train split and, when it has ground
    truth, the test split."""
    found = []
    for split in ("train", "test"):
        rows = load_split(data_root, split, val_fraction=0.0)
        if rows.keypoints is not None:
            sizes = np.array([image_size(rows.image_path(r)) for r in range(len(rows))], dtype=np.int64)
            found.append((rows, sizes))
    return found


def decoding_floor(data_root: "str | os.PathLike", sizes: Sequence[int] = (160, 256, 384),
                   decoders: Sequence[str] = DECODERS, sigma: float = 2.0, stride: int = 4,
                   progress: bool = False) -> dict:
    """NE (percent) of decoded ideal targets per input size (square, images resized to it as in
    training and prediction) and decoder, over every annotated image of ``data_root``."""
    tables = _annotated_rows(data_root)
    truth = np.concatenate([rows.keypoints for rows, _ in tables]).astype(np.float64)
    categories = [c for rows, _ in tables for c in rows.categories]
    image_sizes = np.concatenate([s for _, s in tables])
    result: dict = {"images": len(truth), "sigma": sigma, "stride": stride, "sizes": {}}
    for side in tqdm(sizes, desc="decoding floor", disable=not progress):
        matrices = np.stack([resize_matrix(tuple(hw), (side, side)) for hw in image_sizes])
        inputs = np.einsum("nij,nkj->nki", matrices[:, :2, :2], truth[..., :2]) + matrices[:, None, :2, 2]
        weights = (truth[..., 2] >= 0).astype(np.float32)
        figures = {}
        for decoder in decoders:
            codec = HeatmapCodec((side, side), stride, sigma, decode=decoder)
            decoded = inputs + decoding_error(codec, inputs, weights)
            points = np.where(np.isfinite(decoded), inverse_transform_points(decoded, matrices), truth[..., :2])
            figures[decoder] = normalized_error(points, truth, categories, tables[0][0].schema)["ne"]
        result["sizes"][str(side)] = figures
    return result


def format_floor(result: dict) -> str:
    """A plain-text table of :func:`decoding_floor`."""
    decoders = list(next(iter(result["sizes"].values())))
    lines = [f"decoding floor over {result['images']} annotated images (σ = {result['sigma']}, stride "
             f"{result['stride']}): NE (%) of perfect targets decoded again",
             "input  " + "  ".join(f"{d:>8s}" for d in decoders)]
    lines += [f"{size + '²':6s} " + "  ".join(f"{figures[d]:8.4f}" for d in decoders)
              for size, figures in result["sizes"].items()]
    return "\n".join(lines)


__all__ = ["decoding_floor", "format_floor"]
