"""Sampling sharded over Ray workers: the same samples as one process, bit for bit; finished
shards kept and skipped on a rerun; a shard file of another run refused by name.

The Ray instance is conftest.py's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sdm_neuro.errors import UsageError
from sdm_neuro.run import evaluate, sample, simulate
from sdm_neuro.scaleout.shards import Shard, ShardStore, plan_shards


@pytest.mark.parametrize(("sampler", "steps"), [("ddim", 10), ("ddpm", 10)])
def test_two_workers_give_the_single_process_samples(tmp_path, sampler, steps):
    common = {"sampler": sampler, "steps": steps, "num": 12, "batch": 4, "seed": 3,
              "quiet": True}
    one = sample(out=tmp_path / "one", **common)
    two = sample(out=tmp_path / "two", workers=2, **common)
    assert torch.equal(one.samples, two.samples)
    assert np.array_equal(np.load(tmp_path / "one" / "samples.npy"),
                          np.load(tmp_path / "two" / "samples.npy"))
    rep = json.loads((tmp_path / "two" / "sample.json").read_text())["scale_out"]
    assert rep["shards"] == rep["computed"] == 3 and rep["resumed"] == 0
    assert sum(w["calls"] for w in rep["workers"].values()) == 3 * steps
    # a shard of two batches holds the same samples too
    big = sample(out=tmp_path / "big", workers=2, shard_size=8, **common)
    assert torch.equal(one.samples, big.samples)


def test_a_rerun_skips_finished_shards_and_redoes_a_missing_one(tmp_path):
    common = {"sampler": "ddim", "steps": 5, "num": 8, "batch": 4, "seed": 1, "quiet": True,
              "workers": 2, "out": tmp_path / "s"}
    first = sample(**common)
    shards = sorted((tmp_path / "s" / "shards").iterdir())
    assert [p.name for p in shards] == [Shard(0, 4).name, Shard(4, 8).name]
    shards[1].unlink()  # as if its worker died before writing it
    again = sample(**common)
    rep = again.report["scale_out"]
    assert (rep["resumed"], rep["computed"]) == (1, 1)
    assert torch.equal(first.samples, again.samples)
    rep = sample(**common).report["scale_out"]
    assert (rep["resumed"], rep["computed"], rep["workers"]) == (2, 0, {})


def test_a_shard_of_another_run_is_refused_by_name(tmp_path):
    common = {"sampler": "ddim", "steps": 5, "num": 4, "batch": 4, "quiet": True,
              "workers": 1, "out": tmp_path / "s"}
    sample(seed=1, **common)
    with pytest.raises(UsageError, match=r"shard-0000000-0000004\.pt: written by a run with "
                                         r"seed = 1, this run has 2"):
        sample(seed=2, **common)
    with pytest.raises(UsageError, match="a shard range this run does not have"):
        sample(seed=1, **{**common, "num": 8, "batch": 8})


def test_plan_and_store_refuse_malformed_input(tmp_path):
    assert plan_shards(10, 4) == [Shard(0, 4), Shard(4, 8), Shard(8, 10)]
    assert plan_shards(10, 4, 8) == [Shard(0, 8), Shard(8, 10)]
    with pytest.raises(UsageError, match="--shard-size 6: must be a positive multiple of "
                                         "--batch 4"):
        plan_shards(10, 4, 6)
    plan = plan_shards(4, 4)
    store = ShardStore(tmp_path, {"seed": 0}, plan)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match=r"notes\.txt: not a shard file of this run"):
        store.finished()
    (tmp_path / "notes.txt").unlink()
    (tmp_path / plan[0].name).write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match=r"shard-0000000-0000004\.pt: unreadable shard file"):
        store.finished()
    store.save(plan[0], {"tensors": {"samples": torch.zeros(3, 1)}}, {})  # a row short
    with pytest.raises(UsageError, match="holds"):
        store.finished()
    store.save(plan[0], {"tensors": {"samples": torch.zeros(4, 1)}, "data": {"k": [1]}}, {})
    back = store.finished()[plan[0]]
    assert torch.equal(back["tensors"]["samples"], torch.zeros(4, 1)) and back["data"] == {"k": [1]}


@pytest.mark.parametrize(("sampler", "mapping"), [("ddim", "composed"), ("ddpm", "graded")])
def test_simulate_in_shards_equals_one_process(tmp_path, sampler, mapping):
    common = {"sampler": sampler, "steps": 10, "num": 8, "batch": 4, "seed": 2, "quiet": True,
              "mapping": mapping, "compare_every": 3}
    one = simulate(out=tmp_path / "one", **common)
    two = simulate(out=tmp_path / "two", workers=2, **common)
    assert torch.equal(one.samples, two.samples)
    assert torch.equal(one.float_samples, two.float_samples)
    a, b = (json.loads((tmp_path / d / "simulate.json").read_text()) for d in ("one", "two"))
    assert b.pop("scale_out")["computed"] == 2
    for rep in (a, b):
        del rep["seconds"]
    assert a == b  # every counter, per-layer statistic, comparison and quality figure
    assert len(a["comparison"]["eps_per_call"]) == 7  # calls 0, 3, ..., 18 of 20
    assert (tmp_path / "two.shards").is_dir()


@pytest.mark.parametrize("integer", [None, "graded"])
def test_evaluate_in_shards_scores_the_single_process_samples(tmp_path, integer):
    common = {"sampler": "ddim", "steps": 5, "num": 8, "batch": 4, "seed": 4, "quiet": True,
              "integer": integer, "kid_subsets": 2, "kid_subset_size": 4}
    evaluate(out=tmp_path / "one", **common)
    evaluate(out=tmp_path / "two", workers=2, **common)
    assert np.array_equal(np.load(tmp_path / "one" / "samples.npy"),
                          np.load(tmp_path / "two" / "samples.npy"))
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert b.pop("scale_out")["computed"] == 2
    for rep in (a, b):
        for k in [k for k in rep if k.startswith("seconds")]:
            del rep[k]
    assert a == b


def test_evaluate_refuses_workers_with_given_samples(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 1, 16, 16), dtype=np.float32))
    with pytest.raises(UsageError, match="--samples scores given images and samples nothing"):
        evaluate(samples=tmp_path / "x.npy", workers=2, out=tmp_path / "e", quiet=True)


@pytest.mark.slow  # about a minute: two trade-off runs
def test_tradeoff_sharded_equals_one_process(tmp_path, randomized_checkpoint):
    """The trade-off's sampling runs in shards (analytic sampler: its moments go to the
    workers), and a map's guidance: the same qualities, activity and energy as one process
    with the same threads (float convs can round by thread count)."""
    from sdm_neuro.run import tradeoff

    common = {"samplers": "analytic:3", "thresholds": "1.0", "threshold_map": "halves:0.9,1.1",
              "num": 8, "batch": 4, "calibration_images": 8, "threads": 1, "quiet": True}
    one = tradeoff(randomized_checkpoint, out=tmp_path / "one", **common).report["settings"]
    two = tradeoff(randomized_checkpoint, out=tmp_path / "two", workers=2,
                   **common).report["settings"]
    assert one == two and len(one) == 2
    assert one[0]["spikes_per_image"] != one[1]["spikes_per_image"]  # the map reached them
    assert len(list((tmp_path / "two.shards").iterdir())) == 4  # float + integer per setting
