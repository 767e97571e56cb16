"""Run an exported ONNX model (:func:`fashion_gluon.inference.export.export_onnx`), fp32 or its
INT8 QDQ form (:mod:`.qdq`), with onnxruntime or OpenVINO; :class:`OnnxNet` calls either like an
MXNet network (what prediction runs).

Every runner has one interface: ``run(batch)`` takes a float32 numpy batch (N, 3, H, W) and
returns the list of the model's outputs as numpy arrays (for a CPN the GlobalNet maps, then
the final heatmaps last). Batch size and image size may change from call to call.

onnxruntime and OpenVINO are optional packages, imported only when a runner is built; a
missing one raises :class:`RuntimeMissingError` naming the extra to install.

Findings on a 2-core AMD EPYC (Zen 3: AVX2 + FMA, no AVX-512, no VNNI, no bf16) shared with
other jobs; throughput and latency of every path: ``fashion-gluon bench infer`` (README,
"Deployment"):

* OpenVINO ``throughput`` (2 streams × 1 thread, batch split in two) and ``latency`` (1 × 2)
  were equally fast at batch 8 on a quiet machine (5.95 vs 5.86 img/s, CPN-ResNet-50, 256²);
  under contention streams were up to 2× faster in one run and slower in another. Batch 1 on
  one stream of a throughput model took 347 ms against 182 ms as one 2-thread request, hence
  the fallback. One dynamic-shape compiled model was never faster than per-shape static ones.
* bf16: without bf16 instructions MXNet's converted model fails ("could not create a
  primitive descriptor iterator", oneDNN 2.4) and OpenVINO silently runs f32.
* fp32 runtimes agree with MXNet fp32 to ≤ 2.3e-6 of max |heatmap| (Xavier weights).
* onnxruntime runs a QDQ file correctly but mostly as dequantize + fp32 convolution (its
  INT8 kernels want a QuantizeLinear after each Conv as well); OpenVINO runs the same file's
  convolutions in INT8 (u8 inputs, checked in the tests).
"""
from __future__ import annotations

import importlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import ExportError, FashionGluonError, shorten

if TYPE_CHECKING:
    import mxnet as mx

#: The inference runtimes and the precisions each runs: MXNet a run or an MXNet export in fp32 or
#: converted to bf16 (an INT8 export runs as it was quantized); ONNX Runtime an ONNX export in
#: fp32, or INT8 from a QDQ file; OpenVINO an ONNX export in fp32, bf16 or INT8 (a QDQ file).
RUNTIMES: dict[str, tuple[str, ...]] = {"mxnet": ("fp32", "bf16"), "onnxruntime": ("fp32", "int8"),
                                        "openvino": ("fp32", "bf16", "int8")}
#: The runtimes of ONNX exports: every one but MXNet.
ONNX_RUNTIMES: tuple[str, ...] = tuple(name for name in RUNTIMES if name != "mxnet")
#: What a loader's ``runtime`` (and ``--runtime``) accepts: a runtime, or ``auto``, the runtime
#: the model's format runs in (:func:`~.load.resolve_runtime`).
RUNTIME_CHOICES: tuple[str, ...] = ("auto", *RUNTIMES)
#: Every precision some runtime runs (``--precision``).
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(p for precisions in RUNTIMES.values() for p in precisions))
#: The setup.cfg extra that installs each runtime.
EXTRAS = {"mxnet": "cpu", "onnx": "export", "onnxruntime": "export", "openvino": "openvino"}
HINTS = ("throughput", "latency")
#: OpenVINO's names of the inference precisions.
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the QDQ parts are INT8, the rest f32
_QUANTIZE_OPS = {"FakeQuantize", "QuantizeLinear", "DequantizeLinear"}  # OpenVINO reads QDQ pairs as FakeQuantize


class RuntimeMissingError(FashionGluonError, ImportError):
    """An optional inference runtime is not installed."""


class ModelFileError(FashionGluonError, ValueError):
    """A model file is missing, unreadable or not what the caller asked for."""


def _import_runtime(name: str, module: "str | None" = None):
    """``import module`` (default ``name``), or a RuntimeMissingError naming the extra."""
    try:
        return importlib.import_module(module or name)
    except ImportError as error:
        raise RuntimeMissingError(f"{name} is not installed ({error}); install it with "
                                  f"pip install -e .[{EXTRAS[name]}]") from None


def available_runtimes() -> list[str]:
    """The runtimes of :data:`RUNTIMES` that import here."""
    found = []
    for name in RUNTIMES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        found.append(name)
    return found


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _model_file(path: "str | os.PathLike") -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such ONNX model file")
    return path


def _not_quantized(path: Path) -> ModelFileError:
    return ModelFileError(f"{path}: precision int8 needs a QDQ-quantized model (fashion-gluon quantize --format "
                          "onnx); this one has no QuantizeLinear nodes")


def _batch(batch: np.ndarray) -> np.ndarray:
    if getattr(batch, "ndim", 0) != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected a batch of shape (N, 3, H, W), got {getattr(batch, 'shape', type(batch))}")
    return np.ascontiguousarray(batch, dtype=np.float32)


# ----------------------------------------------------------------------------- onnxruntime


class OnnxRuntimeNet:
    """An ONNX file run by onnxruntime on the CPU with all graph optimizations; ``precision``:
    fp32, or int8 for a QDQ file (checked); ``threads``: intra-op threads (default:
    onnxruntime's, one per physical core)."""

    def __init__(self, onnx_path: "str | os.PathLike", precision: str = "fp32", threads: "int | None" = None):
        if precision not in RUNTIMES["onnxruntime"]:
            raise ValueError(f"onnxruntime runs {' or '.join(RUNTIMES['onnxruntime'])} (int8: a QDQ file), "
                             f"got precision {precision!r}")
        ort = _import_runtime("onnxruntime")  # deferred: onnxruntime is an optional package
        self.path = _model_file(onnx_path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle threads sleep instead of spinning: the decoding after each batch, and MXNet or
        # OpenVINO in the same process, need those cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail, ...)
            reason = shorten(_first_line(error), 120)
            raise ModelFileError(f"{self.path}: not a readable ONNX model (onnxruntime: {reason})") from None
        self.input_name = self.session.get_inputs()[0].name
        if precision == "int8" and not is_quantized(load_onnx(self.path)):
            raise _not_quantized(self.path)
        self.precision = precision

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """All outputs of the model for a float32 batch (N, 3, H, W)."""
        return self.session.run(None, {self.input_name: _batch(batch)})


# ----------------------------------------------------------------------------- OpenVINO


class OpenVINONet:
    """An ONNX file run by OpenVINO on the CPU.

    ``precision``: ``fp32``; ``bf16`` (OpenVINO's ``INFERENCE_PRECISION_HINT``; a CPU without
    bf16 instructions runs f32 instead, see :attr:`inference_precision`); ``int8`` for a model
    already quantized to QDQ form (:func:`quantize_onnx`), which OpenVINO runs in INT8.
    ``threads``: CPU threads (default: all cores). ``hint``: ``throughput`` splits each batch
    into ``streams`` near-equal chunks (default one per thread) run in parallel streams of
    ``threads / streams`` threads (a batch smaller than ``streams`` runs as one request on all
    threads); ``latency`` runs every batch as one request on all threads. Each new input shape
    is reshaped and compiled once and kept (the last ``max_shapes``): a static shape is as fast
    as or faster than one dynamic-shape compiled model (measured), and compiling CPN-ResNet-50
    takes 2-6 s.
    """

    def __init__(self, onnx_path: "str | os.PathLike", precision: str = "fp32", threads: "int | None" = None,
                 hint: str = "throughput", streams: "int | None" = None, max_shapes: int = 8):
        if precision not in RUNTIMES["openvino"]:
            raise ValueError(f"precision must be one of {', '.join(RUNTIMES['openvino'])}, got {precision!r}")
        if hint not in HINTS:
            raise ValueError(f"hint must be one of {', '.join(HINTS)}, got {hint!r}")
        self._ov = _import_runtime("openvino")  # deferred: openvino is an optional package
        self.path = _model_file(onnx_path)
        self.core = self._ov.Core()
        try:
            self.model = self.core.read_model(str(self.path))
        except Exception as error:  # openvino raises RuntimeError subclasses with multi-line text
            reason = shorten(_first_line(error), 120)
            raise ModelFileError(f"{self.path}: not a readable ONNX model (OpenVINO: {reason})") from None
        quantized = any(op.get_type_name() in _QUANTIZE_OPS for op in self.model.get_ops())
        if precision == "int8" and not quantized:
            raise _not_quantized(self.path)
        self.precision, self.hint, self.max_shapes = precision, hint, int(max_shapes)
        threads = int(threads or os.cpu_count() or 1)
        self.streams = 1 if hint == "latency" else max(1, min(int(streams or threads), threads))
        self.config = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
                       "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": self.streams}
        self.input_name = self.model.inputs[0].get_any_name()
        self._compiled: "OrderedDict[tuple, tuple]" = OrderedDict()

    def _compile(self, shape: tuple, streams: int):
        """(compiled model, its infer requests) for inputs of ``shape`` run on ``streams``
        streams (1: one request on all threads), compiled on first use."""
        key = shape if streams == self.streams else (*shape, "1 stream")
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        model = self.model.clone()
        model.reshape({self.input_name: list(shape)})
        config = self.config if streams == self.streams else {**self.config, "PERFORMANCE_HINT": "LATENCY",
                                                               "NUM_STREAMS": 1}
        compiled = self.core.compile_model(model, "CPU", config)
        entry = compiled, [compiled.create_infer_request() for _ in range(streams)]
        self._compiled[key] = entry
        while len(self._compiled) > self.max_shapes:
            self._compiled.popitem(last=False)
        return entry

    @property
    def inference_precision(self) -> "str | None":
        """The precision OpenVINO compiled the last shape in (``f32`` or ``bf16``), None before a run."""
        if not self._compiled:
            return None
        precision = next(reversed(self._compiled.values()))[0].get_property("INFERENCE_PRECISION_HINT")
        return precision.get_type_name() if hasattr(precision, "get_type_name") else str(precision)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """All outputs of the model for a float32 batch (N, 3, H, W)."""
        batch = _batch(batch)
        # Near-equal chunks, one per stream, run in parallel; a batch of N compiles at most
        # two chunk shapes (N // streams and N // streams + 1 images). A batch smaller than
        # the stream count runs as one request on all threads instead (one stream would have
        # only threads / streams of them).
        streams = self.streams if len(batch) >= self.streams else 1
        bounds = np.linspace(0, len(batch), streams + 1).round().astype(int)
        chunks = [batch[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        requests, used = [], {}
        for chunk in chunks:
            _, free = self._compile(chunk.shape, streams)
            request = free[used.get(chunk.shape, 0)]
            used[chunk.shape] = used.get(chunk.shape, 0) + 1
            request.start_async({0: chunk})
            requests.append(request)
        parts = []
        for request in requests:
            request.wait()
            # copies: a request reuses its output buffers on its next run
            parts.append([np.array(request.get_output_tensor(i).data) for i in range(len(request.model_outputs))])
        return parts[0] if len(parts) == 1 else [np.concatenate(outputs) for outputs in zip(*parts)]


# ----------------------------------------------------------------------------- as a network

class OnnxNet:
    """An ONNX file run by ONNX Runtime or OpenVINO, called like a network:
    NDArray batch in, list of NDArray heatmaps out. ``stride``: input sides must be multiples of
    it; ``precision`` (OpenVINO): fp32, bf16 (where the CPU has it) or int8 (a QDQ file)."""

    def __init__(self, path: "str | os.PathLike", stride: int, runtime: str = "onnxruntime",
                 precision: str = "fp32"):
        if runtime not in ONNX_RUNTIMES:
            raise ExportError(f"unknown runtime {runtime!r} for an ONNX model; expected one of {', '.join(ONNX_RUNTIMES)}")
        if runtime == "onnxruntime" and precision == "bf16":
            raise ExportError("onnxruntime runs ONNX exports in fp32 or, quantized by `quantize --format onnx`, "
                              "INT8; precision bf16 needs --runtime openvino")
        self.runner = OnnxRuntimeNet(path, precision) if runtime == "onnxruntime" else OpenVINONet(path, precision)
        self.stride, self.runtime = int(stride), runtime

    def run(self, data: np.ndarray) -> list[np.ndarray]:
        """The model's outputs for a float32 batch (N, 3, H, W)."""
        return self.runner.run(np.ascontiguousarray(data, dtype=np.float32))

    def __call__(self, data: "mx.nd.NDArray") -> "list[mx.nd.NDArray]":
        import mxnet as mx  # deferred: this module imports without MXNet (the CLI's --runtime choices)
        return [mx.nd.array(output, ctx=data.context) for output in self.run(data.asnumpy())]


def cpu_only(ctx: "Sequence[mx.Context]", what: str) -> None:
    """Raise ExportError unless every context of ``ctx`` is a CPU (ONNX, INT8 and bf16 models)."""
    if any(c.device_type != "cpu" for c in ctx):
        raise ExportError(f"{what} runs on CPU only, got contexts {list(ctx)}")


# ----------------------------------------------------------------------------- model files


def load_onnx(path: "str | os.PathLike"):
    """The ``onnx.ModelProto`` of an ONNX file, or a ModelFileError naming the file."""
    onnx = _import_runtime("onnx")  # deferred: onnx is an optional package
    path = _model_file(path)
    try:
        model = onnx.load(str(path))
    except Exception as error:  # DecodeError and friends
        raise ModelFileError(f"{path}: not a readable ONNX model: {_first_line(error)}") from None
    if not model.graph.input:
        raise ModelFileError(f"{path}: the ONNX graph has no input")
    return model


def is_quantized(model) -> bool:
    """Whether an ``onnx.ModelProto`` is in QDQ form (has QuantizeLinear nodes)."""
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


__all__ = ["RUNTIMES", "ONNX_RUNTIMES", "RUNTIME_CHOICES", "PRECISIONS", "EXTRAS", "HINTS", "RuntimeMissingError",
           "ModelFileError", "available_runtimes", "OnnxRuntimeNet", "OpenVINONet", "OnnxNet", "cpu_only", "load_onnx",
           "is_quantized"]
