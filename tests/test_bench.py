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
    assert "(66 % of peak)" in text and "INT8 3.00x" in text


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
