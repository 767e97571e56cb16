"""SplitDataset, splits and the epoch sampler."""
import numpy as np
import pytest
from _fashionai import CATEGORY_KEYPOINTS
from mxnet import gluon

from fashion_gluon.codec import HeatmapCodec
from fashion_gluon.data.dataset import EpochSampler, SplitDataset
from fashion_gluon.data.sources import load_split, split_rows
from fashion_gluon.data.synthetic import generate_dataset
from fashion_gluon.data.transforms import test_transform, train_transform
from fashion_gluon.errors import DataError
from fashion_gluon.families import CPN_FAMILY


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, per_category=10, seed=2, image_size=(160, 120), progress=False)
    return root


def test_split_is_stratified_disjoint_and_seeded():
    categories = ["blouse"] * 10 + ["skirt"] * 3 + ["dress"]
    train, val = split_rows(categories, 0.2, seed=1)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(categories)
    picked = [categories[i] for i in val]
    assert picked.count("blouse") == 2 and picked.count("skirt") == 1 and "dress" not in picked
    np.testing.assert_array_equal(split_rows(categories, 0.2, seed=1)[1], val)
    assert not np.array_equal(split_rows(categories, 0.2, seed=2)[1], val)


def test_category_split_holds_only_that_category(root):
    annotations = load_split(root, "val", "skirt")
    assert set(annotations.categories) == {"skirt"} and annotations.sources[0].images == (root / "train").resolve()
    test = load_split(root, "test", "all")
    assert test.sources[0].images == (root / "test").resolve()
    assert test.keypoints is not None, "test ground truth is read when present"


def test_training_items(root):
    codec = CPN_FAMILY.codec((64, 64), 4, 2.0)
    dataset = SplitDataset(root, "trousers", "train", train_transform((64, 64)), codec)
    image, targets, weights = dataset[(3, 0)]
    k = len(CATEGORY_KEYPOINTS["trousers"])
    assert image.shape == (3, 64, 64) and image.dtype == np.float32
    assert targets.shape == (5, k, 16, 16) and weights.shape == (k,)
    again = dataset[(3, 0)]
    np.testing.assert_array_equal(image, again[0])
    np.testing.assert_array_equal(targets, again[1])
    assert not np.array_equal(image, dataset[(4, 0)][0]), "another epoch draws another augmentation"


def test_eval_items_map_back_to_the_original_image(root):
    dataset = SplitDataset(root, "all", "val", test_transform((64, 96)))
    image, matrix, row = dataset[1]
    assert image.shape == (3, 64, 96) and matrix.shape == (3, 3) and row == 1
    corner = matrix.astype(np.float64) @ np.array([119.0, 159.0, 1.0])  # last pixel of a 160x120 image
    # pixel-area resize convention x -> (x + 0.5) * W_out / W_in - 0.5
    np.testing.assert_allclose(corner[:2], [119.5 * 96 / 120 - 0.5, 159.5 * 64 / 160 - 0.5], atol=1e-3)


def test_works_with_dataloader_workers(root):
    dataset = SplitDataset(root, "all", "train", train_transform((64, 64)), HeatmapCodec((64, 64)))
    sampler = EpochSampler(len(dataset), seed=0)
    loader = gluon.data.DataLoader(dataset, batch_sampler=gluon.data.BatchSampler(sampler, 4, "discard"),
                                   num_workers=2)
    first = next(iter(loader))
    assert first[0].shape == (4, 3, 64, 64) and first[1].shape == (4, 1, 24, 16, 16)
    single = gluon.data.DataLoader(dataset, batch_sampler=gluon.data.BatchSampler(sampler, 4, "discard"))
    np.testing.assert_array_equal(first[0].asnumpy(), next(iter(single))[0].asnumpy())


def test_epoch_sampler_shards_and_reshuffles():
    sampler = EpochSampler(10, seed=3)
    epoch0 = [row for _, row in sampler]
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert sorted(epoch0) == list(range(10)) and [row for _, row in epoch1] != epoch0
    assert all(epoch == 1 for epoch, _ in epoch1)
    shards = [EpochSampler(10, seed=3, part_index=i, num_parts=2) for i in range(2)]
    rows = [[row for _, row in s] for s in shards]
    assert len(rows[0]) == len(rows[1]) == 5 and set(rows[0]).isdisjoint(rows[1])
    assert rows[0] + rows[1] == epoch0


def test_missing_layout_and_unknown_split(tmp_path, root):
    with pytest.raises(DataError, match=r"missing .*train\.csv"):
        (tmp_path / "train" / "Annotations").mkdir(parents=True)
        SplitDataset(tmp_path, "all", "train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        SplitDataset(root, "all", "dev")
    with pytest.raises(ValueError, match="unknown category 'hat'"):
        SplitDataset(root, "hat", "train")
