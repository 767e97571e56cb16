"""The variants ``fashion-gluon bench train`` compares (:mod:`.bench_train`): their names and what
each part changes; no heavy imports, so that the CLI's help can list them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import FashionGluonError
from ..openmp import openmp_defaults

#: What ``bench train`` compares unless told: training as it runs, then three candidate changes.
DEFAULT_VARIANTS = ("fp32", "fp32+mp", "fp32+dynamic", "fp32+loader")
#: A variant name's first part.
PRECISIONS = ("fp32", "bf16")
#: A variant name's ``+OPTION`` parts (besides ``+key=value``, a config override, and
#: ``+env.NAME=VALUE``, an environment variable of its worker), what each changes.
OPTIONS = {
    "mp": "the optimizer's multi_precision=True",
    "dynamic": "hybridized without static_alloc and static_shape (training uses both)",
    "alloc": "hybridized with static_alloc only",
    "loader": "batches from the config's DataLoader over a synthetic set (or --data-root) instead of one random "
              "batch (its prefetch, 2 x num_workers batches, fills while the other variants run: use --steps well "
              "above it)",
    "threaded": "MXNet's threaded engine (the CLI trains with NaiveEngine on CPU)",
    "spin": "libgomp's default wait (threads spin 300000 iterations after each op; the CLI sets GOMP_SPINCOUNT=20000)",
    "passive": "OMP_WAIT_POLICY=PASSIVE: threads sleep at once after each op",
    "nobulk": "MXNET_EXEC_BULK_EXEC_TRAIN=0: no bulked op segments (as every variant runs when profiled)",
}
#: Environment of a worker with op segments unbulked (the profiler then times each operator alone).
NO_BULK = {"MXNET_EXEC_BULK_EXEC_TRAIN": "0", "MXNET_EXEC_BULK_EXEC_INFERENCE": "0"}
ENV = "env."
HYBRIDIZE = {"dynamic": {}, "alloc": {"static_alloc": True}}


@dataclass(frozen=True)
class Variant:
    """One named way to train: ``precision[+option|+key=value|+env.NAME=VALUE...]``."""
    name: str
    precision: str
    options: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()

    def env(self, profile: bool = False) -> dict:
        """The worker's environment: this package first on the path, the engine and OpenMP settings
        the CLI trains with unless an option changes them (``profile``: unbulked, see :data:`NO_BULK`)."""
        env = dict(os.environ, MXNET_ENGINE_TYPE="ThreadedEnginePerDevice" if "threaded" in self.options
                   else "NaiveEngine")
        env.update(openmp_defaults(env))
        if "spin" in self.options or "passive" in self.options:
            for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
                env.pop(name, None)
        if "passive" in self.options:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        if profile or "nobulk" in self.options:
            env.update(NO_BULK)
        env.update(setting[len(ENV):].split("=", 1) for setting in self.environment)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
        return env


def parse_variant(name: str) -> Variant:
    """The :class:`Variant` named ``name``; a one-line error for an unknown part."""
    precision, *parts = name.split("+")
    bad = [part for part in parts if part not in OPTIONS and "=" not in part]
    if precision not in PRECISIONS or bad:
        raise FashionGluonError(
            f"--variants: unknown variant {name!r}: a variant is {' or '.join(PRECISIONS)}, then any of "
            f"+{', +'.join(OPTIONS)}, +key=value (a config override) or +env.NAME=VALUE, e.g. fp32+mp")
    settings = [part for part in parts if "=" in part]
    return Variant(name, precision, tuple(p for p in parts if "=" not in p),
                   tuple(p for p in settings if not p.startswith(ENV)), tuple(p for p in settings if p.startswith(ENV)))


__all__ = ["DEFAULT_VARIANTS", "HYBRIDIZE", "NO_BULK", "OPTIONS", "PRECISIONS", "Variant", "parse_variant"]
