"""Reading :class:`~.layout.Source` files into :class:`~.annotations.Annotations`, the union of
several training sources, and the train / val / test splits. MXNet-free (a RecordIO source
imports :mod:`.recordio` when read).

* :func:`read_source`: one file by its kind — a COCO JSON, a RecordIO pack, a CSV with keypoint
  columns (``train.csv``, the warm-up ``annotations.csv``, a test set's answer file) or a test
  list (``image_id,image_category``, told apart by its header).
* :func:`read_sources`: the union of several files, each row knowing its file and image folder;
  an image listed by two files is kept once (one warning line names both files).
* :func:`load_split`: ``train`` and ``val`` from the training sources (``val`` = a seeded share of
  each category's images, the objects of one photo always on the same side), ``test`` from a
  test source.
"""
from __future__ import annotations

import csv
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..errors import DataError
from ..schema import ALL, KeypointSchema
from .annotations import TEST_LIST_COLUMNS, Annotations, concat, read_annotations, read_image_list, require_rows
from .coco import read_coco
from .layout import Source, parse_source, root_source, root_truth

#: The splits :func:`load_split` reads (``evaluate --split``, ``pack --split``).
SPLITS = ("train", "val", "test")
#: The held-out splits (all but ``train``): what a prediction or a benchmark's NE is of
#: (:meth:`~fashion_gluon.inference.predictor.Predictor.predict_split`, ``predict --split``, ``bench --split``).
HELD_OUT_SPLITS = SPLITS[1:]
#: A data-root folder, or training sources (``FILE[:IMAGE_DIR]`` strings or Sources).
Data = Union[str, "os.PathLike", Sequence[Union[str, Source]]]


def read_source(source: "Source | str", schema: "KeypointSchema | str | None" = None) -> Annotations:
    """The rows of one source file, each knowing the source (see the module docstring)."""
    source = parse_source(source)
    suffix = source.file.suffix.lower()
    if suffix == ".json":
        rows = read_coco(source.file, schema)
    elif suffix == ".rec":
        from .recordio import read_pack_annotations  # MXNet's RecordIO reader
        rows = read_pack_annotations(source.file, schema)
    elif is_test_list(source.file):
        rows = read_image_list(source.file, schema)
    else:
        rows = read_annotations(source.file, schema=schema)
    return rows.from_source(source)


def is_test_list(path: Path) -> bool:
    """The file is a CSV whose header is a test list's (``image_id,image_category``)."""
    if path.suffix.lower() != ".csv":
        return False
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    return tuple(h.strip() for h in header) == TEST_LIST_COLUMNS


def read_sources(sources: "Sequence[Source | str]", schema: "KeypointSchema | str | None" = None) -> Annotations:
    """The union of ``sources``' rows, in order; a row whose object (:func:`_object_key`) an
    earlier source already lists is dropped, with one warning line per pair of files."""
    if not sources:
        raise DataError("no training sources: pass --data-root ROOT or --train FILE[:IMAGE_DIR]")
    parts = []
    for source in sources:
        part = read_source(source, schema if not parts else parts[0].schema)
        if part.keypoints is None:
            raise DataError("a test list (image_id,image_category) has no keypoints to train on", part.sources[0].file)
        parts.append(part)
    union = concat(parts)
    keep, seen, repeats = [], {}, Counter()
    firsts: dict[tuple[int, int], str] = {}
    for row in range(len(union)):
        key = _object_key(union, row)
        first = seen.setdefault(key, row)
        if first == row:
            keep.append(row)
            continue
        pair = (int(union.origin[first]), int(union.origin[row]))
        if pair[0] != pair[1]:
            repeats[pair] += 1
            firsts.setdefault(pair, union.image_ids[row])
        else:
            keep.append(row)
    for (a, b), count in repeats.items():
        warnings.warn(f"{count} image(s) of {union.sources[b].file} are also in {union.sources[a].file} "
                      f"(first: {firsts[(a, b)]}); each is counted once", stacklevel=2)
    return union.subset(keep)


def _object_key(rows: Annotations, row: int) -> tuple:
    """What makes two rows the same object: the image as the file names it (FashionAI's image names
    are unique across its archives) with the same file size, category and box."""
    box = rows.boxes[row] if rows.boxes is not None else ()
    source = rows.source(row)
    try:
        size = -1 if source.packed else os.stat(rows.image_path(row)).st_size
    except OSError:
        size = -1  # a missing image is reported, with its row, when the images are checked
    return (rows.image_ids[row], size, rows.categories[row], tuple(np.round(box, 1).tolist()))


def source_counts(rows: Annotations) -> list[tuple[Source, int, int]]:
    """(source, images, objects) of each of ``rows``' sources, in order."""
    counts = []
    for index, source in enumerate(rows.sources):
        mine = np.flatnonzero(rows.origin == index)
        counts.append((source, len({rows.image_ids[r] for r in mine}), len(mine)))
    return counts


def describe_sources(rows: Annotations) -> list[str]:
    """One line per source: how many images (and objects) it gave."""
    return [f"source {source.file}: {images} images" + (f" ({objects} objects)" if objects != images else "")
            for source, images, objects in source_counts(rows)]


def split_rows(categories: "list[str]", val_fraction: float, seed: int,
               groups: "Sequence[str] | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows): ``val_fraction`` of every category (at least one of a category with
    two or more), chosen by ``seed``. With ``groups`` (e.g. each row's image) the draw is over
    groups, each counted in the category of its first row, and a group's rows stay together."""
    labels = list(groups) if groups is not None else list(range(len(categories)))
    first = {}
    for row, label in enumerate(labels):
        first.setdefault(label, row)
    members = list(first)
    cats = np.asarray([categories[first[m]] for m in members])
    rng = np.random.default_rng(seed)
    val = []
    for category in sorted(set(cats.tolist())):
        rows = np.flatnonzero(cats == category)
        count = int(round(len(rows) * val_fraction))
        if val_fraction > 0 and len(rows) >= 2:
            count = min(max(count, 1), len(rows) - 1)
        val.extend(rng.permutation(rows)[:count].tolist())
    val_groups = {members[g] for g in val}
    val_rows = np.asarray([r for r, label in enumerate(labels) if label in val_groups], dtype=np.int64)
    return np.setdiff1d(np.arange(len(categories)), val_rows), val_rows


def training_data(train_files: "Sequence[str]", data_root: "str | os.PathLike | None") -> Data:
    """What a run trains on: its ``data.train_files`` if any, else the data-root folder."""
    if train_files:
        return list(train_files)
    if data_root is None:
        raise DataError("no training data: pass --data-root ROOT or --train FILE[:IMAGE_DIR] (data.train_files)")
    return data_root


def training_sources(data: Data) -> list[Source]:
    """The training sources of ``data``: a data-root folder's training file, or the sources given."""
    if isinstance(data, (str, os.PathLike)) and not Path(data).is_file():
        return [root_source(data, "train")]
    specs = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    return [parse_source(s) for s in specs]


def test_source(data: "str | os.PathLike | Source", truth: bool = True) -> Source:
    """The test source of ``data``: a source file (``FILE[:IMAGE_DIR]``), or a data-root folder's
    test list — its ground truth (``test/annotations.csv``) instead when ``truth`` and present."""
    if isinstance(data, Source):
        return data
    if Path(data).is_dir():
        test = root_source(data, "test")
        known = root_truth(data) if truth else None
        return known if known is not None else test
    return parse_source(data)


def load_split(data: Data, split: str, category: str = ALL, val_fraction: float = 0.1, split_seed: int = 0,
               schema: "KeypointSchema | str | None" = None) -> Annotations:
    """The rows of ``split`` restricted to ``category``: ``train`` / ``val`` from the training
    sources of ``data`` (:func:`training_sources`, split by :func:`split_rows` per image),
    ``test`` from its test source (:func:`test_source`)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "test":
        source = test_source(data if isinstance(data, (str, os.PathLike, Source)) else data[0])
        rows = require_rows(read_source(source, schema), source.file, "predict")
    else:
        sources = training_sources(data)
        rows = require_rows(read_sources(sources, schema), sources[0].file, "train or validate on")
        train, val = split_rows(rows.categories, val_fraction, split_seed,
                                [str(rows.image_path(r)) for r in range(len(rows))])
        rows = rows.subset(train if split == "train" else val)
    rows.schema.check_category(category)
    if category != ALL:
        rows = rows.subset([i for i, c in enumerate(rows.categories) if c == category])
    if len(rows) == 0:
        raise DataError(f"no {split} rows of category {category!r}", rows.sources[0].file if rows.sources else None)
    return rows


__all__ = ["read_source", "read_sources", "is_test_list", "source_counts", "describe_sources", "split_rows",
           "training_data", "training_sources", "test_source", "load_split", "SPLITS", "HELD_OUT_SPLITS",
           "Data"]
