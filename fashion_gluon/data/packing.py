"""Writing a RecordIO pack (the format: :mod:`.recordio`) of a split of any data."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import mxnet as mx
from tqdm import tqdm

from ..errors import DataError
from ..fileio import atomic_path
from ..schema import KeypointSchema
from .images import check_images
from .recordio import encode_record, index_path
from .sources import Data, load_split


def pack(data: Data, category: str, out: "str | os.PathLike", split: str = "train",
         val_fraction: float = 0.1, split_seed: int = 0, on_bad_image: str = "error",
         progress: bool = True, schema: "KeypointSchema | str | None" = None) -> dict:
    """Pack ``split`` of ``category`` (``all``: every category) of ``data`` (a data-root folder or
    training sources) into ``out`` (a ``.rec`` path) and its ``.idx``, atomically. Images are
    checked first like :class:`~.dataset.SplitDataset` does (``on_bad_image`` = error | skip).
    Returns ``{"records", "rec", "idx", "bytes"}``."""
    out = Path(out)
    if out.suffix != ".rec":
        raise DataError("the output of pack must be a .rec file", out)
    annotations = load_split(data, split, category, val_fraction, split_seed, schema)
    categories = annotations.schema.category_names
    kept, _ = check_images(annotations, on_error=on_bad_image)
    annotations = annotations.subset(kept)
    with atomic_path(index_path(out)) as idx_tmp, atomic_path(out) as rec_tmp:
        writer = mx.recordio.MXIndexedRecordIO(str(idx_tmp), str(rec_tmp), "w")
        with contextlib.closing(writer):
            for index in tqdm(range(len(annotations)), desc=f"pack {out.name}", unit="img",
                              disable=not progress):
                image_id = annotations.image_ids[index]
                keypoints = None if annotations.keypoints is None else annotations.keypoints[index]
                writer.write_idx(index, encode_record(index, image_id, categories.index(annotations.categories[index]),
                                                      keypoints, annotations.image_path(index).read_bytes()))
    return {"records": len(annotations), "rec": str(out), "idx": str(index_path(out)),
            "bytes": out.stat().st_size}


__all__ = ["pack"]
