"""What this machine's CPU can run natively (read once from /proc/cpuinfo and MXNet's build)."""
from __future__ import annotations

import functools
from pathlib import Path

import mxnet as mx

#: The features that set a precision's speed, each with the /proc/cpuinfo flags that show it.
FEATURES = {"AVX2": {"avx2"}, "AVX-512": {"avx512f"}, "AVX512-BF16": {"avx512_bf16"},
            "VNNI": {"avx512_vnni", "avx_vnni"}, "AMX-BF16": {"amx_bf16"}, "AMX-INT8": {"amx_int8"}}


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    """/proc/cpuinfo's text (empty where it cannot be read)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_flags() -> set[str]:
    """The CPU's feature flags."""
    return {flag for line in _cpuinfo().splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def cpu_model() -> str:
    """The CPU's model name ("unknown CPU" where /proc/cpuinfo has none)."""
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")]
    return names[0] if names else "unknown CPU"


def cpu_features() -> list[str]:
    """Which of :data:`FEATURES` this CPU has, in that order."""
    flags = _cpu_flags()
    return [name for name, names in FEATURES.items() if flags & names]


def cpu_has_vnni() -> bool:
    """True on a CPU with 8-bit dot-product instructions (AVX512-VNNI or AVX-VNNI), which add
    u8·s8 products in 32 bits; without them INT8 kernels add pairs in saturating 16 bits."""
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_has_bf16() -> bool:
    """True on a CPU with native bfloat16 (AVX512-BF16 or AMX) and an oneDNN MXNet build. On
    others (e.g. AVX2-only CPUs) MXNet 1.9.1's oneDNN cannot create bf16 convolutions at all
    ("could not create a primitive descriptor"), so bf16 is refused with a clear error."""
    return mx.runtime.Features().is_enabled("MKLDNN") and bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


NO_BF16 = ("this CPU has no native bfloat16 (AVX512-BF16 or AMX), which MXNet's oneDNN needs for bf16; "
           "use fp32 (or INT8 via `fashion-gluon quantize`)")

__all__ = ["FEATURES", "cpu_features", "cpu_has_bf16", "cpu_has_vnni", "cpu_model", "NO_BF16"]
