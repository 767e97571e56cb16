"""Heatmap losses: masked MSE, online hard keypoint mining, the weighted loss of a network's outputs.

Every loss is a HybridBlock called as ``loss(pred, target, weight)`` with

* ``pred``: heatmaps (N, K, h, w), or for :class:`OutputsLoss` a tuple of them;
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

The settings a run chooses (``fg_weight``, ``top_k``, ``ohkm``, ``integral_weight``,
``integral_beta``; the config's ``loss`` section) are :class:`LossOptions`, with their defaults and rules.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import mxnet as mx
from mxnet import gluon

from .checks import Rule


def _option(default: Any, rule: Rule) -> Any:
    """A :class:`LossOptions` field: its default and the rule its value keeps."""
    return dataclasses.field(default=default, metadata={"rule": rule})


@dataclass(frozen=True)
class LossOptions:
    """The loss settings a run chooses, declared and checked here once: the config's ``loss``
    section (its defaults are these), :meth:`~.families.ModelFamily.loss` and the loss blocks
    below read them. A bad value raises a one-line ValueError naming it."""

    #: pixel weight ``1 + fg_weight * target`` (from-scratch training needs ~10)
    fg_weight: float = _option(0.0, Rule("number", 0))
    #: OHKM keypoints per sample; None: half of them
    top_k: "int | None" = _option(None, Rule("int", 1, optional=True))
    #: OHKM on the outputs the model's family declares ``ohkm``; false: the masked MSE there too
    ohkm: bool = _option(True, Rule("bool"))
    #: > 0: add this times the soft-argmax L1 distance (heatmap pixels) on the final output
    integral_weight: float = _option(0.0, Rule("number", 0))
    #: softmax sharpness of that soft-argmax
    integral_beta: float = _option(10.0, Rule("number", 0, inclusive=False))

    def __post_init__(self):
        for name in self.names():
            check_option(name, getattr(self, name))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The options' names, in declaration order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, section: Mapping[str, Any], prefix: str = "loss.") -> "LossOptions":
        """The options of a config's ``loss`` section (missing keys take the defaults); an
        unknown key or a bad value raises a one-line ValueError naming it as ``prefix + name``."""
        for name, value in section.items():
            if name not in cls.names():
                raise ValueError(f"unknown loss option {prefix}{name}; valid: {', '.join(cls.names())}")
            check_option(name, value, prefix + name)
        return cls(**section)

    def as_config(self) -> dict[str, Any]:
        """The options as a config's ``loss`` section."""
        return dataclasses.asdict(self)


def check_option(name: str, value: Any, key: "str | None" = None) -> Any:
    """``value`` if it keeps the rule of :class:`LossOptions`' option ``name``, else a one-line
    ValueError naming ``key`` (default ``name``)."""
    rule = next(field.metadata["rule"] for field in dataclasses.fields(LossOptions) if field.name == name)
    return rule.check(key or name, value)


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

    def __init__(self, beta: float = LossOptions.integral_beta, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(check_option("integral_beta", beta))

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

    def __init__(self, fg_weight: float = LossOptions.fg_weight, **kwargs):
        super().__init__(**kwargs)
        self.fg_weight = float(check_option("fg_weight", fg_weight))

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

    def __init__(self, top_k: "int | None" = LossOptions.top_k, fg_weight: float = LossOptions.fg_weight, **kwargs):
        super().__init__(**kwargs)
        self.top_k, self.fg_weight = check_option("top_k", top_k), float(check_option("fg_weight", fg_weight))

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


class Supervised(Protocol):
    """What :class:`OutputsLoss` reads of an output's declaration (:class:`~.families.Output`, a
    dataclass: OutputsLoss replaces its ``loss`` where ``LossOptions.ohkm`` is false)."""

    name: str
    loss: str  # one of LOSS_KINDS
    weight: float


#: The loss an output can be trained with: masked MSE, or OHKM over the same per-keypoint errors.
LOSS_KINDS: tuple[str, ...] = ("mse", "ohkm")


class OutputsLoss(gluon.HybridBlock):
    """The loss of a multi-output network, read from its family's declaration: the weighted sum
    ``sum_i weight_i * loss_i(output_i, target_i)`` over the outputs (``loss_i``
    :class:`MaskedMSELoss` or :class:`OHKMLoss`; the masked MSE for every output when
    ``options.ohkm`` is false), plus, with ``options.integral_weight`` > 0,
    ``integral_weight * Integral(final, final target)`` on the last (final) output.

    ``outputs``: each output's declaration, in the network's order. ``repeated``: the
    declaration of any number of outputs before those (the hourglass stacks but the last), or
    None: then the network has exactly ``outputs``. Targets: without ``repeated`` one per output,
    (N, L, K, h, w) or a list of L (N, K, h, w) arrays; with it one for every output,
    (N, K, h, w) or (N, 1, K, h, w). ``label`` names the loss in error messages.
    """

    def __init__(self, label: str, outputs: Sequence[Supervised], repeated: "Supervised | None" = None,
                 options: LossOptions = LossOptions(), **kwargs):
        super().__init__(**kwargs)
        if len(outputs) != 1 and (repeated is not None or not outputs):
            raise ValueError(f"the {label} loss needs one output declaration, or one per output without repeated "
                             f"outputs (which share the final output's target), got {len(outputs)}")
        declared = tuple(outputs) + (() if repeated is None else (repeated,))
        for output in declared:
            if output.loss not in LOSS_KINDS:
                raise ValueError(f"output {output.name!r}: loss must be one of {', '.join(LOSS_KINDS)}, "
                                 f"got {output.loss!r}")

        def trained(output: "Supervised | None") -> "Supervised | None":
            mined = output is not None and output.loss == "ohkm"
            return dataclasses.replace(output, loss="mse") if mined and not options.ohkm else output

        self.label, self.outputs, self.repeated = label, tuple(map(trained, outputs)), trained(repeated)
        self.integral_weight = float(options.integral_weight)
        mined = any(trained(output).loss == "ohkm" for output in declared)
        with self.name_scope():
            self.mse = MaskedMSELoss(options.fg_weight)
            self.ohkm = OHKMLoss(options.top_k, options.fg_weight) if mined else None
            self.integral = IntegralLoss(options.integral_beta) if options.integral_weight > 0 else None

    def _declarations(self, count: int) -> tuple:
        """The declaration of each of ``count`` outputs."""
        if self.repeated is not None:
            return (self.repeated,) * (count - 1) + self.outputs
        if count != len(self.outputs):
            raise ValueError(f"the {self.label} loss expects {len(self.outputs)} outputs "
                             f"({', '.join(o.name for o in self.outputs)}), got {count}")
        return self.outputs

    def _targets(self, target, count: int) -> list:
        """One target per output, from the shared target, a list or an (N, L, K, h, w) array."""
        if self.repeated is not None:
            return [target] * count
        if isinstance(target, (list, tuple)):
            if len(target) != count:
                raise ValueError(f"the {self.label} loss expects {count} targets, got {len(target)}")
            return list(target)
        if count == 1:
            return [target]
        return list(_namespace(target).split(target, num_outputs=count, axis=1, squeeze_axis=True))

    def parts(self, outputs, target, weight) -> tuple:
        """Each output's loss, (1,) and unweighted, in the outputs' order; with the integral term
        one more part, its distance on the final output."""
        outputs = _as_tuple(outputs)
        declarations = self._declarations(len(outputs))
        targets = self._targets(target, len(outputs))
        parts = tuple((self.ohkm if d.loss == "ohkm" else self.mse)(out, tgt, weight)
                      for d, out, tgt in zip(declarations, outputs, targets))
        return parts if self.integral is None else parts + (self.integral(outputs[-1], targets[-1], weight),)

    def hybrid_forward(self, F, outputs, target, weight):
        """Total loss (1,)."""
        parts = self.parts(outputs, target, weight)
        declarations = self._declarations(len(_as_tuple(outputs)))
        total = declarations[0].weight * parts[0]
        for declaration, part in zip(declarations[1:], parts[1:]):
            total = total + declaration.weight * part
        return total if self.integral is None else total + self.integral_weight * parts[-1]
