"""The fashion-gluon command line: help, one-line errors, synth → evaluate round trip."""
import json

import numpy as np
import pytest

from fashion_gluon.cli import main
from fashion_gluon.cli.parser import build_parser
from fashion_gluon.data.annotations import read_annotations
from fashion_gluon.data.submission import write_submission


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"synth", "evaluate", "train", "swa", "summary", "weights", "bench", "demo"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: fashion-gluon {name}" in capsys.readouterr().out


def test_synth_then_evaluate_json(tmp_path, capsys):
    root = tmp_path / "data"
    assert main(["synth", str(root), "--per-category", "4", "--seed", "1", "--quiet"]) == 0
    capsys.readouterr()
    truth = read_annotations(root / "test" / "annotations.csv")
    pred = truth.keypoints[:, :, :2] + np.array([3.0, 4.0])  # every point 5 px off
    write_submission(tmp_path / "pred.csv", truth.image_ids, truth.categories, np.clip(pred, 0, None))
    assert main(["evaluate", "--truth", str(root / "test" / "annotations.csv"),
                 "--pred", str(tmp_path / "pred.csv"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"ne", "per_category", "per_keypoint", "count"} <= set(result)
    # every visible point is 5 px off: NE = mean over them of 5 / the image's normalizing distance
    kps, pairs = truth.keypoints, truth.schema.norm_pairs
    norm = np.array([np.linalg.norm(kps[i, pairs[c][0], :2] - kps[i, pairs[c][1], :2])
                     for i, c in enumerate(truth.categories)])
    visible = kps[:, :, 2] == 1
    expected = 100 * np.mean(np.broadcast_to(5.0 / norm[:, None], visible.shape)[visible])
    assert result["ne"] == pytest.approx(expected, rel=1e-6) and result["count"] == int(visible.sum())


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--data-root", str(tmp_path), "--category", "all", "--out", str(tmp_path / "r"),
                 "train.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean train.lr" in err
    assert main(["evaluate", "--truth", str(tmp_path / "missing.csv"), "--pred", str(tmp_path / "p.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_summary_prints_params_and_gmacs(capsys):
    assert main(["summary", "hourglass_small", "--input", "128x64", "--keypoints", "13"]) == 0
    out = capsys.readouterr().out
    assert "hourglass_small" in out and "parameters  0.54 M" in out and "GMACs" in out
    assert main(["summary", "hourglass", "--input", "256x192", "--keypoints", "17", "--options", "num_stacks=8"]) == 0
    assert "parameters  25.44 M" in capsys.readouterr().out
    assert main(["summary", "hourglass_small", "--input", "128x96"]) == 2
    assert "must be positive multiples of its stride 64" in capsys.readouterr().err


def test_openmp_defaults_are_every_core_and_a_short_spin_unless_told_otherwise():
    import os

    from fashion_gluon.openmp import SPIN_COUNT, openmp_defaults
    cores = str(len(os.sched_getaffinity(0)))
    assert openmp_defaults({}) == {"OMP_NUM_THREADS": cores, "GOMP_SPINCOUNT": SPIN_COUNT}
    assert openmp_defaults({"OMP_NUM_THREADS": "1"}) == {"GOMP_SPINCOUNT": SPIN_COUNT}
    # libgomp's spin count overrides the wait policy, so an explicit policy gets no spin count
    assert openmp_defaults({"OMP_WAIT_POLICY": "PASSIVE"}) == {"OMP_NUM_THREADS": cores}
    assert openmp_defaults({"GOMP_SPINCOUNT": "0", "OMP_NUM_THREADS": "2"}) == {}


def test_cli_sets_the_openmp_defaults_before_mxnet_is_imported():
    import os
    import subprocess
    import sys
    code = ("import os; from fashion_gluon.cli import set_openmp_defaults; set_openmp_defaults(); "
            "print(os.environ['OMP_NUM_THREADS'], os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(len(os.sched_getaffinity(0))), "20000"]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "None"]


def test_cli_picks_naive_engine_only_for_cpu_runs():
    import os
    import subprocess
    import sys

    def engine(argv: list, **extra) -> str:
        code = ("import os, sys; from fashion_gluon.cli import use_naive_engine_on_cpu; "
                "use_naive_engine_on_cpu(sys.argv[1:]); print(os.environ.get('MXNET_ENGINE_TYPE', 'unset'))")
        env = {k: v for k, v in os.environ.items() if k not in ("MXNET_ENGINE_TYPE", "DMLC_ROLE")}
        out = subprocess.run([sys.executable, "-c", code, *argv], env={**env, **extra},
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    assert engine(["train", "--ctx", "cpu"]) == "NaiveEngine"
    assert engine(["train", "--ctx", "gpu0,gpu1"]) == "unset"
    assert engine(["train", "--ctx=gpu0"]) == "unset"
    assert engine(["train", "--out", "runs/gpu1", "--init-from", "gpu", "--ctx", "cpu"]) == "NaiveEngine"  # no context
    assert engine(["train"], DMLC_ROLE="worker") == "unset"
    assert engine(["train"], MXNET_ENGINE_TYPE="ThreadedEngine") == "ThreadedEngine"


@pytest.mark.parametrize("module", ["fashion_gluon", "fashion_gluon.cli"])
def test_python_dash_m_runs_the_command(module):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: fashion-gluon" in done.stdout, done.stderr[-500:]


@pytest.mark.parametrize("argv, last", [
    (["summary", "hourglass_small", "--input", "64x64"], "GMACs "),
    (["evaluate", "--truth", "missing.csv", "--pred", "missing.csv"], "fashion-gluon evaluate: error: missing.csv"),
])
def test_mxnets_engine_line_comes_before_what_a_command_prints(tmp_path, argv, last):
    """MXNet logs its engine when the engine starts: at the first op, or at exit after everything."""
    import os
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "fashion_gluon.cli", *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env={**os.environ, "MXNET_ENGINE_TYPE": "NaiveEngine"})
    assert "MXNet start using engine" in out.stdout and out.stdout.splitlines()[-1].startswith(last)
