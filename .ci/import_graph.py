"""The package-level import graph of sdm_neuro, read from the source tree (not the installed copy).

    python .ci/import_graph.py          # layers in order, each package with what it imports
    python .ci/import_graph.py --dot    # Graphviz

A node is a sub-package (``sdm_neuro.deploy``) or a module directly under ``sdm_neuro``
(``sdm_neuro.cli``). Every import counts, also one inside a function: a deferred import is
still a dependency, it only hides the cycle from Python. Folders are mapped to packages by
pyproject's ``[tool.setuptools.package-dir]``, so ``export/`` is ``sdm_neuro.export``.
tests/test_layering.py fails on a cycle.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT_PACKAGE = "sdm_neuro"


def package_dirs(repo: Path) -> dict[str, Path]:
    """Package name -> folder, from pyproject.toml (a package without a mapping lives under
    its parent's folder, as setuptools places it)."""
    tool = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = {k: repo / v for k, v in tool.get("package-dir", {}).items()}
    dirs = {}
    for pkg in tool["packages"]:
        if pkg in mapping:
            dirs[pkg] = mapping[pkg]
        else:
            parent, _, leaf = pkg.rpartition(".")
            dirs[pkg] = (mapping.get(parent) or dirs[parent]) / leaf
    return dirs


def modules(repo: Path) -> Iterator[tuple[str, Path]]:
    """(dotted module name, file) of every module the packages install."""
    for pkg, folder in package_dirs(repo).items():
        for f in sorted(folder.glob("*.py")):
            yield (pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"), f


def node(module: str, packages: set[str]) -> str:
    """The graph node of a module: its sub-package, or the module itself when it sits directly
    in the root package."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in packages and name != ROOT_PACKAGE:
            return name
    return ".".join(parts[:2])


def imported(module: str, file: Path) -> Iterator[str]:
    """Absolute names of the project modules ``file`` imports (relative imports resolved)."""
    is_pkg = file.stem == "__init__"
    for n in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(n, ast.Import):
            yield from (a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = module.split(".")
                base = base[:len(base) - n.level + (1 if is_pkg else 0)]
                prefix = ".".join(base + ([n.module] if n.module else []))
            else:
                prefix = n.module or ""
            yield prefix
            yield from (f"{prefix}.{a.name}" for a in n.names)


def graph(repo: Path) -> dict[str, set[str]]:
    """Node -> the nodes it imports (no self edges)."""
    dirs = package_dirs(repo)
    packages = set(dirs)
    mods = dict(modules(repo))
    g: dict[str, set[str]] = {node(m, packages): set() for m in mods}
    for m, f in mods.items():
        src = node(m, packages)
        for name in imported(m, f):
            if name.split(".")[0] != ROOT_PACKAGE or name == ROOT_PACKAGE:
                continue
            # `from .pkg import name`: name is an attribute or a module; keep what exists
            while name not in mods and name.count(".") > 1:
                name = name.rsplit(".", 1)[0]
            if name in mods or name in packages:
                dst = node(name, packages)
                if dst != src:
                    g[src].add(dst)
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def layers(g: dict[str, set[str]]) -> list[list[str]]:
    """Nodes by layer: a node sits one above the highest node it imports (acyclic g)."""
    level: dict[str, int] = {}

    def depth(v: str) -> int:
        if v not in level:
            level[v] = 1 + max((depth(w) for w in g[v]), default=-1)
        return level[v]

    for v in g:
        depth(v)
    return [sorted(v for v in g if level[v] == n) for n in range(max(level.values()) + 1)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--dot", action="store_true")
    args = ap.parse_args(argv)
    g = graph(args.repo)
    found = cycles(g)
    if found:
        for c in found:
            print("cycle: " + " <-> ".join(c), file=sys.stderr)
        return 1
    short = {v: v.removeprefix(f"{ROOT_PACKAGE}.") for v in g}
    if args.dot:
        print("digraph sdm_neuro {\n  rankdir=BT;")
        for v in sorted(g):
            for w in sorted(g[v]):
                print(f'  "{short[v]}" -> "{short[w]}";')
        print("}")
        return 0
    for n, row in enumerate(layers(g)):
        print(f"layer {n}:")
        for v in row:
            deps = ", ".join(short[w] for w in sorted(g[v])) or "-"
            print(f"  {short[v]:<22} imports {deps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
