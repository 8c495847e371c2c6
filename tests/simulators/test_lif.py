"""Bit-exactness of the vectorised LIF update against Lava's PyLifModelBitAcc arithmetic.

The scalar reference ``_lava_step`` below is written directly from Lava's source
(``lava/proc/lif/models.py``: ``AbstractPyLifModelFixed.subthr_dynamics``, ``scale_bias``,
``PyLifModelBitAcc.scale_threshold`` / ``spiking_activation``, ``reset_voltage``) with plain Python
ints, independent of ``sdm_neuro.simulators.lif``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sdm_neuro.errors import ConfigError
from sdm_neuro.simulators.lif import (
    LifParams,
    LifState,
    if_run,
    lif_reset,
    lif_reset_due,
    lif_step,
    validate_bias,
)

M = 2**23  # Lava's max_uv_val


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _lava_step(u: int, v: int, a_in: int, bias_mant: int, du: int, dv: int, vth: int,
               bias_exp: int) -> tuple[int, int, bool]:
    """One step of PyLifModelBitAcc for one neuron, transcribed line by line."""
    # subthr_dynamics: current
    decay_const_u = du + 1  # ds_offset = 1
    decayed_curr = u * (4096 - decay_const_u)
    decayed_curr = _sign(decayed_curr) * (abs(decayed_curr) >> 12)
    decayed_curr += a_in << 6  # act_shift
    wrapped_curr = decayed_curr - 2 * M if decayed_curr > M else decayed_curr
    wrapped_curr = decayed_curr + 2 * M if wrapped_curr <= -M else wrapped_curr
    u = wrapped_curr
    # subthr_dynamics: voltage (dm_offset = 0); scale_bias: bias_mant << bias_exp
    decayed_volt = v * (4096 - dv)
    decayed_volt = _sign(decayed_volt) * (abs(decayed_volt) >> 12)
    updated_volt = decayed_volt + u + (bias_mant << bias_exp)
    v = min(max(updated_volt, -M + 1), M - 1)
    # spiking_activation (effective_vth = vth << 6), reset_voltage
    spike = v > (vth << 6)
    if spike:
        v = 0
    return u, v, spike


def _state(u: list[int], v: list[int]) -> LifState:
    return LifState(torch.tensor(u, dtype=torch.int64), torch.tensor(v, dtype=torch.int64))


def _run(p: LifParams, u0: int, v0: int, inputs: list[int], bias: int = 0
         ) -> list[tuple[int, int, bool]]:
    s = _state([u0], [v0])
    out = []
    for a in inputs:
        spk = lif_step(s, torch.tensor([a], dtype=torch.int64), bias, p)
        out.append((int(s.u[0]), int(s.v[0]), bool(spk[0])))
    return out


# --- hand-computed sequences -------------------------------------------------------------------

def test_if_neuron_constant_input() -> None:
    # du=4095: u factor 4096-(4095+1)=0 so u = a<<6 = 3*64 = 192 each step.
    # dv=0: v factor 4096, v*4096>>12 = v (perfect integrator). vth=10 -> effective 10<<6 = 640.
    # v: 192, 384, 576, 768 > 640 -> spike, v=0; then 192, 384, 576, 768 -> spike.
    p = LifParams(du=4095, dv=0, vth=10)
    assert _run(p, 0, 0, [3] * 8) == [
        (192, 192, False), (192, 384, False), (192, 576, False), (192, 0, True),
        (192, 192, False), (192, 384, False), (192, 576, False), (192, 0, True),
    ]


def test_voltage_decay_rounds_toward_zero() -> None:
    # dv=1024: factor 4096-1024=3072. v=-5: -5*3072=-15360, |.|>>12 = 15360//4096 = 3 -> -3
    # (floor would give -15360>>12 = -4). v=+5 -> +3. u=0, du=4095, a=0: u stays 0.
    p = LifParams(du=4095, dv=1024, vth=100)
    assert _run(p, 0, -5, [0]) == [(0, -3, False)]
    assert _run(p, 0, 5, [0]) == [(0, 3, False)]
    assert (-15360) >> 12 == -4  # the floor that Lava does NOT use


def test_current_decay_and_plus_one_offset() -> None:
    # du=1023: factor 4096-(1023+1)=3072. dv=4095: factor 1, v*1>>12 = 0 for small v, so v = u.
    # u=1000: 3072000>>12 = 750; 750*3072=2304000 -> 562 (562.5); 562*3072=1726464 -> 421 (421.5)
    p = LifParams(du=1023, dv=4095, vth=100_000)
    assert _run(p, 1000, 0, [0, 0, 0]) == [(750, 750, False), (562, 562, False),
                                           (421, 421, False)]
    # negative: -750, -562 (floor would be -563), -421 (floor -422)
    assert _run(p, -1000, 0, [0, 0, 0]) == [(-750, -750, False), (-562, -562, False),
                                            (-421, -421, False)]
    # du=0 still decays: factor 4096-(0+1)=4095, 4096*4095>>12 = 4095 (not 4096).
    p0 = LifParams(du=0, dv=4095, vth=100_000)
    assert _run(p0, 4096, 0, [0]) == [(4095, 4095, False)]


def test_bias_with_exponent_not_shifted_by_6() -> None:
    # bias 3 << 5 = 96 per step (no << 6). dv=0, du=4095, a=0 -> u=0. vth=2 -> effective 128.
    # v: 96, 192 > 128 -> spike, 96, 0+spike...
    p = LifParams(du=4095, dv=0, vth=2, bias_exp=5)
    assert _run(p, 0, 0, [0, 0, 0, 0], bias=3) == [
        (0, 96, False), (0, 0, True), (0, 96, False), (0, 0, True)]
    # most negative bias: -4096 << 7 = -524288 per step, added with the input 1<<6=64:
    # v: -524288+64 = -524224, then -1048448.
    pn = LifParams(du=4095, dv=0, vth=0, bias_exp=7)
    assert _run(pn, 0, 0, [1, 1], bias=-4096) == [(64, -524224, False), (64, -1048448, False)]


def test_bias_tensor_broadcasts_over_batch() -> None:
    # per-neuron bias (shape (3,)) over a batch of 2: v = bias << 1 with u = 0.
    p = LifParams(du=4095, dv=0, vth=1000, bias_exp=1)
    s = LifState.zeros((2, 3))
    bias = torch.tensor([-4096, 0, 4095])
    spk = lif_step(s, torch.zeros(2, 3, dtype=torch.int64), bias, p)
    assert s.v.tolist() == [[-8192, 0, 8190]] * 2
    assert not spk.any()


# --- boundaries ---------------------------------------------------------------------------------

def test_u_wrap_boundaries() -> None:
    # du=0: decayed = trunc(u0*4095/4096). a = +-(2**17-1) -> a<<6 = +-(2**23-64).
    #  u0=65:  64 + 2**23-64 = 2**23          -> kept (wrap only if > 2**23)
    #  u0=66:  65 + 2**23-64 = 2**23+1        -> -2**23+1
    #  u0=-64: -63 - 2**23+64 = -2**23+1      -> kept
    #  u0=-65: -64 - 2**23+64 = -2**23        -> +2**23 (wrap if <= -2**23)
    #  u0=-66: -65 - 2**23+64 = -2**23-1      -> 2**23-1
    p = LifParams(du=0, dv=0, vth=2**17 - 1)
    a = 2**17 - 1
    s = _state([65, 66, -64, -65, -66], [0] * 5)
    counters: dict[str, int] = {}
    lif_step(s, torch.tensor([a, a, -a, -a, -a]), 0, p, counters=counters)
    assert s.u.tolist() == [M, -M + 1, -M + 1, M, M - 1]
    assert counters["u_wrap"] == 3
    # dv=0, v0=0: v = u, and u = 2**23 (kept by the wrap) is clipped to 2**23-1 twice.
    assert counters["v_saturate"] == 2


def test_v_saturation() -> None:
    # du=4095, dv=0: v = v0 + a*64.
    #  -(2**23-1)+10 - 64 -> clipped to -(2**23-1), counted
    #  -(2**23-1)+64 - 64 = -(2**23-1)  -> exactly the limit, not counted
    #  (2**23-1)-10 + 64  -> clipped to 2**23-1 > vth<<6 (max 2**23-64) -> spikes, v=0, u kept
    p = LifParams(du=4095, dv=0, vth=2**17 - 1)
    s = _state([0, 0, 0], [-(M - 1) + 10, -(M - 1) + 64, (M - 1) - 10])
    counters: dict[str, int] = {}
    spk = lif_step(s, torch.tensor([-1, -1, 1]), 0, p, counters=counters)
    assert s.v.tolist() == [-(M - 1), -(M - 1), 0]
    assert s.u.tolist() == [-64, -64, 64]
    assert spk.tolist() == [False, False, True]
    assert counters == {"u_wrap": 0, "v_saturate": 2}


def test_threshold_is_strict_and_reset_keeps_u() -> None:
    # vth=10 -> 640. v0=576 + 1<<6 = 640: tie, no spike. v0=577 -> 641 > 640: spike, v=0, u=64.
    p = LifParams(du=4095, dv=0, vth=10)
    s = _state([0, 0], [576, 577])
    spk = lif_step(s, torch.tensor([1, 1]), 0, p)
    assert spk.dtype == torch.bool
    assert spk.tolist() == [False, True]
    assert s.v.tolist() == [640, 0]
    assert s.u.tolist() == [64, 64]


def test_lif_reset_all_and_masked() -> None:
    s = _state([5, -6, 7], [8, -9, 10])
    lif_reset(s, torch.tensor([True, False, True]))
    assert s.u.tolist() == [0, -6, 0] and s.v.tolist() == [0, -9, 0]
    lif_reset(s)
    assert s.u.tolist() == [0, 0, 0] and s.v.tolist() == [0, 0, 0]


def test_lif_reset_due_is_one_based() -> None:
    # Lava increments time_step before run_spk: the first step is 1; offset is taken mod interval.
    assert [t for t in range(1, 10) if lif_reset_due(t, 4, 0)] == [4, 8]
    assert [t for t in range(1, 10) if lif_reset_due(t, 4, 1)] == [1, 5, 9]
    assert [t for t in range(1, 10) if lif_reset_due(t, 4, 5)] == [1, 5, 9]
    assert all(lif_reset_due(t) for t in range(1, 5))  # LIFReset defaults: every step
    with pytest.raises(ConfigError, match="reset_interval"):
        lif_reset_due(1, 0, 0)


# --- property test against the scalar transcription of Lava ------------------------------------

_decay = st.one_of(st.sampled_from([0, 1, 2048, 4094, 4095]), st.integers(0, 4095))
_a_in = st.one_of(st.integers(-300, 300), st.integers(-(2**18) + 1, 2**18 - 1))


@st.composite
def _cases(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(1, 6))
    steps = draw(st.integers(1, 5))
    p = LifParams(du=draw(_decay), dv=draw(_decay),
                  vth=draw(st.one_of(st.integers(0, 64), st.integers(0, 2**17 - 1))),
                  bias_exp=draw(st.integers(0, 7)))
    u0 = draw(st.lists(st.integers(-M + 1, M), min_size=n, max_size=n))
    v0 = draw(st.lists(st.integers(-M + 1, M - 1), min_size=n, max_size=n))
    bias_list = draw(st.lists(st.integers(-4096, 4095), min_size=n, max_size=n))
    bias = bias_list[0] if draw(st.booleans()) else bias_list
    a = draw(st.lists(st.lists(_a_in, min_size=n, max_size=n), min_size=steps, max_size=steps))
    return p, u0, v0, bias, a


@settings(max_examples=200, deadline=None)
@given(_cases())
def test_matches_scalar_lava_transcription(case: tuple) -> None:
    p, u0, v0, bias, inputs = case
    n = len(u0)
    s = _state(u0, v0)
    bias_t = bias if isinstance(bias, int) else torch.tensor(bias, dtype=torch.int64)
    ref = list(zip(u0, v0, strict=True))
    for a in inputs:
        spk = lif_step(s, torch.tensor(a, dtype=torch.int64), bias_t, p)
        b = [bias] * n if isinstance(bias, int) else bias
        out = [_lava_step(u, v, ai, bi, p.du, p.dv, p.vth, p.bias_exp)
               for (u, v), ai, bi in zip(ref, a, b, strict=True)]
        ref = [(u, v) for u, v, _ in out]
        assert s.u.tolist() == [u for u, _, _ in out]
        assert s.v.tolist() == [v for _, v, _ in out]
        assert spk.tolist() == [sp for _, _, sp in out]


# --- the fused IF path (du = 4095, dv = 0) against the same transcription -----------------------

# Inputs cross every regime: small, u wraps (|a| >= 2**17), the int64 fallback (|a| >= 2**23).
_if_a_in = st.one_of(st.integers(-300, 300), st.integers(-(2**19), 2**19),
                     st.sampled_from([2**17, -(2**17), 2**17 + 1, 2**23 - 1, -(2**23) + 1,
                                      2**23, -(2**23), 3 * 2**23]))


@st.composite
def _if_cases(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(1, 6))
    steps = draw(st.integers(1, 5))
    p = LifParams(du=4095, dv=0, vth=draw(st.one_of(st.integers(0, 64),
                                                    st.integers(0, 2**17 - 1))),
                  bias_exp=draw(st.integers(0, 7)))
    bias = draw(st.lists(st.integers(-4096, 4095), min_size=n, max_size=n))
    a = draw(st.lists(st.lists(_if_a_in, min_size=n, max_size=n), min_size=steps,
                      max_size=steps))
    return p, bias, a, draw(st.sampled_from([torch.int64, torch.float64, torch.int32]))


@settings(max_examples=300, deadline=None)
@given(_if_cases())
def test_if_run_matches_scalar_lava_transcription(case: tuple) -> None:
    p, bias, inputs, dtype = case
    drive = torch.tensor(inputs, dtype=dtype)
    kept = drive.clone()
    counters: dict = {}
    spikes = if_run(drive, torch.tensor(bias, dtype=torch.int64), p, counters=counters)
    state = [(0, 0)] * len(bias)
    wraps = 0
    for s, a in enumerate(inputs):
        out = [_lava_step(u, v, ai, bi, p.du, p.dv, p.vth, p.bias_exp)
               for (u, v), ai, bi in zip(state, a, bias, strict=True)]
        wraps += sum(ai << 6 > M or ai << 6 <= -M for ai in a)
        state = [(u, v) for u, v, _ in out]
        assert spikes[s].tolist() == [sp for _, _, sp in out]
    assert counters["u_wrap"] == wraps
    assert torch.equal(drive, kept)  # the caller's drive is not modified


def test_if_run_counts_like_lif_step() -> None:
    p = LifParams(du=4095, dv=0, vth=100, bias_exp=7)
    drive = torch.tensor([[2**17 + 5, -(2**17), 30, 2**16], [2**16, 2**16, -5, 2**16]] * 2,
                         dtype=torch.int64)
    bias = torch.tensor([4095, -4096, 0, 4095])
    fused: dict = {}
    spikes = if_run(drive, bias, p, counters=fused)
    state, stepped = LifState.zeros((4,)), {}
    ref = torch.stack([lif_step(state, a, bias, p, counters=stepped) for a in drive])
    assert torch.equal(spikes, ref)
    assert fused == stepped and fused["v_saturate"] > 0 and fused["u_wrap"] > 0


def test_if_run_takes_an_expanded_bias_as_its_values() -> None:
    # The simulators pass per-step, per-channel biases broadcast to the drive's shape (stride-0
    # dimensions); if_run converts them before broadcasting, which must change no spike.
    p = LifParams(du=4095, dv=0, vth=40, bias_exp=3)
    g = torch.Generator().manual_seed(0)
    drive = torch.randint(-300, 300, (4, 2, 3, 5, 5), generator=g)
    bias = torch.randint(-40, 40, (4, 2, 3, 1, 1), generator=g)
    state = LifState.zeros(drive.shape[1:])
    ref = torch.stack([lif_step(state, drive[s], bias[s].expand(drive.shape[1:]).contiguous(), p)
                       for s in range(4)])
    assert ref.any() and not ref.all()
    assert torch.equal(if_run(drive, bias.expand(drive.shape), p), ref)


def test_if_run_refuses_leaky_neurons() -> None:
    with pytest.raises(ConfigError, match="du=4095, dv=0"):
        if_run(torch.zeros(2, 3), torch.zeros(3, dtype=torch.int64),
               LifParams(du=0, dv=0, vth=1))


# --- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "limit"), [
    ("du", -1, "[0, 4095]"), ("du", 4096, "[0, 4095]"), ("dv", 4096, "[0, 4095]"),
    ("vth", 2**17, "[0, 131071]"), ("vth", -1, "[0, 131071]"),
    ("bias_exp", 8, "[0, 7]"), ("bias_exp", -1, "[0, 7]"), ("du", 1.5, "[0, 4095]"),
])
def test_params_out_of_range(field: str, value: object, limit: str) -> None:
    kwargs: dict[str, object] = {"du": 0, "dv": 0, "vth": 0, "bias_exp": 0, field: value}
    with pytest.raises(ConfigError) as err:
        LifParams(**kwargs)  # type: ignore[arg-type]
    msg = str(err.value)
    assert f"LifParams.{field}" in msg and limit in msg and str(value) in msg


def test_bias_validation() -> None:
    validate_bias(torch.tensor([-4096, 4095]))
    validate_bias(0)
    for bad in (4096, -4097, torch.tensor([0, 4096]), torch.tensor([-4097, 0])):
        with pytest.raises(ConfigError, match=r"bias_mant.*\[-4096, 4095\]"):
            validate_bias(bad)
    with pytest.raises(ConfigError, match="integer"):
        validate_bias(torch.tensor([1.0]))
    with pytest.raises(ConfigError, match="bias_mant"):
        lif_step(LifState.zeros((1,)), torch.zeros(1, dtype=torch.int64), 5000,
                 LifParams(du=0, dv=0, vth=0))


def test_state_and_input_types() -> None:
    with pytest.raises(TypeError, match=r"LifState\.u"):
        LifState(torch.zeros(2, dtype=torch.int32), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="shape"):
        LifState(torch.zeros(2, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="a_in"):
        lif_step(LifState.zeros((2,)), torch.zeros(2), 0, LifParams(du=0, dv=0, vth=0))
