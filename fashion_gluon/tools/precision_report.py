"""The precision report of ``quantize``: validation NE of a run in fp32, bf16 (where the CPU
runs it) and of its INT8 export, each through the same prediction path as ``predict``."""
from __future__ import annotations

import os

from ..cpu import cpu_has_bf16
from ..inference.evaluate import evaluate_model
from ..inference.load import load_model
from ..runs import run_data_root


def precision_report(run_dir: "str | os.PathLike", int8_dir: "str | os.PathLike",
                     data_root: "str | os.PathLike | None" = None, split: str = "val",
                     batch_size: int = 8, runtime: "str | None" = None) -> dict:
    """Validation NE (percent) of a run's fp32 inference, bf16 (where the CPU runs it) and its
    INT8 export (an ONNX one run by ``runtime``, default OpenVINO where installed), and the NE
    points INT8 loses against fp32."""
    data_root = data_root or run_data_root(run_dir)
    models = {"fp32": load_model(run_dir), "int8": load_model(int8_dir, runtime=runtime or "auto")}
    runtime = getattr(models["int8"].net, "runtime", "mxnet")  # what auto chose: OnnxNet says, MXNet nets do not
    if cpu_has_bf16():
        models["bf16"] = load_model(run_dir, precision="bf16")
    ne = {name: evaluate_model(model, data_root, split, batch_size=batch_size)["ne"]
          for name, model in models.items()}
    return {"split": split, "ne": ne, "int8_ne_loss": ne["int8"] - ne["fp32"], "int8_runtime": runtime}


__all__ = ["precision_report"]
