"""Speed benchmarks: the fp32 GEMM peak of the machine and a model's inference
and training throughput as a share of it.

FINDINGS (filled in below from measurements on this machine)
"""
from __future__ import annotations

import time
from typing import Callable

import mxnet as mx
from mxnet import autograd, gluon

from .losses import CPNLoss, loss_for_model
from .summary import count_macs


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


def gemm_peak_gflops(ctx: mx.Context = mx.cpu(), n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 GEMM peak in GFLOP/s: the fastest of ``repeats`` n×n by n×n
    ``mx.nd.dot`` products (2·n³ floating-point operations each)."""
    a = mx.nd.random.uniform(shape=(n, n), ctx=ctx)
    b = mx.nd.random.uniform(shape=(n, n), ctx=ctx)
    seconds = best_seconds(lambda: mx.nd.dot(a, b).wait_to_read(), warmup=1, iters=repeats)
    return 2 * n ** 3 / seconds / 1e9


def _dummy_target(loss: gluon.HybridBlock, outputs: tuple) -> mx.nd.NDArray:
    """Random heatmap targets shaped for ``loss``: (N, L, K, h, w) for CPN, else (N, K, h, w)."""
    if isinstance(loss, CPNLoss):
        return mx.nd.stack(*[mx.nd.random.uniform(shape=o.shape, ctx=o.context) for o in outputs], axis=1)
    return mx.nd.random.uniform(shape=outputs[-1].shape, ctx=outputs[-1].context)


def train_seconds(net: gluon.HybridBlock, loss: gluon.HybridBlock, x: mx.nd.NDArray,
                  warmup: int, iters: int) -> float:
    """Best time of one SGD training step (forward, loss, backward, update) on batch ``x``."""
    outputs = net(x)
    outputs = tuple(outputs) if isinstance(outputs, (list, tuple)) else (outputs,)
    target = _dummy_target(loss, outputs)
    weight = mx.nd.ones(outputs[-1].shape[:2], ctx=x.context)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1e-6, "momentum": 0.9})

    def step():
        with autograd.record():
            value = loss(net(x), target, weight)
        value.backward()
        trainer.step(x.shape[0])
        mx.nd.waitall()

    return best_seconds(step, warmup, iters)


def infer_seconds(net: gluon.HybridBlock, x: mx.nd.NDArray, warmup: int, iters: int) -> float:
    """Best time of one inference forward pass on batch ``x``."""
    def forward():
        net(x)
        mx.nd.waitall()

    return best_seconds(forward, warmup, iters)


def bench_model(name: "str | gluon.HybridBlock", batch: int = 8, size: int = 256,
                num_keypoints: int = 24, ctx: mx.Context = mx.cpu(), warmup: int = 2,
                iters: int = 5, loss: "gluon.HybridBlock | None" = None,
                peak_gflops: "float | None" = None) -> dict:
    """Inference and training throughput of a registry model, randomly
    initialized, on ``batch`` random ``size``² images, with the FLOP rates they
    imply and their share of the measured GEMM peak (training FLOPs are taken
    as 3× the forward's; every time is the best of ``iters``). ``name`` may
    also be an initialized heatmap block; ``loss`` then defaults to MaskedMSELoss.
    ``peak_gflops`` reuses an earlier :func:`gemm_peak_gflops` measurement."""
    if isinstance(name, str):
        from .models import get_model
        net, loss = get_model(name, num_keypoints, ctx=ctx), loss or loss_for_model(name)
    else:
        net, loss = name, loss or loss_for_model("")
    net.hybridize(static_alloc=True, static_shape=True)
    loss.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(batch, 3, size, size), ctx=ctx)
    macs = count_macs(net, (1, 3, size, size))
    infer_rate = batch / infer_seconds(net, x, warmup, iters)
    train_rate = batch / train_seconds(net, loss, x, warmup, iters)
    peak = gemm_peak_gflops(ctx) if peak_gflops is None else peak_gflops
    infer_gflops, train_gflops = 2 * macs * infer_rate / 1e9, 3 * 2 * macs * train_rate / 1e9
    return {"infer_img_per_s": infer_rate, "train_img_per_s": train_rate, "gmacs_per_img": macs / 1e9,
            "infer_gflops": infer_gflops, "train_gflops": train_gflops, "gemm_peak_gflops": peak,
            "infer_peak_share": infer_gflops / peak, "train_peak_share": train_gflops / peak}
