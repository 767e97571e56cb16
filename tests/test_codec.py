"""Heatmap codec: round trips, the flip convention (x -> W - 1 - x), the quarter-pixel shift."""
import numpy as np
import pytest

from fashion_gluon.codec import HeatmapCodec
from fashion_gluon.families import CPN_FAMILY
from fashion_gluon.data import transforms as T
from fashion_gluon.schema import flip_permutation

SIZE = (64, 96)  # (H, W) input -> (16, 24) heatmaps at stride 4


def test_heatmap_size_and_indivisible_input():
    assert HeatmapCodec(SIZE).heatmap_size == (16, 24)
    assert HeatmapCodec((384, 288), stride=8).heatmap_size == (48, 36)
    with pytest.raises(ValueError, match=r"^input size \(H, W\) = \(64, 98\) is not divisible by the "
                                         r"heatmap stride 4$"):
        HeatmapCodec((64, 98))


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_encode_decode_round_trip_within_a_quarter_heatmap_pixel(sigma):
    codec = HeatmapCodec(SIZE, sigma=sigma)
    rng = np.random.default_rng(int(sigma))
    keypoints = rng.uniform(6, np.array([SIZE[1], SIZE[0]]) - 7, (50, 2))
    heatmaps, weights = codec.encode(keypoints, np.ones(50))
    assert heatmaps.shape == (1, 50, 16, 24) and heatmaps.dtype == np.float32
    np.testing.assert_array_equal(weights, 1)
    decoded, scores = codec.decode(heatmaps[0])
    error = np.abs(codec.to_heatmap(decoded) - codec.to_heatmap(keypoints))
    assert error.max() <= 0.25 + 1e-9  # per axis, so ≤ 0.36 heatmap px in distance
    np.testing.assert_allclose(scores, heatmaps[0].max(axis=(1, 2)))


def test_peak_value_and_known_gaussian_values():
    codec = HeatmapCodec(SIZE, sigma=2.0)
    heatmaps, _ = codec.encode([[4 * 5 + 1.5, 4 * 7 + 1.5]], [1])  # heatmap cell (x, y) = (5, 7)
    hm = heatmaps[0, 0]
    assert hm[7, 5] == 1.0 and hm.argmax() == 7 * 24 + 5
    np.testing.assert_allclose(hm[7, 8], np.exp(-9 / 8), rtol=1e-6)
    np.testing.assert_allclose(hm[9, 4], np.exp(-5 / 8), rtol=1e-6)


def test_mirroring_columns_is_the_image_flip():
    codec = HeatmapCodec(SIZE, sigma=1.5)
    keypoints = np.random.default_rng(0).uniform(0, 60, (7, 2))
    flipped = keypoints * (-1, 1) + (SIZE[1] - 1, 0)
    mirrored = codec.encode(keypoints, np.ones(7))[0][..., ::-1]
    np.testing.assert_allclose(mirrored, codec.encode(flipped, np.ones(7))[0], atol=1e-6)


def test_flip_back_then_decode_gives_the_flipped_keypoints_exactly():
    perm = flip_permutation("blouse")
    codec = HeatmapCodec(SIZE)
    cells = np.random.default_rng(1).integers(1, (23, 15), (len(perm), 2))
    keypoints = cells * 4 + 1.5  # on heatmap cell centres: decoding is exact
    heatmaps, _ = codec.encode(keypoints, np.ones(len(perm)))
    decoded, _ = codec.decode(codec.flip_back(heatmaps, perm))
    expected = keypoints[perm] * (-1, 1) + (SIZE[1] - 1, 0)
    np.testing.assert_allclose(decoded[0], expected, atol=1e-9)
    with pytest.raises(ValueError, match="does not fit heatmaps"):
        codec.flip_back(heatmaps, perm[:-1])


def test_flip_back_matches_the_transforms_flip():
    perm = flip_permutation("trousers")
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 63, (len(perm), 2))
    sample = T.Sample.from_image(np.zeros(SIZE + (3,), np.uint8), np.hstack([xy, np.ones((len(perm), 1))]), perm)
    codec = CPN_FAMILY.codec(SIZE, 4, 2.0)
    flipped = T.hflip(sample)
    np.testing.assert_allclose(codec.flip_back(codec.encode(sample.keypoints, sample.weights)[0], perm),
                               codec.encode(flipped.keypoints, flipped.weights)[0], atol=1e-6)


def test_quarter_pixel_shift_toward_the_larger_neighbour():
    codec = HeatmapCodec((20, 20))
    hm = np.zeros((1, 5, 5))
    hm[0, 2, 1:4] = (0.2, 1.0, 0.6)  # right neighbour larger: x_h = 2.25
    hm[0, 1, 2], hm[0, 3, 2] = 0.5, 0.1  # upper neighbour larger: y_h = 1.75
    decoded, scores = codec.decode(hm)
    np.testing.assert_allclose(decoded, [[(2.25 + 0.5) * 4 - 0.5, (1.75 + 0.5) * 4 - 0.5]])
    np.testing.assert_allclose(scores, [1.0])
    edge = np.zeros((1, 5, 5))
    edge[0, 0, 1:4] = (0.2, 1.0, 0.9)
    edge[0, 1, 2] = 0.8  # on the top border: x shifts, y cannot
    np.testing.assert_allclose(codec.decode(edge)[0], [[(2.25 + 0.5) * 4 - 0.5, 1.5]])
    left = np.zeros((1, 5, 5))
    left[0, 1:4, 0] = (0.3, 1.0, 0.2)
    left[0, 2, 1] = 0.9  # on the left border: y shifts, x cannot
    np.testing.assert_allclose(codec.decode(left)[0], [[1.5, (1.75 + 0.5) * 4 - 0.5]])
    tie = np.zeros((1, 5, 5))
    tie[0, 2, 1:4] = (0.5, 1.0, 0.5)
    np.testing.assert_allclose(codec.decode(tie)[0], [[9.5, 9.5]])


def test_zero_weight_and_invalid_keypoints_give_empty_channels():
    codec = HeatmapCodec(SIZE, sigma_factors=(1.0, 2.0))
    keypoints = np.array([[10, 10], [20, 20], [np.nan, np.nan], [96, 5], [30, 30]], dtype=float)
    heatmaps, weights = codec.encode(keypoints, [1, 0, 1, 1, 0.5])
    np.testing.assert_array_equal(weights, [1, 0, 0, 0, 0.5])
    assert not np.isnan(heatmaps).any()
    np.testing.assert_array_equal(heatmaps.max(axis=(2, 3)) > 0.5, [[1, 0, 0, 0, 1]] * 2)
    assert np.all(heatmaps[:, 1:4] == 0)


def test_cpn_targets_widen_coarse_to_fine():
    codec = CPN_FAMILY.codec(SIZE, 4, 2.0)
    np.testing.assert_allclose(codec.sigmas, [4.8, 3.46, 2.74, 2.0, 2.0])
    heatmaps, _ = codec.encode([[4 * 10 + 1.5, 4 * 8 + 1.5]], [1])
    assert heatmaps.shape == (5, 1, 16, 24)
    at_two = heatmaps[:, 0, 8, 12]  # 2 heatmap px right of the peak
    assert np.all(np.diff(at_two[:4]) < 0) and at_two[3] == at_two[4]
    np.testing.assert_allclose(at_two, np.exp(-4 / (2 * codec.sigmas ** 2)), rtol=1e-6)
    np.testing.assert_array_equal(heatmaps[:, 0, 8, 10], 1.0)


def test_decode_is_vectorized_over_leading_dims():
    codec = HeatmapCodec(SIZE)
    rng = np.random.default_rng(3)
    batch = rng.random((3, 4, 16, 24)).astype(np.float32)
    decoded, scores = codec.decode(batch)
    assert decoded.shape == (3, 4, 2) and scores.shape == (3, 4)
    for b in range(3):
        single, single_scores = codec.decode(batch[b])
        np.testing.assert_array_equal(decoded[b], single)
        np.testing.assert_array_equal(scores[b], single_scores)
    flat = batch.reshape(3, 4, -1)
    np.testing.assert_array_equal(scores, flat.max(axis=-1))
    iy, ix = np.divmod(flat.argmax(axis=-1), 24)
    assert np.all(np.abs(codec.to_heatmap(decoded) - np.stack([ix, iy], -1)) <= 0.25)
