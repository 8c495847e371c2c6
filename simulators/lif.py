"""Vectorised integer LIF update, bit-exact with Lava's fixed-point LIF model.

Why: the deployment target is Lava's CPU simulation of Loihi 2 (``Loihi2SimCfg(select_tag=
'fixed_pt')``, model ``PyLifModelBitAcc`` of lava-nc 0.10.0), which cannot run inside torch
(see ../shared/reference/lava-fixed-point.md). This module reproduces that integer arithmetic on
int64 torch tensors over any shape (e.g. batch x neurons; int32 in the fused IF path
:func:`if_run`, where that is exact), so a network's spikes can be simulated exactly and quickly
without Lava. It claims "bit-exact with Lava's fixed-point models", never "bit-exact with the
chip". The widths and constants it uses (24-bit u and v, the shifts, the offsets, the parameter
ranges) come from :mod:`sdm_neuro.ir.fixed_point`, their one home.

Confirmed against the Lava source (repository lava-nc/lava, read at commits 001dbd19 and
f2a3ba91; the LIF arithmetic is identical in both):

- ``src/lava/proc/lif/models.py``, ``AbstractPyLifModelFixed.__init__``: ``ds_offset = 1``,
  ``dm_offset = 0``, ``max_uv_val = 2**23``, ``decay_shift = 12``, ``decay_unity = 4096``,
  ``vth_shift = 6``, ``act_shift = 6``.
- ``AbstractPyLifModelFixed.subthr_dynamics``, in this order:
  u decay ``x = int64(u) * (4096 - (du + 1))``, ``sign(x) * right_shift(abs(x), 12)`` (the +1 is
  ``ds_offset``; v has none); ``u += a_in << 6``; ONE wrap: ``where(u > 2**23, u - 2**24, u)`` then
  ``where(w <= -2**23, u + 2**24, w)``; v decay ``y = int64(v) * (4096 - dv)``, same round-toward-
  zero shift; ``v = decayed_v + u + effective_bias``; ``v = clip(v, -2**23 + 1, 2**23 - 1)``.
- ``AbstractPyLifModelFixed.scale_bias``: ``effective_bias = bias_mant << bias_exp`` (right shift
  for a negative exponent, impossible here as bias_exp is 3-bit unsigned); the bias is NOT shifted
  by 6. ``run_spk`` recomputes it every step, then ``subthr_dynamics``, ``spiking_activation``,
  ``reset_voltage``.
- ``PyLifModelBitAcc.scale_threshold``: ``effective_vth = vth << 6``; ``spiking_activation``:
  ``v > effective_vth`` (strict); ``reset_voltage``: ``v[spike] = 0``, u untouched.
- ``PyLifResetModelBitAcc.run_spk``: after ``a_in.recv()`` and BEFORE the update,
  ``if time_step % reset_interval == reset_offset: u *= 0; v *= 0`` with ``reset_offset`` taken
  modulo ``reset_interval`` in ``__init__``; ``src/lava/proc/lif/process.py``, ``LIFReset``:
  defaults ``reset_interval=1, reset_offset=0``.
- ``src/lava/magma/core/model/py/model.py``, ``PyLoihiProcessModel``: ``time_step`` starts at 0
  and ``_spike`` increments it BEFORE ``run_spk``, so the first step sees ``time_step == 1``
  (:func:`lif_reset_due` takes that 1-based step).
- ``src/lava/magma/core/model/py/ports.py``, ``PyInPortVectorDense.recv``: a_in is the sum of
  every connected port over ``np.zeros(shape, int16)``; Dense sends int32, so the sum is int32 and
  the int16 ``a_in`` type does not truncate it.

Agreement with the reference note: all its formulas match. Details the note leaves implicit:
(1) the wrap maps u into (-2**23, 2**23], so ``u == 2**23`` is kept and ``u == -2**23`` becomes
``+2**23`` (not a two's-complement 24-bit wrap); (2) the wrap happens only once, so u stays in 24
bits only while ``|a_in| < 2**18``; beyond that Lava (and this module) keep an out-of-range u;
(3) Lava holds u, v in int32, so results agree with Lava only while no int32 overflow happens
there (``|a_in| < 2**24`` suffices); this module computes in int64 and never overflows;
(4) in Lava bias_exp is per neuron; here it is one value per process (``LifParams``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdm_neuro.errors import ConfigError
from sdm_neuro.ir.fixed_point import (ACT_SHIFT, BIAS_MAX, BIAS_MIN, DECAY_UNITY, DS_OFFSET,
                                      INT32_BITS, LIF_RANGES, MAX_UV, NO_LEAK_DV,
                                      NO_SYNAPTIC_MEMORY_DU, V_MAX, VTH_SHIFT)

__all__ = [
    "LifParams",
    "LifState",
    "if_run",
    "lif_reset",
    "lif_reset_due",
    "lif_step",
    "validate_bias",
]

# if_run's int32 path takes inputs below this: |a_in << ACT_SHIFT| < 2**29 leaves int32 two bits
# of headroom for v + u + bias (an implementation bound of this module, not a Lava format).
_IF_RUN_A_IN_MAX = 1 << (INT32_BITS - 1 - 2 - ACT_SHIFT)


@dataclass(frozen=True)
class LifParams:
    """Per-process constants of one Lava LIF process (Lava has one du, dv, vth per process)."""

    du: int
    dv: int
    vth: int
    bias_exp: int = 0

    def __post_init__(self) -> None:
        for name, (lo, hi) in LIF_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(
                    f"LifParams.{name} must be an int in [{lo}, {hi}], got {value!r}")
            if not lo <= value <= hi:
                raise ConfigError(f"LifParams.{name} must be in [{lo}, {hi}], got {value}")

    @property
    def effective_vth(self) -> int:
        """Threshold compared with v (Lava's ``vth << vth_shift``)."""
        return self.vth << VTH_SHIFT


@dataclass
class LifState:
    """Mutable neuron state: current u and voltage v, int64 tensors of one shape."""

    u: torch.Tensor
    v: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("u", "v"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dtype != torch.int64:
                raise TypeError(f"LifState.{name} must be an int64 torch.Tensor, got "
                                f"{getattr(t, 'dtype', type(t).__name__)}")
        if self.u.shape != self.v.shape:
            raise ValueError(f"LifState.u shape {tuple(self.u.shape)} != "
                             f"v shape {tuple(self.v.shape)}")

    @classmethod
    def zeros(cls, shape: tuple[int, ...] | torch.Size,
              device: torch.device | str | None = None) -> LifState:
        """State of freshly created Lava LIF neurons (u = v = 0, Lava's defaults)."""
        return cls(torch.zeros(shape, dtype=torch.int64, device=device),
                   torch.zeros(shape, dtype=torch.int64, device=device))


def validate_bias(bias_mant: torch.Tensor | int) -> None:
    """Raise ConfigError unless every bias mantissa fits Lava's 13-bit signed bias_mant."""
    if isinstance(bias_mant, torch.Tensor):
        if bias_mant.dtype.is_floating_point or bias_mant.dtype.is_complex \
                or bias_mant.dtype == torch.bool:
            raise ConfigError(f"bias_mant must be an integer tensor, got dtype {bias_mant.dtype}")
        if bias_mant.numel() == 0:
            return
        lo, hi = int(bias_mant.min()), int(bias_mant.max())
    elif isinstance(bias_mant, int) and not isinstance(bias_mant, bool):
        lo = hi = bias_mant
    else:
        raise ConfigError(f"bias_mant must be an int or integer tensor, got "
                          f"{type(bias_mant).__name__}")
    if lo < BIAS_MIN or hi > BIAS_MAX:
        bad = lo if lo < BIAS_MIN else hi
        raise ConfigError(f"bias_mant must be in [{BIAS_MIN}, {BIAS_MAX}] (13-bit signed), "
                          f"got {bad}")


def _decay_(x: torch.Tensor, factor: int) -> None:
    """In place ``x = sign(x * factor) * (|x * factor| >> 12)``, Lava's round-toward-zero decay.

    Integer division with ``rounding_mode='trunc'`` equals sign(y) * (|y| >> 12) exactly for int64
    and is the fastest form measured; factor 4096 (no decay) and 0 (full decay) skip the work.
    """
    if factor == DECAY_UNITY:
        return
    if factor == 0:
        x.zero_()
        return
    x.mul_(factor).div_(DECAY_UNITY, rounding_mode="trunc")


def _count(counters: dict | None, key: str, n: int) -> None:
    if counters is not None:
        counters[key] = counters.get(key, 0) + n


def _saturate_(v: torch.Tensor, counters: dict | None) -> None:
    """Clip v to [-V_MAX, V_MAX] in place, counting the clipped elements as "v_saturate"."""
    if counters is not None:
        lo, hi = (int(t) for t in torch.aminmax(v))
        n_sat = 0
        if hi > V_MAX or lo < -V_MAX:
            n_sat = int((v > V_MAX).sum()) + int((v < -V_MAX).sum())
        _count(counters, "v_saturate", n_sat)
    v.clamp_(-V_MAX, V_MAX)


def lif_step(state: LifState, a_in: torch.Tensor, bias_mant: torch.Tensor | int,
             p: LifParams, *, counters: dict | None = None, check: bool = True) -> torch.Tensor:
    """Advance every neuron one time step in place, in Lava's order; return the bool spikes.

    ``a_in`` (integer, broadcastable to the state) is the summed synaptic input of this step;
    ``bias_mant`` (13-bit signed, broadcastable) is checked with :func:`validate_bias`.
    ``counters`` (optional) accumulates ``"u_wrap"`` (u elements wrapped) and ``"v_saturate"``
    (v elements clipped) so callers can report overflow instead of hiding it.
    ``check=False`` skips the input checks, for callers that produce int64 ``a_in`` and
    already-validated bias mantissas (the simulator's inner loop).
    """
    if check:
        if not isinstance(a_in, torch.Tensor) or a_in.dtype.is_floating_point \
                or a_in.dtype.is_complex or a_in.dtype == torch.bool:
            raise TypeError(f"a_in must be an integer torch.Tensor, got "
                            f"{getattr(a_in, 'dtype', type(a_in).__name__)}")
        validate_bias(bias_mant)
    u, v = state.u, state.v
    if u.numel() == 0:
        return torch.zeros(u.shape, dtype=torch.bool, device=u.device)

    # Current: decay with the +1 offset, add input MSB-aligned by 6 bits (a << 6 == a * 64).
    _decay_(u, DECAY_UNITY - (p.du + DS_OFFSET))
    u.add_(a_in.to(torch.int64), alpha=1 << ACT_SHIFT)
    # One wrap into (-2**23, 2**23], exactly Lava's two np.where calls (both conditions read the
    # pre-wrap u, as Lava's do). One aminmax pass skips the masks when nothing wraps.
    lo, hi = (int(t) for t in torch.aminmax(u))
    n_wrap = 0
    if hi > MAX_UV or lo <= -MAX_UV:
        over = (u > MAX_UV).to(torch.int64)
        under = (u <= -MAX_UV).to(torch.int64)
        n_wrap = int(over.sum()) + int(under.sum())
        u.sub_(over.sub_(under), alpha=2 * MAX_UV)
    _count(counters, "u_wrap", n_wrap)

    # Voltage: decay (no offset), add current and bias << bias_exp (not << 6), saturate.
    _decay_(v, DECAY_UNITY - p.dv)
    v.add_(u)
    if isinstance(bias_mant, torch.Tensor):
        v.add_(bias_mant.to(torch.int64), alpha=1 << p.bias_exp)
    elif bias_mant:
        v.add_(bias_mant << p.bias_exp)
    _saturate_(v, counters)

    # Strict threshold; spiking neurons reset v to 0 and keep u.
    spikes = v > p.effective_vth
    v.masked_fill_(spikes, 0)
    return spikes


def _unexpanded(x: torch.Tensor) -> torch.Tensor:
    """``x`` without its broadcast dimensions (stride 0): a view of size 1 there."""
    return x[tuple(slice(0, 1) if st == 0 and n > 1 else slice(None)
                   for st, n in zip(x.stride(), x.shape))]


def if_run(drive: torch.Tensor, bias_mant: torch.Tensor, p: LifParams, *,
           counters: dict | None = None) -> torch.Tensor:
    """All ``T = drive.shape[0]`` steps of fresh (u = v = 0) non-leaky neurons, fused.

    Equals ``T`` calls of :func:`lif_step` (tested) for ``du == 4095`` (u forgets: the decay
    factor is 0, so ``u = a_in << 6`` then the wrap) and ``dv == 0`` (v keeps), the IF neurons
    every deployed SDDPM layer uses. Why a second path: the simulator's inner loop is memory
    bound, so the input side (shift, wrap, bias) runs once over all T steps and v lives in int32
    (half the bytes of int64), which is exact when ``|a_in| < 2**23``: then ``|u| < 2**30``,
    ``|v| < 2**23`` after saturation, and ``v + u + bias`` stays below 2**31. Larger inputs take
    the int64 :func:`lif_step` loop. ``drive`` holds integers (any dtype, e.g. float64 holding
    exact integers); ``bias_mant`` (int) broadcasts to ``drive``, so it may differ per step.
    """
    if p.du != NO_SYNAPTIC_MEMORY_DU or p.dv != NO_LEAK_DV:
        raise ConfigError(f"if_run needs du={NO_SYNAPTIC_MEMORY_DU}, dv={NO_LEAK_DV} "
                          f"(got du={p.du}, dv={p.dv}); use lif_step")
    steps = drive.shape[0]
    lo, hi = (int(x) for x in torch.aminmax(drive)) if drive.numel() else (0, 0)
    if max(hi, -lo) >= _IF_RUN_A_IN_MAX:
        state = LifState.zeros(drive.shape[1:], device=drive.device)
        a, b = drive.to(torch.int64), bias_mant.expand(drive.shape)
        return torch.stack([lif_step(state, a[s], b[s], p, counters=counters, check=False)
                            for s in range(steps)])
    u = drive.to(torch.int32, copy=True).mul_(1 << ACT_SHIFT)
    n_wrap = 0
    if hi << ACT_SHIFT > MAX_UV or lo << ACT_SHIFT <= -MAX_UV:
        over = (u > MAX_UV).to(torch.int32)
        under = (u <= -MAX_UV).to(torch.int32)
        n_wrap = int(over.sum()) + int(under.sum())
        u.sub_(over.sub_(under), alpha=2 * MAX_UV)
    _count(counters, "u_wrap", n_wrap)
    # u + bias: v's whole increment. The bias is converted before it broadcasts: an expanded
    # per-channel bias would otherwise become a full-size int32 copy.
    u.add_(_unexpanded(bias_mant).to(torch.int32), alpha=1 << p.bias_exp)
    v = torch.zeros(drive.shape[1:], dtype=torch.int32, device=drive.device)
    out = torch.empty(drive.shape, dtype=torch.bool, device=drive.device)
    vth = p.effective_vth
    # v starts at 0, resets to 0, and gains at most max|u + bias| per step: when T times that
    # stays within the saturation limit, no step can saturate and the clip is skipped.
    ilo, ihi = (int(x) for x in torch.aminmax(u)) if u.numel() else (0, 0)
    can_saturate = steps * max(ihi, -ilo) > V_MAX
    if counters is not None and not can_saturate:
        _count(counters, "v_saturate", 0)
    for s in range(steps):
        v.add_(u[s])
        if can_saturate:
            _saturate_(v, counters)
        torch.gt(v, vth, out=out[s])
        v.mul_(out[s].logical_not())  # reset to 0 (an int32 multiply beats masked_fill_)
    return out


def lif_reset(state: LifState, mask: torch.Tensor | None = None) -> None:
    """Zero u and v (LIFReset's state reset), everywhere or only where ``mask`` is True.

    Lava applies this before the update of the step where :func:`lif_reset_due` is True; the
    caller does the same so the reset step integrates its own input from zero.
    """
    if mask is None:
        state.u.zero_()
        state.v.zero_()
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool torch.Tensor, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    state.u.masked_fill_(mask, 0)
    state.v.masked_fill_(mask, 0)


def lif_reset_due(time_step: int, interval: int = 1, offset: int = 0) -> bool:
    """Whether LIFReset resets at Lava's 1-based ``time_step`` (first step is 1, not 0)."""
    if interval < 1:
        raise ConfigError(f"LIFReset reset_interval must be >= 1, got {interval}")
    if offset < 0:
        raise ConfigError(f"LIFReset reset_offset must be >= 0, got {offset}")
    if time_step < 1:
        raise ConfigError(f"time_step is 1-based in Lava, got {time_step}")
    return time_step % interval == offset % interval
