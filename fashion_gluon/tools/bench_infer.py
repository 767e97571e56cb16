"""``fashion-gluon bench infer``: every inference path this machine has — runtime (MXNet, ONNX
Runtime, OpenVINO) × precision (fp32, bf16, INT8) — on one network, measured in one run:
throughput at a batch, latency at batch 1, and the share of its precision's limit
(:mod:`.limits`: the fastest inner product of that precision in MXNet's oneDNN or OpenVINO)
the throughput implies; with a trained run and ``--data-root``, also each path's NE on a split.

Each path is a network the :class:`~fashion_gluon.inference.model.KeypointModel` calls
(NDArray in, heatmaps out), timed as prediction calls it, conversion included. Times are the
best of ``iters`` calls after ``warmup``, taken over ``rounds`` rounds that visit every path
in turn, so that a burst of load from another process on this shared machine hits all paths
alike.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..build import build_eval_dataset, load_run
from ..cpu import NO_BF16, cpu_has_bf16
from ..inference.evaluate import evaluate_model
from ..inference.export import export_onnx
from ..inference.model import KeypointModel
from ..inference.precision import to_bf16
from ..inference.qdq import quantize_onnx
from ..inference.quantize import calibration_loader, quantize
from ..inference.runtimes import OnnxNet, available_runtimes
from ..models import get_model
from ..runs import run_data_root
from ..schema import load_schema
from .bench import DEFAULT_MODEL
from .limits import best_limits, best_seconds, format_limits, limit_share, measure_limits, percent
from .summary import count_macs

#: Every (runtime, precision) pair, in the order of the table.
PATHS = (("mxnet", "fp32"), ("mxnet", "bf16"), ("mxnet", "int8"), ("onnxruntime", "fp32"),
         ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))
CALIBRATION_IMAGES = 32


def random_calibration(size: tuple[int, int], images: int = 16, batch: int = 8) -> list[np.ndarray]:
    """Normalized-looking random batches: enough to calibrate INT8 for timing, not for accuracy."""
    rng = np.random.default_rng(0)
    return [rng.normal(size=(batch, 3, *size)).astype(np.float32) for _ in range(images // batch)]


def build_paths(net: gluon.HybridBlock, size: tuple[int, int], calibration: list[np.ndarray],
                folder: Path) -> tuple[dict, dict]:
    """({(runtime, precision): network}, {(runtime, precision): why it is missing}) for every
    pair of :data:`PATHS`; ONNX files (fp32 and INT8 QDQ) are written to ``folder``."""
    paths, missing = {("mxnet", "fp32"): net}, {}
    if cpu_has_bf16():
        paths[("mxnet", "bf16")] = to_bf16(net, size)
    else:
        missing[("mxnet", "bf16")] = NO_BF16.split(";")[0]
        missing[("openvino", "bf16")] = "this CPU has no native bfloat16 (OpenVINO would run f32)"
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(np.concatenate(calibration),
                                                           np.zeros(sum(map(len, calibration)), np.float32)),
                                   batch_size=len(calibration[0]))
    paths[("mxnet", "int8")] = quantize(net, loader)
    onnx_runtimes = [name for name in ("onnxruntime", "openvino") if name in available_runtimes()]
    for name in ("onnxruntime", "openvino"):
        if name not in onnx_runtimes:
            for precision in ("fp32", "bf16", "int8"):
                missing.setdefault((name, precision), f"{name} is not installed")
    if onnx_runtimes:
        fp32 = export_onnx(net, size, folder / "fp32.onnx")
        int8 = folder / "int8.onnx"
        quantize_onnx(fp32, int8, calibration)
        for name in onnx_runtimes:
            for precision, path in (("fp32", fp32), ("bf16", fp32), ("int8", int8)):
                if (name, precision) not in missing and not (name == "onnxruntime" and precision == "bf16"):
                    paths[(name, precision)] = OnnxNet(path, net.stride, name, precision)
        missing.setdefault(("onnxruntime", "bf16"), "onnxruntime has no bf16 CPU kernels")
    return {key: paths[key] for key in PATHS if key in paths}, missing


def _forward(net: Callable, data: mx.nd.NDArray) -> Callable[[], None]:
    def call():
        net(data)
        mx.nd.waitall()
    return call


def time_paths(paths: dict, batch: int, size: tuple[int, int], rounds: int = 3, warmup: int = 2,
               iters: int = 3) -> dict:
    """{(runtime, precision): {"img_per_s": at ``batch``, "latency_ms": at batch 1}}, each the
    best over ``rounds`` interleaved rounds."""
    data = mx.nd.random.normal(shape=(batch, 3, *size))
    single = data[:1].copy()
    best: dict = {key: {"img_per_s": 0.0, "latency_ms": float("inf")} for key in paths}
    for _ in range(rounds):
        for key, net in paths.items():
            rate = batch / best_seconds(_forward(net, data), warmup, iters)
            latency = 1000 * best_seconds(_forward(net, single), warmup, iters)
            best[key] = {"img_per_s": max(best[key]["img_per_s"], rate),
                         "latency_ms": min(best[key]["latency_ms"], latency)}
    return best


def benchmarked_network(model: "str | None", checkpoint: "str | os.PathLike | None", batch: int, size: "int | None",
                        data_root: "str | os.PathLike | None") -> tuple:
    """(hybridized net, config, state, data root, input size, calibration batches, name) of what a
    benchmark times: a run's best weights (``checkpoint``: its input size unless ``size``,
    calibrated on its training images of ``data_root``, default the run's data) or a registry
    ``model`` (default :data:`~.bench.DEFAULT_MODEL`) with random weights at ``size``² (256)
    calibrated on random images; config, state and root are None for a registry model."""
    config = state = root = None
    if checkpoint is not None:
        net, config, state = load_run(checkpoint)
        input_size = tuple(config["data"]["input_size"]) if size is None else (size, size)
        root = data_root or run_data_root(checkpoint)
        dataset = build_eval_dataset(config, root, state["category"], "train")
        calibration = [d.asnumpy() for d, _ in calibration_loader(dataset, CALIBRATION_IMAGES, batch)]
        name = f"{config['model']['name']} ({checkpoint})"
    else:
        name = model or DEFAULT_MODEL
        net = get_model(name, load_schema().num_keypoints)
        input_size = (size or 256, size or 256)
        calibration = random_calibration(input_size)
    net.hybridize(static_alloc=True, static_shape=True)
    return net, config, state, root, input_size, calibration, name


def bench_infer(model: "str | None" = None, checkpoint: "str | os.PathLike | None" = None, batch: int = 8,
                size: "int | None" = None, data_root: "str | os.PathLike | None" = None,
                split: "str | None" = None, rounds: int = 3, limits: "dict | None" = None) -> dict:
    """Figures of every inference path for a registry ``model`` (default
    :data:`~.bench.DEFAULT_MODEL`) with random weights (calibrated
    on random images; ``size``² input, default 256) or the best weights of a run
    (``checkpoint``: calibrated on its training images, its input size; with ``split``, each
    path's single-pass NE on that split of ``data_root``, default the run's data). ``limits``
    reuses an earlier :func:`~.limits.measure_limits`."""
    net, config, state, root, input_size, calibration, name = benchmarked_network(model, checkpoint, batch, size,
                                                                                   data_root)
    result: dict = {"model": name, "batch": batch, "input_size": list(input_size),
                    "gmacs_per_img": count_macs(net, (1, 3, *input_size)) / 1e9,
                    "limits": limits or measure_limits(), "threads": os.environ.get("OMP_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as folder:
        paths, missing = build_paths(net, input_size, calibration, Path(folder))
        timings = time_paths(paths, batch, input_size, rounds)
        if limits is None:  # measured again after the paths, the faster of each kept
            result["limits"] = best_limits(result["limits"], measure_limits())
        ne = {}
        if checkpoint is not None and split:
            for key, path_net in paths.items():
                keypoints = KeypointModel.from_config(path_net, config, state["category"], "/".join(key))
                ne[key] = evaluate_model(keypoints, root, split, batch_size=batch)["ne"]
    rows = []
    for key in PATHS:
        row = {"runtime": key[0], "precision": key[1]}
        if key in timings:
            gflops = 2 * result["gmacs_per_img"] * timings[key]["img_per_s"]
            row.update(timings[key], limit_share=limit_share(result["limits"], key[1], gflops))
            if key in ne:
                row["ne"] = ne[key]
        else:
            row["missing"] = missing[key]
        rows.append(row)
    result["paths"], result["split"] = rows, split if ne else None
    return result


def format_infer(result: dict) -> str:
    """:func:`bench_infer`'s figures as a Markdown table after the limits, fastest path per
    precision in bold."""
    lines = [*format_limits(result["limits"]),
             f"{result['model']}, {result['input_size'][0]}x{result['input_size'][1]}, "
             f"{result['gmacs_per_img']:.2f} GMACs/img",
             "", f"| runtime | precision | batch {result['batch']} img/s | share of limit | batch 1 ms |"
             + (f" {result['split']} NE |" if result["split"] else ""),
             "|---|---|---|---|---|" + ("---|" if result["split"] else "")]
    fastest = {}
    for row in result["paths"]:
        if "img_per_s" in row and row["img_per_s"] > fastest.get(row["precision"], 0):
            fastest[row["precision"]] = row["img_per_s"]
    for row in result["paths"]:
        if "missing" in row:
            lines.append(f"| {row['runtime']} | {row['precision']} | — ({row['missing']}) | | |"
                         + (" |" if result["split"] else ""))
            continue
        rate = f"{row['img_per_s']:.2f}"
        rate = f"**{rate}**" if row["img_per_s"] == fastest[row["precision"]] else rate
        ne = f" {row['ne']:.2f} % |" if "ne" in row else (" |" if result["split"] else "")
        lines.append(f"| {row['runtime']} | {row['precision']} | {rate} | {percent(row['limit_share'], row['precision'])} | "
                     f"{row['latency_ms']:.0f} |" + ne)
    return "\n".join(lines)


__all__ = ["PATHS", "random_calibration", "build_paths", "time_paths", "bench_infer", "format_infer"]
