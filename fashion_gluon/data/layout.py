"""Where annotations and images lie: a :class:`Source` (an annotation file and its image folder)
and the one data-root layout the project writes and reads. MXNet-free.

A source is written ``FILE`` or ``FILE:IMAGE_DIR`` (``--train``, ``--test``, ``data.train_files``).
``FILE`` is a FashionAI CSV (annotations, a test-set answer file, or a test list
``image_id,image_category``), a COCO keypoint JSON, or a RecordIO pack (``.rec``, see
:mod:`.recordio`). Image paths in the file are relative to ``IMAGE_DIR``; without one, to the
folder holding the file, or to that folder's parent when it is called ``Annotations``
(``train/Annotations/train.csv`` lists ``Images/blouse/….jpg`` under ``train/``).

The data-root layout (``--data-root ROOT``, the synthetic drawers' output)::

    ROOT/train/Annotations/train.csv   (or ROOT/train/annotations.json)   training annotations
    ROOT/test/test.csv                 (or ROOT/test/annotations.json)    the test list
    ROOT/test/annotations.csv          the test set's ground truth, when known
    ROOT/<split>/Images/<category>/…   images, relative to ROOT/<split>/
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

#: Relative paths of the data-root layout.
TRAIN_CSV = Path("train", "Annotations", "train.csv")
TRAIN_COCO = Path("train", "annotations.json")
TEST_LIST = Path("test", "test.csv")
TEST_COCO = Path("test", "annotations.json")
TEST_TRUTH = Path("test", "annotations.csv")
ROOT_FILES = {"train": (TRAIN_CSV, TRAIN_COCO), "test": (TEST_LIST, TEST_COCO)}
SOURCE_SUFFIXES = (".csv", ".json", ".rec")
#: The keypoint file formats written: FashionAI CSV, COCO JSON (annotations, or results of a
#: prediction); ``synth --format`` (:mod:`.synthetic_schema`) and ``predict --format``.
KEYPOINT_FORMATS = ("csv", "coco")


@dataclass(frozen=True)
class Source:
    """An annotation file and the folder its image paths are relative to."""

    file: Path
    images: Path

    @classmethod
    def of(cls, file: "str | os.PathLike", images: "str | os.PathLike | None" = None) -> "Source":
        """The source of ``file`` (absolute paths) with ``images`` or the default image folder."""
        file = Path(file).expanduser().resolve()
        return cls(file, Path(images).expanduser().resolve() if images else default_image_dir(file))

    @property
    def packed(self) -> bool:
        """A RecordIO pack (images inside the file, checked when packed)."""
        return self.file.suffix.lower() == ".rec"

    def __str__(self) -> str:
        return f"{self.file}:{self.images}"


def default_image_dir(file: Path) -> Path:
    """The folder of ``file``, or its parent when that folder is called ``Annotations``."""
    return file.parent.parent if file.parent.name == "Annotations" else file.parent


def parse_source(spec: "str | os.PathLike | Source") -> Source:
    """``FILE`` or ``FILE:IMAGE_DIR`` as a :class:`Source`; a clear error names a missing file or folder."""
    if isinstance(spec, Source):
        return spec
    text = os.fspath(spec)
    file, images = text, None
    if not Path(text).is_file() and ":" in text:
        head, tail = text.rsplit(":", 1)
        if Path(head).suffix.lower() in SOURCE_SUFFIXES or Path(head).is_file():
            file, images = head, tail
    if Path(file).suffix.lower() not in SOURCE_SUFFIXES:
        raise DataError(f"{text!r} is not FILE or FILE:IMAGE_DIR with FILE a .csv, .json or .rec file")
    if not Path(file).is_file():
        raise DataError("no such annotation file", file)
    source = Source.of(file, images)
    if not source.images.is_dir():
        raise DataError(f"no such image folder {source.images} (name it with {file}:IMAGE_DIR)")
    return source


def split_folder(root: "str | os.PathLike", split: str) -> Path:
    """The folder of ``split`` (``train`` and ``val`` share ``train``) under a data root: its images' folder."""
    return Path(root) / ("test" if split == "test" else "train")


def root_source(root: "str | os.PathLike", split: str) -> Source:
    """The source of the data-root layout's ``train`` (train and val) or ``test`` split; a clear
    error names the first missing path."""
    root, folder = Path(root), split_folder(root, split)
    candidates = [root / f for f in ROOT_FILES["test" if split == "test" else "train"]]
    for path in (root, folder):
        if not path.exists():
            raise DataError(f"missing {path} (expected ROOT/train/ and ROOT/test/ of the FashionAI layout "
                            f"({TRAIN_CSV}, {TEST_LIST}) or of COCO files (annotations.json))")
    for path in candidates:
        if path.exists():
            return Source(path.resolve(), folder.resolve())
    raise DataError(f"missing {candidates[0]} (or {candidates[1].relative_to(folder)} in {folder})")


def root_truth(root: "str | os.PathLike") -> "Source | None":
    """The data-root layout's test ground truth (``test/annotations.csv``), if present."""
    path = Path(root) / TEST_TRUTH
    return Source(path.resolve(), path.parent.resolve()) if path.is_file() else None


__all__ = ["Source", "parse_source", "default_image_dir", "split_folder", "root_source", "root_truth", "TRAIN_CSV", "TRAIN_COCO",
           "TEST_LIST", "TEST_COCO", "TEST_TRUTH", "ROOT_FILES", "SOURCE_SUFFIXES", "KEYPOINT_FORMATS"]
