"""The main job end to end, at toy size: every artefact is produced and the submission is valid."""
import json

from fashion_gluon.data.annotations import validate_submission
from fashion_gluon.demo import run_demo


def test_demo_end_to_end(tmp_path, capsys):
    summary = run_demo(tmp_path / "demo", per_category=6, budget_s=5, progress=False)
    out = tmp_path / "demo"
    assert json.loads((out / "summary.json").read_text()) == summary
    for name in ("submission.csv", "overlays.png", "per_keypoint.png", "run/curves.png", "run/swa/best.params"):
        assert (out / name).stat().st_size > 0, name
    data = out / "data" / "test"
    assert validate_submission(data / "test.csv", out / "submission.csv", data) == []
    assert 0 < summary["test_ne_flip"] < 1000 and summary["epochs"] >= 2
    printed = capsys.readouterr().out
    assert "overall" in printed and "test NE (flip)" in printed
