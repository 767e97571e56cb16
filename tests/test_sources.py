"""Data where it lies: FILE[:IMAGE_DIR] sources, the FashionAI archives' layout (four annotated
sources and a final test list) trained on as one union, duplicates counted once, COCO files with
several objects per photo cropped by their boxes, and the CLI's --train / --test."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from _tiny import TINY

from fashion_gluon.cli import main
from fashion_gluon.codec import HeatmapCodec
from fashion_gluon.data.annotations import Annotations, read_annotations, write_annotations
from fashion_gluon.data.coco import write_coco
from fashion_gluon.data.dataset import SplitDataset
from fashion_gluon.data.images import read_image
from fashion_gluon.data.layout import TEST_TRUTH, TRAIN_CSV, Source, parse_source
from fashion_gluon.data.sources import describe_sources, load_split, read_source, split_rows
from fashion_gluon.data.synthetic import generate_dataset
from fashion_gluon.data.transforms import Sample, crop_to_box, test_transform, transform_points
from fashion_gluon.errors import DataError
from fashion_gluon.runs import read_log, run_config

ANSWERS = "fashionAI_key_points_test_a_answer_20180426.csv"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, per_category=8, seed=3, image_size=(96, 112), progress=False)
    return root


def _place(rows: Annotations, source_root: Path, folder: Path, csv: Path, test_list: bool = False) -> None:
    """Copy ``rows``' images from ``source_root`` under ``folder`` and write ``csv`` listing them."""
    for image_id in rows.image_ids:
        target = folder / image_id
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source_root / image_id, target)
    write_annotations(csv, Annotations(rows.image_ids, rows.categories, None if test_list else rows.keypoints))


@pytest.fixture(scope="module")
def archives(synth, tmp_path_factory) -> Path:
    """The synthetic set laid out like the unpacked competition archives: round 1's train, the
    warm-up set (which also lists one image of train), test A's answers beside its images, and
    test B's list (its answers held back in answers.csv)."""
    root = tmp_path_factory.mktemp("archives")
    train, test = read_annotations(synth / TRAIN_CSV), read_annotations(synth / TEST_TRUTH)
    half, test_half = len(train) // 2, len(test) // 2
    _place(train.subset(range(half)), synth / "train", root / "train", root / "train/Annotations/train.csv")
    _place(train.subset([0] + list(range(half, len(train)))), synth / "train", root / "train_warm",
           root / "train_warm/Annotations/annotations.csv")
    _place(test.subset(range(test_half)), synth / "test", root / "r1_test_a", root / "r1_test_a" / ANSWERS)
    rest = test.subset(range(test_half, len(test)))
    _place(rest, synth / "test", root / "r2_test_b", root / "r2_test_b/test.csv", test_list=True)
    write_annotations(root / "r2_test_b/answers.csv", rest)
    return root


def _specs(root: Path) -> list[str]:
    return [str(root / "train/Annotations/train.csv"), str(root / "train_warm/Annotations/annotations.csv"),
            str(root / "r1_test_a" / ANSWERS)]


def test_a_source_is_a_file_and_its_image_folder(archives, tmp_path):
    csv = archives / "train/Annotations/train.csv"
    assert parse_source(str(csv)) == Source(csv.resolve(), (archives / "train").resolve()), "Annotations/: its parent"
    answers = archives / "r1_test_a" / ANSWERS
    assert parse_source(str(answers)).images == (archives / "r1_test_a").resolve(), "elsewhere: the file's folder"
    assert parse_source(f"{answers}:{archives / 'train'}").images == (archives / "train").resolve()
    with pytest.raises(DataError, match=r"nothere\.csv: no such annotation file"):
        parse_source(str(tmp_path / "nothere.csv"))
    with pytest.raises(DataError, match=r"no such image folder .*photos \(name it with"):
        parse_source(f"{answers}:{tmp_path / 'photos'}")
    with pytest.raises(DataError, match=r"is not FILE or FILE:IMAGE_DIR"):
        parse_source(str(archives / "r1_test_a"))


def test_the_archives_train_as_one_union_counted_once(archives, synth):
    with pytest.warns(UserWarning) as caught:
        train = load_split(_specs(archives), "train", val_fraction=0.2)
    repeats = [str(w.message) for w in caught if "also in" in str(w.message)]
    assert len(repeats) == 1 and "1 image(s) of" in repeats[0]
    assert "train_warm/Annotations/annotations.csv are also in" in repeats[0] and "train/Annotations/train.csv" in repeats[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        val = load_split(_specs(archives), "val", val_fraction=0.2)
        union = load_split(_specs(archives), "train", val_fraction=0.0)
    annotated = len(read_annotations(synth / TRAIN_CSV)) + len(read_annotations(archives / "r1_test_a" / ANSWERS))
    assert len(union) == annotated, "every annotated image once"
    assert len(train) + len(val) == annotated and not set(train.image_ids) & set(val.image_ids)
    assert set(val.categories) == set(union.categories), "the val split is drawn per category from the union"
    for row in range(len(union)):  # each row knows its own image folder
        assert union.image_path(row).is_file()
    lines = describe_sources(union)
    assert [line.split(":")[0] for line in lines] == [f"source {parse_source(s).file}" for s in _specs(archives)]
    assert [int(line.split(": ")[1].split()[0]) for line in lines] == [
        len(read_annotations(archives / "train/Annotations/train.csv")),
        len(read_annotations(archives / "train_warm/Annotations/annotations.csv")) - 1,
        len(read_annotations(archives / "r1_test_a" / ANSWERS))]


def test_a_bad_row_and_a_missing_image_name_their_own_file(archives, tmp_path):
    bad = tmp_path / "bad.csv"
    lines = (archives / "r1_test_a" / ANSWERS).read_text().splitlines()
    bad.write_text("\n".join(lines[:2] + [lines[2].replace("_1,", "_7,", 1)] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=rf"{bad}, row 3, column"):
        load_split([_specs(archives)[0], f"{bad}:{archives / 'r1_test_a'}"], "train")
    photos = Path(shutil.copytree(archives / "r1_test_a", tmp_path / "copy"))
    first = read_annotations(photos / ANSWERS).image_ids[0]
    (photos / first).unlink()
    with pytest.raises(DataError, match=rf"no such image file \(listed in {photos / ANSWERS}\)"):
        SplitDataset([str(photos / ANSWERS)], "all", "train", val_fraction=0.0)


def test_split_keeps_the_objects_of_one_photo_together():
    categories = ["top", "skirt"] * 6 + ["top"] * 4
    groups = [f"p{i // 2}" for i in range(12)] + ["q0", "q1", "q2", "q3"]
    for seed in range(5):
        train, val = split_rows(categories, 0.3, seed, groups)
        assert not {groups[r] for r in train} & {groups[r] for r in val}
        assert len(train) + len(val) == len(categories) and len(val) > 0


def test_crop_to_box_by_hand():
    sample = Sample.from_image(np.zeros((100, 80, 3), np.uint8), np.array([[19.5, 39.5, 1], [10, 20, 1]]))
    cropped = crop_to_box(sample, (10, 20, 29, 59), margin=1.25, aspect=1.0)  # 20 × 40 px, enlarged to 50 × 50
    assert cropped.size == (50, 50)
    np.testing.assert_allclose(cropped.keypoints, [[24.5, 24.5], [15.0, 5.0]])
    tall = crop_to_box(sample, (10, 20, 29, 59), margin=1.0, aspect=0.25)
    assert tall.size == (80, 20), "widened (here: made taller) to the aspect, never narrowed"


def _coco_photos(synth: Path, root: Path, split: str, pairs: int) -> Path:
    """A COCO file in ROOT/labels with its photos in ROOT/photos/SPLIT: each photo holds two (the
    last three) garments of the synthetic set side by side, one annotation with a box each."""
    rows = read_annotations(synth / (TRAIN_CSV if split == "train" else TEST_TRUTH))
    ids, cats, points, boxes, sizes = [], [], [], [], []
    for p in range(pairs):
        members = [2 * p, 2 * p + 1] + ([2 * pairs] if p == pairs - 1 else [])
        images = [read_image(synth / ("train" if split == "train" else "test") / rows.image_ids[m]) for m in members]
        photo = np.concatenate(images, axis=1)
        name = f"photo{p}.jpg"
        (root / "photos" / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "photos" / split / name), photo[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        offset = 0
        for m, image in zip(members, images):
            kps = rows.keypoints[m].copy()
            kps[kps[:, 2] >= 0, 0] += offset
            ids.append(name)
            cats.append(rows.categories[m])
            points.append(kps)
            boxes.append([offset, 0, offset + image.shape[1] - 1, image.shape[0] - 1])
            sizes.append(photo.shape[:2])
            offset += image.shape[1]
    annotations = Annotations(ids, cats, np.array(points, np.float32), rows.schema, boxes=np.array(boxes, float))
    (root / "labels").mkdir(exist_ok=True)
    write_coco(root / "labels" / f"{split}.json", annotations, np.array(sizes))
    return root / "labels" / f"{split}.json"


def test_coco_elsewhere_with_several_objects_per_photo(synth, tmp_path):
    labels = _coco_photos(synth, tmp_path, "train", 4)
    doc = json.loads(labels.read_text())
    assert len(doc["images"]) == 4 and len(doc["annotations"]) == 9
    rows = read_source(f"{labels}:{tmp_path / 'photos' / 'train'}")
    assert len(rows) == 9 and rows.image_ids[:2] == ["photo0.jpg", "photo0.jpg"]
    np.testing.assert_allclose(rows.boxes[1], [112, 0, 223, 95])
    dataset = SplitDataset([f"{labels}:{tmp_path / 'photos' / 'train'}"], "all", "train", test_transform((64, 64)),
                           val_fraction=0.0, box_aspect=1.0)
    image, matrix, row = dataset[1]
    inside = rows.keypoints[1][:, 2] >= 0
    framed = transform_points(rows.keypoints[1][inside, :2], matrix)
    assert framed.min() >= -0.5 and framed.max() <= 63.5, "the second garment's points fill the crop"
    crop = crop_to_box(Sample.from_image(read_image(tmp_path / "photos/train/photo0.jpg")), rows.boxes[1],
                       aspect=1.0)
    assert crop.size == (140, 140)
    training = SplitDataset([f"{labels}:{tmp_path / 'photos' / 'train'}"], "all", "train", test_transform((64, 64)),
                            HeatmapCodec((64, 64), 4, 2.0), val_fraction=0.0)
    assert training[1][2].sum() == inside.sum(), "every labelled point of the object is trained on"


def test_train_on_the_archives_and_predict_test_b(archives, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--category", "all", "--out", str(run)]
    for spec in _specs(archives):
        args += ["--train", spec]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args + TINY + ["train.epochs=1"]) == 0
    err = capsys.readouterr().err
    for spec in _specs(archives):
        assert f"source {parse_source(spec).file}: " in err
    assert run_config(run)["data"]["train_files"] == [str(parse_source(s)) for s in _specs(archives)]
    logged = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert [s["file"] for s in logged["sources"]] == [str(parse_source(s).file) for s in _specs(archives)]
    assert read_log(run)[0]["epoch"] == 1, "the sources line is not an epoch record"

    assert main(["evaluate", "--checkpoint", str(run), "--split", "val", "--json"]) == 0, "sources from config.yaml"
    assert "ne" in json.loads(capsys.readouterr().out)
    sub = tmp_path / "sub.csv"
    assert main(["predict", "--checkpoint", str(run), "--test", str(archives / "r2_test_b/test.csv"),
                 "--out", str(sub), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    listed = (archives / "r2_test_b/test.csv").read_text().splitlines()
    assert report["images"] == len(listed) - 1
    assert [line.split(",")[0] for line in sub.read_text().splitlines()[1:]] == [
        line.split(",")[0] for line in listed[1:]], "rows in the list's order"
    assert main(["validate-submission", "--test", str(archives / "r2_test_b/test.csv"), "--submission", str(sub),
                 "--image-root", str(archives / "r2_test_b")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--truth", str(archives / "r2_test_b/answers.csv"), "--pred", str(sub), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] > 0


def test_train_needs_data(capsys, tmp_path):
    assert main(["train", "--category", "all", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "fashion-gluon train: error: train needs --data-root ROOT or --train FILE[:IMAGE_DIR] (repeat for more "
        "sources)")


def test_coco_with_several_objects_trains_predicts_and_scores(synth, tmp_path, capsys):
    train = _coco_photos(synth, tmp_path, "train", 6)
    test = _coco_photos(synth, tmp_path, "test", 2)
    run, results = tmp_path / "run", tmp_path / "results.json"
    assert main(["train", "--train", f"{train}:{tmp_path / 'photos/train'}", "--category", "all", "--out", str(run)]
                + TINY + ["train.epochs=1"]) == 0
    assert main(["predict", "--checkpoint", str(run), "--test", f"{test}:{tmp_path / 'photos/test'}",
                 "--format", "coco", "--out", str(results), "--json"]) == 0
    truth = json.loads(test.read_text())
    predicted = json.loads(results.read_text())
    assert [(r["image_id"], r["category_id"]) for r in predicted] == [
        (a["image_id"], a["category_id"]) for a in truth["annotations"]], "one result per object, in the file's order"
    for result, ann in zip(predicted, truth["annotations"]):  # each object is predicted inside its own crop
        x0, y0, w, h = ann["bbox"]
        points = np.asarray(result["keypoints"]).reshape(-1, 3)
        half = 1.25 * max(w, h) / 2 + 1
        assert (np.abs(points[:, 0] - (x0 + (w - 1) / 2)) <= half).all()
    capsys.readouterr()
    assert main(["evaluate", "--truth", str(test), "--pred", str(results), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert {"ap", "ap50", "ap75", "ne"} <= set(scored) and scored["count"] > 0
