"""``sdm-neuro energy-report`` end to end: on the default model, from a simulate run's
statistics, on an export bundle (equal to its checkpoint's report). Both mappings in detail:
tests/energy/test_energy_graded.py."""

import json

import pytest

from sdm_neuro.cli import main as cli
from sdm_neuro.errors import UsageError


def test_energy_report_of_a_bundle_equals_that_of_its_checkpoint(tmp_path,
                                                                  randomized_checkpoint):
    out = tmp_path / "bundle"
    assert cli(["export", str(randomized_checkpoint), "--target", "nir", "--out", str(out)]) == 0
    common = ["--profile", "loihi2", "--calls", "2", "--batch", "2", "--quiet"]
    assert cli(["energy-report", str(randomized_checkpoint), *common, "--out",
                str(tmp_path / "a")]) == 0
    assert cli(["energy-report", "--bundle", str(out), *common, "--out",
                str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "energy.json").read_text()) for d in ("a", "b"))
    assert b["bundle"] == str(out) and a["layers"] == b["layers"]
    assert a["profiles"] == b["profiles"]
    # without the float model the report cannot count the ANN baseline
    randomized_checkpoint.unlink()
    assert cli(["energy-report", "--bundle", str(out), *common, "--out",
                str(tmp_path / "c")]) == UsageError.exit_code


def test_energy_report_on_the_default_model(tmp_path, capsys):
    out = tmp_path / "energy"
    assert cli(["energy-report", "--calls", "2", "--batch", "2", "--out", str(out),
                "--quiet"]) == 0
    rep = json.loads((out / "energy.json").read_text())
    for png in ("energy_per_layer.png", "firing_rate.png", "energy_per_image.png"):
        assert (out / png).stat().st_size > 1000
    assert {"loihi2", "loihi1", "spinnaker2", "truenorth", "speck", "xylo", "generic45nm_fp32",
            "generic45nm_int8"} <= set(rep["profiles"])
    assert rep["calls_per_image"] == 1000 and len(rep["by_t"]) == 2
    loihi2 = rep["profiles"]["loihi2"]
    assert loihi2["derived_figures"]["synop_pj"]
    assert any("not a published figure" in n for n in loihi2["energy"]["notes"])
    assert rep["profiles"]["truenorth"]["constraints"]["fits"] is False
    syn = rep["totals_per_call"]["synaptic_ops"]
    assert loihi2["energy"]["per_call_pj"]["synaptic ops"] == pytest.approx(syn * 23.6)
    nb = rep["neurobench"]
    assert 0 < nb["activation_sparsity"] < 1 and nb["effective_synaptic_operations"]["ACs"] > 0
    text = capsys.readouterr().out
    assert "loihi2" in text and "ANN baseline" in text
    # both Loihi 2 mappings side by side; the graded one within the 1.2x of the PyTorch
    # count of synaptic operations, on one chip
    graded, composed = (rep["mappings"][m]["profiles"]["loihi2"] for m in ("graded", "composed"))
    assert graded["placement"]["chips"] == 1 and composed["placement"]["chips"] > 1
    assert rep["mappings"]["graded"]["synops_vs_pytorch"] < 1.2
    assert graded["energy"]["per_image_total_uj"] < composed["energy"]["per_image_total_uj"]
    assert "mappings side by side" in text and (out / "energy_mappings.png").stat().st_size > 1000


def test_energy_report_from_simulate_stats(tmp_path, capsys):
    sim = tmp_path / "sim"
    assert cli(["simulate", "--sampler", "ddim", "--steps", "2", "--num", "2", "--batch", "2",
                "--out", str(sim), "--quiet"]) == 0
    out = tmp_path / "energy"
    assert cli(["energy-report", "--stats", str(sim / "simulate.json"), "--calls", "1",
                "--profile", "loihi2", "--mapping", "composed", "--out", str(out),
                "--quiet"]) == 0
    rep = json.loads((out / "energy.json").read_text())
    stats = json.loads((sim / "simulate.json").read_text())
    assert rep["totals_per_call"]["synaptic_ops"] == pytest.approx(
        stats["counters_per_call"]["synops_total"] / 2)
    assert "simulate" in rep["activity_source"] and list(rep["profiles"]) == ["loihi2"]
    # (a graded simulate.json with both mappings: tests/cli/test_export_graded.py)
    assert "graded" not in rep["mappings"]
    assert (rep["sampler"], rep["steps"], rep["calls_per_image"]) == ("ddim", 2, 2)


def test_bad_stats_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "s.json"
    bad.write_text("{}")
    out = tmp_path / "e"
    assert cli(["energy-report", "--stats", str(bad), "--profile", "loihi2", "--calls", "1",
                "--out", str(out), "--quiet"]) == 2
    assert str(bad) in capsys.readouterr().err and not out.exists()
