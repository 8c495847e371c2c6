"""`sdm-neuro simulate` is batch-size invariant: sample i for seed s is the same (integer and
float chains, bit for bit), and so are the run's total counters, whatever --batch is."""

import json

import numpy as np

from sdm_neuro.cli import main as cli


def _run(tmp_path, batch: int, sampler: str) -> tuple[dict, np.ndarray, np.ndarray]:
    out = tmp_path / f"{sampler}-b{batch}"
    assert cli(["simulate", "--sampler", sampler, "--steps", "2", "--num", "2", "--batch",
                str(batch), "--compare-every", "1", "--out", str(out), "--quiet"]) == 0
    rep = json.loads((out / "simulate.json").read_text())
    return rep, np.load(out / "samples.npy"), np.load(out / "float_samples.npy")


def _totals(rep: dict, calls: int) -> dict:
    c = rep["counters_per_call"]
    return {"spikes": c["spikes_total"] * calls, "neuron_updates": c["neuron_updates"] * calls,
            **{k: v * calls for k, v in c["synops"].items()}}


def test_simulate_batch_size_invariant(tmp_path):
    ref, x_int, x_float = _run(tmp_path, 2, "ddpm")
    one, y_int, y_float = _run(tmp_path, 1, "ddpm")
    assert np.array_equal(x_int, y_int)
    assert np.array_equal(x_float, y_float)
    assert not np.array_equal(x_int[0], x_int[1])  # different noise per sample
    # counters are per denoising call: 2 calls of 2 samples against 4 calls of 1
    a, b = _totals(ref, 2), _totals(one, 4)
    assert a["spikes"] > 0
    for k in a:
        assert b[k] == a[k], k


def test_simulate_one_sample_reports_fid_as_not_computable(tmp_path, capsys):
    """One sample is a valid request: recognisability is measured, FID/KID are null with the
    reason (they need two samples), and the run succeeds."""
    out = tmp_path / "one"
    assert cli(["simulate", "--sampler", "ddim", "--steps", "1", "--num", "1", "--out", str(out),
                "--quiet"]) == 0
    rep = json.loads((out / "simulate.json").read_text())
    for name in ("integer", "float"):
        row = rep["comparison"]["quality"][name]["rows"]["samples"]
        assert row["fid"] is None and row["fid_kid_unavailable"]
        assert 0.0 <= row["confident"] <= 1.0
    assert "n/a vs n/a" in capsys.readouterr().out
