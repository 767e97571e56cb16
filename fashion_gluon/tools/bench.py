"""Speed benchmarks: a model's inference and training throughput, each as a share of its
precision's limit on this machine (:mod:`.limits`). Times are the best of a few runs (the
machine is shared); training FLOPs are taken as 3× the forward's.

The findings below predate :mod:`.limits`: their "GEMM peak" was fp32 ``mx.nd.dot``
(OpenBLAS), measured then with its default kernels on an AMD EPYC.

Findings, mxnet 1.9.1 (oneDNN) on 2 vCPUs (AMD EPYC, AVX-512), batch 8, 256²,
K = 24, measured with ``bench_model`` and interleaved in-process comparisons:

* OMP_NUM_THREADS must be set (to the core count) before mxnet is imported:
  unset, mxnet assumes hyper-threading and runs 1 OpenMP thread on this VM.
  GEMM peak (n = 2048 ``mx.nd.dot``; oneDNN FullyConnected alike) 92-109
  GFLOP/s unset vs 186-216 with OMP_NUM_THREADS=2; cpn_resnet50 inference
  89 → 162-173, training 62 → 113-118 GFLOP/s. The shares stay the same.
* OMP_WAIT_POLICY=PASSIVE: when other processes compete for the cores, the
  default spinning 2-thread teams slow small ops by 10-60× (a 0.05 ms ReLU took
  4-8 ms) while PASSIVE stays at ~1-thread speed. (Later, on an idle AVX2 EPYC,
  PASSIVE trained ≈ 25 % slower than spinning; the CLI now uses a short spin,
  :mod:`fashion_gluon.openmp`.)
* MXNET_ENGINE_TYPE=NaiveEngine, MXNET_SUBGRAPH_BACKEND=MKLDNN and
  MXNET_OPTIMIZER_AGGREGATION_SIZE=60: no measurable change (a hybridized
  static graph runs as one CachedOp; the SGD update is < 3 % of a step).
* ``net.optimize_for(x, backend='MKLDNN')``: +7 % inference on gluoncv's
  simple_pose_resnet50_v1b, but it fails on the registry's CPN and hourglass
  models ("Shape inconsistent" inside sg_mkldnn_conv_bn_act / conv_add, an
  mxnet 1.9.1 partitioner bug), so it is not used.
* cpn_resnet50: inference 8.3-8.8 img/s = 80-82 % of the GEMM peak, training
  1.93-1.99 img/s = 54-58 %. The backbone trains at ~73 %, the CPN head at
  ~42 %: oneDNN's backward of a 3×3 conv to K outputs, K not a multiple of 16,
  after BN/ReLU is slow (conv1x1-BN-ReLU-conv3x3 on 8×256×64×64, 1 thread:
  1033 ms to 24 outputs, 446 ms to 17, 282 ms to 32). Computing the heatmap
  convs with zero-padded weights to 32 outputs and slicing K raises training
  to 164-169 GFLOP/s = 78-83 % of peak (inference unchanged; K = 17: 146 → 157).
  ``models.backbones.HeatmapConv`` does this; with it ``bench all`` measures
  cpn_resnet50 at 8.3 img/s inference (89 %) and 2.85 img/s training (91 %) of a
  best-of-5 peak of 183 GFLOP/s; 8.4 / 2.8 img/s = 78 / 79 % of a best-of-20 peak of 210.
* hourglass (4 stacks): inference 5.87 img/s = 93 %, training 1.74 img/s = 83 %.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import mxnet as mx
from mxnet import gluon

from ..cpu import NO_BF16, cpu_has_bf16
from ..data.dataset import SplitDataset
from ..data.packing import pack
from ..data.synthetic import generate_dataset
from ..data.transforms import train_transform
from ..engine.step import train_step
from ..families import CPN_FAMILY, family_of
from ..inference.precision import to_bf16
from ..inference.quantize import quantize
from ..losses import MaskedMSELoss
from ..models import get_model
from ..schema import load_schema
from .limits import best_limits, best_seconds, format_limits, limit_share, measure_limits, percent
from .summary import count_macs


def _dummy_target(num_targets: int, final: mx.nd.NDArray) -> mx.nd.NDArray:
    """Random heatmap targets (N, L, K, h, w), ``L = num_targets``, for outputs like ``final``."""
    batch, *heatmap = final.shape
    return mx.nd.random.uniform(shape=(batch, num_targets, *heatmap), ctx=final.context)


def train_seconds(net: gluon.HybridBlock, loss: gluon.HybridBlock, x: mx.nd.NDArray,
                  warmup: int, iters: int, num_targets: int = 1) -> float:
    """Best time of one SGD training step (forward, loss, backward, update) on batch ``x``
    (``num_targets``: the targets ``loss`` takes, one per :attr:`~.families.ModelFamily.sigma_factors`)."""
    outputs = net(x)
    outputs = tuple(outputs) if isinstance(outputs, (list, tuple)) else (outputs,)
    target = _dummy_target(num_targets, outputs[-1])
    weight = mx.nd.ones(outputs[-1].shape[:2], ctx=x.context)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1e-6, "momentum": 0.9})

    def step():
        train_step(net, loss, trainer, (x, target, weight), [x.context])
        mx.nd.waitall()

    return best_seconds(step, warmup, iters)


def infer_seconds(net: gluon.HybridBlock, x: mx.nd.NDArray, warmup: int, iters: int) -> float:
    """Best time of one inference forward pass on batch ``x``."""
    def forward():
        net(x)
        mx.nd.waitall()

    return best_seconds(forward, warmup, iters)


def bench_model(name: "str | gluon.HybridBlock", batch: int = 8, size: int = 256,
                num_keypoints: "int | None" = None, ctx: mx.Context = mx.cpu(), warmup: int = 2,
                iters: int = 5, loss: "gluon.HybridBlock | None" = None,
                limits: "dict | None" = None) -> dict:
    """fp32 inference and training throughput of a registry model, randomly
    initialized, on ``batch`` random ``size``² images, with the FLOP rates they
    imply and (given ``limits``, from :func:`~.limits.measure_limits`) their share of the
    fp32 limit (training FLOPs are taken as 3× the forward's; every time is the best of
    ``iters``). ``name`` may also be an initialized heatmap block; ``loss`` then defaults
    to MaskedMSELoss."""
    if isinstance(name, str):
        net, family = get_model(name, num_keypoints or load_schema().num_keypoints, ctx=ctx), family_of(name)
        loss, num_targets = loss or family.loss(), len(family.sigma_factors)
    else:
        net, loss, num_targets = name, loss or MaskedMSELoss(), 1
    net.hybridize(static_alloc=True, static_shape=True)
    loss.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(batch, 3, size, size), ctx=ctx)
    macs = count_macs(net, (1, 3, size, size))
    infer_rate = batch / infer_seconds(net, x, warmup, iters)
    train_rate = batch / train_seconds(net, loss, x, warmup, iters, num_targets)
    infer_gflops, train_gflops = 2 * macs * infer_rate / 1e9, 3 * 2 * macs * train_rate / 1e9
    result = {"infer_img_per_s": infer_rate, "train_img_per_s": train_rate, "gmacs_per_img": macs / 1e9,
              "infer_gflops": infer_gflops, "train_gflops": train_gflops}
    return result if limits is None else add_shares(result, limits)


def add_shares(figures: dict, limits: dict) -> dict:
    """``figures`` (of :func:`bench_model`, :func:`bench_precisions` or both) with each rate's
    share of its precision's limit (training FLOPs 3× the forward's)."""
    gflops = 2 * figures["gmacs_per_img"]
    if "infer_img_per_s" in figures:
        figures.update(infer_limit_share=limit_share(limits, "fp32", gflops * figures["infer_img_per_s"]),
                       train_limit_share=limit_share(limits, "fp32", 3 * gflops * figures["train_img_per_s"]))
    if "precision_img_per_s" in figures:
        figures["precision_limit_share"] = {precision: limit_share(limits, precision, gflops * rate)
                                            for precision, rate in figures["precision_img_per_s"].items()}
    if "train_bf16_img_per_s" in figures:
        figures["train_bf16_limit_share"] = limit_share(limits, "bf16", 3 * gflops * figures["train_bf16_img_per_s"])
    return figures


# --------------------------------------------------------------------------- data pipeline

def _pipeline_dataset(root, size: int, rec: "str | None" = None):
    """The training dataset of the full input pipeline (JPEG folder, or a RecordIO pack)."""
    transform, codec = train_transform((size, size)), CPN_FAMILY.codec((size, size), 4, 2.0)
    return SplitDataset(rec if rec is not None else root, "all", "train", transform, codec, val_fraction=0.0)


def _items_per_second(dataset, count: int) -> float:
    """Single-process rate of the full pipeline (decode, augment, warp, normalize, encode)."""
    keys = [(1, i % len(dataset)) for i in range(count)]
    dataset[keys[0]]
    start = time.perf_counter()
    for key in keys:
        dataset[key]
    return count / (time.perf_counter() - start)


def _loader_per_second(dataset, workers: int, batch: int = 8) -> float:
    """Rate of a ``DataLoader`` with ``workers`` worker processes over one epoch."""
    loader = gluon.data.DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers,
                                   last_batch="discard")
    iterator = iter(loader)
    next(iterator)  # workers started, first batch ready
    start, seen = time.perf_counter(), 0
    for data, *_ in iterator:
        seen += data.shape[0]
    return seen / (time.perf_counter() - start)


def bench_data(data_root=None, sizes: tuple[int, ...] = (256, 384), images: int = 200,
               workers: int = 2, rec: bool = True) -> dict:
    """Training input pipeline throughput (JPEG decode → augment → resize → normalize → CPN
    heatmaps) per input size: one process with one OpenCV thread (``img_per_s_per_core``),
    a DataLoader with ``workers`` processes, and (``rec``) the same from a RecordIO pack.
    Uses a synthetic set of 512² images unless ``data_root`` is given."""
    result: dict = {"sizes": {}, "workers": workers}
    with tempfile.TemporaryDirectory() as tmp:
        if data_root is None:
            data_root = Path(tmp) / "synth"
            generate_dataset(data_root, per_category=max(8, images // 5 + 2), seed=0, progress=False)
        packed = pack(data_root, "all", Path(tmp) / "train.rec", val_fraction=0.0, progress=False)["rec"] if rec else None
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for size in sizes:
                figures = {}
                for source, path in (("jpeg", None), ("rec", packed)):
                    if source == "rec" and not rec:
                        continue
                    dataset = _pipeline_dataset(data_root, size, path)
                    figures[source] = {"img_per_s_per_core": _items_per_second(dataset, images),
                                       "loader_img_per_s": _loader_per_second(dataset, workers)}
                result["sizes"][str(size)] = figures
        finally:
            cv2.setNumThreads(threads)
    result["img_per_s_per_core"] = result["sizes"][str(sizes[0])]["jpeg"]["img_per_s_per_core"]
    return result


# --------------------------------------------------------------------------- low precision

def bench_precisions(name: str, batch: int = 8, size: int = 256, num_keypoints: "int | None" = None,
                     warmup: int = 2, iters: int = 5, limits: "dict | None" = None) -> dict:
    """Inference img/s of a random-weight registry model in fp32, bf16 (``mx.contrib.amp``; only
    on a CPU with native bf16, else ``bf16_missing`` says why) and INT8 (``quantize_net``,
    calibrated on random images) on the CPU; given ``limits``, each one's share of its
    precision's limit (``precision_limit_share``)."""
    net = get_model(name, num_keypoints or load_schema().num_keypoints)
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(batch, 3, size, size))
    rates = {"fp32": batch / infer_seconds(net, x, warmup, iters)}
    calib = gluon.data.DataLoader(gluon.data.ArrayDataset(mx.nd.random.uniform(shape=(2 * batch, 3, size, size)),
                                                          mx.nd.zeros(2 * batch)), batch_size=batch)
    rates["int8"] = batch / infer_seconds(quantize(net, calib), x, warmup, iters)
    result = {"precision_img_per_s": rates, "int8_speedup": rates["int8"] / rates["fp32"],
              "gmacs_per_img": count_macs(net, (1, 3, size, size)) / 1e9}
    if cpu_has_bf16():
        rates["bf16"] = batch / infer_seconds(to_bf16(net, (size, size)), x, warmup, iters)
        result["bf16_speedup"] = rates["bf16"] / rates["fp32"]
    else:
        result["bf16_missing"] = NO_BF16
    return result if limits is None else add_shares(result, limits)


def bench_train_bf16(name: str, batch: int = 8, size: int = 256) -> float:
    """Training img/s of ``name`` with bf16 AMP, measured in a fresh process (AMP patches MXNet
    for the rest of a process, so it cannot share one with the fp32 figures)."""
    script = ("import json, mxnet as mx\n"
              "from fashion_gluon.engine.trainer import enable_mixed_precision\n"
              "from fashion_gluon.tools.bench import bench_model\n"
              "enable_mixed_precision('bf16', [mx.cpu()])\n"
              f"print(json.dumps(bench_model({name!r}, {batch}, {size})))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["train_img_per_s"]


# --------------------------------------------------------------------------- the command

DEFAULT_MODEL = "cpn_resnet50"
ALL_MODELS = (DEFAULT_MODEL, "hourglass")


def run(what: str, model: "str | None" = None, batch: int = 8, size: int = 256, data_root=None,
        rec: bool = False) -> dict:
    """``fashion-gluon bench data|model|all``: one dict of figures (``all`` includes RecordIO
    and the low precisions). ``model``: default :data:`DEFAULT_MODEL`, for ``all`` every :data:`ALL_MODELS`."""
    result: dict = {"limits": measure_limits()}  # and again after the models: the faster of each is kept
    if what in ("data", "all"):
        result["data"] = bench_data(data_root, rec=rec or what == "all")
        result["img_per_s_per_core"] = result["data"]["img_per_s_per_core"]
    if what == "model":
        model = model or DEFAULT_MODEL
        result["model"] = {model: bench_model(model, batch, size)}
        result.update({k: result["model"][model][k] for k in ("infer_img_per_s", "train_img_per_s")})
    if what == "all":
        result["model"] = {name: {**bench_model(name, batch, size), **bench_precisions(name, batch, size)}
                           for name in ((model,) if model else ALL_MODELS)}
        for name, figures in result["model"].items():
            if "bf16_missing" not in figures:
                figures["train_bf16_img_per_s"] = bench_train_bf16(name, batch, size)
    if "model" in result:
        result["limits"] = best_limits(result["limits"], measure_limits())
        for figures in result["model"].values():
            add_shares(figures, result["limits"])
    return result


def format_result(result: dict) -> str:
    """A plain-text table of :func:`run`'s figures."""
    lines = format_limits(result["limits"])
    for size, sources in result.get("data", {}).get("sizes", {}).items():
        for source, figures in sources.items():
            lines.append(f"data {source:4s} {size}²: {figures['img_per_s_per_core']:7.1f} img/s/core, "
                         f"DataLoader({result['data']['workers']} workers) {figures['loader_img_per_s']:7.1f} img/s")
    for name, figures in result.get("model", {}).items():
        lines.append(f"{name}: {figures['gmacs_per_img']:.2f} GMACs/img; infer {figures['infer_img_per_s']:.2f} img/s "
                     f"({percent(figures['infer_limit_share'], 'fp32')}), train "
                     f"{figures['train_img_per_s']:.2f} img/s ({percent(figures['train_limit_share'], 'fp32')})")
        if "int8_speedup" in figures:
            rates, shares = figures["precision_img_per_s"], figures["precision_limit_share"]
            bf16 = (f", bf16 {figures['bf16_speedup']:.2f}x" if "bf16_speedup" in figures
                    else f" (no bf16: {figures['bf16_missing']})")
            lines.append("  inference " + ", ".join(f"{k} {v:.2f} img/s ({percent(shares[k], k)})" for k, v in rates.items())
                         + f"; INT8 {figures['int8_speedup']:.2f}x fp32{bf16}")
        if "train_bf16_img_per_s" in figures:
            lines.append(f"  training bf16 {figures['train_bf16_img_per_s']:.2f} img/s "
                         f"({percent(figures['train_bf16_limit_share'], 'bf16')})")
    return "\n".join(lines)

