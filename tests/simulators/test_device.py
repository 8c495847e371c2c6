"""The GPU path's exactness premises, checked on the CPU (CI has no GPU; ``benchmarks/gpu_check.py``
compares the devices where one is present): every integer conv runs with TF32 and cuDNN off, on
integer operands whose float32 sums stay below 2**24; the float side (bias currents, host
decoder) runs on the CPU whatever the device; a missing device is a clear usage error."""

import pytest
import torch
from torch.nn import functional as F

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.cli import main as cli
from sdm_neuro.compiler.pipeline import build_integer_graph
from sdm_neuro.compiler.quantize_graded import build_graded_graph
from sdm_neuro.compiler.schedule import schedule
from sdm_neuro.compiler.schedule_graded import schedule_graded
from sdm_neuro.errors import UsageError
from sdm_neuro.simulators import device as device_mod
from sdm_neuro.simulators.graded import GradedSimulator, GradedTimedSimulator
from sdm_neuro.simulators.integer import (FLOAT32_EXACT, Counters, IntegerSimulator,
                                          accumulation_bound)
from sdm_neuro.simulators.timed import TimedSimulator

CFG = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=3, img_size=8)


def _inputs(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 1000, (n,), generator=g)


@pytest.fixture(scope="module")
def graphs(randomized):
    torch.manual_seed(2)
    model = randomized(SpikingUNet(CFG).eval(), 2)
    cal = [_inputs(8, 1)]
    return {"composed": schedule(build_integer_graph(model, cal)),
            "graded": schedule_graded(build_graded_graph(model, cal))}


SIMULATORS = [("composed", IntegerSimulator), ("composed", TimedSimulator),
              ("graded", GradedSimulator), ("graded", GradedTimedSimulator)]


@pytest.mark.parametrize("mapping,sim_cls", SIMULATORS)
def test_every_conv_runs_in_exact_mode_and_settings_are_restored(mapping, sim_cls, graphs,
                                                                 monkeypatch):
    seen = []
    conv = F.conv2d

    def spy(*args, **kwargs):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                     torch.backends.cudnn.enabled))
        return conv(*args, **kwargs)

    monkeypatch.setattr(F, "conv2d", spy)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        sim_cls(graphs[mapping], "cpu")(*_inputs(2, 3))
        assert seen and all(s == (False, False, False) for s in seen), set(seen)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.enabled
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_float32_convs_have_integer_operands_below_2_24(graphs):
    """The premise of exactness in any summation order, on the convs the simulators built."""
    sim = IntegerSimulator(graphs["composed"])
    n32 = 0
    for fused in sim.fused.values():
        for f in fused:
            assert torch.equal(f.weight, f.weight.round())
            if f.dtype == torch.float32:
                n32 += 1
                for i, _, _ in f.members:
                    assert accumulation_bound(graphs["composed"].projections[i]) < FLOAT32_EXACT
    assert n32 > 0


@pytest.mark.parametrize("keep", [True, False])
def test_graded_float32_convs_sum_integers_below_2_23(graphs, monkeypatch, keep):
    """The graded simulator picks float32 per call from the payloads it measured: every float32
    conv it runs has integer operands, and max |input| times the largest sum of |weights| over
    a target's taps stays below 2**23 (exact in any order, and Lava's 24-bit wrap cannot
    trigger); the rest run in float64."""
    seen = {torch.float32: 0, torch.float64: 0}

    def check(fn):
        def run(z, w, *args, **kwargs):
            assert torch.equal(z, z.round()) and torch.equal(w, w.round())
            if z.dtype == torch.float32:
                taps = w.abs().transpose(0, 1) if fn is conv_transpose else w.abs()
                bound = float(taps.flatten(1).sum(1).max())  # (a transposed kernel's bound
                # over-counts its 4 output phases: still an upper bound)
                assert float(z.abs().max()) * bound < FLOAT32_EXACT // 2
            seen[z.dtype] += 1
            return fn(z, w, *args, **kwargs)
        return run

    from types import SimpleNamespace

    from sdm_neuro.simulators import graded as graded_mod

    conv, conv_transpose = F.conv2d, F.conv_transpose2d
    # the integer network's convs only (the host's float convs call F directly)
    monkeypatch.setattr(graded_mod, "F", SimpleNamespace(conv2d=check(conv),
                                                         interpolate=F.interpolate))
    monkeypatch.setattr(graded_mod, "conv_upsampled", lambda z, k: check(conv_transpose)(
        z, k, stride=2, padding=1))
    x, t = _inputs(2, 6)
    GradedSimulator(graphs["graded"], keep_payloads=keep)(x, t)
    assert seen[torch.float32] > 0


@pytest.mark.parametrize("mapping,sim_cls", SIMULATORS)
def test_outputs_live_where_the_device_path_puts_them(mapping, sim_cls, graphs):
    """eps on the CPU (the host ran there), spikes on the simulator's device, and the same
    results and counters as the default construction."""
    x, t = _inputs(2, 4)
    a, b = sim_cls(graphs[mapping]), sim_cls(graphs[mapping], torch.device("cpu"))
    ca, cb = Counters(), Counters()
    eps_a, out_a = a(x, t, ca)
    eps_b, out_b = b(x, t, cb)
    assert eps_b.device.type == "cpu" and eps_b.dtype == torch.float32
    assert all(v.device == b.device for v in out_b.values())
    assert torch.equal(eps_a, eps_b) and ca.to_dict() == cb.to_dict()
    assert all(torch.equal(out_a[k], out_b[k]) for k in out_a)


def test_devices_are_checked():
    assert device_mod.as_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="cpu or cuda"):
        device_mod.integer_device("meta")
    with pytest.raises(UsageError, match="--device 'nonsense'"):
        device_mod.as_device("nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            device_mod.integer_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error of a machine without CUDA")
def test_simulate_on_a_missing_gpu_exits_2_with_no_output(tmp_path, capsys):
    out = tmp_path / "sim"
    assert cli(["simulate", "--device", "cuda", "--steps", "2", "--num", "1", "--batch", "1",
                "--calibration-images", "2", "--out", str(out)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not out.exists()
