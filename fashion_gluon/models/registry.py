"""Model names → constructors, ``get_model`` and the input-size check."""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Union

import mxnet as mx

from .backbones import KeypointNet
from .cpn import CPN
from .hourglass import StackedHourglass
from .pretrained import Pretrained, load_backbone_weights

MODELS: dict[str, Callable[..., KeypointNet]] = {
    "hourglass": StackedHourglass,
    "hourglass_small": partial(StackedHourglass, num_stacks=2, num_features=64),
    "cpn_resnet18": partial(CPN, "resnet18_v1b"),
    "cpn_resnet50": partial(CPN, "resnet50_v1b"),
    "cpn_se_resnet50": partial(CPN, "se_resnet50_v1"),
    "cpn_se_resnext50": partial(CPN, "se_resnext50_32x4d"),
    "cpn_detnet50": partial(CPN, "detnet59"),
    "cpn_detresnext50": partial(CPN, "detresnext50"),
    "cpn_mobilenetv2_1.0": partial(CPN, "mobilenetv2_1.0"),
    "cpn_mobilenetv2_0.5": partial(CPN, "mobilenetv2_0.5"),
}


def list_models() -> list[str]:
    """The registered model names."""
    return sorted(MODELS)


def model_class(name: str) -> type:
    """The network class a registered model name builds."""
    _check_name(name)
    entry = MODELS[name]
    return getattr(entry, "func", entry)


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(list_models())}")


def build_model(name: str, num_keypoints: int, **kwargs) -> KeypointNet:
    """Construct model ``name`` without initializing it."""
    _check_name(name)
    return MODELS[name](num_keypoints=num_keypoints, **kwargs)


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

    ``model`` is a model or a registered name (then ``kwargs`` are its constructor's).
    """
    net = build_model(model, 1, **kwargs) if isinstance(model, str) else model
    height, width = size
    if height % net.stride or width % net.stride or height <= 0 or width <= 0:
        label = model if isinstance(model, str) else type(model).__name__
        nearest = tuple(max(net.stride, math.ceil(side / net.stride) * net.stride) for side in size)
        raise ValueError(f"input size (H, W) = ({height}, {width}) does not suit {label}: H and W must be "
                         f"positive multiples of its stride {net.stride}, e.g. {nearest}")
    return height, width
