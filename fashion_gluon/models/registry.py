"""Model names → static specs (:class:`ModelSpec`), ``get_model`` and the input-size check.

A spec names the network class and the constructor arguments a model name fixes (as timm's and
gluoncv's registries do); everything a config is validated against — the network class, its
family (:mod:`~fashion_gluon.families`, by that class), its input stride — is read from it
without building a network.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

import mxnet as mx

from .backbones import KeypointNet
from .cpn import CPN
from .hourglass import StackedHourglass
from .pretrained import Pretrained, load_backbone_weights


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its network class and the constructor arguments its name fixes
    (others, e.g. ``channels``, come from ``model.kwargs``)."""

    network: type  # a KeypointNet subclass with a static ``input_stride(**constructor arguments)``
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def build(self, num_keypoints: int, **kwargs) -> KeypointNet:
        """The network (not initialized); ``kwargs`` add to or override the fixed arguments."""
        return self.network(num_keypoints=num_keypoints, **{**self.fixed, **kwargs})

    def stride(self, **kwargs) -> int:
        """The input stride of :meth:`build` with ``kwargs``, without building: a TypeError for an
        argument the constructor does not take, a ValueError for a value it would refuse."""
        parameters = inspect.signature(self.network).parameters
        names = [n for n, p in parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD and n != "num_keypoints"]
        unknown = [key for key in kwargs if key not in names]
        if unknown:
            raise TypeError(f"{self.network.__name__} takes no argument {unknown[0]!r}; its arguments: "
                            f"{', '.join(n for n in names if n not in self.fixed)}")
        arguments = {**{n: parameters[n].default for n in names}, **self.fixed, **kwargs}
        return self.network.input_stride(**arguments)


MODELS: dict[str, ModelSpec] = {
    "hourglass": ModelSpec(StackedHourglass),
    "hourglass_small": ModelSpec(StackedHourglass, {"num_stacks": 2, "num_features": 64}),
    "cpn_resnet18": ModelSpec(CPN, {"backbone": "resnet18_v1b"}),
    "cpn_resnet50": ModelSpec(CPN, {"backbone": "resnet50_v1b"}),
    "cpn_se_resnet50": ModelSpec(CPN, {"backbone": "se_resnet50_v1"}),
    "cpn_se_resnext50": ModelSpec(CPN, {"backbone": "se_resnext50_32x4d"}),
    "cpn_detnet50": ModelSpec(CPN, {"backbone": "detnet59"}),
    "cpn_detresnext50": ModelSpec(CPN, {"backbone": "detresnext50"}),
    "cpn_mobilenetv2_1.0": ModelSpec(CPN, {"backbone": "mobilenetv2_1.0"}),
    "cpn_mobilenetv2_0.5": ModelSpec(CPN, {"backbone": "mobilenetv2_0.5"}),
}


def list_models() -> list[str]:
    """The registered model names."""
    return sorted(MODELS)


def model_class(name: str) -> type:
    """The network class a registered model name builds."""
    _check_name(name)
    return MODELS[name].network


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(list_models())}")


def build_model(name: str, num_keypoints: int, **kwargs) -> KeypointNet:
    """Construct model ``name`` without initializing it."""
    _check_name(name)
    return MODELS[name].build(num_keypoints, **kwargs)


def get_model(name: str, num_keypoints: int, pretrained: Pretrained = False,
              ctx: Union[mx.Context, list, None] = None, **kwargs) -> KeypointNet:
    """An initialized model, ready to run on ``ctx`` (default CPU).

    ``pretrained``: False (random weights), True (the backbone's ImageNet weights
    from gluoncv's model store) or the path of a weight file; see
    :mod:`~.pretrained`. Other ``kwargs`` go to the constructor (CPN: ``channels``,
    ``upsample``; hourglass: ``num_stacks``, ``num_features``, ``depth``, ``upsample``).
    """
    net = build_model(name, num_keypoints, **kwargs)
    backbone = getattr(net, "backbone", None)
    if pretrained and backbone is None:
        raise ValueError(f"model {name!r} has no ImageNet backbone; pretrained must be False")
    ctx = mx.cpu() if ctx is None else ctx
    net.initialize(ctx=ctx)
    if pretrained:
        load_backbone_weights(backbone, pretrained, ctx)
    return net


def check_input_size(model: Union[str, KeypointNet], size: tuple[int, int], **kwargs) -> tuple[int, int]:
    """Return ``size`` = (H, W) if the model accepts it, else raise a ValueError naming valid sizes.

    ``model`` is a model or a registered name (then ``kwargs`` are its constructor's, and the
    stride is the spec's: nothing is built).
    """
    if isinstance(model, str):
        _check_name(model)
        stride, label = MODELS[model].stride(**kwargs), model
    else:
        stride, label = model.stride, type(model).__name__
    height, width = size
    if height % stride or width % stride or height <= 0 or width <= 0:
        nearest = tuple(max(stride, math.ceil(side / stride) * stride) for side in size)
        raise ValueError(f"input size (H, W) = ({height}, {width}) does not suit {label}: H and W must be "
                         f"positive multiples of its stride {stride}, e.g. {nearest}")
    return height, width
