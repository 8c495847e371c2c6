"""``sdm-neuro export --mapping graded``: the graded bundle for Loihi 2 end to end (both mappings
side by side in the summary), and the refusals: a profile without graded spikes (exit code 8,
before any work), a target that has no mapping (exit code 2)."""

import json

import pytest

from sdm_neuro.cli import main as cli
from sdm_neuro.errors import ConstraintError, UsageError
from sdm_neuro.export.graded_bundle import read_graded_bundle


def test_export_graded_for_loihi2(tmp_path, randomized_checkpoint, capsys):
    out = tmp_path / "bundle"
    assert cli(["export", str(randomized_checkpoint), "--target", "loihi2", "--mapping",
                "graded", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "mappings on loihi2 (this bundle: graded)" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.startswith(("  composed", "  graded"))}
    assert set(rows) == {"composed", "graded"} and rows["graded"][-1] == "MB"
    graph, manifest = read_graded_bundle(out)
    assert manifest["mapping"] == "graded" and manifest["target"] == "loihi2"
    assert manifest["constraints"]["mapping"] == "graded" and manifest["constraints"]["fits"]
    assert manifest["mappings"]["composed"]["cores"] > 0
    assert manifest["timing"]["offsets"] == {n.name: n.offset for n in graph.nodes()}
    assert json.loads((out / "manifest.json").read_text())["checkpoint"]["path"] == \
        str(randomized_checkpoint)


def test_a_profile_without_graded_spikes_is_refused(tmp_path, randomized_checkpoint, capsys):
    out = tmp_path / "bundle"
    code = cli(["export", str(randomized_checkpoint), "--mapping", "graded", "--profile",
                "loihi1", "--allow-violations", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == ConstraintError.exit_code
    assert "profile loihi1 cannot run the graded mapping: no graded spikes" in err
    assert "--mapping composed" in err and not out.exists()


def test_graded_onnx_is_a_usage_error(tmp_path, randomized_checkpoint, capsys):
    assert cli(["export", str(randomized_checkpoint), "--target", "onnx", "--mapping", "graded",
                "--out", str(tmp_path / "o")]) == UsageError.exit_code
    assert "--mapping graded" in capsys.readouterr().err


def test_simulate_a_graded_bundle_equals_the_checkpoint(tmp_path, randomized_checkpoint):
    """simulate --bundle builds the graded network from the bundle alone: the same integer
    samples as simulate --mapping graded on the checkpoint, in both timings."""
    import numpy as np

    bundle = tmp_path / "bundle"
    assert cli(["export", str(randomized_checkpoint), "--mapping", "graded", "--out",
                str(bundle), "--quiet"]) == 0
    common = ["--steps", "3", "--num", "2", "--batch", "2", "--quiet"]
    runs = {}
    for name, args in (("ckpt", [str(randomized_checkpoint), "--mapping", "graded"]),
                       ("bundle", ["--bundle", str(bundle), "--mode", "hardware"])):
        out = tmp_path / f"sim-{name}"
        assert cli(["simulate", *args, *common, "--out", str(out)]) == 0
        runs[name] = np.load(out / "samples.npy")
        report = json.loads((out / "simulate.json").read_text())
        assert report["mapping"] == "graded" and report["counters_per_call"]["payloads_total"] > 0
        assert any("relay" in layer for layer in report["layers"].values())
    assert np.array_equal(runs["ckpt"], runs["bundle"])
    # a graded simulate.json is the graded mapping's activity for energy-report --stats
    out = tmp_path / "energy"
    assert cli(["energy-report", str(randomized_checkpoint), "--stats",
                str(tmp_path / "sim-ckpt" / "simulate.json"), "--mapping", "graded",
                "--profile", "loihi2", "--out", str(out), "--quiet"]) == 0
    graded = json.loads((out / "energy.json").read_text())["mappings"]["graded"]
    sim = json.loads((tmp_path / "sim-ckpt" / "simulate.json").read_text())
    assert graded["synops_per_call"] == pytest.approx(
        sim["counters_per_call"]["synops_total"] / 2)  # per image (batch 2)
