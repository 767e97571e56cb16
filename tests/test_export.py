"""Deployment: symbol and ONNX export (onnxruntime round trip, numpy decoding), clear errors for
unsupported operators, INT8 quantization (calibration, fidelity, the fp32 sums), bf16, loading
exported models for prediction, CLI."""
import argparse
import json

import mxnet as mx
import numpy as np
import onnx
import pytest
from _tiny import TINY
from mxnet import gluon

from fashion_gluon.build import build_eval_dataset
from fashion_gluon.cli.scale import register
from fashion_gluon.codec import HeatmapCodec
from fashion_gluon.config import load_config
from fashion_gluon.cpu import cpu_has_bf16
from fashion_gluon.errors import ExportError
from fashion_gluon.inference import precision as precision_module
from fashion_gluon.inference.evaluate import evaluate_model
from fashion_gluon.inference.export import (
    export_onnx,
    export_run,
    export_symbol,
    load_symbol,
    onnx_problems,
    strip_initializer_inputs,
)
from fashion_gluon.inference.load import load_model
from fashion_gluon.inference.precision import to_bf16
from fashion_gluon.inference.predictor import Predictor
from fashion_gluon.inference.quantize import calibration_loader, fp32_sum_convs, quantize, quantize_run
from fashion_gluon.inference.runtimes import OnnxNet, available_runtimes
from fashion_gluon.models import get_model

SIZE = (64, 64)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # SymbolBlock: "Cannot decide type for data"


def tiny_cpn(upsample: str = "nearest") -> gluon.HybridBlock:
    """A small CPN whose heatmaps have magnitude ~1 (Xavier everywhere), so 1e-4 is a real test."""
    mx.random.seed(1)
    net = get_model("cpn_resnet18", 5, channels=16, upsample=upsample)
    for param in net.collect_params(".*weight").values():  # the heads' own Normal(0.001) too
        param.initialize(mx.init.Xavier(magnitude=2.0), force_reinit=True)
    net.hybridize()
    return net


def batch(n=2, size=SIZE, seed=0) -> mx.nd.NDArray:
    return mx.nd.array(np.random.default_rng(seed).normal(size=(n, 3, *size)).astype(np.float32))


def cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    args.func(args)


# ----------------------------------------------------------------------------- ONNX


def test_onnx_round_trip_matches_mxnet_and_decodes_with_numpy(tmp_path):
    net = tiny_cpn()
    path = export_onnx(net, SIZE, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert [value.name for value in model.graph.input] == ["data"], "weights are not graph inputs"
    runner = OnnxNet(path, stride=32)
    codec = HeatmapCodec(SIZE, 4, 2.0)
    for shape_batch, size in ((2, SIZE), (3, (96, 64))):  # dynamic batch and image size
        x = batch(shape_batch, size)
        expected = [o.asnumpy() for o in net(x)]
        got = runner.run(x.asnumpy())
        assert len(got) == 5 and expected[-1].std() > 0.1
        for e, g in zip(expected, got):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, atol=1e-4, rtol=0)
    points, scores = HeatmapCodec(SIZE, 4, 2.0).decode(runner.run(batch().asnumpy())[-1])
    ref_points, ref_scores = codec.decode(net(batch())[-1].asnumpy())
    np.testing.assert_allclose(points, ref_points, atol=1e-3)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4)


def test_strip_initializer_inputs():
    weight = onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT, [1], [2.0])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Mul", ["x", "w"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1]) for n in ("x", "w")],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])], [weight])
    model = onnx.helper.make_model(graph)
    assert strip_initializer_inputs(model) == 1
    assert [v.name for v in model.graph.input] == ["x"]
    assert strip_initializer_inputs(model) == 0


class SmoothL1Net(gluon.HybridBlock):
    def __init__(self):
        super().__init__()
        self.conv = gluon.nn.Conv2D(2, 3, padding=1, in_channels=3)

    def hybrid_forward(self, F, x):
        return F.smooth_l1(self.conv(x), scalar=1.0)


def test_onnx_export_names_an_unsupported_operator(tmp_path):
    net = SmoothL1Net()
    net.initialize()
    net.hybridize()
    with pytest.raises(ExportError, match=r"cannot export to ONNX: operator 'smooth_l1' \(node '.*'\) has no "
                                          r"ONNX converter in mxnet 1\.9\.1"):
        export_onnx(net, (8, 8), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_onnx_export_refuses_half_pixel_bilinear(tmp_path):
    with pytest.raises(ExportError, match=r"operator '_contrib_BilinearResize2D' .* align_corners=True.*"
                                          r"upsample='nearest' \(and \d+ more\)"):
        export_onnx(tiny_cpn("bilinear"), SIZE, tmp_path / "bilinear.onnx")
    net = tiny_cpn()
    net(batch())
    problems = onnx_problems(net._cached_graph[1])
    assert problems == []


needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="no native bf16 on this CPU (AVX512-BF16/AMX)")

# ----------------------------------------------------------------------------- symbol, INT8, bf16


def test_symbol_export_round_trip(tmp_path):
    net = tiny_cpn()
    symbol_file, params_file = export_symbol(net, SIZE, tmp_path / "model")
    assert symbol_file.name == "model-symbol.json" and params_file.name == "model-0000.params"
    loaded = load_symbol(tmp_path / "model")
    x = batch()
    for e, g in zip(net(x), loaded(x)):
        np.testing.assert_allclose(g.asnumpy(), e.asnumpy(), atol=1e-5)


def test_calibration_loader_yields_data_label_pairs(tiny_data):
    config = load_config(overrides=TINY)
    dataset = build_eval_dataset(config, tiny_data, "all", "train")
    loader = calibration_loader(dataset, 5, batch_size=2)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(2, 3, 64, 64), (2, 3, 64, 64), (1, 3, 64, 64)]
    rows = np.concatenate([b[1].asnumpy() for b in batches])
    assert rows[0] == 0 and rows[-1] == len(dataset) - 1 and len(set(rows.tolist())) == 5
    np.testing.assert_array_equal(batches[0][0][1].asnumpy(), dataset[int(rows[1])][0])
    for bad in (0, None):
        with pytest.raises(ExportError, match="calibration needs at least one image"):
            calibration_loader(dataset, bad)


def test_int8_keeps_upsampled_sums_in_fp32_and_stays_close(tiny_data):
    net = tiny_cpn()
    config = load_config(overrides=TINY)
    calib = calibration_loader(build_eval_dataset(config, tiny_data, "all", "train"), 16, batch_size=8)
    net(batch())
    kept = fp32_sum_convs(net._cached_graph[1])
    assert len(kept) == 3, "the GlobalNet's three upsample + add steps"
    qnet = quantize(net, calib)
    assert qnet.stride == net.stride
    x = next(iter(gluon.data.DataLoader(build_eval_dataset(config, tiny_data, "all", "val"), batch_size=8)))[0]
    expected, got = net(x)[-1].asnumpy(), qnet(x)[-1].asnumpy()
    nodes = json.loads(qnet._cached_graph[1].tojson())["nodes"]
    names = {node["name"] for node in nodes}
    assert set(kept) <= names, "kept in fp32 (a quantized node is renamed quantized_...)"
    assert sum(n["name"].startswith("quantized_") for n in nodes) > 20, "the rest is INT8"
    relative = np.abs(got - expected).mean() / np.abs(expected).mean()
    assert relative < 0.1, relative


def test_bf16_is_refused_clearly_where_the_cpu_lacks_it(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(ExportError, match="bf16 inference: this CPU has no native bfloat16"):
        to_bf16(tiny_cpn(), SIZE)


@needs_bf16
def test_bf16_is_close_to_fp32():
    net = tiny_cpn()
    x = batch()
    converted = to_bf16(net, SIZE)
    assert converted.stride == net.stride
    for e, g in zip(net(x), converted(x)):
        assert g.dtype == np.float32
        relative = np.abs(g.asnumpy() - e.asnumpy()).mean() / np.abs(e.asnumpy()).mean()
        assert relative < 0.05, relative


def test_quantize_needs_calibration_images(tiny_run, tmp_path):
    for bad in (None, 0):
        with pytest.raises(ExportError, match=r"quantize needs calibration images: pass --calib-images N with N ≥ 1"):
            quantize_run(tiny_run, tmp_path / "int8", bad)
    assert not (tmp_path / "int8").exists()


# ----------------------------------------------------------------------------- run directories, prediction


def test_exports_of_a_run_predict_like_the_run(tiny_run, tiny_data, tmp_path):
    fp32 = load_model(tiny_run)
    images = [str(p) for p in sorted((tiny_data / "test" / "Images").rglob("*.jpg"))[:4]]
    reference = Predictor([fp32], flip=True).predict(images, "all")
    for fmt in ("symbol", "onnx"):
        meta = export_run(tiny_run, tmp_path / fmt, fmt)
        assert meta["format"] == fmt and meta["category"] == "all" and meta["input_size"] == [64, 64]
        assert json.loads((tmp_path / fmt / "export.json").read_text()) == meta
        assert all((tmp_path / fmt / name).stat().st_size > 0 for name in meta["files"] + ["config.yaml"])
        model = load_model(tmp_path / fmt)
        assert model.category == "all" and model.input_size == (64, 64) and model.size_multiple == 32
        predicted = Predictor([model], flip=True).predict(images, "all")
        np.testing.assert_allclose(predicted, reference, atol=1e-3, err_msg=fmt)
    with pytest.raises(ExportError, match="unknown export format 'tflite'; expected one of symbol, onnx"):
        export_run(tiny_run, tmp_path / "x", "tflite")
    with pytest.raises(ExportError, match="onnxruntime runs ONNX exports in fp32 or.*INT8; "
                       "precision bf16 needs --runtime openvino"):
        load_model(tmp_path / "onnx", precision="bf16", runtime="onnxruntime")
    with pytest.raises(ExportError, match="is an ONNX export: run it with --runtime onnxruntime or openvino"):
        load_model(tmp_path / "onnx", runtime="mxnet")
    expected = "openvino" if "openvino" in available_runtimes() else "onnxruntime"
    assert load_model(tmp_path / "onnx").net.runtime == expected, "auto: the fastest runtime installed"
    with pytest.raises(ExportError, match="unknown precision 'fp16'"):
        load_model(tiny_run, precision="fp16")
    with pytest.raises(ExportError, match="--runtime openvino runs ONNX exports, .* is a training run"):
        load_model(tiny_run, runtime="openvino")
    with pytest.raises(ExportError, match="--runtime onnxruntime runs ONNX exports; .* is a symbol export"):
        load_model(tmp_path / "symbol", runtime="onnxruntime")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_each_runtime_predicts_the_keypoints_of_mxnet(tiny_run, tiny_data, tmp_path, runtime):
    """The same Predictor path (resize, flip, scales, decoding) with only the forward changed: fp32
    runtimes agree with MXNet to a hundredth of a pixel."""
    pytest.importorskip(runtime)
    images = [str(p) for p in sorted((tiny_data / "test" / "Images").rglob("*.jpg"))[:4]]
    reference = Predictor([load_model(tiny_run)], flip=True, scales=(1.0, 1.5)).predict(images, "all")
    export_run(tiny_run, tmp_path / "onnx", "onnx")
    model = load_model(tmp_path / "onnx", runtime=runtime)
    assert model.net.runtime == runtime
    predicted = Predictor([model], flip=True, scales=(1.0, 1.5)).predict(images, "all")  # dynamic input sizes
    np.testing.assert_allclose(predicted, reference, atol=1e-2)


def test_quantize_cli_writes_a_model_predict_accepts(tiny_run, tiny_data, tmp_path, capsys):
    out = tmp_path / "int8"
    cli(["quantize", "--checkpoint", str(tiny_run), "--calib-images", "12", "--out", str(out), "--batch", "4"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["format"] == "int8" and report["calib_images"] == 12
    ne = report["val"]["ne"]
    assert set(ne) == ({"fp32", "bf16", "int8"} if cpu_has_bf16() else {"fp32", "int8"})
    assert report["val"]["int8_ne_loss"] == pytest.approx(ne["int8"] - ne["fp32"])
    int8 = load_model(out)
    assert evaluate_model(int8, tiny_data)["ne"] == pytest.approx(ne["int8"])
    assert evaluate_model(load_model(tiny_run), tiny_data)["ne"] == pytest.approx(ne["fp32"])
    images = [str(p) for p in sorted((tiny_data / "test" / "Images").rglob("*.jpg"))[:3]]
    points = Predictor([int8], flip=False).predict(images, "all")
    reference = Predictor([load_model(tiny_run)], flip=False).predict(images, "all")
    assert points.shape == (3, 24, 2) and np.isfinite(points).all()
    assert np.median(np.abs(points - reference)) < 8, "INT8 keypoints stay near fp32's on 128 px images"
    from fashion_gluon.cli import main
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), "--split", "val", "--out", str(tmp_path / "s.csv"),
                 "--json"]) == 0, "predict takes the INT8 export directory (data root from export.json)"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ne"] == pytest.approx(ne["int8"])


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_quantize_cli_onnx_int8_reports_its_ne_loss_and_predicts(tiny_run, tiny_data, tmp_path, capsys, runtime):
    pytest.importorskip(runtime)
    out = tmp_path / "int8-onnx"
    cli(["quantize", "--checkpoint", str(tiny_run), "--calib-images", "8", "--format", "onnx", "--runtime", runtime,
         "--out", str(out), "--batch", "4"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["format"] == "onnx" and report["precision"] == "int8" and report["files"] == ["model.onnx"]
    assert report["quantized_convs"] > 20 and report["calib_images"] == 8
    assert report["val"]["int8_runtime"] == runtime
    ne = report["val"]["ne"]
    assert report["val"]["int8_ne_loss"] == pytest.approx(ne["int8"] - ne["fp32"])
    model = load_model(out, runtime=runtime)
    assert model.net.runtime == runtime and model.net.runner.precision == "int8", "export.json says int8"
    assert evaluate_model(model, tiny_data)["ne"] == pytest.approx(ne["int8"])
    images = [str(p) for p in sorted((tiny_data / "test" / "Images").rglob("*.jpg"))[:3]]
    points = Predictor([model]).predict(images, "all")
    reference = Predictor([load_model(tiny_run)]).predict(images, "all")
    assert np.median(np.abs(points - reference)) < 4, "INT8 keypoints stay near fp32's on 128 px images"
    with pytest.raises(ExportError, match="--format onnx calibrates on min/max"):
        quantize_run(tiny_run, tmp_path / "bad", 4, calib_mode="entropy", fmt="onnx")


def test_export_cli(tiny_run, tmp_path, capsys):
    cli(["export", "--checkpoint", str(tiny_run), "--format", "symbol", "--out", str(tmp_path / "sym")])
    meta = json.loads(capsys.readouterr().out)
    assert meta["files"] == ["model-symbol.json", "model-0000.params"] and meta["source"] == str(tiny_run.resolve())
