"""A synthetic data set in the exact FashionAI layout, for tests and demos.

Every garment is *built from its keypoints*: a canonical template of the
category is sampled (neckline, shoulders, armpits, cuffs, hems, waistband,
crotch, ...) with random sleeve/leg angles, lengths, widths and independent
left/right jitter, then moved by a random affine transform (size 0.65-0.95
of the shorter image side, rotation within ±10°, shear within ±0.08, centred with
jitter as in product photos) and drawn as filled polygons (body, sleeves, legs)
whose corners *are* the keypoints; the edges between them bow out or in by up to
6 % of their length, as cloth does. They are drawn over a cluttered background,
with a textured fabric shaded by a gradient and soft folds, seams, sometimes a
wearer (skin, a second garment), an occluder, uneven lighting, blur and noise,
and each image is saved at its own JPEG quality (60-95).

Conventions (see :mod:`fashion_gluon.schema`): left keypoints lie on the
image's left in the canonical pose; coordinates are integer pixels;
``v = 1`` visible, ``v = 0`` annotated but not visible, ``-1`` absent.

``v = 0`` has two causes:

* an occluder covers the keypoint (decided from the occluder's drawn mask);
* the keypoint falls outside the image. A CSV cannot hold such a point, so it
  is stored *clipped to the image border* with ``v = 0``.

The normalizing pair of the category (armpits or waistband ends) is always
kept inside the image, so the normalized error's denominator is a true
distance. Everything is deterministic per ``seed``: each image draws from its
own ``np.random.default_rng([seed, category_index, i])``, so any number of
worker processes gives byte-identical files.

Layout written by :func:`generate_dataset`::

    ROOT/train/Annotations/train.csv     image_id,image_category,<24 keypoints>
    ROOT/train/Images/<category>/<md5>.jpg
    ROOT/test/test.csv                   image_id,image_category
    ROOT/test/Images/<category>/<md5>.jpg
    ROOT/test/annotations.csv            test ground truth, train.csv columns
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..fileio import atomic_path
from ..schema import load_schema
from .annotations import Annotations, write_annotations
from .layout import TEST_LIST, TEST_TRUTH, TRAIN_CSV, root_source

#: This drawer makes FashionAI's garments: its schema, by name (see schemas/fashionai.yaml).
FASHIONAI = load_schema("fashionai")
CATEGORIES, KEYPOINT_NAMES, NUM_KEYPOINTS = FASHIONAI.category_names, FASHIONAI.keypoints, FASHIONAI.num_keypoints
CATEGORY_KEYPOINTS, NORM_PAIRS = FASHIONAI.categories, FASHIONAI.norm_pairs
KP = {name: index for index, name in enumerate(KEYPOINT_NAMES)}
LEFT, RIGHT = -1, 1  # sign of x of a side in the canonical pose (left = image left)

SCALE_RANGE = (0.65, 0.95)      # garment extent / shorter image side
MAX_ROTATION_DEG = 10.0
POSITION_JITTER = 0.35          # share of the free room around the centre the garment may move
CUT_PROBABILITY = 0.3           # chance to push the garment partly out of the frame
OCCLUDE_PROBABILITY = 0.6       # chance of an occluder over a keypoint
WEARER_PROBABILITY = 0.5        # chance to draw skin (arms, neck, legs) and a companion garment
VARY_SIZE_RANGE = (320, 640)    # H and W range of ``vary_size``
JPEG_QUALITY_RANGE = (60, 95)   # each image's JPEG quality, drawn uniformly (inclusive)
MAX_BULGE = 0.06                # sideways shift of a garment edge's midpoint / the edge's length
CURVE_SEGMENTS = 8              # straight pieces per curved edge (even: the shifted midpoint is a vertex)
MAX_SHEAR = 0.08                # horizontal and vertical shear of the placement
SHADE_GRADIENT = 0.25           # largest brightness change of the shading from the garment's centre to its edge
FOLD_COUNT = (0, 4)             # soft dark or light bands (folds) on the fabric (inclusive)
FOLD_GAIN = (-0.35, 0.2)        # brightness change at a fold's ridge
SHADE_CELL = 4                  # px between samples of the shading field (bilinearly enlarged)
FABRICS = ("plain", "hstripes", "vstripes", "diagonal", "checks", "dots", "mottled")
SKIN_TONES = np.array([[241, 194, 167], [224, 172, 105], [198, 134, 66],
                       [141, 85, 36], [255, 219, 172], [160, 110, 80]])
SUBPIXEL_BITS = 4               # cv2 drawing ``shift``: vertices at 1/16 px


# --------------------------------------------------------------------------- geometry

@dataclass
class Garment:
    """A garment's geometry: keypoints and the polygons drawn through them."""

    points: dict[int, np.ndarray]                                # keypoint index -> (x, y)
    parts: list[np.ndarray]                                      # fabric polygons, drawing order
    linings: list[np.ndarray] = field(default_factory=list)     # darker fabric (collar inside, waistband)
    seams: list[np.ndarray] = field(default_factory=list)       # open polylines (placket, pleats)
    skin: list[np.ndarray] = field(default_factory=list)        # the wearer, behind the garment
    companion: list[np.ndarray] = field(default_factory=list)   # another garment of the wearer

    def transformed(self, matrix: np.ndarray) -> "Garment":
        """The garment moved by a 2x3 affine ``matrix``."""
        def move(p: np.ndarray) -> np.ndarray:
            return p @ matrix[:, :2].T + matrix[:, 2]

        return Garment({k: move(p) for k, p in self.points.items()},
                       [move(p) for p in self.parts], [move(p) for p in self.linings],
                       [move(p) for p in self.seams], [move(p) for p in self.skin],
                       [move(p) for p in self.companion])

    def outline_points(self) -> np.ndarray:
        """All vertices of the fabric polygons, (N, 2)."""
        return np.concatenate(self.parts + self.linings)


def _pt(x: float, y: float) -> np.ndarray:
    return np.array([x, y], dtype=np.float64)


def _jitter(rng: np.random.Generator, base: float, rel: float = 0.08) -> float:
    """``base`` scaled by a random factor around 1 (left and right draw separately)."""
    return base * (1.0 + rng.normal(0.0, rel))


def _bezier(p0: np.ndarray, through: np.ndarray, p2: np.ndarray, n: int = 7) -> np.ndarray:
    """n points (n odd) of the quadratic curve from p0 to p2 passing through ``through`` at its
    middle; the first is exactly p0. Arguments of shape (..., 2) give (n, ..., 2): one curve each."""
    control = 2.0 * through - 0.5 * (p0 + p2)
    t = np.linspace(0.0, 1.0, n).reshape((n,) + (1,) * np.ndim(p0))
    return (1 - t) ** 2 * p0 + 2 * t * (1 - t) * control + t ** 2 * p2


def _bent(rng: np.random.Generator, corners: list[np.ndarray]) -> np.ndarray:
    """The path through ``corners`` with every edge bowed out or in: a quadratic curve through
    the edge's midpoint moved sideways by up to ``MAX_BULGE`` of the edge's length. The corners
    are exact vertices of the result (first and last included)."""
    start, end = np.stack(corners[:-1]), np.stack(corners[1:])
    sideways = (end - start)[:, ::-1] * (1.0, -1.0)  # each edge turned by 90°, same length
    through = 0.5 * (start + end) + rng.uniform(-MAX_BULGE, MAX_BULGE, (len(start), 1)) * sideways
    curves = _bezier(start, through, end, CURVE_SEGMENTS + 1)[:-1]  # (segments, edges, 2)
    return np.concatenate([curves.transpose(1, 0, 2).reshape(-1, 2), corners[-1][None]])


def _limb_end(root: np.ndarray, side: int, angle: float, length: float,
              half_width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """End of a sleeve or leg leaving ``root`` at ``angle`` from straight down, outward
    on ``side``. Returns (centre, outer corner, inner corner) of the end."""
    direction = _pt(side * np.sin(angle), np.cos(angle))
    outward = _pt(side * np.cos(angle), -np.sin(angle))
    centre = root + length * direction
    return centre, centre + half_width * outward, centre - half_width * outward


def _arm(root: np.ndarray, cuff_centre: np.ndarray, half_width: float, reach: float) -> list[np.ndarray]:
    """Skin polygon of an arm (or leg) continuing past a cuff, with a hand ellipse."""
    axis = cuff_centre - root
    axis = axis / max(np.linalg.norm(axis), 1e-9)
    normal = _pt(-axis[1], axis[0])
    end = cuff_centre + reach * axis
    limb = np.stack([root + half_width * normal, end + 0.8 * half_width * normal,
                     end - 0.8 * half_width * normal, root - half_width * normal])
    return [limb, _ellipse(end + 0.5 * half_width * axis, 1.3 * half_width, 0.9 * half_width,
                           np.degrees(np.arctan2(axis[1], axis[0])))]


def _ellipse(centre: np.ndarray, a: float, b: float, angle_deg: float, n: int = 16) -> np.ndarray:
    """Polygon of an ellipse with semi-axes a (along ``angle_deg``) and b."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    x, y = a * np.cos(t), b * np.sin(t)
    return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y], axis=1)


def _top(rng: np.random.Generator, category: str) -> Garment:
    """Blouse, outwear or dress: neck at y = 0, left side at negative x."""
    dress, outwear = category == "dress", category == "outwear"
    neck = rng.uniform(0.07, 0.13)
    nl = _pt(-_jitter(rng, neck), rng.normal(0.0, 0.012))
    nr = _pt(_jitter(rng, neck), rng.normal(0.0, 0.012))
    shoulder, armpit_y = rng.uniform(0.2, 0.29), rng.uniform(0.22, 0.32)
    sl = _pt(-_jitter(rng, shoulder), rng.uniform(0.03, 0.09))
    sr = _pt(_jitter(rng, shoulder), rng.uniform(0.03, 0.09))
    al = _pt(sl[0] * rng.uniform(0.86, 1.02), _jitter(rng, armpit_y, 0.05))
    ar = _pt(sr[0] * rng.uniform(0.86, 1.02), _jitter(rng, armpit_y, 0.05))
    depth = rng.uniform(0.04, 0.12) if outwear else rng.uniform(0.07, 0.3)
    cf = _pt(0.5 * (nl[0] + nr[0]) + rng.normal(0.0, 0.01), max(nl[1], nr[1]) + depth)
    front = np.stack([nl, cf, nr]) if rng.random() < 0.4 and not outwear else _bezier(nl, cf, nr)
    back = _bezier(nr, _pt(cf[0], max(nl[1], nr[1]) + depth * rng.uniform(0.1, 0.35)), nl)
    points = {KP["neckline_left"]: nl, KP["neckline_right"]: nr,
              KP["shoulder_left"]: sl, KP["shoulder_right"]: sr,
              KP["armpit_left"]: al, KP["armpit_right"]: ar}
    if not outwear:
        points[KP["center_front"]] = cf
    left_side, right_side = [al], [ar]
    if dress or outwear:
        waist_y = rng.uniform(0.5, 0.62) if dress else rng.uniform(0.5, 0.68)
        wl = _pt(al[0] * rng.uniform(0.76, 0.97), _jitter(rng, waist_y, 0.04))
        wr = _pt(ar[0] * rng.uniform(0.76, 0.97), _jitter(rng, waist_y, 0.04))
        points[KP["waistline_left"]], points[KP["waistline_right"]] = wl, wr
        left_side.append(wl)
        right_side.append(wr)
    if dress:
        length, flare = rng.uniform(0.95, 1.7), rng.uniform(1.1, 2.3)
        sway = rng.normal(0.0, 0.04)
        hl = _pt(left_side[-1][0] * _jitter(rng, flare) + sway, _jitter(rng, length, 0.04))
        hr = _pt(right_side[-1][0] * _jitter(rng, flare) + sway, _jitter(rng, length, 0.04))
        points[KP["hemline_left"]], points[KP["hemline_right"]] = hl, hr
    else:
        length = rng.uniform(0.85, 1.25) if outwear else rng.uniform(0.6, 0.9)
        hl = _pt(al[0] * rng.uniform(0.9, 1.18), _jitter(rng, length, 0.04))
        hr = _pt(ar[0] * rng.uniform(0.9, 1.18), _jitter(rng, length, 0.04))
        points[KP["top_hem_left"]], points[KP["top_hem_right"]] = hl, hr
    bottom = _bezier(hr, 0.5 * (hl + hr) + _pt(0.0, rng.uniform(0.0, 0.06)), hl)
    body = np.concatenate([front, _bent(rng, [nr, sr, *right_side, hr])[1:-1],
                           bottom, _bent(rng, [hl, *left_side[::-1], sl, nl])[1:-1]])
    garment = Garment(points, [body], linings=[np.concatenate([front, back[1:-1]])])
    if outwear:
        garment.seams.append(np.stack([cf, 0.5 * (hl + hr)]))
    _add_sleeves(rng, category, garment)
    _add_wearer_top(rng, category, garment, cf, bottom)
    return garment


def _add_sleeves(rng: np.random.Generator, category: str, garment: Garment) -> None:
    """Sleeves from shoulder/armpit to cuffs, drawn over the body."""
    low, high = {"blouse": (0.12, 0.75), "outwear": (0.35, 0.8), "dress": (0.06, 0.6)}[category]
    length = rng.uniform(low, high)
    taper = rng.uniform(0.45, 0.9)
    names = {LEFT: ("shoulder_left", "armpit_left", "cuff_left_in", "cuff_left_out"),
             RIGHT: ("shoulder_right", "armpit_right", "cuff_right_in", "cuff_right_out")}
    for side, (shoulder, armpit, cuff_in, cuff_out) in names.items():
        s, a = garment.points[KP[shoulder]], garment.points[KP[armpit]]
        root = 0.5 * (s + a)
        half = 0.5 * np.linalg.norm(s - a) * _jitter(rng, taper, 0.05)
        sleeve = _jitter(rng, length, 0.06)
        angle = np.radians(rng.uniform(max(12.0, 50.0 - 60.0 * sleeve), 80.0))  # short sleeves stick out
        centre, outer, inner = _limb_end(root, side, angle, sleeve, half)
        garment.points[KP[cuff_in]], garment.points[KP[cuff_out]] = inner, outer
        garment.parts.append(_bent(rng, [s, outer, inner, a, s])[:-1])
        if rng.random() < WEARER_PROBABILITY:
            garment.skin[:0] = _arm(root, centre, 0.75 * half, rng.uniform(0.1, 0.35))


def _add_wearer_top(rng: np.random.Generator, category: str, garment: Garment,
                    cf: np.ndarray, bottom: np.ndarray) -> None:
    """Neck and head above a top; trousers or legs below it."""
    if rng.random() >= WEARER_PROBABILITY:
        return
    neck = 0.5 * np.linalg.norm(garment.points[KP["neckline_left"]] - garment.points[KP["neckline_right"]])
    garment.skin += [np.array([[cf[0] - 0.6 * neck, -0.12], [cf[0] + 0.6 * neck, -0.12],
                               [cf[0] + 0.6 * neck, cf[1]], [cf[0] - 0.6 * neck, cf[1]]]),
                     _ellipse(_pt(cf[0], -0.22), 0.13, 0.1, 90.0 + rng.normal(0.0, 8.0))]
    hem_l, hem_r = bottom[-1], bottom[0]
    if category == "dress":
        garment.skin += _legs_below(rng, hem_l, hem_r)
    else:
        drop = _pt(0.0, rng.uniform(0.2, 0.6))
        up, inward = _pt(0.0, 0.05), _pt(0.05 * np.linalg.norm(hem_r - hem_l), 0.0)
        garment.companion.append(np.stack([hem_l + inward - up, hem_r - inward - up,
                                           hem_r + drop, hem_l + drop]))


def _legs_below(rng: np.random.Generator, hem_l: np.ndarray, hem_r: np.ndarray) -> list[np.ndarray]:
    """Two skin polygons of legs coming out under a hem from ``hem_l`` to ``hem_r``."""
    legs = []
    for t in (0.3, 0.7):
        top = hem_l + t * (hem_r - hem_l) - _pt(0.0, 0.05)
        drop = _pt(0.0, rng.uniform(0.2, 0.5))
        legs.append(np.stack([top - _pt(0.05, 0), top + _pt(0.05, 0),
                              top + drop + _pt(0.04, 0), top + drop - _pt(0.04, 0)]))
    return legs


def _skirt(rng: np.random.Generator) -> Garment:
    """Skirt: waistband at y = 0, hemline corners below."""
    half = rng.uniform(0.17, 0.27)
    wl, wr = _pt(-_jitter(rng, half), rng.normal(0.0, 0.012)), _pt(_jitter(rng, half), rng.normal(0.0, 0.012))
    length, flare, sway = rng.uniform(0.3, 1.0), rng.uniform(1.05, 2.2), rng.normal(0.0, 0.05)
    hl = _pt(wl[0] * _jitter(rng, flare) + sway, _jitter(rng, length, 0.05))
    hr = _pt(wr[0] * _jitter(rng, flare) + sway, _jitter(rng, length, 0.05))
    hip_y = min(0.15, 0.4 * min(hl[1], hr[1]))
    hip = rng.uniform(1.0, 1.12)
    hip_l, hip_r = _pt(wl[0] * hip, hip_y), _pt(wr[0] * hip, hip_y)
    hip_l[0] = min(hip_l[0], wl[0] + (hl[0] - wl[0]) * hip_y / hl[1])
    hip_r[0] = max(hip_r[0], wr[0] + (hr[0] - wr[0]) * hip_y / hr[1])
    hem = _bezier(hr, 0.5 * (hl + hr) + _pt(0.0, rng.uniform(0.0, 0.07)), hl)
    body = np.concatenate([[wl], _bent(rng, [wr, hip_r, hr])[:-1], hem, _bent(rng, [hl, hip_l, wl])[1:-1]])
    band = _pt(0.0, rng.uniform(0.025, 0.06))
    garment = Garment({KP["waistband_left"]: wl, KP["waistband_right"]: wr,
                       KP["hemline_left"]: hl, KP["hemline_right"]: hr},
                      [body], linings=[np.stack([wl, wr, wr + band, wl + band])])
    if rng.random() < 0.4:
        for t in np.linspace(0.2, 0.8, int(rng.integers(2, 6))):
            garment.seams.append(np.stack([wl + t * (wr - wl) + band, hem[::-1][int(t * (len(hem) - 1))]]))
    if rng.random() < WEARER_PROBABILITY:
        garment.companion.append(_torso_above(rng, wl, wr))
        garment.skin += _legs_below(rng, hl, hr)
    return garment


def _torso_above(rng: np.random.Generator, wl: np.ndarray, wr: np.ndarray) -> np.ndarray:
    """A top worn above a waistband (a companion garment)."""
    up = _pt(0.0, -rng.uniform(0.3, 0.6))
    spread = _pt(rng.uniform(0.0, 0.12), 0.0)
    return np.stack([wl + _pt(-0.02, 0.02), wl + up - spread, wr + up + spread, wr + _pt(0.02, 0.02)])


def _min_leg_angle(length: float, half_width: float, clearance: float) -> float:
    """Smallest leg angle a with length*sin(a) - half_width*cos(a) >= clearance (legs do not cross)."""
    radius = np.hypot(length, half_width)
    return float(np.arctan2(half_width, length) + np.arcsin(np.clip(clearance / radius, -1.0, 1.0)))


def _trousers(rng: np.random.Generator) -> Garment:
    """Trousers or shorts: waistband at y = 0, crotch below the middle, two legs."""
    half = rng.uniform(0.17, 0.26)
    wl, wr = _pt(-_jitter(rng, half), rng.normal(0.0, 0.012)), _pt(_jitter(rng, half), rng.normal(0.0, 0.012))
    crotch = _pt(rng.normal(0.0, 0.015), rng.uniform(0.24, 0.36))
    length = rng.uniform(0.35, 1.15)
    bottom_half = rng.uniform(0.07, 0.13) * (1.0 + 0.5 * (length < 0.6))
    points = {KP["waistband_left"]: wl, KP["waistband_right"]: wr, KP["crotch"]: crotch}
    legs = {}
    for side, waist, names in ((LEFT, wl, ("bottom_left_in", "bottom_left_out")),
                               (RIGHT, wr, ("bottom_right_in", "bottom_right_out"))):
        root = 0.5 * (waist + crotch)
        leg_length, leg_half = _jitter(rng, length, 0.04), _jitter(rng, bottom_half, 0.06)
        clearance = side * (root[0] - crotch[0]) + 0.03
        angle = _min_leg_angle(leg_length, leg_half, clearance) + np.radians(rng.uniform(0.0, 22.0))
        centre, outer, inner = _limb_end(root, side, angle, leg_length, leg_half)
        points[KP[names[0]]], points[KP[names[1]]] = inner, outer
        legs[side] = (centre, outer, inner, root, leg_half)
    body = _bent(rng, [wl, legs[LEFT][1], legs[LEFT][2], crotch, legs[RIGHT][2], legs[RIGHT][1], wr])
    band = _pt(0.0, rng.uniform(0.025, 0.05))
    garment = Garment(points, [body], linings=[np.stack([wl, wr, wr + band, wl + band])],
                      seams=[np.stack([0.5 * (wl + wr) + band, crotch])])
    if rng.random() < WEARER_PROBABILITY:
        garment.companion.append(_torso_above(rng, wl, wr))
        for centre, _, _, root, leg_half in legs.values():
            garment.skin += _arm(root, centre, 0.7 * leg_half, rng.uniform(0.08, 0.3))
    return garment


def sample_garment(category: str, rng: np.random.Generator) -> Garment:
    """A garment of ``category`` in canonical units (its keypoints and polygons)."""
    if category == "skirt":
        return _skirt(rng)
    if category == "trousers":
        return _trousers(rng)
    if category in ("blouse", "outwear", "dress"):
        return _top(rng, category)
    raise ConfigError(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")


def _placement(rng: np.random.Generator, garment: Garment, category: str, size: tuple[int, int],
               scale_range: tuple[float, float] = SCALE_RANGE) -> tuple[np.ndarray, float]:
    """Random affine transform (2x3: scale, rotation, mild shear) into an image of ``size``
    = (H, W), the garment's extent a share in ``scale_range`` of the shorter side, and that extent
    in pixels. The normalizing keypoint pair stays inside the image."""
    height, width = size
    outline = garment.outline_points()
    lo, hi = outline.min(axis=0), outline.max(axis=0)
    extent_px = rng.uniform(*scale_range) * min(height, width)
    scale = extent_px / float(np.max(hi - lo))
    theta = np.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    shear_x, shear_y = rng.uniform(-MAX_SHEAR, MAX_SHEAR, 2)
    linear = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) \
        @ np.array([[1.0, shear_x], [shear_y, 1.0]])
    moved = (outline - 0.5 * (lo + hi)) @ linear.T
    frame = np.array([width - 1.0, height - 1.0])
    low_t, high_t = -moved.min(axis=0), frame - moved.max(axis=0)
    centre, room = 0.5 * (low_t + high_t), 0.5 * np.abs(high_t - low_t) * POSITION_JITTER
    shift = centre + rng.uniform(-1.0, 1.0, 2) * room
    if rng.random() < CUT_PROBABILITY:
        push = rng.uniform(0.1, 0.35) * extent_px
        direction = rng.uniform(0.0, 2 * np.pi)
        shift = shift + push * np.array([np.cos(direction), np.sin(direction)])
    pair = np.stack([garment.points[k] for k in NORM_PAIRS[category]])
    pair = (pair - 0.5 * (lo + hi)) @ linear.T
    margin = 2.0
    shift = np.clip(shift, margin - pair.min(axis=0), frame - margin - pair.max(axis=0))
    offset = shift - (0.5 * (lo + hi)) @ linear.T
    return np.concatenate([linear, offset[:, None]], axis=1), extent_px


# --------------------------------------------------------------------------- painting

def _fixed(polygon: np.ndarray) -> np.ndarray:
    """Vertices in cv2's fixed-point format (``shift = SUBPIXEL_BITS``)."""
    return np.round(polygon * (1 << SUBPIXEL_BITS)).astype(np.int32)


def _fill(image: np.ndarray, polygons: list[np.ndarray], colour) -> None:
    if polygons:
        cv2.fillPoly(image, [_fixed(p) for p in polygons], _colour(colour), cv2.LINE_8, SUBPIXEL_BITS)


def _lines(image: np.ndarray, polylines: list[np.ndarray], colour, closed: bool, thickness: int = 1) -> None:
    if polylines:
        cv2.polylines(image, [_fixed(p) for p in polylines], closed, _colour(colour), thickness,
                      cv2.LINE_AA, SUBPIXEL_BITS)


def _colour(colour) -> tuple[int, ...]:
    return tuple(min(255, max(0, int(c))) for c in np.atleast_1d(colour))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """An RGB colour: vivid, pastel, dark or grey."""
    saturation = rng.integers(0, 40) if rng.random() < 0.25 else rng.integers(40, 256)
    hsv = np.array([[[rng.integers(0, 180), saturation, rng.integers(30, 256)]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.int32)


def _near(rng: np.random.Generator, colour: np.ndarray, spread: float) -> np.ndarray:
    return np.clip(colour + rng.normal(0.0, spread, 3), 0, 255).astype(np.int32)


def _skin(rng: np.random.Generator) -> np.ndarray:
    return _near(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 10.0)


def _fabric(rng: np.random.Generator, size: tuple[int, int], colour: np.ndarray) -> np.ndarray:
    """An (H, W, 3) fabric texture: a tiled pattern of ``colour`` and an accent colour."""
    height, width = size
    kind = FABRICS[rng.integers(len(FABRICS))]
    accent = _near(rng, colour, 60.0) if rng.random() < 0.6 else _random_colour(rng)
    if kind == "mottled":
        small = rng.uniform(0.0, 1.0, (max(2, height // 20), max(2, width // 20), 1))
        blend = (colour + small * (accent - colour)).astype(np.uint8)
        return cv2.resize(blend, (width, height), interpolation=cv2.INTER_CUBIC)
    if kind == "plain":
        return np.full((height, width, 3), colour, dtype=np.uint8)
    period = int(rng.integers(6, max(8, min(height, width) // 10)))
    yy, xx = np.mgrid[:period, :period]
    band = max(1, int(period * rng.uniform(0.2, 0.6)))
    pattern = {"hstripes": yy < band, "vstripes": xx < band, "diagonal": (xx + yy) % period < band,
               "checks": (xx < period // 2) ^ (yy < period // 2),
               "dots": (xx - period / 2) ** 2 + (yy - period / 2) ** 2 <= (band / 2) ** 2}[kind]
    tile = np.where(pattern[..., None], accent, colour).astype(np.uint8)
    row = np.tile(tile, (1, -(-width // period), 1))[:, :width]
    return np.tile(row, (-(-height // period), 1, 1))[:height]  # a first-axis slice stays contiguous


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A smooth random gradient: a 3x3 grid of related colours, bilinearly enlarged."""
    height, width = size
    base = rng.integers(170, 256, 3) if rng.random() < 0.5 else _random_colour(rng)
    grid = np.clip(base + rng.normal(0.0, 35.0, (3, 3, 3)), 0, 255).astype(np.uint8)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)


def _blob(rng: np.random.Generator, centre: np.ndarray, radius: float) -> np.ndarray:
    """A random star-convex polygon around ``centre``."""
    count = int(rng.integers(6, 12))
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, count))
    radii = radius * rng.uniform(0.6, 1.0, count)
    return centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _clutter(rng: np.random.Generator, image: np.ndarray, garment_colour: np.ndarray) -> None:
    """Random shapes and lines, some in garment-like colours, drawn on ``image``."""
    height, width = image.shape[:2]
    side = min(height, width)
    for _ in range(int(rng.integers(3, 12))):
        colour = _near(rng, garment_colour, 25.0) if rng.random() < 0.3 else _random_colour(rng)
        centre = rng.uniform((0.0, 0.0), (width, height))
        radius = rng.uniform(0.03, 0.25) * side
        kind = rng.integers(4)
        if kind == 0:
            _fill(image, [_blob(rng, centre, radius)], colour)
        elif kind == 1:
            _fill(image, [_ellipse(centre, radius, radius * rng.uniform(0.2, 1.0), rng.uniform(0, 180))], colour)
        elif kind == 2:
            box = cv2.boxPoints((tuple(centre), (radius, radius * rng.uniform(0.1, 2.0)), rng.uniform(0, 90)))
            _fill(image, [box.astype(np.float64)], colour)
        else:
            _lines(image, [np.stack([centre, rng.uniform((0.0, 0.0), (width, height))])], colour,
                   False, int(rng.integers(1, 7)))


def _paint_garment(rng: np.random.Generator, image: np.ndarray, garment: Garment) -> np.ndarray:
    """Draw the wearer, the companion garment and the garment; return the garment's mask."""
    colour = _random_colour(rng)
    _clutter(rng, image, colour)
    _fill(image, garment.companion, _random_colour(rng))
    _fill(image, garment.skin, _skin(rng))
    fabric = _fabric(rng, image.shape[:2], colour)
    seam = colour * rng.uniform(0.45, 0.75)
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    part_mask = np.empty_like(mask)
    for part in garment.parts:
        part_mask[:] = 0
        _fill(part_mask, [part], 255)
        cv2.copyTo(fabric, part_mask, image)
        _lines(image, [part], seam, True, 1)
        mask |= part_mask
    _fill(image, garment.linings, colour * rng.uniform(0.5, 0.8))
    _fill(mask, garment.linings, 255)
    _lines(image, garment.linings + garment.seams, seam, False, 1)
    _shade(rng, image, mask)
    return mask


def _shade(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Shade the garment where ``mask`` is set: a brightness gradient across it and a few soft
    dark or light bands (folds), mostly hanging down, computed on a coarse grid."""
    x, y, width, height = cv2.boundingRect(mask)
    extent = max(width, height)
    yy, xx = np.mgrid[:-(-height // SHADE_CELL), :-(-width // SHADE_CELL)] * float(SHADE_CELL)
    tilt = rng.uniform(0.0, 2 * np.pi)
    gain = 1.0 + rng.uniform(-SHADE_GRADIENT, SHADE_GRADIENT) * 2.0 / extent \
        * ((xx - 0.5 * width) * np.cos(tilt) + (yy - 0.5 * height) * np.sin(tilt))
    for _ in range(int(rng.integers(FOLD_COUNT[0], FOLD_COUNT[1] + 1))):
        angle = np.radians(rng.normal(0.0, 20.0))  # from straight down
        dx, dy = xx - rng.uniform(0.0, width), yy - rng.uniform(0.0, height)
        across = (dx * np.cos(angle) - dy * np.sin(angle)) / (rng.uniform(0.02, 0.06) * extent)
        along = (dx * np.sin(angle) + dy * np.cos(angle)) / (rng.uniform(0.15, 0.5) * extent)
        gain += rng.uniform(*FOLD_GAIN) * np.exp(-0.5 * (across ** 2 + along ** 2))
    gain = cv2.resize(np.clip(gain * 128, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    box = image[y:y + height, x:x + width]
    shaded = cv2.multiply(box, cv2.cvtColor(gain, cv2.COLOR_GRAY2RGB), scale=1.0 / 128)
    cv2.copyTo(shaded, mask[y:y + height, x:x + width], box)  # box is a view: writes into image


def _occlude(rng: np.random.Generator, image: np.ndarray, points: np.ndarray, extent_px: float) -> np.ndarray:
    """Maybe draw an opaque blob (a hand, a bag) over one in-frame keypoint; return its mask."""
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    height, width = mask.shape
    inside = np.flatnonzero(np.all((points >= 0) & (points <= (width - 1, height - 1)), axis=1))
    if rng.random() >= OCCLUDE_PROBABILITY or inside.size == 0:
        return mask
    target = points[inside[rng.integers(inside.size)]]
    radius = rng.uniform(0.06, 0.14) * extent_px
    centre = target + rng.uniform(-0.5, 0.5, 2) * radius
    if rng.random() < 0.5:
        shape, colour = _ellipse(centre, radius, radius * rng.uniform(0.6, 0.9), rng.uniform(0, 180)), _skin(rng)
    else:
        shape, colour = _blob(rng, centre, radius), _random_colour(rng)
    _fill(image, [shape], colour)
    _fill(mask, [shape], 255)
    return mask


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Uneven lighting and colour cast, then maybe blur and noise."""
    height, width = image.shape[:2]
    gain = rng.uniform(0.7, 1.2, (3, 3, 1)) * rng.uniform(0.9, 1.1, (1, 1, 3))
    gain = cv2.resize((gain * 128).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    image = cv2.multiply(image, gain, scale=1.0 / 128)
    if rng.random() < 0.25:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
    if rng.random() < 0.2:
        shift = int(rng.integers(4, 7))  # uniform noise in [0, 256 >> shift)
        noise = np.frombuffer(rng.bytes(image.size), dtype=np.uint8).reshape(image.shape) >> shift
        image = cv2.subtract(cv2.add(image, noise), np.full_like(image, 128 >> shift))
    return image


def _annotate(garment: Garment, category: str, size: tuple[int, int],
              occluder: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(24, 3) float32 annotation: rounded, clipped to the frame with v = 0 outside it,
    v = 0 under the occluder; and the raw (24, 2) points (NaN when absent). Sleeves and
    legs point away from the body, so no part of the garment hides another's keypoint."""
    height, width = size
    rows = list(CATEGORY_KEYPOINTS[category])
    raw = np.full((NUM_KEYPOINTS, 2), np.nan)
    raw[rows] = np.stack([garment.points[k] for k in rows])
    xy = np.round(raw[rows])
    inside = np.all((xy >= 0) & (xy <= (width - 1, height - 1)), axis=1)
    xy = np.clip(xy, 0, (width - 1, height - 1))
    covered = occluder[xy[:, 1].astype(int), xy[:, 0].astype(int)] > 0
    keypoints = np.full((NUM_KEYPOINTS, 3), -1.0, dtype=np.float32)
    keypoints[rows, :2] = xy
    keypoints[rows, 2] = inside & ~covered
    return keypoints, raw


@dataclass
class Rendering:
    """One drawn image with its annotation and the masks used to make it (not a
    :class:`~.transforms.Sample`, which is an image on its way through the augmentations)."""

    image: np.ndarray           # (H, W, 3) uint8 RGB
    keypoints: np.ndarray       # (24, 3) float32 (x, y, v), as written to the CSV
    points: np.ndarray          # (24, 2) float64 exact keypoints before rounding/clipping, NaN if absent
    garment_mask: np.ndarray    # (H, W) uint8, 255 on the garment's fabric
    occluder_mask: np.ndarray   # (H, W) uint8, 255 on the occluder


def render_sample(category: str, rng: np.random.Generator, image_size: tuple[int, int] = (512, 512),
                  garment_scale: tuple[float, float] = SCALE_RANGE) -> Rendering:
    """Draw one garment of ``category`` into an image of ``image_size`` = (H, W), its extent a
    share in ``garment_scale`` of the shorter side."""
    size = _check_size(image_size)
    garment = sample_garment(category, rng)
    matrix, extent_px = _placement(rng, garment, category, size, garment_scale)
    garment = garment.transformed(matrix)
    image = _background(rng, size)
    garment_mask = _paint_garment(rng, image, garment)
    rows = list(CATEGORY_KEYPOINTS[category])
    occluder = _occlude(rng, image, np.stack([garment.points[k] for k in rows]), extent_px)
    image = _lighting(rng, image)
    keypoints, raw = _annotate(garment, category, size, occluder)
    return Rendering(image, keypoints, raw, garment_mask, occluder)


def draw_garment(category: str, rng: np.random.Generator, image_size: tuple[int, int] = (512, 512),
                 garment_scale: tuple[float, float] = SCALE_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image (H, W, 3) uint8 RGB and its (24, 3) float32 keypoints (x, y, v)."""
    sample = render_sample(category, rng, image_size, garment_scale)
    return sample.image, sample.keypoints


# --------------------------------------------------------------------------- data set

def _check_size(image_size: "tuple[int, int]") -> tuple[int, int]:
    height, width = (int(v) for v in image_size)
    if height < 32 or width < 32:
        raise ConfigError(f"image_size must be at least (32, 32), got ({height}, {width})")
    return height, width


def image_name(seed: int, category: str, index: int) -> str:
    """The md5-like file stem of image ``index`` of ``category``."""
    return hashlib.md5(f"{seed}-{category}-{index}".encode()).hexdigest()


def split_counts(per_category: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) images per category; at least one of each when per_category >= 2
    and test_fraction > 0."""
    test = int(round(per_category * test_fraction))
    if per_category >= 2 and test_fraction > 0:
        test = min(max(test, 1), per_category - 1)
    return per_category - test, test


@dataclass(frozen=True)
class _Task:
    root: str
    seed: int
    category_index: int
    index: int
    split: str
    image_size: tuple[int, int]
    vary_size: bool
    garment_scale: tuple[float, float]


def _render_task(task: _Task) -> tuple[str, np.ndarray]:
    """Render and write one image; return its image_id and keypoints."""
    category = CATEGORIES[task.category_index]
    rng = np.random.default_rng([task.seed, task.category_index, task.index])
    size = tuple(int(v) for v in rng.integers(VARY_SIZE_RANGE[0], VARY_SIZE_RANGE[1] + 1, 2)) \
        if task.vary_size else task.image_size
    image, keypoints = draw_garment(category, rng, size, task.garment_scale)
    quality = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
    image_id = f"Images/{category}/{image_name(task.seed, category, task.index)}.jpg"
    with atomic_path(Path(task.root, task.split, image_id)) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"cannot write {tmp}")
    return image_id, keypoints


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _run(tasks: list[_Task], workers: int, progress: bool) -> list[tuple[str, np.ndarray]]:
    """Results of ``_render_task`` over ``tasks``, in order, on ``workers`` processes."""
    bar = dict(total=len(tasks), disable=not progress, unit="img", desc="synth")
    if workers == 1:
        return [_render_task(t) for t in tqdm(tasks, **bar)]
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold MXNet threads
    with context.Pool(workers, initializer=_init_worker) as pool:
        return list(tqdm(pool.imap(_render_task, tasks, chunksize=8), **bar))


def _annotations(results: list[tuple[str, np.ndarray]], tasks: list[_Task]) -> Annotations:
    keypoints = np.stack([k for _, k in results]) if results else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
    return Annotations([i for i, _ in results], [CATEGORIES[t.category_index] for t in tasks], keypoints, FASHIONAI)


def ensure_dataset(root: "str | os.PathLike", **kwargs) -> "dict | None":
    """``generate_dataset(root, **kwargs)`` unless ``root`` already holds a FashionAI training
    split (real or synthetic data alike are then left untouched and None is returned)."""
    try:
        root_source(root, "train")
    except DataError:
        return generate_dataset(root, **kwargs)
    return None


def generate_dataset(root: "str | os.PathLike", per_category: int = 100, seed: int = 0,
                     image_size: tuple[int, int] = (512, 512), test_fraction: float = 0.2,
                     workers: int = 1, progress: bool = True, vary_size: bool = False,
                     garment_scale: "tuple[float, float]" = SCALE_RANGE) -> dict:
    """Write a synthetic data set in the FashionAI layout under ``root``.

    ``per_category`` images per category in total, the last ``test_fraction`` of
    them in the test split. ``vary_size`` draws each image's (H, W) in
    ``VARY_SIZE_RANGE`` instead of ``image_size``; ``garment_scale`` (lo, hi) is the range of a
    garment's extent over the shorter image side (default :data:`SCALE_RANGE`; product photos
    show garments from about 0.4 of the frame). Returns a summary: images per
    split and category, total images, seconds and images/s.
    """
    if int(per_category) < 1:
        raise ConfigError(f"per_category must be >= 1, got {per_category}")
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if int(workers) < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if int(seed) < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    size = _check_size(image_size)
    scale = tuple(float(v) for v in garment_scale)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ConfigError(f"garment_scale must be two shares 0 < lo <= hi <= 1 of the shorter image side, "
                          f"got {tuple(garment_scale)}")
    n_train, n_test = split_counts(int(per_category), test_fraction)
    tasks = {split: [_Task(str(root), int(seed), c, i, split, size, bool(vary_size), scale)
                     for c in range(len(CATEGORIES)) for i in indices]
             for split, indices in (("train", range(n_train)), ("test", range(n_train, n_train + n_test)))}
    start = time.perf_counter()
    results = _run(tasks["train"] + tasks["test"], int(workers), progress)
    train = _annotations(results[:len(tasks["train"])], tasks["train"])
    test = _annotations(results[len(tasks["train"]):], tasks["test"])
    write_annotations(Path(root, TRAIN_CSV), train)
    write_annotations(Path(root, TEST_LIST), Annotations(test.image_ids, test.categories))
    write_annotations(Path(root, TEST_TRUTH), test)
    seconds = time.perf_counter() - start
    return {"root": str(root),
            "train": {c: n_train for c in CATEGORIES}, "test": {c: n_test for c in CATEGORIES},
            "images": len(results), "seconds": seconds,
            "images_per_second": len(results) / seconds if seconds > 0 else float("inf")}


__all__ = ["Garment", "Rendering", "sample_garment", "render_sample", "draw_garment",
           "generate_dataset", "image_name", "split_counts"]
