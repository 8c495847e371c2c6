"""The export bundle: a directory a user carries to the hardware.

``manifest.json``  tool and format versions, checkpoint SHA-256, model config, quantization
                   settings, target profile, lowering passes, timing, constraint check, file hashes
``network.nir``    the spiking network, the single description of it (plain ``nir.read`` loads it,
                   type checking on); integer parameters in node metadata, see ``NIR_METADATA``
``host.npz``       the host's float work: time-embedding tables, decoder tail, sampler schedule

Both the integer simulator and the Lava backend build their networks from the bundle
(:func:`read_bundle` returns the deployment graph they take), so a bundle runs exactly as the
checkpoint it was exported from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import UNetConfig
from ..deploy.graph import HOST, DeployGraph, HostStages, NeuronParams, Population, Projection
from ..errors import CheckpointError
from ..fileio import sha256_file

BUNDLE_FORMAT = "sdm-neuro-bundle"
BUNDLE_VERSION = 1
NIR_FILE, HOST_FILE, MANIFEST = "network.nir", "host.npz", "manifest.json"
NS = "sdm_neuro"  # the metadata key every node's own fields live under

NIR_METADATA = """\
sdm-neuro NIR metadata (key "sdm_neuro" in each node's metadata; non-binding for other tools).

Time: one NIR step is one Loihi 2 time step (dt = 1, unitless). A denoising call lasts
`timing.call_length` steps (manifest); population P runs its T_snn-step window from step
`offset` and is reset (u = v = 0) at its start (Lava LIFReset, reset_interval = call_length).

IF nodes (one per population, shape (C, H, W)): r = 1, v_threshold = the float threshold,
v_reset = 0 (reset to zero). Metadata: name, du, dv, vth (Lava mantissa; compared with
v > vth << 6), bias_exp, scale (float units of one membrane LSB), offset, bias ([T_snn, C]
float64 constant input per step), temb_block (the host adds temb[t] of this block per channel
and call), pixel_input (the host adds the pixel conv per neuron and call). The per-call bias
mantissa is round(current / (scale * 2**bias_exp)), clipped to 13 bits.

Conv2d nodes (one per projection): weight = the float weight [C_out, C_in, k, k] (BatchNorm,
shortcuts and concatenation composed in), stride, padding = k // 2, bias = 0. Metadata: src,
dst, weight_int (int16, even, in [-256, 254]; the synapse is weight_int << weight_exp membrane
LSBs of the target; TSM: [T_snn, ...], one set per SNN step of the source), weight_exp, delay
(extra synaptic delay in steps; Lava's one-step Sparse delay comes on top, and for a TSM
projection whose per-step weights differ one more step for its time-gated relay), gain (per SNN
step weight multipliers of SDM's TSM; empty = all ones), upsample.

Extension - nearest upsampling: a projection with metadata upsample = u > 1 is the conv applied
AFTER a u x nearest upsample of the source spikes. NIR has no upsampling, so such a node is
written as a Conv2d on the source map whose padding is chosen to give the upsampled output
shape (types check); its standard NIR meaning (a zero-padded conv) is NOT what it computes.
Tools that ignore this metadata must not run graphs that contain it.

Host nodes: Input "x_t" -> Conv2d "pixel_conv" (host float, metadata pixel_gain) -> the stem;
Input "temb:<block>" (the host's per-channel time embedding, broadcast) -> its population;
Conv2d "host:<i>" projections (float, read by the host) -> Output "decoder_input", whose sum
plus host.npz tail_bias feeds the decoder tail in host.npz.
"""


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def _conv_node(proj: Projection, src_shape: tuple[int, int, int], meta: dict[str, Any]):
    import nir

    w = _np(proj.weight).astype(np.float64)
    k, (_, h, wd), u = proj.kernel, src_shape, proj.upsample
    # see NIR_METADATA, "Extension": padding that gives the upsampled shape keeps types valid
    pad = (((h * (u - 1) + k - 1) // 2, (wd * (u - 1) + k - 1) // 2) if u > 1
           else (proj.padding, proj.padding))
    return nir.Conv2d(input_shape=(h, wd), weight=w, stride=proj.stride, padding=pad,
                      dilation=1, groups=1, bias=np.zeros(w.shape[0]), metadata={NS: meta})


def to_nir(graph: DeployGraph):
    """The spiking network and its host interface as a typed NIR graph."""
    import nir

    cfg = graph.config
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    shapes = {p.name: p.shape for p in graph.populations}
    for pop in graph.populations:
        shape = pop.shape
        lif = pop.lif
        nodes[pop.name] = nir.IF(
            r=np.ones(shape), v_threshold=np.full(shape, pop.threshold), v_reset=np.zeros(shape),
            metadata={NS: {"name": pop.name, "du": lif.du, "dv": lif.dv, "vth": lif.vth,
                           "bias_exp": lif.bias_exp, "scale": pop.scale, "offset": pop.offset,
                           "bias": _np(pop.bias).astype(np.float64),
                           "temb_block": pop.temb_block or "", "pixel_input": pop.pixel_input}})
        if pop.temb_block is not None:
            name = f"temb:{pop.name}"
            nodes[name] = nir.Input(input_type=np.array(shape), metadata={NS: {
                "role": "time embedding: host table temb/<block>[t], per channel",
                "block": pop.temb_block}})
            edges.append((name, pop.name))
        if pop.pixel_input:
            nodes["x_t"] = nir.Input(input_type=np.array([cfg.img_ch, cfg.img_size, cfg.img_size]),
                                     metadata={NS: {"role": "the noisy image x_t"}})
            h = graph.host
            px = Projection("x_t", pop.name, h.pixel_weight, gain=h.pixel_gain)
            nodes["pixel_conv"] = _conv_node(px, (cfg.img_ch, cfg.img_size, cfg.img_size), {
                "role": "host pixel conv (float, BatchNorm folded)", "gain": list(h.pixel_gain)})
            edges += [("x_t", "pixel_conv"), ("pixel_conv", pop.name)]
    out_shape = None
    for i, proj in enumerate(graph.projections):
        meta = {"src": proj.src, "dst": proj.dst, "upsample": proj.upsample,
                "gain": list(proj.gain), "delay": proj.delay}
        if proj.dst == HOST:
            name = f"host:{i}"
            c_out, (_, h, w) = proj.weight.shape[0], shapes[proj.src]
            out_shape = (c_out, h * proj.upsample // proj.stride, w * proj.upsample // proj.stride)
            edges.append((name, "decoder_input"))
        else:
            name = f"conv:{i}"
            meta.update(weight_int=_np(proj.weight_int).astype(np.int16),
                        weight_exp=int(proj.weight_exp))
            edges.append((name, proj.dst))
        nodes[name] = _conv_node(proj, shapes[proj.src], meta)
        edges.append((proj.src, name))
    nodes["decoder_input"] = nir.Output(output_type=np.array(out_shape), metadata={NS: {
        "role": "summed host projections: the decoder tail's input (host.npz tail/*)"}})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={NS: {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "config": cfg.to_dict(),
        "populations": [p.name for p in graph.populations],
        "projections": [n for n in nodes if n.startswith(("conv:", "host:"))],
        "documentation": NIR_METADATA}})


def _strs(values) -> list[str]:
    """A list of strings as written (HDF5 returns string arrays as bytes)."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def from_nir(g, host: dict[str, np.ndarray], *, source: str) -> DeployGraph:
    """The deployment graph a bundle's NIR graph (and host arrays) describes."""
    try:
        top = g.metadata[NS]
        cfg = UNetConfig.from_dict({k: np.asarray(v).tolist() for k, v in top["config"].items()},
                                   source=source)
        pops = []
        for name in _strs(top["populations"]):
            m = g.nodes[name].metadata[NS]
            node = g.nodes[name]
            pops.append(Population(
                name=str(m["name"]), shape=tuple(int(v) for v in node.v_threshold.shape),
                threshold=float(node.v_threshold.flat[0]), bias=torch.from_numpy(np.asarray(m["bias"])),
                temb_block=str(m["temb_block"]) or None, pixel_input=bool(m["pixel_input"]),
                scale=float(m["scale"]), offset=int(m["offset"]),
                lif=NeuronParams(vth=int(m["vth"]), bias_exp=int(m["bias_exp"]), du=int(m["du"]),
                                 dv=int(m["dv"]))))
        projs = []
        for name in _strs(top["projections"]):
            node = g.nodes[name]
            m = node.metadata[NS]
            w_int = m.get("weight_int")
            projs.append(Projection(
                src=str(m["src"]), dst=HOST if name.startswith("host:") else str(m["dst"]),
                weight=torch.from_numpy(np.asarray(node.weight, dtype=np.float64)),
                stride=int(np.atleast_1d(node.stride)[0]), upsample=int(m["upsample"]),
                gain=tuple(float(v) for v in np.atleast_1d(m["gain"])),
                weight_int=None if w_int is None else torch.from_numpy(np.asarray(w_int, np.int16)),
                weight_exp=None if w_int is None else int(m["weight_exp"]), delay=int(m["delay"])))
        px = g.nodes["pixel_conv"]
        hs = HostStages(
            pixel_weight=torch.from_numpy(np.asarray(px.weight, dtype=np.float64)),
            pixel_gain=tuple(float(v) for v in np.atleast_1d(px.metadata[NS]["gain"])),
            temb_table={k[5:]: torch.from_numpy(v) for k, v in host.items() if k.startswith("temb/")},
            tail={k[5:]: torch.from_numpy(v) for k, v in host.items() if k.startswith("tail/")},
            tail_bias=torch.from_numpy(host["tail_bias"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{source}: not an sdm-neuro network ({type(e).__name__}: {e}).") from None
    return DeployGraph(cfg, tuple(pops), tuple(projs), hs)


def host_arrays(graph: DeployGraph, betas: np.ndarray) -> dict[str, np.ndarray]:
    h = graph.host
    return {**{f"temb/{k}": _np(v) for k, v in h.temb_table.items()},
            **{f"tail/{k}": _np(v) for k, v in h.tail.items()},
            "tail_bias": _np(h.tail_bias), "schedule/betas": betas}


def write_bundle(graph: DeployGraph, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the bundle's files into the (temporary) directory ``out``; returns the manifest."""
    import nir

    from ..diffusion import LinearSchedule
    from ..fileio import write_json

    sch = LinearSchedule(num_steps=graph.config.diffusion_steps)
    nir.write(out / NIR_FILE, to_nir(graph))
    np.savez(out / HOST_FILE, **host_arrays(graph, sch.betas.double().numpy()))
    manifest = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, **manifest,
                "nir_version": _nir_version(),
                "sampler_schedule": {"kind": "linear", "beta_1": float(sch.betas[0]),
                                     "beta_T": float(sch.betas[-1]), "steps": sch.num_steps},
                "files": {n: {"sha256": sha256_file(out / n), "bytes": (out / n).stat().st_size}
                          for n in (NIR_FILE, HOST_FILE)},
                "nir_metadata": NIR_METADATA.splitlines()}
    write_json(out / MANIFEST, manifest)
    return manifest


def _nir_version() -> str:
    from importlib.metadata import version

    return version("nir")


def read_manifest(path: str | Path, fmt: str = BUNDLE_FORMAT, version: int = BUNDLE_VERSION
                  ) -> dict[str, Any]:
    """A bundle's manifest, after checking its format and every listed file's SHA-256."""
    path = Path(path)
    man_path = path / MANIFEST
    if not man_path.is_file():
        raise CheckpointError(f"{path}: not an export bundle (no {MANIFEST}).")
    try:
        manifest = json.loads(man_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{man_path}: not valid JSON ({e}).") from None
    if manifest.get("format") != fmt or manifest.get("format_version") != version:
        raise CheckpointError(f"{man_path}: not a {fmt} version {version} manifest "
                              f"(format={manifest.get('format')!r}, "
                              f"version={manifest.get('format_version')!r}).")
    for name, info in manifest.get("files", {}).items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing (listed in {MANIFEST}).")
        if sha256_file(f) != info["sha256"]:
            raise CheckpointError(f"{f}: SHA-256 differs from {MANIFEST}; the file was changed.")
    return manifest


def read_bundle(path: str | Path) -> tuple[DeployGraph, dict[str, Any]]:
    """(deployment graph, manifest) of a bundle directory; checks the format and file hashes."""
    import nir

    path = Path(path)
    manifest = read_manifest(path)
    if NIR_FILE not in manifest.get("files", {}):
        raise CheckpointError(f"{path / MANIFEST}: this bundle has no spiking network "
                              f"({NIR_FILE}); it was exported for target "
                              f"{manifest.get('target')!r}.")
    with np.load(path / HOST_FILE) as z:
        host = {k: z[k] for k in z.files}
    graph = from_nir(nir.read(path / NIR_FILE), host, source=str(path / NIR_FILE))
    return graph.replace(meta={"quantization": manifest.get("quantization", {}).get(
        "populations", {})}), manifest
