"""The packages import in one direction: no import cycle between sdm_neuro's packages (a deferred
import inside a function counts too), and the layers the README's Layout table describes hold.

The graph is read from the source tree by ``.ci/import_graph.py`` (which maps export/,
simulators/ and hardware_profiles/ to their sdm_neuro.* names through pyproject's package-dir).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / ".ci" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ig = _import_graph()


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return ig.graph(REPO)


def test_every_installed_module_is_in_the_graph(graph):
    # the mapping is resolved: export/ is sdm_neuro.export, not a stray top-level package
    for pkg in ("sdm_neuro.export", "sdm_neuro.simulators", "sdm_neuro.hardware_profiles",
                "sdm_neuro.ir", "sdm_neuro.compiler", "sdm_neuro.run", "sdm_neuro.cli"):
        assert pkg in graph
    assert "sdm_neuro.ir" in graph["sdm_neuro.simulators"]  # a relative import, resolved


def test_no_import_cycle_between_packages(graph):
    assert ig.cycles(graph) == []


def test_the_check_finds_a_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert ig.cycles(g) == [["a", "b", "c"]]


# What each layer may not import: the IR and the number formats at the bottom; simulators on the
# IR; compiler passes on the IR, the float model and the simulators (calibration runs the float
# graph); backends, hardware checks and energy on the compiled graph; the run layer on all of
# them; only the CLI on the run layer.
FORBIDDEN = {
    "sdm_neuro.ir": {"sdm_neuro.simulators", "sdm_neuro.compiler", "sdm_neuro.export",
                     "sdm_neuro.hardware_profiles", "sdm_neuro.energy", "sdm_neuro.run",
                     "sdm_neuro.frontends", "sdm_neuro.cli"},
    "sdm_neuro.simulators": {"sdm_neuro.compiler", "sdm_neuro.export", "sdm_neuro.frontends",
                             "sdm_neuro.hardware_profiles", "sdm_neuro.energy", "sdm_neuro.run",
                             "sdm_neuro.models", "sdm_neuro.cli"},
    "sdm_neuro.compiler": {"sdm_neuro.export", "sdm_neuro.hardware_profiles", "sdm_neuro.energy",
                           "sdm_neuro.run", "sdm_neuro.cli"},
    "sdm_neuro.export": {"sdm_neuro.energy", "sdm_neuro.run", "sdm_neuro.cli"},
    "sdm_neuro.hardware_profiles": {"sdm_neuro.export", "sdm_neuro.energy", "sdm_neuro.run",
                                    "sdm_neuro.cli"},
    "sdm_neuro.energy": {"sdm_neuro.export", "sdm_neuro.run", "sdm_neuro.cli"},
    "sdm_neuro.run": {"sdm_neuro.cli"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_only_downwards(graph, package):
    assert graph[package] & FORBIDDEN[package] == set()


def test_only_the_cli_imports_the_run_layer(graph):
    assert {v for v, deps in graph.items() if "sdm_neuro.run" in deps} <= {"sdm_neuro.cli"}
