"""Stacked Hourglass network (Newell et al. 2016).

Stem: 7×7/2 conv 64 (BN, ReLU) → residual to 128 → 2×2 max-pool → residual →
residual to ``num_features`` (stride 4). Then ``num_stacks`` hourglasses of
``depth`` levels; after each, a residual and a 1×1 conv (BN, ReLU) give the
stack's features, a 1×1 conv its K heatmaps; both are remapped by 1×1 convs
and added back into the trunk for the next stack. Residual modules are
Newell's pre-activation bottlenecks (BN, ReLU before each conv).
"""
from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

from .backbones import HEATMAP_INIT, KeypointNet, Upsample, check_upsample, conv_bn


class Residual(HybridBlock):
    """Pre-activation bottleneck: (BN, ReLU, conv) × 3 with widths channels/2, channels/2,
    channels (1×1, 3×3, 1×1); a 1×1 conv on the skip path when the width changes."""

    def __init__(self, in_channels: int, channels: int, **kwargs):
        super().__init__(**kwargs)
        mid = channels // 2
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            for kernel, width_in, width_out in ((1, in_channels, mid), (3, mid, mid), (1, mid, channels)):
                self.body.add(nn.BatchNorm(in_channels=width_in), nn.Activation("relu"),
                              nn.Conv2D(width_out, kernel, padding=kernel // 2, in_channels=width_in))
            self.skip = nn.Conv2D(channels, 1, in_channels=in_channels) if in_channels != channels else None

    def hybrid_forward(self, F, x):
        return self.body(x) + (x if self.skip is None else self.skip(x))


class Hourglass(HybridBlock):
    """One hourglass of ``depth`` levels: each level keeps a full-resolution residual branch
    and adds it to the upsampled output of max-pool → residual → (inner level) → residual."""

    def __init__(self, depth: int, channels: int, upsample: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.skip = Residual(channels, channels)
            self.down = nn.HybridSequential()
            self.down.add(nn.MaxPool2D(2, 2), Residual(channels, channels))
            self.inner = Hourglass(depth - 1, channels, upsample) if depth > 1 else Residual(channels, channels)
            self.up = nn.HybridSequential()
            self.up.add(Residual(channels, channels), Upsample(2, upsample))

    def hybrid_forward(self, F, x):
        return self.skip(x) + self.up(self.inner(self.down(x)))


class StackedHourglass(KeypointNet):
    """``forward(x)`` returns ``num_stacks`` heatmap tensors (N, K, H/4, W/4), the last is final.

    Input H and W must be multiples of ``stride`` = 4 · 2^depth (:meth:`input_stride`).
    """

    def __init__(self, num_keypoints: int, num_stacks: int = 4, num_features: int = 256, depth: int = 4,
                 upsample: str = "nearest", **kwargs):
        super().__init__(num_keypoints, **kwargs)
        self.num_stacks, self.stride = num_stacks, self.input_stride(num_stacks, num_features, depth, upsample)
        f = num_features
        with self.name_scope():
            self.stem = nn.HybridSequential()
            self.stem.add(nn.Conv2D(64, 7, strides=2, padding=3, use_bias=False, in_channels=3),
                          nn.BatchNorm(in_channels=64), nn.Activation("relu"), Residual(64, 128),
                          nn.MaxPool2D(2, 2), Residual(128, 128), Residual(128, f))
            self.stacks = nn.HybridSequential()
            self.heads = nn.HybridSequential()
            self.remap_features = nn.HybridSequential()
            self.remap_heatmaps = nn.HybridSequential()
            for stack in range(num_stacks):
                body = nn.HybridSequential()
                body.add(Hourglass(depth, f, upsample), Residual(f, f), conv_bn(f, 1, f))
                self.stacks.add(body)
                self.heads.add(nn.Conv2D(num_keypoints, 1, in_channels=f, weight_initializer=HEATMAP_INIT))
                if stack < num_stacks - 1:
                    self.remap_features.add(nn.Conv2D(f, 1, in_channels=f))
                    self.remap_heatmaps.add(nn.Conv2D(f, 1, in_channels=num_keypoints))

    @staticmethod
    def input_stride(num_stacks: int, num_features: int, depth: int, upsample: str) -> int:
        """``4 · 2^depth``, the stride of the network built with these arguments (all checked)
        without building it."""
        for name, value in (("num_stacks", num_stacks), ("num_features", num_features), ("depth", depth)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        check_upsample(upsample)
        return KeypointNet.output_stride * 2 ** depth

    def hybrid_forward(self, F, x):
        x = self.stem(x)
        heatmaps = []
        for stack in range(self.num_stacks):
            features = self.stacks[stack](x)
            heatmaps.append(self.heads[stack](features))
            if stack < self.num_stacks - 1:
                x = x + self.remap_features[stack](features) + self.remap_heatmaps[stack](heatmaps[-1])
        return tuple(heatmaps)
