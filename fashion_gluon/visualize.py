"""Pictures: keypoint overlays, prediction-vs-truth comparisons, heatmap montages,
galleries (OpenCV) and metric / training-curve charts (matplotlib's Agg canvas,
no pyplot state). Images are RGB uint8 ``(H, W, 3)``; points ``(x, y)`` pixels
with integer coordinates at pixel centres. Every file goes through
:mod:`fashion_gluon.fileio`'s atomic writers.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .fileio import atomic_write
from .metrics import normalizing_distance
from .schema import KeypointSchema, load_schema

Color = tuple[int, int, int]
TRUTH_COLOR: Color = (0, 220, 0)
SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel positions
OUTLINE: Color = (0, 0, 0)


def _check_image(image: np.ndarray) -> np.ndarray:
    """A contiguous RGB uint8 copy of ``image`` (grayscale is expanded to RGB)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3) or (H, W), got {image.shape}")
    return np.ascontiguousarray(image).copy()


def _as_points(keypoints: np.ndarray, schema: KeypointSchema) -> np.ndarray:
    """(K, 3) float points; a (K, 2) array gets v = 1 everywhere."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    k = schema.num_keypoints
    if keypoints.shape == (k, 2):
        keypoints = np.concatenate([keypoints, np.ones((k, 1))], axis=1)
    if keypoints.shape != (k, 3):
        raise ValueError(f"keypoints must have shape ({k}, 3) or ({k}, 2) (schema {schema.name!r}), "
                         f"got {keypoints.shape}")
    return keypoints


def _fixed(point: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` in cv2's fixed-point drawing coordinates."""
    return int(round(point[0] * (1 << SHIFT))), int(round(point[1] * (1 << SHIFT)))


def default_radius(image: np.ndarray) -> int:
    """Marker radius for an image: about 1/100 of its shorter side, at least 2 px."""
    return max(2, int(round(min(image.shape[:2]) / 100)))


def _drawn(points: np.ndarray, category: str, schema: KeypointSchema) -> np.ndarray:
    """Boolean (K,) mask of the category's keypoints that are annotated and finite."""
    mask = np.zeros(len(points), dtype=bool)
    mask[list(schema.category_indices(category))] = True
    return mask & (points[:, 2] >= 0) & np.isfinite(points[:, :2]).all(axis=1)


def _circle(image: np.ndarray, point: np.ndarray, radius: int, color: Color, filled: bool) -> None:
    """A filled (or hollow) circle with a dark outline, visible on any background."""
    centre, r = _fixed(point), radius << SHIFT
    if filled:
        cv2.circle(image, centre, r + (1 << SHIFT), OUTLINE, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(image, centre, r, color, -1, cv2.LINE_AA, SHIFT)
    else:
        line = max(1, radius // 2)
        cv2.circle(image, centre, r, OUTLINE, line + 2, cv2.LINE_AA, SHIFT)
        cv2.circle(image, centre, r, color, line, cv2.LINE_AA, SHIFT)


def _line(image: np.ndarray, a: np.ndarray, b: np.ndarray, color: Color, thickness: int) -> None:
    """An anti-aliased line between two sub-pixel points."""
    cv2.line(image, _fixed(a), _fixed(b), color, thickness, cv2.LINE_AA, SHIFT)


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, category: str,
                   color: Color = (255, 200, 0), radius: "int | None" = None,
                   skeleton: bool = True, schema: "KeypointSchema | None" = None,
                   scores: "np.ndarray | None" = None) -> np.ndarray:
    """A copy of ``image`` with ``category``'s keypoints drawn: visible points filled,
    occluded (v == 0) hollow, absent (v == -1) not at all; optional skeleton lines
    between drawn points (the schema's skeleton). ``keypoints`` is (K, 3) or (K, 2) (all visible)
    under ``schema`` (default FashionAI's); ``scores`` (K,), when given, are written beside the
    drawn points with two decimals."""
    schema = load_schema(schema)
    out = _check_image(image)
    points = _as_points(keypoints, schema)
    radius = default_radius(out) if radius is None else radius
    drawn = _drawn(points, category, schema)
    if skeleton:
        for a, b in schema.skeleton:
            if drawn[a] and drawn[b]:
                _line(out, points[a], points[b], color, max(1, radius // 2))
    for k in np.flatnonzero(drawn):
        _circle(out, points[k], radius, color, filled=points[k, 2] > 0)
        if scores is not None:
            _label(out, f"{float(scores[k]):.2f}", points[k] + radius + 1, radius, color)
    return out


def _label(image: np.ndarray, text: str, corner: np.ndarray, radius: int, color: Color) -> None:
    """``text`` outlined in dark, its baseline's left end at ``corner`` (x, y), sized to the markers."""
    origin, scale = (int(round(corner[0])), int(round(corner[1]))), max(0.3, radius / 8)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, OUTLINE, 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def error_color(ratio: float, max_ratio: float = 0.2) -> Color:
    """Green (0) → yellow → red (``max_ratio`` and above) for an error d / s; grey for NaN."""
    if not np.isfinite(ratio):
        return (160, 160, 160)
    t = min(max(ratio / max_ratio, 0.0), 1.0)
    return int(round(255 * min(1.0, 2 * t))), int(round(255 * min(1.0, 2 * (1 - t)))), 0


def draw_comparison(image: np.ndarray, pred: np.ndarray, truth: np.ndarray, category: str,
                    max_ratio: float = 0.2, radius: "int | None" = None,
                    schema: "KeypointSchema | None" = None) -> np.ndarray:
    """A copy of ``image`` with the truth (K, 3) as green dots (v == 0 hollow) and the
    prediction (K, 2) as crosses coloured by d / s (green → red at ``max_ratio``; grey
    when the normalizing pair is missing), a line joining each pair."""
    schema = load_schema(schema)
    out = _check_image(image)
    truth = _as_points(truth, schema)
    pred = _as_points(pred, schema)[:, :2]
    radius = default_radius(out) if radius is None else radius
    s = normalizing_distance(truth[None], [category], schema)[0]
    drawn = _drawn(truth, category, schema) & np.isfinite(pred).all(axis=1)
    ratios = np.hypot(*(pred - truth[:, :2]).T) / s
    for k in np.flatnonzero(drawn):
        color = error_color(ratios[k], max_ratio)
        _line(out, truth[k], pred[k], color, max(1, radius // 2))
        _circle(out, truth[k], radius, TRUTH_COLOR, filled=truth[k, 2] > 0)
        centre = tuple(int(round(c)) for c in pred[k])
        cv2.drawMarker(out, centre, OUTLINE, cv2.MARKER_CROSS, 3 * radius, max(2, radius // 2) + 2)
        cv2.drawMarker(out, centre, color, cv2.MARKER_CROSS, 3 * radius, max(2, radius // 2))
    return out


def _put_title(tile: np.ndarray, text: str, band: int) -> np.ndarray:
    """``tile`` with a dark band of height ``band`` on top holding ``text`` (shrunk to fit)."""
    width = tile.shape[1]
    scale = band / 30
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    scale *= min(1.0, (width - 6) / max(tw, 1))
    header = np.full((band, width, 3), 32, dtype=np.uint8)
    cv2.putText(header, text, (3, int(band * 0.7)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([header, tile], axis=0)


def _tile(tiles: Sequence[np.ndarray], cols: int, titles: "Sequence[str] | None") -> np.ndarray:
    """Equal-size RGB tiles in a grid of ``cols`` columns, optional titles above each,
    separated by a 2 px border."""
    if titles is not None:
        if len(titles) != len(tiles):
            raise ValueError(f"got {len(titles)} titles for {len(tiles)} images")
        band = max(14, tiles[0].shape[1] // 12)
        tiles = [_put_title(t, str(name), band) for t, name in zip(tiles, titles)]
    cols = max(1, min(cols, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    h, w, gap = tiles[0].shape[0], tiles[0].shape[1], 2
    mosaic = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        top, left = gap + r * (h + gap), gap + c * (w + gap)
        mosaic[top:top + h, left:left + w] = tile
    return mosaic


def heatmap_montage(image: np.ndarray, heatmaps: np.ndarray, names: Sequence[str],
                    tile_width: int = 160, cols: "int | None" = None) -> np.ndarray:
    """Each of the K heatmaps (K, h, w) as a JET overlay on ``image`` resized to the
    heatmap's aspect, tiled ``cols`` wide (default ≈ √K) under ``name  peak`` titles.
    All channels share one colour scale (0 … the largest value), so weak channels look weak."""
    out = _check_image(image)
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim != 3 or len(names) != len(heatmaps) or len(heatmaps) == 0:
        raise ValueError(f"heatmaps must be (K, h, w) with K = len(names) = {len(names)} > 0, "
                         f"got {heatmaps.shape}")
    size = (tile_width, max(1, int(round(tile_width * heatmaps.shape[1] / heatmaps.shape[2]))))
    base = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
    scale = max(float(heatmaps.max()), 1e-6)
    tiles = []
    for heatmap in heatmaps:
        level = np.clip(cv2.resize(heatmap, size, interpolation=cv2.INTER_LINEAR) / scale, 0, 1)
        colour = cv2.cvtColor(cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET),
                              cv2.COLOR_BGR2RGB)
        alpha = 0.25 + 0.6 * level[..., None]
        tiles.append((base * (1 - alpha) + colour * alpha).astype(np.uint8))
    titles = [f"{name} {hm.max():.2f}" for name, hm in zip(names, heatmaps)]
    return _tile(tiles, cols or math.ceil(math.sqrt(len(tiles))), titles)


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to fit (H, W) ``size`` keeping its aspect, centred on grey."""
    image = _check_image(image)
    h, w = size
    scale = min(h / image.shape[0], w / image.shape[1])
    nh, nw = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    tile = np.full((h, w, 3), 96, dtype=np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    tile[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return tile


def gallery(images: Sequence[np.ndarray], path: "str | os.PathLike", cols: int = 4,
            titles: "Sequence[str] | None" = None, tile: int = 256) -> np.ndarray:
    """Tile ``images`` (any sizes, each fitted into a ``tile``-px square keeping its
    aspect) into one picture, write it to ``path`` and return it."""
    if not images:
        raise ValueError("gallery needs at least one image")
    mosaic = _tile([_fit(image, (tile, tile)) for image in images], cols, titles)
    save_image(path, mosaic)
    return mosaic


def save_image(path: "str | os.PathLike", image_rgb: np.ndarray) -> None:
    """Write an RGB (or grayscale) uint8 image atomically; the format follows the suffix."""
    bgr = cv2.cvtColor(_check_image(image_rgb), cv2.COLOR_RGB2BGR)
    try:
        ok, encoded = cv2.imencode(Path(path).suffix, bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot write an image to {path}: unsupported suffix {Path(path).suffix!r}")
    with atomic_write(path, "wb") as handle:
        handle.write(encoded.tobytes())


def _save_figure(figure: Figure, path: "str | os.PathLike") -> None:
    """Render a matplotlib figure with the Agg canvas into ``path`` atomically."""
    FigureCanvasAgg(figure)
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format=fmt, dpi=100, bbox_inches="tight")


def plot_per_keypoint(result: dict, path: "str | os.PathLike") -> None:
    """Horizontal bar chart of a normalized_error result's per-keypoint NE, overall NE
    as a dashed line."""
    per_keypoint = result["per_keypoint"]
    if not per_keypoint:
        raise ValueError("the result has no per-keypoint values to plot")
    names, values = list(per_keypoint), list(per_keypoint.values())
    figure = Figure(figsize=(7, 0.3 * len(names) + 1.2))
    axes = figure.add_subplot()
    bars = axes.barh(names, values, color="tab:blue")
    axes.bar_label(bars, fmt="%.2f", padding=2, fontsize=8)
    axes.axvline(result["ne"], color="tab:red", linestyle="--", label=f"overall {result['ne']:.2f} %")
    axes.invert_yaxis()
    axes.set_xlabel("normalized error (%)")
    axes.set_xlim(0, max(values + [result["ne"]]) * 1.15 or 1)
    axes.set_title(f"NE per keypoint ({result['count']} keypoints)")
    axes.legend(loc="lower right")
    _save_figure(figure, path)


def plot_curves(records: Sequence[dict], path: "str | os.PathLike",
                keys: Sequence[str] = ("loss", "lr", "val_ne")) -> list[str]:
    """Line plots of ``keys`` against ``record["epoch"]``, one subplot per key that any
    record holds (others are skipped; ``lr`` on a log scale). Returns the keys plotted."""
    present = [key for key in keys if any(key in r for r in records)]
    if not present:
        raise ValueError(f"no record holds any of {', '.join(keys)}")
    figure = Figure(figsize=(4 * len(present), 3.2))
    for i, key in enumerate(present):
        axes = figure.add_subplot(1, len(present), i + 1)
        points = [(r["epoch"], r[key]) for r in records if key in r]
        axes.plot(*zip(*points), marker="o", markersize=3)
        axes.set_xlabel("epoch")
        axes.set_title(key)
        axes.grid(alpha=0.3)
        if key == "lr":
            axes.set_yscale("log")
    figure.tight_layout()
    _save_figure(figure, path)
    return present


def plot_budget_curve(records: Sequence[dict], path: "str | os.PathLike") -> list[str]:
    """Test NE against training budget: one line per ``record["recipe"]`` through the mean over
    seeds at each ``record["budget"]`` (a multiple of the base budget), every seed's
    ``record["test_ne"]`` as a dot. Returns the recipes plotted."""
    recipes = list(dict.fromkeys(r["recipe"] for r in records))
    if not recipes:
        raise ValueError("no records to plot")
    figure = Figure(figsize=(5.5, 3.6))
    axes = figure.add_subplot()
    for recipe in recipes:
        mine = [r for r in records if r["recipe"] == recipe]
        budgets = sorted({r["budget"] for r in mine})
        means = [np.mean([r["test_ne"] for r in mine if r["budget"] == b]) for b in budgets]
        line, = axes.plot(budgets, means, marker="o", label=recipe)
        axes.scatter([r["budget"] for r in mine], [r["test_ne"] for r in mine], color=line.get_color(), s=12, alpha=0.6)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted({r["budget"] for r in records}), [f"{b:g}×" for b in sorted({r["budget"] for r in records})])
    axes.set_xlabel("training budget (multiples of the base budget)")
    axes.set_ylabel("test NE (%)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    _save_figure(figure, path)
    return recipes


__all__ = ["draw_keypoints", "draw_comparison", "heatmap_montage", "save_image", "gallery",
           "plot_per_keypoint", "plot_curves", "plot_budget_curve", "error_color", "default_radius"]
