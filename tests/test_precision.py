"""Mixed-precision training: bf16 on the CPU (in a subprocess: AMP patches MXNet for good)."""
import json
import subprocess
import sys

import mxnet as mx
import pytest
from _tiny import TINY

from fashion_gluon.cpu import cpu_has_bf16
from fashion_gluon.engine import trainer as trainer_module
from fashion_gluon.engine.trainer import enable_mixed_precision
from fashion_gluon.errors import FashionGluonError
from fashion_gluon.runs import read_log


@pytest.mark.skipif(not cpu_has_bf16(), reason="no native bf16 on this CPU (AVX512-BF16/AMX)")
def test_bf16_training_learns_as_fp32_does(tiny_data, tiny_run, tmp_path):
    script = (
        "import json, sys\n"
        "from fashion_gluon.config import load_config\n"
        "from fashion_gluon.engine.train import fit\n"
        f"config = load_config(overrides={TINY!r} + ['train.precision=bf16'])\n"
        f"record = fit({str(tiny_data)!r}, 'all', {str(tmp_path / 'run')!r}, config, progress=False)\n"
        "print(json.dumps(record))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["epoch"] == 2 and "val_ne" in record
    bf16 = [r["loss"] for r in read_log(tmp_path / "run")]
    fp32 = [r["loss"] for r in read_log(tiny_run)]  # the same recipe, data and seed in fp32
    # measured (AVX512-BF16): 1.819, 1.086 against fp32's 1.816, 1.091
    assert bf16 == pytest.approx(fp32, rel=0.02) and bf16[1] < 0.7 * bf16[0], (bf16, fp32)


def test_precision_must_suit_the_device():
    with pytest.raises(FashionGluonError, match="fp16 does not run on CPU"):
        enable_mixed_precision("fp16", [mx.cpu()])
    with pytest.raises(FashionGluonError, match="must be one of auto, fp32, bf16, fp16"):
        enable_mixed_precision("int4", [mx.cpu()])
    enable_mixed_precision("fp32", [mx.cpu()])  # a no-op


def test_bf16_is_refused_clearly_where_the_cpu_lacks_it(monkeypatch):
    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(FashionGluonError, match="train.precision=bf16: this CPU has no native bfloat16"):
        enable_mixed_precision("bf16", [mx.cpu()])


def test_auto_precision_is_bf16_exactly_where_the_cpu_has_it():
    from fashion_gluon.engine.trainer import resolve_precision

    assert resolve_precision("auto", [mx.cpu()]) == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("auto", [mx.gpu(0)]) == "fp32"
    assert resolve_precision("fp16", [mx.gpu(0)]) == "fp16"
    with pytest.raises(FashionGluonError, match="train.precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision("int8", [mx.cpu()])


def test_a_budgeted_run_that_reaches_its_epoch_cap_says_so(tiny_data, tmp_path, capsys):
    from fashion_gluon.config import load_config
    from fashion_gluon.engine.train import fit
    from fashion_gluon.runs import run_config

    # fp32: bf16 AMP would stay switched on in this test process (the bf16 tests run in subprocesses)
    config = load_config(overrides=TINY + ["train.epochs=1", "train.time_budget_s=3600", "train.precision=fp32"])
    record = fit(tiny_data, "skirt", tmp_path / "run", config, progress=False)
    note = capsys.readouterr().err.strip().splitlines()[-1]
    assert note.startswith("train.epochs=1 reached after ") and "of the 3600 s time budget" in note, note
    assert record["note"] == note
    assert run_config(tmp_path / "run")["train"]["time_budget_s"] == 3600
