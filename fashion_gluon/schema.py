"""Keypoint schemas: which keypoints exist, how they group into categories, which pairs a flip
exchanges and which pair normalizes the error — read from a small YAML/JSON file.

FashionAI's schema (24 keypoints, 5 categories) is the shipped default,
``fashion_gluon/schemas/fashionai.yaml``; any other file of the same form works everywhere
(``data.schema`` in a config, ``--schema`` on the command line)::

    name: my_garments
    keypoints: [collar_left, collar_right, hem_left, hem_right, ...]   # the CSV column order
    categories:
      shirt: {keypoints: [collar_left, collar_right, hem_left, hem_right], normalize: [hem_left, hem_right]}
      bag:   {keypoints: [...]}            # no normalize: errors are divided by the box diagonal
    flip_pairs: [[collar_left, collar_right], [hem_left, hem_right]]
    skeleton: [[collar_left, hem_left], ...]                             # optional, for pictures
    sigmas: {collar_left: 0.025, ...}     # optional: per-keypoint OKS sigma for COCO AP
    flippable: false                      # optional: never mirror images (no flip augmentation or test)

``sigmas`` are COCO's OKS constants (a fraction of the object's scale, √area), used by
``evaluate``'s AP; a keypoint without one gets :data:`DEFAULT_OKS_SIGMA`. ``flippable: false``
is written for schemas made from a COCO file whose keypoint names do not pair by left/right
(:func:`left_right_pairs`): mirroring would swap nothing where sides matter.

Conventions used everywhere in the package:

* A point is ``(x, y)`` in pixels; integer coordinates are pixel centres (OpenCV's
  ``warpAffine`` convention). Annotation arrays are ``(N, K, 3)`` holding ``(x, y, v)`` in
  *original image* pixels, ``v`` = 1 visible, 0 annotated but occluded, -1 absent, with
  ``K = schema.num_keypoints`` in the schema's order.
* Image-like arrays are ``(..., H, W)``; sizes are written ``(H, W)``.
* A model for one category predicts only that category's keypoints, in the order of
  :meth:`KeypointSchema.category_indices`; the ``all`` model predicts every keypoint.
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from .errors import ConfigError
from .fileio import atomic_write, shipped_names, shipped_or_path

ALL = "all"  # the joint model over every keypoint of the schema
#: Schemas shipped with the package, by name.
SCHEMA_DIR = Path(__file__).parent / "schemas"
DEFAULT_SCHEMA = "fashionai"
ID_COLUMNS: tuple[str, ...] = ("image_id", "image_category")
#: OKS sigma of a keypoint whose schema gives none: COCO's value for the eyes (0.025), its most
#: sharply located points; garment landmarks (seam ends, collar tips, hem corners) are as sharp,
#: and a strict constant keeps AP from flattering a model (mmpose's custom sets use it alike).
DEFAULT_OKS_SIGMA = 0.025
#: Side words that :func:`left_right_pairs` swaps (lower case), each way.
SIDE_WORDS: dict[str, str] = {"left": "right", "right": "left", "l": "r", "r": "l"}
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^A-Za-z\d]+")


@dataclass(frozen=True)
class KeypointSchema:
    """Keypoint names, categories (global indices), flip pairs, normalizing pairs and skeleton."""

    name: str
    keypoints: tuple[str, ...]
    categories: dict[str, tuple[int, ...]]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    norm_pairs: dict[str, "tuple[int, int] | None"] = field(default_factory=dict)
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: dict[int, float] = field(default_factory=dict)
    flippable: bool = True

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_dict(cls, doc: Any, source: str = "schema") -> "KeypointSchema":
        """A schema from its file form (see the module docstring); ConfigError naming ``source``
        and the problem for a duplicate name, an unknown name in a category, a flip pair that is
        not symmetric or leaves its category, a normalizing pair outside its category."""
        def fail(message: str) -> ConfigError:
            return ConfigError(f"{source}: {message}")

        if not isinstance(doc, dict) or not isinstance(doc.get("keypoints"), list) or not doc["keypoints"]:
            raise fail("a schema is a mapping with a non-empty 'keypoints' list and 'categories'")
        names = [str(n) for n in doc["keypoints"]]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise fail(f"duplicate keypoint name {duplicates[0]!r}")
        if ALL in (doc.get("categories") or {}):
            raise fail(f"{ALL!r} is reserved (the model over every keypoint) and cannot name a category")
        index = {n: i for i, n in enumerate(names)}

        def lookup(name: Any, where: str) -> int:
            if name not in index:
                raise fail(f"{where}: unknown keypoint {name!r}")
            return index[name]

        def pairs(value: Any, where: str) -> tuple[tuple[int, int], ...]:
            if not isinstance(value, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
                raise fail(f"{where} must be a list of [name, name] pairs")
            return tuple((lookup(a, where), lookup(b, where)) for a, b in value)

        categories: dict[str, tuple[int, ...]] = {}
        norm_pairs: dict[str, "tuple[int, int] | None"] = {}
        if not isinstance(doc.get("categories"), dict) or not doc["categories"]:
            raise fail("'categories' must map each category to {keypoints: [...], normalize: [a, b]}")
        for category, spec in doc["categories"].items():
            where = f"category {category!r}"
            if not isinstance(spec, dict) or not isinstance(spec.get("keypoints"), list) or not spec["keypoints"]:
                raise fail(f"{where} needs a non-empty 'keypoints' list")
            members = tuple(sorted(lookup(n, where) for n in spec["keypoints"]))
            if len(set(members)) != len(members):
                raise fail(f"{where} lists a keypoint twice")
            categories[str(category)] = members
            norm = spec.get("normalize")
            if norm is not None:
                (a, b), = pairs([norm], f"{where} normalize")
                if a not in members or b not in members or a == b:
                    raise fail(f"{where}: the normalizing pair {norm} must be two different keypoints of the category")
            norm_pairs[str(category)] = None if norm is None else (a, b)
        flips = pairs(doc.get("flip_pairs", []), "flip_pairs")
        seen: set[int] = set()
        for a, b in flips:
            if a == b or a in seen or b in seen:
                raise fail(f"flip pair [{names[a]}, {names[b]}] is not symmetric: each keypoint may appear in "
                           "one pair only, with another keypoint")
            seen.update((a, b))
            for category, members in categories.items():
                if (a in members) != (b in members):
                    raise fail(f"flip pair [{names[a]}, {names[b]}] leaves category {category!r}: both or "
                               "neither must belong to it")
        sigmas = doc.get("sigmas") or {}
        if not isinstance(sigmas, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                                   for v in sigmas.values()):
            raise fail("'sigmas' must map keypoint names to positive numbers (OKS sigmas)")
        if not isinstance(doc.get("flippable", True), bool):
            raise fail("'flippable' must be true or false")
        return cls(str(doc.get("name", "schema")), tuple(names), categories, flips, norm_pairs,
                   pairs(doc.get("skeleton", []), "skeleton"),
                   {lookup(n, "sigmas"): float(v) for n, v in sigmas.items()}, doc.get("flippable", True))

    def to_dict(self) -> dict:
        """The file form of this schema (names, not indices)."""
        names = self.keypoints
        categories = {}
        for category, members in self.categories.items():
            spec: dict = {"keypoints": [names[i] for i in members]}
            if self.norm_pairs.get(category) is not None:
                spec["normalize"] = [names[i] for i in self.norm_pairs[category]]
            categories[category] = spec
        return {"name": self.name, "keypoints": list(names), "categories": categories,
                "flip_pairs": [[names[a], names[b]] for a, b in self.flip_pairs],
                "skeleton": [[names[a], names[b]] for a, b in self.skeleton],
                **({"sigmas": {names[k]: v for k, v in sorted(self.sigmas.items())}} if self.sigmas else {}),
                **({} if self.flippable else {"flippable": False})}

    def save(self, path: "str | os.PathLike") -> None:
        """Write the schema file (YAML), atomically."""
        with atomic_write(path) as handle:
            yaml.safe_dump(self.to_dict(), handle, sort_keys=False, default_flow_style=None, width=100)

    # ------------------------------------------------------------------ queries

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(self.categories)

    @property
    def columns(self) -> tuple[str, ...]:
        """The header of an annotation or submission CSV."""
        return ID_COLUMNS + self.keypoints

    def check_category(self, category: str, allow_all: bool = True) -> str:
        """Return ``category`` or raise a ValueError naming the valid ones."""
        valid = self.category_names + ((ALL,) if allow_all else ())
        if category not in valid:
            raise ValueError(f"unknown category {category!r}; expected one of {', '.join(valid)}")
        return category

    def category_indices(self, category: str) -> tuple[int, ...]:
        """Global keypoint indices predicted by a model of ``category`` (``all``: every one)."""
        self.check_category(category)
        return tuple(range(self.num_keypoints)) if category == ALL else self.categories[category]

    def category_size(self, category: str) -> int:
        """Number of heatmap channels of a model of ``category``."""
        return len(self.category_indices(category))

    def flip_permutation(self, category: str = ALL) -> np.ndarray:
        """Channel permutation of a horizontal flip, in ``category``'s local channel order:
        ``flipped[..., perm[c], :, :]`` is the flip of channel ``c``; its own inverse."""
        indices = self.category_indices(category)
        partner = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            partner[a], partner[b] = b, a
        local = {g: i for i, g in enumerate(indices)}
        return np.array([local[partner[g]] for g in indices], dtype=np.int64)

    def oks_sigmas(self, indices: Sequence[int]) -> np.ndarray:
        """OKS sigmas of the keypoints ``indices`` (global), :data:`DEFAULT_OKS_SIGMA` where the schema gives none."""
        return np.array([self.sigmas.get(k, DEFAULT_OKS_SIGMA) for k in indices], dtype=np.float64)

    def category_mask(self, categories: "Sequence[str] | np.ndarray") -> np.ndarray:
        """Boolean (N, K) mask of the keypoints that belong to each row's category."""
        mask = np.zeros((len(categories), self.num_keypoints), dtype=bool)
        for row, category in enumerate(categories):
            mask[row, list(self.category_indices(category))] = True
        return mask

    def local_to_global(self, category: str, local: np.ndarray, fill: float = -1.0) -> np.ndarray:
        """Scatter ``(..., K_category, D)`` values into ``(..., K, D)``, ``fill`` elsewhere."""
        indices = list(self.category_indices(category))
        out = np.full(local.shape[:-2] + (self.num_keypoints, local.shape[-1]), fill, dtype=local.dtype)
        out[..., indices, :] = local
        return out


def _other_side(name: str) -> list[str]:
    """The names ``name`` becomes with one of its side words swapped (case kept), one per side word."""
    words = _WORD.findall(name)
    out = []
    for n, word in enumerate(words):
        other = SIDE_WORDS.get(word.lower())
        if other is not None:
            other = other.upper() if word.isupper() else other.capitalize() if word[0].isupper() else other
            out.append("".join(words[:n] + [other] + words[n + 1:]))
    return out


def left_right_pairs(names: Sequence[str], categories: "Sequence[Sequence[str]]" = ()) -> tuple[tuple[str, str], ...]:
    """Flip pairs of keypoint ``names`` that differ in one side word: ``left``/``right`` or
    ``l``/``r`` as a word of its own, anywhere and in any case (``left_x``/``right_x``,
    ``l_x``/``r_x``, ``x_left``/``x_right``, ``LeftEye``/``RightEye``; not ``lip``). Each name
    pairs once, with the first partner found, in the order of ``names``; a pair that
    would leave one of ``categories`` (each a list of names: both or neither) is dropped."""
    present, taken, pairs = set(names), set(), []
    for name in names:
        if name in taken:
            continue
        for other in _other_side(name):
            if other in present and other not in taken and other != name and all(
                    (name in members) == (other in members) for members in categories):
                pairs.append((name, other))
                taken.update((name, other))
                break
    return tuple(pairs)


def flip_note(source: str, pairs: Sequence[tuple[str, str]]) -> str:
    """The one line that says which flip pairs a schema made from ``source`` got, or that flips are off."""
    if pairs:
        return f"{source}: flip pairs by left/right names: {', '.join(f'{a}/{b}' for a, b in pairs)}"
    return (f"{source}: no keypoint names pair by left/right (left_x/right_x, l_x/r_x, x_left/x_right): flip "
            "augmentation and flip test are off (a schema file with flip_pairs turns them on)")


@functools.lru_cache(maxsize=None)
def _load_file(path: str) -> KeypointSchema:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read schema file {path}: {error.strerror or error}") from None
    try:
        doc = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                          f"{str(error).splitlines()[0]}") from None
    return KeypointSchema.from_dict(doc, path)


def schema_path(name: "str | os.PathLike") -> Path:
    """The file of a shipped schema's name (``fashionai``) or ``name`` itself as a path."""
    return shipped_or_path(name, SCHEMA_DIR)


def load_schema(name: "str | os.PathLike | KeypointSchema | None" = None) -> KeypointSchema:
    """A schema by shipped name or file path (None: FashionAI's, the default); a schema is returned as is."""
    if isinstance(name, KeypointSchema):
        return name
    path = schema_path(DEFAULT_SCHEMA if name is None else name)
    if not path.is_file():
        raise ConfigError(f"schema file not found: {path} (shipped schemas: {shipped_names(SCHEMA_DIR)})")
    return _load_file(str(path.resolve()))


__all__ = ["ALL", "ID_COLUMNS", "DEFAULT_SCHEMA", "DEFAULT_OKS_SIGMA", "KeypointSchema", "load_schema", "schema_path",
           "left_right_pairs", "flip_note"]
