"""RecordIO packs of a split, a training source like any annotation file (``--train PACK.rec``).

A pack is MXNet's indexed RecordIO pair ``PREFIX.rec`` + ``PREFIX.idx`` (as written by
``im2rec``), one record per annotation row of the split, in :func:`~.sources.load_split` order:

* header (``mx.recordio.IRHeader``): ``label`` = the row's K keypoints of the schema as 3K float32
  ``(x, y, v)`` in original image pixels (v = 1 visible, 0 occluded, −1 absent; a row without
  keypoints, from a test list, has the scalar label 0 and ``flag`` 0), ``id`` = the record
  index, ``id2`` = the index of the row's category in the schema's categories;
* payload: the image_id's UTF-8 length as a little-endian uint16, the image_id, then the image
  file's bytes unchanged (decoded by :func:`~fashion_gluon.data.images.decode_image`, exactly
  like :func:`~fashion_gluon.data.images.read_image` decodes the file).

:func:`read_pack_annotations` reads every record's header and image_id (not the images), so a
pack is read as :class:`~.annotations.Annotations` whose ``file_rows`` are the record keys;
:class:`PackReader` reads a record's image, so a :class:`~.dataset.KeypointDataset` over a pack
yields the very same items as over the packed images, for the same rows, transform, codec and seed.
"""
from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import mxnet as mx
import numpy as np

from ..errors import DataError
from ..schema import KeypointSchema, load_schema
from .annotations import Annotations
from .images import decode_image

_RECORD_HEAD = struct.Struct("<II")  # RecordIO: magic, (continuation flag << 29) | length
_MAGIC = 0xCED7230A
_LENGTH_MASK = (1 << 29) - 1
_IR_SIZE = struct.calcsize("IfQQ")  # mx.recordio's IRHeader
_ID_LENGTH = struct.Struct("<H")
MAX_ID_BYTES = 1024  # longest image_id a pack stores


def index_path(rec: "str | os.PathLike") -> Path:
    """The ``.idx`` file beside the ``.rec`` file ``rec``."""
    return Path(rec).with_suffix(".idx")


def encode_record(index: int, image_id: str, category_index: int, keypoints: "np.ndarray | None",
                  image_bytes: bytes) -> bytes:
    """One packed record (see the module docstring); ``keypoints`` (K, 3) or None;
    ``category_index`` is the category's position in the schema."""
    name = image_id.encode("utf-8")
    if len(name) > MAX_ID_BYTES:
        raise DataError(f"image_id is longer than {MAX_ID_BYTES} bytes", image_id)
    label = 0.0 if keypoints is None else np.asarray(keypoints, dtype=np.float32).reshape(-1)
    header = mx.recordio.IRHeader(0, label, index, int(category_index))
    return mx.recordio.pack(header, _ID_LENGTH.pack(len(name)) + name + image_bytes)


def decode_payload(payload: bytes) -> tuple[str, bytes]:
    """(image_id, image file bytes) of a record's payload."""
    (length,) = _ID_LENGTH.unpack_from(payload)
    start = _ID_LENGTH.size
    return payload[start:start + length].decode("utf-8"), payload[start + length:]


def _read_meta(handle, position: int, rec: Path, label_size: int) -> tuple[mx.recordio.IRHeader, str]:
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
    meta = handle.read(min(length & _LENGTH_MASK, _IR_SIZE + 4 * label_size + _ID_LENGTH.size + MAX_ID_BYTES))
    header, payload = mx.recordio.unpack(meta)
    image_id, _ = decode_payload(payload)
    return header, image_id


def read_pack_annotations(rec: "str | os.PathLike", schema: "KeypointSchema | str | None" = None) -> Annotations:
    """The annotations of every record of the pack ``rec`` (packed under ``schema``, default
    FashionAI's; ``file_rows`` = the record keys), from the record headers alone. Raises
    DataError for missing files or records that are not a pack's."""
    rec, schema = Path(rec), load_schema(schema)
    label_size = 3 * schema.num_keypoints
    for path in (rec, index_path(rec)):
        if not path.is_file():
            raise DataError("no such file (a pack is a .rec file with its .idx beside it)", path)
    reader = mx.recordio.MXIndexedRecordIO(str(index_path(rec)), str(rec), "r")
    with contextlib.closing(reader), open(rec, "rb") as handle:
        metas = [_read_meta(handle, reader.idx[key], rec, label_size) for key in reader.keys]
    if not metas:
        raise DataError("the pack holds no records", rec)
    flags = {header.flag for header, _ in metas}
    if not flags <= {0, label_size} or len(flags) > 1:
        raise DataError(f"record labels must all hold {label_size} keypoint values (schema {schema.name!r}) "
                        f"or all none, got sizes {sorted(flags)}", rec)
    keypoints = None
    if flags == {label_size}:
        keypoints = np.stack([header.label for header, _ in metas]).reshape(-1, schema.num_keypoints, 3)
    categories = [schema.category_names[int(header.id2)] for header, _ in metas]
    return Annotations([image_id for _, image_id in metas], categories, keypoints, schema,
                       np.asarray(reader.keys, dtype=np.int64))


class PackReader:
    """Reads the images of a pack's records by key."""

    def __init__(self, rec: "str | os.PathLike"):
        self.rec = Path(rec)
        self.reader = mx.recordio.MXIndexedRecordIO(str(index_path(self.rec)), str(self.rec), "r")

    def image(self, key: int) -> np.ndarray:
        """The uint8 RGB image (H, W, 3) of record ``key``."""
        _, payload = mx.recordio.unpack(self.reader.read_idx(key))
        image_id, image_bytes = decode_payload(payload)
        return decode_image(image_bytes, f"{self.rec} record {key} ({image_id})")


__all__ = ["PackReader", "read_pack_annotations", "encode_record", "decode_payload", "index_path"]
