"""Each precision's limit: which kernels of which library set it, where each is measured, and
how two measurements merge (speeds are not asserted, only that every measured rate is a rate)."""
import json
import subprocess
import sys

from fashion_gluon.cpu import cpu_features, cpu_has_bf16
from fashion_gluon.tools import limits

TINY = {"n": 64, "repeats": 1, "shape": (1, 16, 8, 1)}


def _limits(fp32: dict) -> dict:
    return limits._settle({"cpu": {"model": "m", "features": []}, "n": 64, "conv_shape": [1, 16, 8, 1],
                           "precisions": {"fp32": {"rates": fp32}}, "skipped": {}})


def test_measure_limits_skips_what_the_cpu_or_the_install_lacks(monkeypatch):
    monkeypatch.setattr(limits, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(limits, "installed", lambda name: False)
    result = limits.measure_limits(**TINY)
    assert set(result["precisions"]) == {"fp32", "int8"} and set(result["skipped"]) == {"bf16", "openvino"}
    for limit in result["precisions"].values():
        assert list(limit["rates"]) == ["mxnet"] and list(limit["rates"]["mxnet"]) == list(limits.KERNELS["mxnet"])
        assert limit["library"] == "mxnet" and limit["gflops"] == max(limit["rates"]["mxnet"].values()) > 0
    lines = limits.format_limits(result)
    assert "bf16: skipped (this CPU has no native bfloat16 (AVX512-BF16 or AMX))" in lines
    assert "openvino: skipped (openvino is not installed)" in lines


def test_openvino_is_measured_in_a_process_of_its_own():
    """The measuring process never loads OpenVINO, whose state changed what MXNet measured."""
    script = ("import json, sys\nfrom fashion_gluon.tools.limits import measure_limits\n"
              "r = measure_limits(n=64, repeats=1, shape=(1, 16, 8, 1))\n"
              "print(json.dumps({'loaded': 'openvino' in sys.modules, 'limits': r}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] is False
    expected = ["fp32", "bf16", "int8"] if cpu_has_bf16() else ["fp32", "int8"]
    assert list(result["limits"]["precisions"]) == expected
    assert result["limits"]["cpu"]["features"] == cpu_features()
    libraries = ["mxnet", "openvino"] if limits.installed("openvino") else ["mxnet"]
    for limit in result["limits"]["precisions"].values():
        assert list(limit["rates"]) == libraries
        assert all(list(limit["rates"][name]) == list(limits.KERNELS[name]) for name in libraries)


def test_the_fastest_kernel_sets_the_limit_and_merging_keeps_each_kernels_faster_rate():
    first = _limits({"mxnet": {"FullyConnected": 90.0, "Convolution": 120.0}, "openvino": {"MatMul": 80.0}})
    assert (first["precisions"]["fp32"]["gflops"], first["precisions"]["fp32"]["library"],
            first["precisions"]["fp32"]["kernel"]) == (120.0, "mxnet", "Convolution")
    second = _limits({"mxnet": {"FullyConnected": 60.0, "Convolution": 100.0}, "openvino": {"MatMul": 130.0}})
    merged = limits.best_limits(first, second)
    assert merged["precisions"]["fp32"]["rates"] == {"mxnet": {"FullyConnected": 90.0, "Convolution": 120.0},
                                                     "openvino": {"MatMul": 130.0}}
    assert (merged["precisions"]["fp32"]["gflops"], merged["precisions"]["fp32"]["library"]) == (130.0, "openvino")
    assert first["precisions"]["fp32"]["gflops"] == 120.0, "the inputs are left as they were"
    assert limits.format_limits(merged)[1] == ("fp32 limit: 130 GFLOP/s, openvino MatMul (others: mxnet "
                                               "FullyConnected 90, mxnet Convolution 120)")


def test_conv_flops_counts_every_multiply_add_twice():
    assert limits.conv_flops((2, 4, 3, 5)) == 2 * 2 * 4 * 4 * 9 * 3 * 3 * 5


def test_the_cpu_features_found_are_named_in_the_first_line(monkeypatch):
    monkeypatch.setattr(limits, "installed", lambda name: False)
    result = limits.measure_limits(**TINY)
    assert limits.format_limits(result)[0] == f"CPU: {result['cpu']['model']}; features: " + (
        ", ".join(cpu_features()) or "none found")

