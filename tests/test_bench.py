"""The benchmark command's plumbing (figures themselves are recorded in the README, not asserted)."""
import json

import pytest

from fashion_gluon.tools import bench


def test_bench_data_reports_every_size_and_source(tmp_path):
    result = bench.bench_data(sizes=(64,), images=6, workers=1)
    figures = result["sizes"]["64"]
    assert set(figures) == {"jpeg", "rec"}
    assert all(f["img_per_s_per_core"] > 0 and f["loader_img_per_s"] > 0 for f in figures.values())
    assert result["img_per_s_per_core"] == figures["jpeg"]["img_per_s_per_core"]


def test_format_result_lists_models_and_data():
    result = {"gemm_peak_gflops": 100.0,
              "data": {"workers": 2, "sizes": {"256": {"jpeg": {"img_per_s_per_core": 400.0, "loader_img_per_s": 150.0}}}},
              "model": {"m": {"gmacs_per_img": 8.3, "infer_img_per_s": 4.0, "train_img_per_s": 1.2,
                              "infer_peak_share": 0.66, "train_peak_share": 0.6,
                              "precision_img_per_s": {"fp32": 4.0, "bf16": 5.0, "int8": 12.0},
                              "int8_speedup": 3.0, "bf16_speedup": 1.25}}}
    text = bench.format_result(result)
    assert "100.0 GFLOP/s" in text and "jpeg 256²:   400.0 img/s/core" in text
    assert "(66 % of peak)" in text and "INT8 3.00x" in text and "bf16 1.25x" in text


def test_bench_precisions_measures_bf16_only_where_the_cpu_has_it():
    from fashion_gluon.cpu import NO_BF16, cpu_has_bf16
    figures = bench.bench_precisions("hourglass_small", batch=2, size=64, warmup=1, iters=1)
    rates = figures["precision_img_per_s"]
    assert set(rates) == ({"fp32", "int8", "bf16"} if cpu_has_bf16() else {"fp32", "int8"})
    assert figures["int8_speedup"] == pytest.approx(rates["int8"] / rates["fp32"])
    assert ("bf16_speedup" in figures) == cpu_has_bf16() and figures.get("bf16_missing", NO_BF16) == NO_BF16
    text = bench.format_result({"gemm_peak_gflops": 1.0, "model": {"m": {
        "gmacs_per_img": 1.0, "infer_img_per_s": 1.0, "train_img_per_s": 1.0, "infer_peak_share": 0.5,
        "train_peak_share": 0.5, "precision_img_per_s": {"fp32": 1.0, "int8": 2.0}, "int8_speedup": 2.0,
        "bf16_missing": NO_BF16}}})
    assert f"INT8 2.00x fp32 (no bf16: {NO_BF16})" in text


def test_decoding_floor_of_dark_is_below_the_goal_and_far_below_the_quarter_rule(tiny_data, capsys):
    from fashion_gluon.cli import main
    from fashion_gluon.tools.codec_floor import decoding_floor
    floor = decoding_floor(tiny_data, sizes=(64, 160))
    assert floor["images"] > 0 and set(floor["sizes"]) == {"64", "160"}
    for figures in floor["sizes"].values():
        assert figures["dark"] < 0.05 < 0.5 < figures["quarter"]  # goal: ≤ 0.25 % at every size
    assert floor["sizes"]["64"]["quarter"] > floor["sizes"]["160"]["quarter"]  # the ¼-px rule costs more when small
    assert main(["bench", "codec", "--data-root", str(tiny_data), "--sizes", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sizes"]["64"]["dark"] == pytest.approx(floor["sizes"]["64"]["dark"])
    assert main(["bench", "codec"]) == 2  # needs --data-root


def test_bench_infer_measures_every_path_here_and_scores_each_on_a_split(tiny_run, tiny_data, capsys):
    from fashion_gluon.cli import main
    from fashion_gluon.cpu import cpu_has_bf16
    from fashion_gluon.inference.evaluate import evaluate_run
    from fashion_gluon.inference.runtimes import available_runtimes
    from fashion_gluon.tools.bench_infer import PATHS, bench_infer, format_infer
    result = bench_infer(checkpoint=tiny_run, batch=4, data_root=tiny_data, split="val", rounds=1)
    rows = {(row["runtime"], row["precision"]): row for row in result["paths"]}
    assert list(rows) == list(PATHS) and result["input_size"] == [64, 64]
    expected = {("mxnet", "fp32"), ("mxnet", "int8")} | {(r, p) for r in ("onnxruntime", "openvino")
                                                          if r in available_runtimes() for p in ("fp32", "int8")}
    if cpu_has_bf16():
        expected |= {("mxnet", "bf16")} | ({("openvino", "bf16")} if "openvino" in available_runtimes() else set())
    measured = {key for key, row in rows.items() if "img_per_s" in row}
    assert measured == expected
    assert all(rows[key]["img_per_s"] > 0 and rows[key]["latency_ms"] > 0 and rows[key]["peak_share"] > 0
               for key in measured)
    assert all(rows[key]["missing"] for key in set(PATHS) - measured)
    fp32_ne = evaluate_run(tiny_run, tiny_data, batch_size=4)["ne"]
    assert rows[("mxnet", "fp32")]["ne"] == pytest.approx(fp32_ne), "the same NE as evaluate"
    for runtime in {"onnxruntime", "openvino"} & set(available_runtimes()):
        assert rows[(runtime, "fp32")]["ne"] == pytest.approx(fp32_ne, abs=0.01)
    table = format_infer(result)
    assert table.count("\n| ") == len(PATHS) + 1 and "val NE" in table
    assert main(["bench", "infer", "--checkpoint", str(tiny_run), "--batch", "2", "--rounds", "1", "--json"]) == 0
    assert "ne" not in json.loads(capsys.readouterr().out)["paths"][0], "no --split, no NE"


@pytest.mark.parametrize("what, model, expected", [("all", None, list(bench.ALL_MODELS)),
                                                   ("all", "hourglass_small", ["hourglass_small"]),
                                                   ("model", None, ["cpn_resnet50"])])
def test_bench_run_measures_the_chosen_model_or_the_reference_ones(monkeypatch, what, model, expected):
    measured = []
    monkeypatch.setattr(bench, "gemm_peak_gflops", lambda: 100.0)
    monkeypatch.setattr(bench, "bench_data", lambda *args, **kwargs: {"img_per_s_per_core": 1.0})
    monkeypatch.setattr(bench, "bench_model", lambda name, *args, **kwargs: measured.append(name) or
                        {"infer_img_per_s": 2.0, "train_img_per_s": 1.0})
    monkeypatch.setattr(bench, "bench_precisions", lambda *args, **kwargs: {"bf16_missing": "none here"})
    result = bench.run(what, model=model, batch=2, size=64)
    assert measured == expected and list(result["model"]) == expected
