"""``FashionAIDataset``: a FashionAI-layout folder as a ``gluon.data.Dataset`` (and
:class:`KeypointDataset`, its base, shared with the RecordIO dataset).

Splits: ``train`` and ``val`` are drawn from ``train/Annotations/train.csv``
(``val`` = a per-category share chosen by ``split_seed``); ``test`` is
``test/test.csv`` (with ground truth from ``test/annotations.csv`` when present).

Items:

* with a ``codec`` (training): ``(image (3, H, W) float32, targets (L, K, h, w), weights (K,))``;
* without (evaluation, prediction): ``(image (3, H, W) float32, matrix (3, 3), row)`` where
  ``matrix`` maps original image pixels to input pixels (invert it to map predictions back).

Keys may be a row index or ``(epoch, row)`` (see :class:`EpochSampler`): the
augmentation of a sample is seeded by ``(seed, epoch, row)``, so a run is
reproducible whatever the number of DataLoader workers.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from mxnet import gluon

from ..codec import HeatmapCodec
from ..errors import DataError
from ..schema import ALL, KeypointSchema
from .annotations import Annotations, read_annotations, read_image_list, require_rows
from .coco import read_coco
from .images import check_images, read_image
from .transforms import Sample

SPLITS = ("train", "val", "test")


def layout_paths(root: "str | os.PathLike", split: str) -> tuple[Path, Path]:
    """(the file listing the split's images, split folder) of ``split`` under ``root``; a clear
    error names the first missing path. Two layouts are read:

    * FashionAI: ``train/Annotations/train.csv``; ``test/test.csv`` (the image list; ground truth,
      when there is any, in ``test/annotations.csv``);
    * COCO keypoints: ``train/annotations.json``, ``test/annotations.json``.

    Images live under the split folder (``image_id`` / ``file_name`` is relative to it)."""
    root = Path(root)
    folder = root / ("test" if split == "test" else "train")
    candidates = ([folder / "test.csv", folder / "annotations.json"] if split == "test"
                  else [folder / "Annotations" / "train.csv", folder / "annotations.json"])
    for path in (root, folder):
        if not path.exists():
            raise DataError(f"missing {path} (expected ROOT/train/ and ROOT/test/ of the FashionAI layout "
                            "(train/Annotations/train.csv, test/test.csv) or of COCO files (annotations.json))")
    for path in candidates:
        if path.exists():
            return path, folder
    raise DataError(f"missing {candidates[0]} (or {', '.join(str(c.relative_to(folder)) for c in candidates[1:])} "
                    f"in {folder})")


def read_split_file(path: Path, schema: "KeypointSchema | str | None" = None) -> Annotations:
    """An annotation CSV, a COCO JSON file or a test list (``test.csv``), by its name."""
    if path.suffix == ".json":
        return read_coco(path, schema)
    return read_image_list(path, schema) if path.name == "test.csv" else read_annotations(path, schema=schema)


def split_rows(categories: "list[str]", val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows): ``val_fraction`` of every category (at least one row of a
    category with two or more), chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    cats = np.asarray(categories)
    val = []
    for category in sorted(set(categories)):
        rows = np.flatnonzero(cats == category)
        count = int(round(len(rows) * val_fraction))
        if val_fraction > 0 and len(rows) >= 2:
            count = min(max(count, 1), len(rows) - 1)
        val.extend(rng.permutation(rows)[:count].tolist())
    val_rows = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(len(categories)), val_rows), val_rows


def load_split(root: "str | os.PathLike", split: str, category: str = ALL, val_fraction: float = 0.1,
               split_seed: int = 0, schema: "KeypointSchema | str | None" = None) -> tuple[Annotations, Path]:
    """The annotations of ``split`` restricted to ``category`` and the split folder (see
    :func:`layout_paths`); ``train`` and ``val`` share the training file, split by
    :func:`split_rows`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    path, folder = layout_paths(root, split)
    truth = folder / "annotations.csv"
    source = truth if split == "test" and truth.exists() else path
    annotations = require_rows(read_split_file(source, schema), source,
                               "predict" if split == "test" else "train or validate on")
    annotations.schema.check_category(category)
    if split != "test":
        train_rows, val_rows = split_rows(annotations.categories, val_fraction, split_seed)
        annotations = annotations.subset(train_rows if split == "train" else val_rows)
    if category != ALL:
        annotations = annotations.subset([i for i, c in enumerate(annotations.categories) if c == category])
    if len(annotations) == 0:
        raise DataError(f"no {split} rows of category {category!r}", path=path)
    return annotations, folder


class KeypointDataset(gluon.data.Dataset):
    """Rows of ``annotations`` as items (see the module docstring); subclasses say where each
    row's image comes from (:meth:`load_image`). ``category`` (``all`` = the joint model over every
    keypoint of the annotations' schema) sets the keypoint channels."""

    def __init__(self, annotations: Annotations, category: str = ALL, transform=None,
                 codec: "HeatmapCodec | None" = None, seed: int = 0):
        self.annotations, self.category, self.schema = annotations, category, annotations.schema
        self.channels = list(self.schema.category_indices(category))
        self.flip_perm = self.schema.flip_permutation(category)
        self.transform, self.codec, self.seed = transform, codec, seed

    def __len__(self) -> int:
        return len(self.annotations)

    def load_image(self, row: int) -> np.ndarray:
        """The uint8 RGB image (H, W, 3) of ``row``."""
        raise NotImplementedError

    def sample(self, row: int) -> Sample:
        """The untransformed Sample of ``row`` (keypoints in this dataset's channel order)."""
        image = self.load_image(row)
        if self.annotations.keypoints is not None:
            keypoints = self.annotations.keypoints[row, self.channels]
        else:
            keypoints = np.full((len(self.channels), 3), -1.0)
        return Sample.from_image(image, keypoints, self.flip_perm)

    def __getitem__(self, key):
        epoch, row = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, row])
        sample = self.sample(row)
        if self.transform is not None:
            sample = self.transform(sample, rng)
        if self.codec is None:
            return sample.image, sample.matrix.astype(np.float32), row
        targets, weights = self.codec.encode(sample.keypoints, sample.weights)
        return sample.image, targets, weights


class FashionAIDataset(KeypointDataset):
    """Images and keypoints of one split and category of a data folder (FashionAI CSV or COCO
    layout, see :func:`layout_paths`) under a keypoint ``schema`` (default FashionAI's)."""

    def __init__(self, root: "str | os.PathLike", category: str = ALL, split: str = "train",
                 transform=None, codec: "HeatmapCodec | None" = None, val_fraction: float = 0.1,
                 split_seed: int = 0, seed: int = 0, check: bool = True, on_bad_image: str = "error",
                 schema: "KeypointSchema | str | None" = None):
        annotations, self.folder = load_split(root, split, category, val_fraction, split_seed, schema)
        if check:
            kept, _ = check_images(annotations, self.folder, on_error=on_bad_image)
            annotations = annotations.subset(kept)
        super().__init__(annotations, category, transform, codec, seed)
        self.split = split

    def image_path(self, row: int) -> Path:
        return self.folder / self.annotations.image_ids[row]

    def load_image(self, row: int) -> np.ndarray:
        return read_image(self.image_path(row))


class EpochSampler(gluon.data.Sampler):
    """Yields ``(epoch, row)`` keys, shuffled by ``(seed, epoch)``; ``set_epoch`` before each
    epoch. With ``num_parts > 1`` yields only the ``part_index``-th shard (distributed
    training: every worker sees a disjoint, equally long part of the epoch)."""

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0,
                 part_index: int = 0, num_parts: int = 1):
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.part_index, self.num_parts, self.epoch = part_index, num_parts, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = np.arange(self.length)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length)
        per_part = self.length // self.num_parts
        order = order[self.part_index * per_part:(self.part_index + 1) * per_part]
        return iter([(self.epoch, int(row)) for row in order])

    def __len__(self) -> int:
        return self.length // self.num_parts
