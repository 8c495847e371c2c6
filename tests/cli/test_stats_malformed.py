"""``energy-report --stats simulate.json``: a file that is not a regular small file, of the wrong
shape, with counters that are not finite non-negative numbers, or of another model is a
UsageError (exit code 2) naming the file and the key; a well-formed one is read exactly."""

import json
import os
import re
from pathlib import Path

import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.cli import main as cli
from sdm_neuro.compiler.lower import lower
from sdm_neuro.energy.activity import check_activity
from sdm_neuro.run import simulation as activity_module
from sdm_neuro.run.simulation import read_simulate_report
from sdm_neuro.errors import UsageError


@pytest.fixture(scope="module")
def graph(micro_config):
    torch.manual_seed(0)
    return lower(SpikingUNet(micro_config).eval())


def _stats(graph) -> dict:
    """A simulate.json of ``graph``'s shape (batch 2): values chosen to be told apart."""
    return {"sampler": "ddim", "steps": 4, "num": 6, "batch": 2,
            "counters_per_call": {
                "neuron_updates": 1000.0, "host_macs": 500,
                "synops": {f"{p.src}->{p.dst}": 10.0 * (i + 1)
                           for i, p in enumerate(graph.projections) if p.dst != "host"}},
            "layers": {p.name: {"spikes_per_call": 2.0 * (i + 1), "vth": 64}
                       for i, p in enumerate(graph.populations)}}


def _write(tmp_path, stats, name="simulate.json") -> Path:
    path = tmp_path / name
    path.write_text(stats if isinstance(stats, str) else json.dumps(stats))
    return path


def test_a_well_formed_file_is_read_per_image(tmp_path, graph):
    act = read_simulate_report(_write(tmp_path, _stats(graph)))
    check_activity(act, graph)
    first = graph.populations[0].name
    assert act.spikes[first] == 1.0 and act.neuron_updates == 500.0 and act.host_macs == 250.0
    assert sum(act.synops.values()) == sum(5.0 * (i + 1) for i in range(len(act.synops)))
    assert act.chain == ("ddim", 4)


def _expect(path, *patterns: str) -> str:
    with pytest.raises(UsageError) as e:
        read_simulate_report(path)
    msg = str(e.value)
    assert msg.startswith(str(path)), msg
    for p in patterns:
        assert re.search(p, msg), (p, msg)
    return msg


def _first(stats: dict, section: str) -> str:
    return next(iter(stats[section] if section == "layers" else
                     stats["counters_per_call"][section]))


@pytest.mark.parametrize("edit, pattern", [
    (lambda s: s.update(layers=[1, 2]), r"layers must be an object, got \[1, 2\]"),
    (lambda s: s.update(batch=-2), r"batch must be an integer >= 1, got -2"),
    (lambda s: s.update(batch=0), r"batch must be an integer >= 1, got 0"),
    (lambda s: s.update(batch=2.5), r"batch must be an integer >= 1, got 2\.5"),
    (lambda s: s.update(batch="2"), r"batch must be an integer >= 1, got '2'"),
    (lambda s: s.update(batch=True), r"batch must be an integer >= 1, got True"),
    (lambda s: s.update(steps=-1), r"steps must be an integer >= 1, got -1"),
    (lambda s: s.update(num=0), r"num must be an integer >= 1, got 0"),
    (lambda s: s.update(sampler="euler"),
     r"sampler must be one of ddpm, ddim, dpmpp1, dpmpp2, dpmpp3, analytic, got .euler."),
    (lambda s: s.pop("sampler"), r"sampler must be one of ddpm, ddim, .*, got None"),
    (lambda s: s.pop("counters_per_call"), r"counters_per_call must be an object, got None"),
    (lambda s: s["counters_per_call"].update(synops=[]),
     r"counters_per_call\.synops must be an object"),
    (lambda s: s["counters_per_call"].update(neuron_updates=-1.0),
     r"counters_per_call\.neuron_updates must be a finite number >= 0, got -1\.0"),
    (lambda s: s["counters_per_call"].update(host_macs="500"),
     r"counters_per_call\.host_macs must be a finite number >= 0, got '500'"),
    (lambda s: s["counters_per_call"]["synops"].update({"a-b": 1.0}),
     r"counters_per_call\.synops must be keys \"source->target\", got 'a-b'"),
    (lambda s: s["counters_per_call"]["synops"].update({_first(s, "synops"): None}),
     r"counters_per_call\.synops\.neuron->\S+ must be a finite number >= 0, got None"),
    (lambda s: s["layers"].update({_first(s, "layers"): 5}), r"layers\.neuron must be an object"),
    (lambda s: s["layers"][_first(s, "layers")].update(spikes_per_call=-3),
     r"layers\.neuron\.spikes_per_call must be a finite number >= 0, got -3"),
])
def test_wrong_shapes_and_values_name_the_key(tmp_path, graph, edit, pattern):
    stats = _stats(graph)
    edit(stats)
    _expect(_write(tmp_path, stats), pattern)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_counters_are_refused(tmp_path, graph, literal):
    text = json.dumps(_stats(graph)).replace('"spikes_per_call": 2.0,',
                                             f'"spikes_per_call": {literal},', 1)
    assert literal in text
    _expect(_write(tmp_path, text), r"layers\.neuron\.spikes_per_call must be a finite number")


@pytest.mark.parametrize("text, pattern", [
    ("[1]", r"the file must be a JSON object"),
    ('{"layers": ' + "[" * 100_000 + "]" * 100_000 + "}", r"nested too deeply"),
    ("{", r"not valid JSON"),
    ("\udcff", r"not UTF-8|not valid JSON"),
])
def test_files_that_are_not_simulate_json(tmp_path, text, pattern):
    path = tmp_path / "s.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    _expect(path, pattern)


def test_files_that_are_not_regular_small_files(tmp_path, monkeypatch):
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    _expect(Path("/dev/zero"), "is a device")
    _expect(pipe, "is a named pipe")
    _expect(tmp_path, "is a directory")
    _expect(tmp_path / "absent.json", "no such file")
    monkeypatch.setattr(activity_module, "STATS_MAX_BYTES", 100)
    _expect(_write(tmp_path, {"pad": "x" * 200}), "more than the 100 bytes")


@pytest.mark.parametrize("edit, pattern", [
    (lambda s: s["layers"].update(bogus={"spikes_per_call": 1}), r"unknown: \['bogus'\]"),
    (lambda s: s["layers"].pop("neuron"), r"missing: \['neuron'\]"),
    (lambda s: s["counters_per_call"]["synops"].update({"neuron->bogus": 1}),
     (r"counters_per_call\.synops names projections this model does not have: "
      r"\['neuron->bogus'\]")),
    (lambda s: s.update(steps=1001), r"steps is 1001, more than the model's 1000"),
])
def test_names_are_checked_against_the_model(tmp_path, graph, edit, pattern):
    stats = _stats(graph)
    edit(stats)
    path = _write(tmp_path, stats)
    act = read_simulate_report(path)
    with pytest.raises(UsageError, match=re.escape(str(path)) + ".*" + pattern):
        check_activity(act, graph)
    # and where the statistics are used, before any work
    from sdm_neuro.energy.report import energy_report

    with pytest.raises(UsageError, match=pattern):
        energy_report(None, graph, None, [], activity=act)


@pytest.mark.parametrize("make", ["dev_zero", "pipe", "layers_list", "negative_batch"])
def test_cli_exit_code_and_message(tmp_path, graph, capsys, make):
    if make == "dev_zero":
        path = Path("/dev/zero")
    elif make == "pipe":
        path = tmp_path / "pipe.json"
        os.mkfifo(path)
    else:
        stats = _stats(graph)
        stats.update(layers=[]) if make == "layers_list" else stats.update(batch=-1)
        path = _write(tmp_path, stats)
    out = tmp_path / "e"
    code = cli(["energy-report", "--stats", str(path), "--profile", "loihi2", "--calls", "1",
                "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == UsageError.exit_code, err
    assert str(path) in err and not out.exists()
    assert {"layers_list": "layers", "negative_batch": "batch"}.get(make, str(path)) in err
