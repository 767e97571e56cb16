"""Synthetic data for any keypoint schema: simple drawn objects whose marks *are* the keypoints.

Each category gets a fixed random template (seeded by ``seed`` and the category's name):
a left/right pair of the schema sits mirror-symmetrically (the first name on the image's
left, as FashionAI's left keypoints are), an unpaired keypoint on the axis. Every image
places the template with a random similarity transform and per-point jitter, fills the
convex hull of its points as the object's body, draws the schema's skeleton, and marks each
keypoint with a disc whose colour identifies it (a flip pair shares one colour, so a
mirrored image is a valid image). Images vary in size; backgrounds are noisy.

Written as COCO keypoint files (``ROOT/{train,test}/annotations.json``) or in the FashionAI
CSV layout with the schema's names as columns (``train/Annotations/train.csv``,
``test/test.csv`` and ``test/annotations.csv``); images under ``ROOT/<split>/Images/<category>/``.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import ConfigError
from ..fileio import atomic_path
from ..schema import KeypointSchema, load_schema
from .annotations import Annotations, write_annotations
from .coco import write_coco
from .layout import KEYPOINT_FORMATS, ROOT_FILES, TEST_LIST, TEST_TRUTH, TRAIN_CSV

SIZE_RANGE = (112, 192)  # image sides, pixels


def _templates(schema: KeypointSchema, seed: int) -> dict[str, np.ndarray]:
    """Per category: canonical (K, 2) points in [-1, 1]² (NaN for keypoints outside it)."""
    templates = {}
    for category, members in schema.categories.items():
        rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
        points = np.full((schema.num_keypoints, 2), np.nan)
        for a, b in schema.flip_pairs:  # the first of a pair on the image's left
            if a in members:
                x, y = rng.uniform(0.25, 0.9), rng.uniform(-0.9, 0.9)
                points[a], points[b] = (-x, y), (x, y)
        for k in members:
            if np.isnan(points[k, 0]):
                points[k] = (rng.uniform(-0.1, 0.1), rng.uniform(-0.9, 0.9))
        templates[category] = points
    return templates


def _colours(schema: KeypointSchema) -> np.ndarray:
    """(K, 3) RGB mark colours; the two keypoints of a flip pair share one."""
    group = list(range(schema.num_keypoints))
    for a, b in schema.flip_pairs:
        group[b] = group[a]
    hues = {g: int(170 * i / max(len(set(group)), 1)) for i, g in enumerate(sorted(set(group)))}
    hsv = np.array([[[hues[g], 230, 255] for g in group]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(int)


def render(schema: KeypointSchema, category: str, template: np.ndarray, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image (H, W, 3), keypoints (K, 3) as (x, y, v) in its pixels) of one drawn object."""
    height, width = (int(rng.integers(*SIZE_RANGE)) for _ in range(2))
    image = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 3)
    members = list(schema.categories[category])
    scale = rng.uniform(0.3, 0.42) * min(height, width)
    angle = np.deg2rad(rng.uniform(-12, 12))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([width, height]) / 2 + rng.uniform(-0.08, 0.08, 2) * [width, height]
    local = template[members] + rng.normal(0, 0.04, (len(members), 2))
    points = local @ rotation.T * scale + centre
    points = np.clip(points, 0, [width - 1, height - 1])
    body = rng.integers(90, 200, 3).tolist()
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(image, hull, body, cv2.LINE_AA)
    index = {k: i for i, k in enumerate(members)}
    for a, b in schema.skeleton:
        if a in index and b in index:
            cv2.line(image, tuple(np.round(points[index[a]]).astype(int)), tuple(np.round(points[index[b]]).astype(int)),
                     (235, 235, 235), 1, cv2.LINE_AA)
    radius = max(2, int(round(min(height, width) / 40)))
    colours = _colours(schema)
    keypoints = np.full((schema.num_keypoints, 3), -1.0)
    for k, (x, y) in zip(members, points):
        cv2.circle(image, (int(round(x)), int(round(y))), radius, colours[k].tolist(), -1, cv2.LINE_AA)
        keypoints[k] = (round(x), round(y), 1)
    return image, keypoints


def generate_schema_dataset(root: "str | os.PathLike", schema: "KeypointSchema | str", per_category: int = 40,
                            seed: int = 0, fmt: str = "coco", test_fraction: float = 0.2,
                            progress: bool = False) -> dict:
    """Draw ``per_category`` images of every category of ``schema`` into ``root`` (``fmt``:
    coco or csv); deterministic per ``seed``. Returns a summary of what was written."""
    schema = load_schema(schema)
    if fmt not in KEYPOINT_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(KEYPOINT_FORMATS)}")
    if per_category < 2:
        raise ConfigError(f"per_category must be at least 2 (one training and one test image), got {per_category}")
    root, templates = Path(root), _templates(schema, seed)
    n_test = max(1, int(round(per_category * test_fraction)))
    splits: dict[str, tuple[list, list, list, list]] = {"train": ([], [], [], []), "test": ([], [], [], [])}
    jobs = [(c, i) for c in schema.category_names for i in range(per_category)]
    for category, i in tqdm(jobs, desc="drawing", disable=not progress):
        rng = np.random.default_rng([seed, zlib.crc32(category.encode()), i])
        image, keypoints = render(schema, category, templates[category], rng)
        split = "test" if i >= per_category - n_test else "train"
        image_id = f"Images/{category}/{seed:04d}_{i:05d}.jpg"
        path = root / split / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        ids, categories, points, sizes = splits[split]
        ids.append(image_id)
        categories.append(category)
        points.append(keypoints)
        sizes.append(image.shape[:2])
    for split, (ids, categories, points, sizes) in splits.items():
        rows = Annotations(ids, categories, np.stack(points).astype(np.float32), schema)
        if fmt == "coco":
            write_coco(root / ROOT_FILES[split][1], rows, np.array(sizes))
        elif split == "train":
            write_annotations(root / TRAIN_CSV, rows)
        else:
            write_annotations(root / TEST_TRUTH, rows)
            write_annotations(root / TEST_LIST, Annotations(ids, categories, None, schema))
    return {"root": str(root), "schema": schema.name, "format": fmt,
            "train": len(splits["train"][0]), "test": len(splits["test"][0])}


__all__ = ["generate_schema_dataset", "render"]
