"""Model families: what a network is trained and decoded with, each family declared once.

A family declares its networks' outputs in their order — for each the σ factor of its target,
its loss and that loss's weight — as mmpose pairs a head with its codec and lists a loss and a
weight per stage (its MSPN configs). Everything else reads the declaration: the codec's
targets (:meth:`ModelFamily.codec`, one per output), the loss (:meth:`ModelFamily.loss`, a
:class:`~.losses.OutputsLoss`) and the benchmarks' targets (:attr:`ModelFamily.sigma_factors`).
The last output is the final prediction in every family: a prediction — from a network, an
export or an INT8 model, which keep every output in the network's order — decodes
:meth:`ModelFamily.final`. A model name's family follows from the network class it builds
(:func:`family_of`); the network's input stride is static registry metadata
(:mod:`~.models.registry`).

``loss.ohkm`` false trains every output declared ``ohkm`` with the masked MSE instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .codec import HeatmapCodec
from .losses import LossOptions, OutputsLoss
from .models import CPN, StackedHourglass
from .models.registry import model_class


@dataclass(frozen=True)
class Output:
    """One output of a family's networks and how it is trained."""

    name: str
    sigma_factor: float  # its target's σ = data.sigma × sigma_factor (heatmap pixels)
    loss: str  # "mse" | "ohkm" (:data:`~.losses.LOSS_KINDS`)
    weight: float  # its weight in the total loss


@dataclass(frozen=True)
class ModelFamily:
    """The outputs of one architecture's networks: ``outputs`` in the network's order, the last
    final; ``repeated``: an output any number of which come before them (the hourglass stacks
    but the last), trained on the target of the single entry of ``outputs``."""

    name: str
    network: type  # the networks' class (a :class:`~.models.KeypointNet`)
    outputs: tuple[Output, ...]
    repeated: "Output | None" = None

    def __post_init__(self):
        if self.repeated is not None and (len(self.outputs) != 1
                                          or self.repeated.sigma_factor != self.outputs[0].sigma_factor):
            raise ValueError(f"family {self.name!r}: repeated outputs share the final output's target")

    @property
    def sigma_factors(self) -> tuple[float, ...]:
        """σ factor of each target the codec encodes (one per entry of ``outputs``)."""
        return tuple(output.sigma_factor for output in self.outputs)

    def codec(self, input_size: Sequence[int], stride: int, sigma: float, decode: str = "dark") -> HeatmapCodec:
        """The codec whose targets line up with this family's outputs (``decode``: see
        :meth:`HeatmapCodec.decode`)."""
        return HeatmapCodec(tuple(input_size), stride, sigma, self.sigma_factors, decode)

    def loss(self, options: LossOptions = LossOptions()) -> OutputsLoss:
        """The training loss over this family's outputs with ``options`` (see :mod:`~.losses`;
        ``options.ohkm`` false trains the outputs declared ``ohkm`` with the masked MSE)."""
        return OutputsLoss(self.name, self.outputs, self.repeated, options)

    @staticmethod
    def final(outputs):
        """The heatmaps predictions are decoded from: the last output of every family."""
        return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


#: CPN (Chen et al. 2018): GlobalNet's heatmaps of the pyramid levels, coarse → fine (C5 … C2 on
#: ResNet backbones), blurred more the coarser the level, each weighted 0.5; then RefineNet's, the
#: final one, trained with online hard keypoint mining. σ factor of the target of each of the
#: :data:`~.models.cpn.NUM_LEVELS` levels, coarse → fine:
CPN_LEVEL_SIGMA_FACTORS: tuple[float, ...] = (2.4, 1.73, 1.37, 1.0)
CPN_FAMILY = ModelFamily("cpn", CPN, tuple(
    Output(f"GlobalNet level {level}", factor, "mse", 0.5)
    for level, factor in enumerate(CPN_LEVEL_SIGMA_FACTORS, 1)) + (Output("RefineNet", 1.0, "ohkm", 1.0),))
#: Stacked Hourglass (Newell et al. 2016): one output per stack, all trained on one target
#: (intermediate supervision), the last stack's final and trained with OHKM.
HOURGLASS_FAMILY = ModelFamily("hourglass", StackedHourglass, (Output("last stack", 1.0, "ohkm", 1.0),),
                               repeated=Output("stack", 1.0, "mse", 1.0))
FAMILIES: tuple[ModelFamily, ...] = (CPN_FAMILY, HOURGLASS_FAMILY)


def family_of(model_name: str) -> ModelFamily:
    """The family of a registered model (by the network class it builds)."""
    cls = model_class(model_name)
    for family in FAMILIES:
        if issubclass(cls, family.network):
            return family
    raise ValueError(f"model {model_name!r} ({cls.__name__}) belongs to no model family")


__all__ = ["Output", "ModelFamily", "CPN_LEVEL_SIGMA_FACTORS", "CPN_FAMILY", "HOURGLASS_FAMILY", "FAMILIES", "family_of"]
