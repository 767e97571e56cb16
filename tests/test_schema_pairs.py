"""Schemas from COCO files: flip pairs from left/right names (or no flips), OKS sigmas."""
import json

import numpy as np
import pytest

from fashion_gluon.data.coco import read_coco
from fashion_gluon.errors import ConfigError
from fashion_gluon.schema import DEFAULT_OKS_SIGMA, KeypointSchema, flip_note, left_right_pairs


def test_names_pair_by_a_side_word_of_their_own_anywhere_in_any_case():
    names = ["left_x", "right_x", "l_y", "r_y", "z_left", "z_right", "LeftEye", "RightEye", "L-ear", "R-ear",
             "lip", "rip", "centre", "left_only", "leftover", "rightover", "TOP_L", "TOP_R"]
    assert left_right_pairs(names) == (("left_x", "right_x"), ("l_y", "r_y"), ("z_left", "z_right"),
                                       ("LeftEye", "RightEye"), ("L-ear", "R-ear"), ("TOP_L", "TOP_R"))
    assert left_right_pairs(["right_a", "left_a"]) == (("right_a", "left_a"),)
    assert left_right_pairs(["nose", "tail", "lip"]) == ()


def test_a_pair_that_would_leave_a_category_is_dropped():
    names = ["left_a", "right_a", "left_b", "right_b"]
    assert left_right_pairs(names, [["left_a", "right_a", "left_b"], ["right_b"]]) == (("left_a", "right_a"),)


def test_the_note_is_one_line_either_way():
    assert flip_note("f.json", (("l_x", "r_x"),)) == "f.json: flip pairs by left/right names: l_x/r_x"
    off = flip_note("f.json", ())
    assert "\n" not in off and "flip augmentation and flip test are off" in off


def coco_file(path, names):
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                                 "keypoints": [5, 5, 2] * len(names)}],
                                "categories": [{"id": 1, "name": "thing", "keypoints": names}]}))
    return path


def test_a_coco_file_without_schema_gets_its_pairs_or_no_flips(tmp_path, capsys):
    paired = read_coco(coco_file(tmp_path / "paired.json", ["left_hand", "right_hand", "nose"])).schema
    assert paired.flip_pairs == ((0, 1),) and paired.flippable
    assert capsys.readouterr().err == f"{tmp_path / 'paired.json'}: flip pairs by left/right names: left_hand/right_hand\n"
    plain = read_coco(coco_file(tmp_path / "plain.json", ["nose", "tail"])).schema
    assert plain.flip_pairs == () and not plain.flippable
    assert capsys.readouterr().err == flip_note(str(tmp_path / "plain.json"), ()) + "\n"
    assert KeypointSchema.from_dict(plain.to_dict()) == plain  # kept in a run's schema.yaml


def test_sigmas_come_from_the_schema_with_a_default_elsewhere():
    doc = {"keypoints": ["a", "b", "c"], "categories": {"x": {"keypoints": ["a", "b", "c"]}}, "sigmas": {"b": 0.07}}
    schema = KeypointSchema.from_dict(doc)
    np.testing.assert_array_equal(schema.oks_sigmas([0, 1, 2]), [DEFAULT_OKS_SIGMA, 0.07, DEFAULT_OKS_SIGMA])
    assert KeypointSchema.from_dict(schema.to_dict()) == schema
    with pytest.raises(ConfigError, match="'sigmas' must map keypoint names to positive numbers"):
        KeypointSchema.from_dict({**doc, "sigmas": {"b": 0}})
    with pytest.raises(ConfigError, match="sigmas: unknown keypoint 'd'"):
        KeypointSchema.from_dict({**doc, "sigmas": {"d": 0.1}})


def test_the_predictor_never_mirrors_images_of_a_schema_that_is_not_flippable():
    import dataclasses

    from test_predict import dot_model

    from fashion_gluon.inference.predictor import Predictor

    model = dot_model()
    assert Predictor([model], flip=True).flip
    sideless = dataclasses.replace(model, schema=dataclasses.replace(model.schema, flippable=False))
    assert not Predictor([sideless], flip=True).flip
