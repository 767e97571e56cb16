"""Export of trained models: symbol + params and ONNX files in an export directory.

An exported model is a directory::

    export.json                         format (symbol | onnx | int8), category, input size,
                                        network stride, source run; written last
    config.yaml                         the run's configuration (codec, validation split)
    model-symbol.json, model-0000.params   format symbol or int8
    model.onnx                          format onnx

:func:`~fashion_gluon.inference.load.load_model` turns such a directory, or a training run
directory, into a :class:`~fashion_gluon.inference.model.KeypointModel`.

Facts this module relies on (mxnet 1.9.1):

* ``mx.onnx.export_model`` works with ``onnx==1.15.0``. It lists every weight as a graph input
  too, which makes onnxruntime skip constant folding; :func:`strip_initializer_inputs` fixes
  that. ``BilinearResize2D`` is always written as ``align_corners`` Resize, so a model built
  with half-pixel bilinear upsampling is refused (use ``upsample='nearest'``), as is any
  operator without an ONNX converter; the error names the operator and node.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..build import build_schema, load_run
from ..config import save_config
from ..data.transforms import DEFAULT_MEAN, DEFAULT_STD
from ..errors import ExportError, quoted, shorten
from ..fileio import atomic_path, read_json_object, write_json
from ..runs import CONFIG, SCHEMA, kept_schema, read_params
from ..schema import ALL
from .formats import FORMATS, META_FORMATS
from .runtimes import _import_runtime

META = "export.json"
PREFIX = "model"
INPUT_NAME = "data"


# ----------------------------------------------------------------------------- symbol files


def forward_once(net: gluon.HybridBlock, input_size: tuple[int, int], ctx: mx.Context = mx.cpu()) -> None:
    """Hybridize ``net`` (keeping its flags if already hybridized) and run a dummy batch through
    it, so that its graph exists for export and conversion."""
    if not net._active:
        net.hybridize()
    net(mx.nd.zeros((1, 3, *input_size), ctx=ctx))


def export_symbol(net: gluon.HybridBlock, input_size: tuple[int, int], prefix: "str | os.PathLike") -> tuple[Path, Path]:
    """Write ``net``'s graph and weights as ``PREFIX-symbol.json`` and ``PREFIX-0000.params``
    (each atomically); returns their paths."""
    prefix = Path(prefix)
    forward_once(net, input_size)
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
    """The hybridized SymbolBlock of ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` (what
    ``SymbolBlock.imports`` does); a missing, unreadable or mismatched file is an ExportError
    naming it."""
    prefix = Path(prefix)
    symbol_file, params_file = (prefix.parent / f"{prefix.name}-symbol.json",
                                prefix.parent / f"{prefix.name}-0000.params")
    for path in (symbol_file, params_file):
        if not path.is_file():
            raise ExportError(f"{path}: no such file; the exported model is incomplete")
    try:
        symbol = mx.sym.load(str(symbol_file))
        net = gluon.SymbolBlock(symbol, [mx.sym.var(INPUT_NAME)])
    except (mx.base.MXNetError, ValueError, KeyError, TypeError) as error:
        reason = [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        raise ExportError(f"{symbol_file}: not a readable MXNet symbol file ({shorten(reason[-1].strip(), 100)}; "
                          "truncated, corrupt or edited)") from None
    loaded = read_params(params_file)  # a FileFormatError names an unreadable file
    try:  # as SymbolBlock.imports: parameters keep the saved dtypes (int8 models)
        net.collect_params().load_dict(loaded, ctx, filename=str(params_file), cast_dtype=True,
                                       dtype_source="saved")
    except (AssertionError, ValueError, KeyError) as error:
        raise ExportError(f"{params_file}: the weights do not fit {symbol_file.name} "
                          f"({shorten(str(error).splitlines()[0] if str(error) else type(error).__name__, 120)})"
                          ) from None
    net.hybridize(static_alloc=True, static_shape=True)
    return net


# ----------------------------------------------------------------------------- ONNX


def _onnx_converters() -> set[str]:
    """The MXNet operators mx.onnx can convert at the installed onnx's opset."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph  # deferred: it needs onnx
    opset = _import_runtime("onnx", "onnx.defs").onnx_opset_version()  # deferred: the export extra
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
    onnx = _import_runtime("onnx")  # deferred: optional dependency (the export extra); missing: one line
    path = Path(path)
    forward_once(net, input_size)
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


# ----------------------------------------------------------------------------- export directories


def deployment_info(config: dict, category: str) -> dict:
    """What running the network needs outside it (see the README's "Deployment" section):
    input size and normalization, heatmap stride and σ, the decoder, the category's keypoint
    names in channel order and the channel pairs a horizontal flip exchanges."""
    schema, data = build_schema(config), config["data"]
    names = [schema.keypoints[k] for k in schema.category_indices(category)]
    perm = schema.flip_permutation(category)
    return {"input_size": list(data["input_size"]), "input_layout": "NCHW float32 RGB, (pixel - mean) / std",
            "mean": list(DEFAULT_MEAN), "std": list(DEFAULT_STD), "heatmap_stride": int(data["stride"]),
            "sigma": float(data["sigma"]), "decode": config["codec"]["decode"],
            "outputs": "the last output is the final heatmaps (N, K, H / heatmap_stride, W / heatmap_stride)",
            "schema": schema.name, "keypoints": names,
            "flip_pairs": [[int(c), int(p)] for c, p in enumerate(perm) if c < p]}


def finish_export(out: Path, fmt: str, files: Sequence[Path], run_dir, config: dict, state: dict,
                  net_stride: int, **extra) -> dict:
    """Write config.yaml, schema.yaml and, last, export.json describing the export in ``out``;
    returns the latter."""
    meta = {"format": fmt, "category": state["category"], "net_stride": int(net_stride),
            **deployment_info(config, state["category"]), "files": [Path(f).name for f in files],
            "source": str(Path(run_dir).resolve()), "data_root": state.get("data_root"), **extra}
    save_config(config, out / CONFIG)
    build_schema(config).save(out / SCHEMA)
    write_json(out / META, meta)
    return meta


def export_run(run_dir: "str | os.PathLike", out_dir: "str | os.PathLike", fmt: str = "symbol") -> dict:
    """Export the best weights of a training run to ``out_dir`` as ``fmt`` (symbol | onnx);
    returns the export.json record."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    net, config, state = load_run(run_dir)
    size, out = tuple(config["data"]["input_size"]), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = (export_symbol(net, size, out / PREFIX) if fmt == "symbol"
             else (export_onnx(net, size, out / f"{PREFIX}.onnx"),))
    return finish_export(out, fmt, files, run_dir, config, state, net.stride)


def is_export(path: "str | os.PathLike") -> bool:
    """Whether ``path`` is an exported model directory (holds export.json)."""
    return (Path(path) / META).is_file()


def read_export_meta(path: "str | os.PathLike") -> dict:
    """The checked export.json of an export directory: a known ``format``, a ``category``, an
    integer ``net_stride`` and the ``files`` it lists, which must exist."""
    path = Path(path)
    meta_path = path / META
    meta = read_json_object(meta_path)
    for key, kind in (("format", str), ("category", str), ("net_stride", int), ("files", list)):
        if key not in meta:
            raise ExportError(f"{meta_path}: lacks the key {key!r}; the exported model is damaged")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise ExportError(f"{meta_path}: {key} must be a {kind.__name__}, got {quoted(meta[key])}")
    if meta["format"] not in META_FORMATS:
        raise ExportError(f"{meta_path}: unknown format {quoted(meta['format'])}; expected one of "
                          f"{', '.join(META_FORMATS)}")
    if meta["category"] not in (*kept_schema(path).category_names, ALL):
        raise ExportError(f"{meta_path}: unknown category {quoted(meta['category'])}")
    if not meta["files"] or not all(isinstance(name, str) for name in meta["files"]):
        raise ExportError(f"{meta_path}: files must list the model's file names, got {quoted(meta['files'])}")
    for name in meta["files"]:
        if not (path / name).is_file():
            raise ExportError(f"{meta_path} lists {quoted(name)}, which is not in {path}")
    return meta


__all__ = ["FORMATS", "META", "META_FORMATS", "PREFIX", "export_symbol", "load_symbol",
           "onnx_problems", "strip_initializer_inputs", "export_onnx", "export_run", "is_export",
           "read_export_meta", "forward_once", "deployment_info", "finish_export"]
