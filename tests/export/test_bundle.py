"""The export bundle: NIR round trip. (The export command and simulate / energy-report
--bundle: tests/cli.)"""

import dataclasses

import nir
import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.export.bundle import NIR_FILE, read_bundle, write_bundle
from sdm_neuro.compiler.schedule import schedule


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("tsm", [False, True])
def test_bundle_round_trip_is_exact(tmp_path, randomized, tiny_config_ch4, tsm):
    model = randomized(SpikingUNet(tiny_config_ch4.replace(tsm=tsm, snn_steps=3)).eval())
    graph = schedule(build_integer_graph(model, calibration_inputs(
        torch.rand(32, 1, 8, 8) * 2 - 1, count=16, batch_size=16)))
    write_bundle(graph, tmp_path, {"target": "nir"})
    nir.read(tmp_path / NIR_FILE)  # plain NIR, type checking on
    back, manifest = read_bundle(tmp_path)
    assert back.config == graph.config
    for kind in ("populations", "projections"):
        for a, b in zip(getattr(graph, kind), getattr(back, kind), strict=True):
            for f in dataclasses.fields(a):
                assert _same(getattr(a, f.name), getattr(b, f.name)), (kind, f.name)
    for f in dataclasses.fields(graph.host):
        assert _same(getattr(graph.host, f.name), getattr(back.host, f.name)), f.name
    assert set(manifest["files"]) == {"network.nir", "host.npz"}
