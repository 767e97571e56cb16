"""Training learns: a tiny fp32 run on images whose answer is plain (one bright trapezoid per
image, its four corners a skirt's keypoints, placed and sized at random) gets its validation NE
below half that of predicting the mean training shape."""
from pathlib import Path

import cv2
import numpy as np
from _mean_shape import mean_shape_ne
from _tiny import TINY

from fashion_gluon.config import load_config
from fashion_gluon.data.annotations import Annotations, write_annotations
from fashion_gluon.data.sources import load_split
from fashion_gluon.engine.train import fit
from fashion_gluon.runs import read_log
from fashion_gluon.schema import load_schema

CORNERS = ("waistband_left", "waistband_right", "hemline_left", "hemline_right")


def draw_trapezoids(root: Path, count: int, seed: int = 0, size: int = 64) -> None:
    """``count`` size² training images of one skirt-shaped trapezoid on a dark noisy background
    in the FashionAI layout under ``root`` (every corner visible)."""
    schema = load_schema("fashionai")
    rows = [schema.keypoints.index(name) for name in CORNERS]
    rng = np.random.default_rng(seed)
    (root / "train" / "Images" / "skirt").mkdir(parents=True)
    ids, keypoints = [], np.full((count, schema.num_keypoints, 3), -1.0, np.float32)
    for i in range(count):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        top, bottom = rng.uniform(7, 12), rng.uniform(10, 18)  # half widths
        x = rng.uniform(bottom + 2, size - bottom - 3)
        y_top = rng.uniform(3, size - 36)
        y_bottom = y_top + rng.uniform(20, 32)
        corners = np.array([[x + top, y_top], [x - top, y_top], [x + bottom, y_bottom], [x - bottom, y_bottom]]).round()
        colour = tuple(int(c) for c in rng.integers(120, 256, 3))
        cv2.fillConvexPoly(image, corners[[0, 1, 3, 2]].astype(np.int32), colour)
        ids.append(f"Images/skirt/{i:04d}.png")
        assert cv2.imwrite(str(root / "train" / ids[-1]), image)
        keypoints[i, rows, :2], keypoints[i, rows, 2] = corners, 1
    write_annotations(root / "train" / "Annotations" / "train.csv",
                      Annotations(ids, ["skirt"] * count, keypoints, schema))


def test_a_tiny_fp32_run_beats_the_mean_shape_baseline(tmp_path):
    draw_trapezoids(tmp_path, 100)
    split = ["data.val_fraction=0.2"]  # 80 training and 20 validation images
    config = load_config(overrides=TINY + split + ["train.epochs=3", "train.precision=fp32"])
    record = fit(tmp_path, "skirt", tmp_path / "run", config, progress=False)
    baseline = mean_shape_ne(load_split(tmp_path, "train", val_fraction=0.2),
                             load_split(tmp_path, "val", val_fraction=0.2))
    assert baseline > 50, baseline  # the trapezoids move and change size: the mean shape misses most corners
    assert record["epoch"] == 3 and record["val_ne"] < 0.5 * baseline, (record["val_ne"], baseline)
    losses = [r["loss"] for r in read_log(tmp_path / "run")]
    assert losses[-1] < 0.5 * losses[0], losses
