"""The main job end to end, at toy size, as a user runs it (in its own process: the demo
switches on bf16 AMP, which patches MXNet for the rest of a process)."""
import json
import subprocess
import sys

from fashion_gluon.data.submission import validate_submission


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
    assert 0 < summary["test_ne_tta"] < 1000 and 0 < summary["val_ne_tta"] < 1000 and summary["epochs"] >= 2
    assert summary["test_time_scales"] == [1.0, 1.2]
    assert "overall" in done.stdout and "with flip + scales: val NE" in done.stdout
