"""Faults a user meets at the command line: contexts read from --ctx only, Ctrl-C and a failed
checkpoint write each end in one line that says the run is intact, MXNet's engine line first."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from fashion_gluon import cli
from fashion_gluon.cli import ctx_values


def test_only_ctx_values_are_contexts():
    assert ctx_values(["train", "--out", "runs/gpu1", "--ctx", "cpu"]) == ["cpu"]
    assert ctx_values(["predict", "--ctx=gpu0,gpu1", "--out", "x"]) == ["gpu0,gpu1"]
    assert ctx_values(["train", "--out", "runs/gpu1"]) == []


def test_ctrl_c_in_train_is_one_line(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("fashion_gluon.engine.train.fit", interrupted)  # train imports it when it runs
    out = tmp_path / "run"
    code = cli.main(["train", "--data-root", str(tmp_path), "--category", "skirt", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130
    assert err == [f"fashion-gluon train: interrupted; the last finished checkpoint in {out} is intact; "
                   f"continue with `fashion-gluon train --resume {out}`"]


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_old_file(tmp_path):
    best = tmp_path / "best.params"
    best.write_bytes(b"previous")
    done = run_python(f"""
        import resource
        from mxnet import gluon
        from fashion_gluon.engine.checkpoint import save_best
        from fashion_gluon.errors import FashionGluonError
        from pathlib import Path
        net = gluon.nn.Dense(4096, in_units=4096)
        net.initialize()
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # 1 MiB: the 64 MiB weights do not fit
        try:
            save_best(Path({str(tmp_path)!r}), net, {{"epoch": 1}})
        except FashionGluonError as error:
            print(error)
        """)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"could not write {best} (") and "last finished checkpoint is intact" in line, line
    assert best.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.params"], "no temporary file is left behind"


@pytest.mark.parametrize("argv, error", [
    (["evaluate", "--truth", "missing.csv", "--pred", "missing.csv"], "missing.csv: no such file"),
    # imports MXNet and fails before any MXNet operation, so the engine would otherwise start at exit
    (["export", "--checkpoint", "missing", "--out", "x"], "missing holds no checkpoint (no last.json); nothing to resume"),
])
def test_our_error_is_the_last_line(tmp_path, argv, error):
    done = subprocess.run([sys.executable, "-m", "fashion_gluon", *argv], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "MXNET_ENGINE_TYPE": "NaiveEngine"}, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"fashion-gluon {argv[0]}: error: {error}"


@pytest.mark.parametrize("command", [["export", "--format", "onnx"],
                                     ["quantize", "--format", "onnx", "--calib-images", "2", "--no-eval"]])
def test_missing_onnx_package_is_one_line(tiny_run, tmp_path, command):
    done = run_python(f"""
        import sys
        sys.modules["onnx"] = None  # as if the export extra were not installed
        from fashion_gluon.cli import main
        sys.exit(main({[*command, "--checkpoint", str(tiny_run), "--out", str(tmp_path / "out")]!r}))
        """, MXNET_ENGINE_TYPE="NaiveEngine")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"fashion-gluon {command[0]}: error: onnx is not installed (import of onnx halted; None in sys.modules); "
        "install it with pip install -e .[export]")
    assert not any((tmp_path / "out").glob("*")), "nothing is written"


def test_a_failed_python_write_of_a_checkpoint_file_is_the_same_one_line(tmp_path):
    import errno

    from fashion_gluon.engine.checkpoint import _write_mxnet_file
    from fashion_gluon.errors import FashionGluonError

    def save(name):  # the trainer states are written by Python: a full disk is an OSError there
        open(name, "wb").write(b"partial")
        raise OSError(errno.EFBIG, "File too large")

    with pytest.raises(FashionGluonError) as caught:
        _write_mxnet_file(tmp_path / "epoch-0002.states", save)
    assert str(caught.value) == (f"could not write {tmp_path / 'epoch-0002.states'} (File too large); the run's last "
                                 f"finished checkpoint is intact: free space, then `fashion-gluon train --resume "
                                 f"{tmp_path}`")
    assert list(tmp_path.iterdir()) == [], "no partial file is left"


def test_a_closed_stdout_pipe_ends_quietly(tmp_path):
    """`fashion-gluon synth ... | head` where head has already gone: no error line, SIGPIPE's status."""
    proc = subprocess.Popen([sys.executable, "-m", "fashion_gluon", "synth", str(tmp_path / "set"), "--per-category", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader stops before the command prints its summary
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == cli.PIPE_CLOSED
    assert "error" not in err and "Broken pipe" not in err and "Exception ignored" not in err, err
    assert (tmp_path / "set" / "train" / "Annotations" / "train.csv").is_file()  # the work itself was done
