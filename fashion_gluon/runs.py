"""Reading run directories (the files a training run leaves; written by :mod:`.engine.checkpoint`).

Layout of a run directory::

    config.yaml             the resolved configuration
    schema.yaml             the keypoint schema it was trained with (so the run works anywhere)
    epoch-0007.params       weights after epoch 7 (only the last good one is kept)
    epoch-0007.states       trainer (optimizer) states after epoch 7
    last.json               pointer to the last good epoch + loop state: written last,
                            atomically, so it always names complete files
    best.params, best.json  weights with the best validation NE so far
    log.jsonl               one JSON record per epoch
    tb/                     tensorboardX events
    curves.png              training curves
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .config import load_config
from .errors import FashionGluonError
from .fileio import read_json

LAST = "last.json"
BEST = "best.json"
CONFIG = "config.yaml"
SCHEMA = "schema.yaml"


def is_run(path: "str | os.PathLike") -> bool:
    """Whether ``path`` is a training run directory (holds last.json)."""
    return (Path(path) / LAST).is_file()


def load_state(run_dir: "str | os.PathLike") -> dict[str, Any]:
    """The loop state of the last good epoch of ``run_dir``."""
    path = Path(run_dir) / LAST
    if not path.exists():
        raise FashionGluonError(f"{run_dir} holds no checkpoint (no {LAST}); nothing to resume")
    return read_json(path)


def run_config(run_dir: "str | os.PathLike") -> dict:
    """The resolved configuration a run (or an export) was trained with; its keypoint schema is
    the copy kept beside it (``schema.yaml``), wherever the original schema file went."""
    run_dir = Path(run_dir)
    kept = run_dir / SCHEMA
    return load_config(run_dir / CONFIG, [f"data.schema={kept}"] if kept.is_file() else [])


def weights_path(run_dir: "str | os.PathLike", which: str = "best") -> Path:
    """Path of the ``best`` (falling back to ``last``) or ``last`` weights of a run."""
    run_dir = Path(run_dir)
    if which == "best" and (run_dir / "best.params").exists():
        return run_dir / "best.params"
    return run_dir / load_state(run_dir)["params"]


def read_log(run_dir: "str | os.PathLike") -> list[dict]:
    """The per-epoch records of a run."""
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["LAST", "BEST", "CONFIG", "SCHEMA", "is_run", "load_state", "run_config", "weights_path",
           "read_log"]
