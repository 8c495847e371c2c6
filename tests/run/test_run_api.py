"""The run layer as a Python API: each job checks its output location before any work (as the CLI
does), simulate.json's reader reads what its writer writes, the ONNX manifest carries the bundle
format, and every CLI option reaches its job under its own name."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sdm_neuro import SpikingUNet, run
from sdm_neuro.errors import UsageError
from sdm_neuro.run.simulation import SIMULATE_REPORT, read_simulate_report, write_simulate_report

@pytest.fixture
def no_work(monkeypatch):
    """Every long computation a job can start raises instead."""
    import sdm_neuro.compiler.pipeline
    import sdm_neuro.data
    import sdm_neuro.diffusion
    import sdm_neuro.evaluation.evaluate
    import sdm_neuro.export.onnx
    import sdm_neuro.training

    def stop(name):
        def fail(*args, **kwargs):
            raise AssertionError(f"work started: {name}")
        return fail

    for module, name in ((sdm_neuro.diffusion, "generate"), (sdm_neuro.data, "load_dataset"),
                         (sdm_neuro.compiler.pipeline, "build_integer_graph"),
                         (sdm_neuro.training, "train"),
                         (sdm_neuro.evaluation.evaluate, "fit_classifier"),
                         (sdm_neuro.export.onnx, "export_onnx")):
        monkeypatch.setattr(module, name, stop(name))


@pytest.fixture
def tiny_ckpt(tmp_path, tiny_config):
    from sdm_neuro.checkpoint import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "tiny.pt", tiny_config, SpikingUNet(tiny_config).state_dict(),
                           meta={"dataset": "digits"})


@pytest.mark.parametrize("job", [run.evaluate, run.simulate, run.energy_report, run.export,
                                 run.tradeoff,
                                 lambda **kw: run.export(target="onnx", **kw)],
                         ids=["evaluate", "simulate", "energy_report", "export", "tradeoff",
                              "export-onnx"])
def test_non_empty_out_without_force_is_refused_before_any_work(tmp_path, no_work, tiny_ckpt,
                                                                job):
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("old")
    notes = []
    with pytest.raises(UsageError, match="output directory exists and is not empty; pass "
                                         "--force"):
        job(checkpoint=tiny_ckpt, out=str(out), notify=notes.append)
    assert notes == [] and [p.name for p in out.iterdir()] == ["old.txt"]


def test_file_outputs_are_checked_before_training(tmp_path, no_work):
    (tmp_path / "adir").mkdir()
    with pytest.raises(UsageError, match="--out .*adir: is a directory"):
        run.train(out=tmp_path / "adir", steps=1)
    with pytest.raises(UsageError, match="--release .*adir: is a directory"):
        run.train(out=tmp_path / "x.pt", release=tmp_path / "adir")
    with pytest.raises(UsageError, match="--out CKPT is required"):
        run.train()
    with pytest.raises(UsageError, match="--out .*adir: is a directory"):
        run.train_classifier(out=tmp_path / "adir")


def test_info_reports_the_checkpoint_and_its_notes(tiny_ckpt, tmp_path, tiny_config):
    res = run.info(tiny_ckpt)
    assert res.summary["checkpoint"] == str(tiny_ckpt) and res.config == tiny_config
    assert dict(res.rows())["image"] == "1 x 8 x 8" and len(res.layer_rows()) == \
        res.summary["spiking_layers"]
    # a reference checkpoint (a bare state_dict): what was inferred goes to notify, in order
    ref = tmp_path / "ref.pt"
    torch.save({"net_model": SpikingUNet(tiny_config).state_dict()}, ref)
    notes = []
    res = run.info(ref, img_size=8, notify=notes.append)
    assert notes and notes == res.summary["notes"]


def _report(**changes) -> dict:
    """A simulate.json (layout 1) of two populations, batch 2."""
    rep = {"tool": "sdm-neuro test", "checkpoint": "m.pt", "bundle": None, "mode": "ideal",
           "sampler": "ddim", "steps": 10, "num": 4, "batch": 2, "seed": 0,
           "threshold_scale": 1.0, "seconds": {}, "graph": {"populations": 2, "projections": 1},
           "counters_per_call": {"neuron_updates": 40.0, "host_macs": 6.0,
                                 "synops": {"a->b": 18.0}, "synops_total": 18.0,
                                 "spikes_total": 10.0, "events": {}},
           "layers": {"a": {"spikes_per_call": 8.0}, "b": {"spikes_per_call": 2.0}},
           "comparison": {}}
    rep.update(changes)
    return rep


def test_simulate_report_reads_what_the_writer_wrote(tmp_path):
    report = _report()
    path = write_simulate_report(tmp_path, report)
    assert path == tmp_path / SIMULATE_REPORT
    assert json.loads(path.read_text()) == report and "format_version" not in report
    act = read_simulate_report(path)
    assert act.spikes == {"a": 4.0, "b": 1.0} and act.synops == {"a->b": 9.0}
    assert (act.neuron_updates, act.host_macs) == (20.0, 3.0)
    assert act.chain == ("ddim", 10) and act.path == str(path)
    path = write_simulate_report(tmp_path, _report(sampler="euler"))
    with pytest.raises(UsageError, match="sampler must be one of"):
        read_simulate_report(path)


def test_onnx_manifest_has_the_bundle_format(tmp_path, tiny_ckpt, tiny_config):
    from sdm_neuro.export.bundle import BUNDLE_FORMAT, BUNDLE_VERSION
    from sdm_neuro.run.exports import onnx_manifest

    onnx_file = tmp_path / "denoiser.onnx"
    onnx_file.write_bytes(b"not really onnx")
    ckpt = SimpleNamespace(path=Path(tiny_ckpt), config=tiny_config)
    check = SimpleNamespace(to_dict=lambda: {"ok": True})
    m = onnx_manifest("onnx", ckpt, onnx_file, check, None)
    assert (m["format"], m["format_version"]) == (BUNDLE_FORMAT, BUNDLE_VERSION)
    assert list(m)[:3] == ["format", "format_version", "target"]
    assert m["threshold_scale"] == 1.0 and m["files"]["denoiser.onnx"]["bytes"] == 15


JOBS = {"info": run.info, "sample": run.sample, "evaluate": run.evaluate,
        "simulate": run.simulate, "energy-report": run.energy_report, "export": run.export,
        "profiles": run.profiles, "train-classifier": run.train_classifier, "train": run.train,
        "tradeoff": run.tradeoff}


PRINTING = {("info", "layers"), ("info", "json"), ("profiles", "verbose")}  # how the CLI prints


@pytest.mark.parametrize("command", sorted(JOBS))
def test_every_option_reaches_its_job_with_the_same_default(command):
    from sdm_neuro.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]
    params = inspect.signature(JOBS[command]).parameters
    for action in parser._actions:
        if action.dest == "help" or (command, action.dest) in PRINTING:
            continue
        assert action.dest in params, f"{command}: --{action.dest} does not reach the job"
        default = params[action.dest].default
        if action.required or (command, action.dest) == ("profiles", "profile"):
            continue  # no default (the job's: none; profiles: () for all shipped)
        if isinstance(action.default, Path):
            default = Path(default)
        assert default == action.default, (command, action.dest)
    assert set(JOBS) == set(sub.choices)
