"""COCO keypoint files (``images``, ``annotations`` with ``keypoints`` triplets and
``category_id``, ``categories`` with ``keypoints`` names and ``skeleton``) as :class:`Annotations`.

Each annotation is one object (a row): a photo may hold several (a top and a skirt), each with
its category, its ``bbox`` (the box the object is cropped by, see
:class:`~.dataset.KeypointDataset`) and its keypoints; ``file_name`` becomes the ``image_id``
(relative to the image folder). Annotations without ``keypoints`` (boxes to predict in) and a
file of images without annotations (whole images, one category) are test lists. COCO's visibility 0 / 1 / 2 (not labelled /
labelled, not visible / visible) becomes v = −1 / 0 / 1. Each COCO category's keypoints are
mapped into the schema by name, so the file may list them in any order; without a schema
file the schema is made from the file's categories (flip pairs from left/right names, printed
in one line, flips off where none pair; no normalizing pairs: errors are then normalized by the
box diagonal). Every problem is a DataError naming the file, the
entry (``annotations[7]``) and the field.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..fileio import atomic_write
from ..schema import KeypointSchema, flip_note, left_right_pairs, load_schema
from .annotations import Annotations

VISIBILITY = {0: -1, 1: 0, 2: 1}  # COCO v -> ours


def load_json(path: Path, kind: str = "COCO") -> Any:
    """The JSON document of a user's ``kind`` file; a DataError naming it when it is missing or not JSON."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DataError("no such file", path) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"not a {kind} JSON file: {str(error)[:80]}", path) from None


def load_coco(path: Path) -> dict:
    """The document of a COCO keypoint file; a DataError naming it when it is missing or not one."""
    doc = load_json(path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
            raise DataError(f"not a COCO keypoint file: needs lists 'images', 'annotations', 'categories' "
                            f"(missing {key!r})", path)
    return doc


def schema_from_coco(doc: dict, path: Path) -> KeypointSchema:
    """A schema made of the file's categories: keypoint names in first-seen order, flip pairs of
    left/right names (:func:`~fashion_gluon.schema.left_right_pairs`; none: not flippable), said
    in one line on stderr, no normalizing pairs, skeletons (1-based COCO indices) translated."""
    names: list[str] = []
    categories: dict[str, Any] = {}
    skeleton: list[list[str]] = []
    for n, cat in enumerate(doc["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("keypoints"), list) or "name" not in cat:
            raise DataError("a category needs 'name' and a 'keypoints' list", path, None, f"categories[{n}]")
        names += [k for k in cat["keypoints"] if k not in names]
        categories[cat["name"]] = {"keypoints": list(cat["keypoints"])}
        for a, b in cat.get("skeleton", []):
            skeleton.append([cat["keypoints"][a - 1], cat["keypoints"][b - 1]])
    flips = left_right_pairs(names, [c["keypoints"] for c in categories.values()])
    print(flip_note(str(path), flips), file=sys.stderr)
    return KeypointSchema.from_dict({"name": path.stem, "keypoints": names, "categories": categories,
                                     "skeleton": skeleton, "flip_pairs": [list(p) for p in flips],
                                     "flippable": bool(flips)}, str(path))


def coco_schema(doc: dict, path: Path, schema: "KeypointSchema | str | None" = None) -> KeypointSchema:
    """``schema`` loaded; None: FashionAI's if the file's keypoint names are all FashionAI's, else one made from the file."""
    if schema is None:
        default = load_schema()
        known = all(set(c.get("keypoints", [])) <= set(default.keypoints) and c.get("name") in default.categories
                    for c in doc["categories"] if isinstance(c, dict))
        schema = default if known else schema_from_coco(doc, path)
    return load_schema(schema)


def read_coco(path: "str | os.PathLike", schema: "KeypointSchema | str | None" = None) -> Annotations:
    """The annotated images of a COCO keypoint file as :class:`Annotations` under ``schema``
    (None: FashionAI's if the file's keypoint names are all FashionAI's, else one made from the file)."""
    path = Path(path)
    doc = load_coco(path)
    schema = coco_schema(doc, path, schema)
    index = {name: k for k, name in enumerate(schema.keypoints)}
    columns: dict[Any, tuple[str, list[int]]] = {}
    for n, cat in enumerate(doc["categories"]):
        where = f"categories[{n}]"
        if not isinstance(cat, dict) or cat.get("name") not in schema.categories:
            raise DataError(f"category {cat.get('name') if isinstance(cat, dict) else cat!r} is not in schema "
                            f"{schema.name!r} ({', '.join(schema.category_names)})", path, None, where)
        unknown = [k for k in cat.get("keypoints", []) if k not in index]
        if unknown:
            raise DataError(f"keypoint {unknown[0]!r} is not in schema {schema.name!r}", path, None, where)
        columns[cat.get("id")] = (cat["name"], [index[k] for k in cat["keypoints"]])
    files = {img.get("id"): img.get("file_name") for img in doc["images"] if isinstance(img, dict)}
    ids, categories, points, boxes, entries = [], [], [], [], []
    labelled = False
    for n, ann in enumerate(doc["annotations"]):
        where = f"annotations[{n}]"
        if not isinstance(ann, dict) or ann.get("image_id") not in files:
            raise DataError("image_id names no entry of 'images'", path, None, where)
        if ann.get("category_id") not in columns:
            raise DataError(f"category_id {ann.get('category_id')!r} names no entry of 'categories'", path, None, where)
        category, targets = columns[ann["category_id"]]
        keypoints = np.full((schema.num_keypoints, 3), -1.0)
        if ann.get("keypoints") is not None:
            keypoints[targets] = _keypoints(ann["keypoints"], targets, category, path, where)
            labelled = True
        ids.append(str(files[ann["image_id"]]))
        categories.append(category)
        points.append(keypoints)
        boxes.append(_box(ann.get("bbox"), path, where))
        entries.append(n)
    if not doc["annotations"]:
        ids, categories, entries = _unannotated_images(doc, schema, path)
        boxes = [np.full(4, np.nan)] * len(ids)
    kps = np.stack(points).astype(np.float32) if labelled else None
    return Annotations(ids, categories, kps, schema, np.asarray(entries, dtype=np.int64),
                       np.asarray(boxes, dtype=np.float64).reshape(-1, 4))


def _keypoints(triplets: Any, targets: list[int], category: str, path: Path, where: str) -> np.ndarray:
    """(len(targets), 3) rows (x, y, v) of an annotation's COCO ``keypoints`` triplets."""
    if (not isinstance(triplets, list) or len(triplets) != 3 * len(targets)
            or not all(isinstance(v, (int, float)) for v in triplets)):
        raise DataError(f"'keypoints' must be {3 * len(targets)} numbers (x, y, v for each of "
                        f"{category!r}'s keypoints)", path, None, f"{where}.keypoints")
    values = np.asarray(triplets, dtype=np.float64).reshape(-1, 3)
    if not set(values[:, 2].tolist()) <= set(VISIBILITY):
        raise DataError("visibility must be 0, 1 or 2", path, None, f"{where}.keypoints")
    v = np.vectorize(VISIBILITY.get)(values[:, 2])
    return np.where(v[:, None] < 0, -1.0, np.column_stack([values[:, :2], v]))


def _box(bbox: Any, path: Path, where: str) -> np.ndarray:
    """COCO ``bbox`` [x, y, w, h] as (x0, y0, x1, y1); NaN when the annotation has none."""
    if bbox is None or bbox == []:
        return np.full(4, np.nan)
    if (not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox)
            or bbox[2] <= 0 or bbox[3] <= 0):
        raise DataError("'bbox' must be [x, y, width, height] with positive width and height", path, None,
                        f"{where}.bbox")
    x, y, w, h = (float(v) for v in bbox)
    return np.array([x, y, x + w, y + h])


def _unannotated_images(doc: dict, schema: KeypointSchema, path: Path) -> tuple[list[str], list[str], list[int]]:
    """A file of images alone (a test list): one whole-image row per image, of the schema's only category."""
    if len(schema.categories) != 1:
        raise DataError(f"the file lists no annotations; to predict, give each object an annotation with its "
                        f"category_id (and bbox), since schema {schema.name!r} has {len(schema.categories)} "
                        f"categories", path)
    names = [str(img.get("file_name")) for img in doc["images"] if isinstance(img, dict)]
    return names, [schema.category_names[0]] * len(names), list(range(len(names)))


def write_coco(path: "str | os.PathLike", annotations: Annotations, image_sizes: "np.ndarray | None" = None) -> None:
    """Write ``annotations`` (with keypoints) as a COCO keypoint file, atomically: one image entry
    per distinct image_id, one annotation per row (with its ``bbox`` when the row has a box);
    ``image_sizes`` (N, 2) as (H, W) per row fill each image's height and width."""
    schema = annotations.schema
    categories = [{"id": n + 1, "name": name, "keypoints": [schema.keypoints[k] for k in members],
                   "skeleton": [[members.index(a) + 1, members.index(b) + 1] for a, b in schema.skeleton
                                if a in members and b in members]}
                  for n, (name, members) in enumerate(schema.categories.items())]
    category_id = {c["name"]: c["id"] for c in categories}
    images: dict[str, dict] = {}
    anns = []
    for n, (image_id, category) in enumerate(zip(annotations.image_ids, annotations.categories)):
        entry = images.setdefault(image_id, {"id": len(images) + 1, "file_name": image_id})
        if image_sizes is not None:
            entry.update(height=int(image_sizes[n][0]), width=int(image_sizes[n][1]))
        triplets = []
        for k in schema.categories[category]:
            x, y, v = (float(t) for t in annotations.keypoints[n, k])
            triplets += [0, 0, 0] if v < 0 else [round(x, 2), round(y, 2), int(v) + 1]
        ann = {"id": n + 1, "image_id": entry["id"], "category_id": category_id[category], "keypoints": triplets,
               "num_keypoints": sum(1 for t in triplets[2::3] if t > 0), "iscrowd": 0}
        if annotations.boxes is not None and np.isfinite(annotations.boxes[n]).all():
            x0, y0, x1, y1 = (float(v) for v in annotations.boxes[n])
            ann.update(bbox=[round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                       area=round((x1 - x0) * (y1 - y0), 2))
        anns.append(ann)
    with atomic_write(path) as handle:
        json.dump({"images": list(images.values()), "annotations": anns, "categories": categories}, handle)


__all__ = ["read_coco", "write_coco", "schema_from_coco", "coco_schema", "load_coco", "VISIBILITY"]
