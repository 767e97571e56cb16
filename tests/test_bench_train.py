"""``bench train``: interleaved training variants in worker processes (figures are recorded in
docs/performance.md, not asserted; here only what the command prints and refuses)."""
import pytest

from fashion_gluon.cli import main
from fashion_gluon.tools import bench_train
from fashion_gluon.tools.train_variants import Variant, parse_variant

SMALL = ["bench", "train", "model.kwargs.channels=16", "--size", "64", "--rounds", "2", "--steps", "1"]


def test_variant_names_parse_into_precision_options_and_overrides():
    assert parse_variant("fp32") == Variant("fp32", "fp32")
    assert parse_variant("bf16+mp+train.optimizer=sgd+dynamic+env.GOMP_SPINCOUNT=1000") == Variant(
        "bf16+mp+train.optimizer=sgd+dynamic+env.GOMP_SPINCOUNT=1000", "bf16", ("mp", "dynamic"),
        ("train.optimizer=sgd",), ("env.GOMP_SPINCOUNT=1000",))


def test_each_option_sets_its_worker_environment(monkeypatch):
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    env = parse_variant("fp32").env()
    assert env["MXNET_ENGINE_TYPE"] == "NaiveEngine" and env["GOMP_SPINCOUNT"] == "20000"
    assert "OMP_WAIT_POLICY" not in env
    assert "MXNET_EXEC_BULK_EXEC_TRAIN" not in env
    assert parse_variant("fp32+threaded").env()["MXNET_ENGINE_TYPE"] == "ThreadedEnginePerDevice"
    assert not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(parse_variant("fp32+spin").env())
    passive = parse_variant("fp32+passive").env()
    assert passive["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in passive
    assert parse_variant("fp32+env.OMP_NUM_THREADS=1+env.A=b=c").env()["OMP_NUM_THREADS"] == "1"
    assert parse_variant("fp32+env.A=b=c").env()["A"] == "b=c"
    assert parse_variant("fp32+nobulk").env()["MXNET_EXEC_BULK_EXEC_TRAIN"] == "0"
    assert parse_variant("fp32").env(profile=True)["MXNET_EXEC_BULK_EXEC_TRAIN"] == "0"


def test_ratio_is_the_median_of_per_round_ratios():
    figures = bench_train.variant_figures([10.0, 30.0, 12.0], [10.0, 20.0, 8.0])
    assert figures == {"img_per_s": 12.0, "img_per_s_range": [10.0, 30.0], "ratio": 1.5, "ratio_range": [1.0, 1.5],
                       "rounds_img_per_s": [10.0, 30.0, 12.0]}


def test_format_lists_variants_skips_and_operator_shares():
    result = {"config": "cpu_fast", "model": "cpn_resnet18", "batch": 8, "input_size": [160, 160], "rounds": 3,
              "steps": 2, "cpu": {"model": "Test CPU", "features": ["AVX2"]}, "threads": "2", "profiled": True,
              "variants": [{"name": "fp32", "img_per_s": 20.0, "img_per_s_range": [19.0, 21.0], "ratio": 1.0,
                            "ratio_range": [1.0, 1.0],
                            "profile": {"ms_per_step": 400.0,
                                        "operators_ms_per_step": {"Convolution": 90.0, "adam_update": 30.0,
                                                                  "BatchNorm": 60.0, "relu": 20.0}}},
                           {"name": "bf16", "skipped": "no bf16 here"}]}
    assert bench_train.format_train(result, top=2).splitlines() == [
        "cpn_resnet18 (cpu_fast), batch 8, 160x160, 3 rounds x 2 steps; Test CPU (AVX2), OMP_NUM_THREADS=2; "
        "profiled: every variant unbulked (MXNET_EXEC_BULK_EXEC_TRAIN=0)",
        "fp32    20.00 img/s (19.00-21.00)  ratio 1.00 (1.00-1.00)",
        "bf16  skipped: no bf16 here",
        "profile fp32: 400 ms/step, operators 200 ms (50 % of the step; a static graph: the profiler counts each "
        "of its ops twice)",
        "  Convolution                                  90.0 ms   45.0 %",
        "  BatchNorm                                    60.0 ms   30.0 %"]


def test_command_prints_one_line_per_variant_and_skips_bf16_without_it(monkeypatch, capsys):
    monkeypatch.setattr(bench_train, "cpu_has_bf16", lambda: False)
    assert main(SMALL + ["--variants", "fp32,bf16,fp32+mp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("cpn_resnet18 (cpu_fast), batch 8, 64x64, 2 rounds x 1 steps; ")
    assert lines[1].startswith("fp32     ") and " ratio 1.00 (1.00-1.00)" in lines[1]
    assert lines[2] == ("bf16     skipped: this CPU has no native bfloat16 (AVX512-BF16 or AMX), which MXNet's "
                        "oneDNN needs for bf16")
    assert lines[3].startswith("fp32+mp  ") and " img/s (" in lines[3]


@pytest.mark.parametrize("variants, bad", [("fp32,fp16", "'fp16'"), ("fp32+fast", "'fp32+fast'")])
def test_an_unknown_variant_is_refused_in_one_line(capsys, variants, bad):
    assert main(SMALL + ["--variants", variants]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"fashion-gluon bench: error: --variants: unknown variant {bad}: a variant is fp32 or bf16, then any of "
        "+mp, +dynamic, +alloc, +loader, +threaded, +spin, +passive, +nobulk, +key=value (a config override) or "
        "+env.NAME=VALUE, e.g. fp32+mp"]


def test_the_results_are_the_last_lines_printed():
    """MXNet logs its engine when the engine starts; the parent never ran an op, so it did at exit."""
    import os
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "fashion_gluon.cli", *SMALL, "--variants", "fp32", "--rounds", "1"],
                         env={**os.environ, "MXNET_ENGINE_TYPE": "NaiveEngine"}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, check=True)
    assert out.stdout.splitlines()[-1].startswith("fp32  ")
