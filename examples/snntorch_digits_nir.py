"""An snnTorch spiking classifier -> NIR -> sdm-neuro: how much accuracy survives Loihi 2 fixed
point, and the lava-dl netx file for it.

    python examples/snntorch_digits_nir.py --epochs 20 --out runs/snntorch_digits

Trains a small snnTorch network (64 -> 64 LIF -> 10 LIF, reset to zero) on scikit-learn's 8x8
digits with rate-coded input spikes, exports it with snnTorch's ``export_to_nir``, reads the file
with :func:`sdm_neuro.frontends.feedforward_nir.feedforward_from_nir`, quantizes it on training inputs, and scores
the held-out digits three ways: snnTorch itself, this project's float reference, and the integer
(Loihi 2 fixed point) simulator. Then writes the netx HDF5 (``sdm-neuro export net.nir``
does the same from the command line). CPU, well under a minute; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nir
import snntorch as snn
import torch
from sklearn.datasets import load_digits
from snntorch import utils as snn_utils
from snntorch.export_nir import export_to_nir

from sdm_neuro.export.netx import write_netx
from sdm_neuro.ir.feedforward import run_float
from sdm_neuro.frontends.feedforward_nir import feedforward_from_nir
from sdm_neuro.compiler.quantize_feedforward import quantize_feedforward
from sdm_neuro.simulators.feedforward import run_integer

STEPS = 16


def encode(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Rate code: [N, 64] intensities in [0, 1] -> [T, N, 64] Bernoulli spikes."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(STEPS, *images.shape, generator=g) < images).float()


def model() -> torch.nn.Sequential:
    # Per-neuron beta / threshold tensors and reset to zero: what snnTorch's NIR export writes
    # faithfully (README, "Feed-forward SNNs through NIR").
    kw = {"reset_mechanism": "zero", "reset_delay": False, "init_hidden": True}
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64),
        snn.Leaky(beta=torch.full((64,), 0.875), threshold=torch.ones(64), **kw),
        torch.nn.Linear(64, 10),
        snn.Leaky(beta=torch.full((10,), 0.875), threshold=torch.ones(10), output=True, **kw))


def counts(net: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    snn_utils.reset(net)
    return sum(net(x[t])[0] for t in range(x.shape[0]))


def accuracy(spike_counts: torch.Tensor, labels: torch.Tensor) -> float:
    # the first largest count wins, as argmax does; ties go to the lower class in all three runs
    return int((spike_counts.argmax(1) == labels).sum()) / len(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("runs/snntorch_digits"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    d = load_digits()
    images = torch.tensor(d.data, dtype=torch.float32) / 16
    labels = torch.tensor(d.target)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        x = encode(images[train], seed=epoch)
        for i in range(0, len(train), 64):
            loss = torch.nn.functional.cross_entropy(counts(net, x[:, i:i + 64]),
                                                     labels[train[i:i + 64]])
            opt.zero_grad()
            loss.backward()
            opt.step()
    x_test = encode(images[test], seed=10_000)
    with torch.no_grad():
        acc_snntorch = accuracy(counts(net, x_test), labels[test])

    path = args.out / "digits_snn.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0]))
    snn_net = feedforward_from_nir(path)  # snnTorch's dt (1e-4) recognised from the file
    qnet = quantize_feedforward(snn_net, encode(images[train[:256]], seed=20_000).double())
    x64 = x_test.double()
    acc_float = accuracy(run_float(snn_net, x64)[-1].sum(0), labels[test])
    acc_int = accuracy(run_integer(qnet, x64)[-1].sum(0), labels[test])
    report = {"test_digits": len(test), "time_steps": STEPS, "epochs": args.epochs,
              "accuracy": {"snntorch": acc_snntorch, "float_reference": acc_float,
                           "integer_loihi2_fixed_point": acc_int},
              "quantization": qnet.report, "nir": str(path), "read_as": snn_net.source}
    report["netx"] = str(write_netx(qnet, args.out / "digits_snn.net"))
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"accuracy on {len(test)} held-out digits: snnTorch {acc_snntorch:.3f}, float "
          f"reference {acc_float:.3f}, integer (Loihi 2 fixed point) {acc_int:.3f}")
    print(f"wrote {path}, {report['netx']}, {args.out / 'report.json'}")


if __name__ == "__main__":
    main()
