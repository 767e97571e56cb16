"""FashionAI CSV reading, validation and writing (annotations, test lists, submissions)."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from _fashionai import CATEGORIES, KEYPOINT_NAMES, SUBMISSION_COLUMNS, category_indices, category_mask

from fashion_gluon.data.annotations import Annotations, read_annotations, read_image_list, write_annotations
from fashion_gluon.data.submission import read_submission, validate_submission, write_submission
from fashion_gluon.errors import DataError, DataProblems

# Rows of sample(): row 2 blouse, 3 outwear, 4 dress, 5 skirt, 6 trousers.
BLOUSE_ROW, SKIRT_ROW = 2, 5


def sample(n: int = 5, seed: int = 0) -> Annotations:
    """``n`` rows cycling through the categories, integer keypoints, v in {0, 1}, -1 elsewhere."""
    rng = np.random.default_rng(seed)
    categories = [CATEGORIES[i % len(CATEGORIES)] for i in range(n)]
    kps = np.concatenate([rng.integers(0, 400, (n, 24, 2)), rng.integers(0, 2, (n, 24, 1))], axis=-1)
    kps = np.where(category_mask(categories)[..., None], kps, -1).astype(np.float32)
    return Annotations([f"Images/{c}/{i:04d}.jpg" for i, c in enumerate(categories)], categories, kps)


def set_cell(path, row: int, column: str, value: str) -> None:
    """Overwrite one cell of a comma-separated file (``row`` 1-based, header = row 1)."""
    lines = path.read_text().splitlines()
    cells = lines[row - 1].split(",")
    cells[SUBMISSION_COLUMNS.index(column)] = value
    lines[row - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def train_csv(tmp_path):
    path = tmp_path / "train.csv"
    write_annotations(path, sample())
    return path


def assert_located(exc_info, path, row, column) -> str:
    """The DataError message names the file, ``row N`` and the column; returns it."""
    message = str(exc_info.value)
    assert path.name in message
    if row is not None:
        assert f"row {row}" in message
    if column is not None:
        assert repr(column) in message
    assert (exc_info.value.row, exc_info.value.column) == (row, column)
    return message


# ----------------------------------------------------------------------------- round trips


def test_annotations_round_trip(tmp_path):
    original = sample(12)
    write_annotations(tmp_path / "a.csv", original)
    loaded = read_annotations(tmp_path / "a.csv")
    assert loaded.image_ids == original.image_ids and loaded.categories == original.categories
    assert loaded.keypoints.dtype == np.float32 and loaded.keypoints.shape == (12, 24, 3)
    np.testing.assert_array_equal(loaded.keypoints, original.keypoints)


def test_written_file_is_the_fashionai_layout(train_csv):
    lines = train_csv.read_text().splitlines()
    assert lines[0] == ",".join(SUBMISSION_COLUMNS)
    cells = lines[BLOUSE_ROW - 1].split(",")
    assert cells[:2] == ["Images/blouse/0000.jpg", "blouse"]
    assert cells[2 + KEYPOINT_NAMES.index("crotch")] == "-1_-1_-1"
    x, y, v = sample().keypoints[0, 0]
    assert cells[2] == f"{int(x)}_{int(y)}_{int(v)}"


def test_image_id_with_comma_and_utf8_bom_round_trip(tmp_path):
    original = sample(2)
    original.image_ids[0] = "Images/blouse/a,b.jpg"
    path = tmp_path / "a.csv"
    write_annotations(path, original)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as saved by a spreadsheet
    assert read_annotations(path).image_ids == original.image_ids


def test_header_only_file_gives_no_rows(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(",".join(SUBMISSION_COLUMNS) + "\n")
    loaded = read_annotations(path)
    assert len(loaded) == 0 and loaded.keypoints.shape == (0, 24, 3)


def test_image_list_round_trip(tmp_path):
    original = Annotations(["Images/skirt/a.jpg", "Images/dress/b.jpg"], ["skirt", "dress"])
    write_annotations(tmp_path / "test.csv", original)
    assert (tmp_path / "test.csv").read_text() == (
        "image_id,image_category\nImages/skirt/a.jpg,skirt\nImages/dress/b.jpg,dress\n")
    assert read_image_list(tmp_path / "test.csv") == original


def test_submission_round_trip(tmp_path):
    truth = sample(5)
    xy = truth.keypoints[..., :2] + np.float32(0.3)  # rounds back to the integers
    write_submission(tmp_path / "sub.csv", truth.image_ids, truth.categories, xy)
    loaded = read_submission(tmp_path / "sub.csv")
    mask = category_mask(truth.categories)
    assert loaded.image_ids == truth.image_ids and loaded.categories == truth.categories
    np.testing.assert_array_equal(loaded.keypoints[mask][:, :2], truth.keypoints[mask][:, :2])
    assert (loaded.keypoints[mask][:, 2] == 1).all()
    assert (loaded.keypoints[~mask] == -1).all()


@pytest.mark.parametrize("xy, message", [(-3.0, "non-negative"), (np.nan, "finite")])
def test_write_submission_refuses_bad_coordinates(tmp_path, xy, message):
    truth = sample(3)
    coords = truth.keypoints[..., :2].copy()
    coords[1, 0] = xy  # outwear's neckline_left
    with pytest.raises(ValueError, match=message) as exc_info:
        write_submission(tmp_path / "sub.csv", truth.image_ids, truth.categories, coords)
    assert "neckline_left" in str(exc_info.value) and truth.image_ids[1] in str(exc_info.value)
    assert not (tmp_path / "sub.csv").exists()


def test_write_submission_refuses_the_all_category(tmp_path):
    with pytest.raises(ValueError, match="unknown category 'all'"):
        write_submission(tmp_path / "sub.csv", ["a.jpg"], ["all"], np.zeros((1, 24, 2)))


# ----------------------------------------------------------------------------- bad annotation files


@pytest.mark.parametrize("header, column, reason", [
    (SUBMISSION_COLUMNS[:-1], "bottom_right_out", "header lacks column 'bottom_right_out'"),
    (("image_id", "category") + KEYPOINT_NAMES, "image_category",
     "header column 2 is 'category', expected 'image_category'"),
    (SUBMISSION_COLUMNS + ("score",), "score", "unexpected extra header column 'score'"),
])
def test_wrong_header(tmp_path, header, column, reason):
    path = tmp_path / "bad.csv"
    path.write_text(",".join(header) + "\n")
    with pytest.raises(DataError) as exc_info:
        read_annotations(path)
    assert reason in assert_located(exc_info, path, 1, column)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="empty file") as exc_info:
        read_annotations(path)
    assert path.name in str(exc_info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file") as exc_info:
        read_annotations(tmp_path / "nope.csv")
    assert "nope.csv" in str(exc_info.value)


def test_test_list_given_to_read_annotations(tmp_path):
    path = tmp_path / "test.csv"
    write_annotations(path, Annotations(["a.jpg"], ["skirt"]))
    with pytest.raises(DataError, match="this is a test list.*read_image_list") as exc_info:
        read_annotations(path)
    assert_located(exc_info, path, 1, None)


def test_row_with_too_few_fields(train_csv):
    lines = train_csv.read_text().splitlines()
    lines[3] = ",".join(lines[3].split(",")[:-2])  # row 4 loses its last two cells
    train_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="row has 24 fields, expected 26") as exc_info:
        read_annotations(train_csv)
    assert_located(exc_info, train_csv, 4, "bottom_right_in")


def test_row_with_too_many_fields(train_csv):
    set_cell(train_csv, 3, "bottom_right_out", "-1_-1_-1,7")
    with pytest.raises(DataError, match="row has 27 fields, expected 26") as exc_info:
        read_annotations(train_csv)
    assert_located(exc_info, train_csv, 3, None)


@pytest.mark.parametrize("cell", ["12_a_1", "3_4_2", "3_4", "3_4_1_1", "1.5_2_1", "5_5_-1", "", " 3_4_1"])
def test_malformed_cell(train_csv, cell):
    set_cell(train_csv, SKIRT_ROW, "hemline_left", cell)
    with pytest.raises(DataError) as exc_info:
        read_annotations(train_csv)
    message = assert_located(exc_info, train_csv, SKIRT_ROW, "hemline_left")
    assert f"{cell!r} is not x_y_v with integer x, y and v in {{0, 1}}, nor -1_-1_-1" in message


def test_first_problem_in_file_order_is_reported(train_csv):
    set_cell(train_csv, 6, "crotch", "bad")
    set_cell(train_csv, 3, "armpit_left", "also_bad")
    with pytest.raises(DataError) as exc_info:
        read_annotations(train_csv)
    assert_located(exc_info, train_csv, 3, "armpit_left")


def test_blank_lines_are_skipped_but_counted_as_rows(train_csv):
    lines = train_csv.read_text().splitlines()
    lines.insert(2, "")  # a blank row 3; the outwear row becomes row 4
    train_csv.write_text("\n".join(lines) + "\n")
    assert len(read_annotations(train_csv)) == 5
    set_cell(train_csv, 4, "image_category", "hat")
    with pytest.raises(DataError) as exc_info:
        read_annotations(train_csv)
    assert_located(exc_info, train_csv, 4, "image_category")


def test_unknown_category(train_csv):
    set_cell(train_csv, 3, "image_category", "Outwear")
    with pytest.raises(DataError) as exc_info:
        read_annotations(train_csv)
    message = assert_located(exc_info, train_csv, 3, "image_category")
    assert "unknown image_category 'Outwear'; expected one of blouse, outwear, dress, skirt, trousers" in message


def test_duplicate_image_id_names_both_rows(train_csv):
    set_cell(train_csv, 5, "image_id", "Images/outwear/0001.jpg")
    with pytest.raises(DataError) as exc_info:
        read_annotations(train_csv)
    message = assert_located(exc_info, train_csv, 5, "image_id")
    assert "duplicate image_id 'Images/outwear/0001.jpg' (first in row 3)" in message


def test_missing_category_keypoint_is_read_as_absent_with_one_warning(train_csv):
    set_cell(train_csv, BLOUSE_ROW, "armpit_right", "-1_-1_-1")
    set_cell(train_csv, BLOUSE_ROW, "armpit_left", "-1_-1_-1")
    set_cell(train_csv, SKIRT_ROW, "waistband_left", "-1_-1_-1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = read_annotations(train_csv)
    assert len(caught) == 1
    assert "3 keypoint(s) of their own category in 2 row(s) are -1_-1_-1 and read as absent" in str(caught[0].message)
    assert f"first: row {BLOUSE_ROW}, column 'armpit_left'" in str(caught[0].message)
    expected = sample().keypoints.copy()
    for row, name in ((BLOUSE_ROW, "armpit_right"), (BLOUSE_ROW, "armpit_left"), (SKIRT_ROW, "waistband_left")):
        expected[row - 2, KEYPOINT_NAMES.index(name)] = -1
    np.testing.assert_array_equal(loaded.keypoints, expected)
    assert len(loaded) == 5


def test_absent_category_keypoints_are_neither_trained_on_nor_scored(train_csv):
    from fashion_gluon.data.transforms import Sample
    from fashion_gluon.metrics import normalized_error
    set_cell(train_csv, BLOUSE_ROW, "neckline_left", "-1_-1_-1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = read_annotations(train_csv)
    k = KEYPOINT_NAMES.index("neckline_left")
    sample_ = Sample.from_image(np.zeros((600, 600, 3), np.uint8), loaded.keypoints[BLOUSE_ROW - 2])
    row = loaded.keypoints[BLOUSE_ROW - 2]
    np.testing.assert_array_equal(sample_.weights, row[:, 2] >= 0)  # every other annotated point is trained on
    assert sample_.weights[k] == 0 and sample_.weights.sum() == len(category_indices("blouse")) - 1
    far = loaded.keypoints[..., :2].copy()
    far[BLOUSE_ROW - 2, k] = 1e6  # a wild prediction for the absent point changes nothing
    assert normalized_error(far, loaded.keypoints, loaded.categories)["ne"] == pytest.approx(
        normalized_error(loaded.keypoints[..., :2], loaded.keypoints, loaded.categories)["ne"])


def test_missing_category_keypoint_is_an_error_when_asked(train_csv):
    set_cell(train_csv, BLOUSE_ROW, "armpit_right", "-1_-1_-1")
    with pytest.raises(DataError) as exc_info:
        read_annotations(train_csv, on_missing_keypoint="error")
    message = assert_located(exc_info, train_csv, BLOUSE_ROW, "armpit_right")
    assert "keypoint of category 'blouse' is missing (-1_-1_-1)" in message


def test_missing_category_keypoint_skip_drops_rows_with_one_warning(train_csv):
    set_cell(train_csv, BLOUSE_ROW, "armpit_right", "-1_-1_-1")
    set_cell(train_csv, BLOUSE_ROW, "armpit_left", "-1_-1_-1")
    set_cell(train_csv, SKIRT_ROW, "waistband_left", "-1_-1_-1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = read_annotations(train_csv, on_missing_keypoint="skip")
    assert len(caught) == 1
    assert "dropped 2 of 5 rows" in str(caught[0].message) and train_csv.name in str(caught[0].message)
    expected = sample().subset([1, 2, 4])
    assert loaded.image_ids == expected.image_ids
    np.testing.assert_array_equal(loaded.keypoints, expected.keypoints)


def test_bad_on_missing_keypoint_option(train_csv):
    with pytest.raises(ValueError, match="on_missing_keypoint must be 'absent', 'error' or 'skip'"):
        read_annotations(train_csv, on_missing_keypoint="drop")


@pytest.mark.parametrize("cell", ["10_20_1", "10_20_0"])
def test_keypoint_of_another_category_must_be_absent(train_csv, cell):
    set_cell(train_csv, SKIRT_ROW, "crotch", cell)
    with pytest.raises(DataError) as exc_info:
        read_annotations(train_csv)
    message = assert_located(exc_info, train_csv, SKIRT_ROW, "crotch")
    assert "does not belong to category 'skirt' and must be -1_-1_-1" in message


@pytest.mark.parametrize("cell", ["-3_20_1", "10_-1_0"])
def test_negative_coordinate(train_csv, cell):
    set_cell(train_csv, SKIRT_ROW, "waistband_right", cell)
    with pytest.raises(DataError) as exc_info:
        read_annotations(train_csv)
    assert "negative coordinate, outside the image" in assert_located(exc_info, train_csv, SKIRT_ROW, "waistband_right")


# ----------------------------------------------------------------------------- bad test lists


@pytest.fixture
def test_csv(tmp_path):
    path = tmp_path / "test.csv"
    write_annotations(path, Annotations(sample().image_ids, sample().categories))
    return path


def test_image_list_row_problems(test_csv):
    lines = test_csv.read_text().splitlines()
    lines[2] += ",extra"
    test_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="row has 3 fields, expected 2") as exc_info:
        read_image_list(test_csv)
    assert_located(exc_info, test_csv, 3, None)


@pytest.mark.parametrize("row, column, value, reason", [
    (4, "image_category", "shirt", "unknown image_category 'shirt'"),
    (6, "image_id", "Images/blouse/0000.jpg", "duplicate image_id 'Images/blouse/0000.jpg' (first in row 2)"),
    (3, "image_id", "", "empty image_id"),
])
def test_image_list_cell_problems(test_csv, row, column, value, reason):
    set_cell(test_csv, row, column, value)
    with pytest.raises(DataError) as exc_info:
        read_image_list(test_csv)
    assert reason in assert_located(exc_info, test_csv, row, column)


def test_read_image_list_rejects_annotation_layout(train_csv):
    with pytest.raises(DataError, match="has keypoint columns.*read_annotations"):
        read_image_list(train_csv)


def test_read_submission_requires_visible_keypoints(train_csv):
    set_cell(train_csv, 2, "neckline_left", "5_6_0")
    set_cell(train_csv, 2, "neckline_right", "5_6_1")
    with pytest.raises(DataProblems) as exc_info:  # sample() has more occluded keypoints: all are listed
        read_submission(train_csv)
    first = exc_info.value.problems[0]
    assert (first.path, first.row, first.column) == (train_csv, 2, "neckline_left")
    assert "'5_6_0': a submitted keypoint must be written x_y_1" in str(first)
    count = int((read_annotations(train_csv).keypoints[..., 2] == 0).sum())
    assert str(exc_info.value).startswith(f"{train_csv}: {count} problem(s):\n{first}\n")


# ----------------------------------------------------------------------------- validate_submission


@pytest.fixture
def submission(tmp_path, test_csv):
    """A valid submission for ``test_csv``: (test_csv, submission path)."""
    truth = sample()
    path = tmp_path / "submission.csv"
    write_submission(path, truth.image_ids, truth.categories, truth.keypoints[..., :2])
    return test_csv, path


def test_valid_submission_has_no_problems(submission):
    assert validate_submission(*submission) == []


def test_submission_with_wrong_header(submission):
    test_csv, path = submission
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("crotch", "crutch")
    path.write_text("\n".join(lines) + "\n")
    problems = validate_submission(test_csv, path)
    assert len(problems) == 1
    assert "submission.csv, row 1, column 'crotch': header column 22 is 'crutch', expected 'crotch'" in problems[0]


def test_submission_missing_extra_and_duplicate_images(submission):
    test_csv, path = submission
    lines = path.read_text().splitlines()
    extra = lines[2].replace("Images/outwear/0001.jpg", "Images/outwear/zzz.jpg")
    path.write_text("\n".join([lines[0], lines[1], extra, lines[3], lines[4], lines[5], lines[4]]) + "\n")
    problems = validate_submission(test_csv, path)
    assert problems == [
        f"{path}, row 3, column 'image_id': image_id 'Images/outwear/zzz.jpg' is not in {test_csv}",
        f"{path}, row 7, column 'image_id': duplicate image_id 'Images/skirt/0003.jpg' (first in row 5)",
        f"{path}, column 'image_id': image 'Images/outwear/0001.jpg' ({test_csv} row 3) is missing from the submission",
    ]


def test_submission_category_differs(submission):
    test_csv, path = submission
    set_cell(path, 4, "image_category", "blouse")
    problems = validate_submission(test_csv, path)
    assert problems[0] == (f"{path}, row 4, column 'image_category': "
                           f"image_category 'blouse' differs from 'dress' in {test_csv}")
    assert len(problems) == 1  # keypoints are checked against test.csv's category, dress


@pytest.mark.parametrize("column, cell, reason", [
    ("hemline_left", "7_8_0", "'7_8_0': a submitted keypoint must be written x_y_1"),
    ("hemline_left", "-1_-1_-1", "keypoint of category 'skirt' is missing (-1_-1_-1)"),
    ("hemline_left", "7_8", "'7_8' is not x_y_v"),
    ("hemline_left", "-7_8_1", "'-7_8_1': negative coordinate"),
    ("armpit_left", "7_8_1", "'7_8_1': this keypoint does not belong to category 'skirt'"),
])
def test_submission_keypoint_problems(submission, column, cell, reason):
    test_csv, path = submission
    set_cell(path, SKIRT_ROW, column, cell)
    problems = validate_submission(test_csv, path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}, row {SKIRT_ROW}, column {column!r}: ")
    assert reason in problems[0]


def test_submission_problems_are_all_listed_in_file_order(submission):
    test_csv, path = submission
    set_cell(path, 6, "crotch", "1_2_0")
    set_cell(path, 2, "crotch", "1_2_1")
    set_cell(path, 2, "neckline_left", "x")
    problems = validate_submission(test_csv, path)
    assert [p.split(":")[0] for p in problems] == [
        f"{path}, row 2, column 'neckline_left'", f"{path}, row 2, column 'crotch'", f"{path}, row 6, column 'crotch'"]


def test_submission_coordinates_outside_the_image(submission, tmp_path):
    test_csv, path = submission
    truth = sample()
    for image_id in truth.image_ids:  # 400 x 401 (H x W) images: x <= 400, y <= 399
        (tmp_path / image_id).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / image_id), np.zeros((400, 401, 3), np.uint8))
    set_cell(path, SKIRT_ROW, "hemline_right", "400_399_1")  # the last pixel centre: fine
    assert validate_submission(test_csv, path, image_root=tmp_path) == []
    set_cell(path, SKIRT_ROW, "hemline_right", "401_10_1")
    problems = validate_submission(test_csv, path, image_root=tmp_path)
    assert problems == [f"{path}, row {SKIRT_ROW}, column 'hemline_right': (401, 10) lies outside the image "
                        f"of 400×401 (H×W) pixels"]
