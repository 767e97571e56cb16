"""Where OpenVINO runs a (QDQ) ONNX model in which precision.

* :func:`precision_audit`: compile it, run it with ``PERF_COUNT`` on, and list the executed
  layers of ``get_runtime_model()`` with their ``layerType``, ``runtimePrecision`` and time
  (``get_profiling_info``).
* :func:`layer_report`: each Conv, Add of two activations and Resize of the ONNX model (the
  original layers), its FLOPs in OpenVINO's reading of it, its role in a CPN (stem, body conv,
  heatmap conv, add, upsample) and the precision of the runtime layer it was executed in (the
  one whose ``originalLayersNames`` holds it); :func:`int8_flop_share` sums it up.
* :func:`compare_placements` (``fashion-gluon bench int8``): for each QDQ variant (placement ×
  weight scale × weight bits, :mod:`~fashion_gluon.inference.qdq`), its int8 FLOP share, its
  OpenVINO INT8 / fp32 throughput ratio timed in back-to-back pairs in one process, its
  heatmap error, and with a trained run its NE loss against MXNet fp32.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..inference.qdq import (
    DEFAULT_PLACEMENT,
    DEFAULT_WEIGHT_SCALE,
    PLACEMENTS,
    WEIGHT_BITS,
    WEIGHT_SCALES,
    default_weight_bits,
    heatmap_convs,
    output_nodes,
    quantize_onnx,
    stem_convs,
)
from ..inference.runtimes import OpenVINONet, load_onnx

#: OpenVINO's runtime precisions that are 8-bit integers.
INT8_PRECISIONS = ("u8", "i8")
#: OpenVINO's suffixes of an original layer's friendly name: the ONNX frontend splits a Conv
#: into ``NAME/WithoutBiases`` and its bias; the low-precision transformations rename an op
#: they put dequantization after to ``NAME_original``.
_NAME_SUFFIXES = ("/WithoutBiases", "_original")


def precision_audit(onnx_path: "str | os.PathLike", batch: int = 8, size: tuple[int, int] = (256, 256),
                    threads: int = 2, iters: int = 3) -> list[dict]:
    """Executed layers of the model at ``onnx_path`` compiled by OpenVINO (latency hint, one
    request on ``threads``), slowest first: {"name", "type", "precision", "ms"} (best of
    ``iters`` runs on random data)."""
    runner = OpenVINONet(onnx_path, "fp32", threads=threads, hint="latency")
    runner.config["PERF_COUNT"] = True
    compiled, (request,) = runner._compile((batch, 3, *size), 1)
    precision = {op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str)
                 for op in compiled.get_runtime_model().get_ops()}
    data = np.random.default_rng(0).normal(size=(batch, 3, *size)).astype(np.float32)
    best: dict = {}
    for _ in range(iters):
        request.infer({0: data})
        for info in request.get_profiling_info():
            if info.status.name != "EXECUTED":
                continue
            ms = info.real_time.total_seconds() * 1000
            row = best.setdefault(info.node_name, {"name": info.node_name, "type": info.node_type,
                                                   "precision": precision.get(info.node_name, "?"), "ms": ms})
            row["ms"] = min(row["ms"], ms)
    return sorted(best.values(), key=lambda row: -row["ms"])


def format_audit(rows: list[dict], top: int = 25) -> str:
    """Time per (type, precision), then the ``top`` slowest layers, as Markdown."""
    total = sum(row["ms"] for row in rows) or 1.0
    groups: dict = {}
    for row in rows:
        key = (row["type"], row["precision"])
        groups[key] = groups.get(key, 0.0) + row["ms"]
    lines = ["| type | precision | ms | share |", "|---|---|---|---|"]
    lines += [f"| {t} | {p} | {ms:.1f} | {100 * ms / total:.0f} % |"
              for (t, p), ms in sorted(groups.items(), key=lambda item: -item[1])]
    lines += ["", "| layer | type | precision | ms |", "|---|---|---|---|"]
    lines += [f"| {row['name']} | {row['type']} | {row['precision']} | {row['ms']:.2f} |" for row in rows[:top]]
    return "\n".join(lines)


def _onnx_name(friendly: str) -> str:
    for suffix in _NAME_SUFFIXES:
        if friendly.endswith(suffix):
            return friendly[:-len(suffix)]
    return friendly


#: The ONNX ops the layer report lists, and OpenVINO's types of them.
_LAYER_TYPES = {"Conv": ("Convolution", "GroupConvolution"), "Add": ("Add",), "Resize": ("Interpolate",)}


def _original_layers(graph, model) -> list[dict]:
    """{"name", "type" (OpenVINO's), "flops"} of each Conv, Add of two computed inputs and
    Resize of the ONNX ``graph``, from the OpenVINO ``model`` read from it (static shapes).
    FLOPs: 2 per multiply-add of a convolution, 1 per output element of the others."""
    constant = {initializer.name for initializer in graph.initializer}
    wanted = {node.name: node.op_type for node in graph.node if node.op_type in _LAYER_TYPES
              and not (node.op_type == "Add" and set(node.input) & constant)}
    layers = []
    for op in model.get_ops():
        kind, name = op.get_type_name(), _onnx_name(op.get_friendly_name())
        if name not in wanted or kind not in _LAYER_TYPES[wanted[name]]:
            continue  # not a listed layer, or a part of one (a Conv's bias Add)
        elements = int(np.prod(list(op.get_output_shape(0))))
        if kind in ("Convolution", "GroupConvolution"):
            kernel = list(op.get_input_shape(1))[1 if kind == "Convolution" else 2:]
            flops = 2 * elements * int(np.prod(kernel))
        else:
            flops = elements
        layers.append({"name": name, "type": kind, "flops": flops})
    return layers


def layer_report(onnx_path: "str | os.PathLike", batch: int = 1, size: tuple[int, int] = (256, 256),
                 threads: int = 2) -> list[dict]:
    """The original layers (:func:`_original_layers`; nodes matched by name, as
    :func:`~fashion_gluon.inference.qdq.quantize_onnx` names every node) of the ONNX model at
    ``onnx_path`` for inputs (``batch``, 3, ``size``), each with ``role`` (stem / heatmap for those convolutions
    of :mod:`~fashion_gluon.inference.qdq`, else conv / add / upsample) and the runtime layer
    OpenVINO (latency hint, ``threads``) executed it in: ``layer``, ``layer_type``,
    ``precision`` (``runtimePrecision``; ``-`` where no executed layer names it)."""
    graph = load_onnx(onnx_path).graph
    stem, heatmap, output = set(stem_convs(graph)), set(heatmap_convs(graph)), output_nodes(graph)
    runner = OpenVINONet(onnx_path, "fp32", threads=threads, hint="latency")
    shape = (batch, 3, *size)
    model = runner.model.clone()
    model.reshape({runner.input_name: list(shape)})
    compiled, _ = runner._compile(shape, 1)
    executed = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        for name in info["originalLayersNames"].astype(str).split(","):
            executed.setdefault(_onnx_name(name), (op.get_friendly_name(), info["layerType"].astype(str),
                                                   info["runtimePrecision"].astype(str)))
    rows = []
    for layer in _original_layers(graph, model):
        name, kind = layer["name"], layer["type"]
        role = ("stem" if name in stem else "heatmap" if name in heatmap else "output" if name in output else
                "conv" if "Convolution" in kind else "add" if kind == "Add" else "upsample")
        runtime, runtime_type, precision = executed.get(name, ("-", "-", "-"))
        rows.append({**layer, "role": role, "layer": runtime, "layer_type": runtime_type, "precision": precision})
    return rows


def int8_flop_share(rows: list[dict], role: "str | None" = None) -> float:
    """Share of the FLOPs of :func:`layer_report` rows (of one ``role``, default all) that ran
    in u8 / i8."""
    chosen = [row for row in rows if role is None or row["role"] == role]
    total = sum(row["flops"] for row in chosen)
    return sum(row["flops"] for row in chosen if row["precision"] in INT8_PRECISIONS) / total if total else 0.0


def format_layers(rows: list[dict]) -> str:
    """Per role: layers, how many ran in int8, GFLOPs and their int8 share; then the layers
    that did not run in int8, as Markdown."""
    lines = ["| role | layers | int8 | GFLOP | int8 FLOP share |", "|---|---|---|---|---|"]
    for role in dict.fromkeys(row["role"] for row in rows):
        chosen = [row for row in rows if row["role"] == role]
        lines.append(f"| {role} | {len(chosen)} | {sum(r['precision'] in INT8_PRECISIONS for r in chosen)} | "
                     f"{sum(r['flops'] for r in chosen) / 1e9:.3f} | {100 * int8_flop_share(rows, role):.1f} % |")
    lines.append(f"| all | {len(rows)} | {sum(r['precision'] in INT8_PRECISIONS for r in rows)} | "
                 f"{sum(r['flops'] for r in rows) / 1e9:.3f} | {100 * int8_flop_share(rows):.1f} % |")
    lines += ["", "| not int8 | role | precision | executed in |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['role']} | {r['precision']} | {r['layer_type']} {r['layer']} |"
              for r in rows if r["precision"] not in INT8_PRECISIONS]
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, str, int]:
    """``PLACEMENT[:SCALE[:BITS]]`` (e.g. ``eltwise:tensor:7``) as (placement, weight scale,
    weight bits), defaults filled in from :mod:`~fashion_gluon.inference.qdq`; a ValueError
    naming the bad part otherwise."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"INT8 variant {text!r}: expected PLACEMENT[:SCALE[:BITS]], e.g. eltwise:channel:7")
    placement, scale, bits = (parts + [DEFAULT_WEIGHT_SCALE, str(default_weight_bits())][len(parts) - 1:])[:3]
    for value, allowed, what in ((placement, PLACEMENTS, "placement"), (scale, WEIGHT_SCALES, "weight scale"),
                                 (bits, [str(b) for b in WEIGHT_BITS], "weight bits")):
        if value not in allowed:
            raise ValueError(f"INT8 variant {text!r}: {what} {value!r} is not one of {', '.join(map(str, allowed))}")
    return placement, scale, int(bits)


#: The variants ``bench int8`` compares by default: each placement, and the weight scale and
#: bits varied around the default placement (docs/performance.md, "INT8 placement").
DEFAULT_VARIANTS = (*PLACEMENTS, f"{DEFAULT_PLACEMENT}:tensor", f"{DEFAULT_PLACEMENT}:channel:7",
                    f"{DEFAULT_PLACEMENT}:channel:8")


def compare_placements(variants: "Sequence[str]" = DEFAULT_VARIANTS, model: "str | None" = None,
                       checkpoint: "str | os.PathLike | None" = None, batch: int = 8, size: "int | None" = None,
                       data_root: "str | os.PathLike | None" = None, split: "str | None" = None,
                       rounds: int = 3, threads: "int | None" = None) -> dict:
    """For OpenVINO fp32 and each INT8 ``variants`` entry (:func:`parse_variant`) of a registry
    ``model`` (random weights, calibrated on random images, ``size``² input, default 256) or of
    a trained run (``checkpoint``: calibrated on its training images, its input size): batch
    ``batch`` img/s (best of ``rounds`` rounds); its ratio to fp32: the median over the rounds
    of fp32 time / INT8 time, the two timed back to back (best of 2 calls each) so that load
    from other processes on a shared machine hits both alike; the :func:`int8_flop_share`;
    ``heatmap_error``, the mean |final heatmaps − OpenVINO fp32's| over their largest |value|
    on the first calibration batch; and with ``split`` the single-pass NE on that split of
    ``data_root`` (default the run's) and its loss against MXNet fp32."""
    import mxnet as mx  # deferred with what follows: this module's audit needs OpenVINO alone

    from ..inference.evaluate import evaluate_model
    from ..inference.export import export_onnx
    from ..inference.model import KeypointModel
    from ..inference.runtimes import OnnxNet
    from .bench_infer import benchmarked_network
    from .limits import best_seconds

    chosen = {text: parse_variant(text) for text in variants}
    net, config, state, root, input_size, calibration, name = benchmarked_network(model, checkpoint, batch, size,
                                                                                   data_root)
    rows = [{"variant": "fp32"}] + [{"variant": text, "placement": p, "weight_scale": s, "weight_bits": b}
                                    for text, (p, s, b) in chosen.items()]
    data = np.random.default_rng(0).normal(size=(batch, 3, *input_size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        files = [export_onnx(net, input_size, Path(folder) / "fp32.onnx")]
        for index, row in enumerate(rows[1:]):
            files.append(Path(folder) / f"int8-{index}.onnx")
            quantize_onnx(files[0], files[-1], calibration, row["placement"], row["weight_scale"], row["weight_bits"])
            row["int8_flop_share"] = int8_flop_share(layer_report(files[-1], 1, input_size, threads or 2))
        runners = [OpenVINONet(path, "fp32" if index == 0 else "int8", threads=threads)
                   for index, path in enumerate(files)]
        reference = runners[0].run(calibration[0])[-1]
        for row, runner in zip(rows, runners):
            row["img_per_s"] = 0.0
            row["heatmap_error"] = float(np.abs(runner.run(calibration[0])[-1] - reference).mean()
                                         / np.abs(reference).max())
        ratios: list[list[float]] = [[] for _ in rows]
        for _ in range(rounds):
            for index, runner in enumerate(runners[1:], 1):  # each INT8 file right after fp32: a pair
                fp32, int8 = (best_seconds(lambda r=r: r.run(data), 1, 2) for r in (runners[0], runner))
                rows[0]["img_per_s"] = max(rows[0]["img_per_s"], batch / fp32)
                rows[index]["img_per_s"] = max(rows[index]["img_per_s"], batch / int8)
                ratios[index].append(fp32 / int8)
        if checkpoint is not None and split:
            fp32_ne = evaluate_model(KeypointModel.from_config(net, config, state["category"], "mxnet fp32"),
                                     root, split, (mx.cpu(),), batch)["ne"]
            for row, path in zip(rows, files):
                onnx_net = OnnxNet(path, net.stride, "openvino", "fp32" if row["variant"] == "fp32" else "int8")
                keypoints = KeypointModel.from_config(onnx_net, config, state["category"], row["variant"])
                row["ne"] = evaluate_model(keypoints, root, split, (mx.cpu(),), batch)["ne"]
                row["ne_loss"] = row["ne"] - fp32_ne
    for row, measured in zip(rows, ratios):
        row["ratio"] = float(np.median(measured)) if measured else 1.0
    return {"model": name, "batch": batch, "input_size": list(input_size), "split": split if checkpoint else None,
            "rows": rows}


def format_placements(result: dict) -> str:
    """:func:`compare_placements`' figures as a Markdown table."""
    split = result["split"]
    lines = [f"{result['model']}, {result['input_size'][0]}x{result['input_size'][1]}, batch {result['batch']}", "",
             "| variant | int8 FLOP share | img/s | / fp32 | heatmap error |"
             + (f" {split} NE | NE loss |" if split else ""), "|---|---|---|---|---|" + ("---|---|" if split else "")]
    for row in result["rows"]:
        share = f"{100 * row['int8_flop_share']:.1f} %" if "int8_flop_share" in row else "—"
        ne = f" {row['ne']:.2f} % | {row['ne_loss']:+.2f} |" if "ne" in row else ""
        lines.append(f"| {row['variant']} | {share} | {row['img_per_s']:.2f} | {row['ratio']:.2f} | "
                     f"{100 * row['heatmap_error']:.2f} % |" + ne)
    return "\n".join(lines)


__all__ = ["INT8_PRECISIONS", "DEFAULT_VARIANTS", "precision_audit", "format_audit", "layer_report", "int8_flop_share",
           "format_layers", "parse_variant", "compare_placements", "format_placements"]
