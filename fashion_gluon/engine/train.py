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

from ..codec import HeatmapCodec
from ..config import load_config
from ..data.dataset import EpochSampler, FashionAIDataset
from ..data.transforms import test_transform, train_transform
from ..distributed import exit_on_failure
from ..errors import FashionGluonError
from ..keypoints import num_keypoints
from ..losses import loss_for_model
from ..metrics import normalized_error
from ..models import get_model
from ..predict import predict_dataset
from .checkpoint import load_state, prepare_run_dir, save_best, save_checkpoint
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


PRECISIONS = ("fp32", "bf16", "fp16")


def enable_mixed_precision(precision: str, ctx: Sequence[mx.Context]) -> None:
    """Switch on ``mx.contrib.amp`` for this process before the model is built: ``bf16`` on
    CPU (oneDNN), ``fp16`` on GPU (with dynamic loss scaling); ``fp32`` does nothing. AMP
    stays on for the rest of the process, as MXNet's AMP works by patching operators."""
    if precision not in PRECISIONS:
        raise FashionGluonError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return
    on_gpu = all(c.device_type == "gpu" for c in ctx)
    if (precision == "fp16") != on_gpu:
        raise FashionGluonError(f"train.precision={precision} needs {'a GPU' if precision == 'fp16' else 'the CPU'} "
                                f"context (fp16 does not run on CPU; use bf16 there)")
    if precision == "fp16":
        amp.init(target_dtype="float16")
    else:  # oneDNN's bf16 Concat rejects mixed inputs: keep it in fp32 (inputs are cast up)
        amp.init(target_dtype="bfloat16", fp32_ops=amp.list_fp32_ops(amp.amp.bfloat16) + ["Concat", "concat"])


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
    """A gluon Trainer with the ``train`` section's optimizer and lr ``schedule``.

    With a distributed ``kvstore`` the servers only sum the workers' gradients and every
    worker applies the same update itself (``update_on_kvstore=False``): the optimizer
    states then live on the workers, so ``save_states`` works and ``learning_rate`` is
    the scheduled one."""
    params = {"wd": float(tcfg["wd"]), "lr_scheduler": schedule, "learning_rate": schedule.base_lr}
    if tcfg["optimizer"] == "sgd":
        params["momentum"] = float(tcfg["momentum"])
    elif tcfg["optimizer"] != "adam":
        raise FashionGluonError(f"train.optimizer must be sgd or adam, got {tcfg['optimizer']!r}")
    if tcfg["clip_gradient"]:
        params["clip_gradient"] = float(tcfg["clip_gradient"])
    distributed = "dist" in getattr(kvstore, "type", str(kvstore))
    trainer = gluon.Trainer(net.collect_params(), tcfg["optimizer"], params, kvstore=kvstore,
                            update_on_kvstore=False if distributed else None)
    if distributed:
        _start_kvstore(trainer)
    return trainer


def _start_kvstore(trainer: gluon.Trainer) -> None:
    """Put rank 0's initial weights on a distributed Trainer's servers and into every worker,
    and wait for both. gluon would do this lazily inside the first ``step`` with a ``broadcast``
    per parameter that waits for neither, and both races were seen with mxnet 1.9.1: a worker's
    pull reaching a server before rank 0's initial push ("init N first" abort, CPN, most runs),
    and, with ``update_on_kvstore=False``, a weight pull answered after the first gradients were
    summed on the server, so that worker took the gradient sum for its weights (2 of 8 runs of
    the 2-worker test). The parameters must be initialized (run one forward pass first)."""
    trainer._init_kvstore()
    kvstore, params = trainer._kvstore, trainer._params_to_init
    deferred = [p.name for p in params if p._deferred_init]
    if deferred:
        raise FashionGluonError(f"distributed training needs every parameter's shape before the Trainer "
                                f"starts (run one forward pass first); still deferred: {', '.join(deferred[:3])}")
    keys = [trainer._param2idx[p.name] for p in params]
    # plain copies: an inference forward may have left weights in oneDNN's layout, which cannot be sent
    init_keys(kvstore, keys, [mx.nd.array(p.list_data()[0].asnumpy(), dtype=p.dtype) for p in params])
    for key, param in zip(keys, params):
        kvstore.pull(key, param.list_data(), priority=-key)
    mx.nd.waitall()
    trainer._params_to_init = []


def init_keys(kvstore, keys: list, values: list) -> None:
    """``kvstore.init`` (rank 0's values count) that returns only once the servers hold the
    values, on every worker: else another worker's first pull or push can reach a server first."""
    kvstore.init(keys, values)
    mx.nd.waitall()  # rank 0: its initial values have reached the servers
    kvstore._barrier()


def scale_for_workers(tcfg: dict, num_workers: int) -> dict:
    """The ``train`` section with ``lr`` and ``warmup_lr`` multiplied by ``num_workers``: the
    linear scaling rule for a global batch of ``num_workers × batch_size``."""
    return dict(tcfg, lr=float(tcfg["lr"]) * num_workers, warmup_lr=float(tcfg["warmup_lr"]) * num_workers)


#: kvstore key of the workers' time-budget vote (far from the Trainer's parameter keys 0, 1, ...).
STOP_KEY = 1 << 30


class TimeBudget:
    """``budget()`` is True once ``deadline`` (a ``time.time()`` value) has passed; with a
    distributed ``kvstore``, once it has passed for ANY worker (a summed vote each call), so
    every worker stops after the same step instead of waiting forever for the others.
    Every worker must create it, and call it, at the same points."""

    def __init__(self, deadline: float, kvstore=None):
        self.deadline, self.kvstore = deadline, kvstore
        if kvstore is not None:
            init_keys(kvstore, [STOP_KEY], [mx.nd.zeros(1)])

    def __call__(self) -> bool:
        late = time.time() > self.deadline
        if self.kvstore is None:
            return late
        vote = mx.nd.array([float(late)])
        self.kvstore.pushpull(STOP_KEY, vote, out=vote)
        return bool(vote.asscalar() > 0)


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
        saved = load_config(run_dir / "config.yaml")
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

    train_set, val_set = build_datasets(config, data_root, category)
    dist = kvstore if isinstance(kvstore, mx.kv.KVStore) else None
    part_index, num_parts = (dist.rank, dist.num_workers) if dist else (0, 1)
    sampler, loader = build_loader(train_set, config, part_index, num_parts)
    is_writer = part_index == 0

    enable_mixed_precision(str(tcfg["precision"]), ctx)
    net = build_model(config, category, ctx)
    if init_from is not None and state is None:
        load_matching(net, init_from, category)
    if state is not None:
        net.load_parameters(str(run_dir / state["params"]), ctx=ctx)
    if dist:
        net(mx.nd.zeros((1, 3, *config["data"]["input_size"]), ctx=ctx[0]))  # settle deferred shapes
    loss_fn = build_loss(config)
    trainer = build_trainer(net, tcfg, training_schedule(scale_for_workers(tcfg, num_parts), len(loader)), kvstore)
    if tcfg["precision"] == "fp16":
        amp.init_trainer(trainer)

    first_epoch, best = 0, None
    if state is not None:
        trainer.load_states(str(run_dir / state["states"]))
        first_epoch, best = state["epoch"], state.get("best_ne")
    codec_eval = build_codec(config)
    logger = _Logger(run_dir) if is_writer else None
    epochs = int(tcfg["epochs"]) if max_epochs is None else min(int(tcfg["epochs"]), first_epoch + max_epochs)
    budget = tcfg["time_budget_s"]
    out_of_time = None if budget is None else TimeBudget(time.time() + float(budget), dist)
    record: dict = {}
    global_step = first_epoch * len(loader)
    for epoch in range(first_epoch, epochs):
        sampler.set_epoch(epoch)
        tic = time.time()
        stats = run_epoch(net, loader, loss_fn, trainer, ctx, epoch, f"epoch {epoch + 1}/{epochs}",
                          run_dir, progress, logger, global_step, int(tcfg["log_every"]), out_of_time,
                          num_parts)
        global_step += stats["steps"]
        stopped = stats["out_of_time"]
        record = {"epoch": epoch + 1, "loss": stats["loss"], "lr": trainer.learning_rate,
                  "img_per_s": stats["img_per_s"], "seconds": time.time() - tic}
        if is_writer and ((epoch + 1) % int(tcfg["val_every"]) == 0 or epoch + 1 == epochs or stopped):
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
        if stopped:
            break
    if logger:
        logger.close()
    return record
