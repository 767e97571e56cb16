"""The ``fashion-gluon`` command line: :func:`main`. The commands live in :mod:`.run`,
:mod:`.predict` and :mod:`.scale`; :mod:`.parser` assembles them. Package errors, and the
operating system's errors about files (they name the file), are printed as one line (a list
of problems of one file as its lines), exit status 2."""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

from ..errors import FashionGluonError
from ..openmp import openmp_defaults


def set_openmp_defaults() -> None:
    """One OpenMP thread per usable core and a short spin between ops (:mod:`..openmp`; explicit
    values win). Must run before mxnet is imported."""
    if "mxnet" not in sys.modules:
        os.environ.update(openmp_defaults(os.environ))


def ctx_values(argv: "list[str]") -> "list[str]":
    """The values given to ``--ctx`` in ``argv`` (``--ctx gpu0`` or ``--ctx=gpu0``); other
    arguments, such as ``--out runs/gpu1``, are not contexts."""
    values = [argv[n + 1] for n, arg in enumerate(argv[:-1]) if arg == "--ctx"]
    return values + [arg.split("=", 1)[1] for arg in argv if arg.startswith("--ctx=")]


class _StartEngineAtImport(importlib.abc.MetaPathFinder):
    """Finds ``mxnet`` once and, when the module has run, starts its engine (see
    :func:`start_engine_at_import`)."""

    def find_spec(self, name, path=None, target=None):
        if name != "mxnet":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def run_then_start(module) -> None:
            run_module(module)
            module.nd.zeros((1,)).wait_to_read()

        spec.loader.exec_module = run_then_start
        return spec


def start_engine_at_import() -> None:
    """MXNet logs which engine it uses when the engine starts (where MXNET_ENGINE_TYPE is set),
    which is otherwise at the first operation or at exit, after the command's own last line;
    start it as soon as a command imports MXNet, so that line comes before everything the
    command prints. Must run before mxnet is imported."""
    if "mxnet" not in sys.modules and "MXNET_ENGINE_TYPE" in os.environ:
        sys.meta_path.insert(0, _StartEngineAtImport())


def use_naive_engine_on_cpu(argv: "list[str]") -> None:
    """CPU-only runs use MXNet's NaiveEngine (each op runs in the calling thread). For the
    hybridized graphs here it trains as fast as the threaded engine, and it avoids a 10-20 %
    training slow-down the threaded engine showed for the rest of a process after the first
    validation pass (demo model, 160², bf16: 25.4 / 26.4 / 25.7 img/s in epochs 1-3 against
    24.9 / 22.4 / 22.9). GPU runs and parameter-server processes (DMLC_ROLE set) keep the
    threaded engine; an explicit MXNET_ENGINE_TYPE wins. Must run before mxnet is imported."""
    if "mxnet" in sys.modules or "DMLC_ROLE" in os.environ or "gpu" in ",".join(ctx_values(argv)):
        return
    os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")


def main(argv: "list[str] | None" = None) -> int:
    set_openmp_defaults()
    use_naive_engine_on_cpu(sys.argv[1:] if argv is None else argv)
    start_engine_at_import()
    # deferred: mxnet reads its thread and engine settings when imported, so the commands
    # (which import mxnet when they run) are imported only after the calls above
    from .parser import build_parser
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:  # the reader of stdout stopped early (`... | head`): nothing to say
        quiet_stdout()
        return PIPE_CLOSED
    except (FashionGluonError, OSError, ValueError) as error:
        print(f"fashion-gluon {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fashion-gluon {args.command}: interrupted; {interrupted_hint(args)}", file=sys.stderr)
        return 130
    return 0


#: Exit status when stdout's reader has gone, as a shell reports a command ended by SIGPIPE.
PIPE_CLOSED = 128 + 13


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush into a closed pipe
    prints nothing either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured in tests)
        pass


def interrupted_hint(args) -> str:
    """What an interrupted command leaves: every file is written atomically, so a run keeps its
    last finished checkpoint and ``train --resume`` goes on from it."""
    run_dir = getattr(args, "resume", None) or getattr(args, "out", None)
    if args.command == "train" and run_dir:
        return f"the last finished checkpoint in {run_dir} is intact; continue with `fashion-gluon train --resume {run_dir}`"
    return "files already written are intact (every write is atomic)"

