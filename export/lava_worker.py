"""Child process of :func:`sdm_neuro.export.lava_runtime.lava_call` (a composed
:class:`~sdm_neuro.ir.graph.DeployGraph`) and :func:`sdm_neuro.export.lava_graded.lava_graded_call`
(a :class:`~sdm_neuro.ir.graded.GradedGraph`): one Lava run. The graph file's ``format`` entry
says which mapping it is.

``python -m sdm_neuro.export.lava_worker GRAPH.pt BIAS.npz OUTPUTS.npz``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..checkpoint import load_torch_file
from ..ir.graded import GRADED_FORMAT, GradedGraph
from ..ir.graph import DeployGraph
from .lava_graded import run_graded_network
from .lava_runtime import run_network


def main(argv: list[str]) -> int:
    graph_path, bias_path, out_path = argv
    d = load_torch_file(Path(graph_path))
    with np.load(bias_path) as z:
        bias = {k: z[k] for k in z.files}
    if isinstance(d, dict) and d.get("format") == GRADED_FORMAT:
        outputs = run_graded_network(GradedGraph.from_dict(d, source=graph_path), bias)
    else:
        outputs = run_network(DeployGraph.from_dict(d, source=graph_path), bias)
    np.savez(out_path, **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
