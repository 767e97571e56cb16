"""Atomic file writes (a reader never sees a half-written file) and JSON files."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import FileFormatError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; renamed files get the usual permissions instead.
_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: "str | os.PathLike") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for writers that take a file name
    (``cv2.imwrite``, ``block.save_parameters``); rename it over ``path`` on success.
    On an exception the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: "str | os.PathLike", mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def shipped_or_path(name: "str | os.PathLike", folder: Path) -> Path:
    """``name`` as a path, or — when that is no file and ``name`` is a bare name without a
    suffix — the file ``folder/<name>.yaml`` shipped with the package, if there is one."""
    path = Path(name)
    shipped = folder / f"{path.name}.yaml"
    return shipped if path.suffix == "" and not path.is_file() and shipped.is_file() else path


def shipped_names(folder: Path) -> str:
    """The names of the YAML files shipped in ``folder``, for error messages."""
    return ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))


def write_json(path: "str | os.PathLike", payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_write(path) as handle:
        json.dump(payload, handle, indent=1)


def read_json(path: "str | os.PathLike") -> dict:
    """A JSON object from ``path``."""
    with open(path) as handle:
        return json.load(handle)


def read_json_object(path: "str | os.PathLike") -> dict:
    """The JSON object of a file the package wrote (run or export metadata); a missing,
    unreadable, non-JSON or non-object file is a FileFormatError naming it."""
    try:
        payload = read_json(path)
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise FileFormatError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}, "
                              f"column {error.colno}): truncated or edited?") from None
    except UnicodeDecodeError as error:
        raise FileFormatError(f"{path}: not a JSON text file ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise FileFormatError(f"{path}: cannot read: {error.strerror or error}") from None
    if not isinstance(payload, dict):
        raise FileFormatError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload
