"""Annotated rows as a ``gluon.data.Dataset``: :class:`KeypointDataset` over any
:class:`~.annotations.Annotations` (each row's image from its source), :class:`SplitDataset`
for one split of a data-root folder or of training sources (:mod:`.sources`).

Items:

* with a ``codec`` (training): ``(image (3, H, W) float32, targets (L, K, h, w), weights (K,))``;
* without (evaluation, prediction): ``(image (3, H, W) float32, matrix (3, 3), row)`` where
  ``matrix`` maps original image pixels to input pixels (invert it to map predictions back).

Keys may be a row index or ``(epoch, row)`` (see :class:`EpochSampler`): the
augmentation of a sample is seeded by ``(seed, epoch, row)``, so a run is
reproducible whatever the number of DataLoader workers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from mxnet import gluon

from ..codec import HeatmapCodec
from ..schema import ALL, KeypointSchema
from .annotations import Annotations
from .images import check_images, read_image
from .sources import Data, load_split
from .transforms import BOX_MARGIN, Sample, crop_to_box, jitter_box, points_box


class KeypointDataset(gluon.data.Dataset):
    """Rows of ``annotations`` as items (see the module docstring). Each row's image is read from
    its source (an image folder, or a RecordIO pack: :mod:`.recordio`); ``category`` (``all`` =
    the joint model over every keypoint of the annotations' schema) sets the keypoint channels.

    A row with a box is cropped to it first (:func:`~.transforms.crop_to_box`: enlarged by
    ``box_margin``, widened to ``box_aspect`` = W / H of the network input); in training
    (with a ``codec``) a row of a file with boxes that has none uses its labelled points' box.

    Top-down (two-stage) training: with ``box_crop_p`` > 0 a training item is cropped to its
    labelled (``v`` ≥ 0) points' box with that probability, whatever its file, and every training
    box is moved and scaled by up to ± ``box_jitter`` (:func:`~.transforms.jitter_box`), the
    error of the first stage that finds the box at test time. A model trained only on crops
    (``box_crop_p`` = 1) is evaluated on the labelled points' boxes too (ground-truth boxes, as
    top-down pose models are validated); :meth:`boxes` lists them."""

    def __init__(self, annotations: Annotations, category: str = ALL, transform=None,
                 codec: "HeatmapCodec | None" = None, seed: int = 0, box_margin: float = BOX_MARGIN,
                 box_aspect: "float | None" = None, box_crop_p: float = 0.0, box_jitter: float = 0.0):
        self.annotations, self.category, self.schema = annotations, category, annotations.schema
        self.channels = list(self.schema.category_indices(category))
        self.flip_perm = self.schema.flip_permutation(category)
        self.transform, self.codec, self.seed = transform, codec, seed
        self.box_margin, self.box_aspect = box_margin, box_aspect
        self.box_crop_p, self.box_jitter = box_crop_p, box_jitter
        self._packs: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.annotations)

    def image_path(self, row: int) -> Path:
        """The image file (or the pack) of ``row``."""
        return self.annotations.image_path(row)

    def image_input(self, row: int) -> "Path | np.ndarray":
        """What a predictor reads for ``row``: its image file, or the decoded image of a packed row."""
        source = self.annotations.source(row)
        return self.load_image(row) if source is not None and source.packed else self.image_path(row)

    def load_image(self, row: int) -> np.ndarray:
        """The uint8 RGB image (H, W, 3) of ``row``."""
        source = self.annotations.source(row)
        if source is None or not source.packed:
            return read_image(self.image_path(row))
        from .recordio import PackReader  # MXNet's RecordIO
        index = int(self.annotations.origin[row])
        if index not in self._packs:
            self._packs[index] = PackReader(source.file)
        return self._packs[index].image(self.annotations.file_row(row))

    def box(self, row: int, rng: "np.random.Generator | None" = None) -> "np.ndarray | None":
        """The (x0, y0, x1, y1) box ``row`` is cropped to, or None (the whole image); ``rng`` (a
        training item's) draws the points' box crop and the jitter (see the class docstring)."""
        boxes = self.annotations.boxes
        box = boxes[row] if boxes is not None and np.isfinite(boxes[row]).all() else None
        training = self.codec is not None
        if training:
            wanted = boxes is not None or (rng is not None and self.box_crop_p > 0 and rng.random() < self.box_crop_p)
        else:
            wanted = self.box_crop_p >= 1.0
        if box is None and wanted:
            box = self.labelled_box(row)
        if box is not None and training and rng is not None and self.box_jitter > 0:
            box = jitter_box(box, rng, self.box_jitter)
        return box

    def labelled_box(self, row: int) -> "np.ndarray | None":
        """The box of ``row``'s labelled (``v`` ≥ 0) keypoints, or None."""
        if self.annotations.keypoints is None:
            return None
        labelled = self.annotations.keypoints[row, self.channels]
        return points_box(labelled[labelled[:, 2] >= 0, :2])

    def boxes(self) -> np.ndarray:
        """Every row's :meth:`box` without augmentation, (N, 4); NaN rows: the whole image."""
        return np.array([[np.nan] * 4 if (box := self.box(row)) is None else box for row in range(len(self))])

    def sample(self, row: int, rng: "np.random.Generator | None" = None) -> Sample:
        """The untransformed Sample of ``row`` (keypoints in this dataset's channel order), cropped
        to its box (drawn with ``rng`` in training, see :meth:`box`)."""
        image = self.load_image(row)
        if self.annotations.keypoints is not None:
            keypoints = self.annotations.keypoints[row, self.channels]
        else:
            keypoints = np.full((len(self.channels), 3), -1.0)
        sample = Sample.from_image(image, keypoints, self.flip_perm)
        box = self.box(row, rng)
        return sample if box is None else crop_to_box(sample, box, self.box_margin, self.box_aspect)

    def __getitem__(self, key):
        epoch, row = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, row])
        sample = self.sample(row, rng)
        if self.transform is not None:
            sample = self.transform(sample, rng)
        if self.codec is None:
            return sample.image, sample.matrix.astype(np.float32), row
        targets, weights = self.codec.encode(sample.keypoints, sample.weights)
        return sample.image, targets, weights


class SplitDataset(KeypointDataset):
    """One split and category of annotated data (a data-root folder or training sources, see
    :func:`~.sources.load_split`) under a keypoint ``schema`` (default FashionAI's); the images
    are checked first (``on_bad_image`` = error | skip)."""

    def __init__(self, data: Data, category: str = ALL, split: str = "train",
                 transform=None, codec: "HeatmapCodec | None" = None, val_fraction: float = 0.1,
                 split_seed: int = 0, seed: int = 0, check: bool = True, on_bad_image: str = "error",
                 schema: "KeypointSchema | str | None" = None, box_margin: float = BOX_MARGIN,
                 box_aspect: "float | None" = None, box_crop_p: float = 0.0, box_jitter: float = 0.0):
        annotations = load_split(data, split, category, val_fraction, split_seed, schema)
        if check:  # a pack's images were checked when it was packed
            packed = np.array([annotations.source(r).packed for r in range(len(annotations))], dtype=bool)
            loose = np.flatnonzero(~packed)
            kept, _ = check_images(annotations.subset(loose), on_error=on_bad_image)
            annotations = annotations.subset(np.sort(np.concatenate([loose[kept], np.flatnonzero(packed)])))
        super().__init__(annotations, category, transform, codec, seed, box_margin, box_aspect, box_crop_p,
                         box_jitter)
        self.split = split


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
