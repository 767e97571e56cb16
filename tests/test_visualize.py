"""Drawing helpers: shapes, pixels at keypoints, and files that cv2 reads back."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from _fashionai import KEYPOINT_NAMES

from fashion_gluon.visualize import (
    TRUTH_COLOR,
    default_radius,
    draw_comparison,
    draw_keypoints,
    error_color,
    gallery,
    heatmap_montage,
    plot_curves,
    plot_per_keypoint,
    save_image,
)

K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
GREY = 128


def grey(h: int = 120, w: int = 160) -> np.ndarray:
    return np.full((h, w, 3), GREY, dtype=np.uint8)


def skirt_points() -> np.ndarray:
    """Skirt keypoints far apart: waistband (30, 20) v1 and (130, 20) v1,
    hemline_left (30, 100) v0, hemline_right absent; a trousers point that must not show."""
    kps = np.full((24, 3), -1.0)
    kps[K["waistband_left"]] = (30, 20, 1)
    kps[K["waistband_right"]] = (130, 20, 1)
    kps[K["hemline_left"]] = (30, 100, 0)
    kps[K["crotch"]] = (80, 60, 1)  # not a skirt keypoint
    kps[K["hemline_right"]] = (130, 100, -1)
    return kps


def changed(a: np.ndarray, b: np.ndarray, x: int, y: int) -> bool:
    return bool((a[y, x] != b[y, x]).any())


def near(pixel: np.ndarray, color: tuple[int, int, int], tol: int = 16) -> bool:
    """An anti-aliased pixel within ``tol`` of ``color`` in every channel."""
    return bool((np.abs(pixel.astype(int) - color) <= tol).all())


def test_default_radius_scales_with_image():
    assert default_radius(grey(120, 160)) == 2
    assert default_radius(grey(512, 700)) == 5


def test_draw_keypoints_marks_only_the_category():
    image = grey()
    out = draw_keypoints(image, skirt_points(), "skirt", color=(255, 0, 0), radius=4, skeleton=False)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == GREY).all()  # the input is untouched
    assert tuple(out[20, 30]) == (255, 0, 0) and tuple(out[20, 130]) == (255, 0, 0)
    assert not changed(out, image, 30, 100)  # occluded: hollow centre ...
    assert changed(out, image, 34, 100)  # ... and a ring at the radius
    assert not changed(out, image, 130, 100)  # absent
    assert not changed(out, image, 80, 60)  # another category's point
    assert not changed(out, image, 80, 20)  # no skeleton asked
    touched = np.argwhere((out != image).any(axis=2))
    assert touched[:, 0].min() >= 20 - 8 and touched[:, 0].max() <= 100 + 8


def test_draw_keypoints_skeleton_and_two_column_points():
    image = grey()
    with_lines = draw_keypoints(image, skirt_points(), "skirt", color=(0, 0, 255), radius=3)
    assert near(with_lines[20, 80], (0, 0, 255))  # waistband_left — waistband_right
    assert changed(with_lines, image, 30, 60)  # waistband_left — hemline_left (occluded but annotated)
    xy = skirt_points()[:, :2]
    all_visible = draw_keypoints(image, xy, "skirt", radius=3, skeleton=False)
    assert changed(all_visible, image, 30, 100) and changed(all_visible, image, 130, 100)


def test_draw_keypoints_grayscale_and_bad_input():
    gray = np.full((50, 60), 7, dtype=np.uint8)
    out = draw_keypoints(gray, skirt_points() / 3, "skirt")
    assert out.shape == (50, 60, 3)
    with pytest.raises(ValueError, match="image must be uint8, got float64"):
        draw_keypoints(grey().astype(float), skirt_points(), "skirt")
    with pytest.raises(ValueError, match=r"keypoints must have shape \(24, 3\) or \(24, 2\) "
                                         r"\(schema 'fashionai'\), got \(13, 3\)"):
        draw_keypoints(grey(), np.zeros((13, 3)), "blouse")


@pytest.mark.parametrize("ratio, color", [
    (0.0, (0, 255, 0)), (0.1, (255, 255, 0)), (0.05, (128, 255, 0)), (0.2, (255, 0, 0)),
    (3.0, (255, 0, 0)), (float("nan"), (160, 160, 160)),
])
def test_error_color(ratio, color):
    assert error_color(ratio) == color


def test_draw_comparison_colours_by_error():
    image = grey()
    truth = skirt_points()
    pred = truth[:, :2].copy()
    pred[K["waistband_left"]] = (30, 60)  # d = 40, s = 100: ratio 0.4 -> red
    pred[K["waistband_right"]] = (135, 20)  # d = 5: ratio 0.05
    out = draw_comparison(image, pred, truth, "skirt", radius=3)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert tuple(out[20, 30]) == TRUTH_COLOR
    assert tuple(out[60, 30]) == (255, 0, 0)
    assert tuple(out[20, 135]) == error_color(0.05)
    assert near(out[40, 30], (255, 0, 0))  # the line joining the pair
    assert not changed(out, image, 80, 60)  # crotch is not a skirt keypoint
    assert not changed(out, image, 130, 100)  # absent in the truth


def test_draw_comparison_without_normalizer_is_grey():
    truth = skirt_points()
    truth[K["waistband_right"], 2] = -1
    pred = truth[:, :2] + (0, 30)
    out = draw_comparison(grey(), pred, truth, "skirt", radius=3)
    assert tuple(out[50, 30]) == (160, 160, 160)


def test_heatmap_montage_layout_and_peak():
    heatmaps = np.zeros((5, 8, 6), dtype=np.float32)
    heatmaps[0, 2, 1] = 1.0  # peak at x = 1, y = 2 of an 8 x 6 map
    heatmaps[3] = 0.5
    montage = heatmap_montage(grey(80, 60), heatmaps, KEYPOINT_NAMES[:5], tile_width=60)
    band, gap = 14, 2
    # 3 columns, 2 rows of (14 title + 80) x 60 tiles with 2 px borders
    assert montage.shape == (2 * (band + 80 + gap) + gap, 3 * (60 + gap) + gap, 3)
    assert montage.dtype == np.uint8
    tile0 = montage[gap + band:gap + band + 80, gap:gap + 60].astype(int)
    peak = tile0[25, 15]  # heatmap pixel (1, 2) covers tile x 10..19, y 20..29
    far = tile0[70, 50]
    assert peak[0] > 200 and peak[0] - peak[2] > 150  # hot red
    assert far[0] < 100 and far[2] > far[0]  # cold blue tint on grey
    assert (montage[gap:gap + band, gap:gap + 60] == 32).mean() > 0.5  # dark title band with text
    assert montage[gap:gap + band, gap:gap + 60].max() > 100  # white title text
    with pytest.raises(ValueError, match=r"K = len\(names\) = 4"):
        heatmap_montage(grey(), heatmaps, KEYPOINT_NAMES[:4])


def test_save_image_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (31, 47, 3), dtype=np.uint8)
    save_image(tmp_path / "a.png", image)
    back = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(back[..., ::-1], image)
    save_image(tmp_path / "sub" / "a.jpg", image)
    assert cv2.imread(str(tmp_path / "sub" / "a.jpg")).shape == (31, 47, 3)
    with pytest.raises(ValueError, match=r"cannot write an image to .*a.xyz: unsupported suffix '.xyz'"):
        save_image(tmp_path / "a.xyz", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "sub"]


def test_gallery_tiles_and_writes(tmp_path):
    images = [grey(100, 50), np.zeros((20, 80, 3), np.uint8), np.full((64, 64), 200, np.uint8)]
    mosaic = gallery(images, tmp_path / "g.png", cols=2, titles=["a", "b", "c"], tile=64)
    band, gap = 14, 2
    assert mosaic.shape == (2 * (band + 64 + gap) + gap, 2 * (64 + gap) + gap, 3)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "g.png"))[..., ::-1], mosaic)
    third = mosaic[2 * gap + band + 64 + band:2 * gap + 2 * band + 128, gap:gap + 64]
    assert (third == 200).all()  # the square image fills its tile
    first = mosaic[gap + band:gap + band + 64, gap:gap + 64]
    assert (first[:, 32] == GREY).all() and (first[:, 0] == 96).all()  # tall image letterboxed
    with pytest.raises(ValueError, match="got 1 titles for 3 images"):
        gallery(images, tmp_path / "h.png", titles=["x"])


def test_plot_per_keypoint_png(tmp_path):
    result = {"ne": 5.0, "count": 9, "per_keypoint": {"waistband_left": 4.0, "hemline_left": 6.0}}
    plot_per_keypoint(result, tmp_path / "bars.png")
    picture = cv2.imread(str(tmp_path / "bars.png"))
    assert picture is not None and picture.shape[0] > 100 and picture.std() > 10
    with pytest.raises(ValueError, match="no per-keypoint values"):
        plot_per_keypoint({"ne": float("nan"), "count": 0, "per_keypoint": {}}, tmp_path / "x.png")


def test_plot_curves_skips_missing_keys(tmp_path):
    records = [{"epoch": e, "loss": 1 / (e + 1), "lr": 1e-3 * 0.5 ** e} for e in range(5)]
    records[-1]["val_ne"] = 12.5
    assert plot_curves(records, tmp_path / "c.png") == ["loss", "lr", "val_ne"]
    assert plot_curves(records, tmp_path / "d.png", keys=("loss", "speed")) == ["loss"]
    wide, narrow = cv2.imread(str(tmp_path / "c.png")), cv2.imread(str(tmp_path / "d.png"))
    assert wide.shape[1] > 2 * narrow.shape[1]  # one subplot per key
    with pytest.raises(ValueError, match="no record holds any of speed"):
        plot_curves(records, tmp_path / "e.png", keys=("speed",))
