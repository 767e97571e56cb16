"""Heatmap losses: masked MSE, online hard keypoint mining, CPN and Hourglass losses.

Every loss is a HybridBlock called as ``loss(pred, target, weight)`` with

* ``pred``: heatmaps (N, K, h, w), or for CPN / Hourglass a tuple of them;
* ``target``: the codec's heatmaps, (N, K, h, w) per output, or (N, L, K, h, w)
  for L outputs (a list of L (N, K, h, w) arrays works too);
* ``weight``: (N, K) target weights, 0 for keypoints absent from the category
  or the image (they contribute neither loss nor gradient).

Normalization (one rule everywhere): the per-keypoint loss is the pixel mean
of the squared error, optionally weighted per pixel by ``1 + fg_weight * target``
(foreground weighting: from-scratch training needs it, see docs/recipes.md),
times the keypoint's weight. A batch loss is the weighted mean over the
counted keypoints, ``sum(w * l) / max(sum(w), 1)``: with 0/1 weights it is the
mean over the keypoints that count, independent of how many are absent, and a
batch without any counted keypoint gives 0. OHKM takes, per sample, the mean
of the ``top_k`` largest weighted per-keypoint losses among that sample's
counted keypoints (all of them when fewer are counted), then averages over
the samples that have a counted keypoint. Batch losses are shape (1,) arrays.

Integral term (optional, ``integral_weight`` > 0; Sun et al., "Integral Human Pose
Regression", 2018): the final heatmaps are turned into distributions by a softmax of
``integral_beta * heatmap`` over the pixels, whose expectation is a differentiable
(soft-argmax) point; its L1 distance in heatmap pixels to the expectation of the
normalized target Gaussian is averaged like the MSE and added ``integral_weight`` times.
It supervises the point itself, not only the shape of the map.
"""
from __future__ import annotations

import mxnet as mx
from mxnet import gluon


def _namespace(x) -> "type(mx.nd) | type(mx.sym)":
    """``mx.sym`` for a Symbol, else ``mx.nd``: the F of a hybrid_forward."""
    return mx.sym if isinstance(x, mx.sym.Symbol) else mx.nd


def keypoint_mse(F, pred, target, weight, fg_weight: float = 0.0):
    """Weighted per-keypoint losses (N, K): pixel mean of ``(pred - target)²``
    (times ``1 + fg_weight * target`` per pixel when ``fg_weight`` > 0), times ``weight``.
    ``target`` may carry extra unit axes, e.g. (N, 1, K, h, w)."""
    target = F.reshape_like(target, pred)
    squared = F.square(pred - target)
    if fg_weight:
        squared = squared * (1.0 + fg_weight * target)
    return F.mean(squared, axis=(2, 3)) * weight


def _check_fg_weight(fg_weight: float) -> float:
    if fg_weight < 0:
        raise ValueError(f"fg_weight must be >= 0, got {fg_weight}")
    return float(fg_weight)


def _check_top_k(top_k: "int | None") -> "int | None":
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    return top_k


def _as_tuple(outputs) -> tuple:
    """A model's outputs as a tuple (a single heatmap array becomes a 1-tuple)."""
    return tuple(outputs) if isinstance(outputs, (list, tuple)) else (outputs,)


def soft_argmax(F, heatmaps, beta: "float | None" = None):
    """Expected (x, y) in heatmap pixels, each (N, K), of heatmaps (N, K, h, w) read as
    distributions: ``softmax(beta * heatmaps)`` over the pixels, or with ``beta`` None the
    heatmaps divided by their sum (for non-negative maps such as targets)."""
    flat = F.reshape(heatmaps, (0, 0, -1))
    if beta is None:
        flat = F.broadcast_div(flat, F.maximum(F.sum(flat, axis=2, keepdims=True), 1e-12))
    else:
        flat = F.softmax(beta * flat, axis=2)
    prob = F.reshape_like(flat, heatmaps)
    return _expected_index(F, F.sum(prob, axis=2)), _expected_index(F, F.sum(prob, axis=3))


def _expected_index(F, marginal):
    """Expected index (N, K) of distributions (N, K, n) over their last axis."""
    return F.sum(F.broadcast_mul(marginal, F.reshape(F.contrib.arange_like(marginal, axis=-1), (1, 1, -1))), axis=2)


def _weighted_mean(F, losses, counts):
    """``sum(losses) / max(sum(counts), 1)``, (1,): with 0/1 ``counts`` the mean over what
    counts, and 0 when nothing does."""
    return F.sum(losses) / F.maximum(F.sum(counts), 1.0)


class IntegralLoss(gluon.HybridBlock):
    """L1 distance (heatmap pixels) between the soft-argmax of the predicted heatmaps and
    the target Gaussians' centres, as a weighted mean over the counted keypoints (1,)."""

    def __init__(self, beta: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        if not beta > 0:
            raise ValueError(f"integral beta must be > 0, got {beta}")
        self.beta = float(beta)

    def per_keypoint(self, pred, target, weight):
        """Weighted per-keypoint distances (N, K)."""
        return self._per_keypoint(_namespace(pred), pred, target, weight)

    def _per_keypoint(self, F, pred, target, weight):
        target = F.reshape_like(target, pred)
        x, y = soft_argmax(F, pred, self.beta)
        tx, ty = soft_argmax(F, target)
        return (F.abs(x - F.BlockGrad(tx)) + F.abs(y - F.BlockGrad(ty))) * weight

    def hybrid_forward(self, F, pred, target, weight):
        """Batch loss (1,): ``sum(w * d) / max(sum(w), 1)``."""
        return _weighted_mean(F, self._per_keypoint(F, pred, target, weight), weight)


class MaskedMSELoss(gluon.HybridBlock):
    """Masked (and optionally foreground-weighted) heatmap MSE; see the module docstring."""

    def __init__(self, fg_weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.fg_weight = _check_fg_weight(fg_weight)

    def per_keypoint(self, pred, target, weight):
        """Weighted per-sample, per-keypoint losses (N, K)."""
        return keypoint_mse(_namespace(pred), pred, target, weight, self.fg_weight)

    def hybrid_forward(self, F, pred, target, weight):
        """Batch loss (1,): ``sum(w * l) / max(sum(w), 1)``."""
        return _weighted_mean(F, keypoint_mse(F, pred, target, weight, self.fg_weight), weight)


class OHKMLoss(gluon.HybridBlock):
    """Online hard keypoint mining: per sample the mean of the ``top_k`` largest
    weighted per-keypoint losses (``top_k`` None: ceil(K / 2)), averaged over
    the samples that have a counted keypoint."""

    def __init__(self, top_k: "int | None" = None, fg_weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.top_k, self.fg_weight = _check_top_k(top_k), _check_fg_weight(fg_weight)

    def per_sample(self, pred, target, weight):
        """Mean of each sample's hardest counted keypoint losses (N,)."""
        return self._per_sample(_namespace(pred), pred, target, weight)

    def _per_sample(self, F, pred, target, weight):
        losses = keypoint_mse(F, pred, target, weight, self.fg_weight)
        # rank 0 = largest loss; ranks carry no gradient, the selected losses do
        ranks = F.BlockGrad(F.argsort(F.argsort(-losses, axis=1), axis=1))
        if self.top_k is None:
            k = F.ceil(F.sum(F.ones_like(weight), axis=1, keepdims=True) / 2)
            selected = F.broadcast_lesser(ranks, k)
        else:
            k = self.top_k
            selected = ranks < k
        counted = F.sum(weight > 0, axis=1, keepdims=True)
        hardest = F.sum(losses * selected, axis=1, keepdims=True)
        return F.reshape(hardest / F.maximum(F.minimum(k, counted), 1.0), (-1,))

    def hybrid_forward(self, F, pred, target, weight):
        """Batch loss (1,)."""
        per_sample = self._per_sample(F, pred, target, weight)
        return _weighted_mean(F, per_sample, F.max(weight, axis=1) > 0)


class _FinalIntegral(gluon.HybridBlock):
    """Base of the multi-output losses: the optional integral term on the final output,
    ``integral_weight`` times :class:`IntegralLoss` (off at 0)."""

    def __init__(self, integral_weight: float = 0.0, integral_beta: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        if integral_weight < 0:
            raise ValueError(f"integral_weight must be >= 0, got {integral_weight}")
        self.integral_weight = float(integral_weight)
        with self.name_scope():
            self.integral = IntegralLoss(integral_beta) if integral_weight > 0 else None

    def _with_integral(self, parts: tuple, final, target, weight) -> tuple:
        """``parts``, followed by the integral distance on ``final`` when the term is on."""
        return parts if self.integral is None else parts + (self.integral(final, target, weight),)

    def _plus_integral(self, total, integral: list):
        """``total`` plus the weighted integral part (``integral``: the parts after the loss's own)."""
        return total + self.integral_weight * integral[0] if integral else total


class CPNLoss(_FinalIntegral):
    """Cascaded Pyramid Network loss for outputs ``(g_1, ..., g_num_global, refine)``:
    ``global_weight * sum_i MaskedMSE(g_i, target_i) + OHKM(refine, target_last)`` (with
    ``use_ohkm`` False, the masked MSE on RefineNet too).

    ``target`` is (N, num_global + 1, K, h, w) or a list of num_global + 1
    (N, K, h, w) arrays aligned with the outputs (coarse GlobalNet targets first).
    With ``integral_weight`` > 0, ``integral_weight * Integral(refine, target_last)`` is added.
    """

    def __init__(self, num_global: int = 4, global_weight: float = 0.5, use_ohkm: bool = True,
                 top_k: "int | None" = None, fg_weight: float = 0.0, integral_weight: float = 0.0,
                 integral_beta: float = 10.0, **kwargs):
        super().__init__(integral_weight, integral_beta, **kwargs)
        if num_global < 1:
            raise ValueError(f"num_global must be >= 1, got {num_global}")
        self.num_global, self.global_weight = int(num_global), float(global_weight)
        with self.name_scope():
            self.mse = MaskedMSELoss(fg_weight)
            self.ohkm = OHKMLoss(top_k, fg_weight) if use_ohkm else None

    def _targets(self, target) -> list:
        """Per-output targets from a list or an (N, L, K, h, w) array."""
        levels = self.num_global + 1
        if isinstance(target, (list, tuple)):
            if len(target) != levels:
                raise ValueError(f"CPNLoss expects {levels} targets, got {len(target)}")
            return list(target)
        return list(_namespace(target).split(target, num_outputs=levels, axis=1, squeeze_axis=True))

    def parts(self, outputs, target, weight) -> tuple:
        """``(sum of the GlobalNet MSEs, RefineNet OHKM)``, each (1,), unweighted; with the
        integral term a third part, its distance on RefineNet's output."""
        outputs = _as_tuple(outputs)
        if len(outputs) != self.num_global + 1:
            raise ValueError(f"CPNLoss expects {self.num_global + 1} outputs "
                             f"({self.num_global} GlobalNet + RefineNet), got {len(outputs)}")
        targets = self._targets(target)
        global_loss = self.mse(outputs[0], targets[0], weight)
        for out, tgt in zip(outputs[1:-1], targets[1:-1]):
            global_loss = global_loss + self.mse(out, tgt, weight)
        refine = (self.mse if self.ohkm is None else self.ohkm)(outputs[-1], targets[-1], weight)
        return self._with_integral((global_loss, refine), outputs[-1], targets[-1], weight)

    def hybrid_forward(self, F, outputs, target, weight):
        """Total loss (1,)."""
        global_loss, refine_loss, *integral = self.parts(outputs, target, weight)
        return self._plus_integral(self.global_weight * global_loss + refine_loss, integral)


class HourglassLoss(_FinalIntegral):
    """Stacked Hourglass loss with intermediate supervision: the masked MSE of
    every stack against the same target, the last stack's MSE replaced by OHKM
    when ``use_ohkm``; with ``integral_weight`` > 0 the integral term on the last stack is
    added that many times. ``target`` is (N, K, h, w) or (N, 1, K, h, w)."""

    def __init__(self, use_ohkm: bool = False, top_k: "int | None" = None,
                 fg_weight: float = 0.0, integral_weight: float = 0.0, integral_beta: float = 10.0, **kwargs):
        super().__init__(integral_weight, integral_beta, **kwargs)
        with self.name_scope():
            self.mse = MaskedMSELoss(fg_weight)
            self.ohkm = OHKMLoss(top_k, fg_weight) if use_ohkm else None

    def parts(self, outputs, target, weight) -> tuple:
        """``(sum over the intermediate stacks, last stack)``, each (1,); with the integral
        term a third part, its distance on the last stack."""
        outputs = _as_tuple(outputs)
        last = (self.mse if self.ohkm is None else self.ohkm)(outputs[-1], target, weight)
        intermediate = _namespace(last).zeros_like(last)
        for out in outputs[:-1]:
            intermediate = intermediate + self.mse(out, target, weight)
        return self._with_integral((intermediate, last), outputs[-1], target, weight)

    def hybrid_forward(self, F, outputs, target, weight):
        """Total loss (1,): the sum over all stacks (plus the weighted integral term)."""
        intermediate, last, *integral = self.parts(outputs, target, weight)
        return self._plus_integral(intermediate + last, integral)
