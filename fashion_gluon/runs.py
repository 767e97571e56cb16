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
    swa/                    the default output of ``swa``: a run directory of its own, with
                            swa.json (its validation NE before and after averaging)

Every file is checked as it is read: a truncated, corrupt or edited file is a one-line
:class:`~fashion_gluon.errors.FileFormatError` naming it (and, for weights, another intact
weights file of the run if there is one) instead of MXNet's traceback.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import mxnet as mx

from .config import load_config
from .errors import FashionGluonError, FileFormatError, quoted, shorten
from .fileio import read_json_object
from .schema import ALL, KeypointSchema, load_schema

# The file names of a run directory (the layout above): every writer and reader takes them from here.
LAST = "last.json"
BEST = "best.json"
BEST_PARAMS = "best.params"
CONFIG = "config.yaml"
SCHEMA = "schema.yaml"
LOG = "log.jsonl"
TENSORBOARD = "tb"
CURVES = "curves.png"
SWA_DIR = "swa"
SWA_RESULT = "swa.json"
PARAMS_SUFFIX = ".params"
STATES_SUFFIX = ".states"

#: Keys every last.json holds, with their types.
STATE_KEYS: dict[str, type] = {"epoch": int, "category": str, "params": str}


def epoch_file(epoch: int, suffix: str) -> str:
    """The name of epoch ``epoch``'s weights (``suffix`` :data:`PARAMS_SUFFIX`) or trainer states
    (:data:`STATES_SUFFIX`) file, e.g. ``epoch-0007.params``."""
    return f"epoch-{epoch:04d}{suffix}"


class CorruptWeights(FileFormatError):
    """A weights file is not a readable MXNet parameter file (truncated or corrupt)."""


def is_run(path: "str | os.PathLike") -> bool:
    """Whether ``path`` is a training run directory (holds last.json)."""
    return (Path(path) / LAST).is_file()


def load_state(run_dir: "str | os.PathLike") -> dict[str, Any]:
    """The loop state of the last good epoch of ``run_dir`` (checked: a JSON object with an
    integer ``epoch``, a known ``category`` and the name of its ``params`` file)."""
    path = Path(run_dir) / LAST
    if not path.exists():
        raise FashionGluonError(f"{run_dir} holds no checkpoint (no {LAST}); nothing to resume")
    state = read_json_object(path)
    for key, kind in STATE_KEYS.items():
        if key not in state:
            raise FileFormatError(f"{path}: lacks the key {key!r}; the run directory is damaged")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise FileFormatError(f"{path}: {key} must be a {kind.__name__}, got {quoted(state[key])}")
    if state["category"] not in (*kept_schema(run_dir).category_names, ALL):
        raise FileFormatError(f"{path}: unknown category {quoted(state['category'])}")
    return state


def kept_schema(folder: "str | os.PathLike") -> KeypointSchema:
    """The schema a run or export keeps beside it (``schema.yaml``); FashionAI's for folders
    written before schemas were kept."""
    kept = Path(folder) / SCHEMA
    return load_schema(kept if kept.is_file() else None)


def run_config(run_dir: "str | os.PathLike", overrides: Sequence[str] = ()) -> dict:
    """The resolved configuration a run (or an export) was trained with (then ``overrides``); its
    keypoint schema is the copy kept beside it (``schema.yaml``), wherever the original file went."""
    run_dir = Path(run_dir)
    path, kept = run_dir / CONFIG, run_dir / SCHEMA
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file; the run directory is damaged")
    return load_config(path, ([f"data.schema={kept}"] if kept.is_file() else []) + list(overrides))


def recorded_root(data_root: "str | os.PathLike | None") -> "str | None":
    """How a run records its data root: absolute, or None for a run on ``data.train_files``."""
    return str(Path(data_root).resolve()) if data_root is not None else None


def run_data_root(run_dir: "str | os.PathLike") -> "str | None":
    """The data root a run was trained on (recorded in last.json); None for a run that trained on
    its config's ``data.train_files`` alone."""
    root = load_state(run_dir).get("data_root")
    if isinstance(root, str) and root:
        return root
    if run_config(run_dir)["data"]["train_files"]:
        return None
    raise FileFormatError(f"{Path(run_dir) / LAST} records no data_root; pass --data-root")


def weights_path(run_dir: "str | os.PathLike", which: str = "best") -> Path:
    """Path of the ``best`` (falling back to ``last``) or ``last`` weights of a run."""
    run_dir = Path(run_dir)
    if which == "best" and (run_dir / BEST_PARAMS).exists():
        return run_dir / BEST_PARAMS
    name = load_state(run_dir)["params"]
    path = run_dir / name
    if not path.is_file():
        best = f" and there is no {BEST_PARAMS}" if which == "best" else ""
        raise FileFormatError(f"{run_dir / LAST} names the weights file {quoted(name)}, which does not exist{best}")
    return path


# ----------------------------------------------------------------------------- weights files


def _mxnet_reason(error: Exception) -> str:
    """The gist of an MXNet error (its message ends a C++ traceback), e.g. "Invalid NDArray file format"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1].removeprefix("MXNetError: ") if lines else type(error).__name__
    return shorten(last.rsplit(": ", 1)[-1] if "Check failed" in last else last, 100)


def _corrupt(path: Path, error: Exception) -> CorruptWeights:
    return CorruptWeights(f"{path}: not a readable MXNet weights file ({_mxnet_reason(error)}; "
                          "truncated or corrupt)")


def read_params(path: "str | os.PathLike") -> dict[str, mx.nd.NDArray]:
    """The arrays of a ``.params`` file by name; an absent, truncated or corrupt file is a
    FileFormatError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such weights file")
    try:
        loaded = mx.nd.load(str(path))
    except mx.base.MXNetError as error:
        raise _corrupt(path, error) from None
    if not isinstance(loaded, dict):
        raise FileFormatError(f"{path}: holds unnamed arrays, not the weights of a network")
    return loaded


def load_parameters(net, path: "str | os.PathLike", ctx=None) -> None:
    """``net.load_parameters(path)`` with one-line errors naming the file: absent, unreadable
    (:class:`CorruptWeights`), or holding weights that do not fit ``net`` (FileFormatError)."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such weights file")
    try:
        net.load_parameters(str(path), ctx=ctx)
    except mx.base.MXNetError as error:
        raise _corrupt(path, error) from None
    except (AssertionError, ValueError, KeyError) as error:  # gluon: a parameter missing, or of another shape
        raise FileFormatError(f"{path}: the weights do not fit the model "
                              f"({shorten(str(error).splitlines()[0] if str(error) else type(error).__name__, 160)})"
                              ) from None


def loads_cleanly(path: Path) -> bool:
    """Whether ``path`` is an existing, readable ``.params`` file."""
    try:
        read_params(path)
    except FileFormatError:
        return False
    return True


def intact_best(run_dir: "str | os.PathLike") -> "str | None":
    """``best.params`` of a run, described with its epoch and NE, if it exists and loads."""
    path = Path(run_dir) / BEST_PARAMS
    if not loads_cleanly(path):
        return None
    try:
        info = read_json_object(Path(run_dir) / BEST)
        return f"{path} (epoch {int(info['epoch'])}, val NE {float(info['ne']):.3f})"
    except (FileFormatError, KeyError, TypeError, ValueError):
        return str(path)


def intact_last(run_dir: "str | os.PathLike") -> "str | None":
    """The last epoch's weights of a run, described with the epoch, if last.json names a file that loads."""
    try:
        state = load_state(run_dir)
    except FashionGluonError:
        return None
    path = Path(run_dir) / state["params"]
    return f"{path} (epoch {state['epoch']})" if loads_cleanly(path) else None


def load_run_weights(net, run_dir: "str | os.PathLike", ctx=None) -> Path:
    """Load a run's best weights (else its last epoch's) into ``net``; returns the file read.
    An unreadable file is a FileFormatError naming it and, if the run has another weights file
    that loads, that one and how to use it."""
    run_dir = Path(run_dir)
    path = weights_path(run_dir)
    try:
        load_parameters(net, path, ctx)
    except CorruptWeights as error:
        if path.name == BEST_PARAMS:
            other = intact_last(run_dir)
            hint = (f"; the run's last-epoch weights {other} are intact: move {path.name} out of {run_dir} to "
                    "use them" if other else "; the run has no other intact weights file")
        else:
            hint = "; the run has no other intact weights file"
        raise CorruptWeights(f"{error}{hint}") from None
    return path


def read_log(run_dir: "str | os.PathLike") -> list[dict]:
    """The per-epoch records of a run (other lines: the sources line, lines cut by a crash, are skipped)."""
    path = Path(run_dir) / LOG
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [record for record in records if isinstance(record, dict) and "epoch" in record]


__all__ = ["LAST", "BEST", "BEST_PARAMS", "CONFIG", "SCHEMA", "LOG", "TENSORBOARD", "CURVES", "SWA_DIR", "SWA_RESULT",
           "PARAMS_SUFFIX", "STATES_SUFFIX", "epoch_file", "STATE_KEYS", "CorruptWeights", "is_run", "load_state",
           "run_config", "kept_schema", "recorded_root", "run_data_root", "weights_path", "read_params", "load_parameters",
           "loads_cleanly",            "intact_best", "intact_last", "load_run_weights", "read_log"]
