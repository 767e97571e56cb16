"""The ``fashion-gluon`` command line: :func:`main`. The commands live in :mod:`.run`,
:mod:`.predict` and :mod:`.scale`; :mod:`.parser` assembles them. Package errors, and the
operating system's errors about files (they name the file), are printed as one line (a list
of problems of one file as its lines), exit status 2."""
from __future__ import annotations

import os
import sys

from ..errors import FashionGluonError


def use_all_cores() -> None:
    """MXNet's CPU build starts one OpenMP thread per op on this kind of machine unless told
    otherwise; use every core this process may run on (an explicit OMP_NUM_THREADS wins).
    Must run before mxnet is imported."""
    if "mxnet" not in sys.modules:
        os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))


def use_naive_engine_on_cpu(argv: "list[str]") -> None:
    """CPU-only runs use MXNet's NaiveEngine (each op runs in the calling thread). For the
    hybridized graphs here it trains as fast as the threaded engine, and it avoids a 10-20 %
    training slow-down the threaded engine showed for the rest of a process after the first
    validation pass (demo model, 160², bf16: 25.4 / 26.4 / 25.7 img/s in epochs 1-3 against
    24.9 / 22.4 / 22.9). GPU runs and parameter-server processes (DMLC_ROLE set) keep the
    threaded engine; an explicit MXNET_ENGINE_TYPE wins. Must run before mxnet is imported."""
    if "mxnet" in sys.modules or "DMLC_ROLE" in os.environ or any("gpu" in arg for arg in argv):
        return
    os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")


def main(argv: "list[str] | None" = None) -> int:
    use_all_cores()
    use_naive_engine_on_cpu(sys.argv[1:] if argv is None else argv)
    # deferred: mxnet reads its thread and engine settings when imported, so the commands
    # (which import mxnet) are imported only after the two calls above
    from .parser import build_parser
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FashionGluonError, OSError, ValueError) as error:
        print(f"fashion-gluon {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0

