"""Heatmap losses against hand-computed values on 2×2 heatmaps, N = 2, K = 3.

Per-keypoint pixel-mean squared errors of PRED vs TARGET (worked by hand):
  sample 0: k0 one pixel off by 1 → 1/4;  k1 one pixel off by 2 → 4/4 = 1;  k2 two pixels off by 1 → 2/4
  sample 1: k0 four pixels off by 1 → 1;  k1 one pixel off by 0.5 → 0.25/4 = 0.0625;  k2 one pixel off by 3 → 9/4
WEIGHT counts every keypoint except sample 0's k2, so the weighted losses are
  sample 0: [0.25, 1, 0]   sample 1: [1, 0.0625, 2.25]   (sum 4.5625, sum of weights 5).
"""
from __future__ import annotations

import re

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd

from fashion_gluon.families import CPN_FAMILY, HOURGLASS_FAMILY, Output
from fashion_gluon.losses import IntegralLoss, LossOptions, MaskedMSELoss, OHKMLoss, OutputsLoss, soft_argmax

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
    # level 2's target is all zeros: weighted losses s0 [0, 1, 0], s1 [1, 0.0625, 2.25] → 4.3125 / 5
    targets = (TARGET, ZEROS, TARGET, TARGET, TARGET)
    target = np.stack(targets, axis=1) if stacked else targets
    ohkm = (0.625 + 1.625) / 2
    loss = CPN_FAMILY.loss()
    expected = 0.5 * (3 * 4.5625 / 5 + 4.3125 / 5) + ohkm
    assert run(loss, (PRED,) * 5, target, WEIGHT, hybridize=hybridize) == pytest.approx(expected)
    parts = loss.parts(tuple(nd.array(p) for p in (PRED,) * 5), nd.array(np.stack(targets, axis=1)),
                       nd.array(WEIGHT))
    np.testing.assert_allclose([float(p.asscalar()) for p in parts],
                               [4.5625 / 5, 4.3125 / 5, 4.5625 / 5, 4.5625 / 5, ohkm], rtol=1e-6)


def test_cpn_loss_is_the_former_formula_on_a_random_case():
    """0.5 · Σ masked MSE of the 4 GlobalNet levels + OHKM on RefineNet (the loss before the
    family declaration), on random outputs, targets and 0/1 weights."""
    rng = np.random.default_rng(7)
    outputs = tuple(rng.random((3, 6, 8, 8), dtype=np.float32) for _ in range(5))
    target = rng.random((3, 5, 6, 8, 8), dtype=np.float32)
    weight = (rng.random((3, 6)) > 0.3).astype(np.float32)
    former = 0.5 * sum(run(MaskedMSELoss(), outputs[i], target[:, i], weight) for i in range(4)) \
        + run(OHKMLoss(), outputs[4], target[:, 4], weight)
    for hybridize in (False, True):
        assert run(CPN_FAMILY.loss(), outputs, target, weight, hybridize=hybridize) == pytest.approx(former, rel=1e-6)


def test_cpn_loss_rejects_wrong_number_of_outputs():
    names = "GlobalNet level 1, GlobalNet level 2, GlobalNet level 3, GlobalNet level 4, RefineNet"
    with pytest.raises(ValueError, match=rf"^the cpn loss expects 5 outputs \({re.escape(names)}\), got 3$"):
        CPN_FAMILY.loss()((nd.array(PRED),) * 3, nd.array(np.stack([TARGET] * 5, 1)), nd.array(WEIGHT))
    with pytest.raises(ValueError, match=r"^the cpn loss expects 5 targets, got 2$"):
        CPN_FAMILY.loss()((nd.array(PRED),) * 5, [nd.array(TARGET)] * 2, nd.array(WEIGHT))


@pytest.mark.parametrize("use_ohkm, last", [(False, 4.5625 / 5), (True, (0.625 + 1.625) / 2)])
@pytest.mark.parametrize("target", [TARGET, TARGET[:, None]], ids=["NKhw", "N1Khw"])
@pytest.mark.parametrize("hybridize", [False, True])
def test_hourglass_loss_sums_stacks(use_ohkm, last, target, hybridize):
    # stack 0 predicts zeros: weighted losses s0 [0.25, 0, 0], s1 [0, 0.25, 0] → 0.5 / 5
    loss = HOURGLASS_FAMILY.loss(LossOptions(ohkm=use_ohkm))
    assert run(loss, (ZEROS, PRED), target, WEIGHT, hybridize=hybridize) == pytest.approx(0.1 + last)
    parts = loss.parts((nd.array(ZEROS), nd.array(PRED)), nd.array(target), nd.array(WEIGHT))
    np.testing.assert_allclose([float(p.asscalar()) for p in parts], [0.1, last], rtol=1e-6)
    three = run(loss, (ZEROS, ZEROS, PRED), target, WEIGHT, hybridize=hybridize)
    assert three == pytest.approx(0.2 + last)  # any number of stacks


@pytest.mark.parametrize("family, outputs, target", [
    (CPN_FAMILY, (PRED,) * 5, np.stack([TARGET] * 5, axis=1)), (HOURGLASS_FAMILY, (ZEROS, PRED), TARGET)],
    ids=["cpn", "hourglass"])
def test_loss_ohkm_switches_the_final_output_between_ohkm_and_mse(family, outputs, target):
    # the final output: OHKM (0.625 + 1.625) / 2 = 1.125 with loss.ohkm, else its masked MSE 4.5625 / 5 = 0.9125
    earlier = run(family.loss(LossOptions(ohkm=False)), outputs, target, WEIGHT) - 4.5625 / 5
    assert run(family.loss(LossOptions(ohkm=True)), outputs, target, WEIGHT) == pytest.approx(earlier + 1.125)
    assert earlier == pytest.approx(0.5 * 4 * 4.5625 / 5 if family is CPN_FAMILY else 0.1)


def test_hourglass_single_output():
    assert run(HOURGLASS_FAMILY.loss(LossOptions(ohkm=False)), PRED, TARGET, WEIGHT) == pytest.approx(4.5625 / 5)


def test_outputs_loss_checks_its_declaration():
    mse = Output("a", 1.0, "mse", 1.0)
    with pytest.raises(ValueError, match=r"^output 'b': loss must be one of mse, ohkm, got 'l1'$"):
        OutputsLoss("x", (mse, Output("b", 1.0, "l1", 1.0)))
    with pytest.raises(ValueError, match="the x loss needs one output declaration"):
        OutputsLoss("x", (mse, mse), repeated=mse)


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
    # the blocks check their arguments by the rules of LossOptions: one wording
    with pytest.raises(ValueError, match=r"^top_k must be ≥ 1, got 0$"):
        OHKMLoss(top_k=0)
    with pytest.raises(ValueError, match=r"^top_k must be an integer, got 2.5$"):
        OHKMLoss(top_k=2.5)
    with pytest.raises(ValueError, match=r"^fg_weight must be ≥ 0, got -1$"):
        MaskedMSELoss(fg_weight=-1)
    with pytest.raises(ValueError, match=r"^integral_beta must be > 0, got 0$"):
        IntegralLoss(beta=0)


def test_loss_options_are_checked_once_with_one_line_naming_the_option():
    assert LossOptions() == LossOptions(fg_weight=0.0, top_k=None, ohkm=True, integral_weight=0.0, integral_beta=10.0)
    assert LossOptions.names() == ("fg_weight", "top_k", "ohkm", "integral_weight", "integral_beta")
    assert LossOptions.from_config({"top_k": 3, "ohkm": False}) == LossOptions(top_k=3, ohkm=False)
    for kwargs, message in [({"fg_weight": -1}, "fg_weight must be ≥ 0, got -1"),
                            ({"top_k": True}, "top_k must be an integer, got True"),
                            ({"ohkm": "yes"}, "ohkm must be true or false, got 'yes'"),
                            ({"integral_weight": -0.5}, "integral_weight must be ≥ 0, got -0.5"),
                            ({"integral_beta": 0}, "integral_beta must be > 0, got 0")]:
        with pytest.raises(ValueError, match=rf"^{message}$"):
            LossOptions(**kwargs)
        with pytest.raises(ValueError, match=rf"^loss\.{message}$"):
            LossOptions.from_config(kwargs)
    with pytest.raises(ValueError, match=r"^unknown loss option loss\.topk; valid: fg_weight, top_k, ohkm, "):
        LossOptions.from_config({"topk": 3})


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
    cpn_plain = run(CPN_FAMILY.loss(), outputs, (target,) * 5, weight)
    with_term = CPN_FAMILY.loss(LossOptions(integral_weight=0.3, integral_beta=4.0))
    assert run(with_term, outputs, (target,) * 5, weight, hybridize=hybridize) == pytest.approx(
        cpn_plain + 0.3 * integral, rel=1e-5)
    parts = with_term.parts(tuple(nd.array(p) for p in outputs), [nd.array(target)] * 5, nd.array(weight))
    assert len(parts) == 6 and float(parts[5].asscalar()) == pytest.approx(integral, rel=1e-5)
    hourglass = HOURGLASS_FAMILY.loss(LossOptions(integral_weight=2.0, integral_beta=4.0))
    assert run(hourglass, (pred, pred), target, weight, hybridize=hybridize) == pytest.approx(
        run(HOURGLASS_FAMILY.loss(), (pred, pred), target, weight) + 2.0 * integral, rel=1e-5)


def test_integral_settings_are_checked():
    with pytest.raises(ValueError, match="^integral_weight must be ≥ 0, got -1$"):
        CPN_FAMILY.loss(LossOptions(integral_weight=-1))
    with pytest.raises(ValueError, match="^integral_beta must be > 0, got 0$"):
        HOURGLASS_FAMILY.loss(LossOptions(integral_weight=1, integral_beta=0))


def test_cpn_loss_ohkm_off_is_plain_mse_on_refinenet():
    rng = np.random.default_rng(3)
    outputs = tuple(rng.random((2, 4, 8, 8), dtype=np.float32) for _ in range(5))
    target = rng.random((2, 5, 4, 8, 8), dtype=np.float32)
    weight = np.ones((2, 4), np.float32)
    weight[1, 2] = 0
    plain = run(CPN_FAMILY.loss(LossOptions(ohkm=False)), outputs, target, weight)
    mse = [run(MaskedMSELoss(), outputs[i], target[:, i], weight) for i in range(5)]
    assert plain == pytest.approx(0.5 * sum(mse[:4]) + mse[4], rel=1e-5)
    assert run(CPN_FAMILY.loss(LossOptions(ohkm=True)), outputs, target, weight) != pytest.approx(plain, rel=1e-3)
