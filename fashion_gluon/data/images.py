"""Image files: decoding to uint8 RGB, header-only sizes, and checking a split's images.

Images are decoded *as stored*: the EXIF orientation tag is ignored by both
:func:`read_image` and :func:`image_size`, so their sizes always agree and
keypoints stay in the stored pixel grid the annotations refer to.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from .annotations import Annotations

PROGRESS_MIN_ROWS = 2000  # check_images shows a progress bar above this many rows


def _file_error(path: "str | os.PathLike") -> DataError:
    """The DataError explaining why ``path`` could not be read or decoded as an image."""
    path = Path(path)
    if not path.exists():
        return DataError("no such image file", path)
    if path.is_dir():
        return DataError("is a directory, not an image file", path)
    if not os.access(path, os.R_OK):
        return DataError("image file is not readable (permission denied)", path)
    if path.stat().st_size == 0:
        return DataError("empty image file (0 bytes)", path)
    return DataError("cannot decode the image (corrupt, truncated or unsupported format)", path)


def _to_uint8(image: np.ndarray, path: "str | os.PathLike") -> np.ndarray:
    """8-bit pixels: 16-bit values keep their top byte (65535 → 255)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    raise DataError(f"unsupported pixel type {image.dtype} (expected 8- or 16-bit)", path)


def _composite_on_white(bgra: np.ndarray) -> np.ndarray:
    """Blend a uint8 BGRA image over a white background; returns uint8 BGR."""
    alpha = bgra[..., 3:].astype(np.float32) / 255.0
    blended = bgra[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return (blended + 0.5).astype(np.uint8)


def read_image(path: "str | os.PathLike") -> np.ndarray:
    """Decode the image file ``path`` to a uint8 RGB array (H, W, 3).

    The format is detected from the content, not the file name (PNG bytes in
    a ``.jpg`` file load fine). Grayscale becomes three equal channels, 16-bit
    samples keep their top byte, and an alpha channel is composited onto white
    (FashionAI photos are products on white, so transparent pixels become
    background rather than black). EXIF orientation is ignored.
    Raises DataError naming ``path`` for a missing, empty, corrupt or truncated file.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        raise _file_error(path) from None
    image = _imdecode(data)
    if image is None:
        raise _file_error(path)
    return _to_rgb(image, path)


def decode_image(data: "bytes | np.ndarray", source: "str | os.PathLike") -> np.ndarray:
    """Decode the encoded image file content ``data`` exactly as :func:`read_image` decodes a
    file; ``source`` names it in the DataError raised for undecodable bytes."""
    image = _imdecode(np.frombuffer(data, dtype=np.uint8))
    if image is None:
        raise DataError("cannot decode the image (corrupt, truncated or unsupported format)", source)
    return _to_rgb(image, source)


def _imdecode(buffer: np.ndarray) -> "np.ndarray | None":
    """``cv2.imdecode`` of the bytes ``buffer`` as stored (any depth and channels); None if
    empty or undecodable."""
    return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None


def _to_rgb(image: np.ndarray, path: "str | os.PathLike") -> np.ndarray:
    """A decoded OpenCV image (gray, BGR or BGRA; 8 or 16 bit) as uint8 RGB (H, W, 3)."""
    image = _to_uint8(image, path)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        image = _composite_on_white(image)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def expand_image_paths(specs: "Sequence[str | os.PathLike]") -> list[Path]:
    """Image files named by ``specs``: files as given, folders' image files (by suffix, sorted,
    not recursive) and glob patterns (``photos/*.jpg``, ``**`` recursive). A spec that matches
    nothing is a DataError naming it."""
    found: dict[Path, None] = {}  # ordered, without repeats
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            matches = [path]
        elif any(c in str(spec) for c in "*?["):
            anchor = Path(path.anchor) if path.is_absolute() else Path(".")
            pattern = str(path.relative_to(anchor)) if path.is_absolute() else str(spec)
            matches = sorted(p for p in anchor.glob(pattern) if p.is_file())
        else:
            raise DataError("no such file or folder", path)
        if not matches:
            raise DataError("no image files here" if path.is_dir() else "the pattern matches no file", path)
        found.update(dict.fromkeys(matches))
    return list(found)


def image_size(path: "str | os.PathLike") -> tuple[int, int]:
    """``(H, W)`` of the image file ``path``, reading only its header.

    Raises DataError naming ``path`` for a missing, empty or unidentifiable
    file. A file whose header is intact but whose pixel data is truncated is
    only caught by :func:`read_image`.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _file_error(path) from None
    return height, width


def outside_image(points: np.ndarray, sizes: np.ndarray, tolerance: float = 0.5) -> np.ndarray:
    """Boolean mask of ``points`` (..., 2) as (x, y) lying outside images of ``sizes``.

    ``sizes`` (H, W) broadcasts against ``points[..., 0]``. Pixel centres run
    from 0 to W - 1 (H - 1); ``tolerance`` pixels of rounding are allowed on each side.
    """
    points, sizes = np.asarray(points), np.asarray(sizes)
    x, y = points[..., 0], points[..., 1]
    height, width = sizes[..., 0], sizes[..., 1]
    return (x < -tolerance) | (y < -tolerance) | (x > width - 1 + tolerance) | (y > height - 1 + tolerance)


def _read_sizes(annotations: "Annotations", split_dir: "Path | None") -> tuple[np.ndarray, list[DataError | None]]:
    """Header sizes (N, 2) of every row's image (0 where unreadable) and the per-row read errors."""
    sizes = np.zeros((len(annotations), 2), dtype=np.int64)
    errors: list[DataError | None] = [None] * len(annotations)
    rows = tqdm(range(len(annotations)), desc="checking images", unit="img",
                disable=len(annotations) <= PROGRESS_MIN_ROWS)
    for index in rows:
        try:
            sizes[index] = image_size(annotations.image_path(index, split_dir))
        except DataError as exc:
            file = annotations.file_of(index)
            reason = exc.reason if file is None else f"{exc.reason} (listed in {file})"
            errors[index] = DataError(reason, exc.path, annotations.file_row(index), "image_id")
    return sizes, errors


def _first_outside(annotations: "Annotations", sizes: np.ndarray, readable: np.ndarray,
                   split_dir: "Path | None") -> tuple[np.ndarray, list[DataError | None]]:
    """Rows with an annotated keypoint outside their image, and an error naming the first such keypoint."""
    errors: list[DataError | None] = [None] * len(annotations)
    if annotations.keypoints is None:
        return np.zeros(len(annotations), dtype=bool), errors
    kps = np.asarray(annotations.keypoints)
    bad = (kps[..., 2] >= 0) & outside_image(kps[..., :2], sizes[:, None, :]) & readable[:, None]
    for index in np.flatnonzero(bad.any(axis=1)):
        k = int(np.argmax(bad[index]))
        (x, y), (height, width) = kps[index, k, :2], sizes[index]
        errors[index] = DataError(
            f"keypoint ({x:g}, {y:g}) lies outside the image of {height}×{width} (H×W) pixels",
            annotations.image_path(index, split_dir), annotations.file_row(index), annotations.schema.keypoints[k])
    return bad.any(axis=1), errors


def check_images(annotations: "Annotations", split_dir: "str | os.PathLike | None" = None,
                 on_error: str = "error") -> tuple[np.ndarray, np.ndarray]:
    """Check that every row's image (:meth:`Annotations.image_path`, in its source's image folder or
    ``split_dir``) is readable and holds its keypoints.

    Reads only image headers. Every annotated keypoint (v = 0 or 1) must lie
    inside the image, within 0.5 px of rounding. A failure is a DataError naming
    the image path, the CSV row (:meth:`Annotations.file_row`) and the column
    (``image_id``, or the keypoint's name). With ``on_error="skip"`` the failing
    rows are dropped and one warning counts them.

    Returns ``(kept_rows, sizes)``: indices of the kept rows (int64) and their
    image sizes (N_kept, 2) as (H, W).
    """
    if on_error not in ("error", "skip"):
        raise ValueError(f"on_error must be 'error' or 'skip', got {on_error!r}")
    split_dir = Path(split_dir) if split_dir is not None else None
    sizes, read_errors = _read_sizes(annotations, split_dir)
    readable = np.array([e is None for e in read_errors], dtype=bool)
    outside, outside_errors = _first_outside(annotations, sizes, readable, split_dir)
    errors = [r or o for r, o in zip(read_errors, outside_errors)]
    failed = [e for e in errors if e is not None]
    if failed and on_error == "error":
        raise failed[0]
    if failed:
        warnings.warn(f"check_images: dropped {len(failed)} of {len(annotations)} rows "
                      f"({int((~readable).sum())} unreadable images, {int(outside.sum())} with keypoints "
                      f"outside the image); first: {failed[0]}", stacklevel=2)
    kept = np.flatnonzero(readable & ~outside)
    return kept, sizes[kept]


__all__ = ["expand_image_paths", "IMAGE_SUFFIXES", "read_image", "decode_image", "image_size", "outside_image", "check_images"]
