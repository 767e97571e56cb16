"""Heatmap losses against hand-computed values on 2×2 heatmaps, N = 2, K = 3.

Per-keypoint pixel-mean squared errors of PRED vs TARGET (worked by hand):
  sample 0: k0 one pixel off by 1 → 1/4;  k1 one pixel off by 2 → 4/4 = 1;  k2 two pixels off by 1 → 2/4
  sample 1: k0 four pixels off by 1 → 1;  k1 one pixel off by 0.5 → 0.25/4 = 0.0625;  k2 one pixel off by 3 → 9/4
WEIGHT counts every keypoint except sample 0's k2, so the weighted losses are
  sample 0: [0.25, 1, 0]   sample 1: [1, 0.0625, 2.25]   (sum 4.5625, sum of weights 5).
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd

from fashion_gluon.losses import (CPNLoss, HourglassLoss, MaskedMSELoss, OHKMLoss)

PRED = np.zeros((2, 3, 2, 2), np.float32)
TARGET = np.zeros((2, 3, 2, 2), np.float32)
TARGET[0, 0, 0, 0] = 1                      # pred 0 → error 1 at one pixel
PRED[0, 1, 0, 0] = 2                        # target 0 → error 2 at one pixel
TARGET[0, 2, 0, :] = 1                      # two pixels off by 1
PRED[1, 0] = 1                              # all four pixels off by 1
TARGET[1, 1, 1, 1], PRED[1, 1, 1, 1] = 1, 0.5
PRED[1, 2, 1, 1] = 3
WEIGHT = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
ZEROS = np.zeros_like(PRED)


def run(loss, *args, hybridize=False):
    """Scalar value of ``loss(*args)`` (NDArrays built from numpy; tuples kept)."""
    to_nd = lambda a: tuple(nd.array(x) for x in a) if isinstance(a, tuple) else nd.array(a)
    if hybridize:
        loss.hybridize()
    out = loss(*[to_nd(a) for a in args])
    assert out.shape == (1,)
    return float(out.asscalar())


def test_per_keypoint_weighted_losses_by_hand():
    got = MaskedMSELoss().per_keypoint(nd.array(PRED), nd.array(TARGET), nd.array(WEIGHT))
    np.testing.assert_allclose(got.asnumpy(), [[0.25, 1, 0], [1, 0.0625, 2.25]])


@pytest.mark.parametrize("target", [TARGET, TARGET[:, None]], ids=["NKhw", "N1Khw"])
@pytest.mark.parametrize("hybridize", [False, True])
def test_masked_mse_is_weighted_mean_over_counted_keypoints(target, hybridize):
    assert run(MaskedMSELoss(), PRED, target, WEIGHT, hybridize=hybridize) == pytest.approx(4.5625 / 5)


@pytest.mark.parametrize("hybridize", [False, True])
def test_masked_mse_foreground_weighting(hybridize):
    # pixels get weight 1 + 10 * target: s0k0 11/4, s0k1 1, s1k0 1, s1k1 0.25*11/4 = 0.6875, s1k2 9/4
    expected = (2.75 + 1 + 1 + 0.6875 + 2.25) / 5
    assert run(MaskedMSELoss(fg_weight=10), PRED, TARGET, WEIGHT, hybridize=hybridize) == pytest.approx(expected)


def test_no_counted_keypoint_gives_zero():
    zero_w = np.zeros_like(WEIGHT)
    assert run(MaskedMSELoss(), PRED, TARGET, zero_w) == 0
    assert run(OHKMLoss(), PRED, TARGET, zero_w) == 0


@pytest.mark.parametrize("top_k, expected", [
    # default k = ceil(3/2) = 2: s0 (1 + 0.25)/2, s1 (2.25 + 1)/2
    (None, (1.25 / 2 + 3.25 / 2) / 2),
    (1, (1 + 2.25) / 2),
    # k = 3 > the 2 counted keypoints of sample 0: its mean is over those 2
    (3, (1.25 / 2 + 3.3125 / 3) / 2),
])
@pytest.mark.parametrize("hybridize", [False, True])
def test_ohkm_mean_of_hardest_counted_keypoints(top_k, expected, hybridize):
    assert run(OHKMLoss(top_k), PRED, TARGET, WEIGHT, hybridize=hybridize) == pytest.approx(expected)


def test_ohkm_per_sample_and_samples_without_keypoints_are_not_averaged():
    loss = OHKMLoss()
    np.testing.assert_allclose(
        loss.per_sample(nd.array(PRED), nd.array(TARGET), nd.array(WEIGHT)).asnumpy(), [0.625, 1.625])
    pred3, target3 = np.concatenate([PRED, PRED[:1]]), np.concatenate([TARGET, TARGET[:1]])
    weight3 = np.concatenate([WEIGHT, np.zeros((1, 3), np.float32)])
    assert run(loss, pred3, target3, weight3) == pytest.approx(run(loss, PRED, TARGET, WEIGHT))


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("hybridize", [False, True])
def test_cpn_loss_by_hand(stacked, hybridize):
    # level 1's target is all zeros: weighted losses s0 [0, 1, 0], s1 [1, 0.0625, 2.25] → 4.3125 / 5
    targets = (TARGET, ZEROS, TARGET, TARGET, TARGET)
    target = np.stack(targets, axis=1) if stacked else targets
    global_sum = 3 * 4.5625 / 5 + 4.3125 / 5
    ohkm = (0.625 + 1.625) / 2
    loss = CPNLoss()
    assert run(loss, (PRED,) * 5, target, WEIGHT, hybridize=hybridize) == pytest.approx(0.5 * global_sum + ohkm)
    parts = loss.parts(tuple(nd.array(p) for p in (PRED,) * 5), nd.array(np.stack(targets, axis=1)),
                       nd.array(WEIGHT))
    np.testing.assert_allclose([float(p.asscalar()) for p in parts], [global_sum, ohkm], rtol=1e-6)


def test_cpn_loss_rejects_wrong_number_of_outputs():
    with pytest.raises(ValueError, match=r"^CPNLoss expects 5 outputs \(4 GlobalNet \+ RefineNet\), got 3$"):
        CPNLoss()((nd.array(PRED),) * 3, nd.array(np.stack([TARGET] * 5, 1)), nd.array(WEIGHT))
    with pytest.raises(ValueError, match=r"^CPNLoss expects 5 targets, got 2$"):
        CPNLoss()((nd.array(PRED),) * 5, [nd.array(TARGET)] * 2, nd.array(WEIGHT))


@pytest.mark.parametrize("use_ohkm, last", [(False, 4.5625 / 5), (True, (0.625 + 1.625) / 2)])
@pytest.mark.parametrize("target", [TARGET, TARGET[:, None]], ids=["NKhw", "N1Khw"])
@pytest.mark.parametrize("hybridize", [False, True])
def test_hourglass_loss_sums_stacks(use_ohkm, last, target, hybridize):
    # stack 0 predicts zeros: weighted losses s0 [0.25, 0, 0], s1 [0, 0.25, 0] → 0.5 / 5
    loss = HourglassLoss(use_ohkm=use_ohkm)
    assert run(loss, (ZEROS, PRED), target, WEIGHT, hybridize=hybridize) == pytest.approx(0.1 + last)
    parts = loss.parts((nd.array(ZEROS), nd.array(PRED)), nd.array(target), nd.array(WEIGHT))
    np.testing.assert_allclose([float(p.asscalar()) for p in parts], [0.1, last], rtol=1e-6)


def test_hourglass_single_output():
    assert run(HourglassLoss(), PRED, TARGET, WEIGHT) == pytest.approx(4.5625 / 5)


def grad_of(loss, pred):
    x = nd.array(pred)
    x.attach_grad()
    with autograd.record():
        out = loss(x, nd.array(TARGET), nd.array(WEIGHT))
    out.backward()
    return x.grad.asnumpy()


@pytest.mark.parametrize("hybridize", [False, True])
def test_gradient_only_reaches_weighted_channels(hybridize):
    loss = MaskedMSELoss()
    if hybridize:
        loss.hybridize()
    grad = grad_of(loss, PRED)
    assert np.all(grad[0, 2] == 0)                       # zero weight, although its error is non-zero
    # d/dp of w * mean((p - t)^2) / sum(w) = 2 (p - t) / (4 pixels * 5)
    assert grad[0, 1, 0, 0] == pytest.approx(2 * 2 / 20)
    assert grad[1, 2, 1, 1] == pytest.approx(2 * 3 / 20)


@pytest.mark.parametrize("hybridize", [False, True])
def test_ohkm_gradient_only_reaches_selected_keypoints(hybridize):
    loss = OHKMLoss(top_k=1)
    if hybridize:
        loss.hybridize()
    grad = grad_of(loss, PRED)
    assert np.argwhere(np.abs(grad).sum(axis=(2, 3))).tolist() == [[0, 1], [1, 2]]  # s0 k1, s1 k2
    # sample loss = mse / 1, batch mean over 2 samples: 2 (p - t) / (4 pixels * 2)
    assert grad[1, 2, 1, 1] == pytest.approx(2 * 3 / 8)


def test_losses_build_symbolically():
    pred, target, weight = mx.sym.var("pred"), mx.sym.var("target"), mx.sym.var("weight")
    out = OHKMLoss()(pred, target, weight)
    _, shapes, _ = out.infer_shape(pred=(2, 3, 2, 2), target=(2, 3, 2, 2), weight=(2, 3))
    assert shapes == [(1,)]


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"^top_k must be a positive integer or None, got 0$"):
        OHKMLoss(top_k=0)
    with pytest.raises(ValueError, match=r"^fg_weight must be >= 0, got -1$"):
        MaskedMSELoss(fg_weight=-1)
