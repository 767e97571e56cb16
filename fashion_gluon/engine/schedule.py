"""Learning-rate schedules built from gluoncv's schedulers (not hand-written)."""
from __future__ import annotations

from gluoncv.utils.lr_scheduler import LRScheduler, LRSequential

from ..errors import ConfigError


def training_schedule(train: dict, iters_per_epoch: int) -> LRSequential:
    """Linear warm-up from ``warmup_lr`` over ``warmup_steps`` iterations, then the
    ``step`` (piecewise constant: ``lr * lr_factors[i]`` from epoch ``lr_steps[i]``)
    or ``cosine`` (to 0 at the last epoch) schedule of the ``train`` config section."""
    lr, epochs, warmup = float(train["lr"]), int(train["epochs"]), int(train["warmup_steps"])
    total = epochs * iters_per_epoch
    warmup = min(warmup, max(total - 1, 0))
    parts = [LRScheduler("linear", base_lr=float(train["warmup_lr"]), target_lr=lr, niters=warmup)]
    remaining = total - warmup
    if train["lr_schedule"] == "cosine":
        parts.append(LRScheduler("cosine", base_lr=lr, target_lr=0.0, niters=remaining))
    elif train["lr_schedule"] == "step":
        steps, factors = list(train["lr_steps"]), list(train["lr_factors"])
        if len(steps) != len(factors):
            raise ConfigError("train.lr_steps and train.lr_factors must have the same length")
        bounds = [warmup] + [min(max(s * iters_per_epoch, warmup), total) for s in steps] + [total]
        levels = [lr] + [lr * f for f in factors]
        for start, end, level in zip(bounds[:-1], bounds[1:], levels):
            parts.append(LRScheduler("constant", base_lr=level, niters=end - start))
    else:
        raise ConfigError(f"train.lr_schedule must be 'step' or 'cosine', got {train['lr_schedule']!r}")
    return LRSequential(parts)


def swa_schedule(cycles: int, cycle_iters: int, lr_max: float, lr_min: float) -> LRSequential:
    """``cycles`` cycles in which the lr falls linearly from ``lr_max`` to ``lr_min``."""
    return LRSequential([LRScheduler("linear", base_lr=lr_max, target_lr=lr_min, niters=cycle_iters)
                         for _ in range(cycles)])
