"""The simulators' per-neuron activity counts against an element-wise count."""

import pytest
import torch

from sdm_neuro.simulators.counting import nonzero_counts


@pytest.mark.parametrize("steps, batch, shape", [(4, 16, (3, 8, 8)), (8, 64, (2, 4, 4)),
                                                 (4, 2, (3, 5, 5)), (1, 1, (1, 1, 1))])
@pytest.mark.parametrize("kind", ["bool", "payload"])
def test_counts_equal_an_elementwise_count(steps, batch, shape, kind):
    g = torch.Generator().manual_seed(steps * batch)
    # 512 rows exercise the 255-row chunks, 75 neurons the path without int64 words; all-ones
    # rows hit a byte lane's largest count
    x = torch.rand(steps, batch, *shape, generator=g) < 0.5
    x[:, :, 0] = True
    if kind == "payload":
        x = torch.randint(-3, 4, x.shape, generator=g, dtype=torch.int64) * x
        x = x.to(torch.float64)
    want = torch.zeros(shape, dtype=torch.float64)
    for s in range(steps):
        for b in range(batch):
            want += (x[s, b] != 0).to(torch.float64)
    got = nonzero_counts(x)
    assert got.dtype == torch.float64 and torch.equal(got, want)
