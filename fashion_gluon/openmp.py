"""How MXNet's OpenMP threads run: the settings the command line and ``bench train``'s workers
start with. libgomp reads them when MXNet is imported, so they are set before that (this module
imports nothing heavy)."""
from __future__ import annotations

import os
from typing import Mapping

#: Iterations a libgomp thread spins after an op before it sleeps (its default is 300000, or
#: none with OMP_WAIT_POLICY=PASSIVE). Training the demo model (cpu_fast, fp32, 2 cores) with
#: this short spin against sleeping at once: 1.26x on an idle machine, where the default spin
#: gave 1.24-1.38x, and 1.04x at load 4-6, where the default spin gave 0.56x
#: (`fashion-gluon bench train --variants fp32+passive,fp32,fp32+spin`, docs/performance.md).
SPIN_COUNT = "20000"


def openmp_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """The settings to add to the environment ``env``: one OpenMP thread per core this process
    may use (MXNet's CPU build otherwise starts one on this kind of machine) and the short spin
    of :data:`SPIN_COUNT`. An explicit OMP_NUM_THREADS, OMP_WAIT_POLICY or GOMP_SPINCOUNT wins."""
    settings = {}
    if "OMP_NUM_THREADS" not in env:
        settings["OMP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        settings["GOMP_SPINCOUNT"] = SPIN_COUNT
    return settings
