"""Image decoding, header-only sizes and the split check."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from fashion_gluon.data.annotations import Annotations
from fashion_gluon.data.images import check_images, image_size, outside_image, read_image
from fashion_gluon.errors import DataError

RGB = (200, 30, 60)  # a colour with distinct channels, to catch BGR/RGB swaps


def solid_bgr(height: int, width: int, rgb=RGB) -> np.ndarray:
    return np.full((height, width, 3), rgb[::-1], dtype=np.uint8)


def test_colour_jpeg_of_odd_size(tmp_path):
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), solid_bgr(300, 451))
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (300, 451, 3)
    np.testing.assert_allclose(image.reshape(-1, 3).mean(axis=0), RGB, atol=3)
    assert image_size(path) == (300, 451)


def test_grayscale_jpeg_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "gray.jpg"
    Image.fromarray(np.full((37, 64), 77, np.uint8)).save(path)
    image = read_image(path)
    assert image.shape == (37, 64, 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    assert abs(int(image[18, 32, 0]) - 77) <= 2


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # opaque red
    rgba[:, 10:20] = (0, 0, 255, 0)  # fully transparent blue → white
    rgba[:, 20:] = (0, 0, 0, 128)  # half-transparent black → mid grey
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = read_image(path)
    assert image.shape == (20, 30, 3)
    assert (image[:, :10] == (255, 0, 0)).all()
    assert (image[:, 10:20] == 255).all()
    assert (image[:, 20:] == 127).all()  # 255 * (1 - 128/255) = 127


def test_png_bytes_in_a_jpg_file_decode_by_content(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    ok, encoded = cv2.imencode(".png", solid_bgr(15, 9))
    path.write_bytes(encoded.tobytes())
    image = read_image(path)
    assert image.shape == (15, 9, 3) and (image == RGB).all()
    assert image_size(path) == (15, 9)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    bgr16 = np.empty((12, 17, 3), np.uint16)
    bgr16[...] = (0, 257 * 100, 65535)  # blue 0, green 100, red 255 in 8 bits
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), bgr16)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (12, 17, 3)
    assert (image == (255, 100, 0)).all()


def test_16_bit_grayscale_png(tmp_path):
    path = tmp_path / "gray16.png"
    cv2.imwrite(str(path), np.full((5, 6), 257 * 40, np.uint16))
    image = read_image(path)
    assert image.shape == (5, 6, 3) and (image == 40).all()


def test_exif_orientation_is_ignored_consistently(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise" for viewers
    path = tmp_path / "rotated.jpg"
    Image.fromarray(np.full((30, 50, 3), 90, np.uint8)).save(path, exif=exif)
    assert read_image(path).shape == (30, 50, 3)
    assert image_size(path) == (30, 50)


@pytest.fixture
def bad_files(tmp_path):
    """Unreadable image files by name → the reason that read_image gives."""
    cv2.imwrite(str(tmp_path / "good.jpg"), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    good = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "random.jpg").write_bytes(np.random.default_rng(1).bytes(3000))
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "folder.jpg").mkdir()
    return {
        tmp_path / "missing.jpg": "no such image file",
        tmp_path / "empty.jpg": "empty image file (0 bytes)",
        tmp_path / "random.jpg": "cannot decode the image",
        tmp_path / "truncated.jpg": "cannot decode the image",
        tmp_path / "folder.jpg": "is a directory",
    }


def test_unreadable_files_raise_data_error_naming_the_path(bad_files):
    for path, reason in bad_files.items():
        with pytest.raises(DataError) as exc_info:
            read_image(path)
        assert str(exc_info.value).startswith(f"{path}: {reason}")


def test_image_size_raises_the_same_errors(bad_files):
    for path, reason in bad_files.items():
        if path.name == "truncated.jpg":  # its header is intact: only decoding finds it
            assert image_size(path) == (64, 64)
            continue
        with pytest.raises(DataError) as exc_info:
            image_size(path)
        assert str(exc_info.value).startswith(f"{path}: {reason}")


def test_outside_image_hand_values():
    points = np.array([[0, 0], [-0.5, 0], [-0.6, 0], [99.5, 49.5], [99.6, 10], [10, 49.6]])
    expected = [False, False, True, False, True, True]
    assert outside_image(points, np.array([50, 100])).tolist() == expected  # H = 50, W = 100


# ----------------------------------------------------------------------------- check_images


@pytest.fixture
def split(tmp_path):
    """Three images of different sizes and annotations inside them: (annotations, split dir)."""
    sizes = [(40, 60), (50, 30), (20, 20)]
    ids = [f"Images/skirt/{i}.jpg" for i in range(3)]
    for image_id, (height, width) in zip(ids, sizes):
        (tmp_path / image_id).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / image_id), solid_bgr(height, width))
    kps = np.full((3, 24, 3), -1, np.float32)
    kps[:, 15:19] = [[0, 0, 1], [5, 5, 0], [10, 10, 1], [19, 19, 1]]  # skirt keypoints
    return Annotations(ids, ["skirt"] * 3, kps), tmp_path


def test_check_images_valid_split(split):
    annotations, root = split
    kept, sizes = check_images(annotations, root)
    assert kept.tolist() == [0, 1, 2]
    assert sizes.tolist() == [[40, 60], [50, 30], [20, 20]]


def test_check_images_test_list_only_needs_readable_images(split):
    annotations, root = split
    kept, sizes = check_images(Annotations(annotations.image_ids, annotations.categories), root)
    assert kept.tolist() == [0, 1, 2] and sizes.shape == (3, 2)


def test_check_images_keypoint_outside(split):
    annotations, root = split
    annotations.keypoints[2, 17, :2] = (20.0, 3.0)  # x = W: outside the 20 x 20 image
    with pytest.raises(DataError) as exc_info:
        check_images(annotations, root)
    assert str(exc_info.value) == (f"{root / annotations.image_ids[2]}, row 4, column 'hemline_left': "
                                   "keypoint (20, 3) lies outside the image of 20×20 (H×W) pixels")


def test_check_images_ignores_absent_keypoints_and_allows_rounding(split):
    annotations, root = split
    annotations.keypoints[2, 0] = (-1, -1, -1)  # absent
    annotations.keypoints[2, 17, :2] = (19.5, -0.5)
    assert check_images(annotations, root)[0].tolist() == [0, 1, 2]


def test_check_images_missing_image(split):
    annotations, root = split
    (root / annotations.image_ids[1]).unlink()
    with pytest.raises(DataError) as exc_info:
        check_images(annotations, root)
    assert str(exc_info.value) == f"{root / annotations.image_ids[1]}, row 3, column 'image_id': no such image file"


def test_check_images_skip_drops_rows_with_one_warning(split):
    annotations, root = split
    (root / annotations.image_ids[0]).write_bytes(b"")
    annotations.keypoints[1, 16, :2] = (31.0, 3.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept, sizes = check_images(annotations, root, on_error="skip")
    assert kept.tolist() == [2] and sizes.tolist() == [[20, 20]]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "dropped 2 of 3 rows (1 unreadable images, 1 with keypoints outside the image)" in message
    assert "row 2, column 'image_id': empty image file" in message


def test_check_images_bad_option(split):
    with pytest.raises(ValueError, match="on_error must be 'error' or 'skip'"):
        check_images(*split, on_error="ignore")
