"""Keypoints ⇄ Gaussian heatmaps (numpy only: usable in DataLoader workers and with ONNX Runtime).

Conventions (as in :mod:`fashion_gluon.data.transforms`):

* Points are ``(x, y)`` input pixels; integer coordinates are pixel centres.
* Heatmaps are ``(..., K, h, w)`` with ``(h, w) = (H // stride, W // stride)``. Heatmap cell
  centres sit at the centres of the ``stride × stride`` input blocks:
  input ``x`` ↔ heatmap ``x_h = (x + ½) / stride − ½`` (likewise ``y``).
* Hence mirroring heatmap columns (``hm[..., ::-1]``) is exactly the image flip
  ``x → W − 1 − x``: ``w − 1 − x_h = ((W − 1 − x) + ½) / stride − ½``.
* σ is in heatmap pixels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

class HeatmapCodec:
    """Keypoints <-> Gaussian heatmaps.

    ``encode`` gives one target per σ = ``sigma × factor`` (``L = len(sigma_factors)``);
    ``decode`` takes the argmax, shifts it ¼ heatmap pixel toward the larger neighbour
    in x and in y, and maps it to input pixels.
    """

    def __init__(self, input_size: tuple[int, int], stride: int = 4, sigma: float = 2.0,
                 sigma_factors: Sequence[float] = (1.0,)):
        height, width = (int(v) for v in input_size)
        if stride < 1:
            raise ValueError(f"heatmap stride must be a positive integer, got {stride}")
        if height % stride or width % stride:
            raise ValueError(f"input size (H, W) = ({height}, {width}) is not divisible by the "
                             f"heatmap stride {stride}")
        if sigma <= 0 or not sigma_factors or min(sigma_factors) <= 0:
            raise ValueError(f"sigma and sigma_factors must be positive, got {sigma} and {tuple(sigma_factors)}")
        self.input_size = (height, width)
        self.stride = int(stride)
        self.sigma = float(sigma)
        self.sigma_factors = tuple(float(f) for f in sigma_factors)
        self.heatmap_size = (height // stride, width // stride)

    @property
    def sigmas(self) -> np.ndarray:
        """(L,) σ of each target, in heatmap pixels."""
        return self.sigma * np.asarray(self.sigma_factors)

    def to_heatmap(self, points: np.ndarray) -> np.ndarray:
        """Input pixel coordinates -> heatmap coordinates."""
        return (np.asarray(points, dtype=np.float64) + 0.5) / self.stride - 0.5

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Heatmap coordinates -> input pixel coordinates."""
        return (np.asarray(points, dtype=np.float64) + 0.5) * self.stride - 0.5

    def encode(self, keypoints: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K, 2) input-pixel keypoints and (K,) weights -> heatmaps (L, K, h, w) float32 with peak
        1 at each keypoint, and (K,) float32 target weights. A keypoint with weight ≤ 0, not
        finite, or outside [0, W − 1] × [0, H − 1] gets an all-zero channel and weight 0."""
        points = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
        weights = np.asarray(weights, dtype=np.float32).reshape(-1)
        if len(weights) != len(points):
            raise ValueError(f"got {len(points)} keypoints but {len(weights)} weights")
        height, width = self.input_size
        x, y = points[:, 0], points[:, 1]
        valid = (weights > 0) & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        centre = np.where(valid[:, None], self.to_heatmap(points), 0.0)
        two_var = 2.0 * self.sigmas[:, None, None] ** 2
        h, w = self.heatmap_size
        gx = np.exp(-(np.arange(w) - centre[:, 0:1]) ** 2 / two_var) * valid[:, None]  # (L, K, w)
        gy = np.exp(-(np.arange(h) - centre[:, 1:2]) ** 2 / two_var)  # (L, K, h)
        heatmaps = gy.astype(np.float32)[..., :, None] * gx.astype(np.float32)[..., None, :]
        return heatmaps, np.where(valid, weights, 0).astype(np.float32)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (..., K, h, w) -> keypoints (..., K, 2) in input pixels and scores (..., K)
        (the maxima). Any heatmap size works: only ``stride`` maps it back."""
        hm = np.asarray(heatmaps)
        if hm.ndim < 2:
            raise ValueError(f"heatmaps must be (..., h, w), got shape {hm.shape}")
        h, w = hm.shape[-2:]
        flat = hm.reshape(hm.shape[:-2] + (h * w,))
        index = flat.argmax(axis=-1)[..., None]
        scores = np.take_along_axis(flat, index, axis=-1)[..., 0]
        iy, ix = np.divmod(index[..., 0], w)

        def at(row: np.ndarray, col: np.ndarray) -> np.ndarray:
            cell = np.clip(row, 0, h - 1) * w + np.clip(col, 0, w - 1)
            return np.take_along_axis(flat, cell[..., None], axis=-1)[..., 0]

        dx = np.where((ix > 0) & (ix < w - 1), np.sign(at(iy, ix + 1) - at(iy, ix - 1)), 0)
        dy = np.where((iy > 0) & (iy < h - 1), np.sign(at(iy + 1, ix) - at(iy - 1, ix)), 0)
        coords = np.stack([ix + 0.25 * dx, iy + 0.25 * dy], axis=-1)
        return self.to_input(coords), scores

    @staticmethod
    def flip_back(heatmaps: np.ndarray, flip_perm: "np.ndarray | Sequence[int]") -> np.ndarray:
        """Heatmaps (..., K, h, w) predicted on a mirrored image -> heatmaps of the original image:
        mirror the columns and swap left/right channels (``out[..., c] = mirror(in[..., perm[c]])``)."""
        hm = np.asarray(heatmaps)
        perm = np.asarray(flip_perm, dtype=np.int64)
        if hm.ndim < 3 or perm.shape != (hm.shape[-3],):
            raise ValueError(f"flip_perm of shape {perm.shape} does not fit heatmaps of shape {hm.shape}")
        return np.ascontiguousarray(hm[..., perm, :, ::-1])

    def __repr__(self) -> str:
        return (f"HeatmapCodec(input_size={self.input_size}, stride={self.stride}, sigma={self.sigma}, "
                f"sigma_factors={self.sigma_factors})")
