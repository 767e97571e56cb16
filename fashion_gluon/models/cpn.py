"""Cascaded Pyramid Network (Chen et al. 2018) on a gluoncv backbone.

GlobalNet: on each of the backbone's last :data:`NUM_LEVELS` feature maps a 1×1 lateral
conv (BN, ReLU) to ``channels``; a top-down path adds to each level the level
above, upsampled to its stride and passed through a 1×1 conv (BN). Each level
has a head, 1×1 conv (BN, ReLU) → 3×3 conv to K heatmaps, upsampled to ¼ of
the input. RefineNet: on the levels coarse → fine one bottleneck (channels/2 → channels/2 →
channels) fewer per level, none on the finest, each upsampled to ¼ of the input, concatenated,
one bottleneck with a projection shortcut, a 3×3 conv to K heatmaps.

Levels: for ResNet-style backbones C2..C5 (strides 4, 8, 16, 32). DetNet-style
backbones return C2..C6 at strides 4, 8, 16, 16, 16; CPN uses the last levels
(C3..C6, strides 8, 16, 16, 16), as the seed's DetNet CPN does, so the top-down
path upsamples only between C4 and C3 (levels of equal stride are added
as they are) and the heads upsample by 2 or 4.
"""
from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

from .backbones import BACKBONES, Backbone, HeatmapConv, KeypointNet, Upsample, check_upsample, conv_bn

#: The pyramid levels of a CPN: the backbone's last feature maps it reads, and so the GlobalNet
#: outputs before the RefineNet's (:data:`~fashion_gluon.families.CPN_FAMILY` declares one per level).
NUM_LEVELS = 4


class Bottleneck(HybridBlock):
    """CPN bottleneck: 1×1 → 3×3 → 1×1 convs (width ``channels // 2``), BN after each,
    ReLU after the first two and after the sum; a 1×1 projection shortcut when
    the width changes."""

    def __init__(self, channels: int, in_channels: int, **kwargs):
        super().__init__(**kwargs)
        mid = channels // 2
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(conv_bn(mid, 1, in_channels), conv_bn(mid, 3, mid),
                          conv_bn(channels, 1, mid, relu=False))
            self.shortcut = conv_bn(channels, 1, in_channels, relu=False) if in_channels != channels else None

    def hybrid_forward(self, F, x):
        residual = x if self.shortcut is None else self.shortcut(x)
        # Activation, not F.relu: under bf16 AMP MXNet 1.9.1 runs relu in a generic kernel ~10x slower
        return F.Activation(self.body(x) + residual, act_type="relu")


class GlobalNet(HybridBlock):
    """Feature pyramid with a heatmap head per level. Inputs and outputs are coarse → fine.

    ``forward(*features)`` returns ``(pyramid, heatmaps)``: the ``channels``-wide
    pyramid levels and their heatmaps at ¼ input resolution.
    """

    def __init__(self, in_channels: tuple[int, ...], strides: tuple[int, ...], num_keypoints: int,
                 channels: int = 256, upsample: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.laterals = nn.HybridSequential()
            self.topdown = nn.HybridSequential()
            self.heads = nn.HybridSequential()
            for level, (width, stride) in enumerate(zip(in_channels, strides)):
                self.laterals.add(conv_bn(channels, 1, width))
                if level > 0:
                    step = nn.HybridSequential()
                    step.add(Upsample(strides[level - 1] // stride, upsample), conv_bn(channels, 1, channels, relu=False))
                    self.topdown.add(step)
                head = nn.HybridSequential()
                head.add(conv_bn(channels, 1, channels), HeatmapConv(num_keypoints, channels),
                         Upsample(stride // KeypointNet.output_stride, upsample))
                self.heads.add(head)

    def hybrid_forward(self, F, *features):
        pyramid = []
        for level, feature in enumerate(features):
            lateral = self.laterals[level](feature)
            pyramid.append(lateral if level == 0 else lateral + self.topdown[level - 1](pyramid[-1]))
        heatmaps = [self.heads[level](p) for level, p in enumerate(pyramid)]
        return pyramid, heatmaps


class RefineNet(HybridBlock):
    """Refines the GlobalNet pyramid (coarse → fine) into one set of K heatmaps at ¼ input resolution."""

    def __init__(self, strides: tuple[int, ...], num_keypoints: int, channels: int = 256,
                 upsample: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.branches = nn.HybridSequential()
            for level, stride in enumerate(strides):
                branch = nn.HybridSequential()
                for _ in range(len(strides) - 1 - level):
                    branch.add(Bottleneck(channels, channels))
                branch.add(Upsample(stride // KeypointNet.output_stride, upsample))
                self.branches.add(branch)
            self.fuse = Bottleneck(channels, channels * len(strides))
            self.predict = HeatmapConv(num_keypoints, channels)

    def hybrid_forward(self, F, *pyramid):
        branches = [self.branches[level](p) for level, p in enumerate(pyramid)]
        return self.predict(self.fuse(F.concat(*branches, dim=1)))


class CPN(KeypointNet):
    """CPN on the backbone ``backbone`` (a key of :data:`~.backbones.BACKBONES`).

    ``forward(x)`` returns ``NUM_LEVELS + 1`` heatmap tensors (N, K, H/4, W/4): GlobalNet coarse → fine,
    then RefineNet. Input sides must be multiples of ``stride``, the backbone's largest
    (:meth:`input_stride`).
    """

    def __init__(self, backbone: str, num_keypoints: int, channels: int = 256, upsample: str = "nearest",
                 **kwargs):
        super().__init__(num_keypoints, **kwargs)
        with self.name_scope():
            self.backbone = Backbone(backbone)
            strides = self.backbone.strides[-NUM_LEVELS:][::-1]
            in_channels = self.backbone.channels[-NUM_LEVELS:][::-1]
            self.global_net = GlobalNet(in_channels, strides, num_keypoints, channels, upsample)
            self.refine_net = RefineNet(strides, num_keypoints, channels, upsample)
        self.stride = self.input_stride(backbone, channels, upsample)

    @staticmethod
    def input_stride(backbone: str, channels: int, upsample: str) -> int:
        """The stride of the CPN built with these arguments (``upsample`` checked), read from the
        backbone's table without building anything."""
        check_upsample(upsample)
        return max(BACKBONES[backbone].strides)

    def hybrid_forward(self, F, x):
        features = self.backbone(x)[-NUM_LEVELS:][::-1]
        pyramid, heatmaps = self.global_net(*features)
        return tuple(heatmaps) + (self.refine_net(*pyramid),)
