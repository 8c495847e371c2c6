"""The graded mapping's export bundle (export/graded_bundle.py): an exact round trip (every
integer field, the simulator's eps), shared Conv2d kernels rather than matrices, smaller than the
composed bundle, atomic writes, and malformed bundles refused with an ExportError naming the
file and the node. (The export command: tests/cli/test_export_graded.py.)"""

import dataclasses
import json
import re
import shutil

import h5py
import nir
import numpy as np
import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.compiler.quantize_graded import build_graded_graph
from sdm_neuro.compiler.schedule import schedule
from sdm_neuro.compiler.schedule_graded import schedule_graded
from sdm_neuro.errors import ExportError, UsageError
from sdm_neuro.export.bundle import HOST_FILE, MANIFEST, NIR_FILE, read_bundle, write_bundle
from sdm_neuro.export.graded_bundle import (
    bundle_bytes,
    connection_names,
    read_graded_bundle,
    weight_lsb,
    write_graded_bundle,
)
from sdm_neuro.fileio import atomic_dir
from sdm_neuro.simulators.graded import GradedSimulator
from sdm_test_support import bundle_manifest, rehash_bundle, set_nir_field


@pytest.fixture(scope="module")
def written(tmp_path_factory, randomized, tiny_config_ch4):
    """(bundle, graph, model): the randomized 4-channel tiny model (a downsample, an upsample,
    skip concatenations, 1x1 shortcuts, delay copies), graded, scheduled, written once."""
    torch.manual_seed(0)
    model = randomized(SpikingUNet(tiny_config_ch4))
    graph = schedule_graded(build_graded_graph(model, calibration_inputs(
        torch.rand(16, 1, 8, 8) * 2 - 1, count=8, batch_size=8)))
    out = tmp_path_factory.mktemp("graded") / "b"
    write_graded_bundle(graph, out, {"target": "nir", "model_config": graph.config.to_dict(),
                                     "quantization": {"nodes": graph.meta["quantization"]}})
    return out, graph, model


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_round_trip_is_exact(written):
    out, graph, _ = written
    back, manifest = read_graded_bundle(out)
    assert manifest["mapping"] == "graded" and set(manifest["files"]) == {NIR_FILE, HOST_FILE}
    assert back.config == graph.config and back.order == graph.order
    assert back.output == graph.output
    for kind in ("populations", "relays", "connections"):
        for a, b in zip(getattr(graph, kind), getattr(back, kind), strict=True):
            for f in dataclasses.fields(a):
                if f.name == "weight" and a.kind == "conv":  # the quantized kernel, not the float
                    assert torch.equal(b.weight, a.effective_weight().double() * weight_lsb(
                        graph, a))
                    assert (b.weight - a.weight).norm() < 0.05 * a.weight.norm()
                    continue
                assert _same(getattr(a, f.name), getattr(b, f.name)), (kind, a, f.name)
    for f in dataclasses.fields(graph.host):
        assert _same(getattr(graph.host, f.name), getattr(back.host, f.name)), f.name
    assert back.meta["payload_bits"] == graph.meta["payload_bits"]
    assert back.meta["quantization"] == json.loads(json.dumps(graph.meta["quantization"]))
    x, t = torch.rand(3, 1, 8, 8) * 2 - 1, torch.tensor([3, 400, 999])
    eps, spikes = GradedSimulator(graph)(x, t)
    eps_back, spikes_back = GradedSimulator(back)(x, t)
    assert torch.equal(eps, eps_back)
    assert all(torch.equal(spikes[k], spikes_back[k]) for k in spikes)


def test_network_holds_the_shared_kernels_as_conv2d_nodes(written):
    out, graph, _ = written
    g = nir.read(out / NIR_FILE)  # plain NIR, type checking on
    assert not any(isinstance(n, nir.Affine | nir.Linear) for n in g.nodes.values())
    for name, c in zip(connection_names(graph), graph.connections, strict=True):
        node = g.nodes[name]
        assert isinstance(node, nir.Conv2d)
        if c.kind == "conv":  # the model's own kernel, as integers: never an unrolled matrix
            assert node.weight.dtype == np.int16 and node.weight.shape == c.weight.shape
            assert np.array_equal(node.weight, c.effective_weight().numpy())
        else:
            assert node.weight.shape[2:] in ((1, 1), (2, 2))
    stored = sum(n.weight.size for n in g.nodes.values() if isinstance(n, nir.Conv2d))
    kernels = sum(c.weight.numel() for c in graph.connections if c.kind == "conv")
    assert stored < 2 * kernels + graph.host.pixel_weight.numel()


def test_smaller_than_the_composed_bundle(written, tmp_path):
    out, graph, model = written
    composed = schedule(build_integer_graph(model, calibration_inputs(
        torch.rand(16, 1, 8, 8) * 2 - 1, count=8, batch_size=8)))
    with atomic_dir(tmp_path / "c") as tmp:
        man = write_bundle(composed, tmp, {"target": "nir"})
    assert bundle_bytes(bundle_manifest(out)) < bundle_bytes(man)


def test_writes_are_atomic(written, tmp_path):
    out, graph, _ = written
    with pytest.raises(UsageError, match="--force"):
        write_graded_bundle(graph, out, {})
    unquantized = graph.replace(populations=tuple(dataclasses.replace(p, lif=None)
                                                  for p in graph.populations))
    with pytest.raises(ExportError, match="not quantized"):
        write_graded_bundle(unquantized, tmp_path / "u", {})
    assert not (tmp_path / "u").exists() and not list(tmp_path.glob(".u.*"))


def test_the_composed_reader_and_the_graded_reader_refuse_each_other(written, micro_bundle):
    with pytest.raises(ExportError, match=r"not a sdm-neuro-bundle version 1 manifest"):
        read_bundle(written[0])
    with pytest.raises(ExportError, match=r"not a sdm-neuro-graded-bundle version 1 manifest"):
        read_graded_bundle(micro_bundle[0])


# -- malformed bundles (hashes updated to match, so that the content check is what fails) -----

def _first(graph, kind: str) -> str:
    return next(n for n, c in zip(connection_names(graph), graph.connections, strict=True)
                if c.kind == kind and (kind != "identity" or c.dst_channel))


def _edit_manifest(b, key, value):
    man = bundle_manifest(b)
    man[key] = value
    (b / MANIFEST).write_text(json.dumps(man))


def _edit_weight(b, node, edit):
    with h5py.File(b / NIR_FILE, "r+") as f:
        w = f["node"]["nodes"][node]["weight"]
        data = w[()]
        edit(data)
        w[...] = data
    rehash_bundle(b)


def _drop_edge(b, edge):
    with h5py.File(b / NIR_FILE, "r+") as f:
        group = f["node"]
        edges = [e for e in group["edges"][()] if tuple(x.decode() for x in e) != edge]
        del group["edges"]
        group.create_dataset("edges", data=np.array(edges, dtype=object),
                             dtype=h5py.string_dtype())
    rehash_bundle(b)


def _drop_key(b, node, key):
    with h5py.File(b / NIR_FILE, "r+") as f:
        del f["node"]["nodes"][node]["metadata"]["sdm_neuro"][key]
    rehash_bundle(b)


def _set_host(b, key, edit):
    arrays = dict(np.load(b / HOST_FILE))
    arrays[key] = edit(arrays[key])
    np.savez(b / HOST_FILE, **arrays)
    rehash_bundle(b)


CASES = {
    "mapping": (lambda b, g: _edit_manifest(b, "mapping", "composed"),
                r"manifest\.json: mapping must be 'graded', got 'composed'"),
    "vth": (lambda b, g: set_nir_field(b, g.populations[1].name, "vth", 0),
            r"population downblocks\.0\.neuron1: vth must be an integer in \[1, "),
    "v_threshold": (lambda b, g: set_nir_field(b, "neuron", "v_threshold",
                                               np.ones(g.populations[0].shape, np.int32),
                                               meta=False),
                    r"population neuron: v_threshold must be vth << 6 = "),
    "conv weight_exp": (lambda b, g: set_nir_field(b, _first(g, "conv"), "weight_exp", 8),
                        r"connection conv:\d+ \(.* -> .*\): weight_exp must be an integer in "
                        r"\[0, 7\], got 8"),
    "odd mantissa": (lambda b, g: _edit_weight(b, _first(g, "conv"),
                                               lambda w: w.flat.__setitem__(0, 1)),
                     r"connection conv:\d+ .*: weight / 2\*\*weight_exp \(\d\) must be even"),
    "weight_lsb": (lambda b, g: set_nir_field(b, _first(g, "conv"), "weight_lsb", 0.125),
                   r"connection conv:\d+ .*: weight_lsb must be the destination's input unit"),
    "conv delay": (lambda b, g: set_nir_field(b, _first(g, "conv"), "delay", 1),
                   r"connection conv:\d+ .*: delay must be 0 \(only an identity"),
    "identity channel": (lambda b, g: set_nir_field(b, _first(g, "identity"), "dst_channel", 99),
                         r"connection identity:\d+ .*: dst_channel must be an integer in "),
    "identity pattern": (lambda b, g: _edit_weight(b, _first(g, "identity"),
                                                   lambda w: w.__imul__(2)),
                         r"connection identity:\d+ .*: weight must be the identity pattern"),
    "upsample pattern": (lambda b, g: _edit_weight(b, _first(g, "upsample"),
                                                   lambda w: w.__imul__(-1)),
                         r"connection upsample:\d+ .*: weight must be the upsample pattern"),
    "relay kind": (lambda b, g: set_nir_field(b, g.output, "kind", "stream"),
                   r"relay upblocks\.\d+: kind must be one of sum, upsample, delay"),
    "relay bias": (lambda b, g: set_nir_field(b, g.output, "bias", np.zeros((1, 2))),
                   r"relay upblocks\.\d+: bias must be an array of shape \[2, 4\]"),
    "offset": (lambda b, g: set_nir_field(b, g.output, "offset", 99),
               r"connection .* -> upblocks\.\d+\): upblocks\.\d+ has offset 99, .* the schedule "
               r"is inconsistent"),
    "scale type": (lambda b, g: set_nir_field(b, g.relays[0].name, "scale", "x"),
                   r"relay conv_identity: scale must be a finite positive number, got b?'x'"),
    "missing key": (lambda b, g: _drop_key(b, g.populations[2].name, "bias_exp"),
                    r"population downblocks\.0\.neuron2: metadata key 'bias_exp' missing"),
    "edge": (lambda b, g: _drop_edge(b, (g.output, "decoder_input")),
             r"the edge upblocks\.\d+ -> decoder_input is missing"),
    "tail_bias": (lambda b, g: _set_host(b, "tail_bias", lambda a: a + 1),
                  r"host\.npz: tail_bias differs from the bias the output relay"),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_bundle_is_refused_naming_file_and_node(written, tmp_path, case):
    edit, pattern = CASES[case]
    b = tmp_path / "b"
    shutil.copytree(written[0], b)
    edit(b, written[1])
    with pytest.raises(ExportError) as e:
        read_graded_bundle(b)
    assert re.search(pattern, str(e.value)), str(e.value)
    assert str(b) in str(e.value)
