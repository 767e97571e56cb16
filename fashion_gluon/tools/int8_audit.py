"""Where OpenVINO runs a (QDQ) ONNX model in which precision: compile it, run it with
``PERF_COUNT`` on, and list the executed layers of ``get_runtime_model()`` with their
``layerType``, ``runtimePrecision`` and time (``get_profiling_info``)."""
from __future__ import annotations

import os

import numpy as np

from ..inference.runtimes import OpenVINONet


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


__all__ = ["precision_audit", "format_audit"]
