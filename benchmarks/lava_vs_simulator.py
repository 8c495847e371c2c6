"""Lava's CPU simulation of the Loihi 2 export against the integer simulator, one run, JSON.

    python benchmarks/lava_vs_simulator.py --out benchmarks/results/lava_vs_simulator.json

The shipped default model, batch 1 (Lava runs one sample per network): one denoising call in
the integer simulator (ideal and hardware-timed mode, median of --repeats after a warm-up) and
in Lava (``lava_call``: a child process that builds the processes, compiles and runs them; and,
in this process, the build and the run separately). Every sample's spikes and eps are compared
(bit-exact is reported, not assumed), for --samples calls spread over t.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from _timing import timed  # benchmarks/ is the script's directory

from sdm_neuro.fileio import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/lava_vs_simulator.json"))
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sdm_neuro.assets import default_model_path
    from sdm_neuro.checkpoint import load_model
    from sdm_neuro.data import load_dataset
    from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
    from sdm_neuro.export.lava_runtime import bias_mantissas, lava_call, run_network
    from sdm_neuro.simulators.integer import IntegerSimulator
    from sdm_neuro.simulators.timed import TimedSimulator
    from sdm_neuro.compiler.schedule import schedule

    model, _ = load_model(default_model_path())
    graph = schedule(build_integer_graph(model, calibration_inputs(
        load_dataset("digits", img_size=16).images)))
    gen = torch.Generator().manual_seed(0)
    ts = torch.linspace(10, 990, args.samples).long()
    ideal, hw = IntegerSimulator(graph), TimedSimulator(graph)
    calls = []
    for i, t in enumerate(ts):
        x, tt = torch.randn(1, 1, 16, 16, generator=gen), t.view(1)
        t_ideal = timed(lambda: ideal(x, tt), args.repeats)  # noqa: B023 - used at once
        t_hw = timed(lambda: hw(x, tt), args.repeats)  # noqa: B023
        eps_sim, spk_sim = hw(x, tt)
        t0 = time.perf_counter()
        eps_lava, spk_lava = lava_call(graph, x, tt, timeout_s=900)
        t_lava = time.perf_counter() - t0
        exact = torch.equal(eps_sim, eps_lava) and all(torch.equal(spk_sim[k], spk_lava[k])
                                                       for k in spk_sim)
        row = {"t": int(t), "ideal_s": t_ideal, "hardware_timed_s": t_hw, "lava_call_s": t_lava,
               "bit_exact": exact, "spikes": int(sum(int(s.sum()) for s in spk_sim.values()))}
        if i == 0:  # the phases of one Lava call, in this process
            phases: dict[str, float] = {}
            run_network(graph, {k: v[:, 0].reshape(v.shape[0], -1)
                                for k, v in bias_mantissas(graph, x, tt).items()}, phases)
            row["lava_phases_s"] = phases
        row["ratio_lava_vs_hardware_timed"] = t_lava / t_hw
        row["ratio_lava_vs_ideal"] = t_lava / t_ideal
        calls.append(row)
        print(row, flush=True)
    write_json(args.out, {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "model": "shipped default (digits 16x16, ch 32)", "batch": 1,
        "populations": len(graph.populations),
        "projections": sum(p.dst != "host" for p in graph.projections), "calls": calls,
        "all_bit_exact": all(c["bit_exact"] for c in calls),
        "median_ratio_lava_vs_hardware_timed": sorted(
            c["ratio_lava_vs_hardware_timed"] for c in calls)[len(calls) // 2]})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
