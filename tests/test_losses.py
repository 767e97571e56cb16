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

from fashion_gluon.losses import CPNLoss, HourglassLoss, IntegralLoss, MaskedMSELoss, OHKMLoss, soft_argmax

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
    def to_nd(a):
        return tuple(nd.array(x) for x in a) if isinstance(a, tuple) else nd.array(a)
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


# --------------------------------------------------------------------------- integral term

def gaussian_maps(centres, size=(24, 32), sigma=1.5):
    """(N, K, h, w) Gaussians at ``centres`` (N, K, 2) of (x, y) heatmap pixels."""
    rows, cols = np.mgrid[: size[0], : size[1]]
    c = np.asarray(centres, np.float32)[..., None, None]
    return np.exp(-((cols - c[..., 0, :, :]) ** 2 + (rows - c[..., 1, :, :]) ** 2) / (2 * sigma ** 2)).astype(np.float32)


# at least 4 σ + the largest test shift (3 px) from every border: no Gaussian is cut off
CENTRES = np.array([[[9.3, 10.6], [16.0, 9.5], [12.75, 11.2]], [[20.4, 13.1], [11.0, 12.0], [14.6, 9.9]]], np.float32)


def test_soft_argmax_of_a_normalized_gaussian_is_its_centre():
    x, y = soft_argmax(nd, nd.array(gaussian_maps(CENTRES)))
    np.testing.assert_allclose(np.stack([x.asnumpy(), y.asnumpy()], -1), CENTRES, atol=2e-3)


def test_soft_argmax_of_sharp_logits_is_the_peak():
    peaks = np.zeros((1, 1, 5, 7), np.float32)
    peaks[0, 0, 3, 6] = 4.0
    x, y = soft_argmax(nd, nd.array(peaks), beta=10.0)  # exp(-40) of the mass elsewhere
    assert (float(x.asscalar()), float(y.asscalar())) == pytest.approx((6.0, 3.0), abs=1e-6)


@pytest.mark.parametrize("hybridize", [False, True])
def test_integral_loss_is_the_weighted_mean_l1_distance_of_the_points(hybridize):
    centres = np.round(CENTRES)
    shifted = centres + np.array([[[1, 0], [0, -2], [1, 1]], [[-1, -1], [0, 0], [3, 0]]], np.float32)
    pred = 4.0 * gaussian_maps(shifted, sigma=0.3)   # one pixel of height 4: beta = 10 reads the peak
    weight = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    loss = IntegralLoss(beta=10.0)
    per_keypoint = loss.per_keypoint(nd.array(pred), nd.array(gaussian_maps(centres)), nd.array(weight))
    np.testing.assert_allclose(per_keypoint.asnumpy(), [[1, 2, 0], [2, 0, 3]], atol=1e-3)
    assert run(loss, pred, gaussian_maps(centres), weight, hybridize=hybridize) == pytest.approx(8 / 5, rel=1e-3)


def test_integral_gradient_moves_the_point_toward_the_target():
    target, pred = gaussian_maps(CENTRES[:1]), nd.array(gaussian_maps(CENTRES[:1] + 2.0))
    loss, weight = IntegralLoss(beta=5.0), nd.ones((1, 3))
    before = float(loss(pred, nd.array(target), weight).asscalar())
    pred.attach_grad()
    with autograd.record():
        value = loss(pred, nd.array(target), weight)
    value.backward()
    after = float(loss(pred - 0.5 * pred.grad, nd.array(target), weight).asscalar())
    assert after < before


@pytest.mark.parametrize("hybridize", [False, True])
def test_cpn_and_hourglass_losses_add_the_weighted_integral_term_on_the_final_output(hybridize):
    target, pred = gaussian_maps(CENTRES), gaussian_maps(CENTRES + 1.0)
    weight = np.ones((2, 3), np.float32)
    integral = run(IntegralLoss(beta=4.0), pred, target, weight)
    outputs = (pred,) * 5
    cpn_plain = run(CPNLoss(), outputs, (target,) * 5, weight)
    with_term = CPNLoss(integral_weight=0.3, integral_beta=4.0)
    assert run(with_term, outputs, (target,) * 5, weight, hybridize=hybridize) == pytest.approx(
        cpn_plain + 0.3 * integral, rel=1e-5)
    parts = with_term.parts(tuple(nd.array(p) for p in outputs), [nd.array(target)] * 5, nd.array(weight))
    assert len(parts) == 3 and float(parts[2].asscalar()) == pytest.approx(integral, rel=1e-5)
    hourglass = HourglassLoss(integral_weight=2.0, integral_beta=4.0)
    assert run(hourglass, (pred, pred), target, weight, hybridize=hybridize) == pytest.approx(
        run(HourglassLoss(), (pred, pred), target, weight) + 2.0 * integral, rel=1e-5)


def test_integral_settings_are_checked():
    with pytest.raises(ValueError, match="integral_weight must be >= 0"):
        CPNLoss(integral_weight=-1)
    with pytest.raises(ValueError, match="integral beta must be > 0"):
        HourglassLoss(integral_weight=1, integral_beta=0)


def test_cpn_loss_ohkm_off_is_plain_mse_on_refinenet():
    from fashion_gluon.families import CPN_FAMILY

    rng = np.random.default_rng(3)
    outputs = tuple(rng.random((2, 4, 8, 8), dtype=np.float32) for _ in range(5))
    target = rng.random((2, 5, 4, 8, 8), dtype=np.float32)
    weight = np.ones((2, 4), np.float32)
    weight[1, 2] = 0
    plain = run(CPN_FAMILY.loss(ohkm=False), outputs, target, weight)
    mse = [run(MaskedMSELoss(), outputs[i], target[:, i], weight) for i in range(5)]
    assert plain == pytest.approx(0.5 * sum(mse[:4]) + mse[4], rel=1e-5)
    assert run(CPN_FAMILY.loss(ohkm=True), outputs, target, weight) != pytest.approx(plain, rel=1e-3)
