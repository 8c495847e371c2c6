"""The trade-off command on a tiny model: every setting scored and priced, the Pareto front
marked, guidance reaching the integer runs, the plot written; bad settings refused up front."""

import json

import pytest

from sdm_neuro import UsageError, run
from sdm_neuro.cli import main
from sdm_neuro.models.thresholds import parse_threshold_map


def test_tradeoff_json_on_a_tiny_model(randomized_checkpoint, tmp_path, capsys):
    out = tmp_path / "t"
    rc = main(["tradeoff", str(randomized_checkpoint), "--samplers", "dpmpp:2",
               "--thresholds", "1.0,0.9", "--mapping", "composed,graded", "--num", "8",
               "--batch", "4", "--profile", "loihi2", "--profile", "generic45nm_int8",
               "--calibration-images", "8", "--search", "--search-num", "4",
               "--search-budget", "3", "--out", str(out), "--quiet"])
    assert rc == 0
    rep = json.loads((out / "tradeoff.json").read_text())
    assert (out / "tradeoff.png").stat().st_size > 0
    rows = rep["settings"]
    assert [(r["sampler"], r["steps"], r["guidance"], r["mapping"]) for r in rows] == [
        ("dpmpp2", 2, g, m) for g in ("1", "0.9") for m in ("composed", "graded")]
    for r in rows:
        assert r["calls_per_image"] == r["steps"]
        assert r["integer"]["fid"] is not None and 0 <= r["integer"]["confident"] <= 1
        assert set(r["energy_per_image_uj"]) == {"loihi2", "generic45nm_int8"}
        assert r["energy_per_image_uj"]["loihi2"] > 0
        assert r["float"] == next(q["float"] for q in rows if q["sampler"] == r["sampler"]
                                  and q["guidance"] == r["guidance"])
    # the Pareto front: no row on it is dominated, every row off it is
    pts = {r["label"]: (r["energy_per_image_uj"]["loihi2"], r["integer"]["fid"]) for r in rows}
    for r in rows:
        e, f = pts[r["label"]]
        dominated = any(a <= e and b <= f and (a, b) != (e, f) for a, b in pts.values())
        assert r["pareto"] == (not dominated)
    # guidance reached the integer runs: a lower threshold, more spikes, same sampler/mapping
    key = {(r["sampler"], r["mapping"], r["guidance"]): r["spikes_per_image"] for r in rows}
    for m in ("composed", "graded"):
        assert key[("dpmpp2", m, "0.9")] > key[("dpmpp2", m, "1")]
    assert rep["reference"] is None  # no ddpm:1000 in this sweep
    found = rep["search"]
    assert len(found["trace"]) == 3 and found["trace"][0]["values"] == {
        "down": 1.0, "middle": 1.0, "up": 1.0}
    assert found["search_fid"] == min(t["fid"] for t in found["trace"])
    assert len({tuple(t["values"].values()) for t in found["trace"]}) == 3  # none twice
    assert set(found["held_out"]) == {"seed", "samples", "threshold 1", "map found"}
    tmap = parse_threshold_map(str(out / "threshold_map.json"))  # usable as --threshold-map
    assert dict(tmap.entries) == found["map"]
    assert "on the Pareto front" in capsys.readouterr().out


@pytest.mark.parametrize("option, message", [
    ({"samplers": "ddim"}, "is not SAMPLER:STEPS"),
    ({"samplers": "ddim:10,ddim:10"}, "given twice"),
    ({"samplers": "euler:10"}, "unknown sampler 'euler'"),
    ({"thresholds": "1.0,-2"}, "not a finite number > 0"),
    ({"mapping": "composed,dense"}, "unknown mapping"),
    ({"thresholds": "1.0,1"}, "a value is given twice"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, option, message):
    with pytest.raises(UsageError, match=message):
        run.tradeoff(out=tmp_path / "t", **option)
    assert not (tmp_path / "t").exists()
