"""Composable, keypoint-exact augmentations that render the image with ONE affine warp.

Conventions (shared with :mod:`fashion_gluon.codec` and :mod:`fashion_gluon.inference.predictor`):

* A point is ``(x, y)`` in pixels; integer coordinates are pixel centres, as in
  ``cv2.warpAffine``: ``dst(p) = src(M⁻¹ p)``. Pixel ``x`` covers ``[x − ½, x + ½]``, so a
  point is inside a frame of size ``(H, W)`` when it lies in ``[−½, W − ½] × [−½, H − ½]``.
* Sizes are ``(H, W)``; images are ``(H, W, 3)`` uint8 RGB until :class:`Normalize`,
  which makes them ``(3, H, W)`` float32.
* A horizontal flip of a frame of width ``W`` maps ``x → W − 1 − x`` (not ``W − x``).
* Resizing a frame of width ``w`` to ``W`` maps ``x → (x + ½)·W/w − ½`` (``cv2.resize``'s
  convention), likewise for ``y``.

How it works: a :class:`Sample` carries the ORIGINAL image and a 3×3 matrix from
original pixels to the *current frame* (a virtual canvas of ``size``). The geometric
ops (:class:`RandomRotate`, :class:`RandomCrop`, :class:`Resize`, :class:`RandomFlip`)
only compose that matrix, move the keypoints and set ``size``; a keypoint that leaves
the frame gets weight 0 (weights never grow, so absent keypoints, v = −1, stay 0).
:class:`Warp` then renders the output with a single ``cv2.warpAffine`` of the
original image; :class:`ColorDistort` and :class:`Normalize` work on that small
output. Every op is ``op(sample, rng) -> sample`` and returns a new Sample (the input
is not modified); :class:`Compose` chains them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import cv2
import numpy as np

Size = tuple[int, int]
Box = tuple[int, int, int, int]

#: Per-channel RGB mean of the FashionAI images, in 0..255 pixel units.
DEFAULT_MEAN: tuple[float, float, float] = (171.04, 162.98, 159.89)
#: Per-channel std in 0..255 units: ImageNet's (0.229, 0.224, 0.225) × 255.
DEFAULT_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)


@dataclass
class Sample:
    """One image and its keypoints on their way through the transforms."""

    image: np.ndarray        # uint8 RGB (H, W, 3): the ORIGINAL image until Warp; float32 CHW after Normalize
    keypoints: np.ndarray    # (K, 2) float64 (x, y) in the current frame
    weights: np.ndarray      # (K,) float32: 1 = use in the loss, 0 = ignore (absent or out of the frame)
    visibility: np.ndarray   # (K,) int8: the original v values (-1 / 0 / 1), permuted with flips
    matrix: np.ndarray       # (3, 3) float64: original image pixels -> current frame
    size: Size               # (H, W) of the current frame
    flip_perm: np.ndarray    # (K,) int64 channel permutation of a horizontal flip
    flipped: bool = False
    warped: bool = False

    @classmethod
    def from_image(cls, image: np.ndarray, keypoints: "np.ndarray | None" = None,
                   flip_perm: "np.ndarray | Sequence[int] | None" = None) -> "Sample":
        """A Sample of ``image`` (uint8 (H, W, 3)) with ``keypoints`` (K, 3) = (x, y, v) in its
        pixels (None: no keypoints). ``flip_perm`` defaults to the identity. Weight is 1 for
        v ≥ 0 inside the image, else 0."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        kps = np.zeros((0, 3)) if keypoints is None else np.asarray(keypoints, dtype=np.float64)
        if kps.ndim != 2 or kps.shape[1] != 3:
            raise ValueError(f"keypoints must be (K, 3) rows of (x, y, v), got shape {kps.shape}")
        perm = np.arange(len(kps)) if flip_perm is None else np.asarray(flip_perm, dtype=np.int64)
        if perm.shape != (len(kps),):
            raise ValueError(f"flip_perm must have shape ({len(kps)},), got {perm.shape}")
        size = (image.shape[0], image.shape[1])
        points = kps[:, :2].copy()
        weights = ((kps[:, 2] >= 0) & _inside(points, size)).astype(np.float32)
        return cls(image, points, weights, kps[:, 2].astype(np.int8), np.eye(3), size, perm)


def _as3x3(matrix: np.ndarray) -> np.ndarray:
    """A (2, 3) or (3, 3) affine matrix as (3, 3) float64."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (2, 3):
        return np.vstack([m, (0.0, 0.0, 1.0)])
    if m.shape != (3, 3):
        raise ValueError(f"affine matrix must be (2, 3) or (3, 3), got {m.shape}")
    return m


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply the affine ``matrix`` ((2, 3) or (3, 3)) to ``points`` (..., 2); float64."""
    m = _as3x3(matrix)
    return np.asarray(points, dtype=np.float64) @ m[:2, :2].T + m[:2, 2]


def inverse_transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map ``points`` (..., K, 2) of the frame of ``matrix`` back to original image pixels.
    ``matrix`` is one (2, 3) / (3, 3) affine, or a batch (N, 3, 3) for points (N, K, 2)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim == 3:
        inverse = np.linalg.inv(m)
        return np.einsum("nij,nkj->nki", inverse[:, :2, :2], points) + inverse[:, None, :2, 2]
    return transform_points(points, np.linalg.inv(_as3x3(m)))


def _inside(points: np.ndarray, size: Size) -> np.ndarray:
    """(K,) bool: the point lies in [−½, W − ½] × [−½, H − ½], the area its pixels cover (False for NaN)."""
    h, w = size
    x, y = points[:, 0], points[:, 1]
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def _move(sample: Sample, delta: np.ndarray, size: Size, **changes) -> Sample:
    """``sample`` after the frame change ``delta`` (3×3, current frame -> a new frame of ``size``)."""
    if sample.warped:
        raise RuntimeError("geometric transforms must come before Warp")
    keypoints = transform_points(sample.keypoints, delta)
    weights = sample.weights * _inside(keypoints, size)
    return replace(sample, keypoints=keypoints, weights=weights.astype(np.float32),
                   matrix=delta @ sample.matrix, size=(int(size[0]), int(size[1])), **changes)


def rotate(sample: Sample, degrees: float) -> Sample:
    """Rotate the frame by ``degrees`` (counter-clockwise on screen) about its centre; same size."""
    h, w = sample.size
    delta = _as3x3(cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(degrees), 1.0))
    return _move(sample, delta, sample.size)


def crop(sample: Sample, box: Box) -> Sample:
    """Crop the frame to pixels ``[y0:y1, x0:x1]`` of ``box = (x0, y0, x1, y1)`` (may leave the frame)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop box {box}")
    delta = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    return _move(sample, delta, (y1 - y0, x1 - x0))


#: How much an object's box is enlarged about its centre before it is cropped (top-down keypoint
#: models' usual padding: the garment's edges and a little context stay in the frame).
BOX_MARGIN = 1.25


def crop_to_box(sample: Sample, box: "Sequence[float]", margin: float = BOX_MARGIN,
                aspect: "float | None" = None) -> Sample:
    """Crop the frame to ``box`` = (x0, y0, x1, y1) (pixel centres of its corner pixels), enlarged
    by ``margin`` about its centre and widened (never narrowed) to ``aspect`` = W / H, so a later
    resize to that aspect does not distort it; the crop may leave the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = (x1 - x0 + 1.0) * margin, (y1 - y0 + 1.0) * margin
    if aspect:
        width, height = max(width, height * aspect), max(height, width / aspect)
    size = (max(1, int(round(height))), max(1, int(round(width))))
    centre_x, centre_y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    delta = np.array([[1.0, 0.0, (size[1] - 1) / 2.0 - centre_x], [0.0, 1.0, (size[0] - 1) / 2.0 - centre_y],
                      [0.0, 0.0, 1.0]])
    return _move(sample, delta, size)


def points_box(points: np.ndarray) -> "np.ndarray | None":
    """The (x0, y0, x1, y1) box of ``points`` (M, 2), or None when fewer than two points span
    no area (a box needs a width and a height)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) < 2 or np.ptp(points, axis=0).min() <= 0:
        return None
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def jitter_box(box: "Sequence[float]", rng: np.random.Generator, amount: float) -> np.ndarray:
    """``box`` (x0, y0, x1, y1) moved by up to ± ``amount`` of its width and height and scaled by
    a factor in [1 − amount, 1 + amount] about its centre: the training-time stand-in for the
    error of a box found by a first stage (uniform draws)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    size = np.array([x1 - x0, y1 - y0])
    centre = np.array([x0 + x1, y0 + y1]) / 2.0 + rng.uniform(-amount, amount, 2) * size
    half = size * rng.uniform(1.0 - amount, 1.0 + amount) / 2.0
    return np.concatenate([centre - half, centre + half])


def resize(sample: Sample, size: Size, keep_aspect: bool = False) -> Sample:
    """Scale the frame to ``size`` (H, W); with ``keep_aspect`` scale uniformly and centre it
    (letterbox: the padding shows Warp's border value)."""
    return _move(sample, resize_matrix(sample.size, size, keep_aspect), size)


def resize_matrix(size: Size, out_size: Size, keep_aspect: bool = False) -> np.ndarray:
    """The 3×3 matrix of a resize from a frame of ``size`` (H, W) to ``out_size`` (cv2.resize's
    half-pixel convention; ``keep_aspect``: uniform scale, centred)."""
    (h, w), (out_h, out_w) = size, out_size
    sx, sy = out_w / w, out_h / h
    if keep_aspect:
        sx = sy = min(sx, sy)
    ox, oy = (out_w - w * sx) / 2.0, (out_h - h * sy) / 2.0
    return np.array([[sx, 0.0, 0.5 * sx - 0.5 + ox], [0.0, sy, 0.5 * sy - 0.5 + oy], [0.0, 0.0, 1.0]])


def hflip(sample: Sample) -> Sample:
    """Mirror the frame (x → W − 1 − x) and swap left/right keypoints with ``flip_perm``."""
    w = sample.size[1]
    delta = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    perm = sample.flip_perm
    swapped = replace(sample, keypoints=sample.keypoints[perm], weights=sample.weights[perm],
                      visibility=sample.visibility[perm])
    return _move(swapped, delta, sample.size, flipped=not sample.flipped)


LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 RGB weights of grey


def color_matrix(saturation: float, hue: float) -> np.ndarray:
    """3×3 RGB matrix: scale saturation about the luma grey by ``saturation``, then rotate hue by
    ``hue`` of a full circle about the grey axis (R → G → B for a positive third)."""
    theta = 2.0 * np.pi * hue
    cross = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / np.sqrt(3.0)
    rotation = np.cos(theta) * np.eye(3) + np.sin(theta) * cross + (1.0 - np.cos(theta)) / 3.0
    desaturate = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), LUMA)
    return rotation @ desaturate


def distort_color(image: np.ndarray, brightness: float, saturation: float, hue: float,
                  contrast: float) -> np.ndarray:
    """Colour-distort a uint8 RGB image in ONE affine colour transform (``cv2.transform``):
    saturation and hue (:func:`color_matrix`), then ``contrast`` factor about each channel's
    mean and ``brightness`` offset (0..255 units); rounded and clipped to 0..255 once."""
    matrix = color_matrix(saturation, hue)
    mean = matrix @ np.asarray(cv2.mean(image)[:3])
    affine = np.hstack([contrast * matrix, ((1.0 - contrast) * mean + brightness)[:, None]])
    return cv2.transform(image, affine.astype(np.float32))


def normalize_image(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W) holding ``(x − mean) / std`` per channel."""
    scale = 1.0 / np.asarray(std, dtype=np.float32)
    offset = -np.asarray(mean, dtype=np.float32) * scale
    out = np.empty((3,) + image.shape[:2], dtype=np.float32)
    for c in range(3):
        np.multiply(image[..., c], scale[c], out=out[c])
        out[c] += offset[c]
    return out


@dataclass(frozen=True)
class RandomRotate:
    """With probability ``p`` rotate by an angle uniform in ±``max_deg`` about the frame centre."""

    max_deg: float = 30.0
    p: float = 0.4

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        return rotate(sample, rng.uniform(-self.max_deg, self.max_deg))


@dataclass(frozen=True)
class RandomCrop:
    """A random crop of ``area`` × frame area and width/height ``aspect`` (log-uniform) that keeps
    every weighted keypoint plus ``margin`` px (clipped to the frame). A drawn area above 1 zooms
    out: along an axis where that box is longer than the frame it contains the frame, placed at
    random, and :class:`Warp` fills the rest (the garment then fills less of the input); a box of
    an area up to 1 stays inside the frame. If none of
    ``tries`` draws fits, crop the tightest such box (the whole frame when no keypoint is weighted)."""

    area: tuple[float, float] = (0.45, 1.0)
    aspect: tuple[float, float] = (0.75, 1.33)
    margin: float = 25.0
    tries: int = 10

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return crop(sample, self.sample_box(sample, rng))

    def _required(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) = (x, y) corners of the box every crop must contain; lo > hi when empty."""
        frame_max = np.array([sample.size[1] - 1, sample.size[0] - 1], dtype=np.float64)
        points = sample.keypoints[sample.weights > 0]
        if len(points) == 0:
            return frame_max, np.zeros(2)
        lo = np.clip(points.min(axis=0) - self.margin, 0, frame_max)
        hi = np.clip(points.max(axis=0) + self.margin, 0, frame_max)
        return lo, hi

    def sample_box(self, sample: Sample, rng: np.random.Generator) -> Box:
        """Draw the crop box (x0, y0, x1, y1) in current-frame pixels."""
        h, w = sample.size
        lo, hi = self._required(sample)
        share = rng.uniform(*self.area, size=self.tries)
        area = share * (h * w)
        aspect = np.exp(rng.uniform(*np.log(self.aspect), size=self.tries))
        sizes = np.rint(np.stack([np.sqrt(area * aspect), np.sqrt(area / aspect)], axis=1))
        room = np.array([w, h]) - sizes  # negative where the box is longer than the frame
        zoom_out = (share > 1)[:, None]  # such a box may contain the frame; others stay inside it
        start_min = np.maximum(np.where(zoom_out, np.minimum(0, room), 0), np.ceil(hi - sizes + 1))
        start_max = np.minimum(np.where(zoom_out, np.maximum(0, room), room), np.floor(lo))
        ok = np.all((sizes >= 1) & (start_min <= start_max), axis=1)
        if ok.any():
            i = int(np.argmax(ok))
            start = start_min[i] + np.floor(rng.random(2) * (start_max[i] - start_min[i] + 1))
            end = start + sizes[i]
            return int(start[0]), int(start[1]), int(end[0]), int(end[1])
        if np.any(lo > hi):
            return 0, 0, w, h
        return int(np.floor(lo[0])), int(np.floor(lo[1])), int(np.ceil(hi[0])) + 1, int(np.ceil(hi[1])) + 1


@dataclass(frozen=True)
class Resize:
    """Scale the current frame to ``size`` (H, W); see :func:`resize`."""

    size: Size
    keep_aspect: bool = False

    def __call__(self, sample: Sample, rng: "np.random.Generator | None" = None) -> Sample:
        return resize(sample, self.size, self.keep_aspect)


@dataclass(frozen=True)
class RandomFlip:
    """With probability ``p`` mirror the frame; see :func:`hflip`."""

    p: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return hflip(sample) if rng.random() < self.p else sample


@dataclass(frozen=True)
class Warp:
    """Render the frame: one bilinear ``cv2.warpAffine`` of the original image with the composed
    matrix; pixels from outside the image get ``border_value`` (RGB, 0..255). Keypoints outside
    the output already have weight 0 (every geometric op zeroes them)."""

    border_value: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __call__(self, sample: Sample, rng: "np.random.Generator | None" = None) -> Sample:
        if sample.warped:
            raise RuntimeError("the sample is already warped")
        h, w = sample.size
        image = cv2.warpAffine(sample.image, sample.matrix[:2], (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(map(float, self.border_value)))
        return replace(sample, image=image, warped=True)


@dataclass(frozen=True)
class ColorDistort:
    """Random brightness offset (±``brightness``, fraction of 255), saturation and contrast
    factors, and hue rotation (±``hue``, fraction of the colour circle) of the warped image;
    see :func:`distort_color`. About 0.1 ms at 256² (one ``cv2.transform``)."""

    brightness: float = 32 / 255
    saturation: tuple[float, float] = (0.5, 1.5)
    hue: float = 0.2
    contrast: tuple[float, float] = (0.5, 1.5)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if not sample.warped:
            raise RuntimeError("ColorDistort works on the warped image: put it after Warp")
        image = distort_color(sample.image, 255 * rng.uniform(-self.brightness, self.brightness),
                              rng.uniform(*self.saturation), rng.uniform(-self.hue, self.hue),
                              rng.uniform(*self.contrast))
        return replace(sample, image=image)


@dataclass(frozen=True)
class Normalize:
    """uint8 HWC -> float32 CHW ``(x − mean) / std``; ``mean`` and ``std`` per RGB channel in
    0..255 units (i.e. ``(x/255 − mean/255) / (std/255)``). Defaults: :data:`DEFAULT_MEAN`,
    :data:`DEFAULT_STD`."""

    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD

    def __call__(self, sample: Sample, rng: "np.random.Generator | None" = None) -> Sample:
        if not sample.warped:
            raise RuntimeError("Normalize works on the warped image: put it after Warp")
        return replace(sample, image=normalize_image(sample.image, self.mean, self.std))


Op = Callable[[Sample, np.random.Generator], Sample]


class Compose:
    """Apply ``ops`` in order, all drawing from one generator (a fresh one when None)."""

    def __init__(self, ops: Sequence[Op]):
        self.ops = tuple(ops)

    def __call__(self, sample: Sample, rng: "np.random.Generator | None" = None) -> Sample:
        rng = np.random.default_rng() if rng is None else rng
        for op in self.ops:
            sample = op(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose([{', '.join(map(repr, self.ops))}])"


def train_transform(input_size: Size, mean: Sequence[float] = DEFAULT_MEAN,
                    std: Sequence[float] = DEFAULT_STD, keep_aspect: bool = False, *,
                    rotate_p: float = 0.4, max_rotate: float = 30.0, flip_p: float = 0.5,
                    crop_area: tuple[float, float] = (0.45, 1.0),
                    crop_aspect: tuple[float, float] = (0.75, 1.33), crop_margin: float = 25.0,
                    color: bool = True) -> Compose:
    """The seed's training augmentation (defaults = the seed's): rotate, keypoint-safe crop,
    resize to ``input_size``, flip, one warp (border = ``mean``), colour distortion (unless
    ``color`` is False), normalization."""
    ops: list[Op] = [RandomRotate(max_rotate, rotate_p),
                     RandomCrop(tuple(crop_area), tuple(crop_aspect), crop_margin),
                     Resize(tuple(input_size), keep_aspect), RandomFlip(flip_p), Warp(tuple(mean))]
    if color:
        ops.append(ColorDistort())
    return Compose(ops + [Normalize(tuple(mean), tuple(std))])


def test_transform(input_size: Size, mean: Sequence[float] = DEFAULT_MEAN,
                   std: Sequence[float] = DEFAULT_STD, keep_aspect: bool = False) -> Compose:
    """Deterministic inference pipeline: resize to ``input_size``, warp, normalize."""
    return Compose([Resize(tuple(input_size), keep_aspect), Warp(tuple(mean)), Normalize(tuple(mean), tuple(std))])


test_transform.__test__ = False  # not a pytest test, despite its name
