"""Keypoint scores: the fused heatmap's maximum, from the decoder through the predictor."""
import numpy as np
from _fashionai import CATEGORY_KEYPOINTS
from test_predict import CORNERS, SKIRT, block_image, dot_model, skirt_points

from fashion_gluon.codec import HeatmapCodec
from fashion_gluon.inference.predictor import Predictor


def test_a_point_on_a_sharp_peak_scores_higher_than_one_on_a_flat_map():
    codec = HeatmapCodec((64, 64), 4, 2.0)
    sharp, _ = codec.encode(np.array([[29.5, 21.5]]), np.ones(1))  # peak exactly 1 on cell (7, 5)
    flat = np.full((1, 16, 16), sharp.sum() / 256, np.float32)  # the same mass spread evenly
    _, scores = codec.decode(np.concatenate([sharp[0], flat]))
    assert scores.tolist() == [1.0, float(flat[0, 0, 0])]
    assert scores[0] > scores[1]


def test_the_predictor_returns_each_points_score_with_its_coordinates():
    image = block_image((64, 64), CORNERS)
    image[CORNERS[3][1]:CORNERS[3][1] + 4, CORNERS[3][0]:CORNERS[3][0] + 4] = (102, 0, 0)  # a dim fourth block
    predictor = Predictor([dot_model()], flip=True)
    scored = predictor.predict([image, image], SKIRT, scores=True)
    assert scored.shape == (2, 24, 3)
    np.testing.assert_array_equal(scored[..., :2], predictor.predict([image, image], SKIRT))
    np.testing.assert_allclose(skirt_points(scored)[..., 2], [[1.0, 1.0, 1.0, 0.4]] * 2, rtol=0, atol=1e-7)
    outside = np.ones(24, bool)
    outside[list(CATEGORY_KEYPOINTS[SKIRT])] = False
    assert (scored[:, outside] == -1).all()
    rows, none, skipped = predictor.predict_files([], SKIRT, scores=True)
    assert none.shape == (0, 24, 3) and skipped == []


def test_overlays_write_each_points_score_beside_it():
    from fashion_gluon.schema import load_schema
    from fashion_gluon.visualize import draw_keypoints

    image = np.zeros((96, 96, 3), np.uint8)
    points = np.full((24, 2), 30.0)
    plain = draw_keypoints(image, points, SKIRT, schema=load_schema())
    scored = draw_keypoints(image, points, SKIRT, schema=load_schema(), scores=np.full(24, 0.87))
    changed = np.argwhere((plain != scored).any(axis=2))
    assert len(changed) and changed[:, 1].min() > 30  # the text starts right of the point
