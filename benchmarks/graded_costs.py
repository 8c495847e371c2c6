"""Loihi 2 cores, chips and synaptic memory of the graded mapping (hardware_profiles/graded.py)
for the shipped default model and the SDDPM paper configuration, written to JSON.

    python benchmarks/graded_costs.py --out benchmarks/results/graded_costs.json

A structural estimate: the paper configuration (``PAPER_CIFAR10``: ch 128, ch_mult 1,2,2,4, two
ResBlocks per level, 32x32x3, T_snn 4) has random weights; placement reads shapes only (and
weights only for profiles that limit fan-in or fan-out, which Loihi 2's does not). Targets: the
default model on at most 1 Loihi 2 chip, the paper configuration on at most 16 chips with no
violation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sdm_neuro import PAPER_CIFAR10, SpikingUNet
from sdm_neuro.assets import default_model_path
from sdm_neuro.checkpoint import load_model
from sdm_neuro.compiler.lower_graded import lower_graded
from sdm_neuro.compiler.schedule_graded import schedule_graded
from sdm_neuro.fileio import write_json
from sdm_neuro.hardware_profiles.graded import GRADED_MODEL, graded_placement
from sdm_neuro.hardware_profiles.profile import get_profile

TARGET_CHIPS = {"default_model": 1, "paper_configuration": 16}


def summary(name: str, model: SpikingUNet, profile) -> dict:
    t0 = time.perf_counter()
    with torch.no_grad():
        # Scheduled, as deployed: the delay copies of long skips are neurons too.
        graph = schedule_graded(lower_graded(model))
    placement = graded_placement(graph, profile)
    words_max = profile.value("synaptic_memory_words_per_core")
    busiest = max(placement.nodes, key=lambda n: n.kernel_words + n.explicit_words)
    bound = {"neurons": 0, "memory": 0}
    for n in placement.nodes:  # what decided each node's cores
        bound["memory" if (n.memory_bound or 0) > n.neuron_bound else "neurons"] += n.cores
    return {
        "config": model.config.to_dict(), "nodes": len(placement.nodes),
        "populations": len(graph.populations), "relays": len(graph.relays),
        "neurons": sum(n.neurons for n in placement.nodes),
        "total_cores": placement.total_cores, "chips": placement.chips,
        "colocated_cores": placement.colocated_cores, "colocated_chips": placement.colocated_chips,
        "target_chips": TARGET_CHIPS[name],
        "meets_target": placement.fits and placement.chips <= TARGET_CHIPS[name],
        "meets_target_colocated": placement.fits
        and placement.colocated_chips <= TARGET_CHIPS[name],
        "cores_decided_by": bound,
        "memory_words": placement.memory_words,
        "memory_mib": round(placement.memory_words * 8 / 2**20, 2),
        "fullest_core_words": busiest.kernel_words + busiest.explicit_words,
        "fullest_core_node": busiest.name, "core_words_max": words_max,
        "violations": [str(v) for v in placement.violations],
        "unchecked": list(placement.unchecked), "seconds": round(time.perf_counter() - t0, 1),
        "per_node": [n.to_dict() for n in placement.nodes],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/graded_costs.json"))
    ap.add_argument("--profile", default="loihi2")
    args = ap.parse_args()
    profile = get_profile(args.profile)
    default, _ = load_model(default_model_path())
    torch.manual_seed(0)
    paper = SpikingUNet(PAPER_CIFAR10).eval()  # random weights: a structural estimate
    result = {"profile": profile.name, "mapping_model": GRADED_MODEL,
              "default_model": summary("default_model", default, profile),
              "paper_configuration": summary("paper_configuration", paper, profile)}
    for key in ("default_model", "paper_configuration"):
        r = result[key]
        print(f"{key}: {r['neurons']:,} neurons in {r['nodes']} nodes -> {r['total_cores']} "
              f"cores, {r['chips']} chip(s) (target <= {r['target_chips']}: "
              f"{'met' if r['meets_target'] else 'NOT met'}); co-located {r['colocated_cores']} "
              f"cores, {r['colocated_chips']} chip(s) ("
              f"{'met' if r['meets_target_colocated'] else 'NOT met'}); synaptic memory "
              f"{r['memory_words']:,} words ({r['memory_mib']} MiB), fullest core "
              f"{r['fullest_core_words']:,} / {r['core_words_max']:,} words "
              f"({r['fullest_core_node']}), cores bound by {r['cores_decided_by']}, "
              f"{len(r['violations'])} violation(s)")
        for v in r["violations"]:
            print("  ", v)
    write_json(args.out, result)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
