"""Helpers shared by the command modules: contexts, sizes, scales, data roots, result output.
Like the command modules, it imports MXNet and the modules that use it only inside the functions
that need them, so that building the parser (``--help``) stays fast."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FashionGluonError

if TYPE_CHECKING:
    import mxnet as mx


def parse_ctx(text: str) -> list[mx.Context]:
    """``'cpu'`` → [cpu(0)]; ``'gpu0,gpu1'`` → [gpu(0), gpu(1)]."""
    import mxnet as mx

    contexts = []
    for part in text.split(","):
        part = part.strip()
        if part == "cpu":
            contexts.append(mx.cpu())
        elif part.startswith("gpu") and part[3:].isdigit():
            contexts.append(mx.gpu(int(part[3:])))
        else:
            raise FashionGluonError(f"bad context {part!r}; use cpu or gpu0,gpu1,...")
    return contexts


def parse_size(text: str) -> tuple[int, int]:
    """``'256x192'`` (H x W) or ``'256'`` → (H, W)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be H or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"size must be H or HxW, got {text!r}")
    return (values[0], values[-1])


def parse_scales(text: str) -> tuple[float, ...]:
    """``'0.75,1,1.25'`` → (0.75, 1.0, 1.25); every scale positive."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales must be comma-separated numbers, got {text!r}") from None
    if min(values) <= 0:
        raise argparse.ArgumentTypeError(f"scales must be positive, got {text!r}")
    return values


def add_test_time_options(parser: argparse.ArgumentParser) -> None:
    """``--flip``, ``--scales`` and ``--cascade``: how :class:`~fashion_gluon.inference.predictor.Predictor`
    predicts, for every command that predicts."""
    parser.add_argument("--flip", action="store_true", help="flip test")
    parser.add_argument("--scales", type=parse_scales, default=(1.0,), help="multi-scale test, e.g. 0.75,1,1.25")
    parser.add_argument("--cascade", action="store_true", help="second pass on a crop around the first")


def print_result(result: dict, as_json: bool) -> None:
    """A metrics result as JSON or as a table."""
    from ..metrics import format_table

    print(json.dumps(result) if as_json else format_table(result))


def data_root_of(data_root: "str | None", checkpoint) -> str:
    """``data_root`` if given, else the data ``checkpoint`` (a run or an export) was trained on."""
    if data_root:
        return data_root
    from ..inference.export import META, read_export_meta
    from ..runs import LAST, is_run, run_data_root

    checkpoint = Path(checkpoint)
    if is_run(checkpoint):
        return run_data_root(checkpoint)
    if not (checkpoint / META).is_file():
        raise FashionGluonError(f"{checkpoint} is neither a training run (no {LAST}) nor an exported model "
                                f"(no {META})")
    root = read_export_meta(checkpoint).get("data_root")
    if not isinstance(root, str) or not root:
        raise FashionGluonError(f"{checkpoint / META} records no data_root; pass --data-root")
    return root
