"""One training step: forward under autograd, the family's loss, backward, the optimizer update.

Training (:func:`~.train.run_epoch`, hence SWA), the speed benchmark and the demo's rate
measurement all step through :func:`train_step`.
"""
from __future__ import annotations

import math
from typing import Sequence

import mxnet as mx
from mxnet import autograd, gluon
from mxnet.contrib import amp


def train_step(net: gluon.Block, loss_fn: gluon.Block, trainer: gluon.Trainer,
               batch: "tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]", ctx: Sequence[mx.Context],
               num_parts: int = 1) -> float:
    """One step on ``batch`` = (images, targets, weights), split over the contexts ``ctx``;
    gradients are averaged over the contexts and the ``num_parts`` distributed workers (fp16:
    with AMP's dynamic loss scaling). Returns the loss, averaged over the contexts; a NaN or
    infinite loss is returned without updating the weights."""
    parts = [gluon.utils.split_and_load(array, ctx) for array in batch]
    with autograd.record():
        losses = [loss_fn(net(x), t, w) for x, t, w in zip(*parts)]
        if getattr(trainer, "_amp_loss_scaler", None) is not None:  # fp16: dynamic loss scaling
            with amp.scale_loss(losses, trainer) as scaled:
                autograd.backward(scaled)
        else:
            autograd.backward(losses)
    value = float(sum(loss.asscalar() for loss in losses) / len(losses))
    if math.isfinite(value):
        trainer.step(len(ctx) * num_parts, ignore_stale_grad=True)
    return value


__all__ = ["train_step"]
