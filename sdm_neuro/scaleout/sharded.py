"""One sharded job: the shards not on disk yet run as Ray tasks, each written as it finishes;
the merged result is every shard's tensors in sample order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .cluster import run_tasks, start, throughput
from .shards import Shard, ShardStore, plan_shards
from .tasks import SamplingSpec


def run_sharded(fn: Callable, shared: tuple, store: ShardStore, plan: list[Shard], *,
                workers: int, cluster: str | None, calls: Callable[[Shard], int], desc: str,
                progress: bool, gpus: float = 0.0
                ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]], dict[str, Any]]:
    """``fn(*shared, shard, reporter)`` -> ``{"tensors": ..., "data": ...}`` for every shard of
    ``plan`` not finished in ``store`` (``shared`` goes to the object store once, not once per
    task). Returns (each tensor concatenated over the plan, each shard's data in plan order, a
    report: shard counts and per-worker throughput)."""
    done = store.finished()
    todo = [s for s in plan if s not in done]
    report: dict[str, Any] = {"shards": len(plan), "resumed": len(done), "computed": len(todo),
                              "workers": {}}
    if todo:
        import ray

        start(workers, cluster)
        refs = tuple(ray.put(x) for x in shared)

        def on_done(i: int, r) -> None:
            store.save(todo[i], r.value, {"worker": r.worker, "seconds": round(r.seconds, 3)})
            done[todo[i]] = r.value

        results = run_tasks(fn, [(*refs, s) for s in todo], total_calls=sum(map(calls, todo)),
                            desc=desc, progress=progress, gpus=gpus, on_done=on_done)
        report["workers"] = throughput(results)
    keys = done[plan[0]]["tensors"].keys()
    tensors = {k: torch.cat([done[s]["tensors"][k] for s in plan]) for k in keys}
    return tensors, [done[s].get("data", {}) for s in plan], report


def sample_in_shards(fn: Callable, shared: tuple, spec: SamplingSpec, num: int, *,
                     directory, provenance: dict[str, Any], chains: int, workers: int | None,
                     cluster: str | None, shard_size: int | None, progress: bool
                     ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]], dict[str, Any]]:
    """A sampling job's ``num`` samples in shards: ``fn(*shared, spec, shard, reporter)`` runs
    ``chains`` sampling chains per shard; the shard files in ``directory`` carry
    ``provenance`` plus the sampling settings. Returns what :func:`run_sharded` does, the
    report with the run's scale-out settings."""
    from .. import __version__
    from ..diffusion.samplers import model_call_steps

    plan = plan_shards(num, spec.batch, shard_size)
    store = ShardStore(directory, {"tool": f"sdm-neuro {__version__}", **provenance,
                                   "sampler": spec.sampler, "steps": spec.steps,
                                   "seed": spec.seed, "batch": spec.batch,
                                   "device": spec.device, "threads": spec.threads,
                                   **({"eps_moments": sorted(spec.moments.items())}
                                      if spec.moments else {})}, plan)
    per_batch = len(model_call_steps(spec.sampler, spec.diffusion_steps, spec.steps))
    tensors, parts, report = run_sharded(
        fn, (*shared, spec), store, plan, workers=workers or 1, cluster=cluster,
        calls=lambda s: chains * per_batch * -(-len(s) // spec.batch),
        desc=f"{spec.sampler} {spec.steps} steps", progress=progress,
        gpus=1.0 if spec.device.startswith("cuda") else 0.0)
    return tensors, parts, {"workers_requested": workers, "cluster": cluster,
                            "shard_size": len(plan[0]), "shards_dir": str(directory), **report}
