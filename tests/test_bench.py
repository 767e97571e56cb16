"""The benchmark command's plumbing (figures themselves are recorded in docs/performance.md, not
asserted, except that no measured share exceeds its precision's measured limit)."""
import json

import pytest

from fashion_gluon.tools import bench, limits

#: A hand-made :func:`limits.measure_limits` result.
LIMITS = {"cpu": {"model": "Test CPU", "features": ["AVX2", "VNNI"]}, "n": 2048, "conv_shape": [8, 512, 16, 2],
          "precisions": {"fp32": {"gflops": 100.0, "library": "mxnet", "kernel": "Convolution",
                                  "rates": {"mxnet": {"FullyConnected": 90.0, "Convolution": 100.0},
                                            "openvino": {"MatMul": 80.0, "Convolution": 85.0}}},
                         "int8": {"gflops": 400.0, "library": "openvino", "kernel": "MatMul",
                                  "rates": {"mxnet": {"FullyConnected": 300.0, "Convolution": 250.0},
                                            "openvino": {"MatMul": 400.0, "Convolution": 350.0}}}},
          "skipped": {"bf16": "this CPU has no native bfloat16 (AVX512-BF16 or AMX)"}}


@pytest.fixture(scope="module")
def measured_limits():
    """This machine's limits, measured once for the module at the default size."""
    return limits.measure_limits(repeats=3)


def test_bench_data_reports_every_size_and_source(tmp_path):
    result = bench.bench_data(sizes=(64,), images=6, workers=1)
    figures = result["sizes"]["64"]
    assert set(figures) == {"jpeg", "rec"}
    assert all(f["img_per_s_per_core"] > 0 and f["loader_img_per_s"] > 0 for f in figures.values())
    assert result["img_per_s_per_core"] == figures["jpeg"]["img_per_s_per_core"]


def test_format_result_lists_limits_models_and_data():
    result = {"limits": LIMITS,
              "data": {"workers": 2, "sizes": {"256": {"jpeg": {"img_per_s_per_core": 400.0, "loader_img_per_s": 150.0}}}},
              "model": {"m": {"gmacs_per_img": 8.3, "infer_img_per_s": 4.0, "train_img_per_s": 1.2,
                              "infer_limit_share": 0.66, "train_limit_share": 0.6,
                              "precision_img_per_s": {"fp32": 4.0, "bf16": 5.0, "int8": 12.0},
                              "precision_limit_share": {"fp32": 0.66, "bf16": None, "int8": 0.5},
                              "int8_speedup": 3.0, "bf16_speedup": 1.25,
                              "train_bf16_img_per_s": 2.0, "train_bf16_limit_share": None}}}
    text = bench.format_result(result)
    assert text.startswith("CPU: Test CPU; features: AVX2, VNNI\n")
    assert ("fp32 limit: 100 GFLOP/s, mxnet Convolution (others: mxnet FullyConnected 90, openvino MatMul 80, "
            "openvino Convolution 85)") in text
    assert "int8 limit: 400 GOP/s, openvino MatMul (others: mxnet FullyConnected 300, mxnet Convolution 250, " in text
    assert "bf16: skipped (this CPU has no native bfloat16" in text and "jpeg 256²:   400.0 img/s/core" in text
    assert "infer 4.00 img/s (66 % of the fp32 limit), train 1.20 img/s (60 % of the fp32 limit)" in text
    assert "int8 12.00 img/s (50 % of the int8 limit)" in text and "bf16 5.00 img/s (no bf16 limit)" in text
    assert "INT8 3.00x" in text and "bf16 1.25x" in text and "training bf16 2.00 img/s (no bf16 limit)" in text


def test_limit_share_divides_by_its_own_precision_only():
    assert limits.limit_share(LIMITS, "int8", 100.0) == 0.25
    assert limits.limit_share(LIMITS, "fp32", 50.0) == 0.5
    assert limits.limit_share(LIMITS, "bf16", 50.0) is None


@pytest.mark.parametrize("precision", limits.PRECISIONS)
def test_a_real_tiny_model_stays_within_the_measured_limit(measured_limits, precision):
    from fashion_gluon.cpu import cpu_features
    assert measured_limits["cpu"]["features"] == cpu_features()
    if precision in measured_limits["skipped"]:
        pytest.skip(f"{precision}: {measured_limits['skipped'][precision]}")
    limit = measured_limits["precisions"][precision]
    assert limit["gflops"] == limit["rates"][limit["library"]][limit["kernel"]] == max(
        rate for kernels in limit["rates"].values() for rate in kernels.values())
    figures = bench.bench_precisions("cpn_resnet18", batch=2, size=64, warmup=1, iters=2, limits=measured_limits)
    assert 0 < figures["precision_limit_share"][precision] <= 1.0
    if precision == "fp32":
        model = bench.bench_model("cpn_resnet18", batch=2, size=64, warmup=1, iters=2, limits=measured_limits)
        assert 0 < model["infer_limit_share"] <= 1.0 and 0 < model["train_limit_share"] <= 1.0
    if precision == "bf16":
        train = bench.bench_train_bf16("cpn_resnet18", batch=2, size=64)
        share = bench.add_shares({"gmacs_per_img": figures["gmacs_per_img"], "train_bf16_img_per_s": train},
                                 measured_limits)["train_bf16_limit_share"]
        assert 0 < share <= 1.0


def test_bench_precisions_measures_bf16_only_where_the_cpu_has_it():
    from fashion_gluon.cpu import NO_BF16, cpu_has_bf16
    figures = bench.bench_precisions("hourglass_small", batch=2, size=64, warmup=1, iters=1)
    rates = figures["precision_img_per_s"]
    assert set(rates) == ({"fp32", "int8", "bf16"} if cpu_has_bf16() else {"fp32", "int8"})
    assert figures["int8_speedup"] == pytest.approx(rates["int8"] / rates["fp32"])
    assert ("bf16_speedup" in figures) == cpu_has_bf16() and figures.get("bf16_missing", NO_BF16) == NO_BF16
    assert "precision_limit_share" not in figures, "no limits given, no shares"
    text = bench.format_result({"limits": LIMITS, "model": {"m": {
        "gmacs_per_img": 1.0, "infer_img_per_s": 1.0, "train_img_per_s": 1.0, "infer_limit_share": 0.5,
        "train_limit_share": 0.5, "precision_img_per_s": {"fp32": 1.0, "int8": 2.0},
        "precision_limit_share": {"fp32": 0.5, "int8": 0.25}, "int8_speedup": 2.0, "bf16_missing": NO_BF16}}})
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


def test_bench_infer_measures_every_path_here_and_scores_each_on_a_split(tiny_run, tiny_data, capsys,
                                                                        measured_limits):
    from fashion_gluon.cli import main
    from fashion_gluon.cpu import cpu_has_bf16
    from fashion_gluon.inference.evaluate import evaluate_run
    from fashion_gluon.inference.runtimes import available_runtimes
    from fashion_gluon.tools.bench_infer import PATHS, bench_infer, format_infer
    result = bench_infer(checkpoint=tiny_run, batch=4, data_root=tiny_data, split="val", rounds=1,
                         limits=measured_limits)
    rows = {(row["runtime"], row["precision"]): row for row in result["paths"]}
    assert list(rows) == list(PATHS) and result["input_size"] == [64, 64]
    expected = {("mxnet", "fp32"), ("mxnet", "int8")} | {(r, p) for r in ("onnxruntime", "openvino")
                                                          if r in available_runtimes() for p in ("fp32", "int8")}
    if cpu_has_bf16():
        expected |= {("mxnet", "bf16")} | ({("openvino", "bf16")} if "openvino" in available_runtimes() else set())
    measured = {key for key, row in rows.items() if "img_per_s" in row}
    assert measured == expected
    assert all(rows[key]["img_per_s"] > 0 and rows[key]["latency_ms"] > 0 and 0 < rows[key]["limit_share"] <= 1.0
               for key in measured), {key: rows[key].get("limit_share") for key in measured}
    assert all(rows[key]["missing"] for key in set(PATHS) - measured)
    fp32_ne = evaluate_run(tiny_run, tiny_data, batch_size=4)["ne"]
    assert rows[("mxnet", "fp32")]["ne"] == pytest.approx(fp32_ne), "the same NE as evaluate"
    for runtime in {"onnxruntime", "openvino"} & set(available_runtimes()):
        assert rows[(runtime, "fp32")]["ne"] == pytest.approx(fp32_ne, abs=0.01)
    table = format_infer(result)
    assert table.count("\n| ") == len(PATHS) + 1 and "val NE" in table and "fp32 limit: " in table
    assert main(["bench", "infer", "--checkpoint", str(tiny_run), "--batch", "2", "--rounds", "1", "--json"]) == 0
    assert "ne" not in json.loads(capsys.readouterr().out)["paths"][0], "no --split, no NE"


@pytest.mark.parametrize("what, model, expected", [("all", None, list(bench.ALL_MODELS)),
                                                   ("all", "hourglass_small", ["hourglass_small"]),
                                                   ("model", None, ["cpn_resnet50"])])
def test_bench_run_measures_the_chosen_model_or_the_reference_ones(monkeypatch, what, model, expected):
    measured = []
    calls = iter([LIMITS, {**LIMITS, "precisions": {"fp32": {"rates": {"mxnet": {"FullyConnected": 200.0,
                                                                                  "Convolution": 10.0},
                                                                        "openvino": {"MatMul": 1.0, "Convolution": 1.0}}},
                                                     "int8": LIMITS["precisions"]["int8"]}}])
    monkeypatch.setattr(bench, "measure_limits", lambda: next(calls))
    monkeypatch.setattr(bench, "bench_data", lambda *args, **kwargs: {"img_per_s_per_core": 1.0})
    monkeypatch.setattr(bench, "bench_model", lambda name, *args, **kwargs: measured.append(name) or
                        {"infer_img_per_s": 2.0, "train_img_per_s": 1.0, "gmacs_per_img": 10.0})
    monkeypatch.setattr(bench, "bench_precisions", lambda *args, **kwargs: {"bf16_missing": "none here"})
    result = bench.run(what, model=model, batch=2, size=64)
    assert measured == expected and list(result["model"]) == expected
    fp32 = result["limits"]["precisions"]["fp32"]  # measured before and after the models, faster kept
    assert (fp32["gflops"], fp32["kernel"]) == (200.0, "FullyConnected")
    assert result["model"][expected[0]]["infer_limit_share"] == 2 * 10.0 * 2.0 / 200.0


def test_bench_int8_compares_placements_against_fp32_and_scores_each(tiny_run, tiny_data, capsys):
    pytest.importorskip("openvino")
    from fashion_gluon.cli import main
    from fashion_gluon.inference.evaluate import evaluate_run
    from fashion_gluon.tools.int8_audit import compare_placements, format_placements
    result = compare_placements(["convs:channel:7", "eltwise:tensor:8"], checkpoint=tiny_run, batch=2,
                                data_root=tiny_data, split="val", rounds=1)
    rows = result["rows"]
    assert [row["variant"] for row in rows] == ["fp32", "convs:channel:7", "eltwise:tensor:8"]
    assert rows[1]["weight_bits"] == 7 and rows[2]["weight_scale"] == "tensor" and rows[2]["placement"] == "eltwise"
    assert rows[0]["ratio"] == 1.0 and all(row["img_per_s"] > 0 for row in rows)
    assert rows[0]["heatmap_error"] == 0.0 and all(0 < row["heatmap_error"] < 0.05 for row in rows[1:])
    assert all(0.5 < row["int8_flop_share"] < 1.0 for row in rows[1:]), "stem and heatmap convs stay fp32"
    fp32_ne = evaluate_run(tiny_run, tiny_data, batch_size=2)["ne"]
    assert rows[0]["ne"] == pytest.approx(fp32_ne, abs=0.01) and rows[0]["ne_loss"] == pytest.approx(0, abs=0.01)
    assert all(row["ne_loss"] == pytest.approx(row["ne"] - fp32_ne) for row in rows)
    assert format_placements(result).count("\n| ") == 4 and "val NE" in format_placements(result)
    assert main(["bench", "int8", "--checkpoint", str(tiny_run), "--variants", "convs:row"]) == 2
    assert capsys.readouterr().err.strip().endswith("weight scale 'row' is not one of channel, tensor")
