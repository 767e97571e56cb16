"""The CLI builds every command's parser (``--help``) without importing MXNet or the other heavy
libraries; a command imports them when it runs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("mxnet", "gluoncv", "cv2", "onnx", "onnxruntime", "openvino", "matplotlib")


def test_every_parser_builds_without_heavy_imports():
    code = f"""
import argparse, json, sys
from fashion_gluon.cli.parser import build_parser
parser = build_parser()
commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
for command in commands.values():
    command.format_help()
print(json.dumps({{"commands": sorted(commands), "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["heavy"] == []
    assert result["commands"] == sorted(["synth", "evaluate", "train", "swa", "summary", "weights", "bench", "demo",
                                         "predict", "ensemble", "validate-submission", "show", "launch", "pack",
                                         "export", "quantize"])


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["predict", "--help"]], ids=" ".join)
def test_help_imports_no_mxnet(argv):
    code = (f"import sys\nfrom fashion_gluon.cli import main\ntry:\n    main({argv!r})\n"
            "except SystemExit as exit:\n    print(exit.code, 'mxnet' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 False", done.stderr
