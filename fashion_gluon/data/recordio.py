"""RecordIO packs of a FashionAI split, and :class:`RecordDataset` reading them.

A pack is MXNet's indexed RecordIO pair ``PREFIX.rec`` + ``PREFIX.idx`` (as written by
``im2rec``), one record per annotation row of the split, in :func:`load_split` order:

* header (``mx.recordio.IRHeader``): ``label`` = the row's 24 keypoints as 72 float32
  ``(x, y, v)`` in original image pixels (v = 1 visible, 0 occluded, −1 absent; a row without
  keypoints, from a test list, has the scalar label 0 and ``flag`` 0), ``id`` = the record
  index, ``id2`` = the index of the row's category in :data:`~fashion_gluon.keypoints.CATEGORIES`;
* payload: the image_id's UTF-8 length as a little-endian uint16, the image_id, then the image
  file's bytes unchanged (decoded by :func:`~fashion_gluon.data.images.decode_image`, exactly
  like :func:`~fashion_gluon.data.images.read_image` decodes the file).

:class:`RecordDataset` reads every record's header and image_id (not the images) when it
opens, so it knows the annotations like :class:`~.dataset.FashionAIDataset`, and yields the
very same items for the same rows, transform, codec and seed.
"""
from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..fileio import atomic_path
from ..schema import ALL, CATEGORIES, NUM_KEYPOINTS, check_category
from .annotations import Annotations
from .dataset import KeypointDataset, load_split
from .images import check_images, decode_image

_RECORD_HEAD = struct.Struct("<II")  # RecordIO: magic, (continuation flag << 29) | length
_MAGIC = 0xCED7230A
_LENGTH_MASK = (1 << 29) - 1
_IR_SIZE = struct.calcsize("IfQQ")  # mx.recordio's IRHeader
_LABEL_SIZE = NUM_KEYPOINTS * 3
_ID_LENGTH = struct.Struct("<H")
MAX_ID_BYTES = 1024  # longest image_id a pack stores


def index_path(rec: "str | os.PathLike") -> Path:
    """The ``.idx`` file beside the ``.rec`` file ``rec``."""
    return Path(rec).with_suffix(".idx")


def encode_record(index: int, image_id: str, category: str, keypoints: "np.ndarray | None",
                  image_bytes: bytes) -> bytes:
    """One packed record (see the module docstring); ``keypoints`` (24, 3) or None."""
    name = image_id.encode("utf-8")
    if len(name) > MAX_ID_BYTES:
        raise DataError(f"image_id is longer than {MAX_ID_BYTES} bytes", image_id)
    label = 0.0 if keypoints is None else np.asarray(keypoints, dtype=np.float32).reshape(_LABEL_SIZE)
    header = mx.recordio.IRHeader(0, label, index, CATEGORIES.index(category))
    return mx.recordio.pack(header, _ID_LENGTH.pack(len(name)) + name + image_bytes)


def decode_payload(payload: bytes) -> tuple[str, bytes]:
    """(image_id, image file bytes) of a record's payload."""
    (length,) = _ID_LENGTH.unpack_from(payload)
    start = _ID_LENGTH.size
    return payload[start:start + length].decode("utf-8"), payload[start + length:]


def pack(data_root: "str | os.PathLike", category: str, out: "str | os.PathLike", split: str = "train",
         val_fraction: float = 0.1, split_seed: int = 0, on_bad_image: str = "error",
         progress: bool = True) -> dict:
    """Pack ``split`` of ``category`` (``all``: every category) of a FashionAI layout into
    ``out`` (a ``.rec`` path) and its ``.idx``, atomically. Images are checked first like
    :class:`~.dataset.FashionAIDataset` does (``on_bad_image`` = error | skip).
    Returns ``{"records", "rec", "idx", "bytes"}``."""
    out = Path(out)
    if out.suffix != ".rec":
        raise DataError("the output of pack must be a .rec file", out)
    annotations, folder = load_split(data_root, split, category, val_fraction, split_seed)
    kept, _ = check_images(annotations, folder, on_error=on_bad_image)
    annotations = annotations.subset(kept)
    with atomic_path(index_path(out)) as idx_tmp, atomic_path(out) as rec_tmp:
        writer = mx.recordio.MXIndexedRecordIO(str(idx_tmp), str(rec_tmp), "w")
        with contextlib.closing(writer):
            for index in tqdm(range(len(annotations)), desc=f"pack {out.name}", unit="img",
                              disable=not progress):
                image_id = annotations.image_ids[index]
                keypoints = None if annotations.keypoints is None else annotations.keypoints[index]
                writer.write_idx(index, encode_record(index, image_id, annotations.categories[index],
                                                      keypoints, (folder / image_id).read_bytes()))
    return {"records": len(annotations), "rec": str(out), "idx": str(index_path(out)),
            "bytes": out.stat().st_size}


def _read_meta(handle, position: int, rec: Path) -> tuple[mx.recordio.IRHeader, str]:
    """(header, image_id) of the record at byte ``position`` of the open ``.rec`` file,
    reading only their bytes."""
    handle.seek(position)
    head = handle.read(_RECORD_HEAD.size)
    if len(head) < _RECORD_HEAD.size:
        raise DataError(f"the index points past the end of the file (byte {position})", rec)
    magic, length = _RECORD_HEAD.unpack(head)
    if magic != _MAGIC or length >> 29:
        raise DataError(f"no RecordIO record starts at byte {position} (not a pack, or the .idx "
                        f"belongs to another .rec)", rec)
    meta = handle.read(min(length & _LENGTH_MASK, _IR_SIZE + 4 * _LABEL_SIZE + _ID_LENGTH.size + MAX_ID_BYTES))
    header, payload = mx.recordio.unpack(meta)
    image_id, _ = decode_payload(payload)
    return header, image_id


def read_pack_annotations(rec: "str | os.PathLike") -> tuple[Annotations, list[int]]:
    """(annotations of every record, their record keys) of the pack ``rec``, from the record
    headers alone. Raises DataError for missing files or records that are not a pack's."""
    rec = Path(rec)
    for path in (rec, index_path(rec)):
        if not path.is_file():
            raise DataError("no such file (a pack is a .rec file with its .idx beside it)", path)
    reader = mx.recordio.MXIndexedRecordIO(str(index_path(rec)), str(rec), "r")
    with contextlib.closing(reader), open(rec, "rb") as handle:
        metas = [_read_meta(handle, reader.idx[key], rec) for key in reader.keys]
    if not metas:
        raise DataError("the pack holds no records", rec)
    flags = {header.flag for header, _ in metas}
    if not flags <= {0, _LABEL_SIZE} or len(flags) > 1:
        raise DataError(f"record labels must all hold {_LABEL_SIZE} keypoint values or all none, "
                        f"got sizes {sorted(flags)}", rec)
    keypoints = None
    if flags == {_LABEL_SIZE}:
        keypoints = np.stack([header.label for header, _ in metas]).reshape(-1, NUM_KEYPOINTS, 3)
    categories = [CATEGORIES[int(header.id2)] for header, _ in metas]
    return Annotations([image_id for _, image_id in metas], categories, keypoints), list(reader.keys)


class RecordDataset(KeypointDataset):
    """The records of a pack (see :func:`pack`) of ``category`` as a dataset whose items equal
    those of :class:`~.dataset.FashionAIDataset` for the same rows, transform, codec and seed.
    ``category`` other than ``all`` keeps only that category's records."""

    def __init__(self, rec: "str | os.PathLike", category: str = ALL, transform=None, codec=None,
                 seed: int = 0):
        check_category(category)
        self.rec = Path(rec)
        annotations, keys = read_pack_annotations(self.rec)
        if category != ALL:
            rows = [i for i, c in enumerate(annotations.categories) if c == category]
            if not rows:
                raise DataError(f"the pack holds no records of category {category!r}", self.rec)
            annotations, keys = annotations.subset(rows), [keys[i] for i in rows]
        super().__init__(annotations, category, transform, codec, seed)
        self.keys = keys
        self.reader = mx.recordio.MXIndexedRecordIO(str(index_path(self.rec)), str(self.rec), "r")

    def load_image(self, row: int) -> np.ndarray:
        _, payload = mx.recordio.unpack(self.reader.read_idx(self.keys[row]))
        image_id, image_bytes = decode_payload(payload)
        return decode_image(image_bytes, f"{self.rec} record {self.keys[row]} ({image_id})")


__all__ = ["pack", "RecordDataset", "read_pack_annotations", "encode_record", "decode_payload", "index_path"]
