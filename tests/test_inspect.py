"""``show`` pictures: image lookup in the layout, truth matching, worst-K order, and the PNGs
of a small synthetic set (overlays, worst gallery, per-keypoint chart, heatmap montage)."""
import argparse
import math

import cv2
import mxnet as mx
import numpy as np
import pytest
from _fashionai import FASHIONAI, NUM_KEYPOINTS, num_keypoints
from mxnet import gluon

from fashion_gluon.cli.predict import cmd_show
from fashion_gluon.codec import HeatmapCodec
from fashion_gluon.data.annotations import Annotations, read_annotations
from fashion_gluon.data.submission import match_rows, read_submission, write_submission
from fashion_gluon.data.synthetic import generate_dataset
from fashion_gluon.errors import DataError
from fashion_gluon.inference.model import KeypointModel
from fashion_gluon.metrics import per_image_error
from fashion_gluon.tools.show import image_folder, show, worst_images


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """A synthetic FashionAI layout: 2 train + 1 test image per category, 96×128 (H×W)."""
    root = tmp_path_factory.mktemp("layout")
    generate_dataset(root, per_category=3, seed=1, image_size=(96, 128), test_fraction=0.34, progress=False)
    return root


def shifted_prediction(truth: Annotations, path, offsets: np.ndarray) -> None:
    """Write the truth moved by ``offsets`` (N,) pixels in x as a submission."""
    xy = truth.keypoints[..., :2] + offsets[:, None, None] * np.array([1.0, 0.0])
    write_submission(path, truth.image_ids, truth.categories, np.clip(xy, 0, 95))


def test_image_folder_prefers_test_then_train(layout):
    test_id = read_annotations(layout / "test" / "annotations.csv").image_ids[0]
    train_id = read_annotations(layout / "train" / "Annotations" / "train.csv").image_ids[0]
    assert image_folder(layout, test_id) == layout / "test"
    assert image_folder(layout, train_id) == layout / "train"
    with pytest.raises(DataError, match=r"image 'Images/x.jpg' is in neither .*test nor .*train"):
        image_folder(layout, "Images/x.jpg")


def test_match_rows_pairs_the_shared_images_by_id():
    truth = Annotations(["a", "b", "c"], ["skirt", "blouse", "dress"])
    pred = Annotations(["c", "x", "a"], ["dress", "skirt", "skirt"])
    truth_rows, pred_rows = match_rows(truth, pred, "t.csv", "p.csv", missing_ok=True)
    np.testing.assert_array_equal(truth_rows, [0, 2])
    np.testing.assert_array_equal(pred_rows, [2, 0])
    with pytest.raises(DataError, match="p.csv, row 2, column 'image_category': image 'c' is 'skirt' here "
                                        "but 'dress' in t.csv"):
        match_rows(truth, Annotations(["c"], ["skirt"]), "t.csv", "p.csv", missing_ok=True)
    with pytest.raises(DataError, match="p.csv: no image is also in t.csv"):
        match_rows(truth, Annotations(["z"], ["skirt"]), "t.csv", "p.csv", missing_ok=True)
    with pytest.raises(DataError, match=r"p.csv: 1 image\(s\) missing, listed in t.csv: b"):
        match_rows(truth, pred, "t.csv", "p.csv")
    with pytest.raises(DataError, match=r"1 image\(s\) not in t.csv: x"):
        match_rows(truth, pred, "t.csv", "p.csv", missing_ok=True, extra_ok=False)


def test_worst_images_are_the_largest_finite_errors_first():
    np.testing.assert_array_equal(worst_images(np.array([3.0, np.nan, 9.0, 1.0, 9.0]), 3), [2, 4, 0])
    assert len(worst_images(np.array([np.nan]), 2)) == 0


def random_model() -> KeypointModel:
    """A fixed random 4×4 / stride-4 convolution predicting 24 heatmaps for 64×64 inputs."""
    mx.random.seed(0)
    net = gluon.nn.Conv2D(NUM_KEYPOINTS, 4, strides=4, in_channels=3)
    net.initialize(mx.init.Normal(0.1))
    return KeypointModel(net, "all", HeatmapCodec((64, 64), 4, 2.0), FASHIONAI)


def test_show_writes_overlays_worst_gallery_chart_and_heatmaps(layout, tmp_path):
    truth = read_annotations(layout / "test" / "annotations.csv")
    offsets = np.arange(len(truth), dtype=np.float64) * 2  # the last image is the worst
    shifted_prediction(truth, tmp_path / "pred.csv", offsets)
    written = show(tmp_path / "pred.csv", layout, tmp_path / "out", layout / "test" / "annotations.csv",
                   worst=3, limit=4, checkpoints=[random_model()])
    assert sorted(written) == ["heatmaps", "overlays", "per_keypoint", "worst"]
    pictures = {name: cv2.imread(str(path)) for name, path in written.items()}
    assert all(picture is not None and picture.ndim == 3 for picture in pictures.values())
    tile = 256 + 2 + 21  # gallery tiles: 256 px, 2 px gaps, a title band of 256 // 12 px
    assert pictures["overlays"].shape[:2] == (tile + 2, 4 * (256 + 2) + 2)
    assert pictures["worst"].shape[:2] == (tile + 2, 3 * (256 + 2) + 2)
    errors = per_image_error(read_submission(tmp_path / "pred.csv").keypoints[..., :2], truth.keypoints,
                             truth.categories)
    k = num_keypoints(truth.categories[int(np.nanargmax(errors))])  # the montage shows the worst image
    assert pictures["heatmaps"].shape[1] == math.ceil(math.sqrt(k)) * (160 + 2) + 2  # 160-px tiles, √K wide


def test_show_without_truth_draws_predictions_only(layout, tmp_path, capsys):
    truth = read_annotations(layout / "test" / "annotations.csv")
    shifted_prediction(truth, tmp_path / "pred.csv", np.zeros(len(truth)))
    cmd_show(argparse.Namespace(pred=tmp_path / "pred.csv", data_root=layout, out=tmp_path / "out", truth=None, schema=None,
                                worst=8, limit=2, checkpoint=None, image=None, no_flip=False, ctx="cpu"))
    assert '"overlays"' in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["overlays.png"]
