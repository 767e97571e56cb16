"""The synthetic FashionAI-layout data set: layout, schema, determinism, geometry, difficulty."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from _fashionai import CATEGORIES, CATEGORY_KEYPOINTS, FLIP_PAIRS, KEYPOINT_NAMES, SUBMISSION_COLUMNS
from _mean_shape import mean_shape_ne

from fashion_gluon.data.annotations import read_annotations
from fashion_gluon.data.synthetic import (
    JPEG_QUALITY_RANGE,
    MAX_BULGE,
    MAX_SHEAR,
    SCALE_RANGE,
    VARY_SIZE_RANGE,
    _placement,
    _shade,
    draw_garment,
    ensure_dataset,
    generate_dataset,
    image_name,
    render_sample,
    sample_garment,
    split_counts,
)
from fashion_gluon.errors import ConfigError
from fashion_gluon.metrics import normalizing_distance

SMALL = (96, 128)  # (H, W) of the quick data sets


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def parse_keypoints(row: list[str]) -> np.ndarray:
    """(24, 3) int array of the x_y_v cells of a train.csv row."""
    return np.array([[int(v) for v in cell.split("_")] for cell in row[2:]], dtype=np.int64)


def load_split(csv_path: Path) -> tuple[list[str], list[str], np.ndarray]:
    header, rows = read_rows(csv_path)
    assert tuple(header) == SUBMISSION_COLUMNS
    kps = np.stack([parse_keypoints(r) for r in rows]) if rows else np.zeros((0, 24, 3), np.int64)
    return [r[0] for r in rows], [r[1] for r in rows], kps


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "data"
    return root, generate_dataset(root, per_category=3, seed=5, image_size=SMALL, progress=False)


def test_split_counts_known_values():
    assert split_counts(10, 0.2) == (8, 2)
    assert split_counts(2, 0.2) == (1, 1)     # at least one test image
    assert split_counts(3, 0.9) == (1, 2)     # at least one train image
    assert split_counts(1, 0.2) == (1, 0)
    assert split_counts(5, 0.0) == (5, 0)


def test_layout_is_exactly_the_competition_layout(small_set):
    root, summary = small_set
    train_ids, train_cats, _ = load_split(root / "train" / "Annotations" / "train.csv")
    test_ids, test_cats, _ = load_split(root / "test" / "annotations.csv")
    header, test_rows = read_rows(root / "test" / "test.csv")
    assert header == ["image_id", "image_category"]
    assert test_rows == [[i, c] for i, c in zip(test_ids, test_cats)]
    expected = {"train/Annotations/train.csv", "test/test.csv", "test/annotations.csv"}
    expected |= {f"train/{i}" for i in train_ids} | {f"test/{i}" for i in test_ids}
    assert files_under(root) == expected  # nothing else, no temporary files left
    for split_ids, cats, indices in ((train_ids, train_cats, (0, 1)), (test_ids, test_cats, (2,))):
        assert cats == [c for c in CATEGORIES for _ in indices]
        assert split_ids == [f"Images/{c}/{image_name(5, c, i)}.jpg" for c in CATEGORIES for i in indices]
    assert all(re.fullmatch(r"Images/[a-z]+/[0-9a-f]{32}\.jpg", i) for i in train_ids + test_ids)
    assert summary["train"] == {c: 2 for c in CATEGORIES} and summary["test"] == {c: 1 for c in CATEGORIES}
    assert summary["images"] == 15 and summary["images_per_second"] > 0


def test_only_category_keypoints_are_annotated_and_inside(small_set):
    root, _ = small_set
    for split, csv_path in (("train", root / "train" / "Annotations" / "train.csv"),
                            ("test", root / "test" / "annotations.csv")):
        ids, cats, kps = load_split(csv_path)
        for image_id, category, points in zip(ids, cats, kps):
            image = cv2.imread(str(root / split / image_id))
            assert image.shape == SMALL + (3,)
            own = list(CATEGORY_KEYPOINTS[category])
            others = [k for k in range(24) if k not in own]
            assert np.all(points[others] == -1)
            assert set(points[own, 2]) <= {0, 1}
            assert np.all((points[own, 0] >= 0) & (points[own, 0] < SMALL[1]))
            assert np.all((points[own, 1] >= 0) & (points[own, 1] < SMALL[0]))


def quantization_tables(jpeg: bytes) -> bytes:
    """The DQT segments of a JPEG file (they are fixed by the encoder's quality)."""
    tables, at = b"", 2
    while jpeg[at + 1] != 0xDA:  # up to the start of scan
        length = int.from_bytes(jpeg[at + 2:at + 4], "big")
        if jpeg[at + 1] == 0xDB:
            tables += jpeg[at + 4:at + 2 + length]
        at += 2 + length
    return tables


def test_jpeg_quality_is_drawn_per_image_within_its_range(small_set):
    root, _ = small_set
    pixels = np.zeros((8, 8, 3), np.uint8)
    quality_of = {quantization_tables(cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()): q
                  for q in range(30, 101)}
    assert len(quality_of) == 71  # every quality has its own tables
    qualities = [quality_of[quantization_tables(path.read_bytes())] for path in sorted(root.rglob("*.jpg"))]
    assert len(qualities) == 15
    assert all(JPEG_QUALITY_RANGE[0] <= q <= JPEG_QUALITY_RANGE[1] for q in qualities), qualities
    assert len(set(qualities)) >= 8 and max(qualities) - min(qualities) >= 20, qualities


def snapshot(root: Path) -> tuple[bytes, bytes, bytes, dict[str, np.ndarray]]:
    csvs = tuple((root / p).read_bytes()
                 for p in ("train/Annotations/train.csv", "test/test.csv", "test/annotations.csv"))
    pixels = {p: cv2.imread(str(root / p)) for p in sorted(files_under(root)) if p.endswith(".jpg")}
    return (*csvs, pixels)


def same(a, b) -> bool:
    return a[:3] == b[:3] and a[3].keys() == b[3].keys() and all(np.array_equal(a[3][k], b[3][k]) for k in a[3])


def test_deterministic_per_seed_and_worker_count(tmp_path):
    args = dict(per_category=2, image_size=(64, 96), progress=False)
    first = snapshot(Path(generate_dataset(tmp_path / "a", seed=3, **args)["root"]))
    again = snapshot(Path(generate_dataset(tmp_path / "b", seed=3, **args)["root"]))
    pooled = snapshot(Path(generate_dataset(tmp_path / "c", seed=3, workers=2, **args)["root"]))
    other = snapshot(Path(generate_dataset(tmp_path / "d", seed=4, **args)["root"]))
    assert same(first, again) and same(first, pooled)
    assert first[0] != other[0]
    assert not any(np.array_equal(a, b) for a, b in zip(first[3].values(), other[3].values()))


def test_draw_garment_returns_rgb_image_and_schema_keypoints():
    image, keypoints = draw_garment("dress", np.random.default_rng(1), (200, 330))
    assert image.shape == (200, 330, 3) and image.dtype == np.uint8
    assert keypoints.shape == (24, 3) and keypoints.dtype == np.float32
    own = list(CATEGORY_KEYPOINTS["dress"])
    assert np.all(keypoints[[k for k in range(24) if k not in own]] == -1)
    assert np.all((keypoints[own, 0] >= 0) & (keypoints[own, 0] <= 329))
    assert np.all((keypoints[own, 1] >= 0) & (keypoints[own, 1] <= 199))
    again = render_sample("dress", np.random.default_rng(1), (200, 330))
    assert np.array_equal(again.image, image) and np.array_equal(again.keypoints, keypoints)


def test_left_keypoints_are_left_and_poses_are_asymmetric():
    for c_index, category in enumerate(CATEGORIES):
        for n in range(20):
            points = sample_garment(category, np.random.default_rng([c_index, n])).points
            pairs = [(a, b) for a, b in FLIP_PAIRS if a in points]
            assert all(points[a][0] < points[b][0] for a, b in pairs), (category, n)
            mirrored = [np.abs(points[a] * (-1, 1) - points[b]).max() for a, b in pairs]
            assert max(mirrored) > 0.01  # left and right sides differ


def chord_deviations(part: np.ndarray, corners: list[np.ndarray]) -> list[float]:
    """For each edge of the closed outline ``part`` between consecutive ``corners`` (exact vertices):
    the largest distance of its other vertices from the straight chord, over the chord's length."""
    at = sorted(int(np.flatnonzero(np.all(part == c, axis=1))[0]) for c in corners)
    ratios = []
    for start, stop in zip(at, at[1:] + [at[0] + len(part)]):
        a, b = part[start], part[stop % len(part)]
        between = part[np.arange(start + 1, stop) % len(part)]
        chord = b - a
        cross = np.abs(chord[0] * (between[:, 1] - a[1]) - chord[1] * (between[:, 0] - a[0]))
        ratios.append(float(cross.max(initial=0.0) / (chord @ chord)))
    return ratios


def test_garment_edges_bend_slightly_and_keypoints_stay_exact_vertices():
    sleeve_names = ("shoulder", "cuff", "armpit")
    ratios = []
    for c_index, category in enumerate(CATEGORIES):
        for n in range(10):
            garment = sample_garment(category, np.random.default_rng([7, c_index, n]))
            vertices = np.concatenate(garment.parts)
            gaps = [np.abs(vertices - p).max(axis=1).min() for p in garment.points.values()]
            assert max(gaps) <= 1e-12, (category, n)  # center_front: the neckline curve's middle, to rounding
            if category == "trousers":  # legs: the keypoints are the only corners of the outline
                ratios += chord_deviations(garment.parts[0], list(garment.points.values()))
            for part in garment.parts[1:]:  # sleeves
                corners = [p for k, p in garment.points.items() if KEYPOINT_NAMES[k].startswith(sleeve_names)
                           and np.all(part == p, axis=1).any()]
                assert len(corners) == 4
                ratios += chord_deviations(part, corners)
    ratios = np.array(ratios)
    assert len(ratios) == 10 * (7 + 3 * 2 * 4)
    assert ratios.max() <= MAX_BULGE + 1e-9  # at most a slight bulge
    assert np.mean(ratios > 0.01) >= 0.6, np.mean(ratios > 0.01)  # most edges are curved, not straight


def test_shading_varies_the_garment_and_leaves_the_rest_alone():
    mask = np.zeros((120, 160), np.uint8)
    cv2.ellipse(mask, (80, 60), (50, 40), 0, 0, 360, 255, -1)
    spreads = []
    for seed in range(20):
        image = np.full((120, 160, 3), 128, np.uint8)
        _shade(np.random.default_rng(seed), image, mask)
        assert np.all(image[mask == 0] == 128)
        inside = image[mask > 0].astype(int)
        assert np.all(inside[:, 0] == inside[:, 1]) and np.all(inside[:, 0] == inside[:, 2])  # brightness only
        spreads.append(inside.max() - inside.min())
    assert np.mean(np.array(spreads) >= 20) >= 0.8, spreads  # folds and gradients, not a flat fill


def test_placement_shears_mildly():
    anisotropy = []
    for n in range(30):
        rng = np.random.default_rng([3, n])
        matrix, _ = _placement(rng, sample_garment("blouse", rng), "blouse", (512, 512))
        singular = np.linalg.svd(matrix[:, :2], compute_uv=False)
        anisotropy.append(singular[0] / singular[1])
    assert max(anisotropy) > 1.05  # not a similarity any more
    assert max(anisotropy) <= (1 + MAX_SHEAR) / (1 - MAX_SHEAR) + 1e-9  # shear = I + E, |E| <= MAX_SHEAR


def samples(count_per_category: int, size=(128, 128)):
    for c_index, category in enumerate(CATEGORIES):
        for n in range(count_per_category):
            yield category, render_sample(category, np.random.default_rng([99, c_index, n]), size)


def test_invisible_shares_and_clipping_rule():
    total = occluded = outside = 0
    for category, s in samples(40):  # 200 images
        height, width = s.image.shape[:2]
        own = list(CATEGORY_KEYPOINTS[category])
        exact = np.round(s.points[own])
        out = ~np.all((exact >= 0) & (exact <= (width - 1, height - 1)), axis=1)
        kps = s.keypoints[own]
        # outside the frame: stored clipped to the border, v = 0
        assert np.array_equal(kps[out, :2], np.clip(exact[out], 0, (width - 1, height - 1)))
        assert np.all(kps[out, 2] == 0)
        # inside the frame: v = 0 exactly where the occluder's mask covers the point
        xy = kps[~out, :2].astype(int)
        under = s.occluder_mask[xy[:, 1], xy[:, 0]] > 0
        assert np.array_equal(kps[~out, 2] == 0, under)
        assert np.array_equal(kps[~out, :2], exact[~out])
        total, occluded, outside = total + len(own), occluded + under.sum(), outside + out.sum()
    assert 0.03 <= occluded / total <= 0.12, occluded / total
    assert 0.01 <= outside / total <= 0.08, outside / total


def test_visible_keypoints_sit_on_the_garment_outline():
    near_edge = counted = 0
    for category, s in samples(10):
        inside = cv2.distanceTransform((s.garment_mask == 0).astype(np.uint8), cv2.DIST_L2, 5)
        to_background = cv2.distanceTransform(np.pad(s.garment_mask, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        visible = np.flatnonzero(s.keypoints[:, 2] == 1)
        xy = s.keypoints[visible, :2].astype(int)
        assert np.all(inside[xy[:, 1], xy[:, 0]] <= 2), category  # on (or within 2 px of) the garment
        assert not np.any(s.occluder_mask[xy[:, 1], xy[:, 0]])
        corner = visible != KEYPOINT_NAMES.index("center_front")  # the neckline's bottom is inside
        near_edge += np.sum(to_background[xy[corner, 1], xy[corner, 0]] <= 3)
        counted += corner.sum()
    assert near_edge / counted >= 0.9  # keypoints are outline corners (armpits may hide under a sleeve)


def test_mean_shape_baseline_is_poor_and_normalizer_is_never_tiny(tmp_path):
    root = Path(generate_dataset(tmp_path / "ne", per_category=40, seed=0, progress=False)["root"])
    train = read_annotations(root / "train" / "Annotations" / "train.csv")
    test = read_annotations(root / "test" / "annotations.csv")
    ne = mean_shape_ne(train, test)
    assert ne >= 25.0, ne
    for split in (train, test):
        assert normalizing_distance(split.keypoints, split.categories).min() >= 0.05 * 512


def test_vary_size_gives_other_sizes_with_keypoints_inside(tmp_path):
    root = Path(generate_dataset(tmp_path / "v", per_category=2, seed=1, vary_size=True, progress=False)["root"])
    ids, cats, kps = load_split(root / "train" / "Annotations" / "train.csv")
    sizes = set()
    for image_id, category, points in zip(ids, cats, kps):
        height, width = cv2.imread(str(root / "train" / image_id)).shape[:2]
        sizes.add((height, width))
        assert VARY_SIZE_RANGE[0] <= min(height, width) and max(height, width) <= VARY_SIZE_RANGE[1]
        own = points[list(CATEGORY_KEYPOINTS[category])]
        assert np.all((own[:, 0] >= 0) & (own[:, 0] < width) & (own[:, 1] >= 0) & (own[:, 1] < height))
    assert len(sizes) >= 3 and (512, 512) not in sizes


def test_garment_scale_sets_how_much_of_the_frame_a_garment_fills():
    def extents(scale):  # each garment's keypoint box: its longer side over the shorter image side
        out = []
        for seed in range(12):
            for category in CATEGORIES:
                sample = render_sample(category, np.random.default_rng(seed), (256, 320), scale)
                own = sample.points[list(CATEGORY_KEYPOINTS[category])]
                out.append(np.max(np.nanmax(own, axis=0) - np.nanmin(own, axis=0)) / 256)
        return np.array(out)

    small, default = extents((0.3, 0.35)), extents(SCALE_RANGE)
    assert small.max() <= 0.35 * 1.25  # the outline's extent, rotated by up to 10° and sheared by up to 0.08
    assert np.median(default) > 1.8 * np.median(small)


@pytest.mark.parametrize("kwargs, message", [
    (dict(per_category=0), "per_category must be >= 1, got 0"),
    (dict(test_fraction=1.0), "test_fraction must be in [0, 1), got 1.0"),
    (dict(workers=0), "workers must be >= 1, got 0"),
    (dict(seed=-1), "seed must be >= 0, got -1"),
    (dict(image_size=(16, 512)), "image_size must be at least (32, 32), got (16, 512)"),
    (dict(garment_scale=(0.5, 1.2)),
     "garment_scale must be two shares 0 < lo <= hi <= 1 of the shorter image side, got (0.5, 1.2)"),
])
def test_bad_arguments_are_reported(tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as error:
        generate_dataset(tmp_path / "x", progress=False, **kwargs)
    assert str(error.value) == message
    assert not (tmp_path / "x").exists()


def test_unknown_category_is_reported():
    with pytest.raises(ConfigError, match=r"^unknown category 'hat'; expected one of blouse, outwear, dress, "
                                          r"skirt, trousers$"):
        draw_garment("hat", np.random.default_rng(0))


def test_ensure_dataset_generates_once_and_leaves_existing_data_alone(tmp_path):
    root = tmp_path / "data"
    created = ensure_dataset(root, per_category=2, seed=3, image_size=(64, 64), progress=False)
    assert created is not None and created["images"] == 10
    train_csv = root / "train" / "Annotations" / "train.csv"
    before = train_csv.read_bytes()
    assert ensure_dataset(root, per_category=5, seed=4, image_size=(64, 64), progress=False) is None
    assert train_csv.read_bytes() == before
