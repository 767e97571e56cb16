"""What this machine's CPU can run natively (read once from /proc/cpuinfo and MXNet's build)."""
from __future__ import annotations

import functools
from pathlib import Path

import mxnet as mx


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True on a CPU with native bfloat16 (AVX512-BF16 or AMX) and an oneDNN MXNet build. On
    others (e.g. AVX2-only CPUs) MXNet 1.9.1's oneDNN cannot create bf16 convolutions at all
    ("could not create a primitive descriptor"), so bf16 is refused with a clear error."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return mx.runtime.Features().is_enabled("MKLDNN") and ("avx512_bf16" in flags or "amx_bf16" in flags)


NO_BF16 = ("this CPU has no native bfloat16 (AVX512-BF16 or AMX), which MXNet's oneDNN needs for bf16; "
           "use fp32 (or INT8 via `fashion-gluon quantize`)")

__all__ = ["cpu_has_bf16", "NO_BF16"]
