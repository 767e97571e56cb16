"""Prediction: exact inverse mapping, flip / multi-scale / ensemble / cascade test-time
inference with small deterministic networks, category routing, validated submissions, CLI."""
import argparse
import json

import cv2
import mxnet as mx
import numpy as np
import pytest
from _fashionai import CATEGORY_KEYPOINTS, NUM_KEYPOINTS, category_mask, flip_permutation, load_schema
from mxnet import gluon

from fashion_gluon.cli import predict as cli_predict
from fashion_gluon.codec import HeatmapCodec
from fashion_gluon.data import transforms as T
from fashion_gluon.data.annotations import Annotations, write_annotations
from fashion_gluon.data.dataset import SplitDataset
from fashion_gluon.data.submission import read_submission, save_submission
from fashion_gluon.errors import FashionGluonError
from fashion_gluon.inference.model import KeypointModel
from fashion_gluon.inference.predictor import Predictor, cascade_boxes, cascade_margins, resize_heatmaps, scaled_size

SKIRT = "skirt"  # 4 keypoints: waistband left/right (top), hemline left/right (bottom)
SKIRT_COLUMNS = (-1, 1, -1, 1)  # which half of the frame each channel looks at: -1 left, +1 right
SKIRT_ROWS = (-1, -1, 1, 1)  # -1 top half, +1 bottom half


class DotNet(gluon.Block):
    """A fixed 'network': heatmap c = the 4×4 average pool of the red brightness (0..1, the
    input un-normalized), kept on the half-frame of ``columns[c]`` / ``rows[c]`` (-1 first half, +1 second, 0 all).
    ``bias`` adds that fraction of the pooled map shifted one cell right (> 0) or left (< 0):
    a left/right bias that moves the decoded x by a quarter cell (1 input px)."""

    stride = 4

    def __init__(self, columns=SKIRT_COLUMNS, rows=SKIRT_ROWS, bias: float = 0.0):
        super().__init__()
        self.columns, self.rows, self.bias = np.array(columns), np.array(rows), bias

    @staticmethod
    def _half(side: np.ndarray, length: int) -> np.ndarray:
        second = np.arange(length) >= length // 2
        return np.where(side[:, None] < 0, ~second, np.where(side[:, None] > 0, second, True))

    def forward(self, x):
        red = (x[:, :1] * T.DEFAULT_STD[0] + T.DEFAULT_MEAN[0]) / 255
        pooled = mx.nd.Pooling(red, kernel=(4, 4), stride=(4, 4), pool_type="avg")
        if self.bias:
            zero = mx.nd.zeros_like(pooled[..., :1])
            shifted = (mx.nd.concat(zero, pooled[..., :-1], dim=3) if self.bias > 0
                       else mx.nd.concat(pooled[..., 1:], zero, dim=3))
            pooled = pooled + abs(self.bias) * shifted
        h, w = pooled.shape[2:]
        masks = self._half(self.rows, h)[:, :, None] & self._half(self.columns, w)[:, None, :]
        return mx.nd.broadcast_mul(pooled, mx.nd.array(masks[None], ctx=x.context))


def dot_model(input_size=(64, 64), bias: float = 0.0, category: str = SKIRT, **kwargs) -> KeypointModel:
    """A DotNet decoded with the ¼-pixel rule: its block peaks decode to exact quarter cells."""
    net = DotNet(bias=bias, **kwargs)
    return KeypointModel(net, category, HeatmapCodec(input_size, 4, 2.0, decode="quarter"), load_schema())


def block_image(size, corners, block: int = 4) -> np.ndarray:
    """A black RGB image (H, W) with white ``block``² squares whose top-left pixels are ``corners``."""
    image = np.zeros(tuple(size) + (3,), np.uint8)
    for x, y in corners:
        image[y:y + block, x:x + block] = 255
    return image


def block_centres(corners, block: int = 4) -> np.ndarray:
    return np.asarray(corners, dtype=np.float64) + (block - 1) / 2


# Four blocks, one per quadrant of a 64×64 image, aligned to the 4-px heatmap cells.
CORNERS = [(8, 12), (44, 16), (20, 40), (48, 52)]


def skirt_points(keypoints: np.ndarray) -> np.ndarray:
    return keypoints[:, list(CATEGORY_KEYPOINTS[SKIRT])]


# ----------------------------------------------------------------------------- inverse mapping


@pytest.mark.parametrize("seed", range(5))
def test_heatmap_coordinates_map_back_to_original_pixels_through_random_geometry(seed):
    rng = np.random.default_rng(seed)
    codec = HeatmapCodec((96, 64), 4, 2.0)
    geometry = T.Compose([T.RandomRotate(p=1.0), T.RandomCrop(margin=10), T.Resize(codec.input_size)])
    image = np.zeros((int(rng.integers(80, 200)), int(rng.integers(80, 200)), 3), np.uint8)
    h, w = image.shape[:2]
    originals, frames, matrices = [], [], []
    for _ in range(6):
        points = rng.uniform([20, 20], [w - 20, h - 20], (5, 2))
        sample = geometry(T.Sample.from_image(image, np.hstack([points, np.ones((5, 1))])), rng)
        originals.append(points)
        frames.append(codec.to_heatmap(sample.keypoints))
        matrices.append(sample.matrix)
    back = T.inverse_transform_points(codec.to_input(np.array(frames)), np.array(matrices))
    np.testing.assert_allclose(back, np.array(originals), atol=1e-6)
    # Decoding a rendered target adds at most a quarter heatmap cell per axis (1 input px).
    for points, frame, matrix in zip(originals, frames, matrices):
        inside = np.all((frame >= 1) & (frame <= np.array(codec.heatmap_size[::-1]) - 2), axis=1)
        targets, _ = codec.encode(codec.to_input(frame), inside.astype(np.float32))
        decoded, _ = codec.decode(targets[0])
        bound = np.linalg.norm(np.linalg.inv(matrix)[:2, :2], 2) * codec.stride / 4 * np.sqrt(2)
        error = np.linalg.norm(T.inverse_transform_points(decoded, matrix) - points, axis=1)
        assert np.all(error[inside] <= bound + 1e-9) and inside.sum() >= 3


def test_predictor_finds_aligned_blocks_exactly_and_maps_a_larger_image_back():
    model = dot_model()
    small = block_image((64, 64), CORNERS)
    large = cv2.resize(block_image((64, 64), CORNERS), (128, 192), interpolation=cv2.INTER_NEAREST)
    pred = Predictor([model], flip=False).predict([small, large], SKIRT)
    np.testing.assert_array_equal(skirt_points(pred)[0], block_centres(CORNERS))
    # The same picture stretched ×2 in x and ×3 in y: the same keypoints in its pixels.
    expected = (block_centres(CORNERS) + 0.5) * [2, 3] - 0.5
    np.testing.assert_allclose(skirt_points(pred)[1], expected, atol=1e-9)
    outside = np.setdiff1d(np.arange(NUM_KEYPOINTS), CATEGORY_KEYPOINTS[SKIRT])
    assert np.all(pred[:, outside] == -1)


# ----------------------------------------------------------------------------- flip


def test_flip_test_on_a_symmetric_input_gives_symmetric_keypoints():
    w = 64
    corners = [(8, 12), (w - 12, 12), (16, 40), (w - 20, 40)]  # mirror images of each other
    image = block_image((64, w), corners)
    np.testing.assert_array_equal(image, image[:, ::-1])
    biased = dot_model(bias=0.5)
    plain = skirt_points(Predictor([biased], flip=False).predict([image], SKIRT))[0]
    np.testing.assert_array_equal(plain[:, 0], block_centres(corners)[:, 0] + 1)  # the bias: 1 px right
    flipped = skirt_points(Predictor([biased], flip=True).predict([image], SKIRT))[0]
    np.testing.assert_array_equal(flipped, block_centres(corners))
    np.testing.assert_array_equal(flipped[[0, 2], 0], w - 1 - flipped[[1, 3], 0])
    np.testing.assert_array_equal(flipped[[0, 2], 1], flipped[[1, 3], 1])


def test_flip_test_of_a_mirror_equivariant_network_changes_nothing():
    image = block_image((64, 64), CORNERS)
    rng = np.random.default_rng(0)
    image[..., 0] = np.maximum(image[..., 0], rng.integers(0, 120, (64, 64)))  # asymmetric clutter
    model = dot_model()
    plain = Predictor([model], flip=False).predict([image], SKIRT)
    np.testing.assert_array_equal(Predictor([model], flip=True).predict([image], SKIRT), plain)


# ----------------------------------------------------------------------------- scales, ensembles


def random_conv_model(category: str = "all", input_size=(64, 48), seed: int = 0) -> KeypointModel:
    """A random fixed 4×4 / stride-4 convolution: arbitrary but deterministic heatmaps."""
    mx.random.seed(seed)
    net = gluon.nn.Conv2D(len(flip_permutation(category)), 4, strides=4, in_channels=3)
    net.initialize(mx.init.Normal(0.1))
    net.stride = 4
    return KeypointModel(net, category, HeatmapCodec(input_size, 4, 2.0), load_schema())


def write_layout(root, images: dict, keypoints: "np.ndarray | None" = None, split: str = "test") -> None:
    """A FashionAI layout: ``images`` maps image_id → (category, RGB array)."""
    folder = root / "test" if split == "test" else root / "train"
    for image_id, (_, image) in images.items():
        (folder / image_id).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / image_id), image[..., ::-1])
    rows = Annotations(list(images), [c for c, _ in images.values()], keypoints)
    write_annotations(root / "test" / "test.csv" if split == "test" else root / "train" / "Annotations" / "train.csv",
                      rows)


def random_images(count: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    categories = ["blouse", "skirt", "trousers", "dress", "outwear"]
    return {f"Images/{categories[i % 5]}/{i:03d}.png":
            (categories[i % 5], rng.integers(0, 256, (int(rng.integers(40, 90)), int(rng.integers(40, 90)), 3),
                                             dtype=np.uint8)) for i in range(count)}


def _plain_prediction(model: KeypointModel, dataset: SplitDataset) -> np.ndarray:
    """Keypoints (N, 24, 2) by hand: the dataset's test_transform input, flip-averaged heatmaps,
    decoded and mapped back through the inverse of the dataset's matrix."""
    out = np.zeros((len(dataset), 24, 2))
    for row in range(len(dataset)):
        image, matrix, _ = dataset[row]
        heatmaps = model.heatmaps(mx.nd.array(image[None]), flip=True)
        points, _ = model.codec.decode(heatmaps)
        out[row] = T.inverse_transform_points(points[0], matrix)
    return out


def test_one_scale_equals_plain_prediction_of_the_model(tmp_path):
    images = random_images(7)
    write_layout(tmp_path, images)
    model = random_conv_model()
    dataset = SplitDataset(tmp_path, "all", "test", T.test_transform(model.input_size))
    expected = _plain_prediction(model, dataset)
    # The Predictor clips to the image; the split's images are routed by category: the other columns are -1.
    last = np.array([[image.shape[1] - 1, image.shape[0] - 1] for _, image in images.values()])
    expected = np.clip(expected, 0, last[:, None])
    expected = np.where(category_mask(dataset.annotations.categories)[..., None], expected, -1)
    for scales in ((1.0,), (1.0, 1.0)):
        rows, pred = Predictor([model], flip=True, scales=scales, batch_size=4).predict_split(tmp_path, "test")
        np.testing.assert_allclose(pred, expected, atol=1e-3)  # the dataset's matrices are float32
    assert rows.image_ids == dataset.annotations.image_ids


def test_scaled_size_rounds_to_the_stride():
    assert scaled_size((384, 288), 1.0, 32) == (384, 288)
    assert scaled_size((384, 288), 0.75, 32) == (288, 224)  # 216 → 6.75 strides → 7
    assert scaled_size((64, 48), 1.25, 32) == (96, 64)  # 80 = 2.5 strides → 3 (half up), 60 → 1.875 → 2
    assert scaled_size((64, 48), 1.5, 16) == (96, 80)  # 72 = 4.5 strides → 5
    assert scaled_size((64, 64), 0.1, 32) == (32, 32)
    with pytest.raises(ValueError, match="positive"):
        scaled_size((64, 64), 0.0, 32)


def test_heatmaps_of_another_input_size_resize_into_the_reference_frame():
    reference, other = HeatmapCodec((64, 48), 4, 2.0), HeatmapCodec((96, 72), 4, 3.0)  # same σ in pixels
    points = np.array([[10.0, 20.0], [30.5, 41.25], [7.0, 60.0]])  # reference input pixels
    target, _ = reference.encode(points, np.ones(3))
    moved, _ = other.encode((points + 0.5) * 1.5 - 0.5, np.ones(3))  # the same places, ×1.5 input
    resized = resize_heatmaps(moved[None, 0], reference.heatmap_size)[0]
    assert resized.shape == target[0].shape
    np.testing.assert_allclose(resized, target[0], atol=0.06)
    quarter = HeatmapCodec((64, 48), 4, 2.0, decode="quarter")
    np.testing.assert_allclose(quarter.decode(resized)[0], quarter.decode(target[0])[0], atol=1e-9)
    np.testing.assert_allclose(reference.decode(resized)[0], points, atol=0.1)  # DARK: sub-pixel, not exact
    assert resize_heatmaps(target, reference.heatmap_size) is target


def test_multi_scale_prediction_stays_on_the_blocks():
    image = block_image((64, 64), CORNERS, block=8)
    pred = Predictor([dot_model()], flip=True, scales=(0.5, 1.0, 1.5)).predict([image], SKIRT)
    np.testing.assert_allclose(skirt_points(pred)[0], block_centres(CORNERS, 8), atol=1.5)


def test_checkpoint_ensemble_averages_heatmaps_not_coordinates():
    image = block_image((64, 64), CORNERS)
    unbiased, biased = dot_model(), dot_model(bias=0.5)
    single = skirt_points(Predictor([biased], flip=False).predict([image], SKIRT))[0]
    np.testing.assert_array_equal(single[:, 0], block_centres(CORNERS)[:, 0] + 1)
    both = skirt_points(Predictor([unbiased, biased], flip=False).predict([image], SKIRT))[0]
    # Mean heatmap: the peak keeps a larger right neighbour, so x stays +1 (coordinates would give +0.5).
    np.testing.assert_array_equal(both, single)
    opposite = Predictor([dot_model(bias=-0.5), biased], flip=False).predict([image], SKIRT)
    np.testing.assert_array_equal(skirt_points(opposite)[0], block_centres(CORNERS))


def test_ensemble_of_checkpoints_with_different_input_sizes():
    image = block_image((64, 64), CORNERS, block=8)
    pred = Predictor([dot_model((64, 64)), dot_model((32, 48))], flip=False).predict([image], SKIRT)
    np.testing.assert_allclose(skirt_points(pred)[0], block_centres(CORNERS, 8), atol=1.5)


# ----------------------------------------------------------------------------- routing


def test_images_of_a_category_without_a_model_raise_one_error_listing_them():
    predictor = Predictor([dot_model(), dot_model(category="skirt")], flip=False)
    images = [block_image((64, 64), CORNERS)] * 4
    with pytest.raises(FashionGluonError) as error:
        predictor.predict(images, ["skirt", "dress", "trousers", "dress"])
    assert str(error.value) == ("no model for category 'dress' (2 images), 'trousers' (1 image); the checkpoints "
                                "cover: skirt (pass a checkpoint of each category, or one trained on 'all')")
    with pytest.raises(FashionGluonError, match="no model for category 'all'"):
        predictor.predict(images[:1], "all")
    with pytest.raises(ValueError, match="unknown category 'shoes'"):
        predictor.predict(images[:1], ["shoes"])


def test_all_model_serves_every_category_and_images_without_a_category():
    blouse, skirt, joint = random_conv_model("blouse"), random_conv_model("skirt"), random_conv_model("all")
    images = [image for _, image in random_images(3).values()]
    full = Predictor([joint], flip=False).predict(images)  # no categories: all 24 keypoints
    assert full.shape == (3, NUM_KEYPOINTS, 2) and np.all(full >= 0)
    routed = Predictor([joint], flip=False).predict(images, ["blouse", "skirt", "blouse"])
    for row, category in enumerate(["blouse", "skirt", "blouse"]):
        columns = list(CATEGORY_KEYPOINTS[category])
        np.testing.assert_array_equal(routed[row, columns], full[row, columns])
        assert np.all(np.delete(routed[row], columns, axis=0) == -1)
    mixed = Predictor([blouse, skirt], flip=False)
    assert Predictor([skirt], flip=False).default_category() == "skirt"
    with pytest.raises(FashionGluonError, match=r"several categories \(blouse, skirt\)"):
        mixed.predict(images)


# ----------------------------------------------------------------------------- cascade


def test_cascade_boxes_are_clipped_at_the_image_borders():
    points = np.array([[[3.0, 2.0], [40.0, 30.0]],       # near the top-left corner
                       [[90.2, 50.0], [118.0, 99.5]],    # near the bottom-right corner
                       [[50.0, 40.0], [60.0, 45.0]]])    # well inside
    sizes = np.array([[100, 120]] * 3)  # (H, W)
    boxes = cascade_boxes(points, sizes, np.array([10.0, 8.0]))
    np.testing.assert_array_equal(boxes, [[0, 0, 51, 39], [80, 42, 120, 100], [40, 32, 71, 54]])
    # A point outside the image (a wild first pass) still gives a non-empty box inside it.
    np.testing.assert_array_equal(cascade_boxes(np.array([[[-50.0, 500.0]]]), sizes[:1], np.zeros(2)),
                                  [[0, 99, 1, 100]])


def test_cascade_margins_follow_the_seed_on_512_images_and_scale_with_size():
    np.testing.assert_allclose(cascade_margins(np.array([[512, 512], [256, 1024]])), [[100, 80], [200, 40]])


def test_cascade_predicts_again_on_the_zoomed_crop():
    # 8-px blocks, one per quadrant of a 512² image and of the crop box: 1 px wide at the 64²
    # input of the first pass, about twice that on the crop.
    corners = [(200, 208), (280, 216), (208, 264), (288, 272)]
    image = block_image((512, 512), corners, block=8)
    truth = block_centres(corners, 8)
    model = dot_model()
    first = skirt_points(Predictor([model], flip=True).predict([image], SKIRT))[0]
    second = skirt_points(Predictor([model], flip=True, cascade=True).predict([image], SKIRT))[0]
    box = cascade_boxes(first[None], np.array([[512, 512]]), np.array([100.0, 80.0]))[0]
    crop_pixel = (box[2:] - box[:2]) / 64  # original pixels per crop input pixel, (x, y)
    assert np.all(np.abs(second - truth) <= 1.5 * crop_pixel)
    assert np.abs(second - truth).mean() < np.abs(first - truth).mean() / 2
    heatmaps, frame = Predictor([model], flip=True, cascade=True).heatmaps(image, SKIRT)
    assert heatmaps.shape == (4, 16, 16) and frame.shape == (64, 64, 3)
    matrix = T.resize(T.crop(T.Sample.from_image(image), box), (64, 64)).matrix
    expected = cv2.warpAffine(image, matrix[:2], (64, 64))
    np.testing.assert_array_equal(frame, expected)


def test_predict_split_reads_only_the_held_out_splits(tmp_path):
    # HELD_OUT_SPLITS (data/sources.py): also predict --split's choices (tests/test_choices.py)
    with pytest.raises(FashionGluonError, match=r"^a prediction is of a held-out split \(val, test\), got 'train'$"):
        Predictor([random_conv_model()], flip=False).predict_split(tmp_path, "train")


# ----------------------------------------------------------------------------- submissions and CLI


def test_save_submission_validates_against_test_csv_before_writing(tmp_path):
    images = random_images(5)
    write_layout(tmp_path, images)
    rows, pred = Predictor([random_conv_model()], flip=False).predict_split(tmp_path, "test")
    out = tmp_path / "sub.csv"
    save_submission(out, rows, pred, tmp_path / "test" / "test.csv", tmp_path / "test")
    written = read_submission(out)
    assert written.image_ids == list(images)
    np.testing.assert_array_equal(written.keypoints[..., :2][pred >= 0], np.round(pred[pred >= 0]))

    bad = tmp_path / "bad.csv"
    shifted = np.where(pred >= 0, pred + 500, -1)
    with pytest.raises(FashionGluonError, match=r"refusing to write (.*)bad.csv: \d+ problem\(s\):\n"
                                                r"\1bad.csv, row 2, column 'neckline_left': \(5\d\d, \d+\) lies outside"):
        save_submission(bad, rows, shifted, tmp_path / "test" / "test.csv", tmp_path / "test")
    with pytest.raises(FashionGluonError, match=r"1 problem\(s\):\n.*is missing from the submission"):
        save_submission(bad, rows.subset([0, 1, 2, 3]), pred[:4], tmp_path / "test" / "test.csv")
    with pytest.raises(FashionGluonError, match="a submission needs finite, non-negative"):
        save_submission(bad, rows, np.where(pred >= 0, np.nan, -1), tmp_path / "test" / "test.csv")
    assert not bad.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv", "test"]


def run_cli(argv: list[str]) -> int:
    """Run a prediction command the way ``fashion-gluon``'s main does."""
    parser = argparse.ArgumentParser(prog="fashion-gluon")
    cli_predict.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except FashionGluonError as error:
        print(f"fashion-gluon {args.command}: error: {error}")
        return 2
    return 0


def test_validate_submission_command_exit_status(tmp_path, capsys):
    write_layout(tmp_path, random_images(3))
    rows, pred = Predictor([random_conv_model()], flip=False).predict_split(tmp_path, "test")
    save_submission(tmp_path / "sub.csv", rows, pred)
    test_csv = str(tmp_path / "test" / "test.csv")
    assert run_cli(["validate-submission", "--test", test_csv, "--submission", str(tmp_path / "sub.csv")]) == 0
    assert capsys.readouterr().out.strip().endswith("sub.csv: valid")
    lines = (tmp_path / "sub.csv").read_text().splitlines()
    (tmp_path / "two.csv").write_text("\n".join(lines[:2] + [lines[2].replace("_1,", "_0,", 1)]) + "\n")
    assert run_cli(["validate-submission", "--test", test_csv, "--submission", str(tmp_path / "two.csv")]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and "row 3" in out[0] and "must be written x_y_1" in out[0]
    assert "missing from the submission" in out[1]
    assert out[2].endswith("two.csv has 2 problem(s) (listed above)")


def test_predict_command_with_a_run_directory(tmp_path, capsys):
    from fashion_gluon.build import build_model
    from fashion_gluon.config import load_config
    from fashion_gluon.engine.checkpoint import save_checkpoint

    write_layout(tmp_path / "data", random_images(4))
    config = load_config(overrides=["model.name=cpn_resnet18", "data.input_size=[64,64]"])
    run = tmp_path / "run"
    run.mkdir()
    net = build_model(config, "all", [mx.cpu()])
    net(mx.nd.zeros((1, 3, 64, 64)))  # finish the deferred initialization
    save_checkpoint(run, net, None,
                    {"epoch": 1, "category": "all", "data_root": str(tmp_path / "data")}, config)
    out = tmp_path / "sub.csv"
    assert run_cli(["predict", "--checkpoint", str(run), "--out", str(out), "--flip",
                    "--scales", "1,1.5", "--cascade", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 4 and report["seconds_per_image"] > 0
    assert read_submission(out).image_ids == list(random_images(4))
    with pytest.raises(SystemExit):
        run_cli(["predict", "--checkpoint", str(run), "--out", str(out), "--scales", "1,-2"])


def test_predict_any_images_reports_a_bad_file_and_predicts_the_others(tiny_run, tiny_data, tmp_path, capsys):
    import shutil

    from fashion_gluon.cli import main
    photos = tmp_path / "photos"
    photos.mkdir()
    for n, source in enumerate(sorted((tiny_data / "test" / "Images").rglob("*.jpg"))[:3]):
        shutil.copy(source, photos / f"shot{n}.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (photos / "notes.txt").write_text("not an image, not listed")
    out, overlay = tmp_path / "points.csv", tmp_path / "overlay"
    assert main(["predict", "--checkpoint", str(tiny_run), "--images", str(photos), "--out", str(out)]) == 2
    assert "say which one the images show (--category blouse|outwear|dress|skirt|trousers)" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(tiny_run), "--images", str(photos), "--category", "skirt",
                 "--out", str(out), "--overlay", str(overlay)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipped") == 1 and "broken.jpg" in captured.err
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["images"] == 3 and report["skipped"] == 1
    rows = read_submission(out)
    assert rows.image_ids == [str(photos / f"shot{n}.jpg") for n in range(3)] and set(rows.categories) == {"skirt"}
    assert sorted(p.name for p in overlay.iterdir()) == ["shot0.png", "shot1.png", "shot2.png"]
    before = out.read_bytes()
    assert main(["predict", "--checkpoint", str(tiny_run), "--images", str(photos / "broken.jpg"), "--category",
                 "skirt", "--out", str(out)]) == 2  # nothing readable: an error, and the old file stays
    assert out.read_bytes() == before
    assert main(["predict", "--checkpoint", str(tiny_run), "--images", str(photos / "shot*.jpg"), "--category",
                 "skirt", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 3
    results = tmp_path / "results.json"
    assert main(["predict", "--checkpoint", str(tiny_run), "--images", str(photos / "shot*.jpg"), "--category",
                 "skirt", "--out", str(results), "--format", "coco"]) == 0
    entries = json.loads(results.read_text())
    assert [(e["image_id"], e["category_id"], len(e["keypoints"])) for e in entries] == [(n, 4, 12) for n in (1, 2, 3)]
    x = np.array([e["keypoints"][0::3] for e in entries])  # the CSV's x, before rounding to integer pixels
    np.testing.assert_array_equal(np.round(x), rows.keypoints[:, list(CATEGORY_KEYPOINTS[SKIRT]), 0])


def test_decode_option_switches_the_rule_without_touching_the_given_model():
    model = dot_model()
    own = model.codec.decoding
    other = "dark" if own == "quarter" else "quarter"
    switched = Predictor([model], flip=False, decode=other)
    assert switched.models[0].codec.decoding == other and model.codec.decoding == own
    assert switched.models[0].codec.heatmap_size == model.codec.heatmap_size
    image = block_image((64, 64), CORNERS)
    np.testing.assert_array_equal(skirt_points(switched.predict([image], SKIRT))[0], block_centres(CORNERS))
    with pytest.raises(FashionGluonError, match="decode must be one of dark, quarter, got 'argmax'"):
        Predictor([model], decode="argmax")


def test_evaluate_checkpoint_predicts_as_predict_does_with_flip_scales_and_cascade(tiny_run, tiny_data, tmp_path,
                                                                                  capsys):
    from fashion_gluon.cli import main

    options = ["--flip", "--scales", "1,1.25", "--cascade"]
    assert main(["predict", "--checkpoint", str(tiny_run), "--split", "val", "--out", str(tmp_path / "val.csv"),
                 "--json", *options]) == 0
    predicted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ne"]
    ne = {}
    for name, extra in (("all", options), ("plain", [])):
        assert main(["evaluate", "--checkpoint", str(tiny_run), "--split", "val", "--json", *extra]) == 0
        ne[name] = json.loads(capsys.readouterr().out)["ne"]
    assert ne["all"] == pytest.approx(predicted, abs=1e-9)
    assert ne["plain"] != pytest.approx(predicted, abs=1e-6)  # the options reach the predictor
