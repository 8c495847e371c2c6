"""Ray for the scale-out: a local instance with N worker slots, or an existing cluster
(``ray start --head`` / ``ray start --address``), and one progress bar over every worker.

Ray, not a process pool of our own: it schedules tasks over machines, retries a task whose
worker process or node died, and moves the model to the workers through its object store.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

# A loaded 2-core machine can take tens of seconds to start a raylet and its agents; Ray's
# defaults then give up ("Timed out waiting for file ... metrics_agent_port": the raylet's wait
# for its agent's port file, which reads agent_register_timeout_ms in recent Ray releases).
RAY_SYSTEM_CONFIG = {"raylet_start_wait_time_s": 120, "worker_register_timeout_seconds": 120,
                     "agent_register_timeout_ms": 120_000}
TASK_RETRIES = 3  # a task whose worker died is run again (its shard is written only when done)


def start(workers: int, cluster: str | None) -> None:
    """Connect to ``cluster`` (an address such as ``10.0.0.1:6379``, or ``auto``), or start a
    local Ray instance with ``workers`` CPU slots (no dashboard). An instance already started
    in this process (a test session's) is used as it is."""
    import ray

    if workers < 1:
        raise UsageError(f"--workers must be >= 1 (got {workers}).")
    if ray.is_initialized():
        return
    common = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if cluster is not None:
            ray.init(address=cluster, **common)
        else:
            ray.init(num_cpus=workers, _system_config=RAY_SYSTEM_CONFIG, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the cluster at {cluster}" if cluster else "a local Ray instance"
        raise UsageError(f"--cluster: could not connect to {where} ({e}).") from None


@dataclass(frozen=True)
class TaskResult:
    value: Any
    worker: str          # host:pid of the worker process that ran it
    seconds: float
    calls: int           # denoising calls it made


def _progress_actor():
    import ray

    @ray.remote(num_cpus=0)
    class Progress:
        def __init__(self) -> None:
            self.calls = 0

        def add(self, n: int) -> None:
            self.calls += n

        def total(self) -> int:
            return self.calls

    return Progress.remote()


class Reporter:
    """Handed to a task: ``reporter(n)`` after n denoising calls; sends to the progress actor at
    most every half second (one message per call would be thousands of messages)."""

    def __init__(self, actor) -> None:
        self.actor, self.pending, self.count, self.last = actor, 0, 0, time.monotonic()

    def __call__(self, n: int = 1) -> None:
        self.pending += n
        self.count += n
        if time.monotonic() - self.last > 0.5:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.actor.add.remote(self.pending)
            self.pending, self.last = 0, time.monotonic()


def _run_one(fn: Callable, actor, *args) -> TaskResult:
    # (args at the top level: Ray resolves object references there, not inside a tuple)
    reporter = Reporter(actor)
    t0 = time.perf_counter()
    value = fn(*args, reporter)
    reporter.flush()
    return TaskResult(value, f"{socket.gethostname()}:{os.getpid()}",
                      time.perf_counter() - t0, reporter.count)


def run_tasks(fn: Callable, tasks: Sequence[tuple], *, total_calls: int, desc: str,
              progress: bool, gpus: float = 0.0,
              on_done: Callable[[int, TaskResult], None] | None = None) -> list[TaskResult]:
    """``fn(*task, reporter)`` for every task as Ray tasks of one CPU (and ``gpus``), with one
    progress bar over the denoising calls of all of them; ``on_done(i, result)`` runs on the
    driver as each finishes (it writes the shard), so a crash keeps every finished one."""
    import ray
    from tqdm.auto import tqdm

    actor = _progress_actor()
    remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=TASK_RETRIES)(_run_one)
    refs = {remote.remote(fn, actor, *args): i for i, args in enumerate(tasks)}
    out: list[TaskResult | None] = [None] * len(tasks)
    with tqdm(total=total_calls, desc=desc, unit="call", disable=not progress,
              dynamic_ncols=True) as bar:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in ready:
                i = refs[ref]
                out[i] = ray.get(ref)
                if on_done is not None:
                    on_done(i, out[i])
            bar.update(max(0, ray.get(actor.total.remote()) - bar.n))
    return out


def throughput(results: Sequence[TaskResult]) -> dict[str, dict[str, float]]:
    """Per worker: tasks, calls, busy seconds and calls per second."""
    per: dict[str, dict[str, float]] = {}
    for r in results:
        w = per.setdefault(r.worker, {"tasks": 0, "calls": 0, "seconds": 0.0})
        w["tasks"] += 1
        w["calls"] += r.calls
        w["seconds"] += r.seconds
    for w in per.values():
        w["seconds"] = round(w["seconds"], 3)
        w["calls_per_second"] = round(w["calls"] / w["seconds"], 3) if w["seconds"] else None
    return per
