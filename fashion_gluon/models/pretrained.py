"""ImageNet weights for the backbones, read from files: training never downloads;
``fashion-gluon weights --fetch BACKBONE`` does (:mod:`.fetch`).

``pretrained=True`` reads gluoncv's model-store file
``$MXNET_HOME/models/<name>-<short hash>.params`` (``MXNET_HOME`` defaults to
``~/.mxnet``); ``pretrained='file.params'`` reads that file. Either file must
hold the weights of the gluoncv classifier the backbone is built from, in
gluoncv's layout (``save_parameters`` or the older prefix-named format); the
classifier's extra layers (fc, the stages a DetNet backbone replaces) are
ignored, every layer the backbone shares with it must be present. The file's
SHA-1 is not checked here (``weights --fetch`` checks what it downloads).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional, Union

import mxnet as mx
from gluoncv.model_zoo.model_store import short_hash

from ..errors import FashionGluonError
from .backbones import BACKBONES, Backbone

Pretrained = Union[bool, str, os.PathLike]


class MissingWeightsError(FashionGluonError, FileNotFoundError):
    """A backbone weight file is absent."""


class WeightStatus(NamedTuple):
    """One row of :func:`backbone_weight_status`."""

    backbone: str  # the gluoncv classifier name
    path: Optional[Path]  # expected model-store file; None if gluoncv publishes no weights
    present: bool


def model_store_dir() -> Path:
    """The directory gluoncv keeps pretrained weights in: ``$MXNET_HOME/models``."""
    return Path(os.environ.get("MXNET_HOME", Path("~", ".mxnet"))).expanduser() / "models"


def store_file_name(imagenet_name: str) -> Optional[str]:
    """gluoncv's file name for the weights of ``imagenet_name``, or None if it publishes none."""
    try:
        return f"{imagenet_name}-{short_hash(imagenet_name)}.params"
    except ValueError:
        return None


def resolve_weights(backbone: str, pretrained: Pretrained) -> Path:
    """The existing weight file meant by ``pretrained`` (True or a path) for registry backbone ``backbone``."""
    imagenet_name = BACKBONES[backbone].imagenet_name
    if pretrained is True:
        file_name = store_file_name(imagenet_name)
        if file_name is None:
            raise MissingWeightsError(
                f"gluoncv publishes no ImageNet weights for {imagenet_name}; pass pretrained='path/to/file.params' "
                f"holding weights of gluoncv's {imagenet_name}, or pretrained=False")
        path = model_store_dir() / file_name
        if not path.is_file():
            raise MissingWeightsError(
                f"ImageNet weights of backbone {backbone} missing: {path} (gluoncv's {imagenet_name}; the model store is "
                f"$MXNET_HOME/models, default ~/.mxnet/models). Training never downloads; fetch it with: "
                f"fashion-gluon weights --fetch {backbone}")
        return path
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"pretrained weight file not found: {path} (expected weights of gluoncv's "
                                  f"{imagenet_name})")
    return path


def load_backbone_weights(backbone: Backbone, pretrained: Pretrained, ctx=None) -> Path:
    """Load ImageNet weights into the layers ``backbone`` shares with its gluoncv classifier.

    Returns the file read. Raises :class:`MissingWeightsError` if it is absent and
    :class:`FashionGluonError` if it does not hold the classifier's weights.
    """
    path = resolve_weights(backbone.backbone_name, pretrained)
    trunk = backbone.trunk
    try:
        if any("." in key for key in mx.nd.load(str(path))):
            trunk.load_parameters(str(path), ctx=ctx, allow_missing=False, ignore_extra=True)
        else:  # legacy format: parameter names without the classifier's prefix
            trunk.collect_params().load(str(path), ctx=ctx, allow_missing=False, ignore_extra=True,
                                        restore_prefix=trunk.classifier_prefix)
    except (AssertionError, ValueError, mx.base.MXNetError) as err:
        raise FashionGluonError(f"{path} does not hold weights of gluoncv's {backbone.imagenet_name}: "
                                f"{_last_line(err)}") from err
    return path


def _last_line(err: Exception) -> str:
    """The last line of an error message (MXNet's carry a C++ traceback first), or the error's type."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1].removeprefix("MXNetError: ") if lines else type(err).__name__


def backbone_weight_status() -> list[WeightStatus]:
    """For each gluoncv classifier a backbone uses: its model-store file and whether it is there."""
    names = dict.fromkeys(spec.imagenet_name for spec in BACKBONES.values())
    rows = []
    for name in names:
        file_name = store_file_name(name)
        path = None if file_name is None else model_store_dir() / file_name
        rows.append(WeightStatus(name, path, path is not None and path.is_file()))
    return rows
