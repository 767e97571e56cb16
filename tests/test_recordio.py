"""RecordIO packs as training sources: a pack's SplitDataset yields exactly the image folder's
items (any image format read_image reads), record layout, test lists, bad input, CLI, DataLoader
workers, and a pack beside a folder source in one union."""
import argparse
import json
import struct

import cv2
import mxnet as mx
import numpy as np
import pytest
from _fashionai import CATEGORIES, CATEGORY_KEYPOINTS, NUM_KEYPOINTS
from mxnet import gluon

from fashion_gluon.cli.scale import register
from fashion_gluon.codec import HeatmapCodec
from fashion_gluon.data.annotations import Annotations, write_annotations
from fashion_gluon.data.dataset import SplitDataset
from fashion_gluon.data.packing import pack
from fashion_gluon.data.recordio import decode_payload, index_path, read_pack_annotations
from fashion_gluon.data.synthetic import generate_dataset
from fashion_gluon.data.transforms import test_transform, train_transform
from fashion_gluon.errors import DataError

SIZE = (64, 64)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, per_category=6, seed=1, image_size=(96, 128), progress=False)
    return root


@pytest.fixture(scope="module")
def packed(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("packs") / "train.rec"
    summary = pack(synth, "all", out, progress=False)
    return out, summary


def records(rec, category="all", transform=None, codec=None, seed=0) -> SplitDataset:
    """Every record of the pack ``rec`` as a training source."""
    return SplitDataset(rec, category, "train", transform, codec, val_fraction=0.0, seed=seed)


def assert_same_items(a, b, keys):
    assert len(a) == len(b)
    for key in keys:
        for x, y in zip(a[key], b[key]):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_pack_summary_and_files(packed):
    out, summary = packed
    assert summary == {"records": summary["records"], "rec": str(out), "idx": str(out.with_suffix(".idx")),
                       "bytes": out.stat().st_size}
    assert summary["records"] == 20 and index_path(out).is_file()  # 5 training images per category, 1 held out
    assert not list(out.parent.glob(".*tmp*")), "no temporary files left"


def test_record_dataset_equals_folder_dataset(synth, packed):
    out, _ = packed
    codec = HeatmapCodec(SIZE, 4, 2.0)
    augment = train_transform(SIZE)
    folder = SplitDataset(synth, "all", "train", augment, codec, seed=4)
    record = records(out, "all", augment, codec, seed=4)
    assert record.annotations.image_ids == folder.annotations.image_ids
    assert record.annotations.categories == folder.annotations.categories
    np.testing.assert_array_equal(record.annotations.keypoints, folder.annotations.keypoints)
    assert_same_items(folder, record, [0, 3, (2, 1), (5, len(folder) - 1)])
    for category in ("skirt", "dress"):  # a category of an 'all' pack, evaluation items
        folder = SplitDataset(synth, category, "train", test_transform(SIZE))
        record = records(out, category, test_transform(SIZE))
        assert record.channels == list(CATEGORY_KEYPOINTS[category])
        assert_same_items(folder, record, range(len(folder)))


def test_record_layout(synth, packed):
    out, _ = packed
    folder = SplitDataset(synth, "all", "train", check=False)
    reader = mx.recordio.MXIndexedRecordIO(str(index_path(out)), str(out), "r")
    header, payload = mx.recordio.unpack(reader.read_idx(reader.keys[2]))
    assert header.flag == 72 and header.id == 2
    assert CATEGORIES[int(header.id2)] == folder.annotations.categories[2]
    np.testing.assert_array_equal(header.label.reshape(NUM_KEYPOINTS, 3), folder.annotations.keypoints[2])
    image_id, image_bytes = decode_payload(payload)
    assert image_id == folder.annotations.image_ids[2]
    assert image_bytes == folder.image_path(2).read_bytes(), "the image file's bytes, unchanged"
    assert struct.unpack("<H", payload[:2])[0] == len(image_id.encode())
    reader.close()


def _write_layout(root, images: dict, test_list: bool = False) -> None:
    """A FashionAI layout whose train split (or, with ``test_list``, test list without ground
    truth) holds ``images`` {file name: array} as skirts."""
    split = root / ("test" if test_list else "train")
    folder = split / "Images" / "skirt"
    folder.mkdir(parents=True)
    ids, rows = [], []
    for index, (name, image) in enumerate(images.items()):
        encoded = cv2.imencode(".png", image)[1].tobytes()
        (folder / name).write_bytes(encoded)  # PNG bytes even behind a .jpg name
        ids.append(f"Images/skirt/{name}")
        keypoints = np.full((NUM_KEYPOINTS, 3), -1.0)
        keypoints[list(CATEGORY_KEYPOINTS["skirt"])] = [(3, 4, 1), (20 + index, 5, 1), (4, 25, 0), (22, 26, 1)]
        rows.append(keypoints)
    if test_list:
        write_annotations(split / "test.csv", Annotations(ids, ["skirt"] * len(ids)))
    else:
        write_annotations(split / "Annotations" / "train.csv",
                          Annotations(ids, ["skirt"] * len(ids), np.array(rows, dtype=np.float32)))


def test_any_image_format_decodes_like_read_image(tmp_path):
    rng = np.random.default_rng(0)
    images = {"gray.jpg": rng.integers(0, 256, (30, 32), dtype=np.uint8),
              "alpha.png": rng.integers(0, 256, (31, 33, 4), dtype=np.uint8),
              "deep.png": rng.integers(0, 65536, (32, 30, 3), dtype=np.uint16),
              "bgr.png": rng.integers(0, 256, (29, 34, 3), dtype=np.uint8)}
    _write_layout(tmp_path, images)
    pack(tmp_path, "skirt", tmp_path / "s.rec", val_fraction=0.0, progress=False)
    folder = SplitDataset(tmp_path, "skirt", "train", val_fraction=0.0)
    record = records(tmp_path / "s.rec", "skirt")
    for row in range(len(folder)):
        np.testing.assert_array_equal(record.load_image(row), folder.load_image(row))
    assert_same_items(folder, record, range(len(folder)))


def test_test_list_pack_has_no_keypoints(tmp_path):
    rng = np.random.default_rng(1)
    _write_layout(tmp_path, {f"{i}.jpg": rng.integers(0, 256, (40, 36, 3), dtype=np.uint8) for i in range(3)},
                  test_list=True)
    pack(tmp_path, "all", tmp_path / "test.rec", split="test", progress=False)
    annotations = read_pack_annotations(tmp_path / "test.rec")
    assert annotations.keypoints is None and annotations.file_rows.tolist() == [0, 1, 2]
    folder = SplitDataset(tmp_path, "skirt", "test", test_transform(SIZE))
    packed = SplitDataset(tmp_path / "test.rec", "skirt", "test", test_transform(SIZE))
    assert_same_items(folder, packed, range(3))
    with pytest.raises(DataError, match="a test list .* has no keypoints to train on"):
        records(tmp_path / "test.rec")


def test_dataloader_workers_read_the_pack(synth, packed):
    out, _ = packed
    dataset = records(out, "all", test_transform(SIZE))
    loaded = [b[0].asnumpy() for b in gluon.data.DataLoader(dataset, batch_size=4, num_workers=2)]
    direct = [b[0].asnumpy() for b in gluon.data.DataLoader(dataset, batch_size=4)]
    for x, y in zip(loaded, direct):
        np.testing.assert_array_equal(x, y)


def test_bad_input(synth, packed, tmp_path):
    out, _ = packed
    with pytest.raises(DataError, match=r"train\.txt: the output of pack must be a \.rec file"):
        pack(synth, "all", tmp_path / "train.txt", progress=False)
    with pytest.raises(DataError, match=r"missing\.idx: no such file \(a pack is a \.rec file with its \.idx"):
        (tmp_path / "missing.rec").write_bytes(b"")
        records(tmp_path / "missing.rec")
    with pytest.raises(DataError, match="no train rows of category 'trousers'"):
        pack(synth, "skirt", tmp_path / "skirt.rec", progress=False)
        records(tmp_path / "skirt.rec", "trousers")
    with pytest.raises(ValueError, match="unknown category 'hat'"):
        records(out, "hat")
    mismatched = tmp_path / "mismatched.rec"
    mismatched.write_bytes(out.read_bytes()[8:])  # the records shifted against the index
    index_path(mismatched).write_bytes(index_path(out).read_bytes())
    with pytest.raises(DataError, match=r"mismatched\.rec: no RecordIO record starts at byte \d+"):
        records(mismatched)


def test_corrupt_image_bytes_are_located(synth, packed, tmp_path):
    out, _ = packed
    broken = tmp_path / "broken.rec"
    data = bytearray(out.read_bytes())
    reader = mx.recordio.MXIndexedRecordIO(str(index_path(out)), str(out), "r")
    position = reader.idx[reader.keys[1]]
    _, payload = mx.recordio.unpack(reader.read_idx(reader.keys[1]))
    reader.close()
    image_id, image_bytes = decode_payload(payload)
    offset = position + 8 + 24 + 4 * 72 + 2 + len(image_id.encode())  # record head, IRHeader, label, id
    data[offset:offset + len(image_bytes)] = b"\0" * len(image_bytes)
    broken.write_bytes(bytes(data))
    index_path(broken).write_bytes(index_path(out).read_bytes())
    dataset = records(broken)
    with pytest.raises(DataError, match=rf"broken\.rec record 1 \({image_id}\): cannot decode the image"):
        dataset[1]


def test_pack_failure_leaves_no_files(synth, tmp_path):
    root = tmp_path / "copy"
    _write_layout(root, {"a.png": np.zeros((40, 30, 3), np.uint8), "b.png": np.zeros((40, 30, 3), np.uint8)})
    (root / "train" / "Images" / "skirt" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.png.*no such image file"):
        pack(root, "skirt", tmp_path / "out" / "s.rec", val_fraction=0.0, progress=False)
    assert not (tmp_path / "out" / "s.rec").exists() and not (tmp_path / "out" / "s.idx").exists()
    with pytest.warns(UserWarning, match="dropped 1 of 2 rows"):
        summary = pack(root, "skirt", tmp_path / "out" / "s.rec", val_fraction=0.0, on_bad_image="skip",
                       progress=False)
    assert summary["records"] == 1


def test_pack_cli(synth, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pack", "--data-root", str(synth), "--category", "trousers", "--out",
                              str(tmp_path / "t.rec"), "--split", "val", "--quiet"])
    args.func(args)
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == len(SplitDataset(synth, "trousers", "val"))
    assert records(tmp_path / "t.rec", "trousers").annotations.categories == ["trousers"] * summary["records"]


def test_a_pack_and_a_folder_train_as_one_union(synth, packed):
    out, summary = packed
    answers = synth / "test" / "annotations.csv"
    union = SplitDataset([str(out), str(answers)], "all", "train", test_transform(SIZE), val_fraction=0.0)
    pack_rows = records(out, "all", test_transform(SIZE))
    assert len(union) == summary["records"] + len(SplitDataset(synth, "all", "test"))
    for key in (0, summary["records"] - 1):  # the pack's rows come first, as the pack yields them
        for x, y in zip(pack_rows[key], union[key]):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert [source.file for source in union.annotations.sources] == [out.resolve(), answers.resolve()]


def test_predicting_a_packs_split_reads_its_records(synth, packed, tiny_run):
    from fashion_gluon.inference.predictor import Predictor

    out, _ = packed
    predictor = Predictor([tiny_run], flip=False)
    rows, from_pack = predictor.predict_split([str(out)], "val")
    folder = SplitDataset(synth, "all", "train", check=False)  # the packed rows' own image files
    paths = {image_id: folder.image_path(i) for i, image_id in enumerate(folder.annotations.image_ids)}
    np.testing.assert_array_equal(from_pack, predictor.predict([paths[i] for i in rows.image_ids], rows.categories))
