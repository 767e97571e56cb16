"""Inference: heatmaps from one or more networks, test-time augmentation, decoding back to
original image pixels, and validated submissions.

Decisions (documented once, here):

* **Common heatmap frame.** Every network input is an axis-aligned resize of the same image
  region (the whole image, or the cascade's crop box), and heatmaps keep the half-pixel
  convention of :mod:`fashion_gluon.codec`. Heatmaps of any input size are therefore
  brought *exactly* into one reference frame by a half-pixel bilinear resize (``cv2.resize``)
  to the reference heatmap size: that of the first checkpoint serving the category, at
  scale 1. Multi-scale test and ensembles of checkpoints (even with different input sizes)
  both average heatmaps in that frame before decoding; no coordinate averaging is needed.
* **Routing.** A category is served by every checkpoint of that category *and* every ``all``
  checkpoint (its channels of the category are used); the ``all`` pseudo-category (all K
  keypoints of an image of unknown category) only by ``all`` checkpoints.
* **Scales** multiply the trained input size; each side is rounded to a multiple of the
  network stride (``net.stride``, else 32) and of the heatmap stride. Scale 1 is the trained size.
* **Cascade** (the seed's two-pass crop): the box around a first-pass prediction extends
  ±100 px in x and ±80 px in y *per 512 px* of image width / height (the seed's margins on its
  512×512 images, scaled so any image size behaves alike), clipped to the image. The second
  pass runs on the crop with the same flip / scales / checkpoints; its keypoints are final.
* **Scores.** A keypoint's score is the maximum of the heatmap that is decoded: the mean over
  checkpoints × scales (× flip) in the reference frame (of the second pass with the cascade).
  A sharp, confident peak scores near the training targets' peak 1; a flat or split map lower.
* **Object boxes** (a test file with boxes, e.g. COCO): each object is cropped by its box as in
  training (:func:`~fashion_gluon.data.transforms.crop_to_box`, the checkpoint's
  ``data.box_margin``, widened to the input's aspect); the cascade, when on, refines inside it.
* **Two stages** (top-down): with ``stage1`` checkpoints (by default the checkpoints themselves
  when each was trained on whole images and on crops, :attr:`KeypointModel.own_first_stage`), a
  first pass of those (flip as set,
  scale 1) over each whole image (or its object box) finds the garment: the box of its
  predicted points that score at least :data:`STAGE1_SCORE_SHARE` of the object's best (a
  keypoint the photo does not show gives a weak, arbitrary peak). The checkpoints then predict
  on that box, cropped as training cropped its labelled points' box (``data.box_crop_p``,
  ``box_margin``), with flip / scales / cascade as set. Without a first stage, a model trained
  only on crops (``data.box_crop_p`` = 1) is validated on ground-truth boxes (the labelled
  points' box), as top-down pose models are.
* **Clipping.** Keypoints are clipped to the image's pixel centres, [0, W − 1] × [0, H − 1]:
  sub-pixel decoding may put a peak on the border row or column up to half a heatmap pixel
  past them (a submission needs non-negative coordinates inside the image), and clipping
  never moves a point away from an annotation, which is a pixel of the image.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator, Sequence, Union

import cv2
import mxnet as mx
import numpy as np
from mxnet import gluon
from tqdm import tqdm

from ..data.annotations import Annotations
from ..data.dataset import KeypointDataset
from ..data.images import read_image
from ..data.layout import Source
from ..data.sources import HELD_OUT_SPLITS, load_split, training_data
from ..data.transforms import BOX_MARGIN, Sample, crop, crop_to_box, inverse_transform_points, points_box, resize, test_transform
from ..errors import DataError, FashionGluonError
from ..schema import ALL, KeypointSchema
from .load import load_model
from .model import KeypointModel

#: Seed's cascade margins (x, y) in pixels of a 512 × 512 image; scaled with the image size.
CASCADE_MARGIN: tuple[float, float] = (100.0, 80.0)
CASCADE_REFERENCE = 512.0
#: A first-stage keypoint counts toward its object's box when it scores at least this share of
#: the object's best keypoint.
STAGE1_SCORE_SHARE = 0.25

ImageInput = Union[str, os.PathLike, np.ndarray]


def model_heatmaps(model: KeypointModel, data: mx.nd.NDArray, ctx: Sequence[mx.Context],
                   flip: bool = False) -> np.ndarray:
    """:meth:`KeypointModel.heatmaps` of a batch split over the contexts ``ctx``."""
    parts = gluon.utils.split_and_load(data, list(ctx), even_split=False)
    return np.concatenate([model.heatmaps(part, flip) for part in parts])


# ----------------------------------------------------------------------------- geometry


def scaled_size(size: tuple[int, int], scale: float, multiple: int) -> tuple[int, int]:
    """``size`` (H, W) × ``scale``, each side rounded (half up) to a positive multiple of ``multiple``."""
    if scale <= 0:
        raise ValueError(f"scales must be positive, got {scale}")
    return tuple(max(1, math.floor(side * scale / multiple + 0.5)) * multiple for side in size)


def resize_heatmaps(heatmaps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Heatmaps (N, K, h, w) resized to ``size`` (H', W') with half-pixel bilinear
    interpolation (cv2's convention, which keeps the codec's geometry exact); unchanged
    when already of that size."""
    n, k, h, w = heatmaps.shape
    if (h, w) == tuple(size):
        return heatmaps
    planes = np.ascontiguousarray(heatmaps.reshape(n * k, h, w).transpose(1, 2, 0), dtype=np.float32)
    chunks = [cv2.resize(chunk, (size[1], size[0]), interpolation=cv2.INTER_LINEAR).reshape(size + (-1,))
              for chunk in np.array_split(planes, range(512, n * k, 512), axis=2)]
    return np.concatenate(chunks, axis=2).transpose(2, 0, 1).reshape(n, k, *size)


def cascade_margins(image_sizes: np.ndarray) -> np.ndarray:
    """Cascade margins (N, 2) as (x, y) pixels for images of ``image_sizes`` (N, 2) = (H, W):
    :data:`CASCADE_MARGIN` per :data:`CASCADE_REFERENCE` pixels of width / height."""
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    return sizes[:, ::-1] * np.asarray(CASCADE_MARGIN) / CASCADE_REFERENCE


def stage1_boxes(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Object boxes (N, 4) ``(x0, y0, x1, y1)`` of first-stage predictions ``points`` (N, K, 3) =
    (x, y, score) over the keypoints of ``mask`` (N, K) (the objects' categories): the box of the
    points scoring at least :data:`STAGE1_SCORE_SHARE` of the object's best; NaN (the whole
    image) where those span no area."""
    boxes = np.full((len(points), 4), np.nan)
    for i, (obj, inside) in enumerate(zip(np.asarray(points, dtype=np.float64), mask)):
        scores = obj[inside, 2]
        if len(scores):
            box = points_box(obj[inside][scores >= STAGE1_SCORE_SHARE * scores.max(), :2])
            boxes[i] = np.nan if box is None else box
    return boxes


def cascade_boxes(points: np.ndarray, image_sizes: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Crop boxes (N, 4) int64 ``(x0, y0, x1, y1)`` (end exclusive) around each image's
    ``points`` (N, K, 2) extended by ``margins`` (N, 2) or (2,) as (x, y), clipped to images of
    ``image_sizes`` (N, 2) = (H, W). Every box holds at least one pixel."""
    points = np.asarray(points, dtype=np.float64)
    hw = np.asarray(image_sizes, dtype=np.int64).reshape(-1, 2)
    limit = hw[:, ::-1] - 1  # largest pixel centre (x, y)
    lo = np.clip(np.floor(points.min(axis=1) - margins), 0, limit)
    hi = np.clip(np.ceil(points.max(axis=1) + margins), lo, limit)
    return np.concatenate([lo, hi + 1], axis=1).astype(np.int64)


# ----------------------------------------------------------------------------- models


class _InferenceDataset(gluon.data.Dataset):
    """Items ``(*inputs, reference matrix (3, 3), image size (H, W), index)``: the image (or its
    cascade ``boxes`` crop, else its ``objects`` box crop) resized to each of ``sizes`` and
    normalized, and the matrix from original pixels to the ``reference`` input frame."""

    def __init__(self, images: Sequence[ImageInput], sizes: Sequence[tuple[int, int]],
                 reference: tuple[int, int], boxes: "np.ndarray | None", objects: "np.ndarray | None" = None,
                 box_margin: float = BOX_MARGIN):
        self.images, self.sizes, self.reference, self.boxes = list(images), list(sizes), reference, boxes
        self.objects, self.box_margin = objects, box_margin
        self.transforms = [test_transform(size) for size in self.sizes]

    def __len__(self) -> int:
        return len(self.images)

    def _framed(self, index: int) -> tuple[np.ndarray, Sample]:
        """The original image and its Sample framed on the crop box (if any), before resizing."""
        image = load_image(self.images[index])
        sample = Sample.from_image(image)
        if self.boxes is not None:
            return image, crop(sample, self.boxes[index])
        if self.objects is not None and np.isfinite(self.objects[index]).all():
            (height, width) = self.reference
            return image, crop_to_box(sample, self.objects[index], self.box_margin, width / height)
        return image, sample

    def __getitem__(self, index: int):
        image, sample = self._framed(index)
        inputs = [transform(sample).image for transform in self.transforms]
        matrix = resize(sample, self.reference).matrix
        return (*inputs, matrix, np.array(image.shape[:2], dtype=np.int64), index)


def load_image(image: ImageInput) -> np.ndarray:
    """An RGB uint8 image from a file path, or the array itself (checked)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image arrays must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
        return image
    return read_image(image)


def _as_contexts(ctx: "mx.Context | Sequence[mx.Context] | None") -> list[mx.Context]:
    if ctx is None:
        return [mx.cpu()]
    return [ctx] if isinstance(ctx, mx.Context) else list(ctx)


# ----------------------------------------------------------------------------- predictor


class Predictor:
    """Keypoints of any images in original pixels, from one or more checkpoints with flip,
    multi-scale and two-pass cascade test-time augmentation (see the module docstring).

    ``checkpoints``: run directories, exported models (symbol, ONNX, INT8; see
    :mod:`fashion_gluon.inference.export`) and/or :class:`KeypointModel` objects; ``precision="bf16"``
    runs fp32 MXNet models in bfloat16 on the CPU; ``runtime`` as :func:`load_model`;
    ``decode`` (one of :data:`~fashion_gluon.codec.DECODERS`) overrides the decoding rule of every checkpoint.
    ``flip`` is off for a schema that is not flippable (see :mod:`fashion_gluon.schema`).
    ``stage1``: checkpoints (or a Predictor) whose first pass finds each garment's box for these
    checkpoints to refine (two-stage prediction, see the module docstring); ``"auto"``: the
    checkpoints themselves if each is its own first stage, else none; None: one stage.
    """

    def __init__(self, checkpoints: Sequence["str | os.PathLike | KeypointModel"], flip: bool = True,
                 scales: Sequence[float] = (1.0,), cascade: bool = False,
                 ctx: "mx.Context | Sequence[mx.Context] | None" = None, batch_size: int = 8, *,
                 num_workers: int = 0, progress: bool = False, precision: str = "fp32", runtime: str = "auto",
                 decode: "str | None" = None,
                 stage1: "Sequence[str | os.PathLike | KeypointModel] | Predictor | str | None" = "auto"):
        self.ctx = _as_contexts(ctx)
        if not checkpoints:
            raise FashionGluonError("the predictor needs at least one checkpoint")
        self.models = [c if isinstance(c, KeypointModel) else load_model(c, self.ctx, precision, runtime)
                       for c in checkpoints]
        if decode is not None:  # another decoding rule than the checkpoints' configs name (the codec checks it)
            self.models = [dataclasses.replace(m, codec=m.codec.with_decode(decode)) for m in self.models]
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise FashionGluonError(f"scales must be positive numbers, got {tuple(scales)}")
        self.flip, self.cascade = bool(flip), bool(cascade)
        self.batch_size, self.num_workers, self.progress = int(batch_size), int(num_workers), progress
        schemas = {m.schema.name: m.schema for m in self.models}
        if len(schemas) > 1 or any(m.schema != self.models[0].schema for m in self.models):
            raise FashionGluonError(f"the checkpoints were trained with different keypoint schemas "
                                    f"({', '.join(sorted(schemas))}); predict with one schema at a time")
        self.flip = self.flip and self.schema.flippable  # a schema without sides is never mirrored
        if isinstance(stage1, str) and stage1 == "auto":
            stage1 = self.models if all(m.own_first_stage for m in self.models) else None
        if stage1 is not None and not isinstance(stage1, Predictor):
            stage1 = Predictor(stage1, flip=self.flip, ctx=self.ctx, batch_size=self.batch_size, num_workers=num_workers,
                               progress=progress, precision=precision, runtime=runtime, stage1=None) if stage1 else None
        if stage1 is not None and stage1.schema != self.schema:
            raise FashionGluonError(f"the first stage was trained with keypoint schema {stage1.schema.name!r}, the "
                                    f"checkpoints with {self.schema.name!r}; both stages need one schema")
        self.stage1 = stage1

    @property
    def schema(self) -> KeypointSchema:
        """The keypoint schema every checkpoint shares."""
        return self.models[0].schema

    # -- routing

    @property
    def covered(self) -> list[str]:
        """Categories the checkpoints were trained on (``all`` covers every category)."""
        return sorted({m.category for m in self.models})

    def models_for(self, category: str) -> list[KeypointModel]:
        """The checkpoints that serve ``category``."""
        return [m for m in self.models if m.serves(category)]

    def check_routing(self, categories: Sequence[str]) -> None:
        """Raise one FashionGluonError listing every category of ``categories`` with no model."""
        names, counts = np.unique(np.asarray(categories, dtype=object).astype(str), return_counts=True)
        for name in names:
            self.schema.check_category(name)
        missing = [f"{name!r} ({count} image{'s' if count > 1 else ''})"
                   for name, count in zip(names, counts) if not self.models_for(name)]
        if missing:
            raise FashionGluonError(
                f"no model for category {', '.join(missing)}; the checkpoints cover: {', '.join(self.covered)} "
                f"(pass a checkpoint of each category, or one trained on 'all')")

    def default_category(self) -> str:
        """The category of images given without one: ``all`` with an ``all`` checkpoint, else
        the single category the checkpoints cover."""
        covered = self.covered
        if ALL in covered:
            return ALL
        if len(covered) == 1:
            return covered[0]
        raise FashionGluonError(f"the checkpoints cover several categories ({', '.join(covered)}): "
                                f"pass each image's category")

    # -- prediction

    def predict(self, images: Sequence[ImageInput], categories: "Sequence[str] | str | None" = None,
                boxes: "np.ndarray | None" = None, scores: bool = False) -> np.ndarray:
        """Keypoints (N, K, 2) in original image pixels of ``images`` (paths or uint8 RGB
        arrays), clipped to the image; −1 for keypoints outside each image's category.
        ``categories``: one per image, one for all, or None (:meth:`default_category`); ``all``
        predicts every keypoint of the schema. ``boxes`` (N, 4): each object's box
        ``(x0, y0, x1, y1)``, cropped as in training (NaN rows: the whole image). With ``scores``,
        (N, K, 3) holding (x, y, score): a point's score is the maximum of its fused heatmap (the
        mean over checkpoints, scales and flip that is decoded; of the cascade's second pass), −1
        outside the category."""
        images = list(images)
        if boxes is not None and np.shape(boxes) != (len(images), 4):
            raise ValueError(f"boxes must be ({len(images)}, 4), got {np.shape(boxes)}")
        if categories is None or isinstance(categories, str):
            categories = [categories or self.default_category()] * len(images)
        if len(categories) != len(images):
            raise ValueError(f"got {len(categories)} categories for {len(images)} images")
        self.check_routing(categories)
        if self.stage1 is not None:
            boxes = self.find_boxes(images, categories, boxes)
        categories = np.asarray(categories, dtype=object)
        out = np.full((len(images), self.schema.num_keypoints, 3), -1.0)
        for category in dict.fromkeys(categories):
            rows = np.flatnonzero(categories == category)
            objects = None if boxes is None else np.asarray(boxes, dtype=np.float64)[rows]
            out[rows] = self.schema.local_to_global(category, self._predict_category([images[r] for r in rows], category,
                                                                                     objects))
        return out if scores else out[..., :2]

    def find_boxes(self, images: Sequence[ImageInput], categories: Sequence[str],
                   boxes: "np.ndarray | None" = None) -> np.ndarray:
        """The first stage's object boxes (N, 4) of ``images`` (inside ``boxes`` where given; see
        :func:`stage1_boxes`)."""
        if self.stage1 is None:
            raise FashionGluonError("this predictor has no first stage (stage1) to find boxes with")
        first = self.stage1.predict(images, categories, boxes, scores=True)
        return stage1_boxes(first, self.schema.category_mask(np.asarray(categories, dtype=object)))

    def predict_split(self, data: "str | os.PathLike | Source | None", split: str = "test", scores: bool = False
                      ) -> tuple[Annotations, np.ndarray]:
        """(rows of ``split``, their predicted keypoints (N, K, 2), or (N, K, 3) with ``scores`` as
        :meth:`predict`): ``test`` of ``data`` (a data-root folder or a test source
        ``FILE[:IMAGE_DIR]``), in the list's order; ``val`` as the first checkpoint was validated on
        it (its config's sources, ``val_fraction`` and ``split_seed``; ``data``, a data-root folder,
        when the config names no sources)."""
        if split not in HELD_OUT_SPLITS:
            raise FashionGluonError(f"a prediction is of a held-out split ({', '.join(HELD_OUT_SPLITS)}), got {split!r}")
        config = (self.models[0].config or {}).get("data", {})
        if split != "test":
            data = training_data(config.get("train_files", []), data)
        elif data is None:
            raise FashionGluonError("the test split needs --data-root ROOT or --test FILE[:IMAGE_DIR]")
        rows = load_split(data, split, ALL, config.get("val_fraction", 0.1), config.get("split_seed", 0), self.schema)
        # each row's image from its source (a file, or a pack's record); without a first stage, a
        # crop-trained model's ground-truth boxes (see the module docstring)
        images = KeypointDataset(rows, box_crop_p=0.0 if self.stage1 else config.get("box_crop_p", 0.0))
        return rows, self.predict([images.image_input(r) for r in range(len(rows))], rows.categories, images.boxes(),
                                  scores=scores)

    def predict_files(self, paths: Sequence["str | os.PathLike"], category: "str | None" = None,
                      scores: bool = False) -> tuple[Annotations, np.ndarray, list[str]]:
        """(rows of the readable images (``image_id`` = the path as given), their keypoints (N, K, 2)
        or, with ``scores``, (N, K, 3) as :meth:`predict`, one line per image that could not be read):
        a bad file is reported, the others predicted.
        ``category`` (one for all the images) defaults to :meth:`default_category`."""
        category = category or self.default_category()
        if category == ALL:
            raise FashionGluonError("these checkpoints predict every category: say which one the images show "
                                    f"(--category {'|'.join(self.schema.category_names)})")
        self.check_routing([category])
        good, skipped = [], []
        for path in paths:
            try:
                load_image(path)
            except DataError as error:
                skipped.append(str(error))
            else:
                good.append(str(path))
        rows = Annotations(good, [category] * len(good), None, self.schema)
        keypoints = (self.predict(good, category, scores=scores) if good
                     else np.zeros((0, self.schema.num_keypoints, 3 if scores else 2)))
        return rows, keypoints, skipped

    def heatmaps(self, image: ImageInput, category: "str | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """(averaged heatmaps (K, h, w) of ``category``'s keypoints, the RGB input frame
        (H, W, 3) they cover) of one image, as used for its final keypoints (the second pass
        with ``cascade``)."""
        category = category or self.default_category()
        self.check_routing([category])
        models = self.models_for(category)
        objects = self.find_boxes([image], [category]) if self.stage1 is not None else None
        boxes = self._cascade_boxes([image], category, models, objects) if self.cascade else None
        heatmaps, matrices, _, _ = next(self._heatmap_batches([image], category, models, boxes, objects))
        (height, width), matrix = models[0].input_size, matrices[0]
        frame = cv2.warpAffine(load_image(image), matrix[:2], (width, height), flags=cv2.INTER_LINEAR)
        return heatmaps[0], frame

    def _predict_category(self, images: list, category: str, objects: "np.ndarray | None" = None) -> np.ndarray:
        """Keypoints with scores (N, K_category, 3) in original pixels of images (or their ``objects``
        boxes) of one category."""
        models = self.models_for(category)
        boxes = self._cascade_boxes(images, category, models, objects) if self.cascade else None
        return self._predict_pass(images, category, models, boxes, objects)[0]

    def _cascade_boxes(self, images: list, category: str, models: list[KeypointModel],
                       objects: "np.ndarray | None" = None) -> np.ndarray:
        """The second-pass crop boxes (N, 4) from a first pass over the whole images (or object boxes)."""
        points, sizes = self._predict_pass(images, category, models, None, objects)
        return cascade_boxes(points[..., :2], sizes, cascade_margins(sizes))

    def _predict_pass(self, images: list, category: str, models: list[KeypointModel],
                      boxes: "np.ndarray | None", objects: "np.ndarray | None" = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints with scores (N, K, 3) as (x, y, score) in original pixels, image sizes (N, 2)
        as (H, W)) of one pass; a score is the maximum of the fused heatmap that is decoded."""
        points = np.zeros((len(images), self.schema.category_size(category), 3))
        sizes = np.zeros((len(images), 2), dtype=np.int64)
        codec = models[0].codec
        for heatmaps, matrices, image_sizes, rows in self._heatmap_batches(images, category, models, boxes,
                                                                             objects):
            decoded, scores = codec.decode(heatmaps)
            points[rows, :, :2] = np.clip(inverse_transform_points(decoded, matrices), 0, image_sizes[:, None, ::-1] - 1)
            points[rows, :, 2] = scores
            sizes[rows] = image_sizes
        return points, sizes

    def _heatmap_batches(self, images: list, category: str, models: list[KeypointModel],
                         boxes: "np.ndarray | None", objects: "np.ndarray | None" = None
                         ) -> Iterator[tuple[np.ndarray, ...]]:
        """Per batch: (heatmaps (B, K, h, w) averaged over checkpoints × scales (× flip) in the
        reference frame, matrices (B, 3, 3) original → reference input, image sizes (B, 2), rows)."""
        reference = models[0]
        runs = [(model, scaled_size(model.input_size, scale, model.size_multiple))
                for model in models for scale in self.scales]
        sizes = list(dict.fromkeys(size for _, size in runs))
        margin = float(((reference.config or {}).get("data") or {}).get("box_margin", BOX_MARGIN))
        dataset = _InferenceDataset(images, sizes, reference.input_size, boxes, objects, margin)
        loader = gluon.data.DataLoader(dataset, batch_size=self.batch_size, shuffle=False,
                                       num_workers=self.num_workers, last_batch="keep")
        for *inputs, matrices, image_sizes, rows in tqdm(loader, desc=f"predict {category}", leave=False,
                                                         disable=not self.progress):
            total = sum(self._run(model, inputs[sizes.index(size)], category, reference.codec.heatmap_size)
                        for model, size in runs)
            yield (total / len(runs), matrices.asnumpy(), image_sizes.asnumpy(),
                   rows.asnumpy().astype(np.int64))

    def _run(self, model: KeypointModel, data: mx.nd.NDArray, category: str,
             heatmap_size: tuple[int, int]) -> np.ndarray:
        """One checkpoint's heatmaps (B, K, h, w) of ``category`` for ``data``, in the reference frame."""
        heatmaps = model_heatmaps(model, data, self.ctx, self.flip)[:, model.channels(category)]
        return resize_heatmaps(heatmaps, heatmap_size)


__all__ = ["Predictor", "model_heatmaps", "scaled_size", "resize_heatmaps", "cascade_boxes", "cascade_margins",
           "stage1_boxes", "load_image", "CASCADE_MARGIN", "STAGE1_SCORE_SHARE"]
