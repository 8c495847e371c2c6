"""A worker process that dies mid-shard: Ray runs its task again; a whole run killed mid-way:
the same command resumes. Either way the merged result has every sample exactly once. The Ray
instance of the in-process runs is conftest.py's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def test_a_killed_run_resumes_from_its_finished_shards(tmp_path):
    # The whole command is killed mid-run (driver, local Ray and its workers: one process
    # group); the same command again computes only the shards that were not written, and the
    # samples are the single-process ones, each once.
    from sdm_neuro.run import sample

    out = tmp_path / "s"
    args = {"sampler": "ddim", "steps": 20, "num": 16, "batch": 2, "seed": 5}
    cmd = [sys.executable, "-m", "sdm_neuro", "sample", "--workers", "2", "--out", str(out),
           "--quiet", *[f"--{k}={v}" for k, v in args.items()]]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "shards").glob("shard-*.pt"))) >= 2:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    written = len(list((out / "shards").glob("shard-*.pt")))
    assert 2 <= written < 8, f"killed after {written} of 8 shards"
    assert not (out / "samples.npy").exists()
    resumed = sample(out=out, workers=2, quiet=True, **args)
    rep = resumed.report["scale_out"]
    assert (rep["resumed"], rep["computed"]) == (written, 8 - written)
    one = sample(out=tmp_path / "one", quiet=True, workers=1, **args)
    assert torch.equal(resumed.samples, one.samples)
    # and a single process with the tasks' one thread (float convs at batch 2 round by thread
    # count in oneDNN: see SamplingSpec.threads)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = sample(out=tmp_path / "single", quiet=True, **args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(resumed.samples, single.samples)
