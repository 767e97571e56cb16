"""Backbone weights read from files (never downloaded): model-store and explicit files, both formats, clear errors."""
from __future__ import annotations

from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo import get_model as gluoncv_model
from gluoncv.model_zoo.model_store import short_hash

from fashion_gluon.errors import FashionGluonError
from fashion_gluon.models import MissingWeightsError, WeightStatus, backbone_weight_status, get_model


def store_file(home: Path, name: str) -> Path:
    return home / "models" / f"{name}-{short_hash(name)}.params"


def save_classifier(name: str, path: Path, legacy: bool = False) -> dict[str, np.ndarray]:
    """Save a gluoncv classifier with random values in every parameter (running statistics
    included) to ``path``; return them by structural name (``layer1.0.conv1.weight``)."""
    net = gluoncv_model(name)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    for param in net.collect_params().values():
        param.set_data(mx.nd.random.uniform(0.5, 1.5, shape=param.shape))
    path.parent.mkdir(parents=True, exist_ok=True)
    if legacy:  # the pre-MXNet-1.3 format: names relative to the classifier's prefix
        net.collect_params().save(str(path), strip_prefix=net.prefix)
    reference = path.with_name("reference.params")
    net.save_parameters(str(reference if legacy else path))
    return {key: value.asnumpy() for key, value in mx.nd.load(str(reference if legacy else path)).items()}


def trunk_weights(net, tmp_path: Path) -> dict[str, np.ndarray]:
    """The weights of the model's backbone layers shared with the classifier, by structural name."""
    path = tmp_path / "trunk.params"
    net.backbone.trunk.save_parameters(str(path))
    return {key: value.asnumpy() for key, value in mx.nd.load(str(path)).items()}


def assert_trunk_equals(trunk: dict, saved: dict, unused_prefixes: tuple[str, ...]) -> None:
    assert set(saved) - set(trunk) == {key for key in saved if key.startswith(unused_prefixes)}
    for key, value in trunk.items():
        np.testing.assert_array_equal(value, saved[key], err_msg=key)


@pytest.fixture
def mxnet_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "mxnet_home"
    monkeypatch.setenv("MXNET_HOME", str(home))
    return home


def test_pretrained_true_loads_the_model_store_file(mxnet_home, tmp_path):
    saved = save_classifier("resnet18_v1b", store_file(mxnet_home, "resnet18_v1b"))
    net = get_model("cpn_resnet18", 5, pretrained=True, channels=32)
    assert_trunk_equals(trunk_weights(net, tmp_path), saved, ("fc.",))
    outputs = net(mx.nd.random.normal(shape=(1, 3, 64, 64)))
    assert outputs[-1].shape == (1, 5, 16, 16)


@pytest.mark.parametrize("as_path", [False, True])
def test_pretrained_explicit_file(tmp_path, as_path):
    path = tmp_path / "my weights" / "r18.params"
    saved = save_classifier("resnet18_v1b", path)
    net = get_model("cpn_resnet18", 5, pretrained=path if as_path else str(path), channels=32)
    assert_trunk_equals(trunk_weights(net, tmp_path), saved, ("fc.",))


def test_detnet_loads_resnet50_weights_into_shared_stages(mxnet_home, tmp_path):
    saved = save_classifier("resnet50_v1b", store_file(mxnet_home, "resnet50_v1b"))
    net = get_model("cpn_detnet50", 5, pretrained=True)
    assert_trunk_equals(trunk_weights(net, tmp_path), saved, ("fc.", "layer4."))


def test_mobilenet_loads_the_features_it_keeps(mxnet_home, tmp_path):
    saved = save_classifier("mobilenetv2_0.5", store_file(mxnet_home, "mobilenetv2_0.5"))
    net = get_model("cpn_mobilenetv2_0.5", 5, pretrained=True, channels=32)
    assert_trunk_equals(trunk_weights(net, tmp_path), saved, ("output.",) + tuple(f"features.{i}." for i in range(20, 24)))


def test_detresnext_loads_legacy_se_resnext50_file(tmp_path):
    path = tmp_path / "se_resnext50.params"
    saved = save_classifier("se_resnext50_32x4d", path, legacy=True)
    assert not any("." in key for key in mx.nd.load(str(path)))
    net = get_model("cpn_detresnext50", 5, pretrained=str(path))
    assert_trunk_equals(trunk_weights(net, tmp_path), saved, ("output.", "features.7."))


def test_missing_store_file_names_file_directory_and_remedy(mxnet_home):
    file_name = f"resnet50_v1b-{short_hash('resnet50_v1b')}.params"
    with pytest.raises(MissingWeightsError) as err:
        get_model("cpn_detnet50", 5, pretrained=True)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, FashionGluonError)
    assert "\n" not in message
    assert message == (f"ImageNet weights of backbone detnet59 missing: {mxnet_home / 'models' / file_name} "
                       "(gluoncv's resnet50_v1b; the model store is $MXNET_HOME/models, default ~/.mxnet/models). "
                       "Training never downloads; fetch it with: fashion-gluon weights --fetch detnet59")
    assert not (mxnet_home / "models" / file_name).exists()


def test_missing_explicit_file(tmp_path):
    path = tmp_path / "absent.params"
    with pytest.raises(MissingWeightsError) as err:
        get_model("cpn_resnet18", 5, pretrained=str(path))
    assert str(err.value) == f"pretrained weight file not found: {path} (expected weights of gluoncv's resnet18_v1b)"


def test_backbone_without_published_weights_needs_a_file(mxnet_home):
    with pytest.raises(MissingWeightsError, match=r"^gluoncv publishes no ImageNet weights for se_resnet50_v1; "):
        get_model("cpn_se_resnet50", 5, pretrained=True)


def test_wrong_architecture_file_is_a_clear_error(tmp_path):
    path = tmp_path / "r18.params"
    save_classifier("resnet18_v1b", path)
    with pytest.raises(FashionGluonError) as err:
        get_model("cpn_resnet50", 5, pretrained=str(path))
    assert str(err.value).startswith(f"{path} does not hold weights of gluoncv's resnet50_v1b: ")
    assert "layer1.0.conv3.weight" in str(err.value)


def test_file_that_is_not_a_parameter_file(tmp_path):
    path = tmp_path / "notes.params"
    path.write_text("not weights")
    with pytest.raises(FashionGluonError) as err:
        get_model("cpn_resnet18", 5, pretrained=str(path))
    assert str(err.value).startswith(f"{path} does not hold weights of gluoncv's resnet18_v1b: ")
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


def test_backbone_weight_status(mxnet_home):
    store_file(mxnet_home, "resnet18_v1b").parent.mkdir(parents=True)
    store_file(mxnet_home, "resnet18_v1b").write_bytes(b"")
    assert backbone_weight_status() == [
        WeightStatus("resnet18_v1b", store_file(mxnet_home, "resnet18_v1b"), True),
        WeightStatus("resnet50_v1b", store_file(mxnet_home, "resnet50_v1b"), False),
        WeightStatus("se_resnet50_v1", None, False),
        WeightStatus("se_resnext50_32x4d", store_file(mxnet_home, "se_resnext50_32x4d"), False),
        WeightStatus("mobilenetv2_1.0", store_file(mxnet_home, "mobilenetv2_1.0"), False),
        WeightStatus("mobilenetv2_0.5", store_file(mxnet_home, "mobilenetv2_0.5"), False),
    ]


def test_model_store_dir_defaults_to_home_mxnet(monkeypatch, tmp_path):
    monkeypatch.delenv("MXNET_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert backbone_weight_status()[0].path == tmp_path / ".mxnet" / "models" / (
        f"resnet18_v1b-{short_hash('resnet18_v1b')}.params")
