"""Deployment of trained models: symbol + params and ONNX export, INT8 quantization and bf16
inference on CPU, and loading any of them for prediction.

An exported model is a directory::

    export.json                         format (symbol | onnx | int8), category, input size,
                                        network stride, source run; written last
    config.yaml                         the run's configuration (codec, validation split)
    model-symbol.json, model-0000.params   format symbol or int8
    model.onnx                          format onnx

:func:`load_model` turns such a directory, or a training run directory, into a
:class:`~fashion_gluon.predict.KeypointModel` that :class:`~fashion_gluon.predict.Predictor`
uses like any other (``precision="bf16"`` converts an fp32 model with ``mx.contrib.amp``).

Facts this module relies on (mxnet 1.9.1):

* ``mx.onnx.export_model`` works with ``onnx==1.15.0``. It lists every weight as a graph input
  too, which makes onnxruntime skip constant folding; :func:`strip_initializer_inputs` fixes
  that. ``BilinearResize2D`` is always written as ``align_corners`` Resize, so a model built
  with half-pixel bilinear upsampling is refused (use ``upsample='nearest'``), as is any
  operator without an ONNX converter; the error names the operator and node.
* ``quantize_net`` wants calibration batches ``(data, label)``: a bare data batch is indexed
  as if it were a tuple (its first image is taken as the whole batch).
* bf16 AMP keeps ``UpSampling`` in fp32, and ``Concat`` has no mixed-type rule, so
  ``Concat`` is run in fp32 too (CPN's RefineNet concatenates upsampled and plain maps).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

import mxnet as mx
import numpy as np
from mxnet import gluon

from .config import load_config, save_config
from .data.dataset import FashionAIDataset
from .data.transforms import test_transform
from .errors import FashionGluonError
from .fileio import atomic_path
from .predict import KeypointModel

FORMATS = ("symbol", "onnx")
PRECISIONS = ("fp32", "bf16")
META = "export.json"
PREFIX = "model"
INPUT_NAME = "data"


class ExportError(FashionGluonError):
    """A model cannot be exported, quantized or loaded as asked."""


# ----------------------------------------------------------------------------- symbol files


def _forward_once(net: gluon.HybridBlock, input_size: tuple[int, int], ctx: mx.Context = mx.cpu()) -> None:
    """Hybridize ``net`` (keeping its flags if already hybridized) and run a dummy batch through
    it, so that its graph exists for export and conversion."""
    if not net._active:
        net.hybridize()
    net(mx.nd.zeros((1, 3, *input_size), ctx=ctx))


def export_symbol(net: gluon.HybridBlock, input_size: tuple[int, int], prefix: "str | os.PathLike") -> tuple[Path, Path]:
    """Write ``net``'s graph and weights as ``PREFIX-symbol.json`` and ``PREFIX-0000.params``
    (each atomically); returns their paths."""
    prefix = Path(prefix)
    _forward_once(net, input_size)
    targets = (prefix.parent / f"{prefix.name}-symbol.json", prefix.parent / f"{prefix.name}-0000.params")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=prefix.parent) as folder:  # same file system: renames work
        net.export(str(Path(folder) / PREFIX), epoch=0)
        written = (Path(folder) / f"{PREFIX}-symbol.json", Path(folder) / f"{PREFIX}-0000.params")
        for source, target in zip(written, targets):
            with atomic_path(target) as tmp:
                os.replace(source, tmp)
    return targets


def load_symbol(prefix: "str | os.PathLike", ctx: mx.Context = mx.cpu()) -> gluon.SymbolBlock:
    """The hybridized SymbolBlock of ``PREFIX-symbol.json`` + ``PREFIX-0000.params``."""
    prefix = Path(prefix)
    net = gluon.SymbolBlock.imports(str(prefix.parent / f"{prefix.name}-symbol.json"), [INPUT_NAME],
                                    str(prefix.parent / f"{prefix.name}-0000.params"), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


# ----------------------------------------------------------------------------- ONNX


def _onnx_converters() -> set[str]:
    """The MXNet operators mx.onnx can convert at the installed onnx's opset."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from onnx.defs import onnx_opset_version
    opset = onnx_opset_version()
    return {op for version, table in MXNetGraph.registry_.items() if 12 <= version <= opset for op in table}


def onnx_problems(symbol: mx.sym.Symbol) -> list[str]:
    """One line per node of ``symbol`` that mx.onnx cannot export, or exports wrongly."""
    converters = _onnx_converters()
    problems = []
    for node in json.loads(symbol.tojson())["nodes"]:
        op, name, attrs = node["op"], node["name"], node.get("attrs", {})
        if op == "null":
            continue
        if op not in converters:
            problems.append(f"operator {op!r} (node {name!r}) has no ONNX converter in mxnet {mx.__version__}")
        elif op == "_contrib_BilinearResize2D" and attrs.get("align_corners", "True") not in ("True", "1"):
            problems.append(f"operator {op!r} (node {name!r}) would be exported with align_corners=True, "
                            "unlike the model's half-pixel resize; build the model with upsample='nearest'")
    return problems


def strip_initializer_inputs(model) -> int:
    """Remove the weights (initializers) from the graph inputs of the ONNX ``model`` so that
    onnxruntime treats them as constants; returns how many were removed."""
    weights = {initializer.name for initializer in model.graph.initializer}
    keep = [value for value in model.graph.input if value.name not in weights]
    removed = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return removed


def export_onnx(net: gluon.HybridBlock, input_size: tuple[int, int], path: "str | os.PathLike") -> Path:
    """Write ``net`` as an ONNX file at ``path`` (atomically) with a dynamic batch size and
    image size; raises ExportError naming an operator that does not export correctly."""
    import onnx
    path = Path(path)
    _forward_once(net, input_size)
    with tempfile.TemporaryDirectory() as folder:
        symbol_file, params_file = export_symbol(net, input_size, Path(folder) / PREFIX)
        problems = onnx_problems(mx.sym.load(str(symbol_file)))
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ExportError(f"cannot export to ONNX: {problems[0]}{more}")
        raw = Path(folder) / "raw.onnx"
        try:
            mx.onnx.export_model(str(symbol_file), str(params_file), in_shapes=[(1, 3, *input_size)],
                                 in_types=[np.float32], onnx_file_path=str(raw), dynamic=True,
                                 dynamic_input_shapes=[(None, 3, None, None)])
        except (AttributeError, NotImplementedError, ValueError) as error:
            raise ExportError(f"cannot export to ONNX: {error}") from None
        model = onnx.load(str(raw))
    strip_initializer_inputs(model)
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


class OnnxNet:
    """An ONNX file run by onnxruntime, called like a network: NDArray batch in, list of
    NDArray heatmaps out. ``stride``: input sides must be multiples of it."""

    def __init__(self, path: "str | os.PathLike", stride: int):
        import onnxruntime
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.stride = int(stride)

    def run(self, data: np.ndarray) -> list[np.ndarray]:
        """The model's outputs for a float32 batch (N, 3, H, W)."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(data, dtype=np.float32)})

    def __call__(self, data: mx.nd.NDArray) -> list[mx.nd.NDArray]:
        return [mx.nd.array(output, ctx=data.context) for output in self.run(data.asnumpy())]


# ----------------------------------------------------------------------------- INT8 and bf16


def calibration_loader(dataset, num_images: int, batch_size: int = 8) -> gluon.data.DataLoader:
    """Batches ``(images, rows)`` of ``num_images`` rows spread evenly over an evaluation
    ``dataset`` (items ``(image, matrix, row)``): the ``(data, label)`` pairs quantize_net needs."""
    if num_images is None or num_images < 1:
        raise ExportError(f"INT8 calibration needs at least one image (--calib-images N), got {num_images}")
    rows = np.unique(np.linspace(0, len(dataset) - 1, min(num_images, len(dataset))).round().astype(np.int64))
    pairs = gluon.data.SimpleDataset([int(row) for row in rows]).transform(
        lambda row: (dataset[row][0], np.float32(row)), lazy=True)
    return gluon.data.DataLoader(pairs, batch_size=min(batch_size, len(rows)), last_batch="keep")


def fp32_sum_convs(symbol: mx.sym.Symbol) -> list[str]:
    """Nodes of ``symbol``'s oneDNN INT8 partitioning to keep in fp32: the convolutions fused
    with a sum whose addend comes from ``UpSampling`` (which has no INT8 kernel). Quantized,
    such a fused sum loses the addend's precision: in a CPN's top-down path it alone raised the
    mean heatmap error from 7 % to 41 % and the NE by 3.3 points (CPN-ResNet18, 128², trained
    6 epochs on synthetic data; with these sums in fp32 INT8 changed NE by −0.2)."""
    nodes = json.loads(symbol.get_backend_symbol("MKLDNN_QUANTIZE").tojson())["nodes"]
    return [node["name"] for node in nodes
            if node["op"] == "_sg_mkldnn_conv" and node.get("attrs", {}).get("with_sum") == "true"
            and any(nodes[source[0]]["op"] == "UpSampling" for source in node["inputs"])]


def quantize(net: gluon.HybridBlock, calib_data: gluon.data.DataLoader,
             calib_mode: str = "naive") -> gluon.SymbolBlock:
    """INT8 version of ``net`` (CPU, oneDNN) by ``mx.contrib.quantization.quantize_net_v2``
    (which ``quantize_net`` wraps),
    calibrated (``naive`` min/max or ``entropy``) on ``calib_data`` batches ``(data, label)``;
    the :func:`fp32_sum_convs` stay in fp32."""
    from mxnet.contrib import quantization
    if calib_mode not in ("naive", "entropy"):
        raise ExportError(f"calib_mode must be naive or entropy, got {calib_mode!r}")
    data, _ = next(iter(calib_data))
    with tempfile.TemporaryDirectory() as folder:
        symbol_file, _ = export_symbol(net, tuple(data.shape[2:]), Path(folder) / PREFIX)
        keep = fp32_sum_convs(mx.sym.load(str(symbol_file)))
    qnet = quantization.quantize_net_v2(net, quantized_dtype="auto", calib_mode=calib_mode,
                                        calib_data=calib_data, exclude_layers=keep, ctx=mx.cpu())
    qnet.hybridize(static_alloc=True, static_shape=True)
    return _keep_stride(qnet, net)


def to_bf16(net: gluon.HybridBlock, input_size: tuple[int, int]) -> gluon.SymbolBlock:
    """``net`` converted by ``mx.contrib.amp`` to run in bfloat16 on CPU where oneDNN can
    (``Concat`` kept in fp32, see the module docstring); its inputs and outputs stay float32."""
    from mxnet.contrib import amp
    _forward_once(net, input_size)
    fp32_ops = amp.list_fp32_ops(amp.amp.bfloat16) + ["Concat", "concat"]
    converted = amp.convert_hybrid_block(net, target_dtype="bfloat16", fp32_ops=fp32_ops, ctx=mx.cpu())
    converted.hybridize(static_alloc=True, static_shape=True)
    return _keep_stride(converted, net)


def _keep_stride(converted: gluon.SymbolBlock, original) -> gluon.SymbolBlock:
    """``converted`` with the input ``stride`` of the network it was made from, if any."""
    if hasattr(original, "stride"):
        converted.stride = original.stride
    return converted


# ----------------------------------------------------------------------------- run directories


def _cpu_only(ctx: Sequence[mx.Context], what: str) -> None:
    if any(c.device_type != "cpu" for c in ctx):
        raise ExportError(f"{what} runs on CPU only, got contexts {list(ctx)}")


def run_dataset(config: dict, category: str, data_root: "str | os.PathLike", split: str) -> FashionAIDataset:
    """The evaluation dataset (no augmentation) of ``split`` as a run with ``config`` sees it."""
    data = config["data"]
    return FashionAIDataset(data_root, category, split, test_transform(tuple(data["input_size"])),
                            val_fraction=data["val_fraction"], split_seed=data["split_seed"])


def _finish_export(out: Path, fmt: str, files: Sequence[Path], run_dir, config: dict, state: dict,
                   net_stride: int, **extra) -> dict:
    """Write config.yaml and, last, export.json describing the export in ``out``; returns the latter."""
    from .engine.checkpoint import write_json
    meta = {"format": fmt, "category": state["category"], "input_size": list(config["data"]["input_size"]),
            "net_stride": int(net_stride), "files": [Path(f).name for f in files],
            "source": str(Path(run_dir).resolve()), "data_root": state.get("data_root"), **extra}
    save_config(config, out / "config.yaml")
    write_json(out / META, meta)
    return meta


def export_run(run_dir: "str | os.PathLike", out_dir: "str | os.PathLike", fmt: str = "symbol") -> dict:
    """Export the best weights of a training run to ``out_dir`` as ``fmt`` (symbol | onnx);
    returns the export.json record."""
    from .engine.evaluate import load_run
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    net, config, state = load_run(run_dir)
    size, out = tuple(config["data"]["input_size"]), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = (export_symbol(net, size, out / PREFIX) if fmt == "symbol"
             else (export_onnx(net, size, out / f"{PREFIX}.onnx"),))
    return _finish_export(out, fmt, files, run_dir, config, state, net.stride)


def quantize_run(run_dir: "str | os.PathLike", out_dir: "str | os.PathLike", calib_images: int,
                 data_root: "str | os.PathLike | None" = None, batch_size: int = 8,
                 calib_mode: str = "naive") -> dict:
    """Quantize the best weights of a run to INT8, calibrated on ``calib_images`` images of its
    training split (of ``data_root``, default the run's), into ``out_dir``; returns the
    export.json record."""
    from .engine.evaluate import load_run
    if calib_images is None or calib_images < 1:
        raise ExportError(f"quantize needs calibration images: pass --calib-images N with N ≥ 1 "
                          f"(got {calib_images})")
    net, config, state = load_run(run_dir)
    dataset = run_dataset(config, state["category"], data_root or state["data_root"], "train")
    tic = time.perf_counter()
    qnet = quantize(net, calibration_loader(dataset, calib_images, batch_size), calib_mode)
    seconds = time.perf_counter() - tic
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = export_symbol(qnet, tuple(config["data"]["input_size"]), out / PREFIX)
    return _finish_export(out, "int8", files, run_dir, config, state, net.stride,
                          calib_images=min(calib_images, len(dataset)), calib_mode=calib_mode,
                          calib_seconds=seconds)


def is_export(path: "str | os.PathLike") -> bool:
    """Whether ``path`` is an exported model directory (holds export.json)."""
    return (Path(path) / META).is_file()


def _load_exported_net(path: Path, meta: dict, ctx: Sequence[mx.Context]):
    """The network of an export directory: a SymbolBlock (symbol, int8) or an OnnxNet."""
    if meta["format"] == "onnx":
        _cpu_only(ctx, "an ONNX model")
        return OnnxNet(path / meta["files"][0], meta["net_stride"])
    if meta["format"] == "int8":
        _cpu_only(ctx, "an INT8 model")
    net = load_symbol(path / PREFIX, ctx[0])
    net.stride = int(meta["net_stride"])
    return net


def load_model(path: "str | os.PathLike", ctx: Sequence[mx.Context] = (mx.cpu(),),
               precision: str = "fp32") -> KeypointModel:
    """A KeypointModel of an export directory (any format) or a training run directory;
    ``precision="bf16"`` converts an fp32 MXNet model with ``mx.contrib.amp`` (CPU)."""
    from .engine.checkpoint import read_json
    from .engine.train import build_codec
    path, ctx = Path(path), list(ctx)
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if not is_export(path):
        from .engine.checkpoint import LAST
        if not (path / LAST).is_file():
            raise ExportError(f"{path} is neither a training run (no {LAST}) nor an exported model (no {META})")
        model, fmt = KeypointModel.from_run(path, ctx), "run"
    else:
        meta = read_json(path / META)
        config, fmt = load_config(path / "config.yaml"), meta["format"]
        model = KeypointModel(_load_exported_net(path, meta, ctx), meta["category"], build_codec(config),
                              str(path), config)
    if precision == "bf16":
        if fmt not in ("run", "symbol"):
            raise ExportError(f"bf16 applies to fp32 MXNet models; {path} is a {fmt} export")
        _cpu_only(ctx, "bf16 inference")
        model.net = to_bf16(model.net, model.input_size)
    return model


def evaluate_model(model: KeypointModel, data_root: "str | os.PathLike", split: str = "val",
                   ctx: Sequence[mx.Context] = (mx.cpu(),), batch_size: int = 8) -> dict:
    """Normalized error (see :func:`~fashion_gluon.metrics.normalized_error`) of ``model`` on
    ``split`` of ``data_root``, as its run's configuration splits it."""
    from .engine.train import evaluate_net
    dataset = run_dataset(model.config, model.category, data_root, split)
    return evaluate_net(model.net, dataset, model.codec, list(ctx), batch_size)


def precision_report(run_dir: "str | os.PathLike", int8_dir: "str | os.PathLike",
                     data_root: "str | os.PathLike | None" = None, split: str = "val",
                     batch_size: int = 8) -> dict:
    """Validation NE (percent) of a run's fp32 and bf16 inference and of its INT8 export, and
    the NE points INT8 loses against fp32."""
    from .engine.checkpoint import load_state
    data_root = data_root or load_state(run_dir)["data_root"]
    models = {"fp32": load_model(run_dir), "bf16": load_model(run_dir, precision="bf16"),
              "int8": load_model(int8_dir)}
    ne = {name: evaluate_model(model, data_root, split, batch_size=batch_size)["ne"]
          for name, model in models.items()}
    return {"split": split, "ne": ne, "int8_ne_loss": ne["int8"] - ne["fp32"]}


__all__ = ["FORMATS", "PRECISIONS", "ExportError", "export_symbol", "load_symbol", "onnx_problems",
           "strip_initializer_inputs", "export_onnx", "OnnxNet", "calibration_loader", "fp32_sum_convs", "quantize", "to_bf16",
           "run_dataset", "export_run", "quantize_run", "is_export", "load_model", "evaluate_model",
           "precision_report"]
