"""Two-stage (top-down) keypoints: training crops around each garment's labelled points (with
a first stage's box error simulated by jitter), ground-truth boxes when a crop model is
validated, and prediction that finds the box with a first stage and refines on its crop."""
import dataclasses
import json

import cv2
import numpy as np
import pytest
from test_predict import SKIRT, block_centres, block_image, dot_model, run_cli, skirt_points

from fashion_gluon.codec import HeatmapCodec
from fashion_gluon.data import transforms as T
from fashion_gluon.data.annotations import Annotations
from fashion_gluon.data.dataset import KeypointDataset
from fashion_gluon.data.submission import read_submission
from fashion_gluon.inference.predictor import STAGE1_SCORE_SHARE, Predictor, stage1_boxes
from fashion_gluon.schema import load_schema


class FixedDraws:
    """An rng whose ``uniform`` returns given values (the jitter's draws, in order)."""

    def __init__(self, *values):
        self.values = list(values)

    def uniform(self, low, high, size=None):
        return np.asarray(self.values.pop(0), dtype=np.float64)


def test_points_box_spans_the_points_and_needs_an_area():
    np.testing.assert_array_equal(T.points_box(np.array([[3.0, 9.0], [7.0, 2.0], [5.0, 4.0]])), [3, 2, 7, 9])
    assert T.points_box(np.array([[1.0, 1.0]])) is None
    assert T.points_box(np.array([[1.0, 1.0], [5.0, 1.0]])) is None  # no height


def test_jitter_box_moves_and_scales_by_the_drawn_shares():
    box = np.array([10.0, 20.0, 30.0, 60.0])  # 20 × 40, centre (20, 40)
    # shift +0.1 of the width, −0.05 of the height; scale 1.2
    moved = T.jitter_box(box, FixedDraws([0.1, -0.05], 1.2), 0.2)
    np.testing.assert_allclose(moved, [22 - 12, 38 - 24, 22 + 12, 38 + 24])
    np.testing.assert_allclose(T.jitter_box(box, FixedDraws([0.0, 0.0], 1.0), 0.2), box)
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0, x1, y1 = T.jitter_box(box, rng, 0.1)
        assert 0.9 * 20 - 1e-9 <= x1 - x0 <= 1.1 * 20 + 1e-9 and abs((x0 + x1) / 2 - 20) <= 2 + 1e-9


def _rows(points: np.ndarray, size=(120, 160)) -> Annotations:
    """One skirt per image of ``size`` (H, W), keypoints ``points`` (N, 4, 3) of the skirt."""
    schema = load_schema()
    keypoints = np.full((len(points), schema.num_keypoints, 3), -1.0)
    keypoints[:, list(schema.category_indices(SKIRT))] = points
    images = [np.random.default_rng(i).integers(0, 255, size + (3,), dtype=np.uint8) for i in range(len(points))]
    rows = Annotations([f"{i}.jpg" for i in range(len(points))], [SKIRT] * len(points), keypoints, schema)
    return rows, images


class ArrayDataset(KeypointDataset):
    """KeypointDataset over in-memory images."""

    def __init__(self, rows, images, **kwargs):
        super().__init__(rows, SKIRT, **kwargs)
        self.images = images

    def load_image(self, row):
        return self.images[row]


SKIRT_POINTS = np.array([[[40.0, 30.0, 1], [90.0, 32.0, 1], [35.0, 80.0, 0], [100.0, 84.0, -1]]])


def test_training_items_are_cropped_to_the_labelled_points_box():
    rows, images = _rows(SKIRT_POINTS)
    codec = HeatmapCodec((64, 64), 4, 2.0)
    cropped = ArrayDataset(rows, images, codec=codec, box_crop_p=1.0, box_aspect=1.0)
    rng = np.random.default_rng(0)
    sample = cropped.sample(0, rng)
    # the labelled (v ≥ 0) points' box: the absent fourth point does not count
    expected = T.crop_to_box(T.Sample.from_image(images[0], SKIRT_POINTS[0]), [35, 30, 90, 80], T.BOX_MARGIN, 1.0)
    np.testing.assert_array_equal(sample.matrix, expected.matrix)
    assert sample.size == expected.size == (70, 70)  # (90 − 35 + 1) × 1.25, widened to square
    # p = 0 never crops and draws nothing from the item's rng: items are those of a plain dataset
    plain, never = ArrayDataset(rows, images, codec=codec), ArrayDataset(rows, images, codec=codec, box_crop_p=0.0)
    for a, b in zip(plain[(3, 0)], never[(3, 0)]):
        np.testing.assert_array_equal(a, b)
    # jitter moves the training box, never the evaluation box
    jittered = ArrayDataset(rows, images, codec=codec, box_crop_p=1.0, box_jitter=0.2, box_aspect=1.0)
    assert not np.array_equal(jittered.sample(0, np.random.default_rng(0)).matrix, expected.matrix)
    shares = [ArrayDataset(rows, images, codec=codec, box_crop_p=0.5).box(0, np.random.default_rng(seed)) is not None
              for seed in range(200)]
    assert 0.4 < np.mean(shares) < 0.6


def test_a_crop_model_is_evaluated_on_ground_truth_boxes_others_on_whole_images():
    rows, images = _rows(SKIRT_POINTS)
    np.testing.assert_array_equal(ArrayDataset(rows, images, box_crop_p=1.0).boxes(), [[35, 30, 90, 80]])
    assert np.isnan(ArrayDataset(rows, images, box_crop_p=0.5).boxes()).all()
    # the jitter is a training augmentation: the evaluation box stays the labelled points' box
    np.testing.assert_array_equal(ArrayDataset(rows, images, box_crop_p=1.0, box_jitter=0.3).boxes(), [[35, 30, 90, 80]])


def test_stage1_boxes_keep_the_confident_points_of_the_category():
    schema = load_schema()
    points = np.full((2, schema.num_keypoints, 3), -1.0)
    skirt = list(schema.category_indices(SKIRT))
    points[0, skirt] = [[10, 20, 0.9], [50, 22, 0.8], [12, 70, STAGE1_SCORE_SHARE * 0.9], [300, 300, 0.1]]
    points[1, skirt] = [[10, 20, 0.9], [10, 20, 0.8], [12, 70, 0.01], [300, 300, 0.1]]  # one confident place
    boxes = stage1_boxes(points, schema.category_mask([SKIRT, SKIRT]))
    np.testing.assert_array_equal(boxes[0], [10, 20, 50, 70])  # the weak fourth point is left out
    assert np.isnan(boxes[1]).all()  # no area: the whole image


def test_two_stage_prediction_refines_on_the_first_stage_box():
    # 8-px blocks in a 512² image: 1 px wide at the first stage's 64² input, ~8 px on the crop.
    corners = [(200, 208), (280, 216), (208, 264), (288, 272)]
    image, truth = block_image((512, 512), corners, block=8), block_centres(corners, 8)
    first_stage = Predictor([dot_model()], flip=False)
    two_stage = Predictor([dot_model()], flip=False, stage1=first_stage)
    first = first_stage.predict([image], SKIRT, scores=True)
    box = two_stage.find_boxes([image], [SKIRT])
    np.testing.assert_array_equal(box, stage1_boxes(first, load_schema().category_mask([SKIRT])))
    refined = skirt_points(two_stage.predict([image], SKIRT))[0]
    frame = T.crop_to_box(T.Sample.from_image(image), box[0], T.BOX_MARGIN, 1.0)
    crop_pixel = frame.size[0] / 64  # original pixels per input pixel of the crop
    assert crop_pixel < 2.5
    assert np.all(np.abs(refined - truth) <= 1.5 * crop_pixel)
    assert np.abs(refined - truth).mean() < np.abs(skirt_points(first[..., :2])[0] - truth).mean() / 2
    heatmaps, shown = two_stage.heatmaps(image, SKIRT)
    np.testing.assert_array_equal(shown, cv2.warpAffine(image, T.resize(frame, (64, 64)).matrix[:2], (64, 64)))
    assert heatmaps.shape == (4, 16, 16)


def test_a_first_stage_with_another_schema_is_refused():
    from fashion_gluon.errors import FashionGluonError
    from fashion_gluon.inference.model import KeypointModel

    model = dot_model()
    alien = KeypointModel(model.net, SKIRT, model.codec, dataclasses.replace(load_schema(), name="other"))
    with pytest.raises(FashionGluonError, match="both stages need one schema"):
        Predictor([model], stage1=[alien])


def test_predict_command_with_a_first_stage(tiny_run, tiny_data, tmp_path, capsys):
    out = tmp_path / "two_stage.csv"
    assert run_cli(["predict", "--checkpoint", str(tiny_run), "--stage1", str(tiny_run), "--data-root",
                    str(tiny_data), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows, expected = Predictor([tiny_run], flip=False, stage1=[tiny_run]).predict_split(tiny_data, "test")
    assert report["images"] == len(rows) == len(read_submission(out).image_ids)
    written = read_submission(out).keypoints[..., :2]
    mask = load_schema().category_mask(rows.categories)
    np.testing.assert_allclose(written[mask], np.round(expected[mask]), atol=0.51)


def test_a_model_trained_on_whole_images_and_crops_is_its_own_first_stage():
    corners = [(200, 208), (280, 216), (208, 264), (288, 272)]
    image = block_image((512, 512), corners, block=8)
    model = dataclasses.replace(dot_model(), config={"data": {"box_crop_p": 0.5}})
    own = Predictor([model], flip=False)
    assert model.own_first_stage and own.stage1.models[0] is model and own.stage1.stage1 is None
    np.testing.assert_array_equal(own.predict([image], SKIRT), Predictor([model], flip=False, stage1=[model]).predict(
        [image], SKIRT))
    assert Predictor([model], stage1=None).stage1 is None  # asked for one stage
    for share in (0.0, 1.0):  # whole images only, or crops only (that needs another first stage)
        other = dataclasses.replace(model, config={"data": {"box_crop_p": share}})
        assert not other.own_first_stage and Predictor([other]).stage1 is None
    assert Predictor([dot_model()]).stage1 is None  # no config: one stage


def test_predict_command_runs_a_two_stage_run_in_two_stages_unless_told(tiny_run, tiny_data, tmp_path, capsys):
    import shutil

    import yaml

    run = tmp_path / "two_stage_run"
    shutil.copytree(tiny_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["box_crop_p"] = 0.5
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    written = {}
    for name, extra in (("auto", []), ("named", ["--stage1", str(run)]), ("one", ["--one-stage"])):
        out = tmp_path / f"{name}.csv"
        assert run_cli(["predict", "--checkpoint", str(run), *extra, "--data-root", str(tiny_data), "--out", str(out),
                        "--json"]) == 0
        capsys.readouterr()
        written[name] = read_submission(out).keypoints
    np.testing.assert_array_equal(written["auto"], written["named"])
    rows, one_stage = Predictor([run], flip=False, stage1=None).predict_split(tiny_data, "test")
    mask = load_schema().category_mask(rows.categories)
    np.testing.assert_allclose(written["one"][..., :2][mask], np.round(one_stage[mask]), atol=0.51)
    assert not np.array_equal(written["auto"], written["one"])
