"""Sequential SNNs as lava-dl netx HDF5: netx loads the file and its Lava run (LIF / LIFReset,
Dense, Conv under Loihi2SimCfg(select_tag='fixed_pt')) gives every layer's spikes exactly as the
integer simulator does. Skips when Lava is not installed."""

import h5py
import pytest
import torch

from sdm_neuro.errors import ExportError
from sdm_neuro.export.lava_compat import lava_unavailable
from sdm_neuro.compiler.quantize_feedforward import quantize_feedforward
from sdm_neuro.run.feedforward import random_spikes
from sdm_neuro.simulators.feedforward import run_integer

if (_why := lava_unavailable()) is not None:
    pytest.skip(_why, allow_module_level=True)

from sdm_neuro.export.netx import run_netx, write_netx

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("seed,kind,retention", [(0, "IF", 1.0), (1, "LIF", 0.9),
                                                 (2, "LIF-r1", 0.875)])
def test_netx_run_is_bit_exact_with_the_integer_simulator(make_feedforward, tmp_path, seed, kind,
                                                         retention):
    net = make_feedforward(seed, kind, retention=retention)
    x = random_spikes(net.input_shape, 12, 2, 0.3, seed)
    qnet = quantize_feedforward(net, x)
    path = write_netx(qnet, tmp_path / "net.net")
    with h5py.File(path) as f:
        types = [f[f"layer/{i}/type"][()].decode() for i in range(len(f["layer"]))]
    assert types == ["input", "conv", "conv", "flatten", "dense"]
    lava = run_netx(qnet, x, path=path, timeout_s=500)
    sim = run_integer(qnet, x)
    for k, (a, b) in enumerate(zip(lava, sim, strict=True)):
        assert a.shape == b.shape and torch.equal(a, b), f"layer {k}"
        assert int(b.sum()) > 0, f"layer {k} is silent: the comparison would test little"
    conv_bias = qnet.layers[0].bias_mant
    if kind != "IF":  # per-neuron leak drive: the conv bias went in Lava's (W, H, C) order
        assert not bool((conv_bias == conv_bias[:, :1, :1]).all())


def test_netx_refuses_what_it_cannot_hold(make_feedforward, tmp_path):
    net = make_feedforward(0, "IF")
    analog = torch.rand(8, 2, *net.input_shape, dtype=torch.float64)
    with pytest.raises(ExportError, match="binary spikes only"):
        write_netx(quantize_feedforward(net, analog), tmp_path / "a.net")
    qnet = quantize_feedforward(net, random_spikes(net.input_shape, 8, 2, 0.3, 0))
    last = qnet.layers[-1]
    neg = type(last)(**{**last.__dict__, "weight_int": -last.weight_int.abs()})
    bad = type(qnet)(qnet.net, (*qnet.layers[:-1], neg), qnet.spike_input)
    with pytest.raises(ExportError, match="no positive entry"):
        write_netx(bad, tmp_path / "b.net")
    assert not (tmp_path / "a.net").exists() and not (tmp_path / "b.net").exists()
