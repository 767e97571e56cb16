"""Learning-rate schedules, checked at the update numbers MXNet really uses (1, 2, ...)."""
import mxnet as mx
import pytest
from mxnet import gluon

from fashion_gluon.config import DEFAULTS
from fashion_gluon.engine.schedule import BudgetSchedule, swa_schedule, training_schedule
from fashion_gluon.errors import ConfigError


def lrs_seen_by_trainer(schedule, steps):
    """The lr of each of ``steps`` real optimizer updates."""
    net = gluon.nn.Dense(1, in_units=1)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"lr_scheduler": schedule})
    seen = []
    for _ in range(steps):
        with mx.autograd.record():
            loss = net(mx.nd.ones((1, 1)))
        loss.backward()
        trainer.step(1)
        seen.append(trainer.learning_rate)
    return seen


def test_swa_cycle_ends_at_lr_min_on_its_last_update():
    seen = lrs_seen_by_trainer(swa_schedule(2, 5, 1e-4, 1e-6), 10)
    assert seen[0] == pytest.approx(1e-4) and seen[4] == pytest.approx(1e-6)
    assert seen[5] == pytest.approx(1e-4) and seen[9] == pytest.approx(1e-6)
    assert all(a > b for a, b in zip(seen[:4], seen[1:5])), "falls linearly within a cycle"


def test_step_schedule_warmup_and_epoch_boundaries():
    train = dict(DEFAULTS["train"], warmup_steps=4, epochs=3, lr_steps=[1, 2], lr_factors=[0.5, 0.1])
    seen = lrs_seen_by_trainer(training_schedule(train, 10), 30)
    assert seen[0] == pytest.approx(1e-5) and seen[3] == pytest.approx(1e-4)
    assert seen[9] == pytest.approx(1e-4) and seen[10] == pytest.approx(5e-5)
    assert seen[19] == pytest.approx(5e-5) and seen[20] == pytest.approx(1e-5)


def test_cosine_reaches_zero_on_the_last_update_and_short_runs_work():
    train = dict(DEFAULTS["train"], lr_schedule="cosine", warmup_steps=0, epochs=2, lr=1.0)
    seen = lrs_seen_by_trainer(training_schedule(train, 5), 10)
    assert seen[0] == pytest.approx(1.0) and seen[-1] == pytest.approx(0.0, abs=1e-12)
    for epochs, iters, warmup in ((1, 13, 12), (1, 1, 0), (1, 2, 5)):  # one or two cosine steps
        tiny = dict(train, epochs=epochs, warmup_steps=warmup)
        assert len(lrs_seen_by_trainer(training_schedule(tiny, iters), epochs * iters)) == epochs * iters
    assert lrs_seen_by_trainer(swa_schedule(2, 1, 1e-4, 1e-6), 2) == pytest.approx([1e-6, 1e-6])


def test_bad_schedule_config():
    with pytest.raises(ConfigError, match="same length"):
        training_schedule(dict(DEFAULTS["train"], lr_steps=[1]), 10)
    with pytest.raises(ConfigError, match="^config: train.lr_schedule must be one of step, cosine, got 'poly'$"):
        training_schedule(dict(DEFAULTS["train"], lr_schedule="poly"), 10)


class _Clock:
    progress = 0.0


def test_budget_schedule_follows_the_share_of_the_budget_used():
    clock = _Clock()
    train = dict(DEFAULTS["train"], lr=1.0, warmup_lr=0.1, warmup_steps=4, lr_schedule="cosine")
    schedule = BudgetSchedule(train, clock)
    assert schedule(1) == pytest.approx(0.1)  # update 1 is step 0 of the warm-up
    assert schedule(3) == pytest.approx(0.1 + 0.9 * 2 / 4)
    assert schedule(5) == pytest.approx(1.0)  # warm-up over, nothing of the budget used
    clock.progress = 0.5
    assert schedule(6) == pytest.approx(0.5)
    clock.progress = 1.0
    assert schedule(7) == pytest.approx(0.0, abs=1e-12)  # annealed when the budget ends
    clock.progress = 1.7  # a late step never raises the lr again
    assert schedule(8) == pytest.approx(0.0, abs=1e-12)


def test_budget_schedule_step_levels_are_shares_of_the_epochs():
    clock = _Clock()
    train = dict(DEFAULTS["train"], lr=1.0, warmup_steps=0, lr_schedule="step", epochs=20,
                 lr_steps=[10, 15], lr_factors=[0.5, 0.1])
    schedule = BudgetSchedule(train, clock)
    for share, lr in ((0.0, 1.0), (0.49, 1.0), (0.5, 0.5), (0.74, 0.5), (0.75, 0.1), (1.0, 0.1)):
        clock.progress = share
        assert schedule(10) == pytest.approx(lr), share
