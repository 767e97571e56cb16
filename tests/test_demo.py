"""The main job end to end, at toy size, as a user runs it (in its own process: the demo
switches on bf16 AMP, which patches MXNet for the rest of a process)."""
import json
import subprocess
import sys

import pytest

from fashion_gluon.data.submission import validate_submission
from fashion_gluon.metrics import evaluate_csv


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "fashion_gluon.cli", "demo", "--out", str(out),
                           "--per-category", "6", "--budget", "5"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for name in ("submission.csv", "overlays.png", "per_keypoint.png", "run/curves.png", "run/swa/best.params"):
        assert (out / name).stat().st_size > 0, name
    data = out / "data" / "test"
    assert validate_submission(data / "test.csv", out / "submission.csv", data) == []
    # the reported test NE is the submission's, scored against the test ground truth
    assert summary["test_ne_tta"] == pytest.approx(evaluate_csv(data / "annotations.csv", out / "submission.csv")["ne"])
    state = json.loads((out / "run" / "last.json").read_text())
    best = json.loads((out / "run" / "best.json").read_text())
    # validated once, when the budget stopped training; SWA starts from those weights
    assert best["epoch"] == summary["epochs"] and summary["val_ne_before_swa"] == pytest.approx(best["ne"], rel=1e-6)
    swa_kept = summary["val_ne_after_swa"] <= summary["val_ne_before_swa"]
    assert summary["model"] == str(out / "run" / "swa" if swa_kept else out / "run")
    assert state["epoch"] == summary["epochs"] and state["train_seconds"] >= 5.0  # training used its budget
    assert summary["test_time_scales"] == [1.0, 1.2] and summary["test_time_cascade"] is True
    assert "overall" in done.stdout and "with flip + scales + cascade: val NE" in done.stdout
