"""The speed limit of each precision on this machine, measured in the libraries the networks
run in, so that a network's speed can be given as a share of the limit of its precision.

A limit is the fastest n×n by n×n inner product (2·n³ operations) of a precision in any of:

* ``mxnet``: MXNet's oneDNN ``FullyConnected`` (fp32; bf16 inputs and weights cast with
  ``amp_cast``) and ``contrib.quantized_fully_connected`` (u8 data × s8 weights, s32 out, the
  form of MXNet's quantized convolutions after a ReLU);
* ``openvino``: a one-MatMul OpenVINO model (f32; bf16 input and output with a bf16
  ``INFERENCE_PRECISION_HINT``; int8: FakeQuantize on data and weights, which OpenVINO runs as
  a u8 × i8 MatMul after quantizing the data, ~10 % of the time at n = 2048).

Findings, 2-core Intel Xeon (AVX-512, AVX512-BF16, VNNI, AMX), n = 2048, best of 10; oneDNN
2.4.4 in MXNet 1.9.1 uses no AMX (its inner products run ``gemm:jit``, its convolutions
``brgconv:avx512_core[_bf16]``) while OpenVINO 2026.4 runs ``brgemm_avx512_amx``:
fp32 MXNet 236 / OpenVINO 148 (MLAS) GFLOP/s; bf16 MXNet 137 (slower than its fp32) / OpenVINO
1134; int8 MXNet 742 / OpenVINO 912 GOP/s. ``mx.nd.dot`` (OpenBLAS, AVX2 kernels under
``OPENBLAS_CORETYPE=Haswell``) reached 121, about half of oneDNN's fp32, which is why it is no
limit: the convolutions run in oneDNN.
"""
from __future__ import annotations

import time
from typing import Callable

import mxnet as mx
import numpy as np

from ..cpu import cpu_features, cpu_has_bf16, cpu_model
from ..inference.runtimes import PRECISIONS, available_runtimes

LIBRARIES = ("mxnet", "openvino")
#: What each library's limit is measured with (for the printed table).
SOURCES = {"mxnet": "MXNet oneDNN FullyConnected", "openvino": "OpenVINO MatMul"}


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


def _mxnet_product(precision: str, n: int) -> Callable[[], object]:
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


def _openvino_product(precision: str, n: int) -> Callable[[], object]:
    """One n×n by n×n MatMul of ``precision`` compiled by OpenVINO for the CPU."""
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    weight = ops.constant(rng.uniform(-1, 1, (n, n)).astype(np.float32))
    if precision == "bf16":
        data = ops.parameter([n, n], ov.Type.bf16)
        output = ops.convert(ops.matmul(ops.convert(data, np.float32), weight, False, True), ov.Type.bf16)
        inputs = ov.Tensor(ov.Type.bf16, [n, n])
        inputs.data.view(np.uint16)[:] = (values.view(np.uint32) >> 16).astype(np.uint16)
    else:
        data, inputs = ops.parameter([n, n], np.float32), values
        left, right = data, weight
        if precision == "int8":
            low, high = ops.constant(np.float32(-1)), ops.constant(np.float32(1))
            left, right = ops.fake_quantize(data, low, high, low, high, 256), ops.fake_quantize(weight, low, high,
                                                                                               low, high, 255)
        output = ops.matmul(left, right, False, True)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    request = ov.Core().compile_model(ov.Model([output], [data]), "CPU", config).create_infer_request()
    return lambda: request.infer({0: inputs})


_PRODUCTS = {"mxnet": _mxnet_product, "openvino": _openvino_product}


def measure_limits(n: int = 2048, repeats: int = 10) -> dict:
    """Each precision's limit in GFLOP/s (int8: GOP/s): ``{"cpu": {"model", "features"}, "n",
    "precisions": {precision: {"gflops", "library", "libraries": {library: gflops}}},
    "skipped": {precision or library: why}}``, each figure the best of ``repeats`` products.
    bf16 is skipped on a CPU without native bf16, OpenVINO where it is not installed."""
    skipped = {} if cpu_has_bf16() else {"bf16": "this CPU has no native bfloat16 (AVX512-BF16 or AMX)"}
    libraries = [name for name in LIBRARIES if name == "mxnet" or name in available_runtimes()]
    skipped.update({name: f"{name} is not installed" for name in LIBRARIES if name not in libraries})
    precisions = {}
    for precision in (p for p in PRECISIONS if p not in skipped):
        rates = {name: 2 * n ** 3 / best_seconds(_PRODUCTS[name](precision, n), 2, repeats) / 1e9
                 for name in libraries}
        fastest = max(rates, key=rates.get)
        precisions[precision] = {"gflops": rates[fastest], "library": fastest, "libraries": rates}
    return {"cpu": {"model": cpu_model(), "features": cpu_features()}, "n": n, "precisions": precisions,
            "skipped": skipped}


def limit_share(limits: dict, precision: str, gflops: float) -> "float | None":
    """``gflops`` as a share of ``precision``'s limit (None where it was not measured)."""
    limit = limits["precisions"].get(precision)
    return gflops / limit["gflops"] if limit else None


def percent(share: "float | None", precision: str) -> str:
    """A share of ``precision``'s limit as "73 % of the fp32 limit" ("no fp32 limit" where it
    was not measured)."""
    return f"no {precision} limit" if share is None else f"{100 * share:.0f} % of the {precision} limit"


def format_limits(limits: dict) -> list[str]:
    """Lines naming the CPU, its features and each precision's limit with the library that set it."""
    lines = [f"CPU: {limits['cpu']['model']}; features: {', '.join(limits['cpu']['features']) or 'none found'}"]
    for precision, limit in limits["precisions"].items():
        unit = "GOP/s" if precision == "int8" else "GFLOP/s"
        others = ", ".join(f"{name} {rate:.0f}" for name, rate in limit["libraries"].items() if name != limit["library"])
        lines.append(f"{precision} limit ({limits['n']}² products): {limit['gflops']:.0f} {unit}, "
                     f"{SOURCES[limit['library']]}" + (f" (others: {others})" if others else ""))
    lines += [f"{name}: skipped ({why})" for name, why in limits["skipped"].items()]
    return lines


__all__ = ["PRECISIONS", "LIBRARIES", "best_seconds", "measure_limits", "limit_share", "percent", "format_limits"]
