"""Precision casting of MXNet models for inference: bf16 by ``mx.contrib.amp`` (CPU, oneDNN).
INT8 is :mod:`.quantize`'s job.

Facts this module relies on (mxnet 1.9.1): bf16 AMP keeps ``UpSampling`` in fp32, and ``Concat``
has no mixed-type rule, so ``Concat`` is run in fp32 too (CPN's RefineNet concatenates upsampled
and plain maps).
"""
from __future__ import annotations

import mxnet as mx
from mxnet import gluon
from mxnet.contrib import amp

from ..cpu import NO_BF16, cpu_has_bf16
from ..errors import ExportError
from .export import forward_once


def to_bf16(net: gluon.HybridBlock, input_size: tuple[int, int]) -> gluon.SymbolBlock:
    """``net`` converted by ``mx.contrib.amp`` to run in bfloat16 on CPU where oneDNN can
    (``Concat`` kept in fp32, see the module docstring); its inputs and outputs stay float32."""
    if not cpu_has_bf16():
        raise ExportError(f"bf16 inference: {NO_BF16}")
    forward_once(net, input_size)
    fp32_ops = amp.list_fp32_ops(amp.amp.bfloat16) + ["Concat", "concat"]
    converted = amp.convert_hybrid_block(net, target_dtype="bfloat16", fp32_ops=fp32_ops, ctx=mx.cpu())
    converted.hybridize(static_alloc=True, static_shape=True)
    return keep_stride(converted, net)


def keep_stride(converted: gluon.SymbolBlock, original) -> gluon.SymbolBlock:
    """``converted`` (bf16 or INT8) with the input ``stride`` of the network it was made from, if any."""
    if hasattr(original, "stride"):
        converted.stride = original.stride
    return converted


__all__ = ["to_bf16", "keep_stride"]
