"""A network ready for inference: the network, the category it was trained on and its codec."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..build import build_codec, build_schema, load_run
from ..codec import HeatmapCodec
from ..families import ModelFamily
from ..schema import ALL, KeypointSchema

#: Input stride assumed for networks that do not state theirs (ONNX files say it in export.json).
DEFAULT_NET_STRIDE = 32


@dataclass
class KeypointModel:
    """A network ready for inference: it predicts the heatmaps of ``category``'s keypoints
    for inputs of ``codec.input_size`` (normalized as in training: :func:`test_transform`'s defaults)."""

    net: gluon.Block
    category: str
    codec: HeatmapCodec
    schema: KeypointSchema
    name: str = "model"
    config: "dict | None" = None

    @classmethod
    def from_config(cls, net: gluon.Block, config: dict, category: str, name: str = "model") -> "KeypointModel":
        """``net`` (built from ``config``, then trained, loaded, exported or converted) as the model of
        ``category`` that ``config`` describes: its codec, its schema. Every KeypointModel of a run
        or an export is made here."""
        return cls(net, category, build_codec(config), build_schema(config), name, config)

    @classmethod
    def from_run(cls, run_dir: "str | os.PathLike", ctx: Sequence[mx.Context]) -> "KeypointModel":
        """The best weights of a training run directory."""
        net, config, state = load_run(run_dir, ctx)
        return cls.from_config(net, config, state["category"], str(run_dir))

    def heatmaps(self, data: mx.nd.NDArray, flip: bool = False) -> np.ndarray:
        """Final heatmaps (N, K, h, w) float32 of a normalized batch; with ``flip`` averaged with
        those of the mirrored batch brought back by :meth:`HeatmapCodec.flip_back`."""
        heatmaps = self._final(data)
        if flip:
            mirrored = self._final(mx.nd.flip(data, axis=3))
            heatmaps = (heatmaps + HeatmapCodec.flip_back(mirrored, self.schema.flip_permutation(self.category))) / 2
        return heatmaps

    def _final(self, data: mx.nd.NDArray) -> np.ndarray:
        return ModelFamily.final(self.net(data)).astype("float32").asnumpy()

    @property
    def own_first_stage(self) -> bool:
        """Trained on whole images and on garment crops (0 < ``data.box_crop_p`` < 1): the model finds
        the garment's box itself, then refines on its crop (two stages in one network)."""
        return 0 < (self.config or {}).get("data", {}).get("box_crop_p", 0.0) < 1

    @property
    def input_size(self) -> tuple[int, int]:
        return self.codec.input_size

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this: the network stride and the heatmap stride."""
        return math.lcm(int(getattr(self.net, "stride", DEFAULT_NET_STRIDE)), self.codec.stride)

    def serves(self, category: str) -> bool:
        """Whether this model predicts ``category``'s keypoints (``all`` models serve every one)."""
        return self.category == category or (self.category == ALL and category != ALL)

    def channels(self, category: str) -> "list[int] | slice":
        """This model's output channels holding ``category``'s keypoints, in its order."""
        return slice(None) if self.category == category else list(self.schema.category_indices(category))
