"""Writing run directories (see :mod:`fashion_gluon.runs` for the layout) so that they
survive a crash at any moment.

A kill at any point loses at most the epoch in progress: ``last.json`` is
replaced only after the files it names are complete, and the previous
epoch's files are removed only after that.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from mxnet.base import MXNetError

from ..config import save_config
from ..errors import FashionGluonError, shorten
from ..fileio import atomic_path, atomic_write, read_json, write_json
from ..runs import BEST, BEST_PARAMS, CONFIG, LAST, PARAMS_SUFFIX, SCHEMA, STATES_SUFFIX, epoch_file
from ..schema import load_schema


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


def _write_mxnet_file(path: Path, save: Callable[[str], None]) -> None:
    """``save(file name)`` atomically into ``path``. MXNet reports a failed write (a full disk, a
    file-size limit) as a C++ error; it becomes one line that says the run is intact."""
    try:
        with atomic_path(path) as tmp:
            save(str(tmp))
    except MXNetError as error:
        reason = next((line for line in str(error).splitlines() if "Check failed" in line or "rror" in line),
                      "write failed")
        raise _write_failed(path, reason) from None
    except OSError as error:  # what Python itself writes (the trainer states): a full disk, a size limit
        raise _write_failed(path, error.strerror or str(error)) from None


def _write_failed(path: Path, reason: str) -> FashionGluonError:
    """The one line of a checkpoint file that could not be written."""
    return FashionGluonError(f"could not write {path} ({shorten(reason.strip(), 100)}); the run's last finished "
                             f"checkpoint is intact: free space, then `fashion-gluon train --resume {path.parent}`")


def save_checkpoint(run_dir: Path, net, trainer, state: dict[str, Any], config: dict) -> None:
    """Save weights, trainer states and loop ``state`` (must hold ``epoch``) of a finished epoch."""
    params, states = (epoch_file(state["epoch"], suffix) for suffix in (PARAMS_SUFFIX, STATES_SUFFIX))
    _write_mxnet_file(run_dir / params, net.save_parameters)
    if trainer is not None:
        _write_mxnet_file(run_dir / states, trainer.save_states)
    save_config(config, run_dir / CONFIG)
    load_schema(config["data"]["schema"]).save(run_dir / SCHEMA)
    previous = read_json(run_dir / LAST)["epoch"] if (run_dir / LAST).exists() else None
    write_json(run_dir / LAST, {**state, "params": params, "states": states if trainer is not None else None})
    if previous is not None and previous != state["epoch"]:
        for suffix in (PARAMS_SUFFIX, STATES_SUFFIX):
            (run_dir / epoch_file(previous, suffix)).unlink(missing_ok=True)


def save_best(run_dir: Path, net, info: dict[str, Any]) -> None:
    """Keep ``net`` as the best model so far (``info`` holds its epoch and NE)."""
    _write_mxnet_file(run_dir / BEST_PARAMS, net.save_parameters)
    write_json(run_dir / BEST, info)
