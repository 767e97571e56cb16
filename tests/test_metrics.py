"""The normalized error: hand-computed values, pooling, the meter, CSV evaluation."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from _fashionai import CATEGORIES, KEYPOINT_NAMES, NUM_KEYPOINTS, category_mask

from fashion_gluon.data import annotations as csv_io
from fashion_gluon.data import submission as submission_io
from fashion_gluon.errors import DataError
from fashion_gluon.metrics import (
    NEMeter,
    evaluate_csv,
    format_table,
    normalized_error,
    normalizing_distance,
    per_image_error,
)

K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


def hand_example() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Three images; every cell not set below is absent (truth -1_-1_-1, prediction 0, 0).

    Image 0, blouse, s = |armpit_left (10, 20) - armpit_right (40, 20)| = 30:
      neckline_left   truth (10, 10) v1, pred (13, 14): d = 5  -> 5/30 = 1/6
      neckline_right  truth (40, 10) v0, pred (100, 100): occluded, does not count
      armpit_left     truth (10, 20) v1, pred (10, 20): d = 0  -> 0
      armpit_right    truth (40, 20) v1, pred (40, 26): d = 6  -> 6/30 = 1/5
      hemline_left    truth (5, 5) v1 but not a blouse keypoint, pred (300, 300): ignored
      waistband_left  truth absent, pred (0, 0) present: ignored
      -> 3 pairs, sum 1/6 + 0 + 1/5 = 11/30
    Image 1, skirt, s = |waistband_left (0, 0) v1 - waistband_right (0, 8) v0| = 8
      (an occluded point still normalizes):
      waistband_left  truth (0, 0) v1, pred (6, 0): d = 6 -> 6/8 = 3/4
      waistband_right truth (0, 8) v0, pred (50, 50): does not count
      hemline_left    truth (10, 10) v1, pred (13, 14): d = 5 -> 5/8
      hemline_right   truth absent
      -> 2 pairs, sum 3/4 + 5/8 = 11/8
    Image 2, skirt, waistband_left absent: skipped.

    Pooled NE = 100 * (11/30 + 11/8) / 5 = 100 * 209/600 = 34.8333… %
    Per-image average would be (100 * 11/90 + 100 * 11/16) / 2 = 40.4861… %.
    per_category: blouse 100 * (11/30) / 3 = 12.222…, skirt 100 * (11/8) / 2 = 68.75.
    """
    truth = np.tile(np.array([-1.0, -1.0, -1.0]), (3, 24, 1))
    pred = np.zeros((3, 24, 2))
    cells = [
        (0, "neckline_left", (10, 10, 1), (13, 14)),
        (0, "neckline_right", (40, 10, 0), (100, 100)),
        (0, "armpit_left", (10, 20, 1), (10, 20)),
        (0, "armpit_right", (40, 20, 1), (40, 26)),
        (0, "hemline_left", (5, 5, 1), (300, 300)),
        (1, "waistband_left", (0, 0, 1), (6, 0)),
        (1, "waistband_right", (0, 8, 0), (50, 50)),
        (1, "hemline_left", (10, 10, 1), (13, 14)),
        (2, "waistband_right", (5, 5, 1), (0, 0)),
        (2, "hemline_left", (1, 1, 1), (90, 90)),
    ]
    for row, name, t, p in cells:
        truth[row, K[name]] = t
        pred[row, K[name]] = p
    return pred, truth, ["blouse", "skirt", "skirt"]


def test_hand_computed_example():
    pred, truth, categories = hand_example()
    with pytest.warns(UserWarning, match=r"normalized error: 1 image\(s\) skipped"):
        result = normalized_error(pred, truth, categories)
    assert result["count"] == 5
    assert result["skipped_images"] == 1
    assert result["ne"] == pytest.approx(100 * 209 / 600)
    assert result["per_category"] == pytest.approx({"blouse": 100 * 11 / 90, "skirt": 68.75})
    assert list(result["per_category"]) == ["blouse", "skirt"]
    assert result["per_keypoint"] == pytest.approx({
        "neckline_left": 100 / 6, "armpit_left": 0.0, "armpit_right": 20.0,
        "waistband_left": 75.0, "hemline_left": 62.5})


def test_pooled_not_per_image_average():
    pred, truth, categories = hand_example()
    with pytest.warns(UserWarning):
        per_image = per_image_error(pred, truth, categories)
        pooled = normalized_error(pred, truth, categories)["ne"]
    np.testing.assert_allclose(per_image[:2], [100 * 11 / 90, 68.75])
    assert np.isnan(per_image[2])
    assert np.nanmean(per_image) == pytest.approx(100 * (11 / 90 + 11 / 16) / 2)
    assert pooled == pytest.approx(100 * 209 / 600)
    assert abs(pooled - np.nanmean(per_image)) > 5


def test_occluded_keypoints_do_not_count():
    """The seed's evaluator counted v == 0: moving an occluded prediction changes nothing,
    moving a visible one does."""
    pred, truth, categories = hand_example()
    with pytest.warns(UserWarning):
        base = normalized_error(pred, truth, categories)["ne"]
        pred[0, K["neckline_right"]] = (-500, 700)
        assert normalized_error(pred, truth, categories)["ne"] == base
        pred[0, K["armpit_left"]] = (10, 23)  # d = 3 -> + 3/30 to the sum
        assert normalized_error(pred, truth, categories)["ne"] == pytest.approx(
            100 * (209 / 120 + 1 / 10) / 5)


def test_zero_length_normalizer_skips_image():
    truth = np.full((2, 24, 3), -1.0)
    truth[:, K["waistband_left"]] = (7, 7, 1)
    truth[:, K["waistband_right"]] = (7, 7, 1)
    truth[1, K["waistband_right"]] = (7, 11, 1)  # s = 4
    pred = truth[..., :2].copy()
    pred[1, K["waistband_left"], 0] += 2  # d = 2 -> 50 %
    assert np.isnan(normalizing_distance(truth, ["trousers"] * 2)[0])
    with pytest.warns(UserWarning, match=r"1 image\(s\) skipped"):
        result = normalized_error(pred, truth, ["trousers", "trousers"])
    assert (result["count"], result["skipped_images"]) == (2, 1)
    assert result["ne"] == pytest.approx(25.0)
    assert result["per_keypoint"] == pytest.approx({"waistband_left": 50.0, "waistband_right": 0.0})


def test_no_warning_when_nothing_skipped():
    pred, truth, categories = hand_example()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = normalized_error(pred[:2], truth[:2], categories[:2])
    assert result["skipped_images"] == 0
    assert result["ne"] == pytest.approx(100 * 209 / 600)


def random_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Random truth with visible/occluded/absent keypoints and noisy predictions."""
    categories = list(rng.choice(CATEGORIES, n))
    truth = np.concatenate([rng.integers(0, 512, (n, 24, 2)),
                            rng.choice([-1, 0, 1, 1, 1], (n, 24, 1))], axis=2).astype(float)
    truth[~category_mask(categories)] = -1
    pred = truth[..., :2] + rng.normal(0, 10, (n, 24, 2))
    return pred, truth, categories


def test_meter_equals_functional_on_concatenation():
    rng = np.random.default_rng(3)
    a, b = random_batch(rng, 7), random_batch(rng, 5)
    meter = NEMeter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meter.update(*a)
        meter.update(*b)
        expected = normalized_error(np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]),
                                    a[2] + b[2])
        assert meter.result() == expected
        assert expected["count"] > 0
        meter.reset()
        meter.update(*b)
        assert meter.result() == normalized_error(*b)


def test_empty_meter():
    result = NEMeter().result()
    assert np.isnan(result["ne"])
    assert (result["count"], result["skipped_images"], result["per_category"],
            result["per_keypoint"]) == (0, 0, {}, {})


@pytest.mark.parametrize("pred_shape, truth_shape, n_cat, message", [
    ((2, 24, 2), (2, 24, 2), 2, r"truth must have shape \(N, 24, 3\), got \(2, 24, 2\)"),
    ((3, 24, 2), (2, 24, 3), 2,
     r"pred must have shape \(2, 24, 2\) to match truth \(2, 24, 3\), got \(3, 24, 2\)"),
    ((2, 13, 2), (2, 24, 3), 2, r"pred must have shape \(2, 24, 2\)"),
    ((2, 24, 2), (2, 24, 3), 3, r"got 3 categories for 2 images"),
])
def test_shape_errors(pred_shape, truth_shape, n_cat, message):
    with pytest.raises(ValueError, match=message):
        normalized_error(np.zeros(pred_shape), np.zeros(truth_shape), ["skirt"] * n_cat)


def test_bad_category_and_non_finite_prediction():
    pred, truth, categories = hand_example()
    with pytest.raises(ValueError, match="unknown category 'all'"):
        normalized_error(pred[:1], truth[:1], ["all"])
    pred[1, K["hemline_left"]] = np.nan
    with pytest.raises(ValueError, match="prediction of image 1, keypoint hemline_left is not finite"):
        per_image_error(pred[:2], truth[:2], categories[:2])
    pred[1, K["hemline_left"]] = (13, 14)
    pred[1, K["crotch"]] = np.nan  # outside skirt: ignored
    assert per_image_error(pred[:2], truth[:2], categories[:2])[1] == pytest.approx(68.75)


def test_format_table_lists_every_entry():
    pred, truth, categories = hand_example()
    with pytest.warns(UserWarning):
        result = normalized_error(pred, truth, categories)
    text = format_table(result)
    lines = text.splitlines()
    assert lines[0].split()[:8] == ["overall", "34.833", "%", "(5", "keypoints,", "1", "images", "skipped;"]
    assert lines[0].endswith(f"PCK@0.05 {result['pck@0.05']:.1f} %, PCK@0.1 {result['pck@0.1']:.1f} %)")
    rows = [line.split() for line in lines]
    for row in (["blouse", "12.222"], ["skirt", "68.750"], ["neckline_left", "16.667"],
                ["armpit_left", "0.000"], ["armpit_right", "20.000"], ["waistband_left", "75.000"],
                ["hemline_left", "62.500"]):
        assert row in rows
    assert len({len(line) for line in lines[3:5]}) == 1  # columns aligned
    assert len(lines) == 12  # overall, blank, 3 category lines, blank, 6 keypoint lines
    assert text.endswith("\n")


# --- CSV evaluation ---------------------------------------------------------

def write_pair(tmp_path, drop: int | None = None):
    """Truth CSV of a random integer batch (category keypoints v 0/1) and a shuffled
    submission CSV, without row ``drop``; returns the paths and the arrays."""
    rng = np.random.default_rng(11)
    pred, truth, categories = random_batch(rng, 6)
    truth[..., 2] = np.where(category_mask(categories), np.abs(truth[..., 2]), -1)
    pred = np.abs(np.round(pred))
    ids = [f"Images/{c}/img{i}.jpg" for i, c in enumerate(categories)]
    csv_io.write_annotations(tmp_path / "truth.csv", csv_io.Annotations(ids, categories, truth))
    order = [r for r in rng.permutation(6) if r != drop]
    submission_io.write_submission(tmp_path / "pred.csv", [ids[r] for r in order], [categories[r] for r in order],
                            pred[order])
    return tmp_path / "truth.csv", tmp_path / "pred.csv", (pred, truth, categories, ids)


def test_evaluate_csv_matches_rows_by_id(tmp_path):
    truth_csv, pred_csv, (pred, truth, categories, _) = write_pair(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_csv(truth_csv, pred_csv)
        expected = normalized_error(pred, truth, categories)
    assert result["count"] == expected["count"] > 0
    assert result["ne"] == pytest.approx(expected["ne"])
    assert result["per_keypoint"] == pytest.approx(expected["per_keypoint"])


def test_evaluate_csv_names_missing_image(tmp_path):
    truth_csv, pred_csv, (*_, ids) = write_pair(tmp_path, drop=4)
    with pytest.raises(DataError, match=rf"1 image\(s\) missing, listed in .*truth.csv: {ids[4]}$"):
        evaluate_csv(truth_csv, pred_csv)


def test_evaluate_csv_rejects_other_category(tmp_path):
    truth_csv, pred_csv, (pred, truth, categories, ids) = write_pair(tmp_path)
    other = "skirt" if categories[2] != "skirt" else "trousers"
    submission_io.write_submission(pred_csv, ids, categories[:2] + [other] + categories[3:], pred)
    with pytest.raises(DataError, match=rf"row 4, column 'image_category': image {ids[2]!r} is "
                                        rf"{other!r} here but {categories[2]!r} in .*truth.csv"):
        evaluate_csv(truth_csv, pred_csv)


def test_pck_counts_the_pairs_within_each_threshold():
    truth = np.full((1, NUM_KEYPOINTS, 3), -1.0)
    skirt = [KEYPOINT_NAMES.index(n) for n in ("waistband_left", "waistband_right", "hemline_left", "hemline_right")]
    truth[0, skirt] = [[100, 100, 1], [200, 100, 1], [100, 300, 1], [200, 300, 1]]  # s = 100 px
    pred = truth[..., :2].copy()
    pred[0, skirt, 0] += [0, 3, 8, 20]  # ratios 0, 0.03, 0.08, 0.2
    result = normalized_error(pred, truth, ["skirt"])
    assert result["pck@0.05"] == pytest.approx(50.0) and result["pck@0.1"] == pytest.approx(75.0)
    assert result["ne"] == pytest.approx(100 * (0 + 0.03 + 0.08 + 0.2) / 4)
    assert result["normalization"] == {"skirt": "pair waistband_left-waistband_right"}
