"""Parameter and MAC counts: a hand-built net worked out by hand, gluoncv ResNet-50
and, once the model registry exists, the CPN / Hourglass paper anchors."""
from __future__ import annotations

import pytest
from mxnet import gluon, nd

from fashion_gluon.tools.summary import count_macs, count_params, format_summary, layer_macs, summarize

# On a 1×3×8×8 input (by hand):
#   conv1  3→4, 3×3, pad 1, bias      params 4·3·9 + 4 = 112   out 4×8×8 = 256 el. × 3·9   = 6912 MACs
#   bn     4 channels                  params 8 trainable (+ 8 running statistics, not counted)
#   conv2  4→6, 3×3/2, 2 groups, no b  params 6·2·9 = 108      out 6×4×4 = 96 el. × 2·9    = 1728 MACs
#   deconv 6→2, 4×4/2, pad 1, bias     params 6·2·16 + 2 = 194 in 96 el. × 2·16            = 3072 MACs
#   dense  2·8·8 = 128 → 5, bias       params 5·128 + 5 = 645                   5 × 128    = 640 MACs
PARAMS = 112 + 8 + 108 + 194 + 645
MACS = 6912 + 1728 + 3072 + 640


class TinyNet(gluon.HybridBlock):
    """Two outputs, like the pose models: the deconv map and the dense vector."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv1 = gluon.nn.Conv2D(4, 3, padding=1)
            self.bn = gluon.nn.BatchNorm()
            self.conv2 = gluon.nn.Conv2D(6, 3, strides=2, padding=1, groups=2, use_bias=False)
            self.deconv = gluon.nn.Conv2DTranspose(2, 4, strides=2, padding=1)
            self.dense = gluon.nn.Dense(5)

    def hybrid_forward(self, F, x):
        heatmap = self.deconv(F.relu(self.conv2(self.bn(self.conv1(x)))))
        return heatmap, self.dense(heatmap)


def test_tiny_net_params_and_macs_by_hand():
    net = TinyNet()
    assert count_params(net, (1, 3, 8, 8)) == PARAMS
    assert count_macs(net, (1, 3, 8, 8)) == MACS
    assert count_macs(net, (2, 3, 8, 8)) == 2 * MACS
    assert sorted(layer_macs(net, (1, 3, 8, 8)).values()) == [640, 1728, 3072, 6912]


def test_count_params_after_initialization_and_frozen_parameters():
    net = TinyNet()
    net.initialize()
    net(nd.zeros((1, 3, 8, 8)))
    assert count_params(net) == PARAMS
    net.conv1.collect_params().setattr("grad_req", "null")
    assert count_params(net) == PARAMS - 112


def test_count_params_needs_shapes():
    with pytest.raises(ValueError, match="^parameter shapes are not known yet: give input_shape"):
        count_params(TinyNet())


class Unused(gluon.HybridBlock):
    """A block with a deferred-shape layer its forward never calls."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = gluon.nn.Conv2D(2, 1)
        self.unused = gluon.nn.Dense(3, prefix="unused_")

    def hybrid_forward(self, F, x):
        return self.conv(x)


def test_unused_deferred_parameter_is_reported():
    net = Unused()
    with pytest.raises(ValueError, match="^cannot infer the shape of unused_weight: not used"):
        count_params(net, (1, 3, 4, 4))


def test_summarize_block_and_format():
    summary = summarize(TinyNet(), input_size=(8, 8))
    assert summary["params"] == PARAMS and summary["macs"] == MACS
    assert summary["outputs"] == [(1, 2, 8, 8), (1, 5)]
    text = format_summary(summary)
    assert "1x3x8x8" in text and "1x2x8x8, 1x5" in text and f"({PARAMS:,})" in text


def test_resnet50_known_values():
    """ResNet-50 at 224²: 25.56 M parameters, 4.1 GMACs (He et al. report 3.8 GFLOPs
    for v1; the v1b stride-on-3×3 variant is the commonly cited 4.1)."""
    from gluoncv.model_zoo import get_model
    summary = summarize(get_model("resnet50_v1b"), input_size=(224, 224))
    assert summary["params"] == pytest.approx(25.6e6, rel=0.03)
    assert summary["gmacs"] == pytest.approx(4.1, rel=0.03)


# Registry models at the papers' 256×192 input, K = 17 (COCO). Feature maps at
# strides 4/8/16/32 have P2..P5 = 3072, 768, 192, 48 pixels. A CPN/Hourglass
# bottleneck 256 → 128 → 128 → 256 costs 256·128 + 128·128·9 + 128·256 = 212 992 MACs per pixel.
P2, P3, P4, P5 = 64 * 48, 32 * 24, 16 * 12, 8 * 6
BOTTLENECK = 256 * 128 + 128 * 128 * 9 + 128 * 256


def test_cpn_resnet50_params_anchor_and_macs_by_hand():
    """Params hit the paper's 27.0 M. The paper's 6.2 GFLOPs is not reached: this
    count is 7.23 G, of which the RefineNet's fusing bottleneck on the 1024-channel
    concat at ¼ resolution alone is 1.76 G (0.81 G its 1×1 projection shortcut)."""
    from gluoncv.model_zoo import get_model as gluoncv_model
    summary = summarize("cpn_resnet50", input_size=(256, 192), num_keypoints=17)
    assert summary["params"] == pytest.approx(27.0e6, rel=0.05)
    resnet = layer_macs(gluoncv_model("resnet50_v1b"), (1, 3, 256, 192))
    backbone = sum(v for name, v in resnet.items() if "dense" not in name)
    global_net = (256 * (P5 * 2048 + P4 * 1024 + P3 * 512 + P2 * 256)   # laterals
                  + (P4 + P3 + P2) * 256 * 256                          # top-down 1×1
                  + (P2 + P3 + P4 + P5) * (256 * 256 + 256 * 9 * 17))   # heads
    refine_net = ((3 * P5 + 2 * P4 + P3) * BOTTLENECK
                  + P2 * (1024 * 128 + 128 * 128 * 9 + 128 * 256 + 1024 * 256)  # fuse + projection
                  + P2 * 256 * 9 * 17)
    assert summary["macs"] == backbone + global_net + refine_net
    assert summary["outputs"] == [(1, 17, 64, 48)] * 5


def test_hourglass8_params_anchor_and_macs_by_hand():
    """Params hit the paper's 25.1 M (±5 %). The HRNet table's 14.3 GFLOPs is not
    reached: Newell's design at 64×48 features costs 20.6 GMACs (each stack's
    depth-4 hourglass alone 6132 px × 212 992 = 1.31 G)."""
    summary = summarize("hourglass", input_size=(256, 192), num_keypoints=17, num_stacks=8)
    assert summary["params"] == pytest.approx(25.1e6, rel=0.05)
    stem = (128 * 96 * (64 * 3 * 49                                  # 7×7/2 conv
                        + 64 * 64 + 64 * 64 * 9 + 64 * 128 + 64 * 128)  # residual 64 → 128
            + P2 * (128 * 64 + 64 * 64 * 9 + 64 * 128)                  # residual 128 → 128
            + P2 * (128 * 128 + 128 * 128 * 9 + 128 * 256 + 128 * 256))  # residual 128 → 256
    hourglass = (P2 + 3 * (P3 + P4 + P5 + 12)) * BOTTLENECK          # depth 4, innermost 4×3
    stack = hourglass + P2 * (BOTTLENECK + 256 * 256 + 256 * 17)     # + residual, 1×1, heatmaps
    remap = P2 * (256 * 256 + 17 * 256)                               # back into the trunk
    assert summary["macs"] == stem + 8 * stack + 7 * remap
    assert len(summary["outputs"]) == 8


def test_bench_model_smoke_and_derived_figures():
    from fashion_gluon.tools.bench import bench_model
    result = bench_model("hourglass_small", batch=1, size=64, num_keypoints=3, warmup=1, iters=1,
                         limits={"precisions": {"fp32": {"gflops": 100.0}}})
    assert result["gmacs_per_img"] == pytest.approx(summarize("hourglass_small", (64, 64), 3)["gmacs"])
    assert result["infer_gflops"] == pytest.approx(2 * result["gmacs_per_img"] * result["infer_img_per_s"])
    assert result["train_gflops"] == pytest.approx(6 * result["gmacs_per_img"] * result["train_img_per_s"])
    assert result["infer_limit_share"] == pytest.approx(result["infer_gflops"] / 100.0)
    assert result["train_limit_share"] == pytest.approx(result["train_gflops"] / 100.0)
    assert result["infer_img_per_s"] > 0 and result["train_img_per_s"] > 0
