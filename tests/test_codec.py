"""Heatmap codec: round trips, the flip convention (x -> W - 1 - x), the border convention
([-1/2, W - 1/2]), DARK and quarter-pixel decoding."""
import numpy as np
import pytest
from _fashionai import flip_permutation

from fashion_gluon.codec import HeatmapCodec, decoding_error
from fashion_gluon.data import transforms as T
from fashion_gluon.families import CPN_FAMILY

SIZE = (64, 96)  # (H, W) input -> (16, 24) heatmaps at stride 4


def test_heatmap_size_and_indivisible_input():
    assert HeatmapCodec(SIZE).heatmap_size == (16, 24)
    assert HeatmapCodec((384, 288), stride=8).heatmap_size == (48, 36)
    with pytest.raises(ValueError, match=r"^input size \(H, W\) = \(64, 98\) is not divisible by the "
                                         r"heatmap stride 4$"):
        HeatmapCodec((64, 98))


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_encode_decode_round_trip_within_a_quarter_heatmap_pixel(sigma):
    codec = HeatmapCodec(SIZE, sigma=sigma, decode="quarter")
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
    codec = HeatmapCodec((20, 20), decode="quarter")
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


@pytest.mark.parametrize("decode, bound", [("quarter", 0.25), ("dark", 1.0)])
def test_decode_is_vectorized_over_leading_dims(decode, bound):
    codec = HeatmapCodec(SIZE, decode=decode)
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
    assert np.all(np.abs(codec.to_heatmap(decoded) - np.stack([ix, iy], -1)) <= bound)
    assert np.all((codec.to_heatmap(decoded) >= -0.5) & (codec.to_heatmap(decoded) <= [23.5, 15.5]))


def test_decode_rule_is_validated_and_shown():
    with pytest.raises(ValueError, match=r"^decode must be one of dark, quarter, got 'argmax'$"):
        HeatmapCodec(SIZE, decode="argmax")
    assert HeatmapCodec(SIZE).decoding == "dark"
    assert repr(CPN_FAMILY.codec(SIZE, 4, 2.0, decode="quarter")).endswith("decode='quarter')")


@pytest.mark.parametrize("size", [160, 256, 384])
@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0, 3.0])
def test_dark_decodes_exact_targets_within_a_twentieth_of_a_heatmap_pixel(sigma, size):
    """Centres at least 2σ inside the map; the ¼-pixel rule is 5× worse at best."""
    input_size = (size, size * 3 // 4)  # non-square: catches swapped axes
    dark, quarter = (HeatmapCodec(input_size, 4, sigma, decode=rule) for rule in ("dark", "quarter"))
    h, w = dark.heatmap_size
    rng = np.random.default_rng([int(10 * sigma), size])
    centres = rng.uniform(2 * sigma, np.array([w, h]) - 1 - 2 * sigma, (100, 2))  # heatmap (x, y)
    heatmaps, weights = dark.encode(dark.to_input(centres), np.ones(100))
    np.testing.assert_array_equal(weights, 1)
    error = np.abs(dark.to_heatmap(dark.decode(heatmaps[0])[0]) - centres)
    old_error = np.abs(quarter.to_heatmap(quarter.decode(heatmaps[0])[0]) - centres)
    assert error.max() < 0.05
    assert old_error.max() > 0.2 and old_error.mean() > 0.05


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0, 3.0])
def test_dark_decodes_centres_in_the_border_pixels(sigma):
    """Centres within the first/last heatmap pixel along x, y or both (corners), up to the frame's
    edge at −½ and w − ½: the Gaussian continuation past the border keeps them as exact as
    interior ones (0.05 heatmap px here; plain edge replication is off by up to 1.5 px)."""
    codec = HeatmapCodec((256, 192), 4, sigma)
    h, w = codec.heatmap_size
    rng = np.random.default_rng(int(10 * sigma))
    lo, hi = np.full(2, -0.5), np.array([w, h]) - 0.5
    depth = rng.uniform(0, 1, (60, 2))  # how far inside the border, ≤ one pixel
    border = np.where(rng.integers(0, 2, (60, 2)) == 1, hi - depth, lo + depth)
    anywhere = rng.uniform(lo, hi, (60, 2))
    centres = np.concatenate([
        np.stack([border[:20, 0], anywhere[:20, 1]], 1),  # first/last column
        np.stack([anywhere[20:40, 0], border[20:40, 1]], 1),  # first/last row
        border[40:],  # corners
        [lo, hi, [lo[0], hi[1]], [hi[0], lo[1]]],  # the frame's very edges
    ])
    heatmaps, weights = codec.encode(codec.to_input(centres), np.ones(len(centres)))
    np.testing.assert_array_equal(weights, 1)
    error = np.abs(codec.to_heatmap(codec.decode(heatmaps[0])[0]) - centres)
    assert error.max() < 0.05


def test_dark_keeps_peaks_centred_off_the_map_on_its_edge():
    codec = HeatmapCodec(SIZE)
    xs, ys = np.arange(24), np.arange(16)[:, None]
    off_map = np.stack([np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8) for cx, cy in [(-2.0, 7.3), (25.5, 15.9)]])
    decoded = codec.to_heatmap(codec.decode(off_map.astype(np.float32))[0])
    np.testing.assert_array_equal(decoded[:, 0], [-0.5, 23.5])  # the Newton step would leave the map
    np.testing.assert_allclose(decoded[:, 1], [7.3, 15.5], atol=0.05)


def test_flip_fused_heatmaps_decode_to_the_mirrored_point():
    """Exact arithmetic: flip_back(encode(mirrored p)) = encode(p), so the fused map is encode(p), and
    DARK is mirror-symmetric (symmetric kernel, continuation and stencil), so it decodes to the
    mirror of the mirrored frame's decode. In float32 the two maps may differ by one ulp
    (relative 2⁻²³); that moves log values by ≤ 2⁻²³ and the Newton step by ≤ 5·2σ²·2⁻²³ per
    axis (|∂²log| = 1/(2σ²) on the blurred target, step ≤ 1 px), doubled for the x–y coupling:
    tolerance 20σ²·2⁻²³ heatmap px (1.9e-5 input px here; measured 3e-14). Against p itself the
    bound is DARK's error on exact σ = 2 targets (3σ kernel truncation, measured 3e-6 heatmap px)."""
    perm = flip_permutation("blouse")
    codec = HeatmapCodec(SIZE, sigma=2.0)
    height, width = SIZE
    tolerance = 20 * codec.sigma ** 2 * 2.0 ** -23 * codec.stride
    for seed in range(10):
        points = np.random.default_rng(seed).uniform(-0.5, [width - 0.5, height - 0.5], (len(perm), 2))
        mirrored = points[perm] * (-1, 1) + (width - 1, 0)  # the keypoints of the mirrored image
        original, weights = codec.encode(points, np.ones(len(perm)))
        in_mirror, mirror_weights = codec.encode(mirrored, np.ones(len(perm)))
        assert weights.all() and mirror_weights.all()
        back = codec.flip_back(in_mirror[0], perm)
        np.testing.assert_allclose(back, original[0], rtol=2.0 ** -23, atol=0)
        fused, _ = codec.decode((original[0] + back) / 2)
        from_mirror = (codec.decode(in_mirror[0])[0] * (-1, 1) + (width - 1, 0))[perm]
        np.testing.assert_allclose(fused, from_mirror, rtol=0, atol=tolerance)
        np.testing.assert_allclose(fused, points, rtol=0, atol=1e-4 * codec.stride)


@pytest.mark.parametrize("decode", ["dark", "quarter"])
def test_flat_maps_decode_without_nan(decode):
    """No Newton step on an all-zero or all-negative map (the clamped log is flat); a positive
    constant map is flat too, except that DARK's continuation past the border falls off, which
    can move its corner argmax by at most the 1-pixel clip."""
    codec = HeatmapCodec(SIZE, decode=decode)
    maps = np.stack([np.zeros((16, 24)), np.full((16, 24), -2.0), np.full((16, 24), 0.7)]).astype(np.float32)
    points, scores = codec.decode(maps)
    assert np.isfinite(points).all()
    np.testing.assert_array_equal(points[:2], [[1.5, 1.5]] * 2)  # heatmap cell (0, 0)
    assert np.abs(codec.to_heatmap(points[2])).max() <= 1
    np.testing.assert_array_equal(scores, maps.reshape(3, -1).max(axis=1))
    spike = np.zeros((1, 16, 24), np.float32)
    spike[0, 7, 5] = 0.3  # a blur turns it into a Gaussian centred on the cell
    np.testing.assert_allclose(codec.decode(spike)[0], [[4 * 5 + 1.5, 4 * 7 + 1.5]], atol=1e-9)


def test_keypoints_on_the_first_and_last_pixels_survive_a_downscale():
    """x = 0 maps to (0 + ½)·W'/W − ½ < 0: still inside [−½, W' − ½], so weight 1 in the transforms and
    in the targets; points past −½ (or W − ½) are dropped, before and after the frame changes."""
    height, width = 120, 200
    corners = [[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1], [0, 60], [100, height - 1],
               [-0.45, -0.45], [width - 0.55, height - 0.55]]
    beyond = [[-0.51, 60], [100, height - 0.49]]
    keypoints = np.hstack([np.array(corners + beyond, float), np.ones((len(corners) + len(beyond), 1))])
    sample = T.Sample.from_image(np.zeros((height, width, 3), np.uint8), keypoints)
    np.testing.assert_array_equal(sample.weights, [1] * len(corners) + [0, 0])
    small = T.Resize((48, 80))(sample)
    np.testing.assert_array_equal(small.weights, sample.weights)
    np.testing.assert_allclose(small.keypoints[:2], [[-0.3, -0.3], [79.3, -0.3]])
    codec = HeatmapCodec((48, 80))
    heatmaps, weights = codec.encode(small.keypoints, small.weights)
    np.testing.assert_array_equal(weights, sample.weights)
    decoded, _ = codec.decode(heatmaps[0, :len(corners)])
    np.testing.assert_allclose(decoded, small.keypoints[:len(corners)], atol=0.05 * codec.stride)
    shifted = T.crop(sample, (1, 0, width, height))  # x = 0 → −1, x = −½ → −1.5: dropped
    np.testing.assert_array_equal(shifted.weights, [0, 1, 0, 1, 0, 1, 0, 1, 0, 0])


@pytest.mark.parametrize("codec", [HeatmapCodec(SIZE), HeatmapCodec(SIZE, 4, 1.5)], ids=["sigma 2", "sigma 1.5"])
def test_decoding_error_of_ideal_targets(codec):
    rng = np.random.default_rng(5)
    points = rng.uniform(-0.5, [SIZE[1] - 0.5, SIZE[0] - 0.5], (4, 6, 2))
    weights = np.ones((4, 6))
    weights[0, 0] = 0
    points[1, 2] = (-0.6, 10.0)  # outside the input
    errors = decoding_error(codec, points, weights)
    assert errors.shape == (4, 6, 2)
    invalid = np.zeros((4, 6), bool)
    invalid[0, 0] = invalid[1, 2] = True
    assert np.isnan(errors[invalid]).all() and np.isfinite(errors[~invalid]).all()
    assert np.abs(errors[~invalid]).max() < 0.05 * codec.stride
    quarter = HeatmapCodec(SIZE, codec.stride, codec.sigma, codec.sigma_factors, decode="quarter")
    assert np.nanmax(np.abs(decoding_error(quarter, points, weights))) > 0.15 * codec.stride


def test_decoding_error_needs_a_codec_of_one_target():
    with pytest.raises(ValueError, match=r"^decoding_error needs a codec of one target, got sigma_factors "
                                         r"\(2\.4, 1\.73, 1\.37, 1\.0, 1\.0\)$"):
        decoding_error(CPN_FAMILY.codec(SIZE, 4, 1.5), np.zeros((1, 2)), np.ones(1))
