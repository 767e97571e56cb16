"""Heatmap models: Stacked Hourglass and CPN on gluoncv backbones.

Conventions shared by every model (documented here once):

* Input: NCHW float32, a normalized image batch; H and W must be multiples of
  ``model.stride`` (64 for the depth-4 hourglass, 32 for CPN, 16 for CPN on a
  DetNet-style backbone), which the registry knows without building the network
  (:class:`~.registry.ModelSpec`). :func:`check_input_size` says so clearly; the
  hybridized graph cannot.
* Output: a tuple of heatmap tensors, each (N, K, H/4, W/4)
  (``model.output_stride`` = 4), K = ``num_keypoints``.

  - CPN: the GlobalNet outputs of its :data:`~.cpn.NUM_LEVELS` pyramid levels coarse → fine
    (C5 … C2; C6 … C3 on DetNet backbones), then the RefineNet output, the final prediction.
  - Hourglass: ``num_stacks`` tensors, one per stack; the last is final.

  How each output is trained is its family's declaration (:mod:`fashion_gluon.families`).

  Every resize inside the models is by an integer factor, nearest (default)
  or half-pixel bilinear, never ``align_corners`` (whose mapping depends on
  the map size) and never ``mode='like'``; so the maps of different strides
  stay aligned up to a constant offset for every input size, and which input
  pixel a heatmap pixel stands for is the codec's convention (the network
  learns it from the targets).
* :func:`get_model` returns an initialized model on ``ctx`` (default CPU), with
  the backbone's ImageNet weights loaded when ``pretrained`` is True or a path
  (see :mod:`.pretrained`). Training and :func:`get_model` never download;
  ``fashion-gluon weights --fetch`` does (:mod:`.fetch`). New layers use He init, the final
  heatmap convolutions Normal(0.001). ``model.initialize()`` without ``init``
  uses the same defaults.
"""
from .backbones import BACKBONES, Backbone, KeypointNet
from .cpn import CPN
from .hourglass import StackedHourglass
from .pretrained import MissingWeightsError, WeightStatus, backbone_weight_status, load_backbone_weights
from .registry import MODELS, ModelSpec, build_model, check_input_size, get_model, list_models, model_class

__all__ = [
    "BACKBONES", "Backbone", "KeypointNet", "CPN", "StackedHourglass", "MODELS", "ModelSpec", "build_model", "get_model",
    "list_models", "model_class", "check_input_size", "MissingWeightsError", "WeightStatus", "backbone_weight_status",
    "load_backbone_weights",
]
