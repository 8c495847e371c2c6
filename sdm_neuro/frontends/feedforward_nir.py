"""Read a feed-forward SNN from a NIR graph (as snnTorch's ``export_to_nir`` or Norse's
``to_nir`` write it: :func:`feedforward_from_nir`) and write one that their importers run
(snnTorch's ``import_from_nir``, Norse's ``from_nir``: :func:`feedforward_to_nir`).

NIR has no time step (../shared/reference/nir.md). Reading, dt comes from (in order) the caller,
this project's metadata, snnTorch's signature (every LIF has ``r = tau / 1e-4``: snnTorch exports
with dt = 1e-4), or Norse's default 1e-3 when every ``r`` is 1. Writing, LIF nodes get
``r = c tau / dt`` (so snnTorch imports them with unit input gain) and the graph metadata records
dt, the discretisation and the layer names under ``"sdm_neuro"``.

A file is inspected with h5py before ``nir.read`` loads it (which reads every tensor whole):
it must be a regular file of at most :data:`MAX_NIR_BYTES`, every dataset at most
:data:`MAX_TENSOR_ELEMENTS` elements and all of them together :data:`MAX_TOTAL_ELEMENTS`, read
from the file itself (no external storage or links), and every node of a type this reader
supports. Every parameter must be finite; every shape non-empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, UsageError
from ..fileio import regular_file
from ..ir.feedforward import Layer, Neurons, FeedForwardSNN, Synapse

SNNTORCH_DT = 1e-4
NORSE_DT = 1e-3
DISCRETISATION = ("forward Euler, one step per time step; LIF: v = (1 - dt/tau) v + "
                  "(dt/tau)(r I + v_leak); IF: v = v + r I; spike v > v_threshold; reset to 0")
MAX_NIR_BYTES = 1 << 30             # a NIR file (HDF5) on disk
MAX_TENSOR_ELEMENTS = 1 << 25       # one tensor (weight, parameter, layer): 256 MiB as float64
MAX_TOTAL_ELEMENTS = 1 << 26        # all tensors of a file together
SUPPORTED = ("Input", "Output", "Conv2d", "Affine", "Linear", "Flatten", "IF", "LIF")
_MAX_DEPTH = 8                      # HDF5 group nesting of a NIR graph (node/nodes/x/metadata..)


def _show(a: np.ndarray) -> str:
    """A short text of an array for messages (a malformed one can be huge)."""
    flat = np.asarray(a).ravel()
    head = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in flat[:4].tolist())
    return f"[{head}{', ...' if flat.size > 4 else ''}] (shape {np.shape(a)})"


def _arr(x, what: str) -> np.ndarray:
    """``x`` as a finite float64 array, else a :class:`ConfigError` naming ``what``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":  # strings would parse silently, objects fail later
        raise ConfigError(f"{what}: values of type {a.dtype} ({type(x).__name__}); expected "
                          f"numbers.")
    if a.size > MAX_TENSOR_ELEMENTS:
        raise ConfigError(f"{what}: {a.size:,} values, more than the {MAX_TENSOR_ELEMENTS:,} "
                          f"a tensor may have.")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        raise ConfigError(f"{what}: {int(bad.sum())} of {a.size} values are NaN or inf "
                          f"(first at index {np.argwhere(bad)[0].tolist()}).")
    return a


def _ints(x, what: str, *, minimum: int, count: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """Integers >= ``minimum`` (``count`` of them); floats with a fraction are refused, never
    truncated."""
    if isinstance(x, str):
        raise ConfigError(f"{what}: {x!r} is not supported; give explicit integers.")
    a = np.atleast_1d(_arr(x, what)).ravel()
    if a.size not in count or (a != np.round(a)).any() or (a < minimum).any() \
            or (a > MAX_TENSOR_ELEMENTS).any():
        n = " or ".join(map(str, count)) if len(count) < 3 else f"{count[0]} to {count[-1]}"
        raise ConfigError(f"{what}: {_show(a)}; expected {n} integer(s) in [{minimum}, "
                          f"{MAX_TENSOR_ELEMENTS}].")
    return a.astype(np.int64)


def _pair(x, what: str, minimum: int) -> tuple[int, int]:
    a = _ints(x, what, minimum=minimum)
    a = np.repeat(a, 2) if a.size == 1 else a
    return int(a[0]), int(a[1])


def _shape(x, what: str) -> tuple[int, ...]:
    """A tensor shape: positive integers whose product is at most MAX_TENSOR_ELEMENTS."""
    shape = tuple(int(d) for d in _ints(x, what, minimum=1, count=tuple(range(1, 9))))
    if int(np.prod(shape, dtype=object)) > MAX_TENSOR_ELEMENTS:
        raise ConfigError(f"{what}: shape {shape} has more than {MAX_TENSOR_ELEMENTS:,} "
                          f"elements.")
    return shape


def check_dt(dt) -> float:
    """The time step given by the caller (``--dt``): a finite number > 0."""
    ok = isinstance(dt, (int, float, np.integer, np.floating)) and not isinstance(dt, bool)
    if not ok or not (np.isfinite(dt) and dt > 0):
        raise UsageError(f"--dt must be a finite time step > 0, got {dt!r}.")
    return float(dt)


# --- reading a file --------------------------------------------------------------------------

def read_graph(path: str | Path) -> nir.NIRGraph:
    """``nir.read`` (type checking on) of a file that passed :func:`inspect_nir_file`; failures
    name the file."""
    path = regular_file(path, what="a NIR file (HDF5)", error=CheckpointError,
                        max_bytes=MAX_NIR_BYTES)
    inspect_nir_file(path)
    try:
        return nir.read(str(path))
    except Exception as e:  # noqa: BLE001 - nir raises KeyError, AssertionError, ... for bad files
        raise CheckpointError(f"{path}: not a readable NIR graph ({type(e).__name__}: {e}).") \
            from None


def inspect_nir_file(path: Path) -> None:
    """Refuse, from the HDF5 structure alone (nothing is read into memory), a file whose
    datasets declare too many elements, live outside it, or whose nodes are of types this
    reader does not support."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not an HDF5 file ({e}); expected a NIR graph.") from None
    try:
        with f:
            _walk(f, path, 0, [0])
            _check_graph_group(f, path)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged HDF5 file ({type(e).__name__}: {e}).") from None


def _walk(group, path: Path, depth: int, total: list[int]) -> None:
    """Every dataset below ``group``: stored in this file, within the element limits."""
    import h5py

    if depth > _MAX_DEPTH:
        raise CheckpointError(f"{path}: groups nested deeper than {_MAX_DEPTH} levels at "
                              f"{group.name!r}; not a NIR graph.")
    for key in group:
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):  # soft / external links: data from elsewhere
            raise CheckpointError(f"{path}: {group.name}/{key} is a {type(link).__name__}; a "
                                  f"NIR file holds its data itself.")
        obj = group[key]
        if isinstance(obj, h5py.Group):
            _walk(obj, path, depth + 1, total)
        elif isinstance(obj, h5py.Dataset):
            if obj.is_virtual or obj.external:
                raise CheckpointError(f"{path}: dataset {obj.name!r} is stored outside the "
                                      f"file; a NIR file holds its data itself.")
            n = int(obj.size or 0)
            if n > MAX_TENSOR_ELEMENTS:
                raise CheckpointError(f"{path}: dataset {obj.name!r} declares shape {obj.shape} "
                                      f"({n:,} elements), more than the {MAX_TENSOR_ELEMENTS:,} "
                                      f"one tensor may have.")
            total[0] += n
            if total[0] > MAX_TOTAL_ELEMENTS:
                raise CheckpointError(f"{path}: its datasets declare more than "
                                      f"{MAX_TOTAL_ELEMENTS:,} elements in all (reached at "
                                      f"{obj.name!r}).")


def _text(ds) -> str | None:
    import h5py

    if not isinstance(ds, h5py.Dataset) or ds.shape != ():
        return None
    v = ds[()]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v if isinstance(v, str) \
        else None


def _check_graph_group(f, path: Path) -> None:
    """The graph's layout: a NIRGraph with nodes (of supported types) and edges."""
    import h5py

    node = f.get("node")
    kind = _text(node.get("type")) if isinstance(node, h5py.Group) else None
    if kind != "NIRGraph":
        raise CheckpointError(f"{path}: no NIRGraph at 'node' (found {kind!r}); not a NIR graph "
                              f"file.")
    nodes, edges = node.get("nodes"), node.get("edges")
    if not isinstance(nodes, h5py.Group):
        raise CheckpointError(f"{path}: the graph has no 'nodes' group.")
    if not isinstance(edges, h5py.Dataset):
        raise CheckpointError(f"{path}: the graph has no 'edges' dataset.")
    if not edges.size:
        raise ConfigError(f"{path}: the graph has no edges; a sequential network is a chain "
                          f"Input -> ... -> Output.")
    if edges.ndim != 2 or edges.shape[1] != 2 or edges.dtype.kind not in "OSU":
        raise CheckpointError(f"{path}: 'edges' has shape {edges.shape} and type {edges.dtype}; "
                              f"NIR edges are (source, target) name pairs.")
    for name, g in nodes.items():
        kind = _text(g.get("type")) if isinstance(g, h5py.Group) else None
        if kind is None:
            raise CheckpointError(f"{path}: node {name!r} has no 'type'.")
        if kind not in SUPPORTED:
            raise ConfigError(f"{path}: node {name!r} is of type {kind!r}; sequential networks "
                              f"support {', '.join(SUPPORTED)}.")


# --- the graph -------------------------------------------------------------------------------

def _chain(graph: nir.NIRGraph, where: str) -> list[str]:
    """Node names from the Input to the Output; a branch anywhere is an error naming it."""
    if not isinstance(graph.nodes, dict) or not graph.edges:
        raise ConfigError(f"{where}: the graph has no edges; a sequential network is a chain "
                          f"Input -> ... -> Output.")
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    pred: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for edge in graph.edges:
        if not (isinstance(edge, (tuple, list)) and len(edge) == 2
                and all(isinstance(e, str) and e in succ for e in edge)):
            raise ConfigError(f"{where}: edge {edge!r} is not a pair of the graph's node names.")
        succ[edge[0]].append(edge[1])
        pred[edge[1]].append(edge[0])
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise ConfigError(f"{where}: a sequential network has one Input node, found "
                          f"{len(inputs)} {inputs[:8]}.")
    for k in graph.nodes:
        if len(succ[k]) > 1 or len(pred[k]) > 1:
            raise ConfigError(f"{where}: node {k!r} has {len(pred[k])} inputs and "
                              f"{len(succ[k])} outputs; only chains (no branches, residuals "
                              f"or recurrence) are sequential networks.")
    order, k = [], inputs[0]
    while succ[k]:
        k = succ[k][0]
        if k in order:
            raise ConfigError(f"{where}: node {k!r} is on a cycle.")
        order.append(k)
    if not order or not isinstance(graph.nodes[order[-1]], nir.Output):
        raise ConfigError(f"{where}: the chain from the Input does not end in an Output node.")
    if len(order) + 1 != len(graph.nodes):
        raise ConfigError(f"{where}: {len(graph.nodes) - len(order) - 1} node(s) are not on the "
                          f"Input -> Output chain.")
    return order[:-1]


def _meta(graph: nir.NIRGraph, where: str) -> dict:
    """This project's graph metadata (``{}`` when absent)."""
    meta = graph.metadata.get("sdm_neuro", {}) if isinstance(graph.metadata, dict) else {}
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: metadata 'sdm_neuro' is a {type(meta).__name__}, not a "
                          f"group of keys.")
    return meta


def _infer_dt(graph: nir.NIRGraph, order: list[str], where: str) -> tuple[float, str]:
    meta = _meta(graph, where)
    if "dt" in meta:
        dt = meta["dt"]
        a = np.asarray(dt)
        if a.shape != () or a.dtype.kind not in "iuf" or not (np.isfinite(a) and a > 0):
            raise ConfigError(f"{where}: metadata sdm_neuro.dt is {_show(a)}; expected one "
                              f"finite time step > 0.")
        return float(a), "file metadata"
    lifs = [(k, graph.nodes[k]) for k in order if isinstance(graph.nodes[k], nir.LIF)]
    if not lifs:
        return NORSE_DT, "none needed (IF only)"
    rt = [(_arr(n.r, f"{where}: node {k!r}: r"), _arr(n.tau, f"{where}: node {k!r}: tau"))
          for k, n in lifs]
    if all(np.allclose(r * SNNTORCH_DT, tau, rtol=1e-6) for r, tau in rt):
        return SNNTORCH_DT, "snnTorch convention (r = tau / 1e-4)"
    if all(np.allclose(r, 1.0) for r, _ in rt):
        return NORSE_DT, "Norse default (r = 1)"
    raise ConfigError(f"{where}: cannot tell the time step its LIF constants assume (no "
                      "sdm_neuro metadata, not snnTorch's r = tau/1e-4, not Norse's r = 1); "
                      "give dt explicitly (--dt).")


def _layer_names(graph: nir.NIRGraph, where: str, count: int) -> list[str] | None:
    """The layer names this project's writer recorded (``None`` when the file has none)."""
    raw = _meta(graph, where).get("layer_names")
    if raw is None:
        return None
    try:
        names = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        names = None
    if not (isinstance(names, list) and len(names) == count
            and all(isinstance(n, str) and n for n in names) and len(set(names)) == count):
        raise ConfigError(f"{where}: metadata sdm_neuro.layer_names is {str(raw)[:120]!r}; "
                          f"expected a JSON list of {count} distinct names, one per layer.")
    return names


def _neurons(node, name: str, shape: tuple[int, ...], dt: float, where: str) -> Neurons:
    at = f"{where}: layer {name!r}"

    def full(attr):
        x = _arr(getattr(node, attr), f"{at}: {attr}")
        try:
            return torch.from_numpy(np.broadcast_to(x, shape).copy())
        except ValueError:
            raise ConfigError(f"{at}: {attr} of shape {x.shape} does not "
                              f"broadcast to the layer shape {shape}.") from None

    th = full("v_threshold")
    if bool((th <= 0).any()):
        raise ConfigError(f"{at}: v_threshold must be > 0 (min {float(th.min())}).")
    if node.v_reset is not None:
        reset = _arr(node.v_reset, f"{at}: v_reset")
        if np.any(reset != 0):
            raise ConfigError(f"{at}: v_reset = {float(np.max(np.abs(reset)))}; "
                              f"Loihi's LIF (and this simulator) reset to 0.")
    if isinstance(node, nir.IF):
        one = torch.ones(shape, dtype=torch.float64)
        return Neurons("IF", th, one, full("r"), torch.zeros(shape, dtype=torch.float64))
    tau, r = full("tau"), full("r")
    if bool((tau < dt).any()):
        raise ConfigError(f"{at}: tau = {float(tau.min())} is below the time step "
                          f"dt = {dt}; forward Euler needs tau >= dt.")
    frac = dt / tau
    return Neurons("LIF", th, 1 - frac, r * frac, full("v_leak") * frac, tau, r)


def _synapse(node, k: str, shape: tuple[int, ...], flattened: bool, where: str) -> Synapse:
    """The synapse of a Conv2d / Affine / Linear node fed by ``shape``."""
    kind = type(node).__name__
    w = _arr(node.weight, f"{where}: {kind} {k!r}: weight")
    dims = 4 if isinstance(node, nir.Conv2d) else 2
    if w.ndim != dims or w.size == 0:
        raise ConfigError(f"{where}: {kind} {k!r}: weight of shape {w.shape}; expected "
                          f"{dims} non-zero dimensions.")
    bias = getattr(node, "bias", None)
    b = np.zeros(w.shape[0]) if bias is None else _arr(bias, f"{where}: {kind} {k!r}: bias")
    try:
        b = np.broadcast_to(b, (w.shape[0],)).copy()
    except ValueError:
        raise ConfigError(f"{where}: {kind} {k!r}: bias of shape {b.shape} does not fit "
                          f"{w.shape[0]} outputs.") from None
    w, b = torch.from_numpy(w), torch.from_numpy(b)
    if not isinstance(node, nir.Conv2d):
        if int(np.prod(shape)) != w.shape[1]:
            raise ConfigError(f"{where}: {kind} {k!r} expects {w.shape[1]} inputs, its input "
                              f"has shape {shape}.")
        return Synapse("affine", w, b, (w.shape[1],))
    dilation = _ints(node.dilation, f"{where}: Conv2d {k!r}: dilation", minimum=1)
    groups = _ints(node.groups, f"{where}: Conv2d {k!r}: groups", minimum=1, count=(1,))
    if (dilation != 1).any() or groups[0] != 1:
        raise ConfigError(f"{where}: Conv2d {k!r}: dilation and groups must be 1.")
    while len(shape) > 3 and shape[0] == 1:  # a leading batch dimension some exporters keep
        shape = shape[1:]
    if flattened or len(shape) != 3 or shape[0] != w.shape[1]:
        raise ConfigError(f"{where}: Conv2d {k!r} expects {w.shape[1]} input channels "
                          f"(C, H, W), its input has shape {shape}"
                          f"{' (flattened)' if flattened else ''}.")
    syn = Synapse("conv", w, b, shape, _pair(node.stride, f"{where}: Conv2d {k!r}: stride", 1),
                  _pair(node.padding, f"{where}: Conv2d {k!r}: padding", 0))
    out = syn.out_shape
    if min(out) < 1 or int(np.prod(out)) > MAX_TENSOR_ELEMENTS:
        raise ConfigError(f"{where}: Conv2d {k!r}: output shape {out} from input {shape}, "
                          f"kernel {tuple(w.shape[-2:])}, stride {syn.stride}, padding "
                          f"{syn.padding}; each side must be >= 1 and the layer at most "
                          f"{MAX_TENSOR_ELEMENTS:,} neurons.")
    return syn


def feedforward_from_nir(src: str | Path | nir.NIRGraph, *, dt: float | None = None) -> FeedForwardSNN:
    """A :class:`FeedForwardSNN` from a NIR file or graph of (Flatten?) (Conv2d | Affine |
    Linear) (IF | LIF) layers; anything else is a :class:`ConfigError` naming the node (a file
    that is not a readable NIR graph: :class:`CheckpointError`; a bad ``dt``:
    :class:`UsageError`)."""
    dt = None if dt is None else check_dt(dt)
    where = str(src) if not isinstance(src, nir.NIRGraph) else "NIR graph"
    graph = src if isinstance(src, nir.NIRGraph) else read_graph(src)
    order = _chain(graph, where)
    dt_source = "given"
    if dt is None:
        dt, dt_source = _infer_dt(graph, order, where)
    inp = next(n for n in graph.nodes.values() if isinstance(n, nir.Input))
    in_shape = _shape(inp.input_type.get("input") if isinstance(inp.input_type, dict) else None,
                      f"{where}: Input shape")
    shape, flattened, parts, syn, syn_name = in_shape, False, [], None, None
    for k in order:
        node = graph.nodes[k]
        if isinstance(node, nir.Flatten):
            if syn is not None:
                raise ConfigError(f"{where}: Flatten {k!r} between a synapse and its neurons.")
            flattened = True
            continue
        if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            if syn is not None:
                raise ConfigError(f"{where}: {type(node).__name__} {k!r} follows a synapse "
                                  f"without neurons between them.")
            syn, syn_name = _synapse(node, k, shape, flattened, where), k
            continue
        if isinstance(node, (nir.IF, nir.LIF)):
            if syn is None:
                raise ConfigError(f"{where}: neurons {k!r} have no synapse before them.")
            parts.append((syn_name, k, syn, node))
            shape, flattened, syn = syn.out_shape, False, None
            continue
        raise ConfigError(f"{where}: node {k!r} is a {type(node).__name__}; sequential networks "
                          f"support Conv2d, Affine, Linear, Flatten, IF and LIF.")
    if syn is not None:
        raise ConfigError(f"{where}: the last node {syn_name!r} is a synapse; the output must "
                          f"be spiking (IF or LIF neurons).")
    if not parts:
        raise ConfigError(f"{where}: no layers.")
    names = _layer_names(graph, where, len(parts)) or [f"{a}>{b}" for a, b, _, _ in parts]
    layers = tuple(Layer(name, s, _neurons(node, name, s.out_shape, dt, where))
                   for name, (_, _, s, node) in zip(names, parts, strict=True))
    return FeedForwardSNN(layers[0].synapse.in_shape if layers[0].synapse.kind == "conv"
                         else in_shape, layers, float(dt), f"{where} (dt {dt:g}: {dt_source})")


# --- writing ---------------------------------------------------------------------------------

def _node_names(net: FeedForwardSNN) -> list[tuple[str, str]]:
    """Per layer its (synapse, neurons) node names: the ones it was read from (:func:`feedforward_from_nir`
    names a layer ``synapse>neurons``) when they are all distinct and valid HDF5 names (no
    ``/``), else indexed ones."""
    pairs = [tuple(layer.name.split(">", 1)) for layer in net.layers]
    flat = [n for p in pairs for n in p]
    if all(len(p) == 2 and all(p) for p in pairs) and len(set(flat)) == len(flat) \
            and not any("/" in n or n in (".", "..") for n in flat):
        return pairs
    return [(f"{i}.{layer.synapse.kind}", f"{i}.{layer.neurons.kind.lower()}")
            for i, layer in enumerate(net.layers)]


def feedforward_to_nir(net: FeedForwardSNN) -> nir.NIRGraph:
    """The NIR graph of ``net``: Input, per layer (Flatten?) Conv2d|Affine and IF|LIF, Output.
    The nodes keep the names the layers were read from; the metadata records the layer names,
    so :func:`feedforward_from_nir` gives the same layers back, names included."""
    pairs = _node_names(net)
    used = {n for p in pairs for n in p}

    def fresh(base: str) -> str:
        while base in used:
            base += "_"
        used.add(base)
        return base

    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    prev = fresh("input")
    nodes[prev] = nir.Input(np.array(net.input_shape))

    def add(name: str, node) -> None:
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    shape = net.input_shape
    for layer, (syn_name, neu_name) in zip(net.layers, pairs, strict=True):
        s, n = layer.synapse, layer.neurons
        if s.kind == "conv":
            add(syn_name, nir.Conv2d(input_shape=s.in_shape[1:], weight=s.weight.numpy(),
                                     stride=s.stride, padding=s.padding, dilation=(1, 1),
                                     groups=1, bias=s.bias.numpy()))
        else:
            if len(shape) > 1:
                add(fresh(f"{syn_name}.flatten"), nir.Flatten(
                    input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
            add(syn_name, nir.Affine(weight=s.weight.numpy(), bias=s.bias.numpy()))
        full = [np.broadcast_to(x.numpy(), layer.shape).copy() for x in
                (n.threshold, n.retention, n.gain, n.leak)]
        th, a, c, lk = full
        zero = np.zeros(layer.shape)
        if n.kind == "IF":
            add(neu_name, nir.IF(r=c, v_threshold=th, v_reset=zero))
        else:
            tau = net.dt / (1 - a)
            add(neu_name, nir.LIF(tau=tau, r=c * tau / net.dt, v_leak=lk * tau / net.dt,
                                  v_threshold=th, v_reset=zero))
        shape = layer.shape
    add(fresh("output"), nir.Output(np.array(shape)))
    return nir.NIRGraph(nodes, edges, metadata={"sdm_neuro": {
        "dt": net.dt, "discretisation": DISCRETISATION,
        "layer_names": json.dumps([layer.name for layer in net.layers])}})
