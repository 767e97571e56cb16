"""Experiment configuration: nested defaults, YAML files and ``key=value`` overrides.

A config is a plain nested dict. Every valid key exists in :data:`DEFAULTS`;
a YAML file or an override naming any other key is an error that lists the
closest valid keys, so a typo never silently trains the wrong experiment. Every
value is checked when the config is loaded (:func:`validate`: types, choices,
ranges, the model name and an input size the model accepts), before any data is read. A
choice is checked against the table of the module that implements it: ``codec.decode``
against :data:`~.codec.DECODERS` here; the ``train`` section's optimizer, schedule, precision
and kvstore by the training engine (``engine.trainer.check_train_choices``, above this layer),
before a run starts. Both give the one line of :func:`check_choice`. The ``loss`` section is
:class:`~.losses.LossOptions`' (its keys, defaults and ranges); every range gives the one line of
:meth:`~.checks.Rule.check`.
"""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from .checks import Rule
from .codec import DECODERS
from .errors import ConfigError, quoted, shorten
from .fileio import atomic_write, shipped_names, shipped_or_path
from .losses import LossOptions
from .models.registry import check_input_size, model_class
from .schema import load_schema

DEFAULTS: dict[str, Any] = {
    "model": {
        "name": "cpn_resnet50",
        "pretrained": False,        # False | True (gluoncv model store) | path to a .params file
        "kwargs": {},               # extra keyword arguments of the model constructor
    },
    "data": {
        "schema": "fashionai",      # keypoint schema: a shipped name or a YAML/JSON file (fashion_gluon/schema.py)
        "train_files": [],          # training sources FILE[:IMAGE_DIR] (--train); empty: --data-root's train/
        "box_margin": 1.25,         # an object's box is enlarged this much before its crop
        "box_crop_p": 0.0,          # top-down training: share of items cropped to their labelled points' box
        "box_jitter": 0.0,          # training boxes moved and scaled by up to ± this share (a first stage's error)
        "input_size": [384, 384],   # (H, W) of the network input
        "stride": 4,                # heatmap stride
        "sigma": 2.0,               # base Gaussian sigma, heatmap pixels
        "val_fraction": 0.1,        # share of the training images held out per category
        "split_seed": 0,
        "num_workers": 2,
        "rotate_p": 0.4,
        "max_rotate": 30.0,
        "flip_p": 0.5,
        "crop_area": [0.45, 1.0],   # crop area / frame area (uniform); above 1 zooms out (data.transforms.RandomCrop)
        "crop_aspect": [0.75, 1.33],
        "crop_margin": 25,
        "color": True,
    },
    "codec": {
        "decode": "dark",           # a codec.DECODERS rule: dark (distribution-aware) | quarter (argmax + ¼ px)
    },
    "loss": LossOptions().as_config(),  # keys, defaults and rules: losses.LossOptions
    "train": {
        "epochs": 28,
        "batch_size": 10,
        "optimizer": "sgd",         # engine.trainer.OPTIMIZERS: sgd | adam
        "lr": 1.0e-4,
        "momentum": 0.9,
        "wd": 1.0e-5,
        "warmup_steps": 100,
        "warmup_lr": 1.0e-5,
        "lr_schedule": "step",      # engine.schedule.SCHEDULES: step | cosine
        "lr_steps": [10, 20],       # epochs where the step schedule changes the lr
        "lr_factors": [0.5, 0.1],   # lr = base * factor from each step on
        "clip_gradient": None,
        "precision": "fp32",        # engine.trainer.PRECISIONS: auto (bf16 where the CPU has it) | fp32 | bf16 | fp16
        "kvstore": "device",        # engine.trainer.KVSTORES: device | local | dist_sync | ...
        "seed": 0,
        "time_budget_s": None,      # stop (and checkpoint) once this many seconds have passed
        "val_every": 1,             # epochs between validations
        "log_every": 10,            # steps between tensorboard points
    },
    "swa": {
        "cycles": 10,
        "cycle_epochs": 1,
        "lr_max": 8.0e-5,
        "lr_min": 1.0e-6,
        "bn_images": 1024,          # training images (whole batches) that re-estimate BN statistics
    },
}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "kwargs":
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


VALID_KEYS: tuple[str, ...] = tuple(_flatten(DEFAULTS))


def _unknown_key(key: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, VALID_KEYS, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(VALID_KEYS)}"
    return ConfigError(f"{source}: unknown config key {quoted(key)}{hint}")


def set_key(config: dict, key: str, value: Any, source: str = "override") -> None:
    """Set dotted ``key`` (e.g. ``train.lr``) in ``config``; unknown keys raise ConfigError.
    Keys below ``model.kwargs`` are free-form."""
    if key not in VALID_KEYS and not key.startswith("model.kwargs."):
        raise _unknown_key(key, source)
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def merge(config: dict, updates: dict, source: str) -> dict:
    """Apply a nested ``updates`` dict (e.g. a parsed YAML file) onto ``config``."""
    for section, value in updates.items():
        if isinstance(DEFAULTS.get(section), dict) and not isinstance(value, dict):
            raise ConfigError(f"{source}: section {quoted(section)} must be a mapping of keys, "
                              f"got {type(value).__name__} {quoted(value)}")
    for key, value in _flatten(updates).items():
        set_key(config, key, value, source)
    return config


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.lr=1e-4'`` → ``('train.lr', 0.0001)``; values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {quoted(text)} is not key=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str):  # YAML reads 1e-4 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value


#: The recipes shipped with the package (``configs/`` of the repository).
CONFIG_DIR = Path(__file__).parent / "configs"


def config_path(name: "str | os.PathLike") -> Path:
    """``name`` as a file path, or the shipped recipe of that name (``cpu_fast``, ``cpn_resnet50``, ...)."""
    return shipped_or_path(name, CONFIG_DIR)


def load_config(path: "str | os.PathLike | None" = None, overrides: Iterable[str] = ()) -> dict:
    """Defaults, then the YAML file ``path`` (or a shipped recipe's name, see :func:`config_path`),
    then ``key=value`` overrides; every value validated (:func:`validate`)."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = config_path(path)
        if not path.exists():
            raise ConfigError(f"config file not found: {path} (shipped recipes: {shipped_names(CONFIG_DIR)})")
        loaded = _read_yaml(path)
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(loaded).__name__}")
        merge(config, loaded, str(path))
    for text in overrides:
        key, value = parse_override(text)
        set_key(config, key, value)
    return validate(config, str(path) if path is not None and not overrides else "config")


# ----------------------------------------------------------------------------- validation

#: The choices checked when a config is loaded, each the table of the module implementing it.
_CHOICES: dict[str, tuple[str, ...]] = {"codec.decode": DECODERS}
# key: (kind, lower bound, upper bound, lower bound inclusive): a checks.Rule; kinds int, number
_RANGES: dict[str, tuple] = {
    "data.stride": ("int", 1, None, True), "data.sigma": ("number", 0, None, False),
    "data.val_fraction": ("number", 0, 1, True), "data.split_seed": ("int", None, None, True),
    "data.num_workers": ("int", 0, None, True), "data.rotate_p": ("number", 0, 1, True),
    "data.max_rotate": ("number", 0, 180, True), "data.flip_p": ("number", 0, 1, True),
    "data.crop_margin": ("number", 0, None, True), "data.box_margin": ("number", 1, None, True),
    "data.box_crop_p": ("number", 0, 1, True), "data.box_jitter": ("number", 0, 0.5, True),
    "train.epochs": ("int", 1, None, True), "train.batch_size": ("int", 1, None, True),
    "train.lr": ("number", 0, None, False), "train.momentum": ("number", 0, 1, True),
    "train.wd": ("number", 0, None, True), "train.warmup_steps": ("int", 0, None, True),
    "train.warmup_lr": ("number", 0, None, False), "train.seed": ("int", None, None, True),
    "train.val_every": ("int", 1, None, True), "train.log_every": ("int", 1, None, True),
    "swa.cycles": ("int", 1, None, True), "swa.cycle_epochs": ("int", 1, None, True),
    "swa.lr_max": ("number", 0, None, False), "swa.lr_min": ("number", 0, None, True),
    "swa.bn_images": ("int", 1, None, True),
}
_OPTIONAL = {"train.clip_gradient": ("number", 0, None, False), "train.time_budget_s": ("number", 0, None, False)}
_BOOLEANS = ("data.color",)
#: The largest ``data.crop_area``: a zoom-out to a box of 4× the frame's area (the garment at half its size).
MAX_CROP_AREA = 4.0


def check_choice(key: str, value: Any, choices: Iterable[str], source: str = "config") -> None:
    """Raise the one-line ConfigError naming ``key`` and its allowed values unless ``value`` is
    one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{source}: {key} must be one of {', '.join(choices)}, got {quoted(value)}")


def _check(key: str, value: Any, rule: Rule, source: str) -> None:
    """The one-line ConfigError of :meth:`Rule.check` unless ``value`` keeps ``rule``."""
    try:
        rule.check(key, value)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None


def _pair(config: dict, key: str, low: float, high: "float | None", source: str) -> None:
    section, name = key.split(".")
    value = config[section][name]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not low < value[0] <= value[1] or (high is not None and value[1] > high)):
        upper = f" ≤ {high}" if high is not None else ""
        raise ConfigError(f"{source}: {key} must be two numbers [a, b] with {low} < a ≤ b{upper}, got {value!r}")


def validate(config: dict, source: str = "config") -> dict:
    """Check every value of ``config`` (types, choices, ranges, the model name and an input size
    the model accepts); raise one ConfigError naming the first bad key. Returns ``config``."""
    flat = _flatten(config)
    for key, choices in _CHOICES.items():
        check_choice(key, flat[key], choices, source)
    for key, rule in _RANGES.items():
        _check(key, flat[key], Rule(*rule), source)
    for key, rule in _OPTIONAL.items():
        _check(key, flat[key], Rule(*rule, optional=True), source)
    for key in _BOOLEANS:
        _check(key, flat[key], Rule("bool"), source)
    try:
        LossOptions.from_config(config["loss"])
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None
    _pair(config, "data.crop_area", 0, MAX_CROP_AREA, source)
    _pair(config, "data.crop_aspect", 0, None, source)
    train = config["train"]
    steps, factors = train["lr_steps"], train["lr_factors"]
    if (not isinstance(steps, list) or not isinstance(factors, list) or len(steps) != len(factors)
            or steps != sorted(steps) or not all(isinstance(s, int) and s >= 0 for s in steps)
            or not all(isinstance(f, (int, float)) and f > 0 for f in factors)):
        raise ConfigError(f"{source}: train.lr_steps (ascending epochs) and train.lr_factors (positive) must be "
                          f"lists of the same length, got {steps!r} and {factors!r}")
    if not isinstance(config["model"]["kwargs"], dict):
        raise ConfigError(f"{source}: model.kwargs must be a mapping, got {config['model']['kwargs']!r}")
    pretrained = config["model"]["pretrained"]
    if not isinstance(pretrained, (bool, str)):
        raise ConfigError(f"{source}: model.pretrained must be true, false or a .params path, got {pretrained!r}")
    files = config["data"]["train_files"]
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise ConfigError(f"{source}: data.train_files must be a list of FILE[:IMAGE_DIR] strings, got {files!r}")
    if not isinstance(config["data"]["schema"], str):
        raise ConfigError(f"{source}: data.schema must be a schema name or file path, got {config['data']['schema']!r}")
    load_schema(config["data"]["schema"])  # a bad schema file fails here, with its own one-line error
    _check_model(config, source)
    return config


def _check_model(config: dict, source: str) -> None:
    """The model name is registered and takes the input size; the heatmap stride divides it."""
    size = config["data"]["input_size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise ConfigError(f"{source}: data.input_size must be [H, W] with positive integers, got {size!r}")
    model = config["model"]
    try:
        check_input_size(model["name"], tuple(size), **model["kwargs"])
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{source}: {error}") from None
    stride, output_stride = config["data"]["stride"], model_class(model["name"]).output_stride
    if stride != output_stride:
        raise ConfigError(f"{source}: data.stride={stride}, but {model['name']} predicts heatmaps at stride "
                          f"{output_stride}; set data.stride={output_stride}")
    if size[0] % stride or size[1] % stride:
        raise ConfigError(f"{source}: data.input_size {list(size)} is not divisible by the heatmap stride "
                          f"data.stride={stride}")
def _read_yaml(path: Path) -> Any:
    """The parsed YAML file ``path``; a missing, unreadable, non-text, invalid or empty file is a
    one-line ConfigError naming it."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {shorten(str(error).splitlines()[0], 120)}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a YAML text file ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    if loaded is None:
        raise ConfigError(f"{path}: empty config file (no settings)")
    return loaded


def save_config(config: dict, path: "str | os.PathLike") -> None:
    """Write ``config`` as YAML, atomically."""
    with atomic_write(path) as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
