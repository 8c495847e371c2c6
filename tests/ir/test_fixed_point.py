"""Loihi 2's number formats have one home, :mod:`sdm_neuro.ir.fixed_point`.

Every other project module must import a format limit rather than restate it: the AST of each
module the packages install (listed by ``.ci/import_graph.py``, which resolves pyproject's
package-dir mapping) is searched for numeric constants, and constant expressions such as
``2**23``, ``1 << 23`` or ``(1 << 17) - 1``, whose value is one of the limits below.
"""

from __future__ import annotations

import ast
import importlib.util
import operator
from pathlib import Path

from sdm_neuro.ir import fixed_point as fp

REPO = Path(__file__).resolve().parents[2]
FIXED_POINT = REPO / "sdm_neuro" / "ir" / "fixed_point.py"

# Magnitudes of the format limits: MAX_DELAY, WEIGHT_MAX, WEIGHT_MIN, DECAY_MAX / BIAS_MAX /
# NO_SYNAPTIC_MEMORY_DU, DECAY_UNITY / -BIAS_MIN, MAX_UV, V_MAX, 2 * MAX_UV (the u wrap) /
# HOST_A_IN_MAX, VTH_MAX.
LIMITS = {62, 254, 256, 4095, 4096, 2**23, 2**23 - 1, 2**24, 2**17 - 1}

# (file relative to the repository, text on the line): numbers equal to a limit by coincidence.
ALLOWED = {
    # byte budgets of files read (16 MiB), not Loihi's 24-bit state
    ("sdm_neuro/checkpoint.py", "MAX_ZIP_DIRECTORY_BYTES = 16 << 20"),
    ("export/bundle.py", "MANIFEST_MAX_BYTES = 16 << 20"),
    # the largest snn_steps a config may ask for, a sanity bound on user input
    ("sdm_neuro/config.py", '"snn_steps": 256'),
    # slack bytes when estimating an IDX file's size
    ("sdm_neuro/data/idx.py", "size + size // 64 + 4096"),
    # Inception-v3's channel count (the FID network's published architecture)
    ("sdm_neuro/evaluation/inception.py", "FIDInceptionA(256, pool_features=64)"),
}

# Every name fixed_point.py must define, exactly once.
NAMES = ("WEIGHT_BITS", "WEIGHT_MIN", "WEIGHT_MAX", "WEIGHT_EXP_MIN", "WEIGHT_EXP_MAX",
         "WEIGHT_EXP_RANGE", "MAX_DELAY", "STATE_BITS", "MAX_UV", "V_MAX", "ACT_SHIFT",
         "VTH_SHIFT", "VTH_BITS", "VTH_MAX", "DECAY_SHIFT", "DECAY_UNITY", "DECAY_MAX",
         "DS_OFFSET", "NO_SYNAPTIC_MEMORY_DU", "NO_LEAK_DV", "BIAS_BITS", "BIAS_MIN", "BIAS_MAX",
         "BIAS_EXP_MAX", "NETX_BIAS_EXP", "LIF_RANGES", "INT32_BITS", "HOST_A_IN_MAX")

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow,
           ast.LShift: operator.lshift, ast.RShift: operator.rshift}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}


def _modules() -> list[tuple[str, Path]]:
    spec = importlib.util.spec_from_file_location("import_graph", REPO / ".ci" / "import_graph.py")
    ig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ig)
    return list(ig.modules(REPO))


def _value(node: ast.AST) -> int | float | None:
    """The number a constant expression of numbers evaluates to, or None."""
    if isinstance(node, ast.Constant):
        v = node.value
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        v = _value(node.operand)
        return None if v is None or (isinstance(v, float) and type(node.op) is ast.Invert) \
            else _UNARY[type(node.op)](v)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        a, b = _value(node.left), _value(node.right)
        if a is None or b is None:
            return None
        if type(node.op) in (ast.Pow, ast.LShift) and not (0 <= b <= 64 and abs(a) < 2**64):
            return None  # not a small constant: never evaluate a huge power
        try:
            return _BINARY[type(node.op)](a, b)
        except (ArithmeticError, TypeError, ValueError):
            return None
    return None


def _limits_in(tree: ast.AST) -> list[tuple[int, int | float]]:
    """(line, value) of every largest constant expression whose magnitude is a format limit."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        v = _value(node)
        if v is None:
            todo.extend(ast.iter_child_nodes(node))
        elif abs(v) in LIMITS:
            found.append((node.lineno, v))
    return sorted(found)


def _defined_at_module_level(tree: ast.Module) -> list[str]:
    """Names bound by module-level assignments (tuple targets unpacked), in order."""
    names = []

    def targets(t: ast.AST) -> None:
        if isinstance(t, ast.Name):
            names.append(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                targets(e)

    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                targets(t)
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            targets(stmt.target)
    return names


def test_the_module_list_covers_the_packages():
    files = {f.resolve() for _, f in _modules()}
    assert FIXED_POINT.resolve() in files
    for path in ("simulators/lif.py", "export/lava_runtime.py", "export/netx.py",
                 "sdm_neuro/compiler/quantize_graph.py", "hardware_profiles/constraints.py"):
        assert (REPO / path).resolve() in files, path


def test_no_format_limit_is_defined_outside_fixed_point():
    found = []
    for _, f in _modules():
        if f.resolve() == FIXED_POINT.resolve():
            continue
        rel = f.resolve().relative_to(REPO).as_posix()
        lines = f.read_text().splitlines()
        for line, value in _limits_in(ast.parse(f.read_text(), str(f))):
            text = lines[line - 1].strip()
            if not any(rel == a_file and a_text in text for a_file, a_text in ALLOWED):
                found.append(f"{rel}:{line}: {value!r} in `{text}`")
    print("\n".join(found) or "no format limit outside sdm_neuro/ir/fixed_point.py")
    assert not found, ("format limits restated outside sdm_neuro/ir/fixed_point.py (import them "
                       "from there):\n" + "\n".join(found))


def test_the_allow_list_is_not_stale():
    """Each allowed line still exists (and still holds its number), so the list cannot hide a
    new definition on a line that merely kept the text."""
    for rel, text in ALLOWED:
        f = REPO / rel
        lines = f.read_text().splitlines()
        hits = {line for line, _ in _limits_in(ast.parse(f.read_text(), str(f)))
                if text in lines[line - 1]}
        assert hits, f"{rel}: no format-limit number on a line with `{text}`; drop it from ALLOWED"


def test_no_module_redefines_a_fixed_point_name():
    found = []
    for _, f in _modules():
        if f.resolve() == FIXED_POINT.resolve():
            continue
        tree = ast.parse(f.read_text(), str(f))
        for name in set(_defined_at_module_level(tree)) & set(NAMES):
            found.append(f"{f.resolve().relative_to(REPO).as_posix()}: assigns {name}")
    print("\n".join(found) or "no fixed_point name assigned elsewhere")
    assert not found, "\n".join(found)


def test_fixed_point_defines_each_name_once():
    names = _defined_at_module_level(ast.parse(FIXED_POINT.read_text(), str(FIXED_POINT)))
    counts = {n: names.count(n) for n in NAMES}
    print(counts)
    assert all(c == 1 for c in counts.values()), \
        {n: c for n, c in counts.items() if c != 1}


def test_the_formats_are_lavas():
    """The values of ../shared/reference/lava-fixed-point.md (lava-nc 0.10.0, lava-dl 0.6.0)."""
    assert (fp.WEIGHT_MIN, fp.WEIGHT_MAX) == (-256, 254) and fp.WEIGHT_MAX % 2 == 0
    assert fp.WEIGHT_EXP_RANGE == (fp.WEIGHT_EXP_MIN, fp.WEIGHT_EXP_MAX) == (-8, 7)
    assert fp.MAX_DELAY == 62
    assert (fp.MAX_UV, fp.V_MAX) == (2**23, 2**23 - 1)
    assert (fp.ACT_SHIFT, fp.VTH_SHIFT, fp.VTH_MAX) == (6, 6, 2**17 - 1)
    assert (fp.DECAY_SHIFT, fp.DECAY_UNITY, fp.DECAY_MAX, fp.DS_OFFSET) == (12, 4096, 4095, 1)
    assert (fp.NO_SYNAPTIC_MEMORY_DU, fp.NO_LEAK_DV) == (4095, 0)
    assert (fp.BIAS_MIN, fp.BIAS_MAX, fp.BIAS_EXP_MAX, fp.NETX_BIAS_EXP) == (-4096, 4095, 7, 6)
    assert fp.LIF_RANGES == {"du": (0, 4095), "dv": (0, 4095), "vth": (0, 2**17 - 1),
                             "bias_exp": (0, 7)}
    # the largest host input keeps a_in << ACT_SHIFT plus a 24-bit u, v and the bias in int32
    assert fp.HOST_A_IN_MAX == 2**24
    assert (fp.HOST_A_IN_MAX << fp.ACT_SHIFT) + 2 * fp.MAX_UV + (fp.BIAS_MAX << fp.BIAS_EXP_MAX) \
        < 2**31


def test_the_scanner_sees_the_forms_of_a_limit():
    src = "\n".join(["A = 62", "B = -256", "C = 2**23", "D = 1 << 23", "E = (1 << 17) - 1",
                     "F = 2**24", "G = 4096.0", "H = f(4095)", "I = 256 << 20", "J = X - 62 + 1",
                     "K = 10**10**10", "L = 1 << 12"])
    got = {line for line, _ in _limits_in(ast.parse(src))}
    # I is 256 MiB (not 256), K is never evaluated; J's 62 is a constant on its own
    assert got == {1, 2, 3, 4, 5, 6, 7, 8, 10, 12}
