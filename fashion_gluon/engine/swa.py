"""Stochastic Weight Averaging (Izmailov et al. 2018) after training.

Training continues for ``cycles`` cycles of ``cycle_epochs`` epochs with the lr
falling linearly from ``lr_max`` to ``lr_min`` in each; the weights at the end
of every cycle are averaged with equal weights, and BatchNorm running
statistics of the averaged weights are recomputed with one pass over the
training data (an equal-weight average over its batches).
"""
from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path
from typing import Sequence

import mxnet as mx
from mxnet import autograd, gluon
from tqdm import tqdm

from ..build import build_eval_dataset, build_loss, build_train_dataset, load_run
from ..config import validate
from ..fileio import write_json
from ..inference.evaluate import evaluate_dataset
from ..inference.model import KeypointModel
from ..runs import SWA_DIR, SWA_RESULT, load_state, recorded_root, run_config
from .checkpoint import prepare_run_dir, save_best, save_checkpoint
from .schedule import swa_schedule
from .train import run_epoch
from .trainer import build_loader, build_trainer, enable_mixed_precision


class WeightAverage:
    """Equal-weight running average of a block's trainable parameters."""

    def __init__(self, net: gluon.Block):
        self.params = {name: p for name, p in net._collect_params_with_prefix().items() if p.grad_req != "null"}
        self.sums = {name: p.data().copy() * 0 for name, p in self.params.items()}
        self.count = 0

    def add(self) -> None:
        """Add the parameters' current values."""
        for name, param in self.params.items():
            self.sums[name] += param.data()
        self.count += 1

    def apply(self) -> None:
        """Set the parameters to the average of the values added so far."""
        if self.count == 0:
            raise ValueError("no weights were added to the average")
        for name, param in self.params.items():
            param.set_data(self.sums[name] / self.count)


def batchnorm_layers(net: gluon.Block) -> list[gluon.nn.BatchNorm]:
    """Every BatchNorm layer of ``net``."""
    found = []
    net.apply(lambda block: found.append(block) if isinstance(block, gluon.nn.BatchNorm) else None)
    return found


def recalibrate_batchnorm(net: gluon.HybridBlock, batches, ctx: Sequence[mx.Context],
                          progress: bool = False) -> int:
    """Recompute BN running mean/var as the equal-weight average of the per-batch statistics
    of ``batches`` (iterable of ``(data, ...)``): forward and backward, no optimizer step. Returns the number
    of batches used. Runs imperatively (BN momentum changes per batch) and restores it."""
    layers = batchnorm_layers(net)
    momenta = [layer._kwargs["momentum"] for layer in layers]
    for layer in layers:
        layer.running_mean.set_data(mx.nd.zeros(layer.running_mean.shape))
        layer.running_var.set_data(mx.nd.ones(layer.running_var.shape))
    net.hybridize(active=False)
    count = 0
    try:
        for batch in tqdm(batches, desc="BN recalibration", disable=not progress, leave=False):
            for layer in layers:  # running = t/(t+1) * running + 1/(t+1) * batch statistic
                layer._kwargs["momentum"] = count / (count + 1.0)
            with autograd.record(train_mode=True):  # MXNet updates BN statistics in backward
                outputs = [net(part) for part in gluon.utils.split_and_load(batch[0], ctx)]
            autograd.backward([o for out in outputs for o in (out if isinstance(out, (list, tuple)) else [out])])
            mx.nd.waitall()
            count += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer._kwargs["momentum"] = momentum
        net.hybridize(static_alloc=True, static_shape=True)
    return count


def run_swa(run_dir: "str | os.PathLike", data_root: "str | os.PathLike | None", out: "str | os.PathLike | None" = None,
            cycles: "int | None" = None, cycle_epochs: "int | None" = None, lr_max: "float | None" = None,
            lr_min: "float | None" = None, bn_images: "int | None" = None,
            ctx: Sequence[mx.Context] = (mx.cpu(),), progress: bool = True) -> dict:
    """SWA from the best weights of ``run_dir`` into ``out`` (default ``run_dir/swa``), a normal
    run directory with ``swa.json``. Returns val NE before, after averaging (old BN statistics) and after BN
    recalibration on the first ``swa.bn_images`` training images (rounded up to whole batches).
    Arguments left None come from the run's ``swa`` config section."""
    run_dir = Path(run_dir)
    config, state = run_config(run_dir), load_state(run_dir)
    given = {"cycles": cycles, "cycle_epochs": cycle_epochs, "lr_max": lr_max, "lr_min": lr_min, "bn_images": bn_images}
    config["swa"].update({key: value for key, value in given.items() if value is not None})
    scfg = validate(config, "swa arguments")["swa"]  # the config's rules check the arguments too
    cycles, cycle_epochs, bn_images = int(scfg["cycles"]), int(scfg["cycle_epochs"]), int(scfg["bn_images"])
    lr_max, lr_min = float(scfg["lr_max"]), float(scfg["lr_min"])
    category, ctx = state["category"], list(ctx)

    train_set = build_train_dataset(config, data_root, category)
    val_set = build_eval_dataset(config, data_root, category, "val")
    sampler, loader = build_loader(train_set, config)
    enable_mixed_precision(str(config["train"]["precision"]), ctx)
    net = load_run(run_dir, ctx)[0]
    out = prepare_run_dir(out or run_dir / SWA_DIR)
    model = KeypointModel.from_config(net, config, category, str(out))
    batch = int(config["train"]["batch_size"])
    before = evaluate_dataset(model, val_set, ctx, batch)["ne"]

    trainer = build_trainer(net, config["train"], swa_schedule(cycles, cycle_epochs * len(loader), lr_max, lr_min))
    loss_fn, average, tic = build_loss(config), WeightAverage(net), time.time()
    first = int(state["epoch"])
    for cycle in range(cycles):
        for e in range(cycle_epochs):
            epoch = first + cycle * cycle_epochs + e
            sampler.set_epoch(epoch)
            run_epoch(net, loader, loss_fn, trainer, ctx, epoch,
                      f"SWA cycle {cycle + 1}/{cycles}", out, progress)
        average.add()
    average.apply()
    averaged = evaluate_dataset(model, val_set, ctx, batch)["ne"]
    bn_batches = recalibrate_batchnorm(net, itertools.islice(loader, math.ceil(bn_images / batch)), ctx, progress)
    after = evaluate_dataset(model, val_set, ctx, batch)["ne"]

    result = {"val_ne_before": before, "val_ne_averaged": averaged, "val_ne_after": after,
              "cycles": cycles, "cycle_epochs": cycle_epochs, "bn_batches": bn_batches,
              "seconds": time.time() - tic}
    save_checkpoint(out, net, None, {"epoch": first + cycles * cycle_epochs, "category": category,
                                     "best_ne": after, "swa": result,
                                     "data_root": recorded_root(data_root)}, config)
    save_best(out, net, {"epoch": first + cycles * cycle_epochs, "ne": after})
    write_json(out / SWA_RESULT, result)
    return result
