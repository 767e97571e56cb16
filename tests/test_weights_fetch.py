"""``weights --fetch``: gluoncv's downloader against a local HTTP server (127.0.0.1 only), the
SHA-1 check, clean failures that leave nothing in the model store, and the CLI's lines."""
from __future__ import annotations

import hashlib
import socket
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from _tiny import TINY
from gluoncv.model_zoo import model_store
from test_bad_inputs import fails
from test_pretrained import save_classifier

from fashion_gluon.cli import main
from fashion_gluon.models import BACKBONES, get_model
from fashion_gluon.models.fetch import FetchError, fetch_weights

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class Handler(SimpleHTTPRequestHandler):
    """Serves ``directory``; records each path; files named in ``truncated`` are cut in half
    after a full Content-Length header."""

    def __init__(self, *args, requests: list, truncated: set, **kwargs):
        self.requests, self.truncated = requests, truncated
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.requests.append(self.path)
        file = Path(self.directory) / self.path.lstrip("/")
        if file.name not in self.truncated:
            return super().do_GET()
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:len(data) // 2])
        self.close_connection = True

    def log_message(self, *args):  # keep stderr for the CLI's lines
        pass


class Repo:
    """A local gluoncv repository: ``add`` zips a weight file the way gluoncv's repository does."""

    def __init__(self, root: Path, monkeypatch):
        self.root, self.monkeypatch = root, monkeypatch
        self.models = root / "gluon" / "models"
        self.models.mkdir(parents=True)
        self.requests, self.truncated = [], set()

    def add(self, name: str, params: bytes, sha1: "str | None" = None, member: "str | None" = None) -> str:
        """Serve ``params`` as the weights of ``name``; gluoncv's table gets ``sha1`` (default:
        the file's). ``member``: the file name inside the zip (default gluoncv's). Returns the stem."""
        sha1 = sha1 or hashlib.sha1(params).hexdigest()
        self.monkeypatch.setitem(model_store._model_sha1, name, sha1)
        stem = f"{name}-{sha1[:8]}"
        with zipfile.ZipFile(self.models / f"{stem}.zip", "w") as zf:
            zf.writestr(member or f"{stem}.params", params)
        return stem


@pytest.fixture
def mxnet_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "mxnet_home"
    monkeypatch.setenv("MXNET_HOME", str(home))
    return home


@pytest.fixture
def repo(tmp_path, monkeypatch, mxnet_home):
    """A repository served on 127.0.0.1 (random port) and named by MXNET_GLUON_REPO; no proxy."""
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    served = Repo(tmp_path / "repo", monkeypatch)
    handler = partial(Handler, requests=served.requests, truncated=served.truncated, directory=str(served.root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{server.server_port}/"
    monkeypatch.setenv("MXNET_GLUON_REPO", served.url)
    yield served
    server.shutdown()
    server.server_close()
    thread.join()


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fetch_puts_the_file_in_the_store_and_get_model_loads_it(repo, mxnet_home, tmp_path):
    saved_path = tmp_path / "made" / "m.params"
    saved = save_classifier("mobilenetv2_0.5", saved_path)
    stem = repo.add("mobilenetv2_0.5", saved_path.read_bytes())
    [row] = fetch_weights("mobilenetv2_0.5")
    path = mxnet_home / "models" / f"{stem}.params"
    assert (row.path, row.downloaded) == (path, True)
    assert row.summary() == f"mobilenetv2_0.5: downloaded {path}"
    assert listing(mxnet_home / "models") == {path.name: saved_path.read_bytes()}  # no zip, no lock
    assert repo.requests == [f"/gluon/models/{stem}.zip"]

    net = get_model("cpn_mobilenetv2_0.5", 5, pretrained=True, channels=32)
    trunk = tmp_path / "trunk.params"
    net.backbone.trunk.save_parameters(str(trunk))
    for key, value in mx.nd.load(str(trunk)).items():
        np.testing.assert_array_equal(value.asnumpy(), saved[key], err_msg=key)

    [again] = fetch_weights("mobilenetv2_0.5")
    assert again.summary() == f"mobilenetv2_0.5: already present {path}"
    assert len(repo.requests) == 1


def test_fetch_replaces_a_store_file_with_a_wrong_hash(repo, mxnet_home):
    stem = repo.add("resnet18_v1b", b"good weights")
    path = mxnet_home / "models" / f"{stem}.params"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"damaged")
    assert fetch_weights("resnet18_v1b")[0].downloaded
    assert path.read_bytes() == b"good weights"


def test_detnet_fetches_its_resnet50_weights(repo, mxnet_home):
    stem = repo.add("resnet50_v1b", b"r50")
    [row] = fetch_weights("detnet59")
    assert row.summary() == f"detnet59 (resnet50_v1b): downloaded {mxnet_home / 'models' / stem}.params"


def break_repo(repo: Repo, how: str) -> str:
    """Serve resnet18_v1b broken in one way; return what the error's reason must say."""
    if how == "sha1":
        stem = repo.add("resnet18_v1b", b"weights")
        expected = stem[-8:] + "0" * 32  # the same file name, another hash
        model_store._model_sha1["resnet18_v1b"] = expected
        return f"SHA-1 mismatch: the file's is {hashlib.sha1(b'weights').hexdigest()}, gluoncv expects {expected}"
    if how == "404":
        repo.monkeypatch.setitem(model_store._model_sha1, "resnet18_v1b", "ab" * 20)
        return "the server did not answer 200 OK (no such file, or access refused)"
    stem = repo.add("resnet18_v1b", b"weights" * 5000, member="other.params" if how == "member" else None)
    if how == "truncated":
        repo.truncated.add(f"{stem}.zip")
        return "the download broke off before its end (truncated)"
    if how == "not a zip":
        (repo.models / f"{stem}.zip").write_bytes(b"<html>not found</html>")
        return "not a valid zip (truncated or corrupt download): File is not a zip file"
    if how == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        repo.url = f"http://127.0.0.1:{port}/"
        repo.monkeypatch.setenv("MXNET_GLUON_REPO", repo.url)
        return "ConnectionError: [Errno 111] Connection refused"
    return f"the zip holds no {stem}.params"


@pytest.mark.parametrize("how", ["sha1", "404", "truncated", "not a zip", "member", "refused"])
def test_a_failed_fetch_is_one_line_and_leaves_nothing(repo, mxnet_home, how):
    store = mxnet_home / "models"
    store.mkdir(parents=True)
    (store / "other-12345678.params").write_bytes(b"kept")
    reason = break_repo(repo, how)
    file_name = f"resnet18_v1b-{model_store._model_sha1['resnet18_v1b'][:8]}"
    (store / f"{file_name}.params").write_bytes(b"an old file with a wrong hash")
    with pytest.raises(FetchError) as err:
        fetch_weights("resnet18_v1b")
    url = f"{repo.url}gluon/models/{file_name}.zip"
    assert str(err.value) == f"cannot fetch ImageNet weights for resnet18_v1b: {url}: {reason}"
    assert listing(store) == {"other-12345678.params": b"kept"}


def test_cli_failure_is_one_stderr_line_exit_2(repo, mxnet_home, capsys):
    reason = break_repo(repo, "404")
    url = f"{repo.url}gluon/models/resnet18_v1b-abababab.zip"
    assert fails(capsys, "weights", "--fetch", "resnet18_v1b") == (
        f"fashion-gluon weights: error: cannot fetch ImageNet weights for resnet18_v1b: {url}: {reason}")
    assert list((mxnet_home / "models").iterdir()) == []


def test_cli_hash_mismatch_error_follows_the_progress_bar(repo, mxnet_home, capsys):
    break_repo(repo, "sha1")
    assert "SHA-1 mismatch" in fails(capsys, "weights", "--fetch", "resnet18_v1b", lines=None)
    assert list((mxnet_home / "models").iterdir()) == []


def test_cli_fetch_all_lists_every_backbone(repo, mxnet_home, capsys):
    store = mxnet_home / "models"
    store.mkdir(parents=True)
    names = dict.fromkeys(spec.imagenet_name for spec in BACKBONES.values() if spec.imagenet_name != "se_resnet50_v1")
    for name in names:
        if name != "mobilenetv2_1.0":  # the one downloaded; the others are there already
            data = name.encode()
            repo.monkeypatch.setitem(model_store._model_sha1, name, hashlib.sha1(data).hexdigest())
            (store / f"{name}-{model_store.short_hash(name)}.params").write_bytes(data)
    stem = repo.add("mobilenetv2_1.0", b"mobilenet")
    assert main(["weights", "--fetch", "all"]) == 0
    out = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("Downloading ")]

    def present(backbone: str, name: str) -> str:
        via = "" if backbone == name else f" ({name})"
        return f"{backbone}{via}: already present {store}/{name}-{model_store.short_hash(name)}.params"
    assert out == [
        present("resnet18_v1b", "resnet18_v1b"), present("resnet50_v1b", "resnet50_v1b"),
        "se_resnet50_v1: gluoncv publishes no ImageNet weights for se_resnet50_v1; nothing to fetch",
        present("se_resnext50_32x4d", "se_resnext50_32x4d"), present("detnet59", "resnet50_v1b"),
        present("detresnext50", "se_resnext50_32x4d"), f"mobilenetv2_1.0: downloaded {store}/{stem}.params",
        present("mobilenetv2_0.5", "mobilenetv2_0.5"),
    ]
    assert repo.requests == [f"/gluon/models/{stem}.zip"]


@pytest.mark.parametrize("name, message", [
    ("se_resnet50_v1", "gluoncv publishes no ImageNet weights for se_resnet50_v1 (se_resnet50_v1); nothing to fetch: "
                       "train it with model.pretrained: false or a .params file"),
    ("resnet999", "unknown backbone 'resnet999'; expected all or one of " + ", ".join(BACKBONES)),
])
def test_cli_single_name_without_weights_is_an_error(repo, capsys, name, message):
    assert fails(capsys, "weights", "--fetch", name) == f"fashion-gluon weights: error: {message}"
    assert repo.requests == []


def test_training_never_downloads_and_names_the_fetch_command(repo, mxnet_home, tiny_data, tmp_path, capsys):
    repo.add("resnet18_v1b", b"served, never asked for")
    error = fails(capsys, "train", "--data-root", tiny_data, "--category", "all", "--out", tmp_path / "run",
                  *TINY, "model.pretrained=true")
    assert error.startswith("fashion-gluon train: error: ImageNet weights of backbone resnet18_v1b missing: "
                            f"{mxnet_home / 'models'}/resnet18_v1b-")
    assert error.endswith("fetch it with: fashion-gluon weights --fetch resnet18_v1b")
    assert repo.requests == []
