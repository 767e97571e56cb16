"""Static INT8 quantization of an exported ONNX model into QDQ form, with the ``onnx`` package
alone (calibration runs the fp32 model in onnxruntime): the file OpenVINO runs in INT8.

What the written model holds:

* constant subgraphs are folded (the heatmap convolutions' zero-padded weights become
  initializers) and every BatchNormalization that follows a Conv is folded into the Conv's
  weights and bias;
* each quantized Conv reads ``DequantizeLinear(QuantizeLinear(x))`` of its input — per-tensor
  uint8 with a zero point, from the calibrated min/max of ``x`` (a tensor read by several
  nodes gets one pair) — and ``DequantizeLinear`` of symmetric int8 weights, per output
  channel or per tensor (:data:`WEIGHT_SCALES`);
* which layers get Q/DQ is a :data:`PLACEMENTS` entry, a set of :data:`LAYER_GROUPS`: the body
  convolutions; the eltwise inputs (both inputs of every residual and upsample Add, every
  Resize off the output path), which OpenVINO's low-precision transformations need to keep
  those ops in u8 — an Add with one float input runs as an f32 subgraph; the heatmap
  convolutions; the stem. Bias, pooling and the outputs stay float32.

``weight_bits``: 8 on CPUs with VNNI (``vpdpbusd`` adds u8·s8 products in 32 bits); 7 on CPUs
without it, where ``vpmaddubsw`` adds pairs of u8·s8 products in saturating 16 bits: with
7-bit weights a pair stays below 2·255·63 < 2^15. What each choice measured (speed, share of
the FLOPs OpenVINO ran in int8, NE loss): docs/performance.md, "INT8 placement".

Why not ``onnxruntime.quantization``: it needs onnx ≥ 1.16, and the project pins onnx 1.15.0,
the newest release ``mx.onnx`` exports with.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..fileio import atomic_path
from .runtimes import ModelFileError, OnnxRuntimeNet, is_quantized, load_onnx

#: Ops a heatmap convolution's output passes through on its way to a graph output (Q/DQ: in a
#: quantized graph).
_OUTPUT_PATH_OPS = ("Slice", "Resize", "Reshape", "Identity", "QuantizeLinear", "DequantizeLinear")
#: The layer groups a placement quantizes: ``body`` the convolutions but the stem and the heatmap
#: convolutions; ``eltwise`` the inputs of :func:`eltwise_inputs`; ``heatmap`` the
#: :func:`heatmap_convs`; ``stem`` the :func:`stem_convs`.
LAYER_GROUPS = ("body", "eltwise", "heatmap", "stem")
#: The placements of Q/DQ pairs (``quantize --placement``): name -> the layer groups in int8.
PLACEMENTS: dict[str, tuple[str, ...]] = {
    "convs": ("body",),
    "eltwise": ("body", "eltwise"),
    "heatmap": ("body", "eltwise", "heatmap"),
    "full": LAYER_GROUPS,
}
#: Weight scales (``quantize --weight-scale``): one per output channel, or one per tensor.
WEIGHT_SCALES = ("channel", "tensor")
#: Weight bit widths (``quantize --weight-bits``; default :func:`default_weight_bits`).
WEIGHT_BITS = (7, 8)
#: The placement and weight scale ``quantize --format onnx`` uses: every layer in int8 was the
#: fastest on both measured CPNs, within 0.2 NE points of fp32; per-tensor weights were no
#: faster and lost more (docs/performance.md, "INT8 placement").
DEFAULT_PLACEMENT, DEFAULT_WEIGHT_SCALE = "full", "channel"


def default_weight_bits() -> int:
    """8 on a CPU with VNNI, else 7 (see the module docstring)."""
    from ..cpu import cpu_has_vnni  # deferred: cpu imports MXNet, and the CLI reads this module's tables
    return 8 if cpu_has_vnni() else 7


def _name_nodes(graph) -> None:
    """Name every unnamed node after its first output (mx.onnx leaves Conv nodes unnamed)."""
    taken = {node.name for node in graph.node if node.name}
    for node in graph.node:
        if not node.name and node.output and node.output[0] not in taken:
            node.name = node.output[0]
            taken.add(node.name)


def _initializers(graph) -> dict:
    return {initializer.name: initializer for initializer in graph.initializer}


def _set_initializer(graph, name: str, array: np.ndarray) -> None:
    """Replace (or add) the initializer ``name`` by ``array``."""
    from onnx import numpy_helper  # deferred: onnx is an optional package (the export extra)
    for index, initializer in enumerate(graph.initializer):
        if initializer.name == name:
            graph.initializer[index].CopyFrom(numpy_helper.from_array(array, name))
            return
    graph.initializer.append(numpy_helper.from_array(array, name))


def fold_constants(graph) -> int:
    """Replace each node whose inputs are all initializers (the Reshape / Pad chains of the
    heatmap convolutions' zero-padded weights) by initializers of its outputs, computed by
    ``onnx.reference``; returns how many nodes were folded."""
    from onnx import helper, numpy_helper  # deferred: optional package
    from onnx.reference import ReferenceEvaluator

    constant = {name: numpy_helper.to_array(initializer) for name, initializer in _initializers(graph).items()}
    folded = []
    for node in graph.node:
        if not node.input or not all(name in constant for name in node.input if name):
            continue
        probe = helper.make_model(helper.make_graph(
            [node], "fold", [], [helper.make_tensor_value_info(name, 0, None) for name in node.output],
            [numpy_helper.from_array(constant[name], name) for name in dict.fromkeys(node.input) if name]))
        for name, value in zip(node.output, ReferenceEvaluator(probe).run(None, {})):
            constant[name] = np.asarray(value)
            _set_initializer(graph, name, constant[name])
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    return len(folded)


def fold_batchnorms(graph) -> int:
    """Fold each BatchNormalization whose input is a Conv output read by nothing else into that
    Conv (weights scaled per output channel, bias shifted); returns how many were folded."""
    from onnx import numpy_helper  # deferred: optional package
    weights = _initializers(graph)
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    producer = {out: node for node in graph.node for out in node.output}
    folded = []
    for bn in graph.node:
        conv = producer.get(bn.input[0]) if bn.op_type == "BatchNormalization" else None
        if (conv is None or conv.op_type != "Conv" or readers[bn.input[0]] != 1
                or not all(name in weights for name in list(bn.input[1:5]) + list(conv.input[1:]))):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(weights[name]).astype(np.float64) for name in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        kernel = numpy_helper.to_array(weights[conv.input[1]])
        bias = numpy_helper.to_array(weights[conv.input[2]]) if len(conv.input) > 2 else np.zeros(len(scale))
        kernel_name, bias_name = conv.input[1] + "_bn_folded", (conv.output[0] + "_bn_folded_bias")
        _set_initializer(graph, kernel_name, (kernel * scale.reshape(-1, *[1] * (kernel.ndim - 1))).astype(np.float32))
        _set_initializer(graph, bias_name, ((bias - mean) * scale + beta).astype(np.float32))
        conv.input[1] = kernel_name
        if len(conv.input) > 2:
            conv.input[2] = bias_name
        else:
            conv.input.append(bias_name)
        conv.output[0] = bn.output[0]
        folded.append(bn)
    for bn in folded:
        graph.node.remove(bn)
    _drop_unused_initializers(graph)
    return len(folded)


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [initializer for initializer in graph.initializer if initializer.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    constants = _initializers(graph)
    inputs = [value for value in graph.input if value.name in used or value.name not in constants]
    del graph.input[:]
    graph.input.extend(inputs)


def stem_convs(graph) -> list[str]:
    """Names of the Conv nodes reading a graph input (the stem: it reads the image)."""
    inputs = {value.name for value in graph.input}
    return [node.name for node in graph.node if node.op_type == "Conv" and node.input[0] in inputs]


def _output_paths(graph) -> list[list]:
    """For each graph output, the nodes from it back through :data:`_OUTPUT_PATH_OPS` to the
    first other node (included), output side first."""
    producer = {out: node for node in graph.node for out in node.output}
    paths = []
    for output in graph.output:
        path, node = [], producer.get(output.name)
        while node is not None:
            path.append(node)
            node = producer.get(node.input[0]) if node.op_type in _OUTPUT_PATH_OPS else None
        paths.append(path)
    return paths


def output_nodes(graph) -> set[str]:
    """Names of the nodes of :func:`_output_paths`: what the heatmaps pass through, and the
    convolutions that compute them."""
    return {node.name for path in _output_paths(graph) for node in path}


def heatmap_convs(graph) -> list[str]:
    """Names of the last Conv before each graph output (through Slice / Resize / Reshape, and
    Q/DQ pairs): their outputs are the heatmaps."""
    return list(dict.fromkeys(path[-1].name for path in _output_paths(graph) if path and path[-1].op_type == "Conv"))


def fp32_convs(graph, placement: str = DEFAULT_PLACEMENT) -> list[str]:
    """Names of the Conv nodes ``placement`` (a :data:`PLACEMENTS` name) leaves in float32:
    the stem and the heatmap convolutions unless it quantizes them."""
    groups = PLACEMENTS[placement]
    return list(dict.fromkeys((stem_convs(graph) if "stem" not in groups else [])
                              + (heatmap_convs(graph) if "heatmap" not in groups else [])))


def calibrate(model, tensors: Sequence[str], batches: Iterable[np.ndarray]) -> dict[str, tuple[float, float]]:
    """(min, max) of each named tensor of ``model`` over the calibration ``batches``, computed
    by onnxruntime on a copy of the model that outputs them."""
    import onnx  # deferred: optional package
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {output.name for output in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                              for name in tensors if name not in known)
    order = [output.name for output in probe.graph.output]
    low = {name: np.inf for name in tensors}
    high = {name: -np.inf for name in tensors}
    seen = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.onnx"
        onnx.save(probe, str(path))
        runner = OnnxRuntimeNet(path)
        for batch in batches:
            values = dict(zip(order, runner.run(np.asarray(batch, dtype=np.float32))))
            for name in tensors:
                low[name] = min(low[name], float(values[name].min()))
                high[name] = max(high[name], float(values[name].max()))
            seen += 1
    if not seen:
        raise ValueError("INT8 calibration needs at least one batch of images")
    return {name: (low[name], high[name]) for name in tensors}


def activation_qparams(low: float, high: float) -> tuple[np.float32, np.uint8]:
    """(scale, zero point) of uint8 quantization covering [low, high] and 0."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-8) / 255.0
    return np.float32(scale), np.uint8(np.clip(np.round(-low / scale), 0, 255))


def weight_qparams(kernel: np.ndarray, bits: int, per_channel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(int8 kernel, scale) of symmetric ``bits``-bit quantization: one scale per output
    channel (shape (O,)), or with ``per_channel=False`` one for the tensor (shape ())."""
    limit = 2 ** (bits - 1) - 1
    peak = np.abs(kernel.reshape(len(kernel), -1)).max(axis=1) if per_channel else np.abs(kernel).max()
    scale = np.where(peak > 0, peak / limit, 1.0).astype(np.float32)
    shape = (-1, *[1] * (kernel.ndim - 1)) if per_channel else ()
    quantized = np.clip(np.round(kernel / scale.reshape(shape)), -limit, limit)
    return quantized.astype(np.int8), scale


def eltwise_inputs(graph) -> list[tuple[str, int]]:
    """(node name, input index) of the activation inputs of every Add with two computed inputs
    (residual adds, GlobalNet's upsample-adds) and of every Resize but those on an output path
    (the heatmaps are the answer): OpenVINO's low-precision transformations keep such an op in
    u8 only when each of these inputs is a Q/DQ pair."""
    constant = _initializers(graph)
    on_output = output_nodes(graph)
    found = []
    for node in graph.node:
        if node.op_type == "Add" and all(name not in constant for name in node.input[:2]):
            found += [(node.name, 0), (node.name, 1)]
        elif node.op_type == "Resize" and node.input[0] not in constant and node.name not in on_output:
            found.append((node.name, 0))
    return found


def quantize_graph(graph, ranges: dict[str, tuple[float, float]], convs: Sequence[str], bits: int,
                   eltwise: Sequence[tuple[str, int]] = (), per_channel: bool = True) -> None:
    """Rewrite ``graph`` in place: each Conv named in ``convs`` reads its input through a
    Quantize/DequantizeLinear pair with the calibrated range, and int8 weights (scales per
    output channel, or per tensor) through DequantizeLinear (BatchNorms already folded); each
    (node, input index) of ``eltwise`` reads that input through a pair too (one pair per tensor)."""
    from onnx import helper, numpy_helper  # deferred: optional package
    weights, chosen = _initializers(graph), set(convs)
    wanted: dict[str, set] = {}
    for name, index in eltwise:
        wanted.setdefault(name, set()).add(index)
    nodes, paired = [], {}

    def pair(source: str) -> str:
        if source not in paired:
            scale, zero = activation_qparams(*ranges[source])
            names = {k: f"{source}_{k}" for k in ("scale", "zero_point", "quantized", "dequantized")}
            _set_initializer(graph, names["scale"], np.array(scale, np.float32))
            _set_initializer(graph, names["zero_point"], np.array(zero, np.uint8))
            nodes.append(helper.make_node("QuantizeLinear", [source, names["scale"], names["zero_point"]],
                                          [names["quantized"]], name=names["quantized"]))
            nodes.append(helper.make_node("DequantizeLinear", [names["quantized"], names["scale"],
                                                               names["zero_point"]],
                                          [names["dequantized"]], name=names["dequantized"]))
            paired[source] = names["dequantized"]
        return paired[source]

    for node in graph.node:
        if node.op_type == "Conv" and node.name in chosen:
            source = pair(node.input[0])
            kernel_name = node.input[1]
            kernel, scale = weight_qparams(numpy_helper.to_array(weights[kernel_name]), bits, per_channel)
            _set_initializer(graph, kernel_name + "_int8", kernel)
            _set_initializer(graph, kernel_name + "_scale", scale)
            _set_initializer(graph, kernel_name + "_zero_point", np.zeros(scale.shape, np.int8))
            nodes.append(helper.make_node("DequantizeLinear", [kernel_name + "_int8", kernel_name + "_scale",
                                                               kernel_name + "_zero_point"],
                                          [kernel_name + "_dequantized"], name=kernel_name + "_dequantized",
                                          **({"axis": 0} if per_channel else {})))
            node.input[0], node.input[1] = source, kernel_name + "_dequantized"
        for index in sorted(wanted.get(node.name, ())):
            node.input[index] = pair(node.input[index])
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)


def quantize_onnx(onnx_path: "str | os.PathLike", out_path: "str | os.PathLike",
                  calibration: Iterable[np.ndarray], placement: str = DEFAULT_PLACEMENT,
                  weight_scale: str = DEFAULT_WEIGHT_SCALE, weight_bits: "int | None" = None) -> dict:
    """Write the INT8 (QDQ) form of the fp32 ONNX model at ``onnx_path`` to ``out_path``,
    atomically, calibrated on float32 ``calibration`` batches (N, 3, H, W) of preprocessed
    images. ``placement``: a :data:`PLACEMENTS` name, the layers that get Q/DQ (nodes are
    named after their first output, constants and BatchNorms folded in); ``weight_scale``: a
    :data:`WEIGHT_SCALES` entry; ``weight_bits``: 7 or 8 (default :func:`default_weight_bits`).
    Returns what was done: ``placement``, ``weight_scale``, ``weight_bits``,
    ``quantized_convs``, ``fp32_convs``, ``quantized_eltwise_inputs``, ``folded_batchnorms``."""
    import onnx  # deferred: optional package
    bits = int(weight_bits or default_weight_bits())
    for value, allowed, what in ((placement, PLACEMENTS, "placement"), (weight_scale, WEIGHT_SCALES, "weight_scale"),
                                 (bits, WEIGHT_BITS, "weight_bits")):
        if value not in allowed:
            raise ValueError(f"{what} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    model = load_onnx(onnx_path)
    if is_quantized(model):
        raise ModelFileError(f"{onnx_path}: is already quantized (it has QuantizeLinear nodes)")
    graph = model.graph
    _name_nodes(graph)
    fold_constants(graph)
    folded = fold_batchnorms(graph)
    keep = fp32_convs(graph, placement)
    constant = _initializers(graph)  # a weight still computed in the graph stays fp32
    chosen = [node for node in graph.node
              if node.op_type == "Conv" and node.name not in keep and node.input[1] in constant]
    convs = [node.name for node in chosen]
    eltwise = eltwise_inputs(graph) if "eltwise" in PLACEMENTS[placement] else []
    by_name = {node.name: node for node in graph.node}
    sources = list(dict.fromkeys([node.input[0] for node in chosen]
                                 + [by_name[name].input[index] for name, index in eltwise]))
    ranges = calibrate(model, sources, calibration)
    quantize_graph(graph, ranges, convs, bits, eltwise, weight_scale == "channel")
    onnx.checker.check_model(model)
    with atomic_path(Path(out_path)) as tmp:
        onnx.save(model, str(tmp))
    return {"placement": placement, "weight_scale": weight_scale, "weight_bits": bits,
            "quantized_convs": len(convs), "fp32_convs": keep, "quantized_eltwise_inputs": len(eltwise),
            "folded_batchnorms": folded}


__all__ = ["LAYER_GROUPS", "PLACEMENTS", "WEIGHT_SCALES", "WEIGHT_BITS", "DEFAULT_PLACEMENT", "DEFAULT_WEIGHT_SCALE",
           "default_weight_bits", "fold_constants", "fold_batchnorms", "stem_convs", "output_nodes", "heatmap_convs",
           "fp32_convs", "eltwise_inputs", "calibrate", "activation_qparams", "weight_qparams", "quantize_graph", "quantize_onnx"]
