"""scripts/budget_curve.sh: every recipe × budget × seed trained, predicted (the two-stage
recipe through its own first pass), scored into one JSON line, plotted; re-runs skip what is scored."""
import json
import os
import subprocess
import sys
from pathlib import Path

from fashion_gluon.data.synthetic import generate_dataset
from fashion_gluon.metrics import evaluate_csv

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "budget_curve.sh"


def test_budget_curve_scores_each_run_and_plots(tiny_data, tmp_path):
    out, xtest = tmp_path / "curve", tmp_path / "xtest"
    generate_dataset(xtest, per_category=3, seed=9, image_size=(96, 128), garment_scale=(0.4, 0.6), progress=False)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "EPOCHS": "1", "MULTIPLES": "2", "SEEDS": "0", "RECIPES": "one_stage two_stage two_nets",
           "XTEST": str(xtest),
           "OVERRIDES": "model.kwargs.channels=16 data.input_size=[64,64] data.num_workers=0",
           "FASHION_GLUON": str(bin_dir / "fashion-gluon"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT), str(tiny_data), str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # two_nets at 2×: a crop-only network of 1 epoch on the boxes of one_stage at 1× (trained for it)
    assert [(r["recipe"], r["budget"], r["epochs"], r["seed"]) for r in records] == [
        ("one_stage", 2, 2, 0), ("two_stage", 2, 2, 0), ("two_nets", 2, 1, 0)]
    assert "box_crop_p: 1" in (out / "two_nets-x2-s0" / "config.yaml").read_text()
    assert "box_crop_p: 0" in (out / "one_stage-x1-s0" / "config.yaml").read_text()
    for record in records:  # the figure is the NE of the submission the run wrote
        ne = evaluate_csv(tiny_data / "test" / "annotations.csv", out / record["name"] / "test.csv")["ne"]
        assert abs(record["test_ne"] - ne) < 1e-9
        xtest_ne = evaluate_csv(xtest / "test" / "annotations.csv", out / record["name"] / "xtest.csv")["ne"]
        assert abs(record["xtest_ne"] - xtest_ne) < 1e-9 and xtest_ne != ne
    assert "box_crop_p: 0.5" in (out / "two_stage-x2-s0" / "config.yaml").read_text()
    assert (out / "budget_curve.png").stat().st_size > 1000
    again = subprocess.run(["bash", str(SCRIPT), str(tiny_data), str(out)], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("scored already") == 3
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
