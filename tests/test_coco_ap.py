"""COCO results and OKS AP: ``evaluate`` on COCO truth equals pycocotools run directly."""
import contextlib
import io
import json

import numpy as np
import pytest

from fashion_gluon.cli import main
from fashion_gluon.errors import DataError
from fashion_gluon.metrics_coco import evaluate_coco
from fashion_gluon.schema import DEFAULT_OKS_SIGMA

NAMES = {"shirt": ["left_cuff", "right_cuff", "collar"], "skirt": ["left_hem", "right_hem", "waist"]}


def truth_doc(rng, with_area=True):
    """3 images, 2-3 objects each (two categories of 3 keypoints)."""
    images, anns = [], []
    for image in range(1, 4):
        images.append({"id": image, "file_name": f"{image}.jpg", "height": 400, "width": 400})
        for obj in range(2 + (image == 2)):
            x0, y0 = rng.uniform(0, 250, 2)
            points = np.column_stack([rng.uniform(x0, x0 + 150, 3), rng.uniform(y0, y0 + 150, 3), [2, 2, 1]])
            ann = {"id": len(anns) + 1, "image_id": image, "category_id": 1 + obj % 2,
                   "keypoints": [round(float(v), 1) for v in points.reshape(-1)], "num_keypoints": 3,
                   "bbox": [float(x0), float(y0), 150.0, 150.0], "iscrowd": 0}
            if with_area:
                ann["area"] = 150.0 * 150.0
            anns.append(ann)
    return {"images": images, "annotations": anns,
            "categories": [{"id": n + 1, "name": name, "keypoints": kps} for n, (name, kps) in enumerate(NAMES.items())]}


def results_of(doc, rng, noise):
    out = []
    for ann in doc["annotations"]:
        points = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        points[:, :2] += rng.normal(0, noise, (3, 2)) if noise else 0
        points[:, 2] = rng.uniform(0.2, 1.0, 3) if noise else 1.0
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                    "keypoints": points.reshape(-1).tolist(), "score": float(points[:, 2].mean())})
    if noise:  # a spurious object on image 1
        out.append({**out[0], "keypoints": (np.asarray(out[0]["keypoints"]) + 40).tolist(), "score": 0.3})
    return out


def write(path, payload):
    path.write_text(json.dumps(payload))
    return path


def pycocotools_ap(truth, pred):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(truth))
        evaluator = COCOeval(gt, gt.loadRes(str(pred)), "keypoints")
        evaluator.params.kpt_oks_sigmas = np.full(3, DEFAULT_OKS_SIGMA)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[:3].tolist()


def test_evaluate_ap_equals_pycocotools_run_directly(tmp_path, capsys):
    rng = np.random.default_rng(0)
    doc = truth_doc(rng)
    truth = write(tmp_path / "test.json", doc)
    pred = write(tmp_path / "results.json", results_of(doc, rng, noise=3.0))
    assert main(["evaluate", "--truth", str(truth), "--pred", str(pred), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [result["ap"], result["ap50"], result["ap75"]] == pycocotools_ap(truth, pred)
    assert 0 < result["ap"] < 1 and result["unmatched"] == 0 and result["count"] == 14  # 7 objects x 2 visible
    assert {"ne", "pck@0.05", "pck@0.1"} <= set(result)


def test_a_perfect_prediction_scores_ap_one_and_ne_zero(tmp_path):
    rng = np.random.default_rng(1)
    doc = truth_doc(rng, with_area=False)  # areas from the boxes
    truth = write(tmp_path / "test.json", doc)
    result = evaluate_coco(truth, write(tmp_path / "results.json", results_of(doc, rng, noise=0)))
    assert (result["ap"], result["ap50"], result["ap75"], result["ne"]) == (1.0, 1.0, 1.0, 0.0)
    assert result["pck@0.05"] == 100.0


def test_bad_results_are_one_line_naming_the_entry(tmp_path):
    rng = np.random.default_rng(2)
    doc = truth_doc(rng)
    truth = write(tmp_path / "test.json", doc)
    bad = results_of(doc, rng, noise=0)
    bad[1]["keypoints"] = bad[1]["keypoints"][:6]
    with pytest.raises(DataError, match=r"\[1\].*needs 'keypoints' of 9 numbers"):
        evaluate_coco(truth, write(tmp_path / "results.json", bad))


def test_predict_format_coco_writes_scored_results_that_evaluate_scores(tmp_path, capsys):
    import yaml
    from _tiny import TINY
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from test_custom_schema import TOY

    from fashion_gluon.schema import load_schema

    schema_file, root, run, out = tmp_path / "toy.yaml", tmp_path / "data", tmp_path / "run", tmp_path / "res.json"
    schema_file.write_text(yaml.safe_dump(TOY, sort_keys=False))
    assert main(["synth", str(root), "--schema", str(schema_file), "--format", "coco", "--per-category", "14",
                 "--quiet"]) == 0
    assert main(["train", "--data-root", str(root), "--category", "all", "--out", str(run), *TINY,
                 f"data.schema={schema_file}"]) == 0
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run), "--split", "test", "--format", "coco", "--out", str(out),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    truth_file = root / "test" / "annotations.json"
    truth = json.loads(truth_file.read_text())
    results = json.loads(out.read_text())
    sizes = {c["id"]: len(c["keypoints"]) for c in truth["categories"]}
    assert len(results) == len(truth["annotations"]) == summary["images"] == 6
    for res, ann in zip(results, truth["annotations"]):
        assert (res["image_id"], res["category_id"]) == (ann["image_id"], ann["category_id"])
        assert len(res["keypoints"]) == 3 * sizes[res["category_id"]]
        assert res["score"] == round(float(np.mean(res["keypoints"][2::3])), 6)
    assert 0 < summary["mean_score"] and set(summary["per_keypoint_score"]) == set(TOY["keypoints"])
    assert main(["evaluate", "--truth", str(truth_file), "--pred", str(out), "--schema", str(schema_file),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ne"] == pytest.approx(summary["ne"], abs=1e-3)  # same points, no rounding to pixels
    schema = load_schema(schema_file)
    for ann in truth["annotations"]:  # the boxes and areas evaluate gives a truth without them
        points = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        labelled = points[points[:, 2] > 0, :2]
        low, size = labelled.min(axis=0), labelled.max(axis=0) - labelled.min(axis=0)
        ann.update(bbox=[*low.tolist(), *size.tolist()], area=float(size[0] * size[1]), iscrowd=0)
    per_category = []
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools, one category (one keypoint count) at a time
        gt = COCO(str(write(tmp_path / "completed.json", truth)))
        for cat in truth["categories"]:
            evaluator = COCOeval(gt, gt.loadRes(str(out)), "keypoints")
            evaluator.params.catIds = [cat["id"]]
            evaluator.params.kpt_oks_sigmas = schema.oks_sigmas([schema.keypoints.index(k) for k in cat["keypoints"]])
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            per_category.append(evaluator.stats[0])
    assert result["ap"] == pytest.approx(float(np.mean(per_category)), rel=1e-12, abs=1e-12)
