"""A feed-forward SNN as lava-dl netx in Lava's CPU simulation against the integer simulator and
the float64 reference, one run, JSON.

    python benchmarks/netx_vs_simulator.py --out benchmarks/results/netx_vs_simulator.json

A random conv network on 28x28 spike input: conv 1->8 (3x3) -> conv 8->16 (3x3, stride 2) ->
dense 10, LIF (tau = 8 steps), --steps time steps, --batch samples (all in one Lava run). Each
run's spikes are compared (bit-exact is reported, not assumed)."""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from _timing import timed  # benchmarks/ is the script's directory

from sdm_neuro.fileio import write_json


def network():
    from sdm_neuro.ir.feedforward import Layer, Neurons, FeedForwardSNN, Synapse

    g = torch.Generator().manual_seed(0)

    def rnd(*shape, scale):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    s1 = Synapse("conv", rnd(8, 1, 3, 3, scale=0.6), rnd(8, scale=0.05), (1, 28, 28), (1, 1),
                 (1, 1))
    s2 = Synapse("conv", rnd(16, 8, 3, 3, scale=0.3), rnd(16, scale=0.05), s1.out_shape,
                 (2, 2), (1, 1))
    n = int(torch.tensor(s2.out_shape).prod())
    s3 = Synapse("affine", rnd(10, n, scale=0.08), rnd(10, scale=0.05), (n,))
    layers = []
    for i, s in enumerate((s1, s2, s3)):
        one = torch.ones(s.out_shape, dtype=torch.float64)
        layers.append(Layer(f"l{i}", s, Neurons("LIF", one, one * 0.875, one, one * 0)))
    return FeedForwardSNN((1, 28, 28), tuple(layers), 1e-3, "benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/netx_vs_simulator.json"))
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sdm_neuro.export.netx import run_netx
    from sdm_neuro.ir.feedforward import run_float
    from sdm_neuro.compiler.quantize_feedforward import quantize_feedforward
    from sdm_neuro.run.feedforward import random_spikes
    from sdm_neuro.simulators.feedforward import run_integer

    net = network()
    x = random_spikes(net.input_shape, args.steps, args.batch, 0.2, 0)
    qnet = quantize_feedforward(net, x)
    t_float = timed(lambda: run_float(net, x), args.repeats)
    t_int = timed(lambda: run_integer(qnet, x), args.repeats)
    t0 = time.perf_counter()
    lava = run_netx(qnet, x, timeout_s=900)
    t_lava = time.perf_counter() - t0
    sim = run_integer(qnet, x)
    exact = all(torch.equal(a, b) for a, b in zip(lava, sim, strict=True))
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "network": [{"name": q.layer.name, "shape": list(q.layer.shape), "vth": q.vth,
                     "dv": q.dv} for q in qnet.layers],
        "steps": args.steps, "batch": args.batch,
        "spikes": [int(s.sum()) for s in sim], "bit_exact": exact,
        "seconds": {"float64_reference": t_float, "integer_simulator": t_int,
                    "lava_netx_child_process": t_lava},
        "ratio_lava_vs_integer": t_lava / t_int, "ratio_integer_vs_float": t_int / t_float}
    write_json(args.out, report)
    print(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
