"""Read a feed-forward SNN from a NIR graph (as snnTorch's ``export_to_nir`` or Norse's
``to_nir`` write it) and write one that their importers run (``import_from_nir`` / ``from_nir``).

NIR has no time step (../shared/reference/nir.md). Reading, dt comes from (in order) the caller,
this project's metadata, snnTorch's signature (every LIF has ``r = tau / 1e-4``: snnTorch exports
with dt = 1e-4), or Norse's default 1e-3 when every ``r`` is 1. Writing, LIF nodes get
``r = c tau / dt`` (so snnTorch imports them with unit input gain) and the graph metadata records
dt and the discretisation under ``"sdm_neuro"``.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from .network import Layer, Neurons, SequentialSNN, Synapse

SNNTORCH_DT = 1e-4
NORSE_DT = 1e-3
DISCRETISATION = ("forward Euler, one step per time step; LIF: v = (1 - dt/tau) v + "
                  "(dt/tau)(r I + v_leak); IF: v = v + r I; spike v > v_threshold; reset to 0")


def _arr(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(x, what: str) -> tuple[int, int]:
    if isinstance(x, str):
        raise ConfigError(f"{what}: padding {x!r} is not supported; give explicit integers.")
    a = np.atleast_1d(np.asarray(x, dtype=np.int64)).ravel()
    if a.size == 1:
        a = np.repeat(a, 2)
    return int(a[0]), int(a[1])


def read_graph(path: str | Path) -> nir.NIRGraph:
    """``nir.read`` with type checking on; failures name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such NIR file.")
    try:
        return nir.read(str(path))
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as e:  # what nir raises
        raise CheckpointError(f"{path}: not a readable NIR graph ({type(e).__name__}: {e}).")


def _chain(graph: nir.NIRGraph, where: str) -> list[str]:
    """Node names from the Input to the Output; a branch anywhere is an error naming it."""
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    pred: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
        pred[b].append(a)
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise ConfigError(f"{where}: a sequential network has one Input node, found "
                          f"{len(inputs)}.")
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


def _infer_dt(graph: nir.NIRGraph, order: list[str]) -> tuple[float, str]:
    meta = graph.metadata.get("sdm_neuro", {}) if isinstance(graph.metadata, dict) else {}
    if "dt" in meta:
        return float(meta["dt"]), "file metadata"
    lifs = [graph.nodes[k] for k in order if isinstance(graph.nodes[k], nir.LIF)]
    if not lifs:
        return NORSE_DT, "none needed (IF only)"
    if all(np.allclose(_arr(n.r) * SNNTORCH_DT, _arr(n.tau), rtol=1e-6) for n in lifs):
        return SNNTORCH_DT, "snnTorch convention (r = tau / 1e-4)"
    if all(np.allclose(_arr(n.r), 1.0) for n in lifs):
        return NORSE_DT, "Norse default (r = 1)"
    raise ConfigError("NIR graph: cannot tell the time step its LIF constants assume (no "
                      "sdm_neuro metadata, not snnTorch's r = tau/1e-4, not Norse's r = 1); "
                      "give dt explicitly (--dt).")


def _neurons(node, name: str, shape: tuple[int, ...], dt: float) -> Neurons:
    def full(x, what):
        try:
            return torch.from_numpy(np.broadcast_to(_arr(x), shape).copy())
        except ValueError:
            raise ConfigError(f"layer {name!r}: {what} of shape {np.shape(_arr(x))} does not "
                              f"broadcast to the layer shape {shape}.") from None

    th = full(node.v_threshold, "v_threshold")
    if bool((th <= 0).any()):
        raise ConfigError(f"layer {name!r}: v_threshold must be > 0 (min {float(th.min())}).")
    if node.v_reset is not None and np.any(_arr(node.v_reset) != 0):
        raise ConfigError(f"layer {name!r}: v_reset = {float(np.max(np.abs(_arr(node.v_reset))))}"
                          f"; Loihi's LIF (and this simulator) reset to 0.")
    if isinstance(node, nir.IF):
        one = torch.ones(shape, dtype=torch.float64)
        return Neurons("IF", th, one, full(node.r, "r"), torch.zeros(shape, dtype=torch.float64))
    tau, r = full(node.tau, "tau"), full(node.r, "r")
    frac = dt / tau
    if bool((frac > 1).any()) or bool((tau <= 0).any()):
        raise ConfigError(f"layer {name!r}: tau = {float(tau.min())} is below the time step "
                          f"dt = {dt}; forward Euler needs tau >= dt.")
    return Neurons("LIF", th, 1 - frac, r * frac, full(node.v_leak, "v_leak") * frac, tau, r)


def from_nir(src: str | Path | nir.NIRGraph, *, dt: float | None = None) -> SequentialSNN:
    """A :class:`SequentialSNN` from a NIR file or graph of (Flatten?) (Conv2d | Affine |
    Linear) (IF | LIF) layers; anything else is a :class:`ConfigError` naming the node."""
    where = str(src) if not isinstance(src, nir.NIRGraph) else "NIR graph"
    graph = src if isinstance(src, nir.NIRGraph) else read_graph(src)
    order = _chain(graph, where)
    dt_source = "given"
    if dt is None:
        dt, dt_source = _infer_dt(graph, order)
    inp = next(n for n in graph.nodes.values() if isinstance(n, nir.Input))
    in_shape = tuple(int(d) for d in np.asarray(inp.input_type["input"]).ravel())
    shape, layers, syn, syn_name = in_shape, [], None, None
    for k in order:
        node = graph.nodes[k]
        if isinstance(node, nir.Flatten):
            if syn is not None:
                raise ConfigError(f"{where}: Flatten {k!r} between a synapse and its neurons.")
            continue
        if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            if syn is not None:
                raise ConfigError(f"{where}: {type(node).__name__} {k!r} follows a synapse "
                                  f"without neurons between them.")
            w = torch.from_numpy(_arr(node.weight))
            bias = getattr(node, "bias", None)
            b = (torch.zeros(w.shape[0], dtype=torch.float64) if bias is None
                 else torch.from_numpy(np.broadcast_to(_arr(bias), (w.shape[0],)).copy()))
            if isinstance(node, nir.Conv2d):
                if int(np.prod(np.atleast_1d(node.dilation))) != 1 or int(node.groups) != 1:
                    raise ConfigError(f"{where}: Conv2d {k!r}: dilation and groups must be 1.")
                if len(shape) > 3:  # a leading batch dimension some exporters keep
                    shape = shape[-3:]
                if len(shape) != 3 or shape[0] != w.shape[1]:
                    raise ConfigError(f"{where}: Conv2d {k!r} expects {w.shape[1]} input "
                                      f"channels, its input has shape {shape}.")
                syn = Synapse("conv", w, b, shape, _pair(node.stride, k),
                              _pair(node.padding, k))
            else:
                if int(np.prod(shape)) != w.shape[1]:
                    raise ConfigError(f"{where}: {type(node).__name__} {k!r} expects "
                                      f"{w.shape[1]} inputs, its input has shape {shape}.")
                syn = Synapse("affine", w, b, (w.shape[1],))
            syn_name = k
            continue
        if isinstance(node, (nir.IF, nir.LIF)):
            if syn is None:
                raise ConfigError(f"{where}: neurons {k!r} have no synapse before them.")
            name = f"{syn_name}>{k}"
            layers.append(Layer(name, syn, _neurons(node, name, syn.out_shape, dt)))
            shape, syn = syn.out_shape, None
            continue
        raise ConfigError(f"{where}: node {k!r} is a {type(node).__name__}; sequential networks "
                          f"support Conv2d, Affine, Linear, Flatten, IF and LIF.")
    if syn is not None:
        raise ConfigError(f"{where}: the last node {syn_name!r} is a synapse; the output must "
                          f"be spiking (IF or LIF neurons).")
    if not layers:
        raise ConfigError(f"{where}: no layers.")
    return SequentialSNN(layers[0].synapse.in_shape if layers[0].synapse.kind == "conv"
                         else in_shape, tuple(layers), float(dt),
                         f"{where} (dt {dt:g}: {dt_source})")


def to_nir(net: SequentialSNN) -> nir.NIRGraph:
    """The NIR graph of ``net``: Input, per layer (Flatten?) Conv2d|Affine and IF|LIF, Output."""
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array(net.input_shape))}
    edges, prev = [], "input"

    def add(name: str, node) -> None:
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    shape = net.input_shape
    for i, layer in enumerate(net.layers):
        s, n = layer.synapse, layer.neurons
        if s.kind == "conv":
            add(f"{i}.conv", nir.Conv2d(input_shape=s.in_shape[1:], weight=s.weight.numpy(),
                                        stride=s.stride, padding=s.padding, dilation=(1, 1),
                                        groups=1, bias=s.bias.numpy()))
        else:
            if len(shape) > 1:
                add(f"{i}.flatten", nir.Flatten(input_type={"input": np.array(shape)},
                                                start_dim=0, end_dim=-1))
            add(f"{i}.affine", nir.Affine(weight=s.weight.numpy(), bias=s.bias.numpy()))
        full = [np.broadcast_to(x.numpy(), layer.shape).copy() for x in
                (n.threshold, n.retention, n.gain, n.leak)]
        th, a, c, lk = full
        zero = np.zeros(layer.shape)
        if n.kind == "IF":
            add(f"{i}.if", nir.IF(r=c, v_threshold=th, v_reset=zero))
        else:
            tau = net.dt / (1 - a)
            add(f"{i}.lif", nir.LIF(tau=tau, r=c * tau / net.dt, v_leak=lk * tau / net.dt,
                                    v_threshold=th, v_reset=zero))
        shape = layer.shape
    add("output", nir.Output(np.array(shape)))
    return nir.NIRGraph(nodes, edges, metadata={"sdm_neuro": {
        "dt": net.dt, "discretisation": DISCRETISATION}})
