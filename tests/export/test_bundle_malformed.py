"""A U-Net export bundle that is malformed, with its hashes updated to match, is refused by
``read_bundle`` with an ExportError (exit code 7) that names the file and the key: the manifest's
shape, files outside the bundle, unreadable network.nir / host.npz, and every integer parameter
the graph is built from (Lava's ranges, shapes that fit)."""

import copy
import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sdm_neuro.errors import ExportError
from sdm_neuro.export.bundle import (
    HOST_FILE,
    MANIFEST,
    NIR_FILE,
    graph_from_nir,
    read_bundle,
    read_host_arrays,
    read_network,
)
from sdm_test_support import bundle_manifest, rehash_bundle, set_nir_field

# The bundle under test is tests/conftest.py's micro_bundle (written once), of the micro model:
# small, so that every read is quick: 11 populations of 2 x 4 x 4, 26 projections.


@pytest.fixture
def bundle(tmp_path, micro_bundle):
    out = tmp_path / "b"
    shutil.copytree(micro_bundle[0], out)
    return out




def _edit_manifest(b, edit) -> None:
    man = bundle_manifest(b)
    edit(man)
    (b / MANIFEST).write_text(json.dumps(man))



def _expect(b, *patterns: str) -> str:
    with pytest.raises(ExportError) as e:
        read_bundle(b)
    msg = str(e.value)
    for p in patterns:
        assert re.search(p, msg), (p, msg)
    return msg


def test_the_unedited_bundle_reads(bundle, micro_bundle):
    graph, _ = read_bundle(bundle)
    assert [p.name for p in graph.populations] == [p.name for p in micro_bundle[1].populations]


# -- 1. manifests of the wrong shape -------------------------------------------------------

@pytest.mark.parametrize("edit, pattern", [
    (lambda m: m["files"]["network.nir"].pop("sha256"), r"files\.network\.nir\.sha256 must be"),
    (lambda m: m["files"]["host.npz"].update(sha256=5), r"files\.host\.npz\.sha256 must be"),
    (lambda m: m["files"]["host.npz"].update(bytes="12"), r"files\.host\.npz\.bytes must be"),
    (lambda m: m.update(files=["network.nir"]), r"files must be an object"),
    (lambda m: m.pop("files"), r"files must be an object"),
    (lambda m: m["files"].pop("host.npz"), r"files does not list host\.npz"),
    (lambda m: m.update(format_version=True), r"not a sdm-neuro-bundle version 1 manifest"),
    (lambda m: m.update(format_version=1.0), r"not a sdm-neuro-bundle version 1 manifest"),
    (lambda m: m["quantization"].update(threshold_scale="1.0"),
     r"quantization\.threshold_scale must be a finite positive number, got '1\.0'"),
    (lambda m: m["quantization"].update(threshold_scale=-1), r"quantization\.threshold_scale"),
    (lambda m: m.update(quantization=[1]), r"quantization must be an object"),
    (lambda m: m.update(checkpoint="ckpt.pt"), r"checkpoint must be an object"),
    (lambda m: m.update(checkpoint={"path": 5}), r"checkpoint\.path must be a string"),
    (lambda m: m.update(dataset=["digits"]), r"dataset must be a string"),
    (lambda m: m["quantization"]["populations"]["neuron"].update(vth=3),
     r"quantization\.populations\.neuron\.vth is 3; the network holds"),
    (lambda m: m["quantization"]["populations"].pop("neuron"), r"quantization\.populations"),
    (lambda m: m["model_config"].update(ch=8), r"model_config .* is not the network's"),
])
def test_manifest_of_the_wrong_shape(bundle, edit, pattern):
    _edit_manifest(bundle, edit)
    msg = _expect(bundle, pattern)
    assert str(bundle / MANIFEST) in msg


@pytest.mark.parametrize("text, pattern", [
    ("[1, 2]", r"must be a JSON object, got list"),
    ("[" * 100_000 + "]" * 100_000, r"nested too deeply"),
    ("{", r"not valid JSON"),
])
def test_manifest_that_is_not_an_object(bundle, text, pattern):
    (bundle / MANIFEST).write_text(text)
    _expect(bundle, re.escape(str(bundle / MANIFEST)), pattern)


def test_manifest_that_is_a_named_pipe_is_refused_without_opening(bundle):
    (bundle / MANIFEST).unlink()
    os.mkfifo(bundle / MANIFEST)
    _expect(bundle, re.escape(str(bundle / MANIFEST)), "named pipe")


# -- 2. listed files outside the bundle ----------------------------------------------------

def _list_instead_of_host(b, name: str) -> None:
    """List ``name`` (with its true hash) in place of host.npz."""
    man = bundle_manifest(b)
    target = b / name if not os.path.isabs(name) else Path(name)
    info = {"sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
    man["files"] = {"network.nir": man["files"]["network.nir"], name: info}
    (b / MANIFEST).write_text(json.dumps(man))


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_a_listed_name_outside_the_bundle_is_not_followed(bundle, tmp_path, kind):
    outside = tmp_path / "x"
    outside.write_bytes(b"secret")
    name = "../x" if kind == "dotdot" else str(outside)
    _list_instead_of_host(bundle, name)
    _expect(bundle, re.escape(str(bundle / MANIFEST)), "not a plain file name inside the bundle")


def test_a_link_out_of_the_bundle_is_not_followed(bundle, tmp_path):
    outside = tmp_path / "elsewhere.nir"
    shutil.copy(bundle / NIR_FILE, outside)
    (bundle / NIR_FILE).unlink()
    (bundle / NIR_FILE).symlink_to(outside)  # same bytes, same hash: only the link is wrong
    _expect(bundle, re.escape(str(bundle / NIR_FILE)), "outside the bundle directory")


def test_a_listed_directory_or_pipe_is_refused(bundle):
    os.mkfifo(bundle / "pipe")
    man = bundle_manifest(bundle)
    man["files"]["pipe"] = {"sha256": "0" * 64}
    (bundle / MANIFEST).write_text(json.dumps(man))
    _expect(bundle, re.escape(str(bundle / "pipe")), "named pipe")


# -- 3. unreadable network.nir / host.npz --------------------------------------------------

@pytest.mark.parametrize("name, damage, pattern", [
    (NIR_FILE, lambda d: d[: len(d) // 2], r"not a readable NIR \(HDF5\) file"),
    (NIR_FILE, lambda d: b"not hdf5" * 100, r"not a readable NIR \(HDF5\) file"),
    (HOST_FILE, lambda d: d[: len(d) // 2], r"not a readable \.npz archive"),
    (HOST_FILE, lambda d: b"PK" + d[2:100], r"not a readable \.npz archive"),
])
def test_truncated_or_garbage_files_name_the_file(bundle, name, damage, pattern):
    (bundle / name).write_bytes(damage((bundle / name).read_bytes()))
    rehash_bundle(bundle)
    _expect(bundle, re.escape(str(bundle / name)), pattern)


def _rewrite_host(b, edit) -> None:
    with np.load(b / HOST_FILE) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    np.savez(b / HOST_FILE, **arrays)
    rehash_bundle(b)


def test_host_npz_with_a_pickled_object_array_is_refused(bundle):
    _rewrite_host(bundle, lambda a: a.update(tail_bias=np.array([{"x": 1}], dtype=object)))
    _expect(bundle, re.escape(str(bundle / HOST_FILE)), "tail_bias: dtype object",
            "pickled arrays are refused")


def test_host_npz_member_whose_header_lies_about_its_size(bundle):
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**9,)}
    with zipfile.ZipFile(bundle / HOST_FILE, "a") as zf, zf.open("huge.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(np.zeros(4).tobytes())
    rehash_bundle(bundle)
    _expect(bundle, re.escape(str(bundle / HOST_FILE)), r"huge: the header declares shape "
            r"\[1000000000\]")


def test_host_npz_with_a_string_array_is_refused(bundle):
    _rewrite_host(bundle, lambda a: a.update({"temb/downblocks.0":
                                              a["temb/downblocks.0"].astype(str)}))
    _expect(bundle, re.escape(str(bundle / HOST_FILE)), r"temb/downblocks\.0: dtype <U")


# The checks of the values themselves run on the graph and arrays as read (the reader's own
# graph_from_nir), changed in memory: the same code path as a changed file, without the file I/O.

@pytest.fixture(scope="module")
def parsed(micro_bundle):
    b = micro_bundle[0]
    return read_network(b / NIR_FILE), read_host_arrays(b / HOST_FILE)


def _from(parsed, edit_graph=None, edit_host=None, *patterns: str) -> str:
    g, host = copy.deepcopy(parsed[0]), dict(parsed[1])
    if edit_graph:
        edit_graph(g)
    if edit_host:
        edit_host(host)
    with pytest.raises(ExportError) as e:
        graph_from_nir(g, host, source="B/network.nir", host_source="B/host.npz")
    msg = str(e.value)
    for p in patterns:
        assert re.search(p, msg), (p, msg)
    return msg


def test_the_unedited_graph_reads(parsed, micro_bundle):
    graph = graph_from_nir(*parsed, source="B/network.nir")
    assert all(torch.equal(a.weight_int, b.weight_int) for a, b in
               zip(graph.projections, micro_bundle[1].projections, strict=True)
               if a.weight_int is not None)


@pytest.mark.parametrize("edit, pattern", [
    (lambda a: a.pop("tail_bias"), r"tail_bias missing"),
    (lambda a: a.pop("temb/downblocks.0"), r"temb/downblocks\.0 missing"),
    (lambda a: a.update(tail_bias=a["tail_bias"][:1]), r"tail_bias must be an array of shape"),
    (lambda a: a.update(tail_bias=a["tail_bias"] * np.nan), r"tail_bias: 4 value\(s\) are NaN"),
    (lambda a: a.update({"tail/tail_conv.weight": a["tail/tail_conv.weight"][:, :1]}),
     r"tail/tail_conv\.weight must be an array of shape \[1, 2, 3, 3\]"),
    (lambda a: a.update({"schedule/betas": -a["schedule/betas"]}), r"schedule/betas must be in"),
    (lambda a: a.update(extra=np.zeros(2)), r"unknown array\(s\) extra"),
])
def test_host_arrays_are_checked(parsed, edit, pattern):
    _from(parsed, None, edit, "^B/host.npz: ", pattern)


def test_nir_declaring_a_huge_dataset_is_refused_before_reading(bundle):
    with h5py.File(bundle / NIR_FILE, "r+") as f:  # declared, never written: a small file
        f["node"]["nodes"]["conv:0"].create_dataset("huge", shape=(40000, 40000), dtype="f8")
    rehash_bundle(bundle)
    assert (bundle / NIR_FILE).stat().st_size < 10 << 20
    _expect(bundle, re.escape(str(bundle / NIR_FILE)), r"declares more than .* bytes",
            r"shape \[40000, 40000\]")


# -- 4. every integer parameter, in Lava's range, named by projection / population ----------

def _first_conv(graph, upsample: int = 1) -> str:
    return next(f"conv:{i}" for i, p in enumerate(graph.projections)
                if p.dst != "host" and p.upsample == upsample)


def _meta_of(g, name: str) -> dict:
    return g.nodes[name].metadata["sdm_neuro"]


def _with_first(w: np.ndarray, value) -> np.ndarray:
    w = w.copy()
    w.flat[0] = value
    return w


@pytest.mark.parametrize("key, value, pattern", [
    ("weight_int", lambda w: _with_first(w, 3),
     r"weight_int must be even integers in \[-256, 254\].*e\.g\. 3"),
    ("weight_int", lambda w: _with_first(w, 256),
     r"weight_int must be even integers in \[-256, 254\].*e\.g\. 256"),
    ("weight_int", lambda w: _with_first(w, -258), r"weight_int must be even .*e\.g\. -258"),
    ("weight_int", lambda w: w.astype(np.float64),
     r"weight_int must be an integer array, got an array of dtype float64"),
    ("weight_int", lambda w: w[:, :1], r"weight_int must be an array of shape \[2, 2, 3, 3\]"),
    ("delay", -1, r"delay must be an integer in \[0, 62\], got -1"),
    ("delay", 63, r"delay must be an integer in \[0, 62\], got 63"),
    ("delay", "3", r"delay must be an integer in \[0, 62\], got '3'"),
    ("delay", np.float64(2.0), r"delay must be an integer in \[0, 62\], got 2\.0"),
    ("upsample", 0, r"upsample must be an integer in \[1, 64\], got 0"),
    ("upsample", -2, r"upsample must be an integer in \[1, 64\], got -2"),
    ("upsample", 2, r"gives a 8 x 8 map \(source 4 x 4, upsample 2, stride 1\)"),
    ("weight_exp", 8, r"weight_exp must be an integer in \[-8, 7\], got 8"),
    ("gain", np.array([1.0, 2.0, 3.0]), r"gain must be empty or 2 values"),
    ("gain", np.array([1.0, np.inf]), r"gain: 1 value\(s\) are NaN or infinite"),
    ("src", "nowhere", r"src must be a population of this network, got 'nowhere'"),
    ("dst", "neuron", r"dst must be a population after"),
])
def test_projection_parameters(parsed, micro_bundle, key, value, pattern):
    name = _first_conv(micro_bundle[1])

    def edit(g):
        m = _meta_of(g, name)
        m[key] = value(m[key]) if callable(value) else value

    _from(parsed, edit, None, f"^B/network.nir: projection {name}[ :]", pattern)


@pytest.mark.parametrize("key, value, pattern", [
    ("bias", np.full(2, 0.5), r"bias must be 0 \(what the reader runs\), got \[0\.5, 0\.5\]"),
    ("groups", 2, r"groups must be 1 \(what the reader runs\), got 2"),
])
def test_conv_fields_the_reader_would_ignore(parsed, micro_bundle, key, value, pattern):
    name = _first_conv(micro_bundle[1])
    _from(parsed, lambda g: setattr(g.nodes[name], key, value), None,
          f"projection {name}.*{pattern}")


def test_stride_zero_and_shapes_that_do_not_fit(bundle, micro_bundle):
    name = _first_conv(micro_bundle[1])
    set_nir_field(bundle, name, "stride", np.array([0, 0]), meta=False)
    _expect(bundle, re.escape(f"{bundle / NIR_FILE}: projection {name}: stride must be "
                                   "integers in [1, 64], got [0, 0]"))
    # a stride that NIR's own type check refuses: still the bundle's error, naming the node
    set_nir_field(bundle, name, "stride", np.array([2, 2]), meta=False)
    _expect(bundle, re.escape(str(bundle / NIR_FILE)), f"type mismatch: {name}.output")


@pytest.mark.parametrize("key, value, pattern", [
    ("vth", 1 << 17, r"vth must be an integer in \[1, 131071\], got 131072"),
    ("vth", 0, r"vth must be an integer in \[1, 131071\], got 0"),
    ("vth", np.float64(3.5), r"vth must be an integer in \[1, 131071\], got 3\.5"),
    ("bias_exp", 8, r"bias_exp must be an integer in \[0, 7\], got 8"),
    ("bias_exp", -1, r"bias_exp must be an integer in \[0, 7\], got -1"),
    ("du", 4096, r"du must be an integer in \[0, 4095\], got 4096"),
    ("dv", -1, r"dv must be an integer in \[0, 4095\], got -1"),
    ("du", np.True_, r"du must be an integer in \[0, 4095\], got True"),
    ("offset", -1, r"offset must be an integer"),
    ("scale", np.nan, r"scale must be a finite positive number"),
    ("scale", 1.0, r"scale must be threshold / \(64 vth\)"),
    ("bias", np.zeros((3, 2)), r"bias must be an array of shape \[2, 2\]"),
    ("pixel_input", np.int64(1), r"pixel_input must be a boolean, got 1"),
    ("pixel_input", np.True_, r"the first population \(the stem\) and only it"),
    ("name", "other", r"name must be 'downblocks.0.neuron2', got 'other'"),
])
def test_population_parameters(parsed, key, value, pattern):
    name = "downblocks.0.neuron2"  # a ResBlock neuron: it has a time embedding
    _from(parsed, lambda g: _meta_of(g, name).update({key: value}), None, pattern)


def test_a_time_embedding_block_without_its_table(parsed):
    name = "downblocks.0.neuron2"
    _from(parsed, lambda g: _meta_of(g, name).update(temb_block="nowhere"), None,
          r"^B/host.npz: temb/nowhere missing \(time embedding of population "
          r"downblocks\.0\.neuron2\)")


def test_offsets_and_delays_must_be_the_networks_schedule(parsed, micro_bundle):
    graph = micro_bundle[1]
    pop = graph.populations[3]
    _from(parsed, lambda g: _meta_of(g, pop.name).update(offset=pop.offset + 1), None,
          f"population {pop.name}: offset is {pop.offset + 1}; the schedule of this network "
          f"gives {pop.offset}")
    i, proj = next((i, p) for i, p in enumerate(graph.projections) if p.dst != "host")
    _from(parsed, lambda g: _meta_of(g, f"conv:{i}").update(delay=proj.delay + 1), None,
          f"projection {i} \\({proj.src} -> {proj.dst}\\): delay is {proj.delay + 1}")


def test_a_threshold_that_differs_between_neurons(parsed):
    def edit(g):
        g.nodes["neuron"].v_threshold[0, 0, 0] = 2.0

    _from(parsed, edit, None, r"population neuron: v_threshold must be one positive threshold")


def test_an_edge_that_contradicts_the_metadata(parsed, micro_bundle):
    name = _first_conv(micro_bundle[1])

    def edit(g):
        g.edges = [e for e in g.edges if e[0] != name]

    _from(parsed, edit, None, f"projection {name} .*the edge {name} -> .* is missing")


def test_bundle_format_peeks_without_blocking(bundle, tmp_path):
    from sdm_neuro.export.bundle import BUNDLE_FORMAT, bundle_format

    assert bundle_format(bundle) == BUNDLE_FORMAT
    (bundle / MANIFEST).unlink()
    os.mkfifo(bundle / MANIFEST)
    assert bundle_format(bundle) is None  # refused by the guard, not opened
    assert bundle_format(tmp_path / "absent") is None
