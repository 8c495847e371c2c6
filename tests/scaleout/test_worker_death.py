"""A worker process that dies mid-shard: Ray runs its task again, and the merged result has
every sample exactly once. The Ray instance is conftest.py's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ray
import torch

from sdm_neuro.scaleout.sharded import run_sharded
from sdm_neuro.scaleout.shards import ShardStore, plan_shards


def _dies_once(marker_dir: str, shard, reporter) -> dict:
    """The shard's sample indices; the task of samples 4..7 kills its worker process the first
    time it runs (after part of its work, as a crash would)."""
    reporter(1)
    marker = Path(marker_dir) / f"died-{shard.start}"
    if shard.start == 4 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)  # no exception, no cleanup: the process is gone
    return {"tensors": {"index": torch.arange(shard.start, shard.stop)}}


def test_a_task_whose_worker_died_is_run_again_and_nothing_is_lost_or_duplicated(tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not installed
    plan = plan_shards(12, 4)
    store = ShardStore(tmp_path / "shards", {"job": "test"}, plan)
    tensors, _, report = run_sharded(_dies_once, (str(tmp_path),), store, plan, workers=2,
                                     cluster=None, calls=lambda s: 1, desc="test",
                                     progress=False)
    assert (tmp_path / "died-4").exists()  # the worker did die
    assert torch.equal(tensors["index"], torch.arange(12))
    assert report["computed"] == 3 and len(list((tmp_path / "shards").iterdir())) == 3
