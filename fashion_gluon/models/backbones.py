"""Backbones built from gluoncv's ImageNet classifiers, and the pieces shared by the models.

A :class:`Backbone` returns a list of feature maps, fine → coarse. Its ``trunk``
child holds the classifier's own layers under the classifier's own child
names (``conv1``, ``layer1`` … or ``features.0`` …), so a gluoncv ``.params``
file loads into it directly (see :mod:`fashion_gluon.models.pretrained`). Its
``extra`` child holds stages the classifier does not have: the two dilated
stride-16 stages of the DetNet-style backbones, which start from random
weights.

======================  ==========================  ==================  ===================
backbone                layers taken from gluoncv   returned strides    returned channels
======================  ==========================  ==================  ===================
``resnet18_v1b``        stem, stages 1–4            4, 8, 16, 32        64, 128, 256, 512
``resnet50_v1b``        stem, stages 1–4            4, 8, 16, 32        256, 512, 1024, 2048
``se_resnet50_v1``      stem, stages 1–4            4, 8, 16, 32        256, 512, 1024, 2048
``se_resnext50_32x4d``  stem, stages 1–4            4, 8, 16, 32        256, 512, 1024, 2048
``detnet59``            ``resnet50_v1b`` 1–3 + 2    4, 8, 16, 16, 16    256, 512, 1024 ×3
``detresnext50``        ``se_resnext50_32x4d`` 1–3  4, 8, 16, 16, 16    256, 512, 1024 ×3
                        + 2 dilated stages
``mobilenetv2_1.0``     ``features`` 0–19           4, 8, 16, 32        24, 32, 96, 320
``mobilenetv2_0.5``     ``features`` 0–19           4, 8, 16, 32        12, 16, 48, 160
======================  ==========================  ==================  ===================

DetNet stages (Li et al. 2018): 3 bottlenecks each, 3×3 convolutions with
dilation 2, 1024 channels, stride 16 throughout; the first block of each
stage has a 1×1 projection shortcut. ``detnet59`` uses gluoncv's
``BottleneckV1b``; ``detresnext50`` uses gluoncv's SE-ResNeXt ``Block`` with its
grouped 3×3 convolution dilated (:class:`DilatedSEResNeXtBlock`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import mxnet as mx
from gluoncv.model_zoo import get_model as gluoncv_model
from gluoncv.model_zoo.resnetv1b import BottleneckV1b
from gluoncv.model_zoo.resnext import Block as ResNeXtBlock
from mxnet.gluon import HybridBlock, nn

# He (MSRA) initialization, the default for every new layer.
DEFAULT_INIT = mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)
# Final heatmap convolutions start near zero, as in CPN.
HEATMAP_INIT = mx.init.Normal(0.001)
UPSAMPLE_MODES = ("nearest", "bilinear")
DETNET_DILATION = 2
DETNET_STAGE_BLOCKS = 3


def check_upsample(mode: str) -> str:
    """``mode`` if it is one of :data:`UPSAMPLE_MODES`, else a ValueError listing them."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"unknown upsample mode {mode!r}; expected one of {', '.join(UPSAMPLE_MODES)}")
    return mode


class Upsample(HybridBlock):
    """Enlarge (N, C, H, W) maps by an integer ``factor`` (1 = identity).

    ``nearest`` repeats each pixel ``factor`` times; ``bilinear`` interpolates
    with half-pixel centres (``align_corners=False``). Both map pixels by a
    constant scale and offset whatever the map size. Caveat: mxnet 1.9.1's ONNX
    converter writes every BilinearResize2D as ``align_corners``, so only
    ``nearest`` exports to ONNX unchanged.
    """

    def __init__(self, factor: int, mode: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        check_upsample(mode)
        if int(factor) != factor or factor < 1:
            raise ValueError(f"upsample factor must be a positive integer, got {factor}")
        self.factor, self.mode = int(factor), mode

    def hybrid_forward(self, F, x):
        if self.factor == 1:
            return x
        if self.mode == "nearest":
            return F.UpSampling(x, scale=self.factor, sample_type="nearest")
        return F.contrib.BilinearResize2D(x, scale_height=float(self.factor),
                                          scale_width=float(self.factor), align_corners=False)


class KeypointNet(HybridBlock):
    """Base of the heatmap models.

    ``stride`` (set by each subclass): input H and W must be multiples of it;
    ``output_stride``: the heatmaps are (H, W) / output_stride. ``initialize()``
    without ``init`` uses :data:`DEFAULT_INIT` (layers with their own
    initializer keep it).
    """

    output_stride = 4
    stride: int

    def __init__(self, num_keypoints: int, **kwargs):
        super().__init__(**kwargs)
        if int(num_keypoints) != num_keypoints or num_keypoints < 1:
            raise ValueError(f"num_keypoints must be a positive integer, got {num_keypoints}")
        self.num_keypoints = int(num_keypoints)

    def initialize(self, init=None, ctx=None, verbose=False, force_reinit=False):
        super().initialize(DEFAULT_INIT if init is None else init, ctx, verbose, force_reinit)


class HeatmapConv(HybridBlock):
    """Convolution ('same' padding, bias) from ``in_channels`` features to K heatmaps.

    Parameters are those of ``nn.Conv2D(K, kernel)`` (``weight`` (K, C, k, k),
    ``bias`` (K,)), so checkpoints are interchangeable with it. The graph pads
    them with zero filters to a multiple of ``filter_multiple`` and slices the
    output back to K: oneDNN's convolution backward is ≈ 3.6× slower when the
    filter count is not a multiple of 16 (8×256×64×64, K=24: 1033 ms, padded
    to 32: 288 ms), which made this one layer a third of a CPN training step.
    The zero filters get zero gradient and are never stored.
    """

    def __init__(self, num_keypoints: int, in_channels: int, kernel: int = 3, filter_multiple: int = 16,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_keypoints, self.in_channels, self.kernel = num_keypoints, in_channels, kernel
        self.padded = -(-num_keypoints // filter_multiple) * filter_multiple
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(num_keypoints, in_channels, kernel, kernel),
                                          init=HEATMAP_INIT)
            self.bias = self.params.get("bias", shape=(num_keypoints,), init="zeros")

    def hybrid_forward(self, F, x, weight, bias):
        extra = self.padded - self.num_keypoints
        if extra:
            # F.pad pads axes 2-3 of a 4-D array: move the filter axis there and back.
            weight = F.reshape(F.pad(F.reshape(weight, (1, 1, self.num_keypoints, -1)), mode="constant",
                                     pad_width=(0, 0, 0, 0, 0, extra, 0, 0)),
                               (self.padded, self.in_channels, self.kernel, self.kernel))
            bias = F.reshape(F.pad(F.reshape(bias, (1, 1, -1, 1)), mode="constant",
                                   pad_width=(0, 0, 0, 0, 0, extra, 0, 0)), (-1,))
        out = F.Convolution(x, weight, bias, kernel=(self.kernel, self.kernel),
                            pad=(self.kernel // 2, self.kernel // 2), num_filter=self.padded)
        return F.slice_axis(out, axis=1, begin=0, end=self.num_keypoints) if extra else out


def conv_bn(channels: int, kernel: int, in_channels: int = 0, relu: bool = True) -> nn.HybridSequential:
    """Convolution ('same' padding, no bias) → BatchNorm [→ ReLU]."""
    block = nn.HybridSequential(prefix="")
    block.add(nn.Conv2D(channels, kernel, padding=kernel // 2, use_bias=False, in_channels=in_channels),
              nn.BatchNorm(in_channels=channels))
    if relu:
        block.add(nn.Activation("relu"))
    return block


class ResNetV1bTrunk(HybridBlock):
    """Stem and the first ``num_stages`` stages of a gluoncv ``ResNetV1b``, under its child names."""

    def __init__(self, net: HybridBlock, num_stages: int, **kwargs):
        super().__init__(**kwargs)
        self.classifier_prefix = net.prefix
        self.stage_names = tuple(f"layer{i}" for i in range(1, num_stages + 1))
        for name in ("conv1", "bn1", "relu", "maxpool") + self.stage_names:
            setattr(self, name, getattr(net, name))

    def hybrid_forward(self, F, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs


class FeaturesTrunk(HybridBlock):
    """The layers of a gluoncv classifier whose layers form one ``features`` sequence (ResNet v1 /
    SE-ResNet, ResNeXt / SE-ResNeXt, MobileNetV2) up to the last of ``taps``, returning the
    outputs of the layers at the indices ``taps``."""

    def __init__(self, net: HybridBlock, taps: tuple[int, ...], **kwargs):
        super().__init__(**kwargs)
        self.classifier_prefix, self.taps = net.prefix, tuple(taps)
        self.features = nn.HybridSequential(prefix="")
        for i in range(max(taps) + 1):
            self.features.add(net.features[i])

    def hybrid_forward(self, F, x):
        outputs = []
        for i in range(len(self.features)):
            x = self.features[i](x)
            if i in self.taps:
                outputs.append(x)
        return outputs


class DilatedSEResNeXtBlock(ResNeXtBlock):
    """gluoncv's SE-ResNeXt ``Block`` (stride 1) with its grouped 3×3 convolution dilated.

    gluoncv's block has no dilation argument; the grouped convolution (``body[3]``)
    is replaced by one of the same weight shape with ``dilation`` and matching padding.
    """

    def __init__(self, channels: int, downsample: bool, dilation: int = DETNET_DILATION,
                 cardinality: int = 32, bottleneck_width: int = 4, **kwargs):
        super().__init__(channels, cardinality, bottleneck_width, 1, downsample=downsample,
                         use_se=True, **kwargs)
        group_width = cardinality * int(math.floor(channels * bottleneck_width / 64))
        dilated = nn.Conv2D(group_width, 3, padding=dilation, dilation=dilation,
                            groups=cardinality, use_bias=False)
        self.body.register_child(dilated, "3")


def dilated_bottleneck_v1b(first: bool) -> HybridBlock:
    """DetNet block from gluoncv's ``BottleneckV1b``: 1024 → 256 → 1024, dilation 2."""
    downsample = conv_bn(256 * BottleneckV1b.expansion, 1, relu=False) if first else None
    return BottleneckV1b(256, strides=1, dilation=DETNET_DILATION, downsample=downsample,
                         previous_dilation=DETNET_DILATION, norm_layer=nn.BatchNorm)


def dilated_se_resnext(first: bool) -> HybridBlock:
    """DetResNeXt block: SE-ResNeXt 32×4d, 1024 → 512 (grouped) → 1024, dilation 2."""
    return DilatedSEResNeXtBlock(256, downsample=first)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone."""

    imagenet_name: str  # the gluoncv classifier whose layers (and ImageNet weights) are used
    channels: tuple[int, ...]  # of each returned feature map, fine → coarse
    strides: tuple[int, ...]
    dilated_block: Optional[Callable[[bool], HybridBlock]] = None  # DetNet stages' block
    # For classifiers with one ``features`` sequence: the indices of the layers whose outputs
    # are returned (ResNet v1 / ResNeXt: the 4 stages after a 4-layer stem).
    feature_taps: tuple[int, ...] = (4, 5, 6, 7)

    @property
    def num_extra_stages(self) -> int:
        return 2 if self.dilated_block else 0


_RESNET50_CHANNELS = (256, 512, 1024, 2048)
_DETNET_CHANNELS = (256, 512, 1024, 1024, 1024)
BACKBONES: dict[str, BackboneSpec] = {
    "resnet18_v1b": BackboneSpec("resnet18_v1b", (64, 128, 256, 512), (4, 8, 16, 32)),
    "resnet50_v1b": BackboneSpec("resnet50_v1b", _RESNET50_CHANNELS, (4, 8, 16, 32)),
    "se_resnet50_v1": BackboneSpec("se_resnet50_v1", _RESNET50_CHANNELS, (4, 8, 16, 32)),
    "se_resnext50_32x4d": BackboneSpec("se_resnext50_32x4d", _RESNET50_CHANNELS, (4, 8, 16, 32)),
    "detnet59": BackboneSpec("resnet50_v1b", _DETNET_CHANNELS, (4, 8, 16, 16, 16), dilated_bottleneck_v1b),
    "detresnext50": BackboneSpec("se_resnext50_32x4d", _DETNET_CHANNELS, (4, 8, 16, 16, 16), dilated_se_resnext),
    # MobileNetV2: the last inverted-residual block of each stride (the 1280-wide 1×1 head is left out).
    "mobilenetv2_1.0": BackboneSpec("mobilenetv2_1.0", (24, 32, 96, 320), (4, 8, 16, 32), feature_taps=(5, 8, 15, 19)),
    "mobilenetv2_0.5": BackboneSpec("mobilenetv2_0.5", (12, 16, 48, 160), (4, 8, 16, 32), feature_taps=(5, 8, 15, 19)),
}


class Backbone(HybridBlock):
    """Feature extractor named in :data:`BACKBONES`; ``forward`` returns maps fine → coarse."""

    def __init__(self, name: str, **kwargs):
        super().__init__(**kwargs)
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
        spec = BACKBONES[name]
        self.backbone_name, self.imagenet_name = name, spec.imagenet_name
        self.channels, self.strides = spec.channels, spec.strides
        num_trunk_stages = len(spec.strides) - spec.num_extra_stages
        with self.name_scope():
            net = gluoncv_model(spec.imagenet_name)
            if hasattr(net, "layer1"):
                self.trunk = ResNetV1bTrunk(net, num_trunk_stages)
            else:
                self.trunk = FeaturesTrunk(net, spec.feature_taps[:num_trunk_stages])
            self.extra = nn.HybridSequential()
            for _ in range(spec.num_extra_stages):
                stage = nn.HybridSequential()
                with stage.name_scope():
                    for i in range(DETNET_STAGE_BLOCKS):
                        stage.add(spec.dilated_block(i == 0))
                self.extra.add(stage)

    def hybrid_forward(self, F, x):
        outputs = list(self.trunk(x))
        for i in range(len(self.extra)):
            outputs.append(self.extra[i](outputs[-1]))
        return outputs
