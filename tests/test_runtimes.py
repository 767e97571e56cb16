"""ONNX runtimes (fashion_gluon.inference.runtimes): onnxruntime and OpenVINO against MXNet fp32
on a tiny CPN, dynamic batch and image sizes, static INT8 (QDQ) quantization, clear errors.

Tolerances, relative to the largest |heatmap| of the MXNet fp32 reference:

* fp32 (onnxruntime, OpenVINO f32): 1e-4. Same arithmetic, only summation order differs.
* bf16 (OpenVINO): 8 mantissa bits (relative rounding 2^-9 ≈ 0.2 %) per stored activation and
  weight, compounded over ~30 layers; mean error < 3 %, max < 10 %. A CPU without bf16
  instructions runs f32 instead (then the fp32 tolerance holds, and is checked).
* int8 (QDQ by fashion_gluon.inference.qdq: per-tensor u8 activations calibrated min/max on 8
  images, 7-bit per-channel weights, placement convs: stem and heatmap convs in fp32): one activation step is
  1/255 of the calibrated range at each of ~50 quantized convolutions. Measured here ≤ 3.2 %
  max and ≤ 1.2 % mean in both runtimes; asserted max < 8 %, mean < 3 %.
"""
import sys

import mxnet as mx
import numpy as np
import onnx
import pytest

from fashion_gluon.errors import FashionGluonError
from fashion_gluon.inference.export import export_onnx
from fashion_gluon.inference.qdq import activation_qparams, fold_batchnorms, quantize_onnx, weight_qparams
from fashion_gluon.inference.runtimes import (
    ModelFileError,
    OnnxRuntimeNet,
    OpenVINONet,
    RuntimeMissingError,
    available_runtimes,
)
from fashion_gluon.models import get_model

SIZE = (64, 64)
SHAPES = ((1, SIZE), (3, SIZE), (2, (96, 64)))  # dynamic batch and a second image size
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # SymbolBlock: "Cannot decide type for data"


def batch(n, size=SIZE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, *size)).astype(np.float32)


def xavier_cpn(seed: int, channels: int, magnitude: float):
    """A hybridized CPN-ResNet-18 (4 keypoints) with Xavier weights everywhere, seeded."""
    mx.random.seed(seed)
    net = get_model("cpn_resnet18", 4, channels=channels)
    for param in net.collect_params(".*weight").values():
        param.initialize(mx.init.Xavier(magnitude=magnitude), force_reinit=True)
    net.hybridize()
    return net


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(net, fp32 ONNX file, QDQ INT8 ONNX file, quantize_onnx's report) of a small CPN whose heatmaps have
    magnitude ~1 (Xavier everywhere, so a relative tolerance is a real test)."""
    net = xavier_cpn(seed=1, channels=32, magnitude=2.0)
    folder = tmp_path_factory.mktemp("runtimes")
    path = export_onnx(net, SIZE, folder / "tiny.onnx")
    calibration = [batch(4, seed=10 + i) for i in range(2)]
    report = quantize_onnx(path, folder / "tiny-int8.onnx", calibration, placement="convs", weight_bits=7)
    return net, path, folder / "tiny-int8.onnx", report


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


def test_quantize_onnx_writes_qdq_with_fp32_stem_and_heatmap_convs(tiny, tmp_path):
    _, path, int8, report = tiny
    source = onnx.load(str(path)).graph
    assert report["folded_batchnorms"] == sum(n.op_type == "BatchNormalization" for n in source.node) > 20
    assert report["fp32_convs"][0].endswith("_backbone0_resnetv1b_conv0_fwd"), "the stem reads the image"
    assert sum("heatmapconv" in name for name in report["fp32_convs"]) == len(report["fp32_convs"]) - 1 == 5
    graph = onnx.load(str(int8)).graph
    ops = [node.op_type for node in graph.node]
    convs = ops.count("Conv")
    assert "BatchNormalization" not in ops and convs == sum(n.op_type == "Conv" for n in source.node)
    assert report["quantized_convs"] == convs - 6
    assert ops.count("DequantizeLinear") == report["quantized_convs"] + ops.count("QuantizeLinear")
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    int8_kernels = [w for name, w in weights.items() if name.endswith("_int8")]
    assert len(int8_kernels) == report["quantized_convs"] and all(w.dtype == np.int8 for w in int8_kernels)
    assert max(np.abs(w).max() for w in int8_kernels) == 63, "7-bit weights"
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    for node in graph.node:
        if node.op_type == "Conv":
            kept = node.name in report["fp32_convs"]
            assert (node.input[0] in dequantized) != kept and (node.input[1] in dequantized) != kept, node.name
    assert {w.dtype for name, w in weights.items() if name.endswith("_zero_point") and w.ndim == 0} == {np.dtype("uint8")}
    full = quantize_onnx(path, tmp_path / "eight.onnx", [batch(2)], placement="convs", weight_bits=8)
    kernels = [onnx.numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "eight.onnx")).graph.initializer
               if i.name.endswith("_int8")]
    assert full["weight_bits"] == 8 and max(np.abs(w).max() for w in kernels) == 127
    with pytest.raises(ModelFileError, match="is already quantized"):
        quantize_onnx(int8, tmp_path / "twice.onnx", [batch(1)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eight.onnx"], "no temporary file left"


def test_folding_batchnorms_keeps_the_outputs(tiny, tmp_path):
    _, path, *_ = tiny
    model = onnx.load(str(path))
    assert fold_batchnorms(model.graph) > 20
    onnx.save(model, str(tmp_path / "folded.onnx"))
    x = batch(2)
    for got, expected in zip(OnnxRuntimeNet(tmp_path / "folded.onnx").run(x), OnnxRuntimeNet(path).run(x)):
        assert relative_errors(got, expected)[0] < 1e-4


def test_quantization_parameters():
    scale, zero = activation_qparams(-1.0, 3.0)
    assert scale == pytest.approx(4 / 255) and zero == 64 and zero.dtype == np.uint8
    assert activation_qparams(0.5, 2.0)[1] == 0, "the range always holds 0 (ReLU outputs: zero point 0)"
    kernel = np.array([[[[0.5, -1.0]]], [[[0.0, 0.0]]]], np.float32)
    quantized, scales = weight_qparams(kernel, 8)
    assert quantized.tolist() == [[[[64, -127]]], [[[0, 0]]]] and scales.tolist() == pytest.approx([1 / 127, 1.0])


def test_onnxruntime_int8_is_close(tiny):
    net, _, int8, _ = tiny
    check_all_shapes(net, OnnxRuntimeNet(int8, "int8", threads=2), 0.08, 0.03)


def test_openvino_int8_is_close_and_runs_in_int8(tiny):
    pytest.importorskip("openvino")
    net, _, int8, _ = tiny
    runner = OpenVINONet(int8, "int8", threads=2)
    check_all_shapes(net, runner, 0.08, 0.03)
    compiled, _ = next(iter(runner._compiled.values()))
    precisions = [op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ops()
                  if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
    assert precisions.count("u8") >= 40, precisions


def test_errors_name_the_file(tiny, tmp_path):
    _, path, *_ = tiny
    missing, corrupt = tmp_path / "missing.onnx", tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf \x00\xff" * 10)
    runners = [OnnxRuntimeNet, lambda p: quantize_onnx(p, tmp_path / "q.onnx", [batch(1)])]
    if _imports("openvino"):
        runners.append(OpenVINONet)
    for make in runners:
        with pytest.raises(ModelFileError, match=f"^{missing}: no such ONNX model file$"):
            make(missing)
        with pytest.raises(ModelFileError, match=f"^{corrupt}: ") as caught:
            make(corrupt)
        assert "\n" not in str(caught.value)
    assert not (tmp_path / "q.onnx").exists()
    int8_runners = [OnnxRuntimeNet] + ([OpenVINONet] if _imports("openvino") else [])
    for make in int8_runners:
        with pytest.raises(ModelFileError, match="precision int8 needs a QDQ-quantized model"):
            make(path, "int8")
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


def test_precision_audit_lists_layers_with_their_precision(tiny):
    pytest.importorskip("openvino")
    from fashion_gluon.tools.int8_audit import format_audit, precision_audit
    _, _, int8, report = tiny
    rows = precision_audit(int8, batch=2, size=SIZE, threads=2, iters=1)
    assert rows and all({"name", "type", "precision", "ms"} <= set(row) for row in rows)
    convs = {row["name"]: row["precision"] for row in rows if row["type"] == "Convolution"}
    assert list(convs.values()).count("u8") >= 40, convs
    stem = [name for name in convs if name.startswith(report["fp32_convs"][0])]
    assert stem and all(convs[name] == "f32" for name in stem), "the stem stays f32"
    assert "| Convolution | u8 |" in format_audit(rows)


@pytest.fixture(scope="module")
def tiny16(tmp_path_factory):
    """(net, fp32 ONNX file, {placement: (QDQ file, report)}) of CPN-ResNet-18 with a 16-channel
    pyramid at 64², 7-bit per-channel weights, one file per placement."""
    from fashion_gluon.inference.qdq import PLACEMENTS
    net = xavier_cpn(seed=2, channels=16, magnitude=3.0)
    folder = tmp_path_factory.mktemp("placements")
    path = export_onnx(net, SIZE, folder / "tiny16.onnx")
    calibration = [batch(4, seed=20 + i) for i in range(2)]
    files = {}
    for placement in PLACEMENTS:
        out = folder / f"{placement}.onnx"
        files[placement] = out, quantize_onnx(path, out, calibration, placement, "channel", 7)
    return net, path, files


def _dequantized_inputs(graph) -> dict:
    """Node name -> which of its inputs are DequantizeLinear outputs."""
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return {n.name: [name in dequantized for name in n.input] for n in graph.node}


def test_each_placement_puts_qdq_where_it_says(tiny16):
    from fashion_gluon.inference.qdq import heatmap_convs, output_nodes, stem_convs
    _, path, files = tiny16
    graph = onnx.load(str(files["convs"][0])).graph
    stem, heatmap, on_output = stem_convs(graph), heatmap_convs(graph), output_nodes(graph)
    assert len(stem) == 1 and stem[0].endswith("resnetv1b_conv0_fwd") and len(heatmap) == 5
    assert all("heatmapconv" in name for name in heatmap)
    resizes = [n.name for n in graph.node if n.op_type == "Resize"]
    assert 0 < len(set(resizes) & on_output) < len(resizes), "GlobalNet's heatmap upsampling, and the pyramid's"
    for placement, (out, report) in files.items():
        graph = onnx.load(str(out)).graph
        inputs = _dequantized_inputs(graph)
        convs = [n.name for n in graph.node if n.op_type == "Conv"]
        quantized = {name for name in convs if inputs[name][:2] == [True, True]}
        assert not {name for name in convs if any(inputs[name][:2])} - quantized, "input and weights, or neither"
        expected_fp32 = ((set(stem) if placement != "full" else set())
                         | (set(heatmap) if placement in ("convs", "eltwise") else set()))
        assert set(convs) - quantized == expected_fp32 == set(report["fp32_convs"]), placement
        assert report["quantized_convs"] == len(quantized)
        constant = {i.name for i in graph.initializer}
        adds = [n for n in graph.node if n.op_type == "Add" and not set(n.input) & constant]
        assert len(adds) >= 8, "residual adds and the top-down upsample-adds"
        eltwise = placement != "convs"
        assert all(inputs[n.name][:2] == [eltwise, eltwise] for n in adds), placement
        assert all(inputs[name][0] == (eltwise and name not in on_output) for name in resizes), placement
        assert report["quantized_eltwise_inputs"] == (2 * len(adds) + len(set(resizes) - on_output)) * eltwise
    assert "Pad" not in [n.op_type for n in graph.node], "the heatmap weights' padding is folded"


def test_eltwise_placement_stays_close_to_mxnet(tiny16):
    pytest.importorskip("openvino")
    net, _, files = tiny16
    # measured here (AVX2 EPYC): max 3.9 % / mean 0.6 % of max |heatmap|
    check_all_shapes(net, OpenVINONet(files["eltwise"][0], "int8", threads=2), 0.10, 0.03)


def test_per_tensor_weights_have_one_scale(tiny, tmp_path):
    _, path, _, _ = tiny
    report = quantize_onnx(path, tmp_path / "tensor.onnx", [batch(2)], "convs", "tensor", 8)
    graph = onnx.load(str(tmp_path / "tensor.onnx")).graph
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    scales = [w for name, w in weights.items() if name.endswith("_bn_folded_scale")]
    assert len(scales) == report["quantized_convs"] and all(w.shape == () for w in scales)
    kernels = [w for name, w in weights.items() if name.endswith("_int8")]
    assert all(np.abs(w).max() == 127 for w in kernels), "each tensor's largest weight maps to the limit"
    with pytest.raises(ValueError, match="^placement must be one of convs, eltwise, heatmap, full, got 'some'$"):
        quantize_onnx(path, tmp_path / "bad.onnx", [batch(1)], placement="some")
    with pytest.raises(ValueError, match="^weight_bits must be one of 7, 8, got 4$"):
        quantize_onnx(path, tmp_path / "bad.onnx", [batch(1)], weight_bits=4)


def test_fold_constants_computes_the_padded_heatmap_weights(tiny, tmp_path):
    from fashion_gluon.inference.qdq import fold_constants
    _, path, *_ = tiny
    model = onnx.load(str(path))
    before = [n.op_type for n in model.graph.node]
    folded = fold_constants(model.graph)
    after = [n.op_type for n in model.graph.node]
    assert folded == before.count("Pad") * 3 == 5 * 2 * 3, "reshape, pad, reshape of each weight and bias"
    assert "Pad" not in after and len(before) - len(after) == folded
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and "refinenet0_heatmapconv0" in n.output[0])
    kernel = weights[conv.input[1]]
    assert kernel.shape == (16, 32, 3, 3) and not kernel[4:].any() and kernel[:4].any(), "4 filters padded to 16"
    onnx.save(model, str(tmp_path / "folded.onnx"))
    x = batch(2)
    for got, expected in zip(OnnxRuntimeNet(tmp_path / "folded.onnx").run(x), OnnxRuntimeNet(path).run(x)):
        assert np.array_equal(got, expected)


def test_layer_report_says_int8_exactly_where_conv_inputs_and_weights_are_qdq(tiny16):
    pytest.importorskip("openvino")
    from fashion_gluon.tools.int8_audit import format_layers, int8_flop_share, layer_report
    _, _, files = tiny16
    shares = {}
    for placement in ("convs", "eltwise", "heatmap"):
        out, report = files[placement]
        rows = layer_report(out, 1, SIZE)
        inputs = _dequantized_inputs(onnx.load(str(out)).graph)
        convs = {row["name"]: row for row in rows if row["type"] == "Convolution"}
        assert len(convs) == report["quantized_convs"] + len(report["fp32_convs"])
        int8 = {name for name, row in convs.items() if row["precision"] in ("u8", "i8")}
        assert int8 == {name for name in convs if inputs[name][:2] == [True, True]}, placement
        assert all(convs[name]["precision"] == "f32" for name in report["fp32_convs"])
        stem = next(row for row in rows if row["role"] == "stem")
        assert stem["flops"] == 2 * 64 * 32 * 32 * 3 * 7 * 7, "64 filters 7x7x3 at 32x32, batch 1"
        adds = [row for row in rows if row["role"] == "add"]
        int8_adds = sum(row["precision"] in ("u8", "i8") for row in adds)
        # OpenVINO runs an Add in u8 (fused into the convolution) only when both inputs are Q/DQ
        assert (int8_adds == len(adds)) == (placement != "convs") and adds, (placement, int8_adds, len(adds))
        total = sum(row["flops"] for row in rows)
        assert int8_flop_share(rows) == pytest.approx(sum(row["flops"] for row in rows
                                                          if row["precision"] in ("u8", "i8")) / total)
        shares[placement] = int8_flop_share(rows)
    assert 0.8 < shares["convs"] < shares["heatmap"] < 1.0, shares
    full = layer_report(files["full"][0], 1, SIZE)
    assert {row["role"] for row in full if row["precision"] not in ("u8", "i8")} == {"output"}, \
        "all in int8 but the upsampling of GlobalNet's heatmaps to the output"
    table = format_layers(rows)
    assert "| heatmap | 5 | 5 |" in table and "| stem | 1 | 0 |" in table


def test_parse_variant_fills_in_and_names_the_bad_part():
    from fashion_gluon.inference.qdq import default_weight_bits
    from fashion_gluon.tools.int8_audit import parse_variant
    assert parse_variant("eltwise:tensor:8") == ("eltwise", "tensor", 8)
    assert parse_variant("heatmap") == ("heatmap", "channel", default_weight_bits())
    assert parse_variant("full:tensor") == ("full", "tensor", default_weight_bits())
    with pytest.raises(ValueError, match="^INT8 variant 'convs:row': weight scale 'row' is not one of channel, tensor$"):
        parse_variant("convs:row")
    with pytest.raises(ValueError, match="^INT8 variant 'a:b:c:d': expected PLACEMENT"):
        parse_variant("a:b:c:d")
