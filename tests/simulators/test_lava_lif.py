"""The integer LIF against Lava's own fixed-point process model (PyLifModelBitAcc), run in
Lava's CPU simulation: Loihi2SimCfg(select_tag='fixed_pt'). Skips when Lava is not installed
(fails under CI=true)."""

import numpy as np
import pytest
import torch

from sdm_neuro.export.lava_compat import lava_unavailable
from sdm_neuro.simulators.lif import LifParams, LifState, lif_step

if (_why := lava_unavailable()) is not None:
    pytest.skip(_why, allow_module_level=True)

from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIF
from lava.proc.monitor.process import Monitor

pytestmark = pytest.mark.timeout(120)  # an error inside a Lava process can deadlock the run


def _run_lava(spikes, weights, weight_exp, p: LifParams, bias):
    n, steps = weights.shape[0], spikes.shape[1]
    src = RingBuffer(data=spikes.astype(np.int32))
    dense = Dense(weights=weights, weight_exp=weight_exp)
    lif = LIF(shape=(n,), du=p.du, dv=p.dv, vth=p.vth, bias_mant=bias, bias_exp=p.bias_exp)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    mons = {}
    for var in ("u", "v"):
        mons[var] = Monitor()
        mons[var].probe(getattr(lif, var), steps)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return {var: m.get_data()[lif.name][var].astype(np.int64) for var, m in mons.items()}
    finally:
        lif.stop()


@pytest.mark.parametrize("seed", range(6))
def test_lif_step_equals_lava_fixed_point(seed):
    rng = np.random.default_rng(seed)
    n, n_in, steps = 12, 20, 16
    # strong weights with large exponents drive u past its 24-bit wrap and v into saturation
    weight_exp = int(rng.choice([0, 3, 6, 7]))
    weights = (rng.integers(-128, 128, (n, n_in)) * 2).astype(np.int32)  # even: no truncation
    spikes = (rng.random((n_in, steps)) < 0.4)
    p = LifParams(du=int(rng.choice([0, 1, 2048, 4095])), dv=int(rng.choice([0, 1, 300, 4095])),
                  vth=int(rng.integers(0, 2000)), bias_exp=int(rng.integers(0, 8)))
    bias = rng.integers(-4096, 4096, n).astype(np.int32)
    got = _run_lava(spikes, weights, weight_exp, p, bias)

    # Dense delays by one step: the LIF sees W @ s of the previous step, shifted by weight_exp
    state = LifState.zeros((n,))
    b = torch.tensor(bias, dtype=torch.int64)
    w = torch.tensor(weights, dtype=torch.int64)
    s_prev = torch.zeros(n_in, dtype=torch.int64)
    for t in range(steps):
        a_in = (w @ s_prev) << weight_exp
        lif_step(state, a_in, b, p)
        assert state.u.tolist() == got["u"][t].tolist(), (t, p)
        assert state.v.tolist() == got["v"][t].tolist(), (t, p)
        s_prev = torch.tensor(spikes[:, t], dtype=torch.int64)
    # the comparison is not vacuous: Lava's neurons moved (the limits: the next test)
    assert np.abs(got["v"]).max() > 0 and np.abs(got["u"]).max() > 0


def test_u_wrap_and_v_saturation_equal_lava_fixed_point():
    """Strong inputs at weight_exp 7 with little current decay: u must wrap past 2**23 and v
    saturate at 2**23 - 1 in Lava's own run (seen in its data, not in the simulator's
    counters), and the integer LIF still equals it step for step."""
    rng = np.random.default_rng(11)
    n, n_in, steps = 16, 24, 20
    weights = np.full((n, n_in), 254, dtype=np.int32)
    weights[n // 2:] = -256
    spikes = rng.random((n_in, steps)) < 0.8
    p = LifParams(du=1, dv=0, vth=2**17 - 1, bias_exp=7)
    bias = np.where(np.arange(n) < n // 2, 4095, -4096).astype(np.int32)
    got = _run_lava(spikes, weights, 7, p, bias)

    v_limit = 2**23 - 1
    assert (np.abs(got["v"]) == v_limit).any()  # saturated
    # u wrapped: Lava's u of a step differs from its unwrapped value, which is computed here
    # from Lava's own previous u with Python integers
    wrapped = 0
    u_prev = np.zeros(n, dtype=object)
    s_prev = np.zeros(n_in, dtype=np.int64)
    for t in range(steps):
        a_in = (weights.astype(object) @ s_prev.astype(object)) << 7
        decayed = np.array([(-1 if u < 0 else 1) * ((abs(u) * (4096 - (p.du + 1))) >> 12)
                            for u in u_prev], dtype=object)
        unwrapped = decayed + (a_in << 6)
        wrapped += int(sum(1 for a, b in zip(unwrapped, got["u"][t]) if int(a) != int(b)))
        u_prev = got["u"][t].astype(object)
        s_prev = spikes[:, t].astype(np.int64)
    assert wrapped > 0

    state = LifState.zeros((n,))
    w = torch.tensor(weights, dtype=torch.int64)
    s_prev = torch.zeros(n_in, dtype=torch.int64)
    for t in range(steps):
        lif_step(state, (w @ s_prev) << 7, torch.tensor(bias, dtype=torch.int64), p)
        assert state.u.tolist() == got["u"][t].tolist(), t
        assert state.v.tolist() == got["v"][t].tolist(), t
        s_prev = torch.tensor(spikes[:, t], dtype=torch.int64)


def test_missing_lava_names_the_extra(monkeypatch):
    """Without Lava on the path, the error says what to install (the core works without it)."""
    import sys

    from sdm_neuro.errors import ExportError
    from sdm_neuro.export import lava_compat

    for name in [m for m in sys.modules if m == "lava" or m.startswith("lava.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    with pytest.raises(ExportError, match="lava-nc==0.10.0"):
        lava_compat.import_lava()


def test_a_broken_import_hook_raises_instead_of_skipping(monkeypatch):
    """lava_unavailable() answers only "not installed": a failure of the project's own hook
    propagates, so the Lava tests error instead of being skipped."""
    import sys

    from sdm_neuro.export import lava_compat

    for name in [m for m in sys.modules if m == "lava" or m.startswith("lava.")]:
        monkeypatch.delitem(sys.modules, name)

    def broken(self, module):
        raise RuntimeError("hook bug")

    monkeypatch.setattr(lava_compat._PatchedVarModel, "exec_module", broken)
    with pytest.raises(RuntimeError, match="hook bug"):
        lava_compat.lava_unavailable()
