"""The FashionAI keypoint schema: the one source of truth.

Conventions used everywhere in the package:

* A point is ``(x, y)`` in pixels; integer coordinates are pixel centres
  (OpenCV's ``warpAffine`` convention). Annotation arrays are ``(N, 24, 3)``
  holding ``(x, y, v)`` in *original image* pixels, ``v`` = 1 visible,
  0 annotated but occluded, -1 absent.
* Image-like arrays are ``(..., H, W)``; sizes are written ``(H, W)``.
* A model for one category predicts only that category's keypoints, in the
  order of :func:`category_indices`; the ``all`` model predicts all 24.
"""
from __future__ import annotations

import numpy as np

KEYPOINT_NAMES: tuple[str, ...] = (
    "neckline_left", "neckline_right", "center_front", "shoulder_left",
    "shoulder_right", "armpit_left", "armpit_right", "waistline_left",
    "waistline_right", "cuff_left_in", "cuff_left_out", "cuff_right_in",
    "cuff_right_out", "top_hem_left", "top_hem_right", "waistband_left",
    "waistband_right", "hemline_left", "hemline_right", "crotch",
    "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

CATEGORIES: tuple[str, ...] = ("blouse", "outwear", "dress", "skirt", "trousers")
ALL = "all"  # the joint 24-keypoint model

CATEGORY_KEYPOINTS: dict[str, tuple[int, ...]] = {
    "blouse": (0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14),
    "outwear": (0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14),
    "dress": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 17, 18),
    "skirt": (15, 16, 17, 18),
    "trousers": (15, 16, 19, 20, 21, 22, 23),
}

# Left/right pairs exchanged by a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (0, 1), (3, 4), (5, 6), (7, 8), (9, 11), (10, 12), (13, 14),
    (15, 16), (17, 18), (20, 22), (21, 23),
)

# The pair whose ground-truth distance normalizes the error of a category.
NORM_PAIRS: dict[str, tuple[int, int]] = {
    "blouse": (5, 6), "outwear": (5, 6), "dress": (5, 6),
    "skirt": (15, 16), "trousers": (15, 16),
}

# Lines drawn between keypoints for pictures (global indices).
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 2), (0, 3), (1, 4), (3, 5), (4, 6), (3, 10), (4, 12),
    (9, 10), (11, 12), (5, 9), (6, 11), (5, 7), (6, 8), (7, 13), (8, 14),
    (13, 14), (7, 17), (8, 18), (17, 18), (15, 16), (15, 17), (16, 18),
    (15, 21), (16, 23), (20, 21), (22, 23), (19, 20), (19, 22),
)

SUBMISSION_COLUMNS: tuple[str, ...] = ("image_id", "image_category") + KEYPOINT_NAMES


def check_category(category: str, allow_all: bool = True) -> str:
    """Return ``category`` or raise a ValueError naming the valid ones."""
    valid = CATEGORIES + ((ALL,) if allow_all else ())
    if category not in valid:
        raise ValueError(f"unknown category {category!r}; expected one of {', '.join(valid)}")
    return category


def category_indices(category: str) -> tuple[int, ...]:
    """Global keypoint indices predicted by a model of ``category`` (``all`` → 0..23)."""
    check_category(category)
    return tuple(range(NUM_KEYPOINTS)) if category == ALL else CATEGORY_KEYPOINTS[category]


def num_keypoints(category: str) -> int:
    """Number of heatmap channels of a model of ``category``."""
    return len(category_indices(category))


def flip_permutation(category: str = ALL) -> np.ndarray:
    """Channel permutation of a horizontal flip, in ``category``'s local channel order.

    ``flipped[..., perm[c], :, :]`` is the flip of channel ``c``; the
    permutation is its own inverse.
    """
    indices = category_indices(category)
    partner = list(range(NUM_KEYPOINTS))
    for a, b in FLIP_PAIRS:
        partner[a], partner[b] = b, a
    local = {g: i for i, g in enumerate(indices)}
    return np.array([local[partner[g]] for g in indices], dtype=np.int64)


def category_mask(categories: "list[str] | np.ndarray") -> np.ndarray:
    """Boolean (N, 24) mask of the keypoints that belong to each row's category."""
    mask = np.zeros((len(categories), NUM_KEYPOINTS), dtype=bool)
    for row, category in enumerate(categories):
        mask[row, list(category_indices(category))] = True
    return mask


def local_to_global(category: str, local: np.ndarray, fill: float = -1.0) -> np.ndarray:
    """Scatter ``(..., K_category, D)`` values into ``(..., 24, D)``, ``fill`` elsewhere."""
    indices = list(category_indices(category))
    out = np.full(local.shape[:-2] + (NUM_KEYPOINTS, local.shape[-1]), fill, dtype=local.dtype)
    out[..., indices, :] = local
    return out
