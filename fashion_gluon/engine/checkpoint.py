"""Run directories and checkpoints that survive a crash at any moment.

Layout of a run directory::

    config.yaml             the resolved configuration
    epoch-0007.params       weights after epoch 7 (only the last good one is kept)
    epoch-0007.states       trainer (optimizer) states after epoch 7
    last.json               pointer to the last good epoch + loop state: written last,
                            atomically, so it always names complete files
    best.params, best.json  weights with the best validation NE so far
    log.jsonl               one JSON record per epoch
    tb/                     tensorboardX events
    curves.png              training curves

A kill at any point loses at most the epoch in progress: ``last.json`` is
replaced only after the files it names are complete, and the previous
epoch's files are removed only after that.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import save_config
from ..errors import FashionGluonError
from ..fileio import atomic_path, atomic_write

LAST = "last.json"
BEST = "best.json"


def _epoch_stem(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def write_json(path: "str | os.PathLike", payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_write(path) as handle:
        json.dump(payload, handle, indent=1)


def read_json(path: "str | os.PathLike") -> dict:
    with open(path) as handle:
        return json.load(handle)


def prepare_run_dir(out: "str | os.PathLike") -> Path:
    """Create ``out`` and prove it is writable before any training starts."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / ".write-test") as handle:
            handle.write("ok")
        (out / ".write-test").unlink()
    except OSError as error:
        raise FashionGluonError(f"output directory {out} is not writable: {error.strerror or error}") from None
    return out


def save_checkpoint(run_dir: Path, net, trainer, state: dict[str, Any], config: dict) -> None:
    """Save weights, trainer states and loop ``state`` (must hold ``epoch``) of a finished epoch."""
    stem = _epoch_stem(state["epoch"])
    with atomic_path(run_dir / f"{stem}.params") as tmp:
        net.save_parameters(str(tmp))
    if trainer is not None:
        with atomic_path(run_dir / f"{stem}.states") as tmp:
            trainer.save_states(str(tmp))
    save_config(config, run_dir / "config.yaml")
    previous = read_json(run_dir / LAST)["epoch"] if (run_dir / LAST).exists() else None
    write_json(run_dir / LAST, {**state, "params": f"{stem}.params",
                                "states": f"{stem}.states" if trainer is not None else None})
    if previous is not None and previous != state["epoch"]:
        for suffix in (".params", ".states"):
            (run_dir / f"{_epoch_stem(previous)}{suffix}").unlink(missing_ok=True)


def save_best(run_dir: Path, net, info: dict[str, Any]) -> None:
    """Keep ``net`` as the best model so far (``info`` holds its epoch and NE)."""
    with atomic_path(run_dir / "best.params") as tmp:
        net.save_parameters(str(tmp))
    write_json(run_dir / BEST, info)


def load_state(run_dir: "str | os.PathLike") -> dict[str, Any]:
    """The loop state of the last good epoch of ``run_dir``."""
    path = Path(run_dir) / LAST
    if not path.exists():
        raise FashionGluonError(f"{run_dir} holds no checkpoint (no {LAST}); nothing to resume")
    return read_json(path)


def weights_path(run_dir: "str | os.PathLike", which: str = "best") -> Path:
    """Path of the ``best`` (falling back to ``last``) or ``last`` weights of a run."""
    run_dir = Path(run_dir)
    if which == "best" and (run_dir / "best.params").exists():
        return run_dir / "best.params"
    return run_dir / load_state(run_dir)["params"]
