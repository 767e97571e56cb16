"""Fixtures shared by several test files: a tiny synthetic data set and a run trained on it."""
import pytest
from _tiny import TINY

from fashion_gluon.config import load_config
from fashion_gluon.data.synthetic import generate_dataset
from fashion_gluon.engine.train import fit


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """30 synthetic 128×128 images (6 per category) in the FashionAI layout."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, per_category=6, seed=5, image_size=(128, 128), progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """A 2-epoch all-category run of the TINY recipe, trained straight through."""
    out = tmp_path_factory.mktemp("run") / "straight"
    fit(tiny_data, "all", out, load_config(overrides=TINY), progress=False)
    return out
