"""Transforms: keypoints move exactly with the pixels, flips swap the right channels,
weights only ever drop, and the composed matrix inverts exactly."""
from dataclasses import replace

import cv2
import numpy as np
import pytest
from _fashionai import CATEGORY_KEYPOINTS, KEYPOINT_NAMES, flip_permutation

from fashion_gluon.data import transforms as T

H, W = 301, 457  # a non-square original image
OUT = (160, 224)
# 6 keypoints (x, y, v); (0, 1) and (2, 3) are left/right pairs, 4 and 5 are central.
DOTS = np.array([[120.0, 80.0, 1], [330.0, 95.0, 1], [95.0, 210.0, 0],
                 [350.0, 230.0, 1], [228.0, 150.0, 1], [230.0, 260.0, 1]])
DOT_PERM = np.array([1, 0, 3, 2, 4, 5])


def gaussian_dot(x: float, y: float, sigma: float = 2.5) -> np.ndarray:
    """A dark (H, W, 3) uint8 image with one bright Gaussian blob centred at (x, y)."""
    xs, ys = np.arange(W), np.arange(H)
    blob = np.exp(-((xs[None, :] - x) ** 2 + (ys[:, None] - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(np.rint(255 * blob).astype(np.uint8)[..., None], 3, axis=2)


def centroid(image: np.ndarray) -> np.ndarray:
    """(x, y) intensity centroid of channel 0."""
    mass = image[..., 0].astype(np.float64)
    ys, xs = np.indices(mass.shape)
    return np.array([(xs * mass).sum(), (ys * mass).sum()]) / mass.sum()


def blouse_sample(rng: np.random.Generator, size=(120, 160)) -> T.Sample:
    """A random image with the 13 blouse keypoints, all visible, well inside."""
    image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    k = len(CATEGORY_KEYPOINTS["blouse"])
    xy = rng.uniform(10, np.array([size[1], size[0]]) - 10, (k, 2))
    return T.Sample.from_image(image, np.hstack([xy, np.ones((k, 1))]), flip_permutation("blouse"))


def test_dot_centroids_follow_keypoints_through_random_geometry():
    dots = [gaussian_dot(x, y) for x, y, _ in DOTS]
    base = T.Sample.from_image(np.zeros((H, W, 3), np.uint8), DOTS, DOT_PERM)
    geometry = T.Compose([T.RandomRotate(p=0.7), T.RandomCrop(), T.Resize(OUT), T.RandomFlip()])
    checked, flips, rotations = 0, 0, 0
    for seed in range(40):
        moved = geometry(base, np.random.default_rng(seed))
        flips += moved.flipped
        rotations += not np.isclose(moved.matrix[0, 1], 0)
        for k in range(len(DOTS)):
            j = DOT_PERM[k] if moved.flipped else k
            x, y = moved.keypoints[j]
            if moved.weights[j] == 0 or not (8 <= x <= OUT[1] - 9 and 8 <= y <= OUT[0] - 9):
                continue
            warped = T.Warp()(replace(moved, image=dots[k]))
            np.testing.assert_allclose(centroid(warped.image), moved.keypoints[j], atol=1.0,
                                       err_msg=f"seed {seed} dot {k}")
            checked += 1
    assert checked > 150 and 5 < flips < 35 and 5 < rotations < 40


def test_random_crop_keeps_every_weighted_keypoint_with_its_margin():
    base = T.Sample.from_image(np.zeros((H, W, 3), np.uint8), DOTS, DOT_PERM)
    op = T.RandomCrop(margin=25)
    sizes = set()
    for seed in range(50):
        out = op(base, np.random.default_rng(seed))
        sizes.add(out.size)
        np.testing.assert_array_equal(out.weights, base.weights)
        assert out.keypoints.min() >= 25
        assert np.all(out.keypoints <= np.array([out.size[1], out.size[0]]) - 1 - 25)
        np.testing.assert_allclose(T.inverse_transform_points(out.keypoints, out.matrix), DOTS[:, :2])
    assert len(sizes) > 10


def test_random_crop_above_the_frame_area_zooms_out_with_the_frame_inside_the_box():
    image = np.full((100, 100, 3), 255, np.uint8)
    sample = T.Sample.from_image(image, [[20, 30, 1], [70, 80, 1]])
    op = T.RandomCrop(area=(4.0, 4.0), aspect=(1.0, 1.0), margin=10)
    starts = set()
    for seed in range(30):
        x0, y0, x1, y1 = op.sample_box(sample, np.random.default_rng(seed))
        assert (x1 - x0, y1 - y0) == (200, 200) and -100 <= x0 <= 0 and -100 <= y0 <= 0
        starts.add((x0, y0))
        out = T.Warp((0.0, 0.0, 0.0))(op(sample, np.random.default_rng(seed)))
        np.testing.assert_allclose(out.keypoints, [[20 - x0, 30 - y0], [70 - x0, 80 - y0]])
        np.testing.assert_array_equal(out.weights, [1, 1])
        frame = out.image[-y0:-y0 + 100, -x0:-x0 + 100]  # the image, whole, inside the border's fill
        assert frame.min() == 255 and out.image.sum() == 255 * 3 * 100 * 100
    assert len(starts) > 20
    flat = T.Sample.from_image(image, [[20, 40, 1], [70, 60, 1]])  # rows 30-70 with the margin
    wide = T.RandomCrop(area=(1.2, 1.2), aspect=(2.5, 2.5), margin=10)  # 173 x 69: longer than the frame in x only
    for seed in range(10):
        x0, y0, x1, y1 = wide.sample_box(flat, np.random.default_rng(seed))
        assert (x1 - x0, y1 - y0) == (173, 69) and -73 <= x0 <= 0 and 2 <= y0 <= 30


def test_random_crop_falls_back_to_the_keypoint_box_or_the_whole_frame():
    image = np.zeros((300, 300, 3), np.uint8)
    spread = T.Sample.from_image(image, [[100, 50, 1], [200, 150, 1], [5, 5, -1]])
    tiny = T.RandomCrop(area=(0.01, 0.01), margin=10)
    assert tiny.sample_box(spread, np.random.default_rng(0)) == (90, 40, 211, 161)
    out = tiny(spread, np.random.default_rng(0))
    assert out.size == (121, 121)
    np.testing.assert_allclose(out.keypoints[:2], [[10, 10], [110, 110]])
    too_wide = T.RandomCrop(aspect=(4.0, 4.0))
    assert too_wide.sample_box(T.Sample.from_image(image), np.random.default_rng(0)) == (0, 0, 300, 300)


def test_crop_zeroes_keypoints_outside_and_absent_ones_stay_zero():
    image = np.zeros((100, 100, 3), np.uint8)
    sample = T.Sample.from_image(image, [[10, 10, 1], [50, 50, 0], [90, 90, 1], [40, 60, -1]])
    np.testing.assert_array_equal(sample.weights, [1, 1, 1, 0])
    out = T.crop(sample, (30, 30, 80, 80))
    np.testing.assert_array_equal(out.weights, [0, 1, 0, 0])
    np.testing.assert_allclose(out.keypoints, [[-20, -20], [20, 20], [60, 60], [10, 30]])
    out = T.hflip(T.resize(T.rotate(out, 10), (64, 64)))
    np.testing.assert_array_equal(out.weights, [0, 1, 0, 0])
    assert 0 <= out.keypoints[3].min() and out.keypoints[3].max() <= 63  # inside, still ignored


def test_from_image_weights_and_errors():
    sample = T.Sample.from_image(np.zeros((10, 20, 3), np.uint8),
                                 [[0, 0, 1], [19, 9, 0], [20, 5, 1], [-1, -1, -1]])
    np.testing.assert_array_equal(sample.weights, [1, 1, 0, 0])
    np.testing.assert_array_equal(sample.visibility, [1, 0, 1, -1])
    with pytest.raises(ValueError, match=r"^image must be uint8 \(H, W, 3\), got float32 \(10, 20, 3\)$"):
        T.Sample.from_image(np.zeros((10, 20, 3), np.float32))
    with pytest.raises(ValueError, match=r"^flip_perm must have shape \(1,\), got \(2,\)$"):
        T.Sample.from_image(np.zeros((10, 20, 3), np.uint8), [[1, 1, 1]], [1, 0])


def test_flip_twice_is_identity():
    sample = blouse_sample(np.random.default_rng(3))
    sample.weights[[1, 4]] = 0
    sample.visibility[[1, 4]] = (-1, 0)
    twice = T.hflip(T.hflip(sample))
    np.testing.assert_allclose(twice.keypoints, sample.keypoints, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(twice.weights, sample.weights)
    np.testing.assert_array_equal(twice.visibility, sample.visibility)
    np.testing.assert_array_equal(twice.matrix, np.eye(3))
    assert not twice.flipped and T.hflip(sample).flipped
    np.testing.assert_array_equal(T.Warp()(twice).image, sample.image)
    resized = T.resize(sample, (96, 128))
    np.testing.assert_allclose(T.hflip(T.hflip(resized)).matrix, resized.matrix, atol=1e-12)


def test_flip_mirrors_pixels_and_swaps_exactly_the_blouse_pairs():
    sample = blouse_sample(np.random.default_rng(4))
    local = {name: i for i, name in enumerate(KEYPOINT_NAMES[g] for g in CATEGORY_KEYPOINTS["blouse"])}
    sample.visibility[local["neckline_left"]] = 0
    flipped = T.hflip(sample)
    assert flipped.visibility[local["neckline_right"]] == 0 and flipped.visibility[local["neckline_left"]] == 1
    x, y = sample.keypoints[local["neckline_left"]]
    np.testing.assert_allclose(flipped.keypoints[local["neckline_right"]], [160 - 1 - x, y])
    x, y = sample.keypoints[local["center_front"]]
    np.testing.assert_allclose(flipped.keypoints[local["center_front"]], [160 - 1 - x, y])
    perm = sample.flip_perm
    moved = np.flatnonzero(perm != np.arange(len(perm)))
    assert {KEYPOINT_NAMES[CATEGORY_KEYPOINTS["blouse"][i]] for i in moved} == set(local) - {"center_front"}
    np.testing.assert_array_equal(flipped.weights, sample.weights[perm])
    np.testing.assert_array_equal(T.Warp()(flipped).image, sample.image[:, ::-1])


def test_flip_after_resize_mirrors_the_rendered_image():
    """Up to OpenCV's 1/32-pixel fixed-point sampling (hence a smooth image)."""
    sample = blouse_sample(np.random.default_rng(5))
    smooth = T.resize(replace(sample, image=cv2.GaussianBlur(sample.image, (0, 0), 4)), (75, 99))
    plain, mirrored = T.Warp()(smooth).image, T.Warp()(T.hflip(smooth)).image
    assert np.abs(plain[:, ::-1].astype(int) - mirrored.astype(int)).max() <= 1


def test_rotate_90_degrees_known_point_and_pixel():
    image = np.zeros((5, 5, 3), np.uint8)
    image[2, 4] = 255  # the pixel at (x, y) = (4, 2)
    out = T.Warp()(T.rotate(T.Sample.from_image(image, [[4, 2, 1]]), 90))
    np.testing.assert_allclose(out.keypoints, [[2, 0]], atol=1e-9)
    assert np.unravel_index(out.image[..., 0].argmax(), (5, 5)) == (0, 2)
    assert out.image[0, 2, 0] >= 254


def test_resize_maps_pixel_centres_and_letterboxes():
    image = np.full((100, 200, 3), 255, np.uint8)
    sample = T.Sample.from_image(image, [[0, 0, 1], [199, 99, 1], [99.5, 49.5, 1]])
    plain = T.resize(sample, (50, 100))
    np.testing.assert_allclose(plain.keypoints, [[-0.25, -0.25], [99.25, 49.25], [49.5, 24.5]])
    boxed = T.resize(sample, (100, 100), keep_aspect=True)
    np.testing.assert_allclose(boxed.keypoints, [[-0.25, 24.75], [99.25, 74.25], [49.5, 49.5]])
    rendered = T.Warp(border_value=(10, 20, 30))(boxed).image
    assert np.all(rendered[25:75] == 255)
    assert np.all(rendered[:25] == (10, 20, 30)) and np.all(rendered[75:] == (10, 20, 30))


def test_inverse_transform_points_undoes_the_composed_matrix():
    base = T.Sample.from_image(np.zeros((H, W, 3), np.uint8), DOTS, DOT_PERM)
    geometry = T.Compose([T.RandomRotate(p=1.0), T.RandomCrop(), T.Resize(OUT), T.RandomFlip()])
    for seed in range(20):
        out = geometry(base, np.random.default_rng(seed))
        original = DOTS[DOT_PERM, :2] if out.flipped else DOTS[:, :2]
        np.testing.assert_allclose(T.inverse_transform_points(out.keypoints, out.matrix), original, atol=1e-4)
        batch = np.stack([out.keypoints, out.keypoints])
        np.testing.assert_allclose(T.inverse_transform_points(batch, out.matrix[:2]), [original] * 2, atol=1e-4)


def test_distort_color_known_values():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(T.distort_color(image, 0, 1, 0, 1), image)
    grey = np.full((4, 4, 3), 100, np.uint8)
    np.testing.assert_array_equal(T.distort_color(grey, 0, 1.4, 0.15, 1), grey)
    np.testing.assert_array_equal(T.distort_color(grey, 10, 1, 0, 1.5), grey + 10)
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    np.testing.assert_array_equal(T.distort_color(red, 0, 1, 1 / 3, 1), np.roll(red, 1, axis=2))
    np.testing.assert_array_equal(T.distort_color(red, 0, 0, 0, 1), np.full_like(red, round(0.299 * 200)))
    flat = T.distort_color(image, 0, 1, 0, 0)
    np.testing.assert_allclose(flat[0, 0], image.reshape(-1, 3).mean(axis=0), atol=0.5)
    assert np.all(flat == flat[0, 0])
    np.testing.assert_array_equal(T.distort_color(np.full((2, 2, 3), 250, np.uint8), 20, 1, 0, 1), 255)


def test_color_distort_is_reproducible_and_needs_the_warped_image():
    sample = T.Warp()(blouse_sample(np.random.default_rng(1)))
    a = T.ColorDistort()(sample, np.random.default_rng(7)).image
    b = T.ColorDistort()(sample, np.random.default_rng(7)).image
    c = T.ColorDistort()(sample, np.random.default_rng(8)).image
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 1
    with pytest.raises(RuntimeError, match="put it after Warp"):
        T.ColorDistort()(blouse_sample(np.random.default_rng(1)), np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="geometric transforms must come before Warp"):
        T.hflip(sample)


def test_normalize_known_values():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = (171, 163, 160)
    image[1, 2] = (200, 100, 50)
    out = T.normalize_image(image, (171, 163, 160), (10, 20, 50))
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], 0)
    np.testing.assert_allclose(out[:, 1, 2], [2.9, -3.15, -2.2], rtol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1], [-17.1, -8.15, -3.2], rtol=1e-6)


def test_train_transform_is_reproducible_per_seed():
    sample = blouse_sample(np.random.default_rng(2), size=(200, 150))
    pipeline = T.train_transform((64, 48))
    a, b = pipeline(sample, np.random.default_rng(11)), pipeline(sample, np.random.default_rng(11))
    assert a.image.shape == (3, 64, 48) and a.image.dtype == np.float32
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    others = [pipeline(sample, np.random.default_rng(s)) for s in range(12, 20)]
    assert any(not np.array_equal(o.keypoints, a.keypoints) for o in others)
    for out in [a] + others:
        inside = out.keypoints[out.weights > 0]
        assert np.all((inside >= -0.5) & (inside <= [47.5, 63.5]))


def test_train_transform_without_randomness_equals_test_transform():
    sample = blouse_sample(np.random.default_rng(9), size=(200, 150))
    still = T.train_transform((64, 48), rotate_p=0, flip_p=0, crop_area=(1, 1), crop_aspect=(0.75, 0.75),
                              color=False)
    assert [type(op).__name__ for op in still.ops] == [
        "RandomRotate", "RandomCrop", "Resize", "RandomFlip", "Warp", "Normalize"]
    a, b = still(sample, np.random.default_rng(0)), T.test_transform((64, 48))(sample)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-9)


def test_test_transform_is_deterministic_and_invertible():
    sample = blouse_sample(np.random.default_rng(6), size=(90, 130))
    pipeline = T.test_transform((64, 96))
    out = pipeline(sample)
    np.testing.assert_array_equal(out.image, pipeline(sample).image)
    assert out.image.shape == (3, 64, 96) and not out.flipped
    np.testing.assert_allclose(T.inverse_transform_points(out.keypoints, out.matrix), sample.keypoints, atol=1e-9)
