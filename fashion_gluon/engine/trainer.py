"""The optimizer side of training: mixed precision, the gluon Trainer (local or on MXNet's
parameter server), the batch loader of a worker's shard and the shared time budget.

It owns the tables of the ``train`` section's choices it implements — :data:`OPTIMIZERS`,
:data:`PRECISIONS`, :data:`KVSTORES` — and :func:`check_train_choices` checks a config against
them and :data:`~.schedule.SCHEDULES` before a run starts (the config module, a lower layer,
checks every other value when a config is loaded)."""
from __future__ import annotations

import time
from typing import Sequence

import mxnet as mx
from mxnet import gluon
from mxnet.contrib import amp

from ..config import check_choice
from ..cpu import NO_BF16, cpu_has_bf16
from ..data.dataset import EpochSampler, KeypointDataset
from ..errors import FashionGluonError
from .schedule import SCHEDULES

#: ``train.optimizer``: MXNet's optimizer of that name, and the ``train`` keys it takes besides
#: ``lr``, ``wd`` and ``clip_gradient``, which every one takes.
OPTIMIZERS: dict[str, tuple[str, ...]] = {"sgd": ("momentum",), "adam": ()}
#: ``train.precision``: ``auto`` (bf16 on a CPU that has it, else fp32), fp32, bf16 (CPU), fp16 (GPU).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
#: ``train.kvstore``: the MXNet kvstore types the gradients are summed through (``dist_*``: the
#: parameter server of ``fashion-gluon launch``).
KVSTORES: tuple[str, ...] = ("device", "local", "dist_sync", "dist_device_sync", "dist_async")


def check_train_choices(config: dict, source: str = "config") -> None:
    """A one-line ConfigError naming the key and its allowed values unless each choice of the
    ``train`` section is one training implements."""
    train = config["train"]
    for key, table in (("optimizer", OPTIMIZERS), ("lr_schedule", SCHEDULES), ("precision", PRECISIONS),
                       ("kvstore", KVSTORES)):
        check_choice(f"train.{key}", train[key], table, source)


def resolve_precision(precision: str, ctx: Sequence[mx.Context]) -> str:
    """``precision`` with ``auto`` made concrete: bf16 on CPU contexts whose CPU runs it natively,
    fp32 otherwise (GPU included: fp16 is only ever asked for by name)."""
    check_choice("train.precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    on_cpu = all(c.device_type == "cpu" for c in ctx)
    return "bf16" if on_cpu and cpu_has_bf16() else "fp32"


def enable_mixed_precision(precision: str, ctx: Sequence[mx.Context]) -> None:
    """Switch on ``mx.contrib.amp`` for this process before the model is built (``auto``: see
    :func:`resolve_precision`): ``bf16`` on
    CPU (oneDNN), ``fp16`` on GPU (with dynamic loss scaling); ``fp32`` does nothing. AMP
    stays on for the rest of the process, as MXNet's AMP works by patching operators."""
    precision = resolve_precision(precision, ctx)
    if precision == "fp32":
        return
    on_gpu = all(c.device_type == "gpu" for c in ctx)
    if (precision == "fp16") != on_gpu:
        raise FashionGluonError(f"train.precision={precision} needs {'a GPU' if precision == 'fp16' else 'the CPU'} "
                                f"context (fp16 does not run on CPU; use bf16 there)")
    if precision == "bf16" and not cpu_has_bf16():
        raise FashionGluonError(f"train.precision=bf16: {NO_BF16}")
    if precision == "fp16":
        amp.init(target_dtype="float16")
    else:  # oneDNN's bf16 Concat rejects mixed inputs: keep it in fp32 (inputs are cast up)
        amp.init(target_dtype="bfloat16", fp32_ops=amp.list_fp32_ops(amp.amp.bfloat16) + ["Concat", "concat"])


def build_loader(train_set: KeypointDataset, config: dict, part_index: int = 0,
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


def build_trainer(net, tcfg: dict, schedule, kvstore="device", **optimizer) -> gluon.Trainer:
    """A gluon Trainer with the ``train`` section's optimizer and lr ``schedule`` (``optimizer``:
    further optimizer parameters, e.g. ``multi_precision=True``).

    With a distributed ``kvstore`` the servers only sum the workers' gradients and every
    worker applies the same update itself (``update_on_kvstore=False``): the optimizer
    states then live on the workers, so ``save_states`` works and ``learning_rate`` is
    the scheduled one."""
    check_choice("train.optimizer", tcfg["optimizer"], OPTIMIZERS)
    params = {"wd": float(tcfg["wd"]), "lr_scheduler": schedule, "learning_rate": schedule.base_lr}
    params.update({key: float(tcfg[key]) for key in OPTIMIZERS[tcfg["optimizer"]]})
    if tcfg["clip_gradient"]:
        params["clip_gradient"] = float(tcfg["clip_gradient"])
    params.update(optimizer)
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
    """A training time budget of ``seconds`` of which ``spent`` were used by earlier sessions of
    the run (resume). ``budget()`` is True once it is used up; ``progress`` is the share used
    (0..1) as of the last call, which :class:`~.schedule.BudgetSchedule` lays the learning rate
    over. With a distributed ``kvstore`` both are agreed each call (a summed vote: out of time
    once ANY worker is; progress the workers' mean), so every worker stops after the same step
    and uses the same lr. Every worker must create it, and call it, at the same points."""

    def __init__(self, seconds: float, spent: float = 0.0, kvstore=None):
        self.seconds, self.spent_before, self.kvstore = float(seconds), float(spent), kvstore
        self.started, self.progress = time.time(), min(self.spent_before / self.seconds, 1.0)
        if kvstore is not None:
            init_keys(kvstore, [STOP_KEY], [mx.nd.zeros(2)])

    def spent(self) -> float:
        """Seconds of the budget used so far, earlier sessions included."""
        return self.spent_before + time.time() - self.started

    def __call__(self) -> bool:
        share = min(self.spent() / self.seconds, 1.0)
        if self.kvstore is None:
            self.progress = share
            return share >= 1.0
        vote = mx.nd.array([float(share >= 1.0), share])
        self.kvstore.pushpull(STOP_KEY, vote, out=vote)
        late, total = vote.asnumpy()
        self.progress = float(total) / self.kvstore.num_workers
        return bool(late > 0)
