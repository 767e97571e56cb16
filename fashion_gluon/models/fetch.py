"""Download gluoncv's ImageNet weights of the backbones: ``fashion-gluon weights --fetch``.

The only code of the package that downloads (training and :func:`~.registry.get_model`
never do). gluoncv's own downloader
(:func:`gluoncv.model_zoo.model_store.get_model_file`) fetches
``{MXNET_GLUON_REPO}gluon/models/<name>-<short hash>.zip`` (default: Apache's
S3 repository), unzips it into the model store ``$MXNET_HOME/models`` and checks
the SHA-1 from gluoncv's table, with a tqdm progress bar when the server sends a
length. A failed download raises :class:`FetchError` and leaves nothing of itself
in the store (no partial zip, no extracted file, no file with a wrong hash).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple, Optional

import portalocker
import requests
from gluoncv.model_zoo import model_store

from ..errors import FashionGluonError
from .backbones import BACKBONES
from .pretrained import model_store_dir, store_file_name

#: Failures of a download, its unzipping or its check; each becomes one :class:`FetchError`.
DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
                   portalocker.exceptions.BaseLockException)


class FetchError(FashionGluonError):
    """Backbone weights could not be fetched; the message names the backbone, the URL and why."""


class Fetched(NamedTuple):
    """One backbone of :func:`fetch_weights`."""

    backbone: str  # registry name
    imagenet_name: str  # the gluoncv classifier whose weights it uses
    path: Optional[Path]  # the model-store file; None if gluoncv publishes no weights
    downloaded: bool  # False: already present (or nothing to fetch)

    def summary(self) -> str:
        """One line: what happened and the file."""
        if self.path is None:
            return f"{self.backbone}: gluoncv publishes no ImageNet weights for {self.imagenet_name}; nothing to fetch"
        via = "" if self.imagenet_name == self.backbone else f" ({self.imagenet_name})"
        return f"{self.backbone}{via}: {'downloaded' if self.downloaded else 'already present'} {self.path}"


def weights_url(imagenet_name: str) -> str:
    """The URL gluoncv downloads the weights of ``imagenet_name`` from (``MXNET_GLUON_REPO`` honoured)."""
    repo = os.environ.get("MXNET_GLUON_REPO", model_store.apache_repo_url)
    file_name = store_file_name(imagenet_name).removesuffix(".params")
    return model_store._url_format.format(repo_url=repo if repo.endswith("/") else repo + "/", file_name=file_name)


def fetch_weights(name: str) -> list[Fetched]:
    """Fetch the weights of registry backbone ``name``, or of every backbone (``all``; those
    without published weights are listed, not an error). Rows in registry order."""
    if name == "all":
        return [fetch_backbone(backbone) if store_file_name(spec.imagenet_name) else
                Fetched(backbone, spec.imagenet_name, None, False) for backbone, spec in BACKBONES.items()]
    if name not in BACKBONES:
        raise FashionGluonError(f"unknown backbone {name!r}; expected all or one of {', '.join(BACKBONES)}")
    imagenet_name = BACKBONES[name].imagenet_name
    if store_file_name(imagenet_name) is None:
        raise FetchError(f"gluoncv publishes no ImageNet weights for {name} ({imagenet_name}); nothing to fetch: "
                         f"train it with model.pretrained: false or a .params file")
    return [fetch_backbone(name)]


def fetch_backbone(backbone: str) -> Fetched:
    """Download the weights of ``backbone`` into the model store unless a file with the right SHA-1 is there."""
    imagenet_name = BACKBONES[backbone].imagenet_name
    store = model_store_dir()
    path = store / store_file_name(imagenet_name)
    expected = model_store._model_sha1[imagenet_name]
    if path.is_file() and _sha1(path) == expected:
        return Fetched(backbone, imagenet_name, path, False)
    store.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a file with a wrong hash is replaced
    before = set(os.listdir(store))
    try:
        model_store.get_model_file(imagenet_name, root=str(store))
    except BaseException as err:  # Ctrl-C included: nothing half-downloaded stays
        reason = _reason(err, path, expected)
        _remove_new(store, before)
        if isinstance(err, DOWNLOAD_ERRORS):
            raise FetchError(f"cannot fetch ImageNet weights for {backbone}: {weights_url(imagenet_name)}: "
                             f"{reason}") from err
        raise
    if path.stem + ".lock" not in before:  # gluoncv's lock file
        (store / (path.stem + ".lock")).unlink(missing_ok=True)
    return Fetched(backbone, imagenet_name, path, True)


def _sha1(path: Path) -> str:
    sha1 = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha1.update(block)
    return sha1.hexdigest()


def _remove_new(store: Path, before: set[str]) -> None:
    """Remove every entry of ``store`` not in ``before`` (the zip, what it extracted, the lock)."""
    for entry in set(os.listdir(store)) - before:
        target = store / entry
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def _reason(err: BaseException, path: Path, expected: str) -> str:
    """Why the download of ``path`` failed, in a few words (one line)."""
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        reason = "the download broke off before its end (truncated)"
    elif isinstance(err, requests.RequestException):
        errno = re.search(r"\[Errno -?\d+\] [^'\")]+", str(err))
        reason = f"{type(err).__name__}: {errno.group(0) if errno else err}"
    elif isinstance(err, RuntimeError) and str(err).startswith("Failed downloading url"):
        reason = "the server did not answer 200 OK (no such file, or access refused)"
    elif isinstance(err, (zipfile.BadZipFile, zlib.error, EOFError)):
        reason = f"not a valid zip (truncated or corrupt download): {err}"
    elif isinstance(err, ValueError) and "hash" in str(err) and path.is_file():
        reason = f"SHA-1 mismatch: the file's is {_sha1(path)}, gluoncv expects {expected}"
    elif isinstance(err, FileNotFoundError) and not path.is_file():
        reason = f"the zip holds no {path.name}"
    else:
        reason = f"{type(err).__name__}: {err}"
    return " ".join(reason.split())
