"""Model size and cost: trainable parameters and multiply-adds (MACs).

Both come from MXNet's symbolic shape inference (``block(mx.sym.var('data'))``),
so no weights are allocated and nothing runs.

* Parameters: trainable ones only (``grad_req != 'null'``), i.e. weights,
  biases and BatchNorm gamma/beta but not BatchNorm running statistics, the
  way papers count them.
* MACs: multiply-adds of Convolution, Deconvolution and FullyConnected layers,
  the way papers count "FLOPs" (the HRNet/CPN tables' GFLOPs are these GMACs);
  BatchNorm, activations, additions, pooling, resizing and biases are left
  out. One MAC is two floating-point operations.
"""
from __future__ import annotations

import json

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..models import build_model
from ..schema import load_schema

MAC_OPS = ("Convolution", "Deconvolution", "FullyConnected")


def to_symbol(block: gluon.HybridBlock) -> mx.sym.Symbol:
    """The block's graph on a variable ``data``; several outputs become a Group."""
    out = block(mx.sym.var("data"))
    if isinstance(out, (list, tuple)):
        return mx.sym.Group(list(_flatten(out)))
    return out


def _flatten(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item


def _inferred_param_shapes(block: gluon.HybridBlock, input_shape: tuple) -> dict:
    """Shapes of every argument and auxiliary state of the block's graph."""
    sym = to_symbol(block)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=input_shape)
    return {**dict(zip(sym.list_arguments(), arg_shapes)),
            **dict(zip(sym.list_auxiliary_states(), aux_shapes))}


def count_params(block: gluon.HybridBlock, input_shape: "tuple | None" = None) -> int:
    """Number of trainable parameter values (``grad_req != 'null'``).

    Parameter shapes that are still deferred are inferred from a forward graph
    on ``input_shape`` (N, C, H, W); without it they must all be known.
    """
    shapes = {p.name: p.shape for p in block.collect_params().values() if p.grad_req != "null"}
    unknown = [name for name, shape in shapes.items() if shape is None or 0 in shape]
    if unknown:
        if input_shape is None:
            raise ValueError("parameter shapes are not known yet: give input_shape "
                             "or run a forward pass first")
        inferred = _inferred_param_shapes(block, tuple(input_shape))
        for name in unknown:
            if name not in inferred:
                raise ValueError(f"cannot infer the shape of {name}: not used by the forward pass")
            shapes[name] = inferred[name]
    return int(sum(np.prod(s, dtype=np.int64) for s in shapes.values()))


def layer_macs(block: gluon.HybridBlock, input_shape: tuple) -> dict:
    """Multiply-adds of every Convolution, Deconvolution and FullyConnected node
    of the block's graph on ``input_shape`` (N, C, H, W), by node name.

    Convolution: output elements × C_in/groups × kh × kw; Deconvolution: input
    elements × C_out/groups × kh × kw; FullyConnected: output elements × in_units
    (each is its weight's shape without the first axis). Only filters of the
    weight parameter count: zero filters that :class:`~.models.backbones.HeatmapConv`
    adds in the graph for speed (and slices off) are left out.
    """
    sym = to_symbol(block)
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=tuple(input_shape))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    macs = {}
    for node in json.loads(sym.tojson())["nodes"]:
        if node["op"] not in MAC_OPS:
            continue
        output = node["name"] + "_output"
        data, weight = internals[output].get_children()[:2]
        in_graph = shapes[weight.list_outputs()[0]]
        stored = shapes[_parameter_of(weight).list_outputs()[0]]
        counted = shapes[data.list_outputs()[0]] if node["op"] == "Deconvolution" else shapes[output]
        macs[node["name"]] = int(np.prod(counted, dtype=np.int64) * np.prod(in_graph[1:], dtype=np.int64)
                                 * stored[0] // in_graph[0])
    return macs


def _parameter_of(sym: mx.sym.Symbol) -> mx.sym.Symbol:
    """The variable at the start of ``sym``'s chain of first inputs (``sym`` itself if a variable)."""
    while (children := sym.get_children()) is not None:
        sym = children[0]
    return sym


def count_macs(block: gluon.HybridBlock, input_shape: tuple = (1, 3, 256, 256)) -> int:
    """Total conv/deconv/fc multiply-adds of one forward pass on ``input_shape``."""
    return sum(layer_macs(block, input_shape).values())


def output_shapes(block: gluon.HybridBlock, input_shape: tuple) -> list:
    """Shapes of the block's outputs on ``input_shape`` (N, C, H, W)."""
    _, shapes, _ = to_symbol(block).infer_shape(data=tuple(input_shape))
    return [tuple(s) for s in shapes]


def summarize(name_or_block: "str | gluon.HybridBlock", input_size: tuple = (256, 256),
              num_keypoints: "int | None" = None, **model_kwargs) -> dict:
    """Size and cost of a registry model (built by name with ``num_keypoints``
    and ``model_kwargs``, not initialized) or of a given block, for one
    ``input_size`` (H, W) RGB image: ``params`` (trainable values), ``macs``
    and ``gmacs`` (conv/deconv/fc multiply-adds, ×1e-9) and the ``outputs`` shapes."""
    if isinstance(name_or_block, str):
        keypoints = num_keypoints or load_schema().num_keypoints  # default: the default schema's
        name, block = name_or_block, build_model(name_or_block, keypoints, **model_kwargs)
    else:
        name, block = type(name_or_block).__name__, name_or_block
    input_shape = (1, 3) + tuple(int(s) for s in input_size)
    macs = count_macs(block, input_shape)
    return {"model": name, "input_size": input_shape[2:], "outputs": output_shapes(block, input_shape),
            "params": count_params(block, input_shape), "macs": macs, "gmacs": macs / 1e9}


def format_summary(summary: dict) -> str:
    """A :func:`summarize` result as a few aligned lines for the terminal."""
    height, width = summary["input_size"]
    shapes = ", ".join("x".join(map(str, s)) for s in summary["outputs"])
    return "\n".join([
        f"model       {summary['model']}",
        f"input       1x3x{height}x{width} (NCHW)",
        f"outputs     {shapes}",
        f"parameters  {summary['params'] / 1e6:.2f} M trainable ({summary['params']:,})",
        f"GMACs       {summary['gmacs']:.2f} per image (conv/deconv/fc multiply-adds; GFLOPs = 2x)",
    ])
