"""Models: registry, output shapes, hybridize/export round trips, parameter anchors, size checks."""
from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from fashion_gluon.config import load_config
from fashion_gluon.errors import ConfigError
from fashion_gluon.families import CPN_FAMILY
from fashion_gluon.models import CPN, Backbone, StackedHourglass, build_model, check_input_size, get_model, list_models
from fashion_gluon.models.backbones import HeatmapConv, Upsample
from fashion_gluon.models.registry import MODELS, ModelSpec

ALL_MODELS = ["cpn_detnet50", "cpn_detresnext50", "cpn_mobilenetv2_0.5", "cpn_mobilenetv2_1.0", "cpn_resnet18", "cpn_resnet50",
              "cpn_se_resnet50", "cpn_se_resnext50", "hourglass", "hourglass_small"]
# The paper anchors' 17 keypoints; a small non-square input that every model accepts.
K, SIZE = 17, (64, 128)
# Small variants for the round trips.
SMALL = {"cpn_resnet18": {"channels": 64}, "hourglass_small": {}}


def trainable_parameters(net: gluon.Block) -> int:
    """Number of trainable weights (BatchNorm running statistics excluded); shapes must be known."""
    shapes = [p.shape for p in net.collect_params().values() if p.grad_req != "null"]
    assert all(all(shape) for shape in shapes), "some parameter shapes are still unknown"
    return int(sum(np.prod(shape) for shape in shapes))


def infer_shapes(block: gluon.HybridBlock, size: tuple[int, int]) -> tuple[list[tuple], int]:
    """Output shapes of ``block`` for a (1, 3) + size input, and its number of weights, by symbolic
    shape inference (no initialization, no computation)."""
    outputs = block(mx.sym.var("data"))
    graph = mx.sym.Group(list(outputs))
    arg_shapes, out_shapes, _ = graph.infer_shape(data=(1, 3) + size)
    weights = sum(int(np.prod(shape)) for name, shape in zip(graph.list_arguments(), arg_shapes) if name != "data")
    return out_shapes, weights


def outputs_numpy(net: gluon.Block, x: mx.nd.NDArray) -> list[np.ndarray]:
    return [out.asnumpy() for out in net(x)]


@pytest.fixture(scope="module")
def forwards() -> dict:
    """The small models and one big one, initialized by get_model, with their outputs for one input."""
    mx.random.seed(0)
    x = mx.nd.random.normal(shape=(2, 3) + SIZE)
    result = {}
    for name, kwargs in {**SMALL, "cpn_detresnext50": {}}.items():
        net = get_model(name, K, **kwargs)
        result[name] = (net, x, outputs_numpy(net, x))
    return result


def test_list_models_names_every_model():
    assert list_models() == ALL_MODELS


def test_unknown_model_error_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_model("cpn_resnet101", K)
    assert str(err.value) == f"unknown model 'cpn_resnet101'; expected one of {', '.join(ALL_MODELS)}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_outputs_count_and_shape(name):
    net = build_model(name, K)
    out_shapes, _ = infer_shapes(net, SIZE)
    expected_count = net.num_stacks if isinstance(net, StackedHourglass) else len(CPN_FAMILY.outputs)
    assert out_shapes == [(1, K, SIZE[0] // 4, SIZE[1] // 4)] * expected_count


@pytest.mark.parametrize("name", sorted(SMALL) + ["cpn_detresnext50"])
def test_initialized_outputs_are_finite_with_batch_shape(forwards, name):
    net, x, outputs = forwards[name]
    for out in outputs:
        assert out.shape == (2, K, SIZE[0] // 4, SIZE[1] // 4)
        assert np.isfinite(out).all() and out.std() > 0


def test_model_strides():
    strides = {name: build_model(name, K).stride for name in ALL_MODELS}
    assert strides == {"cpn_detnet50": 16, "cpn_detresnext50": 16, "cpn_mobilenetv2_0.5": 32,
                       "cpn_mobilenetv2_1.0": 32, "cpn_resnet18": 32, "cpn_resnet50": 32,
                       "cpn_se_resnet50": 32, "cpn_se_resnext50": 32, "hourglass": 64, "hourglass_small": 64}


@pytest.mark.parametrize("name, kwargs", [(name, {}) for name in ALL_MODELS] + [
    ("hourglass", {"depth": 3}), ("hourglass_small", {"depth": 2, "num_stacks": 1}), ("cpn_resnet18", {"channels": 32})])
def test_registry_stride_is_static_and_the_built_networks(name, kwargs):
    assert MODELS[name].stride(**kwargs) == build_model(name, K, **kwargs).stride


def test_validation_builds_no_network(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("a network was built")

    monkeypatch.setattr(ModelSpec, "build", no_build)
    assert check_input_size("hourglass", (32, 32), depth=3) == (32, 32)
    assert load_config(overrides=["model.name=cpn_detnet50", "data.input_size=[272,208]"])["model"]["name"]
    with pytest.raises(ConfigError, match=r"^config: num_stacks must be a positive integer, got 0$"):
        load_config(overrides=["model.name=hourglass", "model.kwargs.num_stacks=0"])
    with pytest.raises(ConfigError, match=r"^config: unknown upsample mode 'cubic'; expected one of nearest, bilinear$"):
        load_config(overrides=["model.kwargs.upsample=cubic"])
    with pytest.raises(ConfigError, match=r"^config: CPN takes no argument 'depth'; its arguments: channels, upsample$"):
        load_config(overrides=["model.kwargs.depth=3"])


def test_cpn_outputs_are_distinct_predictions(forwards):
    outputs = forwards["cpn_resnet18"][2]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert not np.allclose(outputs[i], outputs[j])


@pytest.mark.parametrize("backbone", ["detnet59", "detresnext50"])
def test_detnet_backbone_strides_and_channels(backbone):
    net = Backbone(backbone)
    out_shapes, _ = infer_shapes(net, SIZE)
    assert net.strides == (4, 8, 16, 16, 16)
    assert out_shapes == [(1, c, SIZE[0] // s, SIZE[1] // s)
                          for c, s in zip((256, 512, 1024, 1024, 1024), (4, 8, 16, 16, 16))]


@pytest.mark.parametrize("name, channels", [("resnet18_v1b", (64, 128, 256, 512)),
                                           ("mobilenetv2_0.5", (12, 16, 48, 160))])
def test_backbone_returns_strides_4_to_32(name, channels):
    backbone = Backbone(name)
    backbone.initialize()
    features = backbone(mx.nd.zeros((1, 3, 64, 96)))
    assert backbone.channels == channels and backbone.strides == (4, 8, 16, 32)
    assert [f.shape for f in features] == [(1, c, 64 // s, 96 // s) for c, s in zip(channels, (4, 8, 16, 32))]


def test_unknown_backbone_error():
    with pytest.raises(ValueError, match=r"^unknown backbone 'vgg16'; expected one of resnet18_v1b, "):
        CPN("vgg16", K)


@pytest.mark.parametrize("name", ["cpn_resnet18", "hourglass_small", "cpn_detresnext50"])
def test_hybridized_equals_imperative(forwards, name):
    net, x, expected = forwards[name]
    net.hybridize(static_alloc=True, static_shape=True)
    try:
        for got, want in zip(outputs_numpy(net, x), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    finally:
        net.hybridize(active=False)


@pytest.mark.filterwarnings("ignore:Cannot decide type")  # export() traces without a dtype for 'data'
@pytest.mark.parametrize("name", sorted(SMALL))
def test_export_then_symbolblock_imports_gives_same_outputs(tmp_path, name):
    net = get_model(name, K, **SMALL[name])
    x = mx.nd.random.normal(shape=(1, 3) + SIZE)
    expected = outputs_numpy(net, x)
    net.hybridize(static_alloc=True, static_shape=True)
    net(x)
    net.export(str(tmp_path / name))
    loaded = gluon.SymbolBlock.imports(str(tmp_path / f"{name}-symbol.json"), ["data"],
                                       str(tmp_path / f"{name}-0000.params"))
    got = outputs_numpy(loaded, x)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_cpn_resnet50_parameters_match_paper():
    # CPN paper / HRNet table: ResNet-50 CPN, 17 keypoints: 27.0 M parameters.
    _, weights = infer_shapes(build_model("cpn_resnet50", 17), (256, 192))
    assert weights == pytest.approx(27.0e6, rel=0.05)


@pytest.mark.parametrize("name", sorted(SMALL) + ["cpn_detresnext50"])
def test_every_parameter_is_used_by_the_graph(forwards, name):
    net = forwards[name][0]
    assert trainable_parameters(net) == infer_shapes(net, SIZE)[1]


def test_hourglass_8_stacks_parameters_match_paper():
    # HRNet table: 8-stack hourglass, 17 keypoints: 25.1 M parameters (all shapes known without a forward).
    net = build_model("hourglass", 17, num_stacks=8)
    assert trainable_parameters(net) == pytest.approx(25.1e6, rel=0.05)


def test_parameters_grow_with_keypoints_by_heatmap_convs():
    # Each hourglass stack has a 1×1 head (f·K + K) and, except the last, a K → f remap (K·f).
    f, stacks = 64, 2
    small = build_model("hourglass_small", 3)
    large = build_model("hourglass_small", 5)
    extra_per_keypoint = stacks * (f + 1) + (stacks - 1) * f
    assert trainable_parameters(large) - trainable_parameters(small) == 2 * extra_per_keypoint


@pytest.mark.parametrize("name, size, stride", [("cpn_resnet50", (250, 192), 32), ("hourglass", (256, 200), 64),
                                                ("cpn_detnet50", (0, 16), 16)])
def test_check_input_size_rejects_with_clear_message(name, size, stride):
    with pytest.raises(ValueError) as err:
        check_input_size(name, size)
    nearest = tuple(max(stride, -(-side // stride) * stride) for side in size)
    assert str(err.value) == (f"input size (H, W) = {size} does not suit {name}: H and W must be positive "
                              f"multiples of its stride {stride}, e.g. {nearest}")


def test_check_input_size_accepts_multiples_and_uses_kwargs(forwards):
    assert check_input_size("cpn_resnet50", (256, 192)) == (256, 192)
    assert check_input_size("cpn_detnet50", (272, 208)) == (272, 208)
    assert check_input_size(forwards["hourglass_small"][0], (256, 192)) == (256, 192)
    assert check_input_size("hourglass", (32, 32), depth=3) == (32, 32)
    with pytest.raises(ValueError, match="of its stride 32"):
        check_input_size("hourglass", (64, 48), depth=3)


def test_model_argument_validation():
    with pytest.raises(ValueError, match="num_keypoints must be a positive integer, got 0"):
        build_model("cpn_resnet18", 0)
    with pytest.raises(ValueError, match="num_stacks must be a positive integer, got 0"):
        build_model("hourglass", 17, num_stacks=0)
    with pytest.raises(ValueError, match="unknown upsample mode 'cubic'; expected one of nearest, bilinear"):
        build_model("hourglass_small", 17, upsample="cubic")
    with pytest.raises(ValueError, match="model 'hourglass' has no ImageNet backbone; pretrained must be False"):
        get_model("hourglass", 17, pretrained=True)


def test_default_initialize_is_he_with_small_heatmap_convs():
    net = build_model("hourglass_small", 4)
    net.initialize()
    stem = net.stem[0].weight.data().asnumpy()  # 64 × 3 × 7 × 7, He: std = sqrt(2 / fan_out)
    assert stem.std() == pytest.approx(np.sqrt(2 / (64 * 49)), rel=0.1)
    head = net.heads[0].weight.data().asnumpy()
    assert head.std() == pytest.approx(0.001, rel=0.3)
    assert (net.stem[1].gamma.data().asnumpy() == 1).all()


def test_upsample_nearest_and_half_pixel_bilinear():
    x = mx.nd.array(np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4))
    nearest = Upsample(2, "nearest")(x).asnumpy()
    bilinear = Upsample(2, "bilinear")(x).asnumpy()
    assert nearest.shape == bilinear.shape == (1, 1, 2, 8)
    np.testing.assert_array_equal(nearest[0, 0, 0], [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(bilinear[0, 0, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
    assert Upsample(1)(x) is x


def test_bilinear_models_build_and_keep_shapes():
    net = get_model("cpn_resnet18", K, channels=32, upsample="bilinear")
    outputs = net(mx.nd.random.normal(shape=(1, 3) + SIZE))
    assert [o.shape for o in outputs] == [(1, K, SIZE[0] // 4, SIZE[1] // 4)] * 5


@pytest.mark.parametrize("num_keypoints", [4, 16, 24])
def test_heatmap_conv_equals_conv2d_in_outputs_and_gradients(num_keypoints):
    """The zero filters HeatmapConv pads to a multiple of 16 change nothing: outputs, input and
    weight gradients equal nn.Conv2D's with the same parameters, imperative and hybridized, and
    the stored parameters keep Conv2D's names and shapes."""
    mx.random.seed(1)
    padded = HeatmapConv(num_keypoints, 8)
    padded.initialize()
    padded.bias.set_data(mx.nd.random.normal(shape=(num_keypoints,)))
    plain = gluon.nn.Conv2D(num_keypoints, 3, padding=1, in_channels=8)
    plain.initialize()
    plain.weight.set_data(padded.weight.data())
    plain.bias.set_data(padded.bias.data())
    assert [p.shape for p in padded.collect_params().values()] == [(num_keypoints, 8, 3, 3), (num_keypoints,)]
    x = mx.nd.random.normal(shape=(2, 8, 10, 12))
    results = []
    for net, hybridize in ((plain, False), (padded, False), (padded, True)):
        if hybridize:
            net.hybridize(static_alloc=True, static_shape=True)
        x.attach_grad()
        with mx.autograd.record():
            y = net(x)
            (y * y).sum().backward()
        results.append([y.asnumpy(), x.grad.asnumpy(), net.weight.grad().asnumpy(), net.bias.grad().asnumpy()])
    for result in results[1:]:
        for got, want in zip(result, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
