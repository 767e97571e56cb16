"""Learning-rate schedules built from gluoncv's schedulers (not hand-written): the ``train``
section's :data:`SCHEDULES` (:func:`training_schedule`, :class:`BudgetSchedule`) and SWA's cycles.

MXNet numbers optimizer updates from 1, so every schedule starts with one unused
iteration: update ``k`` gets the lr of schedule step ``k - 1``, and a cycle's last
update really runs at the cycle's last lr.
"""
from __future__ import annotations

import math
from typing import Protocol

from gluoncv.utils.lr_scheduler import LRScheduler, LRSequential

from ..config import check_choice
from ..errors import ConfigError

#: ``train.lr_schedule``: after the warm-up, ``step`` (piecewise constant levels) or ``cosine`` (to 0).
SCHEDULES: tuple[str, ...] = ("step", "cosine")


def _segment(mode: str, base_lr: float, target_lr: float, niters: int) -> LRScheduler:
    """A ``linear``/``cosine``/``constant`` piece; one of fewer than two iterations is
    constant at ``target_lr`` (gluoncv divides by ``niters - 1``)."""
    if niters < 2:
        return LRScheduler("constant", base_lr=target_lr, niters=niters)
    return LRScheduler(mode, base_lr=base_lr, target_lr=target_lr, niters=niters)


def _sequence(parts: list[LRScheduler]) -> LRSequential:
    """``parts`` after one leading iteration (update 0 never happens)."""
    return LRSequential([LRScheduler("constant", base_lr=parts[0].base_lr, niters=1)] + parts)


def training_schedule(train: dict, iters_per_epoch: int) -> LRSequential:
    """Linear warm-up from ``warmup_lr`` over ``warmup_steps`` iterations, then the
    ``step`` (piecewise constant: ``lr * lr_factors[i]`` from epoch ``lr_steps[i]``)
    or ``cosine`` (to 0 at the last update) schedule of the ``train`` config section."""
    check_choice("train.lr_schedule", train["lr_schedule"], SCHEDULES)
    lr, epochs, warmup = float(train["lr"]), int(train["epochs"]), int(train["warmup_steps"])
    total = epochs * iters_per_epoch
    warmup = min(warmup, max(total - 1, 0))
    parts = [_segment("linear", float(train["warmup_lr"]), lr, warmup)]
    remaining = total - warmup
    if train["lr_schedule"] == "cosine":
        parts.append(_segment("cosine", lr, 0.0, remaining))
    else:  # step
        steps, factors = list(train["lr_steps"]), list(train["lr_factors"])
        if len(steps) != len(factors):
            raise ConfigError("train.lr_steps and train.lr_factors must have the same length")
        bounds = [warmup] + [min(max(s * iters_per_epoch, warmup), total) for s in steps] + [total]
        levels = [lr] + [lr * f for f in factors]
        for start, end, level in zip(bounds[:-1], bounds[1:], levels):
            parts.append(LRScheduler("constant", base_lr=level, niters=end - start))
    return _sequence(parts)


def swa_schedule(cycles: int, cycle_iters: int, lr_max: float, lr_min: float) -> LRSequential:
    """``cycles`` cycles in which the lr falls linearly from ``lr_max`` to ``lr_min``."""
    return _sequence([_segment("linear", lr_max, lr_min, cycle_iters) for _ in range(cycles)])


class _Progress(Protocol):
    progress: float  # share of the time budget used, 0..1


class BudgetSchedule:
    """The ``train`` section's schedule laid over a time budget instead of a step count:
    linear warm-up over ``warmup_steps`` updates, then ``cosine`` decay (to 0) or the ``step``
    levels (``lr_factors`` from the share ``lr_steps[i] / epochs`` of the budget on) as functions
    of ``budget.progress``, the share of the budget used. The run therefore ends annealed
    when the budget ends, however fast the machine is, and it corrects itself as training
    speeds up or slows down (e.g. a slower epoch on a busy machine)."""

    def __init__(self, train: dict, budget: _Progress):
        check_choice("train.lr_schedule", train["lr_schedule"], SCHEDULES)
        self.base_lr, self.warmup_lr = float(train["lr"]), float(train["warmup_lr"])
        self.warmup, self.mode, self.budget = int(train["warmup_steps"]), train["lr_schedule"], budget
        epochs = max(int(train["epochs"]), 1)
        self.levels = [(step / epochs, float(factor)) for step, factor in zip(train["lr_steps"], train["lr_factors"])]

    def __call__(self, num_update: int) -> float:
        step = max(num_update - 1, 0)  # MXNet numbers updates from 1
        if step < self.warmup:
            return self.warmup_lr + (self.base_lr - self.warmup_lr) * step / self.warmup
        share = min(max(self.budget.progress, 0.0), 1.0)
        if self.mode == "cosine":
            return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * share))
        factor = 1.0
        for start, level in self.levels:
            if share >= start:
                factor = level
        return self.base_lr * factor
