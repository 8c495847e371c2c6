"""``sdm-neuro export`` for Lava, run in Lava: a feed-forward NIR file's netx export runs bit for
bit as the integer simulator (tests/export/test_netx.py), and the default U-Net's Loihi 2 bundle
gives every population's spikes of the hardware-timed simulator (tests/export/test_lava_export.py,
conftest's ``assert_lava_bit_exact``). Skips when Lava is not installed (fails under CI=true)."""

import pytest
import torch

from sdm_neuro.compiler.quantize_feedforward import quantize_feedforward
from sdm_neuro.export.lava_compat import lava_unavailable
from sdm_neuro.simulators.feedforward import run_integer

if (_why := lava_unavailable()) is not None:
    pytest.skip(_why, allow_module_level=True)

from sdm_neuro.export.netx import run_netx

pytestmark = pytest.mark.timeout(600)


def test_cli_export_writes_a_netx_file_lava_runs_exactly(make_feedforward, tmp_path):
    import nir

    from sdm_neuro.cli import main
    from sdm_neuro.frontends.feedforward_nir import feedforward_from_nir, feedforward_to_nir
    from sdm_neuro.run.feedforward import network_input

    src = tmp_path / "net.nir"
    nir.write(src, feedforward_to_nir(make_feedforward(4, "LIF")))
    out = tmp_path / "exp"
    assert main(["export", str(src), "--time-steps", "10", "--num", "3", "--seed", "5",
                 "--out", str(out)]) == 0
    net = feedforward_from_nir(src)
    x, _ = network_input(net, None, steps=10, batch=3, rate=0.2, seed=5)  # the CLI's input
    qnet = quantize_feedforward(net, x)
    lava = run_netx(qnet, x, path=out / "network.net", timeout_s=500)
    for a, b in zip(lava, run_integer(qnet, x), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_default_bundle_is_bit_exact(tmp_path, host_reference, assert_lava_bit_exact):
    """The default model's export bundle, built into Lava from the bundle alone."""
    from sdm_neuro.cli import main as cli
    from sdm_neuro.export.bundle import read_bundle

    assert cli(["export", "--target", "loihi2", "--out", str(tmp_path / "b")]) == 0
    graph, _ = read_bundle(tmp_path / "b")
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    assert_lava_bit_exact(graph, x, torch.tensor([500]), host_reference)
