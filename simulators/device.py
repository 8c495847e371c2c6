"""Running the integer simulators on a GPU with results identical to the CPU, bit for bit.

What runs where. The device runs only integer arithmetic: convs of spikes (or integer payloads)
by integer weights, identities, LIF updates in int32 / int64, counters. Everything float stays on
the CPU, computed by the same code as a CPU run: the pixel conv and the bias currents (rounded to
mantissas there, then moved), the host decoder (the spikes or payloads it reads are moved back),
and the sampler. Random numbers never come from the device.

Why the device's integers equal the CPU's. A conv runs in float32 only when every partial sum
is an integer below 2**24 (:func:`~sdm_neuro.simulators.integer.check_exact_accumulation`, the
graded simulator's bounds), else in float64 below 2**53: then every product and every sum of
any grouping is exact, so neither the summation order nor atomics matter. What would break it is
an algorithm that does not compute those sums: TF32 (10-bit mantissas) and cuDNN's FFT and
Winograd convolutions (transforms with fractional coefficients). :func:`exact_mode` turns TF32
off and cuDNN off around every simulator call (PyTorch's own CUDA conv is an im2col plus a
cuBLAS GEMM: plain products and sums). On the CPU the simulators run the same code path under
the same settings; the CPU tests check that every integer conv runs under them and that the
device-independent steps (moves, the host on the CPU) give the CPU's results.
``benchmarks/gpu_check.py`` compares the two devices on a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..errors import UsageError


def as_device(device: str | torch.device | None) -> torch.device:
    """``device`` ("auto": CUDA when present) checked, with a clear error when it is not there."""
    if isinstance(device, torch.device):
        device = str(device)
    device = device or "cpu"
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine.")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise UsageError(f"--device {device!r}: {e}") from None


def integer_device(device: str | torch.device | None) -> torch.device:
    """:func:`as_device` for the integer simulators, which run on the CPU or CUDA."""
    dev = as_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device}: the integer simulator runs on cpu or cuda.")
    return dev


@contextlib.contextmanager
def exact_mode() -> Iterator[None]:
    """TF32 off and cuDNN off (no FFT or Winograd convs) for the block, restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        # (flags() sets every cuDNN flag, allow_tf32 included, and restores them after)
        with torch.backends.cudnn.flags(enabled=False, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
