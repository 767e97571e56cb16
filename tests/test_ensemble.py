"""Coordinate ensembles of submission CSVs: one CSV is itself, two are their (weighted) mean,
rows are matched by image_id, disagreements are clear errors."""
import argparse

import numpy as np
import pytest
from _fashionai import category_mask

from fashion_gluon.cli.predict import cmd_ensemble
from fashion_gluon.data.submission import read_submission, write_submission
from fashion_gluon.errors import DataError, FashionGluonError
from fashion_gluon.inference.ensemble import ensemble_submissions, normalized_weights, write_ensemble

IDS = ["Images/blouse/a.jpg", "Images/skirt/b.jpg", "Images/trousers/c.jpg"]
CATEGORIES = ["blouse", "skirt", "trousers"]


def submission(path, xy: np.ndarray, order=(0, 1, 2), ids=IDS, categories=CATEGORIES):
    """Write ``xy`` (N, 24, 2) for ``ids`` in ``order``; return the path."""
    order = list(order)
    write_submission(path, [ids[i] for i in order], [categories[i] for i in order], xy[order])
    return path


def points(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, (3, 24, 2)).astype(np.float64)


def test_ensemble_of_one_csv_is_that_csv(tmp_path):
    a = submission(tmp_path / "a.csv", points(0))
    write_ensemble([a], tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text() == a.read_text()


def test_ensemble_of_two_is_their_mean_matched_by_image_id(tmp_path):
    xa, xb = (2 * np.floor(points(seed) / 2) for seed in (1, 2))  # even values: integer means
    a = submission(tmp_path / "a.csv", xa)
    b = submission(tmp_path / "b.csv", xb, order=(2, 0, 1))  # another row order
    rows, mean = ensemble_submissions([a, b])
    assert rows.image_ids == IDS and rows.categories == CATEGORIES
    mask = category_mask(CATEGORIES)
    np.testing.assert_array_equal(mean[mask], ((xa + xb) / 2)[mask])
    assert np.all(mean[~mask] == -1)
    write_ensemble([a, b], tmp_path / "out.csv")
    np.testing.assert_array_equal(read_submission(tmp_path / "out.csv").keypoints[..., :2][mask], mean[mask])


def test_weights_are_normalized(tmp_path):
    a = submission(tmp_path / "a.csv", np.full((3, 24, 2), 10.0))
    b = submission(tmp_path / "b.csv", np.full((3, 24, 2), 30.0))
    _, mean = ensemble_submissions([a, b], [1, 3])
    assert np.all(mean[category_mask(CATEGORIES)] == 25.0)
    np.testing.assert_allclose(normalized_weights([2, 6], 2), [0.25, 0.75])
    np.testing.assert_allclose(normalized_weights(None, 4), [0.25] * 4)


@pytest.mark.parametrize("weights, message", [
    ([1.0], "got 1 weights for 2 submissions"),
    ([1.0, -1.0], r"weights must be non-negative with a positive sum, got \[1.0, -1.0\]"),
    ([0.0, 0.0], "positive sum"),
])
def test_bad_weights(tmp_path, weights, message):
    a = submission(tmp_path / "a.csv", points(0))
    with pytest.raises(FashionGluonError, match=message):
        ensemble_submissions([a, a], weights)


def test_submissions_of_different_images_are_refused(tmp_path):
    a = submission(tmp_path / "a.csv", points(0))
    other_ids = IDS[:2] + ["Images/trousers/z.jpg"]
    b = submission(tmp_path / "b.csv", points(1), ids=other_ids)
    with pytest.raises(DataError) as error:
        ensemble_submissions([a, b])
    assert str(error.value) == (f"{b}: 1 image(s) missing, listed in {a}: Images/trousers/c.jpg; "
                                f"1 image(s) not in {a}: Images/trousers/z.jpg")


def test_submissions_that_disagree_on_a_category_are_refused(tmp_path):
    a = submission(tmp_path / "a.csv", points(0))
    b = submission(tmp_path / "b.csv", points(1), categories=["blouse", "dress", "trousers"])
    with pytest.raises(DataError) as error:
        ensemble_submissions([a, b])
    assert str(error.value) == (f"{b}, row 3, column 'image_category': image 'Images/skirt/b.jpg' is "
                                f"'dress' here but 'skirt' in {a}")


def test_ensemble_command(tmp_path, capsys):
    a = submission(tmp_path / "a.csv", np.full((3, 24, 2), 4.0))
    b = submission(tmp_path / "b.csv", np.full((3, 24, 2), 8.0))
    cmd_ensemble(argparse.Namespace(submissions=[a, b], out=tmp_path / "c.csv", weights=[3, 1]))
    assert '"images": 3' in capsys.readouterr().out
    kept = read_submission(tmp_path / "c.csv").keypoints
    assert np.all(kept[..., :2][category_mask(CATEGORIES)] == 5.0)
