"""The training loop: data, model, loss and trainer from a config; checkpoints every
epoch; exact resume; validation NE; logs, tensorboard events and curves.

Resuming (``fit(..., resume=True)``, ``train --resume RUN``) continues the run with its saved
configuration; a config passed along may change only :data:`RESUMABLE_KEYS` (how long and at
which lr it goes on, never the model or the data it sees), e.g. ``train.epochs`` to train a
finished run longer. The lr schedule is rebuilt from that config (a cosine schedule then
spans the new ``train.epochs``); the optimizer's other settings and states come from the run.
"""
from __future__ import annotations

import math
import pickle
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import mxnet as mx
import numpy as np
from mxnet.contrib import amp
from tqdm import tqdm

from ..build import build_eval_dataset, build_loss, build_model, build_schema, build_train_dataset
from ..config import VALID_KEYS, load_config
from ..data.sources import describe_sources, source_counts
from ..errors import FashionGluonError, FileFormatError, quoted, shorten
from ..inference.evaluate import evaluate_dataset
from ..inference.model import KeypointModel
from ..runs import BEST_PARAMS, LAST, intact_best, load_parameters, load_state, read_params, recorded_root, run_config
from .checkpoint import prepare_run_dir, save_best, save_checkpoint
from .distributed import exit_on_failure
from .logger import RunLogger
from .schedule import BudgetSchedule, training_schedule
from .step import train_step
from .trainer import (
    TimeBudget,
    build_loader,
    build_trainer,
    check_train_choices,
    enable_mixed_precision,
    resolve_precision,
    scale_for_workers,
)
from .transfer import check_same_model, load_matching

#: Config keys that ``--resume RUN key=value`` may change: how long the run goes on, its lr
#: schedule, validation and logging intervals, loader workers and the later SWA. Every other
#: key (the model, input size, data split and augmentation, loss, batch size, optimizer,
#: precision, seed) must stay as the run was trained.
RESUMABLE_KEYS: tuple[str, ...] = (
    "train.epochs", "train.time_budget_s", "train.val_every", "train.log_every", "train.lr",
    "train.warmup_lr", "train.warmup_steps", "train.lr_schedule", "train.lr_steps", "train.lr_factors",
    "data.num_workers", "swa.cycles", "swa.cycle_epochs", "swa.lr_max", "swa.lr_min", "swa.bn_images")


class TrainingDiverged(FashionGluonError):
    """The loss became NaN or infinite."""


class RunComplete(FashionGluonError):
    """A run asked to resume has already trained all its epochs."""


def _config_value(config: dict, key: str):
    node = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def check_resume_compatible(saved: dict, config: dict, run_dir) -> None:
    """Refuse to resume ``run_dir`` with a config that differs from the run's ``saved`` one in
    a key outside :data:`RESUMABLE_KEYS` (e.g. another model, keypoint count or input size)."""
    for key in VALID_KEYS:
        old, new = _config_value(saved, key), _config_value(config, key)
        if key not in RESUMABLE_KEYS and old != new:
            raise FashionGluonError(
                f"cannot resume {run_dir} with {key}={quoted(new)}: it was trained with {quoted(old)}; on resume "
                "only train.epochs, train.time_budget_s, train.val_every, train.log_every, the lr schedule "
                "(train.lr, train.warmup_*, train.lr_*), data.num_workers and swa.* may change")


def _cannot_resume(run_dir: Path, problem: str) -> FileFormatError:
    """``problem`` (a damaged file of ``run_dir``), that the run cannot resume, and its intact
    best weights as a way on."""
    best = intact_best(run_dir)
    hint = (f"; its best weights {best} are intact: start a new run from them with --init-from {run_dir}"
            if best else f"; it has no intact {BEST_PARAMS} either")
    return FileFormatError(f"{problem}; {run_dir} cannot resume{hint}")


def check_resumable(run_dir: Path, state: dict, config: dict) -> None:
    """Before anything is built: the run still has epochs to train, and the weights and trainer
    states to resume from are there and readable."""
    epochs, done = int(config["train"]["epochs"]), int(state["epoch"])
    if done >= epochs:
        best = state.get("best_ne")
        ne = f", best val NE {best:.3f}" if isinstance(best, (int, float)) else ""
        raise RunComplete(f"{run_dir} is complete: its last epoch is {done} of train.epochs={epochs}{ne}; to train "
                          f"longer, raise train.epochs: --resume {run_dir} train.epochs=N with N > {done}")
    params = run_dir / state["params"]
    if not params.is_file():
        raise _cannot_resume(run_dir, f"{run_dir / LAST} names {quoted(state['params'])}, which does not exist")
    if not isinstance(state.get("states"), str):
        raise _cannot_resume(run_dir, f"{run_dir / LAST} names no trainer states (a run written by swa?)")
    if not (run_dir / state["states"]).is_file():
        raise _cannot_resume(run_dir, f"{run_dir / LAST} names {quoted(state['states'])}, which does not exist")
    try:
        read_params(params)
    except FileFormatError as error:
        raise _cannot_resume(run_dir, str(error)) from None
    path = run_dir / state["states"]
    try:  # what gluon's Trainer.load_states does first
        pickle.loads(path.read_bytes())
    except Exception as error:  # pickle raises many types for a truncated or corrupt file
        raise _unreadable_states(run_dir, path, error) from None


def _unreadable_states(run_dir: Path, path: Path, error: Exception) -> FileFormatError:
    reason = shorten(f"{type(error).__name__}: {str(error).splitlines()[-1] if str(error) else ''}", 100)
    return _cannot_resume(run_dir, f"{path}: not a readable trainer-state file ({reason}; truncated or corrupt)")


def _resume_weights(net, run_dir: Path, state: dict, ctx) -> None:
    try:
        load_parameters(net, run_dir / state["params"], ctx)
    except FileFormatError as error:
        raise _cannot_resume(run_dir, str(error)) from None


def _resume_states(trainer, run_dir: Path, state: dict) -> None:
    path = run_dir / state["states"]
    try:
        trainer.load_states(str(path))
    except Exception as error:  # pickle and MXNet raise many types for a truncated or corrupt file
        raise _unreadable_states(run_dir, path, error) from None


def _check_finite(value: float, epoch: int, step: int, run_dir: Path) -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(f"loss became {value} at epoch {epoch + 1}, step {step + 1}; training "
                               f"stopped, the last good checkpoint in {run_dir} is kept")


def run_epoch(net, loader, loss_fn, trainer, ctx: Sequence[mx.Context], epoch: int, desc: str,
              run_dir: Path, progress: bool = True, logger: "RunLogger | None" = None, global_step: int = 0,
              log_every: int = 10, out_of_time: "Callable[[], bool] | None" = None,
              num_parts: int = 1) -> dict:
    """One pass over ``loader`` with a :func:`~.step.train_step` per batch (gradients averaged
    over the contexts and the ``num_parts`` distributed workers). Stops early (``out_of_time``) after
    the first step at which ``out_of_time()`` is True (see :class:`TimeBudget`). A NaN/inf
    loss raises TrainingDiverged. ``step_seconds``: the time spent in the steps themselves (the
    rest of the pass waited for the loader)."""
    total, seen, steps, tic, stopped, in_steps = 0.0, 0, 0, time.time(), False, 0.0
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for step, batch in enumerate(bar):
        start = time.perf_counter()
        value = train_step(net, loss_fn, trainer, batch, ctx, num_parts)
        in_steps += time.perf_counter() - start
        _check_finite(value, epoch, step, run_dir)
        total, seen, steps = total + value, seen + batch[0].shape[0], steps + 1
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
            "step_seconds": in_steps, "out_of_time": stopped}


def fit(data_root, category: str, out, config: "dict | None" = None, resume: bool = False,
        init_from=None, ctx: Sequence[mx.Context] = (mx.cpu(),), progress: bool = True,
        max_epochs: "int | None" = None) -> dict:
    """Train (or with ``resume`` continue) a model of ``category`` into run directory ``out``.

    Returns the last epoch's record. ``max_epochs`` stops early after that many epochs in
    this call (the schedule still spans ``train.epochs``), as if the run had been killed.

    With ``train.kvstore=dist_sync`` (processes started by :func:`fashion_gluon.engine.distributed.launch`)
    each worker trains on its shard of every epoch, the lr is scaled by the number of workers
    (:func:`scale_for_workers`), only worker 0 validates and writes ``out`` (resuming needs
    ``out`` readable by every worker), and a failing worker ends its process
    (:func:`~fashion_gluon.engine.distributed.exit_on_failure`) instead of raising.
    """
    run_dir, state = Path(out), None
    if not resume and (run_dir / LAST).exists():
        raise FashionGluonError(f"{run_dir} already holds a run; resume it (--resume {run_dir}) "
                                "or choose another --out")
    if resume:
        state = load_state(run_dir)
        saved = run_config(run_dir)
        if config is not None:
            check_resume_compatible(saved, config, run_dir)
        config, category = config or saved, state["category"]
        check_resumable(run_dir, state, config)
        data_root = data_root or state.get("data_root")  # the run's own data
    config = config or load_config()
    check_train_choices(config)
    if init_from is not None and state is None:
        check_same_model(init_from, config)
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


def epochs_cap_note(epochs: int, budget: TimeBudget, lr: float) -> str:
    """The line a budgeted run prints when ``train.epochs``, only a cap then, ends it first."""
    return (f"train.epochs={epochs} reached after {budget.spent():.0f} s of the {budget.seconds:.0f} s time budget "
            f"(lr still {lr:.3g}, the schedule is laid over the budget): raise train.epochs to use the whole budget")


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

    tcfg["precision"] = resolve_precision(str(tcfg["precision"]), ctx)  # the run records what it ran in
    enable_mixed_precision(tcfg["precision"], ctx)
    net = build_model(config, category, ctx)
    if init_from is not None and state is None:
        load_matching(net, init_from, category, build_schema(config))
    if state is not None:
        _resume_weights(net, run_dir, state, ctx)
    if dist:
        net(mx.nd.zeros((1, 3, *config["data"]["input_size"]), ctx=ctx[0]))  # settle deferred shapes
    loss_fn = build_loss(config)
    scaled = scale_for_workers(tcfg, num_parts)
    budget = None
    if tcfg["time_budget_s"] is not None:
        spent = (state.get("train_seconds") or 0.0) if state is not None else 0.0
        budget = TimeBudget(float(tcfg["time_budget_s"]), spent, dist)
    schedule = training_schedule(scaled, len(loader)) if budget is None else BudgetSchedule(scaled, budget)
    trainer = build_trainer(net, tcfg, schedule, kvstore)
    if tcfg["precision"] == "fp16":
        amp.init_trainer(trainer)

    first_epoch, best = 0, None
    if state is not None:
        _resume_states(trainer, run_dir, state)
        trainer._optimizer.lr_scheduler = schedule  # the saved optimizer brings the schedule of the old train.epochs
        first_epoch, best = state["epoch"], state.get("best_ne")
    model = KeypointModel.from_config(net, config, category, str(run_dir))
    logger = RunLogger(run_dir) if is_writer else None
    if logger:  # once everything is checked: these are the first lines of a run that trains
        for line in describe_sources(train_set.annotations):
            print(line, file=sys.stderr)
        print(f"training on {len(train_set)} objects, validating on {len(val_set)}", file=sys.stderr)
        if state is None:  # a resumed run logged them when it started
            logger.sources(source_counts(train_set.annotations), len(train_set), len(val_set))
    epochs = int(tcfg["epochs"]) if max_epochs is None else min(int(tcfg["epochs"]), first_epoch + max_epochs)
    record: dict = {}
    global_step, stopped = first_epoch * len(loader), False
    for epoch in range(first_epoch, epochs):
        sampler.set_epoch(epoch)
        tic = time.time()
        stats = run_epoch(net, loader, loss_fn, trainer, ctx, epoch, f"epoch {epoch + 1}/{epochs}",
                          run_dir, progress, logger, global_step, int(tcfg["log_every"]), budget,
                          num_parts)
        global_step += stats["steps"]
        stopped = stats["out_of_time"]
        record = {"epoch": epoch + 1, "loss": stats["loss"], "lr": trainer.learning_rate,
                  "img_per_s": stats["img_per_s"], "seconds": time.time() - tic, "step_seconds": stats["step_seconds"]}
        if is_writer and ((epoch + 1) % int(tcfg["val_every"]) == 0 or epoch + 1 == epochs or stopped):
            tic = time.time()
            result = evaluate_dataset(model, val_set, ctx, int(tcfg["batch_size"]))
            record.update(val_ne=result["ne"], val_per_category=result["per_category"],
                          val_per_keypoint=result["per_keypoint"])
            if best is None or result["ne"] < best:
                best = result["ne"]
                save_best(run_dir, net, {"epoch": epoch + 1, "ne": best})
            record["val_seconds"] = time.time() - tic
        if is_writer:
            tic = time.time()
            save_checkpoint(run_dir, net, trainer, {"epoch": epoch + 1, "category": category,
                                                    "best_ne": best, "global_step": global_step,
                                                    "train_seconds": budget.spent() if budget else None,
                                                    "data_root": recorded_root(data_root)}, config)
            record["checkpoint_seconds"] = time.time() - tic
            logger.epoch(record)
        if stopped:
            break
    if budget is not None and not stopped and epochs == int(tcfg["epochs"]) and is_writer:
        note = epochs_cap_note(epochs, budget, trainer.learning_rate)
        record["note"] = note
        print(note, file=sys.stderr)
    if logger:
        logger.close()
    return record
