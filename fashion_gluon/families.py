"""Model families: what a network is trained and decoded with.

A family pairs the networks of one architecture with the :class:`~.codec.HeatmapCodec`
that makes targets matching their outputs, the loss over those outputs, and which output
is the final prediction — so a training step, a prediction and an export all ask the
family instead of guessing from a model's name. (mmpose pairs a head with its codec the
same way.)

* **CPN**: outputs are the GlobalNet heatmaps of :data:`~.models.cpn.NUM_LEVELS` pyramid
  levels, coarse → fine, then RefineNet's (final). Targets: one Gaussian per output, the
  coarser GlobalNet levels blurred more (σ × :data:`CPN_GLOBAL_SIGMA_FACTORS`), RefineNet's
  the sharpest (σ × 1). Loss: :class:`~.losses.CPNLoss` (:data:`CPN_GLOBAL_LOSS_WEIGHT` · masked
  MSE per GlobalNet level + OHKM on RefineNet, masked MSE there with ``loss.ohkm`` false).
* **Hourglass**: one output per stack, the last final; every stack is supervised with the
  same target (:class:`~.losses.HourglassLoss`, OHKM on the last stack optional).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from mxnet import gluon

from .codec import HeatmapCodec
from .losses import CPNLoss, HourglassLoss
from .models import CPN, StackedHourglass
from .models.cpn import NUM_LEVELS
from .models.registry import model_class

#: σ factors of the CPN GlobalNet targets, coarse → fine (one per pyramid level).
CPN_GLOBAL_SIGMA_FACTORS: tuple[float, ...] = (2.4, 1.73, 1.37, 1.0)
#: loss weight of each GlobalNet level's masked MSE (RefineNet's loss has weight 1).
CPN_GLOBAL_LOSS_WEIGHT = 0.5
assert len(CPN_GLOBAL_SIGMA_FACTORS) == NUM_LEVELS, "one σ factor per CPN pyramid level"


@dataclass(frozen=True)
class ModelFamily:
    """The codec, loss and final output of one architecture's networks."""

    name: str
    sigma_factors: tuple[float, ...]  # σ factor of each target level (1 level: broadcast to every output)
    make_loss: Callable[..., gluon.HybridBlock]  # (fg_weight, top_k, ohkm, integral_weight, integral_beta) -> loss

    def codec(self, input_size: Sequence[int], stride: int, sigma: float, decode: str = "dark") -> HeatmapCodec:
        """The codec whose targets line up with this family's outputs (``decode``: see
        :meth:`HeatmapCodec.decode`)."""
        return HeatmapCodec(tuple(input_size), stride, sigma, self.sigma_factors, decode)

    def loss(self, fg_weight: float = 0.0, top_k: "int | None" = None, ohkm: bool = True,
             integral_weight: float = 0.0, integral_beta: float = 10.0) -> gluon.HybridBlock:
        """The training loss over this family's outputs (see :mod:`~.losses`)."""
        return self.make_loss(fg_weight, top_k, ohkm, integral_weight, integral_beta)

    @staticmethod
    def final(outputs):
        """The heatmaps predictions are decoded from: the last output of every family."""
        return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


CPN_FAMILY = ModelFamily("cpn", CPN_GLOBAL_SIGMA_FACTORS + (1.0,),
                         lambda fg_weight, top_k, ohkm, integral_weight, integral_beta: CPNLoss(
                             num_global=NUM_LEVELS, global_weight=CPN_GLOBAL_LOSS_WEIGHT, use_ohkm=ohkm,
                             top_k=top_k, fg_weight=fg_weight,
                             integral_weight=integral_weight, integral_beta=integral_beta))
HOURGLASS_FAMILY = ModelFamily("hourglass", (1.0,),
                               lambda fg_weight, top_k, ohkm, integral_weight, integral_beta: HourglassLoss(
                                   use_ohkm=ohkm, top_k=top_k, fg_weight=fg_weight,
                                   integral_weight=integral_weight, integral_beta=integral_beta))
_BY_CLASS = {CPN: CPN_FAMILY, StackedHourglass: HOURGLASS_FAMILY}


def family_of(model_name: str) -> ModelFamily:
    """The family of a registered model (by the network class it builds)."""
    cls = model_class(model_name)
    for base, family in _BY_CLASS.items():
        if issubclass(cls, base):
            return family
    raise ValueError(f"model {model_name!r} ({cls.__name__}) belongs to no model family")


__all__ = ["ModelFamily", "CPN_FAMILY", "HOURGLASS_FAMILY", "CPN_GLOBAL_SIGMA_FACTORS", "family_of"]
