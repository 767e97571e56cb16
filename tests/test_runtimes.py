"""ONNX runtimes (fashion_gluon.inference.runtimes): onnxruntime and OpenVINO against MXNet fp32
on a tiny CPN, dynamic batch and image sizes, static INT8 (QDQ) quantization, clear errors.

Tolerances, relative to the largest |heatmap| of the MXNet fp32 reference:

* fp32 (onnxruntime, OpenVINO f32): 1e-4. Same arithmetic, only summation order differs.
* bf16 (OpenVINO): 8 mantissa bits (relative rounding 2^-9 ≈ 0.2 %) per stored activation and
  weight, compounded over ~30 layers; mean error < 3 %, max < 10 %. A CPU without bf16
  instructions runs f32 instead (then the fp32 tolerance holds, and is checked).
* int8 (QDQ U8S8, 7-bit per-channel weights, per-tensor activations calibrated min/max on 8
  images; stem conv, heatmap convs and top-down sums in fp32): one activation step is 1/255
  of the calibrated range at each of ~20 quantized layers. Measured here ≤ 6 % max and ≤ 3 %
  mean in both runtimes; asserted max < 15 %, mean < 5 %.
"""
import sys

import mxnet as mx
import numpy as np
import onnx
import pytest

from fashion_gluon.errors import FashionGluonError
from fashion_gluon.inference.export import export_onnx
from fashion_gluon.inference.runtimes import (ModelFileError, OnnxRuntimeNet, OpenVINONet, RuntimeMissingError,
                                              available_runtimes, fp32_nodes, quantize_onnx)
from fashion_gluon.models import get_model

try:  # ONNX Runtime's quantization tool needs onnx >= 1.16; the project pins onnx 1.15.0 for mx.onnx export
    import onnxruntime.quantization  # noqa: F401
    HAS_QUANTIZER = True
except ImportError:
    HAS_QUANTIZER = False
needs_quantizer = pytest.mark.skipif(not HAS_QUANTIZER, reason="onnxruntime.quantization does not import with onnx 1.15")

SIZE = (64, 64)
SHAPES = ((1, SIZE), (3, SIZE), (2, (96, 64)))  # dynamic batch and a second image size
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # SymbolBlock: "Cannot decide type for data"


def batch(n, size=SIZE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, *size)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(net, fp32 ONNX file, QDQ INT8 ONNX file, its fp32 nodes) of a small CPN whose heatmaps have magnitude ~1
    (Xavier everywhere, so a relative tolerance is a real test)."""
    mx.random.seed(1)
    net = get_model("cpn_resnet18", 4, channels=32)
    for param in net.collect_params(".*weight").values():
        param.initialize(mx.init.Xavier(magnitude=2.0), force_reinit=True)
    net.hybridize()
    folder = tmp_path_factory.mktemp("runtimes")
    path = export_onnx(net, SIZE, folder / "tiny.onnx")
    calibration = [batch(4, seed=10 + i) for i in range(2)]
    keep = fp32_nodes(path) if HAS_QUANTIZER else []
    int8 = quantize_onnx(path, folder / "tiny-int8.onnx", calibration, exclude_nodes=keep) if HAS_QUANTIZER else None
    return net, path, int8, keep


def reference(net, x: np.ndarray) -> list[np.ndarray]:
    return [o.asnumpy() for o in net(mx.nd.array(x))]


def relative_errors(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(max, mean) |got − expected| over the largest |expected|."""
    assert got.shape == expected.shape and got.dtype == np.float32
    scale = np.abs(expected).max()
    difference = np.abs(got - expected)
    return difference.max() / scale, difference.mean() / scale


def check_all_shapes(net, runner, max_error: float, mean_error: float) -> None:
    for n, size in SHAPES:
        x = batch(n, size)
        expected, got = reference(net, x), runner.run(x)
        assert len(got) == len(expected) == 5 and expected[-1].std() > 0.1
        for e, g in zip(expected, got):
            worst, mean = relative_errors(g, e)
            assert worst < max_error and mean < mean_error, (n, size, worst, mean)


def test_available_runtimes_lists_what_imports():
    found = available_runtimes()
    assert found[:2] == ["mxnet", "onnxruntime"]
    assert ("openvino" in found) == _imports("openvino")


def _imports(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def test_onnxruntime_fp32_matches_mxnet(tiny):
    net, path, *_ = tiny
    check_all_shapes(net, OnnxRuntimeNet(path, threads=2), 1e-4, 1e-5)


@pytest.mark.parametrize("hint", ["throughput", "latency"])
def test_openvino_fp32_matches_mxnet(tiny, hint):
    pytest.importorskip("openvino")
    net, path, *_ = tiny
    runner = OpenVINONet(path, "fp32", threads=2, hint=hint)
    check_all_shapes(net, runner, 1e-4, 1e-5)
    assert runner.inference_precision == "f32"
    # one compiled model per input shape; throughput: per chunk shape (batch 3 over 2 streams:
    # 2 + 1 images), and batch 1 as one request on both threads
    chunks = [(1, 3, 64, 64, "1 stream"), (2, 3, 64, 64), (1, 3, 64, 64), (1, 3, 96, 64)]
    assert sorted(runner._compiled, key=str) == sorted(chunks if hint == "throughput" else
                                                       [(n, 3, *s) for n, s in SHAPES], key=str)


def test_openvino_bf16_is_close(tiny):
    pytest.importorskip("openvino")
    net, path, *_ = tiny
    runner = OpenVINONet(path, "bf16", threads=2)
    runner.run(batch(1))
    if runner.inference_precision == "bf16":
        check_all_shapes(net, runner, 0.10, 0.03)
    else:  # no bf16 instructions (e.g. AVX2-only CPUs): OpenVINO runs f32
        assert runner.inference_precision == "f32"
        check_all_shapes(net, runner, 1e-4, 1e-5)


@needs_quantizer
def test_quantize_onnx_writes_qdq_with_fp32_exclusions(tiny, tmp_path):
    _, path, int8, keep = tiny
    assert keep[0] == "cpn0_backbone0_resnetv1b_batchnorm0_fwd", "the stem conv (BatchNorm fused in)"
    assert sum("heatmapconv" in name for name in keep) == 5, "the five heatmap convolutions"
    assert sum("_plus" in name for name in keep) == 3, "the GlobalNet's three upsample + add sums"
    out = quantize_onnx(path, tmp_path / "all.onnx", [batch(2)], activations="int8")  # S8S8, nothing kept
    model = onnx.load(str(out))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    zero_points = {i.name: i.data_type for i in model.graph.initializer if i.name.endswith("_zero_point")}
    assert onnx.TensorProto.INT8 in zero_points.values() and onnx.TensorProto.UINT8 not in zero_points.values()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.onnx"], "no temporary file left"
    graph = onnx.load(str(int8)).graph
    weights = {initializer.name for initializer in graph.initializer}
    nodes = {node.name: node for node in graph.node}
    for name in keep:  # fp32 convolutions keep fp32 weights (their inputs may still be dequantized INT8)
        if nodes[name].op_type == "Conv":
            assert nodes[name].input[1] in weights, name
    kept_weights = sum(n.op_type == "Conv" and n.input[1] in weights for n in graph.node)
    assert kept_weights == 9, "only the excluded convolutions have fp32 weights"


@needs_quantizer
def test_onnxruntime_int8_is_close(tiny):
    net, _, int8, _ = tiny
    check_all_shapes(net, OnnxRuntimeNet(int8, threads=2), 0.15, 0.05)


@needs_quantizer
def test_openvino_int8_is_close_and_runs_in_int8(tiny):
    pytest.importorskip("openvino")
    net, _, int8, _ = tiny
    runner = OpenVINONet(int8, "int8", threads=2)
    check_all_shapes(net, runner, 0.15, 0.05)
    compiled, _ = next(iter(runner._compiled.values()))
    precisions = {op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ops()}
    assert precisions & {"u8", "i8"}, precisions


def test_errors_name_the_file(tiny, tmp_path):
    _, path, *_ = tiny
    missing, corrupt = tmp_path / "missing.onnx", tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf \x00\xff" * 10)
    runners = [OnnxRuntimeNet] + ([lambda p: quantize_onnx(p, tmp_path / "q.onnx", [batch(1)])] if HAS_QUANTIZER else [])
    if _imports("openvino"):
        runners.append(OpenVINONet)
    for make in runners:
        with pytest.raises(ModelFileError, match=f"^{missing}: no such ONNX model file$"):
            make(missing)
        with pytest.raises(ModelFileError, match=f"^{corrupt}: ") as caught:
            make(corrupt)
        assert "\n" not in str(caught.value)
    assert not (tmp_path / "q.onnx").exists()
    if _imports("openvino"):
        with pytest.raises(ModelFileError, match="precision int8 needs a QDQ-quantized model"):
            OpenVINONet(path, "int8")
    assert issubclass(ModelFileError, FashionGluonError)


@pytest.mark.parametrize("module", ["openvino", "onnxruntime"])
def test_missing_runtime_names_the_extra(tiny, monkeypatch, module):
    _, path, *_ = tiny
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    make = OpenVINONet if module == "openvino" else OnnxRuntimeNet
    extra = "openvino" if module == "openvino" else "export"
    with pytest.raises(RuntimeMissingError, match=rf"^{module} is not installed .*pip install -e \.\[{extra}\]$"):
        make(path)
    assert module not in available_runtimes()
    assert issubclass(RuntimeMissingError, FashionGluonError)
