"""Your own keypoints: a schema file, COCO and CSV data drawn for it, trained and scored end to end."""
import csv
import json

import numpy as np
import pytest
import yaml
from _tiny import TINY

from fashion_gluon.cli import main
from fashion_gluon.data.annotations import read_annotations
from fashion_gluon.data.coco import read_coco
from fashion_gluon.errors import ConfigError
from fashion_gluon.schema import KeypointSchema, load_schema

TOY = {
    "name": "toy",
    "keypoints": ["top_left", "top_right", "mid_left", "mid_right", "bottom", "tip", "handle_left", "handle_right",
                  "base_left", "base_right", "centre", "peak"],
    "categories": {
        "lamp": {"keypoints": ["top_left", "top_right", "mid_left", "mid_right", "bottom", "tip"],
                 "normalize": ["top_left", "top_right"]},
        "bag": {"keypoints": ["handle_left", "handle_right", "base_left", "base_right", "centre", "peak",
                              "mid_left", "mid_right", "bottom"]},   # no pair: normalized by the box diagonal
    },
    "flip_pairs": [["top_left", "top_right"], ["mid_left", "mid_right"], ["handle_left", "handle_right"],
                   ["base_left", "base_right"]],
    "skeleton": [["top_left", "top_right"], ["handle_left", "base_left"]],
}


@pytest.fixture(scope="module")
def toy_schema(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "toy.yaml"
    path.write_text(yaml.safe_dump(TOY, sort_keys=False))
    return path


def test_schema_file_round_trip_and_queries(toy_schema):
    schema = load_schema(toy_schema)
    assert schema.num_keypoints == 12 and schema.category_names == ("lamp", "bag")
    assert schema.category_size("lamp") == 6 and schema.category_size("bag") == 9
    assert schema.norm_pairs == {"lamp": (0, 1), "bag": None}
    perm = schema.flip_permutation("lamp")  # local order: top_left, top_right, mid_left, mid_right, bottom, tip
    np.testing.assert_array_equal(perm, [1, 0, 3, 2, 4, 5])
    assert KeypointSchema.from_dict(schema.to_dict()) == schema
    assert load_schema() == load_schema("fashionai") and load_schema().num_keypoints == 24


@pytest.mark.parametrize("change, message", [
    (lambda d: d["keypoints"].append("tip"), "duplicate keypoint name 'tip'"),
    (lambda d: d["categories"]["lamp"]["keypoints"].append("nose"), "category 'lamp': unknown keypoint 'nose'"),
    (lambda d: d["flip_pairs"].append(["top_left", "bottom"]), r"flip pair \[top_left, bottom\] is not symmetric"),
    (lambda d: d["flip_pairs"].append(["centre", "tip"]), r"flip pair \[centre, tip\] leaves category 'lamp'"),
    (lambda d: d["categories"]["lamp"].update(normalize=["top_left", "centre"]),
     r"category 'lamp': the normalizing pair \['top_left', 'centre'\] must be two different keypoints of the category"),
    (lambda d: d["categories"].update(all={"keypoints": ["tip"]}), "'all' is reserved"),
])
def test_bad_schema_files_fail_with_one_line(tmp_path, change, message):
    doc = json.loads(json.dumps(TOY))
    change(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError, match=f"{path}: {message}"):
        load_schema(path)


def scores_by_hand(submission, truth) -> dict:
    """NE, PCK and the pair count of the submission CSV's integer points against ``truth`` under TOY:
    lamps normalized by the top_left-top_right distance, bags by their annotated points' box diagonal."""
    with open(submission) as handle:
        rows = {r["image_id"]: r for r in csv.DictReader(handle)}
    ratios = []
    for image_id, category, points in zip(truth.image_ids, truth.categories, truth.keypoints):
        names = TOY["categories"][category]["keypoints"]
        index = [TOY["keypoints"].index(name) for name in names]
        if category == "lamp":
            norm = np.hypot(*(points[0, :2] - points[1, :2]))
        else:
            annotated = points[index][points[index, 2] >= 0, :2]
            norm = np.hypot(*(annotated.max(axis=0) - annotated.min(axis=0)))
        for name, k in zip(names, index):
            if points[k, 2] == 1:
                guess = np.array([float(v) for v in rows[image_id][name].split("_")[:2]])
                ratios.append(np.hypot(*(guess - points[k, :2])) / norm)
    ratios = np.array(ratios)
    return {"ne": 100 * ratios.mean(), "pck@0.05": 100 * np.mean(ratios <= 0.05),
            "pck@0.1": 100 * np.mean(ratios <= 0.1), "count": len(ratios)}


@pytest.mark.parametrize("fmt", ["coco", "csv"])
def test_a_made_up_schema_trains_predicts_and_scores_from_the_cli(toy_schema, tmp_path, capsys, fmt):
    root, run, sub = tmp_path / "data", tmp_path / "run", tmp_path / "sub.csv"
    own = tmp_path / "own.yaml"  # the user's file; deleted after training: the run keeps its copy
    own.write_text(toy_schema.read_text())
    assert main(["synth", str(root), "--schema", str(toy_schema), "--format", fmt, "--per-category", "14",
                 "--quiet"]) == 0
    if fmt == "coco":
        test = read_coco(root / "test" / "annotations.json", toy_schema)
        assert test.schema.name == "toy" and len(test) == 6 and test.keypoints.shape == (6, 12, 3)
    capsys.readouterr()
    assert main(["train", "--data-root", str(root), "--category", "all", "--out", str(run), *TINY,
                 f"data.schema={own}"]) == 0
    own.unlink()
    assert main(["predict", "--checkpoint", str(run), "--split", "test", "--out", str(sub), "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sub.read_text().splitlines()[0] == ",".join(["image_id", "image_category"] + TOY["keypoints"])
    truth = (read_coco(root / "test" / "annotations.json", toy_schema) if fmt == "coco"
             else read_annotations(root / "test" / "annotations.csv", schema=toy_schema))
    expected = scores_by_hand(sub, truth)
    assert predicted["images"] == 6 and predicted["ne"] == pytest.approx(expected["ne"], abs=0.5)  # integer pixels
    assert main(["evaluate", "--checkpoint", str(run), "--split", "test", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["ne"] == pytest.approx(predicted["ne"], rel=1e-9)  # the same predictions
    assert scored["normalization"] == {"lamp": "pair top_left-top_right", "bag": "bbox diagonal"}
    assert scored["count"] == expected["count"]
    if fmt == "csv":
        assert main(["evaluate", "--truth", str(root / "test" / "annotations.csv"), "--pred", str(sub),
                     "--schema", str(toy_schema), "--json"]) == 0
        from_csv = json.loads(capsys.readouterr().out)
        assert {key: from_csv[key] for key in expected} == pytest.approx(expected, rel=1e-6)  # float32 truth
        assert main(["validate-submission", "--test", str(root / "test" / "test.csv"), "--submission", str(sub),
                     "--schema", str(toy_schema)]) == 0


def test_export_json_says_what_a_deployment_needs(toy_schema, tmp_path, capsys):
    from fashion_gluon.config import load_config
    from fashion_gluon.inference.export import deployment_info
    info = deployment_info(load_config(overrides=TINY + [f"data.schema={toy_schema}"]), "lamp")
    assert info["keypoints"] == ["top_left", "top_right", "mid_left", "mid_right", "bottom", "tip"]
    assert info["flip_pairs"] == [[0, 1], [2, 3]] and info["input_size"] == [64, 64]
    assert info["heatmap_stride"] == 4 and len(info["mean"]) == len(info["std"]) == 3 and info["decode"] == "dark"
