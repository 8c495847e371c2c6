"""Child process of :func:`sdm_neuro.export.lava_runtime.lava_call`: one Lava run.

``python -m sdm_neuro.export.lava_worker GRAPH.pt BIAS.npz SPIKES.npz``
"""

from __future__ import annotations

import sys

import numpy as np

from ..ir.graph import DeployGraph
from .lava_runtime import run_network


def main(argv: list[str]) -> int:
    graph_path, bias_path, out_path = argv
    graph = DeployGraph.load(graph_path)
    with np.load(bias_path) as z:
        bias = {k: z[k] for k in z.files}
    spikes = run_network(graph, bias)
    np.savez(out_path, **spikes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
