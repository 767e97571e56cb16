"""The training loop: data, model, loss and trainer from a config; checkpoints every
epoch; exact resume; validation NE; logs, tensorboard events and curves."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Sequence

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from tqdm import tqdm

from ..codec import HeatmapCodec
from ..config import load_config
from ..data.dataset import EpochSampler, FashionAIDataset
from ..data.transforms import test_transform, train_transform
from ..errors import FashionGluonError
from ..keypoints import num_keypoints
from ..losses import loss_for_model
from ..metrics import normalized_error
from ..models import get_model
from ..predict import predict_dataset
from .checkpoint import load_state, prepare_run_dir, read_json, save_best, save_checkpoint, write_json
from .schedule import training_schedule
from .transfer import load_matching


class TrainingDiverged(FashionGluonError):
    """The loss became NaN or infinite."""


def parse_ctx(text: str) -> list[mx.Context]:
    """``'cpu'`` → [cpu(0)]; ``'gpu0,gpu1'`` → [gpu(0), gpu(1)]."""
    contexts = []
    for part in text.split(","):
        part = part.strip()
        if part == "cpu":
            contexts.append(mx.cpu())
        elif part.startswith("gpu") and part[3:].isdigit():
            contexts.append(mx.gpu(int(part[3:])))
        else:
            raise FashionGluonError(f"bad context {part!r}; use cpu or gpu0,gpu1,...")
    return contexts


def build_codec(config: dict) -> HeatmapCodec:
    """The target codec of the config's model: five σ levels for CPN, one otherwise."""
    data = config["data"]
    size = tuple(data["input_size"])
    if config["model"]["name"].startswith("cpn"):
        return HeatmapCodec.for_cpn(size, float(data["sigma"]), int(data["stride"]))
    return HeatmapCodec(size, int(data["stride"]), float(data["sigma"]))


def build_model(config: dict, category: str, ctx: Sequence[mx.Context]) -> gluon.HybridBlock:
    """The config's model for ``category``, initialized on ``ctx`` and hybridized."""
    model = config["model"]
    net = get_model(model["name"], num_keypoints(category), pretrained=model["pretrained"],
                    ctx=ctx, **model["kwargs"])
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def build_loss(config: dict) -> gluon.HybridBlock:
    """The hybridized training loss of the config's model family."""
    loss = config["loss"]
    loss_fn = loss_for_model(config["model"]["name"], loss["top_k"], float(loss["fg_weight"]),
                             bool(loss["ohkm"]))
    loss_fn.hybridize(static_alloc=True, static_shape=True)
    return loss_fn


def build_datasets(config: dict, data_root, category: str) -> tuple[FashionAIDataset, FashionAIDataset]:
    """(augmented training set with targets, validation set for prediction)."""
    data = config["data"]
    size = tuple(data["input_size"])
    augment = train_transform(size, rotate_p=data["rotate_p"], max_rotate=data["max_rotate"],
                              flip_p=data["flip_p"], crop_area=tuple(data["crop_area"]),
                              crop_aspect=tuple(data["crop_aspect"]), crop_margin=data["crop_margin"],
                              color=data["color"])
    common = dict(val_fraction=data["val_fraction"], split_seed=data["split_seed"])
    train = FashionAIDataset(data_root, category, "train", augment, build_codec(config),
                             seed=config["train"]["seed"], **common)
    val = FashionAIDataset(data_root, category, "val", test_transform(size), **common)
    return train, val


def evaluate_net(net, dataset: FashionAIDataset, codec: HeatmapCodec, ctx, batch_size: int,
                 flip: bool = False, num_workers: int = 0) -> dict:
    """Normalized error of ``net`` on an annotated evaluation ``dataset``."""
    pred = predict_dataset(net, dataset, codec, ctx, batch_size, flip, num_workers)
    ann = dataset.annotations
    return normalized_error(pred, ann.keypoints, ann.categories)


def build_loader(train_set: FashionAIDataset, config: dict, part_index: int = 0,
                 num_parts: int = 1) -> tuple[EpochSampler, gluon.data.DataLoader]:
    """(sampler, loader) of full shuffled batches of this worker's shard; ``set_epoch`` the
    sampler before each epoch."""
    batch_size = int(config["train"]["batch_size"])
    sampler = EpochSampler(len(train_set), True, int(config["train"]["seed"]), part_index, num_parts)
    batches = gluon.data.BatchSampler(sampler, batch_size, "discard")
    if len(batches) == 0:
        raise FashionGluonError(f"{len(train_set)} training images of {train_set.category!r} make no "
                                f"full batch of {batch_size}; lower train.batch_size")
    loader = gluon.data.DataLoader(train_set, batch_sampler=batches,
                                   num_workers=int(config["data"]["num_workers"]))
    return sampler, loader


def build_trainer(net, tcfg: dict, schedule, kvstore="device") -> gluon.Trainer:
    """A gluon Trainer with the ``train`` section's optimizer and lr ``schedule``."""
    params = {"wd": float(tcfg["wd"]), "lr_scheduler": schedule}
    if tcfg["optimizer"] == "sgd":
        params["momentum"] = float(tcfg["momentum"])
    elif tcfg["optimizer"] != "adam":
        raise FashionGluonError(f"train.optimizer must be sgd or adam, got {tcfg['optimizer']!r}")
    if tcfg["clip_gradient"]:
        params["clip_gradient"] = float(tcfg["clip_gradient"])
    return gluon.Trainer(net.collect_params(), tcfg["optimizer"], params, kvstore=kvstore)


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


class _Logger:
    """Per-epoch JSON lines, tensorboardX scalars and a curves PNG in the run directory."""

    def __init__(self, run_dir: Path):
        from tensorboardX import SummaryWriter
        self.run_dir, self.writer = run_dir, SummaryWriter(str(run_dir / "tb"))

    def step(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def epoch(self, record: dict) -> None:
        from ..visualize import plot_curves
        import json
        with open(self.run_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for key in ("loss", "lr", "val_ne", "img_per_s"):
            if key in record:
                self.writer.add_scalar(f"epoch/{key}", record[key], record["epoch"])
        self.writer.flush()
        plot_curves(read_log(self.run_dir), self.run_dir / "curves.png")

    def close(self) -> None:
        self.writer.close()


def read_log(run_dir) -> list[dict]:
    """The per-epoch records of a run."""
    import json
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_epoch(net, loader, loss_fn, trainer, ctx: Sequence[mx.Context], epoch: int, desc: str,
              run_dir: Path, progress: bool = True, logger: "_Logger | None" = None, global_step: int = 0,
              log_every: int = 10, deadline: "float | None" = None, num_parts: int = 1) -> dict:
    """One pass over ``loader`` with an optimizer step per batch (gradients averaged over the
    contexts and the ``num_parts`` distributed workers). Stops early (``out_of_time``) once
    ``time.time()`` passes ``deadline``. A NaN/inf loss raises TrainingDiverged."""
    total, seen, steps, tic, out_of_time = 0.0, 0, 0, time.time(), False
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for step, (data, targets, weights) in enumerate(bar):
        datas = gluon.utils.split_and_load(data, ctx)
        target_parts = gluon.utils.split_and_load(targets, ctx)
        weight_parts = gluon.utils.split_and_load(weights, ctx)
        with autograd.record():
            losses = [loss_fn(net(x), t, w) for x, t, w in zip(datas, target_parts, weight_parts)]
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
        if deadline is not None and time.time() > deadline:
            out_of_time = True
            break
    bar.close()
    return {"loss": total / max(steps, 1), "steps": steps, "img_per_s": seen / max(time.time() - tic, 1e-9),
            "out_of_time": out_of_time}


def fit(data_root, category: str, out, config: "dict | None" = None, resume: bool = False,
        init_from=None, ctx: Sequence[mx.Context] = (mx.cpu(),), progress: bool = True,
        max_epochs: "int | None" = None) -> dict:
    """Train (or with ``resume`` continue) a model of ``category`` into run directory ``out``.

    Returns the last epoch's record. ``max_epochs`` stops early after that many epochs in
    this call (the schedule still spans ``train.epochs``), as if the run had been killed.
    """
    run_dir = prepare_run_dir(out)
    state = None
    if resume:
        state = load_state(run_dir)
        saved = load_config(run_dir / "config.yaml")
        if config is not None:
            check_resume_compatible(saved, config, run_dir)
        config, category = saved, state["category"]
    config = config or load_config()
    tcfg = config["train"]
    mx.random.seed(int(tcfg["seed"]))
    np.random.seed(int(tcfg["seed"]))
    ctx = list(ctx)

    train_set, val_set = build_datasets(config, data_root, category)
    kvstore = tcfg["kvstore"]
    part_index, num_parts = 0, 1
    if str(kvstore).startswith("dist"):
        kvstore = mx.kv.create(kvstore)
        part_index, num_parts = kvstore.rank, kvstore.num_workers
    sampler, loader = build_loader(train_set, config, part_index, num_parts)
    is_writer = part_index == 0

    net = build_model(config, category, ctx)
    if init_from is not None and state is None:
        load_matching(net, init_from, category)
    loss_fn = build_loss(config)
    scaled = dict(tcfg, lr=float(tcfg["lr"]) * num_parts, warmup_lr=float(tcfg["warmup_lr"]) * num_parts)
    trainer = build_trainer(net, tcfg, training_schedule(scaled, len(loader)), kvstore)

    first_epoch, best = 0, None
    if state is not None:
        net.load_parameters(str(run_dir / state["params"]), ctx=ctx)
        trainer.load_states(str(run_dir / state["states"]))
        first_epoch, best = state["epoch"], state.get("best_ne")
    codec_eval = build_codec(config)
    logger = _Logger(run_dir) if is_writer else None
    epochs = int(tcfg["epochs"]) if max_epochs is None else min(int(tcfg["epochs"]), first_epoch + max_epochs)
    budget = tcfg["time_budget_s"]
    started = time.time()
    record: dict = {}
    global_step = first_epoch * len(loader)
    for epoch in range(first_epoch, epochs):
        sampler.set_epoch(epoch)
        tic = time.time()
        deadline = None if budget is None else started + float(budget)
        stats = run_epoch(net, loader, loss_fn, trainer, ctx, epoch, f"epoch {epoch + 1}/{epochs}",
                          run_dir, progress, logger, global_step, int(tcfg["log_every"]), deadline,
                          num_parts)
        global_step += stats["steps"]
        out_of_time = stats["out_of_time"]
        record = {"epoch": epoch + 1, "loss": stats["loss"], "lr": trainer.learning_rate,
                  "img_per_s": stats["img_per_s"], "seconds": time.time() - tic}
        if is_writer and ((epoch + 1) % int(tcfg["val_every"]) == 0 or epoch + 1 == epochs or out_of_time):
            result = evaluate_net(net, val_set, codec_eval, ctx, int(tcfg["batch_size"]))
            record.update(val_ne=result["ne"], val_per_category=result["per_category"],
                          val_per_keypoint=result["per_keypoint"])
            if best is None or result["ne"] < best:
                best = result["ne"]
                save_best(run_dir, net, {"epoch": epoch + 1, "ne": best})
        if is_writer:
            save_checkpoint(run_dir, net, trainer, {"epoch": epoch + 1, "category": category,
                                                    "best_ne": best, "global_step": global_step,
                                                    "data_root": str(Path(data_root).resolve())}, config)
            logger.epoch(record)
        if out_of_time:
            break
    if logger:
        logger.close()
    return record
