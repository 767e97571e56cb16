"""Keypoints ⇄ Gaussian heatmaps (numpy only: usable in DataLoader workers and with ONNX Runtime).

Conventions (as in :mod:`fashion_gluon.data.transforms`):

* Points are ``(x, y)`` input pixels; integer coordinates are pixel centres.
* Heatmaps are ``(..., K, h, w)`` with ``(h, w) = (H // stride, W // stride)``. Heatmap cell
  centres sit at the centres of the ``stride × stride`` input blocks:
  input ``x`` ↔ heatmap ``x_h = (x + ½) / stride − ½`` (likewise ``y``).
* Hence mirroring heatmap columns (``hm[..., ::-1]``) is exactly the image flip
  ``x → W − 1 − x``: ``w − 1 − x_h = ((W − 1 − x) + ½) / stride − ½``.
* A point is inside a frame of size ``(H, W)`` when it lies in ``[−½, W − ½] × [−½, H − ½]``
  (pixel ``x`` covers ``[x − ½, x + ½]``); that is ``[−½, w − ½]`` in heatmap coordinates too.
* σ is in heatmap pixels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import ConfigError, quoted

#: Sub-pixel rules of :meth:`HeatmapCodec.decode` (``codec.decode``, ``predict --decode``).
DECODERS: tuple[str, ...] = ("dark", "quarter")
#: DARK clamps heatmap values to this floor before taking logs.
LOG_FLOOR = 1e-10


class HeatmapCodec:
    """Keypoints <-> Gaussian heatmaps.

    ``encode`` gives one target per σ = ``sigma × factor`` (``L = len(sigma_factors)``);
    ``decode`` refines each argmax to sub-pixel precision with the rule ``decode``:
    ``"dark"`` (distribution-aware, :func:`refine_dark`) or ``"quarter"`` (¼ heatmap pixel
    toward the larger neighbour, :func:`refine_quarter`), and maps it to input pixels.
    """

    def __init__(self, input_size: tuple[int, int], stride: int = 4, sigma: float = 2.0,
                 sigma_factors: Sequence[float] = (1.0,), decode: str = "dark"):
        height, width = (int(v) for v in input_size)
        if stride < 1:
            raise ValueError(f"heatmap stride must be a positive integer, got {stride}")
        if height % stride or width % stride:
            raise ValueError(f"input size (H, W) = ({height}, {width}) is not divisible by the "
                             f"heatmap stride {stride}")
        if sigma <= 0 or not sigma_factors or min(sigma_factors) <= 0:
            raise ValueError(f"sigma and sigma_factors must be positive, got {sigma} and {tuple(sigma_factors)}")
        if decode not in DECODERS:
            raise ConfigError(f"decode must be one of {', '.join(DECODERS)}, got {quoted(decode)}")
        self.input_size = (height, width)
        self.stride = int(stride)
        self.sigma = float(sigma)
        self.sigma_factors = tuple(float(f) for f in sigma_factors)
        self.heatmap_size = (height // stride, width // stride)
        self.decoding = decode

    def with_decode(self, decode: str) -> "HeatmapCodec":
        """The same codec decoding with the rule ``decode`` (one of :data:`DECODERS`)."""
        return HeatmapCodec(self.input_size, self.stride, self.sigma, self.sigma_factors, decode)

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
        finite, or outside [−½, W − ½] × [−½, H − ½] gets an all-zero channel and weight 0."""
        points = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
        weights = np.asarray(weights, dtype=np.float32).reshape(-1)
        if len(weights) != len(points):
            raise ValueError(f"got {len(points)} keypoints but {len(weights)} weights")
        height, width = self.input_size
        x, y = points[:, 0], points[:, 1]
        valid = (weights > 0) & (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
        centre = np.where(valid[:, None], self.to_heatmap(points), 0.0)
        two_var = 2.0 * self.sigmas[:, None, None] ** 2
        h, w = self.heatmap_size
        gx = np.exp(-(np.arange(w) - centre[:, 0:1]) ** 2 / two_var) * valid[:, None]  # (L, K, w)
        gy = np.exp(-(np.arange(h) - centre[:, 1:2]) ** 2 / two_var)  # (L, K, h)
        heatmaps = gy.astype(np.float32)[..., :, None] * gx.astype(np.float32)[..., None, :]
        return heatmaps, np.where(valid, weights, 0).astype(np.float32)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (..., K, h, w) -> keypoints (..., K, 2) in input pixels and scores (..., K)
        (the maxima of ``heatmaps``). Sub-pixel rule: ``self.decoding`` (see :func:`refine_dark`,
        :func:`refine_quarter`). Any heatmap size works: only ``stride`` maps it back."""
        hm = np.asarray(heatmaps)
        if hm.ndim < 2:
            raise ValueError(f"heatmaps must be (..., h, w), got shape {hm.shape}")
        h, w = hm.shape[-2:]
        flat = hm.reshape(-1, h * w)
        index = flat.argmax(axis=-1)
        scores = flat[np.arange(len(flat)), index]
        if self.decoding == "dark":
            coords = refine_dark(flat, index, (h, w), self.sigma)
        else:
            coords = refine_quarter(flat, index, (h, w))
        return self.to_input(coords).reshape(hm.shape[:-2] + (2,)), scores.reshape(hm.shape[:-2])

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
                f"sigma_factors={self.sigma_factors}, decode={self.decoding!r})")


def refine_quarter(flat: np.ndarray, index: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, 2) heatmap (x, y) of the argmaxes ``index`` (N,) of ``flat`` (N, h·w): each shifted ¼ pixel
    toward the larger neighbour in x and in y (not across the map border; a tie does not shift)."""
    h, w = size
    iy, ix = np.divmod(index, w)
    rows = np.arange(len(flat))

    def at(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        return flat[rows, np.clip(row, 0, h - 1) * w + np.clip(col, 0, w - 1)]

    dx = np.where((ix > 0) & (ix < w - 1), np.sign(at(iy, ix + 1) - at(iy, ix - 1)), 0)
    dy = np.where((iy > 0) & (iy < h - 1), np.sign(at(iy + 1, ix) - at(iy - 1, ix)), 0)
    return np.stack([ix + 0.25 * dx, iy + 0.25 * dy], axis=-1)


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, LOG_FLOOR))


def _window_axis(centre: np.ndarray, offsets: np.ndarray, n: int,
                 sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Window coordinates ``centre[:, None] + offsets`` along an axis of length ``n``, as (nearest
    index in the map, distance j past the border (0 inside), the log decay −j(j + 1)/(2σ²) of a
    σ-Gaussian continued j pixels past the border, True past the far border)."""
    position = centre[:, None] + offsets
    nearest = np.clip(position, 0, n - 1)
    distance = np.abs(position - nearest)
    return nearest, distance, -distance * (distance + 1) / (2 * sigma ** 2), position > n - 1


def _fall(logs: np.ndarray, axis: int, distance: np.ndarray, decay: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Log factor (≤ 0) that continues lines past their border as σ-Gaussians through their two edge
    pixels: ``min(0, j·(log edge − log inward) + decay)``. ``logs`` holds the lines' values at
    indices 0, 1, n − 2, n − 1 along ``axis``; the other arguments broadcast to the output."""
    first, second, penultimate, last = (np.take(logs, [i], axis=axis) for i in range(4))
    return np.minimum(distance * np.where(far, last - penultimate, first - second) + decay, 0)


def _border_fall(grid: np.ndarray, maps: np.ndarray, iy: np.ndarray, ix: np.ndarray, offsets: np.ndarray,
                 sigma: float) -> np.ndarray:
    """(M, S, S) log factor that turns the edge-replicated windows ``offsets`` × ``offsets`` around
    (``iy``, ``ix``) of the maps ``grid[maps]`` into σ-Gaussian continuations past the border:
    rows first, then columns, each through its two edge pixels and capped at the edge value."""
    h, w = grid.shape[1:]
    n = maps[:, None, None]
    rows, jy, decay_y, below = _window_axis(iy, offsets, h, sigma)
    cols, jx, decay_x, right = _window_axis(ix, offsets, w, sigma)
    edge_rows = np.broadcast_to(np.clip([0, 1, h - 2, h - 1], 0, h - 1), (len(maps), 4))
    edge_cols = np.clip([0, 1, w - 2, w - 1], 0, w - 1)

    def fall_x(r: np.ndarray) -> np.ndarray:
        """(M, m, S) log factor continuing rows ``r`` (M, m) past the left and right border."""
        return _fall(_log(grid[n, r[..., None], edge_cols]), -1, jx[:, None], decay_x[:, None], right[:, None])

    edge_logs = _log(grid[n, edge_rows[..., None], cols[:, None]]) + fall_x(edge_rows)  # (M, 4, S)
    return fall_x(rows) + _fall(edge_logs, 1, jy[..., None], decay_y[..., None], below[..., None])


def refine_dark(flat: np.ndarray, index: np.ndarray, size: tuple[int, int], sigma: float) -> np.ndarray:
    """(N, 2) heatmap (x, y) of the argmaxes ``index`` (N,) of ``flat`` (N, h·w), refined with
    DARK (Zhang et al., CVPR 2020): blur with a σ-Gaussian (kernel 2⌈3σ⌉ + 1), take the log
    (values clamped to :data:`LOG_FLOOR`) and make one Newton step ``−H⁻¹ g`` from the argmax,
    with g and H from central differences. When H is not negative definite (flat, constant
    or saddle-shaped maps) the argmax itself is returned; the step is clipped to ±1 pixel
    per axis, and the point to the map, [−½, w − ½] × [−½, h − ½].

    Only the window that the 3 × 3 stencil needs is blurred. Past the map border it continues
    each row, then each column, as a σ-Gaussian through the two edge pixels, capped at the edge
    value (edge replication with a Gaussian fall-off): exact for a Gaussian centred in
    [−½, w − ½] × [−½, h − ½], so peaks on the first/last row or column decode like interior
    ones. DARK's rescaling of the blurred map to the original maximum adds a constant to the
    log that no derivative sees, so it is left out."""
    h, w = size
    grid = flat.reshape(-1, h, w)
    radius = int(np.ceil(3 * sigma))
    reach = radius + 1
    offsets = np.arange(-reach, reach + 1)
    iy, ix = np.divmod(index, w)
    rows, cols = np.clip(iy[:, None] + offsets, 0, h - 1), np.clip(ix[:, None] + offsets, 0, w - 1)
    window = grid[np.arange(len(grid))[:, None, None], rows[..., None], cols[:, None]].astype(np.float64)
    crossing = np.flatnonzero((np.minimum(iy, ix) < reach) | (iy >= h - reach) | (ix >= w - reach))
    window[crossing] *= np.exp(_border_fall(grid, crossing, iy[crossing], ix[crossing], offsets, sigma))
    kernel = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    across = np.einsum("nyxt,t->nyx", sliding_window_view(window, len(kernel), axis=2), kernel)
    log = _log(np.einsum("nyxt,t->nyx", sliding_window_view(across, len(kernel), axis=1), kernel))

    dx = (log[:, 1, 2] - log[:, 1, 0]) / 2
    dy = (log[:, 2, 1] - log[:, 0, 1]) / 2
    dxx = log[:, 1, 2] - 2 * log[:, 1, 1] + log[:, 1, 0]
    dyy = log[:, 2, 1] - 2 * log[:, 1, 1] + log[:, 0, 1]
    dxy = (log[:, 2, 2] - log[:, 2, 0] - log[:, 0, 2] + log[:, 0, 0]) / 4
    det = dxx * dyy - dxy ** 2
    concave = (dxx < 0) & (det > 0)
    det = np.where(concave, det, 1.0)
    offset = np.stack([dxy * dy - dyy * dx, dxy * dx - dxx * dy], axis=-1) / det[:, None]
    offset = np.where(concave[:, None], np.clip(offset, -1, 1), 0)
    return np.clip(np.stack([ix, iy], axis=-1) + offset, -0.5, [w - 0.5, h - 0.5])


def decoding_error(codec: HeatmapCodec, points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(..., K, 2) decoded minus true position, in input pixels, of ideal targets: ``codec``, of one
    target (one σ factor), encodes the ground-truth ``points`` (..., K, 2) with ``weights`` (..., K)
    and decodes it. NaN where the target weight is 0 (weight ≤ 0, not finite or outside the input)."""
    if len(codec.sigma_factors) != 1:
        raise ValueError(f"decoding_error needs a codec of one target, got sigma_factors {codec.sigma_factors}")
    points = np.asarray(points, dtype=np.float64)
    heatmaps, valid = codec.encode(points.reshape(-1, 2), np.asarray(weights).reshape(-1))
    decoded, _ = codec.decode(heatmaps[0])
    return np.where(valid[:, None] > 0, decoded - points.reshape(-1, 2), np.nan).reshape(points.shape)
