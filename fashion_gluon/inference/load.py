"""Loading any model for prediction: a training run directory or an export directory
(symbol, ONNX, INT8), optionally converted to bf16."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import mxnet as mx

from ..errors import ExportError
from ..runs import LAST, run_config
from .export import META, PREFIX, is_export, load_symbol, read_export_meta
from .model import KeypointModel
from .precision import to_bf16
from .runtimes import RUNTIME_CHOICES, RUNTIMES, OnnxNet, available_runtimes, cpu_only


def resolve_runtime(runtime: str, fmt: str) -> str:
    """The runtime that ``runtime`` (maybe ``auto``) means for a model of format ``fmt``
    (``run``, or an export.json format). ``auto``: an ONNX export runs in OpenVINO where it is
    installed (the fastest runtime measured here in fp32 and INT8, README "Deployment"), else
    ONNX Runtime; runs and MXNet exports in MXNet."""
    if runtime != "auto":
        return runtime
    if fmt != "onnx":
        return "mxnet"
    return "openvino" if "openvino" in available_runtimes() else "onnxruntime"


def _load_exported_net(path: Path, meta: dict, ctx: Sequence[mx.Context], runtime: str, precision: str):
    """The network of an export directory: a SymbolBlock (symbol, int8) or an OnnxNet run by ``runtime``."""
    if runtime == "mxnet" and meta["format"] == "onnx":
        raise ExportError(f"{path} is an ONNX export: run it with --runtime onnxruntime or openvino (or auto)")
    if runtime != "mxnet" and meta["format"] != "onnx":
        raise ExportError(f"--runtime {runtime} runs ONNX exports; {path} is a {meta['format']} export "
                          f"(make one with: fashion-gluon export --format onnx)")
    if meta["format"] == "onnx":
        cpu_only(ctx, "an ONNX model")
        if precision == "fp32":  # an INT8 (QDQ) file runs in INT8 unless another precision is asked for
            precision = meta.get("precision", "fp32")
        return OnnxNet(path / meta["files"][0], meta["net_stride"], runtime, precision)
    if meta["format"] == "int8":
        cpu_only(ctx, "an INT8 model")
    net = load_symbol(path / PREFIX, ctx[0])
    net.stride = int(meta["net_stride"])
    return net


def load_model(path: "str | os.PathLike", ctx: Sequence[mx.Context] = (mx.cpu(),),
               precision: str = "fp32", runtime: str = "auto") -> KeypointModel:
    """A KeypointModel of an export directory (any format) or a training run directory;
    ``precision="bf16"`` converts an fp32 MXNet model with ``mx.contrib.amp`` (CPU).
    ``runtime`` onnxruntime or openvino runs an ONNX export (OpenVINO also in bf16; a
    QDQ-quantized file in INT8), ``auto`` picks by format (:func:`resolve_runtime`); the rest
    of prediction is the same."""
    path, ctx = Path(path), list(ctx)
    if runtime not in RUNTIME_CHOICES:
        raise ExportError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIME_CHOICES)}")
    export = is_export(path)
    meta = read_export_meta(path) if export else None
    runtime = resolve_runtime(runtime, meta["format"] if export else "run")
    if runtime == "mxnet" and precision not in RUNTIMES["mxnet"]:  # the ONNX runtimes check their own
        raise ExportError(f"unknown precision {precision!r}; expected one of {', '.join(RUNTIMES['mxnet'])}")
    if not export:
        if not (path / LAST).is_file():
            raise ExportError(f"{path} is neither a training run (no {LAST}) nor an exported model (no {META})")
        if runtime != "mxnet":
            raise ExportError(f"--runtime {runtime} runs ONNX exports, {path} is a training run "
                              f"(make one with: fashion-gluon export --checkpoint {path} --format onnx --out DIR)")
        model, fmt = KeypointModel.from_run(path, ctx), "run"
    else:
        config, fmt = run_config(path), meta["format"]
        net = _load_exported_net(path, meta, ctx, runtime, precision)
        model = KeypointModel.from_config(net, config, meta["category"], str(path))
    if precision == "bf16" and runtime == "mxnet":
        if fmt not in ("run", "symbol"):
            raise ExportError(f"bf16 applies to fp32 MXNet models; {path} is a {fmt} export")
        cpu_only(ctx, "bf16 inference")
        model.net = to_bf16(model.net, model.input_size)
    return model


__all__ = ["resolve_runtime", "load_model"]
