"""Experiment configuration: nested defaults, YAML files and ``key=value`` overrides.

A config is a plain nested dict. Every valid key exists in :data:`DEFAULTS`;
a YAML file or an override naming any other key is an error that lists the
closest valid keys, so a typo never silently trains the wrong experiment.
"""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import ConfigError, quoted, shorten
from .fileio import atomic_write

DEFAULTS: dict[str, Any] = {
    "model": {
        "name": "cpn_resnet50",
        "pretrained": False,        # False | True (gluoncv model store) | path to a .params file
        "kwargs": {},               # extra keyword arguments of the model constructor
    },
    "data": {
        "input_size": [384, 384],   # (H, W) of the network input
        "stride": 4,                # heatmap stride
        "sigma": 2.0,               # base Gaussian sigma, heatmap pixels
        "val_fraction": 0.1,        # share of train.csv held out per category
        "split_seed": 0,
        "num_workers": 2,
        "rotate_p": 0.4,
        "max_rotate": 30.0,
        "flip_p": 0.5,
        "crop_area": [0.45, 1.0],
        "crop_aspect": [0.75, 1.33],
        "crop_margin": 25,
        "color": True,
    },
    "loss": {
        "fg_weight": 0.0,           # pixel weight 1 + fg_weight * target (from-scratch training needs ~10)
        "top_k": None,              # OHKM keypoints per sample; None = half of them
        "ohkm": True,               # hourglass: OHKM on the last stack
    },
    "train": {
        "epochs": 28,
        "batch_size": 10,
        "optimizer": "sgd",         # sgd | adam
        "lr": 1.0e-4,
        "momentum": 0.9,
        "wd": 1.0e-5,
        "warmup_steps": 100,
        "warmup_lr": 1.0e-5,
        "lr_schedule": "step",      # step | cosine
        "lr_steps": [10, 20],       # epochs where the step schedule changes the lr
        "lr_factors": [0.5, 0.1],   # lr = base * factor from each step on
        "clip_gradient": None,
        "precision": "fp32",        # fp32 | bf16 (CPU) | fp16 (GPU)
        "kvstore": "device",        # device | local | dist_sync
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


def load_config(path: "str | os.PathLike | None" = None, overrides: Iterable[str] = ()) -> dict:
    """Defaults, then the YAML file ``path``, then ``key=value`` overrides."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        loaded = _read_yaml(Path(path))
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(loaded).__name__}")
        merge(config, loaded, str(path))
    for text in overrides:
        key, value = parse_override(text)
        set_key(config, key, value)
    return config


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
