"""COCO keypoint results: the file ``predict --format coco`` writes and its OKS AP against COCO truth.

A result is ``{image_id, category_id, keypoints: [x, y, score] * K, score}`` with the K keypoints
of its category in the order the truth file (or the schema) lists them; ``score``, the object's,
is the mean of its keypoints' scores (every predicted keypoint is visible, as in a submission).

:func:`evaluate_coco` reports OKS AP, AP50 and AP75 (``ap``, ``ap50``, ``ap75``) exactly as
``pycocotools``' ``COCOeval(iouType="keypoints")`` computes them, each category with its
keypoints' sigmas from the schema (:meth:`~fashion_gluon.schema.KeypointSchema.oks_sigmas`,
:data:`~fashion_gluon.schema.DEFAULT_OKS_SIGMA` where it gives none). Truth annotations without
``bbox`` get their labelled points' box, without ``area`` their box's area (``num_keypoints``,
``iscrowd`` and ``id`` are filled likewise). Beside AP, NE and PCK (:func:`~fashion_gluon.metrics.normalized_error`)
of each truth annotation against the prediction of its image and category with the highest OKS;
truth annotations without one are left out and counted in ``unmatched``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .data.annotations import Annotations
from .data.coco import VISIBILITY, coco_schema, load_coco, load_json
from .errors import DataError
from .fileio import atomic_write
from .metrics import normalized_error
from .schema import KeypointSchema


def coco_ids(schema: KeypointSchema, doc: "dict | None" = None
             ) -> tuple[dict[str, int], dict[str, tuple[int, list[int]]]]:
    """({file_name: image id} of ``doc`` (empty without one), {category name: (category id, global
    keypoint indices in the file's order)}): of the COCO document ``doc``, else the schema's
    categories numbered from 1 in order (as :func:`~fashion_gluon.data.coco.write_coco`)."""
    if doc is None:
        return {}, {name: (n + 1, list(members)) for n, (name, members) in enumerate(schema.categories.items())}
    index = {name: k for k, name in enumerate(schema.keypoints)}
    return ({str(img["file_name"]): img["id"] for img in doc["images"]},
            {cat["name"]: (cat["id"], [index[k] for k in cat["keypoints"]]) for cat in doc["categories"]})


def coco_results(rows: Annotations, keypoints: np.ndarray, doc: "dict | None" = None) -> list[dict]:
    """The COCO results of ``rows`` with ``keypoints`` (N, K, 3) = (x, y, score): ids from the COCO
    document ``doc`` the rows came from, else each distinct image numbered from 1 in the rows' order (see :func:`coco_ids`)."""
    images, categories = coco_ids(rows.schema, doc)
    out, numbered = [], {}  # without a document: images numbered 1.. in first-seen order, as write_coco does
    for n, (image_id, category) in enumerate(zip(rows.image_ids, rows.categories)):
        category_id, members = categories[category]
        points = np.asarray(keypoints[n, members], dtype=np.float64)
        points = np.column_stack([np.round(points[:, :2], 3), np.round(points[:, 2], 6)])  # 1/1000 px
        number = images[image_id] if doc is not None else numbered.setdefault(image_id, len(numbered) + 1)
        out.append({"image_id": number, "category_id": category_id,
                    "keypoints": points.reshape(-1).tolist(), "score": round(float(points[:, 2].mean()), 6)})
    return out


def write_results(path: "str | os.PathLike", results: list[dict]) -> None:
    """Write COCO results, atomically."""
    with atomic_write(path) as handle:
        json.dump(results, handle)


def _complete_truth(doc: dict) -> dict:
    """``doc`` with every annotation's ``id``, ``num_keypoints``, ``iscrowd``, ``bbox`` (else the labelled
    points' box) and ``area`` (else the box's)."""
    annotations = []
    for n, ann in enumerate(doc["annotations"]):
        ann = dict(ann)
        values = np.asarray(ann.get("keypoints", []), dtype=np.float64).reshape(-1, 3)
        labelled = values[values[:, 2] > 0, :2]
        ann.setdefault("id", n + 1)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("num_keypoints", len(labelled))
        if not ann.get("bbox"):
            low = labelled.min(axis=0) if len(labelled) else np.zeros(2)
            ann["bbox"] = [*low.tolist(), *((labelled.max(axis=0) - low).tolist() if len(labelled) else [0.0, 0.0])]
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        annotations.append(ann)
    return {**doc, "annotations": annotations}


def _read_results(path: Path, images: set, categories: dict[int, int]) -> list[dict]:
    """The COCO results of ``path``, each checked against the truth's ``images`` and ``categories`` (id: K)."""
    results = load_json(path, "COCO results")
    if not isinstance(results, list) or not results:
        raise DataError("COCO results must be a non-empty list of {image_id, category_id, keypoints, score}", path)
    for n, res in enumerate(results):
        where = f"[{n}]"
        if not isinstance(res, dict) or res.get("image_id") not in images:
            raise DataError("image_id names no image of the truth", path, None, where)
        k = categories.get(res.get("category_id"))
        if k is None:
            raise DataError(f"category_id {res.get('category_id')!r} names no category of the truth", path, None, where)
        triplets = res.get("keypoints")
        if not isinstance(triplets, list) or len(triplets) != 3 * k or not all(
                isinstance(v, (int, float)) for v in triplets) or not isinstance(res.get("score"), (int, float)):
            raise DataError(f"needs 'keypoints' of {3 * k} numbers (x, y, score per keypoint) and a 'score'",
                            path, None, where)
    return results


def _evaluator(gt, dt, sigmas: dict):
    """pycocotools' COCOeval for keypoints with each category's own ``sigmas`` (category id: (K,)),
    so categories with different keypoint counts are scored in one run."""
    from pycocotools.cocoeval import COCOeval

    class CategorySigmas(COCOeval):
        def computeOks(self, imgId, catId):  # pycocotools' method and argument names
            self.params.kpt_oks_sigmas = sigmas[catId]
            return super().computeOks(imgId, catId)

    return CategorySigmas(gt, dt, "keypoints")


def _best_matches(evaluator, truth: list[dict]) -> list["dict | None"]:
    """For each truth annotation, the prediction of its image and category with the highest OKS (None: none)."""
    best = []
    for ann in truth:
        key = (ann["image_id"], ann["category_id"])
        dts, gts = evaluator._dts[key], evaluator._gts[key]
        if not dts:
            best.append(None)
            continue
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")[:evaluator.params.maxDets[-1]]
        column = [g["id"] for g in gts].index(ann["id"])
        best.append(dts[order[int(np.argmax(np.asarray(evaluator.ious[key])[:, column]))]])
    return best


def evaluate_coco(truth_path: "str | os.PathLike", pred_path: "str | os.PathLike",
                  schema: "KeypointSchema | str | None" = None) -> dict:
    """OKS ``ap``, ``ap50``, ``ap75`` of the COCO results ``pred_path`` against the COCO keypoint
    file ``truth_path``, with NE / PCK of the best-OKS matches and ``unmatched`` (module docstring)."""
    from pycocotools.coco import COCO

    truth_path, pred_path = Path(truth_path), Path(pred_path)
    doc = _complete_truth(load_coco(truth_path))
    schema = coco_schema(doc, truth_path, schema)
    _, categories = coco_ids(schema, doc)
    by_id = {cid: (name, members) for name, (cid, members) in categories.items()}
    results = _read_results(pred_path, {img["id"] for img in doc["images"]},
                            {cid: len(members) for cid, (_, members) in by_id.items()})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = doc
        gt.createIndex()
        evaluator = _evaluator(gt, gt.loadRes(results),
                               {cid: schema.oks_sigmas(members) for cid, (_, members) in by_id.items()})
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    truth_rows, pred_rows, names = [], [], []
    for ann, match in zip(doc["annotations"], _best_matches(evaluator, doc["annotations"])):
        if match is None:
            continue
        name, members = by_id[ann["category_id"]]
        values = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        row, pred = np.full((schema.num_keypoints, 3), -1.0), np.zeros((schema.num_keypoints, 2))
        v = np.array([VISIBILITY[int(t)] for t in values[:, 2]])
        row[members] = np.where(v[:, None] < 0, -1.0, np.column_stack([values[:, :2], v]))
        pred[members] = np.asarray(match["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        truth_rows.append(row)
        pred_rows.append(pred)
        names.append(name)
    k = schema.num_keypoints
    result = normalized_error(np.array(pred_rows).reshape(-1, k, 2), np.array(truth_rows).reshape(-1, k, 3),
                              names, schema)
    ap, ap50, ap75 = (float(v) for v in evaluator.stats[:3])
    return {"ap": ap, "ap50": ap50, "ap75": ap75, **result, "unmatched": len(doc["annotations"]) - len(names)}


def format_ap(result: dict) -> str:
    """One line of an :func:`evaluate_coco` result's AP figures."""
    return (f"OKS AP {result['ap']:.4f}   AP50 {result['ap50']:.4f}   AP75 {result['ap75']:.4f}   "
            f"({result['unmatched']} truth objects unmatched)")


__all__ = ["coco_ids", "coco_results", "write_results", "evaluate_coco", "format_ap"]
