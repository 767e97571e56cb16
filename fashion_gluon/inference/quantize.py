"""INT8 quantization of MXNet models for the CPU (oneDNN), and ``quantize`` of a run (MXNet INT8
or QDQ ONNX, :mod:`.qdq`). bf16 casting is :mod:`.precision`'s job.

Fact this module relies on (mxnet 1.9.1): ``quantize_net`` wants calibration batches
``(data, label)``: a bare data batch is indexed as if it were a tuple (its first image is taken
as the whole batch).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.contrib import quantization

from ..build import build_eval_dataset, load_run
from ..errors import ExportError
from ..runs import run_data_root
from .export import PREFIX, export_onnx, export_symbol, finish_export
from .formats import CALIB_MODES, QUANTIZE_FORMATS
from .precision import keep_stride
from .qdq import DEFAULT_PLACEMENT, DEFAULT_WEIGHT_SCALE, quantize_onnx


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
    if calib_mode not in CALIB_MODES:
        raise ExportError(f"calib_mode must be one of {', '.join(CALIB_MODES)}, got {calib_mode!r}")
    data, _ = next(iter(calib_data))
    with tempfile.TemporaryDirectory() as folder:
        symbol_file, _ = export_symbol(net, tuple(data.shape[2:]), Path(folder) / PREFIX)
        keep = fp32_sum_convs(mx.sym.load(str(symbol_file)))
    qnet = quantization.quantize_net_v2(net, quantized_dtype="auto", calib_mode=calib_mode,
                                        calib_data=calib_data, exclude_layers=keep, ctx=mx.cpu())
    qnet.hybridize(static_alloc=True, static_shape=True)
    return keep_stride(qnet, net)


def quantize_run(run_dir: "str | os.PathLike", out_dir: "str | os.PathLike", calib_images: int,
                 data_root: "str | os.PathLike | None" = None, batch_size: int = 8,
                 calib_mode: str = "naive", fmt: str = "mxnet", placement: str = DEFAULT_PLACEMENT,
                 weight_scale: str = DEFAULT_WEIGHT_SCALE, weight_bits: "int | None" = None) -> dict:
    """Quantize the best weights of a run to INT8, calibrated on ``calib_images`` images of its
    training split (of ``data_root``, default the run's), into ``out_dir``: an MXNet INT8
    symbol (``fmt="mxnet"``) or an INT8 QDQ ONNX file (``fmt="onnx"``, min/max calibration,
    :mod:`.qdq` with ``placement``, ``weight_scale`` and ``weight_bits``); returns the
    export.json record."""
    if fmt not in QUANTIZE_FORMATS:
        raise ExportError(f"unknown INT8 format {fmt!r}; expected one of {', '.join(QUANTIZE_FORMATS)}")
    if calib_images is None or calib_images < 1:
        raise ExportError(f"quantize needs calibration images: pass --calib-images N with N ≥ 1 "
                          f"(got {calib_images})")
    if fmt == "onnx" and calib_mode != "naive":
        raise ExportError(f"--format onnx calibrates on min/max (naive); --calib-mode {calib_mode} is MXNet's")
    net, config, state = load_run(run_dir)
    dataset = build_eval_dataset(config, data_root or run_data_root(run_dir), state["category"], "train")
    size, out = tuple(config["data"]["input_size"]), Path(out_dir)
    calibration = calibration_loader(dataset, calib_images, batch_size)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "mxnet":
        tic = time.perf_counter()
        qnet, details = quantize(net, calibration, calib_mode), {}
        seconds = time.perf_counter() - tic
        files = export_symbol(qnet, size, out / PREFIX)
    else:
        with tempfile.TemporaryDirectory() as folder:
            fp32 = export_onnx(net, size, Path(folder) / "fp32.onnx")
            tic = time.perf_counter()
            details = quantize_onnx(fp32, out / f"{PREFIX}.onnx", (data.asnumpy() for data, _ in calibration),
                                    placement, weight_scale, weight_bits)
            seconds = time.perf_counter() - tic
        files = (out / f"{PREFIX}.onnx",)
    return finish_export(out, "int8" if fmt == "mxnet" else "onnx", files, run_dir, config, state, net.stride,
                         precision="int8", calib_images=min(calib_images, len(dataset)), calib_mode=calib_mode,
                         calib_seconds=seconds, **details)


__all__ = ["QUANTIZE_FORMATS", "calibration_loader", "fp32_sum_convs", "quantize", "quantize_run"]
