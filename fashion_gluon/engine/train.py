"""The training loop: data, model, loss and trainer from a config; checkpoints every
epoch; exact resume; validation NE; logs, tensorboard events and curves."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Sequence

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.contrib import amp
from tqdm import tqdm

from ..build import build_codec, build_schema, build_eval_dataset, build_loss, build_model, build_train_dataset
from ..config import load_config
from ..errors import FashionGluonError
from ..inference.evaluate import evaluate_dataset
from ..inference.model import KeypointModel
from ..runs import load_state, run_config
from .checkpoint import prepare_run_dir, save_best, save_checkpoint
from .distributed import exit_on_failure
from .logger import RunLogger
from .schedule import BudgetSchedule, training_schedule
from .trainer import TimeBudget, build_loader, build_trainer, enable_mixed_precision, scale_for_workers
from .transfer import load_matching


class TrainingDiverged(FashionGluonError):
    """The loss became NaN or infinite."""


def check_resume_compatible(saved: dict, config: dict, run_dir) -> None:
    """Refuse to resume ``run_dir`` with a different model, keypoint count or input size."""
    for section, key in (("model", "name"), ("model", "kwargs"), ("data", "input_size")):
        if saved[section][key] != config[section][key]:
            raise FashionGluonError(
                f"cannot resume {run_dir}: it was trained with {section}.{key}={saved[section][key]!r}, "
                f"not {config[section][key]!r}")


def _check_finite(value: float, epoch: int, step: int, run_dir: Path) -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(f"loss became {value} at epoch {epoch + 1}, step {step + 1}; training "
                               f"stopped, the last good checkpoint in {run_dir} is kept")


def run_epoch(net, loader, loss_fn, trainer, ctx: Sequence[mx.Context], epoch: int, desc: str,
              run_dir: Path, progress: bool = True, logger: "RunLogger | None" = None, global_step: int = 0,
              log_every: int = 10, out_of_time: "Callable[[], bool] | None" = None,
              num_parts: int = 1) -> dict:
    """One pass over ``loader`` with an optimizer step per batch (gradients averaged over the
    contexts and the ``num_parts`` distributed workers). Stops early (``out_of_time``) after
    the first step at which ``out_of_time()`` is True (see :class:`TimeBudget`). A NaN/inf
    loss raises TrainingDiverged."""
    total, seen, steps, tic, stopped = 0.0, 0, 0, time.time(), False
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for step, (data, targets, weights) in enumerate(bar):
        datas = gluon.utils.split_and_load(data, ctx)
        target_parts = gluon.utils.split_and_load(targets, ctx)
        weight_parts = gluon.utils.split_and_load(weights, ctx)
        with autograd.record():
            losses = [loss_fn(net(x), t, w) for x, t, w in zip(datas, target_parts, weight_parts)]
            if getattr(trainer, "_amp_loss_scaler", None) is not None:  # fp16: dynamic loss scaling
                with amp.scale_loss(losses, trainer) as scaled:
                    autograd.backward(scaled)
            else:
                autograd.backward(losses)
        value = float(sum(loss.asscalar() for loss in losses) / len(losses))
        _check_finite(value, epoch, step, run_dir)
        trainer.step(len(ctx) * num_parts, ignore_stale_grad=True)
        total, seen, steps = total + value, seen + data.shape[0], steps + 1
        rate = seen / max(time.time() - tic, 1e-9)
        bar.set_postfix(loss=f"{value:.5f}", lr=f"{trainer.learning_rate:.2e}", img_s=f"{rate:.1f}")
        if logger and (global_step + steps) % log_every == 0:
            logger.step("train/loss", value, global_step + steps)
            logger.step("train/lr", trainer.learning_rate, global_step + steps)
        if out_of_time is not None and out_of_time():
            stopped = True
            break
    bar.close()
    return {"loss": total / max(steps, 1), "steps": steps, "img_per_s": seen / max(time.time() - tic, 1e-9),
            "out_of_time": stopped}


def fit(data_root, category: str, out, config: "dict | None" = None, resume: bool = False,
        init_from=None, ctx: Sequence[mx.Context] = (mx.cpu(),), progress: bool = True,
        max_epochs: "int | None" = None) -> dict:
    """Train (or with ``resume`` continue) a model of ``category`` into run directory ``out``.

    Returns the last epoch's record. ``max_epochs`` stops early after that many epochs in
    this call (the schedule still spans ``train.epochs``), as if the run had been killed.

    With ``train.kvstore=dist_sync`` (processes started by :func:`fashion_gluon.distributed.launch`)
    each worker trains on its shard of every epoch, the lr is scaled by the number of workers
    (:func:`scale_for_workers`), only worker 0 validates and writes ``out`` (resuming needs
    ``out`` readable by every worker), and a failing worker ends its process
    (:func:`~fashion_gluon.distributed.exit_on_failure`) instead of raising.
    """
    run_dir, state = Path(out), None
    if not resume and (run_dir / "last.json").exists():
        raise FashionGluonError(f"{run_dir} already holds a run; resume it (--resume {run_dir}) "
                                "or choose another --out")
    if resume:
        state = load_state(run_dir)
        saved = run_config(run_dir)
        if config is not None:
            check_resume_compatible(saved, config, run_dir)
        config, category = saved, state["category"]
    config = config or load_config()
    kvstore = str(config["train"]["kvstore"])
    if not kvstore.startswith("dist"):
        return _train(data_root, category, prepare_run_dir(run_dir), config, state, init_from, list(ctx),
                      progress, max_epochs, kvstore)
    kvstore = mx.kv.create(kvstore)
    with exit_on_failure():
        if kvstore.rank == 0:
            prepare_run_dir(run_dir)
        record = _train(data_root, category, run_dir, config, state, init_from, list(ctx), progress,
                        max_epochs, kvstore)
        mx.nd.waitall()  # send this worker's last gradients: mxnet's exit drops queued pushes
        return record


def _train(data_root, category: str, run_dir: Path, config: dict, state: "dict | None", init_from,
           ctx: list, progress: bool, max_epochs: "int | None", kvstore) -> dict:
    """The training loop of :func:`fit`; ``kvstore`` is a type name or a distributed KVStore."""
    tcfg = config["train"]
    mx.random.seed(int(tcfg["seed"]))
    np.random.seed(int(tcfg["seed"]))

    train_set = build_train_dataset(config, data_root, category)
    val_set = build_eval_dataset(config, data_root, category, "val")
    dist = kvstore if isinstance(kvstore, mx.kv.KVStore) else None
    part_index, num_parts = (dist.rank, dist.num_workers) if dist else (0, 1)
    sampler, loader = build_loader(train_set, config, part_index, num_parts)
    is_writer = part_index == 0

    enable_mixed_precision(str(tcfg["precision"]), ctx)
    schema = build_schema(config)
    net = build_model(config, category, ctx)
    if init_from is not None and state is None:
        load_matching(net, init_from, category, schema)
    if state is not None:
        net.load_parameters(str(run_dir / state["params"]), ctx=ctx)
    if dist:
        net(mx.nd.zeros((1, 3, *config["data"]["input_size"]), ctx=ctx[0]))  # settle deferred shapes
    loss_fn = build_loss(config)
    scaled = scale_for_workers(tcfg, num_parts)
    budget = None
    if tcfg["time_budget_s"] is not None:
        spent = state.get("train_seconds", 0.0) if state is not None else 0.0
        budget = TimeBudget(float(tcfg["time_budget_s"]), spent, dist)
    schedule = training_schedule(scaled, len(loader)) if budget is None else BudgetSchedule(scaled, budget)
    trainer = build_trainer(net, tcfg, schedule, kvstore)
    if tcfg["precision"] == "fp16":
        amp.init_trainer(trainer)

    first_epoch, best = 0, None
    if state is not None:
        trainer.load_states(str(run_dir / state["states"]))
        first_epoch, best = state["epoch"], state.get("best_ne")
    model = KeypointModel(net, category, build_codec(config), schema, str(run_dir), config)
    logger = RunLogger(run_dir) if is_writer else None
    epochs = int(tcfg["epochs"]) if max_epochs is None else min(int(tcfg["epochs"]), first_epoch + max_epochs)
    record: dict = {}
    global_step = first_epoch * len(loader)
    for epoch in range(first_epoch, epochs):
        sampler.set_epoch(epoch)
        tic = time.time()
        stats = run_epoch(net, loader, loss_fn, trainer, ctx, epoch, f"epoch {epoch + 1}/{epochs}",
                          run_dir, progress, logger, global_step, int(tcfg["log_every"]), budget,
                          num_parts)
        global_step += stats["steps"]
        stopped = stats["out_of_time"]
        record = {"epoch": epoch + 1, "loss": stats["loss"], "lr": trainer.learning_rate,
                  "img_per_s": stats["img_per_s"], "seconds": time.time() - tic}
        if is_writer and ((epoch + 1) % int(tcfg["val_every"]) == 0 or epoch + 1 == epochs or stopped):
            result = evaluate_dataset(model, val_set, ctx, int(tcfg["batch_size"]))
            record.update(val_ne=result["ne"], val_per_category=result["per_category"],
                          val_per_keypoint=result["per_keypoint"])
            if best is None or result["ne"] < best:
                best = result["ne"]
                save_best(run_dir, net, {"epoch": epoch + 1, "ne": best})
        if is_writer:
            save_checkpoint(run_dir, net, trainer, {"epoch": epoch + 1, "category": category,
                                                    "best_ne": best, "global_step": global_step,
                                                    "train_seconds": budget.spent() if budget else None,
                                                    "data_root": str(Path(data_root).resolve())}, config)
            logger.epoch(record)
        if stopped:
            break
    if logger:
        logger.close()
    return record
