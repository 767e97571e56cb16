"""The speed limit of each precision on this machine, measured in the libraries the networks
run in, so that a network's speed can be given as a share of the limit of its precision.

A limit is the fastest of these kernels of a precision (FLOPs = 2 × multiply-adds):

* MXNet's oneDNN, in this process: an n×n by n×n ``FullyConnected`` (fp32; bf16 data and
  weights cast with ``amp_cast``; int8: ``contrib.quantized_fully_connected``, u8 data × s8
  weights) and a chain of 3×3 convolutions + ReLU (:data:`CONV_SHAPE`) run as the networks
  run: fp32, converted by ``amp.convert_hybrid_block`` (bf16) or ``quantize_net_v2`` (int8);
* OpenVINO, in a subprocess of its own (loaded into this one, its threads and state changed
  what MXNet then measured): a one-MatMul model and the same convolution chain (f32; bf16 by
  ``INFERENCE_PRECISION_HINT``; int8 by FakeQuantize on data and weights).

The convolutions matter: oneDNN's ``brgconv`` kernels beat its inner products (``gemm:jit``),
so a limit of inner products alone put networks above 100 %. Findings, 2-core AMD EPYC
(family 25, AVX-512, AVX512-BF16, VNNI; no AMX), ``OMP_NUM_THREADS=2``, shared machine, one
run: fp32 FullyConnected 191 / Convolution 204 GFLOP/s; bf16 276 / 326; int8 (FC / chain)
226 / 283 GOP/s. ``mx.nd.dot`` runs in OpenBLAS (AVX2 kernels under
``OPENBLAS_CORETYPE=Haswell``), not where the convolutions run, so it is no limit.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..cpu import cpu_features, cpu_has_bf16, cpu_model
from ..inference.runtimes import PRECISIONS

LIBRARIES = ("mxnet", "openvino")
#: The kernels each library's limit is the fastest of.
KERNELS = {"mxnet": ("FullyConnected", "Convolution"), "openvino": ("MatMul", "Convolution")}
#: (batch, channels, height = width, depth) of the 3×3 convolution chain.
CONV_SHAPE = (8, 512, 16, 2)


def best_seconds(fn: Callable[[], object], warmup: int, iters: int) -> float:
    """Fastest of ``iters`` timed calls of ``fn`` after ``warmup`` untimed ones;
    ``fn`` must return only once its work is done (e.g. end with ``waitall``)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def installed(library: str) -> bool:
    """True where ``library`` can be imported; found without importing it (see the module docstring)."""
    return importlib.util.find_spec(library) is not None


def conv_flops(shape: tuple[int, int, int, int] = CONV_SHAPE) -> int:
    """Operations of one pass of the convolution chain of ``shape``."""
    batch, channels, side, depth = shape
    return 2 * batch * channels * channels * 9 * side * side * depth


def _mxnet_fully_connected(precision: str, n: int) -> Callable[[], object]:
    """One n×n by n×n inner product of ``precision`` in MXNet's oneDNN."""
    if precision == "int8":
        data = mx.nd.random.uniform(0, 255, shape=(n, n)).astype("uint8")
        weight = mx.nd.random.uniform(-127, 127, shape=(n, n)).astype("int8")
        low, high = mx.nd.array([-1.0]), mx.nd.array([1.0])
        args = (data, weight, mx.nd.array([0.0]), high, low, high)
        return lambda: mx.nd.contrib.quantized_fully_connected(*args, num_hidden=n, no_bias=True)[0].wait_to_read()
    data, weight = mx.nd.random.uniform(-1, 1, shape=(n, n)), mx.nd.random.uniform(-1, 1, shape=(n, n))
    if precision == "bf16":
        bf16 = np.dtype([("bfloat16", np.uint16)])  # MXNet 1.9.1's name of bfloat16
        data, weight = mx.nd.amp_cast(data, dtype=bf16), mx.nd.amp_cast(weight, dtype=bf16)
    return lambda: mx.nd.FullyConnected(data, weight, num_hidden=n, no_bias=True).wait_to_read()


def _mxnet_convolution(precision: str, shape: tuple[int, int, int, int]) -> Callable[[], object]:
    """One pass of the 3×3 convolution chain in MXNet, converted as networks are for ``precision``."""
    from mxnet.contrib import amp, quantization

    batch, channels, side, depth = shape
    net = gluon.nn.HybridSequential()
    for _ in range(depth):
        net.add(gluon.nn.Conv2D(channels, 3, padding=1, in_channels=channels, use_bias=False),
                gluon.nn.Activation("relu"))
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    data = mx.nd.random.uniform(0, 1, shape=(batch, channels, side, side))
    net(data)
    if precision == "bf16":
        net = amp.convert_hybrid_block(net, target_dtype="bfloat16", ctx=mx.cpu())
    elif precision == "int8":
        calibration = gluon.data.DataLoader(gluon.data.ArrayDataset(data, mx.nd.zeros(batch)), batch_size=batch)
        net = quantization.quantize_net_v2(net, quantized_dtype="auto", calib_mode="naive",
                                           calib_data=calibration, ctx=mx.cpu())
    net.hybridize(static_alloc=True, static_shape=True)
    return lambda: (net(data), mx.nd.waitall())


def _openvino_kernel(precision: str, kernel: str, n: int, shape: tuple[int, int, int, int]) -> Callable[[], object]:
    """One run of an OpenVINO ``kernel`` model of ``precision`` compiled for the CPU."""
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    int8 = precision == "int8"
    low, high = ops.constant(np.float32(-1)), ops.constant(np.float32(1))

    def quantized(node, levels):
        return ops.fake_quantize(node, low, high, low, high, levels) if int8 else node

    if kernel == "MatMul":
        values = rng.uniform(-1, 1, (n, n)).astype(np.float32)
        data = ops.parameter([n, n], np.float32)
        weight = ops.constant(rng.uniform(-1, 1, (n, n)).astype(np.float32))
        output = ops.matmul(quantized(data, 256), quantized(weight, 255), False, True)
    else:
        batch, channels, side, depth = shape
        values = rng.uniform(-1, 1, (batch, channels, side, side)).astype(np.float32)
        data = output = ops.parameter(list(values.shape), np.float32)
        for _ in range(depth):
            weight = ops.constant(rng.uniform(-0.05, 0.05, (channels, channels, 3, 3)).astype(np.float32))
            output = ops.relu(ops.convolution(quantized(output, 256), quantized(weight, 255), [1, 1], [1, 1],
                                              [1, 1], [1, 1]))
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    request = ov.Core().compile_model(ov.Model([output], [data]), "CPU", config).create_infer_request()
    return lambda: request.infer({0: values})


def openvino_rates(precisions: list[str], n: int, repeats: int,
                   shape: tuple[int, int, int, int] = CONV_SHAPE) -> dict:
    """{precision: {kernel: GFLOP/s}} of OpenVINO's kernels, measured in this process (which
    :func:`measure_limits` starts for it alone)."""
    flops = {"MatMul": 2 * n ** 3, "Convolution": conv_flops(shape)}
    rates: dict = {}
    for precision in precisions:
        for kernel in KERNELS["openvino"]:
            seconds = best_seconds(_openvino_kernel(precision, kernel, n, shape), 2, repeats)
            rates.setdefault(precision, {})[kernel] = flops[kernel] / seconds / 1e9
    return rates


def _openvino_subprocess(precisions: list[str], n: int, repeats: int, shape: tuple[int, int, int, int]) -> dict:
    """:func:`openvino_rates` measured in a fresh Python process."""
    script = ("import json\nfrom fashion_gluon.tools.limits import openvino_rates\n"
              f"print(json.dumps(openvino_rates({precisions!r}, {n}, {repeats}, {tuple(shape)!r})))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def mxnet_rates(precisions: list[str], n: int, repeats: int, shape: tuple[int, int, int, int] = CONV_SHAPE) -> dict:
    """{precision: {kernel: GFLOP/s}} of MXNet's oneDNN kernels, measured in this process."""
    rates: dict = {}
    for precision in precisions:
        fc = best_seconds(_mxnet_fully_connected(precision, n), 2, repeats)
        conv = best_seconds(_mxnet_convolution(precision, shape), 2, repeats)
        rates[precision] = {"FullyConnected": 2 * n ** 3 / fc / 1e9, "Convolution": conv_flops(shape) / conv / 1e9}
    return rates


def measure_limits(n: int = 2048, repeats: int = 10, shape: tuple[int, int, int, int] = CONV_SHAPE) -> dict:
    """Each precision's limit in GFLOP/s (int8: GOP/s): ``{"cpu": {"model", "features"}, "n",
    "conv_shape", "precisions": {precision: {"gflops", "library", "kernel", "rates":
    {library: {kernel: GFLOP/s}}}}, "skipped": {precision or library: why}}``, each rate the
    best of ``repeats`` runs. bf16 is skipped on a CPU without native bf16, OpenVINO where it
    is not installed."""
    skipped = {} if cpu_has_bf16() else {"bf16": "this CPU has no native bfloat16 (AVX512-BF16 or AMX)"}
    skipped.update({name: f"{name} is not installed" for name in LIBRARIES[1:] if not installed(name)})
    wanted = [p for p in PRECISIONS if p not in skipped]
    rates = {"mxnet": mxnet_rates(wanted, n, repeats, shape)}
    if "openvino" not in skipped:
        rates["openvino"] = _openvino_subprocess(wanted, n, repeats, shape)
    limits = {"cpu": {"model": cpu_model(), "features": cpu_features()}, "n": n, "conv_shape": list(shape),
              "precisions": {p: {"rates": {name: rates[name][p] for name in rates}} for p in wanted},
              "skipped": skipped}
    return _settle(limits)


def _settle(limits: dict) -> dict:
    """``limits`` with each precision's fastest (library, kernel) and its rate filled in."""
    for limit in limits["precisions"].values():
        rate, library, kernel = max((rate, library, kernel) for library, kernels in limit["rates"].items()
                                    for kernel, rate in kernels.items())
        limit.update(gflops=rate, library=library, kernel=kernel)
    return limits


def best_limits(first: dict, second: dict) -> dict:
    """Two :func:`measure_limits` of one machine (e.g. before and after the paths a benchmark
    times) merged: each kernel's faster rate, so that load on a shared machine during one of
    them does not lower a limit."""
    merged = json.loads(json.dumps(first))
    for precision, limit in merged["precisions"].items():
        for library, kernels in limit["rates"].items():
            for kernel, rate in kernels.items():
                kernels[kernel] = max(rate, second["precisions"][precision]["rates"][library][kernel])
    return _settle(merged)


def limit_share(limits: dict, precision: str, gflops: float) -> "float | None":
    """``gflops`` as a share of ``precision``'s limit (None where it was not measured)."""
    limit = limits["precisions"].get(precision)
    return gflops / limit["gflops"] if limit else None


def percent(share: "float | None", precision: str) -> str:
    """A share of ``precision``'s limit as "73 % of the fp32 limit" ("no fp32 limit" where it
    was not measured)."""
    return f"no {precision} limit" if share is None else f"{100 * share:.0f} % of the {precision} limit"


def format_limits(limits: dict) -> list[str]:
    """Lines naming the CPU, its features and each precision's limit with the kernel that set it."""
    lines = [f"CPU: {limits['cpu']['model']}; features: {', '.join(limits['cpu']['features']) or 'none found'}"]
    for precision, limit in limits["precisions"].items():
        unit = "GOP/s" if precision == "int8" else "GFLOP/s"
        others = ", ".join(f"{library} {kernel} {rate:.0f}" for library, kernels in limit["rates"].items()
                           for kernel, rate in kernels.items() if (library, kernel) != (limit["library"], limit["kernel"]))
        lines.append(f"{precision} limit: {limit['gflops']:.0f} {unit}, {limit['library']} {limit['kernel']}"
                     + (f" (others: {others})" if others else ""))
    lines += [f"{name}: skipped ({why})" for name, why in limits["skipped"].items()]
    return lines


__all__ = ["PRECISIONS", "LIBRARIES", "KERNELS", "CONV_SHAPE", "best_seconds", "installed", "conv_flops", "mxnet_rates",
           "openvino_rates", "measure_limits", "best_limits", "limit_share", "percent", "format_limits"]
